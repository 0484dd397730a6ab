//! `/api/v1/connectors`: a steward's connectors — make, list, show, run now, their runs, delete.
//! The rules are the engine's (`Engine::create_connector` and the rest): a connector is made and
//! seen only by those who may write its dataset, writes in its maker's name, and never shows a
//! secret.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tverr_access::{Channel, ConnectorInfo, ConnectorRun, IngestSettings, NewConnector, QueryError, SourceOptions};

use crate::auth::SignedIn;
use crate::{AppState, Problem, ProblemKind};

/// Errors of connectors: settings and refused sources are the caller's input (400), a missing
/// connector or one of another department's is 404.
fn problem(e: QueryError) -> Problem {
    match e {
        QueryError::NotAllowed(m) | QueryError::Invalid(m) => Problem::new(ProblemKind::InvalidInput, m),
        other => Problem::from_query(other),
    }
}

/// The body that makes a connector.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Its name: lower case, digits and -.
    name: String,
    /// `ORG/DATASET`.
    dataset: String,
    /// `https://…`, `postgres://…` or `file:///dir/`.
    source: String,
    /// A cron pattern in Norwegian time.
    schedule: String,
    /// A SQL source's query.
    #[serde(default)]
    query: Option<String>,
    /// A SQL source's incremental column (with `ingest.mode` upsert).
    #[serde(default)]
    incremental: Option<String>,
    /// A JSON API's pointer to its rows.
    #[serde(default)]
    pointer: Option<String>,
    /// A JSON pointer to the next page's URL.
    #[serde(default)]
    next: Option<String>,
    /// Headers sent to an HTTP source (the values are sealed and never returned).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The source's password (sealed, never returned).
    #[serde(default)]
    password: Option<String>,
    /// How to ingest, as for an upload: mode, key, format, subjects, categories, types, create….
    #[serde(default)]
    #[schema(value_type = Object)]
    ingest: IngestSettings,
}

/// Makes a connector that writes in the caller's name.
#[utoipa::path(post, path = "/api/v1/connectors", operation_id = "create_connector", tag = "connectors", request_body = CreateBody,
    responses((status = 201, description = "The connector (never its secrets)", body = ConnectorInfo)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    who: SignedIn,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ConnectorInfo>), Problem> {
    let b: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(ProblemKind::InvalidInput, format!("line {}, column {}: {e}", e.line(), e.column())))?;
    let mut source = b.source;
    if let Some(password) = &b.password {
        let mut url = url::Url::parse(&source).map_err(|e| Problem::new(ProblemKind::InvalidInput, format!("invalid source: {e}")))?;
        url.set_password(Some(password))
            .map_err(|_| Problem::new(ProblemKind::InvalidInput, "invalid password: this source takes none"))?;
        source = url.to_string();
    }
    let new = NewConnector {
        name: b.name,
        dataset: b.dataset,
        source,
        schedule: b.schedule,
        options: SourceOptions { query: b.query, incremental: b.incremental, pointer: b.pointer, next: b.next, ..Default::default() },
        headers: b.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect(),
        ingest: b.ingest,
    };
    let info = state.engine.create_connector(&who.caller.principal, Channel::HttpConnectors, new).await.map_err(problem)?;
    Ok((StatusCode::CREATED, Json(info)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectorList {
    connectors: Vec<ConnectorInfo>,
}

/// The connectors of the datasets the caller may write.
#[utoipa::path(get, path = "/api/v1/connectors", operation_id = "list_connectors", tag = "connectors",
    responses((status = 200, description = "The caller's connectors", body = ConnectorList)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, who: SignedIn) -> Result<Json<ConnectorList>, Problem> {
    let connectors = state.engine.connectors(&who.caller.principal).await.map_err(problem)?;
    Ok(Json(ConnectorList { connectors }))
}

/// One connector.
#[utoipa::path(get, path = "/api/v1/connectors/{name}", operation_id = "show_connector", tag = "connectors", params(("name" = String, Path)),
    responses((status = 200, description = "The connector", body = ConnectorInfo)), security(("bearer" = [])))]
pub async fn show(State(state): State<AppState>, who: SignedIn, Path(name): Path<String>) -> Result<Json<ConnectorInfo>, Problem> {
    state.engine.connector(&who.caller.principal, &name).await.map(Json).map_err(problem)
}

/// Deletes a connector (its token is revoked).
#[utoipa::path(delete, path = "/api/v1/connectors/{name}", operation_id = "delete_connector", tag = "connectors", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted")), security(("bearer" = [])))]
pub async fn delete(State(state): State<AppState>, who: SignedIn, Path(name): Path<String>) -> Result<StatusCode, Problem> {
    state.engine.delete_connector(&who.caller.principal, Channel::HttpConnectors, &name).await.map_err(problem)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RunList {
    runs: Vec<ConnectorRun>,
}

/// Runs a connector now and answers when it has finished: its runs (one per file for a drop
/// folder). A failed run is a run too (200, with its error); 409 when another node is running it.
#[utoipa::path(post, path = "/api/v1/connectors/{name}/run", operation_id = "run_connector", tag = "connectors", params(("name" = String, Path)),
    responses((status = 200, description = "The runs it made", body = RunList)), security(("bearer" = [])))]
pub async fn run(State(state): State<AppState>, who: SignedIn, Path(name): Path<String>) -> Result<Json<RunList>, Problem> {
    match state.engine.run_connector(&who.caller.principal, &name).await {
        Ok(runs) => Ok(Json(RunList { runs })),
        Err(QueryError::Invalid(m)) if m.contains("another node") => Err(Problem::new(ProblemKind::Exists, m)),
        Err(e) => Err(problem(e)),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// How many (default 20, at most 1,000).
    limit: Option<i64>,
}

/// A connector's last runs, newest first.
#[utoipa::path(get, path = "/api/v1/connectors/{name}/runs", operation_id = "connector_runs", tag = "connectors", params(("name" = String, Path), RunsQuery),
    responses((status = 200, description = "Its runs", body = RunList)), security(("bearer" = [])))]
pub async fn runs(
    State(state): State<AppState>,
    who: SignedIn,
    Path(name): Path<String>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<RunList>, Problem> {
    let limit = q.limit.unwrap_or(tverr_access::DEFAULT_RUNS_LISTED);
    let runs = state.engine.connector_runs(&who.caller.principal, &name, limit).await.map_err(problem)?;
    Ok(Json(RunList { runs }))
}
