//! The subject index: from a subject key (a canonical fødselsnummer, matrikkel unit or
//! organisasjonsnummer) to the rows that hold it — dataset, data file and row number — so a
//! look-up reads a few pages instead of whole tables.
//!
//! The index lives in the catalogue (`migrations/0005_subject_index.sql`) and is changed only in
//! the transaction that records a version ([`crate::Catalog`]'s `record_version`), from the data
//! files the version adds and removes. It therefore always describes the catalogue's latest
//! version: after an append (new files), a replace (all files), an upsert (rewritten files) and an
//! erasure (rewritten files, then a vacuum). The keys of new files are read back from storage
//! before the Delta commit, so a file that cannot be indexed is never committed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, new_null_array};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use deltalake::kernel::Action;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake::protocol::DeltaOperation;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use object_store::path::Path;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderBuilder, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use sqlx::Row;
use tverr_core::{DatasetRef, SubjectKind};

use crate::{Store, StoreError};

/// One place a subject key is held: a row of a data file of a dataset's latest version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    /// The dataset.
    pub dataset: DatasetRef,
    /// The data file, relative to the table root.
    pub path: String,
    /// The row's number in the file, from 0.
    pub row: i64,
    /// The key column's position in the table schema.
    pub position: i64,
}

/// The keys of one data file: `(key, row, column position)`.
#[derive(Debug, Default)]
pub(crate) struct FileKeys {
    pub path: String,
    pub keys: Vec<(String, i64, i64)>,
}

/// How a new version changes the index.
#[derive(Debug, Default)]
pub(crate) struct IndexChange {
    /// Forget every file of the dataset first (replace, or a change of key columns).
    pub rebuild: bool,
    /// Files the version removes.
    pub removed: Vec<String>,
    /// Files the version adds, with their keys.
    pub added: Vec<FileKeys>,
}

/// The id of a data file in the index: the first 63 bits of SHA-256 over dataset and path.
pub(crate) fn file_id(r: &DatasetRef, path: &str) -> i64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{r}\n{path}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) >> 1) as i64
}

/// Rows per multi-row insert (four parameters each, well under SQLite's limit).
const INSERT_CHUNK: usize = 2_000;

/// Applies an index change inside the transaction that records the version.
pub(crate) async fn apply(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    r: &DatasetRef,
    version: i64,
    change: &IndexChange,
    sqlite: bool,
) -> Result<(), StoreError> {
    let (org, dataset) = (r.org.as_str(), r.dataset.as_str());
    if change.rebuild {
        sqlx::query("DELETE FROM subject_keys WHERE file_id IN (SELECT id FROM subject_files WHERE org = $1 AND dataset = $2)")
            .bind(org)
            .bind(dataset)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM subject_files WHERE org = $1 AND dataset = $2").bind(org).bind(dataset).execute(&mut **tx).await?;
    }
    for path in &change.removed {
        let id = file_id(r, path);
        sqlx::query("DELETE FROM subject_keys WHERE file_id = $1").bind(id).execute(&mut **tx).await?;
        sqlx::query("DELETE FROM subject_files WHERE id = $1").bind(id).execute(&mut **tx).await?;
    }
    let mut keys: Vec<(&str, i64, i64, i64)> = Vec::new();
    for file in change.added.iter().filter(|f| !f.keys.is_empty()) {
        let id = file_id(r, &file.path);
        sqlx::query("INSERT INTO subject_files (id, org, dataset, path) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(org)
            .bind(dataset)
            .bind(&file.path)
            .execute(&mut **tx)
            .await?;
        keys.extend(file.keys.iter().map(|(k, row, position)| (k.as_str(), id, *row, *position)));
    }
    // In key order, the inserts walk the key index from one end to the other instead of
    // touching a random page of it for every row.
    keys.sort_unstable();
    for chunk in keys.chunks(INSERT_CHUNK) {
        let mut sql = String::with_capacity(64 + chunk.len() * 24);
        sql.push_str("INSERT INTO subject_keys (subject, file_id, row_no, position) VALUES ");
        for i in 0..chunk.len() {
            let b = i * 4;
            if i > 0 {
                sql.push(',');
            }
            // SQLite looks a numbered parameter up by name, which is quadratic in a
            // statement of thousands of them; anonymous ones are bound by position.
            if sqlite {
                sql.push_str("(?, ?, ?, ?)");
            } else {
                sql.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
            }
        }
        let mut q = sqlx::query(&sql);
        for (key, id, row, position) in chunk {
            q = q.bind(*key).bind(*id).bind(*row).bind(*position);
        }
        q.execute(&mut **tx).await?;
    }
    let updated = sqlx::query("UPDATE subject_indexed SET version = $1 WHERE org = $2 AND dataset = $3")
        .bind(version)
        .bind(org)
        .bind(dataset)
        .execute(&mut **tx)
        .await?;
    if updated.rows_affected() == 0 {
        sqlx::query("INSERT INTO subject_indexed (org, dataset, version) VALUES ($1, $2, $3)")
            .bind(org)
            .bind(dataset)
            .bind(version)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Reads the subject keys of data files: every non-null value of the key columns, with its row.
/// `columns` are `(name, position in the table schema)`.
pub(crate) async fn keys_of_files(
    store: Arc<dyn ObjectStore>,
    paths: &[String],
    columns: &[(String, i64)],
) -> Result<Vec<FileKeys>, StoreError> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let mut file = FileKeys { path: path.clone(), keys: Vec::new() };
        if columns.is_empty() {
            out.push(file);
            continue;
        }
        let reader = FileReader::new(store.clone(), object_path(path)?);
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(read_error)?;
        let schema = builder.schema().clone();
        let present: Vec<(usize, i64)> =
            columns.iter().filter_map(|(name, position)| schema.index_of(name).ok().map(|i| (i, *position))).collect();
        if present.is_empty() {
            out.push(file);
            continue;
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), present.iter().map(|(i, _)| *i));
        let mut stream = builder.with_projection(mask).with_batch_size(64 * 1024).build().map_err(read_error)?;
        let mut row = 0i64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(read_error)?;
            for (k, (_, position)) in present.iter().enumerate() {
                let text = cast(batch.column(k), &DataType::Utf8)?;
                let text = text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                for i in 0..text.len() {
                    if text.is_valid(i) {
                        file.keys.push((text.value(i).to_string(), row + i as i64, *position));
                    }
                }
            }
            row += batch.num_rows() as i64;
        }
        out.push(file);
    }
    Ok(out)
}

/// A Parquet file on the object store, read by byte ranges.
#[derive(Debug, Clone)]
struct FileReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

impl FileReader {
    fn new(store: Arc<dyn ObjectStore>, path: Path) -> Self {
        Self { store, path }
    }
}

fn parquet_error(e: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(e))
}

impl AsyncFileReader for FileReader {
    fn get_bytes(&mut self, range: std::ops::Range<u64>) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(
            async move { object_store::ObjectStoreExt::get_range(self.store.as_ref(), &self.path, range).await.map_err(parquet_error) },
        )
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        Box::pin(async move { self.store.get_ranges(&self.path, &ranges).await.map_err(parquet_error) })
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        metadata_by_suffix::<Self>(self, options)
    }
}

/// A file's Parquet footer, fetched as a suffix of the file.
fn metadata_by_suffix<'a, R: Send>(
    reader: &'a mut R,
    options: Option<&'a ArrowReaderOptions>,
) -> futures::future::BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>>
where
    &'a mut R: MetadataSuffixFetch,
{
    Box::pin(async move {
        let metadata = ParquetMetaDataReader::new().with_arrow_reader_options(options).load_via_suffix_and_finish(reader).await?;
        Ok(Arc::new(metadata))
    })
}

impl MetadataSuffixFetch for &mut FileReader {
    fn fetch_suffix(&mut self, suffix: usize) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        let options = object_store::GetOptions { range: Some(object_store::GetRange::Suffix(suffix as u64)), ..Default::default() };
        Box::pin(async move {
            let response = self.store.get_opts(&self.path, options).await.map_err(parquet_error)?;
            response.bytes().await.map_err(parquet_error)
        })
    }
}

/// A Parquet data file of a table on local disk, read in place. A look-up reads a few pages,
/// which the page cache serves in microseconds: reading them on the calling task spares the two
/// thread switches of a trip through the blocking pool (the local object store's way). The file
/// is opened anew for every look-up, so a file removed by an erasure's vacuum is never read.
struct LocalFile {
    path: Arc<std::path::PathBuf>,
    file: Arc<std::fs::File>,
    len: u64,
}

impl LocalFile {
    fn open(path: std::path::PathBuf) -> Result<Self, StoreError> {
        let opened = std::fs::File::open(&path).and_then(|file| Ok((file.metadata()?.len(), file)));
        let (len, file) = opened.map_err(|e| StoreError::Read(format!("{}: {e}", path.display())))?;
        Ok(Self { path: Arc::new(path), file: Arc::new(file), len })
    }

    fn read(&self, range: std::ops::Range<u64>) -> parquet::errors::Result<bytes::Bytes> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| parquet::errors::ParquetError::General("range too large".into()))?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, range.start).map_err(|e| self.error(e))?;
        Ok(buf.into())
    }

    fn error(&self, e: std::io::Error) -> parquet::errors::ParquetError {
        parquet::errors::ParquetError::External(format!("{}: {e}", self.path.display()).into())
    }
}

impl parquet::file::reader::Length for LocalFile {
    fn len(&self) -> u64 {
        self.len
    }
}

/// Reads a local data file synchronously with `pread`: a look-up's pages are in the page cache,
/// and the synchronous reader spares the async reader's futures and buffering for a few pages.
impl parquet::file::reader::ChunkReader for LocalFile {
    type T = LocalRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<LocalRead> {
        Ok(LocalRead { file: self.file.clone(), path: self.path.clone(), at: start })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.read(start..start + length as u64)
    }
}

/// A sequential reader of a local file from a position, for [`LocalFile`]'s `ChunkReader`.
struct LocalRead {
    file: Arc<std::fs::File>,
    path: Arc<std::path::PathBuf>,
    at: u64,
}

impl std::io::Read for LocalRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.at).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        self.at += n as u64;
        Ok(n)
    }
}

/// A reader of only the row groups, rows and (with a projection) columns asked for, whether it
/// reads synchronously or not.
fn select<T>(
    builder: ArrowReaderBuilder<T>,
    groups: Vec<usize>,
    rows: RowSelection,
    projection: Option<ProjectionMask>,
) -> ArrowReaderBuilder<T> {
    let builder = builder.with_row_groups(groups).with_row_selection(rows);
    match projection {
        Some(p) => builder.with_projection(p),
        None => builder,
    }
}

fn object_path(path: &str) -> Result<Path, StoreError> {
    Path::from_url_path(path).map_err(|e| StoreError::Read(format!("bad data file path: {e}")))
}

fn read_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Read(e.to_string())
}

/// The subject-key columns of a table schema with their positions, from the catalogue's kinds.
pub(crate) fn key_columns(schema: &arrow::datatypes::Schema, subjects: &BTreeMap<String, SubjectKind>) -> Vec<(String, i64)> {
    schema.fields().iter().enumerate().filter(|(_, f)| subjects.contains_key(f.name())).map(|(i, f)| (f.name().clone(), i as i64)).collect()
}

/// What the index reader keeps between look-ups: file footers (with page indexes) and table
/// schemas. Both are immutable for a given file and version, so nothing is ever stale.
#[derive(Debug, Default)]
pub(crate) struct ReadCache {
    footers: Mutex<HashMap<String, ArrowReaderMetadata>>,
    schemas: Mutex<HashMap<String, (i64, SchemaRef)>>,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

/// At most this many file footers are kept; past it the cache starts over.
const FOOTERS_KEPT: usize = 4_096;

/// An erasure's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Erasure {
    /// The dataset.
    pub dataset: String,
    /// The version that no longer holds the rows; `None` when no row held the key.
    pub version: Option<i64>,
    /// Rows removed.
    pub rows_removed: u64,
    /// Data files deleted from storage by the vacuum (this and earlier versions' copies).
    pub files_deleted: usize,
}

impl Store {
    /// Every place the index knows for `key` (a canonical subject key), in the catalogue's
    /// latest version of each dataset.
    pub async fn locate(&self, key: &str) -> Result<Vec<Place>, StoreError> {
        Ok(self.locate_many(&[key]).await?.remove(key).unwrap_or_default())
    }

    /// [`Store::locate`] for several keys in one catalogue query: the places of each key that
    /// the index holds (keys it does not hold are absent).
    pub async fn locate_many(&self, keys: &[&str]) -> Result<BTreeMap<String, Vec<Place>>, StoreError> {
        let mut out: BTreeMap<String, Vec<Place>> = BTreeMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        let marks: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT k.subject, f.org, f.dataset, f.path, k.row_no, k.position FROM subject_keys k \
             JOIN subject_files f ON f.id = k.file_id WHERE k.subject IN ({})",
            marks.join(", ")
        );
        // (subject, org, dataset, path, row, position)
        type Found = (String, String, String, String, i64, i64);
        let found: Vec<Found> = match self.catalog.quick() {
            Some(quick) => quick.read(|c| {
                let mut statement = c.prepare_cached(&sql)?;
                let rows = statement.query_map(rusqlite::params_from_iter(keys), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })?;
                rows.collect()
            })?,
            None => {
                let mut query = sqlx::query(&sql);
                for key in keys {
                    query = query.bind(*key);
                }
                let rows = query.fetch_all(self.catalog.pool()).await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?, r.try_get(5)?)))
                    .collect::<Result<_, sqlx::Error>>()?
            }
        };
        for (subject, org, dataset, path, row, position) in found {
            let dataset = format!("{org}/{dataset}")
                .parse::<DatasetRef>()
                .map_err(|e| StoreError::Read(format!("catalogue holds an invalid dataset name: {e}")))?;
            out.entry(subject).or_default().push(Place { dataset, path, row, position });
        }
        for places in out.values_mut() {
            places.sort();
        }
        Ok(out)
    }

    /// The version of each dataset the index describes.
    pub async fn indexed_versions(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows = sqlx::query("SELECT org, dataset, version FROM subject_indexed").fetch_all(self.catalog.pool()).await?;
        rows.iter()
            .map(|r| Ok((format!("{}/{}", r.try_get::<String, _>("org")?, r.try_get::<String, _>("dataset")?), r.try_get("version")?)))
            .collect()
    }

    /// Indexes every dataset with subject-key columns that the index does not describe yet (a
    /// store from before the index existed). Returns the datasets indexed.
    pub async fn ensure_indexed(&self) -> Result<Vec<String>, StoreError> {
        let indexed = self.indexed_versions().await?;
        let all_columns = self.catalog.all_columns().await?;
        let mut done = Vec::new();
        for meta in self.catalog.datasets().await? {
            let name = meta.reference();
            if indexed.contains_key(&name) || !all_columns.get(&name).is_some_and(|c| c.iter().any(|c| c.subject_key.is_some())) {
                continue;
            }
            let r: DatasetRef = name.parse().map_err(|e: tverr_core::ModelError| StoreError::Read(e.to_string()))?;
            self.reindex(&r).await?;
            done.push(name);
        }
        Ok(done)
    }

    /// Rebuilds a dataset's index from its latest version.
    pub async fn reindex(&self, r: &DatasetRef) -> Result<(), StoreError> {
        let version = self
            .catalog
            .versions(r)
            .await?
            .last()
            .map(|v| v.version)
            .ok_or_else(|| StoreError::NotFound { what: "version", name: r.to_string() })?;
        let table = self.lake.open(r, Some(version)).await?;
        let snapshot = table.snapshot()?;
        let schema: arrow::datatypes::Schema = snapshot.schema().as_ref().try_into_arrow()?;
        let subjects = self.subject_columns(r).await?;
        let columns = key_columns(&schema, &subjects);
        let paths: Vec<String> =
            snapshot.snapshot().file_views(table.log_store().as_ref(), None).map_ok(|v| v.path().to_string()).try_collect().await?;
        let added = keys_of_files(table.log_store().object_store(None), &paths, &columns).await?;
        let change = IndexChange { rebuild: true, removed: Vec::new(), added };
        let mut tx = self.catalog.begin_write().await?;
        apply(&mut tx, r, version, &change, self.catalog.is_sqlite()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn subject_columns(&self, r: &DatasetRef) -> Result<BTreeMap<String, SubjectKind>, StoreError> {
        Ok(self.catalog.columns(r).await?.into_iter().filter_map(|c| c.subject_key.map(|k| (c.name, k))).collect())
    }

    /// The table schema of a dataset at a version (cached: a version never changes).
    pub async fn schema_at(&self, r: &DatasetRef, version: i64) -> Result<SchemaRef, StoreError> {
        let name = r.to_string();
        if let Some((v, s)) = self.lake.cache.schemas.lock().expect("cache lock").get(&name)
            && *v == version
        {
            return Ok(s.clone());
        }
        let table = self.lake.open(r, Some(version)).await?;
        let schema: arrow::datatypes::Schema = table.snapshot()?.schema().as_ref().try_into_arrow()?;
        let schema = Arc::new(schema);
        self.lake.cache.schemas.lock().expect("cache lock").insert(name, (version, schema.clone()));
        Ok(schema)
    }

    fn object_store_of(&self, r: &DatasetRef) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let name = r.to_string();
        if let Some(s) = self.lake.cache.stores.lock().expect("cache lock").get(&name) {
            return Ok(s.clone());
        }
        let store = self.lake.log_store(r)?.object_store(None);
        self.lake.cache.stores.lock().expect("cache lock").insert(name, store.clone());
        Ok(store)
    }

    /// Reads given rows (`(data file, row number)`) of a dataset at a version, in the table's
    /// schema: only the row groups and pages that hold them are fetched. With `only`, only
    /// those columns (and any the schema declares non-nullable) are decoded and every other
    /// column comes back all null: the caller must name every column it evaluates.
    pub async fn read_rows(
        &self,
        r: &DatasetRef,
        version: i64,
        places: &[(String, i64)],
        only: Option<&BTreeSet<String>>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), StoreError> {
        let schema = self.schema_at(r, version).await?;
        let store = self.object_store_of(r)?;
        let root = self.lake.table_url(r);
        let mut by_file: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (path, row) in places {
            by_file.entry(path.as_str()).or_default().push(*row as usize);
        }
        let mut batches = Vec::new();
        for (path, mut rows) in by_file {
            rows.sort_unstable();
            rows.dedup();
            let key = format!("{root}{path}");
            let cached = self.lake.cache.footers.lock().expect("cache lock").get(&key).cloned();
            let location = object_path(path)?;
            // A local table's file, where the local object store would put it.
            let local = (root.scheme() == "file").then(|| root.join(location.as_ref()).ok().and_then(|u| u.to_file_path().ok())).flatten();
            let local = local.map(LocalFile::open).transpose()?;
            let metadata = match cached {
                Some(m) => m,
                None => {
                    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
                    let m = match &local {
                        Some(file) => ArrowReaderMetadata::load(file, options),
                        None => ArrowReaderMetadata::load_async(&mut FileReader::new(store.clone(), location.clone()), options).await,
                    }
                    .map_err(read_error)?;
                    let mut footers = self.lake.cache.footers.lock().expect("cache lock");
                    if footers.len() >= FOOTERS_KEPT {
                        footers.clear();
                    }
                    footers.insert(key, m.clone());
                    m
                }
            };
            // The row groups that hold the rows, and the rows as ranges within those groups.
            let mut groups = Vec::new();
            let mut ranges = Vec::new();
            let (mut start, mut offset) = (0usize, 0usize);
            let mut next = rows.iter().peekable();
            for (g, group) in metadata.metadata().row_groups().iter().enumerate() {
                let n = group.num_rows() as usize;
                let mut any = false;
                while let Some(&&row) = next.peek() {
                    if row >= start + n {
                        break;
                    }
                    ranges.push(offset + row - start..offset + row - start + 1);
                    any = true;
                    next.next();
                }
                if any {
                    groups.push(g);
                    offset += n;
                }
                start += n;
            }
            if groups.is_empty() {
                return Err(StoreError::Read(format!("the subject index points past the end of {path} in {r}")));
            }
            let selection = RowSelection::from_consecutive_ranges(ranges.into_iter(), offset);
            let projection = only.map(|only| {
                let read = metadata
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| only.contains(f.name()) || schema.field_with_name(f.name()).is_ok_and(|t| !t.is_nullable()));
                ProjectionMask::roots(metadata.parquet_schema(), read.map(|(i, _)| i).collect::<Vec<_>>())
            });
            let read: Vec<RecordBatch> = match local {
                Some(file) => select(ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata), groups, selection, projection)
                    .build()
                    .map_err(read_error)?
                    .collect::<Result<_, _>>()
                    .map_err(read_error)?,
                None => select(
                    ParquetRecordBatchStreamBuilder::new_with_metadata(FileReader::new(store.clone(), location), metadata),
                    groups,
                    selection,
                    projection,
                )
                .build()
                .map_err(read_error)?
                .try_collect()
                .await
                .map_err(read_error)?,
            };
            for b in read {
                batches.push(conform(&b, &schema)?);
            }
        }
        Ok((schema, batches))
    }

    /// Removes every row whose `kind` key columns hold `key` from a dataset, as one new version,
    /// and vacuums the table so no earlier version's files keep the rows (GDPR art. 17). Earlier
    /// versions stay in the history but can no longer be read.
    pub async fn erase(&self, r: &DatasetRef, kind: SubjectKind, key: &str, actor: &str) -> Result<Erasure, StoreError> {
        let key = kind.canonicalise(key).map_err(|e| StoreError::invalid("subject", format!("invalid {}: {e}", kind.label())))?;
        let subjects = self.subject_columns(r).await?;
        let columns: Vec<&String> = subjects.iter().filter(|(_, k)| **k == kind).map(|(c, _)| c).collect();
        if columns.is_empty() {
            return Err(StoreError::invalid("subject", format!("{r} has no {kind} key column")));
        }
        self.ensure_indexed().await?;
        let files: std::collections::BTreeSet<String> =
            self.locate(&key).await?.into_iter().filter(|p| &p.dataset == r).map(|p| p.path).collect();
        let mut outcome = Erasure { dataset: r.to_string(), version: None, rows_removed: 0, files_deleted: 0 };
        if files.is_empty() {
            return Ok(outcome);
        }
        let table = self.lake.open(r, None).await?;
        let snapshot = table.snapshot()?;
        let schema: arrow::datatypes::Schema = snapshot.schema().as_ref().try_into_arrow()?;
        let store = table.log_store().object_store(None);
        let views: Vec<_> = snapshot.snapshot().file_views(table.log_store().as_ref(), None).try_collect().await?;
        let mut actions = Vec::new();
        let mut writer: Option<deltalake::writer::RecordBatchWriter> = None;
        for view in views.iter().filter(|v| files.contains(v.path().as_ref())) {
            let reader = FileReader::new(store.clone(), object_path(view.path().as_ref())?);
            let batches: Vec<RecordBatch> = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(read_error)?
                .build()
                .map_err(read_error)?
                .try_collect()
                .await
                .map_err(read_error)?;
            for batch in batches {
                let mut keep = vec![true; batch.num_rows()];
                for c in &columns {
                    let Some(col) = batch.column_by_name(c) else { continue };
                    let text = cast(col, &DataType::Utf8)?;
                    let text = text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                    for (i, k) in keep.iter_mut().enumerate() {
                        if text.is_valid(i) && text.value(i) == key {
                            *k = false;
                        }
                    }
                }
                outcome.rows_removed += keep.iter().filter(|k| !**k).count() as u64;
                let kept = filter_record_batch(&batch, &BooleanArray::from(keep))?;
                if kept.num_rows() > 0 {
                    let w = match &mut writer {
                        Some(w) => w,
                        None => writer.insert(crate::ingest::new_writer(self, r, Some(&table), &kept.schema(), Some(&kept))?),
                    };
                    deltalake::writer::DeltaWriter::write(w, kept).await?;
                }
            }
            actions.push(Action::Remove(view.remove_action(true)));
        }
        let removed: Vec<String> = files.iter().cloned().collect();
        let mut added_paths = Vec::new();
        if let Some(mut w) = writer {
            for add in deltalake::writer::DeltaWriter::flush(&mut w).await? {
                added_paths.push(add.path.clone());
                actions.push(Action::Add(add));
            }
        }
        let subject_cols = key_columns(&schema, &subjects);
        let added = keys_of_files(store, &added_paths, &subject_cols).await?;
        let props = deltalake::kernel::transaction::CommitProperties::default().with_metadata(vec![
            ("tverr.actor".to_string(), serde_json::json!(actor)),
            ("tverr.mode".to_string(), serde_json::json!("erase")),
            ("tverr.rows_removed".to_string(), serde_json::json!(outcome.rows_removed)),
        ]);
        let finalized = deltalake::kernel::transaction::CommitBuilder::from(props)
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), DeltaOperation::Delete { predicate: None })
            .await?;
        let version = finalized.version() as i64;
        let columns_meta = self.catalog.columns(r).await?;
        let meta = crate::VersionMeta {
            version,
            committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            actor: actor.to_string(),
            mode: "erase".to_string(),
            rows_written: 0,
            rows_removed: outcome.rows_removed as i64,
            source_name: None,
            source_sha256: None,
            source_format: None,
        };
        let change = IndexChange { rebuild: false, removed, added };
        self.catalog.record_version(r, None, &columns_meta, &meta, &change).await.map_err(|e| StoreError::Config {
            message: format!("version {version} of {r} is committed to storage, but the catalogue could not record it: {e}"),
        })?;
        let table = self.lake.open(r, Some(version)).await?;
        let (_, metrics) = table.vacuum().with_retention_period(chrono::Duration::zero()).with_enforce_retention_duration(false).await?;
        outcome.files_deleted = metrics.files_deleted.len();
        outcome.version = Some(version);
        Ok(outcome)
    }
}

/// A batch in the table's schema: columns by name, cast where the file's type differs, null
/// where the file predates the column.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, StoreError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
