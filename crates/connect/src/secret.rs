//! Connectors' secrets (passwords, API keys, the runner's token), sealed with ChaCha20-Poly1305
//! under a key kept in a file outside the catalogue, like the access log's keys. A sealed text
//! is bound to its connector's name, so it cannot be moved to another connector.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::ConnectError;

/// The secrets of one connector. Never printed: `Debug` shows the header names only.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Secrets {
    /// The source's password (HTTP basic auth, a database's).
    #[serde(default)]
    pub password: Option<String>,
    /// Headers sent to an HTTP source, e.g. an API key.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The API token the connector writes with (its owner's).
    #[serde(default)]
    pub token: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// The sealing key.
pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox")
    }
}

const PREFIX: &str = "v1:";

impl SecretBox {
    /// The key in `path` (32 random bytes, made with mode 0600 on first use).
    pub fn open(path: &Path) -> Result<Self, ConnectError> {
        let err = |m: String| ConnectError::Secret(format!("{}: {m}", path.display()));
        let rng = SystemRandom::new();
        if !path.exists() {
            let mut key = [0u8; 32];
            rng.fill(&mut key).map_err(|_| err("cannot make a key".into()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            write_private(path, &key).map_err(|e| err(e.to_string()))?;
        }
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        if bytes.len() != 32 {
            return Err(err(format!("expected 32 bytes, found {}", bytes.len())));
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| err("not a key".into()))?;
        Ok(Self { key: LessSafeKey::new(key), rng })
    }

    /// `secrets` sealed for `name` (a connector's name, or a subscription's `subscription:ID`).
    pub fn seal<T: serde::Serialize>(&self, name: &str, secrets: &T) -> Result<String, ConnectError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| ConnectError::Secret("no randomness".into()))?;
        let mut data = serde_json::to_vec(secrets).map_err(|e| ConnectError::Secret(e.to_string()))?;
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| ConnectError::Secret("cannot seal".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(out)))
    }

    /// The secrets sealed for `name`; an error if they were sealed for another name, under
    /// another key, or changed.
    pub fn open_sealed<T: serde::de::DeserializeOwned>(&self, name: &str, sealed: &str) -> Result<T, ConnectError> {
        let refused = || ConnectError::Secret(format!("the secrets of {name} cannot be opened with this key"));
        let text = sealed.strip_prefix(PREFIX).ok_or_else(refused)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| refused())?;
        if bytes.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut data = data.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(name.as_bytes()), &mut data).map_err(|_| refused())?;
        serde_json::from_slice(plain).map_err(|_| refused())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Where the key lives by default: beside the catalogue, never in it.
pub fn default_key_path(data: &Path) -> PathBuf {
    data.join("connector-key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_connector_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let boxed = SecretBox::open(&dir.path().join("k")).unwrap();
        let secrets = Secrets { password: Some("hemmelig".into()), headers: vec![("X-Api-Key".into(), "abc".into())], token: None };
        let sealed = boxed.seal("skatt", &secrets).unwrap();
        assert!(!sealed.contains("hemmelig") && !sealed.contains("abc"));
        assert_eq!(boxed.open_sealed::<Secrets>("skatt", &sealed).unwrap().password.as_deref(), Some("hemmelig"));
        assert!(boxed.open_sealed::<Secrets>("annen", &sealed).is_err(), "bound to the connector's name");
        let other = SecretBox::open(&dir.path().join("k2")).unwrap();
        assert!(other.open_sealed::<Secrets>("skatt", &sealed).is_err(), "bound to the key");
        let mut bytes = base64::engine::general_purpose::STANDARD.decode(&sealed[PREFIX.len()..]).unwrap();
        bytes[NONCE_LEN + 2] ^= 1;
        let tampered = format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(bytes));
        assert!(boxed.open_sealed::<Secrets>("skatt", &tampered).is_err());
        assert!(!format!("{secrets:?}").contains("abc"), "Debug shows no secret");
        assert_eq!(SecretBox::open(&dir.path().join("k")).unwrap().open_sealed::<Secrets>("skatt", &sealed).unwrap().headers.len(), 1);
    }
}
