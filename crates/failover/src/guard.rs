//! One writable primary: the decisions of a run on a writable primary site, and of a run on a
//! fenced site. Pure functions of (policy, state, sample), like [`crate::decide`].
//!
//! The promoted site is authoritative. A writable primary fences itself when the peer is a
//! writable primary promoted from our timeline (lineage), or when the peer is silent and a
//! witness says positively, for N samples in a row, that the application runs on the peer. Both
//! writable with no such proof is split brain: reported on every run, nothing fenced (a person
//! decides). A fenced site records what it wrote past the fork, has it preserved, and rejoins.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::config::Rejoin;
use crate::decide::{Mode, Policy, Verdict};
use crate::state::{DecisionRecord, DivergenceRecord, State};
use pgdr_core::contract::fence::{Fence, FenceReason, Phase, Preserve, Reclone};
use pgdr_core::contract::lsn::format as lsn_text;
use pgdr_core::lineage::{HistoryEntry, Lineage, divergence_bytes};

/// The peer as seen through the tunnel Service.
#[derive(Clone, Debug, PartialEq)]
pub enum Peer {
    /// No PostgreSQL answer (refused, reset, timeout) or the tunnel Service is unusable.
    Silent(String),
    /// It answered but could not be identified (authentication, starting up): alive, role unknown.
    Unidentified(String),
    /// In recovery: a standby.
    Standby,
    /// A writable primary, and how its timeline relates to ours.
    Writable(Lineage),
}

/// Where a witness says the application runs now.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// On the peer: positive evidence that the application left this site.
    Peer(String),
    /// Here (or the peer is down).
    Here(String),
    Unknown(String),
}

/// This site's own position (local leader).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Own {
    pub timeline: Option<u32>,
    pub wal_end: Option<u64>,
}

/// One sample of a run on a writable primary site.
#[derive(Clone, Debug, PartialEq)]
pub struct PrimarySample {
    pub at: Timestamp,
    pub run: String,
    pub peer_site: String,
    pub peer: Peer,
    pub placements: Vec<Placement>,
    /// This site was promoted by the agent (durable promotion record): authoritative when both
    /// are writable and the lineage does not say otherwise.
    pub promoted_here: bool,
    pub own: Own,
}

/// What the fence must say when a primary fences itself.
#[derive(Clone, Debug, PartialEq)]
pub struct FenceOrder {
    pub reason: FenceReason,
    /// (timeline, fork LSN), when the peer was reached.
    pub fork: Option<(u32, u64)>,
    pub local_end: Option<u64>,
}

impl FenceOrder {
    /// The fence document (always `hold` first: the follow form comes from the fenced run once
    /// the divergence is recorded and preserved).
    pub fn fence(&self, at: Timestamp, peer: &str) -> Fence {
        let mut f = Fence::hold(at, self.reason, peer);
        f.local_end_lsn = self.local_end;
        if let Some((timeline, fork)) = self.fork {
            f.timeline = Some(timeline);
            f.fork_lsn = Some(fork);
            f.diverged_bytes = self.local_end.map(|end| divergence_bytes(end, fork));
        }
        f
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GuardDecision {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub next: State,
    /// Fence this site now (on a witness's word: auto mode only; observe mode reports `fence`
    /// without it. On the peer's lineage: every mode).
    pub fence: Option<FenceOrder>,
    /// Both sites writable at this sample.
    pub split_brain: bool,
    /// Call the webhook for the split brain (rate-limited through the state).
    pub notify_webhook: bool,
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

fn lineage_text(l: &Lineage) -> String {
    match l {
        Lineage::DifferentSystem => "a different database (system identifier differs)".into(),
        Lineage::SameTimeline => "on our timeline (no fork visible)".into(),
        Lineage::PeerForkedFromUs { fork_lsn, timeline } => format!(
            "promoted from our timeline {timeline} at {}",
            lsn_text(*fork_lsn)
        ),
        Lineage::WeForkedFromPeer { fork_lsn, timeline } => format!(
            "the timeline {timeline} we were promoted from at {}",
            lsn_text(*fork_lsn)
        ),
        Lineage::Unrelated => "forked separately from us (no automatic authority)".into(),
        // Never from `lineage::lineage` (the sidecar's refinement); said as what it is.
        Lineage::PeerPromotedLater => "carries a newer promotion marker (no fork visible)".into(),
    }
}

/// A run on a writable primary site (`standby_cluster` absent, local leader primary, no fence).
pub fn decide_primary(policy: &Policy, state: &State, s: &PrimarySample) -> GuardDecision {
    let mut next = state.clone();
    let mut reasons = Vec::new();
    let mut fence = None;
    let peer = &s.peer_site;
    let idle = if s.promoted_here {
        Verdict::AlreadyPrimary
    } else {
        Verdict::Ok
    };
    let verdict = match &s.peer {
        Peer::Writable(lineage) => {
            reset_moved(&mut next);
            next.split_brain_since.get_or_insert(s.at);
            reasons.push(format!(
                "SPLIT BRAIN: {peer} is a writable primary too, {}",
                lineage_text(lineage)
            ));
            match lineage {
                Lineage::PeerForkedFromUs { fork_lsn, timeline } => {
                    reasons.push(format!(
                        "{peer} was promoted from this site: it is authoritative, this site fences \
                         itself (hold) and keeps its WAL past {}",
                        lsn_text(*fork_lsn)
                    ));
                    // The lineage proved our WAL runs through the fork on that timeline (we may
                    // be on a later one of our own after a crash restart): all past it diverged.
                    let local_end = s.own.wal_end;
                    fence = Some(FenceOrder {
                        reason: FenceReason::PeerAuthoritative,
                        fork: Some((*timeline, *fork_lsn)),
                        local_end,
                    });
                    Verdict::Fence
                }
                Lineage::WeForkedFromPeer { .. } => {
                    reasons.push(format!(
                        "this site was promoted from {peer}'s timeline: this site is authoritative \
                         and keeps writing; {peer} must fence itself (its agent does, or `kubectl \
                         pgdr fence {peer}`)"
                    ));
                    Verdict::SplitBrain
                }
                Lineage::DifferentSystem => {
                    next.split_brain_since = None;
                    reasons.push(
                        "the tunnel reaches another database, not this pair's peer: nothing done; \
                         check the tunnel Service's target"
                            .into(),
                    );
                    Verdict::Unknown
                }
                Lineage::SameTimeline | Lineage::Unrelated | Lineage::PeerPromotedLater
                    if s.promoted_here =>
                {
                    reasons.push(format!(
                        "this site holds the promotion record: it is authoritative and keeps \
                         writing; {peer} must be fenced (`kubectl pgdr fence {peer}`)"
                    ));
                    Verdict::SplitBrain
                }
                Lineage::SameTimeline | Lineage::Unrelated | Lineage::PeerPromotedLater => {
                    reasons.push(
                        "no lineage proof of authority: nothing fenced automatically; a person \
                         must choose the site to keep (`kubectl pgdr fence SITE` on the other)"
                            .into(),
                    );
                    Verdict::SplitBrain
                }
            }
        }
        Peer::Standby => {
            reset_moved(&mut next);
            next.split_brain_since = None;
            reasons.push(format!(
                "{peer} is a standby (in recovery): one writable primary"
            ));
            idle
        }
        Peer::Unidentified(why) => {
            reset_moved(&mut next);
            reasons.push(format!(
                "{peer} answered through the tunnel but could not be identified ({why}): alive, \
                 role unknown; nothing done"
            ));
            Verdict::Unknown
        }
        Peer::Silent(why) => {
            next.split_brain_since = None;
            reasons.push(format!("{peer} gives no answer through the tunnel: {why}"));
            let moved: Vec<&String> = s
                .placements
                .iter()
                .filter_map(|p| match p {
                    Placement::Peer(r) => Some(r),
                    _ => None,
                })
                .collect();
            let here: Vec<&String> = s
                .placements
                .iter()
                .filter_map(|p| match p {
                    Placement::Here(r) => Some(r),
                    _ => None,
                })
                .collect();
            for p in &s.placements {
                let (Placement::Peer(r) | Placement::Here(r) | Placement::Unknown(r)) = p;
                reasons.push(r.clone());
            }
            if s.placements.is_empty() {
                reasons.push("no witness configured: a silent peer alone never fences".into());
            }
            if moved.is_empty() || !here.is_empty() {
                reset_moved(&mut next);
                if !here.is_empty() {
                    reasons.push("a witness keeps the application here: warning only".into());
                } else if !s.placements.is_empty() {
                    reasons.push("no witness says the application moved: warning only".into());
                }
                if s.promoted_here {
                    Verdict::AlreadyPrimary
                } else {
                    Verdict::PeerUnreachable
                }
            } else {
                count_moved(policy, state, s.at, &mut next, &mut reasons);
                if next.moved_samples >= policy.failure_threshold {
                    reasons.push(format!(
                        "the application runs on {peer} ({} samples in a row): this isolated \
                         primary fences itself (hold) and stops taking writes",
                        next.moved_samples
                    ));
                    fence = Some(FenceOrder {
                        reason: FenceReason::WitnessMoved,
                        fork: None,
                        local_end: s.own.wal_end,
                    });
                    Verdict::Fence
                } else {
                    reasons.push(format!(
                        "a witness says the application runs on {peer}: {} of {} samples",
                        next.moved_samples, policy.failure_threshold
                    ));
                    Verdict::PeerUnreachable
                }
            }
        }
    };
    // Observe mode holds back only the fence that rests on a witness's word. A peer promoted
    // from our timeline is proof, and the fence it calls for only stops writes that a rejoin
    // would discard: it acts in every mode (`FAILOVER_MODE` is about promotions).
    if policy.mode == Mode::Observe
        && fence
            .as_ref()
            .is_some_and(|f| f.reason == FenceReason::WitnessMoved)
    {
        reasons.push("FAILOVER_MODE=observe: WOULD fence this site, nothing changed".into());
        fence = None;
    }
    let split_brain = matches!(s.peer, Peer::Writable(ref l) if *l != Lineage::DifferentSystem);
    let notify_webhook = split_brain
        && next
            .split_brain_notified_at
            .is_none_or(|t| s.at.duration_since(t) >= signed(policy.replication_broken_renotify));
    if notify_webhook {
        next.split_brain_notified_at = Some(s.at);
    }
    if !split_brain {
        next.split_brain_notified_at = None;
    }
    next.last_decision = Some(DecisionRecord {
        at: s.at,
        verdict: verdict.to_string(),
        reasons: reasons.clone(),
        run: s.run.clone(),
    });
    GuardDecision {
        verdict,
        reasons,
        next,
        fence,
        split_brain,
        notify_webhook,
    }
}

fn reset_moved(next: &mut State) {
    next.moved_samples = 0;
    next.moved_since = None;
}

/// Counts a "moved" sample with the same spacing rules as the failover streak: an overlapping
/// run does not count twice, a long gap restarts the count.
fn count_moved(
    policy: &Policy,
    state: &State,
    at: Timestamp,
    next: &mut State,
    reasons: &mut Vec<String>,
) {
    if let Some(last) = state.last_sample_at {
        let gap = at.duration_since(last);
        if gap.is_negative() || gap > signed(policy.max_sample_gap) {
            reasons.push(format!("{gap:#} since the last sample: the count restarts"));
            reset_moved(next);
        } else if state.moved_samples > 0 && gap < signed(policy.min_sample_spacing) {
            reasons.push(format!(
                "{gap:#} after the last sample (an overlapping run): not counted again"
            ));
            return;
        }
    }
    next.moved_samples += 1;
    next.moved_since.get_or_insert(at);
    next.last_sample_at = Some(at);
}

/// The leader pod's readiness sidecar on WAL preservation (`/status` `divergence`).
#[derive(Clone, Debug, PartialEq)]
pub enum Preservation {
    Preserved(String),
    /// Copied what was there; some segments were already gone (named in the text).
    Incomplete(String),
    /// Not done yet (`copying`, `none`), failed, or the sidecar could not be asked.
    NotYet(String),
}

/// One member's readiness sidecar on a re-clone request (`/status` `reclone`).
#[derive(Clone, Debug, PartialEq)]
pub enum MemberReclone {
    /// Its data directory was moved aside for the request with this `requested_at`.
    Moved(String),
    /// Not (yet) done, or the sidecar could not be asked: why.
    NotYet(String),
}

/// Each member pod's answer on a re-clone request (`Err`: the pods could not be listed).
pub type MemberReports = Result<Vec<(String, MemberReclone)>, String>;

/// One sample of a run on a fenced site.
#[derive(Clone, Debug, PartialEq)]
pub struct FencedSample {
    pub at: Timestamp,
    pub run: String,
    pub peer: Peer,
    /// The peer's current timeline, when it could be identified.
    pub peer_timeline: Option<u32>,
    pub own: Own,
    /// The local leader's PostgreSQL timeline history (its sidecar reads `pg_wal`); `None`
    /// when unknown.
    pub own_history: Option<Vec<HistoryEntry>>,
    pub preservation: Preservation,
    /// The local leader no longer runs as a writable primary (Patroni demoted it).
    pub read_only: bool,
    /// The local leader streams (WAL receiver `streaming`).
    pub leader_streaming: bool,
    /// The reverse tunnel Service gives a follow target (`Err`: why not).
    pub target: Result<(), String>,
    /// A member holds this site's leader lock.
    pub lock_held: bool,
    /// Every member pod of this site with its sidecar's answer on the re-clone request; asked
    /// only while one is pending (`Err`: the pods could not be listed).
    pub members: MemberReports,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FencedDecision {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub next: State,
    /// The fence to write (compare-and-set on `<scope>-config`); `None`: unchanged.
    pub fence: Option<Fence>,
    /// The divergence was recorded at this sample: announce `Diverged`.
    pub diverged: Option<DivergenceRecord>,
    /// Rejoining by rewind was found unsafe at this sample (first time): announce
    /// `RecloneRequired` with this text.
    pub reclone: Option<String>,
    /// Every member moved its data aside: remove Patroni's `initialize` key in the same
    /// compare-and-set as the follow form, so that Patroni bootstraps the site as a standby
    /// leader cloned from the peer (with the key, an empty member waits for a leader forever).
    pub clear_initialize: bool,
    /// The re-clone was requested at this sample: announce `Reclone`.
    pub reclone_requested: bool,
}

/// The re-clone step while a request is pending (phase hold): every member of the site must
/// have moved its data directory aside before the follow form (and no `initialize` key) lets
/// Patroni clone: a member that still has its old data would take the leader lock and stream
/// the peer's WAL onto it. `Ok`: switch to follow; `Err`: why it waits.
pub fn reclone_ready(request: &Reclone, members: &MemberReports) -> Result<String, String> {
    let members = members
        .as_ref()
        .map_err(|why| format!("the site's member pods cannot be listed ({why})"))?;
    if members.is_empty() {
        return Err("no member pod of this site is listed".into());
    }
    let mut waiting = Vec::new();
    for (name, m) in members {
        match m {
            MemberReclone::Moved(id) if *id == request.requested_at => {}
            MemberReclone::Moved(id) => {
                waiting.push(format!("{name}: moved for another request ({id})"))
            }
            MemberReclone::NotYet(why) => waiting.push(format!("{name}: {why}")),
        }
    }
    if waiting.is_empty() {
        let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
        Ok(format!(
            "every member moved its data directory aside ({})",
            names.join(", ")
        ))
    } else {
        Err(format!(
            "waiting for every member to move its data directory aside: {}",
            waiting.join("; ")
        ))
    }
}

/// Whether following the peer would stream its WAL onto data that Patroni does not rewind.
/// Patroni decides on pg_rewind by timeline *numbers*: a local timeline equal to the peer's
/// means "no rewind", a lower one is looked up in the peer's history by number. A site that went
/// on from `left` (the timeline the peer was promoted from, at `fork`) to a timeline of its own
/// (a crash restart promoted it) can carry a number the peer also uses; it would then stream the
/// peer's WAL on top of its own diverged pages. Safe when we never left `left`, when our
/// timeline is above the peer's (Patroni rewinds; pg_rewind compares histories by position), or
/// when our own history leaves `left` at the fork (the peer's branch: rewound or re-cloned).
/// Without our history: before `following`, a timeline change after the fork is our own (hazard);
/// while following it is the rewind's result (no judgement). `Some(reason)`: stay on hold.
pub fn rewind_hazard(
    left: u32,
    fork: u64,
    own: Option<u32>,
    own_history: Option<&[HistoryEntry]>,
    peer: Option<u32>,
    following: bool,
) -> Option<String> {
    let own = own?;
    if own <= left || peer.is_some_and(|p| own > p) {
        return None;
    }
    let ours = match own_history.and_then(|h| h.iter().find(|e| e.timeline == left)) {
        Some(e) if e.switchpoint == fork => return None,
        Some(e) => format!("left timeline {left} at {}", lsn_text(e.switchpoint)),
        None if following => return None,
        None => format!("left timeline {left}; its history is unknown"),
    };
    Some(format!(
        "this site went on to a timeline {own} of its own after the fork (it {ours}; the peer \
         left it at {}), and the peer is on timeline {}: Patroni compares timeline numbers and \
         would not rewind, streaming the peer's WAL onto diverged data. Stays read-only on hold: \
         re-clone this site (chart README \"After a failover\")",
        lsn_text(fork),
        peer.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    ))
}

/// A run on a fenced site: contract §2's flow, one step further per sample where possible.
pub fn decide_fenced(
    rejoin: Rejoin,
    state: &State,
    current: &Fence,
    s: &FencedSample,
) -> FencedDecision {
    let mut next = state.clone();
    let mut reasons = vec![format!(
        "fenced since {} ({}), {} is authoritative, phase {:?}",
        current.since,
        current.reason.as_str(),
        current.peer,
        current.phase
    )];
    next.fenced_at.get_or_insert(current.since);
    next.fence_reason
        .get_or_insert_with(|| current.reason.as_str().to_string());
    let mut f = current.clone();
    let mut diverged = None;
    let mut hazard = None;
    let peer = current.peer.clone();
    let mut clear_initialize = false;
    let mut reclone_requested = false;
    let verdict = 'flow: {
        // A pending re-clone comes first: once a member moved its data aside the site has no
        // leader (nothing is read-only or streaming until Patroni cloned it).
        if current.phase == Phase::Hold
            && let Some(request) = &current.reclone
        {
            reasons.push(format!(
                "re-clone requested at {} (rewinding onto {peer} is unsafe)",
                request.requested_at
            ));
            match reclone_ready(request, &s.members) {
                Err(why) => {
                    reasons.push(why);
                    break 'flow Verdict::Fenced;
                }
                Ok(all) => reasons.push(all),
            }
            // While Patroni holds the lock it re-writes `initialize` (a leader without the key
            // restores it): it releases the lock once it finds its data directory gone.
            if s.lock_held {
                reasons.push(
                    "Patroni still holds this site's leader lock (it releases it once it finds \
                     the data directory gone): waiting"
                        .into(),
                );
                break 'flow Verdict::Fenced;
            }
            if let Err(why) = &s.target {
                reasons.push(format!("no follow target: {why}; stays on hold (empty)"));
                break 'flow Verdict::Fenced;
            }
            f.phase = Phase::Follow;
            clear_initialize = true;
            reasons.push(format!(
                "re-cloning: standby_cluster follows {peer} through the tunnel and Patroni's \
                 initialize key is removed: Patroni bootstraps a standby leader from {peer}"
            ));
            break 'flow Verdict::Rejoining;
        }
        if current.phase == Phase::Follow {
            // Checked before "streaming": a site on a colliding timeline may stream, wrongly.
            if let Some((left, fork)) = current.fork()
                && let Some(why) = rewind_hazard(
                    left,
                    fork,
                    s.own.timeline,
                    s.own_history.as_deref(),
                    s.peer_timeline,
                    true,
                )
            {
                f.phase = Phase::Hold;
                reasons.push(why.clone());
                hazard = Some(why);
                break 'flow Verdict::Fenced;
            }
            if s.leader_streaming {
                next.rejoined_at.get_or_insert(s.at);
                reasons.push(format!("the local leader streams from {peer}: rejoined"));
                break 'flow Verdict::Rejoined;
            }
            reasons.push(format!(
                "following {peer}: Patroni rewinds/clones and starts streaming (not yet)"
            ));
            break 'flow Verdict::Rejoining;
        }
        // Our end is only final once Patroni has demoted the leader (no more writes).
        if !s.read_only {
            reasons.push(
                "Patroni is still demoting this site's leader (not read-only yet): waiting".into(),
            );
            break 'flow Verdict::Fenced;
        }
        // Step 1: the fork, from the peer's promotion marker.
        if f.fork().is_none() {
            match &s.peer {
                Peer::Writable(Lineage::PeerForkedFromUs { fork_lsn, timeline }) => {
                    let end = f.local_end_lsn.or(s.own.wal_end);
                    f.timeline = Some(*timeline);
                    f.fork_lsn = Some(*fork_lsn);
                    f.local_end_lsn = end;
                    f.diverged_bytes = end.map(|e| divergence_bytes(e, *fork_lsn));
                }
                Peer::Writable(other) => {
                    reasons.push(format!(
                        "{peer} is writable but {}: no automatic rejoin, stays read-only; a \
                         person decides (`kubectl pgdr status`)",
                        lineage_text(other)
                    ));
                    break 'flow Verdict::Fenced;
                }
                Peer::Standby => {
                    reasons.push(format!(
                        "{peer} is not a writable primary (in recovery): stays read-only"
                    ));
                    break 'flow Verdict::Fenced;
                }
                Peer::Silent(why) | Peer::Unidentified(why) => {
                    reasons.push(format!(
                        "{peer} cannot be asked for its history ({why}): stays read-only"
                    ));
                    break 'flow Verdict::Fenced;
                }
            }
        }
        let (timeline, fork) = f.fork().expect("set above");
        // The end recorded when fencing may predate the last writes before the demotion: the
        // read-only leader's own end on that timeline is the final one.
        let recorded = f.local_end_lsn;
        let now = s.own.wal_end;
        if let Some(end) = recorded.max(now) {
            f.local_end_lsn = Some(end);
            f.diverged_bytes = Some(divergence_bytes(end, fork));
        }
        let record = DivergenceRecord {
            recorded_at: s.at,
            peer: peer.clone(),
            timeline,
            fork_lsn: lsn_text(fork),
            local_end_lsn: f.local_end_lsn.map(lsn_text),
            diverged_bytes: f.diverged_bytes,
        };
        let known = state.divergence.as_ref().is_some_and(|d| {
            (d.timeline, &d.fork_lsn, d.diverged_bytes)
                == (record.timeline, &record.fork_lsn, record.diverged_bytes)
        });
        if !known {
            next.divergence = Some(record.clone());
            diverged = Some(record);
        }
        reasons.push(format!(
            "fork: {peer} left our timeline {timeline} at {}; our end {}; diverged bytes {}",
            lsn_text(fork),
            f.local_end_lsn
                .map_or_else(|| "unknown".to_string(), lsn_text),
            f.diverged_bytes
                .map_or_else(|| "unknown".to_string(), |b| b.to_string())
        ));
        // Step 2: preserve what diverged (unknown counts as diverged).
        let something_diverged = f.diverged_bytes != Some(0);
        if something_diverged {
            if f.preserve.is_none() {
                f.preserve = Some(Preserve {
                    timeline,
                    from_lsn: fork,
                });
                reasons.push("asked the readiness sidecar to preserve the diverged WAL".into());
                break 'flow Verdict::Fenced;
            }
            match &s.preservation {
                Preservation::Preserved(what) => {
                    reasons.push(format!("diverged WAL preserved: {what}"))
                }
                Preservation::Incomplete(what) => reasons.push(format!(
                    "diverged WAL preserved INCOMPLETE (segments already gone): {what}"
                )),
                Preservation::NotYet(what) => {
                    reasons.push(format!("waiting for the WAL preservation: {what}"));
                    break 'flow Verdict::Fenced;
                }
            }
            if rejoin == Rejoin::Manual && f.rejoin_approved_at.is_none() {
                reasons.push(format!(
                    "rejoin: manual and WAL diverged: stays read-only until `kubectl pgdr rejoin` \
                     (then it rewinds onto {peer}, discarding the preserved range)"
                ));
                break 'flow Verdict::Fenced;
            }
        }
        // Step 3: follow the authoritative site, unless Patroni would not rewind us onto it.
        if let Some(why) = rewind_hazard(
            timeline,
            fork,
            s.own.timeline,
            s.own_history.as_deref(),
            s.peer_timeline,
            false,
        ) {
            reasons.push(why.clone());
            hazard = Some(why);
            // Re-clone instead: the WAL past the fork is preserved (step 2) and `rejoin` let us
            // this far. Only toward a peer proven authoritative right now, reachable to clone.
            if !matches!(s.peer, Peer::Writable(Lineage::PeerForkedFromUs { .. })) {
                reasons.push(format!(
                    "{peer} is not seen as our authoritative primary right now: no re-clone yet"
                ));
            } else if let Err(why) = &s.target {
                reasons.push(format!("no follow target to clone from: {why}"));
            } else {
                f.reclone = Some(Reclone {
                    requested_at: s.at.to_string(),
                    keep_data: matches!(s.preservation, Preservation::Incomplete(_)),
                });
                reclone_requested = true;
                reasons.push(format!(
                    "re-clone requested: each member's readiness sidecar moves its data \
                     directory aside{}, then Patroni clones this site from {peer}",
                    if matches!(s.preservation, Preservation::Incomplete(_)) {
                        " and keeps it (the WAL copy is incomplete)"
                    } else {
                        " and deletes it once PostgreSQL stopped (the WAL past the fork is preserved)"
                    }
                ));
            }
            break 'flow Verdict::Fenced;
        }
        if !matches!(s.peer, Peer::Writable(Lineage::PeerForkedFromUs { .. })) {
            reasons.push(format!(
                "{peer} is not seen as our authoritative primary right now: stays on hold"
            ));
            break 'flow Verdict::Fenced;
        }
        if let Err(why) = &s.target {
            reasons.push(format!("no follow target: {why}; stays on hold"));
            break 'flow Verdict::Fenced;
        }
        f.phase = Phase::Follow;
        reasons.push(format!(
            "rejoining: standby_cluster now follows {peer} through the tunnel (pg_rewind as needed)"
        ));
        Verdict::Rejoining
    };
    next.last_decision = Some(DecisionRecord {
        at: s.at,
        verdict: verdict.to_string(),
        reasons: reasons.clone(),
        run: s.run.clone(),
    });
    // Announced once per episode; a rejoin ends it.
    let reclone = match hazard {
        Some(why) => {
            let first = state.reclone_required_at.is_none();
            next.reclone_required_at.get_or_insert(s.at);
            first.then_some(why)
        }
        None => {
            if verdict == Verdict::Rejoined {
                next.reclone_required_at = None;
                // Done: a later fence episode must not find an old request.
                if f.reclone.take().is_some() {
                    next.recloned_at.get_or_insert(s.at);
                }
            }
            None
        }
    };
    FencedDecision {
        verdict,
        reasons,
        next,
        fence: (f != *current).then_some(f),
        diverged,
        reclone,
        clear_initialize,
        reclone_requested,
    }
}

#[cfg(test)]
mod tests;
