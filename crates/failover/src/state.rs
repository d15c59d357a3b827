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

/// Everything a run needs from earlier runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    pub version: u32,
    /// Consecutive failed samples (across runs); any healthy sample resets it.
    pub consecutive_failures: u32,
    /// Time of the first failed sample of the current streak.
    pub first_failure_at: Option<Timestamp>,
    /// Time of the last sample that was counted (failed or healthy).
    pub last_sample_at: Option<Timestamp>,
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
    /// The latest decision, for `kubectl get cm -o yaml`.
    pub last_decision: Option<DecisionRecord>,
    /// When "would promote" was last announced (observe mode): once per failure streak.
    pub would_promote_notified_at: Option<Timestamp>,
    /// Set by the run that won the compare-and-set to promote; other runs leave the site alone.
    pub promotion: Option<PromotionRecord>,
    /// First sample at which both sites were seen writable (cleared once one is not).
    pub split_brain_since: Option<Timestamp>,
    /// When `SplitBrain` was last announced (rate limit).
    pub split_brain_notified_at: Option<Timestamp>,
    /// Consecutive samples (primary role) at which the peer was silent and a witness said the
    /// application runs on the peer; with the time of the first.
    pub moved_samples: u32,
    pub moved_since: Option<Timestamp>,
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
        assert_eq!(old.consecutive_failures, 3);
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
            consecutive_failures: 2,
            first_failure_at: Some("2026-01-01T00:00:00Z".parse().unwrap()),
            last_primary_lsn: Some(50331744),
            ..State::default()
        };
        let back = parse(Some(&render(&s))).unwrap();
        assert_eq!(back.version, STATE_VERSION);
        assert_eq!(back.consecutive_failures, 2);
        assert_eq!(back.last_primary_lsn, Some(50331744));
    }
}
