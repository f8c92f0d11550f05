//! Secrets at rest: sealed with ChaCha20-Poly1305 under a key that lives in a file
//! outside the store (mode 0600), so that a copy of the database alone reveals no
//! secret. SigV4 needs the secret itself, so a hash would not do.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

#[derive(Debug, thiserror::Error)]
pub enum SecretBoxError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} must hold exactly 32 bytes")]
    BadKey(String),
    #[error("key file {path} is readable by others (mode {mode:o}); chmod 600 it")]
    Permissions { path: String, mode: u32 },
    #[error("a sealed secret does not open with this key (wrong key file, or corrupt store)")]
    Open,
}

/// Seals and opens secrets. Cheap to clone.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

const NONCE_LEN: usize = 12;
/// Sealed values start with a version tag so that the format can change later.
const VERSION: &str = "v1:";

impl SecretBox {
    /// Loads the key at `path`, creating a random one (mode 0600) if there is none.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, SecretBoxError> {
        let io = |source| SecretBoxError::Io {
            path: path.display().to_string(),
            source,
        };
        if !path.exists() {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).expect("the OS random source is available");
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            file.write_all(&key).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretBoxError::Permissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let key = fs::read(path).map_err(io)?;
        Self::from_key(&key).ok_or_else(|| SecretBoxError::BadKey(path.display().to_string()))
    }

    /// A box over a raw 32-byte key.
    pub fn from_key(key: &[u8]) -> Option<SecretBox> {
        let cipher = ChaCha20Poly1305::new_from_slice(key).ok()?;
        Some(SecretBox { cipher })
    }

    /// Seals `secret`, binding it to `context` (the key id), so that a sealed
    /// secret moved onto another key's row does not open.
    pub fn seal(&self, context: &str, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                chacha20poly1305::aead::Payload {
                    msg: secret.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("sealing a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{VERSION}{}", STANDARD.encode(out))
    }

    pub fn open(&self, context: &str, sealed: &str) -> Result<String, SecretBoxError> {
        let bytes = sealed
            .strip_prefix(VERSION)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(SecretBoxError::Open)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretBoxError::Open)?;
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                chacha20poly1305::aead::Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretBoxError::Open)?;
        String::from_utf8(plain).map_err(|_| SecretBoxError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_context() {
        let b = SecretBox::from_key(&[7u8; 32]).unwrap();
        let sealed = b.seal("AK1", "s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(b.open("AK1", &sealed).unwrap(), "s3cret");
        assert!(b.open("AK2", &sealed).is_err(), "context is bound");
        let other = SecretBox::from_key(&[8u8; 32]).unwrap();
        assert!(
            other.open("AK1", &sealed).is_err(),
            "another key cannot open"
        );
        assert!(b.open("AK1", "v1:garbage").is_err());
        assert!(b.open("AK1", "").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("nubo-sb-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secrets.key");
        let _ = fs::remove_file(&path);
        let a = SecretBox::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = a.seal("AK", "x");
        let b = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(b.open("AK", &sealed).unwrap(), "x");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SecretBox::load_or_create(&path),
            Err(SecretBoxError::Permissions { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
