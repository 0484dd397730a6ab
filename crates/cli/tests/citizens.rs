//! Citizens see who read their data: a case worker's read of `hamar/innbyggere` shows up in
//! exactly the affected citizens' access logs (with masked columns recorded as masked) and in no
//! one else's; a citizen gets everything Tverr holds about them; the log never holds a
//! fødselsnummer in clear; and no citizen or employee reads others' entries.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use common::{Tverr, sqlite};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The raw response (head and body) of a GET, to see its headers.
fn raw_get(port: u16, path: &str, token: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw
}

#[test]
fn a_case_workers_read_shows_in_exactly_the_affected_citizens_logs() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    let db = t.data().join("catalog.db");

    // Everyone's number, post code and address protection, read by the Folkeregister itself
    // (also logged).
    let all = t.ok(&[
        "sql",
        "--as",
        "siri",
        "--purpose",
        "folkeregisterforvaltning",
        "--format",
        "csv",
        "SELECT fodselsnummer, postnummer, adressebeskyttelse FROM hamar.innbyggere",
    ]);
    // Byggesak sees the post code only of people without address protection.
    let mut by_post: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut hidden: Vec<String> = Vec::new();
    for line in all.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[2] == "ugradert" {
            by_post.entry(f[1].to_string()).or_default().push(f[0].to_string());
        } else {
            hidden.push(f[0].to_string());
        }
    }
    assert!(by_post.len() >= 3, "{by_post:?}");
    let mut codes: Vec<(&String, &Vec<String>)> = by_post.iter().filter(|(_, v)| v.len() > 3).collect();
    codes.sort_by_key(|(_, v)| v.len());
    let (post, read) = (codes[0].0.clone(), codes[0].1.iter().cloned().collect::<BTreeSet<_>>());
    let limited_post = codes[1].0.clone();
    // Not read by byggesak: people of a third post code, and people with protected addresses.
    let others: Vec<String> = codes[2].1.iter().take(3).chain(hidden.iter().take(2)).cloned().collect();
    let ola = t.ok(&["token", "create", "--user", "ola"]).trim().to_string();
    let revisor = t.ok(&["token", "create", "--user", "revisor"]).trim().to_string();
    // A LIMIT reaches the scan: exactly three people are named, not the whole batch.
    t.ok(&[
        "sql",
        "--as",
        "ola",
        "--purpose",
        "byggesaksbehandling",
        &format!("SELECT fornavn FROM hamar.innbyggere WHERE postnummer = '{limited_post}' LIMIT 3"),
    ]);
    let limited = sqlite(&db, "SELECT count(*) FROM audit_subjects WHERE access = (SELECT max(seq) FROM audit_log WHERE kind = 'access')");
    assert_eq!(limited, "[(3,)]");

    let server = common::start(&t);
    let port = server.1;
    let call = |token: &str, method: &str, path: &str, body: Option<&str>| {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("Tverr-Purpose", "byggesaksbehandling")];
        if !token.is_empty() {
            headers.push(("Authorization", auth.as_str()));
        }
        common::request(port, method, path, &headers, body)
    };

    // The case worker's read over HTTP: the person number comes out only as a pseudonym.
    let query = format!("{{\"sql\": \"SELECT fornavn, fodselsnummer FROM hamar.innbyggere WHERE postnummer = '{post}'\"}}");
    let (status, _, body) = call(&ola, "POST", "/api/v1/sql", Some(&query));
    assert_eq!(status, 200, "{body}");
    let rows = json(&body)["rows"].as_array().unwrap().len();
    assert_eq!(rows, read.len());
    for fnr in &read {
        assert!(!body.contains(fnr.as_str()), "the number is masked");
    }

    let citizen = |fnr: &str| t.ok(&["token", "create", "--citizen", fnr]).trim().to_string();
    let byggesak_reads = |log: &serde_json::Value| -> Vec<serde_json::Value> {
        log["accesses"].as_array().unwrap().iter().filter(|a| a["reader"]["department"] == "byggesak").cloned().collect()
    };
    for fnr in read.iter().take(3) {
        let token = citizen(fnr);
        let (status, _, body) = call(&token, "GET", "/api/v1/me/access-log", None);
        assert_eq!(status, 200, "{body}");
        let log = json(&body);
        let reads = byggesak_reads(&log);
        assert_eq!(reads.len(), 1, "exactly the one read about {fnr}: {body}");
        let a = &reads[0];
        assert_eq!(a["channel"], "http-sql");
        assert_eq!(a["purpose"], "byggesaksbehandling");
        assert_eq!(a["reader"]["kind"], "employee");
        assert_eq!(a["reader"]["organisation"], "hamar");
        assert_eq!(a["reader"]["role"], "employee");
        assert!(a["reader"]["organisation_name"].as_str().is_some_and(|n| n.contains("Hamar")), "{a}");
        assert!(a["reader"].get("employee").is_none(), "no name for non-health data: {a}");
        let d = &a["datasets"][0];
        assert_eq!(d["dataset"], "hamar/innbyggere");
        assert!(!d["title"].as_str().unwrap().is_empty());
        assert!(d["legal_basis"]["gdpr_article"].is_string(), "{d}");
        let columns = d["columns"].as_array().unwrap();
        assert!(columns.iter().any(|c| c["name"] == "fodselsnummer" && c["mask"] == "hmac"), "masked recorded as masked: {d}");
        assert!(columns.iter().any(|c| c["name"] == "fornavn" && c["mask"].is_null()), "{d}");
        // The Folkeregister's own read is there too, and nothing of anyone else's.
        assert!(log["accesses"].as_array().unwrap().iter().any(|a| a["reader"]["department"] == "folkeregister"));
    }
    for fnr in &others {
        let (status, _, body) = call(&citizen(fnr), "GET", "/api/v1/me/access-log", None);
        assert_eq!(status, 200, "{body}");
        assert!(byggesak_reads(&json(&body)).is_empty(), "{fnr} was not read by byggesak: {body}");
    }

    // Everything about me (GDPR art. 15): my rows only, unmasked; as JSON and as a file.
    let me = read.iter().next().unwrap().clone();
    let token = citizen(&me);
    let (status, _, body) = call(&token, "GET", "/api/v1/me/data", None);
    assert_eq!(status, 200, "{body}");
    let data = json(&body);
    let datasets = data["datasets"].as_array().unwrap();
    let innbyggere = datasets.iter().find(|d| d["dataset"] == "hamar/innbyggere").expect("my row in the population register");
    let my_rows = innbyggere["rows"].as_array().unwrap();
    assert_eq!(my_rows.len(), 1);
    assert_eq!(my_rows[0]["fodselsnummer"], me.as_str());
    assert!(
        datasets.iter().all(|d| d["rows"].as_array().unwrap().iter().all(|r| r.to_string().contains(me.as_str()))),
        "only rows about me"
    );
    let raw = raw_get(port, "/api/v1/me/data?download=true", &token);
    assert!(raw.to_ascii_lowercase().contains("content-disposition: attachment; filename=\"mine-data-"), "{raw}");
    // Personal data is never kept by a cache, nor read by a browser as another type.
    let head = raw.to_ascii_lowercase();
    assert!(head.contains("cache-control: no-store") && head.contains("x-content-type-options: nosniff"), "{raw}");
    // …and that read is in my own log, as my own.
    let (_, _, body) = call(&token, "GET", "/api/v1/me/access-log", None);
    // (One access per dataset with rows about me: the population register's is in each read.)
    let own = json(&body)["accesses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["reader"]["kind"] == "self" && a["datasets"].as_array().unwrap().iter().any(|d| d["dataset"] == "hamar/innbyggere"))
        .count();
    assert_eq!(own, 2, "both reads of my data: {body}");

    // No one reads others' entries: citizens not the audit log, employees not a citizen's page.
    assert_eq!(call(&token, "GET", "/api/v1/audit?user=ola", None).0, 403);
    assert_eq!(call(&token, "POST", "/api/v1/sql", Some(&query)).0, 404, "a citizen reads no register");
    assert_eq!(call(&ola, "GET", "/api/v1/me/access-log", None).0, 403);
    assert_eq!(call("", "GET", "/api/v1/me/data", None).0, 401);
    // The auditor finds the read by the person's number.
    let (status, _, body) = call(&revisor, "GET", &format!("/api/v1/audit?subject={me}"), None);
    assert_eq!(status, 200, "{body}");
    let hits = json(&body)["entries"].as_array().unwrap().clone();
    assert!(hits.iter().any(|e| e["record"]["principal"]["username"] == "ola"), "{body}");
    assert!(hits.iter().all(|e| e["kind"] == "access"));
    assert_eq!(call(&revisor, "GET", "/api/v1/audit?subject=123", None).0, 400);

    // Fail closed: with the log broken, neither a case worker nor a citizen gets a row.
    sqlite(&db, "CREATE TRIGGER broken BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END");
    let (status, ctype, body) = call(&ola, "POST", "/api/v1/sql", Some(&query));
    assert_eq!(status, 503, "{body}");
    assert!(ctype.contains("problem+json") && !body.contains("fornavn\":"), "{body}");
    let (status, _, body) = call(&token, "GET", "/api/v1/me/data", None);
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains(me.as_str()));
    sqlite(&db, "DROP TRIGGER broken");
    drop(server);

    // The log never holds a number in clear, and it verifies, subject index included.
    for fnr in read.iter().chain(others.iter()) {
        assert_eq!(sqlite(&db, &format!("SELECT count(*) FROM audit_log WHERE payload LIKE '%{fnr}%'")), "[(0,)]");
    }
    t.ok(&["audit", "verify"]);
    let found = t.ok(&["audit", "search", "--subject", &me]);
    assert!(found.contains("\"username\":\"ola\"") && found.contains("\"username\":\"siri\""), "{found}");
    let (code, _) = t.fail(&["audit", "search", "--subject", "nope"]);
    assert_eq!(code, 65);
    // Hiding the read from the citizen by editing the index is caught.
    sqlite(
        &db,
        "DELETE FROM audit_subjects WHERE access = (SELECT min(seq) FROM audit_log WHERE kind = 'access' AND payload LIKE '%http-sql%')",
    );
    let (code, err) = t.fail(&["audit", "verify"]);
    assert_eq!(code, 1);
    assert!(err.contains("data-subject index"), "{err}");
}

#[test]
fn statistics_only_reads_name_no_one() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    let db = t.data().join("catalog.db");
    let out = t.ok(&[
        "sql",
        "--as",
        "nina",
        "--purpose",
        "helsestasjon",
        "--format",
        "csv",
        "SELECT bydel, count(*) AS n FROM hamar.innbyggere GROUP BY bydel",
    ]);
    assert!(out.lines().count() > 1, "{out}");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM audit_log WHERE kind = 'access'"), "[(1,)]");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM audit_subjects"), "[(0,)]");
}

#[test]
fn reads_of_more_people_than_the_limit_are_recorded_as_bulk_reads() {
    let t = Tverr::with_env(&[("TVERR_AUDIT_NAMED_LIMIT", "50")]);
    t.ok(&["demo", "--persons", "300"]);
    let db = t.data().join("catalog.db");
    let everyone = t.ok(&[
        "sql",
        "--as",
        "siri",
        "--purpose",
        "folkeregisterforvaltning",
        "--format",
        "csv",
        "SELECT fodselsnummer FROM hamar.innbyggere",
    ]);
    let someone = everyone.lines().nth(1).unwrap().to_string();
    t.ok(&["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "SELECT fornavn FROM hamar.innbyggere LIMIT 10"]);
    // The whole-register read names no one but is indexed as a bulk read; the small read names
    // its ten.
    let first = sqlite(&db, "SELECT payload FROM audit_log WHERE kind = 'access' ORDER BY seq LIMIT 1");
    assert!(first.contains("\"bulk\":{\"hamar/innbyggere\":"), "{first}");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM audit_subjects WHERE subject = 'bulk:hamar/innbyggere'"), "[(1,)]");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM audit_subjects WHERE subject NOT LIKE 'bulk:%'"), "[(10,)]");
    let completion = sqlite(&db, "SELECT payload FROM audit_log WHERE kind = 'completion' ORDER BY seq LIMIT 1");
    assert!(completion.contains("\"bulk_rows\":{\"hamar/innbyggere\":300}"), "{completion}");
    t.ok(&["audit", "verify"]);

    let token = t.ok(&["token", "create", "--citizen", &someone]).trim().to_string();
    let server = common::start(&t);
    let (status, _, body) =
        common::request(server.1, "GET", "/api/v1/me/access-log", &[("Authorization", &format!("Bearer {token}"))], None);
    assert_eq!(status, 200, "{body}");
    let log = json(&body);
    let siri = log["accesses"].as_array().unwrap().iter().find(|a| a["reader"]["department"] == "folkeregister").expect("the bulk read");
    assert_eq!(siri["datasets"][0]["scope"], "bulk", "{siri}");
}

#[test]
fn a_guardian_gets_every_row_that_names_them() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    // A guardian of a kindergarten place: named in foresatt_fnr, not in the dataset's first key.
    let guardian = t.ok(&[
        "sql",
        "--purpose",
        "tilsyn",
        "--format",
        "csv",
        "SELECT foresatt_fnr FROM hamar.barnehageplasser WHERE foresatt_fnr IS NOT NULL ORDER BY foresatt_fnr LIMIT 1",
    ]);
    let guardian = guardian.lines().nth(1).expect("a guardian").to_string();
    let expected = t.ok(&[
        "sql",
        "--purpose",
        "tilsyn",
        "--format",
        "csv",
        &format!("SELECT count(*) AS n FROM hamar.barnehageplasser WHERE foresatt_fnr = '{guardian}' OR barn_fnr = '{guardian}'"),
    ]);
    let expected: usize = expected.lines().nth(1).unwrap().parse().unwrap();
    assert!(expected >= 1);
    let token = t.ok(&["token", "create", "--citizen", &guardian]).trim().to_string();
    let server = common::start(&t);
    let auth = format!("Bearer {token}");
    let (status, _, body) = common::request(server.1, "GET", "/api/v1/me/data", &[("Authorization", auth.as_str())], None);
    assert_eq!(status, 200, "{body}");
    let data = json(&body);
    let places =
        data["datasets"].as_array().unwrap().iter().find(|d| d["dataset"] == "hamar/barnehageplasser").expect("the guardian's places");
    let rows = places["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected, "{places}");
    assert!(rows.iter().all(|r| r["foresatt_fnr"] == guardian.as_str() || r["barn_fnr"] == guardian.as_str()));
}

/// A citizen with two rows in a file of other people's rows gets both: the optimiser puts the
/// citizen's number in place of the key column (the filter makes it constant), and the
/// protection check then gets it as one value for all the rows (it panicked on the second).
#[test]
fn a_citizen_with_two_rows_among_others_gets_both() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    let everyone = t.ok(&[
        "sql",
        "--as",
        "siri",
        "--purpose",
        "folkeregisterforvaltning",
        "--format",
        "csv",
        "SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert' ORDER BY 1",
    ]);
    let people: Vec<&str> = everyone.lines().skip(1).collect();
    let me = people[0];
    let mut text = String::from("nr;fnr;notat\n");
    for i in 0..1100 {
        let who = if i == 10 || i == 20 { me } else { people[1 + i % (people.len() - 1)] };
        text.push_str(&format!("{i};{who};notat {i}\n"));
    }
    let file = t.dir.path().join("saker.csv");
    std::fs::write(&file, text).unwrap();
    t.ok(&[
        "ingest",
        "hamar/saker",
        file.to_str().unwrap(),
        "--create",
        "--department",
        "oppvekst",
        "--title",
        "Saker",
        "--classification",
        "confidential",
        "--subject",
        "fnr=person",
    ]);
    let token = t.ok(&["token", "create", "--citizen", me]).trim().to_string();
    let server = common::start(&t);
    let (status, _, body) = common::request(server.1, "GET", "/api/v1/me/data", &[("Authorization", &format!("Bearer {token}"))], None);
    assert_eq!(status, 200, "{body}");
    let data = json(&body);
    let rows: Vec<&serde_json::Value> = data["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["dataset"] == "hamar/saker")
        .flat_map(|d| d["rows"].as_array().unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{body}");
}
