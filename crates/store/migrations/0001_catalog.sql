-- The catalogue: organisations, departments, datasets, their columns and versions.
-- Portable SQL: the same file runs on SQLite and PostgreSQL. Times are RFC 3339 text (UTC).

CREATE TABLE organizations (
    slug          TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    orgnr         TEXT NOT NULL UNIQUE,
    kommunenummer TEXT,
    created_at    TEXT NOT NULL
);

CREATE TABLE departments (
    org        TEXT NOT NULL REFERENCES organizations (slug),
    slug       TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (org, slug)
);

CREATE TABLE datasets (
    org              TEXT NOT NULL REFERENCES organizations (slug),
    slug             TEXT NOT NULL,
    department       TEXT NOT NULL,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL,
    classification   TEXT NOT NULL CHECK (classification IN ('open', 'internal', 'confidential', 'strictly-confidential')),
    theme            TEXT,
    keywords         TEXT NOT NULL,
    licence          TEXT,
    update_frequency TEXT,
    created_at       TEXT NOT NULL,
    PRIMARY KEY (org, slug),
    FOREIGN KEY (org, department) REFERENCES departments (org, slug)
);

CREATE TABLE dataset_columns (
    org         TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    column_type TEXT NOT NULL,
    description TEXT NOT NULL,
    category    TEXT NOT NULL CHECK (category IN ('none', 'person-id', 'personal', 'special-category', 'protected-address')),
    subject_key TEXT CHECK (subject_key IN ('person', 'property', 'organization')),
    crs         TEXT,
    PRIMARY KEY (org, dataset, name),
    FOREIGN KEY (org, dataset) REFERENCES datasets (org, slug)
);

CREATE TABLE dataset_versions (
    org           TEXT NOT NULL,
    dataset       TEXT NOT NULL,
    version       BIGINT NOT NULL,
    committed_at  TEXT NOT NULL,
    actor         TEXT NOT NULL,
    mode          TEXT NOT NULL,
    rows_written  BIGINT NOT NULL,
    rows_removed  BIGINT NOT NULL,
    source_name   TEXT,
    source_sha256 TEXT,
    source_format TEXT,
    PRIMARY KEY (org, dataset, version),
    FOREIGN KEY (org, dataset) REFERENCES datasets (org, slug)
);
