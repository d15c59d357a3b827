//! The fenced role: a run on a site that fenced itself (`pgdr_fence` present). It records what
//! the site wrote past the fork, has the readiness sidecar preserve it, and rejoins the
//! authoritative peer (rewind, or a re-clone when a rewind is unsafe). Pure decision here
//! ([`decide_fenced`]); observation and the fence's compare-and-set in [`observe`].

use jiff::Timestamp;

use crate::config::Rejoin;
use crate::sample::{Own, Peer, lineage_text};
use crate::standby::Verdict;
use crate::state::{DecisionRecord, DivergenceRecord, State};
use pgdr_core::contract::fence::{Fence, Phase, Preserve, Reclone};
use pgdr_core::contract::lsn::format as lsn_text;
use pgdr_core::lineage::{HistoryEntry, Lineage, divergence_bytes};

pub mod observe;

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
