//! The peer check (I/O): is the peer a writable primary, and how do its history and ours
//! relate? Both identities come from `pgdr_core::lineage::identify` (system identifier,
//! recovery state, timeline, WAL end, promotion marker): the peer's through the tunnel Service,
//! ours through the local PostgreSQL, as the replication user. The verdicts are in
//! [`crate::decide`].

use std::time::Duration;

use tokio_postgres::NoTls;

use crate::config::PeerSettings;
use crate::decide::{Lineage, PeerCheck};
use pgdr_core::lineage::{self, PeerView};

/// The connections of one peer check, built once at start.
#[derive(Clone, Debug)]
pub struct PeerChecker {
    settings: PeerSettings,
}

impl PeerChecker {
    /// The TLS client was built with the settings (a bad CA file is a configuration error).
    pub fn new(settings: PeerSettings) -> Self {
        Self { settings }
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
        let peer_pg = self.pg(&s.host, s.port, s.sslmode.driver_mode());
        let local_pg = self.pg(
            &s.local_host,
            s.local_port,
            tokio_postgres::config::SslMode::Disable,
        );
        let peer = lineage::identify_with(&peer_pg, s.tls.as_ref(), s.timeout);
        let own = lineage::identify(&local_pg, NoTls, s.timeout);
        // Each identity is bounded by the timeout (they run at once): a check lasts at most
        // about the timeout.
        let view = lineage::check_peer(peer, own).await;
        let seen = match view {
            PeerView::Silent(e) | PeerView::Unidentified(e) => {
                return PeerCheck::Failed(format!("peer {}:{}: {e}", s.host, s.port));
            }
            PeerView::Seen(seen) => seen,
        };
        let own = match &seen.own {
            Ok(o) => o,
            Err(e) => {
                return PeerCheck::Failed(format!(
                    "own identity from {}:{}: {e}",
                    s.local_host, s.local_port
                ));
            }
        };
        let lineage = lineage::lineage(own, &seen.peer);
        let divergence_bytes = match lineage {
            // What we wrote past the authoritative peer's fork (at most: the fork may still be
            // the position the peer read before its promotion, a little below its switchpoint).
            Lineage::PeerAuthoritative { fork_lsn, .. } => {
                lineage::divergence_bytes(own.wal_end, fork_lsn)
            }
            _ => 0,
        };
        PeerCheck::Seen {
            writable: seen.writable(),
            lineage,
            divergence_bytes,
        }
    }
}
