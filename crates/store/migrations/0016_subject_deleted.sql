-- An upsert marks the rows it replaces deleted (Delta deletion vectors) instead of rewriting
-- their data file. Their keys stay in `subject_keys` (taking them out row by row would touch a
-- page of the table and of each of its indexes per row); the rows are listed here, and a
-- look-up leaves out every place listed. A file removed or indexed again takes its rows out.
CREATE TABLE subject_deleted (
    file_id BIGINT NOT NULL,
    row_no  BIGINT NOT NULL,
    PRIMARY KEY (file_id, row_no)
);
