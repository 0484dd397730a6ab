//! Look-ups over HTTP and the CLI: the attack cases in `tests/security/lookup/*.case` (agreement
//! rules, masks, row filters, purpose, expiry, other organisations, address protection, bad
//! keys), the access log of the people looked up, and the subject index after append, replace,
//! upsert and erasure, compared with what SQL finds by scanning.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Tverr, get_as, percent_encode, send, start, token};

fn lookup(port: u16, kind: &str, id: &str, token: Option<&str>, purpose: Option<&str>) -> common::Response {
    get_as(port, &format!("/api/v1/subjects/{kind}/{}", percent_encode(id, true)), token, purpose)
}

/// The first value of a one-column CSV result.
fn first(t: &Tverr, args: &[&str]) -> String {
    let out = t.ok(args);
    out.lines().nth(1).unwrap_or_else(|| panic!("no row for {args:?}")).trim().to_string()
}

/// The direct datasets of a look-up, and their `matched_on`.
fn datasets(v: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for o in v["organizations"].as_array().unwrap() {
        for d in o["departments"].as_array().unwrap() {
            for f in d["datasets"].as_array().unwrap() {
                let matched = f["matched_on"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
                out.insert(f["dataset"].as_str().unwrap().to_string(), matched);
            }
        }
    }
    out
}

/// Every row of a dataset in a look-up, direct or (with `related`) also under related subjects.
fn rows_of<'a>(v: &'a serde_json::Value, dataset: &str, related: bool) -> Vec<&'a serde_json::Value> {
    let mut groups = vec![&v["organizations"]];
    for r in v["related"].as_array().into_iter().flatten().filter(|_| related) {
        groups.push(&r["organizations"]);
    }
    let mut out = Vec::new();
    for g in groups {
        for o in g.as_array().unwrap() {
            for d in o["departments"].as_array().unwrap() {
                for f in d["datasets"].as_array().unwrap().iter().filter(|f| f["dataset"] == dataset) {
                    out.extend(f["rows"].as_array().unwrap());
                }
            }
        }
    }
    out
}

/// The demo's people and properties that the cases name, found by the data's owners.
fn placeholders(t: &Tverr) -> BTreeMap<&'static str, String> {
    let siri = |sql: &str| first(t, &["sql", "--as", "siri", "--purpose", "folkeregisterforvaltning", "--format", "csv", sql]);
    let op = |sql: &str| first(t, &["sql", "--format", "csv", sql]);
    let register = |status: &str| -> Vec<String> {
        let sql = format!("SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = '{status}'");
        t.ok(&["sql", "--as", "siri", "--purpose", "folkeregisterforvaltning", "--format", "csv", &sql])
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    let ugradert: BTreeSet<String> = register("ugradert").into_iter().collect();
    let pick = |sql: &str| -> String {
        t.ok(&["sql", "--format", "csv", sql])
            .lines()
            .skip(1)
            .find(|f| ugradert.contains(*f))
            .unwrap_or_else(|| panic!("none: {sql}"))
            .to_string()
    };
    let decided = "SELECT matrikkel FROM hamar.byggesaker WHERE status IN ('Innvilget', 'Avslått')";
    let decided_property = op(&format!("{decided} ORDER BY matrikkel LIMIT 1"));
    let mut m = BTreeMap::new();
    m.insert("guardian", pick("SELECT DISTINCT p.foresatt_fnr FROM hamar.barnehageplasser p JOIN hamar.eiendommer e ON e.eier_fnr = p.foresatt_fnr ORDER BY 1"));
    m.insert("elder", pick("SELECT DISTINCT fodselsnummer FROM hamar.hjemmetjenester ORDER BY 1"));
    m.insert(
        "protected",
        siri("SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'strengt_fortrolig' ORDER BY 1 LIMIT 1"),
    );
    m.insert("protected_owner", op("SELECT e.eier_fnr FROM hamar.eiendommer e JOIN hamar.innbyggere i ON e.eier_fnr = i.fodselsnummer WHERE i.adressebeskyttelse <> 'ugradert' ORDER BY 1 LIMIT 1"));
    m.insert("protected_property", op("SELECT e.matrikkel FROM hamar.eiendommer e JOIN hamar.innbyggere i ON e.eier_fnr = i.fodselsnummer WHERE i.adressebeskyttelse <> 'ugradert' ORDER BY 1 LIMIT 1"));
    // A strengt fortrolig owner's matrikkel is withheld from every reader, the operator
    // included; the subject index, which holds keys as stored, gives it.
    let strengt: Vec<String> = register("strengt_fortrolig").iter().map(|f| format!("'{f}'")).collect();
    let found = common::sqlite(
        &t.data().join("catalog.db"),
        &format!(
            "SELECT b.subject FROM subject_keys a JOIN subject_keys b ON a.file_id = b.file_id AND a.row_no = b.row_no \
             JOIN subject_files f ON f.id = a.file_id WHERE f.dataset = 'eiendommer' AND a.subject IN ({}) \
             AND b.subject LIKE '3403-%' ORDER BY 1 LIMIT 1",
            strengt.join(", ")
        ),
    );
    m.insert("strengt_property", found.trim_matches(|c| "[]()',".contains(c)).to_string());
    m.insert("applicant", pick("SELECT DISTINCT soker_fnr FROM hamar.byggesaker ORDER BY 1"));
    m.insert(
        "pending_property",
        op(&format!("SELECT matrikkel FROM hamar.byggesaker WHERE status NOT IN ('Innvilget', 'Avslått') AND matrikkel NOT IN ({decided}) ORDER BY 1 LIMIT 1")),
    );
    m.insert("owner", pick(&format!("SELECT DISTINCT eier_fnr FROM hamar.eiendommer WHERE matrikkel IN ({decided}) ORDER BY 1")));
    m.insert("owner_org", op("SELECT eier_orgnr FROM hamar.eiendommer WHERE eier_orgnr IS NOT NULL ORDER BY 1 LIMIT 1"));
    m.insert("decided_property_short", decided_property.trim_start_matches("3403-").to_string());
    m.insert("decided_property_old", decided_property.replacen("3403-", "0403-", 1));
    m.insert("decided_property", decided_property);
    m
}

#[test]
fn lookup_attack_cases() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let server = start(&t);
    let port = server.1;
    let values = placeholders(&t);
    let fill = |s: &str| values.iter().fold(s.to_string(), |acc, (k, v)| acc.replace(&format!("{{{k}}}"), v));
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    let cases = common::Case::all_in("lookup");
    assert!(cases.len() >= 20, "only {} look-up cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let field = |k: &str| case.get(k);
        let all = |k: &str| case.all(k).into_iter().map(str::to_string).collect::<Vec<_>>();
        let name = case.name();
        let who = field("as").expect("as:");
        let tok = match who {
            "anonymous" => None,
            "citizen" => Some(
                tokens
                    .entry(who.into())
                    .or_insert_with(|| t.ok(&["token", "create", "--citizen", &values["elder"]]).trim().to_string())
                    .clone(),
            ),
            user => Some(tokens.entry(user.into()).or_insert_with(|| token(&t, user)).clone()),
        };
        let id = fill(field("id").expect("id:"));
        let catalog = t.data().join("catalog.db");
        let accesses = || common::sqlite(&catalog, "SELECT count(*) FROM audit_log WHERE kind = 'access'");
        let before = field("accesses").map(|_| accesses());
        let r = lookup(port, field("kind").expect("kind:"), &id, tok.as_deref(), field("purpose"));
        let body = r.text();
        let status: u16 = field("status").expect("status:").parse().unwrap();
        let mut fail = |why: String| failures.push(format!("{name}: {why}\n  {body}"));
        if r.status != status {
            fail(format!("status {} instead of {status}", r.status));
            continue;
        }
        // `accesses: N`: the look-up left N access records (none: nothing was read, exactly as
        // for a key held nowhere, so neither the log nor the time of the answer differs).
        if let (Some(expected), Some(before)) = (field("accesses"), before) {
            let count = |s: &str| s.trim_matches(|c: char| !c.is_ascii_digit()).parse::<i64>().unwrap_or(-1);
            let added = count(&accesses()) - count(&before);
            if added.to_string() != expected {
                fail(format!("{added} access records, expected {expected}"));
            }
        }
        if r.status >= 400 && r.header("content-type") != Some("application/problem+json") {
            fail("an error that is not a problem".into());
        }
        for fragment in all("contains") {
            if !body.contains(&fragment) {
                fail(format!("the body does not contain {fragment:?}"));
            }
        }
        for secret in all("without") {
            let secret = fill(&secret);
            if body.contains(&secret) {
                fail(format!("the body reveals {secret:?}"));
            }
        }
        if r.status != 200 {
            continue;
        }
        let v = r.json();
        let found = datasets(&v);
        if let Some(expected) = field("datasets") {
            let expected: BTreeSet<&str> = expected.split_whitespace().collect();
            let got: BTreeSet<&str> = found.keys().map(String::as_str).collect();
            if got != expected {
                fail(format!("datasets {got:?}, expected {expected:?}"));
            }
        }
        for expected in all("includes").iter().flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>()) {
            if !found.contains_key(&expected) {
                fail(format!("{expected} is missing"));
            }
        }
        if let Some(expected) = field("related") {
            let expected: BTreeSet<&str> = expected.split_whitespace().collect();
            let got: BTreeSet<&str> = v["related"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
            if got != expected {
                fail(format!("related kinds {got:?}, expected {expected:?}"));
            }
        }
        for absent in all("absent").iter().flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>()) {
            if body.contains(&absent) {
                fail(format!("{absent} appears"));
            }
        }
        for m in all("matched") {
            let (dataset, column) = m.split_once('=').unwrap();
            if found.get(dataset).map(|c| c.join(",")) != Some(column.to_string()) {
                fail(format!("{dataset} matched on {:?}, expected {column}", found.get(dataset)));
            }
        }
        for n in all("null").iter().flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>()) {
            let (dataset, column) = n.rsplit_once('.').unwrap();
            // The subject's own rows: people one hop away (a protected parent's adult child living
            // elsewhere) have addresses of their own.
            let rows = rows_of(&v, dataset, false);
            if rows.is_empty() || rows.iter().any(|r| !r[column].is_null()) {
                fail(format!("{dataset}.{column} is not withheld in {} rows", rows.len()));
            }
        }
        // Every row released directly holds the subject in one of its matched columns.
        for o in v["organizations"].as_array().unwrap() {
            for d in o["departments"].as_array().unwrap() {
                for ds in d["datasets"].as_array().unwrap() {
                    for row in ds["rows"].as_array().unwrap() {
                        let holds = ds["matched_on"].as_array().unwrap().iter().any(|c| row[c.as_str().unwrap()] == v["id"]);
                        if !holds {
                            fail(format!("a row of {} does not hold the subject", ds["dataset"]));
                        }
                    }
                    // The look-up's compiled scan gives exactly the rows SQL gives the same
                    // caller for the same purpose and key test.
                    let dataset = ds["dataset"].as_str().unwrap();
                    let test = ds["matched_on"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| format!("{} = '{}'", c.as_str().unwrap(), v["id"].as_str().unwrap()));
                    let sql = format!("SELECT * FROM {} WHERE {}", dataset.replace('/', "."), test.collect::<Vec<_>>().join(" OR "));
                    let purpose = field("purpose").unwrap_or_default();
                    let scan = t.ok(&["sql", "--as", who, "--purpose", purpose, "--format", "ndjson", &sql]);
                    let mut scanned: Vec<String> = scan.lines().map(|l| canonical(&serde_json::from_str(l).unwrap())).collect();
                    let mut looked: Vec<String> = ds["rows"].as_array().unwrap().iter().map(canonical).collect();
                    scanned.sort();
                    looked.sort();
                    if scanned != looked {
                        fail(format!("{dataset}: the look-up gave {looked:?}, SQL {scanned:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failing look-up cases:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_lookup_is_in_the_access_log_of_the_person_and_of_the_related() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "1000"]);
    let server = start(&t);
    let port = server.1;
    let values = placeholders(&t);
    let guardian = &values["guardian"];
    let tove = token(&t, "tove");
    let r = lookup(port, "person", guardian, Some(&tove), Some("innbyggerservice"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let child = v["related"].as_array().unwrap().iter().find(|r| r["kind"] == "person").expect("the child is related")["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The guardian sees one access per dataset released, by the service desk, for its purpose.
    let citizen = |fnr: &str| t.ok(&["token", "create", "--citizen", fnr]).trim().to_string();
    let log = |fnr: &str| {
        let auth = format!("Bearer {}", citizen(fnr));
        let r = send(port, "GET", "/api/v1/me/access-log", &[("Authorization", &auth)], None);
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let mine = log(guardian);
    let lookups: Vec<&serde_json::Value> = mine["accesses"].as_array().unwrap().iter().filter(|a| a["channel"] == "http-lookup").collect();
    let seen: BTreeSet<&str> =
        lookups.iter().flat_map(|a| a["datasets"].as_array().unwrap().iter().map(|d| d["dataset"].as_str().unwrap())).collect();
    for d in datasets(&v).keys() {
        assert!(seen.contains(d.as_str()), "{d} is not in the guardian's log: {mine}");
    }
    assert!(lookups.iter().all(|a| a["purpose"] == "innbyggerservice"), "{mine}");
    assert!(
        lookups
            .iter()
            .all(|a| a["reader"]["department"].as_str().is_some_and(|d| d.contains("servicetorg") || d.contains("Servicetorget"))),
        "{mine}"
    );
    // The child, read as a related subject, sees the population register read too.
    let theirs = log(&child);
    assert!(
        theirs["accesses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["channel"] == "http-lookup" && a["datasets"].as_array().unwrap().iter().any(|d| d["dataset"] == "hamar/innbyggere")),
        "{theirs}"
    );
    // The log names people only by their keyed digest.
    let db = t.data().join("catalog.db");
    let payloads = common::sqlite(&db, "SELECT payload FROM audit_log WHERE payload LIKE '%lookup%'");
    assert!(payloads.contains("\"lookup\""), "{payloads}");
    assert!(!payloads.contains(guardian.as_str()) && !payloads.contains(child.as_str()), "a person number in the log");
    // A look-up's answer is whole before it leaves: each access record carries its outcome, and
    // no completion record follows it.
    let lookup_accesses = "SELECT seq FROM audit_log WHERE kind = 'access' AND json_extract(payload, '$.channel') = 'http-lookup'";
    let outcomes = common::sqlite(
        &db,
        &format!(
            "SELECT json_extract(payload, '$.outcome.status'), json_extract(payload, '$.outcome.rows') > 0 FROM audit_log WHERE seq IN ({lookup_accesses})"
        ),
    );
    assert!(outcomes.starts_with("[('ok', 1)") && !outcomes.contains("None") && !outcomes.contains(", 0)"), "{outcomes}");
    let completions = common::sqlite(
        &db,
        &format!("SELECT count(*) FROM audit_log WHERE kind = 'completion' AND json_extract(payload, '$.access') IN ({lookup_accesses})"),
    );
    assert_eq!(completions, "[(0,)]");
    // An auditor's log verification still holds, subject index included.
    t.ok(&["audit", "verify"]);

    // Fail closed: with the log broken, a look-up releases nothing.
    common::sqlite(&db, "CREATE TRIGGER broken BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END");
    let r = lookup(port, "person", guardian, Some(&tove), Some("innbyggerservice"));
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(!r.text().contains(guardian.as_str()) && !r.text().contains(child.as_str()), "{}", r.text());
    common::sqlite(&db, "DROP TRIGGER broken");
    assert_eq!(lookup(port, "person", guardian, Some(&tove), Some("innbyggerservice")).status, 200);
}

/// What SQL finds for a key by scanning, as sorted JSON rows, and what a look-up finds.
fn compare(t: &Tverr, key: &str) -> (Vec<String>, Vec<String>) {
    let scan = t.ok(&["sql", "--format", "ndjson", &format!("SELECT * FROM hamar.register WHERE pid = '{key}' OR guardian = '{key}'")]);
    let mut scanned: Vec<String> = scan.lines().map(|l| canonical(&serde_json::from_str(l).unwrap())).collect();
    scanned.sort();
    let out = t.ok(&["lookup", "person", key, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut looked: Vec<String> = rows_of(&v, "hamar/register", false).into_iter().map(canonical).collect();
    looked.sort();
    (scanned, looked)
}

/// Every person the rows of a look-up name besides the subject is a related subject (the test
/// data has fewer than the limit), found for all of them in one index query, and shows what a
/// look-up of that person shows, less the rows already shown.
fn hops_agree(t: &Tverr, key: &str, when: &str) {
    let v: serde_json::Value = serde_json::from_str(&t.ok(&["lookup", "person", key, "--json"])).unwrap();
    let direct = rows_of(&v, "hamar/register", false);
    let shown: BTreeSet<String> = direct.iter().map(|r| canonical(r)).collect();
    let named: BTreeSet<&str> =
        direct.iter().flat_map(|r| [r["pid"].as_str(), r["guardian"].as_str()]).flatten().filter(|p| *p != key).collect();
    let mut expected = BTreeMap::new();
    for id in named {
        let (mut rows, _) = compare(t, id);
        rows.retain(|row| !shown.contains(row));
        if !rows.is_empty() {
            expected.insert(id.to_string(), rows);
        }
    }
    let mut found = BTreeMap::new();
    for r in v["related"].as_array().unwrap() {
        let hop = serde_json::json!({"organizations": r["organizations"]});
        let mut rows: Vec<String> = rows_of(&hop, "hamar/register", false).into_iter().map(canonical).collect();
        rows.sort();
        found.insert(r["id"].as_str().unwrap().to_string(), rows);
    }
    assert_eq!(found, expected, "{when}: the related subjects of {key}");
}

fn canonical(v: &serde_json::Value) -> String {
    let m: BTreeMap<String, String> = v
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    format!("{m:?}")
}

fn person(i: usize) -> String {
    // Synthetic numbers (month + 80) from day/month/year, with classic check digits.
    let mut n = i;
    loop {
        let day = 1 + n % 28;
        let month = 81 + (n / 28) % 12;
        let year = 40 + (n / 336) % 60;
        let individual = (n / 20_160) % 500;
        let base = format!("{day:02}{month:02}{year:02}{individual:03}");
        let d: Vec<u32> = base.bytes().map(|b| u32::from(b - b'0')).collect();
        let k = |w: &[u32], d: &[u32]| match 11 - d.iter().zip(w).map(|(a, b)| a * b).sum::<u32>() % 11 {
            11 => Some(0),
            10 => None,
            k => Some(k),
        };
        if let Some(k1) = k(&[3, 7, 6, 1, 8, 9, 4, 5, 2], &d) {
            let mut d2 = d.clone();
            d2.push(k1);
            if let Some(k2) = k(&[5, 4, 3, 2, 7, 6, 5, 4, 3, 2], &d2) {
                return format!("{base}{k1}{k2}");
            }
        }
        n += 7_000_000;
    }
}

/// Creates `hamar/register` (confidential, `pid` and `guardian` person keys) from a file.
fn create_register(t: &Tverr, file: &std::path::Path) {
    t.ok(&[
        "ingest",
        "hamar/register",
        file.to_str().unwrap(),
        "--create",
        "--department",
        "folkeregister",
        "--title",
        "Register",
        "--classification",
        "confidential",
        "--subject",
        "pid=person",
        "--subject",
        "guardian=person",
    ]);
}

#[test]
fn the_index_follows_append_replace_upsert_and_erasure() {
    let t = Tverr::new();
    t.ok(&["org", "create", "hamar", "--name", "Hamar kommune", "--orgnr", "970540008", "--kommunenummer", "3403"]);
    t.ok(&["department", "create", "hamar/folkeregister", "--name", "Folkeregister"]);
    let dir = tempfile::tempdir().unwrap();
    // 300,000 rows: three row groups, so reads pick rows out of the middle of files.
    let write = |name: &str, rows: &mut dyn Iterator<Item = (usize, usize, &str)>| {
        let path = dir.path().join(name);
        let mut text = String::from("pid;guardian;note\n");
        for (p, g, note) in rows {
            text.push_str(&format!("{};{};{note}\n", person(p), if g == usize::MAX { String::new() } else { person(g) }));
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    let first_file = write("v0.csv", &mut (0..300_000).map(|i| (i, if i % 10 == 0 { i + 1 } else { usize::MAX }, "v0")));
    create_register(&t, &first_file);
    let keys = [person(0), person(1), person(150_001), person(299_999), person(131_072)];
    let check = |when: &str| {
        for k in &keys {
            let (scanned, looked) = compare(&t, k);
            assert_eq!(scanned, looked, "{when}: {k}");
            hops_agree(&t, k, when);
        }
    };
    // Person 1 is the guardian in person 0's row and has a row of their own: one hop with rows.
    let v: serde_json::Value = serde_json::from_str(&t.ok(&["lookup", "person", &person(0), "--json"])).unwrap();
    assert_eq!(v["related"][0]["id"], person(1).as_str(), "{v}");
    check("after create");
    // Append: person 1 gets a second row in a new file.
    let appended = write("v1.csv", &mut [(1, usize::MAX, "v1"), (299_999, 0, "v1")].into_iter());
    t.ok(&["ingest", "hamar/register", appended.to_str().unwrap()]);
    let (scanned, _) = compare(&t, &person(1));
    assert_eq!(scanned.len(), 3, "person 1: own row, appended row, guardian of person 0");
    check("after append");
    // Upsert on pid: person 150,001's row is rewritten; the file that held it is replaced.
    let upserted = write("v2.csv", &mut [(150_001, 2, "v2")].into_iter());
    t.ok(&["ingest", "hamar/register", upserted.to_str().unwrap(), "--mode", "upsert", "--key", "pid"]);
    check("after upsert");
    assert!(compare(&t, &person(150_001)).1[0].contains("v2"));
    // Erasure: person 0 disappears everywhere, as pid and as guardian; files are vacuumed.
    let erased = t.ok(&["erase", "person", &person(0), "--dataset", "hamar/register"]);
    assert!(erased.contains("rows erased"), "{erased}");
    check("after erasure");
    assert!(compare(&t, &person(0)).0.is_empty());
    let log = t.ok(&["audit", "verify"]);
    assert!(!log.is_empty());
    // Replace: the old rows are gone from the index too.
    let replaced = write("v3.csv", &mut [(7, 1, "v3"), (8, usize::MAX, "v3")].into_iter());
    t.ok(&["ingest", "hamar/register", replaced.to_str().unwrap(), "--mode", "replace"]);
    check("after replace");
    let (scanned, looked) = compare(&t, &person(1));
    assert_eq!((scanned.len(), looked.len()), (1, 1), "person 1 is only the guardian of person 7 now");
    // A key that is not valid is refused without echoing it; erasing a missing key is a no-op.
    let out = t.run(&["lookup", "person", "01010750161"]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("01010750161"));
    // Person 9 is only in the files the replace removed (kept for time travel): erased there.
    assert!(t.ok(&["erase", "person", &person(9), "--dataset", "hamar/register"]).contains("only earlier versions held them"));
    assert!(t.ok(&["erase", "person", &person(400_000), "--dataset", "hamar/register"]).contains("no rows"));
}

/// Whether any data file of a table holds a person in `pid` or `guardian`, whatever a deletion
/// vector says: each file is ingested as it is stored (Parquet) into a dataset of its own and
/// searched.
fn stored_anywhere(t: &Tverr, table: &std::path::Path, key: &str) -> bool {
    let mut files: Vec<_> =
        std::fs::read_dir(table).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    files.sort();
    files.iter().any(|file| {
        let name = format!("hamar/fysisk-{:x}", sha2_of(file));
        if t.run(&["dataset", "show", &name]).status.success() {
            t.ok(&["ingest", &name, file.to_str().unwrap(), "--mode", "replace"]);
        } else {
            t.ok(&[
                "ingest",
                &name,
                file.to_str().unwrap(),
                "--create",
                "--department",
                "folkeregister",
                "--title",
                "Fysisk",
                "--classification",
                "internal",
            ]);
        }
        let table = name.replace('/', ".\"");
        let sql = format!("SELECT count(*) AS n FROM {table}\" WHERE pid = '{key}' OR guardian = '{key}'");
        t.sql_csv(&sql) != "n\n0\n"
    })
}

/// A short name for a file's path.
fn sha2_of(path: &std::path::Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut h);
    h.finish() >> 40
}

/// An upsert marks the rows it replaces deleted (a Delta deletion vector) instead of rewriting
/// their file. The index forgets exactly those rows; a look-up, a scan and time travel agree;
/// a file mostly replaced is rewritten instead; and an erasure removes a person from storage
/// even where their only row is one an upsert marked (no longer in the index, still in the file).
#[test]
fn rows_an_upsert_marks_deleted_leave_the_index_and_are_erased_from_storage() {
    let t = Tverr::new();
    t.ok(&["org", "create", "hamar", "--name", "Hamar kommune", "--orgnr", "970540008", "--kommunenummer", "3403"]);
    t.ok(&["department", "create", "hamar/folkeregister", "--name", "Folkeregister"]);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, rows: &mut dyn Iterator<Item = (usize, usize, usize, &str)>| {
        let path = dir.path().join(name);
        let mut text = String::from("nr;pid;guardian;note\n");
        for (nr, p, g, note) in rows {
            text.push_str(&format!("{nr};{};{};{note}\n", person(p), person(g)));
        }
        std::fs::write(&path, text).unwrap();
        path
    };
    // Person i has row i; person i + 1 is their guardian.
    let first_file = write("v0.csv", &mut (0..20_000).map(|i| (i, i, i + 1, "v0")));
    create_register(&t, &first_file);
    let table = t.lake().join("hamar/register");
    let count = |suffix: &str| {
        std::fs::read_dir(&table).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(suffix)).count()
    };
    // Rows 0..200 move to new people (100,000 + i, guardian 100,000 + i + 1): person 5's rows
    // (their own, and as guardian of row 4) are both replaced.
    let moved = write("v1.csv", &mut (0..200).map(|i| (i, 100_000 + i, 100_000 + i + 1, "v1")));
    let out = t.ok(&["ingest", "hamar/register", moved.to_str().unwrap(), "--mode", "upsert", "--key", "nr"]);
    assert!(out.contains("200 rows removed"), "{out}");
    assert_eq!((count(".parquet"), count(".bin")), (2, 1), "one new file and a deletion vector; the first file is kept");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM hamar.register"), "n\n20000\n");
    for k in [person(5), person(100_005), person(200), person(300), person(19_999)] {
        let (scanned, looked) = compare(&t, &k);
        assert_eq!(scanned, looked, "after the upsert: {k}");
        hops_agree(&t, &k, "after the upsert");
    }
    assert!(compare(&t, &person(5)).1.is_empty(), "person 5 has no row now");
    assert_eq!(compare(&t, &person(100_005)).1.len(), 2, "their own row, and as guardian of row 4");
    let old = t.ok(&["export", "hamar/register", "--format", "csv", "--version", "0", "--where", "nr < 200 AND note = 'v0'"]);
    assert_eq!(old.lines().count(), 201, "version 0 as it was");

    // More rows of the first file, and rows of the second: the vectors grow (new ones; the old
    // stay for version 1).
    let again = write("v2.csv", &mut (100..300).map(|i| (i, 200_000 + i, 200_000 + i + 1, "v2")));
    assert!(t.ok(&["ingest", "hamar/register", again.to_str().unwrap(), "--mode", "upsert", "--key", "nr"]).contains("200 rows removed"));
    assert_eq!((count(".parquet"), count(".bin")), (3, 2));
    for k in [person(150), person(200_150), person(100_150), person(100_050), person(250), person(100_100)] {
        let (scanned, looked) = compare(&t, &k);
        assert_eq!(scanned, looked, "after the second upsert: {k}");
    }
    assert_eq!(
        t.sql_csv("SELECT note, count(*) AS n FROM hamar.register GROUP BY note ORDER BY note"),
        "note,n\nv0,19700\nv1,100\nv2,200\n"
    );

    // Person 5's rows are marked deleted: the index does not know them, storage still holds them.
    assert!(stored_anywhere(&t, &table, &person(5)));
    let erased = t.ok(&["erase", "person", &person(5), "--dataset", "hamar/register"]);
    assert!(
        erased.contains("0 rows erased in version 3 (and 2 rows an upsert had replaced, removed from storage)"),
        "a version that takes the marked rows (person 5's own, and row 4 naming them as guardian) out of storage: {erased}"
    );
    assert!(!stored_anywhere(&t, &table, &person(5)), "no data file holds person 5");
    assert_eq!((count(".parquet"), count(".bin")), (3, 1), "the first file rewritten without its marked rows; its vectors deleted");
    // Nor does the log: it starts again at a checkpoint of the erasure, and its entries keep only
    // counts, no values.
    let log: Vec<_> = std::fs::read_dir(table.join("_delta_log")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(!log.iter().any(|p| p.to_string_lossy().contains("00000000000000000002.json")), "{log:?}");
    for entry in &log {
        let bytes = std::fs::read(entry).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&person(5)), "{entry:?} names person 5");
    }
    let (_, err) = t.fail(&["export", "hamar/register", "--format", "csv", "--version", "1"]);
    assert!(err.contains("version 1"), "a version before the erasure is gone, and the error says which: {err}");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM hamar.register"), "n\n20000\n");
    for k in [person(300), person(1_000), person(19_999), person(100_050), person(200_150)] {
        let (scanned, looked) = compare(&t, &k);
        assert_eq!(scanned, looked, "after the erasure: {k}");
    }

    // Most of the rewritten file replaced: it is rewritten again without those rows, not marked.
    let most = write("v4.csv", &mut (300..15_000).map(|i| (i, i, i + 2, "v4")));
    assert!(t.ok(&["ingest", "hamar/register", most.to_str().unwrap(), "--mode", "upsert", "--key", "nr"]).contains("14700 rows removed"));
    assert_eq!(count(".parquet"), 5, "v1's, v2's, the file the erasure wrote (kept for version 3), its rewrite and v4's");
    let log = std::fs::read_to_string(table.join("_delta_log/00000000000000000004.json")).unwrap();
    assert!(!log.contains("\"deletionVector\":{"), "no vector in version 4: {log}");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM hamar.register"), "n\n20000\n");
    for k in [person(7), person(14_999), person(15_000), person(15_001), person(200_150)] {
        let (scanned, looked) = compare(&t, &k);
        assert_eq!(scanned, looked, "after a rewrite: {k}");
    }
    let log = t.ok(&["audit", "verify"]);
    assert!(!log.is_empty());
}

/// A server that read a version before an erasure does not serve the erased person from memory:
/// the vacuum removed the files, and the query engine's cache of data-file ranges asks storage
/// before every use.
#[test]
fn an_erased_person_is_not_served_from_the_servers_memory() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "1000"]);
    let server = start(&t);
    let port = server.1;
    let siri = token(&t, "siri");
    let fnr = first(
        &t,
        &[
            "sql",
            "--as",
            "siri",
            "--purpose",
            "folkeregisterforvaltning",
            "--format",
            "csv",
            "SELECT fodselsnummer FROM hamar.innbyggere ORDER BY fodselsnummer LIMIT 1",
        ],
    );
    let rows = |version: &str| {
        let path = format!("/api/v1/datasets/hamar/innbyggere/rows?where=fodselsnummer%3D%27{fnr}%27&limit=10{version}");
        get_as(port, &path, Some(&siri), Some("folkeregisterforvaltning"))
    };
    let before = rows("&version=0");
    assert_eq!(before.status, 200, "{} {}", before.text(), fnr);
    assert_eq!(before.json()["returned"], 1);
    assert_eq!(rows("&version=0").json()["returned"], 1, "read twice: the second from memory");

    let erased = t.ok(&["erase", "person", &fnr, "--dataset", "hamar/innbyggere"]);
    assert!(erased.contains("rows erased"), "{erased}");
    assert_eq!(rows("").json()["returned"], 0, "the latest version has no row of the person");
    let old = rows("&version=0");
    assert!(!old.text().contains(&fnr), "version 0 is gone after the erasure, also from memory: {} {}", old.status, old.text());
    assert!(old.status >= 400 && old.status < 500 || old.json()["returned"] == 0, "{} {}", old.status, old.text());
}

/// A look-up decodes only the columns its grant's scan reads. A row filter on a column that is
/// not released must still see that column: read as null, `bydel IS NULL OR …` would let every
/// row through.
#[test]
fn a_row_filter_on_a_column_not_released_still_applies() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    t.ok(&[
        "agreement",
        "request",
        "--as",
        "admin",
        "--provider",
        "hamar/folkeregister",
        "--consumer",
        "hamar/eiendomsskatt",
        "--dataset",
        "hamar/innbyggere",
        "--columns",
        "fodselsnummer,fornavn",
        "--filter",
        "bydel IS NULL OR bydel <> 'Sentrum'",
        "--purpose",
        "eiendomsskatt",
    ]);
    let list: serde_json::Value = serde_json::from_str(&t.ok(&["agreement", "list", "--json"])).unwrap();
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["state"] == "requested" && a["consumer"]["department"] == "eiendomsskatt")
        .expect("the request")["id"]
        .to_string();
    t.ok(&["agreement", "approve", &id, "--as", "frode"]);
    let person = |sentrum: bool| {
        let op = if sentrum { "=" } else { "<>" };
        first(
            &t,
            &[
                "sql",
                "--format",
                "csv",
                &format!("SELECT fodselsnummer FROM hamar.innbyggere WHERE bydel {op} 'Sentrum' ORDER BY 1 LIMIT 1"),
            ],
        )
    };
    let rows = |fnr: &str| {
        let out = t.ok(&["lookup", "person", fnr, "--json", "--as", "per", "--purpose", "eiendomsskatt"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        rows_of(&v, "hamar/innbyggere", false).into_iter().cloned().collect::<Vec<_>>()
    };
    let inside = person(true);
    assert!(rows(&inside).is_empty(), "a row the agreement's filter withholds was released: {:?}", rows(&inside));
    let outside = person(false);
    let shown = rows(&outside);
    assert_eq!(shown.len(), 1, "{shown:?}");
    let keys: BTreeSet<&str> = shown[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["fodselsnummer", "fornavn"]), "only the released columns");
    // The text output shows the same row, cell by cell.
    let text = t.ok(&["lookup", "person", &outside, "--as", "per", "--purpose", "eiendomsskatt"]);
    let fornavn = shown[0]["fornavn"].as_str().unwrap();
    assert!(text.contains(&format!("- fodselsnummer={outside}; fornavn={fornavn}")), "{text}");
}
