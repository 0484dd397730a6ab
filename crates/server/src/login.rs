//! `POST /api/v1/login`: a local user's name and password for an API token valid one day.
//! Every attempt is in the access log (`login`: the user and the outcome), failed ones too; a
//! login is refused (503) when the log cannot be written. Past [`crate::limits::LOGIN_FAILURES_PER_USER`]
//! failures for a user name (or [`crate::limits::LOGIN_FAILURES_PER_CLIENT`] from one address) in
//! five minutes, attempts are refused with 429 without checking the password.

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tverr_policy::{PolicyError, Principal};

use crate::{AppState, Problem, ProblemKind};
use tverr_access::{Channel, RecordKind};

/// The request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

/// A new token; send it as `Authorization: Bearer …`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    token: String,
    expires_at: Option<String>,
}

/// Checks the password and issues a token.
#[utoipa::path(post, path = "/api/v1/login", tag = "access",
    request_body(content = LoginRequest, example = json!({"username": "ola", "password": "…"})),
    responses((status = 201, description = "A token valid one day", body = LoginResponse)))]
pub async fn login(State(state): State<AppState>, request: Request) -> Result<(StatusCode, Json<LoginResponse>), Problem> {
    let client = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    let body = axum::body::to_bytes(request.into_body(), state.limits.body_bytes)
        .await
        .map_err(|_| Problem::new(ProblemKind::PayloadTooLarge, "the log-in body is too large"))?;
    let req: LoginRequest = Problem::json_body(&body, "{\"username\": …, \"password\": …}")?;
    let policy = state.engine.policy();
    if let Err(refused) = state.logins.attempt(policy, &req.username, client).await {
        let details = serde_json::json!({"outcome": "throttled", "username": req.username});
        state.engine.note_event(RecordKind::Login, &Principal::Anonymous, Channel::Http, details);
        return Err(refused.problem());
    }
    match policy.login(&req.username, &req.password).await {
        Ok(who) => {
            state.logins.succeeded(policy, &req.username, client).await;
            let token = policy.create_token(&who.name(), Some(1)).await.map_err(Problem::from_policy)?;
            let details = serde_json::json!({"outcome": "ok", "token": token.id});
            state.engine.log_event(RecordKind::Login, &who, Channel::Http, details).await.map_err(Problem::from_query)?;
            Ok((StatusCode::CREATED, Json(LoginResponse { token: token.secret, expires_at: token.expires_at })))
        }
        Err(PolicyError::Unauthenticated(why)) => {
            let details = serde_json::json!({"outcome": "refused", "username": req.username});
            state.engine.log_event(RecordKind::Login, &Principal::Anonymous, Channel::Http, details).await.map_err(Problem::from_query)?;
            Err(Problem::new(ProblemKind::Unauthenticated, why))
        }
        Err(other) => Err(Problem::from_policy(other)),
    }
}
