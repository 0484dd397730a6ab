//! Uploads: `POST /api/v1/datasets` creates a dataset from a file, `POST …/versions` writes a new
//! version (append, replace or upsert), `GET …/versions` lists them. The body is the file,
//! streamed to a temporary file under a size limit, then read by the same ingest code as
//! `tverr ingest`; a refused file changes nothing and its problem names line or row and column.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tverr_access::{CreateSettings, IngestSettings};
use tverr_core::DatasetRef;
use tverr_policy::{Action, Policy};

use crate::{AppState, Caller, Problem, ProblemKind};
use tverr_access::Channel;

/// Parameters of both routes.
const COMMON: &[&str] = &["mode", "key", "format", "sheet", "subject", "category", "describe", "type", "crs", "evolve", "filename"];
/// Parameters that only creating a dataset takes.
const CREATE: &[&str] =
    &["org", "dataset", "department", "title", "description", "classification", "theme", "keyword", "licence", "frequency"];

/// An upload's parameters.
#[derive(Debug, Default)]
struct Upload {
    settings: IngestSettings,
    filename: Option<String>,
    org: Option<String>,
    dataset: Option<String>,
}

fn parse(raw: Option<&str>, create: bool) -> Result<Upload, Problem> {
    let mut u = Upload::default();
    let mut c = CreateSettings::default();
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let (k, v) = (k.into_owned(), v.into_owned());
        if !(COMMON.contains(&k.as_str()) || (create && CREATE.contains(&k.as_str()))) {
            let all: Vec<&str> = COMMON.iter().chain(if create { CREATE } else { &[] }).copied().collect();
            return Err(Problem::invalid_parameter(format!("unknown parameter {k:?}; this route takes {}", all.join(", "))));
        }
        let repeatable = matches!(k.as_str(), "subject" | "category" | "describe" | "type" | "keyword");
        if !repeatable && seen.contains(&k) {
            return Err(Problem::invalid_parameter(format!("{k}: given more than once")));
        }
        seen.push(k.clone());
        let s = &mut u.settings;
        match k.as_str() {
            "mode" => s.mode = Some(v),
            "key" => s.key = Some(v),
            "format" => s.format = Some(v),
            "sheet" => s.sheet = Some(v),
            "subject" => s.subjects.push(v),
            "category" => s.categories.push(v),
            "describe" => s.descriptions.push(v),
            "type" => s.types.push(v),
            "crs" => s.crs = Some(v),
            "evolve" => {
                s.evolve = match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(Problem::invalid_parameter(format!("evolve: expected true or false, found {v:?}"))),
                }
            }
            "filename" => u.filename = Some(v),
            "org" => u.org = Some(v),
            "dataset" => u.dataset = Some(v),
            "department" => c.department = Some(v),
            "title" => c.title = Some(v),
            "description" => c.description = v,
            "classification" => c.classification = Some(v),
            "theme" => c.theme = Some(v),
            "keyword" => c.keywords.push(v),
            "licence" => c.licence = Some(v),
            "frequency" => c.frequency = Some(v),
            _ => {}
        }
    }
    if create {
        if u.settings.mode.as_deref().is_some_and(|m| m != "append") || u.settings.key.is_some() {
            return Err(Problem::invalid_parameter("mode and key apply to new versions of an existing dataset, not to creating one"));
        }
        u.settings.create = Some(c);
    }
    Ok(u)
}

/// The format a Content-Type names; `None` to detect it from the name and the content.
fn format_of(headers: &HeaderMap) -> Result<Option<&'static str>, Problem> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(None) };
    let mime = value.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    Ok(match mime.as_str() {
        "text/csv" | "text/tab-separated-values" | "text/plain" => Some("csv"),
        "application/json" => Some("json"),
        "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => Some("ndjson"),
        "application/geo+json" => Some("geojson"),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Some("xlsx"),
        "application/vnd.apache.parquet" | "application/x-parquet" => Some("parquet"),
        "application/octet-stream" | "" => None,
        other => {
            return Err(Problem::new(
                ProblemKind::UnsupportedMediaType,
                format!(
                    "Content-Type {other:?} is not a format Tverr reads; send text/csv, application/json, application/x-ndjson, \
                     application/geo+json, an .xlsx or a Parquet file (or application/octet-stream to detect it)"
                ),
            ));
        }
    })
}

/// A file name that is safe as a path component; it is recorded with the version.
fn safe_name(name: Option<&str>, format: Option<&str>) -> String {
    let base: String = name.unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("").chars().filter(|c| !c.is_control()).collect();
    let base = base.trim().trim_start_matches('.').to_string();
    if base.is_empty() { format!("upload.{}", format.unwrap_or("bin")) } else { base }
}

/// The upload could not be written to local disk; the cause is logged, not returned.
fn not_stored(e: &std::io::Error) -> Problem {
    // A full disk passes: 503, try again later.
    if matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) || tverr_access::unavailable(&e.to_string())
    {
        tracing::warn!(error = %e, "cannot store an upload: the disk is full");
        return Problem::unavailable();
    }
    tracing::error!(error = %e, "cannot store an upload");
    Problem::new(ProblemKind::Internal, "the upload could not be stored")
}

/// Writes the body to `path`, refusing it once it passes `limit` bytes.
async fn receive(body: Body, path: &std::path::Path, limit: u64) -> Result<u64, Problem> {
    let failed = |e: std::io::Error| not_stored(&e);
    let mut file = tokio::fs::File::create(path).await.map_err(failed)?;
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Problem::invalid_parameter(format!("the upload was interrupted: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(Problem::new(ProblemKind::PayloadTooLarge, format!("the file is larger than this server accepts ({limit} bytes)")));
        }
        file.write_all(&chunk).await.map_err(failed)?;
    }
    file.flush().await.map_err(failed)?;
    Ok(size)
}

/// Receives the file and ingests it; the ingest is logged with who made it.
async fn ingest(
    state: &AppState,
    caller: &Caller,
    r: DatasetRef,
    mut u: Upload,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let detected = format_of(headers)?;
    if u.settings.format.is_none() {
        u.settings.format = detected.map(str::to_string);
    }
    let actor = match &caller.principal {
        tverr_policy::Principal::User(user) => user.username.clone(),
        _ => return Err(Problem::from_policy(tverr_policy::PolicyError::Forbidden("only stewards may upload".into()))),
    };
    let dir = tempfile::tempdir().map_err(|e| not_stored(&e))?;
    let path = dir.path().join(safe_name(u.filename.as_deref(), u.settings.format.as_deref()));
    let bytes = receive(body, &path, state.limits.upload_bytes).await?;
    if bytes == 0 {
        return Err(Problem::invalid_parameter("the body is empty; send the file as the request body"));
    }
    let creating = u.settings.create.is_some();
    let request = u.settings.request(r.clone(), path, actor).map_err(Problem::from_store)?;
    let outcome = state.engine.ingest(&caller.principal, Channel::HttpUpload, request).await.map_err(Problem::from_query)?;
    let status = if creating { StatusCode::CREATED } else { StatusCode::OK };
    let location = format!("/api/v1/datasets/{}/{}/versions", r.org, r.dataset);
    Ok((status, [(header::LOCATION, location)], Json(outcome)).into_response())
}

/// `POST /api/v1/datasets?org=&dataset=&department=&title=&classification=…` with the file.
#[utoipa::path(post, path = "/api/v1/datasets", tag = "uploads",
    params(
        ("org" = String, Query, example = "hamar"), ("dataset" = String, Query, example = "kull-2026"),
        ("department" = String, Query, example = "oppvekst"), ("title" = String, Query, example = "Barnekull 2026"),
        ("classification" = tverr_core::Classification, Query), ("description" = Option<String>, Query),
        ("theme" = Option<String>, Query), ("keyword" = Option<Vec<String>>, Query), ("licence" = Option<String>, Query),
        ("frequency" = Option<String>, Query), ("format" = Option<String>, Query), ("sheet" = Option<String>, Query),
        ("subject" = Option<Vec<String>>, Query, description = "COL=person|property|organization"),
        ("category" = Option<Vec<String>>, Query, description = "COL=none|person-id|personal|special-category|protected-address"),
        ("describe" = Option<Vec<String>>, Query, description = "COL=TEXT: the column's description, the title people read"),
        ("type" = Option<Vec<String>>, Query, description = "COL=boolean|integer|float|date|timestamp|text"),
        ("crs" = Option<String>, Query), ("evolve" = Option<bool>, Query), ("filename" = Option<String>, Query),
    ),
    request_body(description = "The file (CSV, JSON, NDJSON, GeoJSON, XLSX or Parquet); Content-Type selects the reader",
        content((Vec<u8> = "text/csv"), (Vec<u8> = "application/json"), (Vec<u8> = "application/x-ndjson"), (Vec<u8> = "application/geo+json"), (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), (Vec<u8> = "application/vnd.apache.parquet"), (Vec<u8> = "application/octet-stream"))),
    responses((status = 201, description = "Created as version 0", body = tverr_access::IngestOutcome)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    signed_in_to_write(&caller)?;
    let u = parse(raw.as_deref(), true)?;
    let org = u.org.clone().ok_or_else(|| Problem::invalid_parameter("org: creating a dataset needs its organisation (org=)"))?;
    let dataset = u
        .dataset
        .clone()
        .ok_or_else(|| Problem::invalid_parameter("dataset: creating a dataset needs its name (dataset=, lower case, digits and -)"))?;
    let r: DatasetRef =
        format!("{org}/{dataset}").parse().map_err(|e: tverr_core::ModelError| Problem::invalid_parameter(format!("dataset: {e}")))?;
    let department = u
        .settings
        .create
        .as_ref()
        .and_then(|c| c.department.clone())
        .ok_or_else(|| Problem::invalid_parameter("department: creating a dataset needs its owning department"))?;
    Policy::may(&caller.principal, Action::Write { org: &org, department: &department }).map_err(Problem::from_policy)?;
    ingest(&state, &caller, r, u, &headers, body).await
}

/// The dataset, if the caller may write it: 404 when they may not even see it, 403 when they
/// may see but not write it.
async fn writable(state: &AppState, caller: &Caller, org: &str, dataset: &str) -> Result<DatasetRef, Problem> {
    let r: DatasetRef = format!("{org}/{dataset}").parse().map_err(|_| Problem::dataset_not_found())?;
    let meta = match state.engine.catalog().dataset(&r).await {
        Ok(m) => m,
        Err(_) => return Err(Problem::dataset_not_found()),
    };
    if let Err(e) = Policy::may(&caller.principal, Action::Write { org: r.org.as_str(), department: &meta.department }) {
        let visible = crate::may_see(state, &caller.principal, caller.purpose.as_deref(), &r).await;
        return Err(if visible { Problem::from_policy(e) } else { Problem::dataset_not_found() });
    }
    Ok(r)
}

/// Writes need a credential: an anonymous caller is told to send one (401), before anything
/// about the dataset is looked at.
fn signed_in_to_write(caller: &Caller) -> Result<(), Problem> {
    match caller.principal {
        tverr_policy::Principal::Anonymous => {
            Err(Problem::new(crate::ProblemKind::Unauthenticated, "writing a dataset needs a signed-in steward: send a bearer token"))
        }
        _ => Ok(()),
    }
}

/// `POST /api/v1/datasets/{org}/{dataset}/versions?mode=append|replace|upsert&key=` with the file.
#[utoipa::path(post, path = "/api/v1/datasets/{org}/{dataset}/versions", tag = "uploads",
    params(
        ("org" = String, Path), ("dataset" = String, Path),
        ("mode" = Option<String>, Query, description = "append (default), replace or upsert"),
        ("key" = Option<String>, Query, description = "The key column of an upsert"),
        ("format" = Option<String>, Query), ("sheet" = Option<String>, Query),
        ("subject" = Option<Vec<String>>, Query), ("category" = Option<Vec<String>>, Query), ("type" = Option<Vec<String>>, Query),
        ("describe" = Option<Vec<String>>, Query, description = "COL=TEXT: the column's description, the title people read"),
        ("crs" = Option<String>, Query), ("evolve" = Option<bool>, Query), ("filename" = Option<String>, Query),
    ),
    request_body(description = "The file",
        content((Vec<u8> = "text/csv"), (Vec<u8> = "application/json"), (Vec<u8> = "application/x-ndjson"), (Vec<u8> = "application/geo+json"), (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), (Vec<u8> = "application/vnd.apache.parquet"), (Vec<u8> = "application/octet-stream"))),
    responses((status = 200, description = "The new version", body = tverr_access::IngestOutcome)),
    security(("bearer" = [])))]
pub async fn add_version(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, dataset)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    signed_in_to_write(&caller)?;
    let u = parse(raw.as_deref(), false)?;
    let r = writable(&state, &caller, &org, &dataset).await?;
    ingest(&state, &caller, r, u, &headers, body).await
}

/// The versions of a dataset.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Versions {
    dataset: String,
    versions: Vec<crate::VersionView>,
}

/// `GET /api/v1/datasets/{org}/{dataset}/versions`: its history, newest last. Needs what reading
/// the dataset needs.
#[utoipa::path(get, path = "/api/v1/datasets/{org}/{dataset}/versions", operation_id = "list_versions", tag = "catalogue",
    params(("org" = String, Path, example = "hamar"), ("dataset" = String, Path, example = "barnehager"), crate::auth::PurposeHeader),
    responses((status = 200, description = "Every version, oldest first", body = Versions)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, dataset)): Path<(String, String)>,
) -> Result<Json<Versions>, Problem> {
    let r: DatasetRef = format!("{org}/{dataset}").parse().map_err(|_| Problem::dataset_not_found())?;
    let grant = crate::entitled(&state, &caller, &r).await?;
    let counts = crate::shows_row_counts(Some(&grant), &[]);
    let versions = crate::version_views(state.engine.catalog().versions(&r).await.map_err(Problem::from_store)?, counts);
    Ok(Json(Versions { dataset: r.to_string(), versions }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_a_503_and_other_failures_a_500() {
        for full in [std::io::ErrorKind::StorageFull, std::io::ErrorKind::QuotaExceeded] {
            assert_eq!(not_stored(&std::io::Error::from(full)).status, 503, "{full:?}");
        }
        assert_eq!(not_stored(&std::io::Error::from_raw_os_error(28)).status, 503, "ENOSPC");
        assert_eq!(not_stored(&std::io::Error::from(std::io::ErrorKind::PermissionDenied)).status, 500);
    }

    #[test]
    fn parameters_are_checked_with_their_names() {
        let err = |q: &str, create: bool| parse(Some(q), create).unwrap_err().detail;
        assert!(err("title=x", false).contains("unknown parameter \"title\""));
        assert!(err("mode=append&mode=replace", false).contains("mode: given more than once"));
        assert!(err("evolve=yes", false).contains("evolve: expected true or false"));
        assert!(err("mode=replace", true).contains("not to creating one"));
        let u = parse(Some("subject=a%3Dperson&subject=b%3Dproperty&keyword=x&keyword=y&org=hamar"), true).unwrap();
        assert_eq!(u.settings.subjects, ["a=person", "b=property"]);
        assert_eq!(u.settings.create.unwrap().keywords, ["x", "y"]);
    }

    #[test]
    fn file_names_cannot_leave_the_upload_directory() {
        assert_eq!(safe_name(Some("../../etc/passwd"), None), "passwd");
        assert_eq!(safe_name(Some("C:\\data\\fil.csv"), None), "fil.csv");
        assert_eq!(safe_name(Some(".."), Some("csv")), "upload.csv");
        assert_eq!(safe_name(None, None), "upload.bin");
    }
}
