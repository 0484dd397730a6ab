//! OGC API – Features (Part 1 Core with GeoJSON, HTML and OpenAPI 3.0; Part 2 CRS by
//! reference; Part 3 queryables and CQL2 filters) at `/ogc`, for QGIS, ArcGIS and GDAL.
//!
//! A thin adapter over the same door as the REST rows route: a collection is a dataset with a
//! geometry column that the caller's grant releases (`ORG.DATASET`); one the caller may not read
//! is the 404 of a missing one; every items response is an [`Engine::rows`] read on channel
//! `ogc`, with the grant's masks, row filters and address protection, and is logged before it
//! is released. Filters become the SQL expression the engine checks like REST `where=`.

pub(crate) mod cql2;
mod openapi;

use std::collections::HashMap;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{Value, json};
use tverr_access::geo::{Crs, Spatial};
use tverr_access::{Channel, ColumnMeta, Engine, FEATURE_ID_COLUMN, RowsQuery, ingest::ColumnType};
use tverr_core::DatasetRef;

use crate::auth::Caller;
use crate::problem::{Problem, ProblemKind};
use crate::{AppState, web};

/// The requirement classes `/ogc/conformance` declares; each is tested in
/// `crates/cli/tests/ogc.rs` and by the real clients in `tests/python/test_ogc.py`.
pub const CONFORMANCE: [&str; 13] = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
];

/// The default page size.
pub const DEFAULT_LIMIT: usize = 10;
/// The largest page; a larger `limit` is taken as this (as Part 1 requires).
pub const MAX_LIMIT: usize = 10_000;

const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";
const GEOJSON: &str = "application/geo+json";

/// The OGC routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ogc", get(landing))
        .route("/ogc/", get(landing))
        .route("/ogc/conformance", get(conformance))
        .route("/ogc/api", get(api))
        .route("/ogc/collections", get(collections))
        .route("/ogc/collections/{id}", get(collection))
        .route("/ogc/collections/{id}/queryables", get(queryables))
        .route("/ogc/collections/{id}/items", get(items))
        .route("/ogc/collections/{id}/items/{feature}", get(feature))
}

/// A CRS as OGC API names it: CRS84 is EPSG:4326 with longitude first; EPSG:4326 itself is
/// latitude first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OgcCrs {
    pub crs: Crs,
    pub lat_lon: bool,
}

impl OgcCrs {
    const CRS84: OgcCrs = OgcCrs { crs: Crs::Wgs84, lat_lon: false };

    fn parse(name: &str, text: &str) -> Result<OgcCrs, Problem> {
        let t = text.trim().trim_start_matches('[').trim_end_matches(']');
        let lower = t.to_ascii_lowercase();
        if lower == "crs84" || lower == "ogc:crs84" || lower.ends_with("/ogc/1.3/crs84") || lower == "urn:ogc:def:crs:ogc:1.3:crs84" {
            return Ok(OgcCrs::CRS84);
        }
        match Crs::parse(t) {
            Some(crs) => Ok(OgcCrs { crs, lat_lon: crs == Crs::Wgs84 }),
            None => Err(Problem::invalid_parameter(format!(
                "{name}: {text:?} is not a CRS this server gives; use one of {}",
                supported_crs().join(", ")
            ))),
        }
    }

    fn uri(self) -> String {
        if self == OgcCrs::CRS84 { CRS84.to_string() } else { self.crs.uri() }
    }
}

fn supported_crs() -> Vec<String> {
    std::iter::once(CRS84.to_string()).chain(Crs::ALL.iter().map(|c| c.uri())).collect()
}

/// JSON or HTML, by `f=` or else the Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Html,
}

fn format(f: Option<&str>, headers: &HeaderMap) -> Result<Format, Problem> {
    match f {
        Some("json" | "geojson" | "application/json" | "application/geo+json") => Ok(Format::Json),
        Some("html" | "text/html") => Ok(Format::Html),
        Some(other) => Err(Problem::invalid_parameter(format!("f: {other:?} is not a format; use json or html"))),
        None => {
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            let html = accept.find("text/html");
            let json = ["application/json", "application/geo+json", "application/schema+json"].iter().filter_map(|t| accept.find(t)).min();
            Ok(match (html, json) {
                (Some(h), Some(j)) if h < j => Format::Html,
                (Some(_), None) => Format::Html,
                _ => Format::Json,
            })
        }
    }
}

/// The query parameters, each once, from a list the route takes.
struct Params {
    values: HashMap<String, String>,
}

impl Params {
    fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Params, Problem> {
        let mut values = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(Problem::invalid_parameter(format!("unknown parameter {k:?}; this resource takes {}", allowed.join(", "))));
            }
            if values.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(Problem::invalid_parameter(format!("{k}: given more than once")));
            }
        }
        Ok(Params { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn lang(&self) -> Result<web::Lang, Problem> {
        match self.get("lang") {
            None => Ok(web::Lang::Nb),
            Some(l) => web::Lang::parse(l).ok_or_else(|| Problem::invalid_parameter("lang: use nb or en")),
        }
    }
}

const PLAIN: &[&str] = &["f", "lang", "purpose"];

/// The site's address for links: `TVERR_PUBLIC_URL` when set, else the request's Host.
pub(crate) fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

fn link(href: String, rel: &str, kind: &str, title: &str) -> Value {
    json!({"href": href, "rel": rel, "type": kind, "title": title})
}

fn json_response(body: &Value, content_type: &'static str) -> Response {
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes.push(b'\n');
    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

async fn landing(State(state): State<AppState>, RawQuery(raw): RawQuery, headers: HeaderMap) -> Result<Response, Problem> {
    let p = Params::parse(raw.as_deref(), PLAIN)?;
    let base = base_url(&state, &headers);
    let format = format(p.get("f"), &headers)?;
    if format == Format::Html {
        return Ok(web::ogc_page::landing(p.lang()?));
    }
    let body = json!({
        "title": "Tverr – OGC API Features",
        "description": "Datasett med geometri som du har tilgang til, etter avtaler og formål. / Datasets with geometry that you may read, by agreements and purposes.",
        "links": [
            link(format!("{base}/ogc"), "self", "application/json", "Denne siden / This document"),
            link(format!("{base}/ogc?f=html"), "alternate", "text/html", "Som HTML / As HTML"),
            link(format!("{base}/ogc/api"), "service-desc", "application/vnd.oai.openapi+json;version=3.0", "API-beskrivelse / API definition"),
            link(format!("{base}/ogc/api?f=html"), "service-doc", "text/html", "API-dokumentasjon / API documentation"),
            link(format!("{base}/ogc/conformance"), "conformance", "application/json", "Samsvar / Conformance"),
            link(format!("{base}/ogc/collections"), "data", "application/json", "Samlinger / Collections"),
        ]
    });
    Ok(json_response(&body, "application/json"))
}

async fn conformance(State(_): State<AppState>, RawQuery(raw): RawQuery, headers: HeaderMap) -> Result<Response, Problem> {
    let p = Params::parse(raw.as_deref(), PLAIN)?;
    if format(p.get("f"), &headers)? == Format::Html {
        return Ok(web::ogc_page::conformance(p.lang()?, &CONFORMANCE));
    }
    Ok(json_response(&json!({"conformsTo": CONFORMANCE}), "application/json"))
}

async fn api(State(state): State<AppState>, RawQuery(raw): RawQuery, headers: HeaderMap) -> Result<Response, Problem> {
    let p = Params::parse(raw.as_deref(), PLAIN)?;
    let base = base_url(&state, &headers);
    if format(p.get("f"), &headers)? == Format::Html {
        return Ok(web::ogc_page::api(p.lang()?));
    }
    Ok(json_response(&openapi::document(&base), "application/vnd.oai.openapi+json;version=3.0"))
}

/// A collection the caller may read: its dataset, metadata, released columns (with their
/// types) and geometry columns.
struct Collection {
    r: DatasetRef,
    meta: tverr_access::DatasetMeta,
    columns: Vec<(ColumnMeta, bool)>,
    geometry: Vec<(String, Crs)>,
    /// A digest of the grant: readers with the same grant see the same rows (and extent).
    grant_key: String,
}

impl Collection {
    fn id(&self) -> String {
        format!("{}.{}", self.r.org, self.r.dataset)
    }

    fn geometry_map(&self) -> HashMap<String, Crs> {
        self.geometry.iter().cloned().collect()
    }

    /// The column `datetime` applies to: the first date or time column released.
    fn time_column(&self) -> Option<(&str, ColumnType)> {
        self.columns
            .iter()
            .find(|(c, _)| matches!(c.column_type, ColumnType::Date | ColumnType::Timestamp))
            .map(|(c, _)| (c.name.as_str(), c.column_type))
    }

    fn json(&self, base: &str, extent: Option<[f64; 4]>) -> Value {
        let id = self.id();
        let storage = self.geometry.first().map(|(_, c)| OgcCrs { crs: *c, lat_lon: *c == Crs::Wgs84 }.uri());
        let mut v = json!({
            "id": id,
            "title": self.meta.title,
            "description": self.meta.description,
            "keywords": self.meta.keywords,
            "itemType": "feature",
            "crs": supported_crs(),
            "storageCrs": storage,
            "extent": extent.map(|b| json!({"spatial": {"bbox": [b], "crs": CRS84}})),
            "links": [
                link(format!("{base}/ogc/collections/{id}"), "self", "application/json", "Denne samlingen / This collection"),
                link(format!("{base}/ogc/collections/{id}?f=html"), "alternate", "text/html", "Som HTML / As HTML"),
                link(format!("{base}/ogc/collections/{id}/items"), "items", GEOJSON, "Objektene / The features"),
                link(format!("{base}/ogc/collections/{id}/items?f=html"), "items", "text/html", "Objektene som HTML / The features as HTML"),
                link(format!("{base}/ogc/collections/{id}/queryables"), "http://www.opengis.net/def/rel/ogc/1.0/queryables", "application/schema+json", "Filtrerbare egenskaper / Queryables"),
                link(format!("{base}/datasett/{}/{}", self.r.org, self.r.dataset), "describedby", "text/html", "Datasettets side / The dataset's page"),
            ]
        });
        if extent.is_none()
            && let Some(o) = v.as_object_mut()
        {
            o.remove("extent");
        }
        v
    }
}

/// The collection `id` as the caller may read it, or the 404 of a missing dataset (also for
/// one without a geometry column the caller may read).
async fn open_collection(state: &AppState, caller: &Caller, id: &str) -> Result<Collection, Problem> {
    let (org, dataset) = id.split_once('.').ok_or_else(Problem::dataset_not_found)?;
    let r: DatasetRef = format!("{org}/{dataset}").parse().map_err(|_| Problem::dataset_not_found())?;
    let grant = crate::entitled(state, caller, &r).await?;
    collection_of(state, r, &grant).await?.ok_or_else(Problem::dataset_not_found)
}

async fn collection_of(state: &AppState, r: DatasetRef, grant: &tverr_policy::Grant) -> Result<Option<Collection>, Problem> {
    let geometry = tverr_access::geo::granted_geometry(grant);
    if geometry.is_empty() {
        return Ok(None);
    }
    let meta = state.engine.catalog().dataset(&r).await.map_err(Problem::from_store)?;
    let stored = state.engine.catalog().columns(&r).await.map_err(Problem::from_store)?;
    let columns = grant
        .columns()
        .iter()
        .filter_map(|g| {
            let c = stored.iter().find(|c| c.name == g.name)?.clone();
            Some((c, g.mask.is_some()))
        })
        .collect();
    let grant_key = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(serde_json::to_vec(grant).unwrap_or_default()))
    };
    Ok(Some(Collection { r, meta, columns, geometry, grant_key }))
}

/// Collection extents already computed: by dataset, version and grant (what the reader may see). Past
/// [`EXTENTS_KEPT`] entries the cache starts again.
#[derive(Debug, Clone, Default)]
pub struct Extents(std::sync::Arc<std::sync::Mutex<HashMap<String, Option<[f64; 4]>>>>);

/// Extents kept at most.
const EXTENTS_KEPT: usize = 1024;

/// The bounding box, in CRS84, of the geometries of a collection that the caller may read: a read
/// of every row the caller may see (so a logged access for data that is not open), once per
/// version of the dataset and grant. GDAL reads the extent from the collection and
/// otherwise fetches every feature to find it. Kept per version and grant, so neither another
/// purpose nor another reader with the same grant makes it again.
async fn extent(state: &AppState, caller: &Caller, c: &Collection) -> Result<Option<[f64; 4]>, Problem> {
    use geo::BoundingRect;
    use geozero::ToGeo;
    let Some((column, _)) = c.geometry.first() else { return Ok(None) };
    let version = state.engine.catalog().versions(&c.r).await.map_err(Problem::from_store)?.last().map(|v| v.version);
    let key = format!("{}@{version:?}|{}", c.r, c.grant_key);
    if let Some(found) = state.ogc_extents.0.lock().ok().and_then(|m| m.get(&key).copied()) {
        return Ok(found);
    }
    let query = RowsQuery { select: vec![column.clone()], crs: Some(Crs::Wgs84), version, ..RowsQuery::default() };
    let released =
        state.engine.rows(&caller.principal, caller.purpose.as_deref(), &c.r, &query, Channel::Ogc).await.map_err(Problem::from_query)?;
    let mut stream = state.admit(caller, released)?.stream;
    let mut bbox: Option<[f64; 4]> = None;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| Problem::from_query(tverr_access::QueryError::from(e)))?;
        let Ok(shapes) = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Binary) else { continue };
        let Some(shapes) = arrow::array::AsArray::as_binary_opt::<i32>(&shapes) else { continue };
        for wkb in shapes.iter().flatten() {
            let Some(r) = geozero::wkb::Wkb(wkb).to_geo().ok().and_then(|g| g.bounding_rect()) else { continue };
            let b = bbox.get_or_insert([f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY]);
            *b = [b[0].min(r.min().x), b[1].min(r.min().y), b[2].max(r.max().x), b[3].max(r.max().y)];
        }
    }
    if let Ok(mut m) = state.ogc_extents.0.lock() {
        if m.len() >= EXTENTS_KEPT {
            m.clear();
        }
        m.insert(key, bbox);
    }
    Ok(bbox)
}

/// Every collection the caller may read, in catalogue order.
async fn readable_collections(state: &AppState, caller: &Caller) -> Result<Vec<Collection>, Problem> {
    let mut out = Vec::new();
    for d in state.engine.catalog().datasets().await.map_err(Problem::from_store)? {
        let Ok(r) = d.reference().parse::<DatasetRef>() else { continue };
        let decision =
            state.engine.policy().entitle(&caller.principal, caller.purpose.as_deref(), &r).await.map_err(Problem::from_policy)?;
        let Ok(grant) = decision else { continue };
        if let Some(c) = collection_of(state, r, &grant).await? {
            out.push(c);
        }
    }
    Ok(out)
}

async fn collections(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let p = Params::parse(raw.as_deref(), PLAIN)?;
    let format = format(p.get("f"), &headers)?;
    let found = readable_collections(&state, &caller).await?;
    let base = base_url(&state, &headers);
    if format == Format::Html {
        let list: Vec<(String, String, String)> =
            found.iter().map(|c| (c.id(), c.meta.title.clone(), c.meta.description.clone())).collect();
        return Ok(web::ogc_page::collections(p.lang()?, &list));
    }
    let mut described = Vec::new();
    for c in &found {
        described.push(c.json(&base, extent(&state, &caller, c).await?));
    }
    let body = json!({
        "links": [
            link(format!("{base}/ogc/collections"), "self", "application/json", "Samlingene / The collections"),
            link(format!("{base}/ogc/collections?f=html"), "alternate", "text/html", "Som HTML / As HTML"),
        ],
        "collections": described,
    });
    Ok(json_response(&body, "application/json"))
}

async fn collection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let p = Params::parse(raw.as_deref(), PLAIN)?;
    let format = format(p.get("f"), &headers)?;
    let c = open_collection(&state, &caller, &id).await?;
    if format == Format::Html {
        let storage = c.geometry.first().map(|(_, crs)| crs.to_string()).unwrap_or_default();
        return Ok(web::ogc_page::collection(p.lang()?, &c.id(), &c.meta.title, &c.meta.description, &storage));
    }
    let extent = extent(&state, &caller, &c).await?;
    Ok(json_response(&c.json(&base_url(&state, &headers), extent), "application/json"))
}

/// The JSON Schema type of a column.
fn schema_of(c: &ColumnMeta, masked: bool) -> Value {
    if masked {
        // A mask may turn a value into text (a pseudonym, a year): it is filtered as released.
        return json!({"title": c.description, "type": "string"});
    }
    match c.column_type {
        ColumnType::Integer => json!({"title": c.description, "type": "integer"}),
        ColumnType::Float => json!({"title": c.description, "type": "number"}),
        ColumnType::Boolean => json!({"title": c.description, "type": "boolean"}),
        ColumnType::Date => json!({"title": c.description, "type": "string", "format": "date"}),
        ColumnType::Timestamp => json!({"title": c.description, "type": "string", "format": "date-time"}),
        ColumnType::Geometry => json!({"title": c.description, "format": "geometry-any"}),
        _ => json!({"title": c.description, "type": "string"}),
    }
}

async fn queryables(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let p = Params::parse(raw.as_deref(), PLAIN)?;
    let format = format(p.get("f"), &headers)?;
    let c = open_collection(&state, &caller, &id).await?;
    if format == Format::Html {
        let list: Vec<(String, String)> = c.columns.iter().map(|(m, _)| (m.name.clone(), m.description.clone())).collect();
        return Ok(web::ogc_page::queryables(p.lang()?, &c.id(), &c.meta.title, &list));
    }
    let base = base_url(&state, &headers);
    let properties: serde_json::Map<String, Value> = c.columns.iter().map(|(m, mask)| (m.name.clone(), schema_of(m, *mask))).collect();
    let body = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("{base}/ogc/collections/{}/queryables", c.id()),
        "type": "object",
        "title": c.meta.title,
        "properties": properties,
        "additionalProperties": false,
    });
    Ok(json_response(&body, "application/schema+json"))
}

/// Where a page of items starts: the version it reads, the features before it and how many
/// match in all, bound to the query and the grant it belongs to, and signed with a key of this
/// server process, so a cursor cannot be altered (a later page of the same read) nor used by a
/// reader with another grant. A cursor from before a restart is refused as one not issued.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    v: Option<i64>,
    o: usize,
    m: u64,
    q: String,
    #[serde(default)]
    s: String,
}

/// The key cursors are signed with: random, made once per process.
static CURSOR_KEY: std::sync::LazyLock<[u8; 32]> = std::sync::LazyLock::new(|| {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
});

impl Cursor {
    fn signature(&self) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(CURSOR_KEY.as_slice()).expect("any key length");
        mac.update(format!("{:?}|{}|{}|{}", self.v, self.o, self.m, self.q).as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    fn new(v: Option<i64>, o: usize, m: u64, q: &str) -> Cursor {
        let mut c = Cursor { v, o, m, q: q.to_string(), s: String::new() };
        c.s = c.signature();
        c
    }

    fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> Result<Cursor, Problem> {
        let broken = || Problem::invalid_parameter("cursor: not a cursor this server issued; start again without cursor=");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| broken())?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| broken())?;
        let expected = c.signature();
        let same = expected.len() == c.s.len() && expected.bytes().zip(c.s.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same { Ok(c) } else { Err(broken()) }
    }
}

const ITEMS: &[&str] =
    &["f", "lang", "purpose", "limit", "bbox", "bbox-crs", "crs", "datetime", "filter", "filter-lang", "filter-crs", "cursor"];

/// An items request, read and checked.
struct ItemsQuery {
    query: RowsQuery,
    output: OgcCrs,
    digest: String,
    cursor: Option<Cursor>,
    limit: usize,
}

fn numbers(name: &str, text: &str) -> Result<Vec<f64>, Problem> {
    text.split(',')
        .map(|t| t.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Problem::invalid_parameter(format!("{name}: expected numbers separated by commas, found {text:?}")))
}

/// `datetime` as a condition on the time column: an instant, or an interval with `..` for an
/// open end.
fn datetime_condition(column: &str, kind: ColumnType, text: &str) -> Result<String, Problem> {
    let bad = |why: &str| Problem::invalid_parameter(format!("datetime: {why}; found {text:?}"));
    let quoted = format!("\"{}\"", column.replace('"', "\"\""));
    let literal = |t: &str| -> Result<String, Problem> {
        if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            return Ok(match kind {
                ColumnType::Date => format!("DATE '{d}'"),
                _ => format!("TIMESTAMP '{d}T00:00:00Z'"),
            });
        }
        let at = chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| bad("expected a date (2024-05-17) or an RFC 3339 time (2024-05-17T12:00:00Z)"))?;
        let at = at.with_timezone(&chrono::Utc);
        Ok(match kind {
            ColumnType::Date => format!("DATE '{}'", at.date_naive()),
            _ => format!("TIMESTAMP '{}'", at.format("%Y-%m-%dT%H:%M:%S%.fZ")),
        })
    };
    let open = |t: &str| t.is_empty() || t == "..";
    match text.split_once('/') {
        None => {
            if open(text) {
                return Err(bad("an instant cannot be open"));
            }
            // A date is the whole day on a time column.
            if kind == ColumnType::Timestamp && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() {
                return Ok(format!(
                    "({quoted} >= TIMESTAMP '{text}T00:00:00Z' AND {quoted} < TIMESTAMP '{text}T00:00:00Z' + INTERVAL '1 day')"
                ));
            }
            Ok(format!("({quoted} = {})", literal(text)?))
        }
        Some((a, b)) => {
            if b.contains('/') {
                return Err(bad("an interval has one «/»"));
            }
            let instant = |t: &str| -> Option<chrono::DateTime<chrono::Utc>> {
                chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|d| d.and_utc())
                    .or_else(|| chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&chrono::Utc)))
            };
            if let (Some(from), Some(to)) = (instant(a), instant(b))
                && from > to
            {
                return Err(bad("the interval ends before it begins"));
            }
            let mut parts = Vec::new();
            if !open(a) {
                parts.push(format!("{quoted} >= {}", literal(a)?));
            }
            if !open(b) {
                parts.push(format!("{quoted} <= {}", literal(b)?));
            }
            if parts.is_empty() {
                return Ok(format!("({quoted} IS NOT NULL)"));
            }
            Ok(format!("({})", parts.join(" AND ")))
        }
    }
}

fn items_query(p: &Params, c: &Collection) -> Result<ItemsQuery, Problem> {
    let limit = match p.get("limit") {
        None => DEFAULT_LIMIT,
        Some(t) => match t.trim().parse::<i64>() {
            Ok(n) if n >= 1 => (n as usize).min(MAX_LIMIT),
            _ => {
                return Err(Problem::invalid_parameter(format!(
                    "limit: a whole number from 1 (at most {MAX_LIMIT} are given), found {t:?}"
                )));
            }
        },
    };
    let output = p.get("crs").map(|t| OgcCrs::parse("crs", t)).transpose()?.unwrap_or(OgcCrs::CRS84);
    let bbox_crs = p.get("bbox-crs").map(|t| OgcCrs::parse("bbox-crs", t)).transpose()?;
    if bbox_crs.is_some() && p.get("bbox").is_none() {
        return Err(Problem::invalid_parameter("bbox-crs: give it with bbox"));
    }
    let bbox_crs = bbox_crs.unwrap_or(OgcCrs::CRS84);
    let spatial = match p.get("bbox") {
        None => None,
        Some(t) => {
            let n = numbers("bbox", t)?;
            let [a, b, c2, d] = match n.len() {
                4 => [n[0], n[1], n[2], n[3]],
                6 => [n[0], n[1], n[3], n[4]],
                k => return Err(Problem::invalid_parameter(format!("bbox: 4 or 6 numbers, found {k}"))),
            };
            let (min_x, min_y, max_x, max_y) = if bbox_crs.lat_lon { (b, a, d, c2) } else { (a, b, c2, d) };
            if min_x > max_x || min_y > max_y {
                return Err(Problem::invalid_parameter(
                    "bbox: the lower corner comes first (a box across the antimeridian is not supported)",
                ));
            }
            Some(Spatial::Bbox { min_x, min_y, max_x, max_y, crs: bbox_crs.crs })
        }
    };
    let mut conditions = Vec::new();
    if let Some(f) = p.get("filter") {
        let filter_crs = p.get("filter-crs").map(|t| OgcCrs::parse("filter-crs", t)).transpose()?.unwrap_or(OgcCrs::CRS84);
        let geometry = c.geometry_map();
        let cx = cql2::Context { geometry: &geometry, crs: filter_crs.crs, lat_lon: filter_crs.lat_lon };
        let sql = match p.get("filter-lang").unwrap_or("cql2-text") {
            "cql2-text" => cql2::text_to_sql(f, &cx),
            "cql2-json" => cql2::json_to_sql(f, &cx),
            other => return Err(Problem::invalid_parameter(format!("filter-lang: {other:?}; use cql2-text or cql2-json"))),
        }
        .map_err(|e| Problem::invalid_parameter(format!("filter: {e}")))?;
        conditions.push(sql);
    } else if p.get("filter-lang").is_some() || p.get("filter-crs").is_some() {
        return Err(Problem::invalid_parameter("filter-lang and filter-crs: give them with filter"));
    }
    if let Some(t) = p.get("datetime") {
        let Some((column, kind)) = c.time_column() else {
            return Err(Problem::invalid_parameter(format!(
                "datetime: the collection {} has no date or time column you may read, so it cannot be filtered by time",
                c.id()
            )));
        };
        conditions.push(datetime_condition(column, kind, t)?);
    }
    let query = RowsQuery {
        filter: (!conditions.is_empty()).then(|| conditions.join(" AND ")),
        spatial,
        crs: Some(output.crs),
        stable_order: true,
        feature_ids: true,
        limit: Some(limit),
        ..RowsQuery::default()
    };
    let digest = {
        use sha2::Digest;
        let text = format!("{} {:?} {:?} {:?} {:?} {}", c.id(), query.filter, query.spatial, output, query.crs, c.grant_key);
        hex::encode(&sha2::Sha256::digest(text.as_bytes())[..12])
    };
    let cursor = p.get("cursor").map(Cursor::decode).transpose()?;
    if cursor.as_ref().is_some_and(|cur| cur.q != digest) {
        return Err(Problem::invalid_parameter(
            "cursor: it belongs to another query (bbox, datetime, filter or crs changed); start again without cursor=",
        ));
    }
    Ok(ItemsQuery { query, output, digest, cursor, limit })
}

/// The URL of this items request with other values for some parameters (`None` removes one).
fn items_url(base: &str, id: &str, p: &Params, changes: &[(&str, Option<String>)]) -> String {
    let mut keys: Vec<&String> = p.values.keys().collect();
    keys.sort();
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for k in keys {
        if changes.iter().any(|(c, _)| c == k) {
            continue;
        }
        s.append_pair(k, &p.values[k]);
    }
    for (k, v) in changes {
        if let Some(v) = v {
            s.append_pair(k, v);
        }
    }
    let q = s.finish();
    if q.is_empty() { format!("{base}/ogc/collections/{id}/items") } else { format!("{base}/ogc/collections/{id}/items?{q}") }
}

fn content_crs(response: &mut Response, crs: OgcCrs) {
    if let Ok(v) = HeaderValue::from_str(&format!("<{}>", crs.uri())) {
        response.headers_mut().insert("content-crs", v);
    }
}

async fn items(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let p = Params::parse(raw.as_deref(), ITEMS)?;
    let format = format(p.get("f"), &headers)?;
    let lang = p.lang()?;
    let c = open_collection(&state, &caller, &id).await?;
    let ItemsQuery { mut query, output, digest, cursor, limit } = items_query(&p, &c)?;
    if let Some(cur) = &cursor {
        query.version = cur.v;
        query.offset = cur.o;
    }
    let offset = query.offset;
    // A box read the cell index answers gives its page and count in one pass; any other reads
    // its count (on the first page) and then its page.
    let boxed = state
        .engine
        .box_page(&caller.principal, caller.purpose.as_deref(), &c.r, &query, Channel::Ogc)
        .await
        .map_err(Problem::from_query)?;
    let (released, matched) = match (boxed, &cursor) {
        (Some(page), Some(cur)) => (page.released, cur.m),
        (Some(page), None) => (page.released, page.matched),
        (None, cursor) => {
            let matched = match cursor {
                Some(cur) => cur.m,
                None => {
                    let counted = state
                        .engine
                        .count_rows(&caller.principal, caller.purpose.as_deref(), &c.r, &query, Channel::Ogc)
                        .await
                        .map_err(Problem::from_query)?;
                    let counted = state.admit(&caller, counted)?;
                    query.version = counted.versions.first().copied().flatten();
                    tverr_access::count_of(counted).await.map_err(Problem::from_query)?
                }
            };
            let released = state
                .engine
                .rows(&caller.principal, caller.purpose.as_deref(), &c.r, &query, Channel::Ogc)
                .await
                .map_err(Problem::from_query)?;
            (released, matched)
        }
    };
    let released = state.admit(&caller, released)?.started().await.map_err(Problem::from_query)?;
    let version = released.versions.first().copied().flatten();
    let schema = released.stream.schema();
    let mut geometry = Engine::geometry_columns(&released.grants[0], Some(output.crs));
    geometry.retain(|g| schema.field_with_name(&g.name).is_ok());
    let base = base_url(&state, &headers);
    let mut stream = released.stream;
    let mut features: Vec<u8> = Vec::new();
    let mut batches = Vec::new();
    let mut returned = 0u64;
    let mut first = true;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| Problem::from_query(tverr_access::QueryError::from(e)))?;
        if batch.num_rows() == 0 {
            continue;
        }
        if format == Format::Html {
            returned += batch.num_rows() as u64;
            batches.push(batch);
        } else {
            returned += tverr_access::write_features(&batch, &geometry, Some(FEATURE_ID_COLUMN), output.lat_lon, &mut first, &mut features)
                .map_err(Problem::from_query)?;
        }
    }
    let next = (returned as usize == limit && ((offset + limit) as u64) < matched)
        .then(|| Cursor::new(version, offset + limit, matched, &digest).encode());
    let prev = (offset > 0).then(|| Cursor::new(version, offset.saturating_sub(limit), matched, &digest).encode());
    let mut response = if format == Format::Html {
        let html_links = web::ogc_page::Paging {
            next: next.as_ref().map(|n| items_url("", &id, &p, &[("cursor", Some(n.clone())), ("f", Some("html".into()))])),
            prev: prev.as_ref().map(|n| items_url("", &id, &p, &[("cursor", Some(n.clone())), ("f", Some("html".into()))])),
            json: items_url("", &id, &p, &[("f", Some("json".into()))]),
        };
        web::ogc_page::items(lang, &c.id(), &c.meta.title, &batches, &geometry, matched, offset, &html_links)
    } else {
        let mut links = vec![
            link(items_url(&base, &id, &p, &[]), "self", GEOJSON, "Denne siden / This page"),
            link(items_url(&base, &id, &p, &[("f", Some("html".into()))]), "alternate", "text/html", "Som HTML / As HTML"),
            link(format!("{base}/ogc/collections/{id}"), "collection", "application/json", "Samlingen / The collection"),
        ];
        if let Some(n) = &next {
            links.push(link(items_url(&base, &id, &p, &[("cursor", Some(n.clone()))]), "next", GEOJSON, "Neste side / Next page"));
        }
        if let Some(n) = &prev {
            links.push(link(items_url(&base, &id, &p, &[("cursor", Some(n.clone()))]), "prev", GEOJSON, "Forrige side / Previous page"));
        }
        let head = json!({
            "type": "FeatureCollection",
            "timeStamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "numberMatched": matched,
            "numberReturned": returned,
            "links": links,
        });
        let mut body = serde_json::to_vec(&head).unwrap_or_default();
        body.pop();
        body.extend_from_slice(b",\"features\":[");
        body.extend(features);
        body.extend_from_slice(b"\n]}\n");
        ([(header::CONTENT_TYPE, GEOJSON)], Body::from(Bytes::from(body))).into_response()
    };
    content_crs(&mut response, output);
    Ok(response)
}

async fn feature(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, fid)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let p = Params::parse(raw.as_deref(), &["f", "lang", "purpose", "crs"])?;
    let format = format(p.get("f"), &headers)?;
    let lang = p.lang()?;
    let c = open_collection(&state, &caller, &id).await?;
    let output = p.get("crs").map(|t| OgcCrs::parse("crs", t)).transpose()?.unwrap_or(OgcCrs::CRS84);
    let not_found = || Problem::new(ProblemKind::NotFound, format!("the collection {id} has no feature {fid:?}"));
    if fid.len() != 16 || !fid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let query = RowsQuery {
        crs: Some(output.crs),
        feature_ids: true,
        feature_id: Some(fid.to_ascii_lowercase()),
        limit: Some(1),
        stable_order: true,
        ..RowsQuery::default()
    };
    let released =
        state.engine.rows(&caller.principal, caller.purpose.as_deref(), &c.r, &query, Channel::Ogc).await.map_err(Problem::from_query)?;
    let released = state.admit(&caller, released)?.started().await.map_err(Problem::from_query)?;
    let schema = released.stream.schema();
    let mut geometry = Engine::geometry_columns(&released.grants[0], Some(output.crs));
    geometry.retain(|g| schema.field_with_name(&g.name).is_ok());
    let mut stream = released.stream;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| Problem::from_query(tverr_access::QueryError::from(e)))?;
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    let Some(batch) = batches.first() else { return Err(not_found()) };
    let base = base_url(&state, &headers);
    let mut response = if format == Format::Html {
        web::ogc_page::feature(lang, &c.id(), &c.meta.title, batch, &geometry)
    } else {
        let mut body = Vec::new();
        let mut first = true;
        tverr_access::write_features(batch, &geometry, Some(FEATURE_ID_COLUMN), output.lat_lon, &mut first, &mut body)
            .map_err(Problem::from_query)?;
        let mut feature: Value = serde_json::from_slice(&body).map_err(|_| Problem::internal())?;
        feature["links"] = json!([
            link(format!("{base}/ogc/collections/{id}/items/{fid}"), "self", GEOJSON, "Dette objektet / This feature"),
            link(format!("{base}/ogc/collections/{id}/items/{fid}?f=html"), "alternate", "text/html", "Som HTML / As HTML"),
            link(format!("{base}/ogc/collections/{id}"), "collection", "application/json", "Samlingen / The collection"),
        ]);
        json_response(&feature, GEOJSON)
    };
    content_crs(&mut response, output);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crs_names_and_axis_order() {
        let c = |t: &str| OgcCrs::parse("crs", t).unwrap();
        assert_eq!(c(CRS84), OgcCrs::CRS84);
        assert_eq!(c("http://www.opengis.net/def/crs/EPSG/0/4326"), OgcCrs { crs: Crs::Wgs84, lat_lon: true });
        assert_eq!(c("[EPSG:25833]"), OgcCrs { crs: Crs::Utm33, lat_lon: false });
        assert!(OgcCrs::parse("crs", "EPSG:3857").unwrap_err().detail.contains("CRS84"));
    }

    #[test]
    fn datetime_becomes_a_condition_on_the_time_column() {
        assert_eq!(datetime_condition("d", ColumnType::Date, "2020-01-02").unwrap(), "(\"d\" = DATE '2020-01-02')");
        assert_eq!(datetime_condition("d", ColumnType::Date, "2020-01-02/..").unwrap(), "(\"d\" >= DATE '2020-01-02')");
        assert_eq!(
            datetime_condition("t", ColumnType::Timestamp, "../2020-01-02T10:00:00+01:00").unwrap(),
            "(\"t\" <= TIMESTAMP '2020-01-02T09:00:00Z')"
        );
        assert!(datetime_condition("d", ColumnType::Date, "yesterday").unwrap_err().detail.contains("datetime"));
        assert!(datetime_condition("d", ColumnType::Date, "a/b/c").is_err());
        assert!(datetime_condition("d", ColumnType::Date, "..").is_err());
        assert!(datetime_condition("d", ColumnType::Date, "2021-01-01/2020-01-01").unwrap_err().detail.contains("ends before"));
        assert!(datetime_condition("d", ColumnType::Date, "2020-01-01' OR 1=1 --").is_err());
    }

    #[test]
    fn a_cursor_round_trips_and_refuses_forgeries() {
        let c = Cursor::new(Some(3), 20, 41, "abc");
        let d = Cursor::decode(&c.encode()).unwrap();
        assert_eq!((d.v, d.o, d.m, d.q.as_str()), (Some(3), 20, 41, "abc"));
        let mut forged = Cursor::new(Some(3), 20, 41, "abc");
        forged.m = 1_000_000_000_000;
        assert!(Cursor::decode(&forged.encode()).is_err(), "an altered count is refused");
        let unsigned = Cursor { s: String::new(), ..Cursor::new(Some(0), 0, 1, "abc") };
        assert!(Cursor::decode(&unsigned.encode()).is_err());
        assert!(Cursor::decode("%%%").is_err());
        assert!(Cursor::decode("eyJ2Ijp0cnVlfQ").is_err());
    }
}
