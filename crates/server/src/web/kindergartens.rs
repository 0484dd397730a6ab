//! `/apne-data/ledige-barnehageplasser`: the open page of free kindergarten places, a table and a
//! map read through the same door as everything else (as the anonymous visitor).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use tverr_access::RowsQuery;
use tverr_core::DatasetRef;
use tverr_policy::Principal;

use super::{Chrome, Visitor, query_value, svg};
use crate::{AppState, Problem};

use super::pages::*;

struct Kindergarten {
    name: String,
    address: String,
    district: String,
    ownership: String,
    ages: String,
    free: String,
    capacity: String,
}

#[derive(Template)]
#[template(path = "kindergartens.html")]
struct Kindergartens {
    page: Chrome,
    ages: Vec<Choice>,
    districts: Vec<Choice>,
    rows: Vec<Kindergarten>,
    map: Option<String>,
    map_alt: String,
    error: Option<String>,
}

/// The open dataset the page shows.
const KINDERGARTENS: &str = "hamar/barnehager";

/// `GET /apne-data/ledige-barnehageplasser?alder=&bydel=`: no log-in; kindergartens with free
/// places, filtered by the child's age and the district, as a table and a map.
pub async fn kindergartens(State(state): State<AppState>, v: Visitor) -> Response {
    let r: DatasetRef = KINDERGARTENS.parse().expect("a valid reference");
    let who = Principal::Anonymous;
    let age = query_value(v.query.as_deref(), "alder").filter(|a| !a.is_empty());
    let district = query_value(v.query.as_deref(), "bydel").filter(|a| !a.is_empty());
    let mut error = None;
    // The districts offered are the dataset's own; a value from elsewhere is refused, not quoted.
    let districts: Vec<String> =
        match state.engine.sql(&who, None, "SELECT DISTINCT bydel FROM hamar.barnehager ORDER BY bydel", CHANNEL).await {
            Ok(released) => match collect(released, 1000).await {
                Ok((t, _)) => t.rows.into_iter().map(|mut r| r.remove(0)).filter(|d| !d.is_empty()).collect(),
                Err(e) => return problem_page(&v, Problem::from_query(e)),
            },
            Err(e) => return problem_page(&v, Problem::from_query(e)),
        };
    let mut filter = vec!["ledige_plasser > 0".to_string()];
    match age.as_deref().map(str::parse::<u8>) {
        Some(Ok(a)) if a <= 5 => filter.push(format!("alder_fra <= {a} AND alder_til >= {a}")),
        Some(_) => error = Some(format!("{}: 0–5", v.lang.t("age"))),
        None => {}
    }
    match &district {
        Some(d) if districts.contains(d) => filter.push(format!("bydel = '{}'", d.replace('\'', "''"))),
        Some(d) => error = Some(format!("{}: {d:?}", v.lang.t("district"))),
        None => {}
    }
    let q = RowsQuery {
        filter: Some(filter.join(" AND ")),
        order_by: vec![("ledige_plasser".into(), true), ("navn".into(), false)],
        limit: Some(1000),
        stable_order: true,
        ..RowsQuery::default()
    };
    let (table, shapes) = match state.engine.rows(&who, None, &r, &q, CHANNEL).await {
        Ok(released) => match collect(released, 1000).await {
            Ok(x) => x,
            Err(e) => return problem_page(&v, Problem::from_query(e)),
        },
        Err(e) => return problem_page(&v, Problem::from_query(e)),
    };
    let col = |name: &str| table.columns.iter().position(|c| c == name);
    let cell = |row: &Vec<String>, name: &str| col(name).map(|i| row[i].clone()).unwrap_or_default();
    let rows: Vec<Kindergarten> = table
        .rows
        .iter()
        .map(|row| Kindergarten {
            name: cell(row, "navn"),
            address: cell(row, "adresse"),
            district: cell(row, "bydel"),
            ownership: cell(row, "eierform"),
            ages: format!("{}–{}", cell(row, "alder_fra"), cell(row, "alder_til")),
            free: cell(row, "ledige_plasser"),
            capacity: cell(row, "kapasitet"),
        })
        .collect();
    let labels: Vec<String> = rows.iter().map(|k| format!("{}: {} {}", k.name, k.free, v.lang.t("free_places").to_lowercase())).collect();
    let map_alt = v.lang.t("map_alt").replace("{n}", &shapes.len().to_string());
    let outline = outline(&state, r.org.as_str()).await;
    let page = Kindergartens {
        page: v.chrome(v.lang.t("kg_title")),
        ages: choices((0..=5).map(|a| (a.to_string(), format!("{a} {}", v.lang.t("years")))), age.as_deref()),
        districts: choices(districts.into_iter().map(|d| (d.clone(), d)), district.as_deref()),
        map: (!shapes.is_empty()).then(|| svg::map(&shapes, &labels, &map_alt, outline.as_ref())),
        map_alt,
        rows,
        error,
    };
    v.page(if page.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, &page)
}
