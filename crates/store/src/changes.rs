//! What versions changed: the rows each version took away and the rows it added, from the Delta
//! log's file lists (the files a version no longer references against the files it added) with
//! the rows both hold in common taken out, so an upsert that rewrote a file shows only the rows
//! it changed. Rows leave here raw; the access layer puts them behind the grant's secure scan.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, new_null_array};
use arrow::compute::{cast, filter_record_batch, interleave_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use deltalake::kernel::DeletionVectorDescriptor;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use roaring::RoaringTreemap;
use tverr_core::DatasetRef;

use crate::files::{FileReader, object_path, read_error};
use crate::{Store, StoreError};

/// The most memory the rows of one change-feed answer may take (wide rows reach it long before
/// the row limit).
const MAX_CHANGE_BYTES: usize = 256 << 20;

/// How many stored rows a change feed may read per row it may give: upserts that mark a few rows
/// of a large file make the file be read whole for them.
const STORED_PER_CHANGED: u64 = 8;

/// The rows one version deleted and inserted, in the schema of the last version asked for.
#[derive(Debug)]
pub struct VersionChange {
    /// The version.
    pub version: i64,
    /// Rows it took away (for an upsert, the old form of each changed row).
    pub deleted: Vec<RecordBatch>,
    /// Rows it added (for an upsert, the new form of each changed row).
    pub inserted: Vec<RecordBatch>,
}

impl Store {
    /// The changes of versions `from + 1 ..= to` of a dataset, each against the version before
    /// it, with every row in the latest version's schema (a column a version did not have is
    /// null). At most
    /// `max_rows` rows change, and at most eight times as many stored rows are read to find
    /// them (the files each version added and removed, and those it marked rows of).
    pub async fn changes(
        &self,
        r: &DatasetRef,
        from: i64,
        to: i64,
        max_rows: usize,
    ) -> Result<(SchemaRef, Vec<VersionChange>), StoreError> {
        let versions = self.catalog.versions(r).await?;
        let latest = versions.last().map(|v| v.version).ok_or_else(|| StoreError::NotFound { what: "dataset", name: r.to_string() })?;
        if latest == 0 {
            return Err(StoreError::invalid("from_version", format!("{r} has one version, 0: there are no changes yet")));
        }
        if to > latest {
            return Err(StoreError::invalid("to_version", format!("{r} has versions 0 to {latest}")));
        }
        if from < 0 || from >= to {
            if from == latest {
                return Err(StoreError::invalid(
                    "from_version",
                    format!("version {latest} is the latest: there are no changes after it yet"),
                ));
            }
            return Err(StoreError::invalid("from_version", format!("give a version from 0 to {}, below to_version", to - 1)));
        }
        // An erasure vacuums every file no longer referenced: no change before it can be read.
        if let Some(erased) =
            versions.iter().filter(|v| v.version > from && v.version <= to && v.mode.as_str() == "erase").map(|v| v.version).max()
        {
            let next =
                if erased == latest { "there are no versions after it yet".to_string() } else { format!("start at from_version={erased}") };
            return Err(StoreError::invalid(
                "from_version",
                format!("version {erased} is an erasure, which deleted the earlier versions' rows for good; {next}"),
            ));
        }
        // Today's columns, as every read has them (a column added after `to` is null), since
        // the grant the rows go behind names today's columns.
        let schema = self.schema_at(r, latest).await?;
        let store = self.object_store_of_table(r).await?;
        // Every version's files first, with their row counts from the log: a range past the
        // limit is refused before any row is read.
        let mut lists = Vec::new();
        for version in from..=to {
            lists.push(self.files_at(r, version).await?);
        }
        // Rows changed, and rows stored that must be read to find them: a file kept with more
        // rows marked deleted is read whole for the few it marks.
        let (mut touched, mut stored) = (0u64, 0u64);
        for pair in lists.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            for (path, file) in before {
                match after.get(path) {
                    None => {
                        touched += file.live();
                        stored += file.rows;
                    }
                    Some(later) if later.vector != file.vector => {
                        touched += later.deleted().abs_diff(file.deleted());
                        stored += file.rows;
                    }
                    Some(_) => {}
                }
            }
            for (_, file) in after.iter().filter(|(p, _)| !before.contains_key(*p)) {
                touched += file.live();
                stored += file.rows;
            }
        }
        if touched > max_rows as u64 {
            return Err(StoreError::invalid(
                "to_version",
                format!(
                    "the changes from version {from} to {to} touch {touched} rows, more than {max_rows}; ask for fewer versions at a time"
                ),
            ));
        }
        let most_stored = (max_rows as u64).saturating_mul(STORED_PER_CHANGED);
        if stored > most_stored {
            return Err(StoreError::invalid(
                "to_version",
                format!(
                    "the changes from version {from} to {to} are found by reading {stored} stored rows, more than {most_stored}; ask for fewer versions at a time"
                ),
            ));
        }
        let mut out = Vec::new();
        let (mut read, mut held) = (0usize, 0usize);
        for (i, version) in (from + 1..=to).enumerate() {
            let (previous, files) = (&lists[i], &lists[i + 1]);
            let erased = versions.iter().any(|v| v.version == version && v.mode.as_str() == "erase");
            let file = |path: &str, vector: Option<&DeletionVectorDescriptor>, only: Option<RoaringTreemap>| {
                let store = store.clone();
                let schema = schema.clone();
                let (path, vector) = (path.to_string(), vector.cloned());
                async move {
                    let deleted = match &vector {
                        Some(d) => Some(crate::deletions::read(&store, d).await?),
                        None => None,
                    };
                    read_file(&store, &path, &schema, version, erased, deleted.as_ref(), only.as_ref()).await
                }
            };
            let (mut old, mut new) = (Vec::new(), Vec::new());
            for (path, before) in previous {
                match files.get(path) {
                    None => old.extend(file(path, before.vector.as_ref(), None).await?),
                    Some(after) if after.vector != before.vector => {
                        // The same file with another deletion vector: the rows it newly marks are
                        // deleted (a vector only grows; were it ever to shrink, both sides are
                        // read whole and compared).
                        let was = match &before.vector {
                            Some(d) => crate::deletions::read(&store, d).await?,
                            None => RoaringTreemap::new(),
                        };
                        let now = match &after.vector {
                            Some(d) => crate::deletions::read(&store, d).await?,
                            None => RoaringTreemap::new(),
                        };
                        if was.is_subset(&now) {
                            old.extend(file(path, None, Some(now - was)).await?);
                        } else {
                            old.extend(file(path, before.vector.as_ref(), None).await?);
                            new.extend(file(path, after.vector.as_ref(), None).await?);
                        }
                    }
                    Some(_) => {}
                }
            }
            for (path, after) in files.iter().filter(|(p, _)| !previous.contains_key(*p)) {
                new.extend(file(path, after.vector.as_ref(), None).await?);
            }
            read += old.iter().chain(&new).map(RecordBatch::num_rows).sum::<usize>();
            held += old.iter().chain(&new).map(RecordBatch::get_array_memory_size).sum::<usize>();
            if held > MAX_CHANGE_BYTES {
                return Err(StoreError::invalid(
                    "to_version",
                    format!(
                        "the changes up to version {version} hold more than {} MiB; ask for fewer versions at a time",
                        MAX_CHANGE_BYTES >> 20
                    ),
                ));
            }
            if read > max_rows {
                return Err(StoreError::invalid(
                    "to_version",
                    format!("the changes up to version {version} touch more than {max_rows} rows; ask for fewer versions at a time"),
                ));
            }
            let (deleted, inserted) = difference(&schema, &old, &new)?;
            out.push(VersionChange { version, deleted, inserted });
        }
        Ok((schema, out))
    }

    /// A version's data files, with the rows the log says each holds and its deletion vector.
    async fn files_at(&self, r: &DatasetRef, version: i64) -> Result<BTreeMap<String, LiveFile>, StoreError> {
        let table = self.lake.open(r, Some(version)).await?;
        let snapshot = table.snapshot()?;
        let files: Vec<(String, LiveFile)> = snapshot
            .snapshot()
            .file_views(table.log_store().as_ref(), None)
            .map_ok(|v| {
                (v.path().to_string(), LiveFile { rows: v.num_records().unwrap_or(0) as u64, vector: v.deletion_vector_descriptor() })
            })
            .try_collect()
            .await?;
        Ok(files.into_iter().collect())
    }

    async fn object_store_of_table(&self, r: &DatasetRef) -> Result<Arc<dyn object_store::ObjectStore>, StoreError> {
        let table = self.lake.open(r, None).await?;
        Ok(table.log_store().object_store(None))
    }
}

/// A data file in one version: its rows as written and the rows a deletion vector took away.
#[derive(Debug)]
struct LiveFile {
    rows: u64,
    vector: Option<DeletionVectorDescriptor>,
}

impl LiveFile {
    fn deleted(&self) -> u64 {
        self.vector.as_ref().map_or(0, |d| d.cardinality.max(0) as u64)
    }

    fn live(&self) -> u64 {
        self.rows.saturating_sub(self.deleted())
    }
}

/// A data file's rows in `schema` (columns by name; a missing one null, another type cast),
/// without the rows in `deleted`, and only those in `only` when given.
async fn read_file(
    store: &Arc<dyn object_store::ObjectStore>,
    path: &str,
    schema: &SchemaRef,
    version: i64,
    erased: bool,
    deleted: Option<&RoaringTreemap>,
    only: Option<&RoaringTreemap>,
) -> Result<Vec<RecordBatch>, StoreError> {
    let gone = || {
        StoreError::invalid(
            "from_version",
            if erased {
                format!("version {version} is an erasure: the rows it removed are deleted for good; start at version {version} or later")
            } else {
                format!("the files of versions before {version} were removed by an erasure; start at version {version} or later")
            },
        )
    };
    let reader = FileReader::new(store.clone(), object_path(path)?);
    let builder = match ParquetRecordBatchStreamBuilder::new(reader).await {
        Ok(b) => b,
        Err(parquet::errors::ParquetError::External(e))
            if e.to_string().contains("not found") || e.to_string().contains("No such file") =>
        {
            return Err(gone());
        }
        Err(e) if e.to_string().contains("not found") || e.to_string().contains("No such file") => return Err(gone()),
        Err(e) => return Err(read_error(e)),
    };
    let mut stream = builder.with_batch_size(64 * 1024).build().map_err(read_error)?;
    let mut out = Vec::new();
    let mut row = 0u64;
    while let Some(batch) = stream.next().await {
        let mut batch = batch.map_err(read_error)?;
        if deleted.is_some() || only.is_some() {
            let keep: BooleanArray = (row..row + batch.num_rows() as u64)
                .map(|r| Some(deleted.is_none_or(|d| !d.contains(r)) && only.is_none_or(|o| o.contains(r))))
                .collect();
            row += batch.num_rows() as u64;
            batch = filter_record_batch(&batch, &keep)?;
        }
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match batch.column_by_name(f.name()) {
                Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
                Some(c) => cast(c, f.data_type()).map_err(StoreError::from),
                None => Ok(new_null_array(f.data_type(), batch.num_rows())),
            })
            .collect::<Result<_, _>>()?;
        out.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    Ok(out)
}

/// The rows of `old` not in `new` and of `new` not in `old`, as multisets: a row twice in `old`
/// and once in `new` is deleted once. Each side keeps its rows' order.
pub fn difference(
    schema: &SchemaRef,
    old: &[RecordBatch],
    new: &[RecordBatch],
) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>), StoreError> {
    if old.is_empty() || new.is_empty() {
        return Ok((old.to_vec(), new.to_vec()));
    }
    let converter = RowConverter::new(schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect())?;
    // Each distinct old row, with where it occurs.
    let mut left: HashMap<Vec<u8>, Vec<(usize, usize)>> = HashMap::new();
    for (b, batch) in old.iter().enumerate() {
        let rows = converter.convert_columns(batch.columns())?;
        for (i, row) in rows.iter().enumerate() {
            left.entry(row.as_ref().to_vec()).or_default().push((b, i));
        }
    }
    let mut inserted = Vec::new();
    for (b, batch) in new.iter().enumerate() {
        let rows = converter.convert_columns(batch.columns())?;
        for (i, row) in rows.iter().enumerate() {
            match left.get_mut(row.as_ref()) {
                Some(places) if !places.is_empty() => {
                    places.pop();
                }
                _ => inserted.push((b, i)),
            }
        }
    }
    let mut deleted: Vec<(usize, usize)> = left.into_values().flatten().collect();
    deleted.sort_unstable();
    Ok((take(old, &deleted)?, take(new, &inserted)?))
}

fn take(batches: &[RecordBatch], rows: &[(usize, usize)]) -> Result<Vec<RecordBatch>, StoreError> {
    rows.chunks(64 * 1024)
        .map(|chunk| {
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            interleave_record_batch(&refs, chunk).map_err(StoreError::from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(schema: &SchemaRef, ids: &[i64], names: &[&str]) -> RecordBatch {
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(ids.to_vec())), Arc::new(StringArray::from(names.to_vec()))])
            .unwrap()
    }

    #[test]
    fn rows_in_both_are_not_changes_and_duplicates_count() {
        let schema: SchemaRef =
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("navn", DataType::Utf8, true)]));
        let old = vec![batch(&schema, &[1, 2, 2, 3], &["Åse", "Bjørn", "Bjørn", "Kari"])];
        let new = vec![batch(&schema, &[1, 2, 3], &["Åse", "Bjørn", "Kari Nordmann"]), batch(&schema, &[4], &["Ola"])];
        let (deleted, inserted) = difference(&schema, &old, &new).unwrap();
        let d = arrow::util::pretty::pretty_format_batches(&deleted).unwrap().to_string();
        let i = arrow::util::pretty::pretty_format_batches(&inserted).unwrap().to_string();
        assert!(d.contains("Bjørn") && d.contains("| 3  | Kari ") && !d.contains("Åse"), "{d}");
        assert_eq!(deleted.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
        assert!(i.contains("Kari Nordmann") && i.contains("Ola") && !i.contains("Åse"), "{i}");
        assert_eq!(inserted.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
    }
}
