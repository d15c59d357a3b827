//! The failover agent (a CronJob on both sites). Each run plays the program of the site's current
//! role ([`role`]), each with the same shape: observe → a pure decision with its reasons → the
//! shared acts ([`act`]):
//! - [`standby`]: a standby site — observe the primary site ([`observe`]: tunnel probe, local
//!   standby leader, witnesses), decide ([`standby::decide`]), promote.
//! - [`primary`]: a writable primary — the peer and the witnesses; fence this site when the peer is
//!   authoritative ([`primary::decide_primary`]).
//! - [`fenced`]: a fenced site — record and preserve the divergence, rejoin by rewind or re-clone
//!   ([`fenced::decide_fenced`]).
//!
//! [`config`] reads the `FAILOVER_*` variables into [`Settings`]; [`witness`] asks the witnesses
//! for every role, in one vocabulary; [`sample`] is the vocabulary the primary and fenced runs
//! share; [`run`] is the loop that wires a run together.
//!
//! A run takes `FAILOVER_SAMPLES_PER_RUN` samples. After each it decides and writes the state
//! with a compare-and-set; a lost compare-and-set means another run wrote in between, so the
//! run re-reads and decides again (never acts on a stale read). A promotion is first *claimed*
//! in the state (again a compare-and-set), so two overlapping runs cannot both act.

pub mod act;
pub mod config;
pub mod ctx;
pub mod fenced;
pub mod observe;
pub mod primary;
pub mod role;
pub mod run;
pub mod sample;
pub mod standby;
pub mod state;
pub mod witness;
/// TLS of the tunnel probe: one verifier with the sidecar's, in core.
pub use pgdr_core::tls;

use std::time::Duration;

use pgdr_core::k8s::{ApiError, ClientError};

pub use config::{Config, Settings};
pub use run::{run, run_with};
pub use standby::{Decision, Mode, Reason, Verdict};

use crate::state::StateProblem;

pub const COMPONENT: &str = act::COMPONENT;

/// Exit codes: the shared ones (README.md lists what each means for this binary).
pub mod exit {
    pub use pgdr_core::exit::*;
    /// The Kubernetes API failed (after retries): no decision was taken.
    pub const API: u8 = FAILED;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // API failures happen only while observing or recording (never after acting), so the run
    // says plainly that it decided nothing.
    #[error("{0}; no decision was taken")]
    Client(#[from] ClientError),
    #[error("{0}; no decision was taken")]
    Api(#[from] ApiError),
    #[error(
        "state ConfigMap {object} is unusable: {problem}; it was left untouched: fix its 'state' key \
         (or delete the key to start afresh)"
    )]
    StateUnusable {
        object: String,
        problem: StateProblem,
    },
    #[error(
        "state ConfigMap {object} kept changing during this run (compare-and-set lost repeatedly); \
         is another failover run stuck in a loop?"
    )]
    Contention { object: String },
    #[error(
        "promotion through {leader} failed: {detail}; the site is still a standby cluster — check the \
         standby leader's Patroni log and the REST credentials"
    )]
    PromoteFailed { leader: String, detail: String },
    #[error(
        "standby_cluster was removed but the leader did not report a running primary within {deadline:?} \
         (last seen: {last}); check Patroni on the standby leader"
    )]
    NotConfirmed { deadline: Duration, last: String },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Client(_) | Error::Api(_) | Error::Contention { .. } => exit::API,
            Error::StateUnusable { .. } => exit::STATE,
            Error::PromoteFailed { .. } | Error::NotConfirmed { .. } => exit::PROMOTION,
        }
    }
}

/// How a run ended without error.
#[derive(Clone, Debug)]
pub struct Report {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub samples: u32,
    pub failed_samples: u32,
    pub promoted: Option<act::Promoted>,
}

impl Report {
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} after {} sample(s), {} failed",
            self.verdict, self.samples, self.failed_samples
        );
        if let Some(p) = &self.promoted {
            s.push_str(&format!(
                "; promoted and confirmed in {:.1?} (timeline {:?}, LSN {:?})",
                p.took, p.timeline, p.primary_lsn
            ));
        }
        s
    }
}
