//! The subject index's writes: which keys a version's new data files hold, and the change a
//! version makes to the index, applied in the transaction that records the version
//! ([`crate::Catalog`]'s `record_version`). The keys of new files are read back from storage
//! before the Delta commit, so a file that cannot be indexed is never committed.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use futures::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use tverr_core::{DatasetRef, SubjectKind};

use crate::StoreError;
use crate::files::{FileReader, object_path, read_error};

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

/// The subject-key columns of a table schema with their positions, from the catalogue's kinds.
pub(crate) fn key_columns(schema: &arrow::datatypes::Schema, subjects: &BTreeMap<String, SubjectKind>) -> Vec<(String, i64)> {
    schema.fields().iter().enumerate().filter(|(_, f)| subjects.contains_key(f.name())).map(|(i, f)| (f.name().clone(), i as i64)).collect()
}
