//! Files to Arrow record batches: the one ingest code path for the CLI and HTTP.
//!
//! A source file is read once, streaming: formats, dialects and encodings are detected from its
//! head, column types are inferred from a sample (or taken from the existing table), every value is
//! parsed and subject keys are canonicalised, and batches are handed to a sink as they fill. Bad
//! input never stops at the first error: up to [`MAX_PROBLEMS`] problems are collected, each with
//! its file, line or row and column, and the caller commits nothing when there are any.
//!
//! This crate knows nothing of storage: the sink decides where batches go.

mod chunker;
mod columns;
mod csv_source;
mod geometry;
mod json_source;
mod limits;
mod parquet_source;
mod problem;
mod reader;
#[cfg(test)]
mod tests;
mod values;
mod xlsx_guard;
mod xlsx_source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use tverr_core::SubjectKind;

pub use columns::{ColumnType, GEOMETRY_ENCODING_KEY};
pub use json_source::{GEOMETRY_COLUMN, normalise_crs};
pub use limits::{MAX_COLUMNS, MAX_POINTS};
pub use problem::{IngestError, Problem};

/// At most this many problems are collected before reading stops.
pub const MAX_PROBLEMS: usize = 100;

/// File formats Tverr ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Delimited text (CSV, TSV, `;` or `|` separated).
    Csv,
    /// A JSON array of objects.
    Json,
    /// Newline-delimited JSON objects.
    Ndjson,
    /// A GeoJSON FeatureCollection.
    GeoJson,
    /// An Excel workbook (.xlsx).
    Xlsx,
    /// Apache Parquet.
    Parquet,
}

impl Format {
    /// Every format, in the order the CLI lists them.
    pub const ALL: &'static [Format] = &[Format::Csv, Format::Json, Format::Ndjson, Format::GeoJson, Format::Xlsx, Format::Parquet];

    /// The name used by `--format` and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::GeoJson => "geojson",
            Format::Xlsx => "xlsx",
            Format::Parquet => "parquet",
        }
    }

    /// Parses a `--format` value or a file extension.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "csv" | "tsv" | "txt" => Format::Csv,
            "json" => Format::Json,
            "ndjson" | "jsonl" => Format::Ndjson,
            "geojson" => Format::GeoJson,
            "xlsx" => Format::Xlsx,
            "parquet" | "pq" => Format::Parquet,
            _ => return None,
        })
    }

    /// Guesses the format from a file's extension and, failing that, from its first bytes.
    pub fn detect(path: &Path, head: &[u8]) -> Option<Self> {
        if let Some(f) = path.extension().and_then(|e| e.to_str()).and_then(Format::parse) {
            return Some(f);
        }
        if head.starts_with(b"PAR1") {
            return Some(Format::Parquet);
        }
        if head.starts_with(b"PK\x03\x04") {
            return Some(Format::Xlsx);
        }
        let text = String::from_utf8_lossy(head);
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        if trimmed.starts_with('[') {
            Some(Format::Json)
        } else if trimmed.starts_with('{') {
            if trimmed.contains("FeatureCollection") { Some(Format::GeoJson) } else { Some(Format::Ndjson) }
        } else if !trimmed.is_empty() {
            Some(Format::Csv)
        } else {
            None
        }
    }
}

/// What a stored table already looks like; later ingests must fit it.
#[derive(Debug, Clone)]
pub struct TargetSchema {
    /// The table's Arrow schema, in column order.
    pub schema: SchemaRef,
    /// Subject-key columns already declared on the dataset.
    pub subjects: BTreeMap<String, SubjectKind>,
    /// The CRS (`EPSG:25833`) of each geometry column the dataset has.
    pub crs: BTreeMap<String, String>,
}

/// A progress callback, called with the number of bytes read so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// How to read one source file.
#[derive(Clone, Default)]
pub struct IngestOptions {
    /// The format; detected from the extension and content when `None`.
    pub format: Option<Format>,
    /// XLSX sheet name; the first sheet when `None`.
    pub sheet: Option<String>,
    /// Column type overrides (`--type COL=TYPE`).
    pub types: BTreeMap<String, ColumnType>,
    /// Subject-key columns (`--subject COL=KIND`), validated and canonicalised.
    pub subjects: BTreeMap<String, SubjectKind>,
    /// CRS of geometries that do not name one: GeoJSON without a `crs` member, WKT without an
    /// SRID (the dataset's CRS, else `EPSG:4326`, when not given).
    pub crs: Option<String>,
    /// The existing table's schema, if the dataset already has data.
    pub target: Option<TargetSchema>,
    /// Allow columns that the table does not have yet (added as nullable columns).
    pub evolve: bool,
    /// Rows per record batch (default 65,536).
    pub batch_rows: Option<usize>,
    /// Rows used to infer column types (default 10,000).
    pub sample_rows: Option<usize>,
    /// Called as bytes are read.
    pub progress: Option<Progress>,
}

impl std::fmt::Debug for IngestOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestOptions")
            .field("format", &self.format)
            .field("sheet", &self.sheet)
            .field("types", &self.types)
            .field("subjects", &self.subjects)
            .field("crs", &self.crs)
            .field("evolve", &self.evolve)
            .finish_non_exhaustive()
    }
}

/// What was detected and read; shown to the user and recorded with the version.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct SourceReport {
    /// The file's name (without directories).
    pub file_name: String,
    /// The format read.
    pub format: String,
    /// The text encoding (CSV, JSON), e.g. `UTF-8`, `UTF-8 with BOM`, `windows-1252`.
    pub encoding: Option<String>,
    /// The CSV delimiter.
    pub delimiter: Option<String>,
    /// The sheet read (XLSX).
    pub sheet: Option<String>,
    /// The CRS of new geometry columns (GeoJSON, WKT or WKB in CSV and XLSX).
    pub crs: Option<String>,
    /// Data rows read.
    pub rows: u64,
    /// Bytes read.
    pub bytes: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// The inferred or confirmed columns, in order.
    pub columns: Vec<ColumnReport>,
    /// Columns that the table did not have before (with `evolve`).
    pub added_columns: Vec<String>,
}

/// One column as read.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ColumnReport {
    /// Column name.
    pub name: String,
    /// Column type.
    pub column_type: ColumnType,
    /// Subject key, if declared.
    pub subject: Option<SubjectKind>,
}

/// Where record batches go. Returning an error stops the read.
pub trait BatchSink {
    /// Called once, before the first batch, with the final schema.
    fn schema(&mut self, schema: &SchemaRef) -> Result<(), IngestError>;
    /// Called for every batch, in file order.
    fn batch(&mut self, batch: RecordBatch) -> Result<(), IngestError>;
}

/// Reads `path` and hands its rows to `sink` as record batches.
///
/// Returns the report when the whole file was read without problems. When there are problems,
/// returns [`IngestError::Invalid`] with the first [`MAX_PROBLEMS`] of them; the sink may have
/// received batches before the first problem was found and must then discard them.
pub fn read_file(path: &Path, options: &IngestOptions, sink: &mut dyn BatchSink) -> Result<SourceReport, IngestError> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
    let head = reader::read_head(path, 8192).map_err(|source| IngestError::Io { file: file_name.clone(), source })?;
    if head.is_empty() {
        return Err(IngestError::Invalid(vec![Problem::file(&file_name, "the file is empty")]));
    }
    let format = match options.format {
        Some(f) => f,
        None => Format::detect(path, &head)
            .ok_or_else(|| IngestError::Invalid(vec![Problem::file(&file_name, "cannot tell the file's format; give --format")]))?,
    };
    let ctx = reader::Context { path: PathBuf::from(path), file_name, options: options.clone() };
    let mut report = match format {
        Format::Csv => csv_source::read(&ctx, sink)?,
        Format::Json => json_source::read(&ctx, json_source::Shape::Array, sink)?,
        Format::Ndjson => json_source::read(&ctx, json_source::Shape::Lines, sink)?,
        Format::GeoJson => json_source::read(&ctx, json_source::Shape::GeoJson, sink)?,
        Format::Xlsx => xlsx_source::read(&ctx, sink)?,
        Format::Parquet => parquet_source::read(&ctx, sink)?,
    };
    report.format = format.as_str().to_string();
    Ok(report)
}

/// Builds the Arrow schema for a list of planned columns (all nullable).
pub(crate) fn arrow_schema(columns: &[columns::ColumnPlan]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                let field = Field::new(&c.name, c.column_type.arrow_type(), true);
                if c.column_type == ColumnType::Geometry {
                    let mut meta = std::collections::HashMap::new();
                    meta.insert(GEOMETRY_ENCODING_KEY.to_string(), "WKB".to_string());
                    field.with_metadata(meta)
                } else {
                    field
                }
            })
            .collect::<Vec<_>>(),
    ))
}
