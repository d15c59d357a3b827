//! One TLS crypto provider for the whole process.
//!
//! kube (feature `ring`) and reqwest (feature `rustls-no-provider`) both use rustls; installing
//! ring as the process default keeps a single crypto library linked and makes the choice
//! explicit rather than depending on which rustls features happen to be unified.

/// Installs ring as the process-wide rustls provider. Idempotent: a second call (or a provider
/// installed by someone else first) is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
