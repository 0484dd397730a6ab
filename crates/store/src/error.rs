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
    /// Another write of the dataset held its write lock for longer than a write waits.
    #[error("another write of {dataset} has been under way for more than {seconds} s; try again later")]
    Busy {
        /// The dataset.
        dataset: String,
        /// How long this write waited.
        seconds: u64,
    },
    /// Storage or the catalogue stopped answering while a version was being committed, and
    /// still does not: whether the version was committed is not known. If it was, it is recorded
    /// as soon as they answer again (the next write of the dataset, or a node that starts).
    #[error(
        "storage or the catalogue stopped answering while a version of {dataset} was being committed, and whether it was is not known yet; \
         if it was, it is recorded as soon as they answer again. Look at the dataset's versions (the file's SHA-256) before you send the file again"
    )]
    OutcomeUnknown {
        /// The dataset.
        dataset: String,
    },
    /// This node was stopped (or cut off) for longer than the write lease, and the dataset's
    /// write lock may be another node's now: the write committed nothing.
    #[error(
        "the write of {dataset} lost its lock (this server was stopped or cut off for longer than TVERR_WRITE_LEASE_SECONDS) and committed nothing; try again"
    )]
    LockLost {
        /// The dataset.
        dataset: String,
    },
    /// A write failed once its commit was under way (inside the store only: [`crate::Store`]
    /// finds out whether the commit landed and answers with the outcome or
    /// [`StoreError::OutcomeUnknown`]).
    #[error("{source}")]
    Interrupted {
        /// What failed.
        source: Box<StoreError>,
        /// The file's report, for the outcome if the version turns out to be committed.
        report: Box<tverr_ingest::SourceReport>,
        /// Rows the version removed.
        rows_removed: u64,
        /// Whether the version created the dataset.
        created: bool,
    },
    /// A backup could not be written or read, or a restore was refused: the file and why.
    #[error("{path}: {message}")]
    Backup {
        /// The file or directory.
        path: String,
        /// What is wrong.
        message: String,
    },
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
    /// Whether the error is a service that does not answer (the catalogue database or object
    /// storage down, restarting, refusing, slow or answering 503, or a full disk), rather than a
    /// fault of the request or of the data: the request may succeed if tried again later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Catalog(e) => sqlx_unavailable(e),
            StoreError::LockLost { .. } => true,
            StoreError::Lake(_) | StoreError::Read(_) | StoreError::Config { .. } | StoreError::Arrow(_) => unavailable(&self.to_string()),
            _ => false,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError::Invalid { field: field.into(), message: message.into() }
    }
}

/// Whether a catalogue error is the database not answering.
fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| unavailable_code(&c)),
        other => unavailable(&other.to_string()),
    }
}

/// Whether a database's error code is the database not answering or out of room. PostgreSQL's
/// are five-character SQLSTATEs: class 08, connection exception; 57P01–57P03, shut down, crash,
/// cannot connect now; class 53, out of resources (disk full, too many connections). SQLite's
/// are numbers, an extended code's low byte the primary one: 5 busy, 6 locked, 10 I/O error,
/// 13 full, 14 cannot open.
fn unavailable_code(code: &str) -> bool {
    if code.len() == 5 {
        return code.starts_with("08") || code.starts_with("57P") || code.starts_with("53");
    }
    code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
}

/// Whether an error's text says a service did not answer: what object storage's client, the
/// database driver and the operating system say when a server is down, slow or full. Errors
/// reach here as text through Delta and DataFusion, which keep no type for them.
pub fn unavailable(text: &str) -> bool {
    const SAID: [&str; 19] = [
        "connection refused",
        "connection reset",
        "broken pipe",
        "error sending request",
        "error trying to connect",
        "operation timed out",
        "timed out",
        "deadline has elapsed",
        "503 service unavailable",
        "service unavailable",
        "slowdown",
        "pool timed out",
        "pooltimedout",
        "terminating connection",
        "the database system is",
        "no space left on device",
        "database or disk is full",
        "disk quota exceeded",
        "retry limit exceeded",
    ];
    let text = text.to_lowercase();
    SAID.iter().any(|s| text.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_that_does_not_answer_is_told_from_a_bad_request() {
        // What object_store, sqlx and the OS say when S3 or PostgreSQL is down, slow or full.
        for said in [
            "Generic S3 error: Error after 4 retries in 10.2s, max_retries:4, retry_timeout:10s, source:HTTP error: error sending request",
            "Generic S3 error: Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>",
            "error returned from database: terminating connection due to administrator command",
            "pool timed out while waiting for an open connection",
            "Connection refused (os error 111)",
            "No space left on device (os error 28)",
        ] {
            assert!(unavailable(said), "{said}");
            assert!(StoreError::Read(said.to_string()).is_unavailable(), "{said}");
        }
        for said in ["no such column fornavn", "invalid value at line 3, column 2", "Object at location x not found"] {
            assert!(!unavailable(said), "{said}");
        }
        assert!(StoreError::Catalog(sqlx::Error::PoolTimedOut).is_unavailable());
        assert!(!StoreError::Catalog(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::invalid("mode", "timed out").is_unavailable(), "a field's message is the request's fault");
    }

    #[test]
    fn database_codes_of_a_full_or_gone_database_are_told_from_the_requests_faults() {
        // PostgreSQL: connection failure, shutting down, disk full; SQLite: full, busy, a write's
        // I/O error (extended code 778).
        for code in ["08006", "57P01", "53100", "13", "5", "778"] {
            assert!(unavailable_code(code), "{code}");
        }
        // PostgreSQL: unique violation, syntax error; SQLite: constraint (2067), syntax (1).
        for code in ["23505", "42601", "2067", "1"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}
