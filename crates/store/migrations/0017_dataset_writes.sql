-- A write of a dataset under way: made after the dataset's write lock is taken and before any
-- file is written, removed when the write ends. One left behind is a write that a crash (or a
-- failure) interrupted: the next writer of the dataset, or a node that starts, finishes it from
-- the lake (a version committed there is recorded) and removes the files it left.
CREATE TABLE dataset_writes (
    id         TEXT PRIMARY KEY,
    org        TEXT NOT NULL,
    dataset    TEXT NOT NULL,
    what       TEXT NOT NULL,
    started_at TEXT NOT NULL
);
CREATE INDEX dataset_writes_dataset ON dataset_writes (org, dataset);
