//! RFC 9457 problem details: the one table from errors to `type`, title and status.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tverr_access::StoreError;

/// A problem response (`application/problem+json`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A stable URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human title.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened in this case.
    pub detail: String,
    /// Located input problems (file, line or row, column, message), for a refused upload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<tverr_access::ingest::Problem>>,
}

impl Problem {
    /// A problem of the given kind (`/problems/{kind}`).
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self { kind: format!("/problems/{kind}"), title: title.to_string(), status: status.as_u16(), detail: detail.into(), problems: None }
    }

    /// Reads a request body as JSON whatever its Content-Type (so `curl -d` works); a bad body is
    /// a 400 naming what was expected and the line and column.
    pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, Self> {
        serde_json::from_slice(body).map_err(|e| {
            Self::new(
                StatusCode::BAD_REQUEST,
                "invalid-input",
                "Ugyldig forespørsel / Invalid request",
                format!("expected {expected}: line {}, column {}: {e}", e.line(), e.column()),
            )
        })
    }

    /// A query parameter that is unknown, repeated or malformed; `detail` names it.
    pub fn invalid_parameter(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-parameter", "Ugyldig parameter / Invalid parameter", detail)
    }

    /// The response for a dataset that does not exist *or* that the caller may not see.
    pub fn dataset_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "dataset-not-found", "Datasettet finnes ikke / Dataset not found", "no such dataset")
    }

    /// Maps store errors; internals are logged, not returned.
    pub fn from_store(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what: "dataset" | "table", .. } => Self::dataset_not_found(),
            StoreError::NotFound { what: "version", name } => Self::new(
                StatusCode::NOT_FOUND,
                "version-not-found",
                "Versjonen finnes ikke / Version not found",
                format!("version {name} does not exist"),
            ),
            StoreError::NotFound { what, name } => {
                Self::new(StatusCode::NOT_FOUND, "not-found", "Ikke funnet / Not found", format!("{what} {name} does not exist"))
            }
            StoreError::Ingest(tverr_access::ingest::IngestError::Invalid(problems)) => {
                let detail = StoreError::Ingest(tverr_access::ingest::IngestError::Invalid(problems.clone())).to_string();
                let mut p = Self::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-file",
                    "Filen kan ikke leses inn / The file cannot be ingested",
                    detail,
                );
                p.problems = Some(problems);
                p
            }
            StoreError::Invalid { .. } | StoreError::Ingest(_) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-input", "Ugyldig forespørsel / Invalid request", e.to_string())
            }
            StoreError::Exists { .. } => Self::new(StatusCode::CONFLICT, "exists", "Finnes allerede / Already exists", e.to_string()),
            other => {
                tracing::error!(error = %other, "internal error");
                Self::internal()
            }
        }
    }
}

impl Problem {
    /// Maps query errors. Not entitled and not existing are the same 404.
    pub fn from_query(e: tverr_access::QueryError) -> Self {
        use tverr_access::QueryError as Q;
        match e {
            Q::NotFound(_) => Self::dataset_not_found(),
            Q::PurposeRequired(_) => {
                Self::new(StatusCode::FORBIDDEN, "purpose-required", "Formål mangler / Purpose required", e.to_string())
            }
            Q::PurposeNotAllowed { .. } => {
                Self::new(StatusCode::FORBIDDEN, "purpose-not-allowed", "Formålet gir ikke tilgang / Purpose not allowed", e.to_string())
            }
            Q::NotAllowed(_) => Self::new(StatusCode::BAD_REQUEST, "sql-not-allowed", "Ikke tillatt / Not allowed", e.to_string()),
            Q::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, "invalid-sql", "Ugyldig spørring / Invalid query", e.to_string()),
            Q::Execution(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "query-failed", "Spørringen feilet / Query failed", e.to_string())
            }
            Q::Timeout(_) => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "query-timeout", "Spørringen tok for lang tid / Query timed out", e.to_string())
            }
            Q::TooManyRows(_) => {
                Self::new(StatusCode::BAD_REQUEST, "too-many-rows", "For stort resultat / Result too large", e.to_string())
            }
            Q::Store(s) => Self::from_store(s),
            Q::Policy(p) => Self::from_policy(p),
            Q::AuditUnavailable(_) => {
                tracing::error!(error = %e, "access log unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "audit-unavailable",
                    "Tilgangsloggen er utilgjengelig / Access log unavailable",
                    "the access log cannot be written, so nothing is released; try again later",
                )
            }
            other => {
                tracing::error!(error = %other, "query error");
                Self::internal()
            }
        }
    }

    /// Maps policy errors.
    pub fn from_policy(e: tverr_policy::PolicyError) -> Self {
        use tverr_policy::PolicyError as P;
        match e {
            P::Invalid { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid-input", "Ugyldig forespørsel / Invalid request", e.to_string())
            }
            P::Forbidden(_) => Self::new(StatusCode::FORBIDDEN, "forbidden", "Ikke tillatt / Forbidden", e.to_string()),
            P::Unauthenticated(_) => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Ikke autentisert / Not authenticated", e.to_string())
            }
            P::Store(s) => Self::from_store(s),
            other => {
                tracing::error!(error = %other, "policy error");
                Self::internal()
            }
        }
    }

    /// Maps a denial for a dataset.
    pub fn from_denial(d: tverr_policy::Denial, dataset: &str, purpose: Option<&str>) -> Self {
        use tverr_access::QueryError as Q;
        match d {
            tverr_policy::Denial::NotFound => Self::dataset_not_found(),
            tverr_policy::Denial::PurposeRequired => Self::from_query(Q::PurposeRequired(dataset.to_string())),
            tverr_policy::Denial::PurposeNotAllowed => {
                Self::from_query(Q::PurposeNotAllowed { dataset: dataset.to_string(), purpose: purpose.unwrap_or_default().to_string() })
            }
        }
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Intern feil / Internal error",
            "the server could not complete the request",
        )
    }
}

/// Turns every error response that is not yet a problem (a rejection by axum or a layer: 405,
/// 413, 415, 408, 504 …) into one, so that clients see one error format everywhere.
/// The response for a request whose handler panicked: a 500 problem that says nothing of why
/// (the panic's text goes to the server's log).
pub fn panicked(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let why = cause.downcast_ref::<String>().map(String::as_str).or_else(|| cause.downcast_ref::<&str>().copied()).unwrap_or("unknown");
    tracing::error!(panic = why, "a request's handler panicked");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Intern feil / Internal error", "the server could not complete the request")
        .into_response()
}

pub async fn problems_everywhere(response: Response) -> Response {
    let status = response.status();
    let is_problem = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    // The web pages answer errors with pages of their own.
    let is_page = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if status.as_u16() < 400 || is_problem || is_page {
        return response;
    }
    let (kind, title, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method-not-allowed", "Metoden er ikke tillatt / Method not allowed", "this route does not take that HTTP method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload-too-large", "For stor forespørsel / Request too large", "the request body is larger than this route accepts")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported-media-type", "Ukjent innholdstype / Unsupported media type", "the Content-Type is not one this route reads")
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            ("timeout", "Tidsavbrudd / Timed out", "the request took longer than the server allows")
        }
        StatusCode::NOT_FOUND => ("not-found", "Ikke funnet / Not found", "no such resource"),
        s if s.is_client_error() => {
            ("invalid-request", "Ugyldig forespørsel / Invalid request", "the request is not one this route understands")
        }
        _ => ("internal", "Intern feil / Internal error", "the server could not complete the request"),
    };
    let mut problem = Problem::new(status, kind, title, detail);
    let (parts, body) = response.into_parts();
    if status.is_client_error() && status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED {
        // axum's rejections say what was wrong in a short text body; keep it.
        let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        if !text.is_empty() {
            problem.detail = text;
        }
    }
    let mut out = problem.into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
    }
}
