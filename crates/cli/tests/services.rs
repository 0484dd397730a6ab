//! The property service over HTTP («byggesak»): the attack and scenario cases in
//! `tests/security/property/*.case` (citizens reading others' properties, case workers without
//! the purpose, protected owners through the neighbour list, its CSV and the address search,
//! SQL in identifiers, unbounded distances), and the access log of a property read.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Tverr, get_as, start, token};

/// The demo's properties and people that the cases name, found by the operator.
fn placeholders(t: &Tverr) -> BTreeMap<&'static str, String> {
    let rows = |sql: &str| -> Vec<Vec<String>> {
        t.ok(&["sql", "--purpose", "eiendomsskatt", "--format", "csv", sql])
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    };
    let one = |sql: &str| -> Vec<String> { rows(sql).into_iter().next().unwrap_or_else(|| panic!("no row: {sql}")) };
    let open = "eier_fnr IN (SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert')";
    let mut m = BTreeMap::new();
    // A property a zoning plan covers, with a building case, whose owner is not protected.
    let planned = one(&format!(
        "SELECT e.matrikkel, e.eier_fnr FROM hamar.eiendommer e JOIN hamar.reguleringsplaner p ON ST_Intersects(e.geometry, p.geometry) \
         WHERE e.{open} AND e.matrikkel IN (SELECT matrikkel FROM hamar.byggesaker) ORDER BY 1 LIMIT 1"
    ));
    m.insert("planned", planned[0].clone());
    m.insert("planned_owner", planned[1].clone());
    // A protected owner (fortrolig: the operator sees where; strengt fortrolig not even that).
    let protected =
        one("SELECT matrikkel, eier_navn, adresse, ST_AsText(geometry) FROM hamar.eiendommer WHERE geometry IS NOT NULL AND eier_fnr IN \
         (SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse <> 'ugradert') ORDER BY 1 LIMIT 1");
    let wkt = protected[3..].join(",").trim_matches('"').to_string();
    m.insert("protected_property", protected[0].clone());
    m.insert("protected_owner_name", protected[1].clone());
    m.insert("protected_address", protected[2].clone());
    // An open property within 450 m of the protected one.
    m.insert(
        "near_protected",
        one(&format!(
            "SELECT matrikkel FROM hamar.eiendommer WHERE {open} AND ST_DWithin(geometry, ST_SetSRID(ST_GeomFromText('{wkt}'), 25833), 450) \
             ORDER BY 1 LIMIT 1"
        ))[0]
            .clone(),
    );
    // Another open property, not the citizen's, and one of its own neighbours within 500 m.
    let neighbour = one(&format!(
        "SELECT matrikkel, eier_navn, adresse, ST_AsText(geometry) FROM hamar.eiendommer WHERE {open} AND eier_fnr <> '{}' \
         AND matrikkel <> '{}' ORDER BY 1 LIMIT 1",
        planned[1], planned[0]
    ));
    let wkt = neighbour[3..].join(",").trim_matches('"').to_string();
    m.insert(
        "neighbour_of_neighbour",
        one(&format!(
            "SELECT matrikkel FROM hamar.eiendommer WHERE {open} AND matrikkel <> '{}' \
             AND ST_DWithin(geometry, ST_SetSRID(ST_GeomFromText('{wkt}'), 25833), 500) ORDER BY 1 LIMIT 1",
            neighbour[0]
        ))[0]
            .clone(),
    );
    m.insert("neighbour", neighbour[0].clone());
    m.insert("neighbour_owner_name", neighbour[1].clone());
    m.insert("neighbour_address", neighbour[2].clone());
    m.insert("long", "a".repeat(300));
    m
}

/// The datasets of a property view.
fn datasets(v: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for o in v["organizations"].as_array().into_iter().flatten() {
        for d in o["departments"].as_array().unwrap() {
            for f in d["datasets"].as_array().unwrap() {
                out.insert(f["dataset"].as_str().unwrap().to_string());
            }
        }
    }
    out
}

fn encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Runs every case of `tests/security/{dir}` against the server on `port`; returns the failures.
/// `as: citizen:KEY` signs in as the citizen whose number is the placeholder KEY (`citizen`
/// alone: `planned_owner`).
fn run_cases(t: &Tverr, port: u16, dir: &str, values: &BTreeMap<&'static str, String>) -> Vec<String> {
    // Values go into paths percent-encoded, except matrikkel units, whose slashes are the path's.
    let fill = |s: &str, raw: bool| {
        values.iter().fold(s.to_string(), |acc, (k, v)| {
            let unit = v.starts_with("3403-") && v.contains('/');
            acc.replace(&format!("{{{k}}}"), &if raw || unit { v.clone() } else { encoded(v) })
        })
    };
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    let cases = common::Case::all_in(dir);
    assert!(cases.len() >= 15, "only {} cases in {dir}", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case.name();
        let who = case.need("as");
        let tok = match who {
            "anonymous" => None,
            citizen if citizen.starts_with("citizen") => {
                let key = citizen.strip_prefix("citizen:").unwrap_or("planned_owner");
                let pid = values.get(key).unwrap_or_else(|| panic!("{name}: no placeholder {key}"));
                Some(tokens.entry(who.into()).or_insert_with(|| t.ok(&["token", "create", "--citizen", pid]).trim().to_string()).clone())
            }
            user => Some(tokens.entry(user.into()).or_insert_with(|| token(t, user)).clone()),
        };
        let path = fill(case.need("path"), false);
        let r = get_as(port, &path, tok.as_deref(), case.get("purpose"));
        let body = r.text();
        let status: u16 = case.need("status").parse().unwrap();
        let mut fail = |why: String| failures.push(format!("{name}: {why}\n  {path}\n  {}", body.chars().take(600).collect::<String>()));
        if r.status != status {
            fail(format!("status {} instead of {status}", r.status));
            continue;
        }
        if r.status >= 400 && r.header("content-type") != Some("application/problem+json") {
            fail("an error that is not a problem".into());
        }
        for fragment in case.all("contains") {
            let fragment = fill(fragment, true);
            if !body.contains(&fragment) {
                fail(format!("the body does not contain {fragment:?}"));
            }
        }
        for secret in case.all("without") {
            let secret = fill(secret, true);
            if body.contains(&secret) {
                fail(format!("the body reveals {secret:?}"));
            }
        }
        if let Some(expected) = case.get("datasets") {
            let expected: BTreeSet<String> = expected.split_whitespace().map(str::to_string).collect();
            let got = datasets(&r.json());
            if got != expected {
                fail(format!("datasets {got:?}, expected {expected:?}"));
            }
        }
        for absent in case.all("absent-datasets").iter().flat_map(|a| a.split_whitespace()) {
            if datasets(&r.json()).contains(absent) {
                fail(format!("{absent} is shown"));
            }
        }
    }
    failures
}

#[test]
fn property_service_cases() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let server = start(&t);
    let failures = run_cases(&t, server.1, "property", &placeholders(&t));
    assert!(failures.is_empty(), "{} of the property cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// The demo's parents and children that the family cases name, found by the operator.
fn family(t: &Tverr) -> BTreeMap<&'static str, String> {
    let rows = |sql: &str| -> Vec<Vec<String>> {
        t.ok(&["sql", "--purpose", "folkeregisterforvaltning", "--format", "csv", sql])
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    };
    let one = |sql: &str| -> Vec<String> { rows(sql).into_iter().next().unwrap_or_else(|| panic!("no row: {sql}")) };
    let today = chrono::Utc::now().date_naive();
    let years_ago = |n: i32| chrono::Datelike::with_year(&today, chrono::Datelike::year(&today) - n).unwrap_or(today).to_string();
    let open = |column: &str| format!("{column} IN (SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert')");
    let relation = "SELECT r.forelder_fnr, r.barn_fnr, i.fornavn FROM hamar.familierelasjoner r JOIN hamar.innbyggere i ON i.fodselsnummer = r.barn_fnr";
    let mut m = BTreeMap::new();
    let parent = one(&format!(
        "{relation} WHERE {} AND {} AND r.barn_fnr IN (SELECT barn_fnr FROM hamar.barnehageplasser) ORDER BY 1 LIMIT 1",
        open("r.forelder_fnr"),
        open("r.barn_fnr")
    ));
    m.insert("parent", parent[0].clone());
    m.insert("child", parent[1].clone());
    m.insert("child_name", parent[2].clone());
    let teen = one(&format!(
        "{relation} WHERE {} AND i.fodselsdato <= DATE '{}' AND i.fodselsdato > DATE '{}' ORDER BY 1 LIMIT 1",
        open("r.forelder_fnr"),
        years_ago(16),
        years_ago(18)
    ));
    m.insert("teen_parent", teen[0].clone());
    m.insert("teen", teen[1].clone());
    let adult =
        one(&format!("{relation} WHERE {} AND i.fodselsdato <= DATE '{}' ORDER BY 1 LIMIT 1", open("r.forelder_fnr"), years_ago(18)));
    m.insert("old_parent", adult[0].clone());
    m.insert("adult_child", adult[1].clone());
    let protected = one(&format!(
        "{relation} WHERE {} AND i.adressebeskyttelse <> 'ugradert' AND i.fodselsdato > DATE '{}' ORDER BY 1 LIMIT 1",
        open("r.forelder_fnr"),
        years_ago(16)
    ));
    let grown = one(&format!(
        "SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse <> 'ugradert' AND fodselsdato <= DATE '{}' ORDER BY 1 LIMIT 1",
        years_ago(18)
    ));
    m.insert("protected_person", grown[0].clone());
    m.insert("protected_child_parent", protected[0].clone());
    m.insert("protected_child", protected[1].clone());
    let other = one(&format!(
        "SELECT s.barn_fnr, i.fornavn FROM hamar.barnehagesoknader s JOIN hamar.innbyggere i ON i.fodselsnummer = s.barn_fnr \
         WHERE s.foresatt_fnr <> '{}' AND s.status <> 'Takket ja' ORDER BY 1 LIMIT 1",
        parent[0]
    ));
    m.insert("other_applicant", other[0].clone());
    m.insert("other_applicant_name", other[1].clone());
    m
}

#[test]
fn family_service_cases() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "4000"]);
    let server = start(&t);
    let failures = run_cases(&t, server.1, "family", &family(&t));
    assert!(failures.is_empty(), "{} of the family cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_parent_sees_who_read_their_childs_health_data_by_name() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let server = start(&t);
    let values = family(&t);
    // The health centre's nurse reads the child's appointments.
    let sql = format!("SELECT konsultasjon FROM hamar.helsestasjon_timer WHERE barn_fnr = '{}'", values["child"]);
    t.ok(&["sql", "--as", "nina", "--purpose", "helsestasjon", "--format", "csv", &sql]);
    let parent = t.ok(&["token", "create", "--citizen", &values["parent"]]).trim().to_string();
    let r = get_as(server.1, "/api/v1/me/health", Some(&parent), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let reads = v["accesses"].as_array().unwrap();
    let nina =
        reads.iter().find(|a| a["access"]["reader"]["employee"] == "nina").unwrap_or_else(|| panic!("nina's read is not shown: {v}"));
    assert_eq!(nina["whose"]["child"]["pid"], values["child"].as_str());
    assert_eq!(nina["access"]["purpose"], "helsestasjon");
    // The parent's own reads are not in that list, and the child's log shows them as a parent's.
    assert!(reads.iter().all(|a| a["access"]["reader"]["kind"] != "self"));
    let log = t.ok(&["audit", "search", "--subject", &values["child"]]);
    assert!(log.lines().any(|l| l.contains("\"kind\":\"citizen\"") && l.contains("helsestasjon_timer")), "{log}");
    // A price is computed for the child's place.
    let r = get_as(server.1, "/api/v1/me/kindergarten", Some(&parent), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let child = v["children"].as_array().unwrap().iter().find(|c| c["child"]["pid"] == values["child"].as_str()).expect("the child");
    let monthly = child["price"]["monthly"].as_f64().expect("a price");
    assert!(monthly > 0.0 && monthly <= 2000.0, "{monthly}");
}

#[test]
fn a_property_read_is_logged_with_its_purpose_and_the_owners() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "2000"]);
    let server = start(&t);
    let values = placeholders(&t);
    let ola = token(&t, "ola");
    let r = get_as(server.1, &format!("/api/v1/properties/{}", values["planned"]), Some(&ola), Some("byggesaksbehandling"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(v["parcel"]["area_m2"].as_f64().unwrap() > 0.0);
    let zoning = v["zoning"].as_array().unwrap();
    assert!(!zoning.is_empty());
    for z in zoning {
        let share = z["share"].as_f64().unwrap();
        assert!(share > 0.0 && share <= 1.0, "share {share}");
        assert!(z["covered_m2"].as_f64().unwrap() <= v["parcel"]["area_m2"].as_f64().unwrap() + 0.1);
    }
    // The owner, as the access log records people, is named in an access for the purpose.
    let log = t.ok(&["audit", "search", "--subject", &values["planned_owner"]]);
    let accesses: Vec<&str> = log.lines().filter(|l| l.contains("\"kind\":\"access\"")).collect();
    assert!(
        accesses
            .iter()
            .any(|l| l.contains("\"purpose\":\"byggesaksbehandling\"") && l.contains("http-property") && l.contains("hamar/eiendommer")),
        "no logged access naming the owner: {log}"
    );
    // The neighbour list names its owners in the log too.
    let r = get_as(
        server.1,
        &format!("/api/v1/properties/{}/neighbours?within=500", values["neighbour"]),
        Some(&ola),
        Some("byggesaksbehandling"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = r.json()["rows"].as_array().unwrap().len();
    assert!(listed >= 1);
    let log = t.ok(&["audit", "search", "--user", "ola"]);
    let last: serde_json::Value = log
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["kind"] == "access" && e["record"]["channel"] == "http-property" && e["record"]["lookup"].is_null())
        .expect("the neighbour read is logged");
    assert_eq!(last["record"]["purpose"], "byggesaksbehandling");
    let named = last["record"]["subjects"]["hamar/eiendommer"].as_array().map_or(0, Vec::len);
    assert!(named >= listed, "{named} people named for {listed} neighbours: {last}");
}

#[test]
fn neighbours_found_by_cells_are_the_neighbours_a_scan_finds() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "3000"]);
    let server = start(&t);
    let ola = token(&t, "ola");
    let sql = |q: &str| -> Vec<String> {
        t.ok(&["sql", "--as", "ola", "--purpose", "byggesaksbehandling", "--format", "csv", q])
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    // Properties spread over the register, and large distances as well as a shared border.
    let properties = sql("SELECT matrikkel FROM hamar.eiendommer ORDER BY matrikkel");
    let step = properties.len() / 12;
    for (i, m) in properties.iter().step_by(step.max(1)).take(12).enumerate() {
        let within = [0, 50, 200, 500][i % 4];
        let r = get_as(server.1, &format!("/api/v1/properties/{m}/neighbours?within={within}"), Some(&ola), Some("byggesaksbehandling"));
        assert_eq!(r.status, 200, "{}", r.text());
        let mut listed: Vec<String> =
            r.json()["rows"].as_array().unwrap().iter().map(|row| row["matrikkel"].as_str().unwrap().to_string()).collect();
        listed.sort();
        let wkt =
            sql(&format!("SELECT ST_AsText(geometry) FROM hamar.eiendommer WHERE matrikkel = '{m}'"))[0].trim_matches('"').to_string();
        let mut scanned = sql(&format!(
            "SELECT matrikkel FROM hamar.eiendommer WHERE ST_DWithin(geometry, ST_SetSRID(ST_GeomFromText('{wkt}'), 25833), {within}) AND matrikkel <> '{m}'"
        ));
        scanned.sort();
        assert_eq!(listed, scanned, "{m} within {within} m");
    }
}

#[test]
fn an_index_without_cells_gets_them_when_the_server_starts() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "1000"]);
    let db = t.data().join("catalog.db");
    let cells = || common::sqlite(&db, "SELECT count(*) FROM subject_keys WHERE subject LIKE '~cell%'");
    let before = cells();
    assert_ne!(before.trim_matches(|c: char| !c.is_ascii_digit()), "0", "the demo's parcels are in cells");
    // An index built before cells were: no cell keys at all.
    common::sqlite(&db, "DELETE FROM subject_keys WHERE subject LIKE '~cell%'");
    assert_eq!(cells().trim_matches(|c: char| !c.is_ascii_digit()), "0");
    let server = start(&t);
    assert_eq!(cells(), before, "the register is indexed again when the server starts");
    let ola = token(&t, "ola");
    let m = t.ok(&[
        "sql",
        "--as",
        "ola",
        "--purpose",
        "byggesaksbehandling",
        "--format",
        "csv",
        "SELECT matrikkel FROM hamar.eiendommer ORDER BY 1 LIMIT 1",
    ]);
    let m = m.lines().nth(1).unwrap();
    let r = get_as(server.1, &format!("/api/v1/properties/{m}/neighbours?within=500"), Some(&ola), Some("byggesaksbehandling"));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_neighbour_list_cut_short_says_so_and_names_only_the_listed_owners() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "1500"]);
    let owners = common::dense_register(&t, 650);
    let server = start(&t);
    let ola = token(&t, "ola");
    let path = "/api/v1/properties/3403-9000/1/neighbours?within=50";
    let r = get_as(server.1, path, Some(&ola), Some("byggesaksbehandling"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["found"], 649, "{}", v["found"]);
    assert_eq!(v["truncated"], true);
    let listed: Vec<&str> = v["rows"].as_array().unwrap().iter().map(|r| r["matrikkel"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), tverr_access::MAX_NEIGHBOURS);
    // The first by matrikkel number (9000/2, 9000/3 … 9000/501), in that order.
    let all: Vec<String> = (2..=650).map(|i| format!("3403-9000/{i}")).collect();
    assert_eq!(listed, all[..listed.len()].iter().map(String::as_str).collect::<Vec<_>>());
    // Owners listed are in the log; owners cut off are not, since no one saw them.
    let logged = |m: &str| {
        let i: usize = m.rsplit('/').next().unwrap().parse::<usize>().unwrap() - 1;
        t.ok(&["audit", "search", "--subject", &owners[i]]).lines().any(|l| l.contains("http-property"))
    };
    assert!(logged(&all[0]), "a listed owner is not in the log");
    assert!(!logged(all.last().unwrap()), "an owner cut off is in the log");
    // The CSV has no room for it, so its headers say it.
    let r = get_as(server.1, &format!("{path}&format=csv"), Some(&ola), Some("byggesaksbehandling"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("tverr-found"), Some("649"));
    assert_eq!(r.header("tverr-truncated"), Some("true"));
    assert_eq!(r.text().lines().count(), tverr_access::MAX_NEIGHBOURS + 1);
    // A shorter distance lists them all.
    let r = get_as(server.1, "/api/v1/properties/3403-9000/1/neighbours?within=0", Some(&ola), Some("byggesaksbehandling"));
    let v = r.json();
    assert_eq!(v["truncated"], false, "{v}");
    assert_eq!(v["found"], v["rows"].as_array().unwrap().len());
}

#[test]
fn a_file_whose_every_candidate_is_withheld_answers_like_any_other() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "1500"]);
    common::dense_register(&t, 100);
    // A co-owner with a protected address, appended alone in a file of its own, in the middle of
    // the packed parcels: every row of that file is withheld from the case worker.
    let protected = t.ok(&[
        "sql",
        "--purpose",
        "eiendomsskatt",
        "--format",
        "csv",
        "SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse <> 'ugradert' ORDER BY 1 LIMIT 1",
    ]);
    let protected = protected.lines().nth(1).expect("a protected person in the demo");
    let (x, y) = (281_006.0, 6_743_002.4);
    let ring = format!("[[{x},{y}],[{},{y}],[{},{}],[{x},{}],[{x},{y}]]", x + 1.0, x + 1.0, y + 1.0, y + 1.0);
    let file = common::write_geojson(
        &t,
        "co-owner.geojson",
        &[format!(
            r#"{{"type":"Feature","geometry":{{"type":"Polygon","coordinates":[{ring}]}},"properties":{{"matrikkel":"3403-9000/999","adresse":"Tettgata 999","areal_m2":1.0,"eier_fnr":"{protected}","eier_navn":"Skjult","eier_orgnr":null,"takst":1.0}}}}"#
        )],
    );
    t.ok(&["ingest", "hamar/eiendommer", file.to_str().unwrap()]);
    let server = start(&t);
    let ola = token(&t, "ola");
    // Every property around it answers, at every distance, as if the parcel were not there.
    for i in 1..=100 {
        for within in [0, 50] {
            let r = get_as(
                server.1,
                &format!("/api/v1/properties/3403-9000/{i}/neighbours?within={within}"),
                Some(&ola),
                Some("byggesaksbehandling"),
            );
            assert_eq!(r.status, 200, "3403-9000/{i} within {within}: {}", r.text());
            let v = r.json();
            assert!(!r.text().contains("3403-9000/999") && !r.text().contains("Skjult"), "{v}");
            if within == 50 {
                assert_eq!(v["found"], 99, "3403-9000/{i}");
            }
        }
    }
}
