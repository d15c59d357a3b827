//! The failover decision: a pure function of (policy, persisted state, one sample).
//!
//! No I/O and no clock: the sample carries its own time, so every case is a row in a table.
//! The rules err on the side of not promoting: a sample only counts as a failure when the
//! primary gave no PostgreSQL answer *and* the local replication stream is not streaming, and
//! every guard that blocks is reported (not just the first), so the log says everything at once.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::state::{DecisionRecord, PromotionRecord, State, StateProblem};

/// `observe` decides and announces "would promote" but never acts; `auto` promotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Observe,
    Auto,
}

/// Thresholds and switches; built once from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub mode: Mode,
    /// N: consecutive failed samples.
    pub failure_threshold: u32,
    /// T: the failed streak must span at least this long (first to last failed sample).
    pub min_failure_span: Duration,
    pub max_lag_bytes: u64,
    /// Lets an unknown/too-high lag and a disagreeing/unreachable witness pass. Nothing else.
    pub force: bool,
    /// A failed sample closer than this to the last counted one is not counted again: it comes
    /// from an overlapping run and would otherwise double-count.
    pub min_sample_spacing: Duration,
    /// A longer gap since the last counted sample (missed runs, a suspended CronJob, a clock
    /// jump) restarts the streak: old failures say nothing about now.
    pub max_sample_gap: Duration,
    /// A promotion claim younger than this blocks other runs; an older unfinished one is
    /// considered abandoned (its run died).
    pub claim_ttl: Duration,
}

/// Result of the PostgreSQL-protocol probe of the primary through the tunnel.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    /// The server accepted the connection. `in_recovery` is `None` if it could not be asked;
    /// `lsn` is its WAL flush position when it is a primary.
    Accepting {
        in_recovery: Option<bool>,
        lsn: Option<u64>,
    },
    /// The server answered with a PostgreSQL error (authentication, "starting up", too many
    /// connections), or answered the SSL request and then declined TLS or failed the TLS
    /// handshake / certificate check: something is alive on the far side.
    Rejected { reason: String },
    /// No PostgreSQL answer: refused, reset, timeout, not PostgreSQL, tunnel Service missing.
    NoAnswer { reason: String },
}

/// This site's dynamic configuration (`<scope>-config`).
#[derive(Clone, Debug, PartialEq)]
pub enum SiteConfig {
    /// `standby_cluster` is set (Patroni's truthiness rule).
    Standby,
    /// No `standby_cluster`: this site is (or is becoming) a primary site.
    NotStandby,
    /// The `config` annotation is unreadable; we report it and never act on it.
    Malformed(String),
}

/// The local leader as its Patroni REST API (`/patroni`) reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Leader {
    pub name: String,
    pub role: String,
    pub state: String,
    pub replication_state: Option<String>,
    pub received_lsn: Option<u64>,
    pub replayed_lsn: Option<u64>,
    pub pause: bool,
}

impl Leader {
    fn is_primary(&self) -> bool {
        matches!(self.role.as_str(), "primary" | "master") && self.state == "running"
    }
    fn is_running_standby_leader(&self) -> bool {
        self.role == "standby_leader" && self.state == "running"
    }
    fn streaming(&self) -> bool {
        self.replication_state.as_deref() == Some("streaming")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum LocalLeader {
    Found(Leader),
    /// Nobody holds the leader lock (or the lock names no member).
    Missing(String),
    /// The lock holder's REST API did not answer.
    Unreachable {
        name: String,
        reason: String,
    },
}

/// The third opinion.
#[derive(Clone, Debug, PartialEq)]
pub enum Witness {
    NotConfigured,
    /// The witness says the primary site is gone (e.g. the GSLB already sends traffic here).
    PrimaryDown(String),
    /// The witness says the primary site is alive.
    PrimaryAlive(String),
    /// The witness could not be asked.
    Unknown(String),
}

/// Everything one sample observed, with its time and the run that took it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub at: Timestamp,
    pub run: String,
    pub probe: Probe,
    pub site: SiteConfig,
    pub leader: LocalLeader,
    pub witness: Witness,
    /// The hold annotation on the state ConfigMap is `true`.
    pub hold: bool,
    /// `pause: true` in the dynamic config.
    pub config_paused: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The primary answered, or the stream is alive.
    Healthy,
    /// Failing, but the debounce (N and T) is not met yet.
    Waiting,
    /// The debounce is met but at least one guard blocks.
    Blocked,
    /// Observe mode: everything says promote.
    WouldPromote,
    /// Auto mode: promote now (this decision carries the claim).
    Promote,
    /// This site already runs a primary: nothing to do.
    AlreadyPrimary,
    /// A promotion is under way (a claim by another run, or Patroni still promoting).
    InProgress,
    /// The state ConfigMap holds something we cannot use; it is left untouched.
    StateUnusable,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Waiting => "waiting",
            Verdict::Blocked => "blocked",
            Verdict::WouldPromote => "would-promote",
            Verdict::Promote => "promote",
            Verdict::AlreadyPrimary => "already-primary",
            Verdict::InProgress => "in-progress",
            Verdict::StateUnusable => "state-unusable",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Every reason, in order: observations, counting, guards.
    pub reasons: Vec<String>,
    /// The state to write (compare-and-set); `None` = write nothing.
    pub next: Option<State>,
    /// This sample saw the primary as gone.
    pub failed_sample: bool,
    /// The sample was counted (false for a duplicate from an overlapping run).
    pub counted: bool,
    /// Observe mode: announce "would promote" (Event, webhook) — once per failure streak.
    pub notify: bool,
}

impl Decision {
    fn terminal(verdict: Verdict, reasons: Vec<String>) -> Self {
        Decision {
            verdict,
            reasons,
            next: None,
            failed_sample: false,
            counted: false,
            notify: false,
        }
    }
}

/// Decides what one sample means, given what earlier samples left in `state`.
pub fn decide(policy: &Policy, state: Result<&State, &StateProblem>, sample: &Sample) -> Decision {
    let state = match state {
        Ok(s) => s,
        Err(problem) => {
            return Decision::terminal(
                Verdict::StateUnusable,
                vec![
                    format!("state ConfigMap unusable: {problem}"),
                    "left untouched: fix the 'state' key or delete it to start afresh".into(),
                ],
            );
        }
    };
    let at = sample.at;
    let mut reasons = Vec::new();

    if sample.site == SiteConfig::NotStandby {
        return match &sample.leader {
            LocalLeader::Found(l) if l.is_primary() => Decision::terminal(
                Verdict::AlreadyPrimary,
                vec![format!(
                    "this site is no longer a standby cluster and {} is a running primary: nothing to do",
                    l.name
                )],
            ),
            other => Decision::terminal(
                Verdict::InProgress,
                vec![format!(
                    "standby_cluster is gone from the dynamic config but no writable primary yet ({}): \
                     leaving Patroni to finish",
                    describe_leader(other)
                )],
            ),
        };
    }

    // What this sample says about the primary site.
    let leader = match &sample.leader {
        LocalLeader::Found(l) => Some(l),
        _ => None,
    };
    let stream_alive = leader.is_some_and(Leader::streaming);
    reasons.push(describe_probe(&sample.probe));
    reasons.push(match &sample.leader {
        LocalLeader::Found(l) => format!(
            "local leader {}: role {}, state {}, WAL receiver {}",
            l.name,
            l.role,
            l.state,
            l.replication_state.as_deref().unwrap_or("not running")
        ),
        other => describe_leader(other),
    });
    let failed = matches!(sample.probe, Probe::NoAnswer { .. }) && !stream_alive;
    if stream_alive && matches!(sample.probe, Probe::NoAnswer { .. }) {
        reasons.push(
            "replication stream is alive, so the primary is alive: sample counts as healthy".into(),
        );
    }

    // Counting, guarded against overlapping runs and gaps between runs.
    let mut next = state.clone();
    let mut counted = true;
    if let Some(last) = state.last_sample_at {
        let gap = at.duration_since(last);
        if gap.is_negative() {
            reasons.push(format!(
                "clock is {:#} behind the last recorded sample: streak restarts",
                gap.abs()
            ));
            reset_streak(&mut next);
        } else if gap > signed(policy.max_sample_gap) {
            reasons.push(format!(
                "{gap:#} since the last sample (more than {:#}): streak restarts",
                signed(policy.max_sample_gap)
            ));
            reset_streak(&mut next);
        } else if failed && gap < signed(policy.min_sample_spacing) {
            reasons.push(format!(
                "only {gap:#} after the last counted sample (an overlapping run): not counted again"
            ));
            counted = false;
        }
    }
    if failed {
        if counted {
            next.consecutive_failures += 1;
            next.first_failure_at.get_or_insert(at);
            next.last_sample_at = Some(at);
        }
    } else {
        // Any sign of life resets the streak, even from an overlapping run.
        reset_streak(&mut next);
        next.last_sample_at = Some(at);
        next.last_success_at = Some(at);
        if let Probe::Accepting {
            in_recovery: Some(false),
            lsn: Some(lsn),
        } = sample.probe
        {
            next.last_primary_lsn = Some(lsn);
            next.last_primary_lsn_at = Some(at);
        }
    }
    if let Some(lag) = leader.and_then(|l| lag_bytes(l, next.last_primary_lsn)) {
        next.last_known_lag_bytes = Some(lag);
    }

    let span = next
        .first_failure_at
        .map(|f| at.duration_since(f))
        .unwrap_or(SignedDuration::ZERO);
    let streak = format!(
        "{} consecutive failed sample(s) over {span:#} (promotion needs {} over {:#})",
        next.consecutive_failures,
        policy.failure_threshold,
        signed(policy.min_failure_span)
    );

    let (verdict, notify) = if !failed {
        reasons.push("primary site is alive".into());
        (Verdict::Healthy, false)
    } else if next.consecutive_failures < policy.failure_threshold.max(1)
        || span < signed(policy.min_failure_span)
    {
        reasons.push(streak);
        (Verdict::Waiting, false)
    } else {
        reasons.push(streak);
        let blocks = guards(policy, &next, sample, leader, &mut reasons);
        if let Some(claim) = active_claim(policy, state, at) {
            reasons.push(format!(
                "promotion already claimed by run {} at {}: not acting twice",
                claim.run, claim.claimed_at
            ));
            (Verdict::InProgress, false)
        } else if blocks > 0 {
            (Verdict::Blocked, false)
        } else if policy.mode == Mode::Observe {
            reasons.push("mode is observe: would promote, not acting".into());
            let notify = state.would_promote_notified_at.is_none();
            next.would_promote_notified_at.get_or_insert(at);
            (Verdict::WouldPromote, notify)
        } else {
            reasons.push("mode is auto: promoting".into());
            next.promotion = Some(PromotionRecord {
                run: sample.run.clone(),
                claimed_at: at,
                reasons: reasons.clone(),
                standby_lsn: leader.and_then(|l| l.replayed_lsn),
                confirmed_at: None,
                primary_lsn: None,
                timeline: None,
                failed: None,
            });
            (Verdict::Promote, false)
        }
    };
    next.last_decision = Some(DecisionRecord {
        at,
        verdict: verdict.to_string(),
        reasons: reasons.clone(),
        run: sample.run.clone(),
    });
    Decision {
        verdict,
        reasons,
        next: Some(next),
        failed_sample: failed,
        counted,
        notify,
    }
}

/// Checks every guard, appends a reason for each, returns how many block.
fn guards(
    policy: &Policy,
    next: &State,
    sample: &Sample,
    leader: Option<&Leader>,
    reasons: &mut Vec<String>,
) -> usize {
    let mut blocks = 0;
    let mut block = |reasons: &mut Vec<String>, why: String| {
        blocks += 1;
        reasons.push(format!("BLOCKED: {why}"));
    };
    if let SiteConfig::Malformed(why) = &sample.site {
        block(
            reasons,
            format!("the dynamic config cannot be read ({why})"),
        );
    }
    match leader {
        Some(l) if l.is_running_standby_leader() => {}
        Some(l) => block(
            reasons,
            format!(
                "local leader {} is not a running standby leader (role {}, state {})",
                l.name, l.role, l.state
            ),
        ),
        None => block(
            reasons,
            format!(
                "no running local standby leader ({})",
                describe_leader(&sample.leader)
            ),
        ),
    }
    if leader.is_some_and(|l| l.pause) || sample.config_paused {
        block(reasons, "Patroni is paused (maintenance mode)".into());
    }
    if sample.hold {
        block(
            reasons,
            "the hold annotation on the state ConfigMap is set".into(),
        );
    }
    let mut forced = |reasons: &mut Vec<String>, why: String| {
        if policy.force {
            reasons.push(format!("FORCED past: {why}"));
        } else {
            block(reasons, why);
        }
    };
    match &sample.witness {
        Witness::NotConfigured => reasons.push(
            "no witness configured: the decision rests on the tunnel probe and the replication stream only".into(),
        ),
        Witness::PrimaryDown(d) => reasons.push(format!("witness agrees the primary site is gone: {d}")),
        Witness::PrimaryAlive(d) => forced(reasons, format!("witness says the primary site is alive: {d}")),
        Witness::Unknown(d) => forced(reasons, format!("witness could not be asked: {d}")),
    }
    match next.last_known_lag_bytes {
        None => forced(
            reasons,
            "last replication lag unknown (no successful probe of the primary recorded)".into(),
        ),
        Some(lag) if lag > policy.max_lag_bytes => forced(
            reasons,
            format!(
                "last known lag {lag} bytes exceeds the limit of {} bytes",
                policy.max_lag_bytes
            ),
        ),
        Some(lag) => reasons.push(format!(
            "last known lag {lag} bytes is within {} bytes",
            policy.max_lag_bytes
        )),
    }
    blocks
}

/// An unfinished promotion claim that is still fresh.
fn active_claim<'a>(
    policy: &Policy,
    state: &'a State,
    at: Timestamp,
) -> Option<&'a PromotionRecord> {
    state.promotion.as_ref().filter(|p| {
        p.confirmed_at.is_none()
            && p.failed.is_none()
            && at.duration_since(p.claimed_at) < signed(policy.claim_ttl)
    })
}

/// Bytes the local standby would lose or still has to replay: the larger of the WAL it has
/// not received (behind the primary's last seen position) and the WAL it has not replayed.
fn lag_bytes(leader: &Leader, last_primary_lsn: Option<u64>) -> Option<u64> {
    let received = leader.received_lsn?;
    let backlog = leader
        .replayed_lsn
        .map_or(0, |r| received.saturating_sub(r));
    let behind = last_primary_lsn?.saturating_sub(received);
    Some(behind.max(backlog))
}

fn reset_streak(state: &mut State) {
    state.consecutive_failures = 0;
    state.first_failure_at = None;
    state.would_promote_notified_at = None;
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

fn describe_probe(probe: &Probe) -> String {
    match probe {
        Probe::Accepting { in_recovery, .. } => format!(
            "primary probe: accepting ({})",
            match in_recovery {
                Some(false) => "writable primary",
                Some(true) => "in recovery, not a primary",
                None => "role unknown",
            }
        ),
        Probe::Rejected { reason } => {
            format!("primary probe: answered with an error ({reason}), so it is alive")
        }
        Probe::NoAnswer { reason } => format!("primary probe: no answer ({reason})"),
    }
}

fn describe_leader(leader: &LocalLeader) -> String {
    match leader {
        LocalLeader::Found(l) => format!("leader {} role {} state {}", l.name, l.role, l.state),
        LocalLeader::Missing(why) => format!("no local leader: {why}"),
        LocalLeader::Unreachable { name, reason } => {
            format!("local leader {name} unreachable: {reason}")
        }
    }
}

#[cfg(test)]
mod tests;
