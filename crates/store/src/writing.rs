//! Writes of one dataset take turns, and a write a crash interrupted is finished by the next.
//!
//! Every write (an ingest of any mode, an erasure, an index rebuild) first takes the dataset's
//! write lock: on PostgreSQL an advisory lock held by a connection of its own (a node that dies
//! closes it, and the lock goes with it), on SQLite a lock on a file beside the catalogue (the
//! CLI and the server of one data directory take turns too). Under the lock it records that a
//! write is under way (`dataset_writes`, migration 0017) before it writes any file, and removes
//! that record when it ends. Versions are therefore committed to the lake and recorded in the
//! catalogue in one order, one at a time: the subject index, which each version changes, never
//! sees them out of order, and Delta's optimistic commit never has to retry against another node.
//!
//! A record left behind means a write stopped halfway. The next writer of the dataset, or a
//! node that starts ([`Store::recover_interrupted`]), takes the lock and finishes it:
//! - a dataset the catalogue does not know (an interrupted create): its table is removed, so
//!   the dataset is as before, absent;
//! - a version the lake holds and the catalogue does not (the crash came between the commit and
//!   the record): the version is recorded from what its commit says (`tverr.record`) and the
//!   subject index is rebuilt, so the dataset is at its next version;
//! - an erasure recorded but not finished (its vacuum, its checkpoint, the log before it): done;
//! - data files and deletion vectors no version names (written before the crash): deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use deltalake::kernel::DeletionVectorDescriptor;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, Row};
use tverr_core::{ColumnCategory, DatasetRef};

use crate::{ColumnMeta, Store, StoreError, Timestamp, VersionMeta, VersionMode};

/// What a version's commit says about itself (`tverr.record` in its commit info), so that a
/// version committed to the lake can be recorded in the catalogue by another process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Recording {
    pub mode: VersionMode,
    pub actor: String,
    pub rows_written: i64,
    pub rows_removed: i64,
    pub source_name: Option<String>,
    pub source_sha256: Option<String>,
    pub source_format: Option<String>,
    /// Every column of the dataset after the version.
    pub columns: Vec<ColumnMeta>,
    /// Categories and descriptions the version set on existing columns.
    pub categories: BTreeMap<String, ColumnCategory>,
    pub descriptions: BTreeMap<String, String>,
    /// The write (its `dataset_writes` id) that made the version.
    #[serde(default)]
    pub write: String,
}

/// The commit-info key of a [`Recording`].
pub(crate) const RECORDING: &str = "tverr.record";

/// A dataset's write lock, held until dropped.
#[derive(Debug)]
pub(crate) enum Held {
    /// Advisory locks on a PostgreSQL connection of its own, kept by a heartbeat.
    Postgres(Lease),
    /// A locked file beside a SQLite catalogue.
    File { _file: std::fs::File },
    /// In-process only (a SQLite catalogue in memory).
    Memory { _guard: tokio::sync::OwnedMutexGuard<()> },
}

impl Held {
    /// Lets go of the lock (on PostgreSQL, by closing its connection; dropping does the rest).
    async fn release(self) {
        if let Held::Postgres(lease) = self {
            lease.close().await;
        }
    }

    /// Whether the lock is still this process's: on PostgreSQL, one round trip on the lock's
    /// connection. A node stopped for longer than the lease finds its session ended by the
    /// server and the lock perhaps another node's; it must then commit nothing.
    pub(crate) async fn confirm(&self, r: &DatasetRef) -> Result<(), StoreError> {
        match self {
            Held::Postgres(lease) => lease.confirm(r).await,
            Held::File { .. } | Held::Memory { .. } => Ok(()),
        }
    }

    fn lost(&self) -> bool {
        matches!(self, Held::Postgres(lease) if lease.lost.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// A lock connection and its heartbeat. The server ends the session after
/// `TVERR_WRITE_LEASE_SECONDS` without a statement (`idle_session_timeout`), which lets go of its
/// locks; the heartbeat sends one every third of that while the process runs. A process that is
/// stopped (SIGSTOP, a hung VM) sends none, and its locks go after the lease.
#[derive(Debug)]
pub(crate) struct Lease {
    conn: Arc<tokio::sync::Mutex<sqlx::AnyConnection>>,
    lost: Arc<std::sync::atomic::AtomicBool>,
    beat: tokio::task::JoinHandle<()>,
}

impl Lease {
    fn new(conn: sqlx::AnyConnection, lease: std::time::Duration) -> Self {
        let conn = Arc::new(tokio::sync::Mutex::new(conn));
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let beat = {
            let (conn, lost) = (conn.clone(), lost.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let mut c = conn.lock().await;
                    if sqlx::Executor::execute(&mut *c, "SELECT 1").await.is_err() {
                        lost.store(true, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                }
            })
        };
        Self { conn, lost, beat }
    }

    async fn confirm(&self, r: &DatasetRef) -> Result<(), StoreError> {
        let lost = || StoreError::LockLost { dataset: r.to_string() };
        if self.lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(lost());
        }
        let mut c = self.conn.lock().await;
        if sqlx::Executor::execute(&mut *c, "SELECT 1").await.is_err() {
            self.lost.store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(lost());
        }
        Ok(())
    }

    async fn execute(&self, sql: &str, number: i64) -> Result<(), sqlx::Error> {
        let mut c = self.conn.lock().await;
        sqlx::query(sql).bind(number).execute(&mut *c).await.map(|_| ())
    }

    async fn close(self) {
        self.beat.abort();
        // Once the heartbeat has stopped, the connection is this lease's alone.
        let _ = self.beat.await;
        if let Ok(conn) = Arc::try_unwrap(self.conn) {
            let _ = conn.into_inner().close().await;
        }
    }
}

/// The write locks of several datasets ([`Store::lock_datasets`]), let go one by one.
#[derive(Debug)]
pub(crate) enum Locks {
    /// Advisory locks on one PostgreSQL connection.
    Postgres { lease: Lease, held: Vec<DatasetRef> },
    /// One lock each.
    Each(Vec<(DatasetRef, Held)>),
}

impl Locks {
    /// Lets go of one dataset's lock.
    pub(crate) async fn release(&mut self, r: &DatasetRef) {
        match self {
            Locks::Postgres { lease, held } => {
                if let Some(at) = held.iter().position(|h| h == r) {
                    held.remove(at);
                    // If this fails, closing the connection lets go of it.
                    let _ = lease.execute("SELECT pg_advisory_unlock($1)", lock_number(r)).await;
                }
            }
            Locks::Each(held) => {
                if let Some(at) = held.iter().position(|(h, _)| h == r) {
                    held.remove(at).1.release().await;
                }
            }
        }
    }

    /// Lets go of every lock still held.
    pub(crate) async fn release_all(self) {
        match self {
            Locks::Postgres { lease, .. } => lease.close().await,
            Locks::Each(held) => {
                for (_, h) in held {
                    h.release().await;
                }
            }
        }
    }
}

impl Writing {
    /// Right before a commit: whether the lock is still this write's
    /// ([`StoreError::LockLost`] if not: then nothing may be committed).
    pub(crate) async fn confirm(&self) -> Result<(), StoreError> {
        self.held.confirm(&self.r).await
    }
}

/// A write under way: the lock and the record of it.
#[derive(Debug)]
pub(crate) struct Writing {
    r: DatasetRef,
    /// Its id, named by the version it commits (`Recording::write`).
    pub(crate) id: String,
    held: Held,
    what: &'static str,
    started: std::time::Instant,
}

/// The in-process locks of catalogues without a file.
static MEMORY_LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> = LazyLock::new(Default::default);

/// A number of seconds from the environment, at least `least`, or `default`.
fn seconds_from_env(name: &str, default: u64, least: u64) -> Result<std::time::Duration, StoreError> {
    let seconds = match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map_err(|_| StoreError::Config { message: format!("{name}: expected a whole number of seconds, found {v:?}") })?,
        Err(_) => default,
    };
    Ok(std::time::Duration::from_secs(seconds.max(least)))
}

/// How long a write waits for another write of the same dataset (`TVERR_WRITE_WAIT_SECONDS`,
/// default 60) before it gives up with [`StoreError::Busy`].
fn write_wait() -> Result<std::time::Duration, StoreError> {
    seconds_from_env("TVERR_WRITE_WAIT_SECONDS", 60, 1)
}

/// How long a PostgreSQL session holding write locks may say nothing before the server ends it
/// and its locks go (`TVERR_WRITE_LEASE_SECONDS`, default 30, at least 3).
fn write_lease() -> Result<std::time::Duration, StoreError> {
    seconds_from_env("TVERR_WRITE_LEASE_SECONDS", 30, 3)
}

/// The advisory-lock number of a dataset: 64 bits of a hash of its name.
fn lock_number(r: &DatasetRef) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("tverr-dataset-write:{r}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl Store {
    /// A PostgreSQL connection of its own for advisory locks: it waits `wait` for a lock, and a
    /// node that is gone loses its locks when the server's keepalive probes go unanswered.
    async fn lock_connection(&self, wait: std::time::Duration) -> Result<Lease, StoreError> {
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        // Waiting for the lock is no slow statement to warn of.
        let options = sqlx::any::AnyConnectOptions::from_str(self.catalog.url())?
            .log_statements(tracing::log::LevelFilter::Off)
            .log_slow_statements(tracing::log::LevelFilter::Off, wait);
        let mut conn = sqlx::AnyConnection::connect_with(&options).await?;
        // A writer on a host that is gone (a partition, a power cut) loses the lock when the
        // server's keepalive probes go unanswered, within about 30 s.
        let lease = write_lease()?;
        let settings = format!(
            "SET lock_timeout = '{}s'; SET idle_session_timeout = '{}s'; \
             SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 4",
            wait.as_secs(),
            lease.as_secs()
        );
        sqlx::Executor::execute(&mut conn, settings.as_str()).await?;
        Ok(Lease::new(conn, lease))
    }

    /// Takes a dataset's advisory lock on a lock connection.
    async fn advisory_lock(lease: &Lease, r: &DatasetRef, wait: std::time::Duration) -> Result<(), StoreError> {
        match lease.execute("SELECT pg_advisory_lock($1)", lock_number(r)).await {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                Err(StoreError::Busy { dataset: r.to_string(), seconds: wait.as_secs() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the write locks of several datasets, in the order given (a backup's: every
    /// dataset's, in name order; writers take one lock each, so this cannot deadlock with them).
    /// On PostgreSQL they share one connection.
    pub(crate) async fn lock_datasets(&self, refs: &[DatasetRef]) -> Result<Locks, StoreError> {
        if !self.catalog.is_sqlite() {
            let wait = write_wait()?;
            let lease = self.lock_connection(wait).await?;
            for r in refs {
                Self::advisory_lock(&lease, r, wait).await?;
            }
            return Ok(Locks::Postgres { lease, held: refs.to_vec() });
        }
        let mut held = Vec::new();
        for r in refs {
            held.push((r.clone(), self.lock_dataset(r).await?));
        }
        Ok(Locks::Each(held))
    }

    /// Takes a dataset's write lock, waiting for another writer to finish.
    async fn lock_dataset(&self, r: &DatasetRef) -> Result<Held, StoreError> {
        let wait = write_wait()?;
        let busy = || StoreError::Busy { dataset: r.to_string(), seconds: wait.as_secs() };
        if !self.catalog.is_sqlite() {
            let lease = self.lock_connection(wait).await?;
            Self::advisory_lock(&lease, r, wait).await?;
            return Ok(Held::Postgres(lease));
        }
        match self.catalog.sqlite_file() {
            Some(db) => {
                let dir = std::path::PathBuf::from(format!("{}.locks", db.display()));
                let path = dir.join(format!("{}.{}", r.org, r.dataset));
                let failed = |e: std::io::Error| StoreError::Config { message: format!("cannot lock {r} for writing: {e}") };
                std::fs::create_dir_all(&dir).map_err(failed)?;
                let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(failed)?;
                let deadline = std::time::Instant::now() + wait;
                loop {
                    match file.try_lock() {
                        Ok(()) => return Ok(Held::File { _file: file }),
                        Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        Err(std::fs::TryLockError::WouldBlock) => return Err(busy()),
                        Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
                    }
                }
            }
            None => {
                let lock = MEMORY_LOCKS.lock().unwrap_or_else(|p| p.into_inner()).entry(r.to_string()).or_default().clone();
                tokio::time::timeout(wait, lock.lock_owned()).await.map(|guard| Held::Memory { _guard: guard }).map_err(|_| busy())
            }
        }
    }

    /// Starts a write of `r`: takes its lock, finishes a write a crash left, and records this one
    /// as under way.
    pub(crate) async fn begin_write(&self, r: &DatasetRef, what: &'static str) -> Result<Writing, StoreError> {
        let started = std::time::Instant::now();
        let held = self.lock_dataset(r).await?;
        self.recover_locked(r).await?;
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query("INSERT INTO dataset_writes (id, org, dataset, what, started_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&id)
            .bind(r.org.as_str())
            .bind(r.dataset.as_str())
            .bind(what)
            .bind(Timestamp::now().to_string())
            .execute(self.catalog.pool())
            .await?;
        Ok(Writing { r: r.clone(), id, held, what, started })
    }

    /// Ends a write: a failed one is cleaned up at once (what it committed is recorded, the
    /// files it left are deleted); then the record of it goes and the lock is released. A
    /// cleanup that fails leaves the record for the next writer.
    pub(crate) async fn end_write(&self, writing: Writing, succeeded: bool) {
        let Writing { r, id, held, what, started } = writing;
        tverr_core::metrics::write(what, if succeeded { "ok" } else { "failed" }, started.elapsed());
        if succeeded {
            if let Err(e) = sqlx::query("DELETE FROM dataset_writes WHERE id = $1").bind(&id).execute(self.catalog.pool()).await {
                tracing::warn!(dataset = %r, error = %e, "the record of a finished write stays; the next write of the dataset removes it");
            }
            held.release().await;
            return;
        }
        let held = match self.still_held(&r, held).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(dataset = %r, error = %e, "a failed write could not take its lock again to clean up; the next write of the dataset does it");
                return;
            }
        };
        if let Err(e) = self.recover_locked(&r).await {
            tracing::warn!(dataset = %r, error = %e, "a failed write could not be cleaned up; the next write of the dataset does it");
        }
        held.release().await;
    }

    /// The lock, or, when it was lost (this node was stopped for longer than the lease), the lock
    /// taken again, with a record of this write so that what it left is cleaned up under it.
    async fn still_held(&self, r: &DatasetRef, held: Held) -> Result<Held, StoreError> {
        if !held.lost() && held.confirm(r).await.is_ok() {
            return Ok(held);
        }
        held.release().await;
        tracing::warn!(dataset = %r, "this write lost its lock (the node was stopped for longer than the lease); taking it again to clean up");
        let held = self.lock_dataset(r).await?;
        sqlx::query("INSERT INTO dataset_writes (id, org, dataset, what, started_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(r.org.as_str())
            .bind(r.dataset.as_str())
            .bind("cleanup")
            .bind(Timestamp::now().to_string())
            .execute(self.catalog.pool())
            .await?;
        Ok(held)
    }

    /// Ends a write that failed once its commit was under way, finishing it as a crash would be
    /// finished: `Some(version)` when its commit landed (the version is recorded now), `None`
    /// when the lake holds nothing of it, [`StoreError::OutcomeUnknown`] when the lake or the
    /// catalogue still does not answer.
    pub(crate) async fn settle_interrupted(&self, writing: Writing) -> Result<Option<i64>, StoreError> {
        let Writing { r, id, held, what, started } = writing;
        tverr_core::metrics::write(what, "failed", started.elapsed());
        let recovered = match self.still_held(&r, held).await {
            Ok(held) => {
                let recovered = self.recover_locked(&r).await;
                held.release().await;
                recovered
            }
            Err(e) => Err(e),
        };
        match recovered {
            Ok(recorded) => {
                let version = recorded.unwrap_or_default().into_iter().find(|(_, w)| *w == id).map(|(v, _)| v);
                if let Some(version) = version {
                    tracing::warn!(dataset = %r, version, "a write that failed after its commit had landed; its version is recorded");
                }
                Ok(version)
            }
            Err(e) => {
                tracing::warn!(dataset = %r, error = %e, "cannot tell whether an interrupted commit landed");
                Err(StoreError::OutcomeUnknown { dataset: r.to_string() })
            }
        }
    }

    /// Finishes every write a crash interrupted (see the module documentation), each under its
    /// dataset's lock; returns the datasets it found such a write in. A node runs it as it
    /// starts.
    pub async fn recover_interrupted(&self) -> Result<Vec<DatasetRef>, StoreError> {
        let rows = sqlx::query("SELECT DISTINCT org, dataset FROM dataset_writes").fetch_all(self.catalog.pool()).await?;
        let mut found = Vec::new();
        for row in rows {
            let name = format!("{}/{}", row.try_get::<String, _>("org")?, row.try_get::<String, _>("dataset")?);
            let r: DatasetRef = name.parse().map_err(|e: tverr_core::ModelError| StoreError::Read(e.to_string()))?;
            let held = self.lock_dataset(&r).await?;
            let recovered = self.recover_locked(&r).await;
            held.release().await;
            if recovered?.is_some() {
                found.push(r);
            }
        }
        Ok(found)
    }

    /// With the dataset's lock held: finishes an interrupted write of it, if one was left
    /// (`None`: none was), and gives the versions it recorded with the write that made each.
    pub(crate) async fn recover_locked(&self, r: &DatasetRef) -> Result<Option<Vec<(i64, String)>>, StoreError> {
        let left: Vec<String> = sqlx::query_scalar("SELECT id FROM dataset_writes WHERE org = $1 AND dataset = $2")
            .bind(r.org.as_str())
            .bind(r.dataset.as_str())
            .fetch_all(self.catalog.pool())
            .await?;
        if left.is_empty() {
            return Ok(None);
        }
        tracing::warn!(dataset = %r, writes = left.len(), "finishing a write that was interrupted");
        tverr_core::metrics::recovered();
        let mut recorded = Vec::new();
        if !self.catalog.dataset_exists(r).await? {
            if self.lake.exists(r).await? {
                let store = self.lake.log_store(r)?.object_store(None);
                let all: Vec<_> = store.list(None).try_collect().await.map_err(storage)?;
                for object in &all {
                    store.delete(&object.location).await.map_err(storage)?;
                }
                tracing::warn!(dataset = %r, objects = all.len(), "removed the table of a create that did not finish");
            }
        } else if self.lake.exists(r).await? {
            recorded = self.finish_versions(r).await?;
            let removed = self.sweep(r).await?;
            if removed > 0 {
                tracing::warn!(dataset = %r, files = removed, "deleted files an interrupted write left");
            }
        }
        for id in left {
            sqlx::query("DELETE FROM dataset_writes WHERE id = $1").bind(id).execute(self.catalog.pool()).await?;
        }
        Ok(Some(recorded))
    }

    /// Records the versions the lake committed after the catalogue's latest, and finishes an
    /// erasure whose clean-up did not run.
    async fn finish_versions(&self, r: &DatasetRef) -> Result<Vec<(i64, String)>, StoreError> {
        let versions = self.catalog.versions(r).await?;
        let Some(recorded) = versions.last().map(|v| v.version) else { return Ok(Vec::new()) };
        let table = self.lake.open(r, None).await?;
        let latest = table.version().unwrap_or(0) as i64;
        let log = table.log_store();
        let mut rolled = Vec::new();
        let mut erased = versions.iter().filter(|v| v.mode == VersionMode::Erase).map(|v| v.version).max();
        for version in recorded + 1..=latest {
            let Some(info) = commit_info(log.as_ref(), version).await? else { continue };
            let Some(recording) = info.get(RECORDING).cloned() else { continue };
            let recording: Recording = serde_json::from_value(recording)
                .map_err(|e| StoreError::Read(format!("version {version} of {r}: its {RECORDING} cannot be read: {e}")))?;
            let at = info
                .get("timestamp")
                .and_then(serde_json::Value::as_i64)
                .and_then(chrono::DateTime::from_timestamp_millis)
                .map(Timestamp::from)
                .unwrap_or_else(Timestamp::now);
            let meta = VersionMeta {
                version,
                committed_at: at,
                actor: recording.actor.clone(),
                mode: recording.mode,
                rows_written: recording.rows_written,
                rows_removed: recording.rows_removed,
                source_name: recording.source_name.clone(),
                source_sha256: recording.source_sha256.clone(),
                source_format: recording.source_format.clone(),
            };
            self.catalog.record_version(r, None, &recording.columns, &meta, &crate::index::IndexChange::default()).await?;
            if !recording.categories.is_empty() {
                self.catalog.set_categories(r, &recording.categories).await?;
            }
            if !recording.descriptions.is_empty() {
                self.catalog.set_descriptions(r, &recording.descriptions).await?;
            }
            if recording.mode == VersionMode::Erase {
                erased = Some(version);
            }
            tracing::warn!(dataset = %r, version, "recorded a version committed to storage before the write was interrupted");
            rolled.push((version, recording.write.clone()));
        }
        if !rolled.is_empty() {
            self.rebuild_index(r).await?;
        }
        if let Some(version) = erased {
            let store = log.object_store(None);
            if crate::lake::first_logged(&store).await.is_some_and(|first| first < version) {
                self.finish_erasure(r, version).await?;
                tracing::warn!(dataset = %r, version, "finished the clean-up of an interrupted erasure");
            }
        }
        Ok(rolled)
    }

    /// Deletes the data files and deletion vectors of a table that no version in its log names.
    async fn sweep(&self, r: &DatasetRef) -> Result<usize, StoreError> {
        let table = self.lake.open(r, None).await?;
        let latest = table.version().unwrap_or(0) as i64;
        let log = table.log_store();
        let store = log.object_store(None);
        let first = crate::lake::first_logged(&store).await.unwrap_or(0);
        let mut named: HashSet<String> = HashSet::new();
        let oldest = self.lake.open(r, Some(first)).await?;
        let views: Vec<_> = oldest.snapshot()?.snapshot().file_views(log.as_ref(), None).try_collect().await?;
        for view in views {
            named.insert(view.path().to_string());
            if let Some(name) = view.deletion_vector_descriptor().and_then(|d| crate::deletions::file_name(&d)) {
                named.insert(name);
            }
        }
        for version in first + 1..=latest {
            let Some(bytes) = log.read_commit_entry(version as _).await? else { continue };
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let action: serde_json::Value =
                    serde_json::from_slice(line).map_err(|e| StoreError::Read(format!("version {version} of {r}: {e}")))?;
                for kind in ["add", "remove"] {
                    let Some(a) = action.get(kind) else { continue };
                    if let Some(path) = a.get("path").and_then(serde_json::Value::as_str) {
                        named.insert(percent_decoded(path));
                    }
                    if let Some(name) = a
                        .get("deletionVector")
                        .and_then(|d| serde_json::from_value::<DeletionVectorDescriptor>(d.clone()).ok())
                        .and_then(|d| crate::deletions::file_name(&d))
                    {
                        named.insert(name);
                    }
                }
            }
        }
        let all: Vec<_> = store.list(None).try_collect().await.map_err(storage)?;
        let mut deleted = 0;
        for object in all {
            let path = object.location.to_string();
            let ours = path.ends_with(".parquet") || object.location.filename().is_some_and(|n| n.starts_with("deletion_vector_"));
            if path.starts_with("_delta_log/") || !ours || named.contains(&path) {
                continue;
            }
            store.delete(&object.location).await.map_err(storage)?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

/// The commit info of a version, `None` when its log entry is gone (before an erasure).
async fn commit_info(log: &dyn deltalake::logstore::LogStore, version: i64) -> Result<Option<serde_json::Value>, StoreError> {
    let Some(bytes) = log.read_commit_entry(version as _).await? else { return Ok(None) };
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let action: serde_json::Value = serde_json::from_slice(line).map_err(|e| StoreError::Read(format!("version {version}: {e}")))?;
        if let Some(info) = action.get("commitInfo") {
            return Ok(Some(info.clone()));
        }
    }
    Ok(None)
}

/// A path as the log writes it (percent-encoded) as the object store lists it.
fn percent_decoded(path: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| path.to_string())
}

fn storage(e: object_store::Error) -> StoreError {
    StoreError::Read(e.to_string())
}
