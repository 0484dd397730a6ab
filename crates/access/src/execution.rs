//! Where queries run: on a runtime of their own, apart from the one that serves HTTP, in plans
//! that yield to the scheduler after every batch of every operator, and only when their
//! estimated size is within bounds.
//!
//! A query that computes without ever waiting (a count over a cross join) would otherwise hold
//! every worker of the runtime it runs on: no other request, no timer and no signal handler would
//! run until it ended. Here the HTTP runtime only waits on a channel, so it keeps serving, and its
//! timers fire; and because every operator yields, the query's task notices when it is aborted
//! (the client went away, the time limit passed) within one batch.

use std::sync::{Arc, LazyLock};

use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNode;
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::DataFrame;
use futures::StreamExt;

use crate::{QueryError, SendableRecordBatchStream};

/// Plans in which some join is estimated to produce more rows than this are refused before
/// they start: a hundred billion rows is more than any query computes within its time limit, so
/// the bound refuses nothing that could have finished.
pub const MAX_ESTIMATED_ROWS: u64 = 100_000_000_000;

/// Batches computed ahead of the client, per query.
const AHEAD: usize = 2;

/// The runtime every query's plan runs on, one per process, with a worker per core.
static QUERIES: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name("tverr-access")
        // Planning recurses over the expression tree (bounded by the guard's nesting limit).
        .thread_stack_size(8 * 1024 * 1024)
        .enable_all()
        .build()
        .expect("the query runtime starts")
});

/// Plans `df` and runs it on the query runtime; the returned stream, polled anywhere, receives
/// its batches. Dropping the stream aborts the query. A query that panics ends in an error, never
/// in a result that merely looks short.
pub(crate) async fn execute(df: DataFrame) -> Result<SendableRecordBatchStream, QueryError> {
    let (planned_tx, planned_rx) = tokio::sync::oneshot::channel();
    let (tx, rx) = tokio::sync::mpsc::channel::<DfResult<arrow::record_batch::RecordBatch>>(AHEAD);
    let task = Task(QUERIES.spawn(async move {
        let task_ctx = Arc::new(df.task_ctx());
        let planned = async {
            let plan = df.create_physical_plan().await?;
            within_estimate(&plan)?;
            datafusion::physical_plan::execute_stream(plan, task_ctx)
        }
        .await;
        let mut stream = match planned {
            Ok(stream) => {
                if planned_tx.send(Ok(stream.schema())).is_err() {
                    return;
                }
                stream
            }
            Err(e) => {
                let _ = planned_tx.send(Err(e));
                return;
            }
        };
        loop {
            tokio::select! {
                () = tx.closed() => return,
                item = stream.next() => match item {
                    Some(item) => {
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
            }
        }
    }));
    let schema = match planned_rx.await {
        Ok(planned) => planned?,
        Err(_) => return Err(QueryError::Execution(panicked())),
    };
    let stream = futures::stream::unfold((rx, Some(task)), |(mut rx, mut task)| async move {
        match rx.recv().await {
            Some(item) => Some((item, (rx, task))),
            None => {
                // The sender is gone: the query ended, or its task panicked.
                let mut running = task.take()?;
                match (&mut running.0).await {
                    Err(e) if e.is_panic() => Some((Err(DataFusionError::Execution(panicked())), (rx, None))),
                    _ => None,
                }
            }
        }
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
}

fn panicked() -> String {
    "an internal error stopped the query".into()
}

/// A query's task, aborted when the stream that receives its batches is dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a plan was refused before it ran.
#[derive(Debug, thiserror::Error)]
#[error(
    "the query would compute more than {MAX_ESTIMATED_ROWS} rows in one step (estimated from its plan); join on a key or narrow it with WHERE"
)]
pub(crate) struct TooLarge;

/// Refuses a plan in which some join is estimated to produce more than
/// [`MAX_ESTIMATED_ROWS`] rows, where its statistics allow an estimate. Secure scans report
/// unknown statistics, so estimates come only from the query's own text (its `LIMIT`s, `VALUES`
/// and series), never from how many rows a dataset holds: the refusal reveals nothing.
fn within_estimate(plan: &Arc<dyn ExecutionPlan>) -> DfResult<()> {
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
    let statistics = StatisticsContext::new();
    let mut largest = 0u64;
    plan.apply(|node| {
        // Joins and unions are where rows multiply; a single input's node (a LIMIT, say) only
        // bounds what it passes on.
        if node.children().len() < 2 {
            return Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue);
        }
        if let Ok(stats) = statistics.compute(node.as_ref(), &StatisticsArgs::new())
            && let Precision::Exact(n) | Precision::Inexact(n) = stats.num_rows
        {
            largest = largest.max(n as u64);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    if largest > MAX_ESTIMATED_ROWS {
        return Err(DataFusionError::External(Box::new(TooLarge)));
    }
    Ok(())
}

/// Wraps every operator that has inputs in a [`CooperativeExec`], so each batch it produces
/// spends a unit of the task's scheduling budget. DataFusion's own rule only wraps sources and
/// exchanges; a join that emits many batches from one input batch (a cross join) would then
/// never yield, and could be neither stopped nor timed out. The inside of a Delta scan is left
/// as delta-rs planned it: with deletion vectors it checks that its children are only the
/// Parquet source (it counts rows through them), and a scan yields through that source anyway.
#[derive(Debug, Default)]
pub(crate) struct Yielding;

/// The Delta scan that applies deletion vectors to the rows of its Parquet children.
const DELTA_SCAN: &str = "DeltaScanExec";

fn yielding(node: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    if node.children().is_empty() {
        return Ok(node);
    }
    let cooperative = (node.as_ref() as &dyn std::any::Any).is::<CooperativeExec>();
    let node = if node.name() == DELTA_SCAN {
        node
    } else {
        let children = node.children().into_iter().map(|c| yielding(c.clone())).collect::<DfResult<Vec<_>>>()?;
        datafusion::physical_plan::execution_plan::replace_children_if_necessary(node, children)?
    };
    if cooperative {
        return Ok(node);
    }
    Ok(Arc::new(CooperativeExec::new(node)))
}

impl PhysicalOptimizerRule for Yielding {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> DfResult<Arc<dyn ExecutionPlan>> {
        yielding(plan)
    }

    fn name(&self) -> &str {
        "tverr_yielding"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
