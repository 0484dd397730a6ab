//! `/koblinger`: a steward's connectors — what each reads, when it runs, how its last run went
//! (with the error, file, line and column) — with buttons to run one now or delete it, and a
//! form that makes one for a dataset the steward may write. The same engine calls as the API and
//! the command line, on channel `web`; a connector is made for an existing dataset here (a new
//! dataset is made by an upload, the API or `tverr connector create --create`).

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tverr_access::{Channel, ConnectorInfo, IngestSettings, NewConnector, SourceOptions};
use tverr_policy::{Action, Policy, Principal};

use super::{Chrome, Lang, Visitor, format, messages, query_value};
use crate::AppState;

/// A connector as a row of the page.
pub(super) struct ConnectorRow {
    pub name: String,
    pub dataset: String,
    pub kind: String,
    pub source: String,
    pub schedule: String,
    pub mode: String,
    pub next_run: String,
    /// The last run: when, its state in words, and whether it failed.
    pub last: Option<(String, String, bool)>,
    /// The last run's error, line by line, in the page's language.
    pub error: Vec<String>,
    pub failures: i64,
}

impl ConnectorRow {
    pub(super) fn of(c: &ConnectorInfo, lang: Lang) -> Self {
        let last = c.last_run.as_ref().map(|r| {
            let mut state = lang.t(&format!("conn_status_{}", r.status)).to_string();
            if let Some(v) = r.version {
                state.push_str(&format!(" ({} {v})", lang.t("version").to_lowercase()));
            }
            (format::moment_text(lang, &r.started_at.to_string()), state, r.status == "failed")
        });
        let error = match &c.last_run {
            Some(r) if !r.problems.is_empty() => r.problems.iter().map(|p| messages::Said::Located(p.clone()).text(lang)).collect(),
            Some(r) => r
                .error
                .as_deref()
                .map(|e| e.lines().filter(|l| !l.trim().is_empty()).map(|l| messages::translate(lang, l.trim())).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        ConnectorRow {
            name: c.name.clone(),
            dataset: c.dataset.clone(),
            kind: lang.t(&format!("conn_kind_{}", c.kind)).to_string(),
            source: c.source.clone(),
            schedule: c.schedule.clone(),
            mode: c.mode.clone(),
            next_run: format::moment_text(lang, &c.next_run_at.to_string()),
            last,
            error,
            failures: c.failures,
        }
    }
}

#[derive(Template)]
#[template(path = "connectors.html")]
struct ConnectorsPage {
    page: Chrome,
    connectors: Vec<ConnectorRow>,
    /// The datasets the form offers: (reference, title).
    datasets: Vec<(String, String)>,
    form: Form,
    notice: Option<String>,
    errors: Vec<String>,
}

/// The form's fields as sent (kept when it is refused).
#[derive(Default, Clone)]
struct Form {
    dataset: String,
    name: String,
    source: String,
    schedule: String,
    mode: String,
    key: String,
    query: String,
    incremental: String,
    pointer: String,
    next: String,
    header_name: String,
}

/// Who may be here: a signed-in user who may upload.
fn steward(v: &Visitor) -> Result<(), Response> {
    match &v.principal {
        Principal::User(_) if Policy::may(&v.principal, Action::Upload).is_ok() => Ok(()),
        Principal::Anonymous => {
            let next: String = url::form_urlencoded::byte_serialize(v.path.as_bytes()).collect();
            Err(Redirect::to(&format!("/logg-inn?next={next}")).into_response())
        }
        _ => {
            let page = v.chrome(v.lang.t("conn_title"));
            Err(v.page(
                StatusCode::FORBIDDEN,
                &super::Message::new(page, v.lang.t("conn_title"), v.lang.t("conn_stewards_only").to_string()),
            ))
        }
    }
}

async fn page(state: &AppState, v: &Visitor, status: StatusCode, form: Form, notice: Option<String>, errors: Vec<String>) -> Response {
    let connectors = state.engine.connectors(&v.principal).await.unwrap_or_default();
    let mut datasets = Vec::new();
    for d in state.engine.catalog().datasets().await.unwrap_or_default() {
        if Policy::may(&v.principal, Action::Write { org: &d.org, department: &d.department }).is_ok() {
            datasets.push((d.reference(), d.title.clone()));
        }
    }
    let rows = connectors.iter().map(|c| ConnectorRow::of(c, v.lang)).collect();
    let page = ConnectorsPage { page: v.chrome(v.lang.t("conn_title")), connectors: rows, datasets, form, notice, errors };
    v.page(status, &page)
}

/// `GET /koblinger`.
pub async fn list(State(state): State<AppState>, v: Visitor) -> Response {
    if let Err(r) = steward(&v) {
        return r;
    }
    let q = v.query.clone();
    let get = |k: &str| query_value(q.as_deref(), k).filter(|x| !x.is_empty());
    let connectors = state.engine.connectors(&v.principal).await.unwrap_or_default();
    let known = |n: &str| connectors.iter().any(|c| c.name == n);
    // Said only of the visitor's own connectors.
    let notice = if let Some(n) = get("laget").filter(|n| known(n)) {
        Some(v.lang.t("conn_made").replace("{name}", &n))
    } else if let Some(n) = get("kjort").filter(|n| known(n)) {
        Some(v.lang.t("conn_ran").replace("{name}", &n))
    } else {
        get("slettet")
            .filter(|n| !known(n) && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
            .map(|n| v.lang.t("conn_deleted").replace("{name}", &n))
    };
    let form =
        Form { dataset: get("datasett").unwrap_or_default(), schedule: "0 2 * * *".into(), mode: "replace".into(), ..Form::default() };
    page(&state, &v, StatusCode::OK, form, notice, Vec::new()).await
}

/// `POST /koblinger`: makes a connector in the visitor's name.
pub async fn create(State(state): State<AppState>, v: Visitor, body: Bytes) -> Response {
    if let Err(r) = steward(&v) {
        return r;
    }
    let fields = match v.form(&body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let get = |k: &str| fields.get(k).map(|s| s.trim().to_string()).unwrap_or_default();
    let opt = |k: &str| Some(get(k)).filter(|s| !s.is_empty());
    let form = Form {
        dataset: get("datasett"),
        name: get("navn"),
        source: get("kilde"),
        schedule: get("tidsplan"),
        mode: get("modus"),
        key: get("nokkel"),
        query: get("sporring"),
        incremental: get("inkrementell"),
        pointer: get("peker"),
        next: get("neste"),
        header_name: get("hode_navn"),
    };
    let mut source = form.source.clone();
    if let Some(password) = opt("passord")
        && let Ok(mut url) = url::Url::parse(&source)
        && url.set_password(Some(&password)).is_ok()
    {
        source = url.to_string();
    }
    let headers = match (opt("hode_navn"), opt("hode_verdi")) {
        (Some(n), Some(val)) => vec![format!("{n}: {val}")],
        _ => Vec::new(),
    };
    let new = NewConnector {
        name: form.name.clone(),
        dataset: form.dataset.clone(),
        source,
        schedule: form.schedule.clone(),
        options: SourceOptions {
            query: opt("sporring"),
            incremental: opt("inkrementell"),
            pointer: opt("peker"),
            next: opt("neste"),
            ..SourceOptions::default()
        },
        headers,
        ingest: IngestSettings { mode: opt("modus"), key: opt("nokkel"), ..IngestSettings::default() },
    };
    match state.engine.create_connector(&v.principal, Channel::Web, new).await {
        Ok(c) => Redirect::to(&format!("/koblinger?laget={}", c.name)).into_response(),
        Err(e) => {
            let error = match e {
                tverr_access::QueryError::Store(s) => messages::Said::of(&s).iter().map(|s| s.text(v.lang)).collect(),
                tverr_access::QueryError::NotFound(_) => vec![v.lang.t("conn_no_dataset").to_string()],
                other => vec![messages::translate(v.lang, &other.to_string())],
            };
            page(&state, &v, StatusCode::BAD_REQUEST, form, None, error).await
        }
    }
}

/// `POST /koblinger/{name}/kjor`: runs one now and comes back to the list.
pub async fn run(State(state): State<AppState>, v: Visitor, Path(name): Path<String>, body: Bytes) -> Response {
    if let Err(r) = steward(&v) {
        return r;
    }
    if let Err(r) = v.form(&body) {
        return r;
    }
    match state.engine.run_connector(&v.principal, &name).await {
        Ok(_) => Redirect::to(&format!("/koblinger?kjort={name}#{name}")).into_response(),
        Err(tverr_access::QueryError::Store(tverr_access::StoreError::NotFound { .. })) => super::pages::not_found(&v),
        Err(e) => page(&state, &v, StatusCode::CONFLICT, Form::default(), None, vec![messages::translate(v.lang, &e.to_string())]).await,
    }
}

/// `POST /koblinger/{name}/slett`.
pub async fn delete(State(state): State<AppState>, v: Visitor, Path(name): Path<String>, body: Bytes) -> Response {
    if let Err(r) = steward(&v) {
        return r;
    }
    if let Err(r) = v.form(&body) {
        return r;
    }
    match state.engine.delete_connector(&v.principal, Channel::Web, &name).await {
        Ok(()) => Redirect::to(&format!("/koblinger?slettet={name}")).into_response(),
        Err(_) => super::pages::not_found(&v),
    }
}
