//! The peer check (I/O): is the peer a writable primary, and how do its history and ours
//! relate? Both identities come from `pgdr_core::lineage::identify` (system identifier,
//! recovery state, timeline, WAL end, promotion marker): the peer's through the tunnel Service,
//! ours through the local PostgreSQL, as the replication user. The verdicts are in
//! [`crate::decide`].

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PeerSettings, SslMode};
use crate::decide::{Lineage, PeerCheck};
use pgdr_core::lineage;
use pgdr_core::patroni::PatroniClient;

/// The connections of one peer check, built once at start.
#[derive(Clone)]
pub struct PeerChecker {
    settings: PeerSettings,
    tls: Option<MakeRustlsConnect>,
    /// The local Patroni, for our timeline history (judging the peer's promotion marker).
    patroni: Option<PatroniClient>,
}

impl std::fmt::Debug for PeerChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerChecker")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PeerChecker {
    pub fn new(settings: PeerSettings, patroni: Option<PatroniClient>) -> Result<Self, String> {
        let tls = match settings.sslmode {
            SslMode::Disable => None,
            SslMode::Prefer | SslMode::Require => Some(MakeRustlsConnect::new(encrypt_only()?)),
        };
        Ok(Self {
            settings,
            tls,
            patroni,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    fn pg(
        &self,
        host: &str,
        port: u16,
        ssl: tokio_postgres::config::SslMode,
    ) -> tokio_postgres::Config {
        let s = &self.settings;
        let mut pg = tokio_postgres::Config::new();
        pg.host(host)
            .port(port)
            .user(&s.user)
            .password(s.password.expose())
            .dbname(&s.database)
            .application_name("pgdr-readiness-peer-check")
            .connect_timeout(s.timeout)
            .ssl_mode(ssl);
        pg
    }

    /// One check, bounded by the timeout as a whole. Never logs the password (the config is
    /// only passed to the driver).
    pub async fn check(&self) -> PeerCheck {
        let s = &self.settings;
        let peer_pg = self.pg(
            &s.host,
            s.port,
            match s.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require => tokio_postgres::config::SslMode::Require,
            },
        );
        let local_pg = self.pg(
            &s.local_host,
            s.local_port,
            tokio_postgres::config::SslMode::Disable,
        );
        let peer = async {
            match &self.tls {
                None => lineage::identify(&peer_pg, NoTls, s.timeout).await,
                Some(tls) => lineage::identify(&peer_pg, tls.clone(), s.timeout).await,
            }
        };
        let own = lineage::identify(&local_pg, NoTls, s.timeout);
        let both = async { tokio::join!(peer, own) };
        let (peer, own) = match tokio::time::timeout(s.timeout, both).await {
            Err(_) => {
                return PeerCheck::Failed(format!(
                    "no answer within {:?} (peer {}:{} or local {}:{})",
                    s.timeout, s.host, s.port, s.local_host, s.local_port
                ));
            }
            Ok(r) => r,
        };
        let peer = match peer {
            Ok(p) => p,
            Err(e) => return PeerCheck::Failed(format!("peer {}:{}: {e}", s.host, s.port)),
        };
        let mut own = match own {
            Ok(o) => o,
            Err(e) => {
                return PeerCheck::Failed(format!(
                    "own identity from {}:{}: {e}",
                    s.local_host, s.local_port
                ));
            }
        };
        // Only needed (and only read) when the peer is writable with a marker: our history
        // tells a crash-restarted primary (Patroni moves it to a timeline of its own) from a
        // site that never wrote on the marker's timeline.
        if !peer.in_recovery
            && peer.marker.is_some()
            && let Some(p) = &self.patroni
        {
            match tokio::time::timeout(s.timeout, p.history()).await {
                Ok(Ok(h)) => own.history = h,
                Ok(Err(e)) => tracing::warn!(error = %e.short(), "timeline history unreadable"),
                Err(_) => tracing::warn!("timeline history: no answer from Patroni in time"),
            }
        }
        let lineage = lineage::lineage_for_advertising(&own, &peer);
        let divergence_bytes = match lineage {
            // What we wrote on the timeline the peer left, past the fork point.
            // (the lineage proved our WAL runs through the fork; we may be on a later timeline).
            Lineage::PeerForkedFromUs { fork_lsn, .. } => {
                lineage::divergence_bytes(own.wal_end, fork_lsn)
            }
            _ => 0,
        };
        PeerCheck::Seen {
            writable: !peer.in_recovery,
            lineage,
            divergence_bytes,
        }
    }
}

/// TLS for `prefer`/`require` (libpq without a root certificate): encryption only, the
/// certificate is not verified (the tunnel's ClusterIP is in no certificate); the handshake
/// signatures are verified, so the server holds the key of the certificate it presented.
fn encrypt_only() -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
