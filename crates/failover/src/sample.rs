//! What the primary-role and fenced-role runs observe, in one vocabulary: the peer through the
//! tunnel, where the witnesses say the application runs, this site's own position.

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

/// Where a witness says the application runs now.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// On the peer: positive evidence that the application left this site.
    Peer(String),
    /// Here (or the peer is down).
    Here(String),
    Unknown(String),
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
        Lineage::SameTimeline => "on our timeline (no fork visible)".into(),
        Lineage::PeerForkedFromUs { fork_lsn, timeline } => format!(
            "promoted from our timeline {timeline} at {}",
            lsn_text(*fork_lsn)
        ),
        Lineage::WeForkedFromPeer { fork_lsn, timeline } => format!(
            "the timeline {timeline} we were promoted from at {}",
            lsn_text(*fork_lsn)
        ),
        Lineage::Unrelated => "forked separately from us (no automatic authority)".into(),
        // Never from `lineage::lineage` (the sidecar's refinement); said as what it is.
        Lineage::PeerPromotedLater => "carries a newer promotion marker (no fork visible)".into(),
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

    pub fn silent() -> Peer {
        Peer::Silent("connection refused".into())
    }

    pub fn forked_from_us() -> Lineage {
        Lineage::PeerForkedFromUs {
            fork_lsn: FORK,
            timeline: 3,
        }
    }
}
