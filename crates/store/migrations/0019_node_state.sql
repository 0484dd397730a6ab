-- What a log-in needs between two requests, kept here so that any node can answer the second:
-- failed attempts counted per user name and per client address (the throttle), and browser
-- log-ins sent to an OIDC issuer and not yet back. Times are Unix seconds.
CREATE TABLE login_attempts (
    key   TEXT PRIMARY KEY,
    since BIGINT NOT NULL,
    n     BIGINT NOT NULL
);

-- A pending OIDC log-in, by the SHA-256 of its `state`; taken out (deleted) by its callback.
CREATE TABLE oidc_pending (
    state_hash TEXT PRIMARY KEY,
    issuer     BIGINT NOT NULL,
    verifier   TEXT NOT NULL,
    nonce      TEXT NOT NULL,
    next       TEXT NOT NULL,
    started_at BIGINT NOT NULL
);

-- A web upload between its steps (checked, running, done, failed), so that any node shows and
-- confirms it. The checked file waits in storage under `_staging/uploads/ID/` until the ingest
-- has read it. A running upload's node writes `updated_at` every few seconds.
CREATE TABLE web_uploads (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    dataset      TEXT NOT NULL,
    size         BIGINT NOT NULL,
    step         TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    settings     TEXT NOT NULL,
    bytes_read   BIGINT NOT NULL,
    version      BIGINT,
    rows_written BIGINT,
    problems     TEXT,
    updated_at   BIGINT NOT NULL
);
