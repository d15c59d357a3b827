//! Why a fenced-site decision came out as it did: structured while deciding, rendered to text
//! only at the edge (log lines, Events, the webhook, the state document).

use std::fmt;

use jiff::Timestamp;

use pgdr_core::contract::fence::{FenceReason, Phase};
use pgdr_core::contract::lsn::format as lsn_text;
use pgdr_core::lineage::Lineage;

use super::{MemberReclone, Preservation};
use crate::sample::lineage_text;

/// One reason of a fenced-site decision, in the order the decision found it. `peer` is the
/// authoritative site the fence names.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// What the fence says (always the first reason).
    Fenced {
        since: Timestamp,
        reason: FenceReason,
        peer: String,
        phase: Phase,
    },
    /// A re-clone is pending (requested at `at`).
    RecloneRequested { at: String, peer: String },
    /// Every member moved its data directory aside (their names).
    MembersMoved(Vec<String>),
    /// The re-clone waits for the members.
    RecloneWaiting(RecloneWait),
    /// Patroni still holds the site's leader lock while re-cloning.
    LockStillHeld,
    /// No follow target while a re-clone is pending (the site is empty).
    NoTargetEmpty(String),
    /// No follow target to clone from.
    NoCloneSource(String),
    /// No follow target: stays on hold.
    NoTarget(String),
    /// The follow form with `initialize` removed: Patroni clones the site from the peer.
    Recloning { peer: String },
    /// Following the peer would stream its WAL onto data Patroni does not rewind.
    RewindHazard(RewindHazard),
    /// The local leader streams from the peer.
    Rejoined { peer: String },
    /// Following the peer, not streaming yet (`own`: where this site's leader is).
    Following {
        peer: String,
        own: crate::sample::Own,
    },
    /// Following since `since` without leaving the timeline the peer left or streaming, although
    /// the peer was reachable: Patroni did not rewind; back to hold for a re-clone.
    FollowStalled { peer: String, since: Timestamp },
    /// Patroni is still demoting the leader.
    NotReadOnly,
    /// The fence carries a phase or reason this version does not know (a newer writer): left
    /// as it is.
    UnknownToThisVersion { version: u32 },
    /// The authority has not published its switchpoint yet.
    ForkPending { peer: String },
    /// A person's fence makes the peer the authority.
    OperatorAuthority { peer: String, lineage: Lineage },
    /// The peer is writable but no authority to rejoin.
    NoAuthority { peer: String, lineage: Lineage },
    /// The peer is in recovery.
    PeerStandby { peer: String },
    /// The peer cannot be asked for its history.
    PeerUnreachable { peer: String, why: String },
    /// Where the peer left our timeline, our end and the bytes past the fork.
    Fork {
        peer: String,
        timeline: u32,
        fork: u64,
        end: Option<u64>,
        bytes: Option<u64>,
    },
    /// The readiness sidecar was asked to preserve the diverged WAL.
    PreservationAsked,
    /// The sidecar's answer on the preservation.
    Preservation(Preservation),
    /// Rejoin is manual and not approved.
    ManualRejoin { peer: String },
    /// The peer is not seen as the authority right now (`reclone`: a re-clone was due).
    NotAuthoritative { peer: String, reclone: bool },
    /// A re-clone is requested (`keep_data`: the WAL copy is incomplete).
    RecloneRequesting { peer: String, keep_data: bool },
    /// The follow form is written.
    Rejoining { peer: String },
}

/// Why a pending re-clone cannot switch to follow yet.
#[derive(Clone, Debug, PartialEq)]
pub enum RecloneWait {
    /// The site's member pods cannot be listed.
    Unlisted(String),
    /// No member pod is listed.
    NoMember,
    /// Members that did not move their data aside for this request, with their answer.
    Members(Vec<(String, MemberReclone)>),
}

/// Following the peer would stream its WAL onto data that Patroni does not rewind (see
/// [`super::rewind_hazard`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RewindHazard {
    /// The timeline the peer left, at `fork`.
    pub left: u32,
    pub fork: u64,
    /// Our timeline.
    pub own: u32,
    /// Where our own history leaves `left` (`None`: our history is unknown).
    pub own_left_at: Option<u64>,
    /// The peer's timeline, when known.
    pub peer: Option<u32>,
}

impl fmt::Display for RewindHazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RewindHazard {
            left,
            fork,
            own,
            own_left_at,
            peer,
        } = self;
        let ours = match own_left_at {
            Some(at) => format!("left timeline {left} at {}", lsn_text(*at)),
            None => format!("left timeline {left}; its history is unknown"),
        };
        write!(
            f,
            "this site went on to a timeline {own} of its own after the fork (it {ours}; the peer \
             left it at {}), and the peer is on timeline {}: Patroni compares timeline numbers and \
             would not rewind, streaming the peer's WAL onto diverged data. Stays read-only on hold: \
             re-clone this site (chart README \"After a failover\")",
            lsn_text(*fork),
            peer.map_or_else(|| "unknown".to_string(), |p| p.to_string())
        )
    }
}

impl fmt::Display for RecloneWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecloneWait::Unlisted(why) => {
                write!(f, "the site's member pods cannot be listed ({why})")
            }
            RecloneWait::NoMember => f.write_str("no member pod of this site is listed"),
            RecloneWait::Members(members) => {
                let waiting: Vec<String> = members
                    .iter()
                    .map(|(name, m)| match m {
                        MemberReclone::Moved(id) => {
                            format!("{name}: moved for another request ({id})")
                        }
                        MemberReclone::NotYet(why) => format!("{name}: {why}"),
                    })
                    .collect();
                write!(
                    f,
                    "waiting for every member to move its data directory aside: {}",
                    waiting.join("; ")
                )
            }
        }
    }
}

impl fmt::Display for Preservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Preservation::Preserved(what) => write!(f, "diverged WAL preserved: {what}"),
            Preservation::Incomplete(what) => write!(
                f,
                "diverged WAL preserved INCOMPLETE (segments already gone): {what}"
            ),
            Preservation::NotYet(what) => write!(f, "waiting for the WAL preservation: {what}"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Fenced {
                since,
                reason,
                peer,
                phase,
            } => write!(
                f,
                "fenced since {since} ({}), {peer} is authoritative, phase {phase:?}",
                reason.as_str()
            ),
            Reason::RecloneRequested { at, peer } => write!(
                f,
                "re-clone requested at {at} (rewinding onto {peer} is unsafe)"
            ),
            Reason::MembersMoved(names) => write!(
                f,
                "every member moved its data directory aside ({})",
                names.join(", ")
            ),
            Reason::RecloneWaiting(wait) => wait.fmt(f),
            Reason::LockStillHeld => f.write_str(
                "Patroni still holds this site's leader lock (it releases it once it finds the \
                 data directory gone): waiting",
            ),
            Reason::NoTargetEmpty(why) => {
                write!(f, "no follow target: {why}; stays on hold (empty)")
            }
            Reason::NoCloneSource(why) => write!(f, "no follow target to clone from: {why}"),
            Reason::NoTarget(why) => write!(f, "no follow target: {why}; stays on hold"),
            Reason::Recloning { peer } => write!(
                f,
                "re-cloning: standby_cluster follows {peer} through the tunnel and Patroni's \
                 initialize key is removed: Patroni bootstraps a standby leader from {peer}"
            ),
            Reason::RewindHazard(h) => h.fmt(f),
            Reason::Rejoined { peer } => {
                write!(f, "the local leader streams from {peer}: rejoined")
            }
            Reason::Following { peer, own } => write!(
                f,
                "following {peer}: Patroni rewinds/clones and starts streaming (not yet; this \
                 site's leader is on timeline {} at {})",
                own.timeline.map_or("?".into(), |t| t.to_string()),
                own.wal_end.map_or("?".into(), lsn_text)
            ),
            Reason::FollowStalled { peer, since } => write!(
                f,
                "following {peer} since {since} without streaming, still on the timeline {peer} \
                 left although {peer} was reachable: Patroni did not rewind this site (a failed or \
                 skipped pg_rewind); back to hold to re-clone it from {peer}"
            ),
            Reason::NotReadOnly => f.write_str(
                "Patroni is still demoting this site's leader (not read-only yet): waiting",
            ),
            Reason::UnknownToThisVersion { version } => write!(
                f,
                "the fence (version {version}) has a phase or reason this agent does not know: a \
                 newer version wrote it; fenced, nothing done (upgrade this site's failover agent)"
            ),
            Reason::ForkPending { peer } => write!(
                f,
                "{peer} is authoritative but has not yet published where its new timeline \
                 starts (its failover agent reads it from its timeline history): waiting"
            ),
            Reason::OperatorAuthority { peer, lineage } => write!(
                f,
                "a person fenced this site: {peer} is the authority by that word ({})",
                lineage_text(lineage)
            ),
            Reason::NoAuthority { peer, lineage } => write!(
                f,
                "{peer} is writable but {}: no automatic rejoin, stays read-only; a person \
                 decides (`kubectl pgdr status`)",
                lineage_text(lineage)
            ),
            Reason::PeerStandby { peer } => write!(
                f,
                "{peer} is not a writable primary (in recovery): stays read-only"
            ),
            Reason::PeerUnreachable { peer, why } => write!(
                f,
                "{peer} cannot be asked for its history ({why}): stays read-only"
            ),
            Reason::Fork {
                peer,
                timeline,
                fork,
                end,
                bytes,
            } => write!(
                f,
                "fork: {peer} left our timeline {timeline} at {}; our end {}; diverged bytes {}",
                lsn_text(*fork),
                end.map_or_else(|| "unknown".to_string(), lsn_text),
                bytes.map_or_else(|| "unknown".to_string(), |b| b.to_string())
            ),
            Reason::PreservationAsked => {
                f.write_str("asked the readiness sidecar to preserve the diverged WAL")
            }
            Reason::Preservation(p) => p.fmt(f),
            Reason::ManualRejoin { peer } => write!(
                f,
                "rejoin: manual and WAL diverged: stays read-only until `kubectl pgdr rejoin` \
                 (then it rewinds onto {peer}, discarding the preserved range)"
            ),
            Reason::NotAuthoritative { peer, reclone } => write!(
                f,
                "{peer} is not seen as our authoritative primary right now: {}",
                if *reclone {
                    "no re-clone yet"
                } else {
                    "stays on hold"
                }
            ),
            Reason::RecloneRequesting { peer, keep_data } => write!(
                f,
                "re-clone requested: each member's readiness sidecar moves its data directory \
                 aside{}, then Patroni clones this site from {peer}",
                if *keep_data {
                    " and keeps it (the WAL copy is incomplete)"
                } else {
                    " and deletes it once this member streams from the peer again (the WAL past the fork is preserved)"
                }
            ),
            Reason::Rejoining { peer } => write!(
                f,
                "rejoining: standby_cluster now follows {peer} through the tunnel (pg_rewind as \
                 needed)"
            ),
        }
    }
}

/// Reasons as text (for logs, Events, the state document).
pub fn render(reasons: &[Reason]) -> Vec<String> {
    reasons.iter().map(ToString::to_string).collect()
}
