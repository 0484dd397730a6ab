//! Helpers for the integration tests: run the real `tverr` binary against a private data
//! directory, and find the repository's test data.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `.case` files of a directory under `tests/security` (`""` for the directory itself), in
/// name order.
pub fn case_files(sub: &str) -> Vec<PathBuf> {
    let dir = data_dir().join("../security").join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "case"))
        .collect();
    files.sort();
    files
}

/// One attack case as the suites under `tests/security` write them: `key: value` lines (a key
/// may repeat), `#` comments and blank lines, and after a `---` line a body kept as written.
#[derive(Debug, Default)]
pub struct Case {
    pub file: PathBuf,
    pub fields: Vec<(String, String)>,
    pub body: Vec<String>,
}

impl Case {
    /// Reads a case file; a line that is not `key: value` stops the test with its place.
    pub fn parse(file: PathBuf) -> Case {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut case = Case { file, ..Case::default() };
        let mut in_body = false;
        for (n, line) in text.lines().enumerate() {
            if in_body {
                case.body.push(line.to_string());
            } else if line.trim() == "---" {
                in_body = true;
            } else if !(line.starts_with('#') || line.trim().is_empty()) {
                let (k, v) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{}:{}: expected `key: value`, got {line:?}", case.file.display(), n + 1));
                case.fields.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        case
    }

    /// The cases of a directory under `tests/security`, in name order.
    pub fn all_in(sub: &str) -> Vec<Case> {
        case_files(sub).into_iter().map(Case::parse).collect()
    }

    /// The file's name.
    pub fn name(&self) -> String {
        self.file.file_name().unwrap_or_default().to_string_lossy().into_owned()
    }

    /// The first value of a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The first value of a key the case must have.
    pub fn need(&self, key: &str) -> &str {
        self.get(key).unwrap_or_else(|| panic!("{}: missing `{key}:`", self.file.display()))
    }

    /// Every value of a key, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.fields.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    /// The keys that start with `prefix` (without it) and their values, in order.
    pub fn prefixed(&self, prefix: &str) -> Vec<(&str, &str)> {
        self.fields.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k, v.as_str()))).collect()
    }
}

/// Expands `{repeat:N:TEXT}` in a case's text to TEXT written N times (TEXT without `}`), so a
/// case can hold an input of thousands of terms in one readable line.
pub fn expand_repeats(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("{repeat:") {
        out.push_str(&rest[..at]);
        let spec = &rest[at + 8..];
        let end = spec.find('}').expect("a {repeat:N:TEXT} closes with }");
        let (n, unit) = spec[..end].split_once(':').expect("{repeat:N:TEXT}");
        out.push_str(&unit.repeat(n.parse().expect("{repeat:N:…}: N is a number")));
        rest = &spec[end + 1..];
    }
    out.push_str(rest);
    out
}

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
        c.env("TVERR_DATA", self.data())
            .env("TVERR_ACTOR", "tester")
            .env("TVERR_PURPOSE", "test")
            .env_remove("TVERR_CATALOG")
            .env_remove("TVERR_STORAGE");
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
        assert!(!out.status.success(), "tverr {args:?} should fail but printed:\n{}", String::from_utf8_lossy(&out.stdout));
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Creates organisation `test` with department `data`.
    pub fn org(&self) {
        self.ok(&["org", "create", "test", "--name", "Test kommune", "--orgnr", "970540008", "--kommunenummer", "3403"]);
        self.ok(&["department", "create", "test/data", "--name", "Data"]);
    }

    /// Approves, as `steward`, the agreement that is waiting for a decision.
    pub fn approve_requested(&self, steward: &str) {
        let list: serde_json::Value = serde_json::from_str(&self.ok(&["agreement", "list", "--json"])).expect("agreements as JSON");
        let id = list.as_array().expect("a list").iter().find(|a| a["state"] == "requested").expect("the request")["id"].to_string();
        self.ok(&["agreement", "approve", &id, "--as", steward]);
    }

    /// `ingest --create` with the usual metadata.
    pub fn create(&self, dataset: &str, file: &Path, extra: &[&str]) -> String {
        let mut args = vec![
            "ingest",
            dataset,
            file.to_str().expect("path"),
            "--create",
            "--department",
            "data",
            "--title",
            "T",
            "--classification",
            "internal",
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
    all.into_iter().filter(|(p, _)| p.starts_with("_delta_log") || text.contains(&*p.to_string_lossy())).collect()
}

/// Starts `tverr serve` on a free loopback port.
pub fn start(t: &Tverr) -> Server {
    start_with(t, &[])
}

/// A running `tverr serve`, killed when dropped; `.1` is its port.
pub struct Server(pub Child, pub u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tverr serve` on a free loopback port with extra arguments, and waits until it listens.
pub fn start_with(t: &Tverr, extra: &[&str]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = t
        .command()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// An API token for a local user.
pub fn token(t: &Tverr, user: &str) -> String {
    t.ok(&["token", "create", "--user", user]).trim().to_string()
}

/// Percent-encodes a URL value; `/` is kept when `keep_slash` (a matrikkel unit's slashes as
/// path syntax).
pub fn percent_encode(v: &str, keep_slash: bool) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b'/' if keep_slash => "/".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A GET with an optional bearer token and an optional declared purpose (`Tverr-Purpose`).
pub fn get_as(port: u16, path: &str, token: Option<&str>, purpose: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if let Some(p) = purpose {
        headers.push(("Tverr-Purpose", p));
    }
    send(port, "GET", path, &headers, None)
}

/// A minimal HTTP/1.1 GET; returns (status, content type, body).
pub fn get(port: u16, path: &str) -> (u16, String, String) {
    request(port, "GET", path, &[], None)
}

/// A minimal HTTP/1.1 request with extra headers and an optional JSON body.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String, String) {
    let mut all = headers.to_vec();
    if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        all.push(("Content-Type", "application/json"));
    }
    let r = send(port, method, path, &all, body.map(str::as_bytes));
    let ctype = r.header("content-type").unwrap_or_default().to_string();
    (r.status, ctype, String::from_utf8_lossy(&r.body).into_owned())
}

/// A response: status, headers (names in lower case) and body bytes.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A minimal HTTP/1.1 request with any body.
pub fn send(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
    send_within(port, method, path, headers, body, None).expect("a response")
}

/// [`send`], giving up (`None`) when the server has not answered within `limit`.
pub fn send_within(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    limit: Option<Duration>,
) -> Option<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(limit).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.map_or(0, <[u8]>::len)));
    s.write_all(head.as_bytes()).unwrap();
    if let Some(b) = body {
        // A server may refuse a large body before reading it all.
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        assert!(limit.is_some(), "reading the response: {e}");
        return None;
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        assert!(limit.is_some(), "no response head");
        return None;
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = &raw[split + 4..];
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    Some(Response { status, headers, body })
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = body.windows(2).position(|w| w == b"\r\n").expect("a chunk size");
        let n = usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + n]);
        body = &body[end + 2 + n + 2..];
    }
}

/// Runs SQL against a SQLite catalogue with Python's sqlite3 module (an independent client) and
/// returns the rows as Python prints them.
pub fn sqlite(db: &std::path::Path, sql: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); r = c.execute(sys.argv[2]).fetchall(); c.commit(); print(r)"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An RSA key pair for signing test tokens.
pub struct Rsa {
    pub pem: Vec<u8>,
    pub public_pem: Vec<u8>,
    /// The modulus, base64url (a JWK's `n`).
    pub n: String,
}

/// A fresh 2048-bit RSA key, made with the openssl command.
pub fn rsa_key(dir: &std::path::Path, name: &str) -> Rsa {
    use base64::Engine as _;
    let path = dir.join(format!("{name}.pem"));
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&path)
        .output()
        .expect("openssl");
    assert!(ok.status.success(), "openssl genpkey failed");
    let modulus = Command::new("openssl").args(["rsa", "-noout", "-modulus", "-in"]).arg(&path).output().expect("openssl");
    let hex_n = String::from_utf8(modulus.stdout).unwrap().trim().trim_start_matches("Modulus=").to_string();
    let public = Command::new("openssl").args(["rsa", "-pubout", "-in"]).arg(&path).output().expect("openssl");
    Rsa {
        pem: std::fs::read(&path).unwrap(),
        public_pem: public.stdout,
        n: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hex::decode(hex_n).unwrap()),
    }
}

/// An API token and a citizen's token, so that [`every_change_moves_the_generation_on`] has a
/// row of each token table to change.
pub fn tokens_for_the_generation_test(t: &Tverr) {
    t.ok(&["token", "create", "--user", "tove"]);
    let person = t.ok(&["sql", "--format", "csv", "SELECT fodselsnummer FROM hamar.innbyggere ORDER BY 1 LIMIT 1"]);
    t.ok(&["token", "create", "--citizen", person.lines().nth(1).expect("a person")]);
}

/// Changes one row of every table access decisions read (an update that keeps the values, an
/// insert and a delete), through `exec` (SQL in, its output out), and checks that each change
/// moves the catalogue generation on. `row` selects one row of a table in the dialect.
pub fn every_change_moves_the_generation_on(exec: &dyn Fn(&str) -> String, row: &dyn Fn(&str) -> String) {
    let updates = [
        ("organizations", "name"),
        ("departments", "name"),
        ("datasets", "title"),
        ("dataset_columns", "name"),
        ("legal_bases", "hjemmel"),
        ("purposes", "name"),
        ("agreements", "state"),
        ("subject_indexed", "version"),
        ("users", "role"),
        ("api_tokens", "expires_at"),
        ("citizen_tokens", "expires_at"),
        ("protection_registers", "status_column"),
        ("protection_links", "target_column"),
        ("guardianship_registers", "parent_column"),
    ];
    let covered: Vec<&str> = updates.iter().map(|(t, _)| *t).collect();
    assert_eq!(covered, tverr_access::GENERATION_TABLES, "every table that moves the generation on is tested");
    let generation = || -> i64 {
        let out = exec("SELECT n FROM catalog_generation WHERE id = 1");
        out.trim_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or_else(|_| panic!("generation: {out:?}"))
    };
    for (table, column) in updates {
        let before = generation();
        exec(&format!("UPDATE {table} SET {column} = {column} WHERE {}", row(table)));
        assert!(generation() > before, "an update of {table} left the generation at {before}");
    }
    let before = generation();
    exec(
        "INSERT INTO legal_bases (org, slug, gdpr_article, hjemmel, created_at) SELECT org, 'generation-test', gdpr_article, hjemmel, created_at FROM legal_bases WHERE slug <> 'generation-test' LIMIT 1",
    );
    let inserted = generation();
    assert!(inserted > before, "an insert left the generation at {before}");
    exec("DELETE FROM legal_bases WHERE slug = 'generation-test'");
    assert!(generation() > inserted, "a delete left the generation at {inserted}");
}

/// Replaces the demo's property register with `n` parcels of 1 m² packed 0.2 m apart in rows
/// of 27 (up to 675 lie within 50 m of each other, and none touch), each owned by an unprotected person of the population; returns
/// the owners' person numbers by parcel (`3403-9000/{i + 1}` is `owners[i]`'s). The demo
/// must have at least `n` unprotected persons.
pub fn dense_register(t: &Tverr, n: usize) -> Vec<String> {
    let owners: Vec<String> = t
        .ok(&[
            "sql",
            "--purpose",
            "eiendomsskatt",
            "--format",
            "csv",
            &format!("SELECT fodselsnummer FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert' ORDER BY 1 LIMIT {n}"),
        ])
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_eq!(owners.len(), n, "not enough unprotected persons in the demo");
    let features: Vec<String> = owners
        .iter()
        .enumerate()
        .map(|(i, fnr)| {
            let (x, y) = (281_000.0 + (i % 27) as f64 * 1.2, 6_743_000.0 + (i / 27) as f64 * 1.2);
            let ring = format!("[[{x},{y}],[{},{y}],[{},{}],[{x},{}],[{x},{y}]]", x + 1.0, x + 1.0, y + 1.0, y + 1.0);
            format!(
                r#"{{"type":"Feature","geometry":{{"type":"Polygon","coordinates":[{ring}]}},"properties":{{"matrikkel":"3403-9000/{}","adresse":"Tettgata {}","areal_m2":1.0,"eier_fnr":"{fnr}","eier_navn":"Eier {i}","eier_orgnr":null,"takst":1000000.0}}}}"#,
                i + 1,
                i + 1
            )
        })
        .collect();
    let file = write_geojson(t, "eiendommer.geojson", &features);
    t.ok(&["ingest", "hamar/eiendommer", file.to_str().expect("path"), "--mode", "replace"]);
    owners
}

/// Writes features (JSON text each) as a GeoJSON collection in EPSG:25833 into the test's
/// directory and returns its path.
pub fn write_geojson(t: &Tverr, name: &str, features: &[String]) -> PathBuf {
    let file = t.dir.path().join(name);
    let crs = r#"{"type":"name","properties":{"name":"urn:ogc:def:crs:EPSG::25833"}}"#;
    std::fs::write(&file, format!(r#"{{"type":"FeatureCollection","crs":{crs},"features":[{}]}}"#, features.join(",")))
        .expect("write GeoJSON");
    file
}

/// A fresh database on the test cluster (`TVERR_TEST_POSTGRES_URL`, which `scripts/test` sets),
/// made with the real psql client.
pub fn fresh_database() -> String {
    let admin = std::env::var("TVERR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| panic!("TVERR_TEST_POSTGRES_URL is not set: run the tests with scripts/test, which starts PostgreSQL"));
    let suffix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000;
    let name = format!("tverr_{}_{suffix}", std::process::id());
    let status = Command::new("psql").arg(&admin).arg("-qc").arg(format!("CREATE DATABASE {name}")).status().expect("psql");
    assert!(status.success(), "psql could not create {name}");
    let base = admin.rsplit_once('/').expect("URL with a database").0;
    format!("{base}/{name}")
}

/// Asks `f` every 50 ms for up to 30 seconds until it gives a value.
pub fn wait_until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..600 {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("not within 30 seconds");
}
