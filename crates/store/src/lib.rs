//! Where Tverr keeps things: the catalogue (organisations, departments, datasets, columns,
//! versions) in a SQL database, and each dataset's rows as a Delta Lake table on object storage.
//!
//! The same code runs embedded (SQLite file + local directory) and at scale (PostgreSQL + S3).
//! A dataset's versions are Delta versions; [`Store::ingest`] is the only writer and produces one
//! new version or nothing.

mod backup;
mod cached;
mod catalog;
mod changes;
mod cluster;
mod connectors;
mod deletions;
mod erase;
mod error;
mod files;
mod index;
mod ingest;
mod lake;
mod quick;
mod search;
mod settings;
mod subjects;
mod subscriptions;
mod uploads;
mod writing;

use std::path::{Path, PathBuf};

pub use backup::{BACKUP_FORMAT, BackedUpDataset, BackedUpFile, BackedUpTable, ColumnKind, DeploymentFile, Manifest, read_manifest};
pub use cached::CachedRanges;
pub use catalog::{
    Catalog, ColumnMeta, DatasetMeta, Department, GENERATION_TABLES, NewDataset, Organization, ProtectionLink, ProtectionRegister,
    RawCatalog, Timestamp, VersionMeta, VersionMode,
};
pub use changes::{VersionChange, difference as row_difference};
pub use cluster::{SORT_MEMORY as DEFAULT_SORT_MEMORY, cell_order};
pub use connectors::{ConnectorRow, ConnectorRun};
pub use erase::Erasure;
pub use error::{StoreError, unavailable};
pub use index::{BIG_CELL, CELL_SIZE, CELLS_MARKER, MAX_CELLS, cell_keys, cells_within};
pub use ingest::{IngestOutcome, IngestRequest, Inspection, WriteMode};
pub use lake::Lake;
pub use search::CatalogQuery;
pub use settings::{CreateSettings, IngestSettings};
pub use subjects::Place;
pub use subscriptions::{Attempt, Delivery, SubscriptionRow};
pub use tverr_ingest;
pub use uploads::{UPLOAD_KEEP, Upload, UploadStep};

/// Where the catalogue and the lake live.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory (default catalogue and lake live here).
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: `catalog.db` in the data directory.
    pub catalog_url: Option<String>,
    /// An object-store URL (`file:///…`, `s3://bucket/prefix`); default: `lake/` in the data
    /// directory.
    pub storage_url: Option<String>,
}

/// The catalogue and the lake together.
#[derive(Debug, Clone)]
pub struct Store {
    /// Metadata.
    pub catalog: Catalog,
    /// Table data.
    pub lake: Lake,
    /// The memory an ingest's sort by place may hold before it spills ([`Store::with_sort_memory`]).
    sort_memory: usize,
}

impl Store {
    /// Opens (creating if needed) the catalogue and the lake, and runs migrations.
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StoreError::Config { message: format!("cannot create the data directory {}: {e}", config.data_dir.display()) })?;
        let data_dir = absolute(&config.data_dir)?;
        let catalog_url = match &config.catalog_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}?mode=rwc", data_dir.join("catalog.db").display()),
        };
        let catalog = Catalog::connect(&catalog_url).await?;
        let storage_url = match &config.storage_url {
            Some(u) => u.clone(),
            None => {
                let lake = data_dir.join("lake");
                std::fs::create_dir_all(&lake)
                    .map_err(|e| StoreError::Config { message: format!("cannot create {}: {e}", lake.display()) })?;
                url::Url::from_directory_path(&lake)
                    .map_err(|()| StoreError::Config { message: format!("bad lake path {}", lake.display()) })?
                    .to_string()
            }
        };
        let lake = Lake::new(&storage_url)?;
        Ok(Self { catalog, lake, sort_memory: cluster::SORT_MEMORY })
    }

    /// Lets an ingest's sort by place (`cluster.rs`) hold `bytes` in memory before it spills
    /// to disk (default 256 MiB). An ingest whose sort runs out of it is written unsorted.
    pub fn with_sort_memory(mut self, bytes: usize) -> Self {
        self.sort_memory = bytes;
        self
    }

    /// Raw SQL over the catalogue, for the policy layer and the access log.
    pub fn raw_catalog(&self) -> RawCatalog {
        RawCatalog::new(self.catalog.clone())
    }
}

fn absolute(p: &Path) -> Result<PathBuf, StoreError> {
    std::fs::canonicalize(p).map_err(|e| StoreError::Config { message: format!("{}: {e}", p.display()) })
}
