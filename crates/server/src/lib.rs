//! The HTTP API. Only this crate knows HTTP and JSON; handlers are plain async functions over a
//! shared [`AppState`], and errors leave as RFC 9457 problems (`application/problem+json`).
//!
//! Every handler learns who calls from the [`auth::Caller`] extractor; every read of table data
//! goes through the query engine's secure scan; a dataset the caller may not read looks exactly
//! like one that does not exist (invariant 3).
//!
//! # The one door
//!
//! This crate cannot read table data except through [`tverr_access::Engine`], whose answers are
//! released data (decided, masked, filtered, logged). It has no dependency on the store or on
//! the crates that read storage (a test reads `cargo metadata` to keep it so), and no value it
//! can get holds the raw readers. What a handler may use:
//!
//! ```
//! async fn metadata(engine: &tverr_access::Engine) {
//!     let _ = engine.catalog().datasets().await;
//! }
//! ```
//!
//! What it cannot: the store behind the engine,
//!
//! ```compile_fail,E0599
//! fn rows(engine: &tverr_access::Engine) {
//!     let _ = engine.store();
//! }
//! ```
//!
//! raw SQL over the catalogue (the policy's and the log's tables included),
//!
//! ```compile_fail,E0624
//! fn sql(engine: &tverr_access::Engine) {
//!     let _ = engine.catalog().pool();
//! }
//! ```
//!
//! ```compile_fail,E0616
//! fn sql(engine: &tverr_access::Engine) {
//!     let _ = &engine.catalog().pool;
//! }
//! ```
//!
//! nor the store, a Delta table, Parquet files or DataFusion directly:
//!
//! ```compile_fail,E0433
//! let _ = tverr_store::Store::open;
//! ```
//!
//! ```compile_fail,E0433
//! let _ = deltalake::open_table;
//! ```
//!
//! ```compile_fail,E0433
//! let _ = parquet::arrow::ParquetRecordBatchStreamBuilder::<tokio::fs::File>::new;
//! ```
//!
//! ```compile_fail,E0433
//! let _ = datafusion::prelude::SessionContext::new;
//! ```

mod agreements;
mod audit;
mod auth;
mod changes;
mod connectors;
pub mod dcat;
mod download;
mod family;
mod limits;
mod login;
mod me;
mod ogc;
mod openapi;
mod ops;
mod problem;
mod properties;
mod rows;
mod sql;
mod subjects;
mod subscriptions;
#[cfg(test)]
mod tests;
mod upload;
// A page helper's `Err(Response)` is the page to send instead, built at most once per request.
#[allow(clippy::result_large_err)]
mod web;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tower_http::timeout::TimeoutLayer;
use tverr_access::Engine;
use tverr_access::{ColumnMeta, DatasetMeta, VersionMeta};
use tverr_core::DatasetRef;
use tverr_policy::{ColumnGrant, Denial, Mask};

pub use auth::{Auditor, Authenticated, Caller, CitizenCaller, PURPOSE_HEADER, SignedIn};
pub use limits::Limits;
pub use openapi::openapi;
pub use problem::{Problem, ProblemKind};
pub use tverr_policy::oidc::{OidcConfig, Verifier};

/// Shared services of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The query engine and policy layer over the store.
    pub engine: Engine,
    /// Verifier of OIDC tokens, when issuers are configured.
    pub oidc: Option<std::sync::Arc<Verifier>>,
    /// Body sizes, query time and queries at once.
    pub limits: Limits,
    /// Counts each principal's running queries.
    pub(crate) gate: limits::Gate,
    /// Counts failed log-ins.
    pub(crate) logins: limits::LoginThrottle,
    /// The capability that lets the web log-in act as any citizen by fødselsnummer (the demo
    /// only); without it there is no such log-in.
    pub(crate) citizen_demo: Option<std::sync::Arc<tverr_policy::CitizenDemoKey>>,
    /// The web pages' charts of open datasets.
    pub(crate) web_charts: web::Charts,
    /// The extents of OGC collections, per reader and version.
    pub(crate) ogc_extents: ogc::Extents,
    /// The site's public address (`https://data.kommune.no`), for the absolute links of OGC API
    /// Features and DCAT; the request's Host when unset.
    pub public_url: Option<String>,
    /// Whether the writes a crash interrupted are finished (`/ready` waits for it).
    pub(crate) recovered: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The bearer token `/metrics` asks for (`TVERR_METRICS_TOKEN`); none: open to all.
    pub(crate) metrics_token: Option<String>,
}

impl AppState {
    /// The services over an engine as configured (its log, its named-subject limit).
    pub fn from_engine(engine: Engine) -> Self {
        Self {
            engine,
            oidc: None,
            limits: Limits::default(),
            gate: limits::Gate::default(),
            logins: limits::LoginThrottle,
            citizen_demo: None,
            web_charts: web::Charts::default(),
            ogc_extents: ogc::Extents::default(),
            recovered: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            metrics_token: None,
            public_url: None,
        }
    }

    /// Links made absolute with this public address rather than the request's Host.
    pub fn with_public_url(mut self, url: Option<String>) -> Self {
        self.public_url = url.map(|u| u.trim_end_matches('/').to_string()).filter(|u| !u.is_empty());
        self
    }

    /// Not ready (`/ready` answers 503) until `recovered` is set: the node's start-up finishes
    /// the writes a crash interrupted in the background.
    pub fn with_recovery(mut self, recovered: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.recovered = recovered;
        self
    }

    /// `/metrics` only for requests that send this bearer token.
    pub fn with_metrics_token(mut self, token: Option<String>) -> Self {
        self.metrics_token = token.filter(|t| !t.is_empty());
        self
    }

    /// With these limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Admits one more query of `caller` (429 past the limit) and bounds its result in time;
    /// the permit is held until the result is dropped.
    pub(crate) fn admit(&self, caller: &Caller, released: tverr_access::Released) -> Result<tverr_access::Released, Problem> {
        let permit = self.gate.admit(caller, &self.limits)?;
        Ok(released.bounded(self.limits.query_time, permit))
    }

    /// Lets the web log-in act as any citizen by fødselsnummer, as the demo's stand-in for
    /// ID-porten. Never in production.
    pub fn with_citizen_demo_login(mut self, key: tverr_policy::CitizenDemoKey) -> Self {
        self.citizen_demo = Some(std::sync::Arc::new(key));
        self
    }

    /// Also accepts OIDC tokens from the configured issuers.
    pub fn with_oidc(mut self, config: OidcConfig) -> Self {
        self.oidc = Some(Verifier::new(config));
        self
    }
}

/// The router with all routes and layers; tests call it without a socket.
pub fn app(state: AppState) -> Router {
    let body_limit = state.limits.body_bytes;
    // Reads end within the query time (their streams stop themselves); the request as a whole
    // gets a little more. Uploads are bounded by their size instead: stopping an ingest halfway
    // would only waste the work (nothing is committed until the end).
    let request_time = state.limits.query_time + Duration::from_secs(5);
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/datasets", get(list_datasets))
        .route("/api/v1/datasets/{org}/{dataset}", get(show_dataset))
        .route("/api/v1/datasets/{org}/{dataset}/rows", get(rows::rows))
        .route("/api/v1/datasets/{org}/{dataset}/changes", get(changes::changes))
        .route("/api/v1/datasets/{org}/{dataset}/versions", get(upload::list))
        .route("/api/v1/sql", post(sql::query))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/login", post(login::login))
        .route("/api/v1/audit", get(audit::search))
        .route("/api/v1/audit/verify", get(audit::verify))
        .route("/api/v1/me/access-log", get(me::access_log))
        .route("/api/v1/me/data", get(me::data))
        .route("/api/v1/me/children", get(family::my_children))
        .route("/api/v1/me/health", get(family::my_health))
        .route("/api/v1/me/kindergarten", get(family::my_kindergarten))
        .route("/api/v1/kindergartens/admission", get(family::kindergarten_admission))
        .route("/api/v1/subjects/person/{id}", get(subjects::person))
        .route("/api/v1/subjects/property/{*id}", get(subjects::property))
        .route("/api/v1/subjects/organization/{id}", get(subjects::organization))
        .route("/api/v1/properties", get(properties::properties_by_address))
        .route("/api/v1/properties/{*id}", get(properties::property_view))
        .route("/api/v1/agreements", get(agreements::list).post(agreements::request))
        .route("/api/v1/agreements/{id}", get(agreements::show))
        .route("/api/v1/agreements/{id}/{action}", post(agreements::transition))
        .merge(web::routes())
        .merge(ogc::routes())
        .merge(dcat::routes())
        .route("/api/v1", get(api_index))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::GATEWAY_TIMEOUT, request_time))
        .route("/api/v1/datasets", post(upload::create))
        .route("/api/v1/datasets/{org}/{dataset}/versions", post(upload::add_version))
        .route("/api/v1/connectors", get(connectors::list).post(connectors::create))
        .route("/api/v1/connectors/{name}", get(connectors::show).delete(connectors::delete))
        .route("/api/v1/connectors/{name}/runs", get(connectors::runs))
        .route("/api/v1/connectors/{name}/run", post(connectors::run))
        .route("/api/v1/subscriptions", get(subscriptions::list).post(subscriptions::create))
        .route("/api/v1/subscriptions/{id}", get(subscriptions::show).delete(subscriptions::delete))
        .route("/api/v1/subscriptions/{id}/deliveries", get(subscriptions::deliveries))
        .merge(web::upload_routes(state.limits.upload_bytes))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        // A panic anywhere in a handler is one request's 500 problem, never the server's end.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(problem::panicked))
        .layer(axum::middleware::map_response(problem::problems_everywhere))
        .layer(axum::middleware::from_fn(api_headers))
        .layer(axum::middleware::from_fn(ops::observe))
        .with_state(state)
}

/// API answers can carry personal data: no cache may keep them (unless a handler said
/// otherwise), and no browser may read them as anything but their declared type.
async fn api_headers(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let api = request.uri().path().starts_with("/api/") || request.uri().path().starts_with("/ogc");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if api && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Where the API's parts are.
#[derive(Serialize, utoipa::ToSchema)]
struct ApiIndex {
    /// The API's name.
    title: &'static str,
    /// Its parts: `rel`, `href` and media `type` of each.
    links: Vec<serde_json::Value>,
}

/// `GET /api/v1`: where the API's parts are, for people and link checkers that start at its
/// root (the DCAT data service's endpoint).
#[utoipa::path(get, path = "/api/v1", tag = "service", responses((status = 200, description = "The API's parts and where they are", body = ApiIndex)))]
async fn api_index() -> Json<ApiIndex> {
    let links = serde_json::json!([
        {"rel": "service-desc", "href": "/api/v1/openapi.json", "type": "application/vnd.oai.openapi+json;version=3.1"},
        {"rel": "service-doc", "href": "/api", "type": "text/html"},
        {"rel": "data", "href": "/api/v1/datasets", "type": "application/json"},
        {"rel": "ogc-api-features", "href": "/ogc", "type": "application/json"},
        {"rel": "dcat", "href": "/dcat", "type": "text/turtle"},
        {"rel": "connectors", "href": "/api/v1/connectors", "type": "application/json"},
    ]);
    Json(ApiIndex { title: "Tverr API", links: links.as_array().cloned().unwrap_or_default() })
}

/// The caller's grant for a dataset, or the problem they may see (404 for one they may not read).
async fn entitled(state: &AppState, caller: &Caller, r: &DatasetRef) -> Result<tverr_policy::Grant, Problem> {
    match state.engine.policy().entitle(&caller.principal, caller.purpose.as_deref(), r).await {
        Ok(Ok(g)) => Ok(g),
        Ok(Err(denial)) => Err(Problem::from_denial(denial, &r.to_string(), caller.purpose.as_deref())),
        Err(e) => Err(Problem::from_policy(e)),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
    version: &'static str,
}

/// Liveness: the process answers. It reads nothing, so a catalogue or storage that is down does
/// not make a load balancer restart every node (`/ready` says whether a node can serve).
#[utoipa::path(get, path = "/health", tag = "service", responses((status = 200, description = "The process answers", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

/// Whether a node can serve requests, and what it checked.
#[derive(Serialize, utoipa::ToSchema)]
struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// The catalogue database answers (`ok` or `unavailable`).
    catalogue: &'static str,
    /// The lake's storage answers a listing of its root.
    storage: &'static str,
    /// The access log answers (it lives in the catalogue; without it no personal data is released).
    log: &'static str,
    /// The writes a crash interrupted are finished (`done`), or not yet (`running`).
    recovery: &'static str,
}

/// How long each of `/ready`'s checks may take.
const READY_CHECK: Duration = Duration::from_secs(5);

/// Readiness: the catalogue, storage and the access log answer, and the writes a crash left are
/// finished. 503 with `Retry-After` otherwise; what failed is logged, never shown.
#[utoipa::path(get, path = "/ready", tag = "service", responses(
    (status = 200, description = "The node can serve requests", body = Readiness),
    (status = 503, description = "A service the node needs does not answer, or it is still finishing interrupted writes", body = Readiness),
))]
async fn ready(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    async fn check<T, E: std::fmt::Display>(what: &str, f: impl std::future::Future<Output = Result<T, E>>) -> &'static str {
        match tokio::time::timeout(READY_CHECK, f).await {
            Ok(Ok(_)) => "ok",
            Ok(Err(e)) => {
                tracing::warn!(check = what, error = %e, "not ready");
                "unavailable"
            }
            Err(_) => {
                tracing::warn!(check = what, seconds = READY_CHECK.as_secs(), "not ready: no answer in time");
                "unavailable"
            }
        }
    }
    let (catalogue, storage, log) = tokio::join!(
        check("catalogue", state.engine.catalog().generation()),
        check("storage", state.engine.lake().reachable()),
        check("log", state.engine.audit().last_seq()),
    );
    let recovery = if state.recovered.load(std::sync::atomic::Ordering::Acquire) { "done" } else { "running" };
    let ok = catalogue == "ok" && storage == "ok" && log == "ok" && recovery == "done";
    let body = Readiness { status: if ok { "ready" } else { "unavailable" }, catalogue, storage, log, recovery };
    if ok {
        Json(body).into_response()
    } else {
        let mut response = (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static(problem::RETRY_AFTER_SECONDS));
        response.extensions_mut().insert(problem::OwnBody);
        response
    }
}

/// One dataset in the catalogue, and what the caller may do with it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListedDataset {
    #[serde(flatten)]
    pub(crate) meta: DatasetMeta,
    /// `read`: the caller may read its rows (for some purpose); `metadata`: only see that it
    /// exists (a non-open dataset of the caller's own organisation).
    pub(crate) access: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DatasetList {
    datasets: Vec<ListedDataset>,
}

/// Whether `who` may know that the dataset exists: it is their own organisation's, or one the
/// policy would let them read. A refused write is a 403 only then; otherwise it is the same 404
/// as a dataset that does not exist (API and web alike).
pub(crate) async fn may_see(state: &AppState, who: &tverr_policy::Principal, purpose: Option<&str>, r: &DatasetRef) -> bool {
    crate::own_org(who) == Some(r.org.as_str())
        || !matches!(state.engine.policy().entitle(who, purpose, r).await, Ok(Err(tverr_policy::Denial::NotFound)) | Err(_))
}

/// The organisation a principal works for, if any.
fn own_org(p: &tverr_policy::Principal) -> Option<&str> {
    match p {
        tverr_policy::Principal::User(u) => Some(&u.org),
        tverr_policy::Principal::System(s) => Some(s.org()),
        _ => None,
    }
}

/// The catalogue, searched and filtered: `q` (words, Norwegian forms), `theme`, `org`,
/// `department`, `classification`. It lists open datasets, those the caller may read for some
/// purpose, and the metadata of every dataset of the caller's own organisation (finding data is
/// the point; the rows stay behind the policy).
#[utoipa::path(get, path = "/api/v1/datasets", tag = "catalogue",
    params(
        ("q" = Option<String>, Query, description = "Words to find in titles, descriptions, keywords and column names (Norwegian word forms)", example = "ledige plasser"),
        ("theme" = Option<String>, Query, description = "EU data theme", example = "EDUC"),
        ("org" = Option<String>, Query, description = "Owning organisation", example = "hamar"),
        ("department" = Option<String>, Query, description = "Owning department", example = "oppvekst"),
        ("classification" = Option<tverr_core::Classification>, Query, description = "Classification"),
        ("purpose" = Option<String>, Query, description = "Declared purpose (or the Tverr-Purpose header)"),
    ),
    responses((status = 200, description = "Matching datasets, best match first", body = DatasetList)))]
async fn list_datasets(State(state): State<AppState>, caller: Caller, RawQuery(raw): RawQuery) -> Result<Json<DatasetList>, Problem> {
    let bad = |d: String| Problem::invalid_parameter(d);
    let (mut q, mut theme, mut org, mut department, mut classification) = (None, None, None, None, None);
    for (k, v) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        let slot = match k.as_ref() {
            "q" => &mut q,
            "theme" => &mut theme,
            "org" => &mut org,
            "department" => &mut department,
            "classification" => &mut classification,
            "purpose" => continue,
            other => {
                return Err(bad(format!(
                    "unknown parameter {other:?}; this route takes q, theme, org, department, classification, purpose"
                )));
            }
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(bad(format!("{k}: given more than once")));
        }
    }
    let classification =
        classification.map(|c| c.parse::<tverr_core::Classification>().map_err(|e| bad(format!("classification: {e}")))).transpose()?;
    let filters = CatalogFilters { q, theme, org, department, classification };
    let datasets = find_datasets(&state, &caller, &filters).await?;
    Ok(Json(DatasetList { datasets }))
}

/// What the catalogue is searched and filtered by.
#[derive(Debug, Default, Clone)]
pub(crate) struct CatalogFilters {
    pub q: Option<String>,
    pub theme: Option<String>,
    pub org: Option<String>,
    pub department: Option<String>,
    pub classification: Option<tverr_core::Classification>,
}

/// The datasets the caller may find that pass the filters, best match first (the API's list
/// and the web catalogue).
pub(crate) async fn find_datasets(state: &AppState, caller: &Caller, f: &CatalogFilters) -> Result<Vec<ListedDataset>, Problem> {
    let CatalogFilters { q, theme, org, department, classification } = f;
    let query = q.as_deref().and_then(tverr_access::CatalogQuery::parse);
    let columns =
        if query.is_some() { state.engine.catalog().all_columns().await.map_err(Problem::from_store)? } else { Default::default() };
    let mut found: Vec<(u32, ListedDataset)> = Vec::new();
    for d in state.engine.catalog().datasets().await.map_err(Problem::from_store)? {
        if theme.as_deref().is_some_and(|t| !d.theme.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(t)))
            || org.as_deref().is_some_and(|o| o != d.org)
            || department.as_deref().is_some_and(|x| x != d.department)
            || classification.is_some_and(|c| c != d.classification)
        {
            continue;
        }
        let score = match &query {
            Some(query) => match query.score(&d, columns.get(&d.reference()).map_or(&[], Vec::as_slice)) {
                Some(s) => s,
                None => continue,
            },
            None => 0,
        };
        let Ok(r) = d.reference().parse::<DatasetRef>() else { continue };
        let decision =
            state.engine.policy().entitle(&caller.principal, caller.purpose.as_deref(), &r).await.map_err(Problem::from_policy)?;
        let access = if !matches!(decision, Err(Denial::NotFound)) {
            "read"
        } else if own_org(&caller.principal) == Some(d.org.as_str()) {
            "metadata"
        } else {
            continue;
        };
        found.push((score, ListedDataset { meta: d, access }));
    }
    // Best match first; the catalogue's order (organisation, name) among equals.
    found.sort_by_key(|a| std::cmp::Reverse(a.0));
    Ok(found.into_iter().map(|(_, d)| d).collect())
}

#[derive(Serialize, utoipa::ToSchema)]
struct VisibleColumn {
    #[serde(flatten)]
    meta: ColumnMeta,
    /// The mask the caller sees the column through.
    #[serde(skip_serializing_if = "Option::is_none")]
    mask: Option<Mask>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct DatasetDetail {
    #[serde(flatten)]
    meta: DatasetMeta,
    /// `read` (columns as the caller sees them, with masks) or `metadata` (the dataset's own
    /// organisation sees its description without a grant).
    access: &'static str,
    columns: Vec<VisibleColumn>,
    versions: Vec<VersionView>,
}

/// One version of a dataset as a reader is shown it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    /// Delta version number.
    pub version: i64,
    /// Commit time (RFC 3339).
    pub committed_at: tverr_access::Timestamp,
    /// Who wrote it.
    pub actor: String,
    /// `create`, `append`, `replace`, `upsert` or `erase`.
    pub mode: tverr_access::VersionMode,
    /// Rows written; `null` for a reader who may not see protected persons, since the count
    /// would include rows withheld from them (and a one-row change would show that someone
    /// became protected).
    pub rows_written: Option<i64>,
    /// Rows removed (replace, upsert, erase); `null` as for `rows_written`.
    pub rows_removed: Option<i64>,
    /// Source file name.
    pub source_name: Option<String>,
    /// SHA-256 of the source file.
    pub source_sha256: Option<String>,
    /// Source format.
    pub source_format: Option<String>,
}

/// Whether a reader is shown how many rows each version wrote and removed. Those counts
/// include every row, so they go only to readers who see every row: not to one from whom
/// protected persons are withheld (the grant says so), nor to one who sees only the metadata of
/// a dataset about people or properties.
pub(crate) fn shows_row_counts(grant: Option<&tverr_policy::Grant>, columns: &[ColumnMeta]) -> bool {
    match grant {
        Some(g) => !matches!(g.protection(), tverr_policy::Protection::ByPerson { visible: false, .. }),
        None => !columns.iter().any(|c| matches!(c.subject_key, Some(tverr_core::SubjectKind::Person | tverr_core::SubjectKind::Property))),
    }
}

/// The versions as a reader is shown them, with or without row counts.
pub(crate) fn version_views(versions: Vec<VersionMeta>, counts: bool) -> Vec<VersionView> {
    versions
        .into_iter()
        .map(|v| VersionView {
            version: v.version,
            committed_at: v.committed_at,
            actor: v.actor,
            mode: v.mode,
            rows_written: counts.then_some(v.rows_written),
            rows_removed: counts.then_some(v.rows_removed),
            source_name: v.source_name,
            source_sha256: v.source_sha256,
            source_format: v.source_format,
        })
        .collect()
}

/// A dataset's metadata, with the columns the caller may see and their masks. Reading it needs
/// what reading the data needs (a purpose for non-open datasets).
#[utoipa::path(get, path = "/api/v1/datasets/{org}/{dataset}", tag = "catalogue",
    params(("org" = String, Path, example = "hamar"), ("dataset" = String, Path, example = "barnehager"), crate::auth::PurposeHeader),
    responses((status = 200, description = "Metadata, the columns as the caller sees them, and versions", body = DatasetDetail)))]
async fn show_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, dataset)): Path<(String, String)>,
) -> Result<Json<DatasetDetail>, Problem> {
    let r: DatasetRef = format!("{org}/{dataset}").parse().map_err(|_| Problem::dataset_not_found())?;
    let grant = match entitled(&state, &caller, &r).await {
        Ok(g) => Some(g),
        Err(_)
            if own_org(&caller.principal) == Some(r.org.as_str()) && state.engine.catalog().dataset_exists(&r).await.unwrap_or(false) =>
        {
            None
        }
        Err(p) => return Err(p),
    };
    let meta = state.engine.catalog().dataset(&r).await.map_err(Problem::from_store)?;
    let columns = state
        .engine
        .catalog()
        .columns(&r)
        .await
        .map_err(Problem::from_store)?
        .into_iter()
        .filter_map(|c| match &grant {
            Some(grant) => {
                let g: &ColumnGrant = grant.columns().iter().find(|g| g.name == c.name)?;
                Some(VisibleColumn { mask: g.mask, meta: c })
            }
            None => Some(VisibleColumn { mask: None, meta: c }),
        })
        .collect();
    let counts = shows_row_counts(grant.as_ref(), &state.engine.catalog().columns(&r).await.map_err(Problem::from_store)?);
    let versions = version_views(state.engine.catalog().versions(&r).await.map_err(Problem::from_store)?, counts);
    let access = if grant.is_some() { "read" } else { "metadata" };
    Ok(Json(DatasetDetail { meta, access, columns, versions }))
}

/// A path no route takes: the API's 404 problem under `/api/`, elsewhere the web's not-found
/// page in the visitor's language, with its ways on (attack 9: a mistyped page address answered
/// with the API's JSON).
async fn not_found(uri: axum::http::Uri, visitor: Result<web::Visitor, axum::response::Response>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match visitor {
        Ok(v) if !uri.path().starts_with("/api/") && !uri.path().starts_with("/ogc/") => web::not_found_page(&v),
        _ => Problem::new(ProblemKind::NotFound, "no such resource").into_response(),
    }
}

/// How long requests under way may go on after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Resolves at SIGINT (Ctrl-C) or SIGTERM (what service managers and container runtimes send).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves the app on a listener until the process is stopped (SIGINT or SIGTERM): requests
/// under way get [`SHUTDOWN_GRACE`] to finish.
///
/// Connections speak HTTP/1.1 (HTTP/2 and TLS belong to the reverse proxy in front). Each is
/// admitted within [`Limits::connections_per_client`] and [`Limits::connections`], and closed
/// when its client sends no request head, or no part of a request body, for
/// [`Limits::client_time`].
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let limits = state.limits.clone();
    let admission = limits::Admission::new(limits.connections_per_client, limits.connections);
    let audit = state.engine.audit().clone();
    let router = app(state);
    // `stopping` tells every connection to finish its request and close; each connection
    // holds a `closed` receiver, so the sender sees when the last has gone.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let (closed_tx, closed_rx) = tokio::sync::watch::channel(());
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or memory: wait instead of spinning; errors of a
                    // single connection that went away need no pause.
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionRefused
                    ) {
                        tracing::error!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Some(ticket) = admission.admit(addr.ip()) else {
            // Closed at once: the client, or the server, holds as many connections as it may.
            drop(io);
            continue;
        };
        // Without TCP_NODELAY a small response written in several chunks (head, rows, tail)
        // waits for the client's delayed ACK: about 40 ms per request on Linux.
        if let Err(e) = io.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        tokio::spawn(connection(io, addr, router.clone(), limits.client_time, stopping_rx.clone(), closed_rx.clone(), ticket));
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(closed_rx);
    // Requests under way get a grace period; then the server stops anyway (their streams are
    // dropped, which aborts their queries).
    if tokio::time::timeout(SHUTDOWN_GRACE, closed_tx.closed()).await.is_err() {
        tracing::warn!("requests still open after the grace period; stopping anyway");
    }
    // Records that gate nothing (completions, token uses) are written before the process ends.
    audit.flush().await;
    Ok(())
}

/// Serves one connection until it closes, the client falls silent, or the server stops.
async fn connection(
    io: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    router: Router,
    client_time: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    closed: tokio::sync::watch::Receiver<()>,
    ticket: limits::Ticket,
) {
    use tower::ServiceExt;
    let activity = ticket.activity();
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
        let mut req = req.map(|body| axum::body::Body::new(limits::Patient::new(body, client_time)));
        req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
        let (router, busy) = (router.clone(), requests.begin());
        async move {
            let response = router.oneshot(req).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| axum::body::Body::new(limits::Answering::new(body, busy))))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(client_time);
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(limits::Stalling::new(io, client_time)), service);
    tokio::pin!(conn);
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, client = %addr, "connection ended");
                }
                break;
            }
            // Room is needed for a new connection, and this one was waiting for its next
            // request; one that has begun a request meanwhile finishes it first.
            () = activity.close.notified(), if !asked_to_close => {
                asked_to_close = true;
                if !activity.is_busy() {
                    break;
                }
                conn.as_mut().graceful_shutdown();
            }
            changed = stopping.changed(), if !asked_to_close => {
                asked_to_close = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(ticket);
    drop(closed);
}
