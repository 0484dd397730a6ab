-- Links that carry address protection through a key that is not a subject key: rows of
-- `dataset` whose `column_name` equals `target_column` of a protected row of `target` (a meter
-- reading's meter number, of a meter on a protected person's property) are protected alike.

CREATE TABLE protection_links (
    dataset       TEXT NOT NULL,
    column_name   TEXT NOT NULL,
    target        TEXT NOT NULL,
    target_column TEXT NOT NULL,
    set_by        TEXT NOT NULL,
    set_at        TEXT NOT NULL,
    PRIMARY KEY (dataset, column_name)
);
