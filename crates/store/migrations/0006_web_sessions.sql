-- Browser sessions of the web pages: the cookie holds a random secret, the catalogue its
-- SHA-256 and whom it signs in. A local user's session names the user (their current role is
-- read on every request); an OIDC session keeps the principal its ID token mapped to.

CREATE TABLE web_sessions (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL UNIQUE,
    method      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    username    TEXT,
    org         TEXT,
    department  TEXT,
    role        TEXT,
    pid         TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    revoked_at  TEXT
);
