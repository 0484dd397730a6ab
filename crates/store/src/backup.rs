//! Backups: the catalogue, the deployment's key files and the lake, copied at one catalogue
//! generation, and put back into an empty deployment.
//!
//! A backup takes every dataset's write lock (in name order; a writer takes one, so the two
//! cannot deadlock), finishes a write a crash left, and reads the whole catalogue in one snapshot
//! transaction. With the locks held, each dataset's table in the lake is exactly the version the
//! snapshot records; the backup copies it and lets go of that dataset's lock. Reads never wait,
//! and a write waits only until its dataset is copied. The key files and the access log's
//! witness are copied before the snapshot, so the witness never names an entry the backup lacks.
//!
//! A backup directory holds `manifest.json` (written last: a directory without it is no
//! backup), `catalog/TABLE.ndjson` (a header line with the columns, then one JSON array per
//! row), `lake/ORG/DATASET/…` (the table's objects) and `files/NAME` (the key files). The
//! manifest names every file with its size and SHA-256; a restore checks them all before it
//! changes anything.
//!
//! A restore goes into a catalogue with no rows and a lake without the backup's tables, of
//! either kind (a SQLite backup restores into PostgreSQL and back). It writes the key files and
//! the lake first and the catalogue last, in one transaction; if anything fails, it removes what
//! it wrote.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use sqlx::Row;
use tokio::io::AsyncWriteExt;
use tverr_core::DatasetRef;

use crate::{Store, StoreError, Timestamp};

/// The `format` of a manifest this version writes and reads.
pub const BACKUP_FORMAT: &str = "tverr-backup/1";

/// The manifest's file name in a backup directory.
const MANIFEST: &str = "manifest.json";

/// The largest manifest a restore reads.
const MANIFEST_MAX_BYTES: u64 = 512 << 20;

/// How often a backup tries again when a dataset was created while it took the locks.
const SNAPSHOT_ATTEMPTS: usize = 5;

/// Tables a backup leaves out: sqlx's own, and state that lives minutes (writes under way, log-in
/// attempts and pending log-ins, web uploads between their steps, whose files are not copied).
const TRANSIENT: [&str; 5] = ["_sqlx_migrations", "dataset_writes", "login_attempts", "oidc_pending", "web_uploads"];

/// A file of the deployment outside the catalogue and the lake (a key, the log's witness).
#[derive(Debug, Clone)]
pub struct DeploymentFile {
    /// Its name in the backup (`files/NAME`).
    pub name: String,
    /// Where the deployment keeps it.
    pub path: PathBuf,
    /// Whether a backup without it is refused (the keys) or it may be absent (the witness).
    pub required: bool,
}

/// What a backup holds: `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`BACKUP_FORMAT`].
    pub format: String,
    /// The Tverr version that wrote it.
    pub tverr_version: String,
    /// When the catalogue was read.
    pub created_at: String,
    /// The catalogue generation it was read at.
    pub generation: i64,
    /// `sqlite` or `postgres`: the catalogue it was read from.
    pub dialect: String,
    /// The catalogue's migrations, by number.
    pub migrations: Vec<i64>,
    /// Every dataset at the version the catalogue records.
    pub datasets: Vec<BackedUpDataset>,
    /// Every catalogue table, in the order it was created (a restore inserts in this order).
    pub tables: Vec<BackedUpTable>,
    /// Every file of the backup but the manifest: its path, size and SHA-256.
    pub files: BTreeMap<String, BackedUpFile>,
}

/// A dataset in a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackedUpDataset {
    /// `ORG/DATASET`.
    pub dataset: String,
    /// Its latest version; `None` for a dataset without a table.
    pub version: Option<i64>,
    /// How many objects of its table the backup holds.
    pub objects: u64,
}

/// A catalogue table in a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackedUpTable {
    /// Its name.
    pub name: String,
    /// Its columns: name and kind.
    pub columns: Vec<(String, ColumnKind)>,
    /// How many rows it had.
    pub rows: u64,
}

/// The kind of a catalogue column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// A whole number.
    Integer,
    /// Text.
    Text,
}

/// A file in a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackedUpFile {
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, in hex.
    pub sha256: String,
}

impl Manifest {
    /// Bytes of all files together.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.bytes).sum()
    }

    /// Rows of all catalogue tables together.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

fn failed(path: &Path, message: impl std::fmt::Display) -> StoreError {
    StoreError::Backup { path: path.display().to_string(), message: message.to_string() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a directory that only its owner may read.
fn private_dir(path: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(|e| failed(path, format!("cannot create the directory: {e}")))
}

/// A file being written into the backup, hashed as it goes.
struct Writer {
    file: tokio::fs::File,
    hash: sha2::Sha256,
    bytes: u64,
    path: PathBuf,
}

impl Writer {
    async fn create(root: &Path, relative: &str) -> Result<Self, StoreError> {
        let path = root.join(relative);
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(&path).await.map_err(|e| failed(&path, format!("cannot create: {e}")))?;
        Ok(Self { file, hash: sha2::Sha256::new(), bytes: 0, path })
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.file.write_all(bytes).await.map_err(|e| failed(&self.path, format!("cannot write: {e}")))
    }

    async fn finish(mut self) -> Result<BackedUpFile, StoreError> {
        self.file.flush().await.map_err(|e| failed(&self.path, format!("cannot write: {e}")))?;
        self.file.sync_all().await.map_err(|e| failed(&self.path, format!("cannot write: {e}")))?;
        Ok(BackedUpFile { bytes: self.bytes, sha256: hex(&self.hash.finalize()) })
    }
}

/// A name of a catalogue table or column as a backup may carry it.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// A path inside a backup: relative, `/`-separated, no empty, `.` or `..` part.
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.contains('\0')
        && path.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
}

/// The catalogue's tables (but sqlx's own and the writes under way), in the order they were made.
async fn tables<'c, E>(executor: E, sqlite: bool) -> Result<Vec<String>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = if sqlite {
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
    } else {
        "SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY c.oid"
    };
    let names: Vec<String> = sqlx::query_scalar(sql).fetch_all(executor).await?;
    Ok(names.into_iter().filter(|n| !TRANSIENT.contains(&n.as_str())).collect())
}

/// A table's columns and the kind of their values.
async fn columns<'c, E>(executor: E, sqlite: bool, table: &str) -> Result<Vec<(String, ColumnKind)>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let sql = if sqlite {
        "SELECT name, type FROM pragma_table_info($1) ORDER BY cid"
    } else {
        "SELECT column_name::text AS name, data_type::text AS type FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
    };
    let rows = sqlx::query(sql).bind(table).fetch_all(executor).await?;
    let mut out = Vec::new();
    for row in rows {
        let name: String = row.try_get("name")?;
        let declared: String = row.try_get("type")?;
        let kind = match declared.to_ascii_lowercase().as_str() {
            "integer" | "bigint" | "int" | "int8" | "int4" | "smallint" => ColumnKind::Integer,
            "text" => ColumnKind::Text,
            other => {
                return Err(StoreError::Config {
                    message: format!("catalogue column {table}.{name} has the type {other}, which a backup cannot copy"),
                });
            }
        };
        out.push((name, kind));
    }
    Ok(out)
}

fn select_all(table: &str, columns: &[(String, ColumnKind)]) -> String {
    let names: Vec<String> = columns.iter().map(|(c, _)| format!("\"{c}\"")).collect();
    format!(
        "SELECT {} FROM \"{table}\" ORDER BY {}",
        names.join(", "),
        (1..=columns.len()).map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
    )
}

impl Store {
    /// Copies the catalogue, `files` and the lake into `dest` (absent or empty), consistent at
    /// one catalogue generation (see the module documentation).
    pub async fn backup(&self, dest: &Path, files: &[DeploymentFile]) -> Result<Manifest, StoreError> {
        if dest.exists() {
            let mut entries = std::fs::read_dir(dest).map_err(|e| failed(dest, format!("cannot read the directory: {e}")))?;
            if entries.next().is_some() {
                return Err(failed(dest, "the directory is not empty; a backup goes into a new directory"));
            }
        }
        private_dir(dest)?;
        let mut written = BTreeMap::new();
        for f in files {
            if !plain_name(&f.name.replace(['-', '.'], "_")) {
                return Err(failed(&f.path, format!("{:?} is not a name for a file in a backup", f.name)));
            }
            let bytes = match tokio::fs::read(&f.path).await {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !f.required => continue,
                Err(e) => return Err(failed(&f.path, format!("cannot read the deployment's {}: {e}", f.name))),
            };
            let relative = format!("files/{}", f.name);
            let mut w = Writer::create(dest, &relative).await?;
            w.write(&bytes).await?;
            written.insert(relative, w.finish().await?);
        }

        let sqlite = self.catalog.is_sqlite();
        let mut attempt = 0;
        let (mut locks, mut manifest) = loop {
            attempt += 1;
            let mut names: Vec<DatasetRef> = self.catalog.datasets().await?.iter().filter_map(|d| d.reference().parse().ok()).collect();
            names.sort();
            let locks = self.lock_datasets(&names).await?;
            for r in &names {
                self.recover_locked(r).await?;
            }
            match self.read_catalog(dest, sqlite, &names).await {
                Ok(Some(manifest)) => break (locks, manifest),
                Ok(None) if attempt < SNAPSHOT_ATTEMPTS => {
                    locks.release_all().await;
                    continue;
                }
                Ok(None) => {
                    locks.release_all().await;
                    return Err(failed(dest, "datasets were created faster than the backup could lock them; try again"));
                }
                Err(e) => {
                    locks.release_all().await;
                    return Err(e);
                }
            }
        };
        manifest.files.append(&mut written);

        let mut copied = Ok(());
        for d in &mut manifest.datasets {
            let r: DatasetRef = d.dataset.parse().map_err(|e: tverr_core::ModelError| StoreError::Read(e.to_string()))?;
            let result = self.copy_table(dest, &r, d, &mut manifest.files).await;
            locks.release(&r).await;
            if let Err(e) = result {
                copied = Err(e);
                break;
            }
        }
        locks.release_all().await;
        copied?;

        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| failed(dest, e))?;
        let mut w = Writer::create(dest, MANIFEST).await?;
        w.write(&text).await?;
        w.finish().await?;
        tracing::info!(generation = manifest.generation, datasets = manifest.datasets.len(), bytes = manifest.bytes(), "backup written");
        Ok(manifest)
    }

    /// Reads the catalogue in one snapshot into `dest/catalog/`; `None` when it holds a dataset
    /// outside `locked` (created while the locks were being taken).
    async fn read_catalog(&self, dest: &Path, sqlite: bool, locked: &[DatasetRef]) -> Result<Option<Manifest>, StoreError> {
        let mut tx = self.catalog.pool().begin().await?;
        if !sqlite {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        }
        let present: Vec<(String, String)> =
            sqlx::query_as("SELECT org, slug FROM datasets ORDER BY org, slug").fetch_all(&mut *tx).await?;
        let locked: HashSet<String> = locked.iter().map(|r| r.to_string()).collect();
        if present.iter().any(|(o, d)| !locked.contains(&format!("{o}/{d}"))) {
            return Ok(None);
        }
        let generation: i64 = sqlx::query_scalar("SELECT n FROM catalog_generation WHERE id = 1").fetch_one(&mut *tx).await?;
        let migrations: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(&mut *tx).await?;
        let latest: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT org, dataset, max(version) FROM dataset_versions GROUP BY org, dataset").fetch_all(&mut *tx).await?;
        let latest: BTreeMap<String, i64> = latest.into_iter().map(|(o, d, v)| (format!("{o}/{d}"), v)).collect();
        let datasets = present
            .iter()
            .map(|(o, d)| {
                let name = format!("{o}/{d}");
                BackedUpDataset { version: latest.get(&name).copied(), dataset: name, objects: 0 }
            })
            .collect();
        let mut manifest = Manifest {
            format: BACKUP_FORMAT.into(),
            tverr_version: env!("CARGO_PKG_VERSION").into(),
            created_at: Timestamp::now().to_string(),
            generation,
            dialect: if sqlite { "sqlite" } else { "postgres" }.into(),
            migrations,
            datasets,
            tables: Vec::new(),
            files: BTreeMap::new(),
        };
        for table in tables(&mut *tx, sqlite).await? {
            let columns = columns(&mut *tx, sqlite, &table).await?;
            let relative = format!("catalog/{table}.ndjson");
            let mut w = Writer::create(dest, &relative).await?;
            let mut header = serde_json::to_vec(&serde_json::json!({"table": table, "columns": columns})).map_err(|e| failed(dest, e))?;
            header.push(b'\n');
            w.write(&header).await?;
            let sql = select_all(&table, &columns);
            let mut rows = sqlx::query(&sql).fetch(&mut *tx);
            let mut count = 0u64;
            let mut line = Vec::with_capacity(1024);
            while let Some(row) = rows.try_next().await? {
                let mut values = Vec::with_capacity(columns.len());
                for (i, (_, kind)) in columns.iter().enumerate() {
                    values.push(match kind {
                        ColumnKind::Integer => row.try_get::<Option<i64>, _>(i)?.map_or(serde_json::Value::Null, serde_json::Value::from),
                        ColumnKind::Text => row.try_get::<Option<String>, _>(i)?.map_or(serde_json::Value::Null, serde_json::Value::from),
                    });
                }
                line.clear();
                serde_json::to_writer(&mut line, &values).map_err(|e| failed(dest, e))?;
                line.push(b'\n');
                w.write(&line).await?;
                count += 1;
            }
            drop(rows);
            manifest.files.insert(relative, w.finish().await?);
            manifest.tables.push(BackedUpTable { name: table, columns, rows: count });
        }
        tx.rollback().await?;
        Ok(Some(manifest))
    }

    /// Copies a dataset's table (its lock held) into `dest/lake/ORG/DATASET/`.
    async fn copy_table(
        &self,
        dest: &Path,
        r: &DatasetRef,
        d: &mut BackedUpDataset,
        files: &mut BTreeMap<String, BackedUpFile>,
    ) -> Result<(), StoreError> {
        if !self.lake.exists(r).await? {
            if d.version.is_some() {
                return Err(StoreError::Read(format!("{r}: the catalogue records version {:?} and storage has no table", d.version)));
            }
            return Ok(());
        }
        let table = self.lake.open(r, None).await?;
        let latest = table.version().unwrap_or(0) as i64;
        if d.version != Some(latest) {
            return Err(StoreError::Read(format!("{r}: the catalogue records version {:?} and storage holds {latest}", d.version)));
        }
        let store = self.lake.log_store(r)?.object_store(None);
        let objects: Vec<_> = store.list(None).try_collect().await.map_err(|e| StoreError::Read(e.to_string()))?;
        for object in objects {
            let relative = format!("lake/{}/{}/{}", r.org, r.dataset, object.location);
            let mut w = Writer::create(dest, &relative).await?;
            let mut stream = store.get(&object.location).await.map_err(|e| StoreError::Read(e.to_string()))?.into_stream();
            while let Some(chunk) = stream.next().await {
                w.write(&chunk.map_err(|e| StoreError::Read(e.to_string()))?).await?;
            }
            files.insert(relative, w.finish().await?);
            d.objects += 1;
        }
        Ok(())
    }

    /// Puts the backup in `from` into this deployment: its catalogue must have no rows, its lake
    /// none of the backup's tables, and `files` must be absent or hold what the backup holds.
    pub async fn restore(&self, from: &Path, files: &[DeploymentFile]) -> Result<Manifest, StoreError> {
        let manifest = read_manifest(from).await?;
        let sqlite = self.catalog.is_sqlite();
        let here: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version").fetch_all(self.catalog.pool()).await?;
        if here != manifest.migrations {
            return Err(failed(
                &from.join(MANIFEST),
                format!(
                    "the backup's catalogue has migrations {:?} and this version of Tverr {here:?}; restore with the version that wrote it ({})",
                    manifest.migrations, manifest.tverr_version
                ),
            ));
        }
        for (relative, file) in &manifest.files {
            check_file(from, relative, file).await?;
        }
        // Every table must be one this catalogue has, with the same columns.
        let target_tables = tables(self.catalog.pool(), sqlite).await?;
        let mut plan = Vec::new();
        for t in &manifest.tables {
            let Some(name) = target_tables.iter().find(|n| **n == t.name) else {
                return Err(failed(&from.join(MANIFEST), format!("table {:?}: this catalogue has no such table", t.name)));
            };
            let target_columns = columns(self.catalog.pool(), sqlite, name).await?;
            for (c, kind) in &t.columns {
                if !target_columns.iter().any(|(n, k)| n == c && k == kind) {
                    return Err(failed(&from.join(MANIFEST), format!("table {}: this catalogue has no {kind:?} column {c:?}", t.name)));
                }
            }
            let relative = format!("catalog/{}.ndjson", t.name);
            if !manifest.files.contains_key(&relative) {
                return Err(failed(&from.join(MANIFEST), format!("table {}: its file {relative} is not listed", t.name)));
            }
            plan.push((name.clone(), t, from.join(&relative)));
        }
        for name in &target_tables {
            if name == "catalog_generation" {
                continue;
            }
            let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{name}\"")).fetch_one(self.catalog.pool()).await?;
            if rows > 0 {
                return Err(StoreError::Config {
                    message: format!("the catalogue is not empty ({name} has {rows} rows): a backup is restored into a new catalogue"),
                });
            }
        }
        let mut datasets = Vec::new();
        for d in &manifest.datasets {
            let r: DatasetRef = d
                .dataset
                .parse()
                .map_err(|e: tverr_core::ModelError| failed(&from.join(MANIFEST), format!("dataset {:?}: {e}", d.dataset)))?;
            let store = self.lake.log_store(&r)?.object_store(None);
            let any = store.list(None).try_next().await.map_err(|e| StoreError::Read(e.to_string()))?;
            if any.is_some() {
                return Err(StoreError::Config {
                    message: format!("storage already holds a table of {r}: a backup is restored into empty storage"),
                });
            }
            datasets.push((r, d.version));
        }
        let mut placed = Vec::new();
        for f in files {
            let relative = format!("files/{}", f.name);
            let Some(listed) = manifest.files.get(&relative) else { continue };
            match tokio::fs::read(&f.path).await {
                Ok(bytes) if hex(&sha2::Sha256::digest(&bytes)) == listed.sha256 => {}
                Ok(_) => {
                    return Err(failed(&f.path, format!("exists and is not the backup's {}; move it away, or restore elsewhere", f.name)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => placed.push((f.path.clone(), from.join(&relative))),
                Err(e) => return Err(failed(&f.path, e)),
            }
        }

        // Checked: now write, the catalogue last.
        let mut written_files: Vec<PathBuf> = Vec::new();
        let mut written_tables: Vec<DatasetRef> = Vec::new();
        let outcome = async {
            for (target, source) in &placed {
                if let Some(dir) = target.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
                }
                let bytes = tokio::fs::read(source).await.map_err(|e| failed(source, e))?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(target).map_err(|e| failed(target, format!("cannot create: {e}")))?;
                written_files.push(target.clone());
                std::io::Write::write_all(&mut file, &bytes).map_err(|e| failed(target, e))?;
                file.sync_all().map_err(|e| failed(target, e))?;
            }
            for (r, _) in &datasets {
                let prefix = format!("lake/{}/{}/", r.org, r.dataset);
                let store = self.lake.log_store(r)?.object_store(None);
                written_tables.push(r.clone());
                self.lake.prepare(r)?;
                for relative in manifest.files.keys().filter(|p| p.starts_with(&prefix)) {
                    let bytes = tokio::fs::read(from.join(relative)).await.map_err(|e| failed(&from.join(relative), e))?;
                    let location = object_store::path::Path::parse(&relative[prefix.len()..])
                        .map_err(|e| failed(&from.join(relative), format!("not an object name: {e}")))?;
                    store.put(&location, bytes.into()).await.map_err(|e| StoreError::Read(e.to_string()))?;
                }
            }
            self.insert_catalog(&manifest, &plan).await?;
            for (r, version) in &datasets {
                let Some(version) = version else { continue };
                let latest = self.lake.open(r, None).await?.version().unwrap_or(0) as i64;
                if latest != *version {
                    return Err(StoreError::Read(format!("{r}: the backup records version {version} and its table holds {latest}")));
                }
            }
            Ok::<(), StoreError>(())
        }
        .await;
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "the restore failed; removing what it wrote");
            self.undo_restore(&written_tables, &written_files).await;
            return Err(e);
        }
        tracing::info!(generation = manifest.generation, datasets = manifest.datasets.len(), "backup restored");
        Ok(manifest)
    }

    /// Inserts every table's rows in one transaction, and sets the generation the backup had.
    async fn insert_catalog(&self, manifest: &Manifest, plan: &[(String, &BackedUpTable, PathBuf)]) -> Result<(), StoreError> {
        use tokio::io::AsyncBufReadExt;
        let sqlite = self.catalog.is_sqlite();
        let mut tx = self.catalog.begin_write().await?;
        sqlx::query("DELETE FROM catalog_generation").execute(&mut *tx).await?;
        let bind_limit = if sqlite { 30_000 } else { 60_000 };
        for (name, table, path) in plan {
            let width = table.columns.len().max(1);
            let per_statement = (bind_limit / width).clamp(1, 500);
            let file = tokio::fs::File::open(path).await.map_err(|e| failed(path, e))?;
            let mut lines = tokio::io::BufReader::new(file).lines();
            let header = lines.next_line().await.map_err(|e| failed(path, e))?.unwrap_or_default();
            let header: serde_json::Value =
                serde_json::from_str(&header).map_err(|e| failed(path, format!("line 1, column {}: {e}", e.column())))?;
            if header["table"].as_str() != Some(table.name.as_str()) {
                return Err(failed(path, "line 1: the header names another table"));
            }
            let mut batch: Vec<Vec<serde_json::Value>> = Vec::new();
            let mut line_number = 1u64;
            let mut count = 0u64;
            loop {
                let line = lines.next_line().await.map_err(|e| failed(path, e))?;
                let done = line.is_none();
                if let Some(line) = line {
                    line_number += 1;
                    let values: Vec<serde_json::Value> =
                        serde_json::from_str(&line).map_err(|e| failed(path, format!("line {line_number}, column {}: {e}", e.column())))?;
                    if values.len() != table.columns.len() {
                        return Err(failed(
                            path,
                            format!("line {line_number}: {} values for {} columns", values.len(), table.columns.len()),
                        ));
                    }
                    for (value, (column, kind)) in values.iter().zip(&table.columns) {
                        let fits = match kind {
                            ColumnKind::Integer => value.is_null() || value.is_i64(),
                            ColumnKind::Text => value.is_null() || value.is_string(),
                        };
                        if !fits {
                            return Err(failed(path, format!("line {line_number}, column {column}: {value} is not {kind:?}")));
                        }
                    }
                    batch.push(values);
                    count += 1;
                }
                if batch.len() >= per_statement || (done && !batch.is_empty()) {
                    let columns: Vec<String> = table.columns.iter().map(|(c, _)| format!("\"{c}\"")).collect();
                    let mut sql = format!("INSERT INTO \"{name}\" ({}) VALUES ", columns.join(", "));
                    let mut n = 0;
                    for (i, _) in batch.iter().enumerate() {
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        sql.push('(');
                        for j in 0..width {
                            if j > 0 {
                                sql.push_str(", ");
                            }
                            n += 1;
                            sql.push_str(&format!("${n}"));
                        }
                        sql.push(')');
                    }
                    let mut q = sqlx::query(&sql);
                    for values in &batch {
                        for (value, (_, kind)) in values.iter().zip(&table.columns) {
                            q = match kind {
                                ColumnKind::Integer => q.bind(value.as_i64()),
                                ColumnKind::Text => q.bind(value.as_str().map(str::to_string)),
                            };
                        }
                    }
                    q.execute(&mut *tx).await.map_err(|e| failed(path, format!("rows before line {}: {e}", line_number + 1)))?;
                    batch.clear();
                }
                if done {
                    break;
                }
            }
            if count != table.rows {
                return Err(failed(path, format!("{count} rows, and the manifest says {}", table.rows)));
            }
        }
        sqlx::query("UPDATE catalog_generation SET n = $1 WHERE id = 1").bind(manifest.generation).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the tables and files a failed restore wrote.
    async fn undo_restore(&self, tables: &[DatasetRef], files: &[PathBuf]) {
        for r in tables {
            let Ok(store) = self.lake.log_store(r).map(|l| l.object_store(None)) else { continue };
            let Ok(objects) = store.list(None).try_collect::<Vec<_>>().await else { continue };
            for o in objects {
                let _ = store.delete(&o.location).await;
            }
        }
        for f in files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Reads and checks a backup's manifest.
pub async fn read_manifest(from: &Path) -> Result<Manifest, StoreError> {
    let path = from.join(MANIFEST);
    let meta = tokio::fs::metadata(&path).await.map_err(|e| failed(&path, format!("not a complete backup: {e}")))?;
    if meta.len() > MANIFEST_MAX_BYTES {
        return Err(failed(&path, format!("{} bytes: more than a manifest may have", meta.len())));
    }
    let text = tokio::fs::read(&path).await.map_err(|e| failed(&path, e))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| failed(&path, format!("line {}, column {}: {e}", e.line(), e.column())))?;
    if manifest.format != BACKUP_FORMAT {
        return Err(failed(&path, format!("format {:?}: this version reads {BACKUP_FORMAT:?}", manifest.format)));
    }
    for t in &manifest.tables {
        if !plain_name(&t.name) {
            return Err(failed(&path, format!("table {:?}: not a catalogue table's name", t.name)));
        }
        if let Some((c, _)) = t.columns.iter().find(|(c, _)| !plain_name(c)) {
            return Err(failed(&path, format!("table {}: {c:?} is not a column's name", t.name)));
        }
    }
    for (relative, file) in &manifest.files {
        if !safe_relative(relative) {
            return Err(failed(&path, format!("file {relative:?}: not a path inside the backup")));
        }
        if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(failed(&path, format!("file {relative}: {:?} is not a SHA-256", file.sha256)));
        }
    }
    Ok(manifest)
}

/// Checks one file of a backup against its manifest entry.
async fn check_file(from: &Path, relative: &str, listed: &BackedUpFile) -> Result<(), StoreError> {
    use tokio::io::AsyncReadExt;
    let path = from.join(relative);
    let meta = tokio::fs::symlink_metadata(&path).await.map_err(|e| failed(&path, format!("listed in the manifest and missing: {e}")))?;
    if !meta.is_file() {
        return Err(failed(&path, "listed in the manifest and not a regular file"));
    }
    if meta.len() != listed.bytes {
        return Err(failed(&path, format!("{} bytes, and the manifest says {}: the backup is damaged", meta.len(), listed.bytes)));
    }
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| failed(&path, e))?;
    let mut hash = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer).await.map_err(|e| failed(&path, e))?;
        if n == 0 {
            break;
        }
        hash.update(&buffer[..n]);
    }
    if hex(&hash.finalize()) != listed.sha256 {
        return Err(failed(&path, "its SHA-256 is not the manifest's: the backup is damaged"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names_stay_inside() {
        for bad in ["", "/etc/passwd", "../x", "lake/../../x", "a//b", "a/./b", "a\\b", "a\0b"] {
            assert!(!safe_relative(bad), "{bad:?}");
        }
        assert!(safe_relative("lake/hamar/x/_delta_log/00000000000000000000.json"));
        for bad in ["", "a\"b", "Users", "1a", "a;drop", "a b"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
        assert!(plain_name("audit_log"));
    }
}
