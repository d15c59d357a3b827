//! The server's TLS identity, used when it enforces RBAC: client-go (kubectl, helm) sends bearer
//! tokens only over TLS, so authentication needs HTTPS.
//!
//! A fixed test CA and a server certificate it signed (valid 2025–2125) for `localhost`,
//! `127.0.0.1`, `::1` and the `kubernetes.default.svc` names. The key is public test material
//! for a loopback server and protects nothing; the CA's own key is not kept.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The CA clients trust (kubeconfig `certificate-authority-data`, token Secrets' `ca.crt`).
pub const CA_PEM: &str = include_str!("../tls/ca.crt");
const CERT_PEM: &str = include_str!("../tls/server.crt");
const KEY_PEM: &str = include_str!("../tls/server.key");

pub fn acceptor() -> std::io::Result<TlsAcceptor> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("kubesim TLS {what}: {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(CERT_PEM.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(KEY_PEM.as_bytes()).map_err(|e| bad("key", &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad("protocols", &e))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| bad("certificate", &e))?;
    // HTTP/1.1 only (chunked watches), so HTTP/2 clients fall back.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}
