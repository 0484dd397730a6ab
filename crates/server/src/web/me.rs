//! Min side (`/min-side`): a citizen's own data and who accessed it, from the same code as the
//! API's `/api/v1/me/*`.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{Chrome, Visitor, query_value};
use crate::auth::CitizenCaller;
use crate::{AppState, Problem};

use super::pages::*;

struct AccessRow {
    when: String,
    /// The minute (local time) and department the row falls in, for grouping and filtering.
    minute: String,
    day: Option<chrono::NaiveDate>,
    department: String,
    who: String,
    why: String,
    /// Each legal basis: its words and its Lovdata address (empty when none is recorded).
    laws: Vec<(String, String)>,
    what: String,
    how: String,
    /// How many identical accesses in the same minute this row stands for.
    times: usize,
}

struct OwnData {
    title: String,
    /// (title from the catalogue's description, technical name).
    headings: Vec<(String, String)>,
    table: Table,
}

#[derive(Template)]
#[template(path = "me.html")]
struct MePage {
    page: Chrome,
    accesses: Vec<AccessRow>,
    /// Accesses in the log before filtering.
    total: usize,
    from: String,
    to: String,
    departments: Vec<Choice>,
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
    let all: Vec<AccessRow> = log.accesses.iter().filter(|a| a.reader.kind != "self").map(|a| access_row(a, v.lang, &names)).collect();
    let total = all.len();
    // Filters: from and to a date (inclusive), and one department.
    let day = |k: &str| query_value(v.query.as_deref(), k).and_then(|d| chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok());
    let (from, to) = (day("fra"), day("til"));
    let department = query_value(v.query.as_deref(), "avdeling").unwrap_or_default();
    let mut departments: Vec<String> = all.iter().map(|a| a.department.clone()).filter(|d| !d.is_empty()).collect();
    departments.sort();
    departments.dedup();
    let mut accesses: Vec<AccessRow> = Vec::new();
    for a in all {
        if from.is_some_and(|f| a.day.is_some_and(|d| d < f)) || to.is_some_and(|t| a.day.is_some_and(|d| d > t)) {
            continue;
        }
        if !department.is_empty() && a.department != department {
            continue;
        }
        // Identical accesses in the same minute are one row, with how many there were (the log
        // is newest first, so a minute's accesses are next to each other).
        let same = accesses
            .iter_mut()
            .rev()
            .take_while(|b| b.minute == a.minute)
            .find(|b| b.who == a.who && b.why == a.why && b.what == a.what && b.how == a.how);
        match same {
            Some(b) => b.times += 1,
            None => accesses.push(a),
        }
    }
    let data = match own_data(&state, &citizen, v.lang).await {
        Ok(d) => d,
        Err(p) => return problem_page(&v, p),
    };
    let page = MePage {
        page: v.chrome(v.lang.t("me_title")),
        accesses,
        total,
        from: from.map(|d| d.to_string()).unwrap_or_default(),
        to: to.map(|d| d.to_string()).unwrap_or_default(),
        departments: choices(departments.into_iter().map(|d| (d.clone(), d)), Some(department.as_str())),
        data,
    };
    v.page(StatusCode::OK, &page)
}

/// Everything about the citizen, dataset by dataset, as a reader of `lang` reads it, with the
/// columns' titles.
async fn own_data(state: &AppState, citizen: &CitizenCaller, lang: super::Lang) -> Result<Vec<OwnData>, Problem> {
    let reads = state.engine.own_data(&citizen.caller.principal, CHANNEL).await.map_err(Problem::from_query)?;
    let mut data = Vec::new();
    for released in reads {
        let r = released.grants[0].dataset().clone();
        let title = state.engine.catalog().dataset(&r).await.map(|m| m.title).unwrap_or_else(|_| r.to_string());
        let described = state.engine.catalog().columns(&r).await.unwrap_or_default();
        let (table, _) = collect_shown(released, 1000, lang).await.map_err(Problem::from_query)?;
        if table.rows.is_empty() {
            continue;
        }
        let headings = table
            .columns
            .iter()
            .map(|n| (described.iter().find(|c| &c.name == n).map(|c| c.description.clone()).unwrap_or_default(), n.clone()))
            .collect();
        data.push(OwnData { title, headings, table });
    }
    Ok(data)
}

/// `GET /min-side/data.csv`: everything about the citizen as one readable CSV for a spreadsheet
/// set to Norwegian (`;`, a byte order mark): a line per value with the dataset, the row, the
/// column's title and the value as the page shows it.
pub async fn me_csv(State(state): State<AppState>, v: Visitor) -> Response {
    use arrow::array::{ArrayRef, StringArray};
    let citizen = match CitizenCaller::try_from(v.caller(None)) {
        Ok(citizen) => citizen,
        Err(p) => return problem_page(&v, p),
    };
    let data = match own_data(&state, &citizen, v.lang).await {
        Ok(d) => d,
        Err(p) => return problem_page(&v, p),
    };
    let mut columns: [Vec<String>; 4] = Default::default();
    for d in &data {
        for (i, row) in d.table.rows.iter().enumerate() {
            for ((title, name), value) in d.headings.iter().zip(row) {
                columns[0].push(d.title.clone());
                columns[1].push((i + 1).to_string());
                columns[2].push(if title.is_empty() { name.clone() } else { title.clone() });
                columns[3].push(value.clone());
            }
        }
    }
    let names = ["me_csv_dataset", "me_csv_row", "me_csv_field", "me_csv_value"];
    let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(
        names.iter().map(|k| arrow::datatypes::Field::new(v.lang.t(k), arrow::datatypes::DataType::Utf8, false)).collect::<Vec<_>>(),
    ));
    let arrays: Vec<ArrayRef> = columns.into_iter().map(|c| std::sync::Arc::new(StringArray::from(c)) as ArrayRef).collect();
    let csv = arrow::record_batch::RecordBatch::try_new(schema, arrays)
        .map_err(|e| tverr_access::QueryError::Output(e.to_string()))
        .and_then(|b| tverr_access::csv_rows_as(&b, true, b';'));
    match csv {
        Ok(body) => {
            let mut bytes = "\u{feff}".as_bytes().to_vec();
            bytes.extend(body);
            (
                [
                    (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (axum::http::header::CONTENT_DISPOSITION, "attachment; filename=\"mine-data.csv\""),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => problem_page(&v, Problem::from_query(e)),
    }
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
        // A parent reading their child's data that names this person too: said as such, never
        // who (attack 9, F4: it read «ansatt»).
        "guardian" => lang.t("me_guardian_reader").to_string(),
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
    let mut laws: Vec<(String, String)> = Vec::new();
    let what = a
        .datasets
        .iter()
        .map(|d| {
            if let Some(h) = d.legal_basis.get("hjemmel").and_then(|h| h.as_str())
                && !laws.iter().any(|(l, _)| l == h)
            {
                let url = d.legal_basis.get("lovdata_url").and_then(|u| u.as_str()).filter(|u| u.starts_with("https://lovdata.no/"));
                laws.push((h.to_string(), url.unwrap_or_default().to_string()));
            }
            let scope = if d.scope == "bulk" { format!(" ({})", lang.t("me_bulk")) } else { String::new() };
            format!("{}{scope}", d.title)
        })
        .collect::<Vec<_>>()
        .join("; ");
    let local = chrono::DateTime::parse_from_rfc3339(&a.at).ok().map(|t| t.with_timezone(&chrono_tz::Europe::Oslo));
    AccessRow {
        when: super::format::moment_text(lang, &a.at),
        minute: local.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| a.at.clone()),
        day: local.map(|t| t.date_naive()),
        department: r
            .department
            .as_ref()
            .map(|d| names.departments.get(&(org.clone(), d.clone())).cloned().unwrap_or_else(|| d.clone()))
            .unwrap_or_default(),
        times: 1,
        who,
        why: a
            .purpose
            .as_ref()
            .map(|p| names.purposes.get(&(org.clone(), p.clone())).cloned().unwrap_or_else(|| p.clone()))
            .unwrap_or_default(),
        laws,
        what,
        how: lang.label("channel", &a.channel),
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
