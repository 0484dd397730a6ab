//! Min side (`/min-side`): a citizen's own data and who accessed it, from the same code as the
//! API's `/api/v1/me/*`.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{Chrome, Visitor};
use crate::auth::CitizenCaller;
use crate::{AppState, Problem};

use super::pages::*;

struct AccessRow {
    when: String,
    who: String,
    why: String,
    law: String,
    what: String,
    how: String,
}

struct OwnData {
    title: String,
    table: Table,
}

#[derive(Template)]
#[template(path = "me.html")]
struct MePage {
    page: Chrome,
    accesses: Vec<AccessRow>,
    data: Vec<OwnData>,
}

/// `GET /min-side`: a citizen's data and who accessed it.
pub async fn me(State(state): State<AppState>, v: Visitor) -> Response {
    let citizen: CitizenCaller = match role_or_page(&v, "me_title", "me_only_citizens") {
        Ok(citizen) => citizen,
        Err(page) => return page,
    };
    let log = match crate::me::access_log_of(&state, &citizen, CHANNEL).await {
        Ok(l) => l,
        Err(p) => return problem_page(&v, p),
    };
    // Names rather than slugs: "Servicetorget", "Svar til innbyggere i servicetorget".
    let mut names = Names::default();
    for d in state.engine.catalog().departments(None).await.unwrap_or_default() {
        names.departments.insert((d.org.clone(), d.slug.clone()), d.name.clone());
    }
    for o in state.engine.catalog().orgs().await.unwrap_or_default() {
        for p in state.engine.policy().purposes(&o.slug).await.unwrap_or_default() {
            names.purposes.insert((p.org.clone(), p.slug.clone()), p.name.clone());
        }
    }
    // Who else: the citizen's own reads are in the API's log and the download, not in this list.
    let accesses = log.accesses.iter().filter(|a| a.reader.kind != "self").map(|a| access_row(a, v.lang, &names)).collect();
    let reads = match state.engine.own_data(&citizen.caller.principal, CHANNEL).await {
        Ok(r) => r,
        Err(e) => return problem_page(&v, Problem::from_query(e)),
    };
    let mut data = Vec::new();
    for released in reads {
        let r = released.grants[0].dataset().clone();
        let title = state.engine.catalog().dataset(&r).await.map(|m| m.title).unwrap_or_else(|_| r.to_string());
        match collect(released, 1000).await {
            Ok((table, _)) if !table.rows.is_empty() => data.push(OwnData { title, table }),
            Ok(_) => {}
            Err(e) => return problem_page(&v, Problem::from_query(e)),
        }
    }
    v.page(StatusCode::OK, &MePage { page: v.chrome(v.lang.t("me_title")), accesses, data })
}

/// Display names of departments and purposes, by (organisation, slug).
#[derive(Default)]
struct Names {
    departments: BTreeMap<(String, String), String>,
    purposes: BTreeMap<(String, String), String>,
}

fn access_row(a: &crate::me::Access, lang: super::Lang, names: &Names) -> AccessRow {
    let r = &a.reader;
    let org = r.organisation.clone().unwrap_or_default();
    let who = match r.kind.as_str() {
        "self" => lang.t("me_self").to_string(),
        "operator" => lang.t("me_operator").to_string(),
        kind => {
            let mut parts = vec![r.organisation_name.clone().or(r.organisation.clone()).unwrap_or_default()];
            parts.extend(
                r.department.as_ref().map(|d| names.departments.get(&(org.clone(), d.clone())).cloned().unwrap_or_else(|| d.clone())),
            );
            let role = match &r.role {
                Some(role) => lang.label("role", role),
                None if kind == "system" => lang.t("me_system").into(),
                None => lang.t("me_employee").into(),
            };
            parts.push(match &r.employee {
                Some(name) => format!("{role} {name}"),
                None => role,
            });
            parts.retain(|p| !p.is_empty());
            parts.join(", ")
        }
    };
    let mut laws = Vec::new();
    let what = a
        .datasets
        .iter()
        .map(|d| {
            if let Some(h) = d.legal_basis.get("hjemmel").and_then(|h| h.as_str())
                && !laws.contains(&h.to_string())
            {
                laws.push(h.to_string());
            }
            let scope = if d.scope == "bulk" { format!(" ({})", lang.t("me_bulk")) } else { String::new() };
            format!("{}{scope}", d.title)
        })
        .collect::<Vec<_>>()
        .join("; ");
    AccessRow {
        when: short_time(&a.at),
        who,
        why: a
            .purpose
            .as_ref()
            .map(|p| names.purposes.get(&(org.clone(), p.clone())).cloned().unwrap_or_else(|| p.clone()))
            .unwrap_or_default(),
        law: laws.join("; "),
        what,
        how: a.channel.clone(),
    }
}

/// `GET /min-side/data.json`: everything about the citizen as a file, by the API's own code.
pub async fn me_download(State(state): State<AppState>, v: Visitor) -> Response {
    let citizen = match CitizenCaller::try_from(v.caller(None)) {
        Ok(citizen) => citizen,
        Err(p) => return problem_page(&v, p),
    };
    let q = axum::extract::Query(crate::me::DataQuery { download: true, purpose: None });
    match crate::me::data(State(state), citizen, q).await {
        Ok(r) => r,
        Err(p) => problem_page(&v, p),
    }
}
