//! The switchover record: one JSON document in the `progress` key of the `<fullname>-switchover`
//! ConfigMap, kept on both sites. Every step is recorded before it is acted on, so a re-run
//! (or `--resume`) continues from the recorded step.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub const PROGRESS_KEY: &str = "progress";
/// Newer documents are refused rather than overwritten.
pub const PROGRESS_VERSION: u32 = 1;

/// The steps, in order. Each is idempotent: the machine checks the observed state before acting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Set the hold annotation on both agents.
    Hold,
    /// Add `standby_cluster` (→ target through the tunnel) to the source's dynamic config.
    Demote,
    /// Wait for the source's standby leader; record its final LSN and timeline.
    Token,
    /// Wait until the target has received and replayed exactly up to the token.
    CatchUp,
    /// Remove `standby_cluster` from the target and declare the slot for the source.
    Promote,
    /// Wait for the target to run as a writable primary on a new timeline.
    Promoted,
    /// Wait until the source's standby leader streams from the new primary.
    Verify,
    /// Remove the holds this switchover set.
    Release,
    Done,
    /// `--abort` before the target was promoted: remove the `standby_cluster` the demote added to
    /// the source (it takes writes again, at its own epoch: the target was never promoted), then
    /// release.
    Restore,
}

/// The last step at which `switchover --abort` can still undo a switchover (at it, only while the
/// target's promotion has not acted yet).
pub const LAST_ABORTABLE: Step = Step::Promote;

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Hold => "hold",
            Step::Demote => "demote",
            Step::Token => "token",
            Step::CatchUp => "catch-up",
            Step::Promote => "promote",
            Step::Promoted => "promoted",
            Step::Verify => "verify",
            Step::Release => "release",
            Step::Done => "done",
            Step::Restore => "restore",
        }
    }
}

/// The demotion token: where the source's WAL ended after its clean demote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub lsn: u64,
    pub timeline: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub at: Timestamp,
    pub step: Step,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(default)]
    pub version: u32,
    /// Bumped on every write; the higher copy wins when the two sites disagree.
    #[serde(default)]
    pub rev: u64,
    pub from: String,
    pub to: String,
    pub step: Step,
    pub started_at: Timestamp,
    pub step_started_at: Timestamp,
    #[serde(default)]
    pub force: bool,
    pub max_lag_bytes: u64,
    /// Sites whose hold was already set before the switchover: left held at the end.
    #[serde(default)]
    pub held_before: Vec<String>,
    /// The source's timeline when the switchover started.
    pub source_timeline: Option<u64>,
    /// The timeline the target's standby leader published when the switchover started (it then
    /// streamed from the source, so this is the source's timeline as the target received it).
    #[serde(default)]
    pub target_timeline: Option<u64>,
    /// The source primary's write position just before the demote.
    #[serde(default)]
    pub source_lsn_before_demote: Option<u64>,
    #[serde(default)]
    pub token: Option<Token>,
    #[serde(default)]
    pub new_timeline: Option<u64>,
    /// Bytes not replayed by the target when a forced promotion went ahead.
    #[serde(default)]
    pub forced_loss_bytes: Option<u64>,
    #[serde(default)]
    pub finished_at: Option<Timestamp>,
    /// `--abort` was asked: the source is restored instead of the target promoted.
    #[serde(default)]
    pub aborted: bool,
    #[serde(default)]
    pub log: Vec<LogEntry>,
}

impl Progress {
    pub fn is_finished(&self) -> bool {
        self.step == Step::Done
    }
}

/// Parses the stored document.
pub fn parse(text: &str) -> Result<Progress, String> {
    let p: Progress = serde_json::from_str(text)
        .map_err(|e| format!("the '{PROGRESS_KEY}' key is not a switchover record ({e})"))?;
    if p.version > PROGRESS_VERSION {
        return Err(format!(
            "the switchover record was written by a newer kubectl-pgdr (schema {}, this one knows {PROGRESS_VERSION})",
            p.version
        ));
    }
    Ok(p)
}

pub fn render(p: &Progress) -> String {
    let mut p = p.clone();
    p.version = PROGRESS_VERSION;
    serde_json::to_string_pretty(&p).expect("a progress record always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_newer_refused() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let p = Progress {
            aborted: false,
            version: 0,
            rev: 3,
            from: "gold".into(),
            to: "golddr".into(),
            step: Step::CatchUp,
            started_at: now,
            step_started_at: now,
            force: false,
            max_lag_bytes: 1,
            held_before: vec![],
            target_timeline: None,
            source_timeline: Some(1),
            source_lsn_before_demote: Some(5),
            token: Some(Token {
                lsn: 9,
                timeline: 1,
            }),
            new_timeline: None,
            forced_loss_bytes: None,
            finished_at: None,
            log: vec![],
        };
        let text = render(&p);
        assert!(text.contains("\"catch-up\""), "{text}");
        let back = parse(&text).unwrap();
        assert_eq!(back.version, PROGRESS_VERSION);
        assert_eq!(back.token, p.token);
        let newer = text.replace("\"version\": 1", "\"version\": 7");
        assert!(parse(&newer).unwrap_err().contains("newer"));
        assert!(parse("{}").is_err());
        assert!(Step::Hold < Step::Done);
    }
}
