//! The change feed (`/api/v1/datasets/{org}/{dataset}/changes`): what append, replace, upsert
//! and erasure produce, and that it is a read like any other — the agreement's columns, masks
//! and row filter, the purpose, the 404 of a dataset one may not read, and the access log.

mod common;

use common::{Tverr, get_as, start, token};
use serde_json::Value;

fn write(t: &Tverr, name: &str, text: &str) -> String {
    let path = t.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `(change, version, nr, navn)` of every row, in the order given.
fn rows(v: &Value) -> Vec<(String, i64, i64, String)> {
    v["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("rows: {v}"))
        .iter()
        .map(|r| {
            (
                r["_change"].as_str().unwrap().to_string(),
                r["_version"].as_i64().unwrap(),
                r["nr"].as_i64().unwrap(),
                r["navn"].as_str().map(str::to_string).unwrap_or_default(),
            )
        })
        .collect()
}

fn change(c: &str, v: i64, nr: i64, navn: &str) -> (String, i64, i64, String) {
    (c.to_string(), v, nr, navn.to_string())
}

#[test]
fn appends_replaces_upserts_and_erasures_as_changes_through_the_door() {
    let t = Tverr::new();
    t.org();
    t.ok(&["department", "create", "test/andre", "--name", "Andre"]);
    t.ok(&["user", "create", "test/data/eier", "--role", "steward"]);
    t.ok(&["user", "create", "test/andre/leder", "--role", "steward"]);
    t.ok(&["user", "create", "test/andre/leser", "--role", "employee"]);
    t.ok(&["legal-basis", "create", "test/lov", "--gdpr", "6(1)(e)", "--hjemmel", "kommuneloven § 2-1"]);
    t.ok(&["purpose", "create", "test/oppfolging", "--name", "Oppfølging", "--legal-basis", "lov"]);
    t.ok(&["purpose", "create", "test/forvaltning", "--name", "Forvaltning", "--legal-basis", "lov", "--department", "data"]);
    let v0 = write(&t, "v0.csv", "nr;fodselsnummer;navn\n1;17858012392;Åse Ødegård\n2;01817545781;Bjørn Ærø\n3;17858012392;Åse igjen\n");
    t.create("test/folk", std::path::Path::new(&v0), &["--subject", "fodselsnummer=person", "--category", "navn=personal"]);
    // 1: append.
    let v1 = write(&t, "v1.csv", "nr;fodselsnummer;navn\n4;01817545781;Kari Nordmann\n");
    t.ok(&["ingest", "test/folk", &v1]);
    // 2: upsert by nr: 2 changes, 5 is new, 1 is sent unchanged.
    let v2 = write(&t, "v2.csv", "nr;fodselsnummer;navn\n1;17858012392;Åse Ødegård\n2;01817545781;Bjørn Ærø Berg\n5;17858012392;Ola\n");
    t.ok(&["ingest", "test/folk", &v2, "--mode", "upsert", "--key", "nr"]);
    // 3: replace, keeping 1 and 2 as they are.
    let v3 = write(&t, "v3.csv", "nr;fodselsnummer;navn\n1;17858012392;Åse Ødegård\n2;01817545781;Bjørn Ærø Berg\n6;01817545781;Nils\n");
    t.ok(&["ingest", "test/folk", &v3, "--mode", "replace"]);
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
        "test/folk",
        "--columns",
        "nr,fodselsnummer,navn",
        "--mask",
        "navn=partial",
        "--filter",
        "nr <> 5",
        "--purpose",
        "oppfolging",
    ]);
    t.approve_requested("eier");

    let server = start(&t);
    let port = server.1;
    let eier = token(&t, "eier");
    let leser = token(&t, "leser");
    let feed =
        |tok: &str, purpose: Option<&str>, q: &str| get_as(port, &format!("/api/v1/datasets/test/folk/changes?{q}"), Some(tok), purpose);

    // The owner, from version 0 to the latest.
    let r = feed(&eier, Some("forvaltning"), "from_version=0");
    assert_eq!(r.status, 200, "{}", r.text());
    let all = r.json();
    assert_eq!(all["to_version"], 3);
    let mut sorted = rows(&all);
    sorted.sort_by(|a, b| (a.1, &a.0, a.2).cmp(&(b.1, &b.0, b.2)));
    assert_eq!(
        sorted,
        vec![
            change("insert", 1, 4, "Kari Nordmann"),
            change("delete", 2, 2, "Bjørn Ærø"),
            change("insert", 2, 2, "Bjørn Ærø Berg"),
            change("insert", 2, 5, "Ola"),
            change("delete", 3, 3, "Åse igjen"),
            change("delete", 3, 4, "Kari Nordmann"),
            change("delete", 3, 5, "Ola"),
            change("insert", 3, 6, "Nils"),
        ]
    );
    // Versions come in order, and within one, deletions first.
    let order: Vec<(i64, String)> = rows(&all).into_iter().map(|r| (r.1, r.0)).collect();
    let mut expected = order.clone();
    expected.sort();
    assert_eq!(order, expected);
    // One version at a time.
    let one = feed(&eier, Some("forvaltning"), "from_version=1&to_version=2").json();
    assert_eq!(rows(&one).len(), 3);
    assert!(rows(&one).iter().all(|r| r.1 == 2));

    // Another department's employee, under the agreement: the agreement's mask and filter apply.
    let r = feed(&leser, Some("oppfolging"), "from_version=0");
    assert_eq!(r.status, 200, "{}", r.text());
    let masked = rows(&r.json());
    assert!(masked.iter().all(|r| r.2 != 5), "the row filter holds: {masked:?}");
    assert!(masked.iter().all(|r| !r.3.contains("Nordmann") && !r.3.contains("Berg")), "the mask holds: {masked:?}");
    // Case 2's upsert changed only its name, which the reader sees masked the same before and
    // after: to them it is no change, so its pair is not there (it would tell them the hidden
    // value changed, and when).
    assert!(masked.iter().all(|r| r.2 != 2), "{masked:?}");
    assert_eq!(masked.len(), 4, "{masked:?}");
    // Without a purpose, for another purpose, or without a credential: refused like a read.
    assert_eq!(feed(&leser, None, "from_version=0").status, 403);
    assert_eq!(feed(&leser, Some("forvaltning"), "from_version=0").status, 403);
    assert_eq!(get_as(port, "/api/v1/datasets/test/folk/changes?from_version=0", None, None).status, 404);
    assert_eq!(get_as(port, "/api/v1/datasets/test/finnes-ikke/changes?from_version=0", Some(&leser), Some("oppfolging")).status, 404);
    // Bad versions are the caller's error, located by parameter.
    for (q, needle) in [
        ("from_version=3", "from_version"),
        ("from_version=0&to_version=9", "to_version"),
        ("from_version=-1", "from_version"),
        ("", "from_version"),
        ("from_version=x", "from_version"),
        ("from_version=0&sql=1", "sql"),
    ] {
        let r = feed(&eier, Some("forvaltning"), q);
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert!(r.text().contains(needle), "{q}: {}", r.text());
    }
    // Every format of a read.
    let csv = feed(&eier, Some("forvaltning"), "from_version=2&format=csv");
    assert_eq!(csv.status, 200);
    assert!(csv.text().starts_with("nr,fodselsnummer,navn,_change,_version"), "{}", csv.text());
    assert_eq!(csv.text().lines().count(), 5);
    assert_eq!(feed(&eier, Some("forvaltning"), "from_version=2&format=parquet").status, 200);
    assert_eq!(feed(&eier, Some("forvaltning"), "from_version=2&format=geojson").status, 400);

    // The reads are in the access log, and the people of the changed rows are named.
    let log = t.ok(&["audit", "search", "--subject", "01817545781"]);
    assert!(log.contains("\"channel\":\"http-changes\""), "{log}");

    // 4: an erasure. Its rows are gone for good: the feed starts after it.
    drop(server);
    t.ok(&["erase", "person", "17858012392", "--dataset", "test/folk"]);
    let server = start(&t);
    let port = server.1;
    let r = get_as(port, "/api/v1/datasets/test/folk/changes?from_version=0", Some(&eier), Some("forvaltning"));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("erasure"), "{}", r.text());
    assert!(!r.text().contains("Åse"), "{}", r.text());
}

/// An upsert that replaces a few rows of a large file marks them deleted (a deletion vector)
/// and leaves the file alone; the feed shows exactly the rows marked, also when a later upsert
/// marks more rows of the same file, and when it marks a row of a file an upsert added.
#[test]
fn rows_an_upsert_marks_deleted_are_its_changes() {
    let t = Tverr::new();
    t.org();
    t.ok(&["user", "create", "test/data/eier", "--role", "steward"]);
    t.ok(&["legal-basis", "create", "test/lov", "--gdpr", "6(1)(e)", "--hjemmel", "kommuneloven § 2-1"]);
    t.ok(&["purpose", "create", "test/forvaltning", "--name", "Forvaltning", "--legal-basis", "lov", "--department", "data"]);
    let mut v0 = String::from("nr;fodselsnummer;navn\n");
    for nr in 1..=10 {
        v0.push_str(&format!("{nr};17858012392;Navn {nr}\n"));
    }
    let v0 = write(&t, "v0.csv", &v0);
    t.create("test/mange", std::path::Path::new(&v0), &["--subject", "fodselsnummer=person"]);
    let v1 = write(&t, "v1.csv", "nr;fodselsnummer;navn\n3;17858012392;Tre\n11;17858012392;Elleve\n");
    assert!(t.ok(&["ingest", "test/mange", &v1, "--mode", "upsert", "--key", "nr"]).contains("1 rows removed"));
    let v2 = write(&t, "v2.csv", "nr;fodselsnummer;navn\n3;17858012392;Tre igjen\n4;17858012392;Fire\n");
    assert!(t.ok(&["ingest", "test/mange", &v2, "--mode", "upsert", "--key", "nr"]).contains("2 rows removed"));
    let log = |v: u32| std::fs::read_to_string(t.lake().join(format!("test/mange/_delta_log/{v:020}.json"))).unwrap();
    assert!(log(1).contains("\"deletionVector\":{"), "version 1 marks a row: {}", log(1));
    assert!(log(1).contains("deletionVectors"), "and the table's protocol allows it: {}", log(1));
    let parquet = std::fs::read_dir(t.lake().join("test/mange"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".parquet"));
    assert_eq!(parquet.count(), 3, "no file was rewritten: the first, and one per upsert");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.mange"), "n\n11\n");
    assert_eq!(t.sql_csv("SELECT navn FROM test.mange WHERE nr IN (3, 4) ORDER BY nr"), "navn\nTre igjen\nFire\n");
    let v1_rows = t.ok(&["export", "test/mange", "--format", "csv", "--version", "1", "--where", "nr IN (3, 4, 11)"]);
    let mut names: Vec<&str> = v1_rows.lines().skip(1).map(|l| l.rsplit(',').next().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Elleve", "Navn 4", "Tre"], "version 1 as it was: {v1_rows}");

    let server = start(&t);
    let eier = token(&t, "eier");
    let feed = |q: &str| get_as(server.1, &format!("/api/v1/datasets/test/mange/changes?{q}"), Some(&eier), Some("forvaltning"));
    let r = feed("from_version=0");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut all = rows(&r.json());
    all.sort_by(|a, b| (a.1, &a.0, a.2).cmp(&(b.1, &b.0, b.2)));
    assert_eq!(
        all,
        vec![
            change("delete", 1, 3, "Navn 3"),
            change("insert", 1, 3, "Tre"),
            change("insert", 1, 11, "Elleve"),
            change("delete", 2, 3, "Tre"),
            change("delete", 2, 4, "Navn 4"),
            change("insert", 2, 3, "Tre igjen"),
            change("insert", 2, 4, "Fire"),
        ]
    );
}

/// A range that ends before a later `--evolve` is given in today's columns (the later ones
/// null): the grant names today's columns.
#[test]
fn changes_before_a_later_evolve_come_with_todays_columns() {
    let t = Tverr::new();
    t.org();
    let v0 = write(&t, "v0.csv", "nr;navn\n1;En\n");
    t.ok(&["ingest", "test/vokser", &v0, "--create", "--department", "data", "--title", "Vokser", "--classification", "open"]);
    let v1 = write(&t, "v1.csv", "nr;navn;sted\n2;To;Hamar\n");
    t.ok(&["ingest", "test/vokser", &v1, "--evolve"]);
    let v2 = write(&t, "v2.csv", "nr;navn;sted;merknad\n3;Tre;Løten;ny\n");
    t.ok(&["ingest", "test/vokser", &v2, "--evolve"]);
    let server = start(&t);
    let r = get_as(server.1, "/api/v1/datasets/test/vokser/changes?from_version=0&to_version=1", None, None);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(rows(&v), vec![change("insert", 1, 2, "To")]);
    assert!(v["rows"][0]["merknad"].is_null(), "{v}");
    assert_eq!(v["rows"][0]["sted"], "Hamar");
    let last = get_as(server.1, "/api/v1/datasets/test/vokser/changes?from_version=2", None, None);
    assert_eq!(last.status, 400);
    assert!(last.text().contains("version 2 is the latest"), "{}", last.text());
}
