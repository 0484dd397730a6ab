//! The subject index's writes: which keys a version's new data files hold, and the change a
//! version makes to the index, applied in the transaction that records the version
//! ([`crate::Catalog`]'s `record_version`). The keys of new files are read back from storage
//! before the Delta commit, so a file that cannot be indexed is never committed.
//!
//! Each geometry is also indexed by the grid cells
//! its bounding box meets ([`cell_keys`]: squares of [`CELL_SIZE`] in the column's own units,
//! metres in UTM), so the rows near a place are found without reading the whole table (the
//! neighbours of a property). Cell keys start with `~`, which no subject key does.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, BinaryArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use futures::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use tverr_core::{DatasetRef, SubjectKind};

use crate::StoreError;
use crate::files::{FileReader, object_path, read_error};

/// The side of a grid cell, in the geometry's units (metres in EPSG:25832/25833).
pub const CELL_SIZE: f64 = 50.0;

/// A geometry whose bounding box meets more cells than this is indexed under [`BIG_CELL`]
/// instead, which every search of its column includes.
pub const MAX_CELLS: usize = 64;

/// The cell key of geometries too large for cells of their own.
pub const BIG_CELL: &str = "~cell:big";

/// The key every data file with indexed cells holds once (row 0), naming the cell size, so a
/// reader can tell a dataset whose cells are indexed at this size from one indexed before cells
/// were, or at another size (`Store::ensure_indexed` indexes those again).
pub const CELLS_MARKER: &str = "~cells:50";

/// The cell keys of a bounding box (`[min_x, min_y, max_x, max_y]`), or [`BIG_CELL`] alone
/// when it meets more than [`MAX_CELLS`] cells; none for a box that is not finite.
pub fn cell_keys(bbox: [f64; 4]) -> Vec<String> {
    cells_within(bbox, MAX_CELLS)
}

/// The cell keys of a box searched (a parcel grown by a distance), up to `max` of them, or
/// [`BIG_CELL`] alone past that (then the caller searches otherwise).
pub fn cells_within(bbox: [f64; 4], max: usize) -> Vec<String> {
    if bbox.iter().any(|v| !v.is_finite()) || bbox[0] > bbox[2] || bbox[1] > bbox[3] {
        return Vec::new();
    }
    let cell = |v: f64| (v / CELL_SIZE).floor() as i64;
    let (x0, y0, x1, y1) = (cell(bbox[0]), cell(bbox[1]), cell(bbox[2]), cell(bbox[3]));
    let count = (x1 - x0 + 1).saturating_mul(y1 - y0 + 1);
    if count > max as i64 || count <= 0 {
        return vec![BIG_CELL.to_string()];
    }
    (x0..=x1).flat_map(|x| (y0..=y1).map(move |y| format!("~cell:{x}:{y}"))).collect()
}

/// The bounding box of a WKB geometry, if it parses and has one.
pub(crate) fn wkb_bbox(bytes: &[u8]) -> Option<[f64; 4]> {
    use geo::BoundingRect;
    use geozero::ToGeo;
    let r = geozero::wkb::Wkb(bytes).to_geo().ok()?.bounding_rect()?;
    Some([r.min().x, r.min().y, r.max().x, r.max().y])
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
    /// Rows the version marks deleted in files it keeps (an upsert's deletion vectors): listed in
    /// `subject_deleted`, their keys left where they are.
    pub deleted_rows: Vec<(String, Vec<i64>)>,
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
        sqlx::query("DELETE FROM subject_deleted WHERE file_id IN (SELECT id FROM subject_files WHERE org = $1 AND dataset = $2)")
            .bind(org)
            .bind(dataset)
            .execute(&mut **tx)
            .await?;
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
        sqlx::query("DELETE FROM subject_deleted WHERE file_id = $1").bind(id).execute(&mut **tx).await?;
        sqlx::query("DELETE FROM subject_files WHERE id = $1").bind(id).execute(&mut **tx).await?;
    }
    for (path, rows) in &change.deleted_rows {
        let id = file_id(r, path);
        let mut sorted = rows.clone();
        sorted.sort_unstable();
        for chunk in sorted.chunks(INSERT_CHUNK) {
            // Numbers only: written into the statement instead of bound one by one.
            let values = chunk.iter().map(|row| format!("({id}, {row})")).collect::<Vec<_>>().join(",");
            sqlx::query(&format!("INSERT INTO subject_deleted (file_id, row_no) VALUES {values}")).execute(&mut **tx).await?;
        }
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

/// Reads the subject keys of data files: every non-null value of the key columns, with its row,
/// except in the rows `deleted` marks (by the file's path).
pub(crate) async fn keys_of_files(
    store: Arc<dyn ObjectStore>,
    paths: &[String],
    columns: &[KeyColumn],
    deleted: &std::collections::HashMap<String, roaring::RoaringTreemap>,
) -> Result<Vec<FileKeys>, StoreError> {
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        let gone = deleted.get(path);
        let live = |row: i64| gone.is_none_or(|d| !d.contains(row as u64));
        let mut file = FileKeys { path: path.clone(), keys: Vec::new() };
        if columns.is_empty() {
            out.push(file);
            continue;
        }
        let reader = FileReader::new(store.clone(), object_path(path)?);
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(read_error)?;
        let schema = builder.schema().clone();
        // Projected columns come back in file order, whatever order they were asked for in.
        let mut present: Vec<(usize, &KeyColumn)> = columns.iter().filter_map(|c| schema.index_of(&c.name).ok().map(|i| (i, c))).collect();
        present.sort_by_key(|(i, _)| *i);
        if present.is_empty() {
            out.push(file);
            continue;
        }
        if let Some((_, c)) = present.iter().find(|(_, c)| c.cells) {
            file.keys.push((CELLS_MARKER.to_string(), 0, c.position));
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), present.iter().map(|(i, _)| *i));
        let mut stream = builder.with_projection(mask).with_batch_size(64 * 1024).build().map_err(read_error)?;
        let mut row = 0i64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(read_error)?;
            for (k, (_, column)) in present.iter().enumerate() {
                let position = column.position;
                if column.cells {
                    let values = cast(batch.column(k), &DataType::Binary)?;
                    let values = values.as_any().downcast_ref::<BinaryArray>().expect("cast to Binary");
                    for i in 0..values.len() {
                        if !live(row + i as i64) {
                            continue;
                        }
                        let Some(bbox) = values.is_valid(i).then(|| wkb_bbox(values.value(i))).flatten() else { continue };
                        file.keys.extend(cell_keys(bbox).into_iter().map(|key| (key, row + i as i64, position)));
                    }
                    continue;
                }
                let text = cast(batch.column(k), &DataType::Utf8)?;
                let text = text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
                for i in 0..text.len() {
                    if text.is_valid(i) && live(row + i as i64) {
                        file.keys.push((text.value(i).to_string(), row + i as i64, position));
                    }
                }
            }
            row += batch.num_rows() as i64;
        }
        out.push(file);
    }
    Ok(out)
}

/// A column the index reads: a subject key (its values are keys), or a geometry (its cells are).
#[derive(Debug, Clone)]
pub(crate) struct KeyColumn {
    pub name: String,
    pub position: i64,
    pub cells: bool,
}

/// The subject-key columns of a table schema with their positions, from the catalogue's kinds.
pub(crate) fn key_columns(
    schema: &arrow::datatypes::Schema,
    subjects: &BTreeMap<String, SubjectKind>,
    geometry: &[String],
) -> Vec<KeyColumn> {
    schema
        .fields()
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let cell = geometry.contains(f.name());
            (subjects.contains_key(f.name()) || cell).then(|| KeyColumn { name: f.name().clone(), position: i as i64, cells: cell })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_meets_the_cells_it_overlaps_and_a_large_one_is_big() {
        assert_eq!(CELLS_MARKER, format!("~cells:{CELL_SIZE}"), "the marker names the cell size");
        assert_eq!(cell_keys([120.0, 120.0, 130.0, 130.0]), ["~cell:2:2"]);
        assert_eq!(cell_keys([-10.0, 45.0, 55.0, 55.0]), ["~cell:-1:0", "~cell:-1:1", "~cell:0:0", "~cell:0:1", "~cell:1:0", "~cell:1:1"]);
        assert_eq!(cell_keys([0.0, 0.0, 10_000.0, 10.0]), [BIG_CELL]);
        assert!(cell_keys([f64::NAN, 0.0, 1.0, 1.0]).is_empty());
        assert!(cell_keys([5.0, 0.0, 1.0, 1.0]).is_empty());
        assert_eq!(cells_within([0.0, 0.0, 500.0, 500.0], 1024).len(), 121);
    }
}
