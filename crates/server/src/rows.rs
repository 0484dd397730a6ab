//! `GET /api/v1/datasets/{org}/{dataset}/rows`: a dataset's rows through the secure scan, as JSON
//! pages with an opaque cursor, or as a whole file in any export format.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::StreamExt;
use tverr_access::geo::{Crs, Spatial};
use tverr_access::{CsvOptions, Engine, ExportFormat, ExportOptions, GeometryColumn, MAX_ROW_WINDOW, QueryError, RowsQuery};
use tverr_core::DatasetRef;

use crate::{AppState, Caller, Problem, ProblemKind};
use tverr_access::Channel;

/// Rows in a JSON page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// The largest JSON page.
pub const MAX_PAGE: usize = 10_000;

/// The parameters this route takes.
const PARAMETERS: &[&str] = &[
    "select",
    "where",
    "order_by",
    "limit",
    "offset",
    "cursor",
    "version",
    "as_of",
    "format",
    "delimiter",
    "decimal",
    "bom",
    "raw",
    "bbox",
    "bbox-crs",
    "near",
    "near-crs",
    "crs",
    "purpose",
];

/// The request's parameters, parsed and checked.
#[derive(Debug, Default)]
struct Params {
    query: RowsQuery,
    limit: Option<usize>,
    offset: Option<usize>,
    cursor: Option<Cursor>,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    format: Option<ExportFormat>,
    csv: CsvOptions,
    /// `bbox=` or `near=` numbers, read with their CRS once every parameter is known.
    bbox: Option<[f64; 4]>,
    near: Option<[f64; 3]>,
    bbox_crs: Option<Crs>,
    near_crs: Option<Crs>,
    /// Every parameter but the position ones, for the `next` link.
    kept: Vec<(String, String)>,
}

/// Where a page starts: the version the first page read and the rows before it, bound to the
/// query that made it.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Cursor {
    /// Version.
    v: i64,
    /// Offset.
    o: usize,
    /// Digest of the query the cursor belongs to.
    q: String,
}

impl Cursor {
    fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> Result<Self, Problem> {
        let broken = || Problem::invalid_parameter("cursor: not a cursor this server issued; start again without cursor=");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| broken())?;
        serde_json::from_slice(&bytes).map_err(|_| broken())
    }
}

/// A digest of what selects and orders the rows, so a cursor is not used with another query.
fn query_digest(r: &DatasetRef, q: &RowsQuery) -> String {
    use sha2::Digest;
    let text = format!("{r}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}", q.select, q.filter, q.order_by, q.spatial, q.crs);
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..12])
}

fn column_list(name: &str, value: &str) -> Result<Vec<String>, Problem> {
    let names: Vec<String> = value.split(',').map(|c| c.trim().to_string()).collect();
    if names.iter().any(String::is_empty) {
        return Err(Problem::invalid_parameter(format!("{name}: expected column names separated by commas, found {value:?}")));
    }
    Ok(names)
}

/// `n` finite numbers separated by commas.
fn numbers<const N: usize>(name: &str, value: &str, shape: &str) -> Result<[f64; N], Problem> {
    let bad = || Problem::invalid_parameter(format!("{name}: expected {shape}, found {value:?}"));
    let parts: Vec<f64> =
        value.split(',').map(|v| v.trim().parse::<f64>().ok().filter(|n| n.is_finite())).collect::<Option<_>>().ok_or_else(bad)?;
    parts.try_into().map_err(|_| bad())
}

fn crs(name: &str, value: &str) -> Result<Crs, Problem> {
    Crs::parse(value).ok_or_else(|| Problem::invalid_parameter(format!("{name}: expected {}, found {value:?}", Crs::supported())))
}

/// A row count or position: a whole number from 0 to [`MAX_ROW_WINDOW`].
fn window(name: &str, value: &str) -> Result<usize, Problem> {
    let bad = || Problem::invalid_parameter(format!("{name}: expected a whole number from 0 to {MAX_ROW_WINDOW}, found {value:?}"));
    let n: usize = value.trim().parse().map_err(|_| bad())?;
    if n > MAX_ROW_WINDOW { Err(bad()) } else { Ok(n) }
}

/// `2026-01-31`, `2026-01-31T12:00:00Z` or with an offset.
fn timestamp(value: &str) -> Result<chrono::DateTime<chrono::Utc>, Problem> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value.trim()) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d") {
        return Ok(d.and_hms_opt(23, 59, 59).expect("valid time").and_utc());
    }
    Err(Problem::invalid_parameter(format!(
        "as_of: expected a date (2026-01-31) or an RFC 3339 time (2026-01-31T12:00:00Z), found {value:?}"
    )))
}

fn format_from_accept(headers: &HeaderMap) -> Option<ExportFormat> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    accept.split(',').map(|t| t.split(';').next().unwrap_or("").trim()).find_map(|t| match t {
        "text/csv" => Some(ExportFormat::Csv),
        "application/x-ndjson" => Some(ExportFormat::Ndjson),
        "application/geo+json" => Some(ExportFormat::GeoJson),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Some(ExportFormat::Xlsx),
        "application/vnd.apache.parquet" => Some(ExportFormat::Parquet),
        "application/json" => Some(ExportFormat::Json),
        _ => None,
    })
}

fn parse(raw: Option<&str>) -> Result<Params, Problem> {
    let mut p = Params::default();
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let (name, value) = (name.into_owned(), value.into_owned());
        if !PARAMETERS.contains(&name.as_str()) {
            return Err(Problem::invalid_parameter(format!("unknown parameter {name:?}; this route takes {}", PARAMETERS.join(", "))));
        }
        if seen.contains(&name) {
            return Err(Problem::invalid_parameter(format!("{name}: given more than once")));
        }
        seen.push(name.clone());
        match name.as_str() {
            "select" => p.query.select = column_list("select", &value)?,
            "where" => {
                if value.trim().is_empty() {
                    return Err(Problem::invalid_parameter("where: empty; give a condition such as alder > 3"));
                }
                p.query.filter = Some(value.clone());
            }
            "order_by" => {
                for item in column_list("order_by", &value)? {
                    let (name, descending) = match item.strip_prefix('-') {
                        Some(n) => (n.trim().to_string(), true),
                        None => match item.rsplit_once(char::is_whitespace) {
                            Some((n, dir)) if dir.eq_ignore_ascii_case("desc") => (n.trim().to_string(), true),
                            Some((n, dir)) if dir.eq_ignore_ascii_case("asc") => (n.trim().to_string(), false),
                            _ => (item.clone(), false),
                        },
                    };
                    p.query.order_by.push((name, descending));
                }
            }
            "limit" => p.limit = Some(window("limit", &value)?),
            "offset" => p.offset = Some(window("offset", &value)?),
            "cursor" => p.cursor = Some(Cursor::decode(&value)?),
            "version" => {
                let v: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| Problem::invalid_parameter(format!("version: expected a version number, found {value:?}")))?;
                if v < 0 {
                    return Err(Problem::invalid_parameter("version: versions start at 0"));
                }
                p.query.version = Some(v);
            }
            "as_of" => p.as_of = Some(timestamp(&value)?),
            "format" => {
                p.format = Some(ExportFormat::parse(&value).ok_or_else(|| {
                    Problem::invalid_parameter(format!("format: expected json, csv, ndjson, geojson, xlsx or parquet, found {value:?}"))
                })?)
            }
            "delimiter" => {
                p.csv.delimiter = match value.as_str() {
                    "," | ";" | "|" | "\t" => value.as_bytes()[0],
                    "tab" => b'\t',
                    _ => return Err(Problem::invalid_parameter(format!("delimiter: expected , ; | or tab, found {value:?}"))),
                }
            }
            "decimal" => {
                p.csv.decimal_comma = match value.as_str() {
                    "," => true,
                    "." => false,
                    _ => return Err(Problem::invalid_parameter(format!("decimal: expected , or ., found {value:?}"))),
                }
            }
            "bom" => {
                p.csv.bom = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(Problem::invalid_parameter(format!("bom: expected true or false, found {value:?}"))),
                }
            }
            "raw" => {
                p.csv.raw = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(Problem::invalid_parameter(format!("raw: expected true or false, found {value:?}"))),
                }
            }
            "bbox" => {
                let b = numbers::<4>("bbox", &value, "minx,miny,maxx,maxy")?;
                if b[0] > b[2] || b[1] > b[3] {
                    return Err(Problem::invalid_parameter(format!(
                        "bbox: the minimum comes first (minx,miny,maxx,maxy), found {value:?}"
                    )));
                }
                p.bbox = Some(b);
            }
            "near" => {
                let n = numbers::<3>("near", &value, "x,y,metres")?;
                if n[2] < 0.0 {
                    return Err(Problem::invalid_parameter(format!("near: the distance must be ≥ 0 metres, found {}", n[2])));
                }
                p.near = Some(n);
            }
            "bbox-crs" => p.bbox_crs = Some(crs("bbox-crs", &value)?),
            "near-crs" => p.near_crs = Some(crs("near-crs", &value)?),
            "crs" => p.query.crs = Some(crs("crs", &value)?),
            _ => {}
        }
        if !matches!(name.as_str(), "offset" | "cursor" | "version" | "as_of") {
            p.kept.push((name, value));
        }
    }
    let position = ["offset", "cursor", "version", "as_of"].iter().filter(|n| seen.iter().any(|s| s == *n)).count();
    if p.cursor.is_some() && position > 1 {
        return Err(Problem::invalid_parameter("cursor: give it alone; it already holds the version and the offset"));
    }
    if p.query.version.is_some() && p.as_of.is_some() {
        return Err(Problem::invalid_parameter("give version or as_of, not both"));
    }
    if p.csv != CsvOptions::default() && p.format.is_some_and(|f| f != ExportFormat::Csv) {
        return Err(Problem::invalid_parameter("delimiter, decimal, bom and raw apply to format=csv only"));
    }
    if p.bbox.is_some() && p.near.is_some() {
        return Err(Problem::invalid_parameter("give bbox or near, not both"));
    }
    if p.bbox_crs.is_some() && p.bbox.is_none() {
        return Err(Problem::invalid_parameter("bbox-crs: there is no bbox for it to apply to"));
    }
    if p.near_crs.is_some() && p.near.is_none() {
        return Err(Problem::invalid_parameter("near-crs: there is no near for it to apply to"));
    }
    if let Some([min_x, min_y, max_x, max_y]) = p.bbox {
        let crs = p.bbox_crs.unwrap_or(Crs::Wgs84);
        if crs.is_geographic() && (min_x < -180.0 || max_x > 180.0 || min_y < -90.0 || max_y > 90.0) {
            return Err(Problem::invalid_parameter(
                "bbox: longitudes lie in -180..180 and latitudes in -90..90 (EPSG:4326, longitude first); give bbox-crs for metres",
            ));
        }
        p.query.spatial = Some(Spatial::Bbox { min_x, min_y, max_x, max_y, crs });
    }
    if let Some([x, y, metres]) = p.near {
        let crs = p.near_crs.unwrap_or(Crs::Wgs84);
        if crs.is_geographic() && !((-180.0..=180.0).contains(&x) && (-90.0..=90.0).contains(&y)) {
            return Err(Problem::invalid_parameter(
                "near: a longitude lies in -180..180 and a latitude in -90..90 (EPSG:4326, longitude first); give near-crs for metres",
            ));
        }
        p.query.spatial = Some(Spatial::Near { x, y, metres, crs });
    }
    if p.csv.decimal_comma && p.csv.delimiter == b',' {
        return Err(Problem::invalid_parameter("decimal=, needs another delimiter (delimiter=;), or every decimal splits a field"));
    }
    Ok(p)
}

/// The version a dataset had at a time: the last committed at or before it.
async fn version_at(state: &AppState, r: &DatasetRef, at: chrono::DateTime<chrono::Utc>) -> Result<i64, Problem> {
    let versions = state.engine.catalog().versions(r).await.map_err(Problem::from_store)?;
    versions
        .iter()
        .filter(|v| v.committed_at.instant() <= at)
        .map(|v| v.version)
        .max()
        .ok_or_else(|| Problem::new(ProblemKind::VersionNotFound, format!("{r} had no version yet at {}", at.to_rfc3339())))
}

/// Reads a dataset's rows.
#[utoipa::path(get, path = "/api/v1/datasets/{org}/{dataset}/rows", tag = "data",
    params(
        ("org" = String, Path, example = "hamar"), ("dataset" = String, Path, example = "barnehager"),
        ("select" = Option<String>, Query, description = "Columns, comma-separated", example = "navn,ledige_plasser"),
        ("where" = Option<String>, Query, description = "A SQL condition over the columns you may read", example = "ledige_plasser > 0"),
        ("order_by" = Option<String>, Query, description = "Columns, comma-separated; `-col` or `col desc` for descending", example = "-ledige_plasser"),
        ("limit" = Option<u32>, Query, description = "Rows in a JSON page (default 100, at most 10000); for files, at most this many rows"),
        ("offset" = Option<u32>, Query, description = "Rows to skip"),
        ("cursor" = Option<String>, Query, description = "From a page's `next` link: the next page of the same version"),
        ("version" = Option<i64>, Query, description = "Read this version"),
        ("as_of" = Option<String>, Query, description = "Read the version current at this time (RFC 3339 or a date)", example = "2026-01-31"),
        ("format" = Option<String>, Query, description = "json (pages), csv, ndjson, geojson, xlsx or parquet (whole files); or use Accept"),
        ("delimiter" = Option<String>, Query, description = "CSV: , ; | or tab"),
        ("decimal" = Option<String>, Query, description = "CSV: , or ."),
        ("bom" = Option<bool>, Query, description = "CSV: start with a UTF-8 byte-order mark (Excel)"),
        ("raw" = Option<bool>, Query, description = "CSV: write text cells as they are; by default a cell that starts with =, +, -, @, tab or carriage return gets a leading ' so spreadsheets do not run it as a formula"),
        ("bbox" = Option<String>, Query, description = "Rows whose geometry meets this box: minx,miny,maxx,maxy (longitude/easting first)", example = "11.0,60.7,11.2,60.85"),
        ("bbox-crs" = Option<String>, Query, description = "CRS of bbox: EPSG:4326 (default), EPSG:25832 or EPSG:25833"),
        ("near" = Option<String>, Query, description = "Rows whose geometry lies within a distance of a point: x,y,metres", example = "11.068,60.7945,1000"),
        ("near-crs" = Option<String>, Query, description = "CRS of the near point: EPSG:4326 (default), EPSG:25832 or EPSG:25833"),
        ("crs" = Option<String>, Query, description = "Return geometries in this CRS (EPSG:4326, EPSG:25832 or EPSG:25833) instead of the stored one"),
        crate::auth::PurposeHeader,
    ),
    responses(
        (status = 200, description = "A JSON page, or the whole result as a file (Content-Disposition names it)",
            content(
                (crate::rows::RowsPage = "application/json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
                (serde_json::Value = "application/geo+json"),
                (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                (Vec<u8> = "application/vnd.apache.parquet"),
            )),
    ))]
pub async fn rows(
    State(state): State<AppState>,
    caller: Caller,
    path: Path<(String, String)>,
    raw: RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    rows_on(State(state), caller, path, raw, headers, Channel::HttpRows).await
}

/// [`rows`], logged on `channel` (the web page's downloads are `web`).
pub(crate) async fn rows_on(
    State(state): State<AppState>,
    caller: Caller,
    Path((org, dataset)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    channel: Channel,
) -> Result<Response, Problem> {
    let r: DatasetRef = format!("{org}/{dataset}").parse().map_err(|_| Problem::dataset_not_found())?;
    let mut p = parse(raw.as_deref())?;
    let format = p.format.or_else(|| format_from_accept(&headers)).unwrap_or(ExportFormat::Json);
    if p.csv != CsvOptions::default() && format != ExportFormat::Csv {
        return Err(Problem::invalid_parameter("delimiter, decimal, bom and raw apply to format=csv only"));
    }
    let digest = query_digest(&r, &p.query);
    let paged = format == ExportFormat::Json;
    if paged {
        let limit = p.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Problem::invalid_parameter(format!(
                "limit: a JSON page holds 1 to {MAX_PAGE} rows; use format=csv, ndjson or parquet for more"
            )));
        }
        p.query.limit = Some(limit);
        p.query.stable_order = true;
    } else {
        p.query.limit = p.limit;
    }
    p.query.offset = p.offset.unwrap_or(0);
    if let Some(c) = &p.cursor {
        if c.q != digest {
            return Err(Problem::invalid_parameter(
                "cursor: it belongs to another query (select, where, order_by, bbox, near or crs changed); start again without cursor=",
            ));
        }
        p.query.version = Some(c.v);
        p.query.offset = c.o;
    }
    if let Some(at) = p.as_of {
        // Only a dataset the caller may read has versions to look at.
        crate::entitled(&state, &caller, &r).await?;
        p.query.version = Some(version_at(&state, &r, at).await?);
    }
    let released =
        state.engine.rows(&caller.principal, caller.purpose.as_deref(), &r, &p.query, channel).await.map_err(Problem::from_query)?;
    let released = state.admit(&caller, released)?.started().await.map_err(Problem::from_query)?;
    let schema = released.stream.schema();
    let mut geometry = Engine::geometry_columns(&released.grants[0], p.query.crs);
    geometry.retain(|g| schema.field_with_name(&g.name).is_ok());
    if format == ExportFormat::GeoJson && geometry.is_empty() {
        return Err(Problem::invalid_parameter("format=geojson needs a geometry column among the selected ones"));
    }
    let version = released.versions[0];
    let content_crs = geometry.first().and_then(|g| Crs::parse(&g.crs)).map(|c| format!("<{}>", c.uri()));
    let mut response = if paged {
        page(&r, p, released, &geometry, version, digest).await?
    } else {
        let options = ExportOptions { format, geometry, csv: p.csv };
        let name = format!("{}-{}{}.{}", r.org, r.dataset, version.map(|v| format!("-v{v}")).unwrap_or_default(), format.extension());
        crate::download::file_response(released.stream, options, &name)
    };
    if let Some(value) = content_crs.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert("content-crs", value);
    }
    Ok(response)
}

/// The shape of a JSON page (written directly as bytes, in this field order).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RowsPage {
    /// `org/dataset`.
    dataset: String,
    /// The version read; the cursor keeps it for every later page.
    version: Option<i64>,
    /// Rows skipped before this page.
    offset: usize,
    /// Rows asked for.
    limit: usize,
    /// Rows in this page.
    returned: usize,
    /// The next page, or null after the last (a page with fewer rows than `limit`).
    next: Option<String>,
    /// Result columns.
    columns: Vec<Column>,
    /// One object per row, keyed by column name.
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// One JSON page with a link to the next.
async fn page(
    r: &DatasetRef,
    p: Params,
    released: tverr_access::Released,
    geometry: &[GeometryColumn],
    version: Option<i64>,
    digest: String,
) -> Result<Response, Problem> {
    let mut stream = released.stream;
    let columns = serde_json::to_string(&tverr_access::result_columns(&stream.schema())).unwrap_or_else(|_| "[]".into());
    let mut rows: Vec<u8> = Vec::new();
    let mut returned = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| Problem::from_query(QueryError::from(e)))?;
        if batch.num_rows() == 0 {
            continue;
        }
        if returned > 0 {
            rows.push(b',');
        }
        returned += batch.num_rows();
        rows.extend(tverr_access::json_objects(&batch, geometry).map_err(Problem::from_query)?);
    }
    let limit = p.query.limit.unwrap_or(DEFAULT_PAGE);
    let next = match version {
        Some(v) if returned == limit => {
            let cursor = Cursor { v, o: p.query.offset + returned, q: digest };
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &p.kept {
                query.append_pair(k, v);
            }
            query.append_pair("cursor", &cursor.encode());
            serde_json::Value::String(format!("/api/v1/datasets/{}/{}/rows?{}", r.org, r.dataset, query.finish()))
        }
        _ => serde_json::Value::Null,
    };
    let head = serde_json::json!({"dataset": r.to_string(), "version": version, "offset": p.query.offset, "limit": limit, "returned": returned, "next": next});
    let mut body = serde_json::to_vec(&head).unwrap_or_default();
    body.pop();
    body.extend_from_slice(b",\"columns\":");
    body.extend_from_slice(columns.as_bytes());
    body.extend_from_slice(b",\"rows\":[");
    body.extend(rows);
    body.extend_from_slice(b"]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from(Bytes::from(body))).into_response())
}

/// A result column: name and type (`text`, `integer`, `float`, `boolean`, `date`, `timestamp`,
/// `binary`, or Arrow's name for anything else).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Column {
    name: String,
    /// text, integer, float, boolean, date, timestamp, geometry (as WKT), binary, or Arrow's name.
    #[serde(rename = "type")]
    column_type: String,
    /// A geometry column's CRS, e.g. EPSG:25833.
    crs: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_with_their_names() {
        let err = |q: &str| parse(Some(q)).unwrap_err().detail;
        assert!(err("selct=a").contains("unknown parameter \"selct\""));
        assert!(err("limit=ten").contains("limit: expected a whole number"));
        assert!(err("limit=1&limit=2").contains("limit: given more than once"));
        assert!(err("format=docx").contains("format: expected json"));
        assert!(err("delimiter=x").contains("delimiter: expected"));
        assert!(err("decimal=,").contains("needs another delimiter"));
        assert!(err("version=1&as_of=2026-01-01").contains("version or as_of"));
        assert!(err("cursor=%%%").contains("cursor: not a cursor"));
        assert!(err("select=a,,b").contains("select: expected column names"));
        assert!(err("as_of=yesterday").contains("as_of: expected a date"));
        assert!(err("format=parquet&bom=true").contains("format=csv only"));
        let cursor = Cursor { v: 1, o: 2, q: "x".into() }.encode();
        assert!(err(&format!("cursor={cursor}&offset=3")).contains("give it alone"));
    }

    #[test]
    fn order_by_takes_signs_and_directions() {
        let p = parse(Some("order_by=a,-b,c%20desc,d%20ASC&select=a")).unwrap();
        assert_eq!(p.query.order_by, vec![("a".into(), false), ("b".into(), true), ("c".into(), true), ("d".into(), false)]);
        assert_eq!(p.kept.len(), 2);
    }

    #[test]
    fn spatial_parameters_are_read_with_their_crs() {
        let p = parse(Some("bbox=285000,6745000,287000,6747000&bbox-crs=urn:ogc:def:crs:EPSG::25833&crs=4326")).unwrap();
        assert_eq!(
            p.query.spatial,
            Some(Spatial::Bbox { min_x: 285000.0, min_y: 6745000.0, max_x: 287000.0, max_y: 6747000.0, crs: Crs::Utm33 })
        );
        assert_eq!(p.query.crs, Some(Crs::Wgs84));
        let p = parse(Some("near=11.068,60.7945,1500")).unwrap();
        assert_eq!(p.query.spatial, Some(Spatial::Near { x: 11.068, y: 60.7945, metres: 1500.0, crs: Crs::Wgs84 }));
        let err = |q: &str| parse(Some(q)).unwrap_err().detail;
        assert!(err("bbox=1,2,3,inf").contains("bbox: expected"));
        assert!(err("bbox=1,2,3,NaN").contains("bbox: expected"));
        assert!(err("near=11,95,10").contains("a latitude in -90..90"));
        assert!(err("near=1,2,3&near-crs=EPSG:32633").contains("near-crs: expected"));
    }

    #[test]
    fn a_cursor_is_bound_to_the_spatial_filter_and_the_crs() {
        let r: DatasetRef = "hamar/barnehager".parse().unwrap();
        let a = parse(Some("bbox=10,60,11,61")).unwrap().query;
        let b = parse(Some("bbox=10,60,11,62")).unwrap().query;
        let c = parse(Some("bbox=10,60,11,61&crs=EPSG:25833")).unwrap().query;
        assert_ne!(query_digest(&r, &a), query_digest(&r, &b));
        assert_ne!(query_digest(&r, &a), query_digest(&r, &c));
        assert_eq!(query_digest(&r, &a), query_digest(&r, &parse(Some("bbox=10,60,11,61")).unwrap().query));
    }

    #[test]
    fn a_cursor_round_trips() {
        let c = Cursor { v: 7, o: 300, q: "abc".into() };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
    }
}
