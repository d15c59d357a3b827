//! The fenced role: a run on a site that fenced itself (`pgdr_fence` present). It records what
//! the site wrote past the fork, has the readiness sidecar preserve it, and rejoins the
//! authoritative peer (rewind, or a re-clone when a rewind is unsafe). Pure decision here
//! ([`decide_fenced`]); observation and the fence's compare-and-set in [`observe`].

use jiff::Timestamp;

use crate::config::Rejoin;
use crate::sample::{Own, Peer};
use crate::standby::Verdict;
use crate::state::{DecisionRecord, DivergenceRecord, State};
use pgdr_core::contract::fence::{Fence, FenceReason, Phase, Preserve, Reclone};
use pgdr_core::contract::lsn::format as lsn_text;
use pgdr_core::lineage::{HistoryEntry, Lineage, divergence_bytes};

pub mod observe;
mod reason;

pub use reason::{Reason, RecloneWait, RewindHazard, render};

/// How long a site in phase follow may keep diverged data (on the timeline the authority left,
/// past the fork) without streaming while the authority is reachable before it is re-cloned.
/// Patroni checks for a rewind within a loop or two of seeing the new standby_cluster target
/// (loop_wait 10 s) and a pg_rewind of a fenced site takes seconds; a site still there after a
/// minute has a rewind that failed or was skipped (the fault drill left sites replaying their own
/// WAL past the fork after a crash, which Patroni's check, made while replay was still short of
/// the fork, took for "no rewind needed"; such a site can never stream).
pub const FOLLOW_STALL: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

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
    pub reasons: Vec<Reason>,
    pub next: State,
    /// The fence to write (compare-and-set on `<scope>-config`); `None`: unchanged.
    pub fence: Option<Fence>,
    /// The divergence was recorded at this sample: announce `Diverged`.
    pub diverged: Option<DivergenceRecord>,
    /// Rejoining by rewind was found unsafe at this sample (first time): announce
    /// `RecloneRequired` with this reason.
    pub reclone: Option<RewindHazard>,
    /// Every member moved its data aside: remove Patroni's `initialize` key in the same
    /// compare-and-set as the follow form, so that Patroni bootstraps the site as a standby
    /// leader cloned from the peer (with the key, an empty member waits for a leader forever).
    pub clear_initialize: bool,
    /// The re-clone was requested at this sample: announce `Reclone`.
    pub reclone_requested: bool,
}

impl FencedDecision {
    /// The reasons as text, in order.
    pub fn reason_texts(&self) -> Vec<String> {
        render(&self.reasons)
    }
}

/// The re-clone step while a request is pending (phase hold): every member of the site must
/// have moved its data directory aside before the follow form (and no `initialize` key) lets
/// Patroni clone: a member that still has its old data would take the leader lock and stream
/// the peer's WAL onto it. `Ok`: switch to follow (every member's name); `Err`: why it waits.
pub fn reclone_ready(
    request: &Reclone,
    members: &MemberReports,
) -> Result<Vec<String>, RecloneWait> {
    let members = members
        .as_ref()
        .map_err(|why| RecloneWait::Unlisted(why.clone()))?;
    if members.is_empty() {
        return Err(RecloneWait::NoMember);
    }
    let waiting: Vec<(String, MemberReclone)> = members
        .iter()
        .filter(|(_, m)| !matches!(m, MemberReclone::Moved(id) if *id == request.requested_at))
        .cloned()
        .collect();
    if waiting.is_empty() {
        Ok(members.iter().map(|(n, _)| n.clone()).collect())
    } else {
        Err(RecloneWait::Members(waiting))
    }
}

/// Where a fenced site's rejoin starts, from how its writable peer relates to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejoinFork {
    /// The peer left timeline `.0` at `.1` (or, when we are the newer promotion, we left it).
    At(u32, u64),
    /// The authority has not yet published its switchpoint: wait.
    Pending,
    /// No authority to rejoin: stay read-only, a person decides.
    None,
}

/// The fork a fenced site rejoins against: the authority's marker. The agent's own fences follow
/// only a peer at a higher epoch. A person's fence (`kubectl pgdr fence`, reason `operator`)
/// makes the peer the authority by that person's word: at a tie, the peer's marker (both left a
/// timeline; Patroni would not rewind equal numbers, which the hazard check then catches); when
/// our promotion is the newer one, our own marker (we left the peer's timeline there). Another
/// database, or no promotion on either side, is never rejoined automatically.
pub fn rejoin_fork(lineage: &Lineage, by_operator: bool) -> RejoinFork {
    match *lineage {
        Lineage::PeerAuthoritative {
            fork_pending: true, ..
        } => RejoinFork::Pending,
        Lineage::PeerAuthoritative {
            timeline, fork_lsn, ..
        } => RejoinFork::At(timeline, fork_lsn),
        Lineage::EpochTie {
            fork_pending: true, ..
        } if by_operator => RejoinFork::Pending,
        Lineage::EpochTie {
            timeline, fork_lsn, ..
        }
        | Lineage::WeAuthoritative {
            timeline, fork_lsn, ..
        } if by_operator => RejoinFork::At(timeline, fork_lsn),
        _ => RejoinFork::None,
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
/// while following it is the rewind's result (no judgement). `Some(hazard)`: stay on hold.
pub fn rewind_hazard(
    left: u32,
    fork: u64,
    own: Option<u32>,
    own_history: Option<&[HistoryEntry]>,
    peer: Option<u32>,
    following: bool,
) -> Option<RewindHazard> {
    let own = own?;
    if own <= left || peer.is_some_and(|p| own > p) {
        return None;
    }
    let own_left_at = match own_history.and_then(|h| h.iter().find(|e| e.timeline == left)) {
        Some(e) if e.switchpoint == fork => return None,
        Some(e) => Some(e.switchpoint),
        None if following => return None,
        None => None,
    };
    Some(RewindHazard {
        left,
        fork,
        own,
        own_left_at,
        peer,
    })
}

/// A run on a fenced site: contract §2's flow, one step further per sample where possible. The
/// steps, in order (each may stop the run with its verdict): a pending re-clone; the follow
/// phase; the demotion; the fork; the divergence record; the preservation; follow or re-clone.
pub fn decide_fenced(
    rejoin: Rejoin,
    state: &State,
    current: &Fence,
    s: &FencedSample,
) -> FencedDecision {
    let mut flow = Flow::new(state, current, s);
    let verdict = flow.run(rejoin).unwrap_or_else(|stop| stop);
    flow.finish(verdict)
}

/// One fenced run in progress: what it read, and what it has decided so far.
struct Flow<'a> {
    state: &'a State,
    current: &'a Fence,
    s: &'a FencedSample,
    peer: String,
    next: State,
    reasons: Vec<Reason>,
    /// The fence as it will be written (compared with `current` at the end).
    f: Fence,
    diverged: Option<DivergenceRecord>,
    hazard: Option<RewindHazard>,
    /// Phase follow stalled past [`FOLLOW_STALL`]: back to hold, re-clone (the same guards).
    stalled: bool,
    clear_initialize: bool,
    reclone_requested: bool,
}

/// `Err(verdict)`: the run stops at this step with that verdict.
type Step<T = ()> = Result<T, Verdict>;

impl<'a> Flow<'a> {
    fn new(state: &'a State, current: &'a Fence, s: &'a FencedSample) -> Flow<'a> {
        let mut next = state.clone();
        next.fenced.fenced_at.get_or_insert(current.since);
        next.fenced
            .fence_reason
            .get_or_insert_with(|| current.reason.as_str().to_string());
        Flow {
            state,
            current,
            s,
            peer: current.peer.clone(),
            next,
            reasons: vec![Reason::Fenced {
                since: current.since,
                reason: current.reason,
                peer: current.peer.clone(),
                phase: current.phase,
            }],
            f: current.clone(),
            diverged: None,
            hazard: None,
            stalled: false,
            clear_initialize: false,
            reclone_requested: false,
        }
    }

    fn say(&mut self, reason: Reason) {
        self.reasons.push(reason);
    }

    /// Says why and stops the run as [`Verdict::Fenced`].
    fn hold(&mut self, reason: Reason) -> Verdict {
        self.say(reason);
        Verdict::Fenced
    }

    fn run(&mut self, rejoin: Rejoin) -> Step<Verdict> {
        self.known_to_this_version()?;
        self.pending_reclone()?;
        self.following()?;
        self.demoted()?;
        let (timeline, fork) = self.fork()?;
        self.record_divergence(timeline, fork);
        self.preserved(rejoin, timeline, fork)?;
        Ok(self.follow_or_reclone(timeline, fork))
    }

    /// A fence a newer version wrote (a phase or reason this one does not know) stays as it is:
    /// fenced, nothing done, nothing rewritten, until an agent of that version runs.
    fn known_to_this_version(&mut self) -> Step {
        let c = self.current;
        if c.phase == Phase::Unknown || c.reason == FenceReason::Unknown {
            return Err(self.hold(Reason::UnknownToThisVersion { version: c.version }));
        }
        Ok(())
    }

    /// A pending re-clone comes first: once a member moved its data aside the site has no leader
    /// (nothing is read-only or streaming until Patroni cloned it).
    fn pending_reclone(&mut self) -> Step {
        let (current, s, peer) = (self.current, self.s, self.peer.clone());
        let Some(request) = current
            .reclone
            .as_ref()
            .filter(|_| current.phase == Phase::Hold)
        else {
            return Ok(());
        };
        self.say(Reason::RecloneRequested {
            at: request.requested_at.clone(),
            peer: peer.clone(),
        });
        match reclone_ready(request, &s.members) {
            Err(why) => return Err(self.hold(Reason::RecloneWaiting(why))),
            Ok(all) => self.say(Reason::MembersMoved(all)),
        }
        // While Patroni holds the lock it re-writes `initialize` (a leader without the key
        // restores it): it releases the lock once it finds its data directory gone.
        if s.lock_held {
            return Err(self.hold(Reason::LockStillHeld));
        }
        if let Err(why) = &s.target {
            return Err(self.hold(Reason::NoTargetEmpty(why.clone())));
        }
        self.f.phase = Phase::Follow;
        self.clear_initialize = true;
        self.say(Reason::Recloning { peer });
        Err(Verdict::Rejoining)
    }

    /// In phase follow: rejoined once the leader streams, unless the data is on a colliding
    /// timeline (checked first: such a site may stream, wrongly).
    fn following(&mut self) -> Step {
        let (current, s, peer) = (self.current, self.s, self.peer.clone());
        if current.phase != Phase::Follow {
            return Ok(());
        }
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
            self.f.phase = Phase::Hold;
            self.hazard = Some(why.clone());
            return Err(self.hold(Reason::RewindHazard(why)));
        }
        if s.leader_streaming {
            self.next.fenced.follow_stalled_since = None;
            self.next.fenced.rejoined_at.get_or_insert(s.at);
            self.say(Reason::Rejoined { peer });
            return Err(Verdict::Rejoined);
        }
        let Some(since) = self.stalled_since() else {
            self.next.fenced.follow_stalled_since = None;
            self.say(Reason::Following { peer, own: s.own });
            return Err(Verdict::Rejoining);
        };
        self.next.fenced.follow_stalled_since = Some(since);
        if s.at.duration_since(since) < FOLLOW_STALL {
            self.say(Reason::Following { peer, own: s.own });
            return Err(Verdict::Rejoining);
        }
        // Back to hold and on through the flow: the re-clone step keeps every guard (demoted,
        // preserved, approved, the authority proven now, a clone source).
        self.say(Reason::FollowStalled { peer, since });
        self.f.phase = Phase::Hold;
        self.stalled = true;
        self.next.fenced.follow_stalled_since = None;
        Ok(())
    }

    /// Since when (kept from earlier runs) phase follow has left this site's diverged data in
    /// place (past the fork, not streaming) although the authority was
    /// reachable to rewind from; `None` when it moved, streams, its position is unknown, or the
    /// authority or the tunnel is not there (Patroni could not rewind: no judgement).
    fn stalled_since(&self) -> Option<Timestamp> {
        let (s, (_, fork)) = (self.s, self.current.fork()?);
        let by_operator = self.current.reason == FenceReason::Operator;
        let authoritative = matches!(&s.peer, Peer::Writable(l)
            if rejoin_fork(l, by_operator) != RejoinFork::None);
        // Past the fork. Neither the timeline number nor our history proves a rewind: a crashed
        // site may report the peer's number, and the WAL receiver fetches the peer's history
        // files, while the pages are still our own (chaos seed 1017: "invalid resource manager
        // ID" replaying the peer's WAL on top of ours). Only streaming proves the rejoin.
        let diverged = s.own.wal_end.is_some_and(|end| end > fork);
        (authoritative && s.target.is_ok() && diverged)
            .then(|| self.state.fenced.follow_stalled_since.unwrap_or(s.at))
    }

    /// Our end is only final once Patroni has demoted the leader (no more writes).
    fn demoted(&mut self) -> Step {
        if self.s.read_only {
            Ok(())
        } else {
            Err(self.hold(Reason::NotReadOnly))
        }
    }

    /// Step 1: the fork (the timeline the peer left, and where), from the peer's promotion
    /// marker; recorded in the fence once known.
    fn fork(&mut self) -> Step<(u32, u64)> {
        let (s, peer) = (self.s, self.peer.clone());
        if let Some(fork) = self.f.fork() {
            return Ok(fork);
        }
        let by_operator = self.current.reason == FenceReason::Operator;
        match &s.peer {
            Peer::Writable(lineage) => match rejoin_fork(lineage, by_operator) {
                RejoinFork::Pending => Err(self.hold(Reason::ForkPending { peer })),
                RejoinFork::At(timeline, fork_lsn) => {
                    let end = self.f.local_end_lsn.or(s.own.wal_end);
                    self.f.timeline = Some(timeline);
                    self.f.fork_lsn = Some(fork_lsn);
                    self.f.local_end_lsn = end;
                    self.f.diverged_bytes = end.map(|e| divergence_bytes(e, fork_lsn));
                    if by_operator && !lineage.peer_authoritative() {
                        self.say(Reason::OperatorAuthority {
                            peer,
                            lineage: *lineage,
                        });
                    }
                    Ok((timeline, fork_lsn))
                }
                RejoinFork::None => Err(self.hold(Reason::NoAuthority {
                    peer,
                    lineage: *lineage,
                })),
            },
            Peer::Standby => Err(self.hold(Reason::PeerStandby { peer })),
            Peer::Silent(why) | Peer::Unidentified(why) => {
                Err(self.hold(Reason::PeerUnreachable {
                    peer,
                    why: why.clone(),
                }))
            }
        }
    }

    /// The divergence: our final end on the forked timeline and the bytes past the fork,
    /// recorded in the state (and announced) when new.
    fn record_divergence(&mut self, timeline: u32, fork: u64) {
        // The end recorded when fencing may predate the last writes before the demotion: the
        // read-only leader's own end on that timeline is the final one.
        if let Some(end) = self.f.local_end_lsn.max(self.s.own.wal_end) {
            self.f.local_end_lsn = Some(end);
            self.f.diverged_bytes = Some(divergence_bytes(end, fork));
        }
        let record = DivergenceRecord {
            recorded_at: self.s.at,
            peer: self.peer.clone(),
            timeline,
            fork_lsn: lsn_text(fork),
            local_end_lsn: self.f.local_end_lsn.map(lsn_text),
            diverged_bytes: self.f.diverged_bytes,
        };
        let known = self.state.fenced.divergence.as_ref().is_some_and(|d| {
            (d.timeline, &d.fork_lsn, d.diverged_bytes)
                == (record.timeline, &record.fork_lsn, record.diverged_bytes)
        });
        if !known {
            self.next.fenced.divergence = Some(record.clone());
            self.diverged = Some(record);
        }
        self.say(Reason::Fork {
            peer: self.peer.clone(),
            timeline,
            fork,
            end: self.f.local_end_lsn,
            bytes: self.f.diverged_bytes,
        });
    }

    /// Step 2: what diverged is preserved (unknown counts as diverged), and a manual rejoin is
    /// approved, before anything discards it.
    fn preserved(&mut self, rejoin: Rejoin, timeline: u32, fork: u64) -> Step {
        let (s, peer) = (self.s, self.peer.clone());
        if self.f.diverged_bytes == Some(0) {
            return Ok(());
        }
        if self.f.preserve.is_none() {
            self.f.preserve = Some(Preserve {
                timeline,
                from_lsn: fork,
            });
            return Err(self.hold(Reason::PreservationAsked));
        }
        let preservation = Reason::Preservation(s.preservation.clone());
        match &s.preservation {
            Preservation::Preserved(_) | Preservation::Incomplete(_) => self.say(preservation),
            Preservation::NotYet(_) => return Err(self.hold(preservation)),
        }
        if rejoin == Rejoin::Manual && self.f.rejoin_approved_at.is_none() {
            return Err(self.hold(Reason::ManualRejoin { peer }));
        }
        Ok(())
    }

    /// Step 3: follow the authoritative site, unless Patroni would not rewind us onto it; then
    /// request a re-clone instead.
    fn follow_or_reclone(&mut self, timeline: u32, fork: u64) -> Verdict {
        let (s, peer) = (self.s, self.peer.clone());
        // The authority to follow: a higher epoch, or whom a person's fence named.
        let by_operator = self.current.reason == FenceReason::Operator;
        let authoritative = matches!(&s.peer, Peer::Writable(l)
            if rejoin_fork(l, by_operator) != RejoinFork::None);
        let hazard = rewind_hazard(
            timeline,
            fork,
            s.own.timeline,
            s.own_history.as_deref(),
            s.peer_timeline,
            false,
        );
        if hazard.is_some() || self.stalled {
            if let Some(why) = hazard {
                self.say(Reason::RewindHazard(why.clone()));
                self.hazard = Some(why);
            }
            // Re-clone instead: the WAL past the fork is preserved (step 2) and `rejoin` let us
            // this far. Only toward a peer proven authoritative right now, reachable to clone.
            if !authoritative {
                return self.hold(Reason::NotAuthoritative {
                    peer,
                    reclone: true,
                });
            }
            if let Err(why) = &s.target {
                return self.hold(Reason::NoCloneSource(why.clone()));
            }
            let incomplete = matches!(s.preservation, Preservation::Incomplete(_));
            self.f.reclone = Some(Reclone {
                requested_at: s.at.to_string(),
                keep_data: incomplete,
            });
            self.reclone_requested = true;
            return self.hold(Reason::RecloneRequesting {
                peer,
                keep_data: incomplete,
            });
        }
        if !authoritative {
            return self.hold(Reason::NotAuthoritative {
                peer,
                reclone: false,
            });
        }
        if let Err(why) = &s.target {
            return self.hold(Reason::NoTarget(why.clone()));
        }
        self.f.phase = Phase::Follow;
        self.say(Reason::Rejoining { peer });
        Verdict::Rejoining
    }

    /// The decision: the state's record of it, the re-clone announcement (once per episode; a
    /// rejoin ends it) and the fence to write when it changed.
    fn finish(mut self, verdict: Verdict) -> FencedDecision {
        let s = self.s;
        self.next.last_decision = Some(DecisionRecord {
            at: s.at,
            verdict: verdict.to_string(),
            reasons: render(&self.reasons),
            run: s.run.clone(),
        });
        let reclone = match self.hazard {
            Some(why) => {
                let first = self.state.fenced.reclone_required_at.is_none();
                self.next.fenced.reclone_required_at.get_or_insert(s.at);
                first.then_some(why)
            }
            None => {
                if verdict == Verdict::Rejoined {
                    self.next.fenced.reclone_required_at = None;
                    // Done: a later fence episode must not find an old request.
                    if self.f.reclone.take().is_some() {
                        self.next.fenced.recloned_at.get_or_insert(s.at);
                    }
                }
                None
            }
        };
        FencedDecision {
            verdict,
            reasons: self.reasons,
            next: self.next,
            fence: (self.f != *self.current).then_some(self.f),
            diverged: self.diverged,
            reclone,
            clear_initialize: self.clear_initialize,
            reclone_requested: self.reclone_requested,
        }
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
