//! The secure scan: a table provider that exposes only a grant's columns, with masks, the row
//! filter and the address-protection rule applied inside the scan, below every user expression.
//!
//! The physical plan of one scan is: the dataset's scan → the row filter → a barrier → user
//! filters that read only unmasked, unprotected columns → a barrier → the masking projection →
//! user filters on released values → rows with withheld columns held back to the end → a LIMIT
//! that reached the scan → the tap → a barrier.
//! * User filters run only on permitted rows: the barrier ([`SecureScanExec`]) stops DataFusion
//!   from merging them into, or pushing them below, the row filter; the barrier above them stops
//!   the optimizer from moving the masks below them (masks then run only on kept rows).
//! * The outer barrier accepts no filter, limit or projection pushdown from above and reports
//!   unknown statistics, so COUNT/MIN/MAX are computed over permitted rows.
//! * Filters that read masked or protected columns run inside the scan too, above the masks on
//!   released values, and so does a LIMIT that reaches the scan. Above them a tap
//!   ([`SubjectTapExec`]) records the person key of every row that leaves the scan, so the
//!   access log can name exactly the people whose data a query used.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TableProviderFilterPushDown, Volatility, cast, lit, when,
};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties, ReplaceChildrenOptions};
use datafusion::prelude::{DataFrame, SessionContext};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tverr_core::ColumnCategory;
use tverr_policy::{Grant, Mask, PROTECTION_COLUMN, Protection};

/// The name of the hidden column that carries the person key from the masks to the tap; not a
/// name a dataset column can have (they never start with a space).
const SUBJECT_COLUMN: &str = " tverr_subject";

/// The hidden column that tells [`WithheldLastExec`] which rows have columns withheld.
const WITHHELD_COLUMN: &str = " tverr_withheld";

/// Withheld rows held back before they are sent on anyway (in bytes of Arrow memory), so a
/// dataset whose rows are nearly all withheld is not gathered in memory whole.
const WITHHELD_HELD_BYTES: usize = 32 << 20;

/// Data subjects seen by the taps of one request, by dataset, as HMACs of their numbers.
#[derive(Debug, Clone)]
pub(crate) struct SubjectSink(Arc<Mutex<Seen>>);

#[derive(Debug, Default)]
struct Seen {
    /// Not yet taken.
    ids: BTreeMap<String, HashSet<[u8; 16]>>,
    /// Named so far in this access, per dataset.
    named: BTreeMap<String, usize>,
    /// Datasets past the limit: rows read since.
    bulk: BTreeMap<String, u64>,
    /// Every dataset with a tap in this request.
    tapped: BTreeSet<String>,
    limit: usize,
}

/// What the taps saw since the last take.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    /// Identifiers as hex, sorted, by dataset.
    pub named: BTreeMap<String, Vec<String>>,
    /// Datasets read in bulk, with the rows read in bulk so far (cumulative).
    pub bulk: BTreeMap<String, u64>,
}

impl SubjectSink {
    /// A sink that names at most `limit` people per dataset in one access; past that the read
    /// is recorded as a bulk read with its row count.
    pub(crate) fn new(limit: usize) -> Self {
        Self(Arc::new(Mutex::new(Seen { limit, ..Default::default() })))
    }

    /// Notes that `dataset` has a tap in this request.
    pub(crate) fn watch(&self, dataset: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).tapped.insert(dataset.to_string());
    }

    /// Records every tapped dataset as read in bulk: what a failed query may have revealed is
    /// not known row by row (an error raised for one hidden value answers a question about
    /// it), so everyone in those datasets is taken to have been read.
    pub(crate) fn assume_all_read(&self) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let tapped: Vec<String> = seen.tapped.iter().cloned().collect();
        for dataset in tapped {
            seen.bulk.entry(dataset).or_insert(0);
        }
    }

    /// Takes what was seen since the last call.
    pub(crate) fn take(&self) -> Taken {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ids = std::mem::take(&mut seen.ids);
        let named = ids
            .into_iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(dataset, ids)| {
                let mut ids: Vec<String> = ids.iter().map(hex::encode).collect();
                ids.sort();
                (dataset, ids)
            })
            .collect();
        Taken { named, bulk: seen.bulk.clone() }
    }
}

/// What a tap records: the person key column of one dataset, under the log's subject key.
#[derive(Debug, Clone)]
pub(crate) struct SubjectTap {
    /// `org/dataset`.
    pub dataset: String,
    /// The person key columns (inner names).
    pub columns: Vec<String>,
    /// The key of [`tverr_audit::Audit::subject_id`].
    pub key: Arc<Vec<u8>>,
    /// Where identifiers go.
    pub sink: SubjectSink,
}

impl SubjectTap {
    /// The expression the tap reads: the key column, or the non-null keys of several columns
    /// joined by spaces (a canonical person number has none).
    fn expr(&self) -> Expr {
        match self.columns.as_slice() {
            [one] => ident(one),
            many => datafusion::functions::string::expr_fn::concat_ws(lit(" "), many.iter().map(|c| ident(c)).collect()),
        }
    }

    fn observe(&self, column: &ArrayRef) -> DfResult<()> {
        {
            let mut seen = self.sink.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(rows) = seen.bulk.get_mut(&self.dataset) {
                *rows += column.len() as u64;
                return Ok(());
            }
        }
        let text = arrow::compute::cast(column, &DataType::Utf8)?;
        let text = text
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("subject key is not text".into()))?;
        let base = Hmac::<Sha256>::new_from_slice(&self.key).map_err(|e| datafusion::error::DataFusionError::Internal(e.to_string()))?;
        // Several key columns arrive joined by spaces (see `SubjectTap::expr`).
        let ids: Vec<[u8; 16]> = text
            .iter()
            .flatten()
            .flat_map(str::split_whitespace)
            .map(|v| {
                let mut mac = base.clone();
                mac.update(v.trim().as_bytes());
                let mut id = [0u8; 16];
                id.copy_from_slice(&mac.finalize().into_bytes()[..16]);
                id
            })
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut seen = self.sink.0.lock().unwrap_or_else(|p| p.into_inner());
        let named = seen.named.get(&self.dataset).copied().unwrap_or(0);
        if named + ids.len() > seen.limit {
            // Past the limit: a bulk read. Those already named stay named.
            seen.bulk.insert(self.dataset.clone(), column.len() as u64);
            return Ok(());
        }
        seen.named.insert(self.dataset.clone(), named + ids.len());
        seen.ids.entry(self.dataset.clone()).or_default().extend(ids);
        Ok(())
    }
}

/// A dataset as one grant lets a caller see it.
#[derive(Debug)]
pub(crate) struct SecureTable {
    /// The dataset's full table.
    inner: Arc<dyn TableProvider>,
    /// The agreement's row filter, over the inner columns.
    row_filter: Option<Expr>,
    /// Per permitted column: the released expression (masks and protection) over the inner
    /// columns.
    released: Vec<Expr>,
    /// Permitted columns released as they are stored (no mask, not protected): user filters
    /// over only these may run before the masks.
    plain: HashSet<String>,
    schema: SchemaRef,
    /// Records the person key of every row that leaves the scan.
    tap: Option<SubjectTap>,
    /// Whether a row has columns withheld by protection, over the inner columns; such rows
    /// leave the scan after all the others ([`WithheldLastExec`]).
    withheld: Option<Expr>,
}

impl SecureTable {
    /// Builds the restricted view over `inner` (the dataset's full table) for `grant`.
    ///
    /// `level` is the function that gives a row's protection level from its person keys and
    /// then its property keys (needed for [`Protection::ByPerson`]).
    pub(crate) fn new(
        ctx: &SessionContext,
        inner: Arc<dyn TableProvider>,
        grant: &Grant,
        tap: Option<SubjectTap>,
        level: Option<&ScalarUDF>,
    ) -> DfResult<Self> {
        let mut df: DataFrame = ctx.read_table(inner.clone())?;
        // Parsed and checked as it was when the agreement was requested, and planned from
        // that tree.
        let mut row_filter = match &grant.row_filter() {
            Some(f) => {
                let checked = crate::guard::filter(f)
                    .map_err(|e| datafusion::error::DataFusionError::Plan(format!("the agreement's row filter: {e}")))?;
                Some(checked.plan(&ctx.state(), df.schema())?)
            }
            None => None,
        };
        // Protection by person: a reader who may not see protected people gets none of their
        // rows (so no withheld address singles them out); the others get them with the
        // protected-address columns withheld (`protect`).
        let by_person = match &grant.protection() {
            Protection::ByPerson { keys, properties, links, visible, release_fortrolig } => {
                let level =
                    level.ok_or_else(|| datafusion::error::DataFusionError::Internal("protection by person needs the register".into()))?;
                // The reading citizen's own number counts as no one: their own protection does
                // not hide their own rows from them.
                let person = |k: &String| -> DfResult<Expr> {
                    let value = cast(ident(k), DataType::Utf8);
                    match grant.reader() {
                        Some(pid) => when(value.clone().eq(lit(pid)), lit(ScalarValue::Utf8(None))).otherwise(value),
                        None => Ok(value),
                    }
                };
                let mut args = keys.iter().map(person).collect::<DfResult<Vec<_>>>()?;
                args.extend(properties.iter().chain(links).map(|k| cast(ident(k), DataType::Utf8)));
                let level = level.call(args);
                let withheld_from = if *release_fortrolig { crate::protection::STRENGT } else { crate::protection::FORTROLIG };
                if !visible {
                    let kept = level.clone().lt(lit(withheld_from));
                    row_filter = Some(match row_filter {
                        Some(f) => f.and(kept),
                        None => kept,
                    });
                }
                Some((level, withheld_from))
            }
            _ => None,
        };
        if let Some(f) = &row_filter {
            df = df.filter(f.clone())?;
        }
        let source = df.schema().clone();
        let mut plain = HashSet::new();
        let released = grant
            .columns()
            .iter()
            .map(|c| {
                let column = ident(&c.name);
                let data_type = source.field_with_unqualified_name(&c.name)?.data_type().clone();
                let masked = match c.mask {
                    None => column.clone(),
                    Some(m) => mask(m, column.clone(), &data_type, c.category, grant.hmac_key())?,
                };
                // A property key places its owner as surely as an address: under protection by
                // person it is withheld like one (a water meter's matrikkel as the property's).
                let places = c.category == ColumnCategory::ProtectedAddress
                    || (c.subject == Some(tverr_core::SubjectKind::Property) && by_person.is_some());
                let released = if places {
                    protect(grant.protection(), by_person.as_ref(), masked, &source)?
                } else {
                    // A geometry column is released with its CRS attached, so filters on it
                    // see the released value rather than the stored one.
                    if c.mask.is_none() && c.crs.is_none() {
                        plain.insert(c.name.clone());
                    }
                    masked
                };
                Ok(match c.crs.as_deref().and_then(crate::geo::Crs::parse) {
                    Some(crs) => crate::geo::SetSrid::udf().call(vec![released, lit(crs.srid())]),
                    None => released,
                })
            })
            .collect::<DfResult<Vec<_>>>()?;
        let aliased = grant.columns().iter().zip(&released).map(|(c, e)| e.clone().alias(&c.name)).collect::<Vec<_>>();
        let schema = Arc::new(df.select(aliased)?.schema().as_arrow().clone());
        let withholds = grant.columns().iter().any(|c| {
            c.category == ColumnCategory::ProtectedAddress || (c.subject == Some(tverr_core::SubjectKind::Property) && by_person.is_some())
        });
        let withheld = if withholds { withheld_rows(grant.protection(), by_person.as_ref())? } else { None };
        Ok(Self { inner, row_filter, released, plain, schema, tap, withheld })
    }

    /// Whether a user filter uses only plain columns, so it may run on permitted rows before the
    /// masks without changing what it sees.
    fn is_plain(&self, e: &Expr) -> bool {
        let refs = e.column_refs();
        !refs.is_empty() && refs.iter().all(|c| self.plain.contains(&c.name))
    }
}

/// Whether a user filter may run inside the scan: not one with a subquery or a volatile function.
pub(crate) fn pushable(f: &Expr) -> DfResult<bool> {
    let nested =
        f.exists(|e| Ok(matches!(e, Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_) | Expr::OuterReferenceColumn(..))))?;
    Ok(!nested && !f.is_volatile())
}

/// The same expression with every column reference unqualified (the scan's own names).
fn unqualified(e: Expr) -> DfResult<Expr> {
    e.transform(|e| match e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(ident(&c.name))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

fn ident(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn typed_null(data_type: &DataType) -> DfResult<Expr> {
    Ok(lit(ScalarValue::try_from(data_type)?))
}

/// The expression that releases `column` under a mask.
fn mask(m: Mask, column: Expr, data_type: &DataType, category: ColumnCategory, key: &[u8]) -> DfResult<Expr> {
    use datafusion::functions::{datetime, math, string, unicode};
    Ok(match m {
        Mask::Redact => typed_null(data_type)?,
        Mask::Partial => {
            let keep = if category == ColumnCategory::PersonId { 6 } else { 1 };
            let text = cast(column.clone(), DataType::Utf8);
            when(column.is_null(), typed_null(&DataType::Utf8)?)
                .otherwise(string::concat().call(vec![unicode::left().call(vec![text, lit(keep as i64)]), lit("***")]))?
        }
        Mask::Hmac => {
            let udf = ScalarUDF::new_from_impl(Pseudonym::new(key));
            udf.call(vec![cast(column, DataType::Utf8)])
        }
        Mask::YearOnly => cast(datetime::date_part().call(vec![lit("year"), column]), DataType::Int32),
        Mask::Round(n) => {
            let scaled = cast(column, DataType::Float64) / lit(n);
            cast(math::round().call(vec![scaled]) * lit(n), data_type.clone())
        }
    })
}

/// Applies the address-protection rule to a protected-address column's released value;
/// `by_person` is the row's level expression and the level from which the column is withheld.
fn protect(p: &Protection, by_person: Option<&(Expr, i8)>, released: Expr, source: &DFSchema) -> DfResult<Expr> {
    let data_type = released.get_type(source)?;
    match p {
        Protection::NotApplicable => Ok(released),
        Protection::ByPerson { .. } => {
            let (level, withheld_from) =
                by_person.ok_or_else(|| datafusion::error::DataFusionError::Internal("protection by person needs the register".into()))?;
            when(level.clone().gt_eq(lit(*withheld_from)), typed_null(&data_type)?).otherwise(released)
        }
        Protection::WithholdAll => typed_null(&data_type),
        Protection::ByRow { release_fortrolig } => {
            use datafusion::functions::string;
            let status = string::lower().call(vec![string::btrim().call(vec![cast(ident(PROTECTION_COLUMN), DataType::Utf8)])]);
            // Released only where the status says so; an unknown or missing status withholds.
            let mut open = status.clone().eq(lit("ugradert"));
            if *release_fortrolig {
                open = open.or(status.eq(lit("fortrolig")));
            }
            when(open, released).otherwise(typed_null(&data_type)?)
        }
    }
}

/// Whether a row has its protected columns withheld under `p` (never null), or `None` when
/// protection withholds in no row or in every row (then a row's place tells nothing).
fn withheld_rows(p: &Protection, by_person: Option<&(Expr, i8)>) -> DfResult<Option<Expr>> {
    match p {
        Protection::NotApplicable | Protection::WithholdAll => Ok(None),
        // A reader who may not see protected people gets none of their rows.
        Protection::ByPerson { visible: false, .. } => Ok(None),
        Protection::ByPerson { .. } => {
            let (level, withheld_from) =
                by_person.ok_or_else(|| datafusion::error::DataFusionError::Internal("protection by person needs the register".into()))?;
            Ok(Some(when(level.clone().gt_eq(lit(*withheld_from)), lit(true)).otherwise(lit(false))?))
        }
        Protection::ByRow { release_fortrolig } => {
            use datafusion::functions::string;
            let status = string::lower().call(vec![string::btrim().call(vec![cast(ident(PROTECTION_COLUMN), DataType::Utf8)])]);
            let mut open = status.clone().eq(lit("ugradert"));
            if *release_fortrolig {
                open = open.or(status.eq(lit("fortrolig")));
            }
            Ok(Some(when(open, lit(false)).otherwise(lit(true))?))
        }
    }
}

#[async_trait]
impl TableProvider for SecureTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Every filter without subqueries or volatile functions runs inside the scan: on plain
    /// columns before the masks, on the others above them, on released values.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        filters
            .iter()
            .map(|f| Ok(if pushable(f)? { TableProviderFilterPushDown::Exact } else { TableProviderFilterPushDown::Unsupported }))
            .collect()
    }

    /// Builds: scan → row filter → [barrier] → user filters on plain columns → [barrier] → masks
    /// → user filters on released values → withheld rows last → limit → tap → [barrier]. The first barrier keeps user filters
    /// from being merged into or pushed below the row filter, so they never run on rows the
    /// caller may not see.
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.released.len()).collect(),
        };
        let mut pushed = Vec::new();
        for f in filters {
            if pushable(f)? {
                pushed.push(unqualified(f.clone())?);
            }
        }
        let (plain, on_released): (Vec<Expr>, Vec<Expr>) = pushed.into_iter().partition(|f| self.is_plain(f));
        // The released columns the output and the filters on released values need.
        let mut outputs = wanted.clone();
        for f in &on_released {
            for c in f.column_refs() {
                let i = self.schema.index_of(&c.name)?;
                if !outputs.contains(&i) {
                    outputs.push(i);
                }
            }
        }
        // The inner columns the released expressions, the plain filters and the tap need.
        let mut needed: Vec<String> = Vec::new();
        let tapped = self.tap.as_ref().map(SubjectTap::expr);
        for e in outputs.iter().map(|i| &self.released[*i]).chain(plain.iter()).chain(tapped.iter()).chain(self.withheld.iter()) {
            for c in e.column_refs() {
                if !needed.contains(&c.name) {
                    needed.push(c.name.clone());
                }
            }
        }
        let mut builder = LogicalPlanBuilder::scan("secure", provider_as_source(self.inner.clone()), None)?;
        if let Some(f) = &self.row_filter {
            builder = builder.filter(f.clone())?;
        }
        let permitted = builder.project(needed.iter().map(|n| ident(n)))?.build()?;
        let mut plan: Arc<dyn ExecutionPlan> = Arc::new(SecureScanExec { input: state.create_physical_plan(&permitted).await? });
        let inner_schema = DFSchema::try_from(plan.schema().as_ref().clone())?;
        // The topmost filter stops once it has the rows a LIMIT that reached the scan asks for;
        // otherwise it would gather a full batch (8,192 rows) first, reading most of a table for
        // a selective condition.
        let plain_fetch = if on_released.is_empty() && self.withheld.is_none() { limit } else { None };
        if let Some(predicate) = plain.into_iter().reduce(Expr::and) {
            let predicate = state.create_physical_expr(predicate, &inner_schema)?;
            plan = Arc::new(FilterExecBuilder::new(predicate, plan).with_fetch(plain_fetch).build()?);
            // A barrier again, so the optimizer cannot swap the masks below these filters: the
            // masks (an HMAC, say) are computed only for the rows the filters keep.
            plan = Arc::new(SecureScanExec { input: plan });
        }
        let mut exprs = outputs
            .iter()
            .map(|i| {
                let e = state.create_physical_expr(self.released[*i].clone(), &inner_schema)?;
                Ok((e, self.schema.field(*i).name().clone()))
            })
            .collect::<DfResult<Vec<_>>>()?;
        if let Some(t) = &tapped {
            exprs.push((state.create_physical_expr(t.clone(), &inner_schema)?, SUBJECT_COLUMN.to_string()));
        }
        let mut withheld_at = None;
        if let Some(w) = &self.withheld {
            withheld_at = Some(exprs.len());
            exprs.push((state.create_physical_expr(w.clone(), &inner_schema)?, WITHHELD_COLUMN.to_string()));
        }
        plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        if let Some(predicate) = on_released.into_iter().reduce(Expr::and) {
            let released_schema = DFSchema::try_from(plan.schema().as_ref().clone())?;
            let predicate = state.create_physical_expr(predicate, &released_schema)?;
            // A limit here would keep the first rows in stored order, withheld ones among them.
            let fetch = if self.withheld.is_none() { limit } else { None };
            plan = Arc::new(FilterExecBuilder::new(predicate, plan).with_fetch(fetch).build()?);
        }
        if let Some(column) = withheld_at {
            plan = WithheldLastExec::over(plan, column);
        }
        // DataFusion hands a LIMIT to the scan only when no filter stays above it, so applying it
        // here returns the same rows, and the tap sees only those.
        if let Some(n) = limit {
            plan = Arc::new(GlobalLimitExec::new(Arc::new(CoalescePartitionsExec::new(plan)), 0, Some(n)));
        }
        if let Some(tap) = &self.tap {
            plan = Arc::new(SubjectTapExec { input: plan, column: outputs.len(), tap: tap.clone() });
        }
        if outputs.len() != wanted.len() || self.tap.is_some() || self.withheld.is_some() {
            let schema = plan.schema();
            let exprs = (0..wanted.len())
                .map(|i| {
                    let f = schema.field(i);
                    let e: Arc<dyn PhysicalExpr> = Arc::new(datafusion::physical_expr::expressions::Column::new(f.name(), i));
                    (e, f.name().clone())
                })
                .collect::<Vec<_>>();
            plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        }
        Ok(Arc::new(SecureScanExec { input: plan }))
    }
}

/// A compiled tap: the person-key expression over the stored row, the dataset it records, the
/// key columns, and the HMAC key.
type TapPlan = (Arc<dyn PhysicalExpr>, String, Vec<String>, Arc<Vec<u8>>);

/// A secure scan compiled for rows already in memory (look-ups): the same row filter, released
/// expressions and tap as [`SecureTable::scan`], as physical expressions over the dataset's
/// schema, so a few rows pass through the grant without a query being planned. Built once per
/// grant and version ([`PreparedScan::new`]) and applied to each look-up's rows with that
/// look-up's key test and sink ([`PreparedScan::apply`]).
#[derive(Debug)]
pub(crate) struct PreparedScan {
    /// The dataset's schema at the version: the rows given to `apply` must have it.
    inner_schema: SchemaRef,
    row_filter: Option<Arc<dyn PhysicalExpr>>,
    /// Per permitted column, its released value (masks and protection).
    released: Vec<Arc<dyn PhysicalExpr>>,
    /// The released schema, as [`SecureTable::schema`].
    schema: SchemaRef,
    released_df: DFSchema,
    /// The tap's expression over the stored row and what it records, without a sink: each
    /// application records into its own request's sink.
    tap: Option<TapPlan>,
    /// The stored columns the row filter, the released values and the tap read.
    reads: BTreeSet<String>,
}

impl PreparedScan {
    /// Compiles `table`'s scan for rows of its inner table's schema.
    pub(crate) fn new(table: &SecureTable, state: &dyn Session) -> DfResult<Self> {
        let inner_schema = table.inner.schema();
        let inner_df = DFSchema::try_from(inner_schema.as_ref().clone())?;
        let row_filter = match &table.row_filter {
            Some(f) => Some(state.create_physical_expr(unqualified(f.clone())?, &inner_df)?),
            None => None,
        };
        let released = table.released.iter().map(|e| state.create_physical_expr(e.clone(), &inner_df)).collect::<DfResult<Vec<_>>>()?;
        let tap = match &table.tap {
            Some(t) => Some((state.create_physical_expr(t.expr(), &inner_df)?, t.dataset.clone(), t.columns.clone(), t.key.clone())),
            None => None,
        };
        let reads = row_filter
            .iter()
            .chain(&released)
            .chain(tap.iter().map(|t| &t.0))
            .flat_map(datafusion::physical_expr::utils::collect_columns)
            .map(|c| c.name().to_string())
            .collect();
        Ok(Self {
            inner_schema,
            row_filter,
            released,
            schema: table.schema.clone(),
            released_df: DFSchema::try_from(table.schema.as_ref().clone())?,
            tap,
            reads,
        })
    }

    /// The stored columns the scan reads: `apply` needs only these to hold the rows' values.
    pub(crate) fn reads(&self) -> &BTreeSet<String> {
        &self.reads
    }

    /// The released schema.
    pub(crate) fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The rows of `batches` the grant lets through and `test` (over released columns, as a user
    /// filter on released values) keeps, released: row filter → masks → test → tap into `sink`.
    pub(crate) fn apply(&self, batches: &[RecordBatch], test: Expr, state: &dyn Session, sink: &SubjectSink) -> DfResult<Vec<RecordBatch>> {
        let (test, tap) = self.tested(test, state, sink)?;
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            let (kept, people) = self.release(batch, test.as_ref(), tap.is_some())?;
            if let (Some((_, tap)), Some(people)) = (&tap, people) {
                tap.observe(&people)?;
            }
            if kept.num_rows() > 0 {
                out.push(kept);
            }
        }
        Ok(out)
    }

    /// As [`Prepared::apply`], but only the first `limit` rows by the released column `order_by`
    /// (ascending in [`natural_keys`] order, empty values last) are released and tapped: the
    /// people of rows cut off are not named in the log, since no one sees them. Also returns
    /// how many rows `test` kept.
    pub(crate) fn apply_first(
        &self,
        batches: &[RecordBatch],
        test: Expr,
        order_by: &str,
        limit: usize,
        state: &dyn Session,
        sink: &SubjectSink,
    ) -> DfResult<(Option<RecordBatch>, usize)> {
        let (all, tapped) = self.release_all(batches, test, state, sink)?;
        let found = all.num_rows();
        let order = arrow::compute::SortOptions { descending: false, nulls_first: false };
        let keys = natural_keys(all.column(self.schema.index_of(order_by)?))?;
        let indices = arrow::compute::sort_to_indices(&keys, Some(order), Some(limit))?;
        if let Some((people, tap)) = &tapped {
            tap.observe(&arrow::compute::take(people, &indices, None)?)?;
        }
        let first = arrow::compute::take_record_batch(&all, &indices)?;
        Ok(((first.num_rows() > 0).then_some(first), found))
    }

    /// As [`PreparedScan::apply`], but only the rows from `offset` to `offset + limit` of those
    /// `test` keeps, in the order of `batches`, are released and tapped: the people of rows
    /// outside the window are not named in the log, since no one sees them. Also returns how many
    /// rows `test` kept (a page and its count in one pass).
    pub(crate) fn apply_window(
        &self,
        batches: &[RecordBatch],
        test: Expr,
        offset: usize,
        limit: usize,
        state: &dyn Session,
        sink: &SubjectSink,
    ) -> DfResult<(RecordBatch, usize)> {
        let (all, tapped) = self.release_all(batches, test, state, sink)?;
        let found = all.num_rows();
        let start = offset.min(found);
        let length = limit.min(found - start);
        if let Some((people, tap)) = &tapped {
            tap.observe(&people.slice(start, length))?;
        }
        Ok((all.slice(start, length), found))
    }

    /// Every row of `batches` the grant lets through and `test` keeps, released as one batch,
    /// with (when the scan taps) the subject key of each of those rows and the tap, which has
    /// recorded nothing yet: the caller names the rows it releases.
    fn release_all(
        &self,
        batches: &[RecordBatch],
        test: Expr,
        state: &dyn Session,
        sink: &SubjectSink,
    ) -> DfResult<(RecordBatch, Option<(ArrayRef, SubjectTap)>)> {
        let (test, tap) = self.tested(test, state, sink)?;
        let (mut kept, mut people) = (Vec::new(), Vec::new());
        for batch in batches {
            let (k, p) = self.release(batch, test.as_ref(), tap.is_some())?;
            kept.push(k);
            people.extend(p);
        }
        let all = arrow::compute::concat_batches(&self.schema, &kept)?;
        let tapped = match tap {
            Some((_, tap)) => {
                let people: Vec<&dyn arrow::array::Array> = people.iter().map(|p| p.as_ref()).collect();
                let people =
                    if people.is_empty() { arrow::array::new_empty_array(&DataType::Utf8) } else { arrow::compute::concat(&people)? };
                Some((people, tap))
            }
            None => None,
        };
        Ok((all, tapped))
    }

    /// The released schema as the planner sees it (what a test is planned against).
    pub(crate) fn released_schema(&self) -> &DFSchema {
        &self.released_df
    }

    /// The test as a physical expression over released columns, and the subject tap.
    #[allow(clippy::type_complexity)]
    fn tested(
        &self,
        test: Expr,
        state: &dyn Session,
        sink: &SubjectSink,
    ) -> DfResult<(Arc<dyn PhysicalExpr>, Option<(Arc<dyn PhysicalExpr>, SubjectTap)>)> {
        use datafusion::error::DataFusionError;
        if !pushable(&test)? {
            return Err(DataFusionError::Plan("a look-up's key test must run inside the secure scan".into()));
        }
        let test = state.create_physical_expr(unqualified(test)?, &self.released_df)?;
        let tap = self.tap.as_ref().map(|(e, dataset, columns, key)| {
            (e.clone(), SubjectTap { dataset: dataset.clone(), columns: columns.clone(), key: key.clone(), sink: sink.clone() })
        });
        Ok((test, tap))
    }

    /// One batch through row filter → masks → test: the rows kept, released, and when `people`
    /// is asked for, the subject keys of those rows (from the rows before masking).
    fn release(&self, batch: &RecordBatch, test: &dyn PhysicalExpr, people: bool) -> DfResult<(RecordBatch, Option<ArrayRef>)> {
        use datafusion::error::DataFusionError;
        if batch.schema().fields() != self.inner_schema.fields() {
            return Err(DataFusionError::Internal("rows of another schema than the prepared scan's".into()));
        }
        let permitted = match &self.row_filter {
            Some(f) => arrow::compute::filter_record_batch(batch, &mask_of(f.as_ref(), batch)?)?,
            None => batch.clone(),
        };
        let n = permitted.num_rows();
        // Nothing left to test: a batch whose rows were all withheld answers as one that had none.
        if n == 0 {
            let people = (people && self.tap.is_some()).then(|| arrow::array::new_empty_array(&DataType::Utf8));
            return Ok((RecordBatch::new_empty(self.schema.clone()), people));
        }
        let columns = self.released.iter().map(|e| e.evaluate(&permitted)?.into_array(n)).collect::<DfResult<Vec<_>>>()?;
        let released = RecordBatch::try_new(self.schema.clone(), columns)?;
        let keep = mask_of(test, &released)?;
        let kept = arrow::compute::filter_record_batch(&released, &keep)?;
        let people = match (&self.tap, people) {
            (Some((expr, ..)), true) => Some(arrow::compute::filter(&expr.evaluate(&permitted)?.into_array(n)?, &keep)?),
            _ => None,
        };
        Ok((kept, people))
    }
}

/// Values as text whose byte order is their natural order: every run of digits is compared as
/// a number (`3403-9/2` before `3403-10/1`, `3403-1/2` before `3403-1/10`), nulls stay null.
pub(crate) fn natural_keys(values: &ArrayRef) -> DfResult<ArrayRef> {
    let text = arrow::compute::cast(values, &DataType::Utf8)?;
    let text = text.as_any().downcast_ref::<arrow::array::StringArray>().expect("cast to Utf8");
    let padded: arrow::array::StringArray = text
        .iter()
        .map(|v| {
            v.map(|v| {
                let mut out = String::with_capacity(v.len() + 16);
                let mut digits = String::new();
                let flush = |digits: &mut String, out: &mut String| {
                    if !digits.is_empty() {
                        // The run's length first: a longer number is a larger one.
                        let run = digits.trim_start_matches('0');
                        out.push_str(&format!("{:04}{run}", run.len()));
                        digits.clear();
                    }
                };
                for c in v.chars() {
                    if c.is_ascii_digit() {
                        digits.push(c);
                    } else {
                        flush(&mut digits, &mut out);
                        out.push(c);
                    }
                }
                flush(&mut digits, &mut out);
                out
            })
        })
        .collect();
    Ok(Arc::new(padded))
}

/// A predicate's value on a batch as a filter mask (null counts as false, as in a `WHERE`).
fn mask_of(predicate: &dyn PhysicalExpr, batch: &RecordBatch) -> DfResult<arrow::array::BooleanArray> {
    let value = predicate.evaluate(batch)?.into_array(batch.num_rows())?;
    value
        .as_any()
        .downcast_ref::<arrow::array::BooleanArray>()
        .cloned()
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("a filter is not boolean".into()))
}

/// Sends on rows whose protected columns are released as they come, and holds back rows with
/// withheld columns until the end of its input (or until [`WITHHELD_HELD_BYTES`] are held).
///
/// Without it a withheld value could be read from its row's neighbours in stored order: a
/// dataset sorted by matrikkel shows `3403-1/183`, a withheld row, `3403-1/185`, and
/// `row_number() OVER ()` or `LIMIT`/`OFFSET` give the position.
#[derive(Debug)]
pub(crate) struct WithheldLastExec {
    input: Arc<dyn ExecutionPlan>,
    /// Index of the boolean withheld column in the input.
    column: usize,
    properties: Arc<PlanProperties>,
}

impl WithheldLastExec {
    fn over(input: Arc<dyn ExecutionPlan>, column: usize) -> Arc<dyn ExecutionPlan> {
        use datafusion::physical_expr::EquivalenceProperties;
        let p = input.properties();
        // No ordering is promised: the rows leave in another order than they came.
        let properties =
            PlanProperties::new(EquivalenceProperties::new(input.schema()), p.partitioning.clone(), p.emission_type, p.boundedness);
        Arc::new(Self { input, column, properties: Arc::new(properties) })
    }
}

impl DisplayAs for WithheldLastExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WithheldLastExec")
    }
}

impl ExecutionPlan for WithheldLastExec {
    fn name(&self) -> &str {
        "WithheldLastExec"
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Self::over(children.swap_remove(0), self.column))
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Self::over(children.swap_remove(0), self.column))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        use arrow::compute::{filter_record_batch, not};
        use futures::StreamExt;
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let column = self.column;
        let held: Arc<Mutex<(Vec<RecordBatch>, usize)>> = Arc::default();
        let holding = held.clone();
        let released = input.filter_map(move |batch| {
            let out = (|| {
                let batch = batch?;
                let withheld = batch
                    .column(column)
                    .as_any()
                    .downcast_ref::<arrow::array::BooleanArray>()
                    .ok_or_else(|| datafusion::error::DataFusionError::Internal("the withheld column is not boolean".into()))?;
                if withheld.true_count() == 0 {
                    return Ok(Some(batch));
                }
                let back = filter_record_batch(&batch, withheld)?;
                let mut h = holding.lock().unwrap_or_else(|p| p.into_inner());
                h.1 += back.get_array_memory_size();
                h.0.push(back);
                let mut out = vec![filter_record_batch(&batch, &not(withheld)?)?];
                if h.1 > WITHHELD_HELD_BYTES {
                    out.extend(std::mem::take(&mut h.0));
                    h.1 = 0;
                }
                drop(h);
                out.retain(|b| b.num_rows() > 0);
                Ok(match out.len() {
                    0 => None,
                    1 => out.pop(),
                    _ => Some(arrow::compute::concat_batches(&batch.schema(), &out)?),
                })
            })();
            std::future::ready(out.transpose())
        });
        let rest = futures::stream::once(async move {
            let batches = std::mem::take(&mut held.lock().unwrap_or_else(|p| p.into_inner()).0);
            futures::stream::iter(batches.into_iter().map(Ok))
        })
        .flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, released.chain(rest))))
    }
}

/// Records the person key of every row that passes, before the row goes on.
#[derive(Debug)]
pub(crate) struct SubjectTapExec {
    input: Arc<dyn ExecutionPlan>,
    /// Index of the person key in the input.
    column: usize,
    tap: SubjectTap,
}

impl DisplayAs for SubjectTapExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectTapExec: {}", self.tap.dataset)
    }
}

impl ExecutionPlan for SubjectTapExec {
    fn name(&self) -> &str {
        "SubjectTapExec"
    }

    /// A pass-through: no repartitioning is worth it, and the order stays.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(SubjectTapExec { input: children.swap_remove(0), column: self.column, tap: self.tap.clone() }))
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(SubjectTapExec { input: children.swap_remove(0), column: self.column, tap: self.tap.clone() }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        use futures::StreamExt;
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let (tap, column) = (self.tap.clone(), self.column);
        let observed = input.map(move |batch| {
            let batch = batch?;
            tap.observe(batch.column(column))?;
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, observed)))
    }
}

/// The physical boundary of a secure scan: executes the restricted plan and lets nothing from
/// above through (no filter, limit or projection pushdown; unknown statistics).
#[derive(Debug)]
pub(crate) struct SecureScanExec {
    input: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for SecureScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecureScanExec")
    }
}

impl ExecutionPlan for SecureScanExec {
    fn name(&self) -> &str {
        "SecureScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(&self, _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(SecureScanExec { input: children.swap_remove(0) }))
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(SecureScanExec { input: children.swap_remove(0) }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }
}

/// `hmac` mask: HMAC-SHA-256 of the text value under one agreement's key, as hex. Not callable
/// from SQL: it is never registered by name, only placed in restricted plans.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Pseudonym {
    key: Vec<u8>,
    signature: Signature,
}

impl Pseudonym {
    fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec(), signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for Pseudonym {
    fn name(&self) -> &str {
        "tverr_pseudonym"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let input = arrays[0]
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .ok_or_else(|| datafusion::error::DataFusionError::Internal("pseudonym expects text".into()))?;
        let mut out = StringBuilder::with_capacity(input.len(), input.len() * 32);
        let base = Hmac::<Sha256>::new_from_slice(&self.key).map_err(|e| datafusion::error::DataFusionError::Internal(e.to_string()))?;
        for v in input.iter() {
            match v {
                None => out.append_null(),
                Some(v) => {
                    let mut mac = base.clone();
                    mac.update(v.as_bytes());
                    // 128 bits: collisions are out of reach, and the text stays short.
                    out.append_value(hex::encode(&mac.finalize().into_bytes()[..16]));
                }
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn natural_keys_order_numbers_as_numbers() {
        let values: super::ArrayRef = std::sync::Arc::new(arrow::array::StringArray::from(vec![
            Some("3403-10/1"),
            Some("3403-9/2"),
            Some("3403-9/10"),
            None,
            Some("3403-9/0003"),
            Some("3403-9/1"),
        ]));
        let keys = super::natural_keys(&values).unwrap();
        let order = arrow::compute::SortOptions { descending: false, nulls_first: false };
        let indices = arrow::compute::sort_to_indices(&keys, Some(order), None).unwrap();
        assert_eq!(indices.values(), &[5, 1, 4, 2, 0, 3]);
    }

    use super::*;
    use sha2::Digest;

    fn pseudonym(key: &[u8], value: &str) -> String {
        let udf = Pseudonym::new(key);
        let input: ArrayRef = Arc::new(arrow::array::StringArray::from(vec![Some(value), None]));
        let args = ScalarFunctionArgs {
            args: vec![ColumnarValue::Array(input)],
            arg_fields: vec![Arc::new(arrow::datatypes::Field::new("v", DataType::Utf8, true))],
            number_rows: 2,
            return_field: Arc::new(arrow::datatypes::Field::new("p", DataType::Utf8, true)),
            config_options: Arc::new(Default::default()),
        };
        let ColumnarValue::Array(out) = udf.invoke_with_args(args).expect("pseudonym") else { panic!("array expected") };
        let out = out.as_any().downcast_ref::<arrow::array::StringArray>().expect("text");
        assert!(out.is_null(1), "null stays null");
        out.value(0).to_string()
    }

    #[test]
    fn pseudonyms_are_keyed_stable_and_not_plain_hashes() {
        let fnr = "01010012356";
        let a = pseudonym(&[1; 32], fnr);
        assert_eq!(a, pseudonym(&[1; 32], fnr), "stable within one agreement");
        assert_ne!(a, pseudonym(&[2; 32], fnr), "different in another agreement");
        assert_ne!(a, pseudonym(&[1; 32], "01010012357"));
        let plain = hex::encode(Sha256::digest(fnr.as_bytes()));
        assert!(!plain.starts_with(&a) && a.len() == 32, "{a}");
    }
}
