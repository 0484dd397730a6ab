//! The change feed: the rows versions inserted and deleted, through the one door. Each
//! version's deleted and inserted rows (`Store::changes`, below the door) become the inner
//! table of the grant's secure scan — the same columns, masks, row filter, address protection
//! and tap as a read — and are released with `_change` (`insert` or `delete`) and `_version`,
//! in one audited stream whose intent record names the range read.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tverr_core::DatasetRef;
use tverr_policy::Principal;

use crate::{Channel, Engine, QueryError, Released, execution, secure};

/// `batch` with `_change` = `kind` and `_version` = `version` added.
fn with_change(batch: &RecordBatch, kind: &str, version: i64) -> Result<RecordBatch, QueryError> {
    let n = batch.num_rows();
    let mut fields: Vec<arrow::datatypes::FieldRef> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(arrow::datatypes::Field::new(CHANGE_COLUMN, arrow::datatypes::DataType::Utf8, false)));
    fields.push(Arc::new(arrow::datatypes::Field::new(VERSION_COLUMN, arrow::datatypes::DataType::Int64, false)));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(arrow::array::StringArray::from(vec![kind; n])));
    columns.push(Arc::new(arrow::array::Int64Array::from(vec![version; n])));
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns).map_err(|e| QueryError::Execution(e.to_string()))
}

/// The most rows one request of the change feed reads (the files the versions added and
/// removed, before the rows both held are taken out).
pub const MAX_CHANGE_ROWS: usize = 1_000_000;

/// The column that says what happened to a row.
pub const CHANGE_COLUMN: &str = "_change";
/// The column with the version that made the change.
pub const VERSION_COLUMN: &str = "_version";

impl Engine {
    /// Raw rows of a change as the grant releases them, in the secure scan's order, with the
    /// released schema.
    async fn released_change(
        &self,
        ctx: &SessionContext,
        grant: &tverr_policy::Grant,
        schema: &SchemaRef,
        batches: Vec<RecordBatch>,
        sink: &secure::SubjectSink,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let inner = Arc::new(datafusion::datasource::MemTable::try_new(schema.clone(), vec![batches])?);
        let secure = Arc::new(self.secure_table(ctx, grant, inner, sink)?);
        let df = ctx.read_table(secure)?;
        let released: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let mut stream = execution::execute(df).await?;
        let mut out = Vec::new();
        while let Some(b) = stream.next().await {
            out.push(b?);
        }
        Ok((released, out))
    }

    /// The rows versions `from + 1 ..= to` inserted and deleted (`to`: the latest when `None`),
    /// as `who` may see them for `purpose`, oldest version first and within a version deleted
    /// rows before inserted ones. An upsert's changed row is its old form deleted and its new
    /// form inserted; a replace is the rows it removed and the rows it added, without those it
    /// kept.
    pub async fn changes(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        r: &DatasetRef,
        from: i64,
        to: Option<i64>,
        channel: Channel,
    ) -> Result<Released, QueryError> {
        let started = std::time::Instant::now();
        let grant = self.grant(who, purpose, r, &r.to_string(), channel).await?;
        if grant.min_group_size().is_some() {
            return Err(QueryError::NotAllowed(format!("{r} is shared as statistics only: use SQL with GROUP BY")));
        }
        let latest = self.store.catalog.versions(r).await?.last().map(|v| v.version).unwrap_or(0);
        let to = to.unwrap_or(latest);
        let (schema, changes) = self.store.changes(r, from, to, MAX_CHANGE_ROWS).await?;
        if matches!(grant.protection(), tverr_policy::Protection::ByPerson { .. }) {
            self.protected.refresh(&self.store).await?;
        }
        let ctx = self.context()?;
        let sink = secure::SubjectSink::new(self.named_limit);
        // Each version's rows through the secure scan, then the pairs that read the same once
        // the policy is applied taken out: a change only to a value the caller may not see (an
        // ungranted or masked column, a withheld address) is no change to them.
        let mut released_schema = None;
        let mut out: Vec<arrow::array::RecordBatch> = Vec::new();
        for c in changes {
            let deleted = self.released_change(&ctx, &grant, &schema, c.deleted, &sink).await?;
            let inserted = self.released_change(&ctx, &grant, &schema, c.inserted, &sink).await?;
            let seen = deleted.0.clone();
            released_schema.get_or_insert(seen.clone());
            let (deleted, inserted) = tverr_store::row_difference(&seen, &deleted.1, &inserted.1)?;
            for (kind, batches) in [("delete", deleted), ("insert", inserted)] {
                for b in batches.into_iter().filter(|b| b.num_rows() > 0) {
                    out.push(with_change(&b, kind, c.version)?);
                }
            }
        }
        let seen = match released_schema {
            Some(s) => s,
            None => self.released_change(&ctx, &grant, &schema, Vec::new(), &sink).await?.0,
        };
        let mut fields: Vec<arrow::datatypes::FieldRef> = seen.fields().iter().cloned().collect();
        fields.push(Arc::new(arrow::datatypes::Field::new(CHANGE_COLUMN, arrow::datatypes::DataType::Utf8, false)));
        fields.push(Arc::new(arrow::datatypes::Field::new(VERSION_COLUMN, arrow::datatypes::DataType::Int64, false)));
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        let stream: datafusion::execution::SendableRecordBatchStream = Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, futures::stream::iter(out.into_iter().map(Ok))),
        );
        let grants = vec![(grant, Some(to))];
        let intent = self.intent(who, purpose, channel, &format!("changes {r} from version {from} to {to}"), &grants);
        let stream = self.release(stream, intent, sink, started);
        Ok(Released { stream, grants: grants.iter().map(|(g, _)| g.clone()).collect(), versions: vec![Some(to)] })
    }
}
