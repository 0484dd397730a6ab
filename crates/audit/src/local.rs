//! The log writer's own connection to a SQLite catalogue file.
//!
//! sqlx runs each SQLite connection on a thread of its own and sends it every statement: a group
//! written as `BEGIN`, a few inserts and `COMMIT` was that many round trips between threads,
//! and each woke a sleeping thread (about ten thread switches per look-up). Here the writer
//! hands the whole group to one blocking thread, which runs the transaction on this connection
//! with cached single-row statements and returns: one round trip per group.

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};

use crate::{Group, INSERT_CHECKPOINT, INSERT_ENTRIES, INSERT_SUBJECTS, ONCE_PER_SEQ};

/// The single-row statements, each prepared once per connection.
static ENTRY: LazyLock<String> = LazyLock::new(|| format!("{INSERT_ENTRIES}(?1, ?2, ?3, ?4, ?5, ?6)"));
static SUBJECT: LazyLock<String> = LazyLock::new(|| format!("{INSERT_SUBJECTS}(?1, ?2, ?3)"));
static CHECKPOINT: LazyLock<String> = LazyLock::new(|| format!("{INSERT_CHECKPOINT}(?1, ?2, ?3, ?4, ?5){ONCE_PER_SEQ}"));

/// A read-write connection to the catalogue file, without automatic WAL checkpoints (the
/// writer's checkpointer copies the WAL back in the background).
pub(crate) struct LocalLog {
    conn: Connection,
}

impl LocalLog {
    /// Opens the catalogue file, which must exist, with the catalogue's durability settings.
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;")?;
        Ok(Self { conn })
    }

    /// Writes the group in one durable transaction; nothing of it when any insert fails.
    pub(crate) fn write(&mut self, group: &Group) -> rusqlite::Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(&ENTRY)?;
            for r in &group.rows {
                insert.execute(params![r.seq, group.at, r.kind, r.payload, r.prev_hash, r.hash])?;
            }
            let mut index = tx.prepare_cached(&SUBJECT)?;
            for (subject, access, seq) in &group.subjects {
                index.execute(params![subject, access, seq])?;
            }
            if let Some(c) = &group.checkpoint {
                tx.prepare_cached(&CHECKPOINT)?.execute(params![c.seq, c.head_hash, c.at, c.public_key, c.signature])?;
            }
        }
        tx.commit()
    }
}

/// A race with another writer on the same file: the sequence number taken first (the primary
/// key), or the database busy or the snapshot stale.
pub(crate) fn retryable(e: &rusqlite::Error) -> bool {
    const PRIMARY_KEY: i32 = 1555;
    const UNIQUE: i32 = 2067;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) || matches!(f.extended_code, PRIMARY_KEY | UNIQUE)
        }
        _ => false,
    }
}
