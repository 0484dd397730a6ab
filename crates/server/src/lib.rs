//! The HTTP API. Only this crate knows HTTP and JSON; handlers are plain async functions over a
//! shared [`AppState`], and errors leave as RFC 9457 problems (`application/problem+json`).
//!
//! Until the policy layer exists, only open datasets are visible here: a non-open dataset looks
//! exactly like one that does not exist (invariant 3).

mod problem;

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tverr_core::{Classification, DatasetRef};
use tverr_store::{ColumnMeta, DatasetMeta, Store, StoreError, VersionMeta};

pub use problem::Problem;

/// Shared services of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Catalogue and lake.
    pub store: Store,
}

/// The router with all routes and layers; tests call it without a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/datasets", get(list_datasets))
        .route("/api/v1/datasets/{org}/{dataset}", get(show_dataset))
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

async fn list_datasets(State(state): State<AppState>) -> Result<Json<DatasetList>, Problem> {
    let datasets = state
        .store
        .catalog
        .datasets()
        .await
        .map_err(Problem::from_store)?
        .into_iter()
        .filter(|d| d.classification == Classification::Open)
        .collect();
    Ok(Json(DatasetList { datasets }))
}

#[derive(Serialize)]
struct DatasetDetail {
    #[serde(flatten)]
    meta: DatasetMeta,
    columns: Vec<ColumnMeta>,
    versions: Vec<VersionMeta>,
}

async fn show_dataset(
    State(state): State<AppState>,
    Path((org, dataset)): Path<(String, String)>,
) -> Result<Json<DatasetDetail>, Problem> {
    let r: DatasetRef = format!("{org}/{dataset}").parse().map_err(|_| Problem::dataset_not_found())?;
    let meta = match state.store.catalog.dataset(&r).await {
        Ok(m) if m.classification == Classification::Open => m,
        Ok(_) | Err(StoreError::NotFound { .. }) => return Err(Problem::dataset_not_found()),
        Err(e) => return Err(Problem::from_store(e)),
    };
    let columns = state.store.catalog.columns(&r).await.map_err(Problem::from_store)?;
    let versions = state.store.catalog.versions(&r).await.map_err(Problem::from_store)?;
    Ok(Json(DatasetDetail { meta, columns, versions }))
}

async fn not_found() -> Problem {
    Problem::new(axum::http::StatusCode::NOT_FOUND, "not-found", "Ikke funnet / Not found", "no such resource")
}

/// Serves the app on a listener until the process is stopped.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
