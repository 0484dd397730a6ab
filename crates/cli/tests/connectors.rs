//! Connectors against real sources on loopback: an HTTP server in this test (files with ETags,
//! a paged JSON API, an API key, a source that goes down), a drop folder, and the PostgreSQL
//! that `scripts/test` starts (TVERR_TEST_POSTGRES_URL), each read by the real binary.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Tverr, sqlite};

/// What the loopback source serves: path → (status, content type, body, etag), and a log of
/// the requests it saw (path and the headers that matter).
/// One served file: status, content type, body, ETag and extra headers.
type File = (u16, String, Vec<u8>, Option<String>, Vec<(String, String)>);

#[derive(Default)]
struct Served {
    files: HashMap<String, File>,
    seen: Vec<(String, HashMap<String, String>)>,
    /// Paths whose body is sent slowly (one chunk, then a pause), to kill a run mid-way.
    slow: Vec<String>,
    /// The pause, in seconds (default 30).
    pause: Option<u64>,
}

struct Source {
    port: u16,
    state: Arc<Mutex<Served>>,
}

impl Source {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Served::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve_one(stream, &shared));
            }
        });
        Self { port, state }
    }

    fn put(&self, path: &str, content_type: &str, body: &[u8], etag: Option<&str>) {
        self.put_with(path, 200, content_type, body, etag, &[]);
    }

    fn put_with(&self, path: &str, status: u16, content_type: &str, body: &[u8], etag: Option<&str>, headers: &[(&str, &str)]) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state.lock().unwrap().files.insert(path.into(), (status, content_type.into(), body.to_vec(), etag.map(Into::into), headers));
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self, path: &str) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().seen.iter().filter(|(p, _)| p == path).map(|(_, h)| h.clone()).collect()
    }
}

fn serve_one(mut stream: std::net::TcpStream, shared: &Mutex<Served>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let (found, slow, pause) = {
        let mut s = shared.lock().unwrap();
        s.seen.push((path.clone(), headers.clone()));
        (s.files.get(&path).cloned(), s.slow.contains(&path), s.pause.unwrap_or(30))
    };
    let Some((status, content_type, body, etag, extra)) = found else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
    };
    if let Some(key) = extra.iter().find(|(k, _)| k == "require-api-key").map(|(_, v)| v.clone())
        && headers.get("x-api-key") != Some(&key)
    {
        let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
    }
    if let (Some(etag), Some(sent)) = (&etag, headers.get("if-none-match"))
        && sent == etag
    {
        let _ = stream.write_all(format!("HTTP/1.1 304 Not Modified\r\netag: {etag}\r\nconnection: close\r\n\r\n").as_bytes());
        return;
    }
    let mut head =
        format!("HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    if let Some(e) = &etag {
        head.push_str(&format!("etag: {e}\r\n"));
    }
    for (k, v) in extra.iter().filter(|(k, _)| k != "require-api-key") {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    if slow {
        let _ = stream.write_all(&body[..body.len() / 2]);
        std::thread::sleep(Duration::from_secs(pause));
        let _ = stream.write_all(&body[body.len() / 2..]);
        return;
    }
    let _ = stream.write_all(&body);
}

/// An installation with organisation `test`, department `data`, a steward there and one in
/// another department; loopback allowed as a source and `drop/` as a drop folder root.
fn installation() -> Tverr {
    let mut t = Tverr::new();
    let drop = t.dir.path().join("drop");
    std::fs::create_dir_all(&drop).unwrap();
    for (k, v) in [
        ("TVERR_CONNECTOR_ALLOW", "127.0.0.1/32,::1"),
        ("TVERR_DROP_ROOTS", drop.to_str().unwrap()),
        ("TVERR_CONNECTOR_LEASE_SECONDS", "2"),
        ("TVERR_CONNECTOR_RETRY_SECONDS", "1"),
    ] {
        t.env.push((k.to_string(), v.to_string()));
    }
    t.org();
    t.ok(&["department", "create", "test/andre", "--name", "Andre"]);
    t.ok(&["user", "create", "test/data/steward", "--role", "steward"]);
    t.ok(&["user", "create", "test/andre/other", "--role", "steward"]);
    t.ok(&["user", "create", "test/data/employee", "--role", "employee"]);
    t
}

fn versions(t: &Tverr, dataset: &str) -> usize {
    let h: serde_json::Value = serde_json::from_str(&t.ok(&["history", dataset, "--json"])).unwrap();
    h.as_array().unwrap().len()
}

fn runs(t: &Tverr, name: &str) -> Vec<serde_json::Value> {
    let out = t.ok(&["connector", "runs", name, "--json", "--as", "steward"]);
    serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().clone()
}

fn create_args<'a>(name: &'a str, dataset: &'a str, source: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args =
        vec!["connector", "create", name, "--dataset", dataset, "--source", source, "--schedule", "0 2 * * *", "--as", "steward"];
    args.extend_from_slice(extra);
    args
}

const CREATE: &[&str] = &["--create", "--department", "data", "--title", "Eiendomsskatt", "--classification", "internal"];

#[test]
fn an_http_file_makes_a_version_only_when_it_changes() {
    let t = installation();
    let src = Source::start();
    src.put("/skatt.csv", "text/csv", "gnr;bnr;belop\n1;2;1 200,50\n3;4;800\n".as_bytes(), Some("\"v1\""));
    let url = src.url("/skatt.csv");
    let mut args = create_args("skatt", "test/skatt", &url, CREATE);
    args.extend_from_slice(&["--mode", "replace"]);
    t.ok(&args);
    let out = t.ok(&["connector", "run", "skatt", "--as", "steward"]);
    assert!(out.contains("ingested") && out.contains("version 0"), "{out}");
    assert_eq!(t.sql_csv("SELECT sum(belop) AS s FROM test.skatt"), "s\n2000.5\n");

    // Unchanged: the ETag comes back as If-None-Match, the source answers 304, no version.
    let out = t.ok(&["connector", "run", "skatt", "--as", "steward"]);
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(src.requests("/skatt.csv").last().unwrap().get("if-none-match").map(String::as_str), Some("\"v1\""));
    assert_eq!(versions(&t, "test/skatt"), 1);

    // A new ETag with the same bytes: compared by SHA-256, still no version.
    src.put("/skatt.csv", "text/csv", "gnr;bnr;belop\n1;2;1 200,50\n3;4;800\n".as_bytes(), Some("\"v2\""));
    assert!(t.ok(&["connector", "run", "skatt", "--as", "steward"]).contains("unchanged"));
    assert_eq!(versions(&t, "test/skatt"), 1);

    // Changed: one version.
    src.put("/skatt.csv", "text/csv", "gnr;bnr;belop\n1;2;1 300\n".as_bytes(), Some("\"v3\""));
    assert!(t.ok(&["connector", "run", "skatt", "--as", "steward"]).contains("version 1"));
    assert_eq!(versions(&t, "test/skatt"), 2);
    assert_eq!(t.sql_csv("SELECT sum(belop) AS s FROM test.skatt"), "s\n1300.0\n");
    let history = t.ok(&["history", "test/skatt"]);
    assert!(history.contains("steward"), "the version is written in the steward's name: {history}");

    // A bad file: the run fails with the location of the problem, and nothing changes.
    src.put("/skatt.csv", "text/csv", "gnr;bnr;belop\n1;2;ikke et tall\n".as_bytes(), Some("\"v4\""));
    let (_, err) = t.fail(&["connector", "run", "skatt", "--as", "steward"]);
    assert!(err.contains("line 2") && err.contains("belop"), "{err}");
    assert_eq!(versions(&t, "test/skatt"), 2);
    let r = runs(&t, "skatt");
    assert_eq!(r[0]["status"], "failed");
    assert!(r[0]["error"].as_str().unwrap().contains("line 2"), "{r:?}");
    let show: serde_json::Value = serde_json::from_str(&t.ok(&["connector", "list", "--json", "--as", "steward"])).unwrap();
    assert_eq!(show[0]["failures"], 1);
    assert_eq!(show[0]["last_run"]["status"], "failed");

    // The source down: a failure with its status, the data as it was.
    src.put_with("/skatt.csv", 503, "text/plain", b"vedlikehold", None, &[]);
    let (_, err) = t.fail(&["connector", "run", "skatt", "--as", "steward"]);
    assert!(err.contains("503"), "{err}");
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.skatt"), "n\n1\n");
    let show: serde_json::Value = serde_json::from_str(&t.ok(&["connector", "list", "--json", "--as", "steward"])).unwrap();
    assert_eq!(show[0]["failures"], 2);

    // Every ingest the connector made is in the access log, on its channel, in the steward's name.
    let log = sqlite(
        &t.data().join("catalog.db"),
        "SELECT count(*) FROM audit_log WHERE kind = 'ingest' AND payload LIKE '%\"channel\":\"connector\"%' AND payload LIKE '%steward%'",
    );
    assert_eq!(log, "[(2,)]");
}

#[test]
fn secrets_are_sealed_and_never_shown_and_an_api_key_is_sent() {
    let t = installation();
    let src = Source::start();
    src.put_with("/api.csv", 200, "text/csv", b"a,b\n1,2\n", None, &[("require-api-key", "hemmelig-nokkel-123")]);
    let url = src.url("/api.csv").replace("http://", "http://lese:passord-456@");
    let mut args = create_args("api", "test/api", &url, CREATE);
    args.extend_from_slice(&["--header", "X-Api-Key: hemmelig-nokkel-123"]);
    let created = t.ok(&args);
    assert!(t.ok(&["connector", "run", "api", "--as", "steward"]).contains("ingested"));
    let seen = src.requests("/api.csv");
    assert_eq!(seen[0].get("x-api-key").map(String::as_str), Some("hemmelig-nokkel-123"));
    assert!(seen[0].get("authorization").is_some_and(|a| a.starts_with("Basic ")), "basic auth from the URL's user and password");
    let shown =
        t.ok(&["connector", "show", "api", "--as", "steward"]) + &t.ok(&["connector", "list", "--json", "--as", "steward"]) + &created;
    for secret in ["hemmelig-nokkel-123", "passord-456", "tverr_"] {
        assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
    }
    assert!(shown.contains("X-Api-Key"), "the header's name is shown");
    // Not in the catalogue in clear, not in the access log.
    let db = t.data().join("catalog.db");
    let dump = sqlite(&db, "SELECT name, source, settings, secrets, state FROM connectors")
        + &sqlite(&db, "SELECT payload FROM audit_log")
        + &sqlite(&db, "SELECT * FROM connector_runs");
    for secret in ["hemmelig-nokkel-123", "passord-456"] {
        assert!(!dump.contains(secret), "{secret} stored in clear");
    }
    assert!(t.data().join("connector-key").exists(), "the sealing key lives outside the catalogue");
    // Without the key the secrets cannot be opened: the run fails, nothing is written.
    std::fs::remove_file(t.data().join("connector-key")).unwrap();
    let (_, err) = t.fail(&["connector", "run", "api", "--as", "steward"]);
    assert!(err.contains("cannot be opened"), "{err}");
    assert_eq!(versions(&t, "test/api"), 1);
}

#[test]
fn who_may_make_run_and_see_a_connector() {
    let t = installation();
    let src = Source::start();
    src.put("/a.csv", "text/csv", b"a\n1\n", None);
    let url = src.url("/a.csv");
    // The operator alone makes none: a connector writes in a user's name.
    let (_, err) = t.fail(&["connector", "create", "x", "--dataset", "test/a", "--source", &url, "--schedule", "@daily"]);
    assert!(err.contains("--as"), "{err}");
    // A steward of another department, or an employee, may not write here: a dataset they may
    // not write is the same 404 whether it exists or not (nothing tells a hidden one exists).
    let mut other = create_args("x", "test/a", &url, CREATE);
    *other.iter_mut().find(|a| **a == "steward").unwrap() = "other";
    let (_, missing) = t.fail(&other);
    assert!(missing.contains("no dataset test/a"), "{missing}");
    let mut employee = create_args("x", "test/a", &url, CREATE);
    *employee.iter_mut().find(|a| **a == "steward").unwrap() = "employee";
    assert!(t.fail(&employee).1.contains("no dataset test/a"));
    t.ok(&["org", "create", "hias", "--name", "Hias IKS", "--orgnr", "971028300"]);
    t.ok(&["department", "create", "hias/vann", "--name", "Vann"]);
    t.ok(&["user", "create", "hias/vann/hias-steward", "--role", "steward"]);
    let hidden = t.dir.path().join("hidden.csv");
    std::fs::write(&hidden, "a\n1\n").unwrap();
    t.ok(&[
        "ingest",
        "hias/malere",
        hidden.to_str().unwrap(),
        "--create",
        "--department",
        "vann",
        "--title",
        "M",
        "--classification",
        "confidential",
    ]);
    for dataset in ["hias/malere", "hias/finnes-ikke"] {
        let mut args =
            create_args("x", dataset, &url, &["--create", "--department", "data", "--title", "T", "--classification", "internal"]);
        let (code, err) = t.fail(&args);
        assert_eq!(code, 1, "{dataset}: {err}");
        assert!(err.contains(&format!("no dataset {dataset} exists")) && !err.contains("vann"), "{dataset}: {err}");
        args.truncate(11);
        assert!(t.fail(&args).1.contains(&format!("no dataset {dataset} exists")), "{dataset} without --create");
    }
    // One they see (their own organisation's) is refused as such.
    let visible = t.dir.path().join("v.csv");
    std::fs::write(&visible, "a\n1\n").unwrap();
    t.create("test/synlig", &visible, &[]);
    let mut args = create_args("x", "test/synlig", &url, &[]);
    *args.iter_mut().find(|a| **a == "steward").unwrap() = "other";
    assert_eq!(t.fail(&args).0, 77);
    t.ok(&create_args("a", "test/a", &url, CREATE));
    // The other department's steward does not see it, run it or delete it.
    assert_eq!(t.ok(&["connector", "list", "--json", "--as", "other"]).trim(), "[]");
    for cmd in ["show", "run", "runs", "delete"] {
        let (_, err) = t.fail(&["connector", cmd, "a", "--as", "other"]);
        assert!(err.contains("does not exist"), "{cmd}: {err}");
    }
    // Bad settings are refused with the setting named, and nothing is made.
    for (extra, field) in [
        (vec!["--schedule", "hver dag"], "schedule"),
        (vec!["--source", "ftp://x/y"], "source"),
        (vec!["--source", "file:///etc/"], "TVERR_DROP_ROOTS"),
        (vec!["--source", "file:///tmp/no/such/dir/"], "TVERR_DROP_ROOTS"),
        (vec!["--query", "SELECT 1"], "query"),
        (vec!["--mode", "upsert"], "key"),
        (vec!["--header", "X Bad: 1"], "header"),
        (vec!["--header", "Host: intern.example"], "header"),
        (vec!["--source", "postgres://u@8.8.8.8:5432/db?host=/var/run/postgresql", "--query", "SELECT 1"], "parameter"),
        (vec!["--source", "postgres://u@8.8.8.8/db?password=x", "--query", "SELECT 1"], "parameter"),
    ] {
        let mut args = create_args("bad", "test/b", &url, CREATE);
        for pair in extra.chunks(2) {
            if let Some(i) = args.iter().position(|a| *a == pair[0]) {
                args[i + 1] = pair[1];
            } else {
                args.extend_from_slice(pair);
            }
        }
        let (_, err) = t.fail(&args);
        assert!(err.contains(field), "{extra:?}: {err}");
    }
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&t.ok(&["connector", "list", "--json", "--as", "steward"]))
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Deleting revokes its token: the steward's token list no longer has an active one for it.
    t.ok(&["connector", "delete", "a", "--as", "steward"]);
    let db = t.data().join("catalog.db");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM api_tokens WHERE username = 'steward' AND revoked_at IS NULL"), "[(0,)]");
    assert_eq!(sqlite(&db, "SELECT count(*) FROM audit_log WHERE kind = 'connector-change'"), "[(2,)]");
}

#[test]
fn internal_addresses_are_refused_unless_the_operator_allows_them() {
    let t = installation();
    let src = Source::start();
    src.put("/a.csv", "text/csv", b"a\n1\n", None);
    t.ok(&create_args("a", "test/a", &src.url("/a.csv"), CREATE));
    let strict = Tverr { dir: tempfile::tempdir().unwrap(), env: vec![("TVERR_DATA".into(), t.data().to_str().unwrap().into())] };
    let out = strict.command().args(["connector", "run", "a", "--as", "steward"]).env_remove("TVERR_CONNECTOR_ALLOW").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("TVERR_CONNECTOR_ALLOW"), "{err}");
    assert!(src.requests("/a.csv").is_empty(), "no request reached the address");
    // A name that resolves to loopback is refused like the address.
    let by_name = src.url("/a.csv").replace("127.0.0.1", "localhost");
    let out = strict.command().args(create_args("b", "test/b", &by_name, CREATE)).env_remove("TVERR_CONNECTOR_ALLOW").output().unwrap();
    assert!(out.status.success());
    let out = strict.command().args(["connector", "run", "b", "--as", "steward"]).env_remove("TVERR_CONNECTOR_ALLOW").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an address Tverr may reach"), "{}", String::from_utf8_lossy(&out.stderr));
    // A redirect is not followed (it could lead anywhere).
    src.put_with("/moved.csv", 302, "text/plain", b"", None, &[("location", "http://169.254.169.254/latest/meta-data/")]);
    t.ok(&create_args("c", "test/c", &src.url("/moved.csv"), CREATE));
    let (_, err) = t.fail(&["connector", "run", "c", "--as", "steward"]);
    assert!(err.contains("redirects are not followed"), "{err}");
}

#[test]
fn a_paged_json_api_is_read_page_by_page() {
    let t = installation();
    let src = Source::start();
    let page = |rows: &[(&str, i64)], next: Option<&str>| {
        let data: Vec<_> = rows.iter().map(|(n, p)| serde_json::json!({"navn": n, "plasser": p})).collect();
        serde_json::json!({"data": data, "links": {"next": next}}).to_string()
    };
    src.put(
        "/api/barnehager",
        "application/json",
        page(&[("Solsikken", 40), ("Trollskogen", 55)], Some("/api/barnehager?side=2")).as_bytes(),
        None,
    );
    src.put_with(
        "/api/barnehager?side=2",
        200,
        "application/json",
        page(&[("Æblehaven", 30)], None).as_bytes(),
        None,
        &[("link", "</api/barnehager?side=3>; rel=\"next\"")],
    );
    src.put("/api/barnehager?side=3", "application/json", page(&[("Østby", 25)], None).as_bytes(), None);
    let api = src.url("/api/barnehager");
    let mut args = create_args("bhg", "test/bhg", &api, CREATE);
    args.extend_from_slice(&["--pointer", "/data", "--next", "/links/next", "--mode", "replace"]);
    t.ok(&args);
    assert!(t.ok(&["connector", "run", "bhg", "--as", "steward"]).contains("4 rows"));
    assert_eq!(
        t.sql_csv("SELECT navn, plasser FROM test.bhg ORDER BY navn"),
        "navn,plasser\nSolsikken,40\nTrollskogen,55\nÆblehaven,30\nØstby,25\n"
    );
    assert!(t.ok(&["connector", "run", "bhg", "--as", "steward"]).contains("unchanged"));
    // A next link to another origin is refused.
    src.put("/api/barnehager?side=3", "application/json", page(&[("Østby", 25)], Some("http://example.invalid/x")).as_bytes(), None);
    let (_, err) = t.fail(&["connector", "run", "bhg", "--as", "steward"]);
    assert!(err.contains("leaves"), "{err}");
    // A page that is not JSON names where.
    src.put("/api/barnehager?side=3", "application/json", b"{\"data\": [1, 2,", None);
    let (_, err) = t.fail(&["connector", "run", "bhg", "--as", "steward"]);
    assert!(err.contains("page 3") && err.contains("line 1"), "{err}");
    assert_eq!(versions(&t, "test/bhg"), 1);
}

#[test]
fn a_drop_folder_delivers_each_file_once_and_sets_bad_ones_aside() {
    let t = installation();
    let drop = t.dir.path().join("drop/test/data/skatt");
    std::fs::create_dir_all(&drop).unwrap();
    std::fs::write(drop.join("2026-01.csv"), "gnr;belop\n1;100\n").unwrap();
    std::fs::write(drop.join("2026-02.csv"), "gnr;belop\n2;ikke\n").unwrap();
    std::fs::write(drop.join("2026-03.csv"), "gnr;belop\n3;300\n").unwrap();
    std::fs::write(drop.join("2026-04.csv.part"), "gnr;belop\n4;").unwrap();
    let url = format!("file://{}/", drop.display());
    let mut args = create_args("mappe", "test/mappe", &url, CREATE);
    args.extend_from_slice(&["--type", "belop=integer"]);
    t.ok(&args);
    // One folder, one connector, however the folder is spelled; none inside another's folder.
    std::fs::create_dir_all(drop.join("processed")).unwrap();
    let root = t.dir.path().join("drop");
    for other in [
        format!("file://{}//", drop.display()),
        format!("file://{}//test/data/skatt/", root.display()),
        format!("file://{}/test/data/%73katt/", root.display()),
        format!("file://{}/processed/", drop.display()),
        format!("file://{}/test/data/", root.display()),
    ] {
        let (_, err) = t.fail(&create_args("mappe2", "test/mappe2", &other, CREATE));
        assert!(err.contains("another connector"), "{other}: {err}");
    }
    // Another department's folder is refused.
    std::fs::create_dir_all(root.join("test/andre/x")).unwrap();
    let (_, err) = t.fail(&create_args("mappe3", "test/mappe3", &format!("file://{}/test/andre/x/", root.display()), CREATE));
    assert!(err.contains("test/data/"), "{err}");
    let out = t.run(&["connector", "run", "mappe", "--as", "steward"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2026-01.csv") && text.contains("2026-03.csv"), "{text}");
    assert_eq!(t.sql_csv("SELECT sum(belop) AS s FROM test.mappe"), "s\n400\n");
    assert_eq!(versions(&t, "test/mappe"), 2);
    assert!(drop.join("processed/2026-01.csv").exists() && drop.join("processed/2026-03.csv").exists());
    assert!(drop.join("failed/2026-02.csv").exists());
    let note = std::fs::read_to_string(drop.join("failed/2026-02.csv.error.txt")).unwrap();
    assert!(note.contains("line 2") && note.contains("belop"), "{note}");
    assert!(drop.join("2026-04.csv.part").exists(), "a file still being written waits");
    let r = runs(&t, "mappe");
    assert_eq!(r.iter().filter(|r| r["status"] == "failed").count(), 1, "{r:?}");
    // Nothing new: no version, no change.
    assert!(t.ok(&["connector", "run", "mappe", "--as", "steward"]).contains("unchanged"));
    assert_eq!(versions(&t, "test/mappe"), 2);
}

#[test]
fn a_run_killed_midway_writes_nothing_and_the_next_run_completes_it() {
    let t = installation();
    let src = Source::start();
    let mut body = String::from("nr;verdi\n");
    for i in 0..50_000 {
        body.push_str(&format!("{i};{}\n", i * 2));
    }
    src.put("/stor.csv", "text/csv", body.as_bytes(), None);
    src.state.lock().unwrap().slow.push("/stor.csv".into());
    t.ok(&create_args("stor", "test/stor", &src.url("/stor.csv"), CREATE));
    let mut child = t.command().args(["connector", "run", "stor", "--as", "steward"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while src.requests("/stor.csv").is_empty() {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!t.lake().join("test/stor").exists() || versions(&t, "test/stor") == 0, "no version from a killed run");
    let db = t.data().join("catalog.db");
    assert_eq!(sqlite(&db, "SELECT status FROM connector_runs"), "[('running',)]");
    // Another node may not take it while the dead run's lease holds; after it, it may.
    let (_, err) = t.fail(&["connector", "run", "stor", "--as", "steward"]);
    assert!(err.contains("another node"), "{err}");
    std::thread::sleep(Duration::from_secs(3));
    src.state.lock().unwrap().slow.clear();
    assert!(t.ok(&["connector", "run", "stor", "--as", "steward"]).contains("50000 rows"));
    let r = runs(&t, "stor");
    assert_eq!(r.iter().map(|r| r["status"].as_str().unwrap()).collect::<Vec<_>>(), ["ingested", "interrupted"]);
    assert_eq!(t.sql_csv("SELECT count(*) AS n FROM test.stor"), "n\n50000\n");
}

#[test]
fn the_server_runs_due_connectors_and_retries_a_failing_one() {
    let t = installation();
    let src = Source::start();
    src.put_with("/ned.csv", 503, "text/plain", b"", None, &[]);
    t.ok(&create_args("ned", "test/ned", &src.url("/ned.csv"), CREATE));
    // The first run fails; retries follow after 1 s, 2 s, … (TVERR_CONNECTOR_RETRY_SECONDS=1).
    let _ = t.run(&["connector", "run", "ned", "--as", "steward"]);
    let mut server = t.command();
    server.env("TVERR_CONNECTOR_TICK_SECONDS", "1");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = server
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _server = common::Server(child, port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while src.requests("/ned.csv").len() < 3 {
        assert!(Instant::now() < deadline, "the server did not retry: {} requests", src.requests("/ned.csv").len());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The source comes back: the next retry ingests, and the failures are reset.
    src.put("/ned.csv", "text/csv", b"a\n1\n", None);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let list: serde_json::Value = serde_json::from_str(&t.ok(&["connector", "list", "--json", "--as", "steward"])).unwrap();
        if list[0]["failures"] == 0 && list[0]["last_run"]["status"] == "ingested" {
            assert_eq!(list[0]["last_run"]["trigger"], "retry");
            break;
        }
        assert!(Instant::now() < deadline, "no successful retry: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(versions(&t, "test/ned"), 1);
}

fn postgres() -> Option<String> {
    std::env::var("TVERR_TEST_POSTGRES_URL").ok()
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").arg(url).args(["-qtAc", sql]).output().expect("psql");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_postgresql_table_is_pulled_in_full_and_then_incrementally() {
    let Some(admin) = postgres() else {
        panic!("TVERR_TEST_POSTGRES_URL is not set: run the tests with scripts/test, which starts PostgreSQL");
    };
    let db = format!("sak_{}", std::process::id());
    psql(&admin, &format!("CREATE DATABASE {db}"));
    let url = format!("{}/{db}", admin.rsplit_once('/').unwrap().0);
    psql(
        &url,
        "CREATE TABLE saker (saksnr int PRIMARY KEY, fodselsnummer text, tittel text, endret timestamptz NOT NULL);
         INSERT INTO saker VALUES (1, '17858012392', 'Byggesøknad, garasje', '2026-11-01 10:00+01'),
                                  (2, '01817545781', 'Søknad om barnehageplass', '2026-11-02 11:00+01'),
                                  (3, '17858012392', 'Klage på eiendomsskatt', '2026-11-03 12:00+01');",
    );
    let t = installation();
    let mut args = create_args("saker", "test/saker", &url, CREATE);
    args.extend_from_slice(&[
        "--query",
        "SELECT saksnr, fodselsnummer, tittel, endret FROM saker",
        "--incremental",
        "endret",
        "--mode",
        "upsert",
        "--key",
        "saksnr",
        "--subject",
        "fodselsnummer=person",
    ]);
    t.ok(&args);
    assert!(t.ok(&["connector", "run", "saker", "--as", "steward"]).contains("3 rows"));
    assert!(t.ok(&["connector", "run", "saker", "--as", "steward"]).contains("unchanged"), "nothing past the high-water mark");
    psql(
        &url,
        "UPDATE saker SET tittel = 'Byggesøknad, carport', endret = '2026-12-01 09:00+01' WHERE saksnr = 1;
                INSERT INTO saker VALUES (4, '01817545781', 'Skjenkebevilling', '2026-12-02 09:00+01');",
    );
    let out = t.ok(&["connector", "run", "saker", "--as", "steward"]);
    assert!(out.contains("2 rows") && out.contains("version 1"), "only the changed rows: {out}");
    assert_eq!(
        t.sql_csv("SELECT saksnr, tittel FROM test.saker ORDER BY saksnr"),
        "saksnr,tittel\n1,\"Byggesøknad, carport\"\n2,Søknad om barnehageplass\n3,Klage på eiendomsskatt\n4,Skjenkebevilling\n"
    );
    // The people the rows name are indexed like any upload's.
    let found = t.ok(&["lookup", "person", "01817545781", "--purpose", "test"]);
    assert!(found.contains("Skjenkebevilling"), "{found}");

    // Read-only, one statement: a query that writes or chains statements fails and changes nothing.
    for (name, query) in [
        ("sletter", "DELETE FROM saker RETURNING *"),
        ("kjede", "SELECT * FROM saker; DROP TABLE saker"),
        ("kopi", "SELECT * FROM saker) TO PROGRAM 'touch /tmp/tverr-pwned' --"),
    ] {
        let dataset = format!("test/{name}");
        let mut args = create_args(name, &dataset, &url, CREATE);
        args.extend_from_slice(&["--query", query]);
        t.ok(&args);
        let (_, err) = t.fail(&["connector", "run", name, "--as", "steward"]);
        assert!(err.contains("query"), "{name}: {err}");
    }
    assert_eq!(psql(&url, "SELECT count(*) FROM saker"), "4");
    assert!(!std::path::Path::new("/tmp/tverr-pwned").exists());
    // A full pull of a query without a change makes no version.
    let mut args = create_args("alle", "test/alle", &url, CREATE);
    args.extend_from_slice(&["--query", "SELECT saksnr, tittel FROM saker ORDER BY saksnr", "--mode", "replace"]);
    t.ok(&args);
    assert!(t.ok(&["connector", "run", "alle", "--as", "steward"]).contains("4 rows"));
    assert!(t.ok(&["connector", "run", "alle", "--as", "steward"]).contains("unchanged"));
    assert_eq!(versions(&t, "test/alle"), 1);
    psql(&admin, &format!("DROP DATABASE {db} WITH (FORCE)"));
}

/// The MariaDB server `scripts/test` starts: its socket (for the administrator's client) and
/// its TCP port on loopback (for the connector).
fn mariadb() -> (String, u16) {
    let socket = std::env::var("TVERR_TEST_MYSQL_SOCKET")
        .unwrap_or_else(|_| panic!("TVERR_TEST_MYSQL_SOCKET is not set: run the tests with scripts/test, which starts MariaDB"));
    let port = std::env::var("TVERR_TEST_MYSQL_PORT").ok().and_then(|p| p.parse().ok()).expect("TVERR_TEST_MYSQL_PORT");
    (socket, port)
}

/// Runs SQL as MariaDB's administrator with the real client.
fn mariadb_sql(socket: &str, sql: &str) -> String {
    let out =
        Command::new("mariadb").args(["--no-defaults", "--socket", socket, "-u", "root", "-N", "-B", "-e", sql]).output().expect("mariadb");
    assert!(out.status.success(), "mariadb: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_mariadb_table_is_pulled_in_full_and_then_incrementally() {
    let (socket, port) = mariadb();
    let db = format!("sak_{}", std::process::id());
    let user = format!("lese_{}", std::process::id());
    mariadb_sql(
        &socket,
        &format!(
            "CREATE DATABASE {db} CHARACTER SET utf8mb4;
             CREATE TABLE {db}.saker (saksnr INT PRIMARY KEY, fodselsnummer VARCHAR(11), tittel VARCHAR(200),
                                      belop DECIMAL(12,2), endret DATETIME(3) NOT NULL);
             INSERT INTO {db}.saker VALUES (1, '17858012392', 'Byggesøknad, garasje', 1250.50, '2026-11-01 10:00:00'),
                                           (2, '01817545781', 'Søknad om barnehageplass', NULL, '2026-11-02 11:00:00'),
                                           (3, '17858012392', 'Klage på \"eiendomsskatt\"', 0.10, '2026-11-03 12:00:00');
             CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'Lese-passord-77';
             GRANT SELECT ON {db}.* TO '{user}'@'127.0.0.1';"
        ),
    );
    let url = format!("mysql://{user}@127.0.0.1:{port}/{db}");
    let mut t = installation();
    t.env.push(("SAK_PASSORD".into(), "Lese-passord-77".into()));
    let mut args = create_args("saker", "test/saker", &url, CREATE);
    args.extend_from_slice(&[
        "--password-env",
        "SAK_PASSORD",
        "--query",
        "SELECT saksnr, fodselsnummer, tittel, belop, endret FROM saker",
        "--incremental",
        "endret",
        "--mode",
        "upsert",
        "--key",
        "saksnr",
        "--subject",
        "fodselsnummer=person",
    ]);
    t.ok(&args);
    let shown = t.ok(&["connector", "show", "saker", "--as", "steward"]);
    assert!(shown.contains("(mysql)") && shown.contains("kept sealed") && !shown.contains("Lese-passord-77"), "{shown}");
    assert!(t.ok(&["connector", "run", "saker", "--as", "steward"]).contains("3 rows"));
    assert!(t.ok(&["connector", "run", "saker", "--as", "steward"]).contains("unchanged"), "nothing past the high-water mark");
    mariadb_sql(
        &socket,
        &format!(
            "UPDATE {db}.saker SET tittel = 'Byggesøknad, carport', endret = '2026-12-01 09:00:00.250' WHERE saksnr = 1;
             INSERT INTO {db}.saker VALUES (4, '01817545781', 'Skjenkebevilling', 99.90, '2026-12-02 09:00:00');"
        ),
    );
    let out = t.ok(&["connector", "run", "saker", "--as", "steward"]);
    assert!(out.contains("2 rows") && out.contains("version 1"), "only the changed rows: {out}");
    assert_eq!(
        t.sql_csv("SELECT saksnr, tittel, belop FROM test.saker ORDER BY saksnr"),
        "saksnr,tittel,belop\n1,\"Byggesøknad, carport\",1250.5\n2,Søknad om barnehageplass,\n3,\"Klage på \"\"eiendomsskatt\"\"\",0.1\n4,Skjenkebevilling,99.9\n"
    );
    let found = t.ok(&["lookup", "person", "01817545781", "--purpose", "test"]);
    assert!(found.contains("Skjenkebevilling"), "{found}");

    // One SELECT, read-only, no locking read and no executable comment: whatever else a query
    // tries fails and changes nothing.
    for (name, query) in [
        ("sletter", "DELETE FROM saker"),
        ("kjede", "SELECT * FROM saker; DROP TABLE saker"),
        ("utbrudd", "SELECT * FROM saker) AS q; DROP TABLE saker; SELECT * FROM (SELECT 1"),
        ("kjorbar", "/*! DROP TABLE saker */ SELECT 1"),
        ("fil", "SELECT * FROM saker INTO OUTFILE '/tmp/tverr-mysql-pwned'"),
        ("prosedyre", "CALL mysql.nothing()"),
        ("las", "SELECT saksnr FROM saker LOCK IN SHARE MODE"),
        ("kommentar", "SELECT 1 AS a /*!50000 , (SELECT 1) */"),
    ] {
        let dataset = format!("test/{name}");
        let mut args = create_args(name, &dataset, &url, CREATE);
        args.extend_from_slice(&["--password-env", "SAK_PASSORD", "--query", query]);
        t.ok(&args);
        let (_, err) = t.fail(&["connector", "run", name, "--as", "steward"]);
        assert!(err.contains("query"), "{name}: {err}");
        assert!(!err.contains("Lese-passord-77"), "{err}");
    }
    assert_eq!(mariadb_sql(&socket, &format!("SELECT count(*) FROM {db}.saker")), "4");
    assert!(!std::path::Path::new("/tmp/tverr-mysql-pwned").exists());
    // A full pull without a change makes no version; a parameter that could name a socket or
    // another host is refused when the connector is made.
    let mut args = create_args("alle", "test/alle", &url, CREATE);
    args.extend_from_slice(&[
        "--password-env",
        "SAK_PASSORD",
        "--query",
        "SELECT saksnr, tittel FROM saker ORDER BY saksnr",
        "--mode",
        "replace",
    ]);
    t.ok(&args);
    assert!(t.ok(&["connector", "run", "alle", "--as", "steward"]).contains("4 rows"));
    assert!(t.ok(&["connector", "run", "alle", "--as", "steward"]).contains("unchanged"));
    assert_eq!(versions(&t, "test/alle"), 1);
    let bad = format!("{url}?socket=/run/mysqld/mysqld.sock");
    let (_, err) = t.fail(&create_args("sokkel", "test/sokkel", &bad, CREATE));
    assert!(err.contains("takes no parameter \"socket\""), "{err}");
    // A wrong password is the run's error, without the password.
    let mut t2 = installation();
    t2.env.push(("SAK_PASSORD".into(), "feil-passord".into()));
    let mut args = create_args("feil", "test/feil", &url, CREATE);
    args.extend_from_slice(&["--password-env", "SAK_PASSORD", "--query", "SELECT 1 AS en"]);
    t2.ok(&args);
    let (_, err) = t2.fail(&["connector", "run", "feil", "--as", "steward"]);
    assert!(err.contains("cannot connect") && !err.contains("feil-passord"), "{err}");
    mariadb_sql(&socket, &format!("DROP DATABASE {db}; DROP USER '{user}'@'127.0.0.1';"));
}

/// Puts an object into the test S3 server (moto) with the real curl.
fn s3_put(endpoint: &str, key: &str, body: &str) {
    let bucket = std::env::var("TVERR_TEST_S3_BUCKET").unwrap_or_else(|_| "tverr-test".into());
    let out = Command::new("curl")
        .args(["-fsS", "-X", "PUT", "-H", "Content-Type: text/csv", "--data-binary", body, &format!("{endpoint}/{bucket}/{key}")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "PUT {key}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_s3_prefix_delivers_each_new_object_once() {
    let endpoint = std::env::var("TVERR_TEST_S3_ENDPOINT")
        .unwrap_or_else(|_| panic!("TVERR_TEST_S3_ENDPOINT is not set: run the tests with scripts/test, which starts the S3 server"));
    let bucket = std::env::var("TVERR_TEST_S3_BUCKET").unwrap_or_else(|_| "tverr-test".into());
    let prefix = format!("levering-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    let mut t = installation();
    t.env.push(("S3_NOKKEL".into(), "hemmelig-s3-nokkel".into()));
    let source = format!("s3://tverr-leser@{bucket}/{prefix}/malere/?endpoint={endpoint}&region=eu-north-1");
    let mut args = create_args("malere", "test/malere", &source, CREATE);
    args.extend_from_slice(&["--password-env", "S3_NOKKEL", "--mode", "append"]);
    t.ok(&args);
    assert!(t.ok(&["connector", "run", "malere", "--as", "steward"]).contains("unchanged"), "an empty prefix");
    s3_put(&endpoint, &format!("{prefix}/malere/a.csv"), "maler;stand\nM-1;10\nM-2;20\n");
    // Not right under the prefix, or still being written: not delivered.
    s3_put(&endpoint, &format!("{prefix}/malere/arkiv/gammel.csv"), "maler;stand\nM-9;90\n");
    s3_put(&endpoint, &format!("{prefix}/malere/b.csv.part"), "maler;stand\nM-8;80\n");
    s3_put(&endpoint, &format!("{prefix}/andre.csv"), "maler;stand\nM-7;70\n");
    let out = t.ok(&["connector", "run", "malere", "--as", "steward"]);
    assert!(out.contains("a.csv") && out.contains("2 rows"), "{out}");
    assert!(t.ok(&["connector", "run", "malere", "--as", "steward"]).contains("unchanged"), "each object once");
    // A bad object is passed over with its error; the next one is delivered; neither again.
    s3_put(&endpoint, &format!("{prefix}/malere/c.csv"), "maler;stand;ukjent_kolonne\nM-3;30;x\n");
    s3_put(&endpoint, &format!("{prefix}/malere/d.csv"), "maler;stand\nM-4;40\n");
    let (_, err) = t.fail(&["connector", "run", "malere", "--as", "steward"]);
    let list = runs(&t, "malere");
    assert!(list.iter().any(|r| r["source_name"] == "c.csv" && r["status"] == "failed"), "{err} {list:?}");
    assert!(list.iter().any(|r| r["source_name"] == "d.csv" && r["status"] == "ingested"), "{list:?}");
    assert!(t.ok(&["connector", "run", "malere", "--as", "steward"]).contains("unchanged"));
    assert_eq!(t.sql_csv("SELECT maler FROM test.malere ORDER BY maler"), "maler\nM-1\nM-2\nM-4\n");
    assert_eq!(versions(&t, "test/malere"), 2);
    // The secret key is sealed; the URL says which bucket and key id.
    let shown = t.ok(&["connector", "show", "malere", "--as", "steward"]);
    assert!(shown.contains("(s3)") && !shown.contains("hemmelig-s3-nokkel"), "{shown}");
    // An endpoint on an address the operator did not allow is refused when the run reaches it;
    // a bad URL when the connector is made.
    let inside = format!("s3://{bucket}/{prefix}/malere/?endpoint=http://10.0.0.1:9");
    t.ok(&create_args("innsiden", "test/innsiden", &inside, CREATE));
    let (_, err) = t.fail(&["connector", "run", "innsiden", "--as", "steward"]);
    assert!(err.contains("loopback, private or link-local"), "{err}");
    for bad in [format!("s3://{bucket}/{prefix}"), format!("s3://{bucket}/p/?endpoint=file:///etc"), format!("s3://{bucket}/p/?proxy=x")] {
        let (_, err) = t.fail(&create_args("feil", "test/feil", &bad, CREATE));
        assert!(err.contains("source"), "{bad}: {err}");
    }
}

#[test]
fn connectors_over_the_api() {
    let t = installation();
    let src = Source::start();
    src.put_with("/a.csv", 200, "text/csv", b"gnr;belop\n1;10\n", Some("\"e1\""), &[("require-api-key", "api-hemmelighet-77")]);
    let steward = common::token(&t, "steward");
    let other = common::token(&t, "other");
    let server = common::start(&t);
    let port = server.1;
    let auth = |tok: &str| format!("Bearer {tok}");
    let body = serde_json::json!({
        "name": "api-kilde", "dataset": "test/fra-api", "source": src.url("/a.csv"), "schedule": "0 3 * * 1-5",
        "headers": {"X-Api-Key": "api-hemmelighet-77"},
        "ingest": {"mode": "replace", "create": {"department": "data", "title": "Fra API", "classification": "internal"}}
    })
    .to_string();
    fn with(a: &str) -> Vec<(&str, &str)> {
        vec![("authorization", a), ("content-type", "application/json")]
    }
    let s = auth(&steward);
    let created = common::send(port, "POST", "/api/v1/connectors", &with(&s), Some(body.as_bytes()));
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(!created.text().contains("api-hemmelighet-77"));
    assert_eq!(created.json()["headers"][0], "X-Api-Key");
    // The same name again is a conflict.
    assert_eq!(common::send(port, "POST", "/api/v1/connectors", &with(&s), Some(body.as_bytes())).status, 409);
    let run = common::send(port, "POST", "/api/v1/connectors/api-kilde/run", &with(&s), None);
    assert_eq!(run.status, 200, "{}", run.text());
    assert_eq!(run.json()["runs"][0]["status"], "ingested");
    let runs = common::send(port, "GET", "/api/v1/connectors/api-kilde/runs?limit=5", &with(&s), None);
    assert_eq!(runs.json()["runs"].as_array().unwrap().len(), 1);
    let list = common::send(port, "GET", "/api/v1/connectors", &with(&s), None);
    assert_eq!(list.json()["connectors"][0]["name"], "api-kilde");
    assert!(!list.text().contains("api-hemmelighet-77"));
    // Another department's steward: not there. Anonymous: a credential is needed.
    let o = auth(&other);
    assert_eq!(common::send(port, "GET", "/api/v1/connectors", &with(&o), None).json()["connectors"], serde_json::json!([]));
    for (method, path) in
        [("GET", "/api/v1/connectors/api-kilde"), ("POST", "/api/v1/connectors/api-kilde/run"), ("DELETE", "/api/v1/connectors/api-kilde")]
    {
        assert_eq!(common::send(port, method, path, &with(&o), None).status, 404, "{method} {path}");
        assert_eq!(common::send(port, method, path, &[], None).status, 401, "{method} {path}");
    }
    // Bad bodies: located JSON errors, unknown fields, bad settings; nothing is made.
    for (bad, needle) in [
        ("{\"name\": \"x\",", "line 1"),
        (
            "{\"name\": \"x\", \"dataset\": \"test/x\", \"source\": \"https://x.no/a\", \"schedule\": \"@daily\", \"sql\": \"1\"}",
            "unknown field",
        ),
        ("{\"name\": \"x\", \"dataset\": \"test/x\", \"source\": \"https://x.no/a\", \"schedule\": \"hver natt\"}", "schedule"),
        ("{\"name\": \"X Y\", \"dataset\": \"test/x\", \"source\": \"https://x.no/a\", \"schedule\": \"@daily\"}", "name"),
    ] {
        let r = common::send(port, "POST", "/api/v1/connectors", &with(&s), Some(bad.as_bytes()));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.text().contains(needle), "{bad}: {}", r.text());
    }
    assert_eq!(common::send(port, "GET", "/api/v1/connectors", &with(&s), None).json()["connectors"].as_array().unwrap().len(), 1);
    assert_eq!(common::send(port, "DELETE", "/api/v1/connectors/api-kilde", &with(&s), None).status, 204);
    assert_eq!(common::send(port, "GET", "/api/v1/connectors/api-kilde", &with(&s), None).status, 404);
}

#[test]
fn a_run_whose_caller_goes_away_still_ends_and_gives_up_its_lease() {
    let t = installation();
    let src = Source::start();
    src.put("/treg.csv", "text/csv", b"nr;verdi\n1;2\n3;4\n", None);
    {
        let mut s = src.state.lock().unwrap();
        s.slow.push("/treg.csv".into());
        s.pause = Some(3);
    }
    let steward = common::token(&t, "steward");
    t.ok(&create_args("treg", "test/treg", &src.url("/treg.csv"), CREATE));
    let server = common::start(&t);
    let auth = format!("Bearer {steward}");
    // The caller gives up after half a second, while the source is still sending.
    let gone = common::send_within(
        server.1,
        "POST",
        "/api/v1/connectors/treg/run",
        &[("authorization", &auth)],
        None,
        Some(Duration::from_millis(500)),
    );
    assert!(gone.is_none(), "the run answered before the source was done");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list: serde_json::Value = serde_json::from_str(&t.ok(&["connector", "list", "--json", "--as", "steward"])).unwrap();
        if list[0]["last_run"]["status"] == "ingested" && list[0]["running"] == false {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not end on its own: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
    src.state.lock().unwrap().slow.clear();
    // The lease is free: the next run starts at once.
    assert!(t.ok(&["connector", "run", "treg", "--as", "steward"]).contains("unchanged"));
}
