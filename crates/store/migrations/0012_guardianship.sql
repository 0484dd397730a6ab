-- The registers of parental responsibility (a Folkeregister copy of parents and children): which
-- dataset, its child and its parent column. A citizen reads, on Min side, the data of the
-- children under 16 a register names them the parent of.
--
-- And a dataset's legal basis for processing (behandlingsgrunnlag): the slug of one of its
-- organisation's legal bases, shown to the people it is about.

CREATE TABLE guardianship_registers (
    dataset       TEXT PRIMARY KEY,
    child_column  TEXT NOT NULL,
    parent_column TEXT NOT NULL,
    set_by        TEXT NOT NULL,
    set_at        TEXT NOT NULL
);

ALTER TABLE datasets ADD COLUMN legal_basis TEXT;
