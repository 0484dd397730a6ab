//! Writes killed at any moment, and writers that take turns, on one data directory (SQLite and a
//! local lake). The same on PostgreSQL and S3 with three nodes: `tests/cluster/run.py`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{Tverr, sqlite};

const DATASET: &str = "test/hendelser";

fn rows(from: u64, n: u64) -> String {
    let mut csv = String::from("id,verdi,tekst\n");
    for i in from..from + n {
        csv.push_str(&format!("{i},{},rad nummer {i} med litt tekst\n", i % 97));
    }
    csv
}

/// Organisation `test` and the dataset with `n` rows; the directory for more files, and the
/// first file.
fn created(t: &Tverr, n: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    t.org();
    let dir = t.data().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let first = dir.join("first.csv");
    std::fs::write(&first, rows(0, n)).unwrap();
    t.create(DATASET, &first, &[]);
    (dir, first)
}

/// The versions Tverr wrote that the table's log holds, with their mode, read from the log's
/// JSON files.
fn lake_versions(table: &Path) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(table.join("_delta_log")).expect("the log") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(number) = name.strip_suffix(".json").and_then(|n| n.parse::<i64>().ok()) else { continue };
        for line in std::fs::read_to_string(&path).expect("a commit").lines() {
            let action: serde_json::Value = serde_json::from_str(line).expect("JSON");
            if let Some(mode) = action["commitInfo"]["tverr.mode"].as_str() {
                out.insert(number, mode.to_string());
            }
        }
    }
    out
}

/// The data files of a table that no entry of its log names.
fn unnamed_files(table: &Path) -> Vec<String> {
    let mut named = BTreeSet::new();
    for entry in std::fs::read_dir(table.join("_delta_log")).expect("the log") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            for line in std::fs::read_to_string(&path).expect("a commit").lines() {
                let action: serde_json::Value = serde_json::from_str(line).expect("JSON");
                for kind in ["add", "remove"] {
                    if let Some(p) = action[kind]["path"].as_str() {
                        named.insert(p.to_string());
                    }
                }
            }
        }
    }
    std::fs::read_dir(table)
        .expect("the table")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".parquet") && !named.contains(n))
        .collect()
}

/// The invariants after any crash: the catalogue records exactly the versions the lake holds,
/// the rows are what the history accounts for, no file is left that no version names, and the
/// access log verifies.
fn check(t: &Tverr, what: &str) {
    let table = t.lake().join("test/hendelser");
    let db = t.data().join("catalog.db");
    let listed = sqlite(&db, "SELECT version, mode, rows_written, rows_removed FROM dataset_versions ORDER BY version");
    let versions: Vec<(i64, String, i64, i64)> = serde_json::from_str(&listed.replace('(', "[").replace(')', "]").replace('\'', "\""))
        .unwrap_or_else(|e| panic!("{what}: {listed}: {e}"));
    let recorded: BTreeMap<i64, String> = versions.iter().map(|(v, m, _, _)| (*v, m.clone())).collect();
    assert_eq!(recorded, lake_versions(&table), "{what}: the catalogue's versions are not the lake's");
    let expected: i64 =
        versions.iter().fold(0, |n, (_, mode, written, removed)| if mode == "create" { *written } else { n + written - removed });
    let counted = t.sql_csv("SELECT count(*) AS n FROM test.hendelser");
    assert_eq!(counted.lines().nth(1), Some(expected.to_string().as_str()), "{what}: rows");
    assert_eq!(unnamed_files(&table), Vec::<String>::new(), "{what}: files no version names");
    t.ok(&["audit", "verify"]);
    assert_eq!(sqlite(&db, "SELECT count(*) FROM dataset_writes"), "[(0,)]", "{what}: a write still recorded as under way");
}

#[test]
fn a_write_killed_at_any_moment_leaves_the_previous_or_the_next_version() {
    let t = Tverr::new();
    let (dir, _) = created(&t, 1000);
    let mut next = 1000;
    let mut finished = Vec::new();
    let mut recovered = Vec::new();
    // Deterministic moments spread over the write: before, during, and after the commit.
    for (i, delay_ms) in [20u64, 260, 140, 320, 80, 200, 380, 110, 290, 50, 230, 170, 350, 10, 300, 190].into_iter().enumerate() {
        let upsert = i % 3 == 2;
        let file = dir.join(format!("big-{i}.csv"));
        let start = if upsert { 500 } else { next };
        std::fs::write(&file, rows(start, 200_000)).unwrap();
        if !upsert {
            next += 200_000;
        }
        let mut args = vec!["ingest", DATASET, file.to_str().unwrap()];
        if upsert {
            args.extend(["--mode", "upsert", "--key", "id"]);
        }
        let mut child = t.command().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("tverr ingest");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.success() {
            finished.push(i);
        }
        // The next write of the dataset finishes what the killed one left.
        let small = dir.join(format!("small-{i}.csv"));
        std::fs::write(&small, rows(next, 3)).unwrap();
        next += 3;
        let out = t.run(&["ingest", DATASET, small.to_str().unwrap()]);
        assert!(out.status.success(), "the write after kill {i}: {}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stderr);
        for what in
            ["finishing a write that was interrupted", "recorded a version committed to storage", "deleted files an interrupted write left"]
        {
            if said.contains(what) {
                recovered.push(format!("{i}: {what}"));
            }
        }
        check(&t, &format!("after kill {i} ({delay_ms} ms{})", if upsert { ", upsert" } else { "" }));
    }
    eprintln!("finished before the kill: {finished:?}; finished by the next write: {recovered:?}");
    assert!(finished.len() < 16, "every write finished before its kill: the test killed nothing");
}

#[test]
fn writers_of_one_dataset_on_one_data_directory_take_turns() {
    let t = Tverr::new();
    let (dir, _) = created(&t, 10);
    let children: Vec<_> = (0..6u64)
        .map(|i| {
            let file = dir.join(format!("part-{i}.csv"));
            std::fs::write(&file, rows(1000 * (i + 1), 100 + i)).unwrap();
            t.command().args(["ingest", DATASET, file.to_str().unwrap()]).output_async()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    check(&t, "after six writers at once");
    let versions = sqlite(&t.data().join("catalog.db"), "SELECT group_concat(version) FROM dataset_versions");
    assert_eq!(versions, "[('0,1,2,3,4,5,6',)]");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.hendelser").lines().nth(1), Some("625"));
}

/// Starts a command with its output piped, to be waited for later.
trait OutputAsync {
    fn output_async(&mut self) -> std::process::Child;
}

impl OutputAsync for std::process::Command {
    fn output_async(&mut self) -> std::process::Child {
        self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("tverr")
    }
}

#[test]
fn a_version_committed_but_not_recorded_is_recorded_by_the_next_write() {
    let t = Tverr::new();
    t.org();
    let people = common::data_dir().join("ingest/people.csv");
    t.create("test/people", &people, &["--subject", "fodselsnummer=person"]);
    t.ok(&["ingest", "test/people", people.to_str().unwrap()]);
    let db = t.data().join("catalog.db");
    let keys = sqlite(&db, "SELECT count(*) FROM subject_keys");
    // The state a crash between the lake's commit and the catalogue's record leaves: version 1
    // in the lake, not in the catalogue, its keys not indexed, and the write recorded as under way.
    sqlite(&db, "DELETE FROM dataset_versions WHERE version = 1");
    sqlite(&db, "DELETE FROM subject_keys");
    sqlite(
        &db,
        "INSERT INTO dataset_writes (id, org, dataset, what, started_at) VALUES ('w', 'test', 'people', 'ingest', '2026-12-07T12:00:00.000Z')",
    );
    let out = t.run(&["ingest", "test/people", people.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("recorded a version committed to storage before the write was interrupted"));
    let history = sqlite(&db, "SELECT version, mode, rows_written, source_name FROM dataset_versions ORDER BY version");
    assert_eq!(history, "[(0, 'create', 2, 'people.csv'), (1, 'append', 2, 'people.csv'), (2, 'append', 2, 'people.csv')]");
    // The index is whole again: the keys of all three versions' files.
    let per_version: i64 = keys.trim_matches(|c| "[](),".contains(c)).parse::<i64>().unwrap() / 2;
    assert_eq!(sqlite(&db, "SELECT count(*) FROM subject_keys"), format!("[({},)]", per_version * 3));
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.people").lines().nth(1), Some("6"));
    assert_eq!(sqlite(&db, "SELECT count(*) FROM dataset_writes"), "[(0,)]");
}

#[test]
fn a_process_with_other_key_files_is_refused_before_it_writes() {
    let t = Tverr::new();
    t.org();
    let other = t.data().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    let audit_key = other.join("audit-key.pk8");
    let subject_key = other.join("subject-key");
    let entries = sqlite(&t.data().join("catalog.db"), "SELECT count(*) FROM audit_log");
    for (flag, path, what) in [
        ("--audit-key", &audit_key, "not the key the catalogue's access log is signed with"),
        ("--subject-key", &subject_key, "not the key the deployment names data subjects with"),
    ] {
        let (code, stderr) = t.fail(&[flag, path.to_str().unwrap(), "department", "create", "test/annen", "--name", "Annen"]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(what) && stderr.contains("copy"), "{stderr}");
    }
    assert_eq!(sqlite(&t.data().join("catalog.db"), "SELECT count(*) FROM audit_log"), entries, "nothing was logged or changed");
    assert!(!t.ok(&["org", "list"]).contains("annen"));
    t.ok(&["audit", "verify"]);
}

#[test]
fn a_write_gives_up_when_another_holds_the_dataset_too_long() {
    let t = Tverr::with_env(&[("TVERR_WRITE_WAIT_SECONDS", "1")]);
    let (_, first) = created(&t, 10);
    // Another process holds the dataset's write lock (as a writer that hangs would).
    let lock = t.data().join("catalog.db.locks/test.hendelser");
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)",
        ])
        .arg(&lock)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().unwrap()), &mut said).unwrap();
    assert_eq!(said.trim(), "held");
    let (code, stderr) = t.fail(&["ingest", DATASET, first.to_str().unwrap()]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("another write of test/hendelser has been under way for more than 1 s"), "{stderr}");
    // Once it lets go, the write goes through.
    t.ok(&["ingest", DATASET, first.to_str().unwrap()]);
    check(&t, "after the holder let go");
}

/// A tmpfs mounted over a directory, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts `size` of memory at `dir` (needs root, as CI runs).
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tverr-full", dir.to_str().unwrap()])
            .status()
            .expect("mount");
        assert!(status.success(), "mounting a tmpfs needs root: run the tests as CI does (scripts/test as root)");
        Self(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills a file system: the filler file, which holds everything that was free.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![7u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    filler
}

/// A full disk: an upload fails closed with 503 and `Retry-After`, whether the disk is full where
/// the upload's file is received (`TMPDIR`) or where the table is written (the lake, beside the
/// catalogue); the dataset stays at its version, the log verifies, and once there is room again
/// the same nodes take the upload without a restart, with nothing left over from the failed ones.
#[test]
fn a_full_disk_fails_closed_and_the_node_goes_on_when_there_is_room() {
    let t = Tverr::new();
    let _disk = Tmpfs::mount(&t.data(), "40m");
    let (_, _) = created(&t, 1000);
    t.ok(&["user", "create", "test/data/steward", "--role", "steward"]);
    let steward = common::token(&t, "steward");
    // One node receives uploads on the full disk, the other on a disk with room.
    let mut on_full = Tverr { dir: tempfile::tempdir().unwrap(), env: t.env.clone() };
    let tmp = t.data().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    on_full.env.push(("TVERR_DATA".into(), t.data().to_str().unwrap().into()));
    on_full.env.push(("TMPDIR".into(), tmp.to_str().unwrap().into()));
    let nodes = [common::start(&on_full), common::start(&t)];
    let upload = |port: u16, body: &[u8]| {
        common::send(
            port,
            "POST",
            &format!("/api/v1/datasets/{DATASET}/versions?mode=append"),
            &[("Authorization", &format!("Bearer {steward}")), ("Content-Type", "text/csv")],
            Some(body),
        )
    };
    let big = rows(1000, 100_000);
    let filler = fill(&t.data());
    for (n, node) in nodes.iter().enumerate() {
        for attempt in 0..3 {
            let r = upload(node.1, big.as_bytes());
            assert_eq!(r.status, 503, "node {n}, attempt {attempt} on a full disk: {}", r.text());
            assert!(r.header("retry-after").is_some(), "a 503 says when to try again");
            assert!(r.text().contains("/problems/"), "a problem document: {}", r.text());
        }
    }
    std::fs::remove_file(&filler).unwrap();
    for (n, node) in nodes.iter().enumerate() {
        let r = upload(node.1, big.as_bytes());
        assert_eq!(r.status, 200, "node {n} with room again, without a restart: {}", r.text());
    }
    drop(nodes);
    check(&t, "after the full disk");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.hendelser"), "n\n201000\n");
}
