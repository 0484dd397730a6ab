//! The subject index's reads: from a subject key (a canonical fødselsnummer, matrikkel unit or
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

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use futures::TryStreamExt;
use object_store::ObjectStore;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::file::metadata::PageIndexPolicy;
use sqlx::Row;
use tverr_core::{DatasetRef, SubjectKind};

use crate::files::{FileReader, LocalFile, conform, object_path, read_error, select};
use crate::index::{IndexChange, apply, key_columns, keys_of_files};
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
        // The key list is padded (with its last key again) to a power of two, so that a few
        // forms of the statement serve every count and each is prepared once per connection.
        let width = keys.len().next_power_of_two().max(8);
        let last = keys[keys.len() - 1];
        let keys: Vec<&str> = keys.iter().copied().chain(std::iter::repeat_n(last, width - keys.len())).collect();
        let marks: Vec<String> = (1..=width).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT k.subject, f.org, f.dataset, f.path, k.row_no, k.position FROM subject_keys k \
             JOIN subject_files f ON f.id = k.file_id WHERE k.subject IN ({}) \
             AND (k.subject = '{}' OR NOT EXISTS (SELECT 1 FROM subject_deleted d WHERE d.file_id = k.file_id AND d.row_no = k.row_no))",
            marks.join(", "),
            crate::index::CELLS_MARKER
        );
        // (subject, org, dataset, path, row, position)
        type Found = (String, String, String, String, i64, i64);
        let found: Vec<Found> = match self.catalog.quick() {
            Some(quick) => quick.read(|c| {
                let mut statement = c.prepare_cached(&sql)?;
                let rows = statement.query_map(rusqlite::params_from_iter(&keys), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })?;
                rows.collect()
            })?,
            None => {
                let mut query = sqlx::query(&sql);
                for key in &keys {
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
        // Datasets whose geometries' cells are in the index (those indexed before cells were
        // are indexed again, once).
        let with_cells: BTreeSet<String> =
            self.locate(crate::index::CELLS_MARKER).await?.into_iter().map(|p| p.dataset.to_string()).collect();
        let mut done = Vec::new();
        for meta in self.catalog.datasets().await? {
            let name = meta.reference();
            let columns = all_columns.get(&name).map(Vec::as_slice).unwrap_or_default();
            let keyed = columns.iter().any(|c| c.subject_key.is_some());
            let placed = columns.iter().any(|c| c.column_type == tverr_ingest::ColumnType::Geometry);
            let cells_missing = placed && !with_cells.contains(&name);
            if !(keyed || placed) || (indexed.contains_key(&name) && !cells_missing) {
                continue;
            }
            let r: DatasetRef = name.parse().map_err(|e: tverr_core::ModelError| StoreError::Read(e.to_string()))?;
            self.reindex(&r).await?;
            done.push(name);
        }
        Ok(done)
    }

    /// Rebuilds a dataset's index from its latest version, under its write lock.
    pub async fn reindex(&self, r: &DatasetRef) -> Result<(), StoreError> {
        let writing = self.begin_write(r, "reindex").await?;
        let rebuilt = self.rebuild_index(r).await;
        self.end_write(writing, rebuilt.is_ok()).await;
        rebuilt
    }

    /// Rebuilds a dataset's index from its latest recorded version (the caller holds its lock).
    pub(crate) async fn rebuild_index(&self, r: &DatasetRef) -> Result<(), StoreError> {
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
        let columns = key_columns(&schema, &subjects, &self.geometry_columns(r).await?);
        let files: Vec<(String, Option<deltalake::kernel::DeletionVectorDescriptor>)> = snapshot
            .snapshot()
            .file_views(table.log_store().as_ref(), None)
            .map_ok(|v| (v.path().to_string(), v.deletion_vector_descriptor()))
            .try_collect()
            .await?;
        let store = table.log_store().object_store(None);
        let paths: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
        let deleted = crate::deletions::of_files(&store, files).await?;
        let added = keys_of_files(store, &paths, &columns, &deleted).await?;
        let change = IndexChange { rebuild: true, added, ..IndexChange::default() };
        let mut tx = self.catalog.begin_write().await?;
        apply(&mut tx, r, version, &change, self.catalog.is_sqlite()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The names of a dataset's geometry columns.
    pub(crate) async fn geometry_columns(&self, r: &DatasetRef) -> Result<Vec<String>, StoreError> {
        use tverr_ingest::ColumnType;
        Ok(self.catalog.columns(r).await?.into_iter().filter(|c| c.column_type == ColumnType::Geometry).map(|c| c.name).collect())
    }

    pub(crate) async fn subject_columns(&self, r: &DatasetRef) -> Result<BTreeMap<String, SubjectKind>, StoreError> {
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
}
