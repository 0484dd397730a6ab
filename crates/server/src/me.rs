//! What a citizen sees about themselves (a citizen principal: an ID-porten token, or a citizen
//! API token in the demo):
//! * `GET /api/v1/me/access-log`: every access that released data about me: when, which
//!   organisation, department and role, purpose, legal basis, dataset and channel. The employee's
//!   name is shown when the data released was special-category (health) data, as the patient
//!   records act § 18 requires; for other data the department and role are shown, not the person.
//! * `GET /api/v1/me/data`: every row about me in every dataset with a person key (GDPR art. 15),
//!   as JSON, or with `?download=true` as a file to keep.
//!
//! Both reads are themselves logged, and `me/data` names the citizen as its data subject.
//!
//! An access that read more people of one dataset than the engine names one by one (a bulk read,
//! such as an aggregate over the whole population) is shown to every citizen as one that may
//! have included them (`scope: bulk`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tverr_access::QueryError;
use tverr_core::DatasetRef;

use crate::auth::CitizenCaller;
use crate::{AppState, Problem};
use tverr_access::{Channel, RecordKind};

/// Who read, as the citizen is shown it.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Reader {
    /// `employee`, `operator` (the platform's command line), `system`, `self`, or `guardian` (a
    /// parent reading their child's data).
    pub(crate) kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) organisation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) organisation_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<String>,
    /// The employee's user name, for special-category (health) data only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) employee: Option<String>,
}

/// One dataset an access released data about me from.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessedDataset {
    /// `you`: rows about you were released; `bulk`: the access read more people of the dataset
    /// than are named one by one (see `DEFAULT_NAMED_LIMIT`), and you may have been among them.
    pub(crate) scope: &'static str,
    pub(crate) dataset: String,
    pub(crate) title: String,
    /// The columns released, with their masks.
    pub(crate) columns: serde_json::Value,
    pub(crate) legal_basis: serde_json::Value,
}

/// One access to my data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Access {
    pub(crate) at: String,
    pub(crate) channel: String,
    pub(crate) reader: Reader,
    pub(crate) purpose: Option<String>,
    pub(crate) datasets: Vec<AccessedDataset>,
}

/// The citizen's access log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessLog {
    pub(crate) accesses: Vec<Access>,
}

/// Every access that released data about the calling citizen, newest first.
#[utoipa::path(get, path = "/api/v1/me/access-log", tag = "citizens",
    responses((status = 200, description = "Every access to my data, newest first", body = AccessLog)), security(("bearer" = [])))]
pub async fn access_log(State(state): State<AppState>, citizen: CitizenCaller) -> Result<Json<AccessLog>, Problem> {
    access_log_of(&state, &citizen, Channel::Http).await.map(Json)
}

/// The calling citizen's access log, read (and that read logged) on `channel`.
pub(crate) async fn access_log_of(state: &AppState, citizen: &CitizenCaller, channel: Channel) -> Result<AccessLog, Problem> {
    let (pid, caller) = (citizen.pid(), &citizen.caller);
    state
        .engine
        .log_event(RecordKind::CitizenRead, &caller.principal, channel, serde_json::json!({"what": "access-log"}))
        .await
        .map_err(Problem::from_query)?;
    access_log_for(state, pid).await
}

/// The accesses to `pid`'s data (a citizen's own, or their child's for a parent); a read by a
/// citizen other than `pid` is shown as a parent's. The caller logs the read.
pub(crate) async fn access_log_for(state: &AppState, pid: &str) -> Result<AccessLog, Problem> {
    let found =
        state.engine.audit().accesses_of(pid).await.map_err(|e| Problem::from_query(QueryError::AuditUnavailable(e.to_string())))?;
    let own = state.engine.audit().subject_id(pid);
    let orgs: BTreeMap<String, String> =
        state.engine.catalog().orgs().await.map_err(Problem::from_store)?.into_iter().map(|o| (o.slug, o.name)).collect();
    let mut titles: BTreeMap<String, String> = BTreeMap::new();
    let mut accesses = Vec::new();
    for a in found {
        let record: serde_json::Value = serde_json::from_str(&a.entry.payload).unwrap_or_default();
        let mut datasets = Vec::new();
        let mut special = false;
        for d in record["datasets"].as_array().into_iter().flatten() {
            let name = d["dataset"].as_str().unwrap_or_default().to_string();
            let scope = if a.datasets.contains(&name) {
                "you"
            } else if a.bulk.contains(&name) {
                "bulk"
            } else {
                continue;
            };
            special |= d["special_category"].as_bool().unwrap_or(false);
            if !titles.contains_key(&name) {
                let title = match name.parse::<DatasetRef>() {
                    Ok(r) => state.engine.catalog().dataset(&r).await.map(|m| m.title).unwrap_or_else(|_| name.clone()),
                    Err(_) => name.clone(),
                };
                titles.insert(name.clone(), title);
            }
            datasets.push(AccessedDataset {
                scope,
                title: titles[&name].clone(),
                dataset: name,
                columns: d["columns"].clone(),
                legal_basis: d["legal_basis"].clone(),
            });
        }
        let p = &record["principal"];
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let reader = match p["kind"].as_str() {
            Some("user") => Reader {
                kind: "employee".into(),
                organisation_name: text(&p["org"]).and_then(|o| orgs.get(&o).cloned()),
                organisation: text(&p["org"]),
                department: text(&p["department"]),
                role: text(&p["role"]),
                employee: if special { text(&p["username"]) } else { None },
            },
            Some("citizen") if p["subject"].as_str() == Some(own.as_str()) => Reader { kind: "self".into(), ..Default::default() },
            Some("citizen") => Reader { kind: "guardian".into(), ..Default::default() },
            Some("system") => Reader {
                kind: "system".into(),
                organisation_name: text(&p["org"]).and_then(|o| orgs.get(&o).cloned()),
                organisation: text(&p["org"]),
                ..Default::default()
            },
            other => Reader { kind: other.unwrap_or("unknown").into(), ..Default::default() },
        };
        accesses.push(Access {
            at: a.entry.at,
            channel: text(&record["channel"]).unwrap_or_default(),
            reader,
            purpose: text(&record["purpose"]),
            datasets,
        });
    }
    accesses.reverse();
    Ok(AccessLog { accesses })
}

/// `?download=true` asks for a file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataQuery {
    #[serde(default)]
    pub(crate) download: bool,
    /// Accepted for symmetry with the other routes; a citizen's own data needs no purpose.
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) purpose: Option<String>,
}

/// Everything Tverr holds about the calling citizen.
#[utoipa::path(get, path = "/api/v1/me/data", tag = "citizens",
    params(("download" = Option<bool>, Query, description = "As a file (Content-Disposition)"), ("purpose" = Option<String>, Query)),
    responses((status = 200, description = "Everything Tverr holds about me (GDPR art. 15)", body = serde_json::Value)), security(("bearer" = [])))]
pub async fn data(State(state): State<AppState>, citizen: CitizenCaller, Query(q): Query<DataQuery>) -> Result<Response, Problem> {
    let caller = &citizen.caller;
    let _permit = state.gate.admit(caller, &state.limits)?;
    let reads = state.engine.own_data(&caller.principal, Channel::HttpMe).await.map_err(Problem::from_query)?;
    let mut datasets = Vec::new();
    for released in reads {
        let grant = &released.grants[0];
        let meta = state.engine.catalog().dataset(grant.dataset()).await.map_err(Problem::from_store)?;
        let mut stream = released.stream;
        let columns = serde_json::to_value(tverr_access::result_columns(&stream.schema())).unwrap_or_default();
        let mut rows = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| Problem::from_query(QueryError::from(e)))?;
            if batch.num_rows() == 0 {
                continue;
            }
            let mut text = b"[".to_vec();
            text.extend(tverr_access::json_objects(&batch, &[]).map_err(Problem::from_query)?);
            text.push(b']');
            let parsed: Vec<serde_json::Value> =
                serde_json::from_slice(&text).map_err(|e| Problem::from_query(QueryError::Output(e.to_string())))?;
            rows.extend(parsed);
        }
        if rows.is_empty() {
            continue;
        }
        datasets.push(serde_json::json!({
            "dataset": grant.dataset().to_string(),
            "title": meta.title,
            "department": meta.department,
            "columns": columns,
            "rows": rows,
        }));
    }
    let generated = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = serde_json::json!({
        "generated_at": generated,
        "legal_basis": "GDPR art. 15 (innsynsrett / right of access)",
        "datasets": datasets,
    });
    let mut response = Json(body).into_response();
    if q.download {
        let name = format!("attachment; filename=\"mine-data-{}.json\"", &generated[..10]);
        if let Ok(v) = header::HeaderValue::from_str(&name) {
            response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}
