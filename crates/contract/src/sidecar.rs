//! The readiness sidecar's `/status` parts that the failover agent reads back: the preservation
//! of the diverged WAL, the re-clone receipt and the member's own timeline history. The sidecar
//! serializes these types and the agent deserializes the same ones ([`AgentView`]), so a renamed
//! field or state fails a test instead of a failover.

use serde::{Deserialize, Serialize};

use crate::lineage::HistoryEntry;

/// Where the copy of the WAL past the fork stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceState {
    /// Nothing asked (no `pgdr_fence.preserve`).
    #[default]
    None,
    Copying,
    /// Every segment from the fork to the recorded end is copied.
    Preserved,
    /// Copied what exists; some segments were already gone (listed in `missing`).
    Incomplete,
    Failed,
    /// A state a newer sidecar reports: not done, as far as this reader knows.
    #[serde(other)]
    Unknown,
}

/// `/status` `divergence`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    pub state: DivergenceState,
    #[serde(default)]
    pub dir: Option<String>,
    #[serde(default)]
    pub files: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub missing: Vec<String>,
    #[serde(default)]
    pub error: Option<String>,
}

impl Divergence {
    /// `dir (N files, B bytes, missing [...])`, for reasons and Events.
    pub fn describe(&self) -> String {
        format!(
            "{} ({} files, {} bytes{})",
            self.dir.as_deref().unwrap_or("?"),
            self.files,
            self.bytes,
            if self.missing.is_empty() {
                String::new()
            } else {
                format!(", missing {}", self.missing.join(", "))
            }
        )
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecloneState {
    #[default]
    Moving,
    /// The data directory was moved aside (or there was none): Patroni may clone.
    Moved,
    Failed,
    #[serde(other)]
    Unknown,
}

/// `/status` `reclone`: this member's receipt for one request (`pgdr_fence.reclone`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecloneStatus {
    /// The request it answers (`pgdr_fence.reclone.requested_at`).
    pub requested_at: String,
    pub state: RecloneState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Where the data directory went (`None`: there was none to move).
    #[serde(default)]
    pub moved_to: Option<String>,
    #[serde(default)]
    pub moved_at: Option<String>,
    /// The moved folder was deleted, or is kept (`keep_data`).
    #[serde(default)]
    pub removed: bool,
    #[serde(default)]
    pub keep_data: bool,
}

/// One line of the member's own PostgreSQL timeline history, as `/status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLine {
    pub timeline: u32,
    #[serde(with = "crate::lsn::text")]
    pub switchpoint: u64,
}

impl From<HistoryLine> for HistoryEntry {
    fn from(l: HistoryLine) -> HistoryEntry {
        HistoryEntry {
            timeline: l.timeline,
            switchpoint: l.switchpoint,
        }
    }
}

impl From<HistoryEntry> for HistoryLine {
    fn from(e: HistoryEntry) -> HistoryLine {
        HistoryLine {
            timeline: e.timeline,
            switchpoint: e.switchpoint,
        }
    }
}

/// The parts of `/status` the agent reads (every other field of the answer is ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct AgentView {
    #[serde(default)]
    pub divergence: Option<Divergence>,
    #[serde(default)]
    pub reclone: Option<RecloneStatus>,
    /// `None` when the sidecar does not know it (no data directory mounted, or unreadable).
    #[serde(default)]
    pub timeline_history: Option<Vec<HistoryLine>>,
    /// The member is a writable primary withheld from `/primary` until a vouch taken at or after
    /// this time shows its peer did not promote past it ([`crate::vouch`]).
    #[serde(default)]
    pub awaiting_peer_evidence_since: Option<jiff::Timestamp>,
}

impl AgentView {
    pub fn own_history(&self) -> Option<Vec<HistoryEntry>> {
        self.timeline_history
            .as_ref()
            .map(|h| h.iter().copied().map(HistoryEntry::from).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_agent_reads_what_the_sidecar_writes() {
        let sidecar = json!({
            "site": "gold", "ready": false,
            "divergence": serde_json::to_value(Divergence {
                state: DivergenceState::Incomplete,
                dir: Some("/d".into()), files: 2, bytes: 32, missing: vec!["0000000100000000000000AA".into()],
                error: None,
            }).unwrap(),
            "reclone": serde_json::to_value(RecloneStatus {
                requested_at: "2026-11-30T16:00:00Z".into(), state: RecloneState::Moved,
                ..RecloneStatus::default()
            }).unwrap(),
            "timeline_history": [{"timeline": 1, "switchpoint": "0/302A438"}],
            "awaiting_peer_evidence_since": "2026-12-04T10:00:00.5Z",
        });
        let v: AgentView = serde_json::from_value(sidecar).unwrap();
        assert_eq!(
            v.awaiting_peer_evidence_since,
            Some("2026-12-04T10:00:00.5Z".parse().unwrap())
        );
        let d = v.divergence.as_ref().unwrap();
        assert_eq!(d.state, DivergenceState::Incomplete);
        assert_eq!(
            d.describe(),
            "/d (2 files, 32 bytes, missing 0000000100000000000000AA)"
        );
        assert_eq!(v.reclone.as_ref().unwrap().state, RecloneState::Moved);
        assert_eq!(
            v.own_history(),
            Some(vec![HistoryEntry {
                timeline: 1,
                switchpoint: 0x302A438
            }])
        );
        let empty: AgentView = serde_json::from_value(json!({"timeline_history": null})).unwrap();
        assert_eq!(empty.own_history(), None);
        assert_eq!(empty.awaiting_peer_evidence_since, None);
        let newer: Divergence = serde_json::from_value(json!({"state": "verifying"})).unwrap();
        assert_eq!(newer.state, DivergenceState::Unknown);
        assert_eq!(
            serde_json::to_value(DivergenceState::Preserved).unwrap(),
            json!("preserved")
        );
    }
}
