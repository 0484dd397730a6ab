//! Upload for stewards, in three steps: choose a file and a dataset → see what was detected
//! (format, encoding, delimiter, columns, first rows) and confirm → the ingest runs with a
//! progress bar (a page that reloads itself; no script) and ends in the new version or the
//! problems with their line and column. The file is checked by `Store::inspect` and written by
//! `Store::ingest`, the same code as `tverr ingest` and the upload API.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use askama::Template;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tokio::io::AsyncWriteExt;
use tverr_access::{CreateSettings, IngestSettings, StoreError, Upload, UploadStep};
use tverr_core::DatasetRef;
use tverr_policy::{Principal, User};

use super::messages::{Said, translate};
use super::pages::Table;
use super::session::bad_form;
use super::{Chrome, Lang, Message, Visitor};
use crate::AppState;
use tverr_access::Channel;

/// How often a running upload's node writes its progress (and that it is alive).
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// A running upload whose node has said nothing for this long was interrupted (its node stopped).
const SILENT_FOR: u64 = 60;

/// A steward, or the page that says who may upload.
fn uploader(v: &Visitor) -> Result<User, Response> {
    match &v.principal {
        Principal::User(u) if tverr_policy::Policy::may(&v.principal, tverr_policy::Action::Upload).is_ok() => Ok(u.user().clone()),
        Principal::Anonymous => Err(Redirect::to("/logg-inn?next=/last-opp").into_response()),
        _ => {
            let page = v.chrome(v.lang.t("upload_title"));
            Err(v.page(StatusCode::FORBIDDEN, &Message::new(page, v.lang.t("upload_title"), v.lang.t("stewards_only").to_string())))
        }
    }
}

/// The problems of a refused ingest, one per line, in `lang`.
fn problems(e: &StoreError, lang: Lang) -> Vec<String> {
    Said::of(e).iter().map(|s| s.text(lang)).collect()
}

#[derive(Default)]
struct FormValues {
    target: String,
    mode: String,
    key: String,
    slug: String,
    title: String,
    description: String,
    classification: String,
    subjects: String,
    licence: String,
    theme: String,
    keywords: String,
}

/// The licences the new-dataset form offers: (URI, name). An open dataset needs one.
const LICENCES: &[(&str, &str)] = &[
    ("https://data.norge.no/nlod/no/2.0", "NLOD 2.0"),
    ("https://creativecommons.org/licenses/by/4.0/", "CC BY 4.0"),
    ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0 1.0"),
];

/// The EU data themes the form offers.
const THEMES: &[&str] = &["AGRI", "ECON", "EDUC", "ENER", "ENVI", "GOVE", "HEAL", "INTR", "JUST", "REGI", "SOCI", "TECH", "TRAN"];

#[derive(Template)]
#[template(path = "upload.html")]
struct UploadPage {
    page: Chrome,
    datasets: Vec<(String, String)>,
    values: FormValues,
    problems: Vec<String>,
    max_mb: u64,
    /// (value, text key) of each classification.
    classes: Vec<(&'static str, &'static str)>,
    /// (URI, name) of each licence offered.
    licences: Vec<(&'static str, &'static str)>,
    /// (code, words) of each theme.
    themes: Vec<(&'static str, String)>,
}

async fn form_page(state: &AppState, v: &Visitor, status: StatusCode, values: FormValues, problems: Vec<String>) -> Response {
    let datasets = state
        .engine
        .catalog()
        .datasets()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|d| tverr_policy::Policy::may(&v.principal, tverr_policy::Action::Write { org: &d.org, department: &d.department }).is_ok())
        .map(|d| (d.reference(), format!("{} ({})", d.title, d.reference())))
        .collect();
    let classes = vec![
        ("open", "class_open"),
        ("internal", "class_internal"),
        ("confidential", "class_confidential"),
        ("strictly-confidential", "class_strictly_confidential"),
    ];
    let page = UploadPage {
        page: v.chrome(v.lang.t("upload_title")),
        datasets,
        values,
        problems,
        max_mb: state.limits.upload_bytes >> 20,
        classes,
        licences: LICENCES.to_vec(),
        themes: THEMES.iter().map(|t| (*t, v.lang.label("theme", t))).collect(),
    };
    v.page(status, &page)
}

/// `GET /last-opp`.
pub async fn start(State(state): State<AppState>, v: Visitor) -> Response {
    if let Err(r) = uploader(&v) {
        return r;
    }
    let values = FormValues { mode: "append".into(), classification: "internal".into(), ..FormValues::default() };
    form_page(&state, &v, StatusCode::OK, values, Vec::new()).await
}

struct ColumnRow {
    name: String,
    column_type: String,
    subject: String,
}

#[derive(Template)]
#[template(path = "upload_check.html")]
struct CheckPage {
    page: Chrome,
    id: String,
    dataset: String,
    creating: bool,
    mode: String,
    file: String,
    format: String,
    encoding: String,
    delimiter: String,
    sheet: String,
    crs: String,
    rows: u64,
    columns: Vec<ColumnRow>,
    added: Vec<String>,
    sample: Table,
    /// What to know before storing: the same file as the latest version, a changed shape.
    warnings: Vec<String>,
}

/// `POST /last-opp` (multipart): receives the file, checks it without writing, and shows what
/// was found for confirmation.
pub async fn check(State(state): State<AppState>, v: Visitor, mut multipart: Multipart) -> Response {
    let u = match uploader(&v) {
        Ok(u) => u,
        Err(r) => return r,
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return failure(&v, &translate(v.lang, &e.to_string())),
    };
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut file: Option<(std::path::PathBuf, u64)> = None;
    let limit = state.limits.upload_bytes;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return form_page(&state, &v, StatusCode::BAD_REQUEST, FormValues::default(), vec![translate(v.lang, &e.body_text())])
                    .await;
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let file_name = safe_name(field.file_name().unwrap_or(""));
            if file_name.is_empty() {
                continue;
            }
            let path = dir.path().join(&file_name);
            match receive(field, &path, limit).await {
                Ok(size) => file = Some((path, size)),
                Err(why) => {
                    return form_page(&state, &v, StatusCode::PAYLOAD_TOO_LARGE, FormValues::default(), vec![translate(v.lang, &why)])
                        .await;
                }
            }
        } else {
            match field.text().await {
                Ok(t) => {
                    fields.insert(name, t);
                }
                Err(e) => {
                    return form_page(&state, &v, StatusCode::BAD_REQUEST, FormValues::default(), vec![translate(v.lang, &e.body_text())])
                        .await;
                }
            }
        }
    }
    let get = |k: &str| fields.get(k).map(|x| x.trim().to_string()).unwrap_or_default();
    let values = FormValues {
        target: get("target"),
        mode: get("mode"),
        key: get("key"),
        slug: get("slug"),
        title: get("title"),
        description: get("description"),
        classification: get("classification"),
        subjects: get("subjects"),
        licence: get("licence"),
        theme: get("theme"),
        keywords: get("keywords"),
    };
    if !v.csrf_ok(&get("csrf")) {
        return bad_form(&v);
    }
    let refuse = |status: StatusCode, why: String, values: FormValues| {
        let (state, v) = (&state, &v);
        async move { form_page(state, v, status, values, vec![why]).await }
    };
    let Some((path, size)) = file.filter(|(_, size)| *size > 0) else {
        return refuse(StatusCode::BAD_REQUEST, v.lang.t("upload_no_file").to_string(), values).await;
    };
    let creating = values.target == "new";
    if creating {
        // Only what the form offers; open data needs a licence, or nobody may reuse it.
        if !values.licence.is_empty() && !LICENCES.iter().any(|(u, _)| *u == values.licence) {
            return refuse(StatusCode::BAD_REQUEST, v.lang.t("upload_licence_unknown").to_string(), values).await;
        }
        if values.classification == "open" && values.licence.is_empty() {
            return refuse(StatusCode::BAD_REQUEST, v.lang.t("upload_open_needs_licence").to_string(), values).await;
        }
        if !values.theme.is_empty() && !THEMES.contains(&values.theme.as_str()) {
            return refuse(StatusCode::BAD_REQUEST, v.lang.t("upload_theme_unknown").to_string(), values).await;
        }
    }
    let dataset = if creating { format!("{}/{}", u.org, values.slug) } else { values.target.clone() };
    let r: DatasetRef = match dataset.parse() {
        Ok(r) => r,
        Err(e) => {
            return refuse(StatusCode::BAD_REQUEST, format!("{}: {}", v.lang.t("dataset"), translate(v.lang, &e.to_string())), values)
                .await;
        }
    };
    let department = if creating {
        u.department.clone().unwrap_or_default()
    } else {
        match state.engine.catalog().dataset(&r).await {
            Ok(m) => m.department,
            Err(_) => return refuse(StatusCode::NOT_FOUND, format!("{}: {r}", v.lang.t("not_found")), values).await,
        }
    };
    if tverr_policy::Policy::may(&v.principal, tverr_policy::Action::Write { org: r.org.as_str(), department: &department }).is_err() {
        // Another organisation's dataset the visitor may not read is the same 404 as none.
        if !creating && !crate::may_see(&state, &v.principal, None, &r).await {
            return refuse(StatusCode::NOT_FOUND, format!("{}: {r}", v.lang.t("not_found")), values).await;
        }
        return refuse(StatusCode::FORBIDDEN, v.lang.t("upload_not_yours").to_string(), values).await;
    }
    let settings = IngestSettings {
        mode: (!creating).then(|| values.mode.clone()).filter(|m| !m.is_empty()),
        key: Some(values.key.clone()).filter(|k| !k.is_empty()),
        subjects: values.subjects.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect(),
        create: creating.then(|| CreateSettings {
            department: Some(department.clone()),
            title: Some(values.title.clone()),
            description: values.description.clone(),
            classification: Some(values.classification.clone()),
            licence: Some(values.licence.clone()).filter(|l| !l.is_empty()),
            theme: Some(values.theme.clone()).filter(|t| !t.is_empty()),
            keywords: values
                .keywords
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .take(20)
                .map(|k| k.chars().take(60).collect())
                .collect(),
            ..CreateSettings::default()
        }),
        ..IngestSettings::default()
    };
    let saved = match serde_json::to_string(&settings) {
        Ok(s) => s,
        Err(e) => return failure(&v, &translate(v.lang, &e.to_string())),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let request = match settings.request(r.clone(), path.clone(), u.username.clone()) {
        Ok(req) => req,
        Err(e) => return form_page(&state, &v, StatusCode::BAD_REQUEST, values, problems(&e, v.lang)).await,
    };
    let inspection = match state.engine.inspect(request.clone(), 10).await {
        Ok(i) => i,
        Err(e) => return form_page(&state, &v, StatusCode::UNPROCESSABLE_ENTITY, values, problems(&e, v.lang)).await,
    };
    let rep = &inspection.report;
    // Before anything is stored: is this the file of the latest version again, and does its
    // shape differ from the dataset's?
    let mut warnings = Vec::new();
    if !creating {
        let versions = state.engine.catalog().versions(&r).await.unwrap_or_default();
        if let Some(last) = versions.last().filter(|x| x.source_sha256.as_deref() == Some(rep.sha256.as_str())) {
            warnings.push(v.lang.t("upload_identical").replace("{version}", &last.version.to_string()));
        }
        let known = state.engine.catalog().columns(&r).await.unwrap_or_default();
        let differs: Vec<String> = rep
            .columns
            .iter()
            .filter_map(|c| match known.iter().find(|k| k.name == c.name) {
                None => Some(v.lang.t("upload_column_new").replace("{c}", &c.name)),
                Some(k) if k.column_type != c.column_type => Some(
                    v.lang
                        .t("upload_column_type")
                        .replace("{c}", &c.name)
                        .replace("{was}", super::format::type_name(v.lang, k.column_type))
                        .replace("{now}", super::format::type_name(v.lang, c.column_type)),
                ),
                Some(_) => None,
            })
            .chain(
                known
                    .iter()
                    .filter(|k| !rep.columns.iter().any(|c| c.name == k.name))
                    .map(|k| v.lang.t("upload_column_missing").replace("{c}", &k.name)),
            )
            .collect();
        if !differs.is_empty() {
            warnings.push(format!("{} {}", v.lang.t("upload_schema_differs"), differs.join("; ")));
        }
    }
    let sample = inspection.sample.as_ref().map(|b| super::pages::batch_table(b, v.lang)).unwrap_or_default();
    let id = super::random_hex(12);
    let page = CheckPage {
        page: v.chrome(v.lang.t("upload_check_title")),
        id: id.clone(),
        dataset: r.to_string(),
        creating,
        mode: if creating { v.lang.t("upload_new").to_string() } else { v.lang.label("mode", &values.mode) },
        warnings,
        file: rep.file_name.clone(),
        format: rep.format.clone(),
        encoding: rep.encoding.clone().unwrap_or_default(),
        delimiter: rep.delimiter.clone().map(|d| if d == "\t" { "TAB".into() } else { d }).unwrap_or_default(),
        sheet: rep.sheet.clone().unwrap_or_default(),
        crs: rep.crs.clone().unwrap_or_default(),
        rows: rep.rows,
        columns: rep
            .columns
            .iter()
            .map(|c| ColumnRow {
                name: c.name.clone(),
                column_type: super::format::type_name(v.lang, c.column_type).to_string(),
                subject: c.subject.map(|s| v.lang.label("subj", &s.to_string())).unwrap_or_default(),
            })
            .collect(),
        added: rep.added_columns.clone(),
        sample,
    };
    let upload = Upload {
        id: id.clone(),
        owner: u.username.clone(),
        dataset: r.to_string(),
        size,
        step: UploadStep::Checked,
        file_name,
        settings: saved,
        bytes_read: 0,
        version: None,
        rows: None,
        problems: None,
        quiet_for: 0,
    };
    // Kept where every node finds it: the confirmation may come to another node.
    if let Err(e) = state.engine.stage_upload(&upload, &path).await {
        return super::pages::problem_page(&v, crate::Problem::from_query(e));
    }
    drop(dir);
    v.page(StatusCode::OK, &page)
}

/// `POST /last-opp/{id}`: the confirmation; starts the ingest and shows its progress.
pub async fn confirm(State(state): State<AppState>, v: Visitor, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let u = match uploader(&v) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if let Err(refused) = v.form(&body) {
        return refused;
    }
    if !is_job_id(&id) {
        return not_found(&v);
    }
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return failure(&v, &translate(v.lang, &e.to_string())),
    };
    let (upload, path) = match state.engine.claim_upload(&id, &u.username, dir.path()).await {
        Ok(Some(claimed)) => claimed,
        // Not waiting (confirmed already, here or on another node) or not this user's.
        Ok(None) => return Redirect::to(&format!("/last-opp/jobb/{id}")).into_response(),
        Err(e) => return super::pages::problem_page(&v, crate::Problem::from_query(e)),
    };
    let request =
        serde_json::from_str::<IngestSettings>(&upload.settings).map_err(|e| StoreError::Read(e.to_string())).and_then(|settings| {
            let r: DatasetRef = upload.dataset.parse().map_err(|e: tverr_core::ModelError| StoreError::Read(e.to_string()))?;
            settings.request(r, path, u.username.clone())
        });
    let read = Arc::new(AtomicU64::new(0));
    let (engine, principal) = (state.engine.clone(), v.principal.clone());
    let job = id.clone();
    tokio::spawn(async move {
        let outcome = match request {
            Ok(mut request) => {
                let counter = read.clone();
                request.options.progress = Some(Arc::new(move |bytes| counter.store(bytes, Ordering::Relaxed)));
                // The progress, every few seconds, for the job page on any node.
                let done = Arc::new(AtomicBool::new(false));
                let ticker = {
                    let (engine, job, read, done) = (engine.clone(), job.clone(), read.clone(), done.clone());
                    tokio::spawn(async move {
                        while !done.load(Ordering::Relaxed) {
                            tokio::time::sleep(PROGRESS_EVERY).await;
                            if let Err(e) = engine.upload_progress(&job, read.load(Ordering::Relaxed)).await {
                                tracing::warn!(error = %e, "an upload's progress could not be written");
                            }
                        }
                    })
                };
                let outcome = engine.ingest(&principal, Channel::WebUpload, request).await;
                done.store(true, Ordering::Relaxed);
                ticker.abort();
                outcome
            }
            Err(e) => Err(tverr_access::QueryError::Store(e)),
        };
        drop(dir);
        let finished = match outcome {
            Ok(o) => Ok((o.version, o.report.rows)),
            Err(e) => {
                let said = match e {
                    tverr_access::QueryError::Store(e) => Said::of(&e),
                    e => vec![Said::Plain(e.to_string())],
                };
                Err(serde_json::to_string(&said).unwrap_or_else(|_| "[]".into()))
            }
        };
        if let Err(e) = engine.finish_upload(&job, finished).await {
            tracing::warn!(error = %e, "an upload's outcome could not be recorded");
        }
    });
    Redirect::to(&format!("/last-opp/jobb/{id}")).into_response()
}

#[derive(Template)]
#[template(path = "upload_job.html")]
struct JobPage {
    page: Chrome,
    dataset: String,
    running: bool,
    read: u64,
    size: u64,
    percent: u64,
    version: Option<i64>,
    rows: u64,
    problems: Vec<String>,
}

/// `GET /last-opp/jobb/{id}`: the progress of an ingest, then its outcome.
pub async fn job(State(state): State<AppState>, v: Visitor, Path(id): Path<String>) -> Response {
    let u = match uploader(&v) {
        Ok(u) => u,
        Err(r) => return r,
    };
    if !is_job_id(&id) {
        return not_found(&v);
    }
    let up = match state.engine.upload(&id, &u.username).await {
        Ok(up) => up,
        Err(e) => return super::pages::problem_page(&v, crate::Problem::from_query(e)),
    };
    let view = up.map(|up| {
        let mut page = JobPage {
            page: v.chrome(v.lang.t("upload_job_title")),
            dataset: up.dataset.clone(),
            running: false,
            read: 0,
            size: up.size,
            percent: 0,
            version: None,
            rows: 0,
            problems: Vec::new(),
        };
        match up.step {
            UploadStep::Checked => page.running = false,
            UploadStep::Running if up.quiet_for > SILENT_FOR => page.problems = vec![v.lang.t("upload_interrupted").to_string()],
            UploadStep::Running => {
                page.running = true;
                page.read = up.bytes_read.min(up.size);
                page.percent = (page.read * 100).checked_div(up.size).unwrap_or(0);
            }
            UploadStep::Done => {
                page.version = up.version;
                page.rows = up.rows.unwrap_or_default();
                page.read = up.size;
                page.percent = 100;
            }
            UploadStep::Failed => {
                let said: Vec<Said> = up.problems.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
                page.problems = said.iter().map(|s| s.text(v.lang)).collect();
                if page.problems.is_empty() {
                    page.problems.push(v.lang.t("msg_unknown").to_string());
                }
            }
        }
        // The heading says where it stands: «Lagrer» while it runs, «Lagret» once it is.
        let title = match (&page.version, page.problems.is_empty()) {
            (Some(_), _) => "upload_stored_title",
            (None, false) => "upload_failed_title",
            (None, true) => "upload_job_title",
        };
        page.page = v.chrome(v.lang.t(title));
        page
    });
    match view {
        Some(page) => {
            let status = if page.problems.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
            v.page(status, &page)
        }
        None => not_found(&v),
    }
}

/// Upload ids are what [`check`] makes: 24 hex digits.
fn is_job_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn not_found(v: &Visitor) -> Response {
    let page = v.chrome(v.lang.t("not_found"));
    v.page(StatusCode::NOT_FOUND, &Message::new(page, v.lang.t("not_found"), v.lang.t("not_found_text").to_string()))
}

fn failure(v: &Visitor, detail: &str) -> Response {
    let page = v.chrome(v.lang.t("error"));
    v.page(StatusCode::SERVICE_UNAVAILABLE, &Message::new(page, v.lang.t("error"), detail.to_string()))
}

/// A file name safe as one path component.
fn safe_name(name: &str) -> String {
    let base: String = name.rsplit(['/', '\\']).next().unwrap_or("").chars().filter(|c| !c.is_control()).collect();
    base.trim().trim_start_matches('.').to_string()
}

/// Streams a file field to `path`, refusing more than `limit` bytes.
async fn receive(mut field: axum::extract::multipart::Field<'_>, path: &std::path::Path, limit: u64) -> Result<u64, String> {
    let mut out = tokio::fs::File::create(path).await.map_err(|e| e.to_string())?;
    let mut size = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| e.body_text())? {
        size += chunk.len() as u64;
        if size > limit {
            return Err(format!("the file is larger than this server accepts ({limit} bytes)"));
        }
        out.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    out.flush().await.map_err(|e| e.to_string())?;
    Ok(size)
}
