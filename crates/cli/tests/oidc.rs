//! OIDC bearer tokens against `tverr serve --oidc`: the test makes its own RSA and EC keys,
//! serves them as a JWKS on loopback, and signs employee (Entra ID), citizen (ID-porten) and
//! system (Maskinporten) tokens — valid ones, and every kind of forgery SECURITY.md §14 names.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Tverr, request, start_with};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::KeyPair;
use serde_json::json;

struct Rsa {
    pem: Vec<u8>,
    public_pem: Vec<u8>,
    n: String,
}

/// A fresh 2048-bit RSA key, made with the openssl command.
fn rsa_key(dir: &std::path::Path, name: &str) -> Rsa {
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
    Rsa { pem: std::fs::read(&path).unwrap(), public_pem: public.stdout, n: B64.encode(hex::decode(hex_n).unwrap()) }
}

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
const MASKINPORTEN: &str = "https://test.maskinporten.no/";

#[test]
fn oidc_tokens_are_verified_and_forgeries_refused() {
    let t = Tverr::new();
    t.ok(&["demo", "--persons", "300"]);
    let citizen_fnr = t.ok(&["sql", "SELECT fodselsnummer FROM hamar.innbyggere ORDER BY fodselsnummer LIMIT 1", "--format", "csv"])
        .lines()
        .nth(1)
        .unwrap()
        .to_string();

    let rsa = rsa_key(t.dir.path(), "issuer");
    let attacker = rsa_key(t.dir.path(), "attacker");
    let ec_pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
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
        {"kind": "citizen", "issuer": IDPORTEN, "jwks_uri": jwks_uri, "audience": "tverr"},
        {"kind": "system", "issuer": MASKINPORTEN, "jwks_uri": jwks_uri, "audience": "tverr"},
    ]});
    let config_path = t.dir.path().join("oidc.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let server = start_with(&t, &["--oidc", config_path.to_str().unwrap()]);
    let port = server.1;

    let rs = |claims: serde_json::Value, key: &[u8], kid: &str| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_pem(key).unwrap()).unwrap()
    };
    let es = |claims: serde_json::Value| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("ec1".into());
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(ec_pkcs8.as_ref())).unwrap()
    };
    let employee = |extra: serde_json::Value| {
        let mut c = json!({"iss": ENTRA, "aud": "api://tverr", "exp": now() + 600, "nbf": now() - 10,
            "preferred_username": "ola@hamar.kommune.no", "department": "byggesak", "roles": ["Tverr.Reader", "employee"]});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let sql = |token: &str, purpose: &str, query: &str| {
        let auth = format!("Bearer {token}");
        let body = json!({"sql": query}).to_string();
        request(port, "POST", "/api/v1/sql", &[("Authorization", &auth), ("Tverr-Purpose", purpose), ("Accept", "text/csv")], Some(&body))
    };
    let innbyggere = "SELECT count(*) AS n FROM hamar.innbyggere";

    // An employee token, RS256: department and role from the claims, the agreement applies.
    let good = rs(employee(json!({})), &rsa.pem, "rsa1");
    let (status, _, body) = sql(&good, "byggesaksbehandling", innbyggere);
    assert_eq!((status, body.as_str()), (200, "n\n300\n"), "{body}");
    // The same with ES256.
    let (status, _, body) = sql(&es(employee(json!({}))), "byggesaksbehandling", innbyggere);
    assert_eq!(status, 200, "{body}");
    // The department decides: an employee of helse does not see the population register.
    let helse = rs(employee(json!({"department": "helse"})), &rsa.pem, "rsa1");
    assert_eq!(sql(&helse, "byggesaksbehandling", innbyggere).0, 404);

    // Forgeries and invalid tokens: all 401, with a reason.
    let unsigned = format!("{}.{}.", B64.encode(r#"{"alg":"none","kid":"rsa1"}"#), B64.encode(employee(json!({})).to_string()));
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("rsa1".into());
    let hs_with_public_key = jsonwebtoken::encode(&hs, &employee(json!({})), &EncodingKey::from_secret(&rsa.public_pem)).unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", rs(employee(json!({"exp": now() - 3600})), &rsa.pem, "rsa1"), "expired"),
        ("not yet valid", rs(employee(json!({"nbf": now() + 3600})), &rsa.pem, "rsa1"), "not valid yet"),
        ("wrong issuer", rs(employee(json!({"iss": "https://evil.example/"})), &rsa.pem, "rsa1"), "issuer"),
        ("wrong audience", rs(employee(json!({"aud": "api://other"})), &rsa.pem, "rsa1"), "audience"),
        ("bad signature", rs(employee(json!({})), &attacker.pem, "rsa1"), "signature"),
        ("unknown key", rs(employee(json!({})), &attacker.pem, "attacker"), "unknown signing key"),
        ("alg none", unsigned, "not"),
        ("HS256 with the public key", hs_with_public_key, "HS256"),
        ("no role", rs(employee(json!({"roles": ["Tverr.Reader"]})), &rsa.pem, "rsa1"), "role"),
        ("unknown department", rs(employee(json!({"department": "finnes-ikke"})), &rsa.pem, "rsa1"), "department"),
        ("garbage", "abc.def.ghi".to_string(), "JWT"),
    ];
    for (name, token, reason) in cases {
        let (status, ctype, body) = sql(&token, "byggesaksbehandling", innbyggere);
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(ctype, "application/problem+json", "{name}");
        assert!(body.contains(reason), "{name}: {body}");
        assert!(!body.contains(&token), "{name}: the problem must not echo the token");
    }

    // Citizens: substantial or higher; they read open data, not the register.
    let citizen = |acr: &str| {
        es(json!({"iss": IDPORTEN, "aud": "tverr", "exp": now() + 600, "pid": citizen_fnr, "acr": acr}))
    };
    let (status, _, body) = sql(&citizen("idporten-loa-substantial"), "", "SELECT count(*) AS n FROM hamar.barnehager");
    assert_eq!(status, 200, "{body}");
    assert_eq!(sql(&citizen("idporten-loa-high"), "byggesaksbehandling", innbyggere).0, 404);
    let (status, _, body) = sql(&citizen("idporten-loa-low"), "", "SELECT 1");
    assert_eq!(status, 401);
    assert!(body.contains("level"), "{body}");

    // Systems: consumer.ID names a known organisation.
    let system = |orgnr: &str| {
        rs(json!({"iss": MASKINPORTEN, "aud": "tverr", "exp": now() + 600, "scope": "tverr:les",
            "consumer": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{orgnr}")}}), &rsa.pem, "rsa1")
    };
    assert_eq!(sql(&system("970540008"), "", "SELECT count(*) AS n FROM hamar.barnehager").0, 200);
    assert_eq!(sql(&system("970540008"), "byggesaksbehandling", innbyggere).0, 404);
    let (status, _, body) = sql(&system("974760673"), "", "SELECT 1");
    assert_eq!(status, 401, "{body}");

    // Without --oidc, JWTs are not accepted at all.
    drop(server);
    let plain = common::start(&t);
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
