//! The log's two keys, each a file outside the catalogue made on first use: the Ed25519 key that
//! signs checkpoints, and the key of the HMAC that names a data subject.

use super::*;

pub(crate) fn load_or_make_key(path: &Path) -> Result<Ed25519KeyPair, AuditError> {
    let err = |message: String| AuditError::Key { path: path.to_path_buf(), message };
    if !path.exists() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| err("cannot make a key".into()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        write_private(path, pkcs8.as_ref()).map_err(|e| err(e.to_string()))?;
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| err("not an Ed25519 PKCS#8 key".into()))
}

pub(crate) fn load_or_make_subject_key(path: &Path) -> Result<Vec<u8>, AuditError> {
    let err = |message: String| AuditError::Key { path: path.to_path_buf(), message };
    if !path.exists() {
        let mut key = [0u8; 32];
        ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut key).map_err(|_| err("cannot make a key".into()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        write_private(path, &key).map_err(|e| err(e.to_string()))?;
    }
    let key = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if key.len() < 32 {
        return Err(err(format!("expected at least 32 bytes, found {}", key.len())));
    }
    Ok(key)
}

#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?.write_all(bytes)
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

pub(crate) fn subject_id(key: &[u8], pid: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(pid.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}
