//! The access log through the real binary: reads of non-open data leave intent and completion
//! records before and after the rows; `audit verify` checks the chain; a copy of the database
//! rolled back to an earlier state is caught with a checkpoint kept elsewhere; and when the log
//! cannot be written, nothing is released.

mod common;

use std::process::Command;

use common::{Tverr, sqlite};

fn copy_db(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let src = from.join(name);
        let _ = std::fs::remove_file(to.join(name));
        if src.exists() {
            std::fs::copy(&src, to.join(name)).unwrap();
        }
    }
}

#[test]
fn reads_are_logged_verified_and_refused_when_the_log_is_down() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "200"]);
    let db = t.data().join("catalog.db");
    let count = |kind: &str| sqlite(&db, &format!("SELECT count(*) FROM audit_log WHERE kind = '{kind}'"));
    assert_eq!(count("access"), "[(0,)]");

    // A case worker's read: an intent record naming who, why, what and how, then a completion.
    t.ok(&["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "SELECT fornavn, fodselsnummer FROM hamar.innbyggere LIMIT 7"]);
    let intent = sqlite(&db, "SELECT payload FROM audit_log WHERE kind = 'access' ORDER BY seq DESC LIMIT 1");
    for fragment in [
        "\"channel\":\"cli-sql\"",
        "\"username\":\"ola\"",
        "\"purpose\":\"byggesaksbehandling\"",
        "\"dataset\":\"hamar/innbyggere\"",
        "\"mask\":\"hmac\"",
        "\"kind\":\"agreement\"",
        "\"version\":0",
    ] {
        assert!(intent.contains(fragment), "{fragment} not in {intent}");
    }
    let completion = sqlite(&db, "SELECT payload FROM audit_log WHERE kind = 'completion' ORDER BY seq DESC LIMIT 1");
    assert!(completion.contains("\"rows\":7") && completion.contains("\"status\":\"ok\""), "{completion}");
    // Open data is not logged; refusals are.
    t.ok(&["sql", "--as", "ola", "SELECT count(*) FROM hamar.barnehager"]);
    assert_eq!(count("access"), "[(1,)]");
    t.fail(&["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "SELECT * FROM hamar.hjemmetjenester"]);
    assert_eq!(count("refusal"), "[(1,)]");
    // Exports by the operator are logged like anyone's.
    t.ok(&["export", "hamar/byggesaker", "--format", "csv"]);
    assert!(sqlite(&db, "SELECT payload FROM audit_log WHERE kind = 'access' ORDER BY seq DESC LIMIT 1").contains("\"kind\":\"operator\""));

    // The demo's own writes are in the log too: an intent and an outcome per dataset.
    let demo_writes: usize = sqlite(&db, "SELECT count(*) FROM audit_log WHERE kind IN ('write-intent', 'ingest')")
        .trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap();
    assert!(demo_writes >= 20 && demo_writes.is_multiple_of(2), "{demo_writes}");
    let out = t.ok(&["audit", "verify"]);
    assert!(out.contains(&format!("{} entries", 5 + demo_writes)), "{out}");

    // Roll the whole database back to an earlier copy: only a checkpoint kept elsewhere tells.
    let earlier = t.dir.path().join("earlier");
    copy_db(&t.data(), &earlier);
    t.ok(&["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "SELECT count(*) FROM hamar.innbyggere"]);
    let witness = t.dir.path().join("witness.json");
    t.ok(&["audit", "checkpoint", "--out", witness.to_str().unwrap()]);
    t.ok(&["audit", "verify", "--checkpoint", witness.to_str().unwrap()]);
    copy_db(&earlier, &t.data());
    // The checkpoints published to the witness file (outside the catalogue) catch it by
    // default, and so does the one exported by hand.
    let (code, err) = t.fail(&["audit", "verify"]);
    assert_eq!(code, 1);
    assert!(err.contains("truncated or rolled back"), "{err}");
    let (code, err) = t.fail(&["audit", "verify", "--checkpoint", witness.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("truncated or rolled back"), "{err}");

    // Edit an entry: verify fails and names it.
    let first_read = sqlite(&db, "SELECT min(seq) FROM audit_log WHERE kind = 'access'");
    let first_read = first_read.trim_matches(|c: char| !c.is_ascii_digit());
    sqlite(&db, &format!("UPDATE audit_log SET payload = replace(payload, 'ola', 'per') WHERE seq = {first_read}"));
    let (code, err) = t.fail(&["audit", "verify"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("entry {first_read} has been changed")), "{err}");

    // Fault injected into the store: the log refuses writes. Non-open reads are refused and
    // release nothing; open data still flows.
    sqlite(&db, "CREATE TRIGGER broken BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END");
    let out = t
        .command()
        .args(["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "--format", "csv", "SELECT fornavn FROM hamar.innbyggere"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing may be released");
    assert!(String::from_utf8_lossy(&out.stderr).contains("the access log cannot be written"));
    t.ok(&["sql", "--as", "ola", "SELECT count(*) FROM hamar.barnehager"]);
}

#[test]
fn auditors_read_their_organisations_log_and_are_logged_reading_it() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "200"]);
    let db = t.data().join("catalog.db");
    // Agreement changes are logged, with who made them.
    t.ok(&["agreement", "revoke", "3", "--as", "lise", "--note", "slutt"]);
    let change = sqlite(&db, "SELECT payload FROM audit_log WHERE kind = 'agreement' ORDER BY seq DESC LIMIT 1");
    assert!(
        change.contains("\"agreement\":3") && change.contains("\"state\":\"revoked\"") && change.contains("\"username\":\"lise\""),
        "{change}"
    );
    t.ok(&["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "SELECT count(*) FROM hamar.innbyggere"]);
    t.ok(&["sql", "--as", "lise", "--purpose", "vannforsyning", "SELECT count(*) FROM hias.vannmalere"]);

    let revisor = t.ok(&["token", "create", "--user", "revisor"]).trim().to_string();
    let ola = t.ok(&["token", "create", "--user", "ola"]).trim().to_string();
    let server = common::start(&t);
    let get = |token: &str, path: &str| common::request(server.1, "GET", path, &[("Authorization", &format!("Bearer {token}"))], None);

    let (status, _, body) = get(&revisor, "/api/v1/audit/verify");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"problem\":null"), "{body}");
    let (status, _, body) = get(&revisor, "/api/v1/audit?user=ola");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["kind"] == "access"), "{body}");
    assert!(entries.iter().all(|e| e["record"]["principal"]["username"] == "ola"));
    // Hamar's auditor does not see Hias' reads of Hias' data.
    let (_, _, body) = get(&revisor, "/api/v1/audit?dataset=hias/vannmalere");
    assert!(!body.contains("\"username\":\"lise\""), "{body}");
    // An employee reads no one's entries; anonymous callers must sign in.
    assert_eq!(get(&ola, "/api/v1/audit?user=ola").0, 403);
    assert_eq!(common::get(server.1, "/api/v1/audit/verify").0, 401);
    drop(server);
    // Token use and the auditor's own reads are in the log.
    assert_ne!(sqlite(&db, "SELECT count(*) FROM audit_log WHERE kind = 'authentication'"), "[(0,)]");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM audit_log WHERE kind = 'audit-read'"), "[(3,)]");
    let out = t.ok(&["audit", "search", "--user", "lise"]);
    assert!(out.lines().count() >= 2 && out.contains("\"username\":\"lise\""), "{out}");
    t.ok(&["audit", "verify"]);

    // Retention: sign the head, remove everything before now; what remains still verifies.
    let witness = t.dir.path().join("before-retention.json");
    t.ok(&["audit", "checkpoint", "--out", witness.to_str().unwrap()]);
    t.ok(&["audit", "prune", "--before", "9999-01-01"]);
    t.ok(&["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "SELECT count(*) FROM hamar.innbyggere"]);
    assert!(sqlite(&db, "SELECT min(seq) FROM audit_log") != "[(1,)]");
    t.ok(&["audit", "verify", "--checkpoint", witness.to_str().unwrap()]);
    let (code, _) = t.fail(&["audit", "prune"]);
    assert_eq!(code, 2, "prune needs --keep-days or --before");
}

#[test]
fn killing_a_large_export_leaves_the_intent_and_a_sound_chain() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "5000"]);
    let db = t.data().join("catalog.db");
    // Nobody reads the export's stdout, so it stalls once the pipe is full, mid-export.
    let mut child = t
        .command()
        .args(["export", "hamar/innbyggere", "--format", "ndjson", "--as", "siri", "--purpose", "folkeregisterforvaltning"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while sqlite(&db, "SELECT count(*) FROM audit_log WHERE kind = 'access'") == "[(0,)]" {
        assert!(std::time::Instant::now() < deadline, "no intent record was written");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the export must still be running (stalled on its output)");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let intent = sqlite(&db, "SELECT payload FROM audit_log WHERE kind = 'access'");
    assert!(intent.contains("\"channel\":\"cli-export\"") && intent.contains("\"username\":\"siri\""), "{intent}");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM audit_log WHERE kind = 'completion'"), "[(0,)]");
    t.ok(&["audit", "verify"]);
}

/// One tampering case from tests/security/audit: the SQL that tampers, and what
/// `tverr audit verify` must then say.
struct TamperCase {
    name: String,
    tamper: String,
    witness: bool,
    contains: String,
}

fn tamper_cases() -> Vec<TamperCase> {
    common::Case::all_in("audit")
        .into_iter()
        .map(|c| TamperCase {
            name: c.name(),
            tamper: c.need("tamper").to_string(),
            witness: c.get("witness") == Some("yes"),
            contains: c.need("contains").to_string(),
        })
        .collect()
}

#[test]
fn every_tampering_case_is_caught() {
    let cases = tamper_cases();
    assert!(cases.len() >= 10, "only {} cases", cases.len());
    // One log with reads that name people, checkpoints every 3 entries, and a witness kept
    // outside the data directory.
    let base = Tverr::with_env(&[("TVERR_AUDIT_CHECKPOINT_EVERY", "3")]);
    base.ok(&["demo", "--persons", "200"]);
    base.ok(&["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "SELECT fornavn FROM hamar.innbyggere LIMIT 5"]);
    base.ok(&["sql", "--as", "siri", "--purpose", "folkeregisterforvaltning", "SELECT count(*) FROM hamar.innbyggere"]);
    base.ok(&["export", "hamar/byggesaker", "--format", "csv", "--as", "ola", "--purpose", "byggesaksbehandling"]);
    base.ok(&["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "SELECT etternavn FROM hamar.innbyggere LIMIT 2"]);
    let witness = base.dir.path().join("witness.json");
    base.ok(&["audit", "checkpoint", "--out", witness.to_str().unwrap()]);
    base.ok(&["audit", "verify", "--checkpoint", witness.to_str().unwrap()]);

    let mut failures = Vec::new();
    for case in &cases {
        // Verified with the cadence the log was written with; the copy holds its witness file.
        let t = Tverr::with_env(&[("TVERR_AUDIT_CHECKPOINT_EVERY", "3")]);
        let status = Command::new("cp").arg("-a").arg(base.data()).arg(t.data()).status().unwrap();
        assert!(status.success());
        let out = Command::new("python3")
            .args(["-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()"])
            .arg(t.data().join("catalog.db"))
            .arg(&case.tamper)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", case.name, String::from_utf8_lossy(&out.stderr));
        let mut args = vec!["audit", "verify"];
        if case.witness {
            args.extend(["--checkpoint", witness.to_str().unwrap()]);
        }
        let run = t.run(&args);
        let err = String::from_utf8_lossy(&run.stderr);
        if run.status.code() != Some(1) || !err.contains(&case.contains) {
            failures.push(format!("{}: exit {:?}, expected 1 and {:?}: {err}", case.name, run.status.code(), case.contains));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_client_that_goes_away_mid_stream_leaves_a_completion() {
    use std::io::{Read, Write};
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let db = t.data().join("catalog.db");
    let siri = t.ok(&["token", "create", "--user", "siri"]).trim().to_string();
    let server = common::start(&t);
    // Four million rows: far more than the socket buffers hold.
    let body =
        r#"{"sql": "SELECT a.fornavn, a.etternavn, a.adresse, b.fornavn AS f2 FROM hamar.innbyggere a CROSS JOIN hamar.innbyggere b"}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.1)).unwrap();
    write!(
        s,
        "POST /api/v1/sql HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {siri}\r\nTverr-Purpose: folkeregisterforvaltning\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..]).unwrap();
        assert!(n > 0, "the response ended early");
        got += n;
    }
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    drop(s);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let found = sqlite(&db, "SELECT payload FROM audit_log WHERE kind = 'completion'");
        if found.contains("\"status\":\"cancelled\"") {
            let rows: u64 = found.split("\"rows\":").nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
            assert!(rows < 4_000_000, "{found}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no completion after the client left: {found}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(server);
    t.ok(&["audit", "verify"]);
}

#[test]
fn logins_are_logged_whatever_their_outcome() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "200"]);
    let db = t.data().join("catalog.db");
    let server = common::start(&t);
    let login = |body: &str| common::request(server.1, "POST", "/api/v1/login", &[], Some(body));
    let (status, _, body) = login(r#"{"username": "ola", "password": "hamar-demo-2026"}"#);
    assert_eq!(status, 201, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"].as_str().unwrap().to_string();
    let (status, _, body) = common::request(
        server.1,
        "POST",
        "/api/v1/sql",
        &[("Authorization", &format!("Bearer {token}")), ("Tverr-Purpose", "byggesaksbehandling")],
        Some(r#"{"sql": "SELECT count(*) AS n FROM hamar.byggesaker"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = login(r#"{"username": "ola", "password": "feil passord"}"#);
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = login(r#"{"username": "ola"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line 1, column"), "{body}");
    drop(server);
    let logins = sqlite(&db, "SELECT payload FROM audit_log WHERE kind = 'login' ORDER BY seq");
    assert!(logins.contains("\"outcome\":\"ok\"") && logins.contains("\"username\":\"ola\""), "{logins}");
    assert!(logins.contains("\"outcome\":\"refused\""), "{logins}");
    assert!(!logins.contains("feil passord") && !logins.contains("hamar-demo-2026"), "passwords are never logged");
    t.ok(&["audit", "verify"]);
}

#[test]
fn every_write_is_logged_before_it_is_made_whatever_the_channel() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "200"]);
    let db = t.data().join("catalog.db");
    let file = t.data().join("kull.csv");
    std::fs::write(&file, "navn;alder\nAnne;3\nBo;4\n").unwrap();
    let file = file.to_str().unwrap();
    let kinds = |dataset: &str| -> Vec<String> {
        t.ok(&["audit", "search", "--dataset", dataset])
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].as_str().unwrap().to_string())
            .filter(|k| k != "audit-read" && k != "access")
            .collect()
    };

    // `tverr ingest`: the intent, then the outcome.
    t.ok(&["ingest", "hamar/kull", file, "--create", "--department", "oppvekst", "--title", "Kull", "--classification", "internal"]);
    assert_eq!(kinds("hamar/kull"), ["write-intent", "ingest"]);

    // `tverr erase`.
    let guardian =
        t.ok(&["sql", "--purpose", "tilsyn", "--format", "csv", "SELECT foresatt_fnr FROM hamar.barnehageplasser ORDER BY 1 LIMIT 1"]);
    let guardian = guardian.lines().nth(1).unwrap().to_string();
    t.ok(&["erase", "person", &guardian, "--dataset", "hamar/barnehageplasser"]);
    // The demo wrote the dataset first, through the same door.
    assert_eq!(kinds("hamar/barnehageplasser"), ["write-intent", "ingest", "write-intent", "erasure"]);
    let erased = t.ok(&["audit", "search", "--dataset", "hamar/barnehageplasser"]);
    assert!(!erased.contains(&guardian), "the log names the person by HMAC only: {erased}");

    // An agreement change over the API: approving the requested one (folkeregister → oppvekst).
    let server = common::start(&t);
    let steward = common::token(&t, "frode");
    let auth = format!("Bearer {steward}");
    let r = common::send(server.1, "POST", "/api/v1/agreements/7/approve", &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let logged = kinds("hamar/innbyggere");
    assert!(logged.ends_with(&["agreement-intent".to_string(), "agreement".to_string()]), "{logged:?}");

    // Administrative changes on the command line: each is in the log before it is made, the
    // citizen's number only as its keyed digest.
    let admin_kinds = || sqlite(&db, "SELECT kind FROM audit_log WHERE kind LIKE '%-change' AND kind != 'category-change' ORDER BY seq");
    t.ok(&["org", "create", "loten", "--name", "Løten kommune", "--orgnr", "971028300", "--kommunenummer", "3412"]);
    t.ok(&["department", "create", "loten/skole", "--name", "Skole"]);
    t.ok(&["user", "create", "loten/skole/ingrid", "--role", "employee"]);
    t.ok(&["token", "create", "--user", "ingrid"]);
    t.ok(&["token", "create", "--citizen", &guardian]);
    t.ok(&["legal-basis", "create", "loten/opplaringsloven", "--gdpr", "6(1)(e)", "--hjemmel", "opplæringslova § 1-1"]);
    t.ok(&["purpose", "create", "loten/skoledrift", "--name", "Skoledrift", "--legal-basis", "opplaringsloven"]);
    assert_eq!(
        admin_kinds(),
        // The first: frode's token for the API call above.
        "[('token-change',), ('organisation-change',), ('organisation-change',), ('user-change',), ('token-change',), ('token-change',), \
         ('legal-basis-change',), ('purpose-change',)]"
    );
    let tokens = sqlite(&db, "SELECT payload FROM audit_log WHERE kind = 'token-change'");
    assert!(!tokens.contains(&guardian) && tokens.contains("\"citizen\""), "{tokens}");

    // A log that cannot be written refuses every write, and nothing changes.
    sqlite(&db, "CREATE TRIGGER broken BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END");
    let (_, err) = t.fail(&["user", "create", "loten/skole/torstein", "--role", "employee"]);
    assert!(err.contains("the access log cannot be written"), "{err}");
    let (_, err) = t.fail(&["department", "create", "loten/barnehage", "--name", "Barnehage"]);
    assert!(err.contains("the access log cannot be written"), "{err}");
    let (_, err) = t.fail(&["ingest", "hamar/kull", file]);
    assert!(err.contains("the access log cannot be written"), "{err}");
    let (_, err) = t.fail(&["erase", "person", &guardian, "--dataset", "hamar/innbyggere"]);
    assert!(err.contains("the access log cannot be written"), "{err}");
    let r = common::send(server.1, "POST", "/api/v1/agreements/7/revoke", &[("Authorization", &auth)], None);
    assert_eq!(r.status, 503, "{}", r.text());
    sqlite(&db, "DROP TRIGGER broken");
    assert!(!t.ok(&["user", "list", "loten"]).contains("torstein"), "the refused user was not created");
    assert!(!t.ok(&["department", "list", "loten"]).contains("barnehage"), "nor the department");
    assert_eq!(t.ok(&["history", "hamar/kull"]).lines().count(), 2, "a heading and one version: no second");
    let still = t.ok(&[
        "sql",
        "--purpose",
        "tilsyn",
        "--format",
        "csv",
        &format!("SELECT count(*) FROM hamar.innbyggere WHERE fodselsnummer = '{guardian}'"),
    ]);
    assert_eq!(still.lines().nth(1), Some("1"), "the person is still in the register");
    let r = common::send(server.1, "GET", "/api/v1/agreements/7", &[("Authorization", &auth)], None);
    assert_eq!(r.json()["state"], "approved", "{}", r.text());
}
