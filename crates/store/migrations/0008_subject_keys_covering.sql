-- A look-up's index read is answered from the index alone: every column it reads is in the
-- index, so no row of `subject_keys` is fetched by rowid (on SQLite, about four more B-tree
-- pages per place found, read again after every commit of the access log empties a reading
-- connection's page cache).
CREATE INDEX subject_keys_by_subject_covering ON subject_keys (subject, file_id, row_no, position);
DROP INDEX subject_keys_by_subject;
