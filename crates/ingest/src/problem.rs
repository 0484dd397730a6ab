//! Ingest errors: precise, located, and many at once.

use std::fmt;

/// One thing wrong with the input, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = InputProblem)]
pub struct Problem {
    /// The source file's name.
    pub file: String,
    /// 1-based line in a text file (CSV, NDJSON, JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based data row (spreadsheet row, JSON array element, Parquet row).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<u64>,
    /// The column (field) name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Problem {
    /// A problem with the file as a whole.
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        Self { file: file.to_string(), line: None, row: None, column: None, message: message.into() }
    }

    /// A problem at a line of a text file.
    pub fn at_line(file: &str, line: u64, column: Option<&str>, message: impl Into<String>) -> Self {
        Self { file: file.to_string(), line: Some(line), row: None, column: column.map(str::to_string), message: message.into() }
    }

    /// A problem at a data row.
    pub fn at_row(file: &str, row: u64, column: Option<&str>, message: impl Into<String>) -> Self {
        Self { file: file.to_string(), line: None, row: Some(row), column: column.map(str::to_string), message: message.into() }
    }

    /// A problem with one column as a whole.
    pub fn column(file: &str, column: &str, message: impl Into<String>) -> Self {
        Self { file: file.to_string(), line: None, row: None, column: Some(column.to_string()), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ": line {line}")?;
        }
        if let Some(row) = self.row {
            write!(f, ": row {row}")?;
        }
        if let Some(column) = &self.column {
            write!(f, ", column \"{column}\"")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why an ingest failed. Nothing is committed after any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The input is wrong; each problem says where.
    #[error("{}", display_problems(.0))]
    Invalid(Vec<Problem>),
    /// The file could not be read.
    #[error("cannot read {file}: {source}")]
    Io {
        /// The file's name.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The sink (storage) failed.
    #[error("{0}")]
    Sink(String),
}

impl IngestError {
    /// The located problems, if this is an input error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            IngestError::Invalid(p) => p,
            _ => &[],
        }
    }
}

fn display_problems(problems: &[Problem]) -> String {
    let mut out = String::new();
    if problems.len() > 1 {
        out.push_str(&format!("{} problems in the input:\n", problems.len()));
    }
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if problems.len() > 1 {
            out.push_str("  ");
        }
        out.push_str(&p.to_string());
    }
    if problems.len() >= crate::MAX_PROBLEMS {
        out.push_str(&format!("\n  (stopped after {} problems)", crate::MAX_PROBLEMS));
    }
    out
}

/// Collects problems up to the limit.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        if self.0.len() < crate::MAX_PROBLEMS {
            self.0.push(p);
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn full(&self) -> bool {
        self.0.len() >= crate::MAX_PROBLEMS
    }
    pub fn into_result<T>(self, ok: T) -> Result<T, IngestError> {
        if self.0.is_empty() { Ok(ok) } else { Err(IngestError::Invalid(self.0)) }
    }
}
