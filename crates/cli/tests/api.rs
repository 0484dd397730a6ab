//! The REST API over a real socket: rows with paging, time travel and every format; uploads;
//! the catalogue search; limits and problems; and the REST attack cases in
//! `tests/security/rest/*.case`.

mod common;

use std::collections::BTreeMap;

use common::{Case, Server, Tverr, get_as, percent_encode, send, start, start_with, token};

/// URL-encodes one query parameter value.
fn enc(v: &str) -> String {
    percent_encode(v, false)
}

fn upload(port: u16, path: &str, token: &str, content_type: &str, body: &[u8]) -> common::Response {
    let auth = format!("Bearer {token}");
    send(port, "POST", path, &[("Authorization", &auth), ("Content-Type", content_type)], Some(body))
}

fn demo() -> (Tverr, Server) {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let server = start(&t);
    (t, server)
}

#[test]
fn rows_pages_versions_and_problems() {
    let (t, server) = demo();
    let port = server.1;
    let ola = token(&t, "ola");
    let p = Some("byggesaksbehandling");

    // A page: chosen columns, a filter on a plain column, an order, a window.
    let r = get_as(
        port,
        "/api/v1/datasets/hamar/innbyggere/rows?select=fornavn,postnummer&where=postnummer%20%3D%20%272317%27&order_by=fornavn,-postnummer&limit=5",
        Some(&ola),
        p,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["columns"], serde_json::json!([{"name": "fornavn", "type": "text"}, {"name": "postnummer", "type": "text"}]));
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["postnummer"] == "2317"));
    let names: Vec<&str> = rows.iter().map(|r| r["fornavn"].as_str().unwrap()).collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "{names:?}");
    assert_eq!(v["version"], 0);

    // Following `next` returns every matching row exactly once, as SQL counts them.
    let expected = t.sql_csv("SELECT count(*) AS n FROM hamar.innbyggere WHERE postnummer = '2317' AND adressebeskyttelse = 'ugradert'");
    let expected: usize = expected.lines().nth(1).unwrap().parse().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    let mut next =
        Some("/api/v1/datasets/hamar/innbyggere/rows?select=fodselsnummer&where=postnummer%20%3D%20%272317%27&limit=37".to_string());
    while let Some(path) = next {
        let r = get_as(port, &path, Some(&ola), p);
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        for row in v["rows"].as_array().unwrap() {
            total += 1;
            seen.insert(row["fodselsnummer"].as_str().unwrap().to_string());
        }
        next = v["next"].as_str().map(str::to_string);
    }
    assert!(expected > 37, "the test needs several pages");
    assert_eq!((total, seen.len()), (expected, expected), "every row once");

    // Defaults and limits of a page.
    let v = get_as(port, "/api/v1/datasets/hamar/barnehager/rows", None, None).json();
    assert_eq!(v["limit"], 100);
    let r = get_as(port, "/api/v1/datasets/hamar/barnehager/rows?limit=10001", None, None);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("1 to 10000"), "{}", r.text());

    // Problems name the parameter; every error is application/problem+json.
    for (path, status, fragment) in [
        ("/api/v1/datasets/hamar/barnehager/rows?limt=3", 400, "unknown parameter \\\"limt\\\""),
        ("/api/v1/datasets/hamar/barnehager/rows?select=navn,finnes_ikke", 400, "unknown column \\\"finnes_ikke\\\""),
        ("/api/v1/datasets/hamar/barnehager/rows?where=kapasitet%20%3E", 400, "invalid-sql"),
        ("/api/v1/datasets/hamar/barnehager/rows?version=99", 404, "version-not-found"),
        ("/api/v1/datasets/hamar/barnehager/rows?format=docx", 400, "format: expected"),
        ("/api/v1/datasets/hamar/barnehager/rows?format=csv&decimal=%2C", 400, "delimiter=;"),
        ("/api/v1/datasets/hamar/nope/rows", 404, "dataset-not-found"),
    ] {
        let r = get_as(port, path, None, None);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{path}");
        assert!(r.text().contains(fragment), "{path}: {}", r.text());
    }
    let r = send(port, "DELETE", "/api/v1/datasets/hamar/barnehager/rows", &[], None);
    assert_eq!((r.status, r.header("content-type")), (405, Some("application/problem+json")));

    // Every read through the route is in the access log with its channel.
    let log = t.ok(&["audit", "search"]);
    assert!(log.contains("http-rows"), "the rows route writes intent records");
}

#[test]
fn time_travel_and_cursor_paging_while_versions_are_written() {
    let t = Tverr::new();
    t.org();
    t.ok(&["user", "create", "test/data/steward", "--role", "steward"]);
    let server = start(&t);
    let port = server.1;
    let steward = token(&t, "steward");

    let mut csv = String::from("id;verdi\n");
    for i in 0..250 {
        csv.push_str(&format!("{i};{}\n", i * 2));
    }
    let r = upload(
        port,
        "/api/v1/datasets?org=test&dataset=tall&department=data&title=Tall&classification=open&filename=tall.csv",
        &steward,
        "text/csv",
        csv.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["version"], 0);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // Page through version 0 while appends make versions 1, 2, 3: the cursor keeps version 0.
    let mut ids = Vec::new();
    let mut next = Some("/api/v1/datasets/test/tall/rows?limit=40&select=id".to_string());
    let mut appended = 0;
    while let Some(path) = next {
        let v = get_as(port, &path, None, None).json();
        assert_eq!(v["version"], 0, "{v}");
        ids.extend(v["rows"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()));
        next = v["next"].as_str().map(str::to_string);
        if appended < 3 {
            let more = format!("id;verdi\n{};0\n", 1000 + appended);
            let r = upload(port, "/api/v1/datasets/test/tall/versions?mode=append", &steward, "text/csv", more.as_bytes());
            assert_eq!(r.status, 200, "{}", r.text());
            appended += 1;
        }
    }
    ids.sort();
    assert_eq!(ids, (0..250).collect::<Vec<i64>>(), "every row of version 0 exactly once");

    // version= and as_of= read the past; the latest has the appended rows.
    let count = |q: &str| {
        get_as(port, &format!("/api/v1/datasets/test/tall/rows?limit=10000&{q}"), None, None).json()["returned"].as_u64().unwrap()
    };
    assert_eq!(count(""), 253);
    assert_eq!(count("version=1"), 251);
    assert_eq!(count(&format!("as_of={}", enc(&between))), 250);
    let r = get_as(port, "/api/v1/datasets/test/tall/rows?as_of=2001-01-01", None, None);
    assert_eq!(r.status, 404);
    assert!(r.text().contains("version-not-found"));

    // The history lists every version.
    let v = get_as(port, "/api/v1/datasets/test/tall/versions", None, None).json();
    let modes: Vec<&str> = v["versions"].as_array().unwrap().iter().map(|v| v["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["create", "append", "append", "append"]);
    assert_eq!(v["versions"][0]["actor"], "steward");
    assert_eq!(v["versions"][0]["source_name"], "tall.csv");
}

#[test]
fn uploads_append_replace_upsert_and_refuse_bad_files_without_change() {
    let t = Tverr::new();
    t.org();
    t.ok(&["department", "create", "test/andre", "--name", "Andre"]);
    t.ok(&["user", "create", "test/data/steward", "--role", "steward"]);
    t.ok(&["user", "create", "test/andre/other", "--role", "steward"]);
    t.ok(&["user", "create", "test/data/worker", "--role", "employee"]);
    let server = start_with(&t, &["--max-upload-bytes", "4096"]);
    let port = server.1;
    let steward = token(&t, "steward");
    let other = token(&t, "other");
    let worker = token(&t, "worker");

    t.create("test/hemmelig", &common::data_dir().join("ingest/people.csv"), &[]);
    let create = "/api/v1/datasets?org=test&dataset=kull&department=data&title=Kull&classification=open&filename=kull.csv";
    let r = upload(port, create, &steward, "text/csv", b"navn;alder\nAnne;3\nBo;4\n");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("location"), Some("/api/v1/datasets/test/kull/versions"));
    let r = upload(port, create, &steward, "text/csv", b"navn;alder\nAnne;3\n");
    assert_eq!(r.status, 409, "creating it again: {}", r.text());

    let rows = |tok: &str| {
        let v = get_as(port, "/api/v1/datasets/test/kull/rows?order_by=navn", Some(tok), None).json();
        v["rows"].as_array().unwrap().iter().map(|r| format!("{}={}", r["navn"].as_str().unwrap(), r["alder"])).collect::<Vec<_>>()
    };
    let lake_before = common::visible_snapshot(&t.lake().join("test/kull"));

    // A bad file: 422 naming the line and column, and nothing changes.
    for (body, ctype, fragment) in [
        (&b"navn;alder\nCid;tre\n"[..], "text/csv", r#""line":2,"column":"alder""#),
        (&b"[{\"navn\": \"Cid\", \"alder\": \"x\"}]"[..], "application/json", r#""row":1,"column":"alder""#),
    ] {
        let r = upload(port, "/api/v1/datasets/test/kull/versions?mode=append&filename=feil.csv", &steward, ctype, body);
        assert_eq!(r.status, 422, "{}", r.text());
        assert!(r.text().contains(fragment), "{}", r.text());
        assert_eq!(r.json()["type"], "/problems/invalid-file");
    }
    assert_eq!(common::visible_snapshot(&t.lake().join("test/kull")), lake_before, "a refused file leaves the table as it was");

    // Who may write: the department's steward; others get 403 (if they see it) or 404.
    let r = upload(port, "/api/v1/datasets/test/kull/versions", &worker, "text/csv", b"navn;alder\nCid;5\n");
    assert_eq!(r.status, 403, "{}", r.text());
    let r = upload(port, "/api/v1/datasets/test/kull/versions", &other, "text/csv", b"navn;alder\nCid;5\n");
    assert_eq!(r.status, 403, "a steward of another department of the organisation: {}", r.text());
    let r = send(port, "POST", "/api/v1/datasets/test/hemmelig/versions", &[("Content-Type", "text/csv")], Some(b"navn;alder\nCid;5\n"));
    assert_eq!(r.status, 401, "anonymous callers are told to sign in, and learn nothing of the dataset: {}", r.text());
    let r = send(port, "POST", "/api/v1/datasets/test/kull/versions", &[("Content-Type", "text/csv")], Some(b"navn;alder\nCid;5\n"));
    assert_eq!(r.status, 401, "the same for an open dataset: {}", r.text());
    let r =
        upload(port, "/api/v1/datasets?org=test&dataset=x&department=andre&title=X&classification=open", &steward, "text/csv", b"a\n1\n");
    assert_eq!(r.status, 403, "creating in another department: {}", r.text());

    // Limits and media types.
    let big = vec![b'x'; 5000];
    let r = upload(port, "/api/v1/datasets/test/kull/versions", &steward, "application/octet-stream", &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["type"], "/problems/payload-too-large");
    let r = upload(port, "/api/v1/datasets/test/kull/versions", &steward, "image/png", b"navn\nx\n");
    assert_eq!(r.status, 415, "{}", r.text());
    let r = upload(port, "/api/v1/datasets/test/kull/versions?mode=upsert", &steward, "text/csv", b"navn;alder\nCid;5\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("upsert needs a key"), "{}", r.text());
    assert_eq!(rows(&worker), ["Anne=3", "Bo=4"]);

    // Append, upsert, replace: each one version.
    let r = upload(
        port,
        "/api/v1/datasets/test/kull/versions?mode=append",
        &steward,
        "application/x-ndjson",
        b"{\"navn\": \"Cid\", \"alder\": 5}\n",
    );
    assert_eq!((r.status, r.json()["version"].as_i64()), (200, Some(1)), "{}", r.text());
    assert_eq!(rows(&worker), ["Anne=3", "Bo=4", "Cid=5"]);
    let r = upload(port, "/api/v1/datasets/test/kull/versions?mode=upsert&key=navn", &steward, "text/csv", b"navn;alder\nBo;6\nDina;1\n");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rows(&worker), ["Anne=3", "Bo=6", "Cid=5", "Dina=1"]);
    let r = upload(port, "/api/v1/datasets/test/kull/versions?mode=replace", &steward, "text/csv", b"navn;alder\nEli;2\n");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rows(&worker), ["Eli=2"]);

    // Each write is in the access log, with who made it.
    let log = t.ok(&["audit", "search"]);
    let uploads: Vec<&str> = log.lines().filter(|l| l.contains("http-upload")).collect();
    let count = |kind: &str| uploads.iter().filter(|l| l.contains(&format!("\"kind\":\"{kind}\""))).count();
    assert_eq!(count("ingest"), 4, "{log}");
    // Every attempt, refused or not, was announced before it started.
    assert_eq!(count("write-intent"), count("ingest") + count("write-failed"), "{log}");
    assert!(count("write-failed") > 0, "{log}");
    // A refused file's values (`tre`, `Cid`) stay out of the log: it records how many problems.
    assert!(uploads.iter().filter(|l| l.contains("write-failed")).all(|l| !l.contains("tre") && !l.contains("Cid")), "{log}");
}

#[test]
fn exports_stream_files_with_names_and_csv_dialects() {
    let (t, server) = demo();
    let port = server.1;
    let ola = token(&t, "ola");
    let r = get_as(
        port,
        "/api/v1/datasets/hamar/barnehager/rows?format=csv&delimiter=%3B&decimal=%2C&bom=true&select=navn,kapasitet&order_by=navn",
        None,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(r.header("content-disposition"), Some("attachment; filename=\"hamar-barnehager-v0.csv\""));
    assert!(r.body.starts_with("\u{feff}navn;kapasitet\n".as_bytes()), "{}", r.text());

    // Accept chooses the format too; file formats carry every row, not a page.
    let auth = format!("Bearer {ola}");
    let r = send(
        port,
        "GET",
        "/api/v1/datasets/hamar/innbyggere/rows?select=fornavn",
        &[("Authorization", &auth), ("Tverr-Purpose", "byggesaksbehandling"), ("Accept", "application/x-ndjson")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = r.text().lines().count();
    let all = t.sql_csv("SELECT count(*) AS n FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert'");
    assert_eq!(lines.to_string(), all.lines().nth(1).unwrap(), "every row ola may see (no protected person), not a page");

    // A purpose is needed before any byte.
    let r = get_as(port, "/api/v1/datasets/hamar/innbyggere/rows?format=parquet", Some(&ola), None);
    assert_eq!(r.status, 403);
}

#[test]
fn catalogue_search_finds_norwegian_word_forms_and_shows_own_metadata() {
    let (t, server) = demo();
    let port = server.1;
    let ola = token(&t, "ola");
    let slugs = |path: &str, tok: Option<&str>| -> Vec<String> {
        let v = get_as(port, path, tok, None).json();
        v["datasets"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|d| format!("{}:{}", d["slug"].as_str().unwrap(), d["access"].as_str().unwrap()))
            .collect()
    };
    // Word forms find the kindergartens (and the open price table, whose title says barnehage);
    // an anonymous caller finds open datasets only.
    for q in ["barnehage", "Barnehagene", "ledige%20plasser"] {
        let found = slugs(&format!("/api/v1/datasets?q={q}"), None);
        assert!(found.contains(&"barnehager:read".to_string()) && found.iter().all(|s| s.ends_with(":read")), "{q}: {found:?}");
        assert!(!found.iter().any(|s| s.starts_with("barnehagesoknader") || s.starts_with("barnehageplasser")), "{q}: {found:?}");
    }
    assert!(slugs("/api/v1/datasets?q=hjemmetjenester", None).is_empty(), "anonymous callers see open datasets only");
    // An employee of the organisation finds the metadata of its non-open datasets; not the rows.
    assert_eq!(slugs("/api/v1/datasets?q=hjemmetjenester", Some(&ola)), ["hjemmetjenester:metadata"]);
    let r = get_as(port, "/api/v1/datasets/hamar/hjemmetjenester", Some(&ola), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["access"], "metadata");
    let r = get_as(port, "/api/v1/datasets/hamar/hjemmetjenester/rows", Some(&ola), Some("byggesaksbehandling"));
    assert_eq!(r.status, 404);
    // Filters.
    let open = slugs("/api/v1/datasets?classification=open", Some(&ola));
    assert!(!open.is_empty() && open.iter().all(|s| s.ends_with(":read")));
    assert_eq!(slugs("/api/v1/datasets?org=hias&q=vann", None).len(), 1);
    assert!(slugs("/api/v1/datasets?theme=EDUC", None).contains(&"barnehager:read".to_string()));
    let r = get_as(port, "/api/v1/datasets?classification=hemmelig", None, None);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("classification"));
}

#[test]
fn queries_are_limited_per_principal_and_in_time() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let server = start_with(&t, &["--query-seconds", "1", "--queries-per-principal", "1"]);
    let port = server.1;
    let ola = token(&t, "ola");
    let slow = r#"{"sql": "SELECT count(*) AS n FROM hamar.innbyggere a, hamar.innbyggere b, hamar.innbyggere c"}"#;
    let auth = format!("Bearer {ola}");
    let first = {
        let auth = auth.clone();
        std::thread::spawn(move || {
            send(
                port,
                "POST",
                "/api/v1/sql",
                &[("Authorization", &auth), ("Tverr-Purpose", "byggesaksbehandling"), ("Content-Type", "application/json")],
                Some(slow.as_bytes()),
            )
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = get_as(port, "/api/v1/datasets/hamar/innbyggere/rows", Some(&ola), Some("byggesaksbehandling"));
    assert_eq!(second.status, 429, "{}", second.text());
    assert_eq!(second.json()["type"], "/problems/too-many-queries");
    let first = first.join().unwrap();
    assert_eq!(first.status, 504, "{}", first.text());
    assert_eq!(first.json()["type"], "/problems/query-timeout");
    // The permit is returned when the query ends.
    let again = get_as(port, "/api/v1/datasets/hamar/innbyggere/rows?limit=1", Some(&ola), Some("byggesaksbehandling"));
    assert_eq!(again.status, 200, "{}", again.text());
    // Body size: a JSON body past the limit is a 413 problem.
    let huge = format!("{{\"sql\": \"{}\"}}", "a".repeat(2 << 20));
    let r = send(port, "POST", "/api/v1/sql", &[("Content-Type", "application/json")], Some(huge.as_bytes()));
    assert_eq!(r.status, 413);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
}

#[test]
fn rest_attack_cases() {
    let (t, server) = demo();
    let port = server.1;
    let any_fnr =
        t.sql_csv("SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert' ORDER BY fodselsnummer LIMIT 1");
    let any_fnr = any_fnr.lines().nth(1).unwrap().to_string();
    let fill = |s: &str| common::expand_repeats(&s.replace("{any_fnr}", &any_fnr));
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    let files = common::case_files("rest");
    assert!(files.len() >= 15, "only {} REST cases", files.len());
    let mut failures = Vec::new();
    for f in files {
        let case = Case::parse(f);
        let get_field = |k: &str| case.get(k);
        let who = get_field("as").unwrap_or("anonymous");
        let tok = (who != "anonymous").then(|| tokens.entry(who.to_string()).or_insert_with(|| token(&t, who)).clone());
        let query: Vec<String> = case.prefixed("param.").iter().map(|(k, v)| format!("{k}={}", enc(&fill(v)))).collect();
        let path = format!("/api/v1/datasets/{}/rows?{}", get_field("dataset").expect("dataset:"), query.join("&"));
        let r = get_as(port, &path, tok.as_deref(), get_field("purpose"));
        let body = r.text();
        let name = case.name();
        let status: u16 = get_field("status").expect("status:").parse().unwrap();
        let mut fail = |why: String| failures.push(format!("{name}: {why}\n  {body}"));
        if r.status != status {
            fail(format!("status {} instead of {status}", r.status));
            continue;
        }
        if let Some(fragment) = get_field("contains")
            && !body.contains(fragment)
        {
            fail(format!("the body does not contain {fragment:?}"));
        }
        if let Some(n) = get_field("returned")
            && r.json()["returned"].as_u64().map(|v| v.to_string()).as_deref() != Some(n)
        {
            fail(format!("returned {} rows, expected {n}", r.json()["returned"]));
        }
        if let Some(secret) = get_field("without") {
            let secret = fill(secret);
            if body.contains(&secret) {
                fail(format!("the body reveals {secret}"));
            }
        }
        if r.status >= 400 && r.header("content-type") != Some("application/problem+json") {
            fail("an error that is not a problem".into());
        }
        if body.contains(&any_fnr) && !case.prefixed("param.").iter().any(|(_, v)| v.contains("{any_fnr}")) {
            fail("a real person number in the answer".into());
        }
        // No case takes the server down or leaves it unable to answer.
        let health = get_as(port, "/health", None, None);
        if health.status != 200 {
            fail(format!("the server no longer answers: /health gave {}", health.status));
            break;
        }
    }
    assert!(failures.is_empty(), "{} failing REST cases:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_openapi_document_covers_every_route() {
    let t = Tverr::new();
    let server = start(&t);
    let r = send(server.1, "GET", "/api/v1/openapi.json", &[], None);
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/health",
        "/api/v1",
        "/api/v1/datasets",
        "/api/v1/datasets/{org}/{dataset}",
        "/api/v1/datasets/{org}/{dataset}/rows",
        "/api/v1/datasets/{org}/{dataset}/versions",
        "/api/v1/sql",
        "/api/v1/login",
        "/api/v1/audit",
        "/api/v1/audit/verify",
        "/api/v1/me/access-log",
        "/api/v1/me/data",
        "/api/v1/agreements",
        "/api/v1/agreements/{id}",
        "/api/v1/agreements/{id}/{action}",
        "/api/v1/openapi.json",
        "/api/v1/subjects/person/{id}",
        "/api/v1/subjects/property/{id}",
        "/api/v1/subjects/organization/{id}",
        "/api/v1/properties",
        "/api/v1/properties/{id}",
        "/api/v1/me/children",
        "/api/v1/me/health",
        "/api/v1/me/kindergarten",
        "/api/v1/kindergartens/admission",
        "/api/v1/datasets/{org}/{dataset}/changes",
        "/api/v1/connectors",
        "/api/v1/connectors/{name}",
        "/api/v1/connectors/{name}/run",
        "/api/v1/connectors/{name}/runs",
        "/api/v1/subscriptions",
        "/api/v1/subscriptions/{id}",
        "/api/v1/subscriptions/{id}/deliveries",
    ] {
        let item = paths.get(route).unwrap_or_else(|| panic!("{route} is not in the document"));
        for (method, op) in item.as_object().unwrap() {
            assert!(op["responses"]["default"]["content"]["application/problem+json"].is_object(), "{method} {route}: no problem response");
        }
    }
    assert_eq!(paths.len(), 35, "a route was added without documenting it, or documented without a route");
    // Every operation has its own id (generators name client methods after them).
    let mut ids: Vec<&str> =
        paths.values().flat_map(|item| item.as_object().unwrap().values()).filter_map(|op| op["operationId"].as_str()).collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "an operation id is used twice: {ids:?}");
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    // The problem schema is the RFC 9457 problem, not an upload's located input problem.
    assert!(doc["components"]["schemas"]["Problem"]["properties"]["type"].is_object(), "{}", doc["components"]["schemas"]["Problem"]);
    assert!(doc["components"]["schemas"]["InputProblem"]["properties"]["file"].is_object());
}

/// The reference points of `tests/geo/known_points.csv` (PROJ's figures): name, lon, lat, and
/// the EPSG:25832 and EPSG:25833 coordinates.
fn known_points() -> Vec<(String, [f64; 6])> {
    let text = std::fs::read_to_string(common::data_dir().join("../geo/known_points.csv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("name"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n: Vec<f64> = f[1..].iter().map(|v| v.parse().unwrap()).collect();
            (f[0].to_string(), [n[0], n[1], n[2], n[3], n[4], n[5]])
        })
        .collect()
}

/// `POINT(x y)` → (x, y).
fn point(wkt: &str) -> (f64, f64) {
    let inner = wkt.trim_start_matches("POINT(").trim_end_matches(')');
    let (x, y) = inner.split_once(' ').unwrap();
    (x.parse().unwrap(), y.parse().unwrap())
}

fn names(v: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> = v["rows"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    n.sort();
    n
}

#[test]
fn geo_boxes_distances_and_transforms_match_known_points() {
    let (t, server) = demo();
    let port = server.1;
    let points = known_points();
    // The places as a dataset in EPSG:25833, as Norwegian map systems deliver them.
    let features: Vec<String> = points
        .iter()
        .map(|(name, p)| {
            format!(
                r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{},{}]}},"properties":{{"name":"{name}"}}}}"#,
                p[4], p[5]
            )
        })
        .collect();
    let file = t.dir.path().join("steder.geojson");
    std::fs::write(
        &file,
        format!(r#"{{"type":"FeatureCollection","crs":{{"type":"name","properties":{{"name":"urn:ogc:def:crs:EPSG::25833"}}}},"features":[{}]}}"#, features.join(",")),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    t.ok(&["ingest", "hamar/steder", f, "--create", "--department", "byggesak", "--title", "Steder", "--classification", "open"]);
    let rows = |query: &str| {
        let r = get_as(port, &format!("/api/v1/datasets/hamar/steder/rows?{query}"), None, None);
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        r
    };

    // Output in every CRS equals PROJ's figures.
    for (crs, x_at, y_at, tolerance) in [("EPSG:4326", 0, 1, 1e-8), ("EPSG:25832", 2, 3, 1e-3), ("EPSG:25833", 4, 5, 1e-3)] {
        let r = rows(&format!("crs={}&limit=100", enc(crs)));
        let code = crs.trim_start_matches("EPSG:");
        assert_eq!(r.header("content-crs"), Some(format!("<http://www.opengis.net/def/crs/EPSG/0/{code}>").as_str()));
        let v = r.json();
        assert_eq!(v["columns"][0]["crs"], crs, "{}", v["columns"]);
        for row in v["rows"].as_array().unwrap() {
            let (_, p) = points.iter().find(|(n, _)| n == row["name"].as_str().unwrap()).unwrap();
            let (x, y) = point(row["geometry"].as_str().unwrap());
            assert!(
                (x - p[x_at]).abs() < tolerance && (y - p[y_at]).abs() < tolerance,
                "{} in {crs}: ({x}, {y}), PROJ: ({}, {})",
                row["name"],
                p[x_at],
                p[y_at]
            );
        }
    }

    // SQL: ST_Transform with the column's own CRS, with an explicit one, and on ST_Point.
    let sql = |query: &str| {
        let r = send(
            port,
            "POST",
            "/api/v1/sql",
            &[("Content-Type", "application/json")],
            Some(serde_json::json!({"sql": query}).to_string().as_bytes()),
        );
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        r.json()
    };
    let v = sql(
        "SELECT name, ST_Transform(geometry, 25832) AS a, ST_AsText(ST_Transform(geometry, 25833, 4326)) AS b, ST_SRID(geometry) AS srid FROM hamar.steder ORDER BY name",
    );
    assert_eq!(v["columns"][1]["type"], "geometry");
    for row in v["rows"].as_array().unwrap() {
        let (_, p) = points.iter().find(|(n, _)| n == row["name"].as_str().unwrap()).unwrap();
        let (x, y) = point(row["a"].as_str().unwrap());
        assert!((x - p[2]).abs() < 1e-3 && (y - p[3]).abs() < 1e-3, "{row}");
        let (lon, lat) = point(row["b"].as_str().unwrap());
        assert!((lon - p[0]).abs() < 1e-8 && (lat - p[1]).abs() < 1e-8, "{row}");
        assert_eq!(row["srid"], 25833);
    }
    let v = sql("SELECT ST_AsText(ST_Transform(ST_Point(11.068, 60.7945, 4326), 25833)) AS p");
    let (x, y) = point(v["rows"][0]["p"].as_str().unwrap());
    assert!((x - 286050.0479).abs() < 1e-3 && (y - 6746309.9406).abs() < 1e-3, "Hamar rådhus: ({x}, {y})");

    // A box in degrees (longitude first) and the same area in each UTM zone.
    let hamar = ["brumunddal", "hamar_radhus"];
    assert_eq!(names(&rows("bbox=10.9,60.75,11.1,60.9").json()), hamar);
    assert_eq!(names(&rows("bbox=275000,6740000,290000,6760000&bbox-crs=EPSG:25833").json()), hamar);
    assert_eq!(names(&rows("bbox=600000,6735000,615000,6755000&bbox-crs=http://www.opengis.net/def/crs/EPSG/0/25832").json()), hamar);
    // Just east of Hamar rådhus: the box misses it.
    assert_eq!(names(&rows("bbox=11.0681,60.79,11.2,60.8").json()), Vec::<String>::new());

    // near: metres on the ellipsoid. Hamar rådhus–Brumunddal is 11,921.19 m (PROJ's geod).
    assert_eq!(names(&rows("near=11.068,60.7945,11915").json()), ["hamar_radhus"]);
    assert_eq!(names(&rows("near=11.068,60.7945,11927").json()), hamar);
    assert_eq!(names(&rows("near=286050.0479,6746309.9406,11927&near-crs=EPSG:25833").json()), hamar);
    // Kirkenes, 15° east of zone 33's central meridian, where UTM's scale is 1.6 % off:
    // 1 km due north is still 1 km.
    let (_, k) = points.iter().find(|(n, _)| n == "kirkenes").unwrap();
    let north = k[1] + 1000.0 / 111_650.0;
    assert_eq!(names(&rows(&format!("near={},{north},1001", k[0])).json()), ["kirkenes"]);
    assert_eq!(names(&rows(&format!("near={},{north},985", k[0])).json()), Vec::<String>::new());

    // Paging keeps the spatial filter; a cursor does not move to another box.
    let first = rows("bbox=10.9,60.75,11.1,60.9&limit=1").json();
    let next = first["next"].as_str().unwrap().to_string();
    assert!(next.contains("bbox="), "{next}");
    let second = get_as(port, &next, None, None).json();
    let mut seen = vec![first["rows"][0]["name"].as_str().unwrap().to_string(), second["rows"][0]["name"].as_str().unwrap().to_string()];
    seen.sort();
    assert_eq!(seen, hamar);
    let cursor = next.split("cursor=").nth(1).unwrap();
    let r = get_as(port, &format!("/api/v1/datasets/hamar/steder/rows?bbox=0,50,30,72&cursor={cursor}"), None, None);
    assert_eq!(r.status, 400, "{}", r.text());

    // GeoJSON in WGS 84 (RFC 7946) when asked, with the stored CRS named otherwise.
    let r = rows("format=geojson&crs=EPSG:4326&near=11.068,60.7945,10");
    let v = r.json();
    assert!(v.get("crs").is_none());
    let c = &v["features"][0]["geometry"]["coordinates"];
    assert!((c[0].as_f64().unwrap() - 11.068).abs() < 1e-8 && (c[1].as_f64().unwrap() - 60.7945).abs() < 1e-8, "{c}");
    assert_eq!(rows("format=geojson&limit=1").json()["crs"]["properties"]["name"], "urn:ogc:def:crs:EPSG::25833");

    // Bad parameters name themselves.
    for (query, says) in [
        ("bbox=1,2,3", "bbox: expected minx,miny,maxx,maxy"),
        ("bbox=a,b,c,d", "bbox: expected"),
        ("bbox=11,61,10,60", "the minimum comes first"),
        ("bbox=10,60,200,61", "longitudes lie in -180..180"),
        ("bbox=10,60,11,61&bbox-crs=EPSG:3857", "bbox-crs: expected EPSG:4326"),
        ("near=11,60", "near: expected x,y,metres"),
        ("near=11,60,-1", "near: the distance must be ≥ 0"),
        ("near=11,60,1&bbox=10,60,11,61", "bbox or near, not both"),
        ("near-crs=EPSG:25833", "no near for it to apply to"),
        ("crs=EPSG:3035", "crs: expected"),
        ("format=geojson&select=name", "needs a geometry column"),
    ] {
        let r = get_as(port, &format!("/api/v1/datasets/hamar/steder/rows?{}", query.replace(' ', "%20")), None, None);
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert!(r.text().contains(says), "{query}: {}", r.text());
    }
    let r = get_as(port, "/api/v1/datasets/hias/vannkvalitet/rows?bbox=10,60,12,61", None, None);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("has none you may read"), "{}", r.text());
}

#[test]
fn every_name_the_catalogue_accepts_works_in_every_channel() {
    let t = Tverr::new();
    t.org();
    let file = common::data_dir().join("ingest/people.csv");
    // A hyphen (as the upload form's example has it), a SQL keyword, both kinds of separator.
    let names = [("kull-2026", "test.\"kull-2026\""), ("select", "test.\"select\""), ("a_b-2", "test.\"a_b-2\"")];
    for (name, _) in names {
        t.ok(&[
            "ingest",
            &format!("test/{name}"),
            file.to_str().unwrap(),
            "--create",
            "--department",
            "data",
            "--title",
            "T",
            "--classification",
            "open",
        ]);
    }
    let server = start(&t);
    let port = server.1;
    for (name, in_sql) in names {
        let r = get_as(port, &format!("/api/v1/datasets/test/{name}/rows"), None, None);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.json()["returned"], 2, "{name}");
        let r = get_as(port, &format!("/api/v1/datasets/test/{name}/rows?format=csv&where=belop%20%3E%200"), None, None);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.text().lines().count(), 2, "{name}: the header and the one row with a positive amount: {}", r.text());
        assert_eq!(t.sql_csv(&format!("SELECT count(*) AS n FROM {in_sql}")), "n\n2\n", "{name}");
        let exported = t.ok(&["export", &format!("test/{name}"), "--format", "ndjson"]);
        assert_eq!(exported.lines().count(), 2, "{name}");
        // The dataset page shows the SQL example with the name as SQL needs it.
        let page = send(port, "GET", &format!("/datasett/test/{name}"), &[], None);
        assert_eq!(page.status, 200, "{name}");
        let text = page.text().replace("&#34;", "\"").replace("&quot;", "\"").replace("&#92;", "\\");
        assert!(text.contains(&format!("FROM {} LIMIT", in_sql.replace('"', "\\\""))), "{name}: {text}");
    }
}

#[test]
fn export_takes_the_csv_options_and_a_crs() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    let out = t.ok(&["export", "hamar/barnehager", "--format", "csv", "--delimiter", ";", "--decimal", ",", "--bom"]);
    assert!(out.starts_with('\u{feff}'), "a byte-order mark first");
    let header = out.trim_start_matches('\u{feff}').lines().next().unwrap();
    assert!(header.contains(';') && !header.contains(','), "{header}");
    // Geometry in another CRS: degrees instead of the stored EPSG:25833 metres.
    let utm = t.ok(&["export", "hamar/barnehager", "--format", "geojson"]);
    let wgs = t.ok(&["export", "hamar/barnehager", "--format", "geojson", "--crs", "EPSG:4326"]);
    let first_x = |text: &str| -> f64 {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        v["features"][0]["geometry"]["coordinates"][0].as_f64().unwrap()
    };
    assert!(first_x(&wgs).abs() < 180.0 && first_x(&utm) > 100_000.0, "{} {}", first_x(&wgs), first_x(&utm));
    // Options that do not fit are refused, naming the flag.
    let (code, err) = t.fail(&["export", "hamar/barnehager", "--format", "parquet", "--bom"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--format csv only"), "{err}");
    let (_, err) = t.fail(&["export", "hamar/barnehager", "--format", "csv", "--delimiter", "x"]);
    assert!(err.contains("--delimiter \"x\""), "{err}");
    let (_, err) = t.fail(&["export", "hamar/barnehager", "--format", "geojson", "--crs", "EPSG:3857"]);
    assert!(err.contains("--crs"), "{err}");
}

/// Processor time (user and system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The most memory (resident set, MiB) a process has held so far.
fn peak_memory_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// Waits up to `limit` for a second in which the process uses under a quarter of a core.
fn settles(pid: u32, limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        let before = cpu_ticks(pid);
        std::thread::sleep(std::time::Duration::from_secs(1));
        // Linux counts 100 ticks a second.
        if cpu_ticks(pid) - before < 25 {
            return true;
        }
    }
    false
}

#[test]
fn runaway_queries_hold_neither_the_server_nor_the_processor() {
    use std::time::Duration;
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let server = start_with(&t, &["--query-seconds", "2"]);
    let (port, pid) = (server.1, server.0.id());
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    let files = common::case_files("runaway");
    assert!(files.len() >= 8, "only {} runaway cases", files.len());
    let mut failures = Vec::new();
    for f in files {
        let case = Case::parse(f);
        let name = case.name();
        let field = |k: &str| case.get(k).map(str::to_string);
        let who = field("as").unwrap_or_else(|| "anonymous".into());
        let tok = (who != "anonymous").then(|| tokens.entry(who.clone()).or_insert_with(|| token(&t, &who)).clone());
        let body = serde_json::json!({"sql": field("sql").expect("sql:")}).to_string();
        // `status: 504|422`: either ending is right (a time limit or the memory limit, whichever
        // the query meets first).
        let expected: Vec<u16> = field("status").expect("status:").split('|').map(|s| s.trim().parse().unwrap()).collect();
        let purpose = field("purpose");
        let query = std::thread::spawn(move || {
            let auth = tok.map(|t| format!("Bearer {t}"));
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(a) = &auth {
                headers.push(("Authorization", a));
            }
            if let Some(p) = &purpose {
                headers.push(("Tverr-Purpose", p));
            }
            common::send_within(port, "POST", "/api/v1/sql", &headers, Some(body.as_bytes()), Some(Duration::from_secs(30)))
        });
        std::thread::sleep(Duration::from_millis(500));
        // While it runs, the server answers: its health, and someone else's small query.
        let health = common::send_within(port, "GET", "/health", &[], None, Some(Duration::from_secs(2)));
        if health.as_ref().map(|r| r.status) != Some(200) {
            failures.push(format!("{name}: /health did not answer within 2 s while the query ran"));
        }
        let small = br#"{"sql": "SELECT count(*) AS n FROM hamar.barnehager"}"#;
        let other = common::send_within(
            port,
            "POST",
            "/api/v1/sql",
            &[("Content-Type", "application/json")],
            Some(small),
            Some(Duration::from_secs(5)),
        );
        if other.as_ref().map(|r| r.status) != Some(200) {
            failures.push(format!("{name}: a small query did not answer within 5 s while the query ran"));
        }
        match query.join().unwrap() {
            None => failures.push(format!("{name}: no answer within 30 s (the time limit is 2 s)")),
            Some(r) => {
                let text = r.text();
                if !expected.contains(&r.status) {
                    failures.push(format!("{name}: status {} instead of {expected:?}: {text}", r.status));
                }
                if let Some(fragment) = field("contains")
                    && !text.contains(&fragment)
                {
                    failures.push(format!("{name}: the answer does not contain {fragment:?}: {text}"));
                }
            }
        }
        // Memory: scalar functions' results are outside the query pools, so they are bounded
        // on their own; the server stays far below what one request once took (4.5 GiB).
        let peak = peak_memory_mib(pid);
        if peak > 3 * 1024 {
            failures.push(format!("{name}: the server's memory peaked at {peak} MiB"));
            break;
        }
        // Stopped, not left running: the processor goes quiet.
        if !settles(pid, Duration::from_secs(10)) {
            failures.push(format!("{name}: the server still computes 10 s after the query was stopped"));
            break;
        }
    }
    assert!(failures.is_empty(), "{} failing runaway cases:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn sigterm_stops_the_server_within_its_grace_period_even_during_a_runaway_query() {
    use std::time::{Duration, Instant};
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let mut server = start_with(&t, &["--query-seconds", "600"]);
    let port = server.1;
    let runaway = br#"{"sql": "SELECT count(*) FROM hias.vannkvalitet a, hias.vannkvalitet b, hias.vannkvalitet c"}"#;
    let query = std::thread::spawn(move || {
        common::send_within(
            port,
            "POST",
            "/api/v1/sql",
            &[("Content-Type", "application/json")],
            Some(runaway),
            Some(Duration::from_secs(60)),
        )
    });
    std::thread::sleep(Duration::from_secs(1));
    let sent = Instant::now();
    let killed = std::process::Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = sent + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the server ended with {status}");
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_secs(9), "requests under way get their grace period; stopped after {waited:?}");
    // The query's connection ends without a complete answer.
    let answer = query.join().unwrap();
    assert!(answer.is_none_or(|r| r.status != 200), "the runaway query was answered as if complete");
}

#[test]
fn version_row_counts_go_only_to_readers_who_see_every_row() {
    // Final attack on issue 23 (F3): a version's row count includes rows withheld from the
    // reader, so the count (2,000 against 1,990 rows visible) told how many people are
    // protected, and a one-row upsert that someone became protected.
    let (t, server) = demo();
    let port = server.1;
    let (tove, siri) = (token(&t, "tove"), token(&t, "siri"));
    let counts = |path: &str, tok: &str, purpose: &str| -> Vec<serde_json::Value> {
        let r = get_as(port, path, Some(tok), Some(purpose));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()["versions"].as_array().unwrap().iter().map(|v| v["rows_written"].clone()).collect()
    };
    for path in ["/api/v1/datasets/hamar/innbyggere/versions", "/api/v1/datasets/hamar/innbyggere"] {
        // The desk reads the register under an agreement that withholds protected persons.
        let shown = counts(path, &tove, "innbyggerservice");
        assert!(!shown.is_empty() && shown.iter().all(serde_json::Value::is_null), "{path}: {shown:?}");
        // The register's own department sees every row, and the counts.
        let shown = counts(path, &siri, "folkeregisterforvaltning");
        assert!(shown.iter().all(|n| n.as_i64() == Some(2000)), "{path}: {shown:?}");
    }
    // Datasets about no one keep their counts, for anyone.
    let r = get_as(port, "/api/v1/datasets/hamar/barnehager/versions", None, None);
    assert!(r.json()["versions"][0]["rows_written"].as_i64().is_some_and(|n| n > 0), "{}", r.text());
    // The dataset pages: `tests/security/web/35-*.case` and `36-*.case`.
}

#[test]
fn an_upsert_by_a_key_that_protection_withholds_is_refused() {
    // Third release-build attack on issue 23 (finding 3): a steward's upsert by matrikkel of a
    // strengt fortrolig owner's property (withheld from every reader) answered rows_removed 1,
    // and the withheld row that vanished named its owner. An upsert by a key that protection
    // withholds is refused before anything is written; the operator, who holds the lake, may.
    let (t, server) = demo();
    let port = server.1;
    let eva = token(&t, "eva");
    let catalog = t.data().join("catalog.db");
    let versions = || common::sqlite(&catalog, "SELECT count(*) FROM dataset_versions WHERE org = 'hamar' AND dataset = 'eiendommer'");
    let before = versions();
    let feature = r#"{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"urn:ogc:def:crs:EPSG::25833"}},"features":[{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[280000,6740000],[280010,6740000],[280010,6740010],[280000,6740000]]]},"properties":{"adresse":"Testvegen 1","areal_m2":1.0,"eier_fnr":null,"eier_orgnr":null,"matrikkel":"3403-1/467"}}]}"#;
    for key in ["matrikkel", "adresse"] {
        let r = upload(
            port,
            &format!("/api/v1/datasets/hamar/eiendommer/versions?mode=upsert&key={key}"),
            &eva,
            "application/geo+json",
            feature.as_bytes(),
        );
        assert_eq!(r.status, 400, "upsert by {key}: {}", r.text());
        assert!(r.text().contains("address protection withholds"), "{}", r.text());
    }
    assert_eq!(versions(), before, "nothing was written");
    // An upsert by a key that is never withheld is the steward's to make.
    let r = upload(
        port,
        "/api/v1/datasets/hamar/eiendommer/versions?mode=upsert&key=eier_orgnr",
        &eva,
        "application/geo+json",
        feature.as_bytes(),
    );
    assert_ne!(r.status, 400, "{}", r.text());
}

#[test]
fn an_agreement_request_tells_nothing_of_a_dataset_the_requester_may_not_read() {
    // Attack 5, F2: kari (steward of hamar/oppvekst) told Hias' internal datasets from missing
    // ones, and their columns from wrong ones, by the answer to a request.
    let (t, server) = demo();
    let port = server.1;
    let auth = format!("Bearer {}", common::token(&t, "kari"));
    let request = |dataset: &str, column: &str| {
        let body = format!(
            r#"{{"provider":"hias/vann","consumer":"hamar/oppvekst","datasets":[{{"dataset":"{dataset}","columns":["{column}"]}}],"purposes":["barnehageopptak"]}}"#
        );
        let r = send(
            port,
            "POST",
            "/api/v1/agreements",
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            Some(body.as_bytes()),
        );
        (r.status, r.text())
    };
    let missing = request("hias/finnes-ikke", "maler_id");
    let wrong_column = request("hias/vannmalere", "ingen_slik_kolonne");
    let wrong_department = request("hamar/innbyggere", "fornavn");
    assert_eq!(missing.0, 404, "{}", missing.1);
    assert_eq!(wrong_column, missing, "a wrong column of a hidden dataset answers as a missing dataset");
    assert!(!wrong_column.1.contains("ingen_slik_kolonne"));
    // Hamar's own dataset is hers to know: the real reason is given.
    assert_eq!(wrong_department.0, 400, "{}", wrong_department.1);
    assert!(wrong_department.1.contains("not to the provider"), "{}", wrong_department.1);
}
