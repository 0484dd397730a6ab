//! The adversarial suite: every case in `tests/security/*.case` runs against one demo
//! municipality through the real `tverr` binary. A case names a principal, a purpose and SQL, and
//! what must happen: an error (with a text and exit code), exact rows, the same rows as the
//! unrestricted operator gets for another query, or output that never contains a secret value.
//!
//! Secret values (`{any_fnr}`, `{soker_fnr}`, …) are looked up by the operator before the cases run, so
//! the cases do not depend on the generator's choices. See `tests/security/README.md`.

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use common::{Case, Tverr};

struct Demo {
    tverr: Tverr,
    fixtures: BTreeMap<String, String>,
}

/// Operator queries whose first value becomes a fixture.
const FIXTURES: &[(&str, &str)] = &[
    ("any_fnr", "SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert' ORDER BY fodselsnummer LIMIT 1"),
    (
        "strengt_fnr",
        "SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'strengt_fortrolig' ORDER BY fodselsnummer LIMIT 1",
    ),
    ("hjemme_fnr", "SELECT fodselsnummer FROM hamar.hjemmetjenester ORDER BY fodselsnummer LIMIT 1"),
    ("hjemme_tjeneste", "SELECT tjeneste FROM hamar.hjemmetjenester ORDER BY fodselsnummer LIMIT 1"),
    ("soker_fnr", "SELECT soker_fnr FROM hamar.byggesaker WHERE soker_fnr IS NOT NULL ORDER BY saksnr LIMIT 1"),
    ("soker_navn", "SELECT soker_navn FROM hamar.byggesaker WHERE soker_navn IS NOT NULL ORDER BY saksnr LIMIT 1"),
    (
        "protected_owner_fnr",
        "SELECT e.eier_fnr FROM hamar.eiendommer e JOIN hamar.innbyggere i ON e.eier_fnr = i.fodselsnummer WHERE i.adressebeskyttelse <> 'ugradert' ORDER BY 1 LIMIT 1",
    ),
    (
        "protected_property",
        "SELECT e.matrikkel FROM hamar.eiendommer e JOIN hamar.innbyggere i ON e.eier_fnr = i.fodselsnummer WHERE i.adressebeskyttelse <> 'ugradert' ORDER BY 1 LIMIT 1",
    ),
    (
        "protected_meter",
        "SELECT v.maler_id FROM hias.vannmalere v JOIN hamar.eiendommer e ON v.matrikkel = e.matrikkel JOIN hamar.innbyggere i ON e.eier_fnr = i.fodselsnummer WHERE i.adressebeskyttelse <> 'ugradert' ORDER BY 1 LIMIT 1",
    ),
];

fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let tverr = Tverr::new();
        tverr.ok(&["demo", "--persons", "2000"]);
        let mut fixtures = BTreeMap::new();
        for (name, sql) in FIXTURES {
            let out = tverr.ok(&["sql", sql, "--format", "csv", "--purpose", "tilsyn"]);
            let value = out.lines().nth(1).unwrap_or_else(|| panic!("fixture {name} found nothing")).to_string();
            fixtures.insert(name.to_string(), value);
        }
        Demo { tverr, fixtures }
    })
}

fn fill(text: &str, fixtures: &BTreeMap<String, String>) -> String {
    let mut out = common::expand_repeats(text);
    for (k, v) in fixtures {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

fn run_case(demo: &Demo, case: &Case) -> Result<(), String> {
    let sql = fill(case.need("sql"), &demo.fixtures);
    let mut args = vec!["sql".to_string(), sql.clone(), "--format".into(), "csv".into()];
    if let Some(who) = case.get("as").filter(|w| *w != "operator") {
        args.extend(["--as".into(), who.to_string()]);
    }
    let mut cmd = demo.tverr.command();
    cmd.env_remove("TVERR_PURPOSE");
    if let Some(p) = case.get("purpose") {
        args.extend(["--purpose".into(), p.to_string()]);
    }
    let out = cmd.args(&args).output().expect("run tverr");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code().unwrap_or(-1);
    let expect = case.need("expect");
    match expect {
        "error" => {
            if out.status.success() {
                return Err(format!("expected an error, got rows:\n{stdout}"));
            }
            let want = fill(case.need("contains"), &demo.fixtures);
            if !stderr.contains(&want) {
                return Err(format!("error should contain {want:?}: {stderr}"));
            }
            if let Some(exit) = case.get("exit")
                && exit != code.to_string()
            {
                return Err(format!("exit code {code}, expected {exit}: {stderr}"));
            }
        }
        "rows" => {
            if !out.status.success() {
                return Err(format!("failed: {stderr}"));
            }
            let want: Vec<String> = case.body.iter().map(|l| fill(l, &demo.fixtures)).collect();
            let got: Vec<&str> = stdout.lines().collect();
            if got != want {
                return Err(format!("rows differ\n got: {got:?}\nwant: {want:?}"));
            }
        }
        "same-as-operator" => {
            if !out.status.success() {
                return Err(format!("failed: {stderr}"));
            }
            let reference = fill(case.need("operator-sql"), &demo.fixtures);
            let reference_out = demo.tverr.run(&["sql", &reference, "--format", "csv", "--purpose", "tilsyn"]);
            if !reference_out.status.success() {
                return Err(format!("the operator query failed: {}", String::from_utf8_lossy(&reference_out.stderr)));
            }
            let want = String::from_utf8_lossy(&reference_out.stdout).into_owned();
            let body = |s: &str| s.lines().skip(1).map(str::to_string).collect::<Vec<_>>();
            if body(&stdout) != body(&want) {
                return Err(format!("rows differ from the operator's {reference:?}\n got: {stdout}\nwant: {want}"));
            }
        }
        "without" => {
            let secret = fill(case.need("secret"), &demo.fixtures);
            assert!(secret.len() >= 4, "{}: a secret must be specific", case.file.display());
            if stdout.contains(&secret) || stderr.contains(&secret) {
                return Err(format!("the output reveals {secret:?}:\n{stdout}{stderr}"));
            }
            if case.get("must-succeed") == Some("yes") && !out.status.success() {
                return Err(format!("failed: {stderr}"));
            }
        }
        other => return Err(format!("unknown expect: {other}")),
    }
    // A read that may have revealed a dataset's people (an error oracle) names them all: its
    // access is recorded as a bulk read of the dataset, which every citizen in it sees.
    if let Some(dataset) = case.get("logged-bulk") {
        let db = demo.tverr.data().join("catalog.db");
        let last = "(SELECT max(seq) FROM audit_log WHERE kind = 'access')";
        let found = common::sqlite(
            &db,
            &format!("SELECT count(*) FROM audit_subjects WHERE subject = 'bulk:{dataset}' AND (seq = {last} OR access = {last})"),
        );
        if found == "[(0,)]" {
            return Err(format!("the access is not recorded as a bulk read of {dataset}"));
        }
    }
    if let Some(reason) = case.get("logged-refusal") {
        let db = demo.tverr.data().join("catalog.db");
        let last = common::sqlite(&db, "SELECT kind, payload FROM audit_log ORDER BY seq DESC LIMIT 1");
        if !(last.contains("'refusal'") && last.contains(&format!("\"reason\":\"{reason}\""))) {
            return Err(format!("the refusal is not the log's last entry with reason {reason}: {last}"));
        }
    }
    // Whatever else happens, error texts never echo a secret fixture.
    for (name, value) in &demo.fixtures {
        if name != "any_fnr" && stderr.contains(value.as_str()) && !sql.contains(value.as_str()) {
            return Err(format!("the error text reveals {name}: {stderr}"));
        }
    }
    Ok(())
}

#[test]
fn adversarial_cases() {
    let files = common::case_files("");
    assert!(files.len() >= 50, "the suite has only {} cases", files.len());
    let demo = demo();
    let mut failures = Vec::new();
    let mut classes = std::collections::BTreeSet::new();
    for f in files {
        let case = Case::parse(f);
        classes.insert(case.need("class").to_string());
        if let Err(e) = run_case(demo, &case) {
            failures.push(format!("{}: {e}", case.file.file_name().unwrap_or_default().to_string_lossy()));
        }
    }
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n\n"));
    // §14 (tokens) is tests/security/tokens, run by oidc.rs.
    for class in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "15", "16", "17"] {
        assert!(classes.contains(class), "no case for SECURITY.md §{class}");
    }
}

#[test]
fn agreements_change_what_the_next_request_sees() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    let ola = |purpose: &str| {
        let mut c = t.command();
        c.env_remove("TVERR_PURPOSE");
        c.args(["sql", "SELECT count(*) AS n FROM hamar.innbyggere", "--format", "csv", "--as", "ola", "--purpose", purpose]);
        c.output().expect("run tverr")
    };
    assert!(ola("byggesaksbehandling").status.success());
    // Only a steward of either side may revoke; the consumer's employee may not.
    let (code, err) = t.fail(&["agreement", "revoke", "1", "--as", "ola"]);
    assert_eq!(code, 77, "{err}");
    let (code, _) = t.fail(&["agreement", "approve", "7", "--as", "kari"]);
    assert_eq!(code, 77, "the consumer's steward cannot approve its own request");
    t.ok(&["agreement", "revoke", "1", "--as", "frode", "--note", "test"]);
    let after = ola("byggesaksbehandling");
    assert_eq!(after.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&after.stderr).contains("no dataset hamar.innbyggere exists that you may read"));
    let show = t.ok(&["agreement", "show", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show).expect("JSON");
    assert_eq!(v["state"], "revoked");
    let events: Vec<&str> = v["events"].as_array().expect("events").iter().map(|e| e["state"].as_str().unwrap_or("")).collect();
    assert_eq!(events, ["requested", "approved", "revoked"]);

    // Approving the pending request opens the dataset to oppvekst for its purpose, at once.
    let kari = || {
        let mut c = t.command();
        c.args(["sql", "SELECT count(*) AS n FROM hamar.innbyggere", "--format", "csv", "--as", "kari", "--purpose", "barnehageopptak"]);
        c.output().expect("run tverr")
    };
    assert_eq!(kari().status.code(), Some(1));
    t.ok(&["agreement", "approve", "7", "--as", "frode"]);
    let out = kari();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Everyone but the protected persons: the agreement does not release fortrolig addresses.
    let unprotected = t.ok(&[
        "sql",
        "--purpose",
        "tilsyn",
        "--format",
        "csv",
        "SELECT count(*) AS n FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert'",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), unprotected);
}

#[test]
fn every_change_to_what_decisions_read_moves_the_generation_on() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    common::tokens_for_the_generation_test(&t);
    let db = t.data().join("catalog.db");
    common::every_change_moves_the_generation_on(&|sql| common::sqlite(&db, sql), &|table| {
        format!("rowid IN (SELECT rowid FROM {table} LIMIT 1)")
    });
}

/// A server keeps what decisions read between requests; a change made by another process (the
/// CLI here) applies to the server's next request all the same.
#[test]
fn a_running_server_applies_policy_changes_made_elsewhere_at_once() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    let server = common::start(&t);
    let port = server.1;
    let tove = common::token(&t, "tove");
    let person = t.ok(&["sql", "--format", "csv", "SELECT fodselsnummer FROM hamar.innbyggere ORDER BY 1 LIMIT 1"]);
    let person = person.lines().nth(1).unwrap().to_string();
    let datasets = || -> Vec<String> {
        let r = common::get_as(port, &format!("/api/v1/subjects/person/{person}"), Some(&tove), Some("innbyggerservice"));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let mut out = Vec::new();
        for o in v["organizations"].as_array().unwrap() {
            for d in o["departments"].as_array().unwrap() {
                out.extend(d["datasets"].as_array().unwrap().iter().map(|d| d["dataset"].as_str().unwrap().to_string()));
            }
        }
        out
    };
    let auth = format!("Bearer {tove}");
    let body = serde_json::json!({"sql": "SELECT count(*) AS n FROM hamar.innbyggere"}).to_string();
    let headers = [("Authorization", auth.as_str()), ("Tverr-Purpose", "innbyggerservice"), ("Content-Type", "application/json")];
    let sql = || common::send(port, "POST", "/api/v1/sql", &headers, Some(body.as_bytes())).status;
    assert!(datasets().contains(&"hamar/innbyggere".to_string()));
    assert_eq!(sql(), 200);
    let list: serde_json::Value = serde_json::from_str(&t.ok(&["agreement", "list", "--json"])).unwrap();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["consumer"]["department"] == "servicetorg"
                && a["state"] == "approved"
                && a["terms"]["datasets"].as_array().unwrap().iter().any(|d| d["dataset"] == "hamar/innbyggere")
        })
        .expect("the desk's agreement on the register")["id"]
        .to_string();
    t.ok(&["agreement", "revoke", &id, "--as", "frode", "--note", "test"]);
    assert!(!datasets().contains(&"hamar/innbyggere".to_string()), "the revoked agreement still applies to look-ups");
    assert_eq!(sql(), 404, "the revoked agreement still applies to SQL");
}

#[test]
fn row_filters_are_checked_when_requested() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "200"]);
    let before = t.ok(&["agreement", "list", "--json"]);
    for (filter, expected) in [
        ("finnes_ikke = 1", "row filter for hamar/innbyggere"),
        ("length(fornavn)", "expected a true/false expression"),
        ("repeat(fornavn, 3) = 'x'", "the function repeat is not allowed"),
        ("fodselsnummer IN (SELECT fodselsnummer FROM hamar.hjemmetjenester)", "row filter for hamar/innbyggere"),
        ("1 = 1; DROP TABLE x", "row filter for hamar/innbyggere"),
    ] {
        let (code, err) = t.fail(&[
            "agreement",
            "request",
            "--as",
            "admin",
            "--provider",
            "hamar/folkeregister",
            "--consumer",
            "hamar/byggesak",
            "--dataset",
            "hamar/innbyggere",
            "--columns",
            "fornavn",
            "--filter",
            filter,
            "--purpose",
            "byggesaksbehandling",
        ]);
        assert_eq!(code, 65, "{filter}: {err}");
        assert!(err.contains(expected), "{filter}: {err}");
    }
    // Someone who may not request learns nothing about the datasets from the filter check.
    let (code, err) = t.fail(&[
        "agreement",
        "request",
        "--as",
        "ola",
        "--provider",
        "hamar/folkeregister",
        "--consumer",
        "hamar/byggesak",
        "--dataset",
        "hamar/innbyggere",
        "--filter",
        "finnes_ikke = 1",
        "--purpose",
        "byggesaksbehandling",
    ]);
    assert_eq!(code, 77, "{err}");
    assert_eq!(t.ok(&["agreement", "list", "--json"]), before, "refused requests store nothing");
}

#[test]
fn lowering_a_columns_protection_needs_a_second_steward() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "200"]);
    let db = t.data().join("catalog.db");
    let category = |column: &str| {
        let show = t.ok(&["dataset", "show", "hamar/innbyggere", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&show).unwrap();
        v["columns"].as_array().unwrap().iter().find(|c| c["name"] == column).unwrap()["category"].as_str().unwrap().to_string()
    };
    // Only the owning department's steward asks; an employee is refused.
    let (code, _) = t.fail(&["dataset", "category", "hamar/innbyggere", "adresse", "none", "--as", "siri"]);
    assert_eq!(code, 77);
    // Lowering waits for a second person: the column is unchanged until then.
    let out = t.ok(&["dataset", "category", "hamar/innbyggere", "adresse", "none", "--as", "frode"]);
    assert!(out.contains("requested"), "{out}");
    assert_eq!(category("adresse"), "protected-address");
    let (code, err) = t.fail(&["dataset", "approve-category", "1", "--as", "frode"]);
    assert_eq!(code, 77, "the one who asked does not approve: {err}");
    t.ok(&["user", "create", "hamar/folkeregister/frida", "--role", "steward"]);
    let out = t.ok(&["dataset", "approve-category", "1", "--as", "frida"]);
    assert!(out.contains("applied"), "{out}");
    assert_eq!(category("adresse"), "none");
    // A decided change is not decided again.
    let (code, _) = t.fail(&["dataset", "deny-category", "1", "--as", "frida"]);
    assert_eq!(code, 65);
    // Raising protection applies at once.
    let out = t.ok(&["dataset", "category", "hamar/innbyggere", "fornavn", "special-category", "--as", "frode"]);
    assert!(out.contains("applied"), "{out}");
    assert_eq!(category("fornavn"), "special-category");
    // Every step is in the access log, with who took it.
    let logged = common::sqlite(&db, "SELECT count(*) FROM audit_log WHERE kind = 'category-change'");
    assert_eq!(logged, "[(6,)]", "asked, refused approval, approved, refused denial, refused request, raised");
    let changes = t.ok(&["dataset", "category-changes", "--json"]);
    assert!(changes.contains("\"requested_by\": \"frode\"") && changes.contains("\"decided_by\": \"frida\""), "{changes}");
}

/// `tverr protection link` refuses links that would protect nothing, names the field, and lists
/// what is linked; removing the demo's link brings the meters' readings back to the consumer.
#[test]
fn protection_links_are_checked_listed_and_applied() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let (code, err) = t.fail(&["protection", "link", "hias/vannmaler_avlesninger", "--column", "nope", "--to", "hias/vannmalere"]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("invalid column: hias/vannmaler_avlesninger has no column nope"), "{err}");
    let (code, err) = t.fail(&[
        "protection",
        "link",
        "hamar/barnehageplasser",
        "--column",
        "barnehage",
        "--to",
        "hamar/barnehager",
        "--target-column",
        "navn",
    ]);
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("invalid to: hamar/barnehager has no person or property key"), "{err}");
    let listed = t.ok(&["protection", "list"]);
    assert!(listed.contains("hias/vannmaler_avlesninger.maler_id\tlinked to hias/vannmalere.maler_id"), "{listed}");
    let hidden = "SELECT count(*) AS n FROM (SELECT DISTINCT maler_id FROM hias.vannmaler_avlesninger EXCEPT SELECT maler_id FROM hias.vannmalere) d";
    let count =
        |t: &Tverr| t.ok(&["sql", "--as", "per", "--purpose", "vanngebyr", "--format", "csv", hidden]).lines().nth(1).unwrap().to_string();
    assert_eq!(count(&t), "0");
    t.ok(&["protection", "unlink", "hias/vannmaler_avlesninger", "--column", "maler_id"]);
    assert_ne!(count(&t), "0", "without the link the readings of protected households are there again");
}

/// A protection lifted later does not release the address a person had while protected: every
/// version (`version=`, `as_of=`, the change feed, the latest) is judged by the highest
/// protection each person ever had, also when the register was written twice before anyone read
/// it, and when an erasure vacuumed the version that protected them. A person a register no
/// longer holds keeps their protection too.
#[test]
fn a_lifted_protection_releases_no_earlier_address() {
    lifted_protection(&Tverr::new());
}

/// The same on a PostgreSQL catalogue.
#[test]
fn a_lifted_protection_releases_no_earlier_address_on_postgresql() {
    lifted_protection(&Tverr::with_env(&[("TVERR_CATALOG", &common::fresh_database())]));
}

fn lifted_protection(t: &Tverr) {
    use common::{get_as, start, token};
    t.org();
    t.ok(&["user", "create", "test/data/eier", "--role", "steward"]);
    t.ok(&["legal-basis", "create", "test/lov", "--gdpr", "6(1)(e)", "--hjemmel", "folkeregisterloven § 10-1"]);
    t.ok(&["purpose", "create", "test/forvaltning", "--name", "Forvaltning", "--legal-basis", "lov", "--department", "data"]);
    let write = |name: &str, text: &str| {
        let path = t.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let (a, b, c) = ("17858012392", "01817545781", "08906906652");
    let meta = ["--subject", "fnr=person", "--category", "adresse=protected-address"];
    let v0 = write(
        "v0.csv",
        &format!("fnr;adresse;status\n{a};Hemmeligveien 1;strengt_fortrolig\n{b};Torget 2;ugradert\n{c};Skjulestien 3;strengt_fortrolig\n"),
    );
    t.create("test/folk", &v0, &meta);
    t.ok(&["protection", "register", "test/folk", "--key", "fnr", "--status", "status"]);
    let saker = write("saker.csv", &format!("saksnr;fnr;adresse\n1;{a};Hemmeligveien 1\n2;{c};Skjulestien 3\n3;{b};Torget 2\n"));
    t.create("test/saker", &saker, &meta);
    // The register again before anyone reads: A's protection lifted, A moved; C left out.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let between = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let v1 = write("v1.csv", &format!("fnr;adresse;status\n{a};Åpenveien 4;ugradert\n{b};Torget 2;ugradert\n"));
    t.ok(&["ingest", "test/folk", v1.to_str().unwrap(), "--mode", "replace"]);

    let server = start(t);
    let port = server.1;
    let eier = token(t, "eier");
    let get = |path: &str| {
        let r = get_as(port, path, Some(&eier), Some("forvaltning"));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.text()
    };
    // The latest register: A was strengt fortrolig once, so A's addresses stay withheld (Tverr
    // does not yet know which rows were written while A was protected).
    let latest = get("/api/v1/datasets/test/folk/rows?format=csv");
    assert!(latest.contains(a) && !latest.contains("Åpenveien 4") && latest.contains("Torget 2"), "{latest}");
    // The earlier version, by number and by time, and the change feed: never A's old address.
    for path in [
        "/api/v1/datasets/test/folk/rows?format=csv&version=0".to_string(),
        format!("/api/v1/datasets/test/folk/rows?format=csv&as_of={between}"),
        "/api/v1/datasets/test/folk/changes?from_version=0&format=csv".to_string(),
        "/api/v1/datasets/test/folk/changes?from_version=0".to_string(),
    ] {
        let text = get(&path);
        assert!(!text.contains("Hemmeligveien"), "{path} releases a lifted protection's earlier address:\n{text}");
        assert!(!text.contains("Skjulestien"), "{path}:\n{text}");
    }
    // Another dataset at its latest version, holding the rows written while they were protected:
    // neither C, whom the register no longer holds, nor A, lifted, is released.
    let saker = get("/api/v1/datasets/test/saker/rows?format=csv");
    assert!(!saker.contains("Skjulestien"), "a person left out of the register lost their protection:\n{saker}");
    assert!(!saker.contains("Hemmeligveien"), "a lifted protection released the address of then:\n{saker}");
    assert!(saker.contains("Torget 2"), "{saker}");

    // D protected in one register version and lifted in the next, read by no one in between,
    // then an erasure from the register vacuums the version that protected D: the erasure reads
    // it into the history first, so D's address of then stays withheld in the earlier version.
    let d = "12906032021";
    let v2 = write(
        "v2.csv",
        &format!("fnr;adresse;status\n{a};Åpenveien 4;ugradert\n{b};Torget 2;ugradert\n{d};Gjemmeveien 5;strengt_fortrolig\n"),
    );
    t.ok(&["ingest", "test/folk", v2.to_str().unwrap(), "--mode", "replace"]);
    let s1 = write("s1.csv", &format!("saksnr;fnr;adresse\n4;{d};Gjemmeveien 5\n"));
    t.ok(&["ingest", "test/saker", s1.to_str().unwrap()]);
    let v3 = write("v3.csv", &format!("fnr;adresse;status\n{a};Åpenveien 4;ugradert\n{b};Torget 2;ugradert\n{d};Nyveien 6;ugradert\n"));
    t.ok(&["ingest", "test/folk", v3.to_str().unwrap(), "--mode", "replace"]);
    let s2 = write("s2.csv", &format!("saksnr;fnr;adresse\n4;{d};Nyveien 6\n"));
    t.ok(&["ingest", "test/saker", s2.to_str().unwrap(), "--mode", "upsert", "--key", "saksnr"]);
    t.ok(&["erase", "person", b, "--dataset", "test/folk"]);
    let then = get("/api/v1/datasets/test/saker/rows?format=csv&version=1");
    assert!(then.contains(d) && !then.contains("Gjemmeveien"), "a vacuumed register version's protection was lost:\n{then}");
    let now = get("/api/v1/datasets/test/saker/rows?format=csv");
    assert!(now.contains(d) && !now.contains("Gjemmeveien"), "{now}");
}
