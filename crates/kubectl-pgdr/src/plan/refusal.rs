//! Why a command refuses: one variant per refusal, decided in the plan and rendered only at the
//! edge (`refused, nothing was changed: …`). A refusal changes nothing; each text says what is
//! wrong, on which site, and what to do instead.

use super::Why;
use crate::model::FENCE;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("site {site} cannot be read: {error}")]
    Unreadable { site: String, error: String },
    #[error("site {site} has no Patroni config ConfigMap")]
    NoConfig { site: String },
    #[error("site {site}: {error}; nothing was changed")]
    Malformed { site: String, error: String },
    #[error("site '{site}' is not configured")]
    NotConfigured { site: String },

    // promote / unfence
    #[error(
        "site {peer} is a writable primary: promoting {site} would make two. Use `kubectl pgdr switchover --to {site}`, or fence {peer} first"
    )]
    PeerWritable { site: String, peer: String },
    #[error(
        "site {site} is not fenced: nothing to unfence. A standby site is promoted with `kubectl pgdr promote {site} --force` (or `switchover --to {site}` while {peer} runs)"
    )]
    NotFenced { site: String, peer: String },
    #[error("promoting {site} by hand bypasses the failover agent's checks: rerun with --force")]
    PromoteUnforced { site: String },
    /// `alive`: what shows the peer alive.
    #[error(
        "{alive}: it is visibly alive. Promoting {site} beside it needs --force and the site's name typed; a planned change of roles is `kubectl pgdr switchover --to {site}`"
    )]
    PeerAlive { site: String, alive: String },
    #[error(
        "{site}'s leader reports no timeline or replayed position: not promoted (a promotion without a fresh promotion marker would let an older marker speak for {site}); check that its standby leader runs (`kubectl pgdr status`) and try again"
    )]
    NoFork { site: String },

    // fence
    #[error(
        "{}. If that is what you mean (a promotion made by mistake), repeat with --force; to move the primary without losing writes use `kubectl pgdr switchover --to {peer}`",
        fences_newest(.site, .peer, *.own, *.theirs)
    )]
    FencesNewest {
        site: String,
        peer: String,
        own: u64,
        theirs: u64,
    },
    /// The fence already there cannot be read.
    #[error("{error}: fix or remove it first (`kubectl pgdr unfence` removes it)")]
    FenceUnreadable { error: String },

    // advertise
    #[error("site {site} is fenced: it must not be advertised (`kubectl pgdr status` says why)")]
    AdvertiseFenced { site: String },
    #[error("site {site} is not a writable primary (it is {role}): nothing to advertise")]
    AdvertiseNotPrimary { site: String, role: &'static str },
    #[error(
        "site {peer} is a writable primary too ({member} runs as one): that is a split brain, not a missing peer. Settle it with `kubectl pgdr fence` on the site to discard"
    )]
    AdvertiseSplitBrain { peer: String, member: String },
    #[error("the site was fenced meanwhile: it must not be advertised")]
    FencedMeanwhile,

    // the replication slot
    #[error(
        "cannot tell the replication slot's name: no failover agent CronJob and no standby_cluster names it; pass --slot-name (the chart's replication.slotName, the same on both sites)"
    )]
    SlotUnknown,
    #[error(
        "the sites name different replication slots ({first_from} says {first:?}, {from} says {other:?}): nothing was changed; set replication.slotName to the same value on both sites, or pass --slot-name"
    )]
    SlotsDiffer {
        first_from: String,
        first: String,
        from: String,
        other: String,
    },
    #[error("{from}: {error}")]
    SlotInvalid { from: String, error: String },

    // rejoin
    #[error(
        "site {site} is not fenced (no {FENCE} in its Patroni config): nothing waits for a rejoin"
    )]
    RejoinNotFenced { site: String },
    #[error("site {site}: {error}; nothing was changed (check the failover agent's log)")]
    RejoinUnreadable { site: String, error: String },
    #[error(
        "site {site} is fenced in phase '{phase}': it already follows its peer, nothing waits for an approval"
    )]
    RejoinFollowing { site: String, phase: &'static str },
    #[error(
        "site {site} is fenced but the fork point is not known yet (the failover agent has not reached the peer): there is nothing to approve until the divergence is recorded; see `kubectl pgdr status`"
    )]
    RejoinNoFork { site: String },
    #[error("site {site}: {FENCE}: {error}")]
    FenceUnwritable { site: String, error: String },

    // switchover
    #[error(
        "a switchover from {from} to {to} is in progress (step {step}); finish it with `kubectl pgdr switchover --resume` before starting another"
    )]
    SwitchoverInProgress {
        from: String,
        to: String,
        step: &'static str,
    },
    #[error(
        "say where to switch over to: --to SITE (or --resume to continue a recorded switchover)"
    )]
    NoSwitchoverTarget,
    /// The switchover's step machine refused (its preflight or a step).
    #[error("{0}")]
    Switchover(Box<Why>),
}

/// What fencing the site with the newer promotion means (the refusal without `--force`, the
/// warning with it).
pub fn fences_newest(site: &str, peer: &str, own: u64, theirs: u64) -> String {
    format!(
        "{site} holds the newer promotion (epoch {own}; {peer}: {theirs}): fencing it discards \
         what it wrote since in favour of {peer} (recorded and preserved first)"
    )
}
