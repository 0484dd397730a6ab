//! Queries over the lake through the one door: a DataFusion session per request whose catalogue
//! holds only the caller's entitled tables, each a [`secure::SecureTable`]; a guard that refuses
//! everything but single read-only queries with allowed functions; and streaming exports.

mod changes;
mod connectors;
mod error;
mod execution;
mod export;
mod feature;
pub mod geo;
mod guard;
mod lookup;
mod memory;
mod page;
mod property;
mod protection;
mod released;
mod secure;
mod subscriptions;
mod text;
mod wards;
mod writes;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::common::TableReference;
pub use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use tverr_audit::{Audit, AuditError};
pub use tverr_audit::{Channel, RecordKind};
use tverr_core::DatasetRef;
use tverr_policy::{Denial, Grant, Policy, Principal};
use tverr_store::Store;
pub use tverr_store::{BACKUP_FORMAT, DeploymentFile, Manifest, UPLOAD_KEEP, Upload, UploadStep, read_manifest};
pub use tverr_store::{
    Catalog, CatalogQuery, ColumnMeta, CreateSettings, DatasetMeta, Department, Erasure, GENERATION_TABLES, IngestOutcome, IngestRequest,
    IngestSettings, Inspection, NewDataset, Organization, ProtectionLink, ProtectionRegister, StoreConfig, StoreError, Timestamp,
    VersionMeta, VersionMode, WriteMode, unavailable,
};

/// The types of the file readers that write requests and their problems are made of. The readers
/// themselves stay inside the store: a file becomes table data only through [`Engine::ingest`].
pub mod ingest {
    pub use tverr_store::tverr_ingest::{ColumnType, IngestError, IngestOptions, Problem, Progress, SourceReport};
}

pub use changes::{CHANGE_COLUMN, MAX_CHANGE_ROWS, VERSION_COLUMN};
pub use connectors::{
    AddressPolicy, ConnectorConfig, ConnectorInfo, ConnectorRun, DEFAULT_RUNS_LISTED, NewConnector, Schedule, backoff, check_schedule,
};
pub use error::QueryError;
use error::{AuditFailure, RowCap, TimedOut};
pub use execution::MAX_ESTIMATED_ROWS;
pub use export::{
    CsvOptions, ExportFormat, ExportOptions, GeometryColumn, ResultColumn, csv_rows, csv_rows_as, json_objects, result_columns,
    write_export, write_features,
};
pub use feature::{FEATURE_ID_COLUMN, feature_id};
pub use subscriptions::{CreatedSubscription, DEFAULT_DELIVERIES_LISTED, NewSubscription, SubscriptionConfig, SubscriptionInfo};
pub use tverr_connect::{FetchConfig, SourceOptions};
pub use tverr_store::Delivery;

/// The number a [`Engine::count_rows`] stream holds.
pub async fn count_of(released: Released) -> Result<u64, QueryError> {
    use futures::StreamExt;
    let mut stream = released.stream;
    let mut n = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(QueryError::from)?;
        if batch.num_rows() > 0 {
            let counts = batch.column(0).as_any().downcast_ref::<arrow::array::Int64Array>();
            n = counts.map_or(0, |c| c.value(0).max(0) as u64);
        }
    }
    Ok(n)
}
pub use guard::{ALLOWED_FUNCTIONS, MAX_NESTING, MAX_SQL_BYTES};
pub use lookup::{Found, Lookup, LookupColumn, LookupOrg, Related, pad_until};
pub use memory::{DEFAULT_QUERY_MEMORY, DEFAULT_SERVER_MEMORY};
pub use page::CountedPage;
pub use property::{
    MAX_ADDRESS_MATCHES, MAX_NEIGHBOUR_DISTANCE, MAX_NEIGHBOURS, Neighbours, PROTECTED_NOTICE, Parcel, PropertySources, PropertyView,
    ZoningPlan,
};
pub use released::Released;
use released::{Tracker, audited};
pub use text::{MAX_BATCH_TEXT_BYTES, MAX_TEXT_BYTES};
pub use tverr_store::DEFAULT_SORT_MEMORY;
pub use wards::{GUARDIAN_AGE_LIMIT, Ward, released_rows};
pub use writes::datasets_field;

/// A dataset as the session's catalogue names it, whatever characters its slugs hold (a
/// name is never parsed as SQL on the way).
fn table_reference(r: &DatasetRef) -> TableReference {
    TableReference::partial(r.org.as_str(), r.dataset.as_str())
}

/// A dataset's name as written in SQL (`org.dataset`), each part quoted where SQL needs it: a
/// slug with a hyphen (`hamar."kull-2026"`) or one that is a keyword (`hamar."select"`).
pub fn sql_name(r: &DatasetRef) -> String {
    fn part(p: &str) -> String {
        let plain = p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !p.starts_with(|c: char| c.is_ascii_digit())
            && datafusion::sql::sqlparser::keywords::ALL_KEYWORDS.binary_search(&p.to_ascii_uppercase().as_str()).is_err();
        if plain { p.to_string() } else { format!("\"{p}\"") }
    }
    format!("{}.{}", part(r.org.as_str()), part(r.dataset.as_str()))
}

/// The query engine over one store, behind the policy layer.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Store,
    policy: Policy,
    audit: Audit,
    named_limit: usize,
    lookups: Arc<lookup::LookupCache>,
    /// The stored rows of the last boxes read through the cell index ([`Engine::rows_in_box`]).
    boxes: Arc<std::sync::Mutex<KeptBoxes>>,
    memory: memory::MemoryLimits,
    /// Who is protected, per the registers of address protection.
    protected: Arc<protection::Protected>,
    /// The key and settings connectors run with, when this engine runs them.
    connectors: Option<Arc<connectors::Connectors>>,
    /// The key and settings subscriptions are delivered with, when this engine delivers them.
    subscriptions: Option<Arc<subscriptions::Subscriptions>>,
    /// Told when this process commits a version, so events go out at once.
    deliveries_due: Arc<tokio::sync::Notify>,
}

/// A REST read of one dataset ([`Engine::rows`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowsQuery {
    /// Columns to return, in this order; empty for every column the caller may see.
    pub select: Vec<String>,
    /// A SQL boolean expression, checked like SQL.
    pub filter: Option<String>,
    /// Sort columns, each with `true` for descending.
    pub order_by: Vec<(String, bool)>,
    /// Rows to skip.
    pub offset: usize,
    /// Rows to return at most.
    pub limit: Option<usize>,
    /// The version to read; the latest when `None`.
    pub version: Option<i64>,
    /// Read in one partition, so the same query over the same version returns rows in the
    /// same order every time (paging).
    pub stable_order: bool,
    /// Only rows whose (first) geometry column meets a box or lies near a point.
    pub spatial: Option<geo::Spatial>,
    /// Geometry columns in this CRS rather than the stored one.
    pub crs: Option<geo::Crs>,
    /// Add the column [`FEATURE_ID_COLUMN`]: each row's feature id ([`feature_id`]).
    pub feature_ids: bool,
    /// Only the rows with this feature id.
    pub feature_id: Option<String>,
}

impl RowsQuery {
    /// The request as one line, hashed into the intent record.
    /// The window's bounds, checked before anything is read.
    fn check_window(&self) -> Result<(), QueryError> {
        if self.offset > MAX_ROW_WINDOW || self.limit.is_some_and(|l| l > MAX_ROW_WINDOW) {
            return Err(QueryError::Invalid(format!("offset and limit: at most {MAX_ROW_WINDOW}")));
        }
        Ok(())
    }

    fn describe(&self, r: &DatasetRef) -> String {
        format!(
            "rows {r} select {:?} where {:?} order {:?} offset {} limit {:?} version {:?} spatial {:?} crs {:?} feature {:?}",
            self.select, self.filter, self.order_by, self.offset, self.limit, self.version, self.spatial, self.crs, self.feature_id
        )
    }
}

/// A box read through the cell index reads at most this many cells (of
/// [`tverr_store::CELL_SIZE`] metres: 3.2 km square); a larger box scans the table.
pub const MAX_BOX_CELLS: usize = 4096;

/// The boxes [`Engine::rows_in_box`] keeps: each one's key and stored rows, oldest first.
type KeptBoxes = std::collections::VecDeque<(String, Arc<BoxRows>)>;

/// The stored rows of the cells a box meets, whole and before any grant (see
/// [`Engine::rows_in_box`]).
#[derive(Debug)]
pub(crate) struct BoxRows {
    schema: arrow::datatypes::SchemaRef,
    batches: Vec<arrow::record_batch::RecordBatch>,
}

/// How many boxes' stored rows [`Engine::rows_in_box`] keeps, and the most rows of one it keeps.
const BOXES_KEPT: usize = 16;
const BOX_ROWS_KEPT: usize = 20_000;

/// By default, at most this many people of one dataset are named in one access; a read past it
/// is recorded as a bulk read of the dataset, with its row count
/// ([`Engine::with_named_limit`]).
pub const DEFAULT_NAMED_LIMIT: usize = 10_000;

/// The largest offset or limit a REST read takes (a trillion rows): far past any table, and
/// far from the integer overflow the planner would otherwise meet.
pub const MAX_ROW_WINDOW: usize = 1_000_000_000_000;

/// The index key that marks a bulk read of a dataset (`bulk:org/dataset`).
pub const BULK_PREFIX: &str = "bulk:";

/// Puts a backup into the (empty) store `config` names ([`tverr_store::Store::restore`]), before
/// an engine is opened over it: the access log's keys come with the backup. The caller then
/// opens the engine, records the restore and verifies the log.
pub async fn restore(config: &StoreConfig, from: &std::path::Path, files: &[DeploymentFile]) -> Result<Manifest, QueryError> {
    let store = Store::open(config).await?;
    Ok(store.restore(from, files).await?)
}

impl Engine {
    /// Opens (creating if needed) the store and its access log, and the engine over them.
    pub async fn open(config: &StoreConfig, audit: tverr_audit::AuditConfig) -> Result<Self, QueryError> {
        let store = Store::open(config).await?;
        let audit = Audit::open(&store.raw_catalog(), audit).map_err(|e| QueryError::AuditUnavailable(e.to_string()))?;
        audit.check_keys().await.map_err(|e| QueryError::AuditUnavailable(e.to_string()))?;
        Ok(Self::new(store, audit))
    }

    /// An engine over a store, logging to `audit`. Only a holder of the [`Store`] (the
    /// benchmark harness, this crate's tests) calls this; everyone else opens with
    /// [`Engine::open`].
    pub fn new(store: Store, audit: Audit) -> Self {
        let policy = Policy::new(&store);
        Self {
            store,
            policy,
            audit,
            named_limit: DEFAULT_NAMED_LIMIT,
            lookups: Arc::new(lookup::LookupCache::new()),
            boxes: Arc::default(),
            memory: memory::MemoryLimits::default(),
            protected: Arc::default(),
            connectors: None,
            subscriptions: None,
            deliveries_due: Arc::default(),
        }
    }

    /// Runs every query under `per_query` bytes of memory, and all queries together under
    /// `server` bytes (DataFusion's memory pools); a query past either fails, and nothing else.
    pub fn with_memory_limits(mut self, per_query: usize, server: usize) -> Self {
        self.memory = memory::MemoryLimits::new(per_query, server);
        self
    }

    /// Lets an ingest's sort by place hold `bytes` in memory before it spills
    /// ([`Store::with_sort_memory`]).
    pub fn with_sort_memory(mut self, bytes: usize) -> Self {
        self.store = self.store.with_sort_memory(bytes);
        self
    }

    /// Names at most `limit` people of one dataset in one access; a read past it is recorded as
    /// a bulk read of the dataset (every citizen with rows in it sees it as one that may have
    /// included them).
    pub fn with_named_limit(mut self, limit: usize) -> Self {
        self.named_limit = limit;
        self
    }

    /// The access log.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Who, as the log records it. Citizens are recorded by the keyed digest of their number
    /// ([`Audit::subject_id`]), never the number.
    fn principal_record(&self, who: &Principal) -> serde_json::Value {
        match who {
            Principal::Anonymous => serde_json::json!({"kind": "anonymous"}),
            Principal::Operator(_) => serde_json::json!({"kind": "operator"}),
            Principal::User(u) => serde_json::json!({
                "kind": "user", "username": u.username, "org": u.org, "department": u.department, "role": u.role
            }),
            Principal::Citizen(c) => serde_json::json!({"kind": "citizen", "subject": self.audit.subject_id(c.pid())}),
            Principal::System(s) => serde_json::json!({"kind": "system", "org": s.org(), "scopes": s.scopes()}),
        }
    }

    /// The intent record of a read of non-open data; `None` when every dataset is open (or
    /// auditing is off in the benchmark-only build).
    fn intent(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        channel: Channel,
        query: &str,
        grants: &[(Grant, Option<i64>)],
    ) -> Option<serde_json::Value> {
        if !self.audit.enabled() || grants.iter().all(|(g, _)| g.classification() == tverr_core::Classification::Open) {
            return None;
        }
        use sha2::Digest;
        let datasets: Vec<serde_json::Value> = grants
            .iter()
            .map(|(g, version)| {
                serde_json::json!({
                    "dataset": g.dataset().to_string(),
                    "version": version,
                    "basis": g.basis(),
                    "legal_basis": g.legal_basis(),
                    "columns": g.columns().iter().map(|c| serde_json::json!({"name": c.name, "mask": c.mask})).collect::<Vec<_>>(),
                    "special_category": g.columns().iter().any(|c| c.category == tverr_core::ColumnCategory::SpecialCategory),
                    "row_filter": g.row_filter().is_some(),
                    "protection": g.protection(),
                    "min_group_size": g.min_group_size(),
                })
            })
            .collect();
        Some(serde_json::json!({
            "channel": channel,
            "principal": self.principal_record(who),
            "purpose": purpose,
            "datasets": datasets,
            "query_sha256": hex::encode(sha2::Sha256::digest(query.as_bytes())),
        }))
    }

    /// The result stream as it leaves: audited when there is an intent record.
    fn release(
        &self,
        stream: SendableRecordBatchStream,
        intent: Option<serde_json::Value>,
        sink: secure::SubjectSink,
        started: std::time::Instant,
    ) -> SendableRecordBatchStream {
        match intent {
            None => stream,
            Some(intent) => audited(stream, self.tracker(intent, sink, started)),
        }
    }

    /// The access-log side of one release of non-open data: its intent, and the people its taps
    /// see in `sink`.
    fn tracker(&self, intent: serde_json::Value, sink: secure::SubjectSink, started: std::time::Instant) -> Tracker {
        Tracker {
            audit: self.audit.clone(),
            intent: Some(intent),
            access: None,
            sink,
            bulk_recorded: Vec::new(),
            rows: 0,
            started,
            finished: false,
            request_id: tverr_audit::request_id(),
        }
    }

    /// Records an event other than a read (authentication, agreement change, audit read) with
    /// who did it and on which channel.
    pub async fn log_event(
        &self,
        kind: RecordKind,
        who: &Principal,
        channel: Channel,
        details: serde_json::Value,
    ) -> Result<(), QueryError> {
        let mut record = serde_json::json!({"channel": channel, "principal": self.principal_record(who)});
        if let (Some(r), serde_json::Value::Object(d)) = (record.as_object_mut(), details) {
            r.extend(d);
        }
        self.audit.append(kind, &record).await.map(|_| ()).map_err(|e| QueryError::AuditUnavailable(e.to_string()))
    }

    /// Records an event that gates nothing (a token use): queued for the next group commit.
    pub fn note_event(&self, kind: RecordKind, who: &Principal, channel: Channel, details: serde_json::Value) {
        let mut record = serde_json::json!({"channel": channel, "principal": self.principal_record(who)});
        if let (Some(r), serde_json::Value::Object(d)) = (record.as_object_mut(), details) {
            r.extend(d);
        }
        self.audit.record(kind, &record);
    }

    /// A session for one query, under the query's and the server's memory limits.
    fn context(&self) -> Result<SessionContext, QueryError> {
        self.session(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// [`Engine::context`] with this many partitions.
    fn session(&self, partitions: usize) -> Result<SessionContext, QueryError> {
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        use datafusion::execution::session_state::SessionStateBuilder;
        let state = Self::context_with(partitions).state();
        let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env()).with_memory_pool(self.memory.query_pool()).build_arc()?;
        Ok(SessionContext::new_with_state(SessionStateBuilder::new_from_existing(state).with_runtime_env(runtime).build()))
    }

    /// A session with this many partitions; one gives a result order that is the same on every
    /// run over the same version (what paging needs).
    ///
    /// Building a session registers every function, which costs more than a small query; so a
    /// template per partition count is built once and copied, with a catalogue of its own for
    /// each session: no session ever sees another's tables.
    fn context_with(partitions: usize) -> SessionContext {
        use datafusion::catalog::{CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList};
        use datafusion::execution::session_state::SessionStateBuilder;
        static TEMPLATES: std::sync::LazyLock<std::sync::Mutex<BTreeMap<usize, datafusion::execution::SessionState>>> =
            std::sync::LazyLock::new(Default::default);
        let template = TEMPLATES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(partitions)
            .or_insert_with(|| {
                let mut config = SessionConfig::new().with_information_schema(false).with_target_partitions(partitions);
                // The dialect every text is parsed with (see `guard`); the generic one would run
                // the contents of MySQL's `/*! … */` comments.
                config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
                let ctx = SessionContext::new_with_config(config);
                geo::register(&ctx);
                text::register(&ctx);
                SessionStateBuilder::new_from_existing(ctx.state()).with_physical_optimizer_rule(Arc::new(execution::Yielding)).build()
            })
            .clone();
        let catalog = MemoryCatalogProvider::new();
        catalog.register_schema("public", Arc::new(MemorySchemaProvider::new())).expect("a new catalogue takes a schema");
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog("datafusion".to_string(), Arc::new(catalog));
        let state = SessionStateBuilder::new_from_existing(template).with_catalog_list(Arc::new(catalogs)).build();
        SessionContext::new_with_state(state)
    }

    /// The grant for one dataset, or the error the caller may see.
    async fn grant(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        r: &DatasetRef,
        shown: &str,
        channel: Channel,
    ) -> Result<Grant, QueryError> {
        let decision = self.policy.entitle(who, purpose, r).await?;
        if let Err(denial) = &decision
            && *who != Principal::Anonymous
        {
            let record = serde_json::json!({
                "channel": channel, "principal": self.principal_record(who), "purpose": purpose,
                "dataset": shown, "reason": format!("{denial:?}"),
            });
            if let Err(e) = self.audit.append(RecordKind::Refusal, &record).await {
                tracing::error!(error = %e, "cannot record a refusal");
            }
        }
        match decision {
            Ok(g) => Ok(g),
            Err(Denial::NotFound) => Err(QueryError::NotFound(shown.to_string())),
            Err(Denial::PurposeRequired) => Err(QueryError::PurposeRequired(shown.to_string())),
            Err(Denial::PurposeNotAllowed) => {
                Err(QueryError::PurposeNotAllowed { dataset: shown.to_string(), purpose: purpose.unwrap_or_default().to_string() })
            }
        }
    }

    /// Registers a dataset, as `grant` lets the caller see it, as `org.dataset`.
    async fn register(
        &self,
        ctx: &SessionContext,
        grant: &Grant,
        version: Option<i64>,
        sink: &secure::SubjectSink,
    ) -> Result<Option<i64>, QueryError> {
        let r = &grant.dataset();
        if matches!(grant.protection(), tverr_policy::Protection::ByPerson { .. }) {
            self.protected.refresh(&self.store).await?;
        }
        let table = self.store.lake.open_for_reading(r, version).await?;
        let opened = table.version().map(|v| v as i64);
        table.update_datafusion_session(&ctx.state()).map_err(StoreError::from)?;
        // The scan reads data files through the session's store for the table's URL.
        let (url, store) = self.store.lake.reading_store(r)?;
        ctx.register_object_store(&url, store);
        let mut inner = table.table_provider().await.map_err(QueryError::from)?;
        if version.is_some() {
            inner = self.widened(r, inner).await?;
        }
        self.register_provider(ctx, grant, inner, sink)?;
        Ok(opened)
    }

    /// An earlier version's rows with the dataset's columns of today: a column a later version
    /// added (`--evolve`) is null in the rows written before it, as it is in the latest version.
    /// The grant names today's columns, so without them an earlier version could not be read.
    async fn widened(&self, r: &DatasetRef, inner: Arc<dyn TableProvider>) -> Result<Arc<dyn TableProvider>, QueryError> {
        use datafusion::logical_expr::{Expr, LogicalPlanBuilder, lit};
        let Some(latest) = self.store.catalog.versions(r).await?.last().map(|v| v.version) else { return Ok(inner) };
        let wanted = self.store.schema_at(r, latest).await?;
        let have = inner.schema();
        if wanted.fields().iter().all(|f| have.field_with_name(f.name()).is_ok()) {
            return Ok(inner);
        }
        let mut columns = Vec::with_capacity(wanted.fields().len());
        for f in wanted.fields() {
            columns.push(if have.field_with_name(f.name()).is_ok() {
                Expr::Column(datafusion::common::Column::new_unqualified(f.name()))
            } else {
                lit(datafusion::common::ScalarValue::try_from(f.data_type())?).alias(f.name())
            });
        }
        let plan = LogicalPlanBuilder::scan("earlier", datafusion::catalog::default_table_source::provider_as_source(inner), None)?
            .project(columns)?
            .build()?;
        Ok(Arc::new(datafusion::catalog::view::ViewTable::new(plan, None)))
    }

    /// `inner` (the dataset's rows, or some of them) behind the grant's secure scan, with the
    /// tap that names the people of the rows it releases.
    fn secure_table(
        &self,
        ctx: &SessionContext,
        grant: &Grant,
        inner: Arc<dyn TableProvider>,
        sink: &secure::SubjectSink,
    ) -> Result<secure::SecureTable, QueryError> {
        let r = &grant.dataset();
        // Statistics-only grants release no one's rows, so they name no one.
        let tapped = self.audit.enabled() && grant.classification() != tverr_core::Classification::Open && grant.min_group_size().is_none();
        if tapped && !grant.person_keys().is_empty() {
            sink.watch(&r.to_string());
        }
        let tap = (tapped && !grant.person_keys().is_empty()).then(|| secure::SubjectTap {
            dataset: r.to_string(),
            columns: grant.person_keys().to_vec(),
            key: self.audit.subject_key(),
            sink: sink.clone(),
        });
        let level = match &grant.protection() {
            tverr_policy::Protection::ByPerson { keys, properties, links, .. } => {
                let links = links.iter().map(|c| protection::link_key(&grant.dataset().to_string(), c)).collect();
                Some(self.protected.level_udf(keys.len(), properties.len(), links))
            }
            _ => None,
        };
        Ok(secure::SecureTable::new(ctx, inner, grant, tap, level.as_ref())?)
    }

    /// Registers `inner` behind the grant's secure scan as `org.dataset`.
    fn register_provider(
        &self,
        ctx: &SessionContext,
        grant: &Grant,
        inner: Arc<dyn TableProvider>,
        sink: &secure::SubjectSink,
    ) -> Result<(), QueryError> {
        let r = &grant.dataset();
        let secure: Arc<dyn TableProvider> = Arc::new(self.secure_table(ctx, grant, inner, sink)?);
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
    pub async fn sql(&self, who: &Principal, purpose: Option<&str>, sql: &str, channel: Channel) -> Result<Released, QueryError> {
        let started = std::time::Instant::now();
        let ctx = self.context()?;
        let state = ctx.state();
        let statement = guard::statement(sql)?;
        let sink = secure::SubjectSink::new(self.named_limit);
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
            let version = self.register(&ctx, &grant, None, &sink).await?;
            grants.insert(r, (grant, version));
        }
        let mut statement = statement;
        if let Some(k) = grants.values().filter_map(|(g, _)| g.min_group_size()).min() {
            if grants.len() != 1 {
                return Err(QueryError::NotAllowed("a dataset shared as statistics only cannot be combined with other tables".into()));
            }
            if let Err(refused) = guard::statistics(&mut statement, k) {
                // A refusal of the statistics rule is a refusal like the policy layer's: an
                // auditor sees the probing for single rows.
                let datasets: Vec<String> = grants.keys().map(ToString::to_string).collect();
                let record = serde_json::json!({
                    "channel": channel, "principal": self.principal_record(who), "purpose": purpose,
                    "dataset": datasets.first(), "reason": "statistics-only",
                });
                if let Err(e) = self.audit.append(RecordKind::Refusal, &record).await {
                    tracing::error!(error = %e, "cannot record a refusal");
                }
                return Err(refused);
            }
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
        let stream = execution::execute(df).await?;
        let grants: Vec<(Grant, Option<i64>)> = grants.into_values().collect();
        let intent = self.intent(who, purpose, channel, sql, &grants);
        let stream = self.release(stream, intent, sink, started);
        let versions = grants.iter().map(|(_, v)| *v).collect();
        Ok(Released { stream, grants: grants.into_iter().map(|(g, _)| g).collect(), versions })
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
        channel: Channel,
    ) -> Result<Released, QueryError> {
        let q = RowsQuery { filter: filter.map(str::to_string), version, ..RowsQuery::default() };
        self.rows(who, purpose, r, &q, channel).await
    }

    /// A dataset's rows as a REST client asks for them: chosen columns, a checked filter, an
    /// order, a window and a version. Column names are checked against what the caller may see,
    /// so a column outside the grant is as unknown as one that does not exist.
    pub async fn rows(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        r: &DatasetRef,
        q: &RowsQuery,
        channel: Channel,
    ) -> Result<Released, QueryError> {
        let started = std::time::Instant::now();
        let (df, grant, opened, sink) = self.rows_frame(who, purpose, r, q, channel).await?;
        let stream = execution::execute(df).await?;
        let grants = vec![(grant, opened)];
        let intent = self.intent(who, purpose, channel, &q.describe(r), &grants);
        let stream = self.release(stream, intent, sink, started);
        Ok(Released { stream, grants: grants.iter().map(|(g, _)| g.clone()).collect(), versions: vec![opened] })
    }

    /// How many rows [`Engine::rows`] would give for `q` without its window, as a stream of one
    /// batch with one `Int64` column (read it with [`count_of`]): the rows counted pass the same
    /// secure scan, and the count is in the access log (dataset, version, query, purpose) before
    /// it is released, naming no one, as it releases no one. At `q`'s version or the latest,
    /// which [`Released::versions`] names.
    pub async fn count_rows(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        r: &DatasetRef,
        q: &RowsQuery,
        channel: Channel,
    ) -> Result<Released, QueryError> {
        use datafusion::functions_aggregate::expr_fn::count;
        let started = std::time::Instant::now();
        let q = RowsQuery {
            filter: q.filter.clone(),
            version: q.version,
            spatial: q.spatial,
            feature_id: q.feature_id.clone(),
            ..RowsQuery::default()
        };
        let (df, grant, opened, _tapped) = self.rows_frame(who, purpose, r, &q, channel).await?;
        let df = df.aggregate(vec![], vec![count(datafusion::prelude::lit(1)).alias("n")])?;
        let stream = execution::execute(df).await?;
        let grants = vec![(grant, opened)];
        let intent = self.intent(who, purpose, channel, &format!("count {}", q.describe(r)), &grants);
        // A count releases no one: its record names the dataset and the query, not the people
        // counted (as a statistics-only read does). The rows a page shows are named by the page.
        let stream = self.release(stream, intent, secure::SubjectSink::new(self.named_limit), started);
        Ok(Released { stream, grants: grants.iter().map(|(g, _)| g.clone()).collect(), versions: vec![opened] })
    }

    /// The plan of [`Engine::rows`], with the grant, the version opened and the tap's sink.
    async fn rows_frame(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        r: &DatasetRef,
        q: &RowsQuery,
        channel: Channel,
    ) -> Result<(DataFrame, Grant, Option<i64>, secure::SubjectSink), QueryError> {
        use datafusion::prelude::ident;
        q.check_window()?;
        let grant = self.grant(who, purpose, r, &r.to_string(), channel).await?;
        if grant.min_group_size().is_some() {
            return Err(QueryError::NotAllowed(format!("{r} is shared as statistics only: use SQL with GROUP BY")));
        }
        let filter = q.filter.as_deref().map(guard::filter).transpose()?;
        let ctx = if q.stable_order { self.session(1)? } else { self.context()? };
        let sink = secure::SubjectSink::new(self.named_limit);
        let opened = match self.rows_in_box(&grant, q).await? {
            Some((version, rows)) => {
                if matches!(grant.protection(), tverr_policy::Protection::ByPerson { .. }) {
                    self.protected.refresh(&self.store).await?;
                }
                let rows = Arc::new(datafusion::datasource::MemTable::try_new(rows.schema.clone(), vec![rows.batches.clone()])?);
                self.register_provider(&ctx, &grant, rows, &sink)?;
                Some(version)
            }
            None => self.register(&ctx, &grant, q.version, &sink).await?,
        };
        let mut df: DataFrame = ctx.table(table_reference(r)).await?;
        let visible: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
        let known = |name: &str| -> Result<(), QueryError> {
            if visible.iter().any(|v| v == name) {
                Ok(())
            } else {
                Err(QueryError::Invalid(format!("unknown column {name:?}; the columns you may read are: {}", visible.join(", "))))
            }
        };
        if let Some(f) = &filter {
            let expr = f.plan(&ctx.state(), df.schema())?;
            df = df.filter(expr)?;
        }
        let geometry = geo::granted_geometry(&grant);
        if let Some(spatial) = &q.spatial {
            let Some((column, crs)) = geometry.first() else {
                return Err(QueryError::Invalid(format!("bbox and near need a geometry column, and {r} has none you may read")));
            };
            // A box is tested in the column's CRS. A distance is measured on the ellipsoid: a
            // UTM column is taken to EPSG:4326 first, as UTM's scale is off by up to 1.6 % at
            // Norway's edges.
            let (compared, target) = match spatial {
                geo::Spatial::Bbox { .. } => (ident(column.as_str()), *crs),
                geo::Spatial::Near { .. } if crs.is_geographic() => (ident(column.as_str()), *crs),
                geo::Spatial::Near { .. } => (
                    geo::Transform::output_udf().call(vec![ident(column.as_str()), datafusion::prelude::lit(geo::Crs::Wgs84.srid())]),
                    geo::Crs::Wgs84,
                ),
            };
            let (shape, distance) = spatial.in_crs(target).map_err(QueryError::Invalid)?;
            let wkb = geo::to_wkb(&shape).map_err(QueryError::Invalid)?;
            let test = geo::DWithin::udf().call(vec![
                compared,
                datafusion::prelude::lit(datafusion::common::ScalarValue::Binary(Some(wkb))),
                datafusion::prelude::lit(distance),
            ]);
            df = df.filter(test)?;
        }
        let every_column: Vec<datafusion::prelude::Expr> = visible.iter().map(ident).collect();
        if let Some(id) = &q.feature_id {
            df = df.filter(feature::FeatureId::udf().call(every_column.clone()).eq(datafusion::prelude::lit(id.as_str())))?;
        }
        if !q.order_by.is_empty() {
            let mut sort = Vec::new();
            for (name, descending) in &q.order_by {
                known(name)?;
                sort.push(ident(name).sort(!descending, *descending));
            }
            if q.stable_order {
                // Ties are broken by the other columns, so every page sees one order.
                for f in df.schema().fields() {
                    let sortable = f.data_type().is_primitive()
                        || matches!(
                            f.data_type(),
                            arrow::datatypes::DataType::Utf8
                                | arrow::datatypes::DataType::Utf8View
                                | arrow::datatypes::DataType::LargeUtf8
                                | arrow::datatypes::DataType::Boolean
                        );
                    if sortable && !q.order_by.iter().any(|(n, _)| n == f.name()) {
                        sort.push(ident(f.name()).sort(true, false));
                    }
                }
            }
            df = df.sort(sort)?;
        }
        if q.offset > 0 || q.limit.is_some() {
            df = df.limit(q.offset, q.limit)?;
        }
        if q.feature_ids {
            df = df.with_column(FEATURE_ID_COLUMN, feature::FeatureId::udf().call(every_column))?;
        }
        if !q.select.is_empty() {
            for name in &q.select {
                known(name)?;
            }
            let mut columns: Vec<_> = q.select.iter().map(ident).collect();
            if q.feature_ids {
                columns.push(ident(FEATURE_ID_COLUMN));
            }
            df = df.select(columns)?;
        }
        if let Some(to) = q.crs {
            let names: Vec<String> = df.schema().fields().iter().map(|f| f.name().clone()).collect();
            let columns = names.iter().map(|f| {
                if geometry.iter().any(|(g, _)| g == f) {
                    geo::Transform::output_udf().call(vec![ident(f), datafusion::prelude::lit(to.srid())]).alias(f)
                } else {
                    ident(f)
                }
            });
            df = df.select(columns.collect::<Vec<_>>())?;
        }
        Ok((df, grant, opened, sink))
    }

    /// For a box read (`RowsQuery::spatial` a `Bbox`) of a dataset whose geometries are indexed
    /// by cell, the rows of the cells the box meets, whole and as stored, to go behind the
    /// grant's secure scan in place of the table (every test the scan makes, the box's exact one
    /// included, still runs on them), with the version they are of. `None` when the table must be
    /// scanned: a CRS in degrees, a box over more than [`MAX_BOX_CELLS`] cells, or a version one
    /// of whose data files the index no longer holds (a later version replaced it). The rows come
    /// in the order of their files' paths and their places in them, the same for every page of
    /// one version.
    pub(crate) async fn rows_in_box(&self, grant: &Grant, q: &RowsQuery) -> Result<Option<(i64, Arc<BoxRows>)>, QueryError> {
        use futures::TryStreamExt;
        let Some(spatial @ geo::Spatial::Bbox { .. }) = &q.spatial else { return Ok(None) };
        let r = grant.dataset();
        let Some((column, crs)) = grant.columns().iter().find_map(|c| Some((c.name.clone(), geo::Crs::parse(c.crs.as_deref()?)?))) else {
            return Ok(None);
        };
        if crs.is_geographic() {
            return Ok(None);
        }
        let (shape, _) = spatial.in_crs(crs).map_err(QueryError::Invalid)?;
        let Some(rect) = ::geo::BoundingRect::bounding_rect(&shape) else { return Ok(None) };
        let mut keys = tverr_store::cells_within([rect.min().x, rect.min().y, rect.max().x, rect.max().y], MAX_BOX_CELLS);
        if keys.is_empty() || keys.iter().any(|k| k == tverr_store::BIG_CELL) {
            return Ok(None);
        }
        keys.push(tverr_store::BIG_CELL.to_string());
        keys.push(tverr_store::CELLS_MARKER.to_string());
        let table = self.store.lake.open_for_reading(r, q.version).await?;
        let Some(version) = table.version().map(|v| v as i64) else { return Ok(None) };
        let files: std::collections::BTreeSet<String> = table
            .snapshot()
            .map_err(StoreError::from)?
            .snapshot()
            .file_views(table.log_store().as_ref(), None)
            .map_ok(|v| v.path().to_string())
            .try_collect()
            .await
            .map_err(StoreError::from)?;
        // The same box of the same version is read again at once for a page and its count: its
        // stored rows (before any grant: every reader's scan still runs on them) are kept.
        // The cells run from the box's first corner to its last (then the big cell and the marker).
        let remembered = format!("{r}@{version}:{column}:{}..{}", keys[0], keys[keys.len() - 3]);
        // Only the latest version's rows are kept and given: an erasure makes a new version, so
        // rows it removed are never given from here.
        let latest = self.store.catalog.versions(r).await?.last().map(|v| v.version) == Some(version);
        if latest
            && let Some(found) = self.boxes.lock().ok().and_then(|b| b.iter().find(|(k, _)| *k == remembered).map(|(_, rows)| rows.clone()))
        {
            return Ok(Some((version, found)));
        }
        let schema = self.store.schema_at(r, version).await?;
        let Ok(position) = schema.index_of(&column) else { return Ok(None) };
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let located = self.store.locate_many(&keys).await?;
        let ours = |key: &str| {
            located.get(key).into_iter().flatten().filter(|p| p.dataset == *r && p.position == position as i64 && files.contains(&p.path))
        };
        // Every data file of the version holds the marker once: all of them must be indexed.
        let indexed: std::collections::BTreeSet<&str> = ours(tverr_store::CELLS_MARKER).map(|p| p.path.as_str()).collect();
        if indexed.len() != files.len() {
            return Ok(None);
        }
        let rows: std::collections::BTreeSet<(String, i64)> =
            keys.iter().filter(|k| **k != tverr_store::CELLS_MARKER).flat_map(|k| ours(k)).map(|p| (p.path.clone(), p.row)).collect();
        let rows: Vec<(String, i64)> = rows.into_iter().collect();
        let (schema, batches) = if rows.is_empty() { (schema, Vec::new()) } else { self.store.read_rows(r, version, &rows, None).await? };
        let provider = Arc::new(BoxRows { schema, batches });
        if latest
            && rows.len() <= BOX_ROWS_KEPT
            && let Ok(mut kept) = self.boxes.lock()
        {
            if kept.len() >= BOXES_KEPT {
                kept.pop_front();
            }
            kept.push_back((remembered, provider.clone()));
        }
        Ok(Some((version, provider)))
    }

    /// Everything about a citizen, from every dataset with a person key (GDPR art. 15): per
    /// dataset, the rows whose key is their number, with every column. Each dataset's read is
    /// audited like any other, naming the citizen as the data subject. Only a citizen the policy
    /// layer authenticated asks.
    pub async fn own_data(&self, who: &Principal, channel: Channel) -> Result<Vec<Released>, QueryError> {
        self.own_data_in(who, None, channel).await
    }

    /// One dataset's rows under a grant (at a version, through a checked filter), as an audited
    /// stream.
    #[allow(clippy::too_many_arguments)]
    async fn read_table(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        grant: Grant,
        version: Option<i64>,
        filter: Option<&str>,
        channel: Channel,
        query: &str,
        started: std::time::Instant,
    ) -> Result<Released, QueryError> {
        let filter = filter.map(guard::filter).transpose()?;
        let ctx = self.context()?;
        let sink = secure::SubjectSink::new(self.named_limit);
        let opened = self.register(&ctx, &grant, version, &sink).await?;
        let mut df: DataFrame = ctx.table(table_reference(grant.dataset())).await?;
        if let Some(f) = &filter {
            let expr = f.plan(&ctx.state(), df.schema())?;
            df = df.filter(expr)?;
        }
        let stream = execution::execute(df).await?;
        let grants = vec![(grant, opened)];
        let intent = self.intent(who, purpose, channel, query, &grants);
        let stream = self.release(stream, intent, sink, started);
        let versions = grants.iter().map(|(_, v)| *v).collect();
        Ok(Released { stream, grants: grants.into_iter().map(|(g, _)| g).collect(), versions })
    }

    /// Checks the row filters of agreement terms against their datasets: each must be one SQL
    /// boolean expression over the dataset's columns, using allowed functions only.
    pub async fn check_terms(&self, terms: &[tverr_policy::DatasetTerms]) -> Result<(), QueryError> {
        use datafusion::logical_expr::ExprSchemable;
        for t in terms {
            let Some(f) = &t.row_filter else { continue };
            let r: DatasetRef = t.dataset.parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
            let bad = |why: String| QueryError::Invalid(format!("row filter for {r}: {why}"));
            let checked = guard::filter(f).map_err(|e| bad(e.to_string()))?;
            let ctx = self.context()?;
            let table = self.store.lake.open(&r, None).await?;
            table.update_datafusion_session(&ctx.state()).map_err(StoreError::from)?;
            let df = ctx.read_table(table.table_provider().await.map_err(QueryError::from)?)?;
            let expr = checked.plan(&ctx.state(), df.schema()).map_err(|e| bad(e.strip_backtrace().to_string()))?;
            let data_type = expr.get_type(df.schema()).map_err(|e| bad(e.strip_backtrace().to_string()))?;
            if data_type != arrow::datatypes::DataType::Boolean {
                return Err(bad(format!("expected a true/false expression, found {data_type}")));
            }
        }
        Ok(())
    }

    /// The geometry columns a grant releases, with their CRS (EPSG:4326 when none is recorded).
    /// With `output`, every geometry column is given in that CRS instead (what
    /// [`RowsQuery::crs`] does).
    pub fn geometry_columns(grant: &Grant, output: Option<geo::Crs>) -> Vec<GeometryColumn> {
        grant
            .columns()
            .iter()
            .filter_map(|c| {
                let stored = c.crs.clone()?;
                Some(GeometryColumn { name: c.name.clone(), crs: output.map_or(stored, |o| o.to_string()) })
            })
            .collect()
    }

    /// The catalogue's metadata: organisations, departments, datasets, columns, versions, the
    /// registers of address protection. Never rows, and never raw SQL.
    pub fn catalog(&self) -> &Catalog {
        &self.store.catalog
    }

    /// The lake: where the tables are stored (for checks that storage answers, never rows).
    pub fn lake(&self) -> &tverr_store::Lake {
        &self.store.lake
    }

    /// Indexes the subject keys of every dataset version not yet indexed; returns the datasets
    /// indexed. Look-ups and erasure find a person's rows through this index.
    pub async fn ensure_indexed(&self) -> Result<Vec<String>, QueryError> {
        Ok(self.store.ensure_indexed().await?)
    }

    /// Finishes the writes a crash of some process interrupted ([`tverr_store::Store::recover_interrupted`]):
    /// the datasets it found one in.
    pub async fn recover_interrupted(&self) -> Result<Vec<DatasetRef>, QueryError> {
        Ok(self.store.recover_interrupted().await?)
    }

    /// Reads the head of a file a write would ingest — its format, columns and first `rows`
    /// rows — without writing anything: the preview of an upload, shown only to its uploader.
    pub async fn inspect(&self, request: IngestRequest, rows: usize) -> Result<Inspection, StoreError> {
        self.store.inspect(request, rows).await
    }

    /// The policy layer.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_copied_from_the_template_share_no_tables() {
        let a = Engine::context_with(1);
        let b = Engine::context_with(1);
        a.catalog("datafusion").unwrap().register_schema("hamar", Arc::new(MemorySchemaProvider::new())).unwrap();
        assert!(a.catalog("datafusion").unwrap().schema("hamar").is_some());
        assert!(b.catalog("datafusion").unwrap().schema("hamar").is_none());
        assert!(Engine::context_with(1).catalog("datafusion").unwrap().schema("hamar").is_none());
        // Every function, the geo ones included, is in every copy.
        let functions = |c: &SessionContext| c.state().scalar_functions().len();
        assert_eq!(functions(&a), functions(&b));
        assert!(functions(&b) > 100);
        assert_eq!(Engine::context_with(3).state().config().target_partitions(), 3);
    }
}
