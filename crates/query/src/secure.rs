//! The secure scan: a table provider that exposes only a grant's columns, with masks, the row
//! filter and the address-protection rule applied inside the scan, below every user expression.
//!
//! * The restricted plan (scan → row filter → masking projection) is built once from the grant;
//!   the user's query only ever sees its output.
//! * User filters are never taken below it ([`TableProviderFilterPushDown::Unsupported`]), and
//!   the physical node [`SecureScanExec`] accepts no filter, limit or projection pushdown from
//!   above and reports unknown statistics, so COUNT/MIN/MAX are computed over permitted rows.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Column, DFSchema, Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TableProviderFilterPushDown, Volatility, cast, lit, when,
};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, ReplaceChildrenOptions, PhysicalExpr,
};
use datafusion::prelude::{DataFrame, SessionContext};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tverr_core::ColumnCategory;
use tverr_policy::{Grant, Mask, PROTECTION_COLUMN, Protection};

/// A dataset as one grant lets a caller see it.
#[derive(Debug)]
pub(crate) struct SecureTable {
    plan: LogicalPlan,
    schema: SchemaRef,
}

impl SecureTable {
    /// Builds the restricted plan over `inner` (the dataset's full table) for `grant`.
    pub(crate) fn new(ctx: &SessionContext, inner: Arc<dyn TableProvider>, grant: &Grant) -> DfResult<Self> {
        let mut df: DataFrame = ctx.read_table(inner)?;
        if let Some(f) = &grant.row_filter {
            let expr = df.parse_sql_expr(f)?;
            df = df.filter(expr)?;
        }
        let source = df.schema().clone();
        let exprs = grant
            .columns
            .iter()
            .map(|c| {
                let column = ident(&c.name);
                let data_type = source.field_with_unqualified_name(&c.name)?.data_type().clone();
                let masked = match c.mask {
                    None => column.clone(),
                    Some(m) => mask(m, column.clone(), &data_type, c.category, &grant.hmac_key)?,
                };
                let released = if c.category == ColumnCategory::ProtectedAddress {
                    protect(&grant.protection, masked, &source)?
                } else {
                    masked
                };
                Ok(released.alias(&c.name))
            })
            .collect::<DfResult<Vec<_>>>()?;
        let df = df.select(exprs)?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        Ok(Self { plan: df.into_unoptimized_plan(), schema })
    }
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

/// Applies the address-protection rule to a protected-address column's released value.
fn protect(p: &Protection, released: Expr, source: &DFSchema) -> DfResult<Expr> {
    let data_type = released.get_type(source)?;
    match p {
        Protection::NotApplicable => Ok(released),
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

#[async_trait]
impl TableProvider for SecureTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Unsupported; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut builder = LogicalPlanBuilder::from(self.plan.clone());
        if let Some(p) = projection {
            builder = builder.project(p.iter().map(|i| ident(self.schema.field(*i).name())))?;
        }
        if let Some(n) = limit {
            // Above the row filter, so it counts permitted rows only.
            builder = builder.limit(0, Some(n))?;
        }
        let input = state.create_physical_plan(&builder.build()?).await?;
        Ok(Arc::new(SecureScanExec { input }))
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

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
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
        let base = Hmac::<Sha256>::new_from_slice(&self.key)
            .map_err(|e| datafusion::error::DataFusionError::Internal(e.to_string()))?;
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
