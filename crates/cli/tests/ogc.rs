//! OGC API – Features over a real socket: every requirement class `/ogc/conformance` claims
//! (Part 1 core, GeoJSON, HTML, OpenAPI 3.0; Part 2 CRS; Part 3 queryables, filters, CQL2 text
//! and JSON, basic CQL2, advanced comparisons, basic spatial functions), paging while versions
//! are written, the access log, and the attack cases in `tests/security/ogc/*.case`.
//! GDAL and OWSLib read the same server in `tests/python/test_ogc.py`.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Case, Server, Tverr, get_as, percent_encode, start, token};
use serde_json::Value;

fn enc(v: &str) -> String {
    percent_encode(v, false)
}

fn demo() -> (Tverr, Server) {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let server = start(&t);
    (t, server)
}

fn json(port: u16, path: &str) -> Value {
    let r = get_as(port, path, None, None);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

fn ids(v: &Value) -> Vec<String> {
    v["features"].as_array().expect("features").iter().map(|f| f["id"].as_str().expect("id").to_string()).collect()
}

/// The href of a page's `next` link.
fn next_link(v: &Value) -> Option<String> {
    v["links"].as_array().expect("links").iter().find(|l| l["rel"] == "next").map(|l| l["href"].as_str().expect("href").to_string())
}

fn first_point(v: &Value) -> (f64, f64) {
    let c = &v["features"][0]["geometry"]["coordinates"];
    (c[0].as_f64().unwrap(), c[1].as_f64().unwrap())
}

#[test]
fn core_geojson_html_and_openapi() {
    let (_t, server) = demo();
    let port = server.1;

    // Landing page, conformance and the API definition (OpenAPI 3.0).
    let landing = json(port, "/ogc");
    let rels: BTreeSet<&str> = landing["links"].as_array().unwrap().iter().map(|l| l["rel"].as_str().unwrap()).collect();
    for rel in ["self", "service-desc", "service-doc", "conformance", "data"] {
        assert!(rels.contains(rel), "landing page without {rel}: {landing}");
    }
    let conformance = json(port, "/ogc/conformance");
    let classes: Vec<&str> = conformance["conformsTo"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for c in [
        "ogcapi-features-1/1.0/conf/core",
        "conf/geojson",
        "conf/html",
        "conf/oas30",
        "ogcapi-features-2/1.0/conf/crs",
        "cql2/1.0/conf/basic-spatial-functions",
    ] {
        assert!(classes.iter().any(|x| x.contains(c)), "conformance without {c}");
    }
    let r = get_as(port, "/ogc/api", None, None);
    assert_eq!(r.header("content-type"), Some("application/vnd.oai.openapi+json;version=3.0"));
    let api = r.json();
    assert!(api["openapi"].as_str().unwrap().starts_with("3.0"), "{}", api["openapi"]);
    assert!(api["paths"]["/collections/{collectionId}/items"]["get"]["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "bbox"));
    assert!(api["servers"][0]["url"].as_str().unwrap().ends_with("/ogc"), "{}", api["servers"]);

    // Collections: the open geo datasets, each with its CRS list and storage CRS.
    let all = json(port, "/ogc/collections");
    let names: BTreeSet<&str> = all["collections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert!(names.contains("hamar.barnehager") && names.contains("hamar.reguleringsplaner"), "{names:?}");
    assert!(!names.contains("hamar.eiendommer"), "an internal dataset listed to an anonymous caller");
    assert!(!names.contains("hamar.barnehagepriser"), "a dataset without geometry is not a collection");
    let c = json(port, "/ogc/collections/hamar.barnehager");
    assert_eq!(c["storageCrs"], "http://www.opengis.net/def/crs/EPSG/0/25833");
    assert!(c["crs"].as_array().unwrap().iter().any(|x| x == "http://www.opengis.net/def/crs/OGC/1.3/CRS84"));
    assert!(c["links"].as_array().unwrap().iter().any(|l| l["rel"] == "items" && l["type"] == "application/geo+json"));
    let b: Vec<f64> = c["extent"]["spatial"]["bbox"][0].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!(b.len() == 4 && 10.5 < b[0] && b[0] < b[2] && b[2] < 11.6 && 60.5 < b[1] && b[1] < b[3] && b[3] < 61.0, "extent {b:?}");

    // Items: GeoJSON, CRS84 by default, numberMatched/numberReturned, links.
    let r = get_as(port, "/ogc/collections/hamar.barnehager/items?limit=5", None, None);
    assert_eq!(r.header("content-type"), Some("application/geo+json"));
    assert_eq!(r.header("content-crs"), Some("<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"));
    let page = r.json();
    assert_eq!(page["type"], "FeatureCollection");
    assert_eq!(page["numberReturned"], 5);
    let matched = page["numberMatched"].as_u64().unwrap();
    let rest = json(port, "/api/v1/datasets/hamar/barnehager/rows?limit=10000");
    assert_eq!(matched, rest["returned"].as_u64().unwrap(), "numberMatched is the REST API's count");
    assert!(page["timeStamp"].as_str().unwrap().ends_with('Z'));
    let (lon, lat) = first_point(&page);
    assert!((10.5..11.6).contains(&lon) && (60.5..61.0).contains(&lat), "CRS84 is longitude first: {lon} {lat}");
    let feature = &page["features"][0];
    assert!(feature["properties"]["navn"].is_string() && feature["properties"].get("geometry").is_none());
    // Default and largest page.
    assert_eq!(json(port, "/ogc/collections/hamar.barnehager/items")["numberReturned"].as_u64().unwrap(), matched.min(10));
    assert_eq!(json(port, "/ogc/collections/hamar.barnehager/items?limit=1000000")["numberReturned"].as_u64().unwrap(), matched);
    for bad in
        ["limit=0", "limit=-1", "limit=ten", "unknown=1", "bbox=1,2,3", "bbox=3,0,1,1", "f=xml", "crs=EPSG:3857", "bbox-crs=EPSG:4326"]
    {
        let r = get_as(port, &format!("/ogc/collections/hamar.barnehager/items?{bad}"), None, None);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{bad}");
    }

    // Paging: next links visit every feature once; prev goes back.
    let mut seen = Vec::new();
    let mut next = Some("http://localhost/ogc/collections/hamar.barnehager/items?limit=3".to_string());
    let mut pages = 0;
    while let Some(url) = next {
        let path = url[url.find("/ogc").unwrap()..].to_string();
        let v = json(port, &path);
        assert_eq!(v["numberMatched"].as_u64().unwrap(), matched);
        seen.extend(ids(&v));
        if pages > 0 {
            assert!(v["links"].as_array().unwrap().iter().any(|l| l["rel"] == "prev"), "page {pages} has no prev link");
        }
        next = next_link(&v);
        pages += 1;
    }
    assert_eq!(seen.len() as u64, matched);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len() as u64, matched, "feature ids are distinct");

    // One feature by its id, the same as in the collection; an unknown one is a 404.
    let id = &seen[3];
    let one = json(port, &format!("/ogc/collections/hamar.barnehager/items/{id}"));
    assert_eq!(one["type"], "Feature");
    assert_eq!(&one["id"], id);
    assert!(one["links"].as_array().unwrap().iter().any(|l| l["rel"] == "collection"));
    assert_eq!(get_as(port, "/ogc/collections/hamar.barnehager/items/0000000000000000", None, None).status, 404);
    assert_eq!(get_as(port, "/ogc/collections/hamar.barnehager/items/x'%20OR%201=1", None, None).status, 404);
    // Ids are stable: the same in a second request and in another order.
    assert_eq!(ids(&json(port, "/ogc/collections/hamar.barnehager/items?limit=1000"))[3], *id);

    // HTML views in the site's frame.
    for path in [
        "/ogc?f=html",
        "/ogc/conformance?f=html",
        "/ogc/collections?f=html",
        "/ogc/collections/hamar.barnehager?f=html",
        "/ogc/collections/hamar.barnehager/queryables?f=html",
        "/ogc/collections/hamar.barnehager/items?f=html&limit=3",
        &format!("/ogc/collections/hamar.barnehager/items/{id}?f=html"),
        "/ogc/collections/hamar.barnehager/items?f=html&limit=3&lang=en",
    ] {
        let r = get_as(port, path, None, None);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with("text/html"), "{path}");
        assert!(r.header("content-security-policy").is_some(), "{path}");
        let body = r.text();
        assert!(body.contains("tverr.css") && body.contains("<main"), "{path}");
        assert!(!body.contains("POINT(") && !body.contains("POLYGON("), "{path} shows WKT");
    }
    let r = common::send(port, "GET", "/ogc/collections", &[("Accept", "text/html,application/xhtml+xml")], None);
    assert!(r.header("content-type").unwrap().starts_with("text/html"), "Accept: text/html gives HTML");
}

#[test]
fn crs_by_reference_and_axis_order() {
    let (_t, server) = demo();
    let port = server.1;
    let base = "/ogc/collections/hamar.barnehager/items?limit=1";
    let crs84 = first_point(&json(port, base));
    let epsg4326 = enc("http://www.opengis.net/def/crs/EPSG/0/4326");
    let r = get_as(port, &format!("{base}&crs={epsg4326}"), None, None);
    assert_eq!(r.header("content-crs"), Some("<http://www.opengis.net/def/crs/EPSG/0/4326>"));
    let latlon = first_point(&r.json());
    assert_eq!((latlon.1, latlon.0), crs84, "EPSG:4326 is latitude first");
    let utm = first_point(&json(port, &format!("{base}&crs={}", enc("http://www.opengis.net/def/crs/EPSG/0/25833"))));
    assert!((250_000.0..350_000.0).contains(&utm.0) && (6_700_000.0..6_800_000.0).contains(&utm.1), "{utm:?}");
    let utm32 = first_point(&json(port, &format!("{base}&crs={}", enc("http://www.opengis.net/def/crs/EPSG/0/25832"))));
    assert!(utm32.0 > utm.0 + 100_000.0, "zone 32 lies east of its own meridian: {utm32:?}");

    // The same box in every bbox-crs finds the same features.
    let count =
        |q: &str| json(port, &format!("/ogc/collections/hamar.barnehager/items?limit=10000&{q}"))["numberMatched"].as_u64().unwrap();
    let in_crs84 = count("bbox=11.0,60.75,11.1,60.82");
    assert!(in_crs84 > 0 && in_crs84 < count(""), "{in_crs84}");
    assert_eq!(count(&format!("bbox=60.75,11.0,60.82,11.1&bbox-crs={epsg4326}")), in_crs84, "EPSG:4326 boxes are latitude first");
    assert_eq!(count("bbox=11.0,60.75,0,11.1,60.82,100"), in_crs84, "a 3D box uses its 2D part");
    // A box over the whole world, or a quarter of it, finds every feature of a UTM collection.
    assert_eq!(count("bbox=-180,-90,180,90"), count(""), "the world holds every feature");
    assert_eq!(count("bbox=0,0,90,90"), count(""));
    assert_eq!(count("bbox=-180,-90,-170,-80"), 0);
    let world = enc("S_INTERSECTS(geometry, BBOX(-180,-90,180,90))");
    assert_eq!(count(&format!("filter={world}")), count(""));
    // A box in UTM 33 around one feature finds it.
    let near = format!(
        "bbox={},{},{},{}&bbox-crs={}",
        utm.0 - 1.0,
        utm.1 - 1.0,
        utm.0 + 1.0,
        utm.1 + 1.0,
        enc("http://www.opengis.net/def/crs/EPSG/0/25833")
    );
    assert!(count(&near) >= 1);
}

#[test]
fn queryables_and_cql2_filters() {
    let (t, server) = demo();
    let port = server.1;
    let q = json(port, "/ogc/collections/hamar.barnehager/queryables");
    assert_eq!(q["type"], "object");
    assert!(q["properties"]["kapasitet"]["type"] == "integer" && q["properties"]["geometry"].is_object(), "{q}");

    let items = "/ogc/collections/hamar.barnehager/items?limit=10000";
    let all = json(port, items);
    let props: Vec<&Value> = all["features"].as_array().unwrap().iter().map(|f| &f["properties"]).collect();
    let matched = |filter: &str, lang: &str| -> u64 {
        let v = json(port, &format!("{items}&filter={}&filter-lang={lang}", enc(filter)));
        assert_eq!(v["numberMatched"], v["numberReturned"]);
        v["numberMatched"].as_u64().unwrap()
    };
    let big = props.iter().filter(|p| p["kapasitet"].as_i64().unwrap() > 50).count() as u64;
    assert_eq!(matched("kapasitet > 50", "cql2-text"), big);
    assert_eq!(matched(r#"{"op":">","args":[{"property":"kapasitet"},50]}"#, "cql2-json"), big);
    let a = props.iter().filter(|p| p["navn"].as_str().unwrap().starts_with('S')).count() as u64;
    assert_eq!(matched("navn LIKE 'S%'", "cql2-text"), a);
    let between = props.iter().filter(|p| (10..=60).contains(&p["kapasitet"].as_i64().unwrap())).count() as u64;
    assert_eq!(matched("kapasitet BETWEEN 10 AND 60", "cql2-text"), between);
    let district = props[0]["bydel"].as_str().unwrap();
    let in_district = props.iter().filter(|p| p["bydel"] == district).count() as u64;
    assert_eq!(matched(&format!("bydel IN ('{district}', 'Nowhere')"), "cql2-text"), in_district);
    assert_eq!(matched(&format!("NOT (bydel <> '{district}') AND kapasitet IS NOT NULL"), "cql2-text"), in_district);
    // A box as a spatial filter finds what bbox= finds; a polygon around all of Hamar finds all.
    let boxed = json(port, &format!("{items}&bbox=11.0,60.75,11.1,60.82"))["numberMatched"].as_u64().unwrap();
    assert_eq!(matched("S_INTERSECTS(geometry, BBOX(11.0,60.75,11.1,60.82))", "cql2-text"), boxed);
    assert_eq!(matched(r#"{"op":"s_intersects","args":[{"property":"geometry"},{"bbox":[11.0,60.75,11.1,60.82]}]}"#, "cql2-json"), boxed);
    assert_eq!(matched("S_INTERSECTS(geometry, POLYGON((10 60, 12 60, 12 61.5, 10 61.5, 10 60)))", "cql2-text"), props.len() as u64);
    assert_eq!(
        matched(
            "S_INTERSECTS(geometry, BBOX(60.75,11.0,60.82,11.1))",
            &format!("cql2-text&filter-crs={}", enc("http://www.opengis.net/def/crs/EPSG/0/4326"))
        ),
        boxed,
        "filter-crs EPSG:4326 is latitude first"
    );
    // Time: the zoning plans by their decision date.
    let plans = json(port, "/ogc/collections/hamar.reguleringsplaner/items?limit=10000");
    let dates: Vec<&str> = plans["features"].as_array().unwrap().iter().filter_map(|f| f["properties"]["vedtaksdato"].as_str()).collect();
    let in_range = dates.iter().filter(|d| ("2015-01-01"..="2017-12-31").contains(*d)).count() as u64;
    let dt = |q: &str| {
        json(port, &format!("/ogc/collections/hamar.reguleringsplaner/items?limit=10000&datetime={}", enc(q)))["numberMatched"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(dt("2015-01-01/2017-12-31"), in_range);
    assert_eq!(dt("../2017-12-31") + dt("2018-01-01/.."), dates.len() as u64);
    assert_eq!(dt(dates[0]), dates.iter().filter(|d| **d == dates[0]).count() as u64);
    let plan_items = "/ogc/collections/hamar.reguleringsplaner/items?limit=10000";
    let on_day = json(port, &format!("{plan_items}&filter={}", enc(&format!("vedtaksdato = DATE('{}')", dates[0]))));
    assert_eq!(on_day["numberMatched"].as_u64().unwrap(), dt(dates[0]), "DATE() in a filter and datetime= agree");
    assert_eq!(get_as(port, "/ogc/collections/hamar.barnehager/items?datetime=2020-01-01", None, None).status, 400);

    // A masked column is filtered on its mask, and a column outside the grant is unknown.
    let ola = token(&t, "ola");
    let per = token(&t, "per");
    let q_ola = get_as(port, "/ogc/collections/hamar.eiendommer/queryables", Some(&ola), Some("byggesaksbehandling")).json();
    let q_per = get_as(port, "/ogc/collections/hamar.eiendommer/queryables", Some(&per), Some("eiendomsskatt")).json();
    let keys = |v: &Value| v["properties"].as_object().unwrap().keys().cloned().collect::<BTreeSet<_>>();
    assert!(keys(&q_ola).len() < keys(&q_per).len(), "ola's agreement releases fewer columns: {:?} vs {:?}", keys(&q_ola), keys(&q_per));
    let hidden: Vec<String> = keys(&q_per).difference(&keys(&q_ola)).cloned().collect();
    for h in &hidden {
        let r = get_as(
            port,
            &format!("/ogc/collections/hamar.eiendommer/items?filter={}", enc(&format!("{h} IS NOT NULL"))),
            Some(&ola),
            Some("byggesaksbehandling"),
        );
        assert_eq!(r.status, 400, "a filter on {h}, outside ola's agreement: {}", r.text());
    }
}

#[test]
fn paging_sees_one_version_while_new_ones_are_written() {
    let t = Tverr::new();
    t.org();
    let features: Vec<String> = (0..95)
        .map(|i| {
            format!(
                r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{},{}]}},"properties":{{"nr":{i}}}}}"#,
                290_000 + i * 10,
                6_740_000 + i * 10
            )
        })
        .collect();
    let file = common::write_geojson(&t, "punkter.geojson", &features);
    t.ok(&[
        "ingest",
        "test/punkter",
        file.to_str().unwrap(),
        "--create",
        "--department",
        "data",
        "--title",
        "Punkter",
        "--classification",
        "open",
    ]);
    let server = start(&t);
    let port = server.1;
    let mut nrs = Vec::new();
    let mut ids_seen = BTreeSet::new();
    let mut next = Some("/ogc/collections/test.punkter/items?limit=20".to_string());
    let mut appended = 0;
    while let Some(path) = next {
        let v = json(port, &path);
        assert_eq!(v["numberMatched"], 95, "the count of the version the first page read");
        for f in v["features"].as_array().unwrap() {
            nrs.push(f["properties"]["nr"].as_i64().unwrap());
            ids_seen.insert(f["id"].as_str().unwrap().to_string());
        }
        next = next_link(&v).map(|h| h[h.find("/ogc").unwrap()..].to_string());
        if appended < 2 {
            let more = common::write_geojson(
                &t,
                &format!("mer{appended}.geojson"),
                &[format!(
                    r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[291000,6741000]}},"properties":{{"nr":{}}}}}"#,
                    1000 + appended
                )],
            );
            t.ok(&["ingest", "test/punkter", more.to_str().unwrap(), "--mode", "append"]);
            appended += 1;
        }
    }
    nrs.sort();
    assert_eq!(nrs, (0..95).collect::<Vec<i64>>(), "every feature of the first version exactly once");
    assert_eq!(ids_seen.len(), 95);
    // The same through the cell index: a small box, paged while versions are written.
    let boxed = |extra: &str| {
        format!(
            "/ogc/collections/test.punkter/items?limit=7&bbox={}&bbox-crs={}{extra}",
            "290195,6740195,290605,6740605",
            enc("http://www.opengis.net/def/crs/EPSG/0/25833")
        )
    };
    let mut inside = Vec::new();
    let mut next = Some(boxed(""));
    let mut more = 0;
    while let Some(path) = next {
        let v = json(port, &path);
        inside.extend(v["features"].as_array().unwrap().iter().map(|f| f["properties"]["nr"].as_i64().unwrap()));
        next = next_link(&v).map(|h| h[h.find("/ogc").unwrap()..].to_string());
        if more < 2 {
            let file = common::write_geojson(
                &t,
                &format!("boks{more}.geojson"),
                &[format!(
                    r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[290400,6740400]}},"properties":{{"nr":{}}}}}"#,
                    2000 + more
                )],
            );
            t.ok(&["ingest", "test/punkter", file.to_str().unwrap(), "--mode", "append"]);
            more += 1;
        }
    }
    inside.sort();
    assert_eq!(inside, (20..=60).collect::<Vec<i64>>(), "the points in the box, each once, of the version the first page read");
    // The latest version has the new ones, and the old features keep their ids.
    let latest = json(port, "/ogc/collections/test.punkter/items?limit=1000");
    assert_eq!(latest["numberMatched"], 99);
    let latest_ids: BTreeSet<String> = ids(&latest).into_iter().collect();
    assert!(ids_seen.is_subset(&latest_ids), "an unchanged feature keeps its id in a new version");
}

/// A box page and its count come from one pass of the grant's compiled scan (no planned query);
/// the same features through a filter are read by a planned query. Under an agreement with a
/// column subset, a mask and a row filter, both give the same features (ids are digests of the
/// released values, so the masks agree too), the same counts, and page the same set.
#[test]
fn box_pages_and_filtered_reads_release_the_same_features_under_an_agreement() {
    let t = Tverr::new();
    t.org();
    t.ok(&["department", "create", "test/andre", "--name", "Andre"]);
    t.ok(&["user", "create", "test/data/eier", "--role", "steward"]);
    t.ok(&["user", "create", "test/andre/leder", "--role", "steward"]);
    t.ok(&["user", "create", "test/andre/leser", "--role", "employee"]);
    t.ok(&["legal-basis", "create", "test/lov", "--gdpr", "6(1)(e)", "--hjemmel", "kommuneloven § 2-1"]);
    t.ok(&["purpose", "create", "test/kartlegging", "--name", "Kartlegging", "--legal-basis", "lov"]);
    let features: Vec<String> = (0..400)
        .map(|i| {
            format!(
                r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{},{}]}},"properties":{{"nr":{i},"navn":"Sted {i}","kode":"K{i}"}}}}"#,
                290_000 + (i % 20) * 37,
                6_740_000 + (i / 20) * 41
            )
        })
        .collect();
    let file = common::write_geojson(&t, "steder.geojson", &features);
    t.ok(&[
        "ingest",
        "test/steder",
        file.to_str().unwrap(),
        "--create",
        "--department",
        "data",
        "--title",
        "Steder",
        "--classification",
        "confidential",
    ]);
    t.ok(&[
        "agreement",
        "request",
        "--as",
        "leder",
        "--provider",
        "test/data",
        "--consumer",
        "test/andre",
        "--dataset",
        "test/steder",
        "--columns",
        "nr,navn,geometry",
        "--mask",
        "navn=partial",
        "--filter",
        "nr % 3 <> 0",
        "--purpose",
        "kartlegging",
    ]);
    t.approve_requested("eier");
    let server = start(&t);
    let port = server.1;
    let leser = token(&t, "leser");
    let read = |query: &str| {
        let r = get_as(port, &format!("/ogc/collections/test.steder/items?{query}"), Some(&leser), Some("kartlegging"));
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        r.json()
    };
    let epsg = enc("http://www.opengis.net/def/crs/EPSG/0/25833");
    let mut compared = 0;
    for (x0, y0, x1, y1) in
        [(290_050, 6_740_050, 290_400, 6_740_300), (290_000, 6_740_000, 290_740, 6_740_820), (289_000, 6_739_000, 289_500, 6_739_500)]
    {
        let bbox = format!("{x0},{y0},{x1},{y1}");
        let boxed = read(&format!("limit=10000&bbox={bbox}&bbox-crs={epsg}"));
        let filter = enc(&format!("S_INTERSECTS(geometry, BBOX({bbox}))"));
        let filtered = read(&format!("limit=10000&filter={filter}&filter-crs={epsg}"));
        let set = |v: &Value| ids(v).into_iter().collect::<BTreeSet<_>>();
        assert_eq!(set(&boxed), set(&filtered), "box {bbox}");
        assert_eq!(boxed["numberMatched"], filtered["numberMatched"], "box {bbox}");
        for f in boxed["features"].as_array().unwrap() {
            let p = &f["properties"];
            assert_ne!(p["nr"].as_i64().unwrap() % 3, 0, "the agreement's row filter holds: {f}");
            assert!(p["navn"].as_str().unwrap().ends_with("***"), "the mask holds: {f}");
            assert!(p.get("kode").is_none(), "a column outside the agreement: {f}");
        }
        // Paged 7 at a time, the box gives each of its features once.
        let mut paged = Vec::new();
        let mut next = Some(format!("limit=7&bbox={bbox}&bbox-crs={epsg}"));
        while let Some(q) = next {
            let v = read(&q);
            assert_eq!(v["numberMatched"], boxed["numberMatched"]);
            paged.extend(ids(&v));
            next = next_link(&v).map(|h| h[h.find('?').unwrap() + 1..].to_string());
        }
        assert_eq!(paged.len(), set(&boxed).len(), "box {bbox}: each feature once");
        assert_eq!(paged.iter().cloned().collect::<BTreeSet<_>>(), set(&boxed));
        compared += paged.len();
    }
    assert!(compared > 100, "the boxes hold features: {compared}");
    // Without the purpose a box page is refused as any read is.
    let r =
        get_as(port, &format!("/ogc/collections/test.steder/items?bbox=290000,6740000,290100,6740100&bbox-crs={epsg}"), Some(&leser), None);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("purpose-required"), "{}", r.text());
}

/// A stored geometry with no position in CRS84 (a coordinate of 10⁹ metres, which ingest takes)
/// is shown as null; it does not fail the collection list, the collection or its pages.
#[test]
fn a_geometry_outside_the_crs_does_not_break_the_collection() {
    let t = Tverr::new();
    t.org();
    let features = [
        r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[290100,6740100]},"properties":{"nr":1}}"#.to_string(),
        r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[999999999,6740100]},"properties":{"nr":2}}"#.to_string(),
    ];
    let file = common::write_geojson(&t, "feil.geojson", &features);
    t.ok(&[
        "ingest",
        "test/feil",
        file.to_str().unwrap(),
        "--create",
        "--department",
        "data",
        "--title",
        "Feil",
        "--classification",
        "open",
    ]);
    let server = start(&t);
    let port = server.1;
    let listed = json(port, "/ogc/collections");
    assert!(listed["collections"].as_array().unwrap().iter().any(|c| c["id"] == "test.feil"), "{listed}");
    json(port, "/ogc/collections/test.feil");
    for query in ["", "?bbox=11.0,60.0,11.5,61.0", "?filter=nr%20%3E%200"] {
        let v = json(port, &format!("/ogc/collections/test.feil/items{query}"));
        for f in v["features"].as_array().unwrap() {
            match f["properties"]["nr"].as_i64().unwrap() {
                1 => assert!(f["geometry"]["coordinates"][0].as_f64().unwrap() > 11.0, "{f}"),
                _ => assert!(f["geometry"].is_null(), "no position in CRS84: {f}"),
            }
        }
    }
    assert_eq!(json(port, "/ogc/collections/test.feil/items")["numberMatched"], 2);
}

#[test]
fn confidential_collections_need_a_token_and_a_purpose_and_are_logged() {
    let (t, server) = demo();
    let port = server.1;
    let ola = token(&t, "ola");
    let path = "/ogc/collections/hamar.eiendommer/items?limit=5";
    let anonymous = get_as(port, path, None, None);
    let missing = get_as(port, "/ogc/collections/hamar.nothing/items", None, None);
    assert_eq!(anonymous.status, 404);
    assert_eq!(anonymous.text(), missing.text(), "not entitled looks exactly like not existing");
    let listed = |tok: Option<&str>, purpose: Option<&str>| -> Vec<String> {
        get_as(port, "/ogc/collections", tok, purpose).json()["collections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!listed(Some(&ola), None).contains(&"hamar.eiendommer".to_string()), "without a purpose it is not a collection");
    assert!(listed(Some(&ola), Some("byggesaksbehandling")).contains(&"hamar.eiendommer".to_string()));
    assert!(!listed(Some(&ola), Some("byggesaksbehandling")).contains(&"hamar.hjemmetjenester".to_string()));
    let r = get_as(port, path, Some(&ola), Some("byggesaksbehandling"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["numberReturned"], 5);
    // Purpose by query parameter works as the header does.
    let r = get_as(port, &format!("{path}&purpose=byggesaksbehandling"), Some(&ola), None);
    assert_eq!(r.status, 200, "{}", r.text());
    // The reads are in the access log on their own channel, for the purpose given.
    let log = t.ok(&["audit", "search", "--user", "ola"]);
    assert!(log.contains("ogc"), "no OGC read in the log: {log}");
    assert!(log.contains("hamar/eiendommer"));
    // A small box is read through the cell index, a filter by the scan: the same features for
    // each reader, so the index path keeps the agreement's rows and address protection.
    let per = token(&t, "per");
    let ext = get_as(port, "/ogc/collections/hamar.eiendommer", Some(&ola), Some("byggesaksbehandling")).json();
    let b: Vec<f64> = ext["extent"]["spatial"]["bbox"][0].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
    for (who, purpose) in [(&ola, "byggesaksbehandling"), (&per, "eiendomsskatt")] {
        let mut seen = 0;
        for (dx, dy) in [(0.0, 0.0), (0.01, 0.005), (-0.02, -0.01), (0.03, 0.0)] {
            let bbox = format!("{},{},{},{}", cx + dx - 0.01, cy + dy - 0.005, cx + dx + 0.01, cy + dy + 0.005);
            let by_box =
                get_as(port, &format!("/ogc/collections/hamar.eiendommer/items?limit=10000&bbox={bbox}"), Some(who), Some(purpose)).json();
            let filter = enc(&format!("S_INTERSECTS(geometry, BBOX({bbox}))"));
            let by_filter =
                get_as(port, &format!("/ogc/collections/hamar.eiendommer/items?limit=10000&filter={filter}"), Some(who), Some(purpose))
                    .json();
            let set = |v: &Value| ids(v).into_iter().collect::<BTreeSet<_>>();
            assert_eq!(set(&by_box), set(&by_filter), "{purpose}: box {bbox}");
            assert_eq!(by_box["numberMatched"], by_filter["numberMatched"]);
            seen += by_box["numberReturned"].as_u64().unwrap();
        }
        assert!(seen > 0, "the boxes hold some property");
    }
    // The operator's own feature counts agree with the REST API's for the same caller.
    let rest =
        get_as(port, "/api/v1/datasets/hamar/eiendommer/rows?limit=10000&select=matrikkel", Some(&ola), Some("byggesaksbehandling")).json();
    assert_eq!(v["numberMatched"], rest["returned"]);
}

#[test]
fn ogc_attack_cases() {
    let (t, server) = demo();
    let port = server.1;
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    let files = common::case_files("ogc");
    assert!(files.len() >= 10, "only {} OGC cases", files.len());
    let mut failures = Vec::new();
    for f in files {
        let case = Case::parse(f);
        let who = case.get("as").unwrap_or("anonymous");
        let tok = (who != "anonymous").then(|| tokens.entry(who.to_string()).or_insert_with(|| token(&t, who)).clone());
        let query: Vec<String> = case.prefixed("param.").iter().map(|(k, v)| format!("{k}={}", enc(&common::expand_repeats(v)))).collect();
        let path = format!("/ogc{}?{}", case.need("path"), query.join("&"));
        let r = get_as(port, &path, tok.as_deref(), case.get("purpose"));
        let body = r.text();
        let name = case.name();
        let status: u16 = case.need("status").parse().unwrap();
        let mut fail = |why: String| failures.push(format!("{name}: {why}\n  {}", body.chars().take(400).collect::<String>()));
        if path.len() > 8000 && status == 400 {
            fail(format!("the request is {} bytes long, past what the server reads; make it shorter", path.len()));
        }
        if r.status != status {
            fail(format!("status {} instead of {status}", r.status));
            continue;
        }
        for fragment in case.all("contains") {
            if !body.contains(fragment) {
                fail(format!("the body does not contain {fragment:?}"));
            }
        }
        for secret in case.all("without") {
            if body.contains(secret) {
                fail(format!("the body reveals {secret:?}"));
            }
        }
        if let Some(n) = case.get("matched")
            && r.json()["numberMatched"].as_u64().map(|v| v.to_string()).as_deref() != Some(n)
        {
            fail(format!("numberMatched {}, expected {n}", r.json()["numberMatched"]));
        }
        if r.status >= 400 && r.header("content-type") != Some("application/problem+json") {
            fail("an error that is not a problem".into());
        }
        let health = get_as(port, "/health", None, None);
        if health.status != 200 {
            fail(format!("the server no longer answers: /health gave {}", health.status));
            break;
        }
    }
    assert!(failures.is_empty(), "{} failing OGC cases:\n{}", failures.len(), failures.join("\n"));
}
