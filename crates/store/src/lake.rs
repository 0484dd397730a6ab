//! The lake: one Delta table per dataset at `{root}/{org}/{dataset}/`, on any object store that
//! `deltalake` supports (local directory by default, `s3://` at scale).

use std::collections::HashMap;

use deltalake::{DeltaTable, DeltaTableBuilder};
use tverr_core::DatasetRef;
use url::Url;

use crate::StoreError;

/// The storage root and the options used to reach it.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Url,
    options: HashMap<String, String>,
    /// File footers and schemas kept for look-ups.
    pub(crate) cache: std::sync::Arc<crate::subjects::ReadCache>,
}

impl Lake {
    /// A lake rooted at an object-store URL. For `s3://` the usual `AWS_*` variables apply
    /// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ALLOW_HTTP`, …).
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let mut root = Url::parse(url)
            .map_err(|e| StoreError::Config { message: format!("invalid storage URL {url:?}: {e}") })?;
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
            std::env::vars().filter(|(k, _)| k.starts_with("AWS_")).collect()
        } else {
            HashMap::new()
        };
        Ok(Self { root, options, cache: Default::default() })
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
        self.root
            .join(&format!("{}/{}/", r.org, r.dataset))
            .expect("slugs are valid URL path segments")
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
        if url.scheme() == "file" {
            if let Ok(path) = url.to_file_path() {
                std::fs::create_dir_all(&path).map_err(|e| StoreError::Config {
                    message: format!("cannot create {}: {e}", path.display()),
                })?;
            }
        }
        Ok(())
    }

    /// Opens a dataset's table at its latest version, or at `version`.
    pub async fn open(&self, r: &DatasetRef, version: Option<i64>) -> Result<DeltaTable, StoreError> {
        let mut builder = self.builder(r)?;
        if let Some(v) = version {
            if v < 0 {
                return Err(StoreError::NotFound { what: "version", name: format!("{r}@{v}") });
            }
            builder = builder.with_version(v as _);
        }
        builder.load().await.map_err(|e| match e {
            deltalake::DeltaTableError::NotATable(_) => StoreError::NotFound { what: "table", name: r.to_string() },
            e if version.is_some() && is_missing_version(&e) => {
                StoreError::NotFound { what: "version", name: format!("{} of {r}", version.unwrap_or_default()) }
            }
            e => e.into(),
        })
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
        && (s.contains("not found") || s.contains("invalid") || s.contains("does not exist") || s.contains("no commit") || s.contains("not the same as the specified end version"))
}
