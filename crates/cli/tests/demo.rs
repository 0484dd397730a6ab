//! The demo municipality: every dataset of DESIGN.md, through the ordinary ingest path,
//! deterministic for a seed and size.

mod common;

use common::Tverr;

#[test]
fn demo_municipality() {
    let t = Tverr::new();
    let out = t.ok(&["demo", "--persons", "1500"]);
    assert!(out.contains("19 datasets"), "{out}");
    let list = t.ok(&["datasets", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let mut names: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{}/{} {}", d["org"].as_str().unwrap(), d["slug"].as_str().unwrap(), d["classification"].as_str().unwrap()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "hamar/barnehageplasser confidential",
            "hamar/barnehagepriser open",
            "hamar/barnehager open",
            "hamar/barnehagesoknader confidential",
            "hamar/byggesaker internal",
            "hamar/eiendommer internal",
            "hamar/familierelasjoner confidential",
            "hamar/fastleger open",
            "hamar/gater open",
            "hamar/helsestasjon_timer strictly-confidential",
            "hamar/helsetjenester open",
            "hamar/hjemmetjenester strictly-confidential",
            "hamar/husholdningsinntekt confidential",
            "hamar/innbyggere confidential",
            "hamar/kommunegrense open",
            "hamar/reguleringsplaner open",
            "hias/vannkvalitet open",
            "hias/vannmaler_avlesninger internal",
            "hias/vannmalere internal",
        ]
    );
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM hamar.innbyggere"), "n\n1500\n");
    // Windows-1252 in the source, æøå in the lake.
    let names = t.sql_csv(
        "SELECT count(*) AS n FROM hamar.innbyggere WHERE etternavn IN ('Ødegård', 'Bøe', 'Nygård', 'Sæther', 'Løken', 'Ånestad')",
    );
    assert_ne!(names, "n\n0\n");
    // Synthetic numbers: month + 80 in every fødselsnummer.
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM hamar.innbyggere WHERE CAST(substr(fodselsnummer, 3, 2) AS INT) < 81"), "n\n0\n");
    // Every child in a placement and every owner is a resident.
    assert_eq!(
        t.sql_csv("SELECT count(*) AS n FROM hamar.barnehageplasser p LEFT JOIN hamar.innbyggere i ON p.barn_fnr = i.fodselsnummer WHERE i.fodselsnummer IS NULL"),
        "n\n0\n"
    );
    // Every building case's property is there, but for those that place a strengt fortrolig
    // owner or applicant: their matrikkel is withheld from everyone, the operator included.
    let unmatched = t.sql_csv(
        "SELECT count(*) AS n FROM hamar.byggesaker b LEFT JOIN hamar.eiendommer e ON b.matrikkel = e.matrikkel WHERE e.matrikkel IS NULL",
    );
    let strengt = t.sql_csv("SELECT count(*) AS n FROM hamar.innbyggere WHERE adressebeskyttelse = 'strengt_fortrolig'");
    let count = |csv: &str| -> usize { csv.lines().nth(1).unwrap().parse().unwrap() };
    assert!(count(&unmatched) <= 2 * count(&strengt), "{unmatched} unmatched for {strengt} protected");
    let readings = t.sql_csv("SELECT min(maaned) AS a, max(maaned) AS b FROM hias.vannmaler_avlesninger");
    assert_eq!(readings, "a,b\n2020-01-01,2025-12-01\n");
    let show: serde_json::Value = serde_json::from_str(&t.ok(&["dataset", "show", "hamar/barnehager", "--json"])).unwrap();
    let geom = show["columns"].as_array().unwrap().iter().find(|c| c["name"] == "geometry").unwrap();
    assert_eq!(geom["crs"], "EPSG:25833");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM hamar.innbyggere WHERE length(postnummer) <> 4"), "n\n0\n");
    let show: serde_json::Value = serde_json::from_str(&t.ok(&["dataset", "show", "hamar/hjemmetjenester", "--json"])).unwrap();
    let cats: Vec<&str> = show["columns"].as_array().unwrap().iter().map(|c| c["category"].as_str().unwrap()).collect();
    assert_eq!(cats, ["person-id", "special-category", "none", "special-category"]);
    // Every child and parent in the family register is a resident, and every child is younger.
    assert_eq!(
        t.sql_csv(
            "SELECT count(*) AS n FROM hamar.familierelasjoner r JOIN hamar.innbyggere c ON c.fodselsnummer = r.barn_fnr \
             JOIN hamar.innbyggere p ON p.fodselsnummer = r.forelder_fnr WHERE c.fodselsdato <= p.fodselsdato"
        ),
        "n\n0\n"
    );
    // Every application is for a resident child, and the health centre sees children under six.
    assert_eq!(
        t.sql_csv("SELECT count(*) AS n FROM hamar.barnehagesoknader s LEFT JOIN hamar.innbyggere i ON s.barn_fnr = i.fodselsnummer WHERE i.fodselsnummer IS NULL"),
        "n\n0\n"
    );
    let show: serde_json::Value = serde_json::from_str(&t.ok(&["dataset", "show", "hamar/helsestasjon_timer", "--json"])).unwrap();
    assert_eq!(show["dataset"]["legal_basis"], "hol-3-2-helsestasjon");
    let (_, err) = t.fail(&["demo"]);
    assert!(err.contains("already has data"), "{err}");

    // Deterministic: the same seed and size give the same population.
    let again = Tverr::new();
    again.ok(&["demo", "--persons", "1500"]);
    let q = "SELECT fodselsnummer, fornavn, etternavn, adresse FROM hamar.innbyggere ORDER BY fodselsnummer";
    assert_eq!(t.sql_csv(q), again.sql_csv(q));
}
