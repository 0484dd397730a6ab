//! The HTTP API. Only this crate knows HTTP and JSON; handlers are plain async functions over a
//! shared [`AppState`], and errors leave as RFC 9457 problems (`application/problem+json`).
//!
//! Every handler learns who calls from the [`auth::Caller`] extractor; every read of table data
//! goes through the query engine's secure scan; a dataset the caller may not read looks exactly
//! like one that does not exist (invariant 3).

mod agreements;
mod audit;
mod auth;
mod login;
mod me;
mod oidc;
mod problem;
mod sql;

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tverr_core::DatasetRef;
use tverr_policy::{ColumnGrant, Denial, Mask};
use tverr_query::Engine;
use tverr_store::{ColumnMeta, DatasetMeta, Store, VersionMeta};

pub use auth::{Caller, PURPOSE_HEADER};
pub use oidc::{OidcConfig, Verifier};
pub use problem::Problem;

/// Shared services of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Catalogue and lake.
    pub store: Store,
    /// The query engine and policy layer over the store.
    pub engine: Engine,
    /// Verifier of OIDC tokens, when issuers are configured.
    pub oidc: Option<std::sync::Arc<Verifier>>,
}

impl AppState {
    /// The services over one store and its access log, with API tokens only.
    pub fn new(store: Store, audit: tverr_audit::Audit) -> Self {
        Self::from_engine(Engine::new(store, audit))
    }

    /// The services over an engine as configured (its log, its named-subject limit).
    pub fn from_engine(engine: Engine) -> Self {
        Self { store: engine.store().clone(), engine, oidc: None }
    }

    /// Also accepts OIDC tokens from the configured issuers.
    pub fn with_oidc(mut self, config: OidcConfig) -> Self {
        self.oidc = Some(Verifier::new(config));
        self
    }
}

/// The router with all routes and layers; tests call it without a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/datasets", get(list_datasets))
        .route("/api/v1/datasets/{org}/{dataset}", get(show_dataset))
        .route("/api/v1/sql", post(sql::query))
        .route("/api/v1/login", post(login::login))
        .route("/api/v1/audit", get(audit::search))
        .route("/api/v1/audit/verify", get(audit::verify))
        .route("/api/v1/me/access-log", get(me::access_log))
        .route("/api/v1/me/data", get(me::data))
        .route("/api/v1/agreements", get(agreements::list).post(agreements::request))
        .route("/api/v1/agreements/{id}", get(agreements::show))
        .route("/api/v1/agreements/{id}/{action}", post(agreements::transition))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::GATEWAY_TIMEOUT, Duration::from_secs(60)))
        .layer(RequestBodyLimitLayer::new(1 << 20))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
}

async fn health(State(state): State<AppState>) -> Result<Json<Health>, Problem> {
    state.store.catalog.orgs().await.map_err(Problem::from_store)?;
    Ok(Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") }))
}

#[derive(Serialize)]
struct DatasetList {
    datasets: Vec<DatasetMeta>,
}

/// The datasets the caller may read: open ones, and those the caller is entitled to for some
/// purpose (whether or not the declared one).
async fn list_datasets(State(state): State<AppState>, caller: Caller) -> Result<Json<DatasetList>, Problem> {
    let mut datasets = Vec::new();
    for d in state.store.catalog.datasets().await.map_err(Problem::from_store)? {
        let Ok(r) = d.reference().parse::<DatasetRef>() else { continue };
        let decision = state
            .engine
            .policy()
            .entitle(&caller.principal, caller.purpose.as_deref(), &r)
            .await
            .map_err(Problem::from_policy)?;
        if !matches!(decision, Err(Denial::NotFound)) {
            datasets.push(d);
        }
    }
    Ok(Json(DatasetList { datasets }))
}

#[derive(Serialize)]
struct VisibleColumn {
    #[serde(flatten)]
    meta: ColumnMeta,
    /// The mask the caller sees the column through.
    #[serde(skip_serializing_if = "Option::is_none")]
    mask: Option<Mask>,
}

#[derive(Serialize)]
struct DatasetDetail {
    #[serde(flatten)]
    meta: DatasetMeta,
    columns: Vec<VisibleColumn>,
    versions: Vec<VersionMeta>,
}

/// A dataset's metadata, with the columns the caller may see and their masks. Reading it needs
/// what reading the data needs (a purpose for non-open datasets).
async fn show_dataset(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, dataset)): Path<(String, String)>,
) -> Result<Json<DatasetDetail>, Problem> {
    let r: DatasetRef = format!("{org}/{dataset}").parse().map_err(|_| Problem::dataset_not_found())?;
    let grant = match state.engine.policy().entitle(&caller.principal, caller.purpose.as_deref(), &r).await {
        Ok(Ok(g)) => g,
        Ok(Err(denial)) => return Err(Problem::from_denial(denial, &r.to_string(), caller.purpose.as_deref())),
        Err(e) => return Err(Problem::from_policy(e)),
    };
    let meta = state.store.catalog.dataset(&r).await.map_err(Problem::from_store)?;
    let columns = state
        .store
        .catalog
        .columns(&r)
        .await
        .map_err(Problem::from_store)?
        .into_iter()
        .filter_map(|c| {
            let g: &ColumnGrant = grant.columns.iter().find(|g| g.name == c.name)?;
            Some(VisibleColumn { mask: g.mask, meta: c })
        })
        .collect();
    let versions = state.store.catalog.versions(&r).await.map_err(Problem::from_store)?;
    Ok(Json(DatasetDetail { meta, columns, versions }))
}

async fn not_found() -> Problem {
    Problem::new(axum::http::StatusCode::NOT_FOUND, "not-found", "Ikke funnet / Not found", "no such resource")
}

/// Serves the app on a listener until the process is stopped.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY a small response written in several chunks (head, rows, tail) waits
    // for the client's delayed ACK: about 40 ms per request on Linux.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let audit = state.engine.audit().clone();
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    // Records that gate nothing (completions, token uses) are written before the process ends.
    audit.flush().await;
    served
}
