//! The fence: `pgdr_fence` + `standby_cluster` in the site's own Patroni dynamic config.
//!
//! Written by the failover agent (and `kubectl pgdr fence`), read by the agent, the readiness
//! sidecar (which withholds `/ready`/`/primary`, preserves the diverged WAL and moves the data
//! directory aside for a re-clone) and the plugin. The config map itself is changed only by
//! compare-and-set, by each writer.
//!
//! - `hold`: `standby_cluster: {"restore_command": "false"}`. Patroni 4.1 demotes the leader to a
//!   read-only standby leader that follows nothing (no host, so no pg_rewind): our WAL past the
//!   fork stays on disk until it is recorded and preserved.
//! - `follow`: `standby_cluster` naming the reverse tunnel and the slot the promoted site keeps
//!   for us ([`crate::slot::FollowTarget`]): Patroni rewinds when needed and streams from the
//!   authoritative site.
//!
//! Versions: the document carries `version` ([`VERSION`]; absent = 1, the first format). During
//! a rolling upgrade sidecars of two versions read one document, so readers are lenient: unknown
//! keys are kept ([`Fence::other`]), an unknown phase or reason reads as `Unknown` (never acted
//! on), and only the presence of the key means "fenced".

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::keys::{FENCE, STANDBY_CLUSTER};
use crate::slot::FollowTarget;

/// The version this code writes.
pub const VERSION: u32 = 1;

fn first_version() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Read-only, following nothing: the divergence is recorded and preserved first.
    Hold,
    /// Following the authoritative peer (rewound or re-cloned onto it).
    Follow,
    /// A phase a newer writer knows and this reader does not: fenced, nothing done.
    #[serde(other)]
    Unknown,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Hold => "hold",
            Phase::Follow => "follow",
            Phase::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FenceReason {
    /// The peer is a writable primary at a higher promotion epoch.
    PeerAuthoritative,
    /// The peer is silent and the witness says the application runs there.
    WitnessMoved,
    /// Both writable, the other side authoritative by a person's decision.
    SplitBrain,
    /// A person fenced this site (`kubectl pgdr fence`).
    Operator,
    #[serde(other)]
    Unknown,
}

impl FenceReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FenceReason::PeerAuthoritative => "peer-authoritative",
            FenceReason::WitnessMoved => "witness-moved",
            FenceReason::SplitBrain => "split-brain",
            FenceReason::Operator => "operator",
            FenceReason::Unknown => "unknown",
        }
    }
}

/// Ask the leader's sidecar to copy our WAL of `timeline` from the segment holding `from_lsn` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preserve {
    pub timeline: u32,
    #[serde(with = "crate::lsn::text")]
    pub from_lsn: u64,
}

/// Ask every member's readiness sidecar to move its data directory aside (a rewind is unsafe),
/// so that Patroni clones the site from the peer. `requested_at` is the request's identity: a
/// sidecar acts on one request once (a receipt on its volume).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reclone {
    pub requested_at: String,
    /// Keep the moved data directory (the WAL past the fork was preserved incompletely, so the
    /// old data directory is the only full copy of what diverged).
    #[serde(default)]
    pub keep_data: bool,
}

/// The `pgdr_fence` document. Unknown keys written by others are kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    #[serde(default = "first_version")]
    pub version: u32,
    pub since: Timestamp,
    pub reason: FenceReason,
    pub peer: String,
    pub phase: Phase,
    /// The timeline the peer left (the fork), once the peer has been reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    #[serde(
        default,
        with = "crate::lsn::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub fork_lsn: Option<u64>,
    #[serde(
        default,
        with = "crate::lsn::opt_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_end_lsn: Option<u64>,
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
    /// A new document in phase `hold` (what every fence starts as).
    pub fn hold(since: Timestamp, reason: FenceReason, peer: &str) -> Fence {
        Fence {
            version: VERSION,
            since,
            reason,
            peer: peer.to_string(),
            phase: Phase::Hold,
            timeline: None,
            fork_lsn: None,
            local_end_lsn: None,
            diverged_bytes: None,
            preserve: None,
            rejoin_approved_at: None,
            reclone: None,
            other: Map::new(),
        }
    }

    /// The fork point, when the peer has been reached.
    pub fn fork(&self) -> Option<(u32, u64)> {
        Some((self.timeline?, self.fork_lsn?))
    }

    /// Seconds since `since` (0 when in the future).
    pub fn seconds_since(&self, now: Timestamp) -> u64 {
        u64::try_from(now.as_second().saturating_sub(self.since.as_second())).unwrap_or(0)
    }

    /// Written by a newer version than this reader knows (read leniently; worth a log line).
    pub fn newer_than_reader(&self) -> bool {
        self.version > VERSION
    }
}

/// Why a present `pgdr_fence` cannot be read as a [`Fence`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{FENCE} is not a fence document ({0})")]
pub struct Unreadable(pub String);

/// Reads `pgdr_fence` from a config object: `Ok(None)` when absent or null.
pub fn read(config: &Map<String, Value>) -> Result<Option<Fence>, Unreadable> {
    config.get(FENCE).map_or(Ok(None), read_value)
}

/// Reads a `pgdr_fence` value as written (e.g. kept in a report): `Ok(None)` when null.
pub fn read_value(v: &Value) -> Result<Option<Fence>, Unreadable> {
    match v {
        Value::Null => Ok(None),
        v => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| Unreadable(e.to_string())),
    }
}

/// A fence as a reader that must fail safe sees it: present means fenced, even when its fields
/// cannot be read (a document we do not understand must not make a member writable).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Seen {
    Readable(Fence),
    Unreadable { unreadable: String },
}

impl Seen {
    pub fn fence(&self) -> Option<&Fence> {
        match self {
            Seen::Readable(f) => Some(f),
            Seen::Unreadable { .. } => None,
        }
    }

    /// In phase `hold` (only then does the sidecar preserve WAL or move data).
    pub fn holds(&self) -> bool {
        self.fence().is_some_and(|f| f.phase == Phase::Hold)
    }

    pub fn seconds_since(&self, now: Timestamp) -> u64 {
        self.fence().map_or(0, |f| f.seconds_since(now))
    }
}

/// The fence of a config object for a fail-safe reader: `None` only when absent or null.
pub fn seen(config: &Map<String, Value>) -> Option<Seen> {
    config.get(FENCE).and_then(seen_value)
}

/// A `pgdr_fence` value as written, for a fail-safe reader: `None` only when null.
pub fn seen_value(v: &Value) -> Option<Seen> {
    match read_value(v) {
        Ok(None) => None,
        Ok(Some(f)) => Some(Seen::Readable(f)),
        Err(e) => Some(Seen::Unreadable {
            unreadable: e.to_string(),
        }),
    }
}

/// The `standby_cluster` value of each phase.
pub fn standby_cluster(phase: Phase, target: Option<&FollowTarget>) -> Value {
    match (phase, target) {
        (Phase::Follow, Some(t)) => t.standby_cluster(),
        // Without a target the only safe form is hold (never a standby_cluster without a host
        // that could make Patroni pick something else).
        _ => json!({"restore_command": "false"}),
    }
}

/// Whether the config still holds the fence a decision was taken on (`None`: no fence). A
/// decision is written only then: a fence changed in between (a person's `unfence`, another
/// run's step) is never overwritten with a stale decision, and an unreadable one never at all.
pub fn unchanged(config: &Map<String, Value>, decided_on: Option<&Fence>) -> bool {
    matches!(read(config), Ok(now) if now.as_ref() == decided_on)
}

/// Writes the fence and the matching `standby_cluster` into a config object. Follow without a
/// target degrades to hold.
pub fn apply(config: &mut Map<String, Value>, fence: &Fence, target: Option<&FollowTarget>) {
    let mut fence = fence.clone();
    if target.is_none() {
        fence.phase = Phase::Hold;
    }
    config.insert(STANDBY_CLUSTER.into(), standby_cluster(fence.phase, target));
    config.insert(
        FENCE.into(),
        serde_json::to_value(&fence).expect("a fence always serializes"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::SlotName;

    fn fence(phase: Phase) -> Fence {
        Fence {
            timeline: Some(3),
            fork_lsn: Some(0x5000A28),
            local_end_lsn: Some(0x6000000),
            diverged_bytes: Some(0x6000000 - 0x5000A28),
            phase,
            ..Fence::hold(
                "2026-11-30T16:00:00Z".parse().unwrap(),
                FenceReason::PeerAuthoritative,
                "golddr",
            )
        }
    }

    #[test]
    fn hold_and_follow_forms() {
        let target = FollowTarget {
            host: "patroni-golddr.ns.svc".into(),
            port: 31000,
            slot: SlotName::parse("standby_gold").unwrap(),
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
        assert_eq!(cfg[FENCE]["phase"], "follow");
        assert_eq!(cfg[FENCE]["version"], VERSION);
        assert!(crate::dynamic_config::is_standby_cluster(&cfg));

        // Follow without a target degrades to hold, never to a host-less follow.
        apply(&mut cfg, &fence(Phase::Follow), None);
        assert_eq!(cfg[STANDBY_CLUSTER], json!({"restore_command": "false"}));
        assert_eq!(cfg[FENCE]["phase"], "hold");
        assert!(crate::dynamic_config::is_standby_cluster(&cfg));
    }

    #[test]
    fn read_round_trips_and_keeps_unknown_keys() {
        let mut cfg = Map::new();
        assert_eq!(read(&cfg), Ok(None));
        let mut f = fence(Phase::Hold);
        f.other.insert("note".into(), json!("kept"));
        f.preserve = Some(Preserve {
            timeline: 3,
            from_lsn: 0x5000A28,
        });
        apply(&mut cfg, &f, None);
        assert_eq!(cfg[FENCE]["fork_lsn"], "0/5000A28");
        assert_eq!(cfg[FENCE]["preserve"]["from_lsn"], "0/5000A28");
        let back = read(&cfg).unwrap().unwrap();
        assert_eq!(back, f);
        assert_eq!(back.fork(), Some((3, 0x5000A28)));
        assert_eq!(cfg[FENCE]["reason"], "peer-authoritative");
        assert_eq!(cfg[FENCE]["since"], "2026-11-30T16:00:00Z");
        cfg.insert(FENCE.into(), json!("yes"));
        assert!(read(&cfg).is_err());
    }

    #[test]
    fn older_and_newer_documents_are_read() {
        // Version 1 before the field existed (the plugin wrote only these keys).
        let mut cfg = Map::new();
        cfg.insert(
            FENCE.into(),
            json!({"since": "2026-11-30T16:00:00Z", "reason": "split-brain", "peer": "gold", "phase": "hold"}),
        );
        let minimal = read(&cfg).unwrap().unwrap();
        assert_eq!(minimal.version, 1);
        assert_eq!(minimal.fork(), None);
        assert_eq!(minimal.reason, FenceReason::SplitBrain);
        assert!(!minimal.newer_than_reader());
        // A newer writer: new phase and reason words, new keys; read, never acted on.
        cfg.insert(
            FENCE.into(),
            json!({"version": 7, "since": "2026-11-30T16:00:00Z", "reason": "epoch-lower",
                   "peer": "gold", "phase": "reclone", "epoch": 4}),
        );
        let newer = read(&cfg).unwrap().unwrap();
        assert_eq!(
            (newer.phase, newer.reason),
            (Phase::Unknown, FenceReason::Unknown)
        );
        assert!(newer.newer_than_reader());
        assert_eq!(newer.other["epoch"], 4);
        let s = seen(&cfg).unwrap();
        assert!(
            !s.holds(),
            "an unknown phase is not hold: nothing is moved or copied"
        );
    }

    #[test]
    fn fail_safe_reading() {
        let mut cfg = Map::new();
        assert_eq!(seen(&cfg), None);
        cfg.insert(FENCE.into(), Value::Null);
        assert_eq!(seen(&cfg), None);
        for odd in [
            json!(true),
            json!({"timeline": "three"}),
            json!({"phase": "hold"}),
        ] {
            cfg.insert(FENCE.into(), odd.clone());
            match seen(&cfg) {
                Some(Seen::Unreadable { unreadable }) => {
                    assert!(unreadable.contains(FENCE), "{unreadable}")
                }
                other => panic!("{odd}: {other:?}"),
            }
        }
        cfg.insert(
            FENCE.into(),
            serde_json::to_value(fence(Phase::Hold)).unwrap(),
        );
        let s = seen(&cfg).unwrap();
        assert!(s.holds());
        assert_eq!(s.seconds_since("2026-11-30T16:01:00Z".parse().unwrap()), 60);
        assert_eq!(s.seconds_since("2026-11-30T15:00:00Z".parse().unwrap()), 0);
        let shown = serde_json::to_value(Seen::Unreadable {
            unreadable: "x".into(),
        })
        .unwrap();
        assert_eq!(shown, json!({"unreadable": "x"}));
    }

    /// A decision is written only on the document it was taken on (issue 20 item 10: a lost
    /// compare-and-set used to re-apply a stale fence, undoing an `unfence`).
    #[test]
    fn a_decision_is_written_only_on_the_fence_it_was_taken_on() {
        let cfg = |v: Value| v.as_object().cloned().unwrap();
        let hold = json!({"since": "2026-11-30T16:00:00Z", "reason": "witness-moved",
            "peer": "golddr", "phase": "hold"});
        let fenced = cfg(json!({"ttl": 30, FENCE: hold}));
        let decided = read(&fenced).unwrap();
        assert!(unchanged(&fenced, decided.as_ref()));
        // Unfenced meanwhile: the stale decision is not written back.
        assert!(!unchanged(&cfg(json!({"ttl": 30})), decided.as_ref()));
        // Another step meanwhile (phase follow): not written either.
        let mut follow = hold.clone();
        follow["phase"] = json!("follow");
        assert!(!unchanged(&cfg(json!({FENCE: follow})), decided.as_ref()));
        // A primary fencing itself: only while there is no fence; an unreadable one counts as one.
        assert!(unchanged(&cfg(json!({"ttl": 30})), None));
        assert!(!unchanged(&fenced, None));
        assert!(!unchanged(&cfg(json!({FENCE: {"phase": 3}})), None));
    }

    /// A value kept as written (a report) reads like the config's key: null is no fence, a
    /// document we cannot read is still a fence.
    #[test]
    fn seen_value_fails_safe() {
        assert_eq!(seen_value(&Value::Null), None);
        assert!(matches!(
            seen_value(&serde_json::json!({"phase": 3})),
            Some(Seen::Unreadable { .. })
        ));
        let f = fence(Phase::Hold);
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(seen_value(&v), Some(Seen::Readable(f.clone())));
        let mut config = Map::new();
        config.insert(FENCE.into(), v);
        assert_eq!(seen(&config), Some(Seen::Readable(f)));
    }
}
