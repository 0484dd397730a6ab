//! Catalogue reads on the calling thread, for a SQLite catalogue.
//!
//! sqlx runs each SQLite connection on a thread of its own: every query is sent there and its
//! rows sent back, two thread switches that cost more than the query when the pages are cached.
//! The reads on every request's and every look-up's path — the catalogue generation and the
//! subject index — are B-tree probes, so they run here, on the caller's thread, on a connection
//! of their own. (What the generation guards, policy and API tokens, is kept per generation, so
//! those reads rarely happen at all.) In WAL mode a reader sees every transaction committed before its statement began, from
//! any connection or process, so these reads see exactly what sqlx's connections would.
//!
//! The connections are read-only (`PRAGMA query_only`): nothing here can change stored data.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

/// At most this many idle connections are kept; more are opened when more threads read at once.
const KEPT: usize = 8;

/// Read-only connections to a SQLite catalogue file, used one per read on the calling thread.
#[derive(Debug)]
pub(crate) struct QuickReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl QuickReader {
    /// A reader for the file a `sqlite:` URL names; `None` for an in-memory database, which
    /// another connection cannot see.
    pub(crate) fn for_url(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
            return None;
        }
        Some(Self { path: PathBuf::from(path), idle: Mutex::new(Vec::new()) })
    }

    /// The database file.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // The index query has one form per power of two of its keys (see `Store::locate_many`).
        conn.set_prepared_statement_cache_capacity(32);
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -16384;")?;
        Ok(conn)
    }

    /// Runs `read` on an idle connection (or a new one), then keeps the connection.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let kept = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match kept {
            Some(c) => c,
            None => self.open().map_err(error)?,
        };
        let out = read(&conn).map_err(error)?;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < KEPT {
            idle.push(conn);
        }
        Ok(out)
    }
}

fn error(e: rusqlite::Error) -> StoreError {
    StoreError::Read(format!("catalogue database: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(QuickReader::for_url("sqlite:///var/x/catalog.db?mode=rwc").unwrap().path, PathBuf::from("/var/x/catalog.db"));
        assert_eq!(QuickReader::for_url("sqlite://rel/catalog.db").unwrap().path, PathBuf::from("rel/catalog.db"));
        assert_eq!(QuickReader::for_url("sqlite:catalog.db").unwrap().path, PathBuf::from("catalog.db"));
        assert!(QuickReader::for_url("sqlite::memory:").is_none());
        assert!(QuickReader::for_url("sqlite://shared?mode=memory&cache=shared").is_none());
        assert!(QuickReader::for_url("postgres://localhost/x").is_none());
    }

    #[test]
    fn reads_what_others_commit_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);").unwrap();
        let reader = QuickReader::for_url(&format!("sqlite://{}?mode=rwc", path.display())).unwrap();
        let n: i64 = reader.read(|c| c.query_row("SELECT max(n) FROM t", [], |r| r.get(0))).unwrap();
        assert_eq!(n, 1);
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let n: i64 = reader.read(|c| c.query_row("SELECT max(n) FROM t", [], |r| r.get(0))).unwrap();
        assert_eq!(n, 2, "a kept connection sees a later commit");
        let refused = reader.read(|c| c.execute("INSERT INTO t VALUES (3)", []));
        assert!(refused.is_err(), "the reader cannot write");
        let n: i64 = writer.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);
    }
}
