//! TLS of the binaries.
//!
//! One crypto provider for the whole process ([`install_crypto_provider`]), and the PostgreSQL
//! client TLS of the connections through the tunnel (the failover probe, the sidecar's peer
//! check), with libpq `sslmode` semantics ([`SslMode`], [`ProbeTls`]):
//!
//! | mode | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` | if the server agrees, else plain text | not verified (like libpq without a root cert) |
//! | `require` | required | not verified: encryption only; verified like `verify-ca` when a root certificate file is given (libpq does the same when a root certificate exists) |
//! | `verify-ca` | required | chain verified against the root certificate file; host name **not** checked |
//! | `verify-full` | refused | the connections dial the tunnel's ClusterIP, which no certificate names |
//!
//! The crypto provider is always `ring` (the one library the workspace links), passed explicitly
//! rather than taken from the process default.
//!
//! The connector also records how far the TLS negotiation got ([`Handshake`]), because for the
//! decision "is the primary alive?" a server that answered the SSL request (`S`) and then failed
//! the handshake or the verification *did* answer (the failover probe's rule).

use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::Socket;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Installs ring as the process-wide rustls provider. Idempotent: a second call (or a provider
/// installed by someone else first) is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// libpq `sslmode` values. `verify-full` is parsed only to be refused with its reason: the
/// connections dial the tunnel's ClusterIP, which no certificate of the peer names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    /// Parsed only to refuse it with a reason ([`SslMode::refuse_verify_full`]).
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What the driver is told: it only knows whether to ask for TLS; the certificate checks of
    /// `verify-ca` are the verifier's ([`ProbeTls`]).
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }

    /// The reason `verify-full` is refused, for the configuration error of each binary.
    pub fn refuse_verify_full(root_cert_var: &str) -> String {
        format!(
            "verify-full is not supported: the connection dials the tunnel's ClusterIP, which no \
             certificate of the peer names, so a host name check could only fail; use verify-ca \
             (the chain is verified against {root_cert_var})"
        )
    }
}

/// How the probe's server certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Any certificate (libpq `prefer`/`require` without a root certificate): encryption only.
    None,
    /// The chain must lead to a certificate of the CA file; the host name is not checked.
    Ca,
}

/// Why the probe's TLS configuration cannot be built (for the operator: what is wrong with the
/// setting or the CA file).
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// Refused by the configuration before it gets here.
    #[error("verify-full is not supported; use verify-ca")]
    VerifyFull,
    #[error("required with sslmode verify-ca: the CA file that signed the peer's certificate")]
    CaFileRequired,
    #[error("cannot read {path}: {error}")]
    Unreadable { path: String, error: io::Error },
    #[error("{path} is not a PEM certificate file: {error}")]
    NotPem { path: String, error: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("TLS configuration: {0}")]
    Rustls(String),
    #[error("{path}: certificate {index} is unusable: {error}")]
    Unusable {
        path: String,
        index: usize,
        error: String,
    },
}

/// The probe's TLS client configuration, built once at start from the sslmode and the CA file.
#[derive(Clone)]
pub struct ProbeTls {
    config: Arc<ClientConfig>,
    verification: Verification,
}

impl fmt::Debug for ProbeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeTls")
            .field("verification", &self.verification)
            .finish()
    }
}

impl ProbeTls {
    /// `None` for `disable`. `root_cert` is the CA file (PEM, one or more certificates); it is
    /// required for `verify-ca`, used by `require` when given (libpq), ignored by `prefer`.
    /// Errors are for the operator: they say what is wrong with the file.
    pub fn new(mode: SslMode, root_cert: Option<&Path>) -> Result<Option<Self>, TlsConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (mode, root_cert) {
            (SslMode::Disable, _) => return Ok(None),
            // Refused by the configuration before it gets here.
            (SslMode::VerifyFull, _) => return Err(TlsConfigError::VerifyFull),
            (SslMode::VerifyCa, None) => return Err(TlsConfigError::CaFileRequired),
            (SslMode::VerifyCa | SslMode::Require, Some(path)) => {
                Arc::new(PgVerifier::with_ca_file(path, &provider)?)
            }
            (SslMode::Prefer, _) | (SslMode::Require, None) => Arc::new(PgVerifier {
                ca: None,
                algorithms: provider.signature_verification_algorithms,
            }),
        };
        let verification = match (mode, root_cert) {
            (SslMode::VerifyCa, _) | (SslMode::Require, Some(_)) => Verification::Ca,
            _ => Verification::None,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Some(Self {
            config: Arc::new(config),
            verification,
        }))
    }

    pub fn verification(&self) -> Verification {
        self.verification
    }

    /// A connector for one connection attempt, and where it records the TLS negotiation.
    pub fn connector(&self) -> (ProbeConnector, Arc<Mutex<Handshake>>) {
        let outcome = Arc::new(Mutex::new(Handshake::NotStarted));
        (
            ProbeConnector {
                inner: MakeRustlsConnect::new((*self.config).clone()),
                outcome: outcome.clone(),
            },
            outcome,
        )
    }
}

/// How far the TLS negotiation of one connection got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handshake {
    /// The handshake was never started: no answer to the SSL request yet, the server declined
    /// TLS (`N`), or TLS was not attempted.
    NotStarted,
    /// The server agreed to TLS (`S`); the handshake is running.
    Started,
    /// The server agreed to TLS, then the handshake or the certificate check failed.
    Failed(String),
    Done,
}

/// `MakeTlsConnect` for the probe: [`MakeRustlsConnect`] (which also provides SCRAM channel
/// binding) plus a record of the handshake's outcome.
pub struct ProbeConnector {
    inner: MakeRustlsConnect,
    outcome: Arc<Mutex<Handshake>>,
}

type Inner = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;
type InnerStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

impl MakeTlsConnect<Socket> for ProbeConnector {
    type Stream = InnerStream;
    type TlsConnect = ProbeTlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(ProbeTlsConnect {
            inner: MakeTlsConnect::<Socket>::make_tls_connect(&mut self.inner, hostname)?,
            outcome: self.outcome.clone(),
        })
    }
}

pub struct ProbeTlsConnect {
    inner: Inner,
    outcome: Arc<Mutex<Handshake>>,
}

impl TlsConnect<Socket> for ProbeTlsConnect {
    type Stream = InnerStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<InnerStream>> + Send>>;

    /// tokio-postgres calls this only after the server answered `S` to the SSL request.
    fn connect(self, stream: Socket) -> Self::Future {
        let outcome = self.outcome;
        set(&outcome, Handshake::Started);
        let handshake = self.inner.connect(stream);
        Box::pin(async move {
            let result = handshake.await;
            set(
                &outcome,
                match &result {
                    Ok(_) => Handshake::Done,
                    Err(e) => Handshake::Failed(describe(e)),
                },
            );
            result
        })
    }
}

fn set(outcome: &Mutex<Handshake>, value: Handshake) {
    // A poisoned lock only means another holder panicked; the value is still ours to replace.
    *outcome.lock().unwrap_or_else(|p| p.into_inner()) = value;
}

/// The rustls error under tokio-rustls' `io::Error`, e.g. "invalid peer certificate: UnknownIssuer".
fn describe(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

/// The server-certificate check of one libpq sslmode. The handshake signatures are always
/// verified with ring's algorithms, so the peer must hold the private key of the certificate it
/// presented and the session keys cannot be tampered with in transit.
///
/// - `ca: None` — libpq `require` (and `prefer`) without a root certificate: any server
///   certificate is accepted, because that is what those modes promise: encryption against
///   passive eavesdropping on the data-centre network, no authentication of the server.
/// - `ca: Some` — libpq `verify-ca`: the server's chain must lead to a certificate of the CA file
///   (validity dates, signatures and the server-auth usage are checked by webpki), but the host
///   name is not checked: the probe dials the tunnel's ClusterIP, which is in no certificate of
///   the primary. A certificate that is itself in the CA file is trusted as is (OpenSSL, hence
///   libpq, accepts a self-signed server certificate listed in `sslrootcert`; webpki alone would
///   refuse one marked as a CA).
#[derive(Debug)]
struct PgVerifier {
    ca: Option<CaFile>,
    algorithms: WebPkiSupportedAlgorithms,
}

#[derive(Debug)]
struct CaFile {
    roots: Arc<RootCertStore>,
    /// The CA file's certificates, for the "listed as is" rule.
    listed: Vec<CertificateDer<'static>>,
}

impl PgVerifier {
    fn with_ca_file(path: &Path, provider: &CryptoProvider) -> Result<Self, TlsConfigError> {
        let shown = || path.display().to_string();
        let pem = std::fs::read(path).map_err(|error| TlsConfigError::Unreadable {
            path: shown(),
            error,
        })?;
        let listed = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsConfigError::NotPem {
                path: shown(),
                error: e.to_string(),
            })?;
        if listed.is_empty() {
            return Err(TlsConfigError::NoCertificate { path: shown() });
        }
        let mut roots = RootCertStore::empty();
        for (i, cert) in listed.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|e| TlsConfigError::Unusable {
                    path: shown(),
                    index: i + 1,
                    error: e.to_string(),
                })?;
        }
        Ok(Self {
            ca: Some(CaFile {
                roots: Arc::new(roots),
                listed,
            }),
            algorithms: provider.signature_verification_algorithms,
        })
    }
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = &self.ca else {
            return Ok(ServerCertVerified::assertion());
        };
        if ca.listed.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &ca.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        // No rustls::client::verify_server_name: verify-ca, not verify-full.
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

    #[test]
    fn modes_and_root_certificates() {
        assert!(ProbeTls::new(SslMode::Disable, None).unwrap().is_none());
        for mode in [SslMode::Prefer, SslMode::Require] {
            let tls = ProbeTls::new(mode, None).unwrap().unwrap();
            assert_eq!(tls.verification(), Verification::None);
        }
        let err = ProbeTls::new(SslMode::VerifyCa, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("verify-ca"), "{err}");
        let missing = Path::new("/nonexistent/ca.crt");
        let err = ProbeTls::new(SslMode::VerifyCa, Some(missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read /nonexistent/ca.crt"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = ProbeTls::new(SslMode::VerifyCa, Some(&empty))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
        // `prefer` never verifies, as in libpq's fallback-friendly mode.
        let tls = ProbeTls::new(SslMode::Prefer, Some(missing))
            .unwrap()
            .unwrap();
        assert_eq!(tls.verification(), Verification::None);
    }
}
