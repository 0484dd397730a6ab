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
use tverr_audit::Audit;
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
    /// The access log cannot be written, so nothing is released.
    #[error("the access log cannot be written, so nothing is released: {0}")]
    AuditUnavailable(String),
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
    audit: Audit,
}

/// A result on its way out: the rows, the grants they were read under, and the access-log entry
/// written before the first row (for non-open data).
pub struct Released {
    /// The rows.
    pub stream: SendableRecordBatchStream,
    /// The grants used, one per dataset.
    pub grants: Vec<Grant>,
    /// The intent record's sequence number, to which the completion refers.
    pub access: Option<i64>,
    started: std::time::Instant,
}

impl Released {
    /// When the request started (for the completion record).
    pub fn started(&self) -> std::time::Instant {
        self.started
    }
}

impl std::fmt::Debug for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Released").field("grants", &self.grants.len()).field("access", &self.access).finish()
    }
}

fn principal_record(who: &Principal) -> serde_json::Value {
    match who {
        Principal::Anonymous => serde_json::json!({"kind": "anonymous"}),
        Principal::Operator => serde_json::json!({"kind": "operator"}),
        Principal::User(u) => serde_json::json!({
            "kind": "user", "username": u.username, "org": u.org, "department": u.department, "role": u.role
        }),
        Principal::Citizen { pid } => serde_json::json!({"kind": "citizen", "pid_hmac": pid_digest(pid)}),
        Principal::System { org, scopes } => serde_json::json!({"kind": "system", "org": org, "scopes": scopes}),
    }
}

/// Citizens are recorded by a digest of their number, not the number.
fn pid_digest(pid: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(format!("tverr-citizen:{pid}").as_bytes())[..16])
}

impl Engine {
    /// An engine over a store, logging to `audit`.
    pub fn new(store: Store, audit: Audit) -> Self {
        let policy = Policy::new(store.catalog.clone());
        Self { store, policy, audit }
    }

    /// The access log.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Writes the intent record of a read of non-open data; `None` when every dataset is open.
    /// An error means nothing may be released.
    async fn log_intent(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        channel: &str,
        query: &str,
        grants: &[(Grant, Option<i64>)],
    ) -> Result<Option<i64>, QueryError> {
        if grants.iter().all(|(g, _)| g.classification == tverr_core::Classification::Open) {
            return Ok(None);
        }
        use sha2::Digest;
        let datasets: Vec<serde_json::Value> = grants
            .iter()
            .map(|(g, version)| {
                serde_json::json!({
                    "dataset": g.dataset.to_string(),
                    "version": version,
                    "basis": g.basis,
                    "columns": g.columns.iter().map(|c| serde_json::json!({"name": c.name, "mask": c.mask})).collect::<Vec<_>>(),
                    "row_filter": g.row_filter.is_some(),
                    "protection": g.protection,
                    "min_group_size": g.min_group_size,
                })
            })
            .collect();
        let record = serde_json::json!({
            "channel": channel,
            "principal": principal_record(who),
            "purpose": purpose,
            "datasets": datasets,
            "query_sha256": hex::encode(sha2::Sha256::digest(query.as_bytes())),
        });
        self.audit.append("access", &record).await.map(Some).map_err(|e| QueryError::AuditUnavailable(e.to_string()))
    }

    /// Records an event other than a read (authentication, agreement change, audit read) with
    /// who did it and on which channel.
    pub async fn log_event(&self, kind: &str, who: &Principal, channel: &str, details: serde_json::Value) -> Result<(), QueryError> {
        let mut record = serde_json::json!({"channel": channel, "principal": principal_record(who)});
        if let (Some(r), serde_json::Value::Object(d)) = (record.as_object_mut(), details) {
            r.extend(d);
        }
        self.audit.append(kind, &record).await.map(|_| ()).map_err(|e| QueryError::AuditUnavailable(e.to_string()))
    }

    /// Records how a release ended (rows released, status, duration). A failure here is logged
    /// but cannot take back rows already sent.
    pub async fn completed(&self, released_access: Option<i64>, started: std::time::Instant, rows: u64, status: &str) {
        let Some(access) = released_access else { return };
        let record = serde_json::json!({
            "access": access, "rows": rows, "status": status, "millis": started.elapsed().as_millis() as u64,
        });
        if let Err(e) = self.audit.append("completion", &record).await {
            tracing::error!(error = %e, access, "cannot record the completion of an access");
        }
    }

    fn context() -> SessionContext {
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_target_partitions(std::thread::available_parallelism().map_or(2, |n| n.get()));
        SessionContext::new_with_config(config)
    }

    /// The grant for one dataset, or the error the caller may see.
    async fn grant(&self, who: &Principal, purpose: Option<&str>, r: &DatasetRef, shown: &str, channel: &str) -> Result<Grant, QueryError> {
        let decision = self.policy.entitle(who, purpose, r).await?;
        if let Err(denial) = &decision {
            if *who != Principal::Anonymous {
                let record = serde_json::json!({
                    "channel": channel, "principal": principal_record(who), "purpose": purpose,
                    "dataset": shown, "reason": format!("{denial:?}"),
                });
                if let Err(e) = self.audit.append("refusal", &record).await {
                    tracing::error!(error = %e, "cannot record a refusal");
                }
            }
        }
        match decision {
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
    async fn register(&self, ctx: &SessionContext, grant: &Grant, version: Option<i64>) -> Result<Option<i64>, QueryError> {
        let r = &grant.dataset;
        let table = self.store.lake.open(r, version).await?;
        let opened = table.version().map(|v| v as i64);
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
        Ok(opened)
    }

    /// Plans a read-only SQL query over the `org.dataset` tables `who` may read for `purpose`,
    /// and returns its result stream with the grants it used.
    pub async fn sql(&self, who: &Principal, purpose: Option<&str>, sql: &str, channel: &str) -> Result<Released, QueryError> {
        let started = std::time::Instant::now();
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
        let mut grants: BTreeMap<DatasetRef, (Grant, Option<i64>)> = BTreeMap::new();
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
            let grant = self.grant(who, purpose, &r, &shown, channel).await?;
            let version = self.register(&ctx, &grant, None).await?;
            grants.insert(r, (grant, version));
        }
        let mut statement = statement;
        if let Some(k) = grants.values().filter_map(|(g, _)| g.min_group_size).min() {
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
        let stream = df.execute_stream().await?;
        let grants: Vec<(Grant, Option<i64>)> = grants.into_values().collect();
        let access = self.log_intent(who, purpose, channel, sql, &grants).await?;
        Ok(Released { stream, grants: grants.into_iter().map(|(g, _)| g).collect(), access, started })
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
        channel: &str,
    ) -> Result<Released, QueryError> {
        let started = std::time::Instant::now();
        let grant = self.grant(who, purpose, r, &r.to_string(), channel).await?;
        if grant.min_group_size.is_some() {
            return Err(QueryError::NotAllowed(format!("{r} is shared as statistics only: use SQL with GROUP BY")));
        }
        let ctx = Self::context();
        let opened = self.register(&ctx, &grant, version).await?;
        let mut df: DataFrame = ctx.table(format!("{}.{}", r.org, r.dataset)).await?;
        if let Some(f) = filter {
            Self::check_expression(f)?;
            let expr = df.parse_sql_expr(f)?;
            df = df.filter(expr)?;
        }
        let stream = df.execute_stream().await?;
        let query = format!("export {r} version {version:?} where {}", filter.unwrap_or("true"));
        let grants = vec![(grant, opened)];
        let access = self.log_intent(who, purpose, channel, &query, &grants).await?;
        Ok(Released { stream, grants: grants.into_iter().map(|(g, _)| g).collect(), access, started })
    }

    /// Checks a SQL boolean expression as the guard checks a query: one expression, allowed
    /// functions only.
    fn check_expression(f: &str) -> Result<(), QueryError> {
        let parsed = Self::context().state().sql_to_statement(&format!("SELECT 1 WHERE {f}"), &datafusion::config::Dialect::PostgreSQL)?;
        guard::check(&parsed)
    }

    /// Checks the row filters of agreement terms against their datasets: each must be one SQL
    /// boolean expression over the dataset's columns, using allowed functions only.
    pub async fn check_terms(&self, terms: &[tverr_policy::DatasetTerms]) -> Result<(), QueryError> {
        use datafusion::logical_expr::ExprSchemable;
        for t in terms {
            let Some(f) = &t.row_filter else { continue };
            let r: DatasetRef = t.dataset.parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
            let bad = |why: String| QueryError::Invalid(format!("row filter for {r}: {why}"));
            Self::check_expression(f).map_err(|e| bad(e.to_string()))?;
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
