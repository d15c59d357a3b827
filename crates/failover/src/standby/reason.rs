//! Why a decision came out as it did: structured while deciding, rendered to text only at the
//! edge (log lines, Events, the webhook, the state document).

use std::fmt;

use jiff::{SignedDuration, Timestamp};

use super::{LocalLeader, Probe};
use crate::state::StateProblem;

/// One reason of a decision, in the order the decision found it.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    StateUnusable(StateProblem),
    StateLeftUntouched,
    AlreadyPrimary {
        leader: String,
    },
    /// `standby_cluster` is gone but the leader is not a running primary yet.
    PromotionUnderWay(LocalLeader),
    /// What the tunnel probe saw.
    Probe(Probe),
    /// What the local leader's REST API said.
    LocalLeader(LocalLeader),
    /// The probe got no answer but the WAL receiver streams.
    StreamAlive,
    ClockBehind(SignedDuration),
    GapTooLong {
        gap: SignedDuration,
        max: SignedDuration,
    },
    /// A failed sample too close to the last counted one: an overlapping run.
    Overlapping {
        gap: SignedDuration,
    },
    PrimaryAlive,
    /// An unknown sample: not counted, the streak unchanged.
    NotCounted,
    /// The primary answers but the local stream has not streamed since `since`.
    ReplicationBroken {
        since: Timestamp,
        last_streaming: Option<Timestamp>,
    },
    Streak {
        count: u32,
        span: SignedDuration,
        threshold: u32,
        min_span: SignedDuration,
    },
    /// A guard that stops the promotion.
    Blocked(Guard),
    /// A guard that would block but `FAILOVER_FORCE` lets it pass.
    Forced(Guard),
    NoWitness,
    WitnessAgrees(String),
    /// A witness that could not answer while another one did (so it does not block).
    WitnessUnknown(String),
    LagWithin {
        lag: u64,
        max: u64,
    },
    AlreadyClaimed {
        run: String,
        at: Timestamp,
    },
    ObserveMode,
    Promoting,
}

/// A safety check applied once the debounce is met.
#[derive(Clone, Debug, PartialEq)]
pub enum Guard {
    DynamicConfigUnreadable(String),
    NotRunningStandbyLeader {
        name: String,
        role: String,
        state: String,
    },
    NoStandbyLeader(LocalLeader),
    Paused,
    Hold,
    WitnessAlive(String),
    WitnessUnknown(String),
    LagUnknown,
    LagTooHigh {
        lag: u64,
        max: u64,
    },
    /// The primary's last known position was already this old when the streak began.
    PositionExpired {
        age: SignedDuration,
        max: SignedDuration,
    },
    /// A position without its time (state from an older binary).
    PositionAgeUnknown,
    /// The stream was already down while the primary answered, before the streak began.
    StreamBrokenBeforeStreak {
        since: Timestamp,
    },
}

impl Reason {
    /// Reasons about the local leader itself: left out of the promotion's announcement, which
    /// is about the primary site.
    pub fn is_about_local_leader(&self) -> bool {
        matches!(self, Reason::LocalLeader(_))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::StateUnusable(problem) => write!(f, "state ConfigMap unusable: {problem}"),
            Reason::StateLeftUntouched => {
                f.write_str("left untouched: fix the 'state' key or delete it to start afresh")
            }
            Reason::AlreadyPrimary { leader } => write!(
                f,
                "this site is no longer a standby cluster and {leader} is a running primary: nothing to do"
            ),
            Reason::PromotionUnderWay(leader) => write!(
                f,
                "standby_cluster is gone from the dynamic config but no writable primary yet ({}): \
                 leaving Patroni to finish",
                DescribeLeader(leader)
            ),
            Reason::Probe(probe) => DescribeProbe(probe).fmt(f),
            Reason::LocalLeader(LocalLeader::Found(l)) => write!(
                f,
                "local leader {}: role {}, state {}, WAL receiver {}",
                l.name,
                l.role,
                l.state,
                l.replication_state.as_deref().unwrap_or("not running")
            ),
            Reason::LocalLeader(other) => DescribeLeader(other).fmt(f),
            Reason::StreamAlive => f.write_str(
                "replication stream is alive, so the primary is alive: sample counts as healthy",
            ),
            Reason::ClockBehind(by) => write!(
                f,
                "clock is {by:#} behind the last recorded sample: streak restarts"
            ),
            Reason::GapTooLong { gap, max } => write!(
                f,
                "{gap:#} since the last sample (more than {max:#}): streak restarts"
            ),
            Reason::Overlapping { gap } => write!(
                f,
                "only {gap:#} after the last counted sample (an overlapping run): not counted again"
            ),
            Reason::PrimaryAlive => f.write_str("primary site is alive"),
            Reason::NotCounted => f.write_str(
                "sample unknown: it neither counts as failed nor resets the streak",
            ),
            Reason::ReplicationBroken {
                since,
                last_streaming,
            } => write!(
                f,
                "REPLICATION BROKEN: the primary answers but the local WAL receiver has not streamed since {since} \
                 (last seen streaming: {}); this site is falling behind — check the replication credentials, \
                 slot and the standby leader's log",
                last_streaming.map_or_else(|| "never".to_string(), |t| t.to_string())
            ),
            Reason::Streak {
                count,
                span,
                threshold,
                min_span,
            } => write!(
                f,
                "{count} consecutive failed sample(s) over {span:#} (promotion needs {threshold} over {min_span:#})"
            ),
            Reason::Blocked(guard) => write!(f, "BLOCKED: {guard}"),
            Reason::Forced(guard) => write!(f, "FORCED past: {guard}"),
            Reason::NoWitness => f.write_str(
                "no witness configured: the decision rests on the tunnel probe and the replication stream only",
            ),
            Reason::WitnessAgrees(d) => write!(f, "witness agrees the primary site is gone: {d}"),
            Reason::WitnessUnknown(d) => write!(
                f,
                "witness could not be asked: {d} (another witness answered, so this one does not block)"
            ),
            Reason::LagWithin { lag, max } => {
                write!(f, "last known lag {lag} bytes is within {max} bytes")
            }
            Reason::AlreadyClaimed { run, at } => write!(
                f,
                "promotion already claimed by run {run} at {at}: not acting twice"
            ),
            Reason::ObserveMode => f.write_str("mode is observe: would promote, not acting"),
            Reason::Promoting => f.write_str("mode is auto: promoting"),
        }
    }
}

impl fmt::Display for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Guard::DynamicConfigUnreadable(why) => {
                write!(f, "the dynamic config cannot be read ({why})")
            }
            Guard::NotRunningStandbyLeader { name, role, state } => write!(
                f,
                "local leader {name} is not a running standby leader (role {role}, state {state})"
            ),
            Guard::NoStandbyLeader(leader) => write!(
                f,
                "no running local standby leader ({})",
                DescribeLeader(leader)
            ),
            Guard::Paused => f.write_str("Patroni is paused (maintenance mode)"),
            Guard::Hold => f.write_str("the hold annotation on the state ConfigMap is set"),
            Guard::WitnessAlive(d) => write!(f, "witness says the primary site is alive: {d}"),
            Guard::WitnessUnknown(d) => write!(f, "witness could not be asked: {d}"),
            Guard::LagUnknown => f.write_str(
                "last replication lag unknown (no successful probe of the primary recorded)",
            ),
            Guard::LagTooHigh { lag, max } => write!(
                f,
                "last known lag {lag} bytes exceeds the limit of {max} bytes"
            ),
            Guard::PositionExpired { age, max } => write!(
                f,
                "the primary's last known WAL position was {age:#} old when the failures began \
                 (limit {max:#}, FAILOVER_MAX_LSN_AGE): the lag is unknown"
            ),
            Guard::PositionAgeUnknown => f.write_str(
                "the primary's last known WAL position has no recorded time: the lag is unknown",
            ),
            Guard::StreamBrokenBeforeStreak { since } => write!(
                f,
                "the replication stream was already down since {since} while the primary still \
                 answered: this site had stopped following before the failures began"
            ),
        }
    }
}

struct DescribeProbe<'a>(&'a Probe);

impl fmt::Display for DescribeProbe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Probe::Accepting { in_recovery, .. } => write!(
                f,
                "primary probe: accepting ({})",
                match in_recovery {
                    Some(false) => "writable primary",
                    Some(true) => "in recovery, not a primary",
                    None => "role unknown",
                }
            ),
            Probe::Rejected { reason } => write!(
                f,
                "primary probe: answered with an error ({reason}), so it is alive"
            ),
            Probe::NoAnswer { reason } => write!(f, "primary probe: no answer ({reason})"),
            Probe::Unknown { reason } => write!(
                f,
                "primary probe: not tried ({reason}); WARNING: this says nothing about the primary site"
            ),
        }
    }
}

struct DescribeLeader<'a>(&'a LocalLeader);

impl fmt::Display for DescribeLeader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            LocalLeader::Found(l) => {
                write!(f, "leader {} role {} state {}", l.name, l.role, l.state)
            }
            LocalLeader::Missing(why) => write!(f, "no local leader: {why}"),
            LocalLeader::Unreachable { name, reason } => {
                write!(f, "local leader {name} unreachable: {reason}")
            }
        }
    }
}
