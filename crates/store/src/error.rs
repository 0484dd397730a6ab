//! Typed errors of the store; the server maps them to problem types, the CLI to messages.

/// Everything that can go wrong in the catalogue or the lake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The input file is wrong; nothing was written.
    #[error(transparent)]
    Ingest(#[from] tverr_ingest::IngestError),
    /// A named thing does not exist.
    #[error("{what} {name} does not exist")]
    NotFound {
        /// "organisation", "department", "dataset", "version".
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A thing to be created exists already.
    #[error("{what} {name} already exists")]
    Exists {
        /// "organisation", "department", "dataset".
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// A field has a value that is not allowed.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field (option) name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Configuration (paths, URLs).
    #[error("{message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// The catalogue database failed.
    #[error("catalogue database: {0}")]
    Catalog(#[from] sqlx::Error),
    /// A migration failed.
    #[error("catalogue migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The lake (Delta / object store) failed.
    #[error("storage: {0}")]
    Lake(#[from] deltalake::DeltaTableError),
    /// Converting between Arrow and Delta schemas or data failed.
    #[error("storage: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Reading stored data failed.
    #[error("storage: {0}")]
    Read(String),
    /// Sorting a write's rows by place failed (an ingest then writes them unsorted).
    #[error("storage: sorting rows by place: {0}")]
    Sort(String),
}

impl From<deltalake::kernel::Error> for StoreError {
    fn from(e: deltalake::kernel::Error) -> Self {
        StoreError::Read(e.to_string())
    }
}

impl From<datafusion::error::DataFusionError> for StoreError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        StoreError::Sort(e.to_string())
    }
}

impl StoreError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid { field: field.into(), message: message.into() }
    }
}
