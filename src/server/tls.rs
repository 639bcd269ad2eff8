//! TLS for STLS (RFC 2595) and implicit-TLS listeners (POP3S): loading a
//! PEM certificate chain and key into a rustls configuration, replacing
//! it when the files change (SIGHUP after a certbot renewal), and making a
//! self-signed certificate for home labs and tests. A transport concern
//! only: the protocol layer just learns whether the connection is secure.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures_rustls::rustls;
use futures_rustls::TlsAcceptor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file cannot be read or holds no certificate.
    #[error("cannot read the TLS certificate {}: {reason}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file cannot be read or holds no private key.
    #[error("cannot read the TLS key {}: {reason}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the pair (most often: the key is not the certificate's).
    #[error("cannot use the TLS certificate {} with the key {}: {}", cert.display(), key.display(), in_words(source))]
    Rejected {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// A self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[source] rcgen::Error),
    /// A name for a certificate is neither a host name nor an IP address.
    #[error("{0:?} is not a host name or an IP address")]
    BadName(String),
}

/// The server's TLS settings: where the certificate and key live, and the
/// configuration loaded from them that new handshakes use.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    /// Replaced whole by [`Tls::reload`]; sessions already running keep
    /// the configuration they shook hands with.
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads a PEM certificate chain (leaf first) and its PEM private key
    /// (PKCS#8, PKCS#1 or SEC1: RSA, ECDSA or Ed25519).
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Tls, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let config = server_config(&cert, &key)?;
        Ok(Tls {
            cert,
            key,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again and uses them for new handshakes; on an error
    /// the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(server_config(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// An acceptor for one handshake with the current configuration.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(|p| p.into_inner());
        TlsAcceptor::from(Arc::clone(&config))
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let cert_error = |reason: String| TlsError::Certificate {
        path: cert.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(pem_reason(e, "certificate")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(pem_reason(e, "certificate")))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate in it".into()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: pem_reason(e, "private key"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let rejected = |source: rustls::Error| TlsError::Rejected {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        source,
    };
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(rejected)
}

/// rustls's refusal of a certificate and key, in an admin's words.
fn in_words(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InconsistentKeys(_) => "the key does not belong to the certificate".into(),
        other => other.to_string(),
    }
}

/// Why a PEM file that should hold a `wanted` is no good, in words.
fn pem_reason(error: rustls::pki_types::pem::Error, wanted: &str) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(error) => error.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => format!("no PEM {wanted} in it"),
        other => format!("not valid PEM: {other}"),
    }
}

/// Whether `name` can go into a certificate: an IP address, or a DNS name
/// (letters, digits and hyphens in dot-separated labels, optionally
/// starting with a `*.` wildcard).
fn is_certificate_name(name: &str) -> bool {
    if name.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    host.len() <= 253 && host.split('.').all(label_ok)
}

/// A new self-signed certificate for `names` (DNS names or IP addresses,
/// the first also its common name), as PEM: `(certificate, private key)`.
/// The key is ECDSA P-256.
pub fn self_signed(names: &[String]) -> Result<(String, String), TlsError> {
    if let Some(bad) = names.iter().find(|name| !is_certificate_name(name)) {
        return Err(TlsError::BadName(bad.clone()));
    }
    let generate = TlsError::Generate;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(generate)?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let (cert, key) = self_signed(&names).unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn a_self_signed_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), &["localhost", "127.0.0.1"]);
        Tls::load(cert, key).unwrap();
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = write_pair(dir.path(), &["localhost"]);
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        let (_, other_key) = write_pair(&other, &["localhost"]);
        let error = Tls::load(cert, other_key).unwrap_err();
        assert!(error.to_string().contains("does not belong"), "{error}");
    }

    #[test]
    fn files_without_pem_are_refused_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), &["localhost"]);
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let error = Tls::load(&junk, &key).unwrap_err();
        assert!(matches!(error, TlsError::Certificate { .. }), "{error}");
        assert!(error.to_string().contains("junk.pem"), "{error}");
        let error = Tls::load(&cert, &junk).unwrap_err();
        assert!(matches!(error, TlsError::Key { .. }), "{error}");
        let error = Tls::load(dir.path().join("missing.pem"), &key).unwrap_err();
        assert!(error.to_string().contains("missing.pem"), "{error}");
    }

    #[test]
    fn certificate_names_are_host_names_or_addresses() {
        for good in [
            "localhost",
            "mail.example.org",
            "*.example.org",
            "127.0.0.1",
            "::1",
            "a-b.c",
        ] {
            assert!(is_certificate_name(good), "{good}");
        }
        for bad in ["", "bad name!", "a..b", "-a.b", "*", "x.*.y", "ünï"] {
            assert!(!is_certificate_name(bad), "{bad:?}");
        }
        assert!(matches!(
            self_signed(&["localhost".into(), "bad name".into()]),
            Err(TlsError::BadName(name)) if name == "bad name"
        ));
    }

    #[test]
    fn a_failed_reload_keeps_the_previous_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), &["localhost"]);
        let tls = Tls::load(&cert, &key).unwrap();
        let before = Arc::clone(&tls.current.read().unwrap());
        std::fs::write(&cert, "garbage").unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&before, &tls.current.read().unwrap()));
        write_pair(dir.path(), &["localhost"]);
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.current.read().unwrap()));
    }
}
