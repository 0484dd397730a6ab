//! `/api/v1/agreements`: list, show, request, approve, deny and revoke, with the same rules as
//! the command line (they are the policy layer's).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tverr_policy::{Agreement, AgreementEvent, AgreementRequest, DatasetTerms, User};

use crate::auth::SignedIn;
use crate::{AppState, Problem, ProblemKind};
use tverr_access::{Channel, RecordKind};

/// Whether a user's organisation is a party (only parties see an agreement).
pub(crate) fn party(u: &User, a: &Agreement) -> bool {
    a.provider.org == u.org || a.consumer.org == u.org
}

/// Whether `p` is `u`'s own department.
pub(crate) fn own_department(u: &User, p: &tverr_policy::Party) -> bool {
    p.org == u.org && Some(&p.department) == u.department.as_ref()
}

fn agreement_not_found() -> Problem {
    Problem::new(ProblemKind::AgreementNotFound, "no such agreement")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgreementList {
    agreements: Vec<Agreement>,
}

/// Agreements the caller's organisation is a party to.
#[utoipa::path(get, path = "/api/v1/agreements", operation_id = "list_agreements", tag = "agreements",
    responses((status = 200, description = "Agreements the caller's organisation is a party to", body = AgreementList)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, who: SignedIn) -> Result<Json<AgreementList>, Problem> {
    let u = who.user();
    let agreements = state.engine.policy().agreements().await.map_err(Problem::from_policy)?;
    Ok(Json(AgreementList { agreements: agreements.into_iter().filter(|a| party(u, a)).collect() }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgreementDetail {
    #[serde(flatten)]
    agreement: Agreement,
    events: Vec<AgreementEvent>,
}

async fn visible(state: &AppState, u: &User, id: i64) -> Result<Agreement, Problem> {
    match state.engine.policy().agreement(id).await {
        Ok(a) if party(u, &a) => Ok(a),
        Ok(_) | Err(tverr_policy::PolicyError::Store(tverr_access::StoreError::NotFound { .. })) => Err(agreement_not_found()),
        Err(e) => Err(Problem::from_policy(e)),
    }
}

/// One agreement with its history.
#[utoipa::path(get, path = "/api/v1/agreements/{id}", tag = "agreements", params(("id" = i64, Path)),
    responses((status = 200, description = "The agreement and its history", body = AgreementDetail)), security(("bearer" = [])))]
pub async fn show(State(state): State<AppState>, who: SignedIn, Path(id): Path<i64>) -> Result<Json<AgreementDetail>, Problem> {
    let u = who.user();
    let agreement = visible(&state, u, id).await?;
    let events = state.engine.policy().agreement_events(id).await.map_err(Problem::from_policy)?;
    Ok(Json(AgreementDetail { agreement, events }))
}

/// The body of a request for an agreement.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    provider: String,
    consumer: String,
    datasets: Vec<DatasetTerms>,
    purposes: Vec<String>,
    #[serde(default)]
    legal_basis: Option<String>,
    #[serde(default)]
    valid_from: Option<chrono::NaiveDate>,
    #[serde(default)]
    valid_to: Option<chrono::NaiveDate>,
    #[serde(default)]
    release_fortrolig: bool,
}

fn invalid_body(e: impl std::fmt::Display) -> Problem {
    Problem::new(ProblemKind::InvalidInput, e.to_string())
}

/// Requests an agreement (the consumer's steward or admin).
#[utoipa::path(post, path = "/api/v1/agreements", tag = "agreements", request_body = RequestBody,
    responses((status = 201, description = "The requested agreement", body = tverr_policy::Agreement)), security(("bearer" = [])))]
pub async fn request(
    State(state): State<AppState>,
    who: SignedIn,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Agreement>), Problem> {
    let a = request_as(&state, &who, &body, Channel::Http).await?;
    Ok((StatusCode::CREATED, Json(a)))
}

/// Requests an agreement from a JSON body (the API's and the web form's), logged on `channel`.
pub(crate) async fn request_as(state: &AppState, who: &SignedIn, body: &[u8], channel: Channel) -> Result<Agreement, Problem> {
    let caller = &who.caller;
    let b: RequestBody =
        serde_json::from_slice(body).map_err(|e| invalid_body(format!("line {}, column {}: {e}", e.line(), e.column())))?;
    let req = AgreementRequest {
        provider: b.provider.parse().map_err(Problem::from_policy)?,
        consumer: b.consumer.parse().map_err(Problem::from_policy)?,
        datasets: b.datasets,
        purposes: b.purposes,
        legal_basis: b.legal_basis,
        valid_from: b.valid_from,
        valid_to: b.valid_to,
        release_fortrolig: b.release_fortrolig,
    };
    tverr_policy::Policy::may(&caller.principal, tverr_policy::Action::RequestAgreement(&req.consumer)).map_err(Problem::from_policy)?;
    // A dataset the requester may not read is one they can only name: whether it exists, whose
    // it is and which columns it has is not told by a refusal, which is then the same 404 as for
    // a dataset that does not exist (attack 5, F2).
    let mut hidden = false;
    for d in &req.datasets {
        if let Ok(r) = d.dataset.parse::<tverr_core::DatasetRef>() {
            hidden |= !crate::may_see(state, &caller.principal, None, &r).await;
        }
    }
    // Nor is it told by a request that succeeds: what may be asked for is what the catalogue
    // shows the requester (attack 9, F1).
    if hidden {
        return Err(Problem::dataset_not_found());
    }
    let refusal = |p: Problem| if hidden && matches!(p.status, 400 | 404 | 409 | 422) { Problem::dataset_not_found() } else { p };
    state.engine.check_terms(&req.datasets).await.map_err(|e| refusal(Problem::from_query(e)))?;
    let datasets = tverr_access::datasets_field(req.datasets.iter().map(|d| d.dataset.as_str()));
    // The change is recorded before it is made: a log that cannot be written refuses it.
    state
        .engine
        .log_event(RecordKind::AgreementIntent, &caller.principal, channel, serde_json::json!({"action": "request", "datasets": datasets}))
        .await
        .map_err(Problem::from_query)?;
    let a = state.engine.policy().request_agreement(&caller.principal, req).await.map_err(|e| refusal(Problem::from_policy(e)))?;
    state
        .engine
        .log_event(
            RecordKind::Agreement,
            &caller.principal,
            channel,
            serde_json::json!({"agreement": a.id, "state": a.state, "revision": a.revision, "datasets": datasets}),
        )
        .await
        .map_err(Problem::from_query)?;
    Ok(a)
}

/// The body of approve, deny and revoke.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionBody {
    #[serde(default)]
    note: Option<String>,
}

/// `approve`, `deny` or `revoke`.
#[utoipa::path(post, path = "/api/v1/agreements/{id}/{action}", tag = "agreements",
    params(("id" = i64, Path), ("action" = String, Path, description = "approve, deny or revoke")), request_body = TransitionBody,
    responses((status = 200, description = "The agreement in its new state", body = tverr_policy::Agreement)), security(("bearer" = [])))]
pub async fn transition(
    State(state): State<AppState>,
    who: SignedIn,
    Path((id, action)): Path<(i64, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Agreement>, Problem> {
    let note = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<TransitionBody>(&body)
            .map_err(|e| invalid_body(format!("line {}, column {}: {e}", e.line(), e.column())))?
            .note
    };
    transition_as(&state, &who, id, &action, note, Channel::Http).await.map(Json)
}

/// Approves, denies or revokes an agreement the caller's organisation is a party to, logged on
/// `channel`.
pub(crate) async fn transition_as(
    state: &AppState,
    who: &SignedIn,
    id: i64,
    action: &str,
    note: Option<String>,
    channel: Channel,
) -> Result<Agreement, Problem> {
    let (u, caller) = (who.user(), &who.caller);
    let before = visible(state, u, id).await?;
    if !matches!(action, "approve" | "deny" | "revoke") {
        return Err(Problem::new(ProblemKind::NotFound, "expected approve, deny or revoke"));
    }
    let datasets = tverr_access::datasets_field(before.terms.datasets.iter().map(|d| d.dataset.as_str()));
    // The change is recorded before it is made: a log that cannot be written refuses it.
    state
        .engine
        .log_event(
            RecordKind::AgreementIntent,
            &caller.principal,
            channel,
            serde_json::json!({"action": action, "agreement": id, "revision": before.revision, "datasets": datasets}),
        )
        .await
        .map_err(Problem::from_query)?;
    let note_for_log = note.clone();
    let policy = state.engine.policy();
    let result = match action {
        "approve" => policy.approve(&caller.principal, id, note.as_deref()).await,
        "deny" => policy.deny(&caller.principal, id, note.as_deref()).await,
        "revoke" => policy.revoke(&caller.principal, id, note.as_deref()).await,
        _ => return Err(Problem::new(ProblemKind::NotFound, "expected approve, deny or revoke")),
    };
    let a = result.map_err(Problem::from_policy)?;
    state
        .engine
        .log_event(
            RecordKind::Agreement,
            &caller.principal,
            channel,
            serde_json::json!({"agreement": a.id, "state": a.state, "revision": a.revision, "note": note_for_log, "datasets": datasets}),
        )
        .await
        .map_err(Problem::from_query)?;
    Ok(a)
}
