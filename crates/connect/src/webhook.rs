//! Signing webhook events: `Tverr-Signature: t=UNIX_SECONDS,v1=HEX`, where HEX is
//! HMAC-SHA-256 under the subscription's secret of `UNIX_SECONDS`, a full stop and the body's
//! bytes. A receiver recomputes it, compares in constant time, and refuses an old `t` (a
//! replay) and an event id it has had.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::ConnectError;

/// The prefix of every subscription secret, so one is recognised where it is pasted.
pub const SECRET_PREFIX: &str = "tverr_whsec_";

/// A new signing secret: the prefix and 32 random bytes in hex.
pub fn new_secret() -> Result<String, ConnectError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new().fill(&mut bytes).map_err(|_| ConnectError::Secret("no randomness".into()))?;
    Ok(format!("{SECRET_PREFIX}{}", hex::encode(bytes)))
}

/// The `Tverr-Signature` header's value for `body` sent at `t` (seconds since 1970).
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(format!("{t}.").as_bytes());
    ctx.update(body);
    format!("t={t},v1={}", hex::encode(ctx.sign().as_ref()))
}

/// Whether `header` signs `body` under `secret` at a time within `tolerance` seconds of `now`:
/// the receiver's check, as the README gives it in Python.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    if (now - t).abs() > tolerance {
        return false;
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    hmac::verify(&key, &message, &v1).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_secret_body_and_time() {
        let secret = new_secret().unwrap();
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == SECRET_PREFIX.len() + 64);
        let body = br#"{"dataset":"hamar/barnehager","version":3}"#;
        let header = signature(&secret, 1_800_000_000, body);
        assert!(verify(&secret, &header, body, 1_800_000_010, 300));
        assert!(!verify(&secret, &header, br#"{"dataset":"hamar/barnehager","version":4}"#, 1_800_000_010, 300), "a changed body");
        assert!(!verify(&new_secret().unwrap(), &header, body, 1_800_000_010, 300), "another secret");
        assert!(!verify(&secret, &header, body, 1_800_000_400, 300), "a replay after the tolerance");
        let forged = header.replace("t=1800000000", "t=1800000300");
        assert!(!verify(&secret, &forged, body, 1_800_000_300, 300), "a new time on an old signature");
        assert!(!verify(&secret, "t=1800000000", body, 1_800_000_000, 300));
        assert!(!verify(&secret, "", body, 1_800_000_000, 300));
        // The same as Python's hmac.new(secret, f"{t}.".encode() + body, sha256).hexdigest().
        assert_eq!(
            signature("k", 1, b"{}"),
            "t=1,v1=".to_string() + &hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, b"k"), b"1.{}").as_ref())
        );
    }
}
