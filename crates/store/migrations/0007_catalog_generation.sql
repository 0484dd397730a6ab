-- A counter that every change to what access decisions and look-ups read moves on (triggers
-- installed by `Catalog::connect`, in each database's own dialect): organisations, departments,
-- datasets and their columns, legal bases, purposes, agreements and the subject index's
-- versions. A process may keep what it read from those tables for as long as the counter stays.

CREATE TABLE catalog_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);

INSERT INTO catalog_generation (id, n) VALUES (1, 0);
