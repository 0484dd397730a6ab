//! The catalogue database: one code path for SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! Queries use `$1, $2, …` placeholders in order of appearance, which both backends accept, and
//! portable types only (text, bigint); times are RFC 3339 text.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tverr_core::{Classification, ColumnCategory, DatasetRef, Orgnr, Slug, SubjectKind};

use crate::StoreError;
use crate::quick::QuickReader;
use tverr_ingest::ColumnType;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// An organisation (virksomhet).
#[derive(Debug, Clone, Serialize)]
pub struct Organization {
    /// Slug, e.g. `hamar`.
    pub slug: String,
    /// Name, e.g. "Hamar kommune".
    pub name: String,
    /// Organisasjonsnummer (validated).
    pub orgnr: String,
    /// Kommunenummer, 4 digits, if a municipality.
    pub kommunenummer: Option<String>,
}

/// A department (fagavdeling) of an organisation.
#[derive(Debug, Clone, Serialize)]
pub struct Department {
    /// Owning organisation's slug.
    pub org: String,
    /// Slug within the organisation.
    pub slug: String,
    /// Name.
    pub name: String,
}

/// Metadata for a new dataset.
#[derive(Debug, Clone)]
pub struct NewDataset {
    /// Owning department's slug.
    pub department: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Classification.
    pub classification: Classification,
    /// EU data-theme code (e.g. `EDUC`, `ENVI`, `GOVE`).
    pub theme: Option<String>,
    /// Keywords.
    pub keywords: Vec<String>,
    /// Licence (URI or name).
    pub licence: Option<String>,
    /// Update frequency (e.g. `daily`, `monthly`).
    pub update_frequency: Option<String>,
}

/// An authoritative register of address protection ([`Catalog::set_protection_register`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectionRegister {
    /// `org/dataset`.
    pub dataset: String,
    /// The person key column.
    pub key_column: String,
    /// The column with `ugradert`, `fortrolig` or `strengt_fortrolig`.
    pub status_column: String,
    /// Who named it.
    pub set_by: String,
    /// When (RFC 3339).
    pub set_at: String,
}

/// A link that carries address protection through a key that is not a subject key
/// ([`Catalog::set_protection_link`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectionLink {
    /// `org/dataset` whose rows are protected through the link.
    pub dataset: String,
    /// Its column holding the key.
    pub column: String,
    /// `org/dataset` the key points into.
    pub target: String,
    /// The target's column holding the same key.
    pub target_column: String,
    /// Who made it.
    pub set_by: String,
    /// When (RFC 3339).
    pub set_at: String,
}

/// A dataset as the catalogue knows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DatasetMeta {
    /// Owning organisation.
    pub org: String,
    /// Slug.
    pub slug: String,
    /// Owning department.
    pub department: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Classification.
    pub classification: Classification,
    /// EU data-theme code.
    pub theme: Option<String>,
    /// Keywords.
    pub keywords: Vec<String>,
    /// Licence.
    pub licence: Option<String>,
    /// Update frequency.
    pub update_frequency: Option<String>,
    /// When the dataset was created.
    pub created_at: Timestamp,
    /// The legal basis the owner processes it under (the slug of one of the organisation's
    /// legal bases), when set.
    pub legal_basis: Option<String>,
}

impl DatasetMeta {
    /// `ORG/DATASET`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.org, self.slug)
    }
}

/// A moment the catalogue records (a commit, a creation), in UTC. Written and shown as RFC 3339
/// with milliseconds and `Z`, e.g. `2026-12-06T19:25:14.123Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(chrono::DateTime<chrono::Utc>);

impl Timestamp {
    /// Now.
    pub fn now() -> Self {
        Self(chrono::Utc::now())
    }

    /// The instant.
    pub fn instant(self) -> chrono::DateTime<chrono::Utc> {
        self.0
    }

    pub(crate) fn from_row(row: &AnyRow, column: &str) -> Result<Self, StoreError> {
        let text: String = row.try_get(column)?;
        let at = chrono::DateTime::parse_from_rfc3339(&text).map_err(|e| corrupt(column, format!("{text:?}: {e}")))?;
        Ok(Self(at.with_timezone(&chrono::Utc)))
    }
}

impl From<chrono::DateTime<chrono::Utc>> for Timestamp {
    fn from(at: chrono::DateTime<chrono::Utc>) -> Self {
        Self(at)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime)))
            .examples(["2026-12-06T19:25:14.123Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

/// How a version came about, as the catalogue records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VersionMode {
    /// The dataset's first version.
    Create,
    /// Rows added.
    Append,
    /// All rows replaced.
    Replace,
    /// Rows replaced and added by key.
    Upsert,
    /// A person's rows erased.
    Erase,
}

impl VersionMode {
    /// Every mode.
    pub const ALL: [Self; 5] = [Self::Create, Self::Append, Self::Replace, Self::Upsert, Self::Erase];

    /// The name the catalogue stores.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Append => "append",
            Self::Replace => "replace",
            Self::Upsert => "upsert",
            Self::Erase => "erase",
        }
    }

    /// The mode a stored name stands for.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

impl std::fmt::Display for VersionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A column's metadata.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ColumnMeta {
    /// Name.
    pub name: String,
    /// Tverr column type (`text`, `integer`, …).
    pub column_type: ColumnType,
    /// Description.
    pub description: String,
    /// Privacy category.
    pub category: ColumnCategory,
    /// Subject key, if the column identifies a subject.
    pub subject_key: Option<SubjectKind>,
    /// CRS of a geometry column.
    pub crs: Option<String>,
}

/// One version of a dataset.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionMeta {
    /// Delta version number.
    pub version: i64,
    /// Commit time.
    pub committed_at: Timestamp,
    /// Who wrote it.
    pub actor: String,
    /// How the version came about.
    pub mode: VersionMode,
    /// Rows written.
    pub rows_written: i64,
    /// Rows removed (replace, upsert).
    pub rows_removed: i64,
    /// Source file name.
    pub source_name: Option<String>,
    /// SHA-256 of the source file.
    pub source_sha256: Option<String>,
    /// Source format.
    pub source_format: Option<String>,
}

/// The write-ahead log's length, in pages, past which [`RawCatalog::checkpoint_wal`] truncates
/// it (16,384 pages of 4 KiB: 64 MiB).
pub const WAL_TRUNCATE_FRAMES: i64 = 16_384;

/// The catalogue database.
#[derive(Debug, Clone)]
pub struct Catalog {
    pool: AnyPool,
    /// The URL it was opened with: a write lock on PostgreSQL is a connection of its own.
    url: String,
    sqlite: bool,
    /// On SQLite, reads on the calling thread for the hot paths ([`crate::quick`]).
    quick: Option<Arc<QuickReader>>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// How long a request waits for a connection to the catalogue database before it fails.
const CATALOG_WAIT_SECONDS: u64 = 5;

/// On SQLite, the access log's sequence number becomes the table's rowid (`INTEGER PRIMARY KEY`)
/// instead of a second B-tree beside it: an append then writes one tree, not two. Migration 0003
/// declares `BIGINT`, which PostgreSQL needs; catalogues made before are rebuilt once, in one
/// transaction, with every row and value unchanged.
async fn sqlite_audit_log_by_rowid(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let declared: Option<String> =
        sqlx::query_scalar("SELECT type FROM pragma_table_info('audit_log') WHERE name = 'seq'").fetch_optional(pool).await?;
    if declared.is_none_or(|t| t.eq_ignore_ascii_case("INTEGER")) {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for sql in [
        "CREATE TABLE audit_log_by_rowid (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, \
         payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
        "INSERT INTO audit_log_by_rowid (seq, at, kind, payload, prev_hash, hash) \
         SELECT seq, at, kind, payload, prev_hash, hash FROM audit_log ORDER BY seq",
        "DROP TABLE audit_log",
        "ALTER TABLE audit_log_by_rowid RENAME TO audit_log",
    ] {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// The tables whose changes move the catalogue generation on ([`Catalog::generation`]): what
/// access decisions, look-ups, token checks and the catalogue's names read.
pub const GENERATION_TABLES: [&str; 14] = [
    "organizations",
    "departments",
    "datasets",
    "dataset_columns",
    "legal_bases",
    "purposes",
    "agreements",
    "subject_indexed",
    "users",
    "api_tokens",
    "citizen_tokens",
    "protection_registers",
    "protection_links",
    "guardianship_registers",
];

/// Installs the triggers that move the generation on: in the statement's own transaction, so a
/// reader that sees a change also sees the new generation.
async fn generation_triggers(pool: &AnyPool, sqlite: bool) -> Result<(), sqlx::Error> {
    let bump = "UPDATE catalog_generation SET n = n + 1 WHERE id = 1";
    if sqlite {
        // Every process start connects: when all triggers are there, it writes nothing.
        let installed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%\\_generation\\_%' ESCAPE '\\'")
                .fetch_one(pool)
                .await?;
        if installed >= 3 * GENERATION_TABLES.len() as i64 {
            return Ok(());
        }
    }
    let mut tx = pool.begin().await?;
    if sqlite {
        for table in GENERATION_TABLES {
            for op in ["INSERT", "UPDATE", "DELETE"] {
                let name = format!("{table}_generation_{}", op.to_lowercase());
                let sql = format!("CREATE TRIGGER IF NOT EXISTS {name} AFTER {op} ON {table} BEGIN {bump}; END");
                sqlx::query(&sql).execute(&mut *tx).await?;
            }
        }
    } else {
        // Serialises processes that start at once; the check keeps restarts from rewriting.
        sqlx::query("SELECT pg_advisory_xact_lock(740300001)").execute(&mut *tx).await?;
        let installed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
             WHERE t.tgname = c.relname || '_generation' AND pg_table_is_visible(c.oid)",
        )
        .fetch_one(&mut *tx)
        .await?;
        if installed < GENERATION_TABLES.len() as i64 {
            sqlx::query(&format!(
                "CREATE OR REPLACE FUNCTION tverr_next_generation() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {bump}; RETURN NULL; END $$"
            ))
            .execute(&mut *tx)
            .await?;
            for table in GENERATION_TABLES {
                sqlx::query(&format!(
                    "CREATE OR REPLACE TRIGGER {table}_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} \
                     FOR EACH STATEMENT EXECUTE FUNCTION tverr_next_generation()"
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
    }
    tx.commit().await
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl Catalog {
    /// Connects to `sqlite://…` or `postgres://…` and brings the schema up to date.
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if !sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(StoreError::Config { message: format!("unsupported catalogue URL {url:?}: use sqlite://PATH or postgres://…") });
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            // A database that does not answer fails the request within seconds (503 to the
            // client) instead of holding it for sqlx's default of 30 seconds.
            .acquire_timeout(std::time::Duration::from_secs(CATALOG_WAIT_SECONDS))
            // A connection to a local file cannot go stale; the ping before every acquire is a
            // round trip to SQLite's worker thread on every catalogue query and log commit.
            .test_before_acquire(!sqlite)
            // A rollback queued when a transaction was dropped runs before the connection's next
            // statement, so after one round trip it is out of the transaction, unless that
            // rollback failed: a COMMIT that failed on a full disk leaves SQLite without the
            // transaction sqlx still counts, and every later `BEGIN` on the connection would be
            // refused. Such a connection is closed instead of being handed out.
            .before_acquire(|conn, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    if !conn.is_in_transaction() {
                        return Ok(true);
                    }
                    conn.ping().await?;
                    Ok(!conn.is_in_transaction())
                })
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        use sqlx::Executor;
                        // FULL: a commit (an access-log entry above all) survives a power loss,
                        // not only a crash of the process.
                        conn.execute("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL; PRAGMA cache_size = -32768; PRAGMA journal_size_limit = 67108864;").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        if sqlite {
            sqlite_audit_log_by_rowid(&pool).await?;
        }
        generation_triggers(&pool, sqlite).await?;
        let quick = if sqlite { QuickReader::for_url(url).map(Arc::new) } else { None };
        Ok(Self { pool, url: url.to_string(), sqlite, quick })
    }

    /// The reader on the calling thread, on SQLite.
    pub(crate) fn quick(&self) -> Option<&QuickReader> {
        self.quick.as_deref()
    }

    /// The URL the catalogue was opened with.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The connection pool (inside the store; other crates hold a [`RawCatalog`]).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that will write (`BEGIN IMMEDIATE` on SQLite).
    pub(crate) async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        if self.sqlite { self.pool.begin_with("BEGIN IMMEDIATE").await } else { self.pool.begin().await }
    }

    /// The catalogue generation: a number that moves on with every committed change to the
    /// tables in [`GENERATION_TABLES`], so what was read from them may be kept while it stays.
    pub async fn generation(&self) -> Result<i64, StoreError> {
        if let Some(quick) = &self.quick {
            return quick.read(|c| c.prepare_cached("SELECT n FROM catalog_generation WHERE id = 1")?.query_row([], |r| r.get(0)));
        }
        Ok(sqlx::query_scalar("SELECT n FROM catalog_generation WHERE id = 1").fetch_one(&self.pool).await?)
    }

    /// The database file of a SQLite catalogue (`None` on PostgreSQL and for an in-memory
    /// database), for a connection of one's own outside the pool.
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.quick.as_deref().map(QuickReader::path)
    }

    /// Whether the catalogue is SQLite (else PostgreSQL).
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    /// Creates an organisation; the orgnr is validated (mod 11) and the kommunenummer must have
    /// four digits.
    pub async fn create_org(&self, slug: &str, name: &str, orgnr: &str, kommunenummer: Option<&str>) -> Result<Organization, StoreError> {
        let slug = Slug::parse(slug, "organisation").map_err(|e| StoreError::invalid("slug", e.to_string()))?;
        if name.trim().is_empty() {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        let orgnr = Orgnr::parse(orgnr).map_err(|e| StoreError::invalid("orgnr", e.to_string()))?;
        if let Some(k) = kommunenummer
            && (k.len() != 4 || !k.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(StoreError::invalid("kommunenummer", "expected four digits, e.g. 3403 or 0301"));
        }
        let org = Organization {
            slug: slug.to_string(),
            name: name.trim().to_string(),
            orgnr: orgnr.to_string(),
            kommunenummer: kommunenummer.map(str::to_string),
        };
        sqlx::query("INSERT INTO organizations (slug, name, orgnr, kommunenummer, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&org.slug)
            .bind(&org.name)
            .bind(&org.orgnr)
            .bind(org.kommunenummer.clone())
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Exists { what: "organisation (slug or orgnr)", name: org.slug.clone() }
                } else {
                    e.into()
                }
            })?;
        Ok(org)
    }

    /// All organisations.
    pub async fn orgs(&self) -> Result<Vec<Organization>, StoreError> {
        let rows = sqlx::query("SELECT slug, name, orgnr, kommunenummer FROM organizations ORDER BY slug").fetch_all(&self.pool).await?;
        rows.iter().map(org_from_row).collect()
    }

    /// One organisation.
    pub async fn org(&self, slug: &str) -> Result<Organization, StoreError> {
        let row = sqlx::query("SELECT slug, name, orgnr, kommunenummer FROM organizations WHERE slug = $1")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "organisation", name: slug.to_string() })?;
        org_from_row(&row)
    }

    /// Creates a department.
    pub async fn create_department(&self, org: &str, slug: &str, name: &str) -> Result<Department, StoreError> {
        self.org(org).await?;
        let slug = Slug::parse(slug, "department").map_err(|e| StoreError::invalid("slug", e.to_string()))?;
        if name.trim().is_empty() {
            return Err(StoreError::invalid("name", "must not be empty"));
        }
        sqlx::query("INSERT INTO departments (org, slug, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(org)
            .bind(slug.as_str())
            .bind(name.trim())
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) { StoreError::Exists { what: "department", name: format!("{org}/{slug}") } } else { e.into() }
            })?;
        Ok(Department { org: org.into(), slug: slug.to_string(), name: name.trim().into() })
    }

    /// Departments of an organisation (all organisations when `org` is `None`).
    pub async fn departments(&self, org: Option<&str>) -> Result<Vec<Department>, StoreError> {
        let rows = match org {
            Some(o) => {
                sqlx::query("SELECT org, slug, name FROM departments WHERE org = $1 ORDER BY org, slug")
                    .bind(o)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query("SELECT org, slug, name FROM departments ORDER BY org, slug").fetch_all(&self.pool).await?,
        };
        rows.iter().map(|r| Ok(Department { org: r.try_get("org")?, slug: r.try_get("slug")?, name: r.try_get("name")? })).collect()
    }

    /// Checks that a department exists.
    pub async fn department(&self, org: &str, slug: &str) -> Result<Department, StoreError> {
        let row = sqlx::query("SELECT org, slug, name FROM departments WHERE org = $1 AND slug = $2")
            .bind(org)
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "department", name: format!("{org}/{slug}") })?;
        Ok(Department { org: row.try_get("org")?, slug: row.try_get("slug")?, name: row.try_get("name")? })
    }

    /// All datasets, ordered by organisation and slug.
    pub async fn datasets(&self) -> Result<Vec<DatasetMeta>, StoreError> {
        let rows = sqlx::query(&format!("{DATASET_SELECT} ORDER BY org, slug")).fetch_all(&self.pool).await?;
        rows.iter().map(dataset_from_row).collect()
    }

    /// One dataset.
    pub async fn dataset(&self, r: &DatasetRef) -> Result<DatasetMeta, StoreError> {
        let row = sqlx::query(&format!("{DATASET_SELECT} WHERE org = $1 AND slug = $2"))
            .bind(r.org.as_str())
            .bind(r.dataset.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "dataset", name: r.to_string() })?;
        dataset_from_row(&row)
    }

    /// Whether a dataset exists.
    pub async fn dataset_exists(&self, r: &DatasetRef) -> Result<bool, StoreError> {
        match self.dataset(r).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A dataset's columns, in order.
    pub async fn columns(&self, r: &DatasetRef) -> Result<Vec<ColumnMeta>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, column_type, description, category, subject_key, crs FROM dataset_columns \
             WHERE org = $1 AND dataset = $2 ORDER BY position",
        )
        .bind(r.org.as_str())
        .bind(r.dataset.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(column_from_row).collect()
    }

    /// Every dataset's columns, in order, keyed by `ORG/DATASET`.
    pub async fn all_columns(&self) -> Result<std::collections::HashMap<String, Vec<ColumnMeta>>, StoreError> {
        let rows = sqlx::query(
            "SELECT org, dataset, name, column_type, description, category, subject_key, crs FROM dataset_columns \
             ORDER BY org, dataset, position",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: std::collections::HashMap<String, Vec<ColumnMeta>> = std::collections::HashMap::new();
        for row in &rows {
            let org: String = row.try_get("org")?;
            let dataset: String = row.try_get("dataset")?;
            out.entry(format!("{org}/{dataset}")).or_default().push(column_from_row(row)?);
        }
        Ok(out)
    }

    /// Names `r` as an authoritative register of address protection: `key` holds the person
    /// number and `status` the protection (`ugradert`, `fortrolig`, `strengt_fortrolig`).
    /// Both must be columns of the dataset, and `key` its person key.
    pub async fn set_protection_register(
        &self,
        r: &DatasetRef,
        key: &str,
        status: &str,
        actor: &str,
    ) -> Result<ProtectionRegister, StoreError> {
        let columns = self.columns(r).await?;
        let find = |name: &str| columns.iter().find(|c| c.name == name);
        match find(key) {
            Some(c) if c.subject_key == Some(tverr_core::SubjectKind::Person) => {}
            Some(_) => return Err(StoreError::invalid("key", format!("{r}: the column {key} is not a person key"))),
            None => return Err(StoreError::invalid("key", format!("{r} has no column {key}"))),
        }
        if find(status).is_none() {
            return Err(StoreError::invalid("status", format!("{r} has no column {status}")));
        }
        let at = chrono::Utc::now().to_rfc3339();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM protection_registers WHERE dataset = $1").bind(r.to_string()).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO protection_registers (dataset, key_column, status_column, set_by, set_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(r.to_string())
            .bind(key)
            .bind(status)
            .bind(actor)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ProtectionRegister {
            dataset: r.to_string(),
            key_column: key.into(),
            status_column: status.into(),
            set_by: actor.into(),
            set_at: at,
        })
    }

    /// Stops reading address protection from `r`; false when it was not a register.
    pub async fn remove_protection_register(&self, r: &DatasetRef) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM protection_registers WHERE dataset = $1").bind(r.to_string()).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// The registers of address protection, by dataset.
    pub async fn protection_registers(&self) -> Result<Vec<ProtectionRegister>, StoreError> {
        let rows = sqlx::query("SELECT dataset, key_column, status_column, set_by, set_at FROM protection_registers ORDER BY dataset")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ProtectionRegister {
                    dataset: row.try_get("dataset")?,
                    key_column: row.try_get("key_column")?,
                    status_column: row.try_get("status_column")?,
                    set_by: row.try_get("set_by")?,
                    set_at: row.try_get("set_at")?,
                })
            })
            .collect()
    }

    /// The last version of register `r` read into the protection history, if any.
    pub async fn protection_history_version(&self, r: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT version FROM protection_history_read WHERE dataset = $1").bind(r).fetch_optional(&self.pool).await?)
    }

    /// Adds what version `version` of register `r` says to the protection history: each person
    /// keeps the highest level any version read gave them. One transaction; a version read
    /// twice (by two nodes) changes nothing the second time.
    pub async fn record_protection_history(&self, r: &str, version: i64, protected: &[(&str, i8)]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for chunk in protected.chunks(400) {
            let values = (0..chunk.len()).map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "INSERT INTO protection_history (person_key, level) VALUES {values} ON CONFLICT (person_key) \
                 DO UPDATE SET level = excluded.level WHERE protection_history.level < excluded.level"
            );
            let mut q = sqlx::query(&sql);
            for (key, level) in chunk {
                q = q.bind(key.to_string()).bind(i64::from(*level));
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO protection_history_read (dataset, version) VALUES ($1, $2) ON CONFLICT (dataset) \
             DO UPDATE SET version = excluded.version WHERE protection_history_read.version < excluded.version",
        )
        .bind(r)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Everyone the registers have protected, with the highest level they had.
    pub async fn protection_history(&self) -> Result<Vec<(String, i8)>, StoreError> {
        let rows = sqlx::query("SELECT person_key, level FROM protection_history").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let level: i64 = row.try_get("level")?;
                Ok((row.try_get("person_key")?, level.clamp(0, i64::from(i8::MAX)) as i8))
            })
            .collect()
    }

    /// Names `r` as a register of parental responsibility: `child` and `parent` are its person
    /// keys, one row per parent and child.
    pub async fn set_guardianship_register(&self, r: &DatasetRef, child: &str, parent: &str, actor: &str) -> Result<(), StoreError> {
        let columns = self.columns(r).await?;
        for (field, name) in [("child", child), ("parent", parent)] {
            match columns.iter().find(|c| c.name == name) {
                Some(c) if c.subject_key == Some(tverr_core::SubjectKind::Person) => {}
                Some(_) => return Err(StoreError::invalid(field, format!("{r}: the column {name} is not a person key"))),
                None => return Err(StoreError::invalid(field, format!("{r} has no column {name}"))),
            }
        }
        if child == parent {
            return Err(StoreError::invalid("parent", "the child and the parent must be different columns"));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM guardianship_registers WHERE dataset = $1").bind(r.to_string()).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO guardianship_registers (dataset, child_column, parent_column, set_by, set_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(r.to_string())
        .bind(child)
        .bind(parent)
        .bind(actor)
        .bind(chrono::Utc::now().to_rfc3339())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The registers of parental responsibility: (dataset, child column, parent column).
    pub async fn guardianship_registers(&self) -> Result<Vec<(DatasetRef, String, String)>, StoreError> {
        let rows = sqlx::query("SELECT dataset, child_column, parent_column FROM guardianship_registers ORDER BY dataset")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("dataset")?;
                let r = name.parse::<DatasetRef>().map_err(|e| corrupt("guardianship register", e))?;
                Ok((r, row.try_get("child_column")?, row.try_get("parent_column")?))
            })
            .collect()
    }

    /// Records the legal basis `r`'s owner processes it under: the slug of a legal basis of
    /// its organisation, or `None` to clear it.
    pub async fn set_dataset_legal_basis(&self, r: &DatasetRef, basis: Option<&str>) -> Result<(), StoreError> {
        self.dataset(r).await?;
        if let Some(slug) = basis {
            let found = sqlx::query("SELECT slug FROM legal_bases WHERE org = $1 AND slug = $2")
                .bind(r.org.as_str())
                .bind(slug)
                .fetch_optional(&self.pool)
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound { what: "legal basis", name: format!("{}/{slug}", r.org) });
            }
        }
        sqlx::query("UPDATE datasets SET legal_basis = $1 WHERE org = $2 AND slug = $3")
            .bind(basis)
            .bind(r.org.as_str())
            .bind(r.dataset.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Protects the rows of `r` whose `column` equals `target_column` of a protected row of
    /// `target` (a person's or property's protection, through that dataset's keys). Both columns
    /// must exist, and `target` must have a person or property key.
    pub async fn set_protection_link(
        &self,
        r: &DatasetRef,
        column: &str,
        target: &DatasetRef,
        target_column: &str,
        actor: &str,
    ) -> Result<ProtectionLink, StoreError> {
        if r == target {
            return Err(StoreError::invalid("to", format!("{r} cannot link to itself")));
        }
        if !self.columns(r).await?.iter().any(|c| c.name == column) {
            return Err(StoreError::invalid("column", format!("{r} has no column {column}")));
        }
        let target_columns = self.columns(target).await?;
        if !target_columns.iter().any(|c| c.name == target_column) {
            return Err(StoreError::invalid("target-column", format!("{target} has no column {target_column}")));
        }
        let keyed = target_columns
            .iter()
            .any(|c| matches!(c.subject_key, Some(tverr_core::SubjectKind::Person | tverr_core::SubjectKind::Property)));
        if !keyed {
            return Err(StoreError::invalid("to", format!("{target} has no person or property key, so a link to it protects nothing")));
        }
        let at = chrono::Utc::now().to_rfc3339();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM protection_links WHERE dataset = $1 AND column_name = $2")
            .bind(r.to_string())
            .bind(column)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO protection_links (dataset, column_name, target, target_column, set_by, set_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(r.to_string())
        .bind(column)
        .bind(target.to_string())
        .bind(target_column)
        .bind(actor)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ProtectionLink {
            dataset: r.to_string(),
            column: column.into(),
            target: target.to_string(),
            target_column: target_column.into(),
            set_by: actor.into(),
            set_at: at,
        })
    }

    /// Removes the link of `r`'s `column`; false when there was none.
    pub async fn remove_protection_link(&self, r: &DatasetRef, column: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM protection_links WHERE dataset = $1 AND column_name = $2")
            .bind(r.to_string())
            .bind(column)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every protection link, by dataset and column.
    pub async fn protection_links(&self) -> Result<Vec<ProtectionLink>, StoreError> {
        let rows = sqlx::query(
            "SELECT dataset, column_name, target, target_column, set_by, set_at FROM protection_links ORDER BY dataset, column_name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ProtectionLink {
                    dataset: row.try_get("dataset")?,
                    column: row.try_get("column_name")?,
                    target: row.try_get("target")?,
                    target_column: row.try_get("target_column")?,
                    set_by: row.try_get("set_by")?,
                    set_at: row.try_get("set_at")?,
                })
            })
            .collect()
    }

    /// A dataset's versions, oldest first.
    pub async fn versions(&self, r: &DatasetRef) -> Result<Vec<VersionMeta>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, committed_at, actor, mode, rows_written, rows_removed, source_name, source_sha256, source_format \
             FROM dataset_versions WHERE org = $1 AND dataset = $2 ORDER BY version",
        )
        .bind(r.org.as_str())
        .bind(r.dataset.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(VersionMeta {
                    version: row.try_get("version")?,
                    committed_at: Timestamp::from_row(row, "committed_at")?,
                    actor: row.try_get("actor")?,
                    mode: {
                        let mode: String = row.try_get("mode")?;
                        VersionMode::parse(&mode).ok_or_else(|| corrupt("write mode", &mode))?
                    },
                    rows_written: row.try_get("rows_written")?,
                    rows_removed: row.try_get("rows_removed")?,
                    source_name: row.try_get("source_name")?,
                    source_sha256: row.try_get("source_sha256")?,
                    source_format: row.try_get("source_format")?,
                })
            })
            .collect()
    }

    /// Records a committed version, creating the dataset and its columns when `new` is given
    /// and adding columns that are not yet known — all in one transaction.
    pub(crate) async fn record_version(
        &self,
        r: &DatasetRef,
        new: Option<&NewDataset>,
        columns: &[ColumnMeta],
        version: &VersionMeta,
        index: &crate::index::IndexChange,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(d) = new {
            sqlx::query(
                "INSERT INTO datasets (org, slug, department, title, description, classification, theme, keywords, licence, update_frequency, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(r.org.as_str())
            .bind(r.dataset.as_str())
            .bind(&d.department)
            .bind(&d.title)
            .bind(&d.description)
            .bind(d.classification.as_str())
            .bind(d.theme.clone())
            .bind(serde_json::to_string(&d.keywords).expect("strings serialise"))
            .bind(d.licence.clone())
            .bind(d.update_frequency.clone())
            .bind(version.committed_at.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let existing: i64 = sqlx::query("SELECT COUNT(*) AS n FROM dataset_columns WHERE org = $1 AND dataset = $2")
            .bind(r.org.as_str())
            .bind(r.dataset.as_str())
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        for (i, c) in columns.iter().enumerate().skip(existing as usize) {
            sqlx::query(
                "INSERT INTO dataset_columns (org, dataset, position, name, column_type, description, category, subject_key, crs) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(r.org.as_str())
            .bind(r.dataset.as_str())
            .bind(i as i64)
            .bind(&c.name)
            .bind(c.column_type.to_string())
            .bind(&c.description)
            .bind(c.category.as_str())
            .bind(c.subject_key.map(|s| s.as_str().to_string()))
            .bind(c.crs.clone())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO dataset_versions (org, dataset, version, committed_at, actor, mode, rows_written, rows_removed, source_name, source_sha256, source_format) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(r.org.as_str())
        .bind(r.dataset.as_str())
        .bind(version.version)
        .bind(version.committed_at.to_string())
        .bind(&version.actor)
        .bind(version.mode.as_str())
        .bind(version.rows_written)
        .bind(version.rows_removed)
        .bind(version.source_name.clone())
        .bind(version.source_sha256.clone())
        .bind(version.source_format.clone())
        .execute(&mut *tx)
        .await?;
        crate::index::apply(&mut tx, r, version.version, index, self.sqlite).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Updates column categories (e.g. `--category COL=personal` on a later ingest).
    pub(crate) async fn set_categories(&self, r: &DatasetRef, categories: &BTreeMap<String, ColumnCategory>) -> Result<(), StoreError> {
        for (name, cat) in categories {
            sqlx::query("UPDATE dataset_columns SET category = $1 WHERE org = $2 AND dataset = $3 AND name = $4")
                .bind(cat.as_str())
                .bind(r.org.as_str())
                .bind(r.dataset.as_str())
                .bind(name)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

impl Catalog {
    /// Records column descriptions (`--describe COL=TEXT` on a later ingest); a description is
    /// what people read as the column's title, and changes nothing about who may read it.
    pub(crate) async fn set_descriptions(&self, r: &DatasetRef, descriptions: &BTreeMap<String, String>) -> Result<(), StoreError> {
        for (name, text) in descriptions {
            sqlx::query("UPDATE dataset_columns SET description = $1 WHERE org = $2 AND dataset = $3 AND name = $4")
                .bind(text)
                .bind(r.org.as_str())
                .bind(r.dataset.as_str())
                .bind(name)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

const DATASET_SELECT: &str = "SELECT org, slug, department, title, description, classification, theme, keywords, licence, update_frequency, created_at, legal_basis FROM datasets";

fn org_from_row(r: &AnyRow) -> Result<Organization, StoreError> {
    Ok(Organization {
        slug: r.try_get("slug")?,
        name: r.try_get("name")?,
        orgnr: r.try_get("orgnr")?,
        kommunenummer: r.try_get("kommunenummer")?,
    })
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Read(format!("catalogue holds an invalid {what}: {e}"))
}

fn dataset_from_row(r: &AnyRow) -> Result<DatasetMeta, StoreError> {
    let classification: String = r.try_get("classification")?;
    let keywords: String = r.try_get("keywords")?;
    Ok(DatasetMeta {
        org: r.try_get("org")?,
        slug: r.try_get("slug")?,
        department: r.try_get("department")?,
        title: r.try_get("title")?,
        description: r.try_get("description")?,
        classification: Classification::from_str(&classification).map_err(|e| corrupt("classification", e))?,
        theme: r.try_get("theme")?,
        keywords: serde_json::from_str(&keywords).map_err(|e| corrupt("keyword list", e))?,
        licence: r.try_get("licence")?,
        update_frequency: r.try_get("update_frequency")?,
        legal_basis: r.try_get("legal_basis")?,
        created_at: Timestamp::from_row(r, "created_at")?,
    })
}

fn column_from_row(r: &AnyRow) -> Result<ColumnMeta, StoreError> {
    let category: String = r.try_get("category")?;
    let subject: Option<String> = r.try_get("subject_key")?;
    let column_type: String = r.try_get("column_type")?;
    Ok(ColumnMeta {
        name: r.try_get("name")?,
        column_type: ColumnType::parse(&column_type).ok_or_else(|| corrupt("column type", &column_type))?,
        description: r.try_get("description")?,
        category: ColumnCategory::from_str(&category).map_err(|e| corrupt("category", e))?,
        subject_key: subject.map(|s| SubjectKind::from_str(&s)).transpose().map_err(|e| corrupt("subject key", e))?,
        crs: r.try_get("crs")?,
    })
}

/// Raw SQL over the catalogue, the policy's and the access log's tables included: for the crates
/// that keep their own tables there (policy, audit). Only a [`crate::Store`]'s holder gets one
/// ([`crate::Store::raw_catalog`]); a [`Catalog`] alone answers metadata questions only.
#[derive(Debug, Clone)]
pub struct RawCatalog {
    catalog: Catalog,
}

impl RawCatalog {
    pub(crate) fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }

    /// The connection pool.
    pub fn pool(&self) -> &AnyPool {
        self.catalog.pool()
    }

    /// The metadata view of the same catalogue.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Whether the catalogue is SQLite (else PostgreSQL).
    pub fn is_sqlite(&self) -> bool {
        self.catalog.sqlite
    }

    /// The database file of a SQLite catalogue (`None` on PostgreSQL and for an in-memory
    /// database), for a connection of one's own outside the pool.
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.catalog.sqlite_file()
    }

    /// Copies what SQLite's write-ahead log holds into the database file without waiting for
    /// anyone (`PRAGMA wal_checkpoint(PASSIVE)`); nothing on PostgreSQL. For a writer whose own
    /// connection does not checkpoint, so that the copy and its fsync stay out of its commits.
    ///
    /// A passive checkpoint never waits, so under reads that never pause the log is never
    /// started again from its beginning and grows with every write (measured: 22 GB in minutes
    /// while a GIS client paged through a personal dataset). Past [`WAL_TRUNCATE_FRAMES`] the
    /// checkpoint waits for the readers of the moment (within the busy timeout) and truncates it.
    pub async fn checkpoint_wal(&self) -> Result<(), sqlx::Error> {
        if self.catalog.sqlite {
            let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(self.pool()).await?;
            let frames: i64 = row.try_get(1).unwrap_or(0);
            if frames > WAL_TRUNCATE_FRAMES {
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(self.pool()).await?;
            }
        }
        Ok(())
    }

    /// A transaction that will write. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), waiting for other writers within the busy timeout, instead of failing later
    /// when another writer committed after its first read.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        self.catalog.begin_write().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_texts_read_back_typed_and_print_as_before() {
        // What ingest has always written, read back and printed unchanged.
        let at: Timestamp = chrono::DateTime::parse_from_rfc3339("2026-12-06T19:25:14.123Z").unwrap().with_timezone(&chrono::Utc).into();
        assert_eq!(at.to_string(), "2026-12-06T19:25:14.123Z");
        assert_eq!(serde_json::to_string(&at).unwrap(), r#""2026-12-06T19:25:14.123Z""#);
        assert_eq!(format!("{at:<26}|"), "2026-12-06T19:25:14.123Z  |", "columns line up in the CLI's tables");
        for mode in VersionMode::ALL {
            assert_eq!(VersionMode::parse(mode.as_str()), Some(mode));
            assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
        }
        assert_eq!(VersionMode::parse("overwrite"), None);
    }
}
