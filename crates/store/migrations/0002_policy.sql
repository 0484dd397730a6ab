-- The policy layer's tables: users, API tokens, legal bases, purposes and sharing agreements.
-- Agreements keep their current state here and every change, in full, in agreement_events.

CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    org           TEXT NOT NULL REFERENCES organizations (slug),
    department    TEXT,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'steward', 'employee', 'auditor')),
    password_hash TEXT,
    created_at    TEXT NOT NULL,
    FOREIGN KEY (org, department) REFERENCES departments (org, slug)
);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users (username),
    hash       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);

CREATE TABLE legal_bases (
    org          TEXT NOT NULL REFERENCES organizations (slug),
    slug         TEXT NOT NULL,
    gdpr_article TEXT NOT NULL,
    hjemmel      TEXT NOT NULL,
    lovdata_url  TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (org, slug)
);

CREATE TABLE purposes (
    org         TEXT NOT NULL REFERENCES organizations (slug),
    slug        TEXT NOT NULL,
    department  TEXT,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    legal_basis TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (org, slug),
    FOREIGN KEY (org, department) REFERENCES departments (org, slug),
    FOREIGN KEY (org, legal_basis) REFERENCES legal_bases (org, slug)
);

CREATE TABLE agreements (
    id                  BIGINT PRIMARY KEY,
    provider_org        TEXT NOT NULL,
    provider_department TEXT NOT NULL,
    consumer_org        TEXT NOT NULL,
    consumer_department TEXT NOT NULL,
    consumer_role       TEXT,
    state               TEXT NOT NULL CHECK (state IN ('requested', 'approved', 'denied', 'revoked')),
    terms               TEXT NOT NULL,
    hmac_key            TEXT NOT NULL,
    revision            BIGINT NOT NULL,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL,
    FOREIGN KEY (provider_org, provider_department) REFERENCES departments (org, slug),
    FOREIGN KEY (consumer_org, consumer_department) REFERENCES departments (org, slug)
);

CREATE TABLE agreement_events (
    agreement  BIGINT NOT NULL REFERENCES agreements (id),
    revision   BIGINT NOT NULL,
    state      TEXT NOT NULL,
    terms      TEXT NOT NULL,
    actor      TEXT NOT NULL,
    note       TEXT,
    at         TEXT NOT NULL,
    PRIMARY KEY (agreement, revision)
);
