//! The same operations on the real services: a PostgreSQL catalogue and S3 storage (moto).
//! `scripts/test` starts both and sets TVERR_TEST_POSTGRES_URL and TVERR_TEST_S3_ENDPOINT.

mod common;

use std::process::Command;

use common::{Tverr, data_dir, fresh_database};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests with scripts/test, which starts the services"))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000
}

fn exercise(t: &Tverr) {
    t.org();
    let people = data_dir().join("ingest/people.csv");
    t.create("test/people", &people, &["--subject", "fodselsnummer=person", "--category", "navn=personal"]);
    let more = t.dir.path().join("more.csv");
    std::fs::write(&more, "fodselsnummer;navn;fodt;belop;aktiv\n03891256786;Kari;03.09.2012;5;ja\n").unwrap();
    t.ok(&["ingest", "test/people", more.to_str().unwrap()]);
    let (code, _) = t.fail(&["ingest", "test/people", data_dir().join("ingest/bad/bad_date.csv").to_str().unwrap()]);
    assert_eq!(code, 65);
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.people"), "n\n3\n");
    assert_eq!(t.ok(&["export", "test/people", "--format", "csv", "--version", "0"]).lines().count(), 3);
    let history: serde_json::Value = serde_json::from_str(&t.ok(&["history", "test/people", "--json"])).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 2);
    let show: serde_json::Value = serde_json::from_str(&t.ok(&["dataset", "show", "test/people", "--json"])).unwrap();
    assert_eq!(show["dataset"]["classification"], "internal");
    assert_eq!(show["columns"][1]["category"], "personal");
    let (_, err) = t.fail(&["org", "create", "test", "--name", "X", "--orgnr", "970540008"]);
    assert!(err.contains("already exists"), "{err}");
    // An upsert marks the row it replaces with a deletion vector (written beside the data, in
    // S3 too); the index (on PostgreSQL too) forgets the old row, the earlier version keeps it.
    let up = t.dir.path().join("up.csv");
    std::fs::write(&up, "fodselsnummer;navn;fodt;belop;aktiv\n17858012392;Åse Ny;17.05.1980;99;nei\n").unwrap();
    assert!(
        t.ok(&["ingest", "test/people", up.to_str().unwrap(), "--mode", "upsert", "--key", "fodselsnummer"]).contains("1 rows removed")
    );
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.people"), "n\n3\n");
    assert_eq!(t.sql_csv("SELECT navn FROM test.people WHERE fodselsnummer = '17858012392'"), "navn\nÅse Ny\n");
    let found = t.ok(&["lookup", "person", "17858012392", "--json"]);
    assert!(found.contains("Åse Ny") && !found.contains("Ødegård"), "{found}");
    assert!(t.ok(&["export", "test/people", "--format", "csv", "--version", "1"]).contains("Ødegård"));
}

#[test]
fn postgresql_catalogue() {
    let url = fresh_database();
    let t = Tverr::with_env(&[("TVERR_CATALOG", &url)]);
    exercise(&t);
    assert!(!t.data().join("catalog.db").exists(), "the SQLite file must not be used");
    let out = Command::new("psql")
        .arg(&url)
        .args(["-tAc", "SELECT version, mode, rows_written FROM dataset_versions ORDER BY version"])
        .output()
        .expect("psql");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0|create|2\n1|append|1\n2|upsert|1\n");
    let marked = Command::new("psql").arg(&url).args(["-tAc", "SELECT count(*) FROM subject_deleted"]).output().expect("psql");
    assert_eq!(String::from_utf8_lossy(&marked.stdout), "1\n", "the replaced row is listed as deleted in the index");
}

#[test]
fn every_change_to_what_decisions_read_moves_the_generation_on_postgresql() {
    let url = fresh_database();
    let t = Tverr::with_env(&[("TVERR_CATALOG", &url)]);
    t.ok(&["demo", "--persons", "300"]);
    common::tokens_for_the_generation_test(&t);
    let psql = |sql: &str| {
        let out = Command::new("psql").arg(&url).args(["-tAc", sql]).output().expect("psql");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    common::every_change_moves_the_generation_on(&psql, &|table| format!("ctid IN (SELECT ctid FROM {table} LIMIT 1)"));
}

#[test]
fn policy_layer_on_postgresql() {
    let url = fresh_database();
    let t = Tverr::with_env(&[("TVERR_CATALOG", &url)]);
    t.ok(&["demo", "--persons", "300"]);
    let n = t.ok(&[
        "sql",
        "--as",
        "ola",
        "--purpose",
        "byggesaksbehandling",
        "--format",
        "csv",
        "SELECT count(DISTINCT fodselsnummer) AS n FROM hamar.innbyggere",
    ]);
    // Everyone but the protected persons, whom byggesak's agreement does not cover: protection
    // by person works on PostgreSQL too.
    let unprotected = t.ok(&[
        "sql",
        "--purpose",
        "tilsyn",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert'",
    ]);
    assert_eq!(n, unprotected);
    let unprotected = unprotected.lines().nth(1).unwrap().to_string();
    assert!(unprotected.parse::<u32>().unwrap() < 300);
    // The access log on PostgreSQL: the read names every one of them, and the chain and the
    // subject index verify.
    let psql = |sql: &str| {
        let out = Command::new("psql").arg(&url).args(["-tAc", sql]).output().expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // (The operator's count above read the same people.)
    assert_eq!(psql("SELECT count(DISTINCT subject) FROM audit_subjects"), unprotected);
    let someone = t.ok(&[
        "sql",
        "--as",
        "siri",
        "--purpose",
        "folkeregisterforvaltning",
        "--format",
        "csv",
        "SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert' LIMIT 1",
    ]);
    let someone = someone.lines().nth(1).unwrap();
    let found = t.ok(&["audit", "search", "--subject", someone]);
    assert!(found.contains("\"username\":\"ola\"") && found.contains("\"username\":\"siri\""), "{found}");
    t.ok(&["audit", "verify"]);
    let (code, _) = t.fail(&["sql", "--as", "lise", "--purpose", "vannforsyning", "SELECT 1 FROM hamar.innbyggere"]);
    assert_eq!(code, 1);
    t.ok(&["agreement", "revoke", "1", "--as", "frode"]);
    let (code, _) = t.fail(&["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "SELECT 1 FROM hamar.innbyggere"]);
    assert_eq!(code, 1);
    let token = t.ok(&["token", "create", "--user", "ola"]);
    assert!(token.trim().starts_with("tverr_") && token.lines().count() == 1, "{token}");
    let out = Command::new("psql")
        .arg(&url)
        .args(["-tAc", "SELECT state, count(*) FROM agreement_events WHERE agreement = 1 GROUP BY state ORDER BY state"])
        .output()
        .expect("psql");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "approved|1\nrequested|1\nrevoked|1\n");
}

/// A Tverr whose tables are in a fresh prefix of the test S3 server's bucket.
fn on_s3() -> Tverr {
    let endpoint = env("TVERR_TEST_S3_ENDPOINT");
    let bucket = env("TVERR_TEST_S3_BUCKET");
    let storage = format!("s3://{bucket}/run-{}-{}", std::process::id(), rand_suffix());
    Tverr::with_env(&[
        ("TVERR_STORAGE", &storage),
        ("AWS_ENDPOINT_URL", &endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ALLOW_HTTP", "true"),
    ])
}

#[test]
fn s3_storage() {
    let t = on_s3();
    exercise(&t);
    assert!(!t.lake().join("test").exists(), "the local lake must not be used");
}

/// Builds the same demo in `other` and in `reference` and asserts that a guardian's look-up
/// (the guardian's own rows and their children one hop away) gives the same answer in both.
fn assert_same_lookup(other: &Tverr, reference: &Tverr) {
    other.ok(&["demo", "--persons", "300"]);
    reference.ok(&["demo", "--persons", "300"]);
    let guardian = reference.ok(&["sql", "--format", "csv", "SELECT foresatt_fnr FROM hamar.barnehageplasser ORDER BY 1 LIMIT 1"]);
    let guardian = guardian.lines().nth(1).expect("a guardian").to_string();
    let look = |t: &Tverr| -> serde_json::Value {
        serde_json::from_str(&t.ok(&["lookup", "person", &guardian, "--as", "tove", "--purpose", "innbyggerservice", "--json"])).unwrap()
    };
    let (found, expected) = (look(other), look(reference));
    assert!(!expected["organizations"].as_array().unwrap().is_empty(), "{expected}");
    assert!(!expected["related"].as_array().unwrap().is_empty(), "a guardian's children are related: {expected}");
    assert_eq!(found, expected);
}

/// A look-up on tables in S3 (pages fetched by byte ranges through the object store) finds
/// what the same look-up finds on local files (read in place with `pread`).
#[test]
fn lookups_on_s3_match_local_files() {
    let s3 = on_s3();
    assert_same_lookup(&s3, &Tverr::new());
    assert!(!s3.lake().join("hamar").exists(), "the local lake must not be used");
}

/// A look-up on a PostgreSQL catalogue (the subject index read through sqlx) finds what the same
/// look-up finds on SQLite (read on the calling thread): the same demo, the same answer.
#[test]
fn lookups_on_postgresql_match_sqlite() {
    let url = fresh_database();
    assert_same_lookup(&Tverr::with_env(&[("TVERR_CATALOG", &url)]), &Tverr::new());
}
