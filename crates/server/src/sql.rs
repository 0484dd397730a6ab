//! `POST /api/v1/sql`: a read-only query through the secure scan, streamed as JSON (an object
//! with `columns` and `rows`) or CSV, chosen by `Accept`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use tverr_access::QueryError;

use crate::{AppState, Caller, Problem, ProblemKind};
use tverr_access::Channel;

/// The request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One SELECT query over `org.dataset` tables.
    pub sql: String,
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("text/csv")))
}

/// The most rows one SQL query returns to a caller who is not signed in: a bound on what an
/// anonymous query (a recursive one, a cross join) can make the server compute and send.
pub const ANONYMOUS_ROWS: u64 = 1_000_000;

struct Rows {
    stream: tverr_access::SendableRecordBatchStream,
    /// The first batch, already written out (so that a batch that cannot be written is a
    /// problem before the response starts, not a dropped connection).
    pending: Option<Vec<u8>>,
    csv: bool,
    wrote_any: bool,
    finished: bool,
}

/// One batch as CSV lines or JSON objects.
fn write(batch: &arrow::record_batch::RecordBatch, csv: bool) -> Result<Vec<u8>, QueryError> {
    if csv { tverr_access::csv_rows(batch, false) } else { tverr_access::json_objects(batch, &[]) }
}

/// Runs the query. The first batch is computed before the response starts, so errors in
/// planning and in most executions arrive as problems; a later failure ends the body early.
#[utoipa::path(post, path = "/api/v1/sql", tag = "data",
    params(crate::auth::PurposeHeader),
    request_body(content = SqlRequest, example = json!({"sql": "SELECT navn, ledige_plasser FROM hamar.barnehager WHERE ledige_plasser > 0"})),
    responses((status = 200, description = "The result, streamed", content((SqlResult = "application/json"), (String = "text/csv")))))]
pub async fn query(State(state): State<AppState>, caller: Caller, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    // The body is read as JSON whatever its Content-Type, so `curl -d '{"sql": …}'` works.
    let req: SqlRequest = Problem::json_body(&body, "{\"sql\": \"SELECT …\"}")?;
    let released =
        state.engine.sql(&caller.principal, caller.purpose.as_deref(), &req.sql, Channel::HttpSql).await.map_err(Problem::from_query)?;
    let mut released = state.admit(&caller, released)?;
    if caller.principal == tverr_policy::Principal::Anonymous {
        released = released.capped(ANONYMOUS_ROWS);
    }
    // The stream writes the access log itself: the intent before the first batch, the
    // completion when it ends or when the client goes away and the body is dropped.
    let mut stream = released.stream;
    let first = stream.next().await.transpose().map_err(|e| Problem::from_query(QueryError::from(e)))?;
    let schema = stream.schema();
    let csv = wants_csv(&headers);
    let head = if csv {
        tverr_access::csv_rows(&arrow::record_batch::RecordBatch::new_empty(schema.clone()), true).map_err(Problem::from_query)?
    } else {
        let columns = serde_json::to_string(&tverr_access::result_columns(&schema)).unwrap_or_else(|_| "[]".into());
        format!("{{\"columns\":{columns},\"rows\":[").into_bytes()
    };
    let pending = first.as_ref().map(|b| write(b, csv)).transpose().map_err(|_| {
        Problem::new(
            ProblemKind::QueryFailed,
            "a column of the result has a type that cannot be written as JSON or CSV; convert it in the query (a geometry with ST_AsText)",
        )
    })?;
    let rows = Rows { stream, pending, csv, wrote_any: false, finished: false };
    let body = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(Bytes::from(head)) }).chain(futures::stream::unfold(
        rows,
        |mut st| async move {
            if st.finished {
                return None;
            }
            let next = match st.pending.take() {
                Some(bytes) => Some(Ok(Ok(bytes))),
                None => st.stream.next().await.map(|b| b.map(|batch| write(&batch, st.csv))),
            };
            match next {
                Some(Ok(chunk)) => match chunk {
                    Ok(mut bytes) => {
                        if !st.csv && !bytes.is_empty() {
                            if st.wrote_any {
                                bytes.insert(0, b',');
                            }
                            st.wrote_any = true;
                        }
                        Some((Ok(Bytes::from(bytes)), st))
                    }
                    Err(e) => {
                        st.finished = true;
                        Some((Err(std::io::Error::other(e.to_string())), st))
                    }
                },
                Some(Err(e)) => {
                    st.finished = true;
                    Some((Err(std::io::Error::other(QueryError::from(e).to_string())), st))
                }
                None => {
                    st.finished = true;
                    let tail: &'static [u8] = if st.csv { b"" } else { b"]}" };
                    Some((Ok(Bytes::from_static(tail)), st))
                }
            }
        },
    ));
    let content_type = if csv { "text/csv; charset=utf-8" } else { "application/json" };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(body)).into_response())
}

/// The JSON of `POST /api/v1/sql`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SqlResult {
    columns: Vec<crate::rows::Column>,
    /// One object per row, keyed by column name.
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}
