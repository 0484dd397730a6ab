//! OIDC bearer tokens against `tverr serve --oidc`: the test makes its own RSA and EC keys,
//! serves them as a JWKS on loopback, and signs employee (Entra ID), citizen (ID-porten) and
//! system (Maskinporten) tokens — valid ones, and every kind of forgery SECURITY.md §14 names.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Rsa, Tverr, request, rsa_key, start_with};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair;
use serde_json::json;

/// Serves one JWKS document to every request, forever, on a loopback port.
fn serve_jwks(jwks: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
        }
    });
    port
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

const ENTRA: &str = "https://login.microsoftonline.com/hamar-test/v2.0";
const IDPORTEN: &str = "https://test.idporten.no";
const ANSATTPORTEN: &str = "https://test.ansattporten.no";
const MASKINPORTEN: &str = "https://test.maskinporten.no/";

struct Keys<'a> {
    rsa: &'a Rsa,
    attacker: &'a Rsa,
    ec_pkcs8: &'a [u8],
}

/// Fills the placeholders of a case's claims: issuers, the citizen's number, and times
/// (`"{now+600}"` becomes a number of seconds).
fn fill(claims: &str, citizen_fnr: &str) -> serde_json::Value {
    let mut text = claims
        .replace("{entra}", ENTRA)
        .replace("{idporten}", IDPORTEN)
        .replace("{ansattporten}", ANSATTPORTEN)
        .replace("{maskinporten}", MASKINPORTEN);
    text = text.replace("{citizen_fnr}", citizen_fnr);
    while let Some(start) = text.find("\"{now") {
        let end = start + text[start..].find("}\"").expect("closed placeholder") + 2;
        let offset: i64 = text[start + 5..end - 2].parse().expect("{now+N} or {now-N}");
        text.replace_range(start..end, &(now() + offset).to_string());
    }
    serde_json::from_str(&text).expect("claims are JSON")
}

/// Signs claims as a case says: `alg` RS256, ES256, HS256-public (HMAC keyed with the RSA public
/// key), none (unsigned) or garbage; `key` issuer, attacker or ec; `kid` the header's key id.
fn sign(keys: &Keys<'_>, alg: &str, key: &str, kid: &str, claims: &serde_json::Value) -> String {
    let header = |alg| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.to_string());
        h
    };
    let rsa = if key == "attacker" { keys.attacker } else { keys.rsa };
    match alg {
        "RS256" => jsonwebtoken::encode(&header(Algorithm::RS256), claims, &EncodingKey::from_rsa_pem(&rsa.pem).unwrap()).unwrap(),
        "ES256" => jsonwebtoken::encode(&header(Algorithm::ES256), claims, &EncodingKey::from_ec_der(keys.ec_pkcs8)).unwrap(),
        "HS256-public" => jsonwebtoken::encode(&header(Algorithm::HS256), claims, &EncodingKey::from_secret(&rsa.public_pem)).unwrap(),
        "none" => format!("{}.{}.", B64.encode(format!(r#"{{"alg":"none","kid":"{kid}"}}"#)), B64.encode(claims.to_string())),
        "garbage" => "abc.def.ghi".to_string(),
        other => panic!("unknown alg {other}"),
    }
}

#[test]
fn oidc_tokens_are_verified_and_forgeries_refused() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    let citizen_fnr = t
        .ok(&["sql", "SELECT fodselsnummer FROM hamar.innbyggere ORDER BY fodselsnummer LIMIT 1", "--format", "csv"])
        .lines()
        .nth(1)
        .unwrap()
        .to_string();

    let rsa = rsa_key(t.dir.path(), "issuer");
    let attacker = rsa_key(t.dir.path(), "attacker");
    let ec_pkcs8 =
        ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &ring::rand::SystemRandom::new())
            .unwrap();
    let ec = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        ec_pkcs8.as_ref(),
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let point = ec.public_key().as_ref();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig", "n": rsa.n, "e": "AQAB"},
        {"kty": "EC", "kid": "ec1", "alg": "ES256", "use": "sig", "crv": "P-256",
         "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])},
    ]})
    .to_string();
    let jwks_port = serve_jwks(jwks);
    let jwks_uri = format!("http://127.0.0.1:{jwks_port}/keys");
    let config = json!({"issuers": [
        {"kind": "employee", "issuer": ENTRA, "jwks_uri": jwks_uri, "audience": "api://tverr", "org": "hamar",
         "claims": {"username": "preferred_username", "department": "department", "role": "roles"}},
        {"kind": "employee", "issuer": ANSATTPORTEN, "jwks_uri": jwks_uri, "audience": "tverr",
         "claims": {"username": "sub", "department": "department", "role": "role", "org": "orgnr"}},
        {"kind": "citizen", "issuer": IDPORTEN, "jwks_uri": jwks_uri, "audience": "tverr"},
        {"kind": "system", "issuer": MASKINPORTEN, "jwks_uri": jwks_uri, "audience": "tverr"},
    ]});
    let config_path = t.dir.path().join("oidc.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let server = start_with(&t, &["--oidc", config_path.to_str().unwrap()]);
    let port = server.1;

    let keys = Keys { rsa: &rsa, attacker: &attacker, ec_pkcs8: ec_pkcs8.as_ref() };
    let cases = common::Case::all_in("tokens");
    assert!(cases.len() >= 20, "only {} token cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let claims = fill(case.need("claims"), &citizen_fnr);
        let token = sign(&keys, case.need("alg"), case.need("key"), case.need("kid"), &claims);
        let table = match case.need("table") {
            "innbyggere" => "hamar.innbyggere",
            "vannmalere" => "hias.vannmalere",
            _ => "hamar.barnehager",
        };
        let auth = format!("Bearer {token}");
        let body = json!({"sql": format!("SELECT count(*) AS n FROM {table}")}).to_string();
        let mut headers = vec![("Authorization", auth.as_str()), ("Accept", "text/csv")];
        if let Some(p) = case.get("purpose") {
            headers.push(("Tverr-Purpose", p));
        }
        let (status, _, body) = request(port, "POST", "/api/v1/sql", &headers, Some(&body));
        let name = case.name();
        if status.to_string() != case.need("status") {
            failures.push(format!("{name}: status {status}, expected {}: {body}", case.need("status")));
        } else if let Some(want) = case.get("contains")
            && !body.contains(want)
        {
            failures.push(format!("{name}: {body:?} should contain {want:?}"));
        }
        if body.contains(&token) && token.len() > 10 {
            failures.push(format!("{name}: the response echoes the token"));
        }
    }
    assert!(failures.is_empty(), "{} failing token cases:\n{}", failures.len(), failures.join("\n"));

    // Without --oidc, JWTs are not accepted at all.
    drop(server);
    let plain = common::start(&t);
    let good = sign(
        &keys,
        "RS256",
        "issuer",
        "rsa1",
        &fill(
            r#"{"iss": "{entra}", "aud": "api://tverr", "exp": "{now+600}", "preferred_username": "ola", "department": "byggesak", "roles": "employee"}"#,
            &citizen_fnr,
        ),
    );
    let auth = format!("Bearer {good}");
    let (status, _, body) = request(plain.1, "GET", "/api/v1/datasets", &[("Authorization", &auth)], None);
    assert_eq!(status, 401, "{body}");
}

#[test]
fn a_bad_oidc_file_is_refused_with_its_location() {
    let t = Tverr::new();
    let path = t.dir.path().join("oidc.json");
    std::fs::write(&path, "{\"issuers\": [\n  {\"kind\": \"employee\", \"issuer\": \"x\"}\n]}").unwrap();
    let (code, err) = t.fail(&["serve", "--listen", "127.0.0.1:0", "--oidc", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("oidc.json: line 2") && err.contains("jwks_uri"), "{err}");
}
