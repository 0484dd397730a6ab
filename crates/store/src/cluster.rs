//! Data files clustered by place: the rows of a write whose geometry is indexed by grid cell
//! ([`crate::index`]) are written in the Z-order (Morton order) of their cell, so the rows of
//! one cell, and mostly of the cells around it, lie together in the same few pages. A read of
//! the rows near a place (the neighbours of a property) then decompresses a handful of pages
//! instead of one page per row scattered over the whole table.
//!
//! The rows are sorted by DataFusion's external sort as the file is read: it keeps at most
//! [`SORT_MEMORY`] in memory and spills sorted runs to temporary files past that, so a write of
//! any size is clustered in bounded memory. Within a cell, rows keep the order of the file. A
//! sort that fails (rows too large to merge within its memory) fails with [`StoreError::Sort`],
//! and the ingest writes the file again unsorted: the order is an aid to reading, never a
//! condition of storing.

use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, BinaryArray, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::execution_plan::ExecutionPlan;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::StoreError;
use crate::index::{CELL_SIZE, wkb_bbox};

/// The memory the sort may hold before it spills sorted runs to disk, unless the store is
/// told otherwise ([`crate::Store::with_sort_memory`]).
pub const SORT_MEMORY: usize = 256 << 20;

/// The Z-order position of a point's grid cell: the bits of the cell's column and row
/// interleaved, so cells near each other mostly get positions near each other.
pub fn cell_order(x: f64, y: f64) -> u64 {
    let axis = |v: f64| -> u64 {
        let cell = (v / CELL_SIZE).floor();
        // Cells as unsigned 32-bit numbers, centred on 0; far-off values share the edge.
        (cell.clamp(-(1i64 << 31) as f64, ((1i64 << 31) - 1) as f64) as i64 + (1i64 << 31)) as u64
    };
    spread(axis(x)) | (spread(axis(y)) << 1)
}

/// The low 32 bits of `v` moved to the even bit positions.
fn spread(v: u64) -> u64 {
    let mut v = v & 0xffff_ffff;
    v = (v | (v << 16)) & 0x0000_ffff_0000_ffff;
    v = (v | (v << 8)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    v = (v | (v << 2)) & 0x3333_3333_3333_3333;
    (v | (v << 1)) & 0x5555_5555_5555_5555
}

/// The cell order of each geometry in a column of WKB: the centre of its bounding box; null
/// for a null or unreadable geometry (those rows come last).
fn orders(column: &ArrayRef) -> Result<UInt64Array, StoreError> {
    let values = cast(column, &DataType::Binary)?;
    let values = values.as_any().downcast_ref::<BinaryArray>().expect("cast to Binary");
    Ok((0..values.len())
        .map(|i| {
            let bbox = values.is_valid(i).then(|| wkb_bbox(values.value(i))).flatten()?;
            Some(cell_order((bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0))
        })
        .collect())
}

/// The one partition of the sort's input: the batches the writer pushes.
#[derive(Debug)]
struct Pushed {
    schema: SchemaRef,
    input: Mutex<Option<mpsc::Receiver<RecordBatch>>>,
}

impl PartitionStream for Pushed {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _: Arc<TaskContext>) -> SendableRecordBatchStream {
        let input = self.input.lock().expect("input lock").take();
        let stream = futures::stream::unfold(input, |input| async move {
            let mut input = input?;
            let batch = input.recv().await?;
            Some((Ok(batch), Some(input)))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// A sort of a write's rows by cell, fed batch by batch ([`Clustering::push`]) and read back in
/// order once the input ends ([`Clustering::next`]).
pub(crate) struct Clustering {
    input: Option<mpsc::Sender<RecordBatch>>,
    output: mpsc::Receiver<Result<RecordBatch, DataFusionError>>,
    task: tokio::task::JoinHandle<()>,
    schema: SchemaRef,
    column: usize,
    width: usize,
    pushed: u64,
}

impl Clustering {
    /// Starts a sort of rows of `schema` by the cells of its geometry column `column`, holding
    /// at most `memory` bytes before it spills.
    pub(crate) fn start(schema: &SchemaRef, column: usize, memory: usize) -> Result<Self, StoreError> {
        let width = schema.fields().len();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("~cell_order", DataType::UInt64, true));
        fields.push(Field::new("~row", DataType::UInt64, false));
        let sorted_schema: SchemaRef = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        let (input, received) = mpsc::channel(2);
        let source = Arc::new(Pushed { schema: sorted_schema.clone(), input: Mutex::new(Some(received)) });
        let plan = StreamingTableExec::try_new(sorted_schema.clone(), vec![source], None, Vec::<LexOrdering>::new(), false, None)?;
        let ascending = arrow::compute::SortOptions { descending: false, nulls_first: false };
        let ordering = LexOrdering::new([
            PhysicalSortExpr::new(Arc::new(Column::new("~cell_order", width)), ascending),
            PhysicalSortExpr::new(Arc::new(Column::new("~row", width + 1)), ascending),
        ])
        .expect("two sort keys");
        let sort: Arc<dyn ExecutionPlan> = Arc::new(SortExec::new(ordering, Arc::new(plan)));
        let runtime = RuntimeEnvBuilder::new().with_memory_limit(memory, 1.0).build_arc()?;
        let context = Arc::new(TaskContext::default().with_runtime(runtime));
        let (sender, output) = mpsc::channel(2);
        let task = tokio::spawn(async move {
            let mut sorted = match sort.execute(0, context) {
                Ok(s) => s,
                Err(e) => {
                    let _ = sender.send(Err(e)).await;
                    return;
                }
            };
            while let Some(batch) = sorted.next().await {
                if sender.send(batch).await.is_err() {
                    return;
                }
            }
        });
        Ok(Self { input: Some(input), output, task, schema: sorted_schema, column, width, pushed: 0 })
    }

    /// Adds rows to the sort.
    pub(crate) async fn push(&mut self, batch: RecordBatch) -> Result<(), StoreError> {
        let orders = orders(batch.column(self.column))?;
        let rows: UInt64Array = (self.pushed..self.pushed + batch.num_rows() as u64).collect();
        self.pushed += batch.num_rows() as u64;
        let (_, mut columns, _) = batch.into_parts();
        columns.push(Arc::new(orders));
        columns.push(Arc::new(rows));
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        let Some(input) = &self.input else { return Err(StoreError::Sort("rows pushed to a finished sort".into())) };
        if input.send(batch).await.is_err() {
            // The sort stopped: its error is waiting at the output.
            return Err(match self.output.recv().await {
                Some(Err(e)) => e.into(),
                _ => StoreError::Sort("the sort stopped".into()),
            });
        }
        Ok(())
    }

    /// The next rows in cell order, once every row has been pushed; `None` at the end.
    pub(crate) async fn next(&mut self) -> Option<Result<RecordBatch, StoreError>> {
        self.input = None;
        let batch = self.output.recv().await?;
        Some(batch.map_err(StoreError::from).and_then(|b| Ok(b.project(&(0..self.width).collect::<Vec<_>>())?)))
    }
}

impl Drop for Clustering {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_cells_are_near_in_the_order_and_far_cells_are_not() {
        let at = |cx: f64, cy: f64| cell_order(cx * CELL_SIZE + 1.0, cy * CELL_SIZE + 1.0);
        // The four cells of a 2×2 block aligned to the grid are consecutive.
        let block = [at(0.0, 0.0), at(1.0, 0.0), at(0.0, 1.0), at(1.0, 1.0)];
        assert_eq!(block[1] - block[0], 1);
        assert_eq!(block[2] - block[0], 2);
        assert_eq!(block[3] - block[0], 3);
        assert!(at(1000.0, 1000.0) - at(0.0, 0.0) > 1_000_000);
        // Negative coordinates and values beyond the grid are ordered, not wrapped.
        assert!(at(-1.0, -1.0) < at(0.0, 0.0));
        assert_eq!(cell_order(f64::MAX, 0.0), cell_order(1e300, 0.0));
        assert!(cell_order(-1e300, 0.0) < cell_order(0.0, 0.0));
    }

    #[tokio::test]
    async fn rows_come_back_by_cell_and_in_file_order_within_a_cell() {
        use arrow::array::{BinaryBuilder, Int64Array};
        let point = |x: f64, y: f64| {
            let mut wkb = vec![1u8, 1, 0, 0, 0];
            wkb.extend(x.to_le_bytes());
            wkb.extend(y.to_le_bytes());
            wkb
        };
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false), Field::new("geom", DataType::Binary, true)]));
        // Two batches: ids 0–1, then ids 2–5 (the last without a geometry).
        let places = [Some((5000.0, 5000.0)), Some((10.0, 10.0)), Some((20.0, 20.0)), Some((60.0, 10.0)), Some((-30.0, -30.0)), None];
        let mut clustering = Clustering::start(&schema, 1, SORT_MEMORY).unwrap();
        for range in [0..2usize, 2..6] {
            let mut geoms = BinaryBuilder::new();
            for place in &places[range.clone()] {
                match place {
                    Some((x, y)) => geoms.append_value(point(*x, *y)),
                    None => geoms.append_null(),
                }
            }
            let ids = Int64Array::from_iter_values(range.start as i64..range.end as i64);
            clustering.push(RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(geoms.finish())]).unwrap()).await.unwrap();
        }
        let mut ids = Vec::new();
        while let Some(batch) = clustering.next().await {
            let batch = batch.unwrap();
            assert_eq!(batch.schema(), schema);
            ids.extend(batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().iter().copied());
        }
        // Cell (-1,-1), then (0,0) in file order, then (1,0), the far one, and the null last.
        assert_eq!(ids, [4, 1, 2, 3, 0, 5]);
    }
}
