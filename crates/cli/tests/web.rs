//! The web pages against a demo server: every attack in `tests/security/web/*.case` (forged
//! sessions, missing CSRF tokens, open redirects, markup in input, pages of other roles), the
//! log-in throttle, the session's end at log-out, the security headers of every page, and the
//! OIDC log-in (authorization code with PKCE) against an issuer the test serves on loopback.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::{Response, Tverr, rsa_key, send, start_with, token};

const PASSWORD: &str = "hamar-demo-2026";

/// A demo server with the citizen log-in; and two person numbers from its population.
fn demo(extra: &[&str]) -> (Tverr, common::Server, String, String) {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    let mut args = vec!["--demo"];
    args.extend_from_slice(extra);
    let server = start_with(&t, &args);
    let fnrs = t.ok(&[
        "sql",
        "--purpose",
        "folkeregisterforvaltning",
        "--format",
        "csv",
        "SELECT fodselsnummer FROM hamar.innbyggere ORDER BY fodselsnummer LIMIT 2",
    ]);
    let mut lines = fnrs.lines().skip(1).map(str::to_string);
    let (a, b) = (lines.next().unwrap(), lines.next().unwrap());
    (t, server, a, b)
}

/// The value of a `Set-Cookie` named `name` in a response.
fn set_cookie(r: &Response, name: &str) -> Option<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next()?.trim().strip_prefix(&format!("{name}=")).map(str::to_string))
        .find(|v| !v.is_empty())
}

/// The CSRF token in a page's forms.
fn csrf_in(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token");
    let rest = &page[at + 19..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A browser's cookie jar, as one `Cookie` header.
#[derive(Default, Clone)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn take(&mut self, r: &Response) {
        for (k, v) in r.headers.iter().filter(|(k, _)| k == "set-cookie") {
            let _ = k;
            let pair = v.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || v.contains("Max-Age=0") {
                    self.0.remove(name.trim());
                } else {
                    self.0.insert(name.trim().to_string(), value.to_string());
                }
            }
        }
    }

    fn get(&mut self, port: u16, path: &str) -> Response {
        self.get_with(port, path, &[])
    }

    /// A GET with more request headers (e.g. the `Sec-Fetch-Site` a browser sends).
    fn get_with(&mut self, port: u16, path: &str, extra: &[(&str, &str)]) -> Response {
        let cookie = self.header();
        let mut headers = vec![("Cookie", cookie.as_str())];
        headers.extend_from_slice(extra);
        let r = send(port, "GET", path, &headers, None);
        self.take(&r);
        r
    }

    fn post(&mut self, port: u16, path: &str, form: &str) -> Response {
        let cookie = self.header();
        let r =
            send(port, "POST", path, &[("Cookie", &cookie), ("Content-Type", "application/x-www-form-urlencoded")], Some(form.as_bytes()));
        self.take(&r);
        r
    }
}

/// Logs in through the form; the jar then holds the session.
fn login(port: u16, user: &str) -> Jar {
    let mut jar = Jar::default();
    let page = jar.get(port, "/logg-inn").text();
    let form = format!("csrf={}&username={user}&password={PASSWORD}", csrf_in(&page));
    let r = jar.post(port, "/logg-inn", &form);
    assert_eq!(r.status, 303, "log-in of {user}: {}", r.text());
    assert!(jar.0.contains_key("tverr_session"));
    jar
}

fn citizen_login(port: u16, pid: &str) -> Jar {
    let mut jar = Jar::default();
    let page = jar.get(port, "/logg-inn").text();
    let r = jar.post(port, "/logg-inn/innbygger", &format!("csrf={}&fnr={pid}", csrf_in(&page)));
    assert_eq!(r.status, 303, "citizen log-in: {}", r.text());
    jar
}

#[test]
fn every_web_attack_case_is_refused() {
    let (t, server, any_fnr, other_fnr) = demo(&[]);
    let port = server.1;
    let cases = common::Case::all_in("web");
    assert!(cases.len() >= 20, "the web attack corpus shrank");
    for case in cases {
        let name = case.name();
        let fill = |v: &str| v.replace("{any_fnr}", &any_fnr).replace("{other_fnr}", &other_fnr);
        let c: BTreeMap<String, Vec<String>> = case.fields.iter().fold(BTreeMap::new(), |mut c, (k, v)| {
            c.entry(k.clone()).or_insert_with(Vec::new).push(fill(v));
            c
        });
        let one = |k: &str| c.get(k).and_then(|v| v.first()).cloned();
        let who = one("as").unwrap_or_else(|| panic!("{name}: needs as"));
        let mut jar = match who.as_str() {
            "anonymous" => Jar::default(),
            w if w.starts_with("citizen:") => citizen_login(port, &w[8..]),
            w if w.starts_with("cookie:") => {
                let (k, v) = w[7..].split_once('=').unwrap();
                Jar([(k.to_string(), v.to_string())].into())
            }
            w if w.starts_with("cookie-api-token:") => Jar([("tverr_session".to_string(), token(&t, &w[17..]))].into()),
            user => login(port, user),
        };
        let method = one("method").unwrap_or_else(|| "GET".into());
        let target = one("path").unwrap();
        let response = if method == "POST" {
            // A form token as a real page gives it, or none, or a wrong one.
            let page = jar.get(port, "/logg-inn").text();
            let csrf = match one("csrf").as_deref() {
                Some("valid") => format!("csrf={}&", csrf_in(&page)),
                Some("wrong") => "csrf=00000000000000000000000000000000&".to_string(),
                _ => String::new(),
            };
            jar.post(port, &target, &format!("{csrf}{}", one("form").unwrap_or_default()))
        } else {
            let extra: Vec<(String, String)> = c
                .get("header")
                .into_iter()
                .flatten()
                .map(|h| {
                    h.split_once(": ").map(|(k, v)| (k.to_string(), v.to_string())).unwrap_or_else(|| panic!("{name}: header: NAME: VALUE"))
                })
                .collect();
            let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            jar.get_with(port, &target, &extra)
        };
        let body = response.text();
        let expected: u16 = one("status").unwrap().parse().unwrap();
        assert_eq!(response.status, expected, "{name}: status; body:\n{}", &body[..body.len().min(3000)]);
        for s in c.get("contains").into_iter().flatten() {
            assert!(body.contains(s.as_str()), "{name}: expected {s:?} in:\n{body}");
        }
        for s in c.get("not-contains").into_iter().flatten() {
            assert!(!body.contains(s.as_str()), "{name}: {s:?} must not be in:\n{body}");
        }
        if let Some(l) = one("location") {
            assert_eq!(response.header("location"), Some(l.as_str()), "{name}: location");
        }
        if let Some(cookie) = one("no-cookie") {
            assert!(set_cookie(&response, &cookie).is_none(), "{name}: set {cookie}");
        }
        if let Some(other) = one("same-as") {
            let twin = jar.get(port, &other);
            // The same page but for the path itself (in the language switch's link, and
            // encoded in the log-in link's way back).
            let strip = |text: &str, path: &str| {
                let path = path.split('?').next().unwrap_or(path);
                let encoded: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
                text.replace(&encoded, "PATH").replace(path, "PATH")
            };
            assert_eq!(
                (twin.status, strip(&twin.text(), &other)),
                (response.status, strip(&body, &target)),
                "{name}: differs from {other}"
            );
        }
        if one("then-logged-in").as_deref() == Some("true") {
            assert!(jar.get(port, "/").text().contains("/logg-ut"), "{name}: the session ended");
        }
        // Every page, refused or not, carries the headers.
        let csp = response.header("content-security-policy").unwrap_or_else(|| panic!("{name}: no CSP"));
        assert!(!csp.contains("unsafe-inline") && csp.contains("default-src 'none'"), "{name}: {csp}");
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{name}");
    }
}

#[test]
fn sessions_are_http_only_secure_and_end_at_log_out() {
    let (t, server, _, _) = demo(&[]);
    let port = server.1;
    let mut jar = Jar::default();
    let page = jar.get(port, "/logg-inn");
    let pre = page.headers.iter().find(|(k, v)| k == "set-cookie" && v.starts_with("tverr_csrf=")).expect("a pre-session cookie").1.clone();
    assert!(pre.contains("HttpOnly") && pre.contains("Secure") && pre.contains("SameSite=Strict"), "{pre}");
    let r = jar.post(port, "/logg-inn", &format!("csrf={}&username=ola&password={PASSWORD}", csrf_in(&page.text())));
    let session = r.headers.iter().find(|(k, v)| k == "set-cookie" && v.starts_with("tverr_session=")).expect("a session").1.clone();
    assert!(session.contains("HttpOnly") && session.contains("Secure") && session.contains("SameSite=Lax"), "{session}");
    let secret = jar.0["tverr_session"].clone();
    // A session is not an API token.
    let api = send(port, "GET", "/api/v1/agreements", &[("Authorization", &format!("Bearer {secret}"))], None);
    assert_eq!(api.status, 401, "{}", api.text());
    let home = jar.get(port, "/").text();
    assert!(home.contains("ola") && home.contains("/logg-ut"));
    let out = jar.post(port, "/logg-ut", &format!("csrf={}", csrf_in(&home)));
    assert_eq!(out.status, 303);
    // The old cookie no longer signs in, even when a browser keeps sending it.
    let replay = send(port, "GET", "/oppslag", &[("Cookie", &format!("tverr_session={secret}"))], None);
    assert_eq!(replay.status, 303, "a logged-out session still works");
    // Each log-in is in the access log.
    let log = t.ok(&["audit", "search", "--user", "ola"]);
    assert!(log.contains("login") && log.contains("web"), "{}", &log[..log.len().min(2000)]);
}

#[test]
fn repeated_failed_log_ins_are_throttled_even_with_the_right_password_then() {
    let (_t, server, _, _) = demo(&[]);
    let port = server.1;
    let mut jar = Jar::default();
    for i in 0..5 {
        let page = jar.get(port, "/logg-inn").text();
        let r = jar.post(port, "/logg-inn", &format!("csrf={}&username=kari&password=wrong{i}", csrf_in(&page)));
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let page = jar.get(port, "/logg-inn").text();
    let r = jar.post(port, "/logg-inn", &format!("csrf={}&username=kari&password={PASSWORD}", csrf_in(&page)));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("For mange forsøk"));
    // The API's log-in shares the count.
    let api = send(
        port,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        Some(format!("{{\"username\":\"kari\",\"password\":\"{PASSWORD}\"}}").as_bytes()),
    );
    assert_eq!(api.status, 429, "{}", api.text());
    // Another user is not locked out by kari's attacker.
    login(port, "ola");
}

#[test]
fn every_page_answers_in_both_languages_with_a_switch() {
    let (t, server, any_fnr, _) = demo(&[]);
    let port = server.1;
    let pages = [
        ("anonymous", "/"),
        ("anonymous", "/apne-data/ledige-barnehageplasser"),
        ("anonymous", "/datasett/hias/vannkvalitet"),
        ("anonymous", "/api"),
        ("anonymous", "/logg-inn"),
        ("ola", "/oppslag"),
        ("ola", "/avtaler"),
        ("kari", "/last-opp"),
        ("revisor", "/revisjon"),
        ("citizen", "/min-side"),
    ];
    for (who, path) in pages {
        let mut jar = match who {
            "anonymous" => Jar::default(),
            "citizen" => citizen_login(port, &any_fnr),
            user => login(port, user),
        };
        let nb = jar.get(port, path);
        assert_eq!(nb.status, 200, "{path}: {}", nb.text());
        assert!(nb.text().contains("<html lang=\"nb\">"), "{path}");
        let sep = if path.contains('?') { '&' } else { '?' };
        let en = jar.get(port, &format!("{path}{sep}lang=en"));
        assert!(en.text().contains("<html lang=\"en\">") && en.text().contains(">Norsk<"), "{path}");
        // The choice is remembered.
        assert!(jar.get(port, path).text().contains("<html lang=\"en\">"), "{path}: the language was not remembered");
        jar.get(port, &format!("{path}{sep}lang=nb"));
    }
    // The time series is drawn from the data: one line per unit (°C, pH, NTU), monthly means.
    let water = Jar::default().get(port, "/datasett/hias/vannkvalitet").text();
    assert_eq!(water.matches("<polyline class=\"series\"").count(), 3, "{water}");
    assert!(water.contains("jan. 2020") && water.contains("des. 2025"), "months as Norwegians write them");
    assert!(!water.contains("2020-01"), "no ISO months on a page");
    // The chart of open data is kept per version: a new version with a fourth unit draws four.
    let extra = t.data().join("klor.ndjson");
    let rows: String = ["2025-01-01", "2025-02-01"]
        .iter()
        .map(|d| format!("{{\"stasjon\":\"Mjøsa Hamar inntak\",\"sensor_id\":\"S-01-klor\",\"tidspunkt\":\"{d}T06:00:00Z\",\"parameter\":\"klor\",\"verdi\":0.05,\"enhet\":\"mg/l\"}}\n"))
        .collect();
    std::fs::write(&extra, rows).unwrap();
    t.ok(&["ingest", "hias/vannkvalitet", extra.to_str().unwrap()]);
    let water = Jar::default().get(port, "/datasett/hias/vannkvalitet").text();
    assert_eq!(water.matches("<polyline class=\"series\"").count(), 4, "the cached chart outlived its version");
    // The open kindergartens on a map over the kommune's outline, with a text alternative.
    let kg = Jar::default().get(port, "/datasett/hamar/barnehager").text();
    assert!(kg.contains("<svg class=\"map\"") && kg.contains("class=\"outline\"") && kg.contains("role=\"img\""));
}

/// A tiny OIDC issuer on loopback: a JWKS, and a token endpoint that redeems one code only when
/// the code verifier matches the challenge the browser was sent with.
struct Issuer {
    port: u16,
    /// code → (challenge, id token)
    codes: Arc<Mutex<BTreeMap<String, (String, String)>>>,
    /// Requests the token endpoint saw.
    seen: Arc<Mutex<Vec<String>>>,
}

fn serve_issuer(jwks: String) -> Issuer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let codes: Arc<Mutex<BTreeMap<String, (String, String)>>> = Arc::default();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let (c, s) = (codes.clone(), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let len = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if raw.len() >= head_end + 4 + len || n == 0 {
                        break;
                    }
                } else if n == 0 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&raw).to_string();
            let (status, body) = if text.starts_with("GET /jwks") {
                ("200 OK", jwks.clone())
            } else if text.starts_with("POST /token") {
                let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
                s.lock().unwrap().push(body.clone());
                let form: BTreeMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                let code = form.get("code").cloned().unwrap_or_default();
                let entry = c.lock().unwrap().remove(&code);
                match entry {
                    Some((challenge, id_token)) => {
                        use base64::Engine as _;
                        use sha2::Digest;
                        let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
                        if computed == challenge && form.get("grant_type").map(String::as_str) == Some("authorization_code") {
                            ("200 OK", serde_json::json!({"id_token": id_token, "token_type": "Bearer"}).to_string())
                        } else {
                            ("400 Bad Request", "{\"error\":\"invalid_grant\"}".to_string())
                        }
                    }
                    None => ("400 Bad Request", "{\"error\":\"invalid_grant\"}".to_string()),
                }
            } else {
                ("404 Not Found", "{}".to_string())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Issuer { port, codes, seen }
}

#[test]
fn oidc_log_in_with_pkce_signs_in_a_citizen_and_refuses_replays_and_wrong_nonces() {
    let dir = tempfile::tempdir().unwrap();
    let key = rsa_key(dir.path(), "issuer");
    let jwks =
        serde_json::json!({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "n": key.n, "e": "AQAB"}]}).to_string();
    let issuer = serve_issuer(jwks);
    let iss = format!("http://127.0.0.1:{}", issuer.port);
    let config = dir.path().join("oidc.json");
    // The redirect URI is only compared by the issuer; this one is not contacted.
    std::fs::write(
        &config,
        serde_json::json!({"issuers": [{
            "kind": "citizen", "issuer": iss, "jwks_uri": format!("{iss}/jwks"), "audience": "tverr-web",
            "login": {"name": "ID-porten (test)", "authorization_endpoint": format!("{iss}/authorize"),
                      "token_endpoint": format!("{iss}/token"), "client_id": "tverr-web",
                      "redirect_uri": "http://127.0.0.1/logg-inn/oidc/tilbake", "scope": "openid profile"}
        }]})
        .to_string(),
    )
    .unwrap();
    let (t, server, pid, _) = demo(&["--oidc", config.to_str().unwrap()]);
    let port = server.1;
    // A second node on the same catalogue: the issuer may send the browser back to either.
    let second = start_with(&t, &["--demo", "--oidc", config.to_str().unwrap()]);
    let mut jar = Jar::default();
    let login_page = jar.get(port, "/logg-inn").text();
    assert!(login_page.contains("/logg-inn/oidc/0") && login_page.contains("ID-porten (test)"), "no button:\n{login_page}");

    // Start: the browser is sent to the issuer with state, nonce and an S256 challenge.
    let start = jar.get(port, "/logg-inn/oidc/0?next=/min-side");
    assert_eq!(start.status, 303);
    let location = url::Url::parse(start.header("location").unwrap()).unwrap();
    let q: BTreeMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(location.path(), "/authorize");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], "tverr-web");
    assert_eq!(q["response_type"], "code");
    assert!(q["code_challenge"].len() >= 43 && !q.contains_key("code_verifier"));
    let sign = |nonce: &str| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let claims = serde_json::json!({"iss": iss, "aud": "tverr-web", "exp": now + 600, "iat": now, "sub": "x",
            "pid": pid, "acr": "idporten-loa-substantial", "nonce": nonce});
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_rsa_pem(&key.pem).unwrap()).unwrap()
    };

    // A callback in another browser (without the state cookie) is refused, and uses up the state.
    issuer.codes.lock().unwrap().insert("code-1".into(), (q["code_challenge"].clone(), sign(&q["nonce"])));
    let stranger = send(port, "GET", &format!("/logg-inn/oidc/tilbake?code=code-1&state={}", q["state"]), &[], None);
    assert_eq!(stranger.status, 400, "{}", stranger.text());
    assert!(set_cookie(&stranger, "tverr_session").is_none());

    // A fresh start; the issuer signs with the right nonce and sends the browser back to the
    // other node; the session is a citizen's.
    let start = jar.get(port, "/logg-inn/oidc/0?next=/min-side");
    let q: BTreeMap<String, String> = url::Url::parse(start.header("location").unwrap()).unwrap().query_pairs().into_owned().collect();
    issuer.codes.lock().unwrap().insert("code-2".into(), (q["code_challenge"].clone(), sign(&q["nonce"])));
    let back = jar.get(second.1, &format!("/logg-inn/oidc/tilbake?code=code-2&state={}", q["state"]));
    assert_eq!(back.status, 303, "{}", back.text());
    assert_eq!(back.header("location"), Some("/min-side"));
    let me = jar.get(port, "/min-side");
    assert_eq!(me.status, 200, "{}", me.text());
    let sent = issuer.seen.lock().unwrap().last().cloned().unwrap();
    assert!(sent.contains("code_verifier=") && sent.contains("grant_type=authorization_code"), "{sent}");

    // Replaying the callback does nothing: the state is gone.
    let mut other = Jar(jar.0.clone());
    other.0.remove("tverr_session");
    for node in [port, second.1] {
        let replay = other.get(node, &format!("/logg-inn/oidc/tilbake?code=code-2&state={}", q["state"]));
        assert_eq!(replay.status, 400, "a replay on either node");
    }

    // An ID token minted for another log-in (wrong nonce) is refused.
    let mut fresh = Jar::default();
    let start = fresh.get(port, "/logg-inn/oidc/0");
    let q: BTreeMap<String, String> = url::Url::parse(start.header("location").unwrap()).unwrap().query_pairs().into_owned().collect();
    issuer.codes.lock().unwrap().insert("code-3".into(), (q["code_challenge"].clone(), sign("someone-elses-nonce")));
    let wrong = fresh.get(port, &format!("/logg-inn/oidc/tilbake?code=code-3&state={}", q["state"]));
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    assert!(!fresh.0.contains_key("tverr_session"));
}

/// A multipart upload form: the fields, then the file.
fn multipart(fields: &[(&str, &str)], file_name: &str, file: &str) -> (String, String) {
    let boundary = "tverrgrense7";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: text/csv\r\n\r\n{file}\r\n--{boundary}--\r\n"
    ));
    (body, format!("multipart/form-data; boundary={boundary}"))
}

/// Behind a load balancer every request may go to another node: a log-in on one node, an
/// upload checked on it, confirmed on a second and followed on both; a log-in throttled on one
/// node is throttled on the other.
#[test]
fn log_ins_and_uploads_go_on_at_any_node() {
    let (t, a, _, _) = demo(&[]);
    let b = start_with(&t, &["--demo"]);
    let mut jar = login(a.1, "kari");
    let csrf = csrf_in(&jar.get(b.1, "/last-opp").text());
    let fields =
        [("csrf", csrf.as_str()), ("target", "new"), ("slug", "kull-2026"), ("title", "Kull 2026"), ("classification", "internal")];
    let (body, content_type) = multipart(&fields, "kull.csv", "navn;alder\nKari;5\nOla;6\n");
    let checked = send(a.1, "POST", "/last-opp", &[("Cookie", &jar.header()), ("Content-Type", &content_type)], Some(body.as_bytes()));
    assert_eq!(checked.status, 200, "{}", checked.text());
    let page = checked.text();
    let at = page.find("action=\"/last-opp/").expect("the confirmation form") + 18;
    let id = page[at..at + 24].to_string();
    // Confirmed on the other node; a second confirmation on the first ingests nothing more.
    let confirmed = jar.post(b.1, &format!("/last-opp/{id}"), &format!("csrf={csrf}"));
    assert_eq!(confirmed.status, 303, "{}", confirmed.text());
    let again = jar.post(a.1, &format!("/last-opp/{id}"), &format!("csrf={csrf}"));
    assert_eq!(again.status, 303);
    for node in [a.1, b.1] {
        let done = common::wait_until(|| {
            let page = jar.get(node, &format!("/last-opp/jobb/{id}")).text();
            page.contains("id=\"upload-done\"").then_some(page)
        });
        assert!(done.contains("versjon 0") && done.contains("2 rader"), "{done}");
    }
    let history: serde_json::Value = serde_json::from_str(&t.ok(&["history", "hamar/kull-2026", "--json"])).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1, "one version from two confirmations: {history}");
    // Another steward does not see it on either node.
    let mut other = login(b.1, "bjorn");
    for node in [a.1, b.1] {
        assert_eq!(other.get(node, &format!("/last-opp/jobb/{id}")).status, 404);
    }
    // Failed log-ins on one node count on the other.
    let mut stranger = Jar::default();
    for i in 0..6 {
        let node = if i % 2 == 0 { a.1 } else { b.1 };
        let page = stranger.get(node, "/logg-inn").text();
        let r = stranger.post(node, "/logg-inn", &format!("csrf={}&username=frode&password=feil", csrf_in(&page)));
        assert_eq!(r.status, if i < 5 { 401 } else { 429 }, "attempt {i} on node {node}: {}", r.text());
    }
}

#[test]
fn a_refused_web_upload_tells_no_more_than_the_api() {
    // Attack 5, F3: the upload form said 403 (naming the owning department) for another
    // organisation's dataset the steward may not read, and 404 for one that does not exist.
    let (_t, server, _, _) = demo(&[]);
    let port = server.1;
    let mut jar = login(port, "kari");
    let csrf = csrf_in(&jar.get(port, "/last-opp").text());
    let mut upload = |target: &str| {
        let boundary = "tverrgrense7";
        let mut body = String::new();
        for (name, value) in [("csrf", csrf.as_str()), ("target", target), ("mode", "append")] {
            body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"));
        }
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.csv\"\r\nContent-Type: text/csv\r\n\r\na;b\n1;2\n\r\n--{boundary}--\r\n"
        ));
        let cookie = jar.header();
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let r = common::send(port, "POST", "/last-opp", &[("Cookie", &cookie), ("Content-Type", &content_type)], Some(body.as_bytes()));
        jar.take(&r);
        (r.status, r.text())
    };
    let (hidden, hidden_page) = upload("hias/vannmalere");
    let (missing, _) = upload("hias/finnes-ikke");
    assert_eq!((hidden, missing), (404, 404), "{hidden_page}");
    assert!(!hidden_page.contains("hias/vann "), "the owning department is not named: {hidden_page}");
    // The control: a dataset of her own organisation, in another department, is hers to see.
    let (own_org, page) = upload("hamar/byggesaker");
    assert_eq!(own_org, 403, "{page}");
}

#[test]
fn a_neighbour_list_cut_short_says_so_and_is_not_offered_for_download() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "1500"]);
    common::dense_register(&t, 650);
    let server = start_with(&t, &["--demo"]);
    let mut jar = login(server.1, "ola");
    let page = jar.get(server.1, "/byggesak").text();
    let csrf = csrf_in(&page);
    let r = jar.post(server.1, "/byggesak", &format!("csrf={csrf}&q=3403-9000%2F1&avstand=50"));
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.text();
    assert!(page.contains("Listen viser de første 500 av de 649 eiendommene"), "{page}");
    assert!(!page.contains("value=\"csv\""), "a cut list is offered as CSV");
    let r = jar.post(server.1, "/byggesak/naboliste", &format!("csrf={csrf}&matrikkel=3403-9000%2F1&avstand=50&format=csv"));
    assert_eq!(r.status, 409);
    assert!(r.text().contains("Nabolisten er for lang til å lastes ned: 649 eiendommer"), "{}", r.text());
    let r = jar.post(server.1, "/byggesak/naboliste", &format!("csrf={csrf}&matrikkel=3403-9000%2F1&avstand=50&format=print"));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("de første 500 av de 649"), "{}", r.text());
    // A list that is whole is offered for download.
    let r = jar.post(server.1, "/byggesak", &format!("csrf={csrf}&q=3403-9000%2F1&avstand=0"));
    assert!(r.text().contains("value=\"csv\""));
}

#[test]
fn a_visitor_not_logged_in_finds_min_side_and_a_way_on_from_any_error_page() {
    let (_t, server, _, _) = demo(&[]);
    let front = send(server.1, "GET", "/", &[], None).text();
    assert!(front.contains(r#"<a href="/min-side">Min side</a>"#), "Min side is not in the navigation");
    let r = send(server.1, "GET", "/min-side", &[], None);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/logg-inn?next=%2Fmin-side"));
    // A missing page: back to the front page, and to log-in and back here.
    let r = send(server.1, "GET", "/datasett/hamar/finnes-ikke", &[], None);
    assert_eq!(r.status, 404);
    let body = r.text();
    assert!(body.contains(r#"<a class="button secondary" href="/">Til forsiden</a>"#), "{body}");
    assert!(body.contains(r#"<a class="button secondary" href="/logg-inn?next=%2Fdatasett%2Fhamar%2Ffinnes-ikke">Logg inn</a>"#), "{body}");
    // Logged in, the error page offers no log-in, and an employee's navigation no Min side.
    let mut jar = login(server.1, "ola");
    let body = jar.get(server.1, "/datasett/hamar/finnes-ikke").text();
    assert!(body.contains("Til forsiden") && !body.contains(">Logg inn</a>"), "{body}");
    assert!(!body.contains(r#"href="/min-side""#));
}
