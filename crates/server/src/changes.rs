//! `GET /api/v1/datasets/{org}/{dataset}/changes`: the rows versions inserted and deleted, with
//! `_change` and `_version`, read through the same door as the rows (`Engine::changes`).

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use tverr_access::{Channel, Engine, ExportFormat, ExportOptions};
use tverr_core::DatasetRef;

use crate::auth::Caller;
use crate::{AppState, Problem};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// The changes after this version.
    from_version: i64,
    /// Up to and including this version (default: the latest).
    to_version: Option<i64>,
    /// json (default), csv, ndjson, geojson, xlsx or parquet.
    format: Option<String>,
    /// The purpose, as for a read (or the Tverr-Purpose header).
    purpose: Option<String>,
}

/// The rows versions inserted and deleted after `from_version`, up to `to_version`: each row as
/// a read shows it (columns, masks, row filter, address protection), with `_change` (`insert`
/// or `delete`) and `_version`; oldest version first, and within a version deleted rows before
/// inserted ones. An upsert's changed row is its old form deleted and its new form inserted. In
/// the access log like a read.
#[utoipa::path(get, path = "/api/v1/datasets/{org}/{dataset}/changes", tag = "data",
    params(("org" = String, Path), ("dataset" = String, Path), ChangesQuery, crate::auth::PurposeHeader),
    responses((status = 200, description = "The changed rows: JSON, or a file in the format asked for",
        content((serde_json::Value = "application/json"), (String = "text/csv"), (String = "application/x-ndjson"),
            (serde_json::Value = "application/geo+json"), (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (Vec<u8> = "application/vnd.apache.parquet")))),
    security(("bearer" = []), ()))]
pub async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, dataset)): Path<(String, String)>,
    Query(q): Query<ChangesQuery>,
) -> Result<Response, Problem> {
    let r: DatasetRef = format!("{org}/{dataset}").parse().map_err(|_| Problem::dataset_not_found())?;
    let format = match q.format.as_deref() {
        None => ExportFormat::Json,
        Some(f) => ExportFormat::parse(f)
            .ok_or_else(|| Problem::invalid_parameter("format: expected json, csv, ndjson, geojson, xlsx or parquet"))?,
    };
    let _ = &q.purpose;
    let released = state
        .engine
        .changes(&caller.principal, caller.purpose.as_deref(), &r, q.from_version, q.to_version, Channel::HttpChanges)
        .await
        .map_err(Problem::from_query)?;
    let released = state.admit(&caller, released)?.started().await.map_err(Problem::from_query)?;
    let schema = released.stream.schema();
    let mut geometry = Engine::geometry_columns(&released.grants[0], None);
    geometry.retain(|g| schema.field_with_name(&g.name).is_ok());
    if format == ExportFormat::GeoJson && geometry.is_empty() {
        return Err(Problem::invalid_parameter("format=geojson needs a geometry column you may read"));
    }
    let to = released.versions[0].unwrap_or_default();
    if format != ExportFormat::Json {
        let options = ExportOptions { format, geometry, csv: Default::default() };
        let name = format!("{}-{}-endringer-{}-{to}.{}", r.org, r.dataset, q.from_version, format.extension());
        return Ok(crate::download::file_response(released.stream, options, &name));
    }
    // Streamed: the head, each batch's rows as they come, and the count at the end.
    let columns = serde_json::to_string(&tverr_access::result_columns(&released.stream.schema())).unwrap_or_else(|_| "[]".into());
    let head = format!(
        "{{\"dataset\":{},\"from_version\":{},\"to_version\":{to},\"columns\":{columns},\"rows\":[",
        serde_json::to_string(&r.to_string()).unwrap_or_default(),
        q.from_version
    );
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    let rows = released.stream.map(move |batch| {
        let batch = batch.map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut out = Vec::new();
        if batch.num_rows() > 0 {
            if counted.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                out.push(b',');
            }
            counted.fetch_add(batch.num_rows(), std::sync::atomic::Ordering::Relaxed);
            out.extend(tverr_access::json_objects(&batch, &geometry).map_err(|e| std::io::Error::other(e.to_string()))?);
        }
        Ok::<_, std::io::Error>(bytes::Bytes::from(out))
    });
    let tail = futures::stream::once(async move {
        Ok::<_, std::io::Error>(bytes::Bytes::from(format!("],\"returned\":{}}}", count.load(std::sync::atomic::Ordering::Relaxed))))
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(head)) }).chain(rows).chain(tail);
    Ok(([(header::CONTENT_TYPE, "application/json")], axum::body::Body::from_stream(body)).into_response())
}
