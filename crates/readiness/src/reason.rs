//! Why a readiness verdict came out as it did: structured while deciding, rendered to text only
//! at the edge (`/ready` and `/primary` bodies, `/status`, the log line on a change).

use std::fmt;

use pgdr_core::contract::fence::{FenceReason, Phase};

/// Why this member is (not) ready, (not) a write target. The role's reason, possibly wrapped by
/// what overrides it (the fence, the split-brain latch, a withheld primary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    NotPolled,
    PatroniUnreachable(String),
    /// The last poll is this many seconds old.
    StalePoll(u64),
    /// PostgreSQL is not running: its state (empty: unknown).
    NotRunning(String),
    RunningPrimary,
    PrimaryUnlocked,
    PrimaryInStandbyCluster,
    /// A primary while `primary` is not in `READINESS_READY_ROLES` (the primary's own reason).
    PrimaryRoleNotReady(Box<Reason>),
    /// The role (named) is not in `READINESS_READY_ROLES`.
    RoleNotReady(String),
    StandbyLeader,
    ReplicaWithin {
        lag: u64,
        max: u64,
    },
    ReplicaOver {
        lag: u64,
        max: u64,
    },
    ReplicaLagUnknown,
    /// A role that cannot serve (named).
    CannotServe(String),
    /// Fenced (readable document): never a write target.
    Fenced {
        reason: FenceReason,
        peer: String,
        phase: Phase,
        role: Box<Reason>,
    },
    /// Fenced, the document unreadable (why).
    FencedUnreadable {
        unreadable: String,
        role: Box<Reason>,
    },
    /// The split-brain latch holds.
    SplitBrain {
        timeline: u32,
        fork_lsn: String,
        since: String,
        role: Box<Reason>,
    },
    /// A writable primary not advertised (why: [`crate::decide::withheld`]).
    Withheld {
        why: &'static str,
        role: Box<Reason>,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotPolled => f.write_str("Patroni not polled yet"),
            Reason::PatroniUnreachable(e) => write!(f, "Patroni unreachable: {e}"),
            Reason::StalePoll(secs) => write!(f, "last poll is {secs}s old"),
            Reason::NotRunning(state) => write!(
                f,
                "PostgreSQL is {}",
                if state.is_empty() {
                    "in an unknown state"
                } else {
                    state
                }
            ),
            Reason::RunningPrimary => f.write_str("running primary"),
            Reason::PrimaryUnlocked => f.write_str("primary without the leader lock"),
            Reason::PrimaryInStandbyCluster => f.write_str("primary in a standby cluster"),
            Reason::PrimaryRoleNotReady(reason) => {
                write!(f, "{reason}; role primary is not in READINESS_READY_ROLES")
            }
            Reason::RoleNotReady(role) => {
                write!(f, "role {role} is not in READINESS_READY_ROLES")
            }
            Reason::StandbyLeader => f.write_str("running standby leader"),
            Reason::ReplicaWithin { lag, max } => {
                write!(f, "replica {lag} bytes behind (limit {max})")
            }
            Reason::ReplicaOver { lag, max } => {
                write!(f, "replica {lag} bytes behind, over the limit of {max}")
            }
            Reason::ReplicaLagUnknown => f.write_str("replica lag unknown"),
            Reason::CannotServe(role) => write!(f, "role {role} cannot serve"),
            Reason::Fenced {
                reason,
                peer,
                phase,
                role,
            } => write!(
                f,
                "fenced ({}, peer {peer} authoritative, phase {phase}): {role}",
                reason.as_str()
            ),
            Reason::FencedUnreadable { unreadable, role } => {
                write!(f, "fenced ({unreadable}): {role}")
            }
            Reason::SplitBrain {
                timeline,
                fork_lsn,
                since,
                role,
            } => write!(
                f,
                "split brain: the peer is a writable primary with a newer promotion epoch (it left \
                 timeline {timeline} at {fork_lsn}; seen {since}); /primary stays 503 until this member is demoted and switched over \
                 deliberately: {role}"
            ),
            Reason::Withheld { why, role } => {
                write!(f, "writable primary, not advertised: {why}: {role}")
            }
        }
    }
}
