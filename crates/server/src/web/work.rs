//! The pages of employees' work: agreements (request, the steward's inbox, the lists), the case
//! worker's look-up, and the auditor's search and chain verification. Each calls the same code as
//! its API route, as the session's user, logged on channel `web`.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tverr_access::{Found, LookupOrg, QueryError};
use tverr_core::SubjectKind;
use tverr_policy::{Action, Agreement, AgreementState, Basis, Policy, Principal, Role, User};

use super::pages::{Choice, problem_page, role_or_page};
use super::{Chrome, Lang, Message, Visitor, query_value};
use crate::auth::{Auditor, SignedIn};
use crate::{AppState, Problem};
use tverr_access::Channel;

const CHANNEL: Channel = Channel::Web;

/// The signed-in user, or the page that asks them to log in (or says the page is not theirs).
fn user_or_page(v: &Visitor, title_key: &str) -> Result<User, Response> {
    match &v.principal {
        Principal::User(u) => Ok(u.user().clone()),
        Principal::Anonymous => {
            Err(Redirect::to(&format!("/logg-inn?next={}", url::form_urlencoded::byte_serialize(v.path.as_bytes()).collect::<String>()))
                .into_response())
        }
        _ => {
            let page = v.chrome(v.lang.t(title_key));
            Err(v.page(StatusCode::FORBIDDEN, &Message::new(page, v.lang.t(title_key), v.lang.t("employees_only").to_string())))
        }
    }
}

/// [`user_or_page`] for a form post: the user and the form's fields, or the page that refuses.
fn user_and_form(v: &Visitor, title_key: &str, body: &[u8]) -> Result<(User, HashMap<String, String>), Response> {
    let u = user_or_page(v, title_key)?;
    Ok((u, v.form(body)?))
}

struct AgreementRow {
    id: i64,
    provider: String,
    consumer: String,
    datasets: String,
    purposes: String,
    legal_basis: String,
    period: String,
    state_key: String,
    /// Actions this user may take: (action, label key).
    actions: Vec<(&'static str, &'static str)>,
    /// The changes, oldest first: (when, state in words, who, note).
    history: Vec<(String, String, String, String)>,
}

/// The agreement list's filters: state, dataset and counterpart (`status`, `i_datasett`,
/// `motpart`), each with the choices the visitor's agreements offer.
#[derive(Default)]
struct Filters {
    status: Vec<Choice>,
    datasets: Vec<Choice>,
    parties: Vec<Choice>,
    /// Whether any filter is set.
    active: bool,
}

#[derive(Template)]
#[template(path = "agreements.html")]
struct AgreementsPage {
    page: Chrome,
    inbox: Vec<AgreementRow>,
    mine_requested: Vec<AgreementRow>,
    active: Vec<AgreementRow>,
    expired: Vec<AgreementRow>,
    ended: Vec<AgreementRow>,
    notice: Option<String>,
    error: Option<String>,
    /// Stewards and admins request agreements; other employees ask them.
    may_request: bool,
    form: RequestForm,
    filters: Filters,
    /// The masks the request form offers.
    masks: [&'static str; 4],
}

/// The request form's values and choices.
#[derive(Default)]
struct RequestForm {
    consumer: String,
    /// (`org/department`, name) of the departments the visitor may ask for: a steward's own, an
    /// admin's organisation's.
    consumers: Vec<(String, String)>,
    /// (reference, title) of each dataset that may be asked for.
    datasets: Vec<(String, String)>,
    dataset: String,
    columns: String,
    masks: String,
    purposes: Vec<(String, String)>,
    purpose: String,
    legal_bases: Vec<(String, String)>,
    legal_basis: String,
    valid_from: String,
    valid_to: String,
    /// A request from the same department for the same dataset that is waiting.
    pending: Option<i64>,
    /// The chosen dataset's columns to pick from.
    choices: Vec<ColumnChoice>,
    /// A refusal of the form: the field it concerns (`dataset`, `columns`, `valid_from`,
    /// `valid_to`, or empty for the request as a whole) and what is wrong.
    problem: Option<(&'static str, String)>,
}

/// A column of the chosen dataset in the request form: picked or not, and its mask.
struct ColumnChoice {
    name: String,
    title: String,
    category: String,
    /// Special categories are asked for one by one, never by default.
    special: bool,
    picked: bool,
    mask: String,
}

impl ColumnChoice {
    /// Whether `mask` is this column's mask (`year-only` and `year_only` alike).
    fn has(&self, mask: &str) -> bool {
        self.mask.replace('_', "-") == mask
    }
}

/// The masks the request form offers, one vocabulary with the dataset page's.
const MASKS: [&str; 4] = ["redact", "partial", "hmac", "year-only"];

/// The row of one agreement, with the actions the policy lets `who` take on it.
/// The names of purposes by their slug, and of departments by `org/department`, as the
/// agreements page shows them.
#[derive(Default)]
struct Names {
    purposes: BTreeMap<String, String>,
    parties: BTreeMap<String, String>,
}

fn row(a: &Agreement, who: &Principal, today: chrono::NaiveDate, lang: Lang, names: &Names) -> AgreementRow {
    let party = |p: &tverr_policy::Party| {
        let key = format!("{}/{}", p.org, p.department);
        names.parties.get(&key).cloned().unwrap_or(key)
    };
    let t = &a.terms;
    let mut actions = Vec::new();
    match a.state {
        AgreementState::Requested if Policy::may(who, Action::Decide(a)).is_ok() => {
            actions.extend([("approve", "approve"), ("deny", "deny")])
        }
        AgreementState::Approved if Policy::may(who, Action::Revoke(a)).is_ok() => actions.push(("revoke", "revoke")),
        _ => {}
    }
    let state = if a.state == AgreementState::Approved && t.valid_to.is_some_and(|to| to < today) {
        "expired".to_string()
    } else {
        a.state.to_string()
    };
    AgreementRow {
        id: a.id,
        provider: party(&a.provider),
        consumer: party(&a.consumer),
        datasets: t
            .datasets
            .iter()
            .map(|d| {
                let cols = if d.columns.is_empty() { String::new() } else { format!(" ({})", d.columns.join(", ")) };
                let masks = d.masks.iter().map(|(c, m)| format!("{c}: {}", lang.mask(&m.to_string()))).collect::<Vec<_>>();
                let masks = if masks.is_empty() { String::new() } else { format!(" [{}]", masks.join(", ")) };
                format!("{}{cols}{masks}", d.dataset)
            })
            .collect::<Vec<_>>()
            .join("; "),
        purposes: t.purposes.iter().map(|p| names.purposes.get(p).cloned().unwrap_or_else(|| p.clone())).collect::<Vec<_>>().join(", "),
        legal_basis: t.legal_basis.hjemmel.clone(),
        period: format!(
            "{} – {}",
            super::format::day(lang, t.valid_from),
            t.valid_to.map(|d| super::format::day(lang, d)).unwrap_or_default()
        ),
        state_key: format!("state_{state}"),
        actions,
        history: Vec::new(),
    }
}

async fn agreements_page(
    state: &AppState,
    v: &Visitor,
    u: &User,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
    form: Option<RequestForm>,
) -> Response {
    let policy = state.engine.policy();
    let all = match policy.agreements().await {
        Ok(a) => a,
        Err(e) => return problem_page(v, Problem::from_policy(e)),
    };
    let today = chrono::Utc::now().date_naive();
    let mut page = AgreementsPage {
        page: v.chrome(v.lang.t("agreements_title")),
        inbox: Vec::new(),
        mine_requested: Vec::new(),
        active: Vec::new(),
        expired: Vec::new(),
        ended: Vec::new(),
        notice,
        error,
        may_request: matches!(u.role, Role::Steward | Role::Admin),
        form: form.unwrap_or_default(),
        filters: Filters::default(),
        masks: MASKS,
    };
    let mut names = Names::default();
    let orgs = state.engine.catalog().orgs().await.unwrap_or_default();
    for o in &orgs {
        for p in policy.purposes(&o.slug).await.unwrap_or_default() {
            names.purposes.entry(p.slug).or_insert(p.name);
        }
    }
    for d in state.engine.catalog().departments(None).await.unwrap_or_default() {
        let org = orgs.iter().find(|o| o.slug == d.org).map_or(d.org.clone(), |o| o.name.clone());
        names.parties.insert(format!("{}/{}", d.org, d.slug), format!("{} ({org})", d.name));
    }
    // The department's own agreements; an organisation's admin and auditor see all of its
    // (attack 9, F2: every employee saw every department's terms, with datasets hidden from them).
    let own = |p: &tverr_policy::Party| crate::agreements::own_department(u, p);
    let mine: Vec<&Agreement> = all
        .iter()
        .filter(|a| crate::agreements::party(u, a))
        .filter(|a| matches!(u.role, Role::Admin | Role::Auditor) || own(&a.provider) || own(&a.consumer))
        .collect();
    // The filters offer what the visitor's agreements hold; a value not offered filters nothing.
    let wanted = |k: &str| query_value(v.query.as_deref(), k).filter(|x| !x.is_empty());
    let (state_wanted, dataset, party) = (wanted("status"), wanted("i_datasett"), wanted("motpart"));
    let mut datasets: Vec<String> = mine.iter().flat_map(|a| a.terms.datasets.iter().map(|d| d.dataset.clone())).collect();
    datasets.sort();
    datasets.dedup();
    let own = format!("{}/{}", u.org, u.department.clone().unwrap_or_default());
    let mut parties: Vec<String> =
        mine.iter().flat_map(|a| [a.provider.to_string(), a.consumer.to_string()]).filter(|p| *p != own).collect();
    parties.sort();
    parties.dedup();
    page.filters = Filters {
        status: super::pages::choices(
            ["requested", "approved", "expired", "ended"].map(|s| (s.to_string(), v.lang.t(&format!("filter_{s}")).to_string())),
            state_wanted.as_deref(),
        ),
        datasets: super::pages::choices(datasets.iter().map(|d| (d.clone(), d.clone())), dataset.as_deref()),
        parties: super::pages::choices(
            parties.iter().map(|p| (p.clone(), names.parties.get(p).cloned().unwrap_or_else(|| p.clone()))),
            party.as_deref(),
        ),
        active: state_wanted.is_some() || dataset.is_some() || party.is_some(),
    };
    for a in mine {
        let mut r = row(a, &v.principal, today, v.lang, &names);
        let kept = state_wanted.as_deref().is_none_or(|s| match s {
            "requested" => a.state == AgreementState::Requested,
            "approved" => a.state == AgreementState::Approved && r.state_key != "state_expired",
            "expired" => r.state_key == "state_expired" || a.state == AgreementState::Expired,
            "ended" => matches!(a.state, AgreementState::Denied | AgreementState::Revoked),
            _ => true,
        }) && dataset.as_deref().is_none_or(|d| a.terms.datasets.iter().any(|x| x.dataset == d))
            && party.as_deref().is_none_or(|p| a.provider.to_string() == p || a.consumer.to_string() == p);
        if !kept {
            continue;
        }
        r.history = policy
            .agreement_events(a.id)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                let state = v.lang.t(&format!("state_{}", e.state)).to_string();
                (super::format::moment_text(v.lang, &e.at), state, e.actor, e.note.unwrap_or_default())
            })
            .collect();
        match a.state {
            AgreementState::Requested if !r.actions.is_empty() => page.inbox.push(r),
            AgreementState::Requested => page.mine_requested.push(r),
            AgreementState::Approved if r.state_key == "state_expired" => page.expired.push(r),
            AgreementState::Approved => page.active.push(r),
            AgreementState::Expired => page.expired.push(r),
            AgreementState::Denied | AgreementState::Revoked => page.ended.push(r),
        }
    }
    let f = &mut page.form;
    // The chosen dataset's columns, with their categories, to pick from.
    if let Ok(r) = f.dataset.parse::<tverr_core::DatasetRef>()
        && crate::may_see(state, &v.principal, None, &r).await
    {
        let wanted: Vec<&str> = f.columns.split(',').map(str::trim).filter(|c| !c.is_empty()).collect();
        let masks: BTreeMap<&str, &str> = f.masks.split(',').filter_map(|p| p.split_once('=')).map(|(c, m)| (c.trim(), m.trim())).collect();
        f.choices = state
            .engine
            .catalog()
            .columns(&r)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                let special = c.category == tverr_core::ColumnCategory::SpecialCategory;
                ColumnChoice {
                    // Untouched, every column but the special categories; sent back refused, as sent.
                    picked: if wanted.is_empty() && f.problem.is_none() { !special } else { wanted.contains(&c.name.as_str()) },
                    mask: masks.get(c.name.as_str()).map(|m| m.to_string()).unwrap_or_default(),
                    title: if c.description.is_empty() { c.name.clone() } else { c.description.clone() },
                    category: v.lang.label("cat", &c.category.to_string()),
                    special,
                    name: c.name,
                }
            })
            .collect();
    }
    // A request like this one already waiting is said before a second is sent.
    if !f.dataset.is_empty()
        && let Some(a) = all.iter().find(|a| {
            a.state == AgreementState::Requested
                && crate::agreements::own_department(u, &a.consumer)
                && a.terms.datasets.iter().any(|d| d.dataset == f.dataset)
        })
    {
        f.pending = Some(a.id);
    }
    if f.consumer.is_empty() {
        f.consumer = format!("{}/{}", u.org, u.department.clone().unwrap_or_default());
    }
    f.consumers = names
        .parties
        .iter()
        .filter(|(key, _)| {
            key.split_once('/').is_some_and(|(org, dept)| org == u.org && (u.role == Role::Admin || Some(dept) == u.department.as_deref()))
        })
        .map(|(key, name)| (key.clone(), name.clone()))
        .collect();
    let caller = v.caller(None);
    f.datasets = crate::find_datasets(state, &caller, &crate::CatalogFilters::default())
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|d| d.meta.classification != tverr_core::Classification::Open)
        .map(|d| (d.meta.reference(), format!("{} ({})", d.meta.title, d.meta.reference())))
        .collect();
    f.purposes = super::own_purposes(state, u).await.into_iter().map(|p| (p.slug.clone(), p.name.clone())).collect();
    f.legal_bases = policy.legal_bases(&u.org).await.unwrap_or_default().into_iter().map(|b| (b.slug.clone(), b.hjemmel.clone())).collect();
    if f.valid_from.is_empty() {
        f.valid_from = today.to_string();
    }
    v.page(status, &page)
}

/// `GET /avtaler`.
pub async fn agreements(State(state): State<AppState>, v: Visitor) -> Response {
    let u = match user_or_page(&v, "agreements_title") {
        Ok(u) => u,
        Err(r) => return r,
    };
    // What just happened, in words: a request sent, or an agreement approved, denied or revoked.
    // What just happened, said only of an agreement the visitor is party to and in the state
    // said (attack 9, F9: any number in the address was «sent»).
    let mut notice = None;
    if let Some(id) = query_value(v.query.as_deref(), "ok").and_then(|id| id.parse::<i64>().ok())
        && let Ok(a) = state.engine.policy().agreement(id).await
        && crate::agreements::party(&u, &a)
    {
        let (key, state_now) = match query_value(v.query.as_deref(), "endret").as_deref() {
            Some("approved") => ("agreement_approved", AgreementState::Approved),
            Some("denied") => ("agreement_denied", AgreementState::Denied),
            Some("revoked") => ("agreement_revoked", AgreementState::Revoked),
            _ => ("agreement_saved", AgreementState::Requested),
        };
        if a.state == state_now {
            notice = Some(v.lang.t(key).replace("{id}", &id.to_string()));
        }
    }
    // «Be om tilgang» from a dataset page: the request prefilled with the dataset and columns.
    let form =
        query_value(v.query.as_deref(), "datasett").filter(|d| d.parse::<tverr_core::DatasetRef>().is_ok()).map(|dataset| RequestForm {
            dataset,
            columns: query_value(v.query.as_deref(), "kolonner").unwrap_or_default().chars().take(2000).collect(),
            purpose: query_value(v.query.as_deref(), "formal").unwrap_or_default(),
            ..RequestForm::default()
        });
    agreements_page(&state, &v, &u, StatusCode::OK, notice, None, form).await
}

/// `POST /avtaler`: a request from the form, as the API's JSON body.
pub async fn request(State(state): State<AppState>, v: Visitor, body: Bytes) -> Response {
    let (u, f) = match user_and_form(&v, "agreements_title", &body) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let get = |k: &str| f.get(k).map(|x| x.trim().to_string()).unwrap_or_default();
    // Columns picked from the list (each `kolonne` once per column) and their masks
    // (`maske.COLUMN`), read from the body as it is: a form repeats a name for a list.
    let picked: Vec<String> =
        url::form_urlencoded::parse(&body).filter(|(k, _)| k == "kolonne").map(|(_, c)| c.trim().to_string()).collect();
    let picked_masks: Vec<String> = url::form_urlencoded::parse(&body)
        .filter_map(|(k, m)| k.strip_prefix("maske.").map(|c| (c.to_string(), m.trim().to_string())))
        .filter(|(c, m)| !m.is_empty() && picked.contains(c))
        .map(|(c, m)| format!("{c}={}", m.replace('-', "_")))
        .collect();
    let mut values = RequestForm {
        consumer: get("consumer"),
        dataset: get("dataset"),
        columns: get("columns"),
        masks: get("masks"),
        purpose: get("purpose"),
        legal_basis: get("legal_basis"),
        valid_from: get("valid_from"),
        valid_to: get("valid_to"),
        ..RequestForm::default()
    };
    if !picked.is_empty() {
        values.columns = picked.join(",");
        values.masks = picked_masks.join(",");
    } else if f.contains_key("velger") {
        // The list was shown and nothing picked: say so beside it.
        values.problem = Some(("columns", v.lang.t("request_no_columns").to_string()));
        return agreements_page(&state, &v, &u, StatusCode::BAD_REQUEST, None, None, Some(values)).await;
    }
    let refuse = |field: &'static str, why: String| (field, why);
    let body = (|| {
        let dataset: tverr_core::DatasetRef = values
            .dataset
            .parse()
            .map_err(|e: tverr_core::ModelError| refuse("dataset", super::messages::translate(v.lang, &e.to_string())))?;
        let mut masks = serde_json::Map::new();
        for pair in values.masks.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (c, m) = pair.split_once('=').ok_or_else(|| refuse("columns", v.lang.t("form_mask_pair").replace("{found}", pair)))?;
            masks.insert(c.trim().to_string(), serde_json::Value::String(m.trim().to_string()));
        }
        let columns: Vec<String> = values.columns.split(',').map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect();
        let date = |name: &'static str, value: &str| -> Result<serde_json::Value, (&'static str, String)> {
            if value.is_empty() {
                return Ok(serde_json::Value::Null);
            }
            chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map_err(|_| refuse(name, v.lang.t("form_date").replace("{found}", value)))?;
            Ok(serde_json::Value::String(value.to_string()))
        };
        let meta_org = dataset.org.to_string();
        Ok::<_, (&'static str, String)>((
            dataset,
            meta_org,
            serde_json::json!({
                "consumer": values.consumer,
                "datasets": [{"dataset": values.dataset, "columns": columns, "masks": masks}],
                "purposes": [values.purpose],
                "legal_basis": if values.legal_basis.is_empty() { serde_json::Value::Null } else { values.legal_basis.clone().into() },
                "valid_from": date("valid_from", &values.valid_from)?,
                "valid_to": date("valid_to", &values.valid_to)?,
            }),
        ))
    })();
    let (dataset, _, mut json) = match body {
        Ok(b) => b,
        Err(e) => {
            values.problem = Some(e);
            return agreements_page(&state, &v, &u, StatusCode::BAD_REQUEST, None, None, Some(values)).await;
        }
    };
    // The provider is the department that owns the dataset; an unknown dataset is refused by
    // the same check as the API's.
    let provider = match state.engine.catalog().dataset(&dataset).await {
        Ok(m) => format!("{}/{}", m.org, m.department),
        Err(_) => format!("{}/-", dataset.org),
    };
    json["provider"] = provider.into();
    let who = match SignedIn::try_from(v.caller(None)) {
        Ok(who) => who,
        Err(p) => return problem_page(&v, p),
    };
    match crate::agreements::request_as(&state, &who, json.to_string().as_bytes(), CHANNEL).await {
        Ok(a) => Redirect::to(&format!("/avtaler?ok={}", a.id)).into_response(),
        Err(p) => {
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
            let (_, text) = super::pages::problem_words(v.lang, &p);
            values.problem = Some(("", text));
            agreements_page(&state, &v, &u, status, None, None, Some(values)).await
        }
    }
}

/// `POST /avtaler/{id}/{action}`: approve, deny or revoke, with an optional note.
pub async fn transition(State(state): State<AppState>, v: Visitor, Path((id, action)): Path<(String, String)>, body: Bytes) -> Response {
    // An agreement number that is no number is no agreement: the not-found page, not a parser's
    // message.
    let Ok(id) = id.parse::<i64>() else { return super::pages::not_found(&v) };
    let (u, f) = match user_and_form(&v, "agreements_title", &body) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let note = f.get("note").map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let who = match SignedIn::try_from(v.caller(None)) {
        Ok(who) => who,
        Err(p) => return problem_page(&v, p),
    };
    match crate::agreements::transition_as(&state, &who, id, &action, note, CHANNEL).await {
        Ok(a) => Redirect::to(&format!("/avtaler?ok={}&endret={}", a.id, a.state)).into_response(),
        Err(p) => {
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
            let (_, text) = super::pages::problem_words(v.lang, &p);
            agreements_page(&state, &v, &u, status, None, Some(text), None).await
        }
    }
}

/// A dataset's rows in a look-up, as a table, with where they came from.
pub(super) struct FoundView {
    pub(super) title: String,
    pub(super) dataset: String,
    pub(super) version: i64,
    pub(super) why: String,
    pub(super) legal_basis: String,
    pub(super) columns: Vec<String>,
    pub(super) rows: Vec<Vec<String>>,
}

pub(super) struct DepartmentView {
    pub(super) name: String,
    pub(super) datasets: Vec<FoundView>,
}

pub(super) struct OrgView {
    pub(super) name: String,
    pub(super) departments: Vec<DepartmentView>,
}

struct RelatedView {
    heading: String,
    orgs: Vec<OrgView>,
}

#[derive(Template)]
#[template(path = "lookup.html")]
struct LookupPage {
    page: Chrome,
    purposes: Vec<(String, String, bool)>,
    kinds: Vec<(&'static str, &'static str, bool)>,
    id: String,
    error: Option<String>,
    searched: bool,
    orgs: Vec<OrgView>,
    related: Vec<RelatedView>,
}

/// A dataset's rows as a table; with `geometry` false, without its geometry columns (shown on a
/// map instead).
fn found_view(f: &Found, lang: super::Lang, geometry: bool) -> FoundView {
    let shown: Vec<&tverr_access::LookupColumn> = f.columns.iter().filter(|c| geometry || c.column_type != "geometry").collect();
    let why = match &f.basis {
        Basis::Open => lang.t("basis_open").to_string(),
        Basis::OwnDepartment { purpose } => format!("{} ({purpose})", lang.t("basis_own")),
        Basis::Agreement { id, purpose } => format!("{} {id} ({purpose})", lang.t("basis_agreement")),
        Basis::Operator { purpose } => format!("operator ({purpose})"),
        Basis::DataSubject => lang.t("me_self").to_string(),
        Basis::Guardian => lang.t("me_guardian").to_string(),
    };
    let columns: Vec<String> = shown
        .iter()
        .map(|c| match c.mask {
            Some(m) => format!("{} ({})", c.name, lang.mask(&m.to_string())),
            None => c.name.clone(),
        })
        .collect();
    let rows = f
        .row_objects()
        .iter()
        .map(|r| {
            shown
                .iter()
                .map(|c| match r.get(&c.name) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                })
                .collect()
        })
        .collect();
    FoundView {
        title: f.title.clone(),
        dataset: f.dataset.clone(),
        version: f.version,
        why,
        legal_basis: f.legal_basis.as_ref().map(|b| b.hjemmel.clone()).unwrap_or_default(),
        columns,
        rows,
    }
}

pub(super) fn org_views(orgs: &[LookupOrg], lang: super::Lang, geometry: bool) -> Vec<OrgView> {
    orgs.iter()
        .map(|o| OrgView {
            name: o.name.clone(),
            departments: o
                .departments
                .iter()
                .map(|d| DepartmentView {
                    name: d.name.clone(),
                    datasets: d.datasets.iter().map(|f| found_view(f, lang, geometry)).collect(),
                })
                .collect(),
        })
        .collect()
}

/// `GET /oppslag[?purpose=&kind=&id=]`: the look-up form, filled in from the query but not
/// run: a look-up writes an access record in the visitor's name, so only a form posted from
/// this site with the visitor's CSRF token runs it ([`lookup_post`]).
pub async fn lookup(State(state): State<AppState>, v: Visitor) -> Response {
    let purpose = query_value(v.query.as_deref(), "purpose").unwrap_or_default();
    let kind = query_value(v.query.as_deref(), "kind").unwrap_or_else(|| "person".into());
    let id = query_value(v.query.as_deref(), "id").unwrap_or_default().trim().to_string();
    lookup_page(&state, &v, purpose, kind, id, false).await
}

/// `POST /oppslag` (`csrf`, `purpose`, `kind`, `id`): the case worker's look-up of a person,
/// property or organisation for a purpose (`Engine::lookup`).
pub async fn lookup_post(State(state): State<AppState>, v: Visitor, body: axum::body::Bytes) -> Response {
    let f = match v.form(&body) {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let field = |name: &str| f.get(name).cloned().unwrap_or_default();
    let kind = Some(field("kind")).filter(|k| !k.is_empty()).unwrap_or_else(|| "person".into());
    lookup_page(&state, &v, field("purpose"), kind, field("id").trim().to_string(), true).await
}

/// The look-up page; with `run`, the look-up of `id` is made and shown.
async fn lookup_page(state: &AppState, v: &Visitor, purpose: String, kind: String, id: String, run: bool) -> Response {
    let u = match user_or_page(v, "lookup_title") {
        Ok(u) => u,
        Err(r) => return r,
    };
    let purposes = super::own_purposes(state, &u)
        .await
        .into_iter()
        .map(|p| {
            let selected = p.slug == purpose;
            (p.slug.clone(), p.name.clone(), selected)
        })
        .collect();
    let mut page = LookupPage {
        page: v.chrome(v.lang.t("lookup_title")),
        purposes,
        kinds: [("person", "subj_person"), ("property", "subj_property"), ("organization", "subj_organization")]
            .into_iter()
            .map(|(k, label)| (k, label, k == kind))
            .collect(),
        id: id.clone(),
        error: None,
        searched: false,
        orgs: Vec::new(),
        related: Vec::new(),
    };
    if id.is_empty() || !run {
        return v.page(StatusCode::OK, &page);
    }
    let subject = match kind.as_str() {
        "person" => SubjectKind::Person,
        "property" => SubjectKind::Property,
        "organization" => SubjectKind::Organization,
        other => {
            page.error = Some(format!("{}: {other:?}", v.lang.t("lookup_kind")));
            return v.page(StatusCode::BAD_REQUEST, &page);
        }
    };
    let purpose = Some(purpose.as_str()).filter(|p| !p.is_empty());
    let _permit = match state.gate.admit(&v.caller(purpose.map(str::to_string)), &state.limits) {
        Ok(p) => p,
        Err(p) => return problem_page(v, p),
    };
    match state.engine.lookup(&v.principal, purpose, subject, &id, CHANNEL).await {
        Ok(l) => {
            page.searched = true;
            page.orgs = org_views(&l.organizations, v.lang, true);
            page.related = l
                .related
                .iter()
                .map(|r| RelatedView {
                    heading: format!("{}: {} ({}.{})", v.lang.label("subj", &r.kind), r.id, r.via.dataset, r.via.column),
                    orgs: org_views(&r.organizations, v.lang, true),
                })
                .collect();
            v.page(StatusCode::OK, &page)
        }
        Err(QueryError::Invalid(m) | QueryError::NotAllowed(m)) => {
            page.error = Some(super::messages::translate(v.lang, m.strip_prefix("invalid query: ").unwrap_or(&m)));
            v.page(StatusCode::BAD_REQUEST, &page)
        }
        // A missing or wrong purpose is said on the form, with the API's status.
        Err(e) => match Problem::from_query(e) {
            p if (400..500).contains(&p.status) => {
                let (title, text) = super::pages::problem_words(v.lang, &p);
                page.error = Some(format!("{title}: {text}"));
                v.page(StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST), &page)
            }
            p => problem_page(v, p),
        },
    }
}

struct EntryRow {
    seq: i64,
    at: String,
    kind: String,
    who: String,
    purpose: String,
    datasets: String,
    channel: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    page: Chrome,
    user: String,
    dataset: String,
    subject: String,
    from: String,
    to: String,
    entries: Vec<EntryRow>,
    searched: bool,
    verification: Option<(bool, String)>,
    error: Option<String>,
}

/// `GET /revisjon?user=&dataset=&subject=&from=&to=&verify=1`: the auditor's search of the
/// access log and the result of verifying the chain.
pub async fn audit(State(state): State<AppState>, v: Visitor) -> Response {
    if let Err(r) = user_or_page(&v, "audit_title") {
        return r;
    }
    let get = |k: &str| query_value(v.query.as_deref(), k).map(|x| x.trim().to_string()).filter(|x| !x.is_empty());
    let mut page = AuditPage {
        page: v.chrome(v.lang.t("audit_title")),
        user: get("user").unwrap_or_default(),
        dataset: get("dataset").unwrap_or_default(),
        subject: get("subject").unwrap_or_default(),
        from: get("from").unwrap_or_default(),
        to: get("to").unwrap_or_default(),
        entries: Vec::new(),
        searched: false,
        verification: None,
        error: None,
    };
    let auditor: Auditor = match role_or_page(&v, "audit_title", "auditors_only") {
        Ok(auditor) => auditor,
        Err(page) => return page,
    };
    if get("verify").is_some() {
        match crate::audit::verify_as(&state, &auditor, CHANNEL).await {
            Ok(ver) => {
                let text = match &ver.problem {
                    None => v.lang.t("verify_ok").replace("{n}", &ver.entries.to_string()).replace("{c}", &ver.checkpoints.to_string()),
                    Some(p) => format!("{} {p}", v.lang.t("verify_bad")),
                };
                page.verification = Some((ver.problem.is_none(), text));
            }
            Err(p) => return problem_page(&v, p),
        }
    }
    let any = [&page.user, &page.dataset, &page.subject, &page.from, &page.to].iter().any(|x| !x.is_empty()) || get("search").is_some();
    if any {
        let q = tverr_audit::Search {
            org: None,
            user: get("user"),
            dataset: get("dataset"),
            from: get("from"),
            to: get("to"),
            subject: get("subject"),
        };
        match crate::audit::search_as(&state, &auditor, q, CHANNEL).await {
            Ok(found) => {
                page.searched = true;
                page.entries = found.entries.iter().rev().take(500).map(|e| entry_row(e, v.lang)).collect();
            }
            Err(p) if p.status == 400 => page.error = Some(super::pages::problem_words(v.lang, &p).1),
            Err(p) => return problem_page(&v, p),
        }
    }
    v.page(if page.error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, &page)
}

fn entry_row(e: &crate::audit::EntryView, lang: Lang) -> EntryRow {
    let r = &e.record;
    let p = &r["principal"];
    let who = match p["kind"].as_str() {
        Some("user") => format!(
            "{} ({}/{}, {})",
            p["username"].as_str().unwrap_or(""),
            p["org"].as_str().unwrap_or(""),
            p["department"].as_str().unwrap_or("-"),
            p["role"].as_str().unwrap_or("")
        ),
        Some(k) => k.to_string(),
        None => String::new(),
    };
    let datasets: BTreeMap<String, ()> =
        r["datasets"].as_array().into_iter().flatten().filter_map(|d| d["dataset"].as_str().map(|s| (s.to_string(), ()))).collect();
    EntryRow {
        seq: e.seq,
        at: super::format::moment_exact(lang, &e.at),
        kind: lang.label("record", &e.kind),
        who,
        purpose: r["purpose"].as_str().unwrap_or_default().to_string(),
        datasets: datasets.into_keys().collect::<Vec<_>>().join(", "),
        channel: r["channel"].as_str().map(|c| lang.label("channel", c)).unwrap_or_default(),
    }
}
