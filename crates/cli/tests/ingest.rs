//! Ingest end to end through the `tverr` binary: every format and CSV dialect, every class of bad
//! input (as data files in tests/data/ingest/bad), atomicity, write modes, evolution, history,
//! exports and the SQL guard.

mod common;

use std::path::Path;

use common::{Tverr, data_dir, visible_snapshot};

const EXPECTED_PEOPLE: &str = "fodselsnummer,navn,fodt,belop,aktiv\n\
01817545781,Bjørn Ærø,1975-01-01,-12.25,false\n\
17858012392,Åse Ødegård,1980-05-17,1234.5,true\n";

const PEOPLE_QUERY: &str = "SELECT fodselsnummer, navn, fodt, belop, aktiv FROM test.{} ORDER BY fodselsnummer";

fn people(t: &Tverr) {
    t.org();
    t.create("test/people", &data_dir().join("ingest/people.csv"), &["--subject", "fodselsnummer=person"]);
}

#[test]
fn every_dialect_and_format_gives_the_same_rows() {
    let t = Tverr::new();
    t.org();
    let good = data_dir().join("ingest/good");
    let mut names: Vec<_> = std::fs::read_dir(&good).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(names.len() >= 7);
    for (i, file) in names.iter().enumerate() {
        let slug = format!("d{i}");
        t.create(&format!("test/{slug}"), file, &["--subject", "fodselsnummer=person"]);
        let got = t.sql_csv(&PEOPLE_QUERY.replace("{}", &slug));
        assert_eq!(got, EXPECTED_PEOPLE, "{}", file.display());
    }
}

#[test]
fn detection_is_reported() {
    let t = Tverr::new();
    t.org();
    let out = t.create("test/w", &data_dir().join("ingest/good/windows1252_semicolon.csv"), &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["report"]["encoding"], "windows-1252");
    assert_eq!(v["report"]["delimiter"], ";");
    assert_eq!(v["report"]["rows"], 2);
    assert_eq!(v["version"], 0);
    let out = t.create("test/b", &data_dir().join("ingest/good/utf8_bom_semicolon.csv"), &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["report"]["encoding"], "UTF-8 with BOM");
    let out = t.create("test/t", &data_dir().join("ingest/good/latin1_tab.tsv"), &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["report"]["delimiter"], "tab");
}

#[test]
fn quoted_fields_with_newlines_and_delimiters() {
    let t = Tverr::new();
    t.org();
    let f = t.dir.path().join("q.csv");
    std::fs::write(&f, "id;tekst\n1;\"første linje\nandre; linje\"\n2;\"sa \"\"hei\"\"\"\n").unwrap();
    t.create("test/q", &f, &[]);
    let got = t.sql_csv("SELECT id, tekst FROM test.q ORDER BY id");
    assert_eq!(got, "id,tekst\n1,\"første linje\nandre; linje\"\n2,\"sa \"\"hei\"\"\"\n");
}

#[test]
fn leading_zeros_and_overrides() {
    let t = Tverr::new();
    t.org();
    let f = t.dir.path().join("p.csv");
    std::fs::write(&f, "postnummer;kommunenr;antall\n0150;0301;7\n2317;3403;8\n").unwrap();
    t.create("test/p", &f, &["--type", "antall=float"]);
    let show = t.ok(&["dataset", "show", "test/p", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    let types: Vec<&str> = v["columns"].as_array().unwrap().iter().map(|c| c["column_type"].as_str().unwrap()).collect();
    assert_eq!(types, ["text", "text", "float"]);
    assert_eq!(t.sql_csv("SELECT postnummer FROM test.p ORDER BY postnummer"), "postnummer\n0150\n2317\n");
}

#[test]
fn xlsx_with_dates_and_named_sheet() {
    let t = Tverr::new();
    people(&t);
    let x = t.dir.path().join("people.xlsx");
    t.ok(&["export", "test/people", "--format", "xlsx", "--out", x.to_str().unwrap()]);
    t.create("test/fromxlsx", &x, &["--sheet", "Data", "--subject", "fodselsnummer=person"]);
    assert_eq!(t.sql_csv(&PEOPLE_QUERY.replace("{}", "fromxlsx")), EXPECTED_PEOPLE);
    let (code, err) = t.fail(&["ingest", "test/fromxlsx", x.to_str().unwrap(), "--sheet", "Ark1"]);
    assert_eq!(code, 65);
    assert!(err.contains("no sheet named \"Ark1\"; the workbook has: Data"), "{err}");
}

#[test]
fn parquet_round_trip() {
    let t = Tverr::new();
    people(&t);
    let p = t.dir.path().join("people.parquet");
    t.ok(&["export", "test/people", "--format", "parquet", "--out", p.to_str().unwrap()]);
    t.create("test/frompq", &p, &["--subject", "fodselsnummer=person"]);
    assert_eq!(t.sql_csv(&PEOPLE_QUERY.replace("{}", "frompq")), EXPECTED_PEOPLE);
}

/// A column of a dataset as `tverr dataset show --json` describes it.
fn column_of(t: &Tverr, dataset: &str, name: &str) -> serde_json::Value {
    let show: serde_json::Value = serde_json::from_str(&t.ok(&["dataset", "show", dataset, "--json"])).unwrap();
    show["columns"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

#[test]
fn geojson_keeps_geometry_and_crs() {
    let t = Tverr::new();
    t.org();
    let f = t.dir.path().join("b.geojson");
    std::fs::write(
        &f,
        r#"{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"urn:ogc:def:crs:EPSG::25833"}},
        "features":[{"type":"Feature","geometry":{"type":"Point","coordinates":[287000,6744500]},"properties":{"navn":"Solsikken","plasser":3}},
        {"type":"Feature","geometry":null,"properties":{"navn":"Uten sted","plasser":0}}]}"#,
    )
    .unwrap();
    t.create("test/geo", &f, &[]);
    let geom = column_of(&t, "test/geo", "geometry");
    assert_eq!(geom["column_type"], "geometry");
    assert_eq!(geom["crs"], "EPSG:25833");
    let out = t.dir.path().join("out.geojson");
    t.ok(&["export", "test/geo", "--format", "geojson", "--out", out.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["crs"]["properties"]["name"], "urn:ogc:def:crs:EPSG::25833");
    let features = v["features"].as_array().unwrap();
    assert_eq!(features.len(), 2);
    let solsikken = features.iter().find(|f| f["properties"]["navn"] == "Solsikken").unwrap();
    assert_eq!(solsikken["geometry"]["type"], "Point");
    assert_eq!(solsikken["geometry"]["coordinates"][0].as_f64(), Some(287000.0));
    assert!(features.iter().any(|f| f["geometry"].is_null()));
    let csv = t.ok(&["export", "test/geo", "--format", "csv", "--where", "plasser > 0"]);
    assert!(csv.contains("POINT(287000 6744500)"), "{csv}");
    assert!(!csv.contains("Uten sted"));
}

/// Issue 23, item 17: the CSV export of a geo dataset (geometry as WKT) could not be ingested
/// again ("expected a geometry, found POINT(…)").
#[test]
fn a_geo_datasets_csv_export_ingests_again_as_geometry() {
    let t = Tverr::new();
    t.org();
    let f = t.dir.path().join("b.geojson");
    std::fs::write(
        &f,
        r#"{"type":"FeatureCollection","crs":{"type":"name","properties":{"name":"urn:ogc:def:crs:EPSG::25833"}},"features":[
        {"type":"Feature","geometry":{"type":"Point","coordinates":[287000.5,6744500.25]},"properties":{"navn":"Solsikken","plasser":3}},
        {"type":"Feature","geometry":{"type":"LineString","coordinates":[[287000,6744500],[287100,6744600],[287200,6744550]]},"properties":{"navn":"Stien, langs vannet","plasser":0}},
        {"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[287000,6744500],[287100,6744500],[287100,6744600],[287000,6744500]],[[287010,6744510],[287050,6744510],[287050,6744550],[287010,6744510]]]},"properties":{"navn":"Tunet","plasser":12}},
        {"type":"Feature","geometry":{"type":"MultiPolygon","coordinates":[[[[287000,6744500],[287100,6744500],[287100,6744600],[287000,6744500]]],[[[288000,6745500],[288100,6745500],[288100,6745600],[288000,6745500]]]]},"properties":{"navn":"To tomter","plasser":1}},
        {"type":"Feature","geometry":null,"properties":{"navn":"Uten sted","plasser":0}}]}"#,
    )
    .unwrap();
    t.create("test/geo", &f, &[]);
    let exported = t.dir.path().join("geo.csv");
    t.ok(&["export", "test/geo", "--format", "csv", "--out", exported.to_str().unwrap()]);
    let text = std::fs::read_to_string(&exported).unwrap();
    assert!(text.contains("MULTIPOLYGON"), "{text}");

    // The export names no CRS: read as EPSG:4326, the UTM coordinates are refused at their lines.
    let create = ["--create", "--department", "data", "--title", "T", "--classification", "open"];
    let mut args = vec!["ingest", "test/geo-again", exported.to_str().unwrap()];
    args.extend(create);
    let (code, err) = t.fail(&args);
    assert_eq!(code, 65, "{err}");
    let expected = "geo.csv: line 2, column \"geometry\": coordinates are outside longitude/latitude ranges for EPSG:4326";
    assert!(err.contains(expected), "{err}");
    // With the CRS given it is the same dataset again: a geometry column in EPSG:25833, the same
    // rows in every export format.
    t.create("test/geo-again", &exported, &["--crs", "EPSG:25833"]);
    let geometry = column_of(&t, "test/geo-again", "geometry");
    assert_eq!(geometry["column_type"], "geometry");
    assert_eq!(geometry["crs"], "EPSG:25833");
    for format in ["csv", "geojson", "ndjson"] {
        let before = t.ok(&["export", "test/geo", "--format", format]);
        let after = t.ok(&["export", "test/geo-again", "--format", format]);
        assert_eq!(after, before, "{format}");
    }
    // Appended to the original dataset, the export needs no --crs: it is in the dataset's.
    t.ok(&["ingest", "test/geo", exported.to_str().unwrap()]);
    assert_eq!(t.sql_csv("SELECT count(*) AS n, count(geometry) AS g FROM test.geo"), "n,g\n10,8\n");

    // As QGIS writes a layer: WKT first, named WKT, EWKT with the SRID; no option needed.
    let qgis = t.dir.path().join("qgis.csv");
    std::fs::write(&qgis, "WKT,navn\n\"SRID=25833;POINT (287000.5 6744500.25)\",Solsikken\n").unwrap();
    t.create("test/qgis", &qgis, &[]);
    let wkt = column_of(&t, "test/qgis", "WKT");
    assert_eq!(wkt["column_type"], "geometry");
    assert_eq!(wkt["crs"], "EPSG:25833");
    assert!(t.ok(&["export", "test/qgis", "--format", "csv"]).contains("POINT(287000.5 6744500.25)"));
}

/// Issue 23, item 13: a 1.9 MB CSV whose header has 200,000 columns drove the server to 24 GB.
#[test]
fn a_header_of_200000_columns_is_refused_and_changes_nothing() {
    let t = Tverr::new();
    people(&t);
    let table = t.lake().join("test/people");
    let before = visible_snapshot(&table);
    let f = t.dir.path().join("wide.csv");
    let mut text = (1..=200_000).map(|i| format!("kolonne{i}")).collect::<Vec<_>>().join(";");
    text.push_str("\n1;2\n");
    std::fs::write(&f, text).unwrap();
    let (code, err) = t.fail(&["ingest", "test/people", f.to_str().unwrap()]);
    assert_eq!(code, 65, "{err}");
    let expected = "wide.csv: line 1, column \"kolonne2001\": the file has 200000 columns; at most 2000 are allowed";
    assert!(err.contains(expected), "{err}");
    assert_eq!(visible_snapshot(&table), before);
}

/// One case from tests/data/ingest/bad/*.case.
struct Case {
    name: String,
    file: String,
    existing: bool,
    args: Vec<String>,
    expect: Vec<String>,
    reject: Vec<String>,
}

fn cases() -> Vec<Case> {
    let dir = data_dir().join("ingest/bad");
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for p in paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "case")) {
        let text = std::fs::read_to_string(&p).unwrap();
        let mut c = Case {
            name: p.file_stem().unwrap().to_string_lossy().into_owned(),
            file: String::new(),
            existing: false,
            args: Vec::new(),
            expect: Vec::new(),
            reject: Vec::new(),
        };
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let (k, v) = line.split_once(": ").unwrap_or_else(|| panic!("{}: bad line {line:?}", p.display()));
            match k {
                "file" => c.file = v.to_string(),
                "target" => c.existing = v == "existing",
                "args" => c.args = v.split_whitespace().map(str::to_string).collect(),
                "expect" => c.expect.push(v.to_string()),
                "reject" => c.reject.push(v.to_string()),
                other => panic!("{}: unknown key {other}", p.display()),
            }
        }
        assert!(!c.file.is_empty() && !c.expect.is_empty(), "{}: needs file and expect", p.display());
        out.push(c);
    }
    out
}

#[test]
fn bad_input_is_refused_with_its_location_and_changes_nothing() {
    let t = Tverr::new();
    people(&t);
    let table = t.lake().join("test/people");
    let history_before = t.ok(&["history", "test/people", "--json"]);
    let storage_before = visible_snapshot(&table);
    let all = cases();
    assert!(all.len() >= 15, "the bad-input corpus shrank");
    for c in all {
        let file = data_dir().join("ingest/bad").join(&c.file);
        let target = if c.existing { "test/people".to_string() } else { format!("test/{}", c.name.replace('_', "-")) };
        let mut args: Vec<String> = vec!["ingest".into(), target.clone(), file.to_string_lossy().into_owned()];
        if !c.existing {
            args.extend(["--create", "--department", "data", "--title", "T", "--classification", "open"].map(String::from));
        }
        args.extend(c.args.clone());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, err) = t.fail(&argv);
        assert_eq!(code, 65, "{}: exit code; stderr:\n{err}", c.name);
        for e in &c.expect {
            assert!(err.contains(e), "{}: expected {e:?} in:\n{err}", c.name);
        }
        for r in &c.reject {
            assert!(!err.contains(r), "{}: the message echoes {r:?}:\n{err}", c.name);
        }
        if !c.existing {
            let (_, show) = t.fail(&["dataset", "show", &target]);
            assert!(show.contains("does not exist"), "{}: a failed create left a dataset: {show}", c.name);
        }
    }
    assert_eq!(visible_snapshot(&table), storage_before, "a refused ingest changed storage");
    assert_eq!(t.ok(&["history", "test/people", "--json"]), history_before);
    assert_eq!(t.sql_csv(&PEOPLE_QUERY.replace("{}", "people")), EXPECTED_PEOPLE);
}

#[test]
fn invalid_utf8_after_the_sample_is_located() {
    let t = Tverr::new();
    t.org();
    let f = t.dir.path().join("mixed.csv");
    let mut bytes = b"id;navn\n".to_vec();
    let mut line = 1;
    while bytes.len() < 1_200_000 {
        line += 1;
        bytes.extend_from_slice(format!("{line};Ærlig Åse\n").as_bytes());
    }
    bytes.extend_from_slice(b"999999;Bj\xF8rn\n");
    std::fs::write(&f, bytes).unwrap();
    let (code, err) = t.fail(&[
        "ingest",
        "test/mixed",
        f.to_str().unwrap(),
        "--create",
        "--department",
        "data",
        "--title",
        "T",
        "--classification",
        "open",
    ]);
    assert_eq!(code, 65);
    assert!(err.contains(&format!("mixed.csv: line {}, column \"navn\": not valid UTF-8", line + 1)), "{err}");
}

/// Issue 23, item 22: 20,000 valid UTF-8 rows with one stray `\xff\xfe` row inside the first
/// MiB were read as Windows-1252, and every `æøå` was stored as `Ã¦Ã¸Ã¥`.
#[test]
fn a_utf8_file_with_a_few_stray_bytes_is_utf8_with_errors_at_their_lines() {
    let t = Tverr::new();
    t.org();
    let rows = |stray: Option<usize>| {
        let mut bytes = b"id;navn\n".to_vec();
        for i in 1..=20_000 {
            if Some(i) == stray {
                bytes.extend_from_slice(format!("{i};").as_bytes());
                bytes.extend_from_slice(b"\xff\xfe\n");
            } else {
                bytes.extend_from_slice(format!("{i};Ærlig Åse Ødegård\n").as_bytes());
            }
        }
        bytes
    };
    let create = ["--create", "--department", "data", "--title", "T", "--classification", "open"];
    for stray in [1, 9_000, 19_999] {
        let f = t.dir.path().join(format!("stray{stray}.csv"));
        std::fs::write(&f, rows(Some(stray))).unwrap();
        let mut args = vec!["ingest", "test/stray", f.to_str().unwrap()];
        args.extend(create);
        let (code, err) = t.fail(&args);
        assert_eq!(code, 65, "{err}");
        let expected = format!("stray{stray}.csv: line {}, column \"navn\": not valid UTF-8", stray + 1);
        assert!(err.contains(&expected), "{err}");
        assert!(!err.contains('Ã'), "{err}");
    }
    // Without the stray row the same file is UTF-8, and its letters arrive as written.
    let f = t.dir.path().join("clean.csv");
    std::fs::write(&f, rows(None)).unwrap();
    let out: serde_json::Value = serde_json::from_str(&t.create("test/clean", &f, &["--json"])).unwrap();
    assert_eq!(out["report"]["encoding"], "UTF-8");
    assert_eq!(t.sql_csv("SELECT DISTINCT navn FROM test.clean"), "navn\nÆrlig Åse Ødegård\n");
    // The same rows in Windows-1252 are still read as Windows-1252.
    let f = t.dir.path().join("cp1252.csv");
    // (Every letter here is below U+0100 and outside 0x80–0x9F, where Windows-1252 is Latin-1.)
    let latin: Vec<u8> = String::from_utf8(rows(None)).unwrap().chars().map(|c| u8::try_from(c).unwrap()).collect();
    std::fs::write(&f, &latin).unwrap();
    let out: serde_json::Value = serde_json::from_str(&t.create("test/latin", &f, &["--json"])).unwrap();
    assert_eq!(out["report"]["encoding"], "windows-1252");
    assert_eq!(t.sql_csv("SELECT DISTINCT navn FROM test.latin"), "navn\nÆrlig Åse Ødegård\n");
}

#[test]
fn truncated_xlsx_is_refused() {
    let t = Tverr::new();
    people(&t);
    let x = t.dir.path().join("full.xlsx");
    t.ok(&["export", "test/people", "--format", "xlsx", "--out", x.to_str().unwrap()]);
    let bytes = std::fs::read(&x).unwrap();
    let cut = t.dir.path().join("cut.xlsx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (code, err) = t.fail(&["ingest", "test/people", cut.to_str().unwrap()]);
    assert_eq!(code, 65);
    assert!(err.contains("cut.xlsx: not a readable XLSX workbook"), "{err}");
}

#[test]
fn a_bad_row_at_line_one_million_leaves_the_previous_version_intact() {
    let t = Tverr::new();
    t.org();
    let good = t.dir.path().join("v0.csv");
    std::fs::write(&good, "id;verdi\n1;1,5\n2;2,5\n").unwrap();
    t.create("test/big", &good, &[]);
    let table = t.lake().join("test/big");
    let before = visible_snapshot(&table);
    let f = t.dir.path().join("big.csv");
    let mut text = String::with_capacity(16_000_000);
    text.push_str("id;verdi\n");
    for i in 2..1_000_000u32 {
        text.push_str(&format!("{i};{i},25\n"));
    }
    text.push_str("1000000;ikke et tall\n");
    std::fs::write(&f, text).unwrap();
    let (code, err) = t.fail(&["ingest", "test/big", f.to_str().unwrap()]);
    assert_eq!(code, 65);
    assert!(err.contains("big.csv: line 1000000, column \"verdi\": expected a number"), "{err}");
    assert_eq!(visible_snapshot(&table), before);
    assert_eq!(t.sql_csv("SELECT count(*) AS n, sum(verdi) AS s FROM test.big"), "n,s\n2,4.0\n");
}

#[test]
fn append_replace_upsert_and_time_travel() {
    let t = Tverr::new();
    people(&t);
    let more = t.dir.path().join("more.csv");
    std::fs::write(&more, "fodselsnummer;navn;fodt;belop;aktiv\n03891256786;Kari;03.09.2012;5;ja\n").unwrap();
    let out = t.ok(&["ingest", "test/people", more.to_str().unwrap()]);
    assert!(out.contains("version 1 (appended)"), "{out}");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.people"), "n\n3\n");

    let up = t.dir.path().join("up.csv");
    std::fs::write(&up, "fodselsnummer;navn;fodt;belop;aktiv\n178580-12392;Åse Ny;17.05.1980;99;nei\n24929923681;Per;24.12.1999;1;ja\n")
        .unwrap();
    let out = t.ok(&["ingest", "test/people", up.to_str().unwrap(), "--mode", "upsert", "--key", "fodselsnummer"]);
    assert!(out.contains("version 2 (1 rows removed)"), "{out}");
    assert_eq!(
        t.sql_csv("SELECT fodselsnummer, navn, belop FROM test.people ORDER BY fodselsnummer"),
        "fodselsnummer,navn,belop\n01817545781,Bjørn Ærø,-12.25\n03891256786,Kari,5.0\n17858012392,Åse Ny,99.0\n24929923681,Per,1.0\n"
    );

    let only = t.dir.path().join("only.csv");
    std::fs::write(&only, "fodselsnummer;navn;fodt;belop;aktiv\n29828411118;Eva;29.02.1984;0;ja\n").unwrap();
    let out = t.ok(&["ingest", "test/people", only.to_str().unwrap(), "--mode", "replace"]);
    assert!(out.contains("version 3 (4 rows removed)"), "{out}");
    assert_eq!(t.sql_csv("SELECT navn FROM test.people"), "navn\nEva\n");

    // Time travel: every version is still readable.
    let v0 = t.ok(&["export", "test/people", "--format", "csv", "--version", "0"]);
    assert_eq!(v0.lines().count(), 3, "{v0}");
    let v2 = t.ok(&["export", "test/people", "--format", "ndjson", "--version", "2", "--where", "belop > 50"]);
    assert_eq!(v2.lines().count(), 1);
    assert!(v2.contains("\"navn\":\"Åse Ny\""));
    let (_, err) = t.fail(&["export", "test/people", "--format", "csv", "--version", "9"]);
    assert!(err.contains("version"), "{err}");

    let history: serde_json::Value = serde_json::from_str(&t.ok(&["history", "test/people", "--json"])).unwrap();
    let modes: Vec<&str> = history.as_array().unwrap().iter().map(|v| v["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["create", "append", "upsert", "replace"]);
    let last = &history[3];
    assert_eq!(last["actor"], "tester");
    assert_eq!(last["source_name"], "only.csv");
    let sha = last["source_sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    let text = t.ok(&["history", "test/people"]);
    assert!(text.contains(sha) && text.contains("only.csv"), "{text}");
}

#[test]
fn evolve_adds_nullable_columns() {
    let t = Tverr::new();
    people(&t);
    let f = t.dir.path().join("wider.csv");
    std::fs::write(&f, "fodselsnummer;navn;fodt;belop;aktiv;kommune\n03891256786;Kari;03.09.2012;5;ja;Hamar\n").unwrap();
    let (_, err) = t.fail(&["ingest", "test/people", f.to_str().unwrap()]);
    assert!(err.contains("kommune"), "{err}");
    let out = t.ok(&["ingest", "test/people", f.to_str().unwrap(), "--evolve"]);
    assert!(out.contains("new columns: kommune"), "{out}");
    assert_eq!(t.sql_csv("SELECT navn, kommune FROM test.people ORDER BY navn"), "navn,kommune\nBjørn Ærø,\nKari,Hamar\nÅse Ødegård,\n");
    let show = t.ok(&["dataset", "show", "test/people"]);
    assert!(show.contains("kommune"), "{show}");
    // The version before the column was added reads with it, null.
    let before = t.ok(&["export", "test/people", "--format", "csv", "--version", "0", "--where", "kommune IS NULL"]);
    assert!(before.starts_with("fodselsnummer,navn,fodt,belop,aktiv,kommune\n"), "{before}");
    assert_eq!(before.lines().count(), 3, "{before}");
}

/// Files written before `--evolve` added a column lack it: an upsert that rewrites such a file,
/// and an erasure, write their rows with the column null instead of failing.
#[test]
fn files_written_before_the_schema_grew_are_rewritten_with_the_new_columns_null() {
    let t = Tverr::new();
    t.org();
    let first = t.dir.path().join("first.csv");
    std::fs::write(&first, "nr;fodselsnummer;navn\n1;17858012392;Åse\n2;01817545781;Bjørn\n3;03891256786;Kari\n4;24929923681;Per\n")
        .unwrap();
    t.create("test/folk", &first, &["--subject", "fodselsnummer=person"]);
    let wider = t.dir.path().join("wider.csv");
    std::fs::write(&wider, "nr;fodselsnummer;navn;kommune\n5;29828411118;Eva;Hamar\n").unwrap();
    t.ok(&["ingest", "test/folk", wider.to_str().unwrap(), "--evolve"]);
    // Three of the first file's four rows replaced: it is rewritten, its last row without `kommune`.
    let up = t.dir.path().join("up.csv");
    std::fs::write(&up, "nr;fodselsnummer;navn;kommune\n1;17858012392;Åse;Løten\n2;01817545781;Bjørn;Løten\n3;03891256786;Kari;Løten\n")
        .unwrap();
    let out = t.ok(&["ingest", "test/folk", up.to_str().unwrap(), "--mode", "upsert", "--key", "nr"]);
    assert!(out.contains("3 rows removed"), "{out}");
    assert_eq!(
        t.sql_csv("SELECT nr, navn, kommune FROM test.folk ORDER BY nr"),
        "nr,navn,kommune\n1,Åse,Løten\n2,Bjørn,Løten\n3,Kari,Løten\n4,Per,\n5,Eva,Hamar\n"
    );
    // Per's row is in the rewritten file, Eva's in the wider one; erase Per.
    let erased = t.ok(&["erase", "person", "24929923681", "--dataset", "test/folk"]);
    assert!(erased.contains("1 rows erased"), "{erased}");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.folk WHERE kommune IS NULL"), "n\n0\n");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.folk"), "n\n4\n");
}

/// A person only earlier versions hold (a replace left them out) is erased too: an empty
/// version, then the vacuum removes the files of the versions before it.
#[test]
fn an_erasure_reaches_a_person_only_earlier_versions_hold() {
    let t = Tverr::new();
    people(&t);
    let only = t.dir.path().join("only.csv");
    std::fs::write(&only, "fodselsnummer;navn;fodt;belop;aktiv\n01817545781;Bjørn Ærø;01.01.1975;1;ja\n").unwrap();
    t.ok(&["ingest", "test/people", only.to_str().unwrap(), "--mode", "replace"]);
    let old = t.ok(&["export", "test/people", "--format", "csv", "--version", "0", "--where", "fodselsnummer = '17858012392'"]);
    assert_eq!(old.lines().count(), 2, "version 0 still holds Åse: {old}");
    let out = t.ok(&["erase", "person", "17858012392", "--dataset", "test/people"]);
    assert!(out.contains("0 rows erased in version 2 (only earlier versions held them"), "{out}");
    let (_, err) = t.fail(&["export", "test/people", "--format", "csv", "--version", "0"]);
    assert!(err.contains("an erasure in version 2 removed the versions before it"), "{err}");
    assert_eq!(t.sql_csv("SELECT navn FROM test.people"), "navn\nBjørn Ærø\n");
    // A person no version ever held changes nothing.
    assert!(t.ok(&["erase", "person", "24929923681", "--dataset", "test/people"]).contains("no rows about this subject"));
}

#[test]
fn catalogue_validation() {
    let t = Tverr::new();
    let (code, err) = t.fail(&["org", "create", "x", "--name", "X", "--orgnr", "970540009"]);
    assert_eq!(code, 65);
    assert!(err.contains("invalid orgnr: the check digits do not match"), "{err}");
    let (_, err) = t.fail(&["org", "create", "Bad Slug", "--name", "X", "--orgnr", "970540008"]);
    assert!(err.contains("invalid slug"), "{err}");
    let (_, err) = t.fail(&["org", "create", "x", "--name", "X", "--orgnr", "970540008", "--kommunenummer", "403"]);
    assert!(err.contains("kommunenummer"), "{err}");
    t.org();
    let (_, err) = t.fail(&["org", "create", "test2", "--name", "X", "--orgnr", "970540008"]);
    assert!(err.contains("already exists"), "{err}");
    let (_, err) = t.fail(&["department", "create", "nope/x", "--name", "X"]);
    assert!(err.contains("organisation nope does not exist"), "{err}");
    let f = data_dir().join("ingest/people.csv");
    let (_, err) =
        t.fail(&["ingest", "test/p", f.to_str().unwrap(), "--create", "--department", "nope", "--title", "T", "--classification", "open"]);
    assert!(err.contains("department test/nope does not exist"), "{err}");
    let (_, err) = t.fail(&[
        "ingest",
        "test/p",
        f.to_str().unwrap(),
        "--create",
        "--department",
        "data",
        "--title",
        "T",
        "--classification",
        "hemmelig",
    ]);
    assert!(err.contains("unknown classification \"hemmelig\""), "{err}");
    let (_, err) = t.fail(&["ingest", "test/p", f.to_str().unwrap()]);
    assert!(err.contains("dataset test/p (give --create to create it) does not exist"), "{err}");
    let (_, err) = t.fail(&[
        "ingest",
        "test/p",
        f.to_str().unwrap(),
        "--create",
        "--department",
        "data",
        "--title",
        "T",
        "--classification",
        "open",
        "--category",
        "nope=personal",
    ]);
    assert!(err.contains("invalid category: column \"nope\" is not in the dataset"), "{err}");
    assert!(t.fail(&["dataset", "show", "test/p"]).1.contains("does not exist"));
    t.create("test/p", &f, &["--category", "navn=personal", "--subject", "fodselsnummer=person"]);
    let (_, err) =
        t.fail(&["ingest", "test/p", f.to_str().unwrap(), "--create", "--department", "data", "--title", "T", "--classification", "open"]);
    assert!(err.contains("dataset test/p already exists"), "{err}");
    let listed = t.ok(&["datasets"]);
    assert!(listed.contains("test/p") && listed.contains("internal"), "{listed}");
    let show: serde_json::Value = serde_json::from_str(&t.ok(&["dataset", "show", "test/p", "--json"])).unwrap();
    let cats: Vec<(&str, &str)> =
        show["columns"].as_array().unwrap().iter().map(|c| (c["name"].as_str().unwrap(), c["category"].as_str().unwrap())).collect();
    assert!(cats.contains(&("fodselsnummer", "person-id")) && cats.contains(&("navn", "personal")), "{cats:?}");
}

#[test]
fn column_descriptions_are_recorded_and_checked() {
    let t = Tverr::new();
    t.org();
    let f = t.data().join("p.csv");
    std::fs::write(&f, "fodselsnummer;navn\n01010012356;Kari\n").unwrap();
    let describe = |extra: &[&str]| {
        let mut args = vec!["ingest", "test/p", f.to_str().unwrap(), "--create", "--department", "data", "--title", "T"];
        args.extend_from_slice(&["--classification", "open"]);
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let args = describe(extra);
        t.fail(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (_, err) = run(&["--describe", "nope=Ingenting"]);
    assert!(err.contains("invalid describe: column \"nope\" is not in the dataset"), "{err}");
    let (_, err) = run(&["--describe", "navn="]);
    assert!(err.contains("the description is empty"), "{err}");
    let long = format!("navn={}", "x".repeat(201));
    let (_, err) = run(&["--describe", &long]);
    assert!(err.contains("at most 200 are allowed"), "{err}");
    assert!(t.fail(&["dataset", "show", "test/p"]).1.contains("does not exist"), "a refused description creates nothing");
    t.create("test/p", &f, &["--describe", "navn=Fornavn", "--describe", "fodselsnummer=Fødselsnummer"]);
    let title = |name: &str| column_of(&t, "test/p", name)["description"].as_str().unwrap().to_string();
    assert_eq!(title("navn"), "Fornavn");
    // A later version may set a description; it changes nothing else.
    t.ok(&["ingest", "test/p", f.to_str().unwrap(), "--describe", "navn=Fornavn (som i Folkeregisteret)"]);
    assert_eq!(title("navn"), "Fornavn (som i Folkeregisteret)");
    assert_eq!(title("fodselsnummer"), "Fødselsnummer");
}

#[test]
fn sql_is_read_only() {
    let t = Tverr::new();
    people(&t);
    for q in [
        "DROP TABLE test.people",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO test.people SELECT * FROM test.people",
        "DELETE FROM test.people",
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "SELECT 1; DROP TABLE test.people",
        "SET datafusion.execution.batch_size = 1",
        "COPY test.people TO '/tmp/x.csv'",
        "EXPLAIN SELECT * FROM test.people",
    ] {
        let (code, err) = t.fail(&["sql", q]);
        assert_eq!(code, 65, "{q}");
        assert!(err.contains("not allowed") || err.contains("invalid query"), "{q}: {err}");
    }
    let (_, err) = t.fail(&["sql", "SELECT * FROM '/etc/passwd'"]);
    assert!(!err.contains("root:") && err.contains("no dataset"), "{err}");
    assert_eq!(t.sql_csv(&PEOPLE_QUERY.replace("{}", "people")), EXPECTED_PEOPLE);
}

#[test]
fn help_everywhere() {
    let t = Tverr::new();
    for cmd in [
        vec!["--help"],
        vec!["org", "--help"],
        vec!["org", "create", "--help"],
        vec!["department", "create", "--help"],
        vec!["ingest", "--help"],
        vec!["datasets", "--help"],
        vec!["dataset", "show", "--help"],
        vec!["history", "--help"],
        vec!["export", "--help"],
        vec!["sql", "--help"],
        vec!["demo", "--help"],
        vec!["serve", "--help"],
    ] {
        let out = t.ok(&cmd);
        assert!(out.contains("Usage:"), "{cmd:?}");
    }
    assert!(Path::new(env!("CARGO_BIN_EXE_tverr")).exists());
}

#[test]
fn the_read_cache_setting_is_checked_and_zero_turns_the_cache_off() {
    let t = Tverr::new();
    people(&t);
    let query = PEOPLE_QUERY.replace("{}", "people");
    let with = |mb: &str| t.command().env("TVERR_READ_CACHE_MB", mb).args(["sql", &query, "--format", "csv"]).output().unwrap();
    let off = with("0");
    assert!(off.status.success(), "{}", String::from_utf8_lossy(&off.stderr));
    assert_eq!(String::from_utf8_lossy(&off.stdout), EXPECTED_PEOPLE);
    let bad = with("lots");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("TVERR_READ_CACHE_MB") && stderr.contains("\"lots\""), "{stderr}");
}

#[test]
fn the_rows_of_one_place_are_written_together() {
    let t = Tverr::new();
    t.org();
    // 3,000 points in random order over 1 km², about 7 in each 50 m cell, keyed by property.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 1_000_000) as f64 / 1000.0
    };
    let features: Vec<String> = (0..3000)
        .map(|i| {
            let (x, y) = (600_000.0 + next(), 6_740_000.0 + next());
            format!(
                r#"{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{x},{y}]}},"properties":{{"matrikkel":"3403-{}/{}","n":{i}}}}}"#,
                i / 500 + 1,
                i % 500 + 1
            )
        })
        .collect();
    let file = common::write_geojson(&t, "points.geojson", &features);
    t.create("test/points", &file, &["--subject", "matrikkel=property"]);
    let db = t.data().join("catalog.db");
    let count = |sql: &str| common::sqlite(&db, sql).trim_matches(|c: char| !c.is_ascii_digit()).parse::<u64>().unwrap();
    let cells = "FROM subject_keys WHERE subject LIKE '~cell:%' AND subject <> '~cell:big'";
    assert_eq!(count(&format!("SELECT count(*) {cells}")), 3000, "every point is in one cell");
    assert!(count(&format!("SELECT count(DISTINCT subject) {cells}")) > 300);
    // Each cell's rows are one run in one file: the span of its row numbers is its row count.
    let scattered = count(&format!(
        "SELECT count(*) FROM (SELECT max(row_no) - min(row_no) + 1 AS span, count(*) AS n {cells} GROUP BY subject, file_id) WHERE span <> n"
    ));
    assert_eq!(scattered, 0, "cells whose rows are not written together");
    // The data is the data that was read, in another order.
    assert_eq!(t.sql_csv("SELECT count(*) AS n, sum(n) AS s FROM test.points"), "n,s\n3000,4498500\n");
}

#[test]
fn rows_too_large_for_the_sort_by_place_are_written_unsorted() {
    // A sort that may hold 1 MiB, and rows of 1.6 MB each: the sort cannot take the first batch.
    let t = Tverr::with_env(&[("TVERR_INGEST_SORT_MEMORY_MB", "1")]);
    t.org();
    let line =
        |i: usize| (0..100_000).map(|p| format!("[{},{}]", 600_000 + p % 1000 + i, 6_740_000 + p / 1000)).collect::<Vec<_>>().join(",");
    let features: Vec<String> = (0..4)
        .map(|i| {
            format!(
                r#"{{"type":"Feature","geometry":{{"type":"LineString","coordinates":[{}]}},"properties":{{"matrikkel":"3403-1/{}"}}}}"#,
                line(i),
                i + 1
            )
        })
        .collect();
    let file = common::write_geojson(&t, "lines.geojson", &features);
    t.create("test/lines", &file, &["--subject", "matrikkel=property"]);
    assert_eq!(t.sql_csv("SELECT count(*) AS n, min(matrikkel) AS a, max(matrikkel) AS b FROM test.lines"), "n,a,b\n4,3403-1/1,3403-1/4\n");
    let history: serde_json::Value = serde_json::from_str(&t.ok(&["history", "test/lines", "--json"])).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1, "one version, not one per attempt");
}
