//! What an operator sees of every request: a new id, sent back in `X-Request-Id`, named by
//! every log line of the request and by every access-log entry it makes; a log line when it is
//! answered; and the metrics at `GET /metrics`. Logs and metrics name the route's template, never
//! its path: a path can hold a person's number. A client's own `X-Request-Id` is not taken over
//! either: whatever it holds would be written into the access log.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::AppState;

/// The header that tells the client its request's id.
pub const REQUEST_ID: &str = "x-request-id";

/// A new request id: 16 random bytes as hex.
fn request_id() -> String {
    crate::web::random_hex(16)
}

/// The layer around every route: the request's id, its span, its log line and its metrics.
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = tverr_core::metrics::request_started();
    let id = request_id();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    // A method is a label only when it is one of HTTP's own: any other word would make a new
    // series, and a visitor could grow the metrics without bound.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "CONNECT" | "TRACE") => m.to_string(),
        _ => "other".to_string(),
    };
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let mut response = tverr_audit::with_request_id(id.clone(), next.run(request)).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let took = started.elapsed();
    tverr_core::metrics::request(&route, &method, status, took);
    span.in_scope(|| {
        let millis = took.as_secs_f64() * 1000.0;
        if status >= 500 {
            tracing::warn!(status, millis, "answered");
        } else {
            tracing::info!(status, millis, "answered");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

#[utoipa::path(get, path = "/metrics", tag = "service", responses(
    (status = 200, description = "The node's metrics in Prometheus' text format", content_type = "application/openmetrics-text"),
))]
/// `GET /metrics`: Prometheus' text format. With `TVERR_METRICS_TOKEN` set, only a request that
/// sends it as `Authorization: Bearer …` gets them (404 otherwise, as for a route that is not
/// there).
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        let same = sent.is_some_and(|s| {
            use sha2::Digest;
            // Compared as digests, so the time taken says nothing of how much of it matched.
            sha2::Sha256::digest(s.as_bytes()) == sha2::Sha256::digest(token.as_bytes())
        });
        if !same {
            return crate::Problem::new(crate::ProblemKind::NotFound, "no such resource").into_response();
        }
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        tverr_core::metrics::render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_gets_an_id_of_its_own() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        assert!(a.len() == 32 && a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
    }
}
