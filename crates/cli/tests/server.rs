//! `tverr serve` on a real socket: health, the open catalogue, and non-open datasets that look
//! exactly like missing ones.

mod common;

use common::{Tverr, data_dir, get, request, start};

#[test]
fn open_catalogue_and_hidden_datasets() {
    let t = Tverr::new();
    t.org();
    let people = data_dir().join("ingest/people.csv");
    t.create("test/people", &people, &[]);
    t.ok(&[
        "ingest",
        "test/open",
        people.to_str().unwrap(),
        "--create",
        "--department",
        "data",
        "--title",
        "Åpne data",
        "--classification",
        "open",
    ]);
    let server = start(&t);

    let (status, ctype, body) = get(server.1, "/health");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"));
    assert!(body.contains("\"ok\""));
    // Ready once the catalogue, storage and the log answer and start-up recovery is done.
    let ready = common::wait_until(|| {
        let (status, _, body) = get(server.1, "/ready");
        (status == 200).then_some(body)
    });
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready, serde_json::json!({"status": "ready", "catalogue": "ok", "storage": "ok", "log": "ok", "recovery": "done"}));

    let (status, _, body) = get(server.1, "/api/v1/datasets");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let slugs: Vec<&str> = v["datasets"].as_array().unwrap().iter().map(|d| d["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["open"]);

    let (status, _, body) = get(server.1, "/api/v1/datasets/test/open");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["title"], "Åpne data");
    assert_eq!(v["columns"].as_array().unwrap().len(), 5);
    assert_eq!(v["versions"][0]["mode"], "create");

    // Internal and missing datasets answer identically (invariant 3).
    let hidden = get(server.1, "/api/v1/datasets/test/people");
    let missing = get(server.1, "/api/v1/datasets/test/nope");
    let malformed = get(server.1, "/api/v1/datasets/test/NOPE");
    assert_eq!(hidden.0, 404);
    assert_eq!(hidden.1, "application/problem+json");
    assert_eq!(hidden, missing);
    assert_eq!(hidden, malformed);
    let p: serde_json::Value = serde_json::from_str(&hidden.2).unwrap();
    assert_eq!(p["type"], "/problems/dataset-not-found");
    assert_eq!(p["status"], 404);

    let (status, ctype, _) = get(server.1, "/api/v1/nothing-here");
    assert_eq!(status, 404);
    assert_eq!(ctype, "application/problem+json");
}

fn sql(port: u16, token: Option<&str>, purpose: Option<&str>, query: &str, accept: &str) -> (u16, String, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", accept)];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    if let Some(p) = purpose {
        headers.push(("Tverr-Purpose", p));
    }
    let body = serde_json::json!({ "sql": query }).to_string();
    request(port, "POST", "/api/v1/sql", &headers, Some(&body))
}

#[test]
fn sql_and_agreements_over_http() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    let ola = t.ok(&["token", "create", "--user", "ola"]).trim().to_string();
    let frode = t.ok(&["token", "create", "--user", "frode", "--expires", "1"]).trim().to_string();
    let server = start(&t);
    let port = server.1;

    // JSON: columns with types, rows as objects keyed by column name.
    let (status, ctype, body) = sql(
        port,
        Some(&ola),
        Some("byggesaksbehandling"),
        "SELECT fornavn, length(fodselsnummer) AS l FROM hamar.innbyggere ORDER BY fornavn LIMIT 2",
        "application/json",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(ctype, "application/json");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["columns"], serde_json::json!([{"name": "fornavn", "type": "text"}, {"name": "l", "type": "integer"}]));
    assert_eq!(v["rows"].as_array().unwrap().len(), 2);
    assert_eq!(v["rows"][0]["l"], 32, "the person number arrives as its pseudonym");

    // CSV by Accept; the purpose may also come as purpose=.
    let (status, ctype, body) = request(
        port,
        "POST",
        "/api/v1/sql?purpose=byggesaksbehandling",
        &[("Authorization", &format!("Bearer {ola}")), ("Accept", "text/csv")],
        Some(r#"{"sql": "SELECT count(*) AS n FROM hamar.innbyggere"}"#),
    );
    // Everyone but the protected persons, whom byggesak's agreement does not cover.
    let unprotected = t.sql_csv("SELECT count(*) AS n FROM hamar.innbyggere WHERE adressebeskyttelse = 'ugradert'");
    assert_eq!((status, ctype.as_str(), body.as_str()), (200, "text/csv; charset=utf-8", unprotected.as_str()));

    // A body that is not the expected JSON is a problem naming where.
    let (status, _, body) = request(port, "POST", "/api/v1/sql", &[("Authorization", &format!("Bearer {ola}"))], Some(r#"{"sql": 1}"#));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line 1, column"), "{body}");

    // Empty results are still well-formed.
    let (_, _, body) =
        sql(port, Some(&ola), Some("byggesaksbehandling"), "SELECT fornavn FROM hamar.innbyggere WHERE false", "application/json");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["rows"], serde_json::json!([]));

    // Problems: purpose required, not entitled = not existing, refused SQL, forged and missing tokens.
    let problem = |r: (u16, String, String)| -> (u16, serde_json::Value) {
        assert_eq!(r.1, "application/problem+json", "status {}: {}", r.0, r.2);
        (r.0, serde_json::from_str(&r.2).unwrap())
    };
    let (status, p) = problem(sql(port, Some(&ola), None, "SELECT 1 FROM hamar.innbyggere", "application/json"));
    assert_eq!((status, p["type"].as_str().unwrap()), (403, "/problems/purpose-required"));
    assert!(p["detail"].as_str().unwrap().contains("purpose"));
    let hidden = sql(port, Some(&ola), Some("byggesaksbehandling"), "SELECT * FROM hamar.hjemmetjenester", "application/json");
    let missing = sql(port, Some(&ola), Some("byggesaksbehandling"), "SELECT * FROM hamar.hjemmetjenestr", "application/json");
    assert_eq!(hidden.0, 404);
    assert_eq!(hidden, missing, "not entitled and not existing must be identical");
    let (status, p) = problem(sql(port, Some(&ola), Some("byggesaksbehandling"), "DROP TABLE hamar.innbyggere", "application/json"));
    assert_eq!((status, p["type"].as_str().unwrap()), (400, "/problems/sql-not-allowed"));
    assert!(p["title"].as_str().is_some() && p["status"] == 400);
    let last = if ola.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &ola[..ola.len() - 1]);
    assert_ne!(forged, ola);
    let (status, _) = problem(sql(port, Some(&forged), Some("byggesaksbehandling"), "SELECT 1", "application/json"));
    assert_eq!(status, 401);
    let (status, _) = problem(sql(port, Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJvbGEifQ."), None, "SELECT 1", "application/json"));
    assert_eq!(status, 401, "an unsigned JWT is refused");
    // Identity headers from the client are ignored: anonymous stays anonymous.
    let spoofed = request(
        port,
        "POST",
        "/api/v1/sql",
        &[("X-User", "ola"), ("X-Remote-User", "ola"), ("Tverr-Purpose", "byggesaksbehandling")],
        Some(r#"{"sql": "SELECT 1 FROM hamar.innbyggere"}"#),
    );
    assert_eq!(spoofed.0, 404);
    // Anonymous reads open data without a purpose.
    let (status, _, body) = sql(port, None, None, "SELECT count(*) AS n FROM hamar.barnehager", "text/csv");
    assert_eq!(status, 200, "{body}");

    // The catalogue shows what the caller may read.
    let (_, _, body) = request(port, "GET", "/api/v1/datasets", &[("Authorization", &format!("Bearer {ola}"))], None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<String> = v["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{}/{}:{}", d["org"].as_str().unwrap(), d["slug"].as_str().unwrap(), d["access"].as_str().unwrap()))
        .collect();
    // The organisation's own non-open datasets are listed as metadata only; another
    // organisation's are not listed at all.
    assert!(names.contains(&"hamar/innbyggere:read".to_string()), "{names:?}");
    assert!(names.contains(&"hamar/hjemmetjenester:metadata".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("hias/") && !n.ends_with(":read")), "{names:?}");
    let (status, _, body) = request(
        port,
        "GET",
        "/api/v1/datasets/hamar/innbyggere?purpose=byggesaksbehandling",
        &[("Authorization", &format!("Bearer {ola}"))],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cols: Vec<&str> = v["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cols, ["fodselsnummer", "fornavn", "etternavn", "adresse", "postnummer", "poststed"]);
    assert_eq!(v["columns"][0]["mask"], "hmac");

    // Agreements: parties see them; only the provider's steward approves; revocation is immediate.
    let auth = |tok: &str| format!("Bearer {tok}");
    let (status, _, body) = request(port, "GET", "/api/v1/agreements", &[("Authorization", &auth(&ola))], None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["agreements"].as_array().unwrap().len(), 14);
    assert_eq!(request(port, "GET", "/api/v1/agreements", &[], None).0, 401);
    let (status, _, body) = request(port, "GET", "/api/v1/agreements/1", &[("Authorization", &auth(&ola))], None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["events"].as_array().unwrap().len(), 2);
    let (status, _, body) = request(port, "POST", "/api/v1/agreements/1/revoke", &[("Authorization", &auth(&ola))], Some("{}"));
    assert_eq!(status, 403, "{body}");
    let (status, _, body) =
        request(port, "POST", "/api/v1/agreements/1/revoke", &[("Authorization", &auth(&frode))], Some(r#"{"note": "slutt"}"#));
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["state"], "revoked");
    assert_eq!(sql(port, Some(&ola), Some("byggesaksbehandling"), "SELECT 1 FROM hamar.innbyggere", "text/csv").0, 404);

    // Terms cannot be changed once requested: there is no route to amend an agreement.
    for method in ["PUT", "PATCH", "DELETE"] {
        let (status, _, _) = request(port, method, "/api/v1/agreements/1", &[("Authorization", &auth(&frode))], Some("{}"));
        assert_eq!(status, 405, "{method}");
    }

    // A request through HTTP, with bad input refused first.
    let admin = t.ok(&["token", "create", "--user", "admin"]).trim().to_string();
    let (status, _, body) =
        request(port, "POST", "/api/v1/agreements", &[("Authorization", &auth(&admin))], Some(r#"{"provider": "hamar/folkeregister"}"#));
    assert_eq!(status, 400, "{body}");
    let good = r#"{"provider": "hamar/folkeregister", "consumer": "hamar/byggesak", "purposes": ["byggesaksbehandling"],
        "datasets": [{"dataset": "hamar/innbyggere", "columns": ["fornavn"], "masks": {"fornavn": "partial"}}]}"#;
    let (status, _, body) = request(port, "POST", "/api/v1/agreements", &[("Authorization", &auth(&admin))], Some(good));
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_i64().unwrap();
    let (status, _, _) = request(port, "POST", &format!("/api/v1/agreements/{id}/approve"), &[("Authorization", &auth(&frode))], None);
    assert_eq!(status, 200);
    let (_, _, body) = sql(
        port,
        Some(&ola),
        Some("byggesaksbehandling"),
        "SELECT DISTINCT length(fornavn) AS l FROM hamar.innbyggere WHERE fornavn NOT LIKE '%***'",
        "text/csv",
    );
    assert_eq!(body, "l\n", "every first name arrives masked");

    // A revoked token stops working at once.
    t.ok(&["token", "revoke", &ola]);
    assert_eq!(sql(port, Some(&ola), None, "SELECT 1", "text/csv").0, 401);
}

#[test]
fn one_client_with_unfinished_requests_cannot_take_every_connection() {
    // Final attack on issue 23, release build (F4): 21,000 connections that each sent half a
    // request head were held open until the server ran out of file descriptors and answered no
    // one. Each client address may now hold a bounded number at once; more are closed as they
    // are accepted, and other clients are served.
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let t = Tverr::new();
    let server = common::start_with(&t, &["--max-connections-per-client", "64"]);
    let port = server.1;
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n");
        held.push(s);
    }
    // The connections past the limit are closed by the server: their reads end.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut closed = 0;
    for s in &mut held {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
        s.set_read_timeout(Some(left.min(Duration::from_millis(200)))).unwrap();
        let mut buf = [0u8; 16];
        if matches!(s.read(&mut buf), Ok(0) | Err(_)) && s.read(&mut buf).is_ok_and(|n| n == 0) {
            closed += 1;
        }
    }
    assert!(closed >= 200 - 64 - 8, "only {closed} of the 136 connections past the limit were closed");
    // Another client address is served meanwhile.
    let probe = format!(
        "import socket; s = socket.create_connection(('127.0.0.1', {port}), timeout=5, source_address=('127.0.0.2', 0)); \
         s.sendall(b'GET /health HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'); print(s.recv(64).decode().split()[1])"
    );
    let out = std::process::Command::new("python3").args(["-c", &probe]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200", "{}", String::from_utf8_lossy(&out.stderr));
    // Once the client lets go, it is served again.
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, _) = get(port, "/health");
    assert_eq!(status, 200);
}

/// True when the server closes `s` (its read ends) within `within`.
fn closed_within(s: &mut std::net::TcpStream, within: std::time::Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe),
        }
    }
}

#[test]
fn silent_clients_are_closed_and_cannot_hold_the_server() {
    // Release-build attack on issue 23: half-sent request heads from many addresses were never
    // timed out, so enough addresses held every connection the server would take. A client
    // that sends no request head, or no part of a body, for --client-seconds is now closed,
    // and the server as a whole holds at most --max-connections.
    use std::io::Write;
    use std::time::{Duration, Instant};
    let t = Tverr::new();
    let server = common::start_with(&t, &["--client-seconds", "2", "--max-connections", "12"]);
    let port = server.1;
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The server is serving (the start-up probe's connection is gone) before it is filled.
    assert_eq!(get(port, "/health").0, 200);
    std::thread::sleep(Duration::from_millis(200));

    // Every way of falling silent: nothing at all, half a head, a head and half a body, and an
    // idle connection after a complete response.
    let mut silent = [connect(), connect(), connect(), connect()];
    silent[1].write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    silent[2]
        .write_all(b"POST /api/v1/sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"sql\": \"SEL")
        .unwrap();
    silent[3].write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // The server is full: eight more take its last places. A newcomer takes the place of the
    // connection that has waited longest for its next request (fourth release-build attack:
    // slow request heads from a few addresses held every place), and is served.
    let mut filling: Vec<_> = (0..8).map(|_| connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut newcomer = connect();
    newcomer.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    newcomer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut newcomer, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "a newcomer to a full server: {answer:?}");
    assert!(closed_within(&mut silent[0], Duration::from_secs(1)), "the longest waiting connection made room");

    let started = Instant::now();
    for (i, s) in silent.iter_mut().chain(filling.iter_mut()).enumerate() {
        let left = Duration::from_secs(6).saturating_sub(started.elapsed()).max(Duration::from_millis(10));
        assert!(closed_within(s, left), "silent connection {i} was still open after {:?}", started.elapsed());
    }
    assert!(started.elapsed() >= Duration::from_secs(1), "closed before the client had its time: {:?}", started.elapsed());
    // The half-sent body got a problem before its connection closed.
    let mut answer = String::new();
    let mut again = connect();
    again
        .write_all(b"POST /api/v1/sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"sql\": \"SEL")
        .unwrap();
    again.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let _ = std::io::Read::read_to_string(&mut again, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Once they are gone, the server answers again.
    let (status, _, _) = get(port, "/health");
    assert_eq!(status, 200);
    // A body dribbled a byte at a time, each within the silence limit, is too slow on average
    // (third release-build attack: one byte every 3 s held a connection for as long as wanted).
    let mut dribble = connect();
    dribble.write_all(b"POST /api/v1/sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    dribble.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while started.elapsed() < Duration::from_secs(12) {
        if dribble.write_all(b" ").is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match std::io::Read::read(&mut dribble, &mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if !answer.is_empty() {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "the dribble got {answer:?} after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(6), "the dribble lasted {:?}", started.elapsed());
}

#[test]
fn a_client_that_stops_reading_loses_its_connections_and_query_slots() {
    // Third release-build attack on issue 23 (finding 5): four anonymous streaming queries whose
    // client never read the answers held the address's four query slots for as long as the
    // connections stayed open. A write that waits on the client for --client-seconds now fails,
    // which closes the connection and stops its query.
    use std::time::{Duration, Instant};
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "200"]);
    let server = common::start_with(&t, &["--client-seconds", "2"]);
    let port = server.1;
    // About 50 MB of CSV: far more than the socket buffers hold.
    let big = format!(r#"{{"sql": "SELECT concat({}) AS w FROM hias.vannkvalitet"}}"#, vec!["stasjon"; 150].join(", "));
    // Four connections with small receive buffers that send the query and never read.
    let script = r#"
import socket, sys, time
body = sys.argv[2].encode()
head = b"POST /api/v1/sql HTTP/1.1\r\nHost: x\r\nAccept: text/csv\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
held = []
for _ in range(4):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", int(sys.argv[1])))
    s.sendall(head + body)
    held.append(s)
time.sleep(30)
"#;
    let mut stalled = std::process::Command::new("python3").args(["-c", script, &port.to_string(), &big]).spawn().unwrap();
    let query = r#"{"sql": "SELECT 1 AS n"}"#;
    let ask = || request(port, "POST", "/api/v1/sql", &[("Content-Type", "application/json"), ("Accept", "text/csv")], Some(query)).0;
    // On a loaded machine the four take a moment to start: ask until they hold the slots.
    std::thread::sleep(Duration::from_millis(1000));
    let waiting = Instant::now();
    let mut first = ask();
    while first != 429 && waiting.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        first = ask();
    }
    assert_eq!(first, 429, "the four stalled queries hold the address's slots");
    let started = Instant::now();
    let mut status = 429;
    while status == 429 && started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(250));
        status = ask();
    }
    let _ = stalled.kill();
    let _ = stalled.wait();
    assert_eq!(status, 200, "the slots were still held after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(8), "freed only after {:?}", started.elapsed());
}

#[test]
fn a_request_id_names_the_access_log_entries_and_metrics_name_routes_not_paths() {
    let t = Tverr::with_env(&[("TVERR_METRICS_TOKEN", "skrape-hemmelig")]);
    t.org();
    let people = data_dir().join("ingest/people.csv");
    t.create("test/people", &people, &["--subject", "fodselsnummer=person"]);
    t.ok(&["user", "create", "test/data/ola", "--role", "employee"]);
    t.ok(&["legal-basis", "create", "test/lov", "--gdpr", "6(1)(e)", "--hjemmel", "kommuneloven § 1-1"]);
    t.ok(&["purpose", "create", "test/saksbehandling", "--name", "Saksbehandling", "--department", "data", "--legal-basis", "lov"]);
    let token = common::token(&t, "ola");
    let server = start(&t);
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str()), ("Tverr-Purpose", "saksbehandling")];
    let read = common::send(server.1, "POST", "/api/v1/sql", &headers, Some(br#"{"sql": "SELECT navn FROM test.people"}"#));
    assert_eq!(read.status, 200);
    let id = read.header("x-request-id").expect("a request id").to_string();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    // A client's own id is not taken over: it would go into the access log as sent.
    let other = common::send(server.1, "GET", "/health", &[("X-Request-Id", "17858012392")], None);
    assert_ne!(other.header("x-request-id"), Some("17858012392"));
    // A look-up whose path holds a person's number.
    let found = common::send(server.1, "GET", "/api/v1/subjects/person/17858012392", &headers, None);
    assert_eq!(found.status, 200, "{}", String::from_utf8_lossy(&found.body));
    drop(server);
    // The read's intent and its completion both name the request.
    let db = t.data().join("catalog.db");
    let named = common::sqlite(&db, &format!("SELECT kind FROM audit_log WHERE payload LIKE '%\"request_id\":\"{id}\"%' ORDER BY seq"));
    assert!(named.contains("'access'") && named.contains("'completion'"), "{named}");

    let server = start(&t);
    common::wait_until(|| (get(server.1, "/ready").0 == 200).then_some(()));
    common::send(server.1, "GET", "/api/v1/subjects/person/17858012392", &headers, None);
    assert_eq!(get(server.1, "/metrics").0, 404, "without the token, as if there were no such route");
    let wrong = common::send(server.1, "GET", "/metrics", &[("Authorization", "Bearer gjett")], None);
    assert_eq!(wrong.status, 404);
    let metrics = common::send(server.1, "GET", "/metrics", &[("Authorization", "Bearer skrape-hemmelig")], None);
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(text.contains(r#"tverr_http_requests_total{route="/api/v1/subjects/person/{id}",method="GET",status="200"} 1"#), "{text}");
    assert!(text.contains("tverr_access_log_commit_seconds_count"), "{text}");
    assert!(!text.contains("17858012392"), "a person's number in the metrics");
    // Made-up methods and paths add no series: they count as `other` and `unmatched`.
    for i in 0..20 {
        common::send(server.1, &format!("X{i}"), &format!("/finnes-ikke/{i}"), &[], None);
    }
    let metrics = common::send(server.1, "GET", "/metrics", &[("Authorization", "Bearer skrape-hemmelig")], None);
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(!text.contains("X1") && !text.contains("finnes-ikke"), "{text}");
    assert!(text.contains(r#"route="unmatched",method="other""#), "{text}");
}
