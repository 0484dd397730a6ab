//! Parquet files: Arrow types mapped to Tverr's column types, batches streamed from the file.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::columns::{self, ColumnType};
use crate::limits::{self, MAX_COLUMNS};
use crate::reader::{Batcher, Context};
use crate::{BatchSink, IngestError, Problem, SourceReport};

/// About the most one batch read from a Parquet file may hold, before decoding.
const BATCH_BYTES: usize = 64 << 20;

pub(crate) fn read(ctx: &Context, sink: &mut dyn BatchSink) -> Result<SourceReport, IngestError> {
    let file = ctx.file_name.as_str();
    let handle = std::fs::File::open(&ctx.path).map_err(|e| ctx.io(e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(handle)
        .map_err(|e| IngestError::Invalid(vec![Problem::file(file, format!("not a readable Parquet file ({e})"))]))?;
    let schema = builder.schema().clone();
    if schema.fields().len() > MAX_COLUMNS {
        let name = schema.field(MAX_COLUMNS).name();
        return Err(IngestError::Invalid(vec![limits::column_limit(file, None, name, schema.fields().len())]));
    }
    let mut problems = Vec::new();
    let mut names = Vec::new();
    let mut inferred = Vec::new();
    for field in schema.fields() {
        names.push(field.name().clone());
        match ColumnType::from_arrow(field.data_type()) {
            Some(t) => inferred.push(t),
            None => {
                problems.push(Problem::column(file, field.name(), format!("type {} is not supported", field.data_type())));
                inferred.push(ColumnType::Text);
            }
        }
    }
    if !problems.is_empty() {
        return Err(IngestError::Invalid(problems));
    }
    let plan = columns::plan(file, &names, &inferred, &ctx.options).map_err(IngestError::Invalid)?;
    // Batches of at most about BATCH_BYTES, judged by the widest row group's bytes per row.
    let widest_row = builder
        .metadata()
        .row_groups()
        .iter()
        .filter(|rg| rg.num_rows() > 0)
        .map(|rg| usize::try_from(rg.total_byte_size().max(0) / rg.num_rows()).unwrap_or(usize::MAX))
        .max()
        .unwrap_or(0);
    let batch_rows = ctx.batch_rows().min((BATCH_BYTES / widest_row.max(1)).max(1));
    let reader = builder
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| IngestError::Invalid(vec![Problem::file(file, format!("cannot read ({e})"))]))?;
    let mut batcher = Batcher::new(ctx, plan, sink)?;
    let out_types: Vec<(String, DataType, Option<tverr_core::SubjectKind>)> =
        batcher.plan.columns.iter().map(|c| (c.name.clone(), c.column_type.arrow_type(), c.subject)).collect();
    let source_index = batcher.plan.source_index.clone();
    let strict = CastOptions { safe: false, ..Default::default() };
    let mut row_offset = 0u64;
    for batch in reader {
        let batch =
            batch.map_err(|e| IngestError::Invalid(vec![Problem::at_row(file, row_offset + 1, None, format!("cannot read ({e})"))]))?;
        let rows = batch.num_rows();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(out_types.len());
        let mut stop = false;
        for ((name, dt, subject), src) in out_types.iter().zip(&source_index) {
            let Some(src) = src else {
                arrays.push(arrow::array::new_null_array(dt, rows));
                continue;
            };
            let column = batch.column(*src);
            let converted = match subject {
                Some(kind) => canonical_keys(column, *kind).map_err(|(i, m)| (Some(i), m)),
                None => cast_with_options(column, dt, &strict).map_err(|e| (None, format!("cannot convert to {dt}: {e}"))),
            };
            // Geometries are checked as in every other format, and stored as 2D WKB.
            let converted = match converted {
                Ok(a) if *dt == DataType::Binary => geometries(&a).map_err(|(i, m)| (Some(i), m)),
                other => other,
            };
            match converted {
                Ok(a) => arrays.push(a),
                Err((row, msg)) => {
                    let p = match row {
                        Some(i) => Problem::at_row(file, row_offset + i as u64 + 1, Some(name), msg),
                        None => Problem::column(file, name, msg),
                    };
                    stop |= batcher.problem(p);
                    arrays.push(arrow::array::new_null_array(dt, rows));
                }
            }
        }
        batcher.push_arrays(arrays, rows)?;
        row_offset += rows as u64;
        if stop {
            break;
        }
    }
    let (sha256, bytes) = ctx.hash_file()?;
    batcher.finish(sha256, bytes)
}

/// A geometry column's WKB values checked ([`crate::geometry::parse_wkb`]) and made 2D;
/// returns the first bad row.
fn geometries(column: &ArrayRef) -> Result<ArrayRef, (usize, String)> {
    let values = column.as_any().downcast_ref::<arrow::array::BinaryArray>().ok_or((0, "a geometry column must hold WKB".to_string()))?;
    let mut out = arrow::array::BinaryBuilder::with_capacity(values.len(), values.value_data().len());
    for i in 0..values.len() {
        if values.is_null(i) {
            out.append_null();
            continue;
        }
        let g = crate::geometry::parse_wkb(values.value(i)).map_err(|e| (i, e))?;
        out.append_value(g.wkb);
    }
    Ok(Arc::new(out.finish()))
}

/// Canonicalises subject keys; numbers that lost a leading zero (fødselsnummer stored as an
/// integer) get it back. Returns the first bad row.
fn canonical_keys(column: &ArrayRef, kind: tverr_core::SubjectKind) -> Result<ArrayRef, (usize, String)> {
    let numeric = column.data_type().is_integer();
    let text = cast_with_options(column, &DataType::Utf8, &CastOptions::default()).map_err(|e| (0, e.to_string()))?;
    let text = text.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
    let mut out = StringBuilder::with_capacity(text.len(), text.len() * 12);
    for i in 0..text.len() {
        if text.is_null(i) {
            out.append_null();
            continue;
        }
        let mut v = text.value(i).to_string();
        if numeric && kind == tverr_core::SubjectKind::Person && v.len() == 10 {
            v.insert(0, '0');
        }
        match kind.canonicalise(&v) {
            Ok(c) => out.append_value(c),
            Err(e) => return Err((i, format!("invalid {}: {e}", kind.label()))),
        }
    }
    Ok(Arc::new(out.finish()))
}
