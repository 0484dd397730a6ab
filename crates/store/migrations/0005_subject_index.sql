-- The subject index: which rows of which data file hold a subject key (a canonical
-- fødselsnummer, matrikkel unit or organisasjonsnummer). Written in the transaction that records
-- a version, so it always describes the catalogue's latest version of each dataset.

-- The live data files of datasets with subject-key columns. The id is derived from the dataset
-- and the path (the first 63 bits of their SHA-256), so concurrent writers never race for one.
CREATE TABLE subject_files (
    id      BIGINT PRIMARY KEY,
    org     TEXT NOT NULL,
    dataset TEXT NOT NULL,
    path    TEXT NOT NULL,
    FOREIGN KEY (org, dataset) REFERENCES datasets (org, slug)
);
CREATE INDEX subject_files_by_dataset ON subject_files (org, dataset);

-- One row per key value per row: the key, the file, the row's number in the file (from 0) and
-- the key column's position in the table schema.
CREATE TABLE subject_keys (
    subject  TEXT NOT NULL,
    file_id  BIGINT NOT NULL,
    row_no   BIGINT NOT NULL,
    position INTEGER NOT NULL
);
CREATE INDEX subject_keys_by_subject ON subject_keys (subject);
CREATE INDEX subject_keys_by_file ON subject_keys (file_id);

-- The version of each dataset the index describes.
CREATE TABLE subject_indexed (
    org     TEXT NOT NULL,
    dataset TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (org, dataset),
    FOREIGN KEY (org, dataset) REFERENCES datasets (org, slug)
);
