//! How poplite reaches PostgreSQL securely: the `sslmode` and
//! `sslrootcert` of a `postgres://` URL, read as libpq reads them, become
//! the driver's settings and a rustls connector. The database may be on
//! another host (issue 15), across a network nobody vouches for.
//!
//! | `sslmode` | encrypted | the server's certificate |
//! |---|---|---|
//! | `disable` | never | – |
//! | `prefer` (the default) | when the server offers TLS | checked against `sslrootcert` if given, else not |
//! | `require` | always | checked against `sslrootcert` if given (then as `verify-ca`), else not |
//! | `verify-ca` | always | signed by a CA in `sslrootcert` |
//! | `verify-full` | always | signed by a CA in `sslrootcert`, and names the host |
//!
//! Where poplite departs from libpq, on purpose:
//! - `verify-ca` and `verify-full` need `sslrootcert=FILE` (PEM, relative
//!   to the working directory as in libpq): poplite reads no
//!   `~/.postgresql/root.crt` and no system store (`sslrootcert=system` is
//!   refused), so whom a server trusts is written in its URL, not in the
//!   home directory of whichever user it runs as.
//! - `prefer` falls back to plain text only when the server does not offer
//!   TLS. A handshake that fails (a certificate `sslrootcert` does not
//!   vouch for) is an error, where libpq would retry in the clear.
//! - `allow` is refused: it prefers plain text, which nobody should ask of
//!   a mail store.
//! - Client certificates (`sslcert`, `sslkey`) are not supported; the
//!   driver refuses them as unknown options.
//!
//! Unix sockets never carry TLS (the server does not offer it there, and
//! libpq ignores `sslmode` for them too).

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use futures_rustls::rustls;
use percent_encoding::percent_decode_str;
use postgres::config::{Host, SslMode};
use r2d2_postgres::PostgresConnectionManager;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{describe, redacted};
use crate::storage::StorageError;

/// The TLS connector of every connection to PostgreSQL, whatever its
/// `sslmode` (with `disable` it is never used).
pub type MakeTls = tokio_postgres_rustls::MakeRustlsConnect;

/// Why the TLS settings of a PostgreSQL URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PgTlsError {
    /// An `sslmode` that is not one of the five poplite knows.
    #[error("sslmode={0} is not one of disable, prefer, require, verify-ca, verify-full")]
    UnknownMode(String),
    /// `verify-ca` or `verify-full` with no CA to verify against.
    #[error("sslmode={0} needs sslrootcert=FILE, a PEM file of the CA certificates to trust (poplite does not read ~/.postgresql/root.crt)")]
    NoRootCert(&'static str),
    /// `sslrootcert=system`, libpq's name for the system's CA store.
    #[error("sslrootcert=system is not supported: give the PEM file of the CA that signed the server's certificate")]
    SystemRoots,
    /// The CA file cannot be read.
    #[error("cannot read the CA file {}: {source}", path.display())]
    CaFile {
        /// The file named by `sslrootcert`.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The CA file is not valid PEM.
    #[error("the CA file {} is not valid PEM: {source}", path.display())]
    CaNotPem {
        /// The file named by `sslrootcert`.
        path: PathBuf,
        /// What is wrong with it.
        source: rustls::pki_types::pem::Error,
    },
    /// The CA file holds no PEM certificate (a DER file, a key, a typo).
    #[error("the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", .0.display())]
    NoCaCertificate(PathBuf),
    /// A certificate in the CA file cannot serve as a trust anchor.
    #[error("the CA file {}: a certificate in it cannot be used: {source}", path.display())]
    CaRefused {
        /// The file named by `sslrootcert`.
        path: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// rustls refused the client configuration itself.
    #[error("cannot set up TLS: {0}")]
    Setup(#[source] rustls::Error),
}

/// What connecting to one database takes: the driver's settings, with
/// `sslmode` translated to what the driver knows, and the connector that
/// checks the server's certificate as `sslmode` asks.
#[derive(Clone)]
pub struct PgConnect {
    /// The driver's settings (host, user, password, database, `sslmode`).
    pub config: postgres::Config,
    /// The TLS connector that goes with them.
    pub tls: MakeTls,
}

impl PgConnect {
    /// Reads a `postgres://` URL as the user wrote it, `sslmode` and
    /// `sslrootcert` included (the CA file is read now, so a bad one is
    /// reported at start-up, not at the first connection).
    pub fn from_url(url: &str) -> Result<PgConnect, StorageError> {
        let split = split(url);
        let mut config = parse(&split.url).map_err(|source| StorageError::Postgres {
            database: redacted(url),
            source,
        })?;
        let tls_error = |source| StorageError::PostgresTls {
            database: describe(&config),
            source,
        };
        let mode = match &split.mode {
            Some(value) => Mode::parse(value).map_err(tls_error)?,
            // Not in a URL's parameters (or a key=value string, which the
            // driver read itself): its mode, `prefer` by default as libpq's.
            None => Mode::of_driver(config.get_ssl_mode()),
        };
        let tls = client_config(mode, split.root_cert.as_deref()).map_err(tls_error)?;
        let hosts = config.get_hosts();
        let unix_only = !hosts.is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        config.ssl_mode(if unix_only {
            SslMode::Disable
        } else {
            mode.driver()
        });
        Ok(PgConnect {
            config,
            tls: MakeTls::new(tls),
        })
    }

    /// A new connection, outside any pool.
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        self.config.connect(self.tls.clone())
    }

    /// A pool manager whose connections are made as [`PgConnect::connect`] makes them.
    pub fn manager(&self) -> PostgresConnectionManager<MakeTls> {
        PostgresConnectionManager::new(self.config.clone(), self.tls.clone())
    }

    /// The database for messages, without its password.
    pub fn database(&self) -> String {
        describe(&self.config)
    }
}

/// The driver's reading of `url`, without the TLS parameters it does not
/// know: enough to name the database, with no file read.
pub fn driver_config(url: &str) -> Result<postgres::Config, postgres::Error> {
    parse(&split(url).url)
}

fn parse(url: &str) -> Result<postgres::Config, postgres::Error> {
    postgres::Config::from_str(url)
}

/// libpq's `sslmode`s, less `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(value: &str) -> Result<Mode, PgTlsError> {
        Ok(match value {
            "disable" => Mode::Disable,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => return Err(PgTlsError::UnknownMode(other.to_string())),
        })
    }

    fn of_driver(mode: SslMode) -> Mode {
        match mode {
            SslMode::Disable => Mode::Disable,
            SslMode::Require => Mode::Require,
            _ => Mode::Prefer,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }

    /// The driver's mode: it knows only whether to ask for TLS and whether
    /// to insist; what is checked is the connector's business.
    fn driver(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// A URL's TLS parameters, taken out of it.
#[derive(Debug, PartialEq)]
struct Split {
    /// The URL without `sslmode` and `sslrootcert`: the driver refuses
    /// `verify-ca`, `verify-full` and `sslrootcert` as unknown.
    url: String,
    /// The last `sslmode=` (libpq takes the last too).
    mode: Option<String>,
    /// The last `sslrootcert=`.
    root_cert: Option<PathBuf>,
}

fn split(url: &str) -> Split {
    let unchanged = || Split {
        url: url.to_string(),
        mode: None,
        root_cert: None,
    };
    let Some(scheme) = ["postgres://", "postgresql://"]
        .iter()
        .find(|scheme| url.starts_with(**scheme))
    else {
        return unchanged();
    };
    // Found as the driver finds them: the credentials end at the first
    // `@`, and the parameters start at the first `?` after that.
    let host = url[scheme.len()..]
        .find('@')
        .map_or(scheme.len(), |at| scheme.len() + at + 1);
    let Some(question) = url[host..].find('?').map(|q| host + q) else {
        return unchanged();
    };
    let (mut mode, mut root_cert) = (None, None);
    let mut kept = Vec::new();
    for pair in url[question + 1..].split('&') {
        match pair.split_once('=') {
            Some(("sslmode", value)) => {
                mode = Some(percent_decode_str(value).decode_utf8_lossy().into_owned());
            }
            Some(("sslrootcert", value)) => {
                // A path is bytes on Unix, not necessarily UTF-8.
                let bytes: Vec<u8> = percent_decode_str(value).collect();
                root_cert = Some(PathBuf::from(OsString::from_vec(bytes)));
            }
            _ => kept.push(pair),
        }
    }
    let mut rest = url[..question].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Split {
        url: rest,
        mode,
        root_cert,
    }
}

/// What is checked of the server's certificate.
enum Check {
    /// Nothing: encryption against listeners, not against an impostor.
    Nothing,
    /// That a CA in the store signed it (`verify-ca`).
    Chain(RootCertStore),
    /// That, and that it names the host (`verify-full`).
    ChainAndName(RootCertStore),
}

fn client_config(mode: Mode, root_cert: Option<&Path>) -> Result<rustls::ClientConfig, PgTlsError> {
    let required = || root_cert.ok_or(PgTlsError::NoRootCert(mode.name()));
    let check = match mode {
        // Never used: the driver does not ask for TLS.
        Mode::Disable => Check::Nothing,
        Mode::Prefer | Mode::Require => match root_cert {
            Some(path) => Check::Chain(load_roots(path)?),
            None => Check::Nothing,
        },
        Mode::VerifyCa => Check::Chain(load_roots(required()?)?),
        Mode::VerifyFull => Check::ChainAndName(load_roots(required()?)?),
    };
    // ring, as for the POP3 listener: stated here rather than left to the
    // process default, which panics if a dependency ever adds aws-lc.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(PgTlsError::Setup)?;
    let builder = match check {
        Check::ChainAndName(roots) => builder.with_root_certificates(roots),
        Check::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoNameCheck {
                roots: Some(roots),
                algorithms,
            })),
        Check::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoNameCheck {
                roots: None,
                algorithms,
            })),
    };
    Ok(builder.with_no_client_auth())
}

/// The certificates of a PEM CA bundle.
fn load_roots(path: &Path) -> Result<RootCertStore, PgTlsError> {
    if path == Path::new("system") {
        return Err(PgTlsError::SystemRoots);
    }
    let pem = std::fs::read(path).map_err(|source| PgTlsError::CaFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|source| PgTlsError::CaNotPem {
            path: path.to_path_buf(),
            source,
        })?;
        roots.add(cert).map_err(|source| PgTlsError::CaRefused {
            path: path.to_path_buf(),
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(PgTlsError::NoCaCertificate(path.to_path_buf()));
    }
    Ok(roots)
}

/// The verifier of `verify-ca` (a chain up to `roots`, whatever name the
/// certificate gives) and of `prefer` and `require` without a CA (no
/// check, as libpq). The handshake's signatures are checked either way, so
/// the session belongs to the certificate's key.
#[derive(Debug)]
struct NoNameCheck {
    roots: Option<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoNameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_of(url: &str) -> (String, Option<String>, Option<PathBuf>) {
        let split = split(url);
        (split.url, split.mode, split.root_cert)
    }

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_rest_kept_in_order() {
        assert_eq!(
            split_of("postgres://u:p@db:5432/mail?connect_timeout=5&sslmode=verify-full&sslrootcert=/etc/ca%20x.pem&application_name=poplite"),
            (
                "postgres://u:p@db:5432/mail?connect_timeout=5&application_name=poplite".into(),
                Some("verify-full".into()),
                Some(PathBuf::from("/etc/ca x.pem")),
            )
        );
        assert_eq!(
            split_of("postgresql://db/mail?sslmode=require"),
            ("postgresql://db/mail".into(), Some("require".into()), None)
        );
    }

    #[test]
    fn the_last_sslmode_wins_as_in_libpq() {
        let (_, mode, _) = split_of("postgres://db/mail?sslmode=disable&sslmode=verify-ca");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
    }

    #[test]
    fn a_question_mark_in_the_password_does_not_start_the_parameters() {
        assert_eq!(
            split_of("postgres://u:p?sslmode=x@db/mail?sslmode=require"),
            (
                "postgres://u:p?sslmode=x@db/mail".into(),
                Some("require".into()),
                None
            )
        );
    }

    #[test]
    fn urls_without_parameters_and_key_value_strings_are_left_alone() {
        for url in ["postgres://db/mail", "host=db dbname=mail sslmode=require"] {
            assert_eq!(split_of(url), (url.to_string(), None, None));
        }
    }

    #[test]
    fn every_libpq_mode_but_allow_is_understood() {
        for name in ["disable", "prefer", "require", "verify-ca", "verify-full"] {
            assert_eq!(Mode::parse(name).unwrap().name(), name);
        }
        assert!(matches!(
            Mode::parse("allow"),
            Err(PgTlsError::UnknownMode(_))
        ));
    }

    /// A CA certificate of rcgen's, written as PEM in a fresh directory.
    fn ca_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, cert.pem()).unwrap();
        (dir, path)
    }

    #[test]
    fn the_driver_insists_on_tls_for_require_and_the_verifying_modes() {
        let (_dir, ca) = ca_file();
        let mode = |url: &str| PgConnect::from_url(url).unwrap().config.get_ssl_mode();
        assert_eq!(
            mode("postgres://db/mail"),
            SslMode::Prefer,
            "libpq's default"
        );
        for (given, driver) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::Require),
            ("verify-full", SslMode::Require),
        ] {
            let url = format!(
                "postgres://db/mail?sslmode={given}&sslrootcert={}",
                ca.display()
            );
            assert_eq!(mode(&url), driver, "{given}");
        }
    }

    #[test]
    fn the_ca_file_is_read_for_every_mode_that_uses_it() {
        let url =
            |mode: &str| format!("postgres://db/mail?sslmode={mode}&sslrootcert=/nonexistent");
        // disable ignores it, as libpq does.
        PgConnect::from_url(&url("disable")).unwrap();
        for mode in ["prefer", "require", "verify-ca", "verify-full"] {
            let error = PgConnect::from_url(&url(mode)).map(drop).unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains("cannot read the CA file /nonexistent"),
                "{text}"
            );
            let cause = std::error::Error::source(&error).and_then(std::error::Error::source);
            assert!(
                cause.is_some_and(|cause| cause.is::<std::io::Error>()),
                "the cause is kept"
            );
        }
    }

    #[test]
    fn verifying_without_a_ca_says_what_to_add() {
        let error = PgConnect::from_url("postgres://u:secret@db/mail?sslmode=verify-full")
            .map(drop)
            .unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("postgres://db:5432/mail: sslmode=verify-full needs sslrootcert=FILE"),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        assert!(!error.is_temporary());
    }

    #[test]
    fn a_unix_socket_never_asks_for_tls() {
        let connect =
            PgConnect::from_url("postgres://%2Frun%2Fpostgresql/mail?sslmode=require").unwrap();
        assert_eq!(connect.config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let url = format!(
            "postgres://db/mail?sslmode=verify-ca&sslrootcert={}",
            path.display()
        );
        let error = PgConnect::from_url(&url).map(drop).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(&format!("{} holds no PEM certificate", path.display())),
            "{error}"
        );
    }
}
