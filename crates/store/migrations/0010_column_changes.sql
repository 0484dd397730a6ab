-- Changes of a column's category, each its own action (never a side effect of an upload): one
-- that raises protection is applied at once; one that lowers it waits for a second person.

CREATE TABLE column_changes (
    id            BIGINT PRIMARY KEY,
    dataset       TEXT NOT NULL,
    column_name   TEXT NOT NULL,
    from_category TEXT NOT NULL,
    to_category   TEXT NOT NULL,
    state         TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    requested_at  TEXT NOT NULL,
    decided_by    TEXT,
    decided_at    TEXT
);
