//! The only writer of table data: a source file becomes exactly one new Delta version, or
//! nothing.
//!
//! The reader (blocking, in `tverr-ingest`) and the writer (async, Delta) run side by side,
//! joined by a channel of two batches, so memory stays bounded whatever the file's size. Data
//! files are streamed to storage as they fill; they become visible only through the single
//! commit at the end. On any problem the commit never happens and the previous version stays
//! exactly as it was.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, StringArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, DeletionVectorDescriptor, MetadataExt, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter, WriteMode as DeltaWriteMode};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;
use tverr_core::{ColumnCategory, DatasetRef, SubjectKind};
use tverr_ingest::{BatchSink, IngestError, IngestOptions, Problem, SourceReport, TargetSchema};

use crate::catalog::{ColumnMeta, NewDataset, VersionMeta, VersionMode};
use crate::cluster::Clustering;
use crate::files::{FileReader, conform, object_path, read_error};
use crate::{Store, StoreError};

/// How a new version relates to the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteMode {
    /// Add the file's rows.
    Append,
    /// The file's rows replace all rows.
    Replace,
    /// Rows whose key matches a file row are replaced; others are kept; new keys are added.
    Upsert {
        /// The key column.
        key: String,
    },
}

impl WriteMode {
    /// The mode's name: `append`, `replace` or `upsert`.
    pub fn label(&self) -> &'static str {
        match self {
            WriteMode::Append => "append",
            WriteMode::Replace => "replace",
            WriteMode::Upsert { .. } => "upsert",
        }
    }
}

/// One ingest.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// The target dataset.
    pub dataset: DatasetRef,
    /// The source file.
    pub path: PathBuf,
    /// How to read it.
    pub options: IngestOptions,
    /// Append, replace or upsert.
    pub mode: WriteMode,
    /// Create the dataset with this metadata (it must not exist yet).
    pub create: Option<NewDataset>,
    /// Column categories to record.
    pub categories: BTreeMap<String, ColumnCategory>,
    /// Column descriptions to record: the titles people read above the values.
    pub descriptions: BTreeMap<String, String>,
    /// Who ingests (recorded with the version).
    pub actor: String,
}

/// What an ingest produced.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IngestOutcome {
    /// The new version.
    pub version: i64,
    /// What was read.
    pub report: SourceReport,
    /// Rows removed (replace, upsert).
    pub rows_removed: u64,
    /// Whether the dataset was created.
    pub created: bool,
}

enum Message {
    Schema(SchemaRef),
    Batch(RecordBatch),
}

/// Hands batches from the blocking reader to the async writer.
struct ChannelSink(mpsc::Sender<Message>);

impl BatchSink for ChannelSink {
    fn schema(&mut self, schema: &SchemaRef) -> Result<(), IngestError> {
        self.0.blocking_send(Message::Schema(schema.clone())).map_err(|_| IngestError::Sink("the writer stopped".into()))
    }
    fn batch(&mut self, batch: RecordBatch) -> Result<(), IngestError> {
        self.0.blocking_send(Message::Batch(batch)).map_err(|_| IngestError::Sink("the writer stopped".into()))
    }
}

/// A column chunk's dictionary page is at most this large; a column that needs more falls back
/// to plain pages.
const DICTIONARY_PAGE_LIMIT: usize = 4 << 10;

/// How data files are written; `sample` (the first rows) decides which columns get no
/// dictionary at all ([`without_dictionary`]).
fn writer_properties(sample: Option<&RecordBatch>) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_row_count(Some(128 * 1024))
        // Columns of many distinct values (person numbers, ids, addresses) give up dictionary
        // encoding early instead of interning most of a row group first; and a look-up, which
        // must decode a column chunk's dictionary to read one row, decodes at most 4 KiB of it.
        // Columns of few values (districts, statuses, names) still fit.
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_LIMIT)
        // Pages of at most 512 rows: a look-up reads one row through the page index and
        // decompresses only its page, not 20,000 rows of every column. The limit is checked
        // after each write batch, so the write batch is as small.
        .set_data_page_row_count_limit(512)
        .set_write_batch_size(512);
    for name in sample.map(without_dictionary).unwrap_or_default() {
        builder = builder.set_column_dictionary_enabled(parquet::schema::types::ColumnPath::from(name), false);
    }
    builder.build()
}

/// The top-level columns whose distinct values in `sample` already overflow a dictionary page.
/// Written with a dictionary, each of their row groups would begin with a page of the first few
/// hundred values and fall back to plain pages after it: a look-up reading one row would read
/// and decode that page for nothing, in every column, for every row group it reads.
fn without_dictionary(sample: &RecordBatch) -> Vec<String> {
    let mut out = Vec::new();
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        if field.data_type().is_nested() || *field.data_type() == DataType::Boolean {
            continue;
        }
        let Ok(text) = cast(column, &DataType::Utf8) else { continue };
        let Some(text) = text.as_any().downcast_ref::<StringArray>() else { continue };
        // A dictionary entry is the plain encoding of a value: its width, or a length and bytes.
        let width = field.data_type().primitive_width();
        let mut seen = std::collections::HashSet::new();
        let mut size = 0usize;
        for value in text.iter().flatten() {
            if seen.insert(value) {
                size += width.unwrap_or(4 + value.len());
                if size > DICTIONARY_PAGE_LIMIT {
                    out.push(field.name().clone());
                    break;
                }
            }
        }
    }
    out
}

const TARGET_FILE_SIZE: u64 = 128 << 20;

/// A writer of new data files for `r`; `sample`, the first rows it will write, decides how
/// their columns are encoded.
pub(crate) fn new_writer(
    store: &Store,
    r: &DatasetRef,
    table: Option<&DeltaTable>,
    schema: &SchemaRef,
    sample: Option<&RecordBatch>,
) -> Result<RecordBatchWriter, StoreError> {
    let writer = match table {
        Some(t) => RecordBatchWriter::for_table(t)?,
        None => {
            RecordBatchWriter::try_new(store.lake.table_url(r).as_str(), schema.clone(), None, Some(store.lake.storage_options().clone()))?
        }
    };
    Ok(writer.with_writer_properties(writer_properties(sample)).with_target_file_size(TARGET_FILE_SIZE))
}

/// Writes rows to the writer, made for the first rows written, which decide the encoding.
async fn write_batch(
    store: &Store,
    r: &DatasetRef,
    table: Option<&DeltaTable>,
    schema: &Option<SchemaRef>,
    writer: &mut Option<RecordBatchWriter>,
    batch: RecordBatch,
    mode: DeltaWriteMode,
) -> Result<(), StoreError> {
    let w = match writer {
        Some(w) => w,
        None => writer.insert(new_writer(store, r, table, schema.as_ref().expect("schema comes first"), Some(&batch))?),
    };
    w.write_with_mode(batch, mode).await?;
    Ok(())
}

fn key_strings(batch: &RecordBatch, key: &str) -> Result<StringArray, StoreError> {
    let col = batch.column_by_name(key).ok_or_else(|| StoreError::invalid("key", format!("column {key:?} is not in the data")))?;
    let as_text = cast(col, &DataType::Utf8).map_err(|e| StoreError::Read(e.to_string()))?;
    Ok(as_text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8").clone())
}

/// What a file would give, read in full without writing anything ([`Store::inspect`]).
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Format, encoding, delimiter, columns and rows, as an ingest would report them.
    pub report: SourceReport,
    /// The first rows as they would be stored.
    pub sample: Option<RecordBatch>,
}

/// Keeps the first rows and drops the rest.
struct SampleSink {
    rows: usize,
    sample: Option<RecordBatch>,
}

impl BatchSink for SampleSink {
    fn schema(&mut self, _: &SchemaRef) -> Result<(), IngestError> {
        Ok(())
    }
    fn batch(&mut self, batch: RecordBatch) -> Result<(), IngestError> {
        if self.sample.is_none() {
            self.sample = Some(batch.slice(0, batch.num_rows().min(self.rows)));
        }
        Ok(())
    }
}

impl Store {
    /// Sets the existing table's schema as the target of the read, and checks the request's
    /// subject keys and upsert key against it.
    fn fit_target(req: &mut IngestRequest, table: Option<&DeltaTable>, known_columns: &[ColumnMeta]) -> Result<(), StoreError> {
        if let Some(t) = table {
            let schema: arrow::datatypes::Schema = t.snapshot()?.schema().as_ref().try_into_arrow()?;
            let subjects: BTreeMap<String, SubjectKind> =
                known_columns.iter().filter_map(|c| c.subject_key.map(|s| (c.name.clone(), s))).collect();
            for (col, kind) in &req.options.subjects {
                if let Some(existing) = subjects.get(col)
                    && existing != kind
                {
                    return Err(StoreError::invalid("subject", format!("column {col:?} is already a {existing} key")));
                }
            }
            // What a column is (its category) decides who may read it and how: it is changed on
            // its own, as an audited action, never as a side effect of a new version.
            for (col, category) in &req.categories {
                if let Some(existing) = known_columns.iter().find(|c| &c.name == col)
                    && existing.category != *category
                {
                    return Err(StoreError::invalid(
                        "category",
                        format!(
                            "column {col:?} is {}; a new version does not change an existing column's category (use `tverr dataset category`, an audited change that needs a second person's approval to lower protection)",
                            existing.category
                        ),
                    ));
                }
            }
            let crs = known_columns.iter().filter_map(|c| c.crs.clone().map(|crs| (c.name.clone(), crs))).collect();
            req.options.target = Some(TargetSchema { schema: Arc::new(schema), subjects, crs });
        }
        if let (WriteMode::Upsert { key: k }, Some(target)) = (&req.mode, &req.options.target)
            && target.schema.field_with_name(k).is_err()
        {
            return Err(StoreError::invalid("key", format!("the dataset has no column {k:?}")));
        }
        Ok(())
    }

    /// Reads a file as [`Store::ingest`] would (the same checks, the existing table's schema)
    /// and reports what it found, with the first `rows` rows; writes nothing. A file the ingest
    /// would refuse is refused here with the same problems (line, column).
    pub async fn inspect(&self, mut req: IngestRequest, rows: usize) -> Result<Inspection, StoreError> {
        let r = req.dataset.clone();
        self.catalog.org(r.org.as_str()).await?;
        let exists = self.catalog.dataset_exists(&r).await?;
        match (&req.create, exists) {
            (Some(_), true) => return Err(StoreError::Exists { what: "dataset", name: r.to_string() }),
            (None, false) => return Err(StoreError::NotFound { what: "dataset", name: r.to_string() }),
            (Some(new), false) => {
                self.catalog.department(r.org.as_str(), &new.department).await?;
                if new.title.trim().is_empty() {
                    return Err(StoreError::invalid("title", "must not be empty"));
                }
            }
            (None, true) => {}
        }
        let table = if exists { Some(self.lake.open(&r, None).await?) } else { None };
        let known_columns = if exists { self.catalog.columns(&r).await? } else { Vec::new() };
        Self::fit_target(&mut req, table.as_ref(), &known_columns)?;
        let (path, options) = (req.path.clone(), req.options.clone());
        let (report, sample) = tokio::task::spawn_blocking(move || {
            let mut sink = SampleSink { rows, sample: None };
            tverr_ingest::read_file(&path, &options, &mut sink).map(|report| (report, sink.sample))
        })
        .await
        .map_err(|e| StoreError::Read(format!("the reader failed: {e}")))??;
        let names: Vec<&str> = report.columns.iter().map(|c| c.name.as_str()).collect();
        if let Some(col) = req.categories.keys().find(|c| !names.contains(&c.as_str())) {
            return Err(StoreError::invalid("category", format!("column {col:?} is not in the dataset")));
        }
        if let Some(col) = req.descriptions.keys().find(|c| !names.contains(&c.as_str())) {
            return Err(StoreError::invalid("describe", format!("column {col:?} is not in the dataset")));
        }
        if let WriteMode::Upsert { key } = &req.mode
            && !names.contains(&key.as_str())
        {
            return Err(StoreError::invalid("key", format!("the file has no column {key:?}")));
        }
        Ok(Inspection { report, sample })
    }

    /// Reads a file and commits it as one new version of a dataset.
    pub async fn ingest(&self, req: IngestRequest) -> Result<IngestOutcome, StoreError> {
        let writing = self.begin_write(&req.dataset, "ingest").await?;
        match self.ingest_locked(req, &writing).await {
            Ok(outcome) => {
                self.end_write(writing, true).await;
                Ok(outcome)
            }
            // The commit was under way: whether it landed decides the answer, never a guess.
            Err(StoreError::Interrupted { source, report, rows_removed, created }) => match self.settle_interrupted(writing).await? {
                Some(version) => Ok(IngestOutcome { version, report: *report, rows_removed, created }),
                None => Err(*source),
            },
            Err(e) => {
                self.end_write(writing, false).await;
                Err(e)
            }
        }
    }

    /// [`Store::ingest`], with the dataset's write lock held.
    async fn ingest_locked(&self, req: IngestRequest, write: &crate::writing::Writing) -> Result<IngestOutcome, StoreError> {
        match self.ingest_sorted(req.clone(), true, write).await {
            // Rows too large for the sort's memory: the file is read again and written as it
            // comes (nothing of the first attempt was committed).
            Err(StoreError::Sort(reason)) => {
                tracing::warn!(dataset = %req.dataset, %reason, "the rows could not be sorted by place; writing them unsorted");
                self.ingest_sorted(req, false, write).await
            }
            other => other,
        }
    }

    /// [`Store::ingest`], with the rows sorted by place when `sort` is set and the dataset's
    /// geometry is indexed by cell.
    async fn ingest_sorted(
        &self,
        mut req: IngestRequest,
        sort: bool,
        write: &crate::writing::Writing,
    ) -> Result<IngestOutcome, StoreError> {
        let started = std::time::Instant::now();
        let r = req.dataset.clone();
        self.catalog.org(r.org.as_str()).await?;
        let exists = self.catalog.dataset_exists(&r).await?;
        match (&req.create, exists) {
            (Some(_), true) => return Err(StoreError::Exists { what: "dataset", name: r.to_string() }),
            (None, false) => {
                return Err(StoreError::NotFound { what: "dataset", name: format!("{r} (give --create to create it)") });
            }
            (Some(new), false) => {
                self.catalog.department(r.org.as_str(), &new.department).await?;
                if new.title.trim().is_empty() {
                    return Err(StoreError::invalid("title", "must not be empty"));
                }
                if self.lake.exists(&r).await? {
                    return Err(StoreError::Config {
                        message: format!(
                            "storage already holds a table for {r} that the catalogue does not know; \
                             move {} away before creating the dataset",
                            self.lake.table_url(&r)
                        ),
                    });
                }
                self.lake.prepare(&r)?;
            }
            (None, true) => {}
        }
        let table = if exists { Some(self.lake.open(&r, None).await?) } else { None };
        let known_columns = if exists { self.catalog.columns(&r).await? } else { Vec::new() };
        Self::fit_target(&mut req, table.as_ref(), &known_columns)?;
        let key = match &req.mode {
            WriteMode::Upsert { key } => Some(key.clone()),
            _ => None,
        };

        // Reader and writer, joined by a small channel.
        let (tx, mut rx) = mpsc::channel::<Message>(2);
        let path = req.path.clone();
        let options = req.options.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let mut sink = ChannelSink(tx);
            tverr_ingest::read_file(&path, &options, &mut sink)
        });
        let evolve = req.options.evolve;
        let mut schema_read: Option<SchemaRef> = None;
        let mut writer: Option<RecordBatchWriter> = None;
        let mut keys: HashMap<String, u64> = HashMap::new();
        let mut key_problems = Vec::new();
        let mut data_row = 0u64;
        let mut write_error: Option<StoreError> = None;
        // A geometry is indexed by cell: its rows are written in cell order (`cluster`), so a read
        // of one place touches few pages.
        let mut clustering: Option<Clustering> = None;
        let mode = if evolve { DeltaWriteMode::MergeSchema } else { DeltaWriteMode::Default };
        let file_name = req.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        while let Some(msg) = rx.recv().await {
            let step = async {
                match msg {
                    Message::Schema(schema) => {
                        if let Some(k) = &key
                            && schema.field_with_name(k).is_err()
                        {
                            return Err(StoreError::invalid("key", format!("the file has no column {k:?}")));
                        }
                        let geometry = schema.fields().iter().position(|f| f.data_type() == &DataType::Binary);
                        // Every geometry is indexed by cell (a box read over OGC API Features or
                        // REST `bbox` reads the cells' rows), so every geometry dataset is
                        // written in cell order.
                        if let (Some(column), true) = (geometry, sort) {
                            clustering = Some(Clustering::start(&schema, column, self.sort_memory)?);
                        }
                        schema_read = Some(schema);
                    }
                    Message::Batch(batch) => {
                        if let Some(k) = &key {
                            let values = key_strings(&batch, k)?;
                            for i in 0..values.len() {
                                let row = data_row + i as u64 + 1;
                                if values.is_null(i) {
                                    key_problems.push(Problem::at_row(&file_name, row, Some(k), "the upsert key is empty"));
                                } else if let Some(first) = keys.insert(values.value(i).to_string(), row) {
                                    key_problems.push(Problem::at_row(
                                        &file_name,
                                        row,
                                        Some(k),
                                        format!("the key appears more than once in the file (also at data row {first})"),
                                    ));
                                }
                            }
                        }
                        data_row += batch.num_rows() as u64;
                        match &mut clustering {
                            Some(c) => c.push(batch).await?,
                            None => write_batch(self, &r, table.as_ref(), &schema_read, &mut writer, batch, mode).await?,
                        }
                    }
                }
                Ok::<(), StoreError>(())
            };
            if let Err(e) = step.await {
                write_error = Some(e);
                break;
            }
        }
        drop(rx);
        let read_result = reader.await.map_err(|e| StoreError::Read(format!("the reader failed: {e}")))?;
        let abort = |writer: Option<RecordBatchWriter>| {
            if let Some(mut w) = writer {
                w.reset();
            }
        };
        if let Some(e) = write_error {
            abort(writer);
            return Err(e);
        }
        let report = match read_result {
            Ok(report) => report,
            Err(e) => {
                abort(writer);
                return Err(e.into());
            }
        };
        if !key_problems.is_empty() {
            abort(writer);
            key_problems.truncate(tverr_ingest::MAX_PROBLEMS);
            return Err(IngestError::Invalid(key_problems).into());
        }
        let column_names: Vec<&str> = report.columns.iter().map(|c| c.name.as_str()).collect();
        for col in req.categories.keys() {
            if !column_names.contains(&col.as_str()) {
                abort(writer);
                return Err(StoreError::invalid("category", format!("column {col:?} is not in the dataset")));
            }
        }
        if let Some(col) = req.descriptions.keys().find(|c| !column_names.contains(&c.as_str())) {
            abort(writer);
            return Err(StoreError::invalid("describe", format!("column {col:?} is not in the dataset")));
        }
        if let Some(mut sorted) = clustering.take() {
            while let Some(batch) = sorted.next().await {
                let written = match batch {
                    Ok(batch) => write_batch(self, &r, table.as_ref(), &schema_read, &mut writer, batch, mode).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    abort(writer);
                    return Err(e);
                }
            }
        }
        let mut writer = match writer {
            Some(w) => w,
            None => new_writer(self, &r, table.as_ref(), schema_read.as_ref().expect("a successful read sends a schema"), None)?,
        };
        let evolved_schema = writer.arrow_schema();
        let subjects_before: BTreeMap<String, SubjectKind> =
            known_columns.iter().filter_map(|c| c.subject_key.map(|k| (c.name.clone(), k))).collect();
        let mut subjects_after = subjects_before.clone();
        subjects_after.extend(report.columns.iter().filter_map(|c| c.subject.map(|k| (c.name.clone(), k))));
        let geometry: Vec<String> = known_columns
            .iter()
            .filter(|c| c.column_type == tverr_ingest::ColumnType::Geometry)
            .map(|c| c.name.clone())
            .chain(report.columns.iter().filter(|c| c.column_type == tverr_ingest::ColumnType::Geometry).map(|c| c.name.clone()))
            .collect();
        let key_columns = crate::index::key_columns(&evolved_schema, &subjects_after, &geometry);
        // A new key column means every live file must be indexed again, not only the new ones.
        let keys_changed = exists && subjects_after.len() != subjects_before.len();
        let adds = writer.flush().await?;
        tracing::debug!(dataset = %r, elapsed_ms = started.elapsed().as_millis() as u64, "ingest: rows written");
        let mut actions: Vec<Action> = adds.into_iter().map(Action::Add).collect();
        let mut rows_removed = 0u64;

        let columns: Vec<ColumnMeta> = report
            .columns
            .iter()
            .map(|c| ColumnMeta {
                name: c.name.clone(),
                column_type: c.column_type,
                description: req.descriptions.get(&c.name).cloned().unwrap_or_default(),
                category: req.categories.get(&c.name).copied().unwrap_or(match c.subject {
                    Some(SubjectKind::Person) => ColumnCategory::PersonId,
                    _ => ColumnCategory::None,
                }),
                subject_key: c.subject,
                crs: (c.column_type == tverr_ingest::ColumnType::Geometry)
                    .then(|| report.crs.clone().unwrap_or_else(|| "EPSG:4326".into())),
            })
            .collect();
        let version_mode = match (&req.mode, exists) {
            (_, false) => VersionMode::Create,
            (WriteMode::Append, true) => VersionMode::Append,
            (WriteMode::Replace, true) => VersionMode::Replace,
            (WriteMode::Upsert { .. }, true) => VersionMode::Upsert,
        };
        let recording = crate::writing::Recording {
            mode: version_mode,
            actor: req.actor.clone(),
            rows_written: report.rows as i64,
            rows_removed: 0,
            source_name: Some(report.file_name.clone()),
            source_sha256: Some(report.sha256.clone()),
            source_format: Some(report.format.clone()),
            columns: columns.clone(),
            categories: if exists { req.categories.clone() } else { BTreeMap::new() },
            descriptions: if exists { req.descriptions.clone() } else { BTreeMap::new() },
            write: write.id.clone(),
        };
        // From the commit on, a failure may come after the version landed (delta-rs reads the
        // log back after writing its entry): `Store::ingest` finds out which.
        let interrupted = |source: StoreError, rows_removed: u64| StoreError::Interrupted {
            source: Box::new(source),
            report: Box::new(report.clone()),
            rows_removed,
            created: !exists,
        };
        let app_metadata = vec![
            ("tverr.actor".to_string(), serde_json::json!(req.actor)),
            ("tverr.mode".to_string(), serde_json::json!(if exists { req.mode.label() } else { "create" })),
            ("tverr.rows".to_string(), serde_json::json!(report.rows)),
            ("tverr.source".to_string(), serde_json::json!(report.file_name)),
            ("tverr.sha256".to_string(), serde_json::json!(report.sha256)),
        ];
        // The commit says what the catalogue records of it, so a crash between the two is
        // finished from the lake (`writing`).
        let props = |removed: u64| {
            let mut recording = recording.clone();
            recording.rows_removed = removed as i64;
            let mut metadata = app_metadata.clone();
            metadata.push((crate::writing::RECORDING.to_string(), serde_json::json!(recording)));
            // Under the write lock no other commit can come first; one that did means the lock
            // was lost, and the commit must fail rather than be rebased onto it.
            CommitProperties::default().with_metadata(metadata).with_max_retries(0)
        };
        let index;
        let version: i64 = match &table {
            None => {
                counts_only(&mut actions);
                index = index_change(self, &r, &actions, false, &[], &key_columns, &Marked::default()).await?;
                let schema: StructType = evolved_schema.as_ref().try_into_kernel()?;
                write.confirm().await?;
                let created = deltalake::operations::create::CreateBuilder::new()
                    .with_location(self.lake.table_url(&r).as_str())
                    .with_storage_options(self.lake.storage_options().clone())
                    .with_table_name(r.dataset.as_str())
                    .with_columns(schema.fields().cloned())
                    .with_actions(actions)
                    .with_commit_properties(props(0))
                    .await
                    .map_err(|e| interrupted(e.into(), 0))?;
                created.version().unwrap_or(0) as i64
            }
            Some(t) => {
                let snapshot = t.snapshot()?;
                let mut marked = Marked::default();
                match &req.mode {
                    WriteMode::Append => {}
                    WriteMode::Replace => {
                        let views: Vec<_> = snapshot.snapshot().file_views(t.log_store().as_ref(), None).try_collect().await?;
                        for v in views {
                            let deleted = v.deletion_vector_descriptor().map_or(0, |d| d.cardinality);
                            rows_removed += (v.num_records().unwrap_or(0) as i64 - deleted).max(0) as u64;
                            actions.push(Action::Remove(v.remove_action(true)));
                        }
                    }
                    WriteMode::Upsert { key } => {
                        let (more, removed, m) = delete_keys(self, &r, t, key, &keys).await?;
                        tracing::debug!(dataset = %r, elapsed_ms = started.elapsed().as_millis() as u64, rows = removed, "ingest: replaced rows found");
                        actions.extend(more);
                        rows_removed = removed;
                        marked = m;
                    }
                }
                let live_before: Vec<(String, Option<DeletionVectorDescriptor>)> = if keys_changed {
                    snapshot
                        .snapshot()
                        .file_views(t.log_store().as_ref(), None)
                        .map_ok(|v| (v.path().to_string(), v.deletion_vector_descriptor()))
                        .try_collect()
                        .await?
                } else {
                    Vec::new()
                };
                let rebuild = req.mode == WriteMode::Replace || keys_changed;
                index = index_change(self, &r, &actions, rebuild, &live_before, &key_columns, &marked).await?;
                tracing::debug!(dataset = %r, elapsed_ms = started.elapsed().as_millis() as u64, "ingest: index change read");
                let base: StructType = snapshot.schema().as_ref().clone();
                let new_schema: StructType = evolved_schema.as_ref().try_into_kernel()?;
                let mut metadata = (new_schema != base).then(|| snapshot.metadata().clone().with_schema(&new_schema)).transpose()?;
                if !marked.vectors.is_empty()
                    && let Some(protocol) = crate::deletions::protocol_with_vectors(snapshot.protocol())?
                {
                    actions.push(Action::Protocol(protocol));
                    let meta = metadata.take().unwrap_or_else(|| snapshot.metadata().clone());
                    metadata = Some(meta.add_config_key("delta.enableDeletionVectors".into(), "true".into())?);
                }
                if let Some(meta) = metadata {
                    actions.push(Action::Metadata(meta));
                }
                let operation = DeltaOperation::Write {
                    mode: if req.mode == WriteMode::Replace { SaveMode::Overwrite } else { SaveMode::Append },
                    partition_by: None,
                    predicate: None,
                };
                counts_only(&mut actions);
                write.confirm().await?;
                let finalized = CommitBuilder::from(props(rows_removed))
                    .with_actions(actions)
                    .build(Some(snapshot), t.log_store(), operation)
                    .await
                    .map_err(|e| interrupted(e.into(), rows_removed))?;
                tracing::debug!(dataset = %r, elapsed_ms = started.elapsed().as_millis() as u64, "ingest: committed to the lake");
                finalized.version() as i64
            }
        };

        let meta = VersionMeta {
            version,
            committed_at: crate::Timestamp::now(),
            actor: req.actor.clone(),
            mode: version_mode,
            rows_written: report.rows as i64,
            rows_removed: rows_removed as i64,
            source_name: Some(report.file_name.clone()),
            source_sha256: Some(report.sha256.clone()),
            source_format: Some(report.format.clone()),
        };
        self.catalog.record_version(&r, req.create.as_ref(), &columns, &meta, &index).await.map_err(|e| interrupted(e, rows_removed))?;
        tracing::debug!(dataset = %r, elapsed_ms = started.elapsed().as_millis() as u64, "ingest: recorded in the catalogue");
        self.lake.checkpoint_now_and_then(&r, version).await;
        if exists && !req.categories.is_empty() {
            self.catalog.set_categories(&r, &req.categories).await?;
        }
        if exists && !req.descriptions.is_empty() {
            self.catalog.set_descriptions(&r, &req.descriptions).await?;
        }
        Ok(IngestOutcome { version, report, rows_removed, created: !exists })
    }
}

/// How a version changes the subject index: the keys of the files it adds (of every live file
/// when `rebuild`), read back from storage before the commit, the files it removes, and the rows
/// an upsert marked deleted in files it keeps (a file re-added with a new deletion vector is
/// neither removed nor read again).
async fn index_change(
    store: &Store,
    r: &DatasetRef,
    actions: &[Action],
    rebuild: bool,
    live_before: &[(String, Option<DeletionVectorDescriptor>)],
    key_columns: &[crate::index::KeyColumn],
    marked: &Marked,
) -> Result<crate::index::IndexChange, StoreError> {
    let kept = |p: &String| marked.vectors.contains_key(p);
    let added: Vec<String> =
        actions.iter().filter_map(|a| if let Action::Add(a) = a { Some(a.path.clone()) } else { None }).filter(|p| !kept(p)).collect();
    let removed: Vec<String> =
        actions.iter().filter_map(|a| if let Action::Remove(a) = a { Some(a.path.clone()) } else { None }).filter(|p| !kept(p)).collect();
    let object_store = store.lake.log_store(r)?.object_store(None);
    let mut deleted = HashMap::new();
    let mut to_read: Vec<String> = Vec::new();
    if rebuild {
        let live: Vec<_> = live_before.iter().filter(|(p, _)| !removed.contains(p)).cloned().collect();
        to_read.extend(live.iter().map(|(p, _)| p.clone()));
        deleted = crate::deletions::of_files(&object_store, live).await?;
        deleted.extend(marked.vectors.iter().map(|(p, v)| (p.clone(), v.clone())));
    }
    to_read.extend(added);
    let added = crate::index::keys_of_files(object_store, &to_read, key_columns, &deleted).await?;
    Ok(crate::index::IndexChange {
        rebuild,
        removed: if rebuild { Vec::new() } else { removed },
        added,
        deleted_rows: if rebuild { Vec::new() } else { marked.rows.clone() },
    })
}

/// Takes the column values out of the statistics of the files a version adds, keeping the row
/// and null counts: the log is kept for as long as the table, and a smallest or largest value can
/// be a person's number or name, which an erasure must be able to remove from storage. (Files
/// are not skipped by their values then; the Parquet files' own statistics still skip pages.)
pub(crate) fn counts_only(actions: &mut [Action]) {
    for action in actions {
        let Action::Add(add) = action else { continue };
        let Some(stats) = add.stats.as_deref().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) else { continue };
        let mut kept = serde_json::Map::new();
        for key in ["numRecords", "nullCount"] {
            if let Some(v) = stats.get(key) {
                kept.insert(key.to_string(), v.clone());
            }
        }
        add.stats = Some(serde_json::Value::Object(kept).to_string());
    }
}

/// The files an upsert keeps with more rows marked deleted: each one's whole new deletion
/// vector, and the rows it newly marks.
#[derive(Debug, Default)]
struct Marked {
    vectors: HashMap<String, roaring::RoaringTreemap>,
    rows: Vec<(String, Vec<i64>)>,
}

/// A file whose rows would be more than this share deleted is rewritten without them instead.
const REWRITE_SHARE: u64 = 2;

/// For an upsert: the rows of existing files that hold one of the new keys are marked deleted
/// with a deletion vector (the file itself is not touched), reading only the key column; a file
/// that would then have more than half of its rows deleted is rewritten without them. Returns
/// the actions, the number of rows removed and the files kept with more rows marked.
async fn delete_keys(
    store: &Store,
    r: &DatasetRef,
    table: &DeltaTable,
    key: &str,
    keys: &HashMap<String, u64>,
) -> Result<(Vec<Action>, u64, Marked), StoreError> {
    let snapshot = table.snapshot()?;
    let views: Vec<_> = snapshot.snapshot().file_views(table.log_store().as_ref(), None).try_collect().await?;
    let object_store = table.log_store().object_store(None);
    let table_schema: SchemaRef = Arc::new(snapshot.schema().as_ref().try_into_arrow()?);
    let mut actions = Vec::new();
    let mut removed = 0u64;
    let mut rewriter: Option<RecordBatchWriter> = None;
    let mut marks = Vec::new();
    let mut integer_keys: Option<std::collections::HashSet<i64>> = None;
    for view in views {
        let path = object_path(view.path().as_ref())?;
        let old = match view.deletion_vector_descriptor() {
            Some(d) => crate::deletions::read(&object_store, &d).await?,
            None => roaring::RoaringTreemap::new(),
        };
        let builder =
            ParquetRecordBatchStreamBuilder::new(FileReader::new(object_store.clone(), path.clone())).await.map_err(read_error)?;
        // A file written before the key column existed holds no key.
        let Ok(column) = builder.schema().index_of(key) else { continue };
        let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
        let mut stream = builder.with_projection(mask).with_batch_size(64 * 1024).build().map_err(read_error)?;
        let (mut row, mut hits) = (0u64, Vec::new());
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(read_error)?;
            let column = batch.column(0);
            // An integer key is compared as a number: no text made for each stored row.
            if column.data_type().is_integer() {
                let numbers = integer_keys.get_or_insert_with(|| keys.keys().filter_map(|k| k.parse::<i64>().ok()).collect());
                let values = cast(column, &DataType::Int64).map_err(|e| StoreError::Read(e.to_string()))?;
                let values = values.as_primitive::<arrow::datatypes::Int64Type>();
                for (i, v) in values.iter().enumerate() {
                    if v.is_some_and(|v| numbers.contains(&v)) && !old.contains(row + i as u64) {
                        hits.push(row + i as u64);
                    }
                }
            } else {
                let values = key_strings(&batch, key)?;
                for i in 0..values.len() {
                    if values.is_valid(i) && keys.contains_key(values.value(i)) && !old.contains(row + i as u64) {
                        hits.push(row + i as u64);
                    }
                }
            }
            row += batch.num_rows() as u64;
        }
        if hits.is_empty() {
            continue;
        }
        removed += hits.len() as u64;
        let mut deleted = old;
        deleted.extend(hits.iter().copied());
        if deleted.len() * REWRITE_SHARE <= row {
            marks.push((view, deleted, hits));
            continue;
        }
        actions.push(Action::Remove(view.remove_action(true)));
        let mut stream = ParquetRecordBatchStreamBuilder::new(FileReader::new(object_store.clone(), path))
            .await
            .map_err(read_error)?
            .with_batch_size(64 * 1024)
            .build()
            .map_err(read_error)?;
        let mut row = 0u64;
        while let Some(batch) = stream.next().await {
            // A file written before the schema grew lacks the newer columns: null there.
            let batch = conform(&batch.map_err(read_error)?, &table_schema)?;
            let keep: BooleanArray = (0..batch.num_rows() as u64).map(|i| Some(!deleted.contains(row + i))).collect();
            row += batch.num_rows() as u64;
            let kept = filter_record_batch(&batch, &keep).map_err(|e| StoreError::Read(e.to_string()))?;
            if kept.num_rows() == 0 {
                continue;
            }
            let w = match &mut rewriter {
                Some(w) => w,
                None => rewriter.insert(new_writer(store, r, Some(table), &kept.schema(), Some(&kept))?),
            };
            w.write(kept).await?;
        }
    }
    let mut marked = Marked::default();
    if !marks.is_empty() {
        let vectors: Vec<&roaring::RoaringTreemap> = marks.iter().map(|(_, d, _)| d).collect();
        let descriptors = crate::deletions::write(&object_store, &vectors).await?;
        let now = chrono::Utc::now().timestamp_millis();
        for ((view, deleted, hits), descriptor) in marks.into_iter().zip(descriptors) {
            actions.push(Action::Remove(view.remove_action(true)));
            // The same file again, with its new vector (delta-rs offers no other way to copy an
            // add action).
            #[allow(deprecated)]
            let mut add = view.add_action();
            add.deletion_vector = Some(descriptor);
            add.data_change = true;
            add.modification_time = now;
            actions.push(Action::Add(add));
            let path = view.path().to_string();
            marked.rows.push((path.clone(), hits.into_iter().map(|h| h as i64).collect()));
            marked.vectors.insert(path, deleted);
        }
    }
    if let Some(mut w) = rewriter {
        actions.extend(w.flush().await?.into_iter().map(Action::Add));
    }
    Ok((actions, removed, marked))
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    /// 2,000 rows: unique person numbers and ids, 20 districts, 600 names repeating,
    /// a column of nulls.
    fn sample() -> RecordBatch {
        let n = 2000;
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("fodselsnummer", Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("{:011}", 10_000_000_000u64 + i * 7919))))),
            ("id", Arc::new(Int64Array::from_iter_values(0..n as i64))),
            ("bydel", Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("bydel {}", i % 20))))),
            ("fornavn", Arc::new(StringArray::from_iter_values((0..n).map(|i| format!("navn{}", i % 600))))),
            ("tom", Arc::new(StringArray::from(vec![None::<&str>; n as usize]))),
        ];
        let schema = Schema::new(columns.iter().map(|(name, a)| Field::new(*name, a.data_type().clone(), true)).collect::<Vec<_>>());
        RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|(_, a)| a).collect()).unwrap()
    }

    #[test]
    fn columns_of_many_distinct_values_get_no_dictionary() {
        // 600 names of 5–7 bytes (plus a 4-byte length each) overflow 4 KiB; 20 districts fit.
        assert_eq!(without_dictionary(&sample()), ["fodselsnummer", "id", "fornavn"]);
        // A sample too small to overflow keeps every dictionary.
        assert!(without_dictionary(&sample().slice(0, 100)).is_empty());
    }

    #[test]
    fn the_written_file_has_dictionary_pages_only_where_they_fit() {
        let batch = sample();
        let mut file = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut file, batch.schema(), Some(writer_properties(Some(&batch)))).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(file)).unwrap();
        let group = reader.metadata().row_group(0);
        let with_dictionary: Vec<String> =
            group.columns().iter().filter(|c| c.dictionary_page_offset().is_some()).map(|c| c.column_path().string()).collect();
        assert_eq!(with_dictionary, ["bydel", "tom"]);
        // Without a sample (a file of no rows), every column may have one, as before.
        let props = writer_properties(None);
        assert!(props.dictionary_enabled(&parquet::schema::types::ColumnPath::from("fodselsnummer")));
    }
}
