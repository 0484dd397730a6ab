//! Erasure (GDPR art. 17): a person's rows removed from a dataset as a new version, written like
//! any other version ([`crate::ingest`]'s writer), then the old files vacuumed.

use arrow::array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::DataType;
use deltalake::kernel::Action;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use deltalake::protocol::DeltaOperation;
use futures::TryStreamExt;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use tverr_core::{DatasetRef, SubjectKind};

use crate::files::{FileReader, conform, object_path, read_error};
use crate::index::{IndexChange, key_columns, keys_of_files};
use object_store::ObjectStoreExt;

use crate::{Store, StoreError, deletions};

/// An erasure's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Erasure {
    /// The dataset.
    pub dataset: String,
    /// The version that no longer holds the rows; `None` when no row held the key.
    pub version: Option<i64>,
    /// Rows removed.
    pub rows_removed: u64,
    /// Rows an upsert had replaced (no longer in any version's view, but still in their file)
    /// that held the key, removed from storage too.
    pub replaced_rows_removed: u64,
    /// Whether only earlier versions held the key (then the version adds and removes nothing,
    /// and the vacuum after it removes their files).
    pub earlier_versions_only: bool,
    /// Data files deleted from storage by the vacuum (this and earlier versions' copies).
    pub files_deleted: usize,
}

impl Store {
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
        let writing = self.begin_write(r, "erase").await?;
        let mut committing = None;
        match self.erase_locked(r, &key, &columns, actor, &writing, &mut committing).await {
            Ok(outcome) => {
                self.end_write(writing, true).await;
                Ok(outcome)
            }
            Err(e) => match committing {
                None => {
                    self.end_write(writing, false).await;
                    Err(e)
                }
                // The commit was under way: whether it landed decides the answer.
                Some(mut outcome) => match self.settle_interrupted(writing).await? {
                    Some(version) => {
                        outcome.version = Some(version);
                        Ok(outcome)
                    }
                    None => Err(e),
                },
            },
        }
    }

    /// [`Store::erase`], with the dataset's write lock held.
    /// `committing` holds the outcome from the moment the commit starts.
    async fn erase_locked(
        &self,
        r: &DatasetRef,
        key: &str,
        columns: &[&String],
        actor: &str,
        write: &crate::writing::Writing,
        committing: &mut Option<Erasure>,
    ) -> Result<Erasure, StoreError> {
        let key = key.to_string();
        let files: std::collections::BTreeSet<String> =
            self.locate(&key).await?.into_iter().filter(|p| &p.dataset == r).map(|p| p.path).collect();
        let mut outcome = Erasure {
            dataset: r.to_string(),
            version: None,
            rows_removed: 0,
            replaced_rows_removed: 0,
            earlier_versions_only: false,
            files_deleted: 0,
        };
        let table = self.lake.open(r, None).await?;
        let snapshot = table.snapshot()?;
        let schema: arrow::datatypes::Schema = snapshot.schema().as_ref().try_into_arrow()?;
        let table_schema = std::sync::Arc::new(schema.clone());
        let store = table.log_store().object_store(None);
        let views: Vec<_> = snapshot.snapshot().file_views(table.log_store().as_ref(), None).try_collect().await?;
        // A row an upsert marked deleted is still in its file, and no longer in the index: every
        // file with a deletion vector is read too, and rewritten if any of its rows holds the key.
        let vectors = deletions::of_files(&store, views.iter().map(|v| (v.path().to_string(), v.deletion_vector_descriptor()))).await?;
        let mut actions = Vec::new();
        let mut removed = Vec::new();
        let mut writer: Option<deltalake::writer::RecordBatchWriter> = None;
        for view in views.iter().filter(|v| files.contains(v.path().as_ref()) || vectors.contains_key(v.path().as_ref())) {
            let path = view.path().to_string();
            let reader = FileReader::new(store.clone(), object_path(&path)?);
            let batches: Vec<RecordBatch> = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .map_err(read_error)?
                .build()
                .map_err(read_error)?
                .try_collect()
                .await
                .map_err(read_error)?;
            let deleted = vectors.get(&path);
            let (mut kept_batches, mut held, mut row) = (Vec::new(), false, 0u64);
            let mut counted = std::collections::HashSet::new();
            for batch in batches {
                // A file written before the schema grew lacks the newer columns: null there.
                let batch = conform(&batch, &table_schema)?;
                let base = row;
                let mut keep: Vec<bool> = (0..batch.num_rows() as u64).map(|i| deleted.is_none_or(|d| !d.contains(base + i))).collect();
                row += batch.num_rows() as u64;
                for c in columns {
                    let Some(col) = batch.column_by_name(c) else { continue };
                    let text = cast(col, &DataType::Utf8)?;
                    let text = text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                    for (i, k) in keep.iter_mut().enumerate() {
                        if text.is_valid(i) && text.value(i) == key {
                            held = true;
                            if *k {
                                outcome.rows_removed += 1;
                            } else if deleted.is_some_and(|d| d.contains(base + i as u64)) && counted.insert(base + i as u64) {
                                outcome.replaced_rows_removed += 1;
                            }
                            *k = false;
                        }
                    }
                }
                kept_batches.push(filter_record_batch(&batch, &BooleanArray::from(keep))?);
            }
            if !held {
                continue;
            }
            for kept in kept_batches.into_iter().filter(|b| b.num_rows() > 0) {
                let w = match &mut writer {
                    Some(w) => w,
                    None => writer.insert(crate::ingest::new_writer(self, r, Some(&table), &kept.schema(), Some(&kept))?),
                };
                deltalake::writer::DeltaWriter::write(w, kept).await?;
            }
            actions.push(Action::Remove(view.remove_action(true)));
            removed.push(path);
        }
        if removed.is_empty() {
            // No live row holds the key: an earlier version's file may (a replace, a rewrite).
            // Then an empty version and the vacuum after it remove those files.
            let live: std::collections::HashSet<String> = views.iter().map(|v| v.path().to_string()).collect();
            if !history_holds(&store, &live, columns, &key).await? {
                return Ok(outcome);
            }
            outcome.earlier_versions_only = true;
        }
        let mut added_paths = Vec::new();
        if let Some(mut w) = writer {
            for add in deltalake::writer::DeltaWriter::flush(&mut w).await? {
                added_paths.push(add.path.clone());
                actions.push(Action::Add(add));
            }
        }
        let subject_cols = key_columns(&schema, &self.subject_columns(r).await?, &self.geometry_columns(r).await?);
        let added = keys_of_files(store, &added_paths, &subject_cols, &Default::default()).await?;
        let columns_meta = self.catalog.columns(r).await?;
        let recording = crate::writing::Recording {
            mode: crate::VersionMode::Erase,
            actor: actor.to_string(),
            rows_written: 0,
            rows_removed: outcome.rows_removed as i64,
            source_name: None,
            source_sha256: None,
            source_format: None,
            columns: columns_meta.clone(),
            categories: Default::default(),
            descriptions: Default::default(),
            write: write.id.clone(),
        };
        let props = deltalake::kernel::transaction::CommitProperties::default().with_max_retries(0).with_metadata(vec![
            ("tverr.actor".to_string(), serde_json::json!(actor)),
            ("tverr.mode".to_string(), serde_json::json!("erase")),
            ("tverr.rows_removed".to_string(), serde_json::json!(outcome.rows_removed)),
            (crate::writing::RECORDING.to_string(), serde_json::json!(recording)),
        ]);
        crate::ingest::counts_only(&mut actions);
        write.confirm().await?;
        *committing = Some(outcome.clone());
        let finalized = deltalake::kernel::transaction::CommitBuilder::from(props)
            .with_actions(actions)
            .build(Some(snapshot), table.log_store(), DeltaOperation::Delete { predicate: None })
            .await?;
        let version = finalized.version() as i64;
        let meta = crate::VersionMeta {
            version,
            committed_at: crate::Timestamp::now(),
            actor: actor.to_string(),
            mode: crate::VersionMode::Erase,
            rows_written: 0,
            rows_removed: outcome.rows_removed as i64,
            source_name: None,
            source_sha256: None,
            source_format: None,
        };
        let change = IndexChange { removed, added, ..IndexChange::default() };
        self.catalog.record_version(r, None, &columns_meta, &meta, &change).await?;
        outcome.files_deleted = self.finish_erasure(r, version).await?;
        outcome.version = Some(version);
        Ok(outcome)
    }

    /// The clean-up after an erasure's version: the vacuum deletes every file no version from it
    /// on uses; the log's earlier entries name the removed files, with statistics written before
    /// they were kept to counts, so the table starts again from a checkpoint of this version, and
    /// every entry before it goes, with the deletion vectors no live file uses. Returns the data
    /// files deleted. Run again after a crash, it finishes what is left.
    pub(crate) async fn finish_erasure(&self, r: &DatasetRef, version: i64) -> Result<usize, StoreError> {
        let table = self.lake.open(r, Some(version)).await?;
        let (_, metrics) = table.vacuum().with_retention_period(chrono::Duration::zero()).with_enforce_retention_duration(false).await?;
        let table = self.lake.open(r, Some(version)).await?;
        deltalake::checkpoints::create_checkpoint(&table, None).await?;
        forget_before(&table, version).await?;
        Ok(metrics.files_deleted.len())
    }
}

/// Whether a data file no live version uses (kept for time travel) holds `key` in one of
/// `columns`.
async fn history_holds(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    live: &std::collections::HashSet<String>,
    columns: &[&String],
    key: &str,
) -> Result<bool, StoreError> {
    let top = store.list_with_delimiter(None).await.map_err(|e| StoreError::Read(e.to_string()))?.objects;
    for entry in top {
        let path = entry.location.to_string();
        if !path.ends_with(".parquet") || live.contains(&path) {
            continue;
        }
        let builder =
            ParquetRecordBatchStreamBuilder::new(FileReader::new(store.clone(), entry.location.clone())).await.map_err(read_error)?;
        let present: Vec<usize> = columns.iter().filter_map(|c| builder.schema().index_of(c).ok()).collect();
        if present.is_empty() {
            continue;
        }
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), present);
        let mut stream = builder.with_projection(mask).build().map_err(read_error)?;
        while let Some(batch) = futures::StreamExt::next(&mut stream).await {
            let batch = batch.map_err(read_error)?;
            for column in batch.columns() {
                let text = cast(column, &DataType::Utf8)?;
                let text = text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                if text.iter().flatten().any(|v| v == key) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Deletes the log entries before `version` (a checkpoint of it exists) and the deletion-vector
/// files no live file of it names.
async fn forget_before(table: &deltalake::DeltaTable, version: i64) -> Result<(), StoreError> {
    let store = table.log_store().object_store(None);
    let failed = |e: object_store::Error| StoreError::Read(e.to_string());
    let log: Vec<_> = store.list(Some(&object_store::path::Path::from("_delta_log"))).try_collect().await.map_err(failed)?;
    for entry in log {
        let Some(name) = entry.location.filename() else { continue };
        let number = name.split('.').next().and_then(|n| (n.len() == 20).then(|| n.parse::<i64>().ok()).flatten());
        if number.is_some_and(|n| n < version) {
            store.delete(&entry.location).await.map_err(failed)?;
        }
    }
    let snapshot = table.snapshot()?;
    let views: Vec<_> = snapshot.snapshot().file_views(table.log_store().as_ref(), None).try_collect().await?;
    let used: std::collections::HashSet<String> =
        views.iter().filter_map(|v| v.deletion_vector_descriptor()).filter_map(|d| deletions::file_name(&d)).collect();
    let top: Vec<_> = store.list_with_delimiter(None).await.map_err(failed)?.objects;
    for entry in top {
        let Some(name) = entry.location.filename() else { continue };
        if name.starts_with("deletion_vector_") && name.ends_with(".bin") && !used.contains(name) {
            store.delete(&entry.location).await.map_err(failed)?;
        }
    }
    Ok(())
}
