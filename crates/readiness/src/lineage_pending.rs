//! TEMPORARY: the signatures of `pgdr_core::lineage` (shared contract) until it lands on main.
//! Replaced by `use pgdr_core::lineage` at the merge; nothing here is used as a result.
#![allow(dead_code)]

use std::time::Duration;

use tokio_postgres::Socket;
use tokio_postgres::tls::MakeTlsConnect;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub timeline: u32,
    pub switchpoint: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub system_id: String,
    pub timeline: u32,
    pub wal_end: u64,
    pub in_recovery: Option<bool>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lineage {
    DifferentSystem,
    SameTimeline,
    PeerForkedFromUs { fork_lsn: u64, timeline: u32 },
    WeForkedFromPeer { fork_lsn: u64, timeline: u32 },
    Unrelated,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    #[error("no answer: {0}")]
    NoAnswer(String),
    #[error("rejected: {0}")]
    Rejected(String),
}

pub fn lineage(own: &Identity, peer: &Identity) -> Lineage {
    if own.system_id != peer.system_id {
        return Lineage::DifferentSystem;
    }
    if own.timeline == peer.timeline {
        return Lineage::SameTimeline;
    }
    Lineage::Unrelated
}

pub async fn identify<T: MakeTlsConnect<Socket>>(
    _pg: &tokio_postgres::Config,
    _tls: T,
    _timeout: Duration,
) -> Result<Identity, IdentifyError> {
    Err(IdentifyError::NoAnswer(
        "pgdr_core::lineage is not merged yet".into(),
    ))
}

pub fn divergence_bytes(own_end: u64, fork_lsn: u64) -> u64 {
    own_end.saturating_sub(fork_lsn)
}
