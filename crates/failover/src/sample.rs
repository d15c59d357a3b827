//! What the primary-role and fenced-role runs observe, in one vocabulary: the peer through the
//! tunnel and this site's own position (the witnesses: [`crate::witness`]).

use std::time::Duration;

use jiff::SignedDuration;

use pgdr_core::contract::lsn::format as lsn_text;
use pgdr_core::lineage::Lineage;

/// The peer as seen through the tunnel Service.
#[derive(Clone, Debug, PartialEq)]
pub enum Peer {
    /// No PostgreSQL answer (refused, reset, timeout) or the tunnel Service is unusable.
    Silent(String),
    /// It answered but could not be identified (authentication, starting up): alive, role unknown.
    Unidentified(String),
    /// In recovery: a standby.
    Standby,
    /// A writable primary, and how its timeline relates to ours.
    Writable(Lineage),
}

/// This site's own position (local leader).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Own {
    pub timeline: Option<u32>,
    pub wal_end: Option<u64>,
}

pub(crate) fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

pub(crate) fn lineage_text(l: &Lineage) -> String {
    match l {
        Lineage::DifferentSystem => "a different database (system identifier differs)".into(),
        Lineage::ForeignNewer { epoch } => format!(
            "a different database at a higher promotion epoch ({epoch}): this site was initialised \
             afresh beside it"
        ),
        Lineage::SameTimeline => "on our timeline (neither site was ever promoted)".into(),
        Lineage::PeerAuthoritative {
            epoch,
            timeline,
            fork_lsn,
            fork_pending,
        } => format!(
            "promoted at epoch {epoch}, newer than ours, from timeline {timeline} at {}{}",
            lsn_text(*fork_lsn),
            if *fork_pending {
                " (switchpoint not yet published)"
            } else {
                ""
            }
        ),
        Lineage::WeAuthoritative {
            epoch,
            timeline,
            fork_lsn,
        } => format!(
            "older than our promotion (epoch {epoch}, from timeline {timeline} at {})",
            lsn_text(*fork_lsn)
        ),
        Lineage::Unrelated => {
            "on another timeline, neither site ever promoted (no automatic authority)".into()
        }
        Lineage::EpochTie { epoch, .. } => format!(
            "promoted at the same epoch {epoch} as this site (two promotions that did not know of \
             each other: no automatic authority)"
        ),
    }
}

/// Fixtures shared by the primary-role and fenced-role decision tables.
#[cfg(test)]
pub(crate) mod fixtures {
    use jiff::{SignedDuration, Timestamp};

    use super::Peer;
    use pgdr_core::lineage::Lineage;

    pub const T0: &str = "2026-11-30T16:00:00Z";
    pub const FORK: u64 = 0x5000A28;
    pub const END: u64 = 0x6000000;

    pub fn t(secs: i64) -> Timestamp {
        T0.parse::<Timestamp>().unwrap() + SignedDuration::from_secs(secs)
    }

    /// The decision tables' policy: N = 3 samples spanning T = 20 s, 1000 bytes of lag.
    pub fn policy(mode: crate::standby::Mode) -> crate::standby::Policy {
        use std::time::Duration;
        crate::standby::Policy {
            mode,
            fencing: crate::standby::Fencing::Auto,
            failure_threshold: 3,
            min_failure_span: Duration::from_secs(20),
            max_lag_bytes: 1000,
            force: false,
            min_sample_spacing: Duration::from_secs(5),
            max_sample_gap: Duration::from_secs(120),
            claim_ttl: Duration::from_secs(300),
            max_lsn_age: Duration::from_secs(300),
            replication_broken_renotify: Duration::from_secs(600),
        }
    }

    pub fn silent() -> Peer {
        Peer::Silent("connection refused".into())
    }

    /// The peer was promoted after us (epoch 1) from our timeline 3 at [`FORK`], switchpoint
    /// published.
    pub fn forked_from_us() -> Lineage {
        Lineage::PeerAuthoritative {
            epoch: 1,
            fork_lsn: FORK,
            timeline: 3,
            fork_pending: false,
        }
    }
}
