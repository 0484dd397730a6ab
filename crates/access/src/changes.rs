//! The change feed: the rows versions inserted and deleted, through the one door. Each
//! version's deleted and inserted rows (`Store::changes`, below the door) become the inner
//! table of the grant's secure scan — the same columns, masks, row filter, address protection
//! and tap as a read — and are released with `_change` (`insert` or `delete`) and `_version`,
//! in one audited stream whose intent record names the range read.

use std::sync::Arc;

use datafusion::prelude::{DataFrame, lit};
use futures::StreamExt;
use tverr_core::DatasetRef;
use tverr_policy::Principal;

use crate::{Channel, Engine, QueryError, Released, execution, secure};

/// The most rows one request of the change feed reads (the files the versions added and
/// removed, before the rows both held are taken out).
pub const MAX_CHANGE_ROWS: usize = 5_000_000;

/// The column that says what happened to a row.
pub const CHANGE_COLUMN: &str = "_change";
/// The column with the version that made the change.
pub const VERSION_COLUMN: &str = "_version";

impl Engine {
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
        let mut parts: Vec<DataFrame> = Vec::new();
        let mut groups: Vec<(i64, &str, Vec<arrow::array::RecordBatch>)> = Vec::new();
        for c in changes {
            if c.deleted.iter().any(|b| b.num_rows() > 0) {
                groups.push((c.version, "delete", c.deleted));
            }
            if c.inserted.iter().any(|b| b.num_rows() > 0) {
                groups.push((c.version, "insert", c.inserted));
            }
        }
        if groups.is_empty() {
            // No change: an empty result with the columns a read would have.
            groups.push((to, "insert", Vec::new()));
        }
        let empty = groups.len() == 1 && groups[0].2.is_empty();
        for (version, kind, batches) in groups {
            let inner = Arc::new(datafusion::datasource::MemTable::try_new(schema.clone(), vec![batches])?);
            let secure = Arc::new(self.secure_table(&ctx, &grant, inner, &sink)?);
            let mut df = ctx.read_table(secure)?;
            df = df.with_column(CHANGE_COLUMN, lit(kind))?.with_column(VERSION_COLUMN, lit(version))?;
            if empty {
                df = df.limit(0, Some(0))?;
            }
            parts.push(df);
        }
        // One stream after the other, in order: each part keeps the secure scan's own order (rows
        // with withheld columns last), which a union's interleaving would not.
        let mut streams = Vec::with_capacity(parts.len());
        for df in parts {
            streams.push(execution::execute(df).await?);
        }
        let schema = streams[0].schema();
        let stream: datafusion::execution::SendableRecordBatchStream =
            Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, futures::stream::iter(streams).flatten()));
        let grants = vec![(grant, Some(to))];
        let intent = self.intent(who, purpose, channel, &format!("changes {r} from version {from} to {to}"), &grants);
        let stream = self.release(stream, intent, sink, started);
        Ok(Released { stream, grants: grants.iter().map(|(g, _)| g.clone()).collect(), versions: vec![Some(to)] })
    }
}
