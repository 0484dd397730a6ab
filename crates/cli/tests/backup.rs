//! `tverr backup` and `tverr restore`: a deployment restored from a backup answers as the
//! original did when the backup was taken (rows, versions, look-ups, the access log), on SQLite
//! and local files, on PostgreSQL and S3, and across the two; a damaged or hostile backup and a
//! deployment that is not empty are refused before anything is written.

mod common;

use std::path::{Path, PathBuf};

use common::{Tverr, fresh_database};

/// What a deployment answers, to compare a restored one with its original: every dataset's
/// versions, row counts, a person's look-up and the log's verification.
#[derive(Debug, PartialEq)]
struct Answers {
    datasets: Vec<(String, serde_json::Value, String)>,
    lookup: serde_json::Value,
}

fn answers(t: &Tverr, person: &str) -> Answers {
    let list: serde_json::Value = serde_json::from_str(&t.ok(&["datasets", "--json"])).unwrap();
    let mut datasets = Vec::new();
    for d in list.as_array().unwrap() {
        let name = format!("{}/{}", d["org"].as_str().unwrap(), d["slug"].as_str().unwrap());
        let mut history: serde_json::Value = serde_json::from_str(&t.ok(&["history", &name, "--json"])).unwrap();
        for v in history.as_array_mut().unwrap() {
            v.as_object_mut().unwrap().remove("committed_at");
        }
        let count = t.ok(&["sql", "--format", "csv", &format!("SELECT count(*) AS n FROM {}", name.replace('/', "."))]);
        datasets.push((name, history, count));
    }
    let lookup =
        serde_json::from_str(&t.ok(&["lookup", "person", person, "--as", "tove", "--purpose", "innbyggerservice", "--json"])).unwrap();
    Answers { datasets, lookup }
}

fn a_guardian(t: &Tverr) -> String {
    let csv = t.ok(&["sql", "--format", "csv", "SELECT foresatt_fnr FROM hamar.barnehageplasser ORDER BY 1 LIMIT 1"]);
    csv.lines().nth(1).expect("a guardian").to_string()
}

fn verifies(t: &Tverr) {
    let out = t.run(&["audit", "verify"]);
    assert!(out.status.success(), "the log does not verify: {}", String::from_utf8_lossy(&out.stderr));
}

/// Changes after the backup: an append and an erasure, which the restored deployment must not
/// have.
fn change(t: &Tverr, person: &str) {
    t.ok(&["erase", "person", person, "--dataset", "hamar/barnehageplasser"]);
}

fn backup(t: &Tverr, dir: &Path) -> serde_json::Value {
    serde_json::from_str(&t.ok(&["backup", dir.to_str().unwrap(), "--json"])).unwrap()
}

fn restore(t: &Tverr, dir: &Path) -> serde_json::Value {
    serde_json::from_str(&t.ok(&["restore", dir.to_str().unwrap(), "--json"])).unwrap()
}

/// The deployment's key files, by name.
fn keys(t: &Tverr) -> Vec<(String, Vec<u8>)> {
    ["audit-key.pk8", "subject-key"].iter().map(|n| (n.to_string(), std::fs::read(t.data().join(n)).expect("a key file"))).collect()
}

fn round_trip(original: &Tverr, restored: &Tverr) {
    original.ok(&["demo", "--persons", "300"]);
    let person = a_guardian(original);
    let before = answers(original, &person);
    let dir = original.dir.path().join("backup");
    let summary = backup(original, &dir);
    assert!(summary["datasets"].as_array().unwrap().len() >= 5, "{summary}");
    assert!(dir.join("manifest.json").exists());
    change(original, &person);
    assert_ne!(answers(original, &person), before, "the change after the backup must show");

    let restored_summary = restore(restored, &dir);
    assert_eq!(restored_summary["generation"], summary["generation"]);
    assert_eq!(answers(restored, &person), before, "the restored deployment answers as the original did at the backup");
    assert_eq!(keys(restored), keys(original), "the keys come with the backup");
    verifies(restored);
    // The restore is in the log.
    let log = restored.ok(&["audit", "search"]);
    assert!(log.contains("\"restore\""), "{log}");
    // Writes go on where the backup left off.
    restored.ok(&["erase", "person", &person, "--dataset", "hamar/barnehageplasser"]);
    verifies(restored);
    // A second restore into the same deployment is refused: it is not empty.
    let (_, err) = restored.fail(&["restore", dir.to_str().unwrap()]);
    assert!(err.contains("not empty") || err.contains("already holds"), "{err}");
}

#[test]
fn a_restored_deployment_answers_as_the_original_did() {
    round_trip(&Tverr::new(), &Tverr::new());
}

fn s3_env(prefix: &str) -> Vec<(String, String)> {
    let endpoint = std::env::var("TVERR_TEST_S3_ENDPOINT").expect("TVERR_TEST_S3_ENDPOINT: run the tests with scripts/test");
    let bucket = std::env::var("TVERR_TEST_S3_BUCKET").expect("TVERR_TEST_S3_BUCKET");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000;
    [
        ("TVERR_STORAGE", format!("s3://{bucket}/{prefix}-{}-{nanos}", std::process::id())),
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// From the embedded default to PostgreSQL and S3, and back: the way to move a deployment.
#[test]
fn a_backup_moves_between_sqlite_and_postgresql_and_between_local_files_and_s3() {
    let mut on_services = Tverr::new();
    on_services.env = s3_env("restored");
    on_services.env.push(("TVERR_CATALOG".into(), fresh_database()));
    round_trip(&Tverr::new(), &on_services);

    let mut source = Tverr::new();
    source.env = s3_env("source");
    source.env.push(("TVERR_CATALOG".into(), fresh_database()));
    round_trip(&source, &Tverr::new());
}

/// Files of a backup, relative to it.
fn files_of(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for f in files_of(from) {
        std::fs::create_dir_all(to.join(&f).parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), to.join(&f)).unwrap();
    }
}

/// Nothing of a refused restore is left: no key file, no row, no table.
fn untouched(t: &Tverr) {
    assert!(!t.data().join("audit-key.pk8").exists() && !t.data().join("subject-key").exists(), "a refused restore wrote a key");
    let lake = t.data().join("lake");
    let tables = std::fs::read_dir(&lake).map(|d| d.count()).unwrap_or(0);
    assert_eq!(tables, 0, "a refused restore wrote to storage");
    if t.data().join("catalog.db").exists() {
        let orgs = common::sqlite(&t.data().join("catalog.db"), "SELECT count(*) FROM organizations");
        assert_eq!(orgs.trim(), "[(0,)]", "a refused restore wrote to the catalogue");
    }
}

#[test]
fn a_damaged_or_hostile_backup_is_refused_before_anything_is_written() {
    let original = Tverr::new();
    let dir = original.dir.path().join("backup");
    original.ok(&["org", "create", "test", "--name", "Test kommune", "--orgnr", "970540008"]);
    original.ok(&["department", "create", "test/data", "--name", "Data"]);
    let csv = original.dir.path().join("x.csv");
    std::fs::write(&csv, "id,navn\n1,Kari\n2,Ola\n").unwrap();
    original.create("test/x", &csv, &[]);
    backup(&original, &dir);

    // Into a directory that is not empty: refused.
    let (_, err) = original.fail(&["backup", dir.to_str().unwrap()]);
    assert!(err.contains("not empty"), "{err}");

    let manifest_text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let lake_file = files_of(&dir).into_iter().find(|f| f.to_string_lossy().ends_with(".parquet")).expect("a data file");
    let catalogue_file = PathBuf::from("catalog/organizations.ndjson");
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        ("no manifest", Box::new(|d: &Path| std::fs::remove_file(d.join("manifest.json")).unwrap()), "not a complete backup"),
        (
            "a flipped byte in a data file",
            Box::new({
                let f = lake_file.clone();
                move |d: &Path| {
                    let mut bytes = std::fs::read(d.join(&f)).unwrap();
                    let at = bytes.len() / 2;
                    bytes[at] ^= 1;
                    std::fs::write(d.join(&f), bytes).unwrap();
                }
            }),
            "SHA-256",
        ),
        (
            "a catalogue row added",
            Box::new({
                let f = catalogue_file.clone();
                move |d: &Path| {
                    let mut text = std::fs::read_to_string(d.join(&f)).unwrap();
                    text.push_str("[\"evil\",\"Evil\",\"970540008\",null,\"2026-01-01T00:00:00Z\"]\n");
                    std::fs::write(d.join(&f), text).unwrap();
                }
            }),
            "damaged",
        ),
        ("a missing file", Box::new(move |d: &Path| std::fs::remove_file(d.join(&lake_file)).unwrap()), "missing"),
        (
            "a path out of the backup",
            Box::new({
                let m = manifest_text.clone();
                move |d: &Path| {
                    let mut v: serde_json::Value = serde_json::from_str(&m).unwrap();
                    v["files"]["../../outside"] = serde_json::json!({"bytes": 1, "sha256": "0".repeat(64)});
                    std::fs::write(d.join("manifest.json"), v.to_string()).unwrap();
                }
            }),
            "not a path inside the backup",
        ),
        (
            "a table name that is SQL",
            Box::new({
                let m = manifest_text.clone();
                move |d: &Path| {
                    let mut v: serde_json::Value = serde_json::from_str(&m).unwrap();
                    v["tables"][0]["name"] = serde_json::json!("users\"; DROP TABLE users; --");
                    std::fs::write(d.join("manifest.json"), v.to_string()).unwrap();
                }
            }),
            "not a catalogue table's name",
        ),
        (
            "a manifest that is not JSON",
            Box::new(|d: &Path| {
                std::fs::write(d.join("manifest.json"), "{\"format\": \"tverr-backup/1\",\n  \"generation\": oops}").unwrap()
            }),
            "line 2, column",
        ),
        (
            "another format",
            Box::new({
                let m = manifest_text.clone();
                move |d: &Path| std::fs::write(d.join("manifest.json"), m.replace("tverr-backup/1", "tverr-backup/9")).unwrap()
            }),
            "tverr-backup/9",
        ),
    ];
    for (what, damage, expected) in cases {
        let copy = original.dir.path().join(format!("damaged-{}", what.replace(' ', "-")));
        copy_dir(&dir, &copy);
        damage(&copy);
        let target = Tverr::new();
        let (code, err) = target.fail(&["restore", copy.to_str().unwrap()]);
        assert_ne!(code, 0);
        assert!(err.contains(expected), "{what}: expected {expected:?} in\n{err}");
        untouched(&target);
    }

    // Into a deployment with other keys: refused, and its keys are kept.
    let other = Tverr::new();
    other.ok(&["org", "list"]);
    let own_key = std::fs::read(other.data().join("audit-key.pk8")).unwrap();
    let (_, err) = other.fail(&["restore", dir.to_str().unwrap()]);
    assert!(err.contains("not empty") || err.contains("is not the backup's"), "{err}");
    assert_eq!(std::fs::read(other.data().join("audit-key.pk8")).unwrap(), own_key);

    // The undamaged backup restores.
    let target = Tverr::new();
    restore(&target, &dir);
    assert_eq!(target.sql_csv("SELECT count(*) AS n FROM test.x"), "n\n2\n");
}

/// A backup taken while every write goes on is still one moment: in the restored deployment
/// every dataset's rows are what its recorded versions account for, and the log verifies.
#[test]
fn a_backup_during_writes_is_consistent_at_one_generation() {
    let t = Tverr::new();
    t.ok(&["org", "create", "test", "--name", "Test kommune", "--orgnr", "970540008"]);
    t.ok(&["department", "create", "test/data", "--name", "Data"]);
    let csv = t.dir.path().join("rows.csv");
    std::fs::write(&csv, (0..200).fold(String::from("id,verdi\n"), |s, i| s + &format!("{i},{}\n", i * 7))).unwrap();
    for d in ["test/a", "test/b"] {
        t.create(d, &csv, &[]);
    }
    let writers: Vec<_> = ["test/a", "test/b"]
        .into_iter()
        .map(|d| {
            let mut c = t.command();
            c.args(["ingest", d, csv.to_str().unwrap()]);
            std::thread::spawn(move || {
                for _ in 0..6 {
                    let out = c.output().expect("tverr");
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let dir = t.dir.path().join("backup");
    backup(&t, &dir);
    for w in writers {
        w.join().unwrap();
    }
    let restored = Tverr::new();
    restore(&restored, &dir);
    verifies(&restored);
    for d in ["test/a", "test/b"] {
        let history: serde_json::Value = serde_json::from_str(&restored.ok(&["history", d, "--json"])).unwrap();
        let written: i64 = history.as_array().unwrap().iter().map(|v| v["rows_written"].as_i64().unwrap()).sum();
        let count = restored.sql_csv(&format!("SELECT count(*) AS n FROM {}", d.replace('/', ".")));
        assert_eq!(count, format!("n\n{written}\n"), "{d}: the rows are what the recorded versions wrote");
    }
}
