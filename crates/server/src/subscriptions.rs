//! `/api/v1/subscriptions`: webhooks told of every new version of a dataset — make (the secret
//! shown once), list, show, delete, and each one's deliveries. The rules are the engine's
//! (`Engine::create_subscription` and the rest): a subscription is made by a user who may read
//! the dataset, follows that user's access at every event, and is seen only by its subscriber.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tverr_access::{Channel, CreatedSubscription, Delivery, NewSubscription, QueryError, SubscriptionInfo};

use crate::auth::SignedIn;
use crate::{AppState, Problem, ProblemKind};

/// Errors of subscriptions: a refused or bad URL is the caller's input (400); a dataset the
/// caller may not read, or another's subscription, is 404; a missing purpose 403, as for a read.
fn problem(e: QueryError) -> Problem {
    match e {
        QueryError::NotAllowed(m) | QueryError::Invalid(m) => Problem::new(ProblemKind::InvalidInput, m),
        other => Problem::from_query(other),
    }
}

/// The body that makes a subscription.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// `ORG/DATASET`.
    dataset: String,
    /// Where events are POSTed: an http or https URL.
    url: String,
    /// The purpose you read the dataset for (none for open data).
    #[serde(default)]
    purpose: Option<String>,
}

/// Subscribes the caller to a dataset they may read: every new version is POSTed to `url` as a
/// signed event. The answer holds the signing secret, which is not shown again.
#[utoipa::path(post, path = "/api/v1/subscriptions", operation_id = "create_subscription", tag = "subscriptions", request_body = CreateBody,
    responses((status = 201, description = "The subscription and its signing secret (shown once)", body = CreatedSubscription)), security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    who: SignedIn,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedSubscription>), Problem> {
    let b: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| Problem::new(ProblemKind::InvalidInput, format!("line {}, column {}: {e}", e.line(), e.column())))?;
    let new = NewSubscription { dataset: b.dataset, url: b.url, purpose: b.purpose };
    let made = state.engine.create_subscription(&who.caller.principal, Channel::HttpSubscriptions, new).await.map_err(problem)?;
    Ok((StatusCode::CREATED, Json(made)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    subscriptions: Vec<SubscriptionInfo>,
}

/// The caller's subscriptions.
#[utoipa::path(get, path = "/api/v1/subscriptions", operation_id = "list_subscriptions", tag = "subscriptions",
    responses((status = 200, description = "The caller's subscriptions", body = SubscriptionList)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, who: SignedIn) -> Result<Json<SubscriptionList>, Problem> {
    let subscriptions = state.engine.subscriptions(&who.caller.principal, None).await.map_err(problem)?;
    Ok(Json(SubscriptionList { subscriptions }))
}

/// One subscription (never its secret).
#[utoipa::path(get, path = "/api/v1/subscriptions/{id}", operation_id = "show_subscription", tag = "subscriptions", params(("id" = String, Path)),
    responses((status = 200, description = "The subscription", body = SubscriptionInfo)), security(("bearer" = [])))]
pub async fn show(State(state): State<AppState>, who: SignedIn, Path(id): Path<String>) -> Result<Json<SubscriptionInfo>, Problem> {
    state.engine.subscription(&who.caller.principal, &id).await.map(Json).map_err(problem)
}

/// Deletes a subscription: its events stop and its token is revoked.
#[utoipa::path(delete, path = "/api/v1/subscriptions/{id}", operation_id = "delete_subscription", tag = "subscriptions", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted")), security(("bearer" = [])))]
pub async fn delete(State(state): State<AppState>, who: SignedIn, Path(id): Path<String>) -> Result<StatusCode, Problem> {
    state.engine.delete_subscription(&who.caller.principal, Channel::HttpSubscriptions, &id).await.map_err(problem)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// How many (default 50, at most 1,000).
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    deliveries: Vec<Delivery>,
}

/// A subscription's events, newest version first: delivered, pending (with the last error),
/// failed after the retry window, or withheld because the subscriber could no longer read the
/// dataset.
#[utoipa::path(get, path = "/api/v1/subscriptions/{id}/deliveries", operation_id = "subscription_deliveries", tag = "subscriptions",
    params(("id" = String, Path), DeliveriesQuery),
    responses((status = 200, description = "Its deliveries", body = DeliveryList)), security(("bearer" = [])))]
pub async fn deliveries(
    State(state): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<DeliveryList>, Problem> {
    let limit = q.limit.unwrap_or(tverr_access::DEFAULT_DELIVERIES_LISTED);
    let deliveries = state.engine.subscription_deliveries(&who.caller.principal, &id, limit).await.map_err(problem)?;
    Ok(Json(DeliveryList { deliveries }))
}
