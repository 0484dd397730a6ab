//! Shared plumbing for the sources: the reading context, a hashing and progress-reporting reader,
//! and the batcher that fills builders and hands finished batches to the sink.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sha2::{Digest, Sha256};

use crate::columns::{Builder, ColumnPlan, Plan};
use crate::problem::Problems;
use crate::{BatchSink, ColumnReport, IngestError, IngestOptions, Problem, SourceReport};

/// Everything a source needs to know.
pub(crate) struct Context {
    pub path: PathBuf,
    pub file_name: String,
    pub options: IngestOptions,
}

impl Context {
    pub fn open(&self) -> Result<HashingReader<File>, IngestError> {
        let file = File::open(&self.path).map_err(|e| self.io(e))?;
        Ok(HashingReader::new(file, self.options.progress.clone()))
    }

    pub fn io(&self, source: io::Error) -> IngestError {
        IngestError::Io { file: self.file_name.clone(), source }
    }

    pub fn batch_rows(&self) -> usize {
        self.options.batch_rows.unwrap_or(65_536).max(1)
    }

    pub fn sample_rows(&self) -> usize {
        self.options.sample_rows.unwrap_or(10_000).max(1)
    }

    /// SHA-256 of the whole file, for sources that are not read front to back.
    pub fn hash_file(&self) -> Result<(String, u64), IngestError> {
        let mut r = self.open()?;
        io::copy(&mut r, &mut io::sink()).map_err(|e| self.io(e))?;
        Ok(r.finish())
    }
}

/// Reads the first `n` bytes of a file.
pub(crate) fn read_head(path: &Path, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    File::open(path)?.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A reader that hashes everything read through it and reports progress.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
    last_report: u64,
    progress: Option<crate::Progress>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, progress: Option<crate::Progress>) -> Self {
        Self { inner, hasher: Sha256::new(), bytes: 0, last_report: 0, progress }
    }

    /// The hex SHA-256 and byte count of what was read.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }

    /// Reads the rest of the input so the hash covers the whole file.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        if let Some(p) = &self.progress
            && (self.bytes - self.last_report >= 4 << 20 || n == 0)
        {
            self.last_report = self.bytes;
            p(self.bytes);
        }
        Ok(n)
    }
}

/// Fills one builder per output column and emits batches of the configured size.
pub(crate) struct Batcher<'a> {
    pub plan: Plan,
    pub schema: SchemaRef,
    builders: Vec<Builder>,
    batch_rows: usize,
    rows_in_batch: usize,
    pub rows: u64,
    pub problems: Problems,
    sink: &'a mut dyn BatchSink,
    file: String,
}

impl<'a> Batcher<'a> {
    pub fn new(ctx: &Context, plan: Plan, sink: &'a mut dyn BatchSink) -> Result<Self, IngestError> {
        let schema = crate::arrow_schema(&plan.columns);
        sink.schema(&schema)?;
        let batch_rows = ctx.batch_rows();
        let builders = plan.columns.iter().map(|c| Builder::for_column(c, batch_rows)).collect();
        Ok(Self {
            plan,
            schema,
            builders,
            batch_rows,
            rows_in_batch: 0,
            rows: 0,
            problems: Problems::default(),
            sink,
            file: ctx.file_name.clone(),
        })
    }

    /// The output columns and, per column, the source column index.
    pub fn columns(&mut self) -> (&[ColumnPlan], &[Option<usize>], &mut [Builder]) {
        (&self.plan.columns, &self.plan.source_index, &mut self.builders)
    }

    /// Records a problem; returns true when reading should stop.
    pub fn problem(&mut self, p: Problem) -> bool {
        self.problems.push(p);
        self.problems.full()
    }

    /// Marks the end of a row and emits a batch when full.
    pub fn end_row(&mut self) -> Result<(), IngestError> {
        self.rows += 1;
        self.rows_in_batch += 1;
        if self.rows_in_batch >= self.batch_rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands over a batch of ready-made arrays (sources that read Arrow directly).
    pub fn push_arrays(&mut self, arrays: Vec<arrow::array::ArrayRef>, rows: usize) -> Result<(), IngestError> {
        self.rows += rows as u64;
        if !self.problems.is_empty() || rows == 0 {
            return Ok(());
        }
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| IngestError::Sink(format!("{}: cannot build a record batch: {e}", self.file)))?;
        self.sink.batch(batch)
    }

    fn flush(&mut self) -> Result<(), IngestError> {
        if self.rows_in_batch == 0 {
            return Ok(());
        }
        let arrays = self.builders.iter_mut().map(Builder::finish).collect();
        self.rows_in_batch = 0;
        // Once anything is wrong, nothing more is handed on: the ingest will be refused anyway.
        if !self.problems.is_empty() {
            return Ok(());
        }
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| IngestError::Sink(format!("{}: cannot build a record batch: {e}", self.file)))?;
        self.sink.batch(batch)
    }

    /// Flushes the last batch and builds the report.
    pub fn finish(mut self, sha256: String, bytes: u64) -> Result<SourceReport, IngestError> {
        self.flush()?;
        if self.rows == 0 && self.problems.is_empty() {
            self.problems.push(Problem::file(&self.file, "the file has a header but no data rows"));
        }
        let report = SourceReport {
            file_name: self.file.clone(),
            rows: self.rows,
            bytes,
            sha256,
            columns: self
                .plan
                .columns
                .iter()
                .map(|c| ColumnReport { name: c.name.clone(), column_type: c.column_type, subject: c.subject })
                .collect(),
            added_columns: self.plan.added.clone(),
            ..SourceReport::default()
        };
        self.problems.into_result(report)
    }
}
