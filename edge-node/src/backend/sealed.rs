//! Function secrets encrypted at rest: in the node's store and in the cluster's bucket each
//! value is sealed with ChaCha20-Poly1305 under the node's key, bound to the function and key
//! it belongs to (so a sealed value moved to another secret does not open).

use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The prefix of a sealed value (and its format's version).
const PREFIX: &str = "sealed1:";

/// Why the key is unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the secrets key in {} cannot be read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secrets key {0} is not 64 hex digits (32 bytes)")]
    Malformed(String),
    #[error("cannot write a new secrets key to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The key secrets are sealed under.
#[derive(Clone)]
pub struct SecretKey(Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A sealed value that does not open with this key (another key, or damaged).
#[derive(Debug, thiserror::Error)]
#[error(
    "a secret does not open with this node's secrets key (written under another key, or damaged)"
)]
pub struct OpenError;

impl SecretKey {
    /// A random key (tests, and a node's first start).
    pub fn random() -> SecretKey {
        SecretKey(ChaCha20Poly1305::generate_key(&mut chacha20poly1305::aead::OsRng))
    }

    /// From 64 hex digits.
    pub fn from_hex(text: &str, what: &str) -> Result<SecretKey, KeyError> {
        let text = text.trim();
        let bytes: Option<Vec<u8>> = (text.len() == 64)
            .then(|| {
                (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()).collect()
            })
            .flatten();
        let bytes = bytes.ok_or_else(|| KeyError::Malformed(what.to_string()))?;
        Ok(SecretKey(*Key::from_slice(&bytes)))
    }

    /// The node's key: from the environment variable when set, else the key file (made with
    /// a random key, mode 0600, when it does not exist yet).
    pub fn load(
        env_value: Option<&str>,
        env_name: &str,
        file: &Path,
    ) -> Result<SecretKey, KeyError> {
        if let Some(value) = env_value.filter(|v| !v.is_empty()) {
            return SecretKey::from_hex(value, &format!("in {env_name}"));
        }
        match std::fs::read_to_string(file) {
            Ok(text) => SecretKey::from_hex(&text, &format!("in {}", file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SecretKey::random();
                key.save(file)?;
                Ok(key)
            }
            Err(source) => Err(KeyError::Read { path: file.to_path_buf(), source }),
        }
    }

    /// Writes the key to `file` as 64 hex digits, readable by the node's user only, whole or
    /// not at all (it replaces what was there).
    pub fn save(&self, file: &Path) -> Result<(), KeyError> {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        let write = || {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            crate::backend::local::write_private_atomically(file, format!("{hex}\n").as_bytes())
        };
        write().map_err(|source| KeyError::Write { path: file.to_path_buf(), source })
    }

    /// `value` sealed for secret `key` of function `function`.
    pub fn seal(&self, function: &str, key: &str, value: &str) -> String {
        let cipher = ChaCha20Poly1305::new(&self.0);
        let nonce = ChaCha20Poly1305::generate_nonce(&mut chacha20poly1305::aead::OsRng);
        let aad = format!("{function}\0{key}");
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: value.as_bytes(), aad: aad.as_bytes() })
            .expect("sealing a value in memory does not fail");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// The value sealed for secret `key` of `function`.
    pub fn open(&self, function: &str, key: &str, sealed: &str) -> Result<String, OpenError> {
        let encoded = sealed.strip_prefix(PREFIX).ok_or(OpenError)?;
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| OpenError)?;
        if bytes.len() < 12 {
            return Err(OpenError);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let aad = format!("{function}\0{key}");
        let cipher = ChaCha20Poly1305::new(&self.0);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: aad.as_bytes() })
            .map_err(|_| OpenError)?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }

    /// Whether a stored value is sealed (values written before sealing are not).
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_for_the_same_secret_and_key() {
        let key = SecretKey::random();
        let sealed = key.seal("f", "TOKEN", "hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(key.open("f", "TOKEN", &sealed).unwrap(), "hunter2");
        assert!(key.open("g", "TOKEN", &sealed).is_err(), "bound to its function");
        assert!(key.open("f", "OTHER", &sealed).is_err(), "bound to its key");
        assert!(SecretKey::random().open("f", "TOKEN", &sealed).is_err(), "another key");
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push('A');
        assert!(key.open("f", "TOKEN", &damaged).is_err());
    }

    #[test]
    fn a_key_file_is_made_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.key");
        let first = SecretKey::load(None, "K", &file).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let again = SecretKey::load(None, "K", &file).unwrap();
        assert_eq!(again.open("f", "k", &first.seal("f", "k", "v")).unwrap(), "v");
        assert!(SecretKey::load(Some("abc"), "K", &file).is_err(), "a malformed key is refused");
    }
}
