//! What a connector reads: an HTTP(S) file or paged JSON API, a PostgreSQL query (in full, or
//! the rows past an incremental column's high-water mark), or a drop folder. A fetch stages
//! what it read as files the ingest reads, with the SHA-256 and validators that tell the next
//! run whether anything changed. Nothing here writes to a source, to the catalogue or to the
//! lake: the access layer ingests the staged files through the door.

mod address;
pub mod folder;
mod http;
mod mysql;
mod postgres;
mod s3;
mod schedule;
pub mod secret;
pub mod webhook;

use std::path::PathBuf;

pub use address::AddressPolicy;
pub use http::Poster;
pub use schedule::Schedule;
pub use secret::{SecretBox, Secrets};

/// What can go wrong when reading a source or a connector's settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A setting is wrong.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The source could not be read (unreachable, an HTTP status, a SQL error).
    #[error("{0}")]
    Source(String),
    /// The source's address is not allowed.
    #[error("refused: {0}")]
    Refused(String),
    /// The secrets could not be sealed or opened.
    #[error("secrets: {0}")]
    Secret(String),
    /// A local file could not be written or moved.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ConnectError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ConnectError::Invalid { field, message: message.into() }
    }
}

/// The kind of source, by the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// `https://` or `http://`.
    Http,
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `mysql://` or `mariadb://`.
    Mysql,
    /// `s3://bucket/prefix/`.
    S3,
    /// `file:///dir/`.
    Folder,
}

impl SourceKind {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Http => "http",
            SourceKind::Postgres => "postgres",
            SourceKind::Mysql => "mysql",
            SourceKind::S3 => "s3",
            SourceKind::Folder => "folder",
        }
    }
}

/// How to read a source, besides its URL (stored as JSON with the connector).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SourceOptions {
    /// The query of a SQL source.
    pub query: Option<String>,
    /// A SQL source's monotone column: each run reads only rows past the last run's highest
    /// value.
    pub incremental: Option<String>,
    /// A JSON API's rows: a JSON pointer to the array (`""` for a top-level array); with it,
    /// the API's pages are followed.
    pub pointer: Option<String>,
    /// A JSON pointer to the next page's URL in the body (a `Link: rel="next"` header is
    /// followed as well).
    pub next: Option<String>,
    /// The names of the headers sent (their values are secrets).
    pub header_names: Vec<String>,
    /// The file format, when neither the response nor the name tells.
    pub format: Option<String>,
}

/// What the last successful run saw (stored as JSON with the connector).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SourceState {
    /// The HTTP response's `ETag`.
    pub etag: Option<String>,
    /// The HTTP response's `Last-Modified`.
    pub last_modified: Option<String>,
    /// SHA-256 of what was ingested.
    pub sha256: Option<String>,
    /// The incremental column's highest value read, as text.
    pub watermark: Option<String>,
}

/// A source: its kind and its URL without a password.
#[derive(Debug, Clone)]
pub struct Source {
    /// The kind.
    pub kind: SourceKind,
    /// The URL, without a password.
    pub url: url::Url,
}

impl Source {
    /// Reads a source URL; a password in it is returned apart, to be sealed.
    pub fn parse(text: &str) -> Result<(Self, Option<String>), ConnectError> {
        let mut url = url::Url::parse(text.trim()).map_err(|e| ConnectError::invalid("source", format!("{text:?}: {e}")))?;
        let kind = match url.scheme() {
            "https" | "http" => SourceKind::Http,
            "postgres" | "postgresql" => SourceKind::Postgres,
            "mysql" | "mariadb" => SourceKind::Mysql,
            "file" => SourceKind::Folder,
            "s3" => SourceKind::S3,
            other => {
                return Err(ConnectError::invalid(
                    "source",
                    format!("{other}:// is not a source; use https://, postgres://, mysql://, s3:// or file:///"),
                ));
            }
        };
        if kind != SourceKind::Folder && url.host_str().is_none_or(str::is_empty) {
            return Err(ConnectError::invalid("source", "the URL names no host"));
        }
        if kind == SourceKind::Folder && (url.host_str().is_some_and(|h| !h.is_empty()) || !url.path().ends_with('/')) {
            return Err(ConnectError::invalid("source", "a drop folder is file:///absolute/dir/ (ending in /)"));
        }
        // A database URL takes only these parameters: any other could name another host, a
        // socket, a password or server options (`host=/run/postgresql` reaches a local socket
        // past the address check).
        match kind {
            SourceKind::Postgres => database_url(&url, "PostgreSQL", &["sslmode", "application_name"], "sslmode")?,
            SourceKind::Mysql => database_url(&url, "MySQL", &["ssl-mode", "sslmode"], "ssl-mode")?,
            SourceKind::S3 => {
                s3::location(&url)?;
            }
            SourceKind::Http | SourceKind::Folder => {}
        }
        let password = url.password().map(percent_decode);
        if password.is_some() {
            let _ = url.set_password(None);
        }
        Ok((Self { kind, url }, password))
    }

    /// Checks the options fit the source (a query for SQL, no query elsewhere).
    pub fn check_options(&self, o: &SourceOptions) -> Result<(), ConnectError> {
        match self.kind {
            SourceKind::Postgres | SourceKind::Mysql => {
                let q = o.query.as_deref().map(str::trim).unwrap_or_default();
                if q.is_empty() {
                    return Err(ConnectError::invalid("query", "a SQL source needs a query"));
                }
                if q.len() > 100_000 {
                    return Err(ConnectError::invalid("query", "longer than 100,000 bytes"));
                }
            }
            _ => {
                if o.query.is_some() || o.incremental.is_some() {
                    return Err(ConnectError::invalid("query", "only a SQL source takes a query or an incremental column"));
                }
            }
        }
        if self.kind != SourceKind::Http && (o.pointer.is_some() || o.next.is_some() || !o.header_names.is_empty()) {
            return Err(ConnectError::invalid("pointer", "only an HTTP source takes headers, a JSON pointer or next links"));
        }
        for p in [&o.pointer, &o.next].into_iter().flatten() {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(ConnectError::invalid("pointer", format!("{p:?}: a JSON pointer is empty or starts with /")));
            }
        }
        if o.next.is_some() && o.pointer.is_none() {
            return Err(ConnectError::invalid("next", "next links are followed only with a pointer to the rows"));
        }
        Ok(())
    }
}

/// Refuses a database URL with a parameter not in `allowed`, or a fragment.
fn database_url(url: &url::Url, name: &str, allowed: &[&str], shown: &str) -> Result<(), ConnectError> {
    if let Some((k, _)) = url.query_pairs().find(|(k, _)| !allowed.contains(&k.as_ref())) {
        return Err(ConnectError::invalid(
            "source",
            format!(
                "a {name} source takes no parameter {k:?}: give host, port, user and database in the URL, the password apart, and at most {shown}"
            ),
        ));
    }
    if url.fragment().is_some() {
        return Err(ConnectError::invalid("source", format!("a {name} source has no #fragment")));
    }
    Ok(())
}

/// A database connection made within 15 s, its errors named by `host:port` and told by
/// `error` (the database's own words).
pub(crate) async fn connect_within<T>(
    connect: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    host: &str,
    port: u16,
    error: fn(&str, sqlx::Error) -> ConnectError,
) -> Result<T, ConnectError> {
    tokio::time::timeout(std::time::Duration::from_secs(15), connect)
        .await
        .map_err(|_| ConnectError::Source(format!("cannot reach {host}:{port}: no answer in 15 s")))?
        .map_err(|e| error(&format!("cannot connect to {host}:{port}"), e))
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Limits and permissions of fetching, set by the operator.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Addresses allowed beyond the public ones.
    pub addresses: AddressPolicy,
    /// Directories drop folders may be in; none allows no drop folder.
    pub drop_roots: Vec<PathBuf>,
    /// The most bytes one fetch stages.
    pub max_bytes: u64,
    /// The most pages of a JSON API one fetch follows.
    pub max_pages: usize,
    /// How long one HTTP request or SQL statement may take.
    pub timeout: std::time::Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            addresses: AddressPolicy::default(),
            drop_roots: Vec::new(),
            max_bytes: 16 << 30,
            max_pages: 10_000,
            timeout: std::time::Duration::from_secs(600),
        }
    }
}

/// One file to ingest.
#[derive(Debug)]
pub struct Delivery {
    /// The staged or dropped file.
    pub path: PathBuf,
    /// The name shown in runs and versions.
    pub name: String,
    /// The state to keep once it is ingested.
    pub state: SourceState,
    /// Whether it holds what the last ingest held (no new version is made).
    pub unchanged: bool,
    /// Why a dropped file is not read (a link, a special file): it goes to `failed/` unread.
    pub refused: Option<String>,
    /// The drop folder, opened, and the dropped file's name in it.
    dropped: Option<(std::sync::Arc<cap_std::fs::Dir>, String)>,
    _staging: Option<tempfile::TempDir>,
}

impl Delivery {
    fn staged(dir: tempfile::TempDir, path: PathBuf, name: String, state: SourceState) -> Self {
        Self { path, name, state, unchanged: false, refused: None, dropped: None, _staging: Some(dir) }
    }

    /// Marks a dropped file as done: moved to `processed/`, or to `failed/` with `error` in a
    /// file beside it. Staged files are removed when the delivery is dropped.
    pub fn finish(&self, error: Option<&str>) -> Result<(), ConnectError> {
        match &self.dropped {
            Some((folder, name)) => folder::finish(folder, name, error),
            None => Ok(()),
        }
    }
}

/// What one fetch found.
#[derive(Debug)]
pub enum Fetched {
    /// Nothing new (a 304, the same validators, no new rows, an empty folder).
    Unchanged,
    /// Files to ingest, in order.
    Deliveries(Vec<Delivery>),
}

/// Reads `source` as of `state`, for a dataset of the department `owner` (org, department).
pub async fn fetch(
    config: &FetchConfig,
    source: &Source,
    options: &SourceOptions,
    secrets: &Secrets,
    state: &SourceState,
    owner: (&str, &str),
) -> Result<Fetched, ConnectError> {
    match source.kind {
        SourceKind::Http => http::fetch(config, &source.url, options, secrets, state).await,
        SourceKind::Postgres => postgres::fetch(config, &source.url, options, secrets, state).await,
        SourceKind::Mysql => mysql::fetch(config, &source.url, options, secrets, state).await,
        SourceKind::S3 => s3::fetch(config, &source.url, secrets, state).await,
        SourceKind::Folder => {
            let (config, url, state) = (config.clone(), source.url.clone(), state.clone());
            let (org, department) = (owner.0.to_string(), owner.1.to_string());
            tokio::task::spawn_blocking(move || folder::fetch(&config, &url, &state, (&org, &department)))
                .await
                .map_err(|e| ConnectError::Source(format!("reading the drop folder failed: {e}")))?
        }
    }
}

/// A file's extension for a format name, so the ingest reads it by name.
pub(crate) fn extension(format: &str) -> Option<&'static str> {
    Some(match format {
        "csv" => "csv",
        "tsv" => "tsv",
        "json" => "json",
        "ndjson" | "jsonl" => "ndjson",
        "geojson" => "geojson",
        "xlsx" => "xlsx",
        "parquet" => "parquet",
        _ => return None,
    })
}

/// Writes chunks to a staged file with a running SHA-256 and a size limit. Chunks are gathered
/// into blocks of 1 MiB and hashed and written on a blocking thread, so the source's stream (a
/// `COPY` sends one message per row) is read while the previous block is written. The file is
/// not synced: it is an input that a run killed midway fetches again.
pub(crate) struct Staging {
    dir: tempfile::TempDir,
    name: String,
    block: Vec<u8>,
    bytes: u64,
    max: u64,
    blocks: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    writer: tokio::task::JoinHandle<std::io::Result<String>>,
}

const BLOCK: usize = 1 << 20;

impl Staging {
    /// A staged file named `name` in a private directory of its own.
    pub(crate) async fn create(name: String, max: u64) -> Result<Self, ConnectError> {
        let dir = tempfile::tempdir()?;
        let mut file = std::fs::File::create(dir.path().join(&name))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let writer = tokio::task::spawn_blocking(move || {
            use sha2::Digest;
            use std::io::Write;
            let mut hasher = sha2::Sha256::new();
            while let Some(block) = rx.blocking_recv() {
                hasher.update(&block);
                file.write_all(&block)?;
            }
            file.flush()?;
            Ok(hex::encode(hasher.finalize()))
        });
        Ok(Self { dir, name, block: Vec::with_capacity(BLOCK), bytes: 0, max, blocks: Some(tx), writer })
    }

    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<(), ConnectError> {
        self.bytes += chunk.len() as u64;
        if self.bytes > self.max {
            return Err(ConnectError::Source(format!("the source sent more than {} bytes (TVERR_CONNECTOR_MAX_BYTES)", self.max)));
        }
        self.block.extend_from_slice(chunk);
        if self.block.len() >= BLOCK {
            self.send().await?;
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<(), ConnectError> {
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let sender = self.blocks.as_ref().ok_or_else(|| ConnectError::Source("the staged file is closed".into()))?;
        if sender.send(block).await.is_err() {
            // The writer stopped: its error says why.
            self.blocks = None;
            let writer = std::mem::replace(&mut self.writer, tokio::task::spawn_blocking(|| Ok(String::new())));
            return Err(match writer.await {
                Ok(Err(e)) => e.into(),
                _ => ConnectError::Source("the staged file could not be written".into()),
            });
        }
        Ok(())
    }

    /// The staged file as a delivery with `state` and its SHA-256; unchanged when that is the
    /// SHA-256 `before` recorded (and `compare` says the digest decides).
    pub(crate) async fn finish(mut self, mut state: SourceState, before: &SourceState, compare: bool) -> Result<Delivery, ConnectError> {
        if !self.block.is_empty() {
            self.send().await?;
        }
        self.blocks = None;
        let writer = std::mem::replace(&mut self.writer, tokio::task::spawn_blocking(|| Ok(String::new())));
        let sha256 = writer.await.map_err(|e| ConnectError::Source(format!("the staging writer failed: {e}")))??;
        let unchanged = compare && before.sha256.as_deref() == Some(sha256.as_str());
        state.sha256 = Some(sha256);
        let path = self.dir.path().join(&self.name);
        let mut delivery = Delivery::staged(self.dir, path, self.name, state);
        delivery.unchanged = unchanged;
        Ok(delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_by_scheme_and_passwords_kept_apart() {
        let (s, p) = Source::parse("postgres://tverr:hemm%40lig@db.hamar.kommune.no:5432/sak").unwrap();
        assert_eq!(s.kind, SourceKind::Postgres);
        assert_eq!(p.as_deref(), Some("hemm@lig"));
        assert!(!s.url.as_str().contains("hemm"));
        assert_eq!(Source::parse("https://data.hamar.no/x.csv").unwrap().0.kind, SourceKind::Http);
        assert_eq!(Source::parse("file:///srv/drop/skatt/").unwrap().0.kind, SourceKind::Folder);
        let (m, p) = Source::parse("mysql://lese:pass%2Ford@opptak.intern:3306/opptak?ssl-mode=required").unwrap();
        assert_eq!((m.kind, p.as_deref()), (SourceKind::Mysql, Some("pass/ord")));
        assert!(!m.url.as_str().contains("pass"));
        assert_eq!(Source::parse("mariadb://h/db").unwrap().0.kind, SourceKind::Mysql);
        for bad in [
            "ftp://x/y",
            "file:///srv/drop",
            "file://host/dir/",
            "not a url",
            "s3://b/p",
            "s3://b/p/?endpoint=http://h/x",
            "mysql://h/db?socket=/run/mysqld/mysqld.sock",
            "mariadb://u@8.8.8.8/db?host=127.0.0.1",
            "mysql://h/db#x",
            "postgres://u@8.8.8.8:5432/db?host=/var/run/postgresql",
            "postgres://u@8.8.8.8/db?hostaddr=127.0.0.1",
            "postgres://u@8.8.8.8/db?password=x",
            "postgresql://u@8.8.8.8/db?options=-c%20x",
            "postgres://u@8.8.8.8/db?HOST=%2Ftmp",
        ] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn options_must_fit_the_source() {
        let (http, _) = Source::parse("https://x.no/api").unwrap();
        let (pg, _) = Source::parse("postgres://h/db").unwrap();
        assert!(pg.check_options(&SourceOptions::default()).is_err(), "a query is needed");
        assert!(pg.check_options(&SourceOptions { query: Some("select 1".into()), ..Default::default() }).is_ok());
        assert!(http.check_options(&SourceOptions { query: Some("select 1".into()), ..Default::default() }).is_err());
        assert!(http.check_options(&SourceOptions { pointer: Some("data".into()), ..Default::default() }).is_err());
        assert!(http.check_options(&SourceOptions { next: Some("/next".into()), ..Default::default() }).is_err());
        assert!(
            http.check_options(&SourceOptions { pointer: Some("/data".into()), next: Some("/links/next".into()), ..Default::default() })
                .is_ok()
        );
    }
}
