//! Property tests of the primary-role guard (issue 21 item 5): when a writable primary may fence
//! itself, for every peer, witness answer, epoch and policy, and along any sequence of runs.
//!
//! The witness vocabulary (`Placement`, being renamed elsewhere) is used only in [`placement`],
//! [`says_moved`] and [`says_here`]: fix those three.

use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use super::*;
use crate::standby::{Fencing, Mode, Policy, Verdict};
use crate::state::PrimaryState;
use crate::witness::Witness;
use pgdr_core::contract::fence::FenceReason;

const CASES: u32 = 256;

fn t(secs: i64) -> Timestamp {
    crate::sample::fixtures::t(secs)
}

// --- the witness vocabulary, in one place -------------------------------------------------

/// A witness answer: 0 the application runs on the peer, 1 here, 2 unknown.
fn placement(kind: u8, n: usize) -> Witness {
    match kind {
        0 => Witness::Peer(format!("witness {n}: the application runs on the peer")),
        1 => Witness::Here(format!("witness {n}: the application runs here")),
        _ => Witness::Unknown(format!("witness {n}: no answer")),
    }
}

fn says_moved(p: &Witness) -> bool {
    matches!(p, Witness::Peer(_))
}

fn says_here(p: &Witness) -> bool {
    matches!(p, Witness::Here(_))
}

// --- generators ------------------------------------------------------------------------------

fn policy() -> impl Strategy<Value = Policy> {
    (any::<bool>(), any::<bool>(), 0u32..5, 0u64..10, 30u64..200).prop_map(
        |(auto, fence_auto, n, spacing, gap)| Policy {
            mode: if auto { Mode::Auto } else { Mode::Observe },
            fencing: if fence_auto {
                Fencing::Auto
            } else {
                Fencing::Observe
            },
            failure_threshold: n,
            min_sample_spacing: Duration::from_secs(spacing),
            max_sample_gap: Duration::from_secs(gap),
            ..crate::sample::fixtures::policy(Mode::Auto)
        },
    )
}

/// Every verdict of the authority rule, with small numbers.
fn lineage() -> impl Strategy<Value = Lineage> {
    (1u64..5, 1u32..6, 0u64..0x1000, any::<bool>()).prop_flat_map(
        |(epoch, timeline, fork_lsn, fork_pending)| {
            prop_oneof![
                Just(Lineage::DifferentSystem),
                Just(Lineage::ForeignNewer { epoch }),
                Just(Lineage::SameTimeline),
                Just(Lineage::PeerAuthoritative {
                    epoch,
                    timeline,
                    fork_lsn,
                    fork_pending
                }),
                Just(Lineage::WeAuthoritative {
                    epoch,
                    timeline,
                    fork_lsn
                }),
                Just(Lineage::Unrelated),
                Just(Lineage::EpochTie {
                    epoch,
                    timeline,
                    fork_lsn,
                    fork_pending
                }),
            ]
        },
    )
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        4 => Just(Peer::Silent("connection refused".into())),
        1 => Just(Peer::Unidentified("the database system is starting up".into())),
        1 => Just(Peer::Standby),
        3 => lineage().prop_map(Peer::Writable),
    ]
}

fn placements() -> impl Strategy<Value = Vec<Witness>> {
    prop::collection::vec(
        prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        0..4,
    )
    .prop_map(|kinds| {
        kinds
            .into_iter()
            .enumerate()
            .map(|(n, k)| placement(k, n))
            .collect()
    })
}

fn epochs() -> impl Strategy<Value = Epochs> {
    (0u64..4, 0u64..4).prop_map(|(own, seen)| Epochs { own, seen })
}

fn sample_at(at: impl Strategy<Value = Timestamp>) -> impl Strategy<Value = PrimarySample> {
    (
        at,
        peer(),
        placements(),
        prop::bool::weighted(0.3),
        prop::option::of(1u32..6),
        prop::option::of(0u64..0x2000),
        epochs(),
    )
        .prop_map(
            |(at, peer, placements, promoted_here, timeline, wal_end, epochs)| PrimarySample {
                at,
                run: "run-a".into(),
                peer_site: "golddr".into(),
                peer,
                witnesses: placements,
                promoted_here,
                own: Own { timeline, wal_end },
                epochs,
            },
        )
}

fn state() -> impl Strategy<Value = State> {
    (
        0u32..5,
        prop::option::of((-200i64..0).prop_map(t)),
        prop::option::of((-200i64..0).prop_map(t)),
    )
        .prop_map(|(moved_samples, moved_since, last_sample_at)| State {
            primary: PrimaryState {
                moved_samples,
                moved_since,
                ..PrimaryState::default()
            },
            last_sample_at,
            ..State::default()
        })
}

/// Runs some seconds apart (0: an overlapping run).
fn samples() -> impl Strategy<Value = Vec<PrimarySample>> {
    prop::collection::vec((0i64..40, sample_at(Just(t(0)))), 1..16).prop_map(|steps| {
        let mut now = 0;
        steps
            .into_iter()
            .map(|(dt, s)| {
                now += dt;
                PrimarySample { at: t(now), ..s }
            })
            .collect()
    })
}

// --- what a decision must satisfy -------------------------------------------------------------

/// The peer is silent and a witness says positively that the application moved there, none says
/// it runs here, and this site's own promotion is not the newest it knows of.
fn moved_sample(s: &PrimarySample) -> bool {
    matches!(s.peer, Peer::Silent(_))
        && s.witnesses.iter().any(says_moved)
        && !s.witnesses.iter().any(says_here)
        && s.epochs.own <= s.epochs.seen
}

fn check(p: &Policy, s: &PrimarySample, d: &GuardDecision) -> Result<(), TestCaseError> {
    // A fence is only ever ordered with the verdict `fence`, and never with FENCING=observe.
    if d.fence.is_some() {
        prop_assert_eq!(d.verdict, Verdict::Fence);
        prop_assert_eq!(p.fencing, Fencing::Auto);
    }
    // Split brain is both sites writable, of one database.
    prop_assert_eq!(
        d.split_brain,
        matches!(&s.peer, Peer::Writable(l) if *l != Lineage::DifferentSystem)
    );
    if d.verdict != Verdict::Fence {
        prop_assert!(d.fence.is_none());
        return Ok(());
    }
    match &s.peer {
        // Proof: the peer is writable at a higher epoch (or this site is another database
        // initialised beside a promoted one). Never when this site holds the newer promotion, a
        // tie, or no promotion at all.
        Peer::Writable(l) => {
            prop_assert!(
                matches!(
                    l,
                    Lineage::PeerAuthoritative { .. } | Lineage::ForeignNewer { .. }
                ),
                "fenced against {l:?}"
            );
            if let Some(f) = &d.fence {
                prop_assert_eq!(f.reason, FenceReason::PeerAuthoritative);
                prop_assert_eq!(f.local_end, s.own.wal_end);
                // The fork recorded is the authority's own, and only once it is published.
                let want = match *l {
                    Lineage::PeerAuthoritative {
                        timeline,
                        fork_lsn,
                        fork_pending: false,
                        ..
                    } => Some((timeline, fork_lsn)),
                    _ => None,
                };
                prop_assert_eq!(f.fork, want);
            }
        }
        // A witness's word: the peer silent, a witness says the application moved there, none
        // says here, our promotion is not the newest we know of, N samples counted; never in
        // observe mode.
        Peer::Silent(_) => {
            prop_assert!(
                moved_sample(s),
                "fenced on {:?} / {:?}",
                s.witnesses,
                s.epochs
            );
            prop_assert!(d.next.primary.moved_samples >= p.failure_threshold.max(1));
            if let Some(f) = &d.fence {
                prop_assert_eq!(f.reason, FenceReason::WitnessMoved);
                prop_assert_eq!(f.fork, None);
                prop_assert_eq!(p.mode, Mode::Auto);
            }
        }
        other => prop_assert!(false, "fenced with the peer {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// One decision, any input: a fence only on proof (the peer writable at a higher epoch,
    /// the fork the authority's) or on N samples of a witness's word while the peer is silent
    /// (never with a witness saying "here", never when this site's epoch is the newest it
    /// knows); never with FAILOVER_FENCING=observe, never on a witness in observe mode.
    #[test]
    fn a_fence_needs_proof_or_a_witness(p in policy(), st in state(), s in sample_at(Just(t(0)))) {
        let d = decide_primary(&p, &st, &s);
        check(&p, &s, &d)?;
    }

    /// A site whose promotion is the newest it knows of never fences itself on a witness, and a
    /// site holding the newer promotion (or a tie, or no proof) never fences itself at all.
    #[test]
    fn the_higher_epoch_is_never_fenced(
        p in policy(), st in state(), s in sample_at(Just(t(0))), lead in 1u64..4,
    ) {
        let mut s = s;
        s.epochs.own = s.epochs.seen + lead;
        let d = decide_primary(&p, &st, &s);
        if matches!(s.peer, Peer::Silent(_)) {
            prop_assert!(d.verdict != Verdict::Fence && d.fence.is_none(), "{:?}", d.reasons);
        }
        for l in [Lineage::WeAuthoritative { epoch: 2, timeline: 1, fork_lsn: 0 },
                  Lineage::EpochTie { epoch: 2, timeline: 1, fork_lsn: 0, fork_pending: false },
                  Lineage::SameTimeline, Lineage::Unrelated, Lineage::DifferentSystem] {
            let s = PrimarySample { peer: Peer::Writable(l), ..s.clone() };
            let d = decide_primary(&p, &st, &s);
            prop_assert!(d.verdict != Verdict::Fence && d.fence.is_none(), "{:?}", d.reasons);
        }
    }

    /// A witness saying the application runs here always keeps this site writable when the peer
    /// is silent (it may still be fenced on proof when the peer is writable at a higher epoch).
    #[test]
    fn a_witness_saying_here_keeps_a_silent_peers_primary(
        p in policy(), st in state(), s in sample_at(Just(t(0))), i in 0usize..4,
    ) {
        let mut s = PrimarySample { peer: Peer::Silent("timeout".into()), ..s };
        let i = i.min(s.witnesses.len());
        s.witnesses.insert(i, placement(1, 9));
        let d = decide_primary(&p, &st, &s);
        prop_assert!(d.verdict != Verdict::Fence && d.fence.is_none());
        prop_assert_eq!(d.next.primary.moved_samples, 0);
    }

    /// Along any sequence of runs from a fresh state: every fence on a witness's word comes after
    /// at least N consecutive "moved" samples (anything else restarts the count), and every
    /// decision satisfies the one-step rules.
    #[test]
    fn a_witness_fence_rests_on_n_samples(p in policy(), ss in samples()) {
        let mut st = State::default();
        let mut run = 0usize;
        for s in &ss {
            let d = decide_primary(&p, &st, s);
            check(&p, s, &d)?;
            run = if moved_sample(s) { run + 1 } else { 0 };
            if d.verdict == Verdict::Fence && matches!(s.peer, Peer::Silent(_)) {
                prop_assert!(run >= p.failure_threshold.max(1) as usize,
                    "fenced after {run} moved samples, N = {}", p.failure_threshold);
            }
            st = d.next;
        }
    }

    /// The agent vouches for a primary the readiness sidecar withholds only with fresh evidence:
    /// the sidecar waits, the read of the peer is not older than the wait, and the peer's
    /// dynamic config is a standby cluster; the vouch names this site's epoch, and it covers
    /// exactly this return at this epoch.
    #[test]
    fn a_vouch_needs_fresh_evidence_of_a_standby_peer(
        awaiting in prop::option::of(-50i64..50), at in -50i64..50, epoch in 0u64..5,
        peer_standby in prop_oneof![Just(Ok(true)), Just(Ok(false)),
            Just(Err("the peer's API cannot be read".to_string()))],
        other_epoch in 0u64..5,
    ) {
        let got = vouch_from(awaiting.map(t), t(at), epoch, peer_standby.clone());
        let fresh = awaiting.is_some_and(|since| at >= since);
        prop_assert_eq!(got.is_ok(), fresh && peer_standby == Ok(true), "{:?}", got);
        if let (Ok(v), Some(since)) = (got, awaiting) {
            prop_assert_eq!((v.at, v.epoch), (t(at), epoch));
            prop_assert!(v.covers(t(since), epoch));
            prop_assert_eq!(v.covers(t(since), other_epoch), other_epoch == epoch);
            // A later return (the primary became one again after the evidence) is not covered.
            prop_assert!(!v.covers(t(at + 1), epoch));
        }
    }

    /// The same input gives the same decision.
    #[test]
    fn decisions_are_deterministic(p in policy(), st in state(), s in sample_at(Just(t(0)))) {
        prop_assert_eq!(decide_primary(&p, &st, &s), decide_primary(&p, &st.clone(), &s.clone()));
    }
}

/// The generators reach both kinds of fence, so the properties above are not vacuous.
#[test]
fn the_generators_reach_fences() {
    let mut runner = TestRunner::deterministic();
    let (mut proof, mut witness) = (0, 0);
    for _ in 0..300 {
        let (p, ss) = (policy(), samples())
            .new_tree(&mut runner)
            .expect("a value")
            .current();
        let mut st = State::default();
        for s in &ss {
            let d = decide_primary(&p, &st, s);
            match d.fence.as_ref().map(|f| f.reason) {
                Some(FenceReason::PeerAuthoritative) => proof += 1,
                Some(FenceReason::WitnessMoved) => witness += 1,
                _ => {}
            }
            st = d.next;
        }
    }
    assert!(
        proof >= 20 && witness >= 10,
        "fences on proof {proof}, on a witness {witness}"
    );
}
