//! The OpenAPI 3.0 document of `/ogc` (OGC API – Features' `oas30` class asks for 3.0; the
//! rest of the API is described in 3.1 at `/api/v1/openapi.json`).

use serde_json::{Value, json};

use super::{CONFORMANCE, DEFAULT_LIMIT, MAX_LIMIT, supported_crs};

fn parameter(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema, "style": "form", "explode": false})
}

fn ok(description: &str, kinds: &[&str]) -> Value {
    let content: serde_json::Map<String, Value> = kinds.iter().map(|k| (k.to_string(), json!({"schema": {"type": "object"}}))).collect();
    json!({"description": description, "content": content})
}

fn problem(description: &str) -> Value {
    json!({"description": description, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

/// The document, with `base` as its server.
pub(super) fn document(base: &str) -> Value {
    let f = parameter("f", "Format: json (GeoJSON for features) or html", json!({"type": "string", "enum": ["json", "html"]}));
    let lang = parameter("lang", "Language of HTML pages: nb (default) or en", json!({"type": "string", "enum": ["nb", "en"]}));
    let purpose = parameter(
        "purpose",
        "Declared purpose of the read (or the Tverr-Purpose header); needed for data that is not open",
        json!({"type": "string"}),
    );
    let crs_values = json!({"type": "string", "format": "uri", "enum": supported_crs()});
    let id = json!({"name": "collectionId", "in": "path", "required": true, "description": "ORG.DATASET", "schema": {"type": "string"}});
    let common = vec![f.clone(), lang.clone(), purpose.clone()];
    let mut items = common.clone();
    items.extend([
        parameter(
            "limit",
            &format!("Features per page (default {DEFAULT_LIMIT}; more than {MAX_LIMIT} is taken as {MAX_LIMIT})"),
            json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
        ),
        parameter(
            "bbox",
            "Only features meeting this box: minx,miny,maxx,maxy in bbox-crs (CRS84 by default)",
            json!({"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}}),
        ),
        parameter("bbox-crs", "The CRS of bbox", crs_values.clone()),
        parameter("crs", "The CRS of the features' coordinates (CRS84 by default)", crs_values.clone()),
        parameter(
            "datetime",
            "An instant or an interval (a/b, ../b, a/..) on the collection's first date or time column",
            json!({"type": "string"}),
        ),
        parameter("filter", "A CQL2 filter (Basic CQL2, LIKE, BETWEEN, IN, S_INTERSECTS)", json!({"type": "string"})),
        parameter("filter-lang", "cql2-text (default) or cql2-json", json!({"type": "string", "enum": ["cql2-text", "cql2-json"]})),
        parameter("filter-crs", "The CRS of the filter's geometries (CRS84 by default)", crs_values.clone()),
        parameter("cursor", "From a page's next or prev link", json!({"type": "string"})),
    ]);
    let mut one = common.clone();
    one.push(parameter("crs", "The CRS of the feature's coordinates (CRS84 by default)", crs_values));
    let with_id = |mut list: Vec<Value>| {
        list.insert(0, id.clone());
        list
    };
    let fid = json!({"name": "featureId", "in": "path", "required": true, "description": "The feature's id", "schema": {"type": "string"}});
    let mut one = with_id(one);
    one.insert(1, fid);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Tverr – OGC API Features",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Datasets with a geometry column as OGC API Features collections, through the same policy layer as the rest of \
                Tverr's API: a collection you may not read does not exist, and every read is in the access log. Authenticate with \
                Authorization: Bearer TOKEN and declare the purpose with the Tverr-Purpose header or purpose=.",
            "x-conformsTo": CONFORMANCE,
        },
        "servers": [{"url": format!("{base}/ogc")}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": {"type": "object", "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}
            }}}
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/": {"get": {"summary": "Landing page", "operationId": "getLandingPage", "parameters": common,
                "responses": {"200": ok("The landing page", &["application/json", "text/html"]), "400": problem("A parameter is not valid")}}},
            "/conformance": {"get": {"summary": "Conformance classes", "operationId": "getConformance", "parameters": common,
                "responses": {"200": ok("The conformance classes", &["application/json", "text/html"]), "400": problem("A parameter is not valid")}}},
            "/api": {"get": {"summary": "This document", "operationId": "getApi", "parameters": common,
                "responses": {"200": ok("The API definition", &["application/vnd.oai.openapi+json;version=3.0", "text/html"])}}},
            "/collections": {"get": {"summary": "The collections you may read", "operationId": "getCollections", "parameters": common,
                "responses": {"200": ok("The collections", &["application/json", "text/html"]), "400": problem("A parameter is not valid")}}},
            "/collections/{collectionId}": {"get": {"summary": "One collection", "operationId": "describeCollection",
                "parameters": with_id(common.clone()),
                "responses": {"200": ok("The collection", &["application/json", "text/html"]), "404": problem("No such collection, or one you may not read")}}},
            "/collections/{collectionId}/queryables": {"get": {"summary": "The properties a filter may name",
                "operationId": "getQueryables", "parameters": with_id(common.clone()),
                "responses": {"200": ok("A JSON Schema of the queryables", &["application/schema+json", "text/html"]), "404": problem("No such collection, or one you may not read")}}},
            "/collections/{collectionId}/items": {"get": {"summary": "The features", "operationId": "getFeatures",
                "parameters": with_id(items),
                "responses": {
                    "200": ok("A page of features", &["application/geo+json", "text/html"]),
                    "400": problem("A parameter or the filter is not valid"),
                    "403": problem("A purpose is needed, or the purpose does not cover the collection"),
                    "404": problem("No such collection, or one you may not read"),
                }}},
            "/collections/{collectionId}/items/{featureId}": {"get": {"summary": "One feature", "operationId": "getFeature",
                "parameters": one,
                "responses": {
                    "200": ok("The feature", &["application/geo+json", "text/html"]),
                    "404": problem("No such feature or collection"),
                }}},
        }
    })
}
