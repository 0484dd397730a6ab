//! `/byggesak`: the property service on the web pages. A case worker finds a property by
//! matrikkel unit or address and sees, in one view, what every department holds about it
//! (through the look-up's door), the zoning plans whose plan area meets its parcel with the
//! share each covers, its parcel on a map, and the neighbours to notify (pbl § 21-3) as a
//! table, a CSV file and a printable list. A citizen sees the properties they own, the plans
//! that apply and their own cases, never the neighbours.
//!
//! Each read writes an access record in the visitor's name, so, as on `/oppslag`, only a form
//! posted from this site with the visitor's CSRF token reads anything about a property; `GET`
//! shows the form (and a citizen's own properties, read under their own right).

use askama::Template;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tverr_access::{Neighbours, PropertySources, PropertyView, QueryError};
use tverr_policy::Principal;

use super::pages::{CHANNEL, Choice, choices, problem_page};
use super::work::{OrgView, org_views};
use super::{Chrome, Lang, Visitor, format, query_value, svg};
use crate::AppState;
use crate::properties::{DEFAULT_WITHIN, home_org, sources};

/// The purpose a case worker reads for on this page.
pub const PURPOSE: &str = "byggesaksbehandling";

/// The distances offered for the neighbour list, in metres.
const DISTANCES: &[u32] = &[0, 25, 50, 100, 200];

struct ZoningRow {
    id: String,
    name: String,
    status: String,
    decided: String,
    share: String,
    covered: String,
}

struct NeighbourRow {
    matrikkel: String,
    address: String,
    owner: String,
}

struct NeighbourList {
    within: String,
    rows: Vec<NeighbourRow>,
    /// Said when the list holds only the first of more neighbours.
    truncated: Option<String>,
}

struct Shown {
    id: String,
    facts: Vec<(&'static str, String)>,
    orgs: Vec<OrgView>,
    zoning: Vec<ZoningRow>,
    map: Option<String>,
    map_alt: String,
    neighbours: Option<NeighbourList>,
}

#[derive(Template)]
#[template(path = "byggesak.html")]
struct ByggesakPage {
    page: Chrome,
    citizen: bool,
    q: String,
    avstand: String,
    distances: Vec<Choice>,
    error: Option<String>,
    searched: bool,
    matches: Vec<(String, String)>,
    shown: Option<Shown>,
}

#[derive(Template)]
#[template(path = "neighbours_print.html")]
struct PrintPage {
    page: Chrome,
    id: String,
    within: String,
    today: String,
    rows: Vec<NeighbourRow>,
    truncated: Option<String>,
}

/// What a list cut at [`tverr_access::MAX_NEIGHBOURS`] says (`key`: on the page, or refusing a
/// download), or `None` when it is whole.
fn truncated(lang: Lang, list: &Neighbours, key: &str) -> Option<String> {
    list.truncated.then(|| {
        lang.t(key)
            .replace("{shown}", &format::number(lang, list.rows.len() as f64, 0))
            .replace("{found}", &format::number(lang, list.found as f64, 0))
    })
}

/// The distance asked for, one of [`DISTANCES`] (the default when absent); `Err` for any other.
fn distance(text: Option<&str>) -> Result<u32, ()> {
    match text {
        None => Ok(DEFAULT_WITHIN as u32),
        // Exactly as the form writes it: ` 50`, `050` and `+50` are not what it offers.
        Some(t) => DISTANCES.iter().copied().find(|d| d.to_string() == t).ok_or(()),
    }
}

/// The form again with an error beside it, for a distance not in the list.
fn wrong_distance(v: &Visitor, q: String) -> Response {
    let mut page = empty_page(v, q, DEFAULT_WITHIN as u32);
    page.error = Some(v.lang.t("bs_wrong_distance").to_string());
    v.page(StatusCode::BAD_REQUEST, &page)
}

fn empty_page(v: &Visitor, q: String, avstand: u32) -> ByggesakPage {
    ByggesakPage {
        page: v.chrome(v.lang.t("bs_title")),
        citizen: matches!(v.principal, Principal::Citizen(_)),
        q,
        avstand: avstand.to_string(),
        distances: choices(
            DISTANCES.iter().map(|d| (d.to_string(), if *d == 0 { v.lang.t("bs_border").to_string() } else { format!("{d} m") })),
            Some(&avstand.to_string()),
        ),
        error: None,
        searched: false,
        matches: Vec::new(),
        shown: None,
    }
}

/// Who may use the page: employees and citizens; anyone else is sent to log in.
fn admitted(v: &Visitor) -> Result<(), Response> {
    match &v.principal {
        Principal::User(_) | Principal::Citizen(_) => Ok(()),
        Principal::Anonymous => Err(axum::response::Redirect::to("/logg-inn?next=%2Fbyggesak").into_response()),
        _ => {
            let page = v.chrome(v.lang.t("bs_title"));
            Err(v.page(StatusCode::FORBIDDEN, &super::Message::new(page, v.lang.t("bs_title"), v.lang.t("employees_only").to_string())))
        }
    }
}

fn purpose_of(v: &Visitor) -> Option<&'static str> {
    matches!(v.principal, Principal::User(_)).then_some(PURPOSE)
}

/// The page's words for what went wrong; `None` for failures that get the error page.
fn refusal(lang: Lang, e: &QueryError) -> Option<(StatusCode, String)> {
    Some(match e {
        QueryError::NotFound(_) => (StatusCode::NOT_FOUND, lang.t("bs_none").to_string()),
        QueryError::Invalid(_) => (StatusCode::BAD_REQUEST, lang.t("bs_invalid").to_string()),
        QueryError::PurposeRequired(_) | QueryError::PurposeNotAllowed { .. } => {
            (StatusCode::FORBIDDEN, lang.t("bs_no_purpose").to_string())
        }
        QueryError::NotAllowed(_) => (StatusCode::FORBIDDEN, lang.t("bs_not_allowed").to_string()),
        _ => return None,
    })
}

async fn service(state: &AppState, v: &Visitor) -> Result<PropertySources, Response> {
    match home_org(state, &v.principal).await {
        Ok(org) => sources(&org).ok_or_else(|| problem_page(v, crate::properties::problem(QueryError::NotFound(String::new())))),
        Err(p) => Err(problem_page(v, p)),
    }
}

/// `GET /byggesak[?q=&avstand=]`: the form, filled in from the query but not run; for a
/// citizen, the properties they own.
pub async fn start(State(state): State<AppState>, v: Visitor) -> Response {
    if let Err(r) = admitted(&v) {
        return r;
    }
    let q = query_value(v.query.as_deref(), "q").unwrap_or_default();
    // A link may name a distance to preselect; one not in the list preselects the default.
    let within = distance(query_value(v.query.as_deref(), "avstand").as_deref()).unwrap_or(DEFAULT_WITHIN as u32);
    let mut page = empty_page(&v, q, within);
    if page.citizen {
        let sources = match service(&state, &v).await {
            Ok(s) => s,
            Err(r) => return r,
        };
        match state.engine.properties_by_address(&v.principal, None, "", &sources, CHANNEL).await {
            Ok(found) => {
                page.searched = true;
                page.matches = found.into_iter().map(|m| (m["matrikkel"].clone(), m["address"].clone())).collect();
            }
            Err(e) => return problem_page(&v, crate::properties::problem(e)),
        }
    }
    v.page(StatusCode::OK, &page)
}

/// `POST /byggesak` (`csrf`, `q`: a matrikkel unit or the start of an address, `avstand`): one
/// property in full, or the properties at an address to choose from.
pub async fn show(State(state): State<AppState>, v: Visitor, body: axum::body::Bytes) -> Response {
    if let Err(r) = admitted(&v) {
        return r;
    }
    let f = match v.form(&body) {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let q = f.get("q").map(|s| s.trim().to_string()).unwrap_or_default();
    let Ok(within) = distance(f.get("avstand").map(String::as_str)) else { return wrong_distance(&v, q) };
    let mut page = empty_page(&v, q.clone(), within);
    let sources = match service(&state, &v).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let purpose = purpose_of(&v);
    let _permit = match state.gate.admit(&v.caller(purpose.map(str::to_string)), &state.limits) {
        Ok(p) => p,
        Err(p) => return problem_page(&v, p),
    };
    let refused = |mut page: ByggesakPage, e: QueryError| match refusal(v.lang, &e) {
        Some((status, message)) => {
            page.error = Some(message);
            v.page(status, &page)
        }
        None => problem_page(&v, crate::properties::problem(e)),
    };
    if q.is_empty() {
        page.error = Some(v.lang.t("bs_invalid").to_string());
        return v.page(StatusCode::BAD_REQUEST, &page);
    }
    // A matrikkel unit has a slash (12/345, 3403-12/345); anything else is an address.
    if !q.contains('/') {
        return match state.engine.properties_by_address(&v.principal, purpose, &q, &sources, CHANNEL).await {
            Ok(found) => {
                page.searched = true;
                page.matches = found.into_iter().map(|m| (m["matrikkel"].clone(), m["address"].clone())).collect();
                v.page(StatusCode::OK, &page)
            }
            Err(e) => refused(page, e),
        };
    }
    let view = match state.engine.property(&v.principal, purpose, &q, &sources, CHANNEL).await {
        Ok(view) => view,
        Err(e) => return refused(page, e),
    };
    let neighbours = if page.citizen {
        None
    } else {
        match state.engine.neighbours(&v.principal, purpose, &view.id, f64::from(within), &sources, CHANNEL).await {
            Ok(n) => Some(n),
            // The property's register row may be out of the visitor's reach while other rows
            // about it are not: then there is no parcel to measure from, and no list.
            Err(QueryError::NotFound(_)) => None,
            Err(e) => return refused(page, e),
        }
    };
    page.q = view.id.clone();
    page.shown = Some(shown(v.lang, &view, neighbours.as_ref(), within, &sources));
    v.page(StatusCode::OK, &page)
}

fn shown(lang: Lang, view: &PropertyView, neighbours: Option<&Neighbours>, within: u32, sources: &PropertySources) -> Shown {
    let register = sources.register.to_string();
    let row = view
        .organizations
        .iter()
        .flat_map(|o| &o.departments)
        .flat_map(|d| &d.datasets)
        .find(|f| f.dataset == register)
        .and_then(|f| f.row_objects().into_iter().next());
    let mut facts = Vec::new();
    if let Some(r) = &row {
        let put = |facts: &mut Vec<(&'static str, String)>, key: &'static str, value: String| {
            if !value.is_empty() {
                facts.push((key, value));
            }
        };
        put(&mut facts, "address", format::plain(r.get(&sources.address)));
        put(
            &mut facts,
            "bs_area",
            r.get("areal_m2").and_then(|v| v.as_f64()).map(|a| format!("{} m²", format::number(lang, a, 0))).unwrap_or_default(),
        );
        put(&mut facts, "bs_owner", format::plain(r.get("eier_navn")));
        put(&mut facts, "bs_owner_org", format::plain(r.get("eier_orgnr")));
        put(
            &mut facts,
            "bs_tax_value",
            r.get("takst").and_then(|v| v.as_f64()).map(|t| format!("{} kr", format::number(lang, t, 0))).unwrap_or_default(),
        );
    }
    let zoning: Vec<ZoningRow> = view
        .zoning
        .iter()
        .map(|z| ZoningRow {
            id: format::plain(z.plan.get("planid")),
            name: format::plain(z.plan.get("plannavn")),
            status: format::plain(z.plan.get("status")),
            decided: z.plan.get("vedtaksdato").map(|d| format::date(lang, &format::plain(Some(d)))).unwrap_or_default(),
            share: format!("{} %", format::number(lang, z.share * 100.0, 1)),
            covered: format!("{} m²", format::number(lang, z.covered_m2, 0)),
        })
        .collect();
    let mut shapes = Vec::new();
    let mut classes = Vec::new();
    let mut labels = Vec::new();
    for z in &view.zoning {
        if let Some(s) = &z.shape {
            shapes.push(s.clone());
            classes.push("plan");
            labels.push(format!("{} {}", lang.t("bs_plan"), format::plain(z.plan.get("plannavn"))));
        }
    }
    if let Some(n) = neighbours {
        for (s, r) in n.shapes.iter().zip(&n.rows) {
            if let Some(s) = s {
                shapes.push(s.clone());
                classes.push("neighbour");
                labels.push(format!("{} {}", lang.t("bs_neighbour"), format::plain(r.get("matrikkel"))));
            }
        }
    }
    if let Some(p) = &view.parcel {
        shapes.push(p.shape.clone());
        classes.push("parcel");
        labels.push(view.id.clone());
    }
    let map_alt = lang
        .t("bs_map_alt")
        .replace("{id}", &view.id)
        .replace("{plans}", &view.zoning.len().to_string())
        .replace("{neighbours}", &neighbours.map_or(0, |n| n.rows.len()).to_string());
    let map = view.parcel.as_ref().map(|_| svg::map_classed(&shapes, &classes, &labels, &map_alt, None));
    Shown {
        id: view.id.clone(),
        facts,
        orgs: org_views(&view.organizations, lang, false),
        zoning,
        map,
        map_alt,
        neighbours: neighbours.map(|n| NeighbourList {
            within: within_text(lang, within),
            rows: neighbour_rows(n),
            truncated: truncated(lang, n, "bs_truncated"),
        }),
    }
}

fn within_text(lang: Lang, within: u32) -> String {
    if within == 0 { lang.t("bs_border").to_string() } else { format!("{within} m") }
}

fn neighbour_rows(n: &Neighbours) -> Vec<NeighbourRow> {
    n.rows
        .iter()
        .map(|r| NeighbourRow {
            matrikkel: format::plain(r.get("matrikkel")),
            address: format::plain(r.get("adresse")),
            owner: [format::plain(r.get("eier_navn")), format::plain(r.get("eier_orgnr"))]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect()
}

/// `POST /byggesak/naboliste` (`csrf`, `matrikkel`, `avstand`, `format`: `csv` or `print`): the
/// neighbour list as a CSV file or a printable page, read anew (and logged) like the page.
pub async fn neighbour_list(State(state): State<AppState>, v: Visitor, body: axum::body::Bytes) -> Response {
    let Principal::User(_) = &v.principal else {
        return match admitted(&v) {
            Err(r) => r,
            Ok(()) => {
                let page = v.chrome(v.lang.t("bs_title"));
                v.page(StatusCode::FORBIDDEN, &super::Message::new(page, v.lang.t("bs_title"), v.lang.t("employees_only").to_string()))
            }
        };
    };
    let f = match v.form(&body) {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let id = f.get("matrikkel").map(|s| s.trim().to_string()).unwrap_or_default();
    let Ok(within) = distance(f.get("avstand").map(String::as_str)) else { return wrong_distance(&v, id) };
    let csv = match f.get("format").map(String::as_str) {
        Some("csv") => true,
        Some("print") | None => false,
        Some(_) => {
            let mut page = empty_page(&v, id.clone(), within);
            page.error = Some(v.lang.t("bs_wrong_format").to_string());
            return v.page(StatusCode::BAD_REQUEST, &page);
        }
    };
    let sources = match service(&state, &v).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let _permit = match state.gate.admit(&v.caller(Some(PURPOSE.to_string())), &state.limits) {
        Ok(p) => p,
        Err(p) => return problem_page(&v, p),
    };
    let list = match state.engine.neighbours(&v.principal, Some(PURPOSE), &id, f64::from(within), &sources, CHANNEL).await {
        Ok(n) => n,
        Err(e) => {
            let mut page = empty_page(&v, id, within);
            return match refusal(v.lang, &e) {
                Some((status, message)) => {
                    page.error = Some(message);
                    v.page(status, &page)
                }
                None => problem_page(&v, crate::properties::problem(e)),
            };
        }
    };
    if csv {
        // A notice sent from a list cut short would miss neighbours without anyone knowing.
        if let Some(message) = truncated(v.lang, &list, "bs_truncated_download") {
            let mut page = empty_page(&v, id, within);
            page.error = Some(message);
            return v.page(StatusCode::CONFLICT, &page);
        }
        let name = format!("naboliste-{}.csv", list.id.replace('/', "-"));
        return (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            ],
            list.csv,
        )
            .into_response();
    }
    let page = PrintPage {
        page: v.chrome(v.lang.t("bs_print_title")),
        id: list.id.clone(),
        within: within_text(v.lang, within),
        today: format::long_day(v.lang, chrono::Utc::now().with_timezone(&chrono_tz::Europe::Oslo).date_naive()),
        rows: neighbour_rows(&list),
        truncated: truncated(v.lang, &list, "bs_truncated"),
    };
    v.page(StatusCode::OK, &page)
}
