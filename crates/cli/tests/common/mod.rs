//! Helpers for the integration tests: run the real `tverr` binary against a private data
//! directory, and find the repository's test data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A private Tverr installation: a data directory and the environment to reach it.
pub struct Tverr {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

/// The repository's `tests/data` directory.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

impl Tverr {
    /// A new, empty installation on SQLite and a local lake.
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir"), env: Vec::new() }
    }

    /// With extra environment (e.g. TVERR_CATALOG, TVERR_STORAGE).
    pub fn with_env(env: &[(&str, &str)]) -> Self {
        let mut t = Self::new();
        t.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        t
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn lake(&self) -> PathBuf {
        self.data().join("lake")
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tverr"));
        c.env("TVERR_DATA", self.data()).env("TVERR_ACTOR", "tester").env("TVERR_PURPOSE", "test").env_remove("TVERR_CATALOG").env_remove("TVERR_STORAGE");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run tverr")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tverr {args:?} failed ({:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Runs and expects failure; returns (exit code, stderr).
    pub fn fail(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "tverr {args:?} should fail but printed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Creates organisation `test` with department `data`.
    pub fn org(&self) {
        self.ok(&["org", "create", "test", "--name", "Test kommune", "--orgnr", "970540008", "--kommunenummer", "3403"]);
        self.ok(&["department", "create", "test/data", "--name", "Data"]);
    }

    /// `ingest --create` with the usual metadata.
    pub fn create(&self, dataset: &str, file: &Path, extra: &[&str]) -> String {
        let mut args = vec![
            "ingest", dataset, file.to_str().expect("path"), "--create", "--department", "data", "--title", "T",
            "--classification", "internal",
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// CSV of a query.
    pub fn sql_csv(&self, query: &str) -> String {
        self.ok(&["sql", query, "--format", "csv"])
    }
}

/// Every file under `dir`, with its contents, sorted: a fingerprint of a table's storage.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.strip_prefix(dir).expect("under dir").to_path_buf(), std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

/// Only the files a Delta reader can see: the log and the data files it references.
pub fn visible_snapshot(table_dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let all = snapshot(table_dir);
    let log: Vec<_> = all.iter().filter(|(p, _)| p.starts_with("_delta_log")).cloned().collect();
    let text: String = log.iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect();
    all.into_iter()
        .filter(|(p, _)| p.starts_with("_delta_log") || text.contains(&*p.to_string_lossy()))
        .collect()
}
