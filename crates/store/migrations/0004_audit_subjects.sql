-- Which data subjects each access released, for "who accessed me": one row per person (by the
-- HMAC of the fødselsnummer, never the number) and entry. The entries themselves carry the same
-- list, so `tverr audit verify` checks this index against the chain.

CREATE TABLE audit_subjects (
    subject TEXT NOT NULL,
    access  BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    PRIMARY KEY (subject, seq)
);

CREATE INDEX audit_subjects_seq ON audit_subjects (seq);

-- API tokens of citizens (a stand-in for ID-porten in the demo and in tests): the token names
-- the person it was issued to.
CREATE TABLE citizen_tokens (
    id         TEXT PRIMARY KEY,
    pid        TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
