//! A page of a box read and its count in one pass, without planning a query.
//!
//! A map client asks for a box's features a page at a time, and the first page also says how
//! many there are (OGC API Features' `numberMatched`). Read through DataFusion that is two
//! queries, each planned and optimised anew, where the reading itself is a few thousand rows of
//! the cells the box meets. Here those rows go through the grant's secure scan compiled once per
//! grant and version ([`crate::secure::PreparedScan`], as look-ups use it): row filter, masks,
//! then the box and the caller's filter as tests on released values, then the tap, which names
//! only the people of the page's rows.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::{Expr, ident, lit};
use tverr_audit::Channel;
use tverr_core::DatasetRef;
use tverr_policy::Principal;

use crate::{Engine, FEATURE_ID_COLUMN, QueryError, Released, RowsQuery, feature, geo, guard, secure};

/// A page of rows and how many rows the whole read (without its window) has.
#[derive(Debug)]
pub struct CountedPage {
    /// The page, as [`Engine::rows`] gives it.
    pub released: Released,
    /// Rows matched by the read without its offset and limit.
    pub matched: u64,
}

impl Engine {
    /// The page `q` asks for and the count of rows it matches without its window, when `q` is a
    /// box read the cell index answers (see [`Engine::rows_in_box`]) and needs nothing the
    /// compiled scan does not do; `None` otherwise, and [`Engine::count_rows`] and
    /// [`Engine::rows`] give the same answer in two reads. The rows, their order and their ids
    /// are those [`Engine::rows`] gives for `q` with `stable_order`. One access-log record, as
    /// for a page; the count names no one.
    pub async fn box_page(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        r: &DatasetRef,
        q: &RowsQuery,
        channel: Channel,
    ) -> Result<Option<CountedPage>, QueryError> {
        let started = std::time::Instant::now();
        let Some(spatial @ geo::Spatial::Bbox { .. }) = &q.spatial else { return Ok(None) };
        let simple = q.select.is_empty() && q.order_by.is_empty() && q.feature_id.is_none() && q.stable_order;
        if !simple || q.limit.is_none() {
            return Ok(None);
        }
        q.check_window()?;
        let grant = self.grant(who, purpose, r, &r.to_string(), channel).await?;
        // Statistics-only grants are refused by the planned read; address protection needs its
        // rows with withheld values held back to the end, which only the planned read does.
        if grant.min_group_size().is_some() || matches!(grant.protection(), tverr_policy::Protection::ByPerson { .. }) {
            return Ok(None);
        }
        let filter = q.filter.as_deref().map(guard::filter).transpose()?;
        let Some((version, rows)) = self.rows_in_box(&grant, q).await? else { return Ok(None) };
        let prepared = self.prepared(&grant, version, rows.schema.clone())?;
        let state = &self.lookups.state;
        let geometry = geo::granted_geometry(&grant);
        let Some((column, crs)) = geometry.first() else { return Ok(None) };
        let (shape, distance) = spatial.in_crs(*crs).map_err(QueryError::Invalid)?;
        let wkb = geo::to_wkb(&shape).map_err(QueryError::Invalid)?;
        let mut test =
            geo::DWithin::udf().call(vec![ident(column.as_str()), lit(datafusion::common::ScalarValue::Binary(Some(wkb))), lit(distance)]);
        if let Some(f) = &filter {
            test = test.and(f.plan(state, prepared.released_schema())?);
        }
        // A test the compiled scan cannot run below its tap (none a checked filter gives) takes
        // the planned read.
        if !secure::pushable(&test)? {
            return Ok(None);
        }
        let sink = secure::SubjectSink::new(self.named_limit);
        let limit = q.limit.unwrap_or(usize::MAX);
        let (page, matched) = prepared.apply_window(&rows.batches, test, q.offset, limit, state, &sink)?;
        let page = self.finish_page(&page, prepared.released_schema(), &geometry, q, state)?;
        let grants = vec![(grant, Some(version))];
        let intent = self.intent(who, purpose, channel, &q.describe(r), &grants);
        let schema = page.schema();
        let stream = Box::pin(MemoryStream::try_new(vec![page], schema, None)?);
        let stream = self.release(stream, intent, sink, started);
        let released = Released { stream, grants: grants.into_iter().map(|(g, _)| g).collect(), versions: vec![Some(version)] };
        Ok(Some(CountedPage { released, matched: matched as u64 }))
    }

    /// The released page with its feature ids (over the released values, as [`Engine::rows`]
    /// computes them) and its geometries in `q.crs`.
    fn finish_page(
        &self,
        page: &RecordBatch,
        released: &datafusion::common::DFSchema,
        geometry: &[(String, geo::Crs)],
        q: &RowsQuery,
        state: &datafusion::execution::session_state::SessionState,
    ) -> Result<RecordBatch, QueryError> {
        let names: Vec<String> = released.fields().iter().map(|f| f.name().clone()).collect();
        let mut columns: Vec<(String, Expr)> = names
            .iter()
            .map(|name| match q.crs {
                Some(to) if geometry.iter().any(|(g, _)| g == name) => {
                    (name.clone(), geo::Transform::output_udf().call(vec![ident(name), lit(to.srid())]))
                }
                _ => (name.clone(), ident(name)),
            })
            .collect();
        if q.feature_ids {
            columns.push((FEATURE_ID_COLUMN.to_string(), feature::FeatureId::udf().call(names.iter().map(ident).collect())));
        }
        let mut fields = Vec::with_capacity(columns.len());
        let mut arrays = Vec::with_capacity(columns.len());
        for (name, e) in columns {
            let physical = state.create_physical_expr(e, released)?;
            let field = physical.return_field(page.schema().as_ref())?;
            arrays.push(physical.evaluate(page)?.into_array(page.num_rows())?);
            fields.push(Arc::new(field.as_ref().clone().with_name(name)));
        }
        let schema = Arc::new(arrow::datatypes::Schema::new(fields));
        let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(page.num_rows()));
        Ok(RecordBatch::try_new_with_options(schema, arrays, &options).map_err(datafusion::error::DataFusionError::from)?)
    }
}
