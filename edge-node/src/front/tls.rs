//! TLS for the `[https]` listeners: certificates from PEM files (or made up for `dev --tls`),
//! swapped in place on SIGHUP so open connections are not dropped; ALPN `h2` and `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("cannot read a certificate from {}: {reason}", path.display())]
    Cert { path: PathBuf, reason: String },
    /// The key file could not be read or holds no PEM private key.
    #[error("cannot read a private key from {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    /// The key is of a kind rustls cannot sign with, or does not fit the certificate.
    #[error("the key in {} cannot be used: {reason}", path.display())]
    Unusable { path: PathBuf, reason: String },
    /// A self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Made up at start for `dev --tls`, for `localhost` and `127.0.0.1`.
    SelfSigned,
}

/// The node's current certificate, replaceable while connections stay open.
#[derive(Debug)]
pub struct CertStore {
    source: CertSource,
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn load(source: CertSource) -> Result<Arc<CertStore>, TlsError> {
        let key = load_key(&source)?;
        Ok(Arc::new(CertStore { source, current: ArcSwap::from_pointee(key) }))
    }

    /// Reads the files again; on failure the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store(Arc::new(load_key(&self.source)?));
        Ok(())
    }

    /// A server configuration serving this store's certificate, with ALPN h2 and http/1.1.
    pub fn server_config(self: &Arc<Self>) -> TlsConfig {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the default provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A server configuration for the admin API: this store's certificate, HTTP/1.1 only.
    pub fn admin_config(self: &Arc<Self>) -> TlsConfig {
        let mut config = (*self.server_config()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// The current certificate chain, PEM-encoded (for clients in tests and `dev --tls`).
    pub fn cert_pem(&self) -> String {
        self.current.load().cert.iter().map(|c| pem_encode("CERTIFICATE", c.as_ref())).collect()
    }
}

/// The TLS configuration of the TCP listeners.
pub type TlsConfig = Arc<rustls::ServerConfig>;

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn load_key(source: &CertSource) -> Result<CertifiedKey, TlsError> {
    let (chain, key, key_path) = match source {
        CertSource::Files { cert, key } => (read_chain(cert)?, read_key(key)?, key.clone()),
        CertSource::SelfSigned => {
            let made =
                rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                    .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
            let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
                .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
            (vec![made.cert.der().clone()], key, PathBuf::from("(self-signed)"))
        }
    };
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| TlsError::Unusable { path: key_path, reason: e.to_string() })?;
    Ok(certified)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Cert { path: path.to_path_buf(), reason };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if chain.is_empty() {
        return Err(err("no CERTIFICATE block".into()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::Key { path: path.to_path_buf(), reason: e.to_string() })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
