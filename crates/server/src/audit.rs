//! The access log for auditors: `GET /api/v1/audit/verify` and
//! `GET /api/v1/audit?user=&dataset=&subject=&from=&to=` (`subject`: a fødselsnummer).
//! Only users with the `auditor` role, and only entries about their own organisation; every read
//! of the log is itself logged.

use axum::Json;
use axum::extract::{Query, State};
use serde::Serialize;
use tverr_audit::{Search, Verification};

use crate::auth::Auditor;
use crate::{AppState, Problem, ProblemKind};
use tverr_access::{Channel, RecordKind};

fn unavailable(e: tverr_audit::AuditError) -> Problem {
    Problem::from_query(tverr_access::QueryError::AuditUnavailable(e.to_string()))
}

/// Checks the chain and every checkpoint.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, description = "What the check of the chain and checkpoints found", body = tverr_audit::Verification)), security(("bearer" = [])))]
pub async fn verify(State(state): State<AppState>, auditor: Auditor) -> Result<Json<Verification>, Problem> {
    verify_as(&state, &auditor, Channel::Http).await.map(Json)
}

/// Verifies the whole log for an auditor; the read is logged on `channel`.
pub(crate) async fn verify_as(state: &AppState, auditor: &Auditor, channel: Channel) -> Result<Verification, Problem> {
    state
        .engine
        .log_event(RecordKind::AuditRead, &auditor.caller.principal, channel, serde_json::json!({"what": "verify"}))
        .await
        .map_err(Problem::from_query)?;
    state.engine.audit().verify(None).await.map_err(unavailable)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EntryView {
    pub(crate) seq: i64,
    pub(crate) at: String,
    pub(crate) kind: String,
    pub(crate) record: serde_json::Value,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Entries {
    pub(crate) entries: Vec<EntryView>,
}

/// Entries about the auditor's organisation that match the filters.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(tverr_audit::Search),
    responses((status = 200, description = "Entries about the auditor's organisation", body = Entries)), security(("bearer" = [])))]
pub async fn search(State(state): State<AppState>, auditor: Auditor, Query(q): Query<Search>) -> Result<Json<Entries>, Problem> {
    search_as(&state, &auditor, q, Channel::Http).await.map(Json)
}

/// An auditor's search of the entries about their organisation; the read is logged on `channel`.
pub(crate) async fn search_as(state: &AppState, auditor: &Auditor, mut q: Search, channel: Channel) -> Result<Entries, Problem> {
    q.org = Some(auditor.org().to_string());
    if let Some(pid) = &q.subject {
        tverr_core::Fodselsnummer::parse(pid).map_err(|e| Problem::new(ProblemKind::InvalidInput, format!("subject: {e}")))?;
    }
    // A time that is not one would match nothing and read as "no entries".
    for (name, value) in [("from", &q.from), ("to", &q.to)] {
        if let Some(v) = value.as_deref()
            && chrono::DateTime::parse_from_rfc3339(v).is_err()
            && chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_err()
        {
            return Err(Problem::new(ProblemKind::InvalidInput, format!("{name}: expected RFC 3339 or YYYY-MM-DD, e.g. 2026-12-06")));
        }
    }
    let subject = q.subject.as_deref().map(|p| state.engine.audit().subject_id(p));
    state
        .engine
        .log_event(
            RecordKind::AuditRead,
            &auditor.caller.principal,
            channel,
            serde_json::json!({"what": "search", "user": q.user, "dataset": q.dataset, "from": q.from, "to": q.to, "subject": subject}),
        )
        .await
        .map_err(Problem::from_query)?;
    let entries = state.engine.audit().search(&q).await.map_err(unavailable)?;
    Ok(Entries {
        entries: entries
            .into_iter()
            .map(|e| EntryView { seq: e.seq, at: e.at, kind: e.kind, record: serde_json::from_str(&e.payload).unwrap_or_default() })
            .collect(),
    })
}
