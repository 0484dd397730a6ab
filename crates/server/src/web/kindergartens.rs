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
    kind: String,
    hours: String,
    ages: String,
    free: String,
    capacity: String,
    distance: String,
}

#[derive(Template)]
#[template(path = "kindergartens.html")]
struct Kindergartens {
    page: Chrome,
    ages: Vec<Choice>,
    districts: Vec<Choice>,
    kinds: Vec<Choice>,
    opens: Vec<Choice>,
    closes: Vec<Choice>,
    address: String,
    from: Option<String>,
    rows: Vec<Kindergarten>,
    map: Option<String>,
    map_alt: String,
    error: Option<String>,
}

/// The open dataset the page shows.
const KINDERGARTENS: &str = "hamar/barnehager";

/// The opening times offered as filters ("opens at the latest", "closes at the earliest").
const OPENS: &[&str] = &["06:45", "07:00", "07:15", "07:30"];
const CLOSES: &[&str] = &["16:15", "16:30", "16:45", "17:00"];

/// The middle of the street an address names (`Storgata 12` → Storgata), from the open street
/// register `{org}/gater`: the street whose name the address starts with (the longest such).
async fn street_of(state: &AppState, org: &str, address: &str) -> Option<(String, geo::Point)> {
    let r: DatasetRef = format!("{org}/gater").parse().ok()?;
    let q = RowsQuery { limit: Some(10_000), ..RowsQuery::default() };
    let released = state.engine.rows(&Principal::Anonymous, None, &r, &q, CHANNEL).await.ok()?;
    let (table, shapes) = collect(released, 10_000).await.ok()?;
    let name = table.columns.iter().position(|c| c == "gatenavn")?;
    let wanted = address.trim().to_lowercase();
    table
        .rows
        .iter()
        .zip(shapes)
        .filter(|(row, _)| wanted.starts_with(&row[name].to_lowercase()))
        .max_by_key(|(row, _)| row[name].len())
        .and_then(|(row, shape)| match shape {
            geo::Geometry::Point(p) => Some((row[name].clone(), p)),
            _ => None,
        })
}

/// `GET /apne-data/ledige-barnehageplasser?alder=&bydel=&type=&apner=&stenger=&adresse=`: no
/// log-in; kindergartens with free places, filtered by the child's age, the district, the kind
/// and the opening hours, nearest first from an address when one is given, as a table and a
/// map.
pub async fn kindergartens(State(state): State<AppState>, v: Visitor) -> Response {
    let r: DatasetRef = KINDERGARTENS.parse().expect("a valid reference");
    let who = Principal::Anonymous;
    let age = query_value(v.query.as_deref(), "alder").filter(|a| !a.is_empty());
    let district = query_value(v.query.as_deref(), "bydel").filter(|a| !a.is_empty());
    let kind = query_value(v.query.as_deref(), "type").filter(|a| !a.is_empty());
    let opens = query_value(v.query.as_deref(), "apner").filter(|a| !a.is_empty());
    let closes = query_value(v.query.as_deref(), "stenger").filter(|a| !a.is_empty());
    let address = query_value(v.query.as_deref(), "adresse").map(|a| a.trim().chars().take(100).collect::<String>()).unwrap_or_default();
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
    let kinds: Vec<String> =
        match state.engine.sql(&who, None, "SELECT DISTINCT barnehagetype FROM hamar.barnehager ORDER BY barnehagetype", CHANNEL).await {
            Ok(released) => match collect(released, 1000).await {
                Ok((t, _)) => t.rows.into_iter().map(|mut r| r.remove(0)).filter(|d| !d.is_empty()).collect(),
                Err(e) => return problem_page(&v, Problem::from_query(e)),
            },
            Err(e) => return problem_page(&v, Problem::from_query(e)),
        };
    let mut filter = vec!["ledige_plasser > 0".to_string()];
    // Values from the lists offered only; anything else is refused, never quoted into a filter.
    match &kind {
        Some(k) if kinds.contains(k) => filter.push(format!("barnehagetype = '{}'", k.replace('\'', "''"))),
        Some(k) => error = Some(format!("{}: {k:?}", v.lang.t("kg_kind"))),
        None => {}
    }
    match &opens {
        Some(t) if OPENS.contains(&t.as_str()) => filter.push(format!("apner <= '{t}'")),
        Some(t) => error = Some(format!("{}: {t:?}", v.lang.t("kg_opens"))),
        None => {}
    }
    match &closes {
        Some(t) if CLOSES.contains(&t.as_str()) => filter.push(format!("stenger >= '{t}'")),
        Some(t) => error = Some(format!("{}: {t:?}", v.lang.t("kg_closes"))),
        None => {}
    }
    let from = if address.is_empty() { None } else { street_of(&state, r.org.as_str(), &address).await };
    if !address.is_empty() && from.is_none() {
        error = Some(v.lang.t("kg_address_unknown").replace("{a}", &address));
    }
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
    let metres = |shape: Option<&geo::Geometry>| -> Option<f64> {
        use geo::Distance;
        let (_, point) = from.as_ref()?;
        match shape? {
            geo::Geometry::Point(p) => Some(geo::Euclidean.distance(*point, *p)),
            _ => None,
        }
    };
    let mut found: Vec<(Option<f64>, Kindergarten, Option<geo::Geometry>)> = table
        .rows
        .iter()
        .zip(shapes.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(row, shape)| {
            let d = metres(shape);
            let k = Kindergarten {
                name: cell(row, "navn"),
                address: cell(row, "adresse"),
                district: cell(row, "bydel"),
                ownership: cell(row, "eierform"),
                kind: cell(row, "barnehagetype"),
                hours: format!("{}–{}", cell(row, "apner"), cell(row, "stenger")),
                ages: format!("{}–{}", cell(row, "alder_fra"), cell(row, "alder_til")),
                free: cell(row, "ledige_plasser"),
                capacity: cell(row, "kapasitet"),
                distance: d.map(|m| format!("{} km", super::format::number(v.lang, m / 1000.0, 1))).unwrap_or_default(),
            };
            (d, k, shape.cloned())
        })
        .collect();
    // Nearest first when an address was given (the order of the read otherwise).
    if from.is_some() {
        found.sort_by(|a, b| a.0.unwrap_or(f64::MAX).total_cmp(&b.0.unwrap_or(f64::MAX)));
    }
    let shapes: Vec<geo::Geometry> = found.iter().filter_map(|(_, _, s)| s.clone()).collect();
    let rows: Vec<Kindergarten> = found.into_iter().map(|(_, k, _)| k).collect();
    let labels: Vec<String> = rows.iter().map(|k| format!("{}: {} {}", k.name, k.free, v.lang.t("free_places").to_lowercase())).collect();
    let map_alt = v.lang.t("map_alt").replace("{n}", &shapes.len().to_string());
    let outline = outline(&state, r.org.as_str()).await;
    let page = Kindergartens {
        page: v.chrome(v.lang.t("kg_title")),
        ages: choices((0..=5).map(|a| (a.to_string(), format!("{a} {}", v.lang.t("years")))), age.as_deref()),
        districts: choices(districts.into_iter().map(|d| (d.clone(), d)), district.as_deref()),
        kinds: choices(kinds.into_iter().map(|d| (d.clone(), d)), kind.as_deref()),
        opens: choices(OPENS.iter().map(|t| (t.to_string(), t.replace(':', "."))), opens.as_deref()),
        closes: choices(CLOSES.iter().map(|t| (t.to_string(), t.replace(':', "."))), closes.as_deref()),
        from: from.as_ref().map(|(street, _)| street.clone()),
        address,
        map: (!shapes.is_empty()).then(|| {
            // The street measured from, marked apart from the kindergartens.
            let mut all = shapes.clone();
            let mut classes = vec!["kindergarten"; shapes.len()];
            let mut titles = labels.clone();
            if let Some((street, point)) = &from {
                all.push(geo::Geometry::Point(*point));
                classes.push("origin");
                titles.push(street.clone());
            }
            svg::map_classed(&all, &classes, &titles, &map_alt, outline.as_ref())
        }),
        map_alt,
        rows,
        error,
    };
    v.page(if page.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, &page)
}
