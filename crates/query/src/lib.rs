//! Queries over the lake through the one door: a DataFusion session per request whose catalogue
//! holds only the caller's entitled tables, each a [`secure::SecureTable`]; a guard that refuses
//! everything but single read-only queries with allowed functions; and streaming exports.

mod export;
mod guard;
mod secure;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::common::TableReference;
pub use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use tverr_core::DatasetRef;
use tverr_policy::{Denial, Grant, Policy, PolicyError, Principal};
use tverr_store::{Store, StoreError};

pub use export::{ExportFormat, ExportOptions, GeometryColumn, ResultColumn, csv_rows, json_objects, result_columns, write_export};
pub use guard::ALLOWED_FUNCTIONS;

/// Why a query failed. Texts never contain values from data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The SQL is not allowed (DDL, DML, statements, several statements, functions).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The SQL or expression is invalid.
    #[error("invalid query: {0}")]
    Invalid(String),
    /// The table does not exist or the caller may not read it; the two look the same.
    #[error("no dataset {0} exists that you may read")]
    NotFound(String),
    /// Reading this dataset needs a declared purpose.
    #[error("a purpose is required to read {0}: declare one (Tverr-Purpose header, purpose= or --purpose)")]
    PurposeRequired(String),
    /// The declared purpose does not cover this dataset.
    #[error("the purpose {purpose} does not allow reading {dataset}")]
    PurposeNotAllowed {
        /// The dataset.
        dataset: String,
        /// The declared purpose.
        purpose: String,
    },
    /// A dataset or version does not exist (admin paths), or the catalogue failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The policy layer failed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Execution failed.
    #[error("query failed: {0}")]
    Execution(String),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(String),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as E;
        // Planning errors arrive wrapped (in diagnostics or context); decide by the root.
        match e.find_root() {
            E::SQL(..) | E::Plan(_) | E::SchemaError(..) => QueryError::Invalid(e.strip_backtrace().to_string()),
            E::NotImplemented(m) => QueryError::NotAllowed(m.clone()),
            other => QueryError::Execution(execution_message(other)),
        }
    }
}

/// A message for an execution error that says what kind of thing failed but never echoes a
/// value (DataFusion's own texts quote the value that failed to cast, for example).
fn execution_message(e: &datafusion::error::DataFusionError) -> String {
    let text = e.to_string().to_ascii_lowercase();
    if text.contains("divide by zero") || text.contains("division by zero") {
        "division by zero".into()
    } else if text.contains("cast") || text.contains("parse") {
        "a value could not be converted to the requested type".into()
    } else if text.contains("regex") {
        "a regular expression is invalid".into()
    } else if text.contains("resources exhausted") || text.contains("memory") {
        "the query needs more memory than it may use".into()
    } else if text.contains("overflow") {
        "a number overflowed".into()
    } else {
        "the query could not be computed".into()
    }
}

/// The query engine over one store, behind the policy layer.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Store,
    policy: Policy,
}

impl Engine {
    /// An engine over a store.
    pub fn new(store: Store) -> Self {
        let policy = Policy::new(store.catalog.clone());
        Self { store, policy }
    }

    fn context() -> SessionContext {
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
        SessionContext::new_with_config(config)
    }

    /// The grant for one dataset, or the error the caller may see.
    async fn grant(&self, who: &Principal, purpose: Option<&str>, r: &DatasetRef, shown: &str) -> Result<Grant, QueryError> {
        match self.policy.entitle(who, purpose, r).await? {
            Ok(g) => Ok(g),
            Err(Denial::NotFound) => Err(QueryError::NotFound(shown.to_string())),
            Err(Denial::PurposeRequired) => Err(QueryError::PurposeRequired(shown.to_string())),
            Err(Denial::PurposeNotAllowed) => Err(QueryError::PurposeNotAllowed {
                dataset: shown.to_string(),
                purpose: purpose.unwrap_or_default().to_string(),
            }),
        }
    }

    /// Registers a dataset, as `grant` lets the caller see it, as `org.dataset`.
    async fn register(&self, ctx: &SessionContext, grant: &Grant, version: Option<i64>) -> Result<(), QueryError> {
        let r = &grant.dataset;
        let table = self.store.lake.open(r, version).await?;
        table.update_datafusion_session(&ctx.state()).map_err(StoreError::from)?;
        let inner = table.table_provider().await.map_err(QueryError::from)?;
        let secure: Arc<dyn TableProvider> = Arc::new(secure::SecureTable::new(ctx, inner, grant)?);
        let catalog = ctx.catalog("datafusion").expect("default catalog");
        let schema = match catalog.schema(r.org.as_str()) {
            Some(s) => s,
            None => {
                let s: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                catalog.register_schema(r.org.as_str(), s.clone())?;
                s
            }
        };
        schema.register_table(r.dataset.to_string(), secure)?;
        Ok(())
    }

    /// Plans a read-only SQL query over the `org.dataset` tables `who` may read for `purpose`,
    /// and returns its result stream with the grants it used.
    pub async fn sql(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        sql: &str,
    ) -> Result<(SendableRecordBatchStream, Vec<Grant>), QueryError> {
        let ctx = Self::context();
        let state = ctx.state();
        let statement = state.sql_to_statement(sql, &datafusion::config::Dialect::PostgreSQL).map_err(|e| {
            let text = e.strip_backtrace().to_string();
            if text.contains("single SQL statement") {
                QueryError::NotAllowed("only one statement per request".into())
            } else {
                QueryError::Invalid(text)
            }
        })?;
        guard::check(&statement)?;
        let mut grants: BTreeMap<DatasetRef, Grant> = BTreeMap::new();
        for t in state.resolve_table_references(&statement)? {
            let shown = t.to_string();
            let r = match &t {
                TableReference::Partial { schema, table } => format!("{schema}/{table}").parse::<DatasetRef>().ok(),
                _ => None,
            };
            let Some(r) = r else { return Err(QueryError::NotFound(shown)) };
            if grants.contains_key(&r) {
                continue;
            }
            let grant = self.grant(who, purpose, &r, &shown).await?;
            self.register(&ctx, &grant, None).await?;
            grants.insert(r, grant);
        }
        let mut statement = statement;
        if let Some(k) = grants.values().filter_map(|g| g.min_group_size).min() {
            if grants.len() != 1 {
                return Err(QueryError::NotAllowed(
                    "a dataset shared as statistics only cannot be combined with other tables".into(),
                ));
            }
            guard::statistics(&mut statement, k)?;
        }
        let plan = state.statement_to_plan(statement).await.map_err(|e| {
            let text = e.strip_backtrace().to_string();
            // A name the resolver did not see (e.g. a CTE shadowing trick) is still a 404.
            if text.contains("table") && text.contains("not found") {
                QueryError::NotFound("the table".into())
            } else {
                QueryError::from(e)
            }
        })?;
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| QueryError::NotAllowed(e.strip_backtrace().to_string()))?;
        let df = ctx.execute_logical_plan(plan).await?;
        Ok((df.execute_stream().await?, grants.into_values().collect()))
    }

    /// A dataset's rows as `who` may see them (optionally at a version, optionally filtered by a
    /// SQL boolean expression evaluated above the secure scan).
    pub async fn scan(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        r: &DatasetRef,
        version: Option<i64>,
        filter: Option<&str>,
    ) -> Result<(SendableRecordBatchStream, Grant), QueryError> {
        let grant = self.grant(who, purpose, r, &r.to_string()).await?;
        if grant.min_group_size.is_some() {
            return Err(QueryError::NotAllowed(format!("{r} is shared as statistics only: use SQL with GROUP BY")));
        }
        let ctx = Self::context();
        self.register(&ctx, &grant, version).await?;
        let mut df: DataFrame = ctx.table(format!("{}.{}", r.org, r.dataset)).await?;
        if let Some(f) = filter {
            let statement = format!("SELECT 1 WHERE {f}");
            let parsed = ctx.state().sql_to_statement(&statement, &datafusion::config::Dialect::PostgreSQL)?;
            guard::check(&parsed)?;
            let expr = df.parse_sql_expr(f)?;
            df = df.filter(expr)?;
        }
        Ok((df.execute_stream().await?, grant))
    }

    /// Checks the row filters of agreement terms against their datasets: each must be one SQL
    /// boolean expression over the dataset's columns, using allowed functions only.
    pub async fn check_terms(&self, terms: &[tverr_policy::DatasetTerms]) -> Result<(), QueryError> {
        use datafusion::logical_expr::ExprSchemable;
        for t in terms {
            let Some(f) = &t.row_filter else { continue };
            let r: DatasetRef = t.dataset.parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
            let bad = |why: String| QueryError::Invalid(format!("row filter for {r}: {why}"));
            let parsed = Self::context()
                .state()
                .sql_to_statement(&format!("SELECT 1 WHERE {f}"), &datafusion::config::Dialect::PostgreSQL)
                .map_err(|e| bad(e.strip_backtrace().to_string()))?;
            guard::check(&parsed).map_err(|e| bad(e.to_string()))?;
            let ctx = Self::context();
            let table = self.store.lake.open(&r, None).await?;
            table.update_datafusion_session(&ctx.state()).map_err(StoreError::from)?;
            let df = ctx.read_table(table.table_provider().await.map_err(QueryError::from)?)?;
            let expr = df.parse_sql_expr(f).map_err(|e| bad(e.strip_backtrace().to_string()))?;
            let data_type = expr.get_type(df.schema()).map_err(|e| bad(e.strip_backtrace().to_string()))?;
            if data_type != arrow::datatypes::DataType::Boolean {
                return Err(bad(format!("expected a true/false expression, found {data_type}")));
            }
        }
        Ok(())
    }

    /// The store behind the engine.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The policy layer.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}
