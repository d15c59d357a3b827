//! The fence: `pgdr_fence` + `standby_cluster` in the site's own Patroni dynamic config.
//!
//! Pure: the document, its two `standby_cluster` forms, and the merge into a config object. The
//! ConfigMap itself is changed only by compare-and-set (`act::write_fence`).
//!
//! - `hold`: `standby_cluster: {"restore_command": "false"}`. Patroni 4.1 demotes the leader to a
//!   read-only standby leader that follows nothing (no host, so no pg_rewind): our WAL past the
//!   fork stays on disk until it is recorded and preserved.
//! - `follow`: `standby_cluster` naming the reverse tunnel and the slot the promoted site keeps
//!   for us: Patroni rewinds when needed and streams from the authoritative site.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use pgdr_core::dynamic_config::STANDBY_CLUSTER;

/// Key of our marker inside the dynamic config (Patroni keeps unknown keys).
pub const FENCE_KEY: &str = "pgdr_fence";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Hold,
    Follow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FenceReason {
    /// The peer is a writable primary promoted from our timeline.
    PeerAuthoritative,
    /// The peer is silent and the witness says the application runs there.
    WitnessMoved,
    /// Both writable, the other side authoritative by a person's decision.
    SplitBrain,
}

impl FenceReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FenceReason::PeerAuthoritative => "peer-authoritative",
            FenceReason::WitnessMoved => "witness-moved",
            FenceReason::SplitBrain => "split-brain",
        }
    }
}

/// Ask the sidecar to copy our WAL of `timeline` from the segment holding `from_lsn` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preserve {
    pub timeline: u32,
    pub from_lsn: String,
}

/// Ask every member's readiness sidecar to move its data directory aside (a rewind is unsafe:
/// `guard::rewind_hazard`), so that Patroni clones the site from the peer. `requested_at` is
/// the request's identity: a sidecar acts on one request once (a receipt on its volume).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reclone {
    pub requested_at: String,
    /// Keep the moved data directory (the WAL past the fork was preserved incompletely, so the
    /// old data directory is the only full copy of what diverged); else the sidecar deletes it
    /// once PostgreSQL has stopped.
    #[serde(default)]
    pub keep_data: bool,
}

/// The `pgdr_fence` document (contract §2). Unknown keys written by others are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fence {
    pub since: Timestamp,
    pub reason: FenceReason,
    pub peer: String,
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_lsn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_end_lsn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve: Option<Preserve>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejoin_approved_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclone: Option<Reclone>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Fence {
    /// The fork point, when the peer has been reached.
    pub fn fork(&self) -> Option<(u32, u64)> {
        Some((
            self.timeline?,
            crate::observe::parse_lsn(self.fork_lsn.as_deref()?)?,
        ))
    }
}

/// Where the follow form streams from: the reverse tunnel and the slot kept for us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowTarget {
    pub host: String,
    pub port: u16,
    pub slot: String,
}

/// The `standby_cluster` value of each phase.
pub fn standby_cluster(phase: Phase, target: Option<&FollowTarget>) -> Value {
    match (phase, target) {
        (Phase::Follow, Some(t)) => json!({
            "host": t.host,
            "port": t.port,
            "primary_slot_name": t.slot,
            "create_replica_methods": ["basebackup"],
        }),
        // Without a target the only safe form is hold (never a standby_cluster without a host
        // that could make Patroni pick something else).
        _ => json!({"restore_command": "false"}),
    }
}

/// Reads `pgdr_fence` from a config object: `Ok(None)` when absent.
pub fn read(config: &Map<String, Value>) -> Result<Option<Fence>, String> {
    match config.get(FENCE_KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| format!("{FENCE_KEY} is not a fence document ({e})")),
    }
}

/// Writes the fence and the matching `standby_cluster` into a config object.
pub fn apply(config: &mut Map<String, Value>, fence: &Fence, target: Option<&FollowTarget>) {
    let phase = if target.is_some() {
        fence.phase
    } else {
        Phase::Hold
    };
    let mut fence = fence.clone();
    fence.phase = phase;
    config.insert(STANDBY_CLUSTER.into(), standby_cluster(phase, target));
    config.insert(
        FENCE_KEY.into(),
        serde_json::to_value(&fence).expect("a fence always serializes"),
    );
}

/// `0/5000A28` form of an LSN.
pub use pgdr_core::lineage::format_lsn as lsn_text;

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(phase: Phase) -> Fence {
        Fence {
            since: "2026-11-30T16:00:00Z".parse().unwrap(),
            reason: FenceReason::PeerAuthoritative,
            peer: "golddr".into(),
            phase,
            timeline: Some(3),
            fork_lsn: Some("0/5000A28".into()),
            local_end_lsn: Some("0/6000000".into()),
            diverged_bytes: Some(0x6000000 - 0x5000A28),
            preserve: None,
            rejoin_approved_at: None,
            reclone: None,
            other: Map::new(),
        }
    }

    #[test]
    fn hold_and_follow_forms() {
        let target = FollowTarget {
            host: "patroni-golddr.ns.svc".into(),
            port: 31000,
            slot: "standby_gold".into(),
        };
        let mut cfg = Map::new();
        cfg.insert("ttl".into(), json!(30));
        apply(&mut cfg, &fence(Phase::Follow), Some(&target));
        assert_eq!(cfg["ttl"], json!(30), "other keys are kept");
        assert_eq!(
            cfg[STANDBY_CLUSTER],
            json!({"host": "patroni-golddr.ns.svc", "port": 31000,
                   "primary_slot_name": "standby_gold", "create_replica_methods": ["basebackup"]})
        );
        assert_eq!(cfg[FENCE_KEY]["phase"], "follow");
        assert!(pgdr_core::dynamic_config::is_standby_cluster(&cfg));

        // Follow without a target degrades to hold, never to a host-less follow.
        apply(&mut cfg, &fence(Phase::Follow), None);
        assert_eq!(cfg[STANDBY_CLUSTER], json!({"restore_command": "false"}));
        assert_eq!(cfg[FENCE_KEY]["phase"], "hold");
        assert!(pgdr_core::dynamic_config::is_standby_cluster(&cfg));
    }

    #[test]
    fn read_round_trips_and_keeps_unknown_keys() {
        let mut cfg = Map::new();
        assert_eq!(read(&cfg), Ok(None));
        let mut f = fence(Phase::Hold);
        f.other.insert("note".into(), json!("kept"));
        apply(&mut cfg, &f, None);
        let back = read(&cfg).unwrap().unwrap();
        assert_eq!(back, f);
        assert_eq!(back.fork(), Some((3, 0x5000A28)));
        assert_eq!(cfg[FENCE_KEY]["reason"], "peer-authoritative");
        assert_eq!(cfg[FENCE_KEY]["since"], "2026-11-30T16:00:00Z");
        cfg.insert(FENCE_KEY.into(), json!("yes"));
        assert!(read(&cfg).is_err());
        // Written by the plugin: only the keys it knows.
        cfg.insert(
            FENCE_KEY.into(),
            json!({"since": "2026-11-30T16:00:00Z", "reason": "split-brain", "peer": "gold", "phase": "hold"}),
        );
        let minimal = read(&cfg).unwrap().unwrap();
        assert_eq!(minimal.fork(), None);
        assert_eq!(minimal.reason, FenceReason::SplitBrain);
    }

    #[test]
    fn lsn_text_matches_postgres() {
        assert_eq!(lsn_text(0x5000A28), "0/5000A28");
        assert_eq!(lsn_text((1 << 32) | 0x10), "1/10");
    }
}
