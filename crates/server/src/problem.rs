//! RFC 9457 problem details: the one table from errors to `type`, title and status.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tverr_access::StoreError;

macro_rules! problem_kinds {
    ($($(#[$meta:meta])* $variant:ident = ($slug:literal, $status:ident, $title:literal),)*) => {
        /// Every kind of problem the API answers with: its `type` (`/problems/{slug}`), HTTP
        /// status and title, in one table. A title names the kind, in bokmål and English, and
        /// is the same in every occurrence; `detail` says what happened.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ProblemKind {
            $($(#[$meta])* $variant,)*
        }

        impl ProblemKind {
            /// Every kind, in the order listed.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The last part of the `type` URI.
            pub const fn slug(self) -> &'static str {
                match self {
                    $(Self::$variant => $slug,)*
                }
            }

            /// The status a problem of this kind is sent with.
            pub const fn status(self) -> StatusCode {
                match self {
                    $(Self::$variant => StatusCode::$status,)*
                }
            }

            /// The title, bokmål first.
            pub const fn title(self) -> &'static str {
                match self {
                    $(Self::$variant => $title,)*
                }
            }
        }
    };
}

problem_kinds! {
    /// The request body or a field of it is not valid.
    InvalidInput = ("invalid-input", BAD_REQUEST, "Ugyldig forespørsel / Invalid request"),
    /// A query parameter is unknown, repeated or malformed.
    InvalidParameter = ("invalid-parameter", BAD_REQUEST, "Ugyldig parameter / Invalid parameter"),
    /// The declared purpose is not one purpose in text.
    InvalidPurpose = ("invalid-purpose", BAD_REQUEST, "Ugyldig formål / Invalid purpose"),
    /// The SQL or expression is invalid.
    InvalidSql = ("invalid-sql", BAD_REQUEST, "Ugyldig spørring / Invalid query"),
    /// The SQL uses something Tverr does not run.
    SqlNotAllowed = ("sql-not-allowed", BAD_REQUEST, "Ikke tillatt / Not allowed"),
    /// The result is larger than one query may return.
    TooManyRows = ("too-many-rows", BAD_REQUEST, "For stort resultat / Result too large"),
    /// A request the route does not understand (axum's rejections).
    InvalidRequest = ("invalid-request", BAD_REQUEST, "Ugyldig forespørsel / Invalid request"),
    /// No credential, or one that is not valid.
    Unauthenticated = ("unauthenticated", UNAUTHORIZED, "Ikke autentisert / Not authenticated"),
    /// The caller may not do this.
    Forbidden = ("forbidden", FORBIDDEN, "Ikke tillatt / Forbidden"),
    /// Reading this dataset needs a declared purpose.
    PurposeRequired = ("purpose-required", FORBIDDEN, "Formål mangler / Purpose required"),
    /// The declared purpose does not cover this dataset.
    PurposeNotAllowed = ("purpose-not-allowed", FORBIDDEN, "Formålet gir ikke tilgang / Purpose not allowed"),
    /// No such resource.
    NotFound = ("not-found", NOT_FOUND, "Ikke funnet / Not found"),
    /// No such dataset, or one the caller may not see: the two look the same.
    DatasetNotFound = ("dataset-not-found", NOT_FOUND, "Datasettet finnes ikke / Dataset not found"),
    /// The dataset has no such version.
    VersionNotFound = ("version-not-found", NOT_FOUND, "Versjonen finnes ikke / Version not found"),
    /// No such agreement, or one the caller may not see.
    AgreementNotFound = ("agreement-not-found", NOT_FOUND, "Avtalen finnes ikke / Agreement not found"),
    /// None of the media types the client accepts can be given.
    NotAcceptable = ("not-acceptable", NOT_ACCEPTABLE, "Formatet kan ikke leveres / Not acceptable"),
    /// The route does not take that HTTP method.
    MethodNotAllowed = ("method-not-allowed", METHOD_NOT_ALLOWED, "Metoden er ikke tillatt / Method not allowed"),
    /// What would be created exists already.
    Exists = ("exists", CONFLICT, "Finnes allerede / Already exists"),
    /// The body is larger than the route accepts.
    PayloadTooLarge = ("payload-too-large", PAYLOAD_TOO_LARGE, "For stor forespørsel / Request too large"),
    /// The Content-Type is not one the route reads.
    UnsupportedMediaType = ("unsupported-media-type", UNSUPPORTED_MEDIA_TYPE, "Ukjent innholdstype / Unsupported media type"),
    /// An uploaded file has problems; `problems` locates each.
    InvalidFile = ("invalid-file", UNPROCESSABLE_ENTITY, "Filen kan ikke leses inn / The file cannot be ingested"),
    /// The query failed while it ran.
    QueryFailed = ("query-failed", UNPROCESSABLE_ENTITY, "Spørringen feilet / Query failed"),
    /// The caller runs as many queries as it may at once.
    TooManyQueries = ("too-many-queries", TOO_MANY_REQUESTS, "For mange samtidige spørringer / Too many queries at once"),
    /// Too many failed log-ins for the user name or address.
    TooManyLogins = ("too-many-logins", TOO_MANY_REQUESTS, "For mange innloggingsforsøk / Too many log-in attempts"),
    /// The server could not complete the request (the cause is in its log).
    Internal = ("internal", INTERNAL_SERVER_ERROR, "Intern feil / Internal error"),
    /// The catalogue database or storage does not answer; try again later (`Retry-After`).
    Unavailable = ("unavailable", SERVICE_UNAVAILABLE, "Tjenesten er midlertidig utilgjengelig / Service temporarily unavailable"),
    /// Storage or the catalogue stopped answering while a version was being committed: whether it
    /// was is not known yet (it is recorded as soon as they answer, if it was).
    WriteOutcomeUnknown = ("write-outcome-unknown", SERVICE_UNAVAILABLE, "Utfallet av skrivingen er ukjent / Outcome of the write unknown"),
    /// The access log cannot be written, so nothing is released.
    AuditUnavailable = ("audit-unavailable", SERVICE_UNAVAILABLE, "Tilgangsloggen er utilgjengelig / Access log unavailable"),
    /// The query ran past its time limit and was stopped.
    QueryTimeout = ("query-timeout", GATEWAY_TIMEOUT, "Spørringen tok for lang tid / Query timed out"),
    /// The request took longer than the server allows.
    Timeout = ("timeout", REQUEST_TIMEOUT, "Tidsavbrudd / Timed out"),
}

/// What a 503 asks the client to wait, in seconds, before it tries again.
pub(crate) const RETRY_AFTER_SECONDS: &str = "5";

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
    /// A problem of the given kind (`/problems/{slug}`, its status and title).
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("/problems/{}", kind.slug()),
            title: kind.title().to_string(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            problems: None,
        }
    }

    /// Reads a request body as JSON whatever its Content-Type (so `curl -d` works); a bad body is
    /// a 400 naming what was expected and the line and column.
    pub fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, Self> {
        serde_json::from_slice(body).map_err(|e| {
            Self::new(ProblemKind::InvalidInput, format!("expected {expected}: line {}, column {}: {e}", e.line(), e.column()))
        })
    }

    /// A query parameter that is unknown, repeated or malformed; `detail` names it.
    pub fn invalid_parameter(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::InvalidParameter, detail)
    }

    /// The response for a dataset that does not exist *or* that the caller may not see.
    pub fn dataset_not_found() -> Self {
        Self::new(ProblemKind::DatasetNotFound, "no such dataset")
    }

    /// Maps store errors; internals are logged, not returned.
    pub fn from_store(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what: "dataset" | "table", .. } => Self::dataset_not_found(),
            StoreError::NotFound { what: "version", name } => {
                Self::new(ProblemKind::VersionNotFound, format!("version {name} does not exist"))
            }
            StoreError::NotFound { what, name } => Self::new(ProblemKind::NotFound, format!("{what} {name} does not exist")),
            StoreError::Ingest(tverr_access::ingest::IngestError::Invalid(problems)) => {
                let detail = StoreError::Ingest(tverr_access::ingest::IngestError::Invalid(problems.clone())).to_string();
                let mut p = Self::new(ProblemKind::InvalidFile, detail);
                p.problems = Some(problems);
                p
            }
            StoreError::Invalid { .. } | StoreError::Ingest(_) => Self::new(ProblemKind::InvalidInput, e.to_string()),
            StoreError::Exists { .. } => Self::new(ProblemKind::Exists, e.to_string()),
            StoreError::OutcomeUnknown { .. } => Self::new(ProblemKind::WriteOutcomeUnknown, e.to_string()),
            StoreError::Busy { .. } | StoreError::LockLost { .. } => Self::new(ProblemKind::Unavailable, e.to_string()),
            other if other.is_unavailable() => {
                tracing::warn!(error = %other, "a service does not answer");
                Self::unavailable()
            }
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
            Q::PurposeRequired(_) => Self::new(ProblemKind::PurposeRequired, e.to_string()),
            Q::PurposeNotAllowed { .. } => Self::new(ProblemKind::PurposeNotAllowed, e.to_string()),
            Q::NotAllowed(_) => Self::new(ProblemKind::SqlNotAllowed, e.to_string()),
            Q::Invalid(_) => Self::new(ProblemKind::InvalidSql, e.to_string()),
            Q::Execution(ref text) | Q::Output(ref text) if tverr_access::unavailable(text) => {
                tracing::warn!(error = %e, "a service does not answer");
                Self::unavailable()
            }
            Q::Execution(_) => Self::new(ProblemKind::QueryFailed, e.to_string()),
            Q::Timeout(_) => Self::new(ProblemKind::QueryTimeout, e.to_string()),
            Q::TooManyRows(_) => Self::new(ProblemKind::TooManyRows, e.to_string()),
            Q::Store(s) => Self::from_store(s),
            Q::Policy(p) => Self::from_policy(p),
            Q::AuditUnavailable(_) => {
                tracing::error!(error = %e, "access log unavailable");
                Self::new(ProblemKind::AuditUnavailable, "the access log cannot be written, so nothing is released; try again later")
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
            P::Invalid { .. } => Self::new(ProblemKind::InvalidInput, e.to_string()),
            P::Forbidden(_) => Self::new(ProblemKind::Forbidden, e.to_string()),
            P::Unauthenticated(_) => Self::new(ProblemKind::Unauthenticated, e.to_string()),
            P::Store(s) => Self::from_store(s),
            other if tverr_access::unavailable(&other.to_string()) => {
                tracing::warn!(error = %other, "a service does not answer");
                Self::unavailable()
            }
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

    /// A service the request needs does not answer: 503, with `Retry-After`.
    pub fn unavailable() -> Self {
        Self::new(
            ProblemKind::Unavailable,
            "the catalogue or storage does not answer at the moment; nothing was changed or released. Try again shortly",
        )
    }

    pub(crate) fn internal() -> Self {
        Self::new(ProblemKind::Internal, "the server could not complete the request")
    }
}

/// Turns every error response that is not yet a problem (a rejection by axum or a layer: 405,
/// 413, 415, 408, 504 …) into one, so that clients see one error format everywhere.
/// The response for a request whose handler panicked: a 500 problem that says nothing of why
/// (the panic's text goes to the server's log).
pub fn panicked(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let why = cause.downcast_ref::<String>().map(String::as_str).or_else(|| cause.downcast_ref::<&str>().copied()).unwrap_or("unknown");
    tracing::error!(panic = why, "a request's handler panicked");
    Problem::new(ProblemKind::Internal, "the server could not complete the request").into_response()
}

/// Marks an error response whose body is its own (`/ready`'s checks), not to be made a problem.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnBody;

pub async fn problems_everywhere(response: Response) -> Response {
    let status = response.status();
    let is_problem = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    // The web pages answer errors with pages of their own.
    let is_page = response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if status.as_u16() < 400 || is_problem || is_page || response.extensions().get::<OwnBody>().is_some() {
        return response;
    }
    let (kind, detail) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (ProblemKind::MethodNotAllowed, "this route does not take that HTTP method"),
        StatusCode::PAYLOAD_TOO_LARGE => (ProblemKind::PayloadTooLarge, "the request body is larger than this route accepts"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (ProblemKind::UnsupportedMediaType, "the Content-Type is not one this route reads"),
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            (ProblemKind::Timeout, "the request took longer than the server allows")
        }
        StatusCode::NOT_FOUND => (ProblemKind::NotFound, "no such resource"),
        s if s.is_client_error() => (ProblemKind::InvalidRequest, "the request is not one this route understands"),
        _ => (ProblemKind::Internal, "the server could not complete the request"),
    };
    // The kinds that cover several statuses keep the one the layer chose.
    let mut problem = Problem { status: status.as_u16(), ..Problem::new(kind, detail) };
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
        let mut response = (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_type_and_a_title_in_both_languages() {
        for (i, k) in ProblemKind::ALL.iter().enumerate() {
            assert!(ProblemKind::ALL[..i].iter().all(|o| o.slug() != k.slug()), "{} twice", k.slug());
            assert!(k.status().is_client_error() || k.status().is_server_error(), "{k:?}");
            let (bokmal, english) = k.title().split_once(" / ").unwrap_or_else(|| panic!("{k:?}: bokmål / English"));
            assert!(!bokmal.is_empty() && !english.is_empty(), "{k:?}");
        }
        let p = Problem::new(ProblemKind::DatasetNotFound, "no such dataset");
        assert_eq!((p.kind.as_str(), p.status), ("/problems/dataset-not-found", 404));
    }
}
