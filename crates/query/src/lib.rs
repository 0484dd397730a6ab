//! Queries over the lake: a DataFusion session per request that holds only the tables the
//! request names, a guard that refuses everything but read-only queries, and streaming exports.
//!
//! For now every table is readable by the operator; the policy layer (the one door) will hand this
//! crate only the entitled, masked tables.

mod export;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement;
use datafusion::common::TableReference;
use tverr_core::DatasetRef;
use tverr_store::{Store, StoreError};

pub use export::{ExportFormat, ExportOptions, GeometryColumn, write_export};

/// Why a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The SQL is not allowed (DDL, DML, statements, several statements).
    #[error("not allowed: {0}")]
    NotAllowed(String),
    /// The SQL or expression is invalid.
    #[error("invalid query: {0}")]
    Invalid(String),
    /// A dataset or version does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
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
        match e {
            E::SQL(..) | E::Plan(_) | E::SchemaError(..) => QueryError::Invalid(e.strip_backtrace().to_string()),
            E::NotImplemented(m) => QueryError::NotAllowed(m),
            other => QueryError::Execution(other.strip_backtrace().to_string()),
        }
    }
}

/// The query engine over one store.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Store,
}

impl Engine {
    /// An engine over a store.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn context() -> SessionContext {
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
        SessionContext::new_with_config(config)
    }

    async fn register(&self, ctx: &SessionContext, r: &DatasetRef, version: Option<i64>) -> Result<(), QueryError> {
        let table = self.store.lake.open(r, version).await?;
        table.update_datafusion_session(&ctx.state()).map_err(StoreError::from)?;
        let provider = table.table_provider().await.map_err(QueryError::from)?;
        let catalog = ctx.catalog("datafusion").expect("default catalog");
        let schema = match catalog.schema(r.org.as_str()) {
            Some(s) => s,
            None => {
                let s: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                catalog.register_schema(r.org.as_str(), s.clone())?;
                s
            }
        };
        schema.register_table(r.dataset.to_string(), provider)?;
        Ok(())
    }

    /// Plans a read-only SQL query over `org.dataset` tables and returns its result stream.
    pub async fn sql(&self, sql: &str) -> Result<SendableRecordBatchStream, QueryError> {
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
        match &statement {
            Statement::Statement(s) if matches!(**s, datafusion::sql::sqlparser::ast::Statement::Query(_)) => {}
            _ => return Err(QueryError::NotAllowed("only SELECT queries are allowed".into())),
        }
        let refs = state.resolve_table_references(&statement)?;
        let mut seen = HashMap::new();
        for t in refs {
            if let TableReference::Partial { schema, table } = &t {
                if let Ok(r) = format!("{schema}/{table}").parse::<DatasetRef>() {
                    if seen.insert(r.clone(), ()).is_none() && self.store.catalog.dataset_exists(&r).await? {
                        self.register(&ctx, &r, None).await?;
                    }
                }
            }
        }
        let plan = state.statement_to_plan(statement).await?;
        datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| QueryError::NotAllowed(e.strip_backtrace().to_string()))?;
        let df = ctx.execute_logical_plan(plan).await?;
        Ok(df.execute_stream().await?)
    }

    /// A dataset's rows (optionally at a version, optionally filtered by a SQL boolean expression).
    pub async fn scan(
        &self,
        r: &DatasetRef,
        version: Option<i64>,
        filter: Option<&str>,
    ) -> Result<SendableRecordBatchStream, QueryError> {
        self.store.catalog.dataset(r).await?;
        let ctx = Self::context();
        self.register(&ctx, r, version).await?;
        let mut df: DataFrame = ctx.table(format!("{}.{}", r.org, r.dataset)).await?;
        if let Some(f) = filter {
            let expr = df.parse_sql_expr(f)?;
            df = df.filter(expr)?;
        }
        Ok(df.execute_stream().await?)
    }

    /// The store behind the engine.
    pub fn store(&self) -> &Store {
        &self.store
    }
}
