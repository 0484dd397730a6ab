//! The lake: one Delta table per dataset at `{root}/{org}/{dataset}/`, on any object store that
//! `deltalake` supports (local directory by default, `s3://` at scale).

use std::collections::HashMap;

use deltalake::{DeltaTable, DeltaTableBuilder};
use tverr_core::DatasetRef;
use url::Url;

use crate::{CachedRanges, StoreError};

/// A Delta checkpoint is written at every this many versions of a table.
pub(crate) const CHECKPOINT_EVERY: i64 = 10;

/// The storage root and the options used to reach it.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    options: HashMap<String, String>,
    /// File footers and schemas kept for look-ups.
    pub(crate) cache: std::sync::Arc<crate::subjects::ReadCache>,
    /// Bytes at most kept of data files read by queries (`TVERR_READ_CACHE_MB`).
    read_cache_bytes: usize,
    /// The storage root behind a [`CachedRanges`], made on first read and shared by every table.
    reads: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<dyn object_store::ObjectStore>>>,
}

/// The default of `TVERR_STORAGE_RETRY_SECONDS`: how long a request to object storage is retried.
const STORAGE_RETRY_SECONDS: u64 = 10;

/// The default of `TVERR_STORAGE_TIMEOUT_SECONDS`: how long one request to object storage may take.
const STORAGE_TIMEOUT_SECONDS: u64 = 30;

/// The default of `TVERR_READ_CACHE_MB`.
const READ_CACHE_MB: u64 = 256;

/// A whole number of `unit` from the environment, or `default`.
fn number(env: &HashMap<String, String>, name: &str, unit: &str, default: u64) -> Result<u64, StoreError> {
    match env.get(name) {
        Some(v) => {
            v.trim().parse().map_err(|_| StoreError::Config { message: format!("{name}: expected a whole number of {unit}, found {v:?}") })
        }
        None => Ok(default),
    }
}

impl Lake {
    /// A lake rooted at an object-store URL. For `s3://` the usual `AWS_*` variables apply
    /// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ALLOW_HTTP`, …).
    pub fn new(url: &str) -> Result<Self, StoreError> {
        Self::configured(url, &std::env::vars().collect())
    }

    /// [`Lake::new`] with the environment given.
    fn configured(url: &str, env: &HashMap<String, String>) -> Result<Self, StoreError> {
        let mut root = Url::parse(url).map_err(|e| StoreError::Config { message: format!("invalid storage URL {url:?}: {e}") })?;
        match root.scheme() {
            "file" | "s3" | "s3a" | "memory" => {}
            other => {
                return Err(StoreError::Config {
                    message: format!("unsupported storage scheme {other:?}: use a local path, file:// or s3://"),
                });
            }
        }
        if !root.path().ends_with('/') {
            let p = format!("{}/", root.path());
            root.set_path(&p);
        }
        let options = if root.scheme().starts_with("s3") {
            let mut options: HashMap<String, String> =
                env.iter().filter(|(k, _)| k.starts_with("AWS_")).map(|(k, v)| (k.clone(), v.clone())).collect();
            // delta-rs's old S3 commit mode renames without a lock and can lose a version when
            // two nodes commit at once; commits must use conditional writes (`If-None-Match`).
            if options.get("AWS_S3_ALLOW_UNSAFE_RENAME").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                return Err(StoreError::Config {
                    message: "AWS_S3_ALLOW_UNSAFE_RENAME=true: Tverr commits to S3 only with conditional writes (If-None-Match); \
                              unset it, and use a server that supports them (AWS S3, MinIO, Ceph, moto …)"
                        .into(),
                });
            }
            if options.get("AWS_CONDITIONAL_PUT").is_some_and(|v| v.eq_ignore_ascii_case("disabled")) {
                return Err(StoreError::Config {
                    message: "AWS_CONDITIONAL_PUT=disabled: Tverr commits to S3 only with conditional writes (If-None-Match)".into(),
                });
            }
            // A storage server that does not answer fails the request within seconds (503 to
            // the client) instead of retrying for minutes (object_store's default is 3 minutes).
            let seconds = number(env, "TVERR_STORAGE_RETRY_SECONDS", "seconds", STORAGE_RETRY_SECONDS)?;
            options.insert("retry_timeout".into(), format!("{seconds}s"));
            options.insert("max_retries".into(), "4".into());
            // A request that hangs is cut after this long (object_store's default is 30 s).
            let timeout = number(env, "TVERR_STORAGE_TIMEOUT_SECONDS", "seconds", STORAGE_TIMEOUT_SECONDS)?;
            options.insert("timeout".into(), format!("{timeout}s"));
            options
        } else {
            HashMap::new()
        };
        let read_cache_mb = number(env, "TVERR_READ_CACHE_MB", "mebibytes", READ_CACHE_MB)?;
        Ok(Self { root, options, cache: Default::default(), read_cache_bytes: (read_cache_mb as usize) << 20, reads: Default::default() })
    }

    /// The storage root URL.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// Options passed to the object store (credentials are not shown by `Debug` of the store).
    pub fn storage_options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The URL of a dataset's table.
    pub fn table_url(&self, r: &DatasetRef) -> Url {
        self.root.join(&format!("{}/{}/", r.org, r.dataset)).expect("slugs are valid URL path segments")
    }

    fn builder(&self, r: &DatasetRef) -> Result<DeltaTableBuilder, StoreError> {
        Ok(DeltaTableBuilder::from_url(self.table_url(r))?.with_storage_options(self.options.clone()))
    }

    /// The log store of a dataset's table, without reading its log.
    pub(crate) fn log_store(&self, r: &DatasetRef) -> Result<deltalake::logstore::LogStoreRef, StoreError> {
        Ok(self.builder(r)?.build_storage()?)
    }

    /// Makes sure a local table directory exists before a first write.
    pub(crate) fn prepare(&self, r: &DatasetRef) -> Result<(), StoreError> {
        let url = self.table_url(r);
        if url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            std::fs::create_dir_all(&path).map_err(|e| StoreError::Config { message: format!("cannot create {}: {e}", path.display()) })?;
        }
        Ok(())
    }

    /// Opens a dataset's table at its latest version, or at `version`.
    pub async fn open(&self, r: &DatasetRef, version: Option<i64>) -> Result<DeltaTable, StoreError> {
        self.load(self.builder(r)?, r, version).await
    }

    /// Writes a Delta checkpoint at every [`CHECKPOINT_EVERY`]th version, so opening a table
    /// replays at most that many commits. A failure is logged, not returned: the version is
    /// committed, and a reader without the checkpoint replays the commits instead.
    pub(crate) async fn checkpoint_now_and_then(&self, r: &DatasetRef, version: i64) {
        if version <= 0 || version % CHECKPOINT_EVERY != 0 {
            return;
        }
        let written = match self.open(r, Some(version)).await {
            Ok(table) => deltalake::checkpoints::create_checkpoint(&table, None).await.map_err(StoreError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            tracing::warn!(dataset = %r, version, error = %e, "no Delta checkpoint written");
        }
    }

    async fn load(&self, mut builder: DeltaTableBuilder, r: &DatasetRef, version: Option<i64>) -> Result<DeltaTable, StoreError> {
        if let Some(v) = version {
            if v < 0 {
                return Err(StoreError::NotFound { what: "version", name: format!("{r}@{v}") });
            }
            builder = builder.with_version(v as _);
        }
        let loaded = builder.load().await;
        // Only a failed read of an earlier version looks at the log (an erasure may have cut it).
        if let (Err(_), Some(v)) = (&loaded, version)
            && let Some(store) = self.builder(r).ok().and_then(|b| b.build().ok()).map(|t| t.log_store().object_store(None))
            && let Some(first) = first_logged(&store).await
            && v < first
        {
            return Err(StoreError::invalid(
                "version",
                format!("version {v} of {r} can no longer be read: an erasure in version {first} removed the versions before it"),
            ));
        }
        loaded.map_err(|e| match e {
            deltalake::DeltaTableError::NotATable(_) => StoreError::NotFound { what: "table", name: r.to_string() },
            e if version.is_some() && is_missing_version(&e) => {
                StoreError::NotFound { what: "version", name: format!("{} of {r}", version.unwrap_or_default()) }
            }
            e => e.into(),
        })
    }

    /// Opens a dataset's table for queries: like [`Lake::open`], but over the lake's
    /// [`CachedRanges`], which [`Lake::reading_store`] also gives to register in the query's
    /// session, so repeated reads of the same row groups come from memory.
    pub async fn open_for_reading(&self, r: &DatasetRef, version: Option<i64>) -> Result<DeltaTable, StoreError> {
        let (_, root) = self.reading_store(r)?;
        let builder = self.builder(r)?.with_storage_backend(root, self.table_url(r));
        self.load(builder, r, version).await
    }

    /// The storage root behind the lake's [`CachedRanges`], and the URL (scheme and authority:
    /// `file://`, `s3://bucket`) under which a DataFusion session finds it.
    pub fn reading_store(&self, r: &DatasetRef) -> Result<(Url, std::sync::Arc<dyn object_store::ObjectStore>), StoreError> {
        let root = match self.reads.get() {
            Some(root) => root.clone(),
            None => {
                let plain = self.builder(r)?.build_storage()?.root_object_store(None);
                let cached: std::sync::Arc<dyn object_store::ObjectStore> =
                    std::sync::Arc::new(CachedRanges::new(plain, self.read_cache_bytes));
                self.reads.get_or_init(|| cached).clone()
            }
        };
        let mut url = self.root.clone();
        url.set_path("/");
        Ok((url, root))
    }

    /// The object store at the lake's root.
    pub(crate) fn root_store(&self) -> Result<std::sync::Arc<dyn object_store::ObjectStore>, StoreError> {
        Ok(DeltaTableBuilder::from_url(self.root.clone())?.with_storage_options(self.options.clone()).build_storage()?.object_store(None))
    }

    /// Whether storage answers: one listing of the lake's root.
    pub async fn reachable(&self) -> Result<(), StoreError> {
        self.root_store()?.list_with_delimiter(None).await.map_err(|e| StoreError::Read(e.to_string()))?;
        Ok(())
    }

    /// Whether a dataset's table exists.
    pub async fn exists(&self, r: &DatasetRef) -> Result<bool, StoreError> {
        let table = self.builder(r)?.build()?;
        Ok(table.verify_deltatable_existence().await?)
    }
}

fn is_missing_version(e: &deltalake::DeltaTableError) -> bool {
    let s = e.to_string().to_lowercase();
    s.contains("version")
        && (s.contains("not found")
            || s.contains("invalid")
            || s.contains("does not exist")
            || s.contains("no commit")
            || s.contains("not the same as the specified end version"))
}

/// The first version the table's log still holds (an erasure deletes the entries before its own).
pub(crate) async fn first_logged(store: &std::sync::Arc<dyn object_store::ObjectStore>) -> Option<i64> {
    use futures::TryStreamExt;
    let log: Vec<_> = store.list(Some(&object_store::path::Path::from("_delta_log"))).try_collect().await.ok()?;
    log.iter()
        .filter_map(|e| e.location.filename())
        .filter_map(|name| name.split('.').next().filter(|n| n.len() == 20).and_then(|n| n.parse::<i64>().ok()))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_commits_only_with_conditional_writes() {
        let env = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        for unsafe_mode in [("AWS_S3_ALLOW_UNSAFE_RENAME", "true"), ("AWS_CONDITIONAL_PUT", "disabled")] {
            let refused = Lake::configured("s3://bucket/lake", &env(&[unsafe_mode])).unwrap_err().to_string();
            assert!(refused.contains("conditional writes"), "{refused}");
        }
        let lake = Lake::configured("s3://bucket/lake", &env(&[])).unwrap();
        assert_eq!(lake.storage_options().get("retry_timeout").map(String::as_str), Some("10s"));
        let lake = Lake::configured("s3://bucket/lake", &env(&[("TVERR_STORAGE_RETRY_SECONDS", "3")])).unwrap();
        assert_eq!(lake.storage_options().get("retry_timeout").map(String::as_str), Some("3s"));
        assert!(Lake::configured("s3://bucket/lake", &env(&[("TVERR_STORAGE_RETRY_SECONDS", "soon")])).is_err());
    }
}
