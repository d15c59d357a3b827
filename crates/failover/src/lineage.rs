//! Lineage types of the shared contract (`pgdr_core::lineage`), mirrored here until that module
//! is on this branch; then this file becomes `pub use pgdr_core::lineage::*;`.

/// One line of a `.history` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub timeline: u32,
    pub switchpoint: u64,
}

/// What IDENTIFY_SYSTEM and TIMELINE_HISTORY say about one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub system_id: String,
    pub timeline: u32,
    pub wal_end: u64,
    pub in_recovery: Option<bool>,
    pub history: Vec<HistoryEntry>,
}

/// Who is authoritative between two servers of (maybe) one database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lineage {
    DifferentSystem,
    SameTimeline,
    PeerForkedFromUs { fork_lsn: u64, timeline: u32 },
    WeForkedFromPeer { fork_lsn: u64, timeline: u32 },
    Unrelated,
}

/// WAL written past the fork (saturating).
pub fn divergence_bytes(own_end: u64, fork_lsn: u64) -> u64 {
    own_end.saturating_sub(fork_lsn)
}
