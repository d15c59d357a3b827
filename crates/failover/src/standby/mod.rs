//! The failover decision: a pure function of (policy, persisted state, one sample).
//!
//! No I/O and no clock: the sample carries its own time, so every case is a row in a table.
//! The rules err on the side of not promoting: a sample only counts as a failure when the
//! primary gave no PostgreSQL answer *and* the local replication stream is not streaming; a
//! sample that could not probe at all (tunnel Service missing) is `unknown` and neither counts
//! nor resets; promotion needs positive evidence (a witness saying `down`, none saying `alive`)
//! and a primary position that is fresh; every guard that blocks is reported (not just the
//! first), so the log says everything at once.

use pgdr_core::contract::role;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::state::{DecisionRecord, PromotionRecord, State, StateProblem};
use crate::witness::Witness;

mod reason;
pub use reason::{Guard, Reason};

/// `observe` decides and announces "would promote" but never acts; `auto` promotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Observe,
    Auto,
}

/// Whether a writable primary writes the fence it decides on (`FAILOVER_FENCING`). `auto`: on
/// proof (the peer writable at a higher promotion epoch) in every mode, and on a witness's word
/// with `FAILOVER_MODE=auto` only; `observe`: never, it logs "WOULD fence". Separate from
/// [`Mode`] because a fence only stops writes that a rejoin would discard (nothing is discarded
/// without being recorded and preserved): fencing on proof is the safe default even while
/// promotions are manual.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fencing {
    #[default]
    Auto,
    Observe,
}

/// Thresholds and switches; built once from the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub mode: Mode,
    pub fencing: Fencing,
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
    /// The primary's last known WAL position must be at most this old at the start of the
    /// failure streak (the last healthy sample), or the lag is unknown.
    pub max_lsn_age: Duration,
    /// A lasting broken stream (primary answers, stream does not) is announced at most this often.
    pub replication_broken_renotify: Duration,
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
    /// No PostgreSQL answer: refused, reset, timeout, not PostgreSQL.
    NoAnswer { reason: String },
    /// The probe could not be tried: the tunnel Service is missing or has no port (e.g. the
    /// platform is reconciling it). Says nothing about the primary site.
    Unknown { reason: String },
}

impl Probe {
    /// The far side gave a PostgreSQL answer (accepting or rejecting).
    pub fn answered(&self) -> bool {
        matches!(self, Probe::Accepting { .. } | Probe::Rejected { .. })
    }
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
    pub fn is_primary(&self) -> bool {
        role::is_writable_primary(&self.role, &self.state)
    }
    fn is_running_standby_leader(&self) -> bool {
        role::is_standby_leader(&self.role, &self.state)
    }
    pub fn streaming(&self) -> bool {
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

impl LocalLeader {
    /// The leader, when its REST API answered.
    pub fn found(&self) -> Option<&Leader> {
        match self {
            LocalLeader::Found(l) => Some(l),
            _ => None,
        }
    }

    /// The member's name, for messages.
    pub fn name(&self) -> String {
        match self {
            LocalLeader::Found(l) => l.name.clone(),
            LocalLeader::Unreachable { name, .. } => name.clone(),
            LocalLeader::Missing(_) => "(no leader)".into(),
        }
    }
}

/// What a witness's answer means to a standby site: whether the primary site is alive.
/// `Down` only from explicit evidence (the application already comes here, or the primary
/// site's lock expired); an answer that is not "here alone" counts as alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimarySite {
    Alive,
    Down,
    Unknown,
}

/// The standby's reading of a witness's answer.
pub fn primary_site(w: &Witness) -> PrimarySite {
    match w {
        Witness::Peer(_) | Witness::NotOnlyHere(_) => PrimarySite::Alive,
        Witness::Here(_) => PrimarySite::Down,
        Witness::Unknown(_) => PrimarySite::Unknown,
    }
}

/// A standby sample's witnesses as its log line names them, in the standby's reading:
/// `[PrimaryAlive("…"), PrimaryDown("…"), Unknown("…")]` (the drills look for these words).
pub struct WitnessLog<'a>(pub &'a [Witness]);

impl std::fmt::Debug for WitnessLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Reading<'a>(&'a Witness);
        impl std::fmt::Debug for Reading<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let name = match primary_site(self.0) {
                    PrimarySite::Alive => "PrimaryAlive",
                    PrimarySite::Down => "PrimaryDown",
                    PrimarySite::Unknown => "Unknown",
                };
                f.debug_tuple(name).field(&self.0.reason()).finish()
            }
        }
        f.debug_list().entries(self.0.iter().map(Reading)).finish()
    }
}

/// Everything one sample observed, with its time and the run that took it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub at: Timestamp,
    pub run: String,
    pub probe: Probe,
    pub site: SiteConfig,
    pub leader: LocalLeader,
    /// Every configured witness's answer (empty: none configured).
    pub witnesses: Vec<Witness>,
    /// The hold annotation on the state ConfigMap is `true`.
    pub hold: bool,
    /// `pause: true` in the dynamic config.
    pub config_paused: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The primary answered, or the stream is alive.
    Healthy,
    /// The sample could not probe the primary (tunnel Service missing): not counted, no reset.
    Unknown,
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
    /// Primary role: the peer is a standby (or the local site is healthy and alone in writing).
    Ok,
    /// Primary role: the peer gives no answer and no witness says the application moved there.
    PeerUnreachable,
    /// Both sites are writable primaries.
    SplitBrain,
    /// Primary role: this site must stop taking writes (the fence is written in auto mode).
    Fence,
    /// This site is fenced (read-only, waiting: peer, fork, preservation or approval).
    Fenced,
    /// Fenced and following the authoritative site, not streaming yet.
    Rejoining,
    /// Fenced and streaming from the authoritative site.
    Rejoined,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Unknown => "unknown",
            Verdict::Waiting => "waiting",
            Verdict::Blocked => "blocked",
            Verdict::WouldPromote => "would-promote",
            Verdict::Promote => "promote",
            Verdict::AlreadyPrimary => "already-primary",
            Verdict::InProgress => "in-progress",
            Verdict::StateUnusable => "state-unusable",
            Verdict::Ok => "ok",
            Verdict::PeerUnreachable => "peer-unreachable",
            Verdict::SplitBrain => "split-brain",
            Verdict::Fence => "fence",
            Verdict::Fenced => "fenced",
            Verdict::Rejoining => "rejoining",
            Verdict::Rejoined => "rejoined",
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
    /// Every reason, in order: observations, counting, guards. Rendered to text at the edge.
    pub reasons: Vec<Reason>,
    /// The state to write (compare-and-set); `None` = write nothing.
    pub next: Option<State>,
    /// This sample saw the primary as gone.
    pub failed_sample: bool,
    /// The sample was counted (false for a duplicate from an overlapping run).
    pub counted: bool,
    /// Observe mode: announce "would promote" (Event, webhook) — once per failure streak.
    pub notify: bool,
    /// The primary answers but the local stream does not, since this time.
    pub replication_broken: Option<Timestamp>,
    /// Announce `ReplicationBroken` (rate-limited through the state).
    pub notify_replication_broken: bool,
}

impl Decision {
    fn terminal(verdict: Verdict, reasons: Vec<Reason>) -> Self {
        Decision {
            verdict,
            reasons,
            next: None,
            failed_sample: false,
            counted: false,
            notify: false,
            replication_broken: None,
            notify_replication_broken: false,
        }
    }

    /// The reasons as text, in order.
    pub fn reason_texts(&self) -> Vec<String> {
        render(&self.reasons)
    }
}

/// Reasons as text (for logs, Events, the state document).
pub fn render(reasons: &[Reason]) -> Vec<String> {
    reasons.iter().map(ToString::to_string).collect()
}

/// Decides what one sample means, given what earlier samples left in `state`. The steps, in
/// order: classify the sample, count the streak, check the debounce, apply the guards, choose
/// the verdict.
pub fn decide(policy: &Policy, state: Result<&State, &StateProblem>, sample: &Sample) -> Decision {
    let state = match state {
        Ok(s) => s,
        Err(problem) => {
            return Decision::terminal(
                Verdict::StateUnusable,
                vec![
                    Reason::StateUnusable(problem.clone()),
                    Reason::StateLeftUntouched,
                ],
            );
        }
    };
    if sample.site == SiteConfig::NotStandby {
        return promoted_site(&sample.leader);
    }
    let mut reasons = Vec::new();
    let class = classify(sample, &mut reasons);
    let mut next = state.clone();
    let counted = count_streak(policy, state, sample, class, &mut next, &mut reasons);
    let notify_replication_broken = watch_stream(policy, sample, class, &mut next, &mut reasons);
    let (verdict, notify) = match class {
        Class::Healthy => {
            reasons.push(Reason::PrimaryAlive);
            (Verdict::Healthy, false)
        }
        Class::Unknown => {
            reasons.push(Reason::NotCounted);
            (Verdict::Unknown, false)
        }
        Class::Failed => choose_verdict(policy, state, sample, &mut next, &mut reasons),
    };
    next.last_decision = Some(DecisionRecord {
        at: sample.at,
        verdict: verdict.to_string(),
        reasons: render(&reasons),
        run: sample.run.clone(),
    });
    Decision {
        verdict,
        reasons,
        replication_broken: next
            .standby
            .stream_broken_since
            .filter(|since| *since < sample.at),
        notify_replication_broken,
        next: Some(next),
        failed_sample: class == Class::Failed,
        counted,
        notify,
    }
}

/// This site is no longer a standby cluster: done, or Patroni is still promoting.
fn promoted_site(leader: &LocalLeader) -> Decision {
    match leader {
        LocalLeader::Found(l) if l.is_primary() => Decision::terminal(
            Verdict::AlreadyPrimary,
            vec![Reason::AlreadyPrimary {
                leader: l.name.clone(),
            }],
        ),
        other => Decision::terminal(
            Verdict::InProgress,
            vec![Reason::PromotionUnderWay(other.clone())],
        ),
    }
}

/// What one sample says about the primary site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// The primary answered, or the stream is alive.
    Healthy,
    /// No answer and no stream.
    Failed,
    /// The probe could not be tried and the stream is not alive: no opinion.
    Unknown,
}

/// Step 1: classify the sample. It fails only when the probe got no answer *and* the local
/// stream is not streaming; a probe that could not be tried is unknown (unless the stream is
/// alive, which proves the primary alive anyway).
fn classify(sample: &Sample, reasons: &mut Vec<Reason>) -> Class {
    let stream_alive = sample.leader.found().is_some_and(Leader::streaming);
    reasons.push(Reason::Probe(sample.probe.clone()));
    reasons.push(Reason::LocalLeader(sample.leader.clone()));
    let silent = matches!(sample.probe, Probe::NoAnswer { .. } | Probe::Unknown { .. });
    if stream_alive && silent {
        reasons.push(Reason::StreamAlive);
    }
    match &sample.probe {
        _ if stream_alive => Class::Healthy,
        Probe::NoAnswer { .. } => Class::Failed,
        Probe::Unknown { .. } => Class::Unknown,
        Probe::Accepting { .. } | Probe::Rejected { .. } => Class::Healthy,
    }
}

/// Step 2: counts the sample into `next`, guarded against overlapping runs and gaps between
/// runs; records the primary's position and the lag. Returns whether the sample was counted.
fn count_streak(
    policy: &Policy,
    state: &State,
    sample: &Sample,
    class: Class,
    next: &mut State,
    reasons: &mut Vec<Reason>,
) -> bool {
    if class == Class::Unknown {
        return false;
    }
    let failed = class == Class::Failed;
    let at = sample.at;
    let mut counted = true;
    if let Some(last) = state.last_sample_at {
        let gap = at.duration_since(last);
        if gap.is_negative() {
            reasons.push(Reason::ClockBehind(gap.abs()));
            reset_streak(next);
        } else if gap > signed(policy.max_sample_gap) {
            reasons.push(Reason::GapTooLong {
                gap,
                max: signed(policy.max_sample_gap),
            });
            reset_streak(next);
        } else if failed && gap < signed(policy.min_sample_spacing) {
            reasons.push(Reason::Overlapping { gap });
            counted = false;
        }
    }
    if failed {
        if counted {
            next.standby.consecutive_failures += 1;
            next.standby.first_failure_at.get_or_insert(at);
            next.last_sample_at = Some(at);
        }
    } else {
        // Any sign of life resets the streak, even from an overlapping run.
        reset_streak(next);
        next.last_sample_at = Some(at);
        next.standby.last_success_at = Some(at);
        if let Probe::Accepting {
            in_recovery: Some(false),
            lsn: Some(lsn),
        } = sample.probe
        {
            next.standby.last_primary_lsn = Some(lsn);
            next.standby.last_primary_lsn_at = Some(at);
        }
    }
    counted
}

/// Step 3: the local stream. While it streams, what it received is a fresh lower bound of the
/// primary's position. While the primary answers and the stream does not (seen at two samples in
/// a row, so a reconnect is not reported), replication is broken: say so, and ask for an
/// announcement at most once per `replication_broken_renotify`. Updates the lag. Returns whether
/// to announce.
fn watch_stream(
    policy: &Policy,
    sample: &Sample,
    class: Class,
    next: &mut State,
    reasons: &mut Vec<Reason>,
) -> bool {
    let at = sample.at;
    let Some(leader) = sample.leader.found() else {
        return false;
    };
    let mut notify = false;
    if leader.streaming() {
        next.standby.last_streaming_at = Some(at);
        next.standby.stream_broken_since = None;
        next.standby.replication_broken_notified_at = None;
        if let Some(received) = leader.received_lsn {
            next.standby.last_primary_lsn =
                Some(next.standby.last_primary_lsn.unwrap_or(0).max(received));
            next.standby.last_primary_lsn_at = Some(at);
        }
    } else if class == Class::Healthy && sample.probe.answered() {
        let since = *next.standby.stream_broken_since.get_or_insert(at);
        if since < at {
            reasons.push(Reason::ReplicationBroken {
                since,
                last_streaming: next.standby.last_streaming_at,
            });
            notify = next
                .standby
                .replication_broken_notified_at
                .is_none_or(|n| at.duration_since(n) >= signed(policy.replication_broken_renotify));
            if notify {
                next.standby.replication_broken_notified_at = Some(at);
            }
        }
    }
    if let Some(lag) = lag_bytes(leader, next.standby.last_primary_lsn) {
        next.standby.last_known_lag_bytes = Some(lag);
    }
    notify
}

/// Steps 3–5 for a failed sample: the debounce (N and T), then the guards, then the verdict.
fn choose_verdict(
    policy: &Policy,
    state: &State,
    sample: &Sample,
    next: &mut State,
    reasons: &mut Vec<Reason>,
) -> (Verdict, bool) {
    let at = sample.at;
    let span = next
        .standby
        .first_failure_at
        .map(|f| at.duration_since(f))
        .unwrap_or(SignedDuration::ZERO);
    reasons.push(Reason::Streak {
        count: next.standby.consecutive_failures,
        span,
        threshold: policy.failure_threshold,
        min_span: signed(policy.min_failure_span),
    });
    if next.standby.consecutive_failures < policy.failure_threshold.max(1)
        || span < signed(policy.min_failure_span)
    {
        return (Verdict::Waiting, false);
    }
    let guards = apply_guards(policy, next, sample);
    let blocked = guards.iter().any(|r| matches!(r, Reason::Blocked(_)));
    reasons.extend(guards);
    if let Some(claim) = active_claim(policy, state, at) {
        reasons.push(Reason::AlreadyClaimed {
            run: claim.run.clone(),
            at: claim.claimed_at,
        });
        (Verdict::InProgress, false)
    } else if blocked {
        (Verdict::Blocked, false)
    } else if policy.mode == Mode::Observe {
        reasons.push(Reason::ObserveMode);
        let notify = state.standby.would_promote_notified_at.is_none();
        next.standby.would_promote_notified_at.get_or_insert(at);
        (Verdict::WouldPromote, notify)
    } else {
        reasons.push(Reason::Promoting);
        next.standby.promotion = Some(PromotionRecord {
            run: sample.run.clone(),
            claimed_at: at,
            reasons: render(reasons),
            standby_lsn: sample.leader.found().and_then(|l| l.replayed_lsn),
            confirmed_at: None,
            primary_lsn: None,
            timeline: None,
            failed: None,
        });
        (Verdict::Promote, false)
    }
}

/// Step 4: every guard, each as a reason (`Blocked`, `Forced` or a passing note); all of them
/// are reported, not just the first that blocks.
fn apply_guards(policy: &Policy, next: &State, sample: &Sample) -> Vec<Reason> {
    let mut out = Vec::new();
    if let SiteConfig::Malformed(why) = &sample.site {
        out.push(Reason::Blocked(Guard::DynamicConfigUnreadable(why.clone())));
    }
    match sample.leader.found() {
        Some(l) if l.is_running_standby_leader() => {}
        Some(l) => out.push(Reason::Blocked(Guard::NotRunningStandbyLeader {
            name: l.name.clone(),
            role: l.role.clone(),
            state: l.state.clone(),
        })),
        None => out.push(Reason::Blocked(Guard::NoStandbyLeader(
            sample.leader.clone(),
        ))),
    }
    if sample.leader.found().is_some_and(|l| l.pause) || sample.config_paused {
        out.push(Reason::Blocked(Guard::Paused));
    }
    if sample.hold {
        out.push(Reason::Blocked(Guard::Hold));
    }
    let forceable = |guard: Guard| {
        if policy.force {
            Reason::Forced(guard)
        } else {
            Reason::Blocked(guard)
        }
    };
    witness_guards(&sample.witnesses, &forceable, &mut out);
    out.push(match next.standby.last_known_lag_bytes {
        None => forceable(Guard::LagUnknown),
        Some(lag) if lag > policy.max_lag_bytes => forceable(Guard::LagTooHigh {
            lag,
            max: policy.max_lag_bytes,
        }),
        Some(lag) => Reason::LagWithin {
            lag,
            max: policy.max_lag_bytes,
        },
    });
    if let Some(guard) = position_age_guard(policy, next) {
        out.push(forceable(guard));
    }
    if let (Some(since), Some(last_healthy)) = (
        next.standby.stream_broken_since,
        next.standby.last_success_at,
    ) && last_healthy.duration_since(since) > STREAM_RECONNECT_GRACE
    {
        out.push(forceable(Guard::StreamBrokenBeforeStreak { since }));
    }
    out
}

/// Positive evidence: at least one witness says `down` and none says `alive`. An `alive` blocks
/// even when forced; `unknown` from every witness blocks unless forced; no witness at all is
/// only possible when the configuration accepted that risk (or in observe mode).
fn witness_guards(
    witnesses: &[Witness],
    forceable: &dyn Fn(Guard) -> Reason,
    out: &mut Vec<Reason>,
) {
    if witnesses.is_empty() {
        out.push(Reason::NoWitness);
        return;
    }
    let read = |want| witnesses.iter().any(|w| primary_site(w) == want);
    let (down, alive) = (read(PrimarySite::Down), read(PrimarySite::Alive));
    let mut unknown = Vec::new();
    for w in witnesses {
        let d = w.reason();
        match primary_site(w) {
            PrimarySite::Alive => out.push(Reason::Blocked(Guard::WitnessAlive(d.to_string()))),
            PrimarySite::Down => out.push(Reason::WitnessAgrees(d.to_string())),
            PrimarySite::Unknown if down || alive => {
                out.push(Reason::WitnessUnknown(d.to_string()))
            }
            PrimarySite::Unknown => unknown.push(d),
        }
    }
    if !unknown.is_empty() {
        out.push(forceable(Guard::WitnessUnknown(unknown.join("; "))));
    }
}

/// The primary position is only as good as its age at the start of the failure streak.
fn position_age_guard(policy: &Policy, next: &State) -> Option<Guard> {
    next.standby.last_primary_lsn?;
    let (Some(position_at), Some(last_healthy)) = (
        next.standby.last_primary_lsn_at,
        next.standby.last_success_at,
    ) else {
        return Some(Guard::PositionAgeUnknown);
    };
    let age = last_healthy.duration_since(position_at);
    (age > signed(policy.max_lsn_age)).then(|| Guard::PositionExpired {
        age,
        max: signed(policy.max_lsn_age),
    })
}

/// An unfinished promotion claim that is still fresh.
fn active_claim<'a>(
    policy: &Policy,
    state: &'a State,
    at: Timestamp,
) -> Option<&'a PromotionRecord> {
    state.standby.promotion.as_ref().filter(|p| {
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
    state.standby.consecutive_failures = 0;
    state.standby.first_failure_at = None;
    state.standby.would_promote_notified_at = None;
}

/// How long the stream may have been down, while the primary still answered, before the streak
/// began without blocking: longer than a WAL receiver needs to reconnect (PostgreSQL retries every
/// 5 s; the chart's `wal_receiver_timeout` is 15 s). A stream that broke seconds before the primary
/// died is a reconnect, not the silently broken replication this guard is for (its lag is still
/// judged by the lag and position-age guards).
const STREAM_RECONNECT_GRACE: SignedDuration = SignedDuration::from_secs(60);

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
