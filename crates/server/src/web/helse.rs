//! Health and care: `/helse`, the open page of the kommune's health and care services and the
//! GPs with free places (read as the anonymous visitor, like every open page), and
//! `/min-side/helse`, a citizen's own and their children's services and who has read them
//! ([`crate::family::health_of`]).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tverr_access::RowsQuery;
use tverr_core::DatasetRef;
use tverr_policy::Principal;

use super::pages::{CHANNEL, collect, outline, problem_page, role_or_page};
use super::{Chrome, Lang, Visitor, format, query_value, svg};
use crate::AppState;
use crate::auth::CitizenCaller;

struct Service {
    name: String,
    kind: String,
    what: String,
    who: String,
    hours: String,
    address: String,
    phone: String,
    phone_href: String,
    waiting: String,
}

struct Doctor {
    name: String,
    office: String,
    address: String,
    list: String,
    free: String,
}

#[derive(Template)]
#[template(path = "helse.html")]
struct HealthPage {
    page: Chrome,
    q: String,
    free_only: bool,
    services: Vec<Service>,
    doctors: Vec<Doctor>,
    map: Option<String>,
    map_alt: String,
}

/// Whether `needle` (lower case) is in any of the texts, case aside.
fn matches(needle: &str, texts: &[&str]) -> bool {
    needle.is_empty() || texts.iter().any(|t| t.to_lowercase().contains(needle))
}

/// `GET /helse[?sok=&ledig=1]`: no log-in; the services with what they do, who can get them,
/// opening hours, address and waiting time, searchable, on a map; and the GPs, those with free
/// places on their lists first.
pub async fn health(State(state): State<AppState>, v: Visitor) -> Response {
    let q = query_value(v.query.as_deref(), "sok").unwrap_or_default().trim().chars().take(100).collect::<String>();
    let needle = q.to_lowercase();
    let free_only = query_value(v.query.as_deref(), "ledig").is_some_and(|x| x == "1");
    let who = Principal::Anonymous;
    let read = |name: &str| name.parse::<DatasetRef>().expect("a valid name");
    let services_ref = read("hamar/helsetjenester");
    let all = RowsQuery { limit: Some(1000), stable_order: true, ..RowsQuery::default() };
    let (services, shapes) = match state.engine.rows(&who, None, &services_ref, &all, CHANNEL).await {
        Ok(r) => match collect(r, 1000).await {
            Ok(x) => x,
            Err(e) => return problem_page(&v, crate::Problem::from_query(e)),
        },
        Err(e) => return problem_page(&v, crate::Problem::from_query(e)),
    };
    let col = |t: &super::pages::Table, name: &str| t.columns.iter().position(|c| c == name);
    let cell = |t: &super::pages::Table, row: &Vec<String>, name: &str| col(t, name).map(|i| row[i].clone()).unwrap_or_default();
    let mut shown = Vec::new();
    let mut points = Vec::new();
    let mut labels = Vec::new();
    for (i, row) in services.rows.iter().enumerate() {
        let s = Service {
            name: cell(&services, row, "navn"),
            kind: cell(&services, row, "tjenestetype"),
            what: cell(&services, row, "beskrivelse"),
            who: cell(&services, row, "hvem_kan_faa"),
            hours: cell(&services, row, "apningstider"),
            address: cell(&services, row, "adresse"),
            phone: cell(&services, row, "telefon"),
            phone_href: cell(&services, row, "telefon").chars().filter(char::is_ascii_digit).collect(),
            waiting: match cell(&services, row, "ventetid_dager").as_str() {
                "" => String::new(),
                days => v.lang.t("health_waiting_days").replace("{n}", days),
            },
        };
        if !matches(&needle, &[&s.name, &s.kind, &s.what, &s.who]) {
            continue;
        }
        if let Some(p) = shapes.get(i) {
            points.push(p.clone());
            labels.push(s.name.clone());
        }
        shown.push(s);
    }
    let doctors_ref = read("hamar/fastleger");
    let order = RowsQuery {
        order_by: vec![("ledige_plasser".into(), true), ("lege".into(), false)],
        limit: Some(5000),
        stable_order: true,
        filter: free_only.then(|| "ledige_plasser > 0".to_string()),
        ..RowsQuery::default()
    };
    let doctors = match state.engine.rows(&who, None, &doctors_ref, &order, CHANNEL).await {
        Ok(r) => match collect(r, 5000).await {
            Ok((t, _)) => t,
            Err(e) => return problem_page(&v, crate::Problem::from_query(e)),
        },
        Err(e) => return problem_page(&v, crate::Problem::from_query(e)),
    };
    let doctors = doctors
        .rows
        .iter()
        .map(|row| Doctor {
            name: cell(&doctors, row, "lege"),
            office: cell(&doctors, row, "legekontor"),
            address: cell(&doctors, row, "adresse"),
            list: cell(&doctors, row, "listelengde"),
            free: cell(&doctors, row, "ledige_plasser"),
        })
        .filter(|d| matches(&needle, &[&d.name, &d.office, &d.address]) || matches(&needle, &["fastlege"]))
        .collect();
    let map_alt = v.lang.t("health_map_alt").replace("{n}", &points.len().to_string());
    let outline = outline(&state, "hamar").await;
    let page = HealthPage {
        page: v.chrome(v.lang.t("health_title")),
        q,
        free_only,
        map: (!points.is_empty()).then(|| svg::map(&points, &labels, &map_alt, outline.as_ref())),
        map_alt,
        services: shown,
        doctors,
    };
    v.page(StatusCode::OK, &page)
}

struct HeldView {
    whose: String,
    title: String,
    department: String,
    law: String,
    law_url: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

struct ReadView {
    when: String,
    whose: String,
    who: String,
    why: String,
    what: String,
}

#[derive(Template)]
#[template(path = "me_health.html")]
struct MyHealthPage {
    page: Chrome,
    held: Vec<HeldView>,
    reads: Vec<ReadView>,
}

/// Whose data, as the page says it.
pub(super) fn whose_text(lang: Lang, whose: &crate::family::Whose) -> String {
    match &whose.child {
        Some(c) => lang.t("me_child").replace("{name}", &c.name).replace("{age}", &c.age.to_string()),
        None => lang.t("me_you").to_string(),
    }
}

/// `GET /min-side/helse`: my and my children's health and care services, and who has read them.
pub async fn my_health(State(state): State<AppState>, v: Visitor) -> Response {
    let citizen: CitizenCaller = match role_or_page(&v, "me_health_title", "me_only_citizens") {
        Ok(c) => c,
        Err(page) => return page,
    };
    let view = match crate::family::health_of(&state, &citizen, CHANNEL).await {
        Ok(view) => view,
        Err(p) => return problem_page(&v, p),
    };
    let held = view
        .services
        .iter()
        .map(|h| {
            let columns: Vec<String> =
                h.rows.first().map(|r| r.keys().filter(|k| !k.ends_with("_fnr")).cloned().collect()).unwrap_or_default();
            HeldView {
                whose: whose_text(v.lang, &h.whose),
                title: h.title.clone(),
                department: h.department_name.clone(),
                law: h.legal_basis.as_ref().and_then(|b| b["hjemmel"].as_str()).unwrap_or_default().to_string(),
                law_url: h.legal_basis.as_ref().and_then(|b| b["lovdata_url"].as_str()).unwrap_or_default().to_string(),
                rows: h.rows.iter().map(|r| columns.iter().map(|c| format::json(v.lang, r.get(c))).collect()).collect(),
                columns,
            }
        })
        .collect();
    let reads = view
        .accesses
        .iter()
        .map(|a| {
            let r = &a.access.reader;
            let who = match (&r.employee, r.kind.as_str()) {
                (Some(name), _) => format!(
                    "{name} ({})",
                    [r.organisation_name.clone(), r.department.clone()].into_iter().flatten().collect::<Vec<_>>().join(", ")
                ),
                (None, "guardian") => v.lang.t("me_guardian").to_string(),
                (None, kind) => [r.organisation_name.clone(), r.department.clone(), Some(kind.to_string())]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            ReadView {
                when: format::json(v.lang, Some(&serde_json::Value::String(a.access.at.chars().take(19).collect::<String>() + "Z"))),
                whose: whose_text(v.lang, &a.whose),
                who,
                why: a.access.purpose.clone().unwrap_or_default(),
                what: a.access.datasets.iter().map(|d| d.title.clone()).collect::<Vec<_>>().join("; "),
            }
        })
        .collect();
    v.page(StatusCode::OK, &MyHealthPage { page: v.chrome(v.lang.t("me_health_title")), held, reads })
}
