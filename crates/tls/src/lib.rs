//! TLS for nubo: rustls with the ring provider, for the region's listeners
//! (the API and S3 serve HTTPS when given a certificate) and its clients.
//!
//! ring, not aws-lc-rs (rustls's and reqwest's default): measured on two
//! busy cores, a clean release build of rustls takes 53 s with ring and 136 s
//! with aws-lc-rs, whose C build alone takes 71 s. The price: ring has no post-quantum key exchange
//! (X25519MLKEM768), which rustls 0.23.48 marks by deprecating its ring
//! provider; moving to aws-lc-rs is [`provider`] and the features in the
//! workspace's Cargo.toml. Without a default provider built in, reqwest asks
//! rustls for the process's, so every process that builds an HTTP client
//! calls [`install_crypto_provider`] first.

mod listener;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use listener::{Listener, Stream};

/// The cryptography nubo's TLS uses: ring's (see above).
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes [`provider`] the process's cryptography for TLS; later calls do nothing.
pub fn install_crypto_provider() {
    let _ = CryptoProvider::clone(&provider()).install_default();
}

/// A server's certificate chain (leaf first) and private key (PKCS#8,
/// PKCS#1 or SEC1), from PEM files, read again by [`ServerCert::reload`] so
/// that a renewed certificate serves new connections without a restart.
#[derive(Debug)]
pub struct ServerCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerCert>, String> {
        Ok(Arc::new(ServerCert {
            current: RwLock::new(Arc::new(read(cert, key)?)),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }))
    }

    /// Reads the files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = Arc::new(read(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// TLS settings that serve this certificate (HTTP/1.1, which both of
    /// nubo's servers speak).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, String> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn read(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no PEM certificate in it",
            cert.display()
        ));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("TLS key {}: {e}", key.display()))?;
    CertifiedKey::from_der(certs, key, &provider()).map_err(|e| {
        format!(
            "TLS certificate {} and key do not go together: {e}",
            cert.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_pem_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("nubo-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let err = ServerCert::load(&cert, &key).unwrap_err();
        assert!(err.contains("cert.pem"), "{err}");
        std::fs::write(&cert, "not PEM\n").unwrap();
        let err = ServerCert::load(&cert, &key).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
