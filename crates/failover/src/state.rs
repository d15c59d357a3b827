//! The persisted debounce state: one JSON document in the `state` key of the state ConfigMap.
//!
//! Pure: parsing and rendering only. The ConfigMap is read and written (compare-and-set on its
//! resourceVersion) by `act`/`observe`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Key of the JSON document in the ConfigMap's `data`.
pub const STATE_KEY: &str = "state";
/// Schema version written by this binary. Older documents are read (missing fields default);
/// newer ones are refused rather than overwritten, since we cannot know what they mean.
pub const STATE_VERSION: u32 = 1;

/// Everything a run needs from earlier runs: what every role shares, then one section per role
/// ([`StandbyState`], [`PrimaryState`], [`FencedState`]). The sections are flattened: the document
/// keeps one flat object with the same keys as before the sections (an agent of either version
/// reads what the other wrote).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub version: u32,
    /// Time of the last sample that was counted (the standby's failure streak, the primary's
    /// "moved" count).
    pub last_sample_at: Option<Timestamp>,
    /// The latest decision, for `kubectl get cm -o yaml`.
    pub last_decision: Option<DecisionRecord>,
    #[serde(flatten)]
    pub standby: StandbyState,
    #[serde(flatten)]
    pub primary: PrimaryState,
    #[serde(flatten)]
    pub fenced: FencedState,
}

/// What a standby site's runs remember: the failure streak, the primary's position, the stream,
/// the promotion claim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StandbyState {
    /// Consecutive failed samples (across runs); any healthy sample resets it.
    pub consecutive_failures: u32,
    /// Time of the first failed sample of the current streak.
    pub first_failure_at: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    /// The primary's last known WAL position (bytes): its flush position at the last probe that
    /// could ask, or what the local stream had received while streaming (a fresh lower bound).
    pub last_primary_lsn: Option<u64>,
    /// When that position was seen; read by the lag guard (`FAILOVER_MAX_LSN_AGE`).
    pub last_primary_lsn_at: Option<Timestamp>,
    /// Last sample at which the local WAL receiver was streaming.
    pub last_streaming_at: Option<Timestamp>,
    /// First healthy sample at which the primary answered but the stream did not (cleared when
    /// it streams again).
    pub stream_broken_since: Option<Timestamp>,
    /// When `ReplicationBroken` was last announced (rate limit).
    pub replication_broken_notified_at: Option<Timestamp>,
    /// Lag of the local standby leader at the last sample that could measure it (bytes).
    pub last_known_lag_bytes: Option<u64>,
    /// When "would promote" was last announced (observe mode): once per failure streak.
    pub would_promote_notified_at: Option<Timestamp>,
    /// Set by the run that won the compare-and-set to promote; other runs leave the site alone.
    pub promotion: Option<PromotionRecord>,
}

/// What a writable primary's runs remember: the split brain and the witnesses' "moved" count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PrimaryState {
    /// First sample at which both sites were seen writable (cleared once one is not).
    pub split_brain_since: Option<Timestamp>,
    /// When `SplitBrain` was last announced (rate limit).
    pub split_brain_notified_at: Option<Timestamp>,
    /// Consecutive samples (primary role) at which the peer was silent and a witness said the
    /// application runs on the peer; with the time of the first.
    pub moved_samples: u32,
    pub moved_since: Option<Timestamp>,
}

/// What a fenced site's runs remember: the fence, the divergence, the rejoin or re-clone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FencedState {
    /// When this site fenced itself, and why (`peer-authoritative`, `witness-moved`, `split-brain`).
    pub fenced_at: Option<Timestamp>,
    pub fence_reason: Option<String>,
    /// What this site wrote past the fork, once the peer could be asked.
    pub divergence: Option<DivergenceRecord>,
    /// When the fenced site's leader first streamed from the authoritative site.
    pub rejoined_at: Option<Timestamp>,
    /// When rejoining by rewind was found unsafe (a timeline of our own numbered like the
    /// peer's): the site stays on hold until re-cloned.
    pub reclone_required_at: Option<Timestamp>,
    /// When a re-cloned site first streamed from the authoritative site.
    pub recloned_at: Option<Timestamp>,
    /// Phase follow: since when the site stays on the timeline the authority left without
    /// streaming while the authority is reachable (re-cloned after `fenced::FOLLOW_STALL`).
    /// Written only while set: the previous version's document reads and writes back as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_stalled_since: Option<Timestamp>,
}

/// The divergence of a fenced site: its timeline, where the peer left it, and how far we wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DivergenceRecord {
    pub recorded_at: Timestamp,
    pub peer: String,
    pub timeline: u32,
    pub fork_lsn: String,
    pub local_end_lsn: Option<String>,
    /// `None`: our end is unknown (or we left the timeline), so the WAL is preserved anyway.
    pub diverged_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub at: Timestamp,
    pub verdict: String,
    pub reasons: Vec<String>,
    pub run: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromotionRecord {
    /// Run (Pod name) that claimed the promotion.
    pub run: String,
    pub claimed_at: Timestamp,
    pub reasons: Vec<String>,
    /// Last LSN the standby leader had replayed when the promotion was decided.
    #[serde(default)]
    pub standby_lsn: Option<u64>,
    /// Set once the leader reported a writable primary.
    #[serde(default)]
    pub confirmed_at: Option<Timestamp>,
    #[serde(default)]
    pub primary_lsn: Option<u64>,
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Set when the run gave up (PATCH failed or not confirmed in time).
    #[serde(default)]
    pub failed: Option<String>,
}

/// Why a stored state cannot be used. The ConfigMap is then left untouched.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateProblem {
    #[error("the '{STATE_KEY}' key is not a valid state document ({0})")]
    NotJson(String),
    #[error(
        "the state was written by a newer version (schema {found}, this binary knows {STATE_VERSION})"
    )]
    NewerVersion { found: u32 },
}

/// Parses the `state` key. An absent or empty key means a fresh state (Helm creates the
/// ConfigMap with labels only).
pub fn parse(text: Option<&str>) -> Result<State, StateProblem> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(State::default());
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| StateProblem::NotJson(e.to_string()))?;
    // serde would accept a JSON array for a struct (by position); only an object is a state.
    if !value.is_object() {
        return Err(StateProblem::NotJson("expected a JSON object".into()));
    }
    let state: State =
        serde_json::from_value(value).map_err(|e| StateProblem::NotJson(e.to_string()))?;
    if state.version > STATE_VERSION {
        return Err(StateProblem::NewerVersion {
            found: state.version,
        });
    }
    Ok(state)
}

/// Renders the document, stamping the current schema version.
pub fn render(state: &State) -> String {
    let mut s = state.clone();
    s.version = STATE_VERSION;
    serde_json::to_string_pretty(&s).expect("the state always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        assert_eq!(parse(None).unwrap(), State::default());
        assert_eq!(parse(Some("  ")).unwrap(), State::default());
        // An older run wrote fewer fields: the rest default.
        let old = parse(Some(
            r#"{"consecutive_failures":3,"first_failure_at":"2026-01-01T00:00:00Z"}"#,
        ))
        .unwrap();
        assert_eq!(old.standby.consecutive_failures, 3);
        assert_eq!(old.version, 0);
        assert!(matches!(
            parse(Some("{nope")),
            Err(StateProblem::NotJson(_))
        ));
        assert!(matches!(parse(Some("[1]")), Err(StateProblem::NotJson(_))));
        assert!(matches!(
            parse(Some(r#"{"consecutive_failures":"three"}"#)),
            Err(StateProblem::NotJson(_))
        ));
        assert_eq!(
            parse(Some(r#"{"version":9}"#)),
            Err(StateProblem::NewerVersion { found: 9 })
        );
    }

    #[test]
    fn render_round_trips() {
        let s = State {
            standby: StandbyState {
                consecutive_failures: 2,
                first_failure_at: Some("2026-01-01T00:00:00Z".parse().unwrap()),
                last_primary_lsn: Some(50331744),
                ..StandbyState::default()
            },
            ..State::default()
        };
        let back = parse(Some(&render(&s))).unwrap();
        assert_eq!(back.version, STATE_VERSION);
        assert_eq!(back.standby.consecutive_failures, 2);
        assert_eq!(back.standby.last_primary_lsn, Some(50331744));
    }

    /// A state document as the agent wrote it before the per-role sections (one flat object,
    /// every key): read by this version into its sections, and written back with the same keys
    /// and values, so that agents of both versions read each other's state during an upgrade.
    #[test]
    fn reads_and_writes_the_flat_document_of_the_previous_version() {
        let old = r#"{
  "version": 1,
  "consecutive_failures": 2,
  "first_failure_at": "2026-11-30T16:00:00Z",
  "last_sample_at": "2026-11-30T16:00:10Z",
  "last_success_at": "2026-11-30T15:59:50Z",
  "last_primary_lsn": 50331744,
  "last_primary_lsn_at": "2026-11-30T15:59:50Z",
  "last_streaming_at": "2026-11-30T15:59:50Z",
  "stream_broken_since": null,
  "replication_broken_notified_at": null,
  "last_known_lag_bytes": 100,
  "last_decision": {"at": "2026-11-30T16:00:10Z", "verdict": "waiting",
    "reasons": ["primary probe: no answer"], "run": "run-a"},
  "would_promote_notified_at": null,
  "promotion": {"run": "run-b", "claimed_at": "2026-11-30T16:00:20Z", "reasons": ["r"],
    "standby_lsn": 50331700, "confirmed_at": null, "primary_lsn": null, "timeline": null,
    "failed": null},
  "split_brain_since": "2026-11-30T16:01:00Z",
  "split_brain_notified_at": "2026-11-30T16:01:00Z",
  "moved_samples": 3,
  "moved_since": "2026-11-30T16:00:40Z",
  "fenced_at": "2026-11-30T16:02:00Z",
  "fence_reason": "witness-moved",
  "divergence": {"recorded_at": "2026-11-30T16:03:00Z", "peer": "golddr", "timeline": 3,
    "fork_lsn": "0/5000A28", "local_end_lsn": "0/6000000", "diverged_bytes": 16774616},
  "rejoined_at": "2026-11-30T16:04:00Z",
  "reclone_required_at": null,
  "recloned_at": "2026-11-30T16:05:00Z"
}"#;
        let s = parse(Some(old)).unwrap();
        let at = |t: &str| Some(t.parse::<Timestamp>().unwrap());
        assert_eq!(s.version, 1);
        assert_eq!(s.last_sample_at, at("2026-11-30T16:00:10Z"));
        assert_eq!(s.last_decision.as_ref().unwrap().verdict, "waiting");
        assert_eq!(s.standby.consecutive_failures, 2);
        assert_eq!(s.standby.first_failure_at, at("2026-11-30T16:00:00Z"));
        assert_eq!(s.standby.last_primary_lsn, Some(50331744));
        assert_eq!(s.standby.last_known_lag_bytes, Some(100));
        assert_eq!(s.standby.promotion.as_ref().unwrap().run, "run-b");
        assert_eq!(s.primary.split_brain_since, at("2026-11-30T16:01:00Z"));
        assert_eq!(s.primary.moved_samples, 3);
        assert_eq!(s.primary.moved_since, at("2026-11-30T16:00:40Z"));
        assert_eq!(s.fenced.fenced_at, at("2026-11-30T16:02:00Z"));
        assert_eq!(s.fenced.fence_reason.as_deref(), Some("witness-moved"));
        assert_eq!(s.fenced.divergence.as_ref().unwrap().fork_lsn, "0/5000A28");
        assert_eq!(s.fenced.rejoined_at, at("2026-11-30T16:04:00Z"));
        assert_eq!(s.fenced.recloned_at, at("2026-11-30T16:05:00Z"));
        // Written back: the same flat object, key for key.
        let written: serde_json::Value = serde_json::from_str(&render(&s)).unwrap();
        let was: serde_json::Value = serde_json::from_str(old).unwrap();
        assert_eq!(written, was);
        // A default state has every key of the old flat document too (the previous version
        // reads it; every field it does not find defaults anyway).
        let fresh: serde_json::Value = serde_json::from_str(&render(&State::default())).unwrap();
        let keys = |v: &serde_json::Value| {
            v.as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(keys(&fresh), keys(&was));
    }
}
