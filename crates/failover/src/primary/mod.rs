//! The primary role: a run on a writable primary site (`standby_cluster` absent, the local
//! leader a primary, no fence). Pure decision here ([`decide_primary`]); observation in
//! [`observe`]; the fence it orders is written by [`crate::act::write_fence`].
//!
//! The promoted site is authoritative. A writable primary fences itself when the peer is a
//! writable primary at a higher promotion epoch (lineage), or when the peer is silent and a
//! witness says positively, for N samples in a row, that the application runs on the peer. Both
//! writable with no such proof is split brain: reported on every run, nothing fenced (a person
//! decides).

use jiff::Timestamp;

use crate::sample::{Own, Peer, signed};
use crate::standby::{Fencing, Mode, Policy, Verdict};
use crate::state::{DecisionRecord, State};
use crate::witness::Witness;
use pgdr_core::contract::fence::{Fence, FenceReason};
use pgdr_core::contract::vouch::{Vouch, VouchBy};
use pgdr_core::lineage::{Lineage, divergence_bytes};

pub mod observe;
mod reason;

pub use reason::{Reason, render};

/// Why no vouch is written for this primary.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoVouch {
    #[error("the readiness sidecar does not wait for evidence")]
    NotAwaited,
    #[error("the evidence ({at}) would predate the wait ({since})")]
    Predates { at: Timestamp, since: Timestamp },
    /// The peer's dynamic config could not be read (the witness's reason).
    #[error("{0}")]
    PeerUnreadable(String),
    #[error("the peer's dynamic config is not a standby cluster: it may have promoted past us")]
    PeerNotStandby,
}

/// The vouch a primary the readiness sidecar withholds since `awaiting` gets from a read of its
/// peer's dynamic config (`peer_standby`, taken after `at`; `Err`: why it could not be read): only
/// a standby cluster shows that the peer did not promote past it, and only a vouch taken since
/// the sidecar's "since" counts.
pub fn vouch_from(
    awaiting: Option<Timestamp>,
    at: Timestamp,
    epoch: u64,
    peer_standby: Result<bool, String>,
) -> Result<Vouch, NoVouch> {
    let since = awaiting.ok_or(NoVouch::NotAwaited)?;
    if at < since {
        return Err(NoVouch::Predates { at, since });
    }
    match peer_standby.map_err(NoVouch::PeerUnreadable)? {
        true => Ok(Vouch {
            at,
            by: VouchBy::PeerApi,
            epoch,
            note: "the peer's dynamic config, read through its API, is a standby cluster".into(),
        }),
        false => Err(NoVouch::PeerNotStandby),
    }
}

/// What a witness's answer means to a writable primary: where the application runs.
/// `Moved` only from positive evidence that it left this site; an answer naming both sites or
/// neither is no evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Application {
    Moved,
    Here,
    Unknown,
}

/// The primary's reading of a witness's answer.
pub fn application(w: &Witness) -> Application {
    match w {
        Witness::Peer(_) => Application::Moved,
        Witness::Here(_) => Application::Here,
        Witness::NotOnlyHere(_) | Witness::Unknown(_) => Application::Unknown,
    }
}

/// One sample of a run on a writable primary site.
#[derive(Clone, Debug, PartialEq)]
pub struct PrimarySample {
    pub at: Timestamp,
    pub run: String,
    pub peer_site: String,
    pub peer: Peer,
    /// Every configured witness's answer.
    pub witnesses: Vec<Witness>,
    /// This site was promoted by the agent (durable promotion record): authoritative when both
    /// are writable and the lineage does not say otherwise.
    pub promoted_here: bool,
    pub own: Own,
    /// This site's own promotion epoch and the highest epoch it has recorded at its peer.
    pub epochs: Epochs,
}

/// This site's own promotion epoch (its marker; 0: never promoted) and the highest it has seen at
/// its peer (`pgdr_epoch_seen`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epochs {
    pub own: u64,
    pub seen: u64,
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
    pub reasons: Vec<Reason>,
    pub next: State,
    /// Fence this site now (on a witness's word: auto mode only; observe mode reports `fence`
    /// without it. On the peer's lineage: every mode).
    pub fence: Option<FenceOrder>,
    /// Both sites writable at this sample.
    pub split_brain: bool,
    /// Call the webhook for the split brain (rate-limited through the state).
    pub notify_webhook: bool,
}

impl GuardDecision {
    /// The reasons as text, in order.
    pub fn reason_texts(&self) -> Vec<String> {
        render(&self.reasons)
    }
}

/// A run on a writable primary site (`standby_cluster` absent, local leader primary, no fence):
/// what the peer is (writable, a standby, unidentified, silent) decides; observe mode holds back
/// a fence that rests on a witness alone; the split brain is recorded and its webhook rate-limited.
pub fn decide_primary(policy: &Policy, state: &State, s: &PrimarySample) -> GuardDecision {
    let mut d = Deciding {
        next: state.clone(),
        reasons: Vec::new(),
        fence: None,
        peer: &s.peer_site,
    };
    let verdict = match &s.peer {
        Peer::Writable(lineage) => d.writable_peer(s, lineage),
        Peer::Standby => d.standby_peer(s),
        Peer::Unidentified(why) => d.unidentified_peer(why),
        Peer::Silent(why) => d.silent_peer(policy, state, s, why),
    };
    d.observe_mode(policy);
    d.finish(policy, s, verdict)
}

/// A primary-role decision in progress.
struct Deciding<'a> {
    next: State,
    reasons: Vec<Reason>,
    fence: Option<FenceOrder>,
    peer: &'a str,
}

impl Deciding<'_> {
    fn say(&mut self, reason: Reason) {
        self.reasons.push(reason);
    }

    /// Both sites writable: the lineage says who is authoritative, or a person must.
    fn writable_peer(&mut self, s: &PrimarySample, lineage: &Lineage) -> Verdict {
        let peer = self.peer.to_string();
        reset_moved(&mut self.next);
        self.next.primary.split_brain_since.get_or_insert(s.at);
        self.say(Reason::SplitBrain {
            peer: peer.clone(),
            lineage: *lineage,
        });
        match lineage {
            Lineage::PeerAuthoritative {
                fork_lsn,
                timeline,
                fork_pending,
                ..
            } => {
                self.say(Reason::PeerNewer {
                    peer,
                    fork_lsn: *fork_lsn,
                    fork_pending: *fork_pending,
                });
                // Everything we wrote past the peer's fork diverged. A pending fork is not
                // recorded: the fenced run records the switchpoint once the peer published it
                // (a rewind judged against the pre-promotion position would see a false hazard).
                self.fence = Some(FenceOrder {
                    reason: FenceReason::PeerAuthoritative,
                    fork: (!*fork_pending).then_some((*timeline, *fork_lsn)),
                    local_end: s.own.wal_end,
                });
                Verdict::Fence
            }
            Lineage::WeAuthoritative { .. } => {
                self.say(Reason::WeNewer { peer });
                Verdict::SplitBrain
            }
            Lineage::ForeignNewer { epoch } => {
                self.say(Reason::ForeignNewer {
                    peer,
                    epoch: *epoch,
                });
                self.fence = Some(FenceOrder {
                    reason: FenceReason::PeerAuthoritative,
                    fork: None,
                    local_end: s.own.wal_end,
                });
                Verdict::Fence
            }
            Lineage::DifferentSystem => {
                self.next.primary.split_brain_since = None;
                self.say(Reason::DifferentSystem);
                Verdict::Unknown
            }
            Lineage::EpochTie { epoch, .. } => {
                self.say(Reason::EpochTie { epoch: *epoch });
                Verdict::SplitBrain
            }
            Lineage::SameTimeline | Lineage::Unrelated if s.promoted_here => {
                self.say(Reason::PromotionRecordHere { peer });
                Verdict::SplitBrain
            }
            Lineage::SameTimeline | Lineage::Unrelated => {
                self.say(Reason::NoLineageProof);
                Verdict::SplitBrain
            }
        }
    }

    fn standby_peer(&mut self, s: &PrimarySample) -> Verdict {
        reset_moved(&mut self.next);
        self.next.primary.split_brain_since = None;
        let peer = self.peer.to_string();
        self.say(Reason::PeerStandby { peer });
        if s.promoted_here {
            Verdict::AlreadyPrimary
        } else {
            Verdict::Ok
        }
    }

    fn unidentified_peer(&mut self, why: &str) -> Verdict {
        reset_moved(&mut self.next);
        let peer = self.peer.to_string();
        self.say(Reason::PeerUnidentified {
            peer,
            why: why.to_string(),
        });
        Verdict::Unknown
    }

    /// A silent peer: only the witnesses can say the application moved; N samples in a row of
    /// "moved" (and none "here") fence this isolated primary.
    fn silent_peer(
        &mut self,
        policy: &Policy,
        state: &State,
        s: &PrimarySample,
        why: &str,
    ) -> Verdict {
        let peer = self.peer.to_string();
        self.next.primary.split_brain_since = None;
        self.say(Reason::PeerSilent {
            peer: peer.clone(),
            why: why.to_string(),
        });
        let read = |want| s.witnesses.iter().any(|w| application(w) == want);
        let (moved, here) = (read(Application::Moved), read(Application::Here));
        for w in &s.witnesses {
            self.say(Reason::Witness(w.clone()));
        }
        if s.witnesses.is_empty() {
            self.say(Reason::NoWitness);
        }
        if !moved || here {
            reset_moved(&mut self.next);
            if here {
                self.say(Reason::WitnessKeepsHere);
            } else if !s.witnesses.is_empty() {
                self.say(Reason::NoWitnessSaysMoved);
            }
            return if s.promoted_here {
                Verdict::AlreadyPrimary
            } else {
                Verdict::PeerUnreachable
            };
        }
        // Isolation never moves authority down: a witness can say the application moved, not
        // that the peer is newer. A site whose own promotion is the newest it knows of does not
        // yield to a peer it cannot see (it is fenced once it sees a newer one).
        if s.epochs.own > s.epochs.seen {
            reset_moved(&mut self.next);
            self.say(Reason::NewestPromotionHere {
                peer,
                own: s.epochs.own,
                seen: s.epochs.seen,
            });
            return Verdict::PeerUnreachable;
        }
        count_moved(policy, state, s.at, &mut self.next, &mut self.reasons);
        if self.next.primary.moved_samples >= policy.failure_threshold {
            self.say(Reason::Moved {
                peer,
                count: self.next.primary.moved_samples,
            });
            self.fence = Some(FenceOrder {
                reason: FenceReason::WitnessMoved,
                fork: None,
                local_end: s.own.wal_end,
            });
            Verdict::Fence
        } else {
            self.say(Reason::MovedCounting {
                peer,
                count: self.next.primary.moved_samples,
                threshold: policy.failure_threshold,
            });
            Verdict::PeerUnreachable
        }
    }

    /// `FAILOVER_FENCING=observe` holds back every fence; `FAILOVER_MODE=observe` holds back only
    /// the fence that rests on a witness's word. A peer at a higher epoch is proof, and the fence
    /// it calls for only stops writes that a rejoin would discard: with fencing `auto` it acts in
    /// every mode (`FAILOVER_MODE` is about promotions).
    fn observe_mode(&mut self, policy: &Policy) {
        let Some(f) = &self.fence else { return };
        if policy.fencing == Fencing::Observe {
            self.say(Reason::FencingObserve(f.reason));
            self.fence = None;
        } else if policy.mode == Mode::Observe && f.reason == FenceReason::WitnessMoved {
            self.say(Reason::ModeObserve);
            self.fence = None;
        }
    }

    /// The split-brain webhook (rate-limited through the state) and the decision record.
    fn finish(mut self, policy: &Policy, s: &PrimarySample, verdict: Verdict) -> GuardDecision {
        let split_brain = matches!(s.peer, Peer::Writable(ref l) if *l != Lineage::DifferentSystem);
        let notify_webhook = split_brain
            && self.next.primary.split_brain_notified_at.is_none_or(|t| {
                s.at.duration_since(t) >= signed(policy.replication_broken_renotify)
            });
        if notify_webhook {
            self.next.primary.split_brain_notified_at = Some(s.at);
        }
        if !split_brain {
            self.next.primary.split_brain_notified_at = None;
        }
        self.next.last_decision = Some(DecisionRecord {
            at: s.at,
            verdict: verdict.to_string(),
            reasons: render(&self.reasons),
            run: s.run.clone(),
        });
        GuardDecision {
            verdict,
            reasons: self.reasons,
            next: self.next,
            fence: self.fence,
            split_brain,
            notify_webhook,
        }
    }
}

fn reset_moved(next: &mut State) {
    next.primary.moved_samples = 0;
    next.primary.moved_since = None;
}

/// Counts a "moved" sample with the same spacing rules as the failover streak: an overlapping
/// run does not count twice, a long gap restarts the count.
fn count_moved(
    policy: &Policy,
    state: &State,
    at: Timestamp,
    next: &mut State,
    reasons: &mut Vec<Reason>,
) {
    if let Some(last) = state.last_sample_at {
        let gap = at.duration_since(last);
        if gap.is_negative() || gap > signed(policy.max_sample_gap) {
            reasons.push(Reason::GapRestartsCount(gap));
            reset_moved(next);
        } else if state.primary.moved_samples > 0 && gap < signed(policy.min_sample_spacing) {
            reasons.push(Reason::Overlapping(gap));
            return;
        }
    }
    next.primary.moved_samples += 1;
    next.primary.moved_since.get_or_insert(at);
    next.last_sample_at = Some(at);
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
