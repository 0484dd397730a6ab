//! Services for a citizen and their children, and for the kindergarten admission:
//!
//! - `GET /api/v1/me/children`: my children under 16 (by the register of parental
//!   responsibility; none with a protected address);
//! - `GET /api/v1/me/health`: my health and care services (every dataset with special-category
//!   columns: rows about me, and about my children under 16), with the department that holds
//!   each and its legal basis, and who in the municipality has read them (the access log,
//!   special-category reads only, with the employee's name as the patient records act § 18
//!   requires);
//! - `GET /api/v1/me/kindergarten`: for each child of kindergarten age, the current place, the
//!   applications and their status, the places offered, and the monthly price (the national
//!   maximum price, at most 6 % of the household's income, sibling reduction);
//! - `GET /api/v1/kindergartens/admission`: for the admission case worker (purpose
//!   `barnehageopptak`), per kindergarten the places free and the applicants by age group.
//!
//! Every read goes through the engine: a citizen's own rows under their own right, a child's
//! under the parent's ([`tverr_access::Engine::ward_data`]), a case worker's under their grants.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use tverr_access::{Channel, QueryError, RecordKind, RowsQuery, Ward, released_rows};
use tverr_core::{ColumnCategory, DatasetRef, Fodselsnummer};
use tverr_policy::Principal;

use crate::auth::{Authenticated, CitizenCaller};
use crate::{AppState, Problem};

type Row = serde_json::Map<String, serde_json::Value>;

/// The datasets the services read, by the demo's names in the citizen's kommune.
struct Sources {
    register: DatasetRef,
    places: DatasetRef,
    applications: DatasetRef,
    income: DatasetRef,
    prices: DatasetRef,
    kindergartens: DatasetRef,
}

fn sources(org: &str) -> Sources {
    let r = |slug: &str| format!("{org}/{slug}").parse::<DatasetRef>().expect("valid names");
    Sources {
        register: r("innbyggere"),
        places: r("barnehageplasser"),
        applications: r("barnehagesoknader"),
        income: r("husholdningsinntekt"),
        prices: r("barnehagepriser"),
        kindergartens: r("barnehager"),
    }
}

/// One of the citizen's children (under 16, by the register of parental responsibility).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Child {
    /// The child's person number.
    pub pid: String,
    /// First name, from the population register.
    pub name: String,
    /// Age in whole years.
    pub age: i32,
    /// Date of birth.
    pub birth_date: chrono::NaiveDate,
}

/// The citizen's children under 16, with their first names (each name read is logged as the
/// parent's read of the child's register row).
pub(crate) async fn children(state: &AppState, who: &Principal, channel: Channel) -> Result<Vec<Child>, Problem> {
    let wards: Vec<Ward> = state.engine.wards(who).await.map_err(Problem::from_query)?;
    let org = crate::properties::home_org(state, who).await?;
    let register = sources(&org).register;
    let mut out = Vec::new();
    for w in wards {
        let reads =
            state.engine.ward_data(who, &w.pid, Some(std::slice::from_ref(&register)), channel).await.map_err(Problem::from_query)?;
        let rows = released_rows(reads, 10).await.map_err(Problem::from_query)?;
        let name = rows.values().flatten().find_map(|r| r.get("fornavn").and_then(|v| v.as_str()).map(str::to_string)).unwrap_or_default();
        out.push(Child { pid: w.pid, name, age: w.age, birth_date: w.birth_date });
    }
    Ok(out)
}

/// My children under 16, as the register of parental responsibility names them.
#[utoipa::path(get, path = "/api/v1/me/children", tag = "citizens",
    responses((status = 200, description = "My children under 16 (none with a protected address), youngest first", body = Vec<Child>)),
    security(("bearer" = [])))]
pub async fn my_children(
    State(state): State<AppState>,
    citizen: CitizenCaller,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<Child>>, Problem> {
    crate::properties::parameters(raw.as_deref(), &["purpose"])?;
    let _permit = state.gate.admit(&citizen.caller, &state.limits)?;
    children(&state, &citizen.caller.principal, Channel::HttpMe).await.map(Json)
}

/// Whose data a section is.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Whose {
    /// `me` or `child`.
    pub kind: &'static str,
    /// The child, for `child`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub child: Option<Child>,
}

/// One dataset's rows about me or my child.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HeldData {
    /// Whose data.
    pub whose: Whose,
    /// `org/dataset`.
    pub dataset: String,
    /// Title.
    pub title: String,
    /// The department that holds it.
    pub department: String,
    /// The department's name.
    pub department_name: String,
    /// The legal basis it is kept under (`hjemmel`, `lovdata_url`), when recorded.
    #[schema(value_type = Option<Object>)]
    pub legal_basis: Option<serde_json::Value>,
    /// The rows.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Row>,
}

/// Who in the municipality has read health data about me or my child.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthAccess {
    /// Whose data was read.
    pub whose: Whose,
    /// The access, as in the citizen's access log (with the employee's name).
    pub access: crate::me::Access,
}

/// My health and care services and who has read them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthView {
    /// The rows about me and my children under 16 in every dataset with special-category data.
    pub services: Vec<HeldData>,
    /// Every read of those datasets that named me or my children, newest first.
    pub accesses: Vec<HealthAccess>,
}

/// The datasets with special-category columns (health and care data).
async fn special_datasets(state: &AppState) -> Result<Vec<DatasetRef>, Problem> {
    let catalog = state.engine.catalog();
    let mut out = Vec::new();
    for d in catalog.datasets().await.map_err(Problem::from_store)? {
        let Ok(r) = d.reference().parse::<DatasetRef>() else { continue };
        if catalog.columns(&r).await.map_err(Problem::from_store)?.iter().any(|c| c.category == ColumnCategory::SpecialCategory) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Rows read for me or a child, per dataset, with the dataset's department and legal basis.
async fn held(state: &AppState, whose: &Whose, rows: BTreeMap<DatasetRef, Vec<Row>>) -> Result<Vec<HeldData>, Problem> {
    let catalog = state.engine.catalog();
    let mut out = Vec::new();
    for (r, rows) in rows {
        if rows.is_empty() {
            continue;
        }
        let meta = catalog.dataset(&r).await.map_err(Problem::from_store)?;
        let department_name =
            catalog.department(&meta.org, &meta.department).await.map(|d| d.name).unwrap_or_else(|_| meta.department.clone());
        let legal_basis = match &meta.legal_basis {
            Some(slug) => state.engine.policy().legal_basis(&meta.org, slug).await.ok().and_then(|b| serde_json::to_value(b).ok()),
            None => None,
        };
        out.push(HeldData {
            whose: whose.clone(),
            dataset: r.to_string(),
            title: meta.title,
            department: meta.department,
            department_name,
            legal_basis,
            rows,
        });
    }
    Ok(out)
}

/// The health view of a citizen, read (and logged) on `channel`.
pub(crate) async fn health_of(state: &AppState, citizen: &CitizenCaller, channel: Channel) -> Result<HealthView, Problem> {
    let who = &citizen.caller.principal;
    let special = special_datasets(state).await?;
    let me = Whose { kind: "me", child: None };
    let own = state.engine.own_data_in(who, Some(&special), channel).await.map_err(Problem::from_query)?;
    let mut services = held(state, &me, released_rows(own, 1000).await.map_err(Problem::from_query)?).await?;
    let children = children(state, who, channel).await?;
    for child in &children {
        let whose = Whose { kind: "child", child: Some(child.clone()) };
        let reads = state.engine.ward_data(who, &child.pid, Some(&special), channel).await.map_err(Problem::from_query)?;
        services.extend(held(state, &whose, released_rows(reads, 1000).await.map_err(Problem::from_query)?).await?);
    }
    // Who has read it: the access logs of me and my children, special-category reads only.
    let details = serde_json::json!({"what": "health access log", "children": children.len()});
    state.engine.log_event(RecordKind::CitizenRead, who, channel, details).await.map_err(Problem::from_query)?;
    let special_names: Vec<String> = special.iter().map(ToString::to_string).collect();
    let mut accesses = Vec::new();
    let mut subjects = vec![(me, citizen.pid().to_string())];
    subjects.extend(children.into_iter().map(|c| (Whose { kind: "child", child: Some(c.clone()) }, c.pid)));
    for (whose, pid) in subjects {
        for mut a in crate::me::access_log_for(state, &pid).await?.accesses {
            a.datasets.retain(|d| special_names.contains(&d.dataset));
            // Who in the municipality: not citizens (the asker, or another parent, who may be
            // protected and whose reads would tell when they are about).
            if !a.datasets.is_empty() && !matches!(a.reader.kind.as_str(), "self" | "guardian") {
                accesses.push(HealthAccess { whose: whose.clone(), access: a });
            }
        }
    }
    accesses.sort_by(|a, b| b.access.at.cmp(&a.access.at));
    Ok(HealthView { services, accesses })
}

/// My health and care services, my children's, and who has read them.
#[utoipa::path(get, path = "/api/v1/me/health", tag = "citizens",
    responses((status = 200, description = "My and my children's health and care services, and who in the municipality has read them", body = HealthView)),
    security(("bearer" = [])))]
pub async fn my_health(
    State(state): State<AppState>,
    citizen: CitizenCaller,
    RawQuery(raw): RawQuery,
) -> Result<Json<HealthView>, Problem> {
    crate::properties::parameters(raw.as_deref(), &["purpose"])?;
    let _permit = state.gate.admit(&citizen.caller, &state.limits)?;
    health_of(&state, &citizen, Channel::HttpMe).await.map(Json)
}

/// What a month in kindergarten costs a household, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Price {
    /// The national maximum price for a full-time place, per month (NOK).
    pub maximum: f64,
    /// The place's share of full time (hours per week over 41).
    pub share_of_full_time: f64,
    /// The household's income the reduction is computed from, when known.
    pub income: Option<f64>,
    /// What the income allows at most per month (the percentage of income over the months paid).
    pub income_cap: Option<f64>,
    /// The child's place among the household's children in kindergarten (1 = the oldest).
    pub sibling: usize,
    /// The sibling reduction applied, in per cent.
    pub sibling_reduction: f64,
    /// What the household pays per month for this child (NOK, whole kroner).
    pub monthly: f64,
}

/// One child's kindergarten matters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChildKindergarten {
    /// The child.
    pub child: Child,
    /// The current place (the place register's rows).
    #[schema(value_type = Vec<Object>)]
    pub places: Vec<Row>,
    /// Applications and their status.
    #[schema(value_type = Vec<Object>)]
    pub applications: Vec<Row>,
    /// Offers waiting for an answer (applications with status `Tilbud sendt`).
    #[schema(value_type = Vec<Object>)]
    pub offers: Vec<Row>,
    /// The monthly price of the current place, when the child has one.
    pub price: Option<Price>,
}

/// My children's kindergarten places, applications, offers and prices.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KindergartenView {
    /// Per child aged 0–6, youngest first.
    pub children: Vec<ChildKindergarten>,
    /// The price rules used (the open table `barnehagepriser`).
    #[schema(value_type = Option<Object>)]
    pub rules: Option<Row>,
}

fn number(row: &Row, column: &str) -> Option<f64> {
    match row.get(column)? {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.replace(',', ".").trim().parse().ok(),
        _ => None,
    }
}

/// The monthly price of each place, by the rules: the maximum price pro rata for hours, at most
/// the share of income over the months paid, less the sibling reduction (the oldest child pays
/// in full).
pub(crate) fn prices(rules: &Row, income: Option<f64>, places: &[(usize, f64)]) -> BTreeMap<usize, Price> {
    let maximum = number(rules, "makspris_per_maaned").unwrap_or(0.0);
    let months = number(rules, "betalingsmaaneder").unwrap_or(11.0).max(1.0);
    let percent = number(rules, "maks_andel_av_inntekt_prosent").unwrap_or(100.0);
    let second = number(rules, "soskenmoderasjon_barn_2_prosent").unwrap_or(0.0);
    let third = number(rules, "soskenmoderasjon_barn_3_prosent").unwrap_or(0.0);
    let income_cap = income.map(|i| i * percent / 100.0 / months);
    let mut out = BTreeMap::new();
    for (order, (child, hours)) in places.iter().enumerate() {
        let share = (hours / 41.0).clamp(0.0, 1.0);
        let sibling = order + 1;
        let sibling_reduction = match sibling {
            1 => 0.0,
            2 => second,
            _ => third,
        };
        let base = (maximum * share).min(income_cap.unwrap_or(f64::INFINITY));
        let monthly = (base * (1.0 - sibling_reduction / 100.0)).round();
        out.insert(*child, Price { maximum, share_of_full_time: share, income, income_cap, sibling, sibling_reduction, monthly });
    }
    out
}

/// The kindergarten view of a citizen, read (and logged) on `channel`.
pub(crate) async fn kindergarten_of(state: &AppState, citizen: &CitizenCaller, channel: Channel) -> Result<KindergartenView, Problem> {
    let who = &citizen.caller.principal;
    let org = crate::properties::home_org(state, who).await?;
    let s = sources(&org);
    let children: Vec<Child> = children(state, who, channel).await?.into_iter().filter(|c| c.age <= 6).collect();
    let rules = match state
        .engine
        .rows(&Principal::Anonymous, None, &s.prices, &RowsQuery { limit: Some(10), ..RowsQuery::default() }, channel)
        .await
    {
        Ok(r) => released_rows(vec![r], 10).await.map_err(Problem::from_query)?.into_values().flatten().next(),
        Err(QueryError::NotFound(_)) => None,
        Err(e) => return Err(Problem::from_query(e)),
    };
    let income = if children.is_empty() {
        None
    } else {
        let own = state.engine.own_data_in(who, Some(std::slice::from_ref(&s.income)), channel).await.map_err(Problem::from_query)?;
        released_rows(own, 10).await.map_err(Problem::from_query)?.into_values().flatten().find_map(|r| number(&r, "samlet_inntekt"))
    };
    let mut out = Vec::new();
    for child in children {
        let datasets = [s.places.clone(), s.applications.clone()];
        let reads = state.engine.ward_data(who, &child.pid, Some(&datasets), channel).await.map_err(Problem::from_query)?;
        let mut rows = released_rows(reads, 100).await.map_err(Problem::from_query)?;
        let places = rows.remove(&s.places).unwrap_or_default();
        let applications = rows.remove(&s.applications).unwrap_or_default();
        let offers = applications.iter().filter(|a| a.get("status").and_then(|v| v.as_str()) == Some("Tilbud sendt")).cloned().collect();
        out.push(ChildKindergarten { child, places, applications, offers, price: None });
    }
    // Prices: the oldest child with a place pays in full, the next ones less.
    if let Some(rules) = &rules {
        let mut placed: Vec<(usize, f64, chrono::NaiveDate)> = out
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.places.first().map(|p| (i, number(p, "timer_per_uke").unwrap_or(41.0), c.child.birth_date)))
            .collect();
        placed.sort_by_key(|(_, _, born)| *born);
        let order: Vec<(usize, f64)> = placed.iter().map(|(i, h, _)| (*i, *h)).collect();
        for (i, price) in prices(rules, income, &order) {
            out[i].price = Some(price);
        }
    }
    Ok(KindergartenView { children: out, rules })
}

/// My children's kindergarten places, applications, offers and prices.
#[utoipa::path(get, path = "/api/v1/me/kindergarten", tag = "citizens",
    responses((status = 200, description = "Per child of kindergarten age: the place, the applications and offers, and the monthly price", body = KindergartenView)),
    security(("bearer" = [])))]
pub async fn my_kindergarten(
    State(state): State<AppState>,
    citizen: CitizenCaller,
    RawQuery(raw): RawQuery,
) -> Result<Json<KindergartenView>, Problem> {
    crate::properties::parameters(raw.as_deref(), &["purpose"])?;
    let _permit = state.gate.admit(&citizen.caller, &state.limits)?;
    kindergarten_of(&state, &citizen, Channel::HttpMe).await.map(Json)
}

/// One kindergarten in the admission overview.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdmissionKindergarten {
    /// Name.
    pub name: String,
    /// The ages it takes (`1–5`).
    pub ages: String,
    /// Places free now.
    pub free: i64,
    /// Capacity.
    pub capacity: i64,
    /// Applicants who want it first, by age group (`0–2`, `3–5`), each with the application's
    /// rows as the case worker may see them.
    #[schema(value_type = Object)]
    pub applicants: BTreeMap<String, Vec<Row>>,
}

/// The admission overview: per kindergarten, the places free and the applicants by age group.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Admission {
    /// The kindergartens, most applicants first.
    pub kindergartens: Vec<AdmissionKindergarten>,
}

/// The age group of an applicant on the admission day (the coming 1 August): `0–2` or `3–5`.
fn age_group(pid: &str, day: chrono::NaiveDate) -> String {
    match Fodselsnummer::parse(pid).map(|f| f.age_on(day)) {
        Ok(age) if age <= 2 => "0–2".into(),
        Ok(_) => "3–5".into(),
        Err(_) => "?".into(),
    }
}

/// The admission overview for `who`, read for `purpose` on `channel`.
pub(crate) async fn admission_of(state: &AppState, who: &Principal, purpose: Option<&str>, channel: Channel) -> Result<Admission, Problem> {
    let org = crate::properties::home_org(state, who).await?;
    let s = sources(&org);
    let all = RowsQuery { limit: Some(100_000), ..RowsQuery::default() };
    let kindergartens = state.engine.rows(who, purpose, &s.kindergartens, &all, channel).await.map_err(Problem::from_query)?;
    let applications = state.engine.rows(who, purpose, &s.applications, &all, channel).await.map_err(Problem::from_query)?;
    let kindergartens =
        released_rows(vec![kindergartens], 100_000).await.map_err(Problem::from_query)?.into_values().flatten().collect::<Vec<_>>();
    let applications =
        released_rows(vec![applications], 100_000).await.map_err(Problem::from_query)?.into_values().flatten().collect::<Vec<_>>();
    let today = chrono::Utc::now().date_naive();
    let august = chrono::NaiveDate::from_ymd_opt(chrono::Datelike::year(&today), 8, 1).expect("valid");
    let day = if today > august { august.with_year_plus_one() } else { august };
    let text = |r: &Row, c: &str| r.get(c).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    let mut out: Vec<AdmissionKindergarten> = kindergartens
        .iter()
        .map(|k| {
            let name = text(k, "navn");
            let mut applicants: BTreeMap<String, Vec<Row>> = BTreeMap::new();
            for a in applications.iter().filter(|a| text(a, "onsket_barnehage") == name && text(a, "status") != "Takket ja") {
                applicants.entry(age_group(&text(a, "barn_fnr"), day)).or_default().push(a.clone());
            }
            AdmissionKindergarten {
                ages: format!("{}–{}", number(k, "alder_fra").unwrap_or(0.0), number(k, "alder_til").unwrap_or(5.0)),
                free: number(k, "ledige_plasser").unwrap_or(0.0) as i64,
                capacity: number(k, "kapasitet").unwrap_or(0.0) as i64,
                name,
                applicants,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        let n = |k: &AdmissionKindergarten| k.applicants.values().map(Vec::len).sum::<usize>();
        n(b).cmp(&n(a)).then(a.name.cmp(&b.name))
    });
    Ok(Admission { kindergartens: out })
}

/// The kindergarten admission overview, for the admission case worker.
#[utoipa::path(get, path = "/api/v1/kindergartens/admission", tag = "services",
    params(("purpose" = Option<String>, Query, description = "The purpose, e.g. barnehageopptak (or the Tverr-Purpose header)")),
    responses((status = 200, description = "Per kindergarten: places free and applicants by age group", body = Admission)),
    security(("bearer" = [])))]
pub async fn kindergarten_admission(
    State(state): State<AppState>,
    who: Authenticated,
    RawQuery(raw): RawQuery,
) -> Result<Json<Admission>, Problem> {
    crate::properties::parameters(raw.as_deref(), &["purpose"])?;
    let caller = who.caller;
    if matches!(caller.principal, Principal::Citizen(_)) {
        return Err(Problem::new(crate::ProblemKind::Forbidden, "the admission overview is for the kindergarten admission's case workers"));
    }
    let _permit = state.gate.admit(&caller, &state.limits)?;
    admission_of(&state, &caller.principal, caller.purpose.as_deref(), Channel::HttpRows).await.map(Json)
}

trait NextYear {
    fn with_year_plus_one(self) -> Self;
}

impl NextYear for chrono::NaiveDate {
    fn with_year_plus_one(self) -> Self {
        chrono::Datelike::with_year(&self, chrono::Datelike::year(&self) + 1).unwrap_or(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Row {
        serde_json::from_value(serde_json::json!({
            "makspris_per_maaned": 2000, "betalingsmaaneder": 11, "maks_andel_av_inntekt_prosent": 6,
            "soskenmoderasjon_barn_2_prosent": 30, "soskenmoderasjon_barn_3_prosent": 50,
        }))
        .unwrap()
    }

    #[test]
    fn the_price_follows_the_national_rules() {
        // A high income pays the maximum; the second child 30 % less, the third 50 % less.
        let p = prices(&rules(), Some(1_000_000.0), &[(0, 41.0), (1, 41.0), (2, 41.0)]);
        assert_eq!([p[&0].monthly, p[&1].monthly, p[&2].monthly], [2000.0, 1400.0, 1000.0]);
        // 6 % of 300 000 over 11 months is 1 636,36: the income caps the price.
        let p = prices(&rules(), Some(300_000.0), &[(0, 41.0)]);
        assert_eq!(p[&0].monthly, 1636.0);
        // A part-time place (20 of 41 hours) pays its share; no income known means no cap.
        let p = prices(&rules(), None, &[(0, 20.0)]);
        assert_eq!(p[&0].monthly, 976.0);
        assert_eq!(p[&0].income_cap, None);
    }

    #[test]
    fn applicants_are_grouped_by_age_on_the_admission_day() {
        let f = Fodselsnummer::from_parts("149023", 935).or_else(|| Fodselsnummer::from_parts("149023", 936)).unwrap();
        let day = chrono::NaiveDate::from_ymd_opt(2026, 8, 1).unwrap();
        assert_eq!(age_group(f.as_str(), day), "0–2");
        let day = chrono::NaiveDate::from_ymd_opt(2027, 8, 1).unwrap();
        assert_eq!(age_group(f.as_str(), day), "3–5");
    }
}
