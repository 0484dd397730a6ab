-- Connectors: sources a dataset is pulled from on a schedule. The settings are JSON (how to
-- read the source and how to ingest it); the secrets are sealed with a key kept outside the
-- catalogue and never leave the connector's runner. `state` is what the last successful run
-- saw (validators, SHA-256, the incremental column's high-water mark). One node at a time runs
-- a connector: the one whose lease (`lease_owner`, `lease_until`) is current.

CREATE TABLE connectors (
    name          TEXT PRIMARY KEY,
    org           TEXT NOT NULL,
    dataset       TEXT NOT NULL,
    source        TEXT NOT NULL,
    schedule      TEXT NOT NULL,
    settings      TEXT NOT NULL,
    secrets       TEXT NOT NULL,
    owner         TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    state         TEXT NOT NULL,
    next_run_at   TEXT NOT NULL,
    failures      BIGINT NOT NULL,
    lease_owner   TEXT,
    lease_until   TEXT
);

CREATE INDEX connectors_dataset ON connectors (org, dataset);

CREATE TABLE connector_runs (
    id            TEXT PRIMARY KEY,
    connector     TEXT NOT NULL,
    trigger_kind  TEXT NOT NULL,
    node          TEXT NOT NULL,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL,
    version       BIGINT,
    rows_written  BIGINT,
    source_name   TEXT,
    error         TEXT,
    problems      TEXT
);

CREATE INDEX connector_runs_connector ON connector_runs (connector, started_at);
