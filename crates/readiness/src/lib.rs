//! The readiness sidecar: polls the local Patroni REST API and serves `/ready`, `/live`,
//! `/primary`, `/status` (JSON) and `/metrics` (OpenMetrics text).
//!
//! One task polls Patroni every interval (each request bounded by a timeout) and publishes a
//! snapshot; the HTTP handlers only read the latest snapshot, so probes never wait on Patroni.
//!
//! Same shape as the other binaries: [`config`] → [`observe`] (poll Patroni) and [`peer`] (the
//! peer check through the tunnel) → [`decide`] (pure verdicts, fence, split-brain latch) →
//! [`act`] (answer HTTP requests, [`metrics`]) → [`run`] (poller, peer checker, WAL
//! preservation ([`preserve`]), re-clone ([`reclone`]) and server, each its own task so none
//! delays another).

pub mod act;
pub mod config;
pub mod decide;
pub mod metrics;
pub mod observe;
pub mod peer;
pub mod preserve;
pub mod reason;
pub mod reclone;
pub mod run;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdr_core::patroni::PatroniError;
use tokio::sync::watch;

pub use config::{Config, Settings};
use decide::{Latch, PeerCheck, Poll, Verdict};
pub use run::{run, serve};

pub const COMPONENT: &str = "pgdr-readiness";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}; choose a free port with READINESS_LISTEN")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the Patroni client: {0}")]
    Patroni(#[from] PatroniError),
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The latest poll and when it completed.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub poll: Poll,
    pub completed_at: Option<Instant>,
    pub completed_ts: Option<jiff::Timestamp>,
    pub last_success_ts: Option<jiff::Timestamp>,
    /// Since when replication has been broken (see [`decide::MemberView::replication_broken`]);
    /// `None` while it streams, or when this member does not replicate.
    pub replication_broken_since: Option<jiff::Timestamp>,
    /// The latest peer check and when it completed.
    pub peer: PeerCheck,
    pub peer_checked_ts: Option<jiff::Timestamp>,
    /// Both sites writable (see [`decide::split_brain`]), and since when.
    pub split_brain_since: Option<jiff::Timestamp>,
    /// The peer's promotion epoch is newer: `/primary` 503 until demoted.
    pub latch: Option<Latch>,
    /// Since when this member has been a writable, unfenced primary, and the peer checks
    /// completed since then.
    pub primary_since: Option<jiff::Timestamp>,
    pub checks_since_primary: decide::Checks,
    /// Why this writable primary is not advertised on `/primary` ([`decide::withheld`]).
    pub withheld: Option<&'static str>,
}

impl Snapshot {
    pub(crate) fn initial(peer: PeerCheck) -> Snapshot {
        Snapshot {
            poll: Poll::NotYet,
            completed_at: None,
            completed_ts: None,
            last_success_ts: None,
            replication_broken_since: None,
            peer,
            peer_checked_ts: None,
            split_brain_since: None,
            latch: None,
            primary_since: None,
            checks_since_primary: decide::Checks::default(),
            withheld: None,
        }
    }
}

impl Snapshot {
    fn age(&self) -> Duration {
        self.completed_at.map_or(Duration::MAX, |t| t.elapsed())
    }
}

pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) snapshot: watch::Receiver<Arc<Snapshot>>,
    pub(crate) metrics: metrics::Metrics,
    pub(crate) started: Instant,
    pub(crate) divergence: watch::Receiver<pgdr_core::contract::sidecar::Divergence>,
    pub(crate) reclone: watch::Receiver<Option<pgdr_core::contract::sidecar::RecloneStatus>>,
}

impl Shared {
    pub(crate) fn verdict(&self) -> (Arc<Snapshot>, Verdict) {
        let snap = self.snapshot.borrow().clone();
        let v = decide::decide(
            &snap.poll,
            snap.age(),
            &self.settings.rules,
            snap.latch.as_ref(),
            snap.withheld,
        );
        (snap, v)
    }
}
