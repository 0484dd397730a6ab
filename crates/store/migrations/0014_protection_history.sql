-- Everyone a register of address protection has protected, at the highest level they had in any
-- version read (`fortrolig` 1, `strengt fortrolig` 2). An earlier version of any dataset is
-- judged by it, so a protection lifted later does not release the address the person had while
-- protected; and a person a register no longer holds at all keeps it (a register lifts
-- protection by saying `ugradert`, not by leaving someone out).

CREATE TABLE protection_history (
    person_key TEXT PRIMARY KEY,
    level      BIGINT NOT NULL
);

-- The last version of each register read into protection_history.
CREATE TABLE protection_history_read (
    dataset TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
