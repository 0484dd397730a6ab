-- The authoritative registers of address protection (a Folkeregister copy): which dataset, its
-- person key and its protection column. A person's protection is read from here and applies to
-- every dataset that names them (`Protection::ByPerson`).

CREATE TABLE protection_registers (
    dataset       TEXT PRIMARY KEY,
    key_column    TEXT NOT NULL,
    status_column TEXT NOT NULL,
    set_by        TEXT NOT NULL,
    set_at        TEXT NOT NULL
);
