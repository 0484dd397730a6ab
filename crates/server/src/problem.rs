//! RFC 9457 problem details: the one table from errors to `type`, title and status.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tverr_store::StoreError;

/// A problem response (`application/problem+json`).
#[derive(Debug, Clone, Serialize)]
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
}

impl Problem {
    /// A problem of the given kind (`/problems/{kind}`).
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self { kind: format!("/problems/{kind}"), title: title.to_string(), status: status.as_u16(), detail: detail.into() }
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

    /// The response for a dataset that does not exist *or* that the caller may not see.
    pub fn dataset_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "dataset-not-found", "Datasettet finnes ikke / Dataset not found", "no such dataset")
    }

    /// Maps store errors; internals are logged, not returned.
    pub fn from_store(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { what: "dataset" | "table", .. } => Self::dataset_not_found(),
            StoreError::NotFound { what, name } => {
                Self::new(StatusCode::NOT_FOUND, "not-found", "Ikke funnet / Not found", format!("{what} {name} does not exist"))
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
    pub fn from_query(e: tverr_query::QueryError) -> Self {
        use tverr_query::QueryError as Q;
        match e {
            Q::NotFound(_) => Self::dataset_not_found(),
            Q::PurposeRequired(_) => Self::new(StatusCode::FORBIDDEN, "purpose-required", "Formål mangler / Purpose required", e.to_string()),
            Q::PurposeNotAllowed { .. } => {
                Self::new(StatusCode::FORBIDDEN, "purpose-not-allowed", "Formålet gir ikke tilgang / Purpose not allowed", e.to_string())
            }
            Q::NotAllowed(_) => Self::new(StatusCode::BAD_REQUEST, "sql-not-allowed", "Ikke tillatt / Not allowed", e.to_string()),
            Q::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, "invalid-sql", "Ugyldig spørring / Invalid query", e.to_string()),
            Q::Execution(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "query-failed", "Spørringen feilet / Query failed", e.to_string()),
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
            P::Invalid { .. } => Self::new(StatusCode::BAD_REQUEST, "invalid-input", "Ugyldig forespørsel / Invalid request", e.to_string()),
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
        use tverr_query::QueryError as Q;
        match d {
            tverr_policy::Denial::NotFound => Self::dataset_not_found(),
            tverr_policy::Denial::PurposeRequired => Self::from_query(Q::PurposeRequired(dataset.to_string())),
            tverr_policy::Denial::PurposeNotAllowed => Self::from_query(Q::PurposeNotAllowed {
                dataset: dataset.to_string(),
                purpose: purpose.unwrap_or_default().to_string(),
            }),
        }
    }

    fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Intern feil / Internal error", "the server could not complete the request")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response()
    }
}
