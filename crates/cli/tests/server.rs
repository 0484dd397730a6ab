//! `tverr serve` on a real socket: health, the open catalogue, and non-open datasets that look
//! exactly like missing ones.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Tverr, data_dir};

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(t: &Tverr) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = t
        .command()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
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

/// A minimal HTTP/1.1 GET; returns (status, content type, body).
fn get(port: u16, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_string))
        .unwrap_or_default();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    (status, ctype, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

#[test]
fn open_catalogue_and_hidden_datasets() {
    let t = Tverr::new();
    t.org();
    let people = data_dir().join("ingest/people.csv");
    t.create("test/people", &people, &[]);
    t.ok(&["ingest", "test/open", people.to_str().unwrap(), "--create", "--department", "data", "--title", "Åpne data", "--classification", "open"]);
    let server = start(&t);

    let (status, ctype, body) = get(server.1, "/health");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"));
    assert!(body.contains("\"ok\""));

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
