//! Decision tables of the fenced-site runs.

use super::*;
use crate::primary::FenceOrder;
use crate::sample::fixtures::*;
use pgdr_core::contract::fence::FenceReason;

fn hold_fence() -> Fence {
    FenceOrder {
        reason: FenceReason::WitnessMoved,
        fork: None,
        local_end: Some(END),
    }
    .fence(t(-100), "golddr")
}

fn fenced_sample(peer: Peer, preservation: Preservation) -> FencedSample {
    FencedSample {
        at: t(0),
        run: "run-a".into(),
        peer,
        peer_timeline: Some(4),
        own: Own {
            timeline: Some(3),
            wal_end: Some(END),
        },
        own_history: None,
        preservation,
        read_only: true,
        leader_streaming: false,
        target: Ok(()),
        lock_held: true,
        members: Ok(Vec::new()),
    }
}

fn preserved() -> Preservation {
    Preservation::Preserved("pgdr-diverged/3-0_5000A28: 2 files".into())
}

/// Runs the fenced flow sample after sample, like consecutive runs, until nothing changes.
fn walk(rejoin: Rejoin, mut fence: Fence, s: &FencedSample) -> (Vec<Verdict>, Fence, State) {
    let mut state = State::default();
    let mut verdicts = Vec::new();
    for _ in 0..6 {
        let d = decide_fenced(rejoin, &state, &fence, s);
        verdicts.push(d.verdict);
        state = d.next;
        match d.fence {
            Some(f) => fence = f,
            None => break,
        }
    }
    (verdicts, fence, state)
}

#[test]
fn fenced_flow_table() {
    use Verdict::{Fenced, Rejoining};
    let forked = || Peer::Writable(forked_from_us());
    // Diverged, auto: fork recorded → preserve asked → preserved → follow.
    let (v, f, st) = walk(
        Rejoin::Auto,
        hold_fence(),
        &fenced_sample(forked(), preserved()),
    );
    assert_eq!(v, vec![Fenced, Rejoining, Rejoining], "auto, diverged");
    assert_eq!(f.phase, Phase::Follow);
    assert_eq!(f.fork_lsn.map(lsn_text).as_deref(), Some("0/5000A28"));
    assert_eq!(f.diverged_bytes, Some(END - FORK));
    assert_eq!(
        f.preserve,
        Some(Preserve {
            timeline: 3,
            from_lsn: 0x5000A28
        })
    );
    let div = st.fenced.divergence.unwrap();
    assert_eq!((div.timeline, div.diverged_bytes), (3, Some(END - FORK)));

    // Diverged, preservation not done: stays on hold with preserve set.
    let (v, f, _) = walk(
        Rejoin::Auto,
        hold_fence(),
        &fenced_sample(forked(), Preservation::NotYet("copying".into())),
    );
    assert_eq!(v, vec![Fenced, Fenced]);
    assert_eq!(f.phase, Phase::Hold);
    assert!(f.preserve.is_some());

    // Incomplete preservation is enough (the missing segments are named by the sidecar).
    let (_, f, _) = walk(
        Rejoin::Auto,
        hold_fence(),
        &fenced_sample(
            forked(),
            Preservation::Incomplete("missing 1 segment".into()),
        ),
    );
    assert_eq!(f.phase, Phase::Follow);

    // Manual: preserved but not approved → hold; approved → follow.
    let (_, f, _) = walk(
        Rejoin::Manual,
        hold_fence(),
        &fenced_sample(forked(), preserved()),
    );
    assert_eq!(f.phase, Phase::Hold, "manual waits for approval");
    let mut approved = f.clone();
    approved.rejoin_approved_at = Some("2026-11-30T16:05:00Z".into());
    let (_, f, _) = walk(
        Rejoin::Manual,
        approved,
        &fenced_sample(forked(), preserved()),
    );
    assert_eq!(f.phase, Phase::Follow, "approved");

    // Nothing diverged: rejoin at once even with manual, no preserve.
    let mut clean = hold_fence();
    clean.local_end_lsn = Some(FORK);
    let mut s = fenced_sample(forked(), Preservation::NotYet("none".into()));
    s.own.wal_end = Some(FORK);
    let (v, f, _) = walk(Rejoin::Manual, clean, &s);
    assert_eq!(v[0], Rejoining);
    assert_eq!(f.phase, Phase::Follow);
    assert_eq!(f.diverged_bytes, Some(0));
    assert!(f.preserve.is_none());

    // Peer unreachable / standby / other lineage / no target: hold, fence unchanged.
    for (name, peer, target) in [
        ("silent", silent(), Ok(())),
        ("standby", Peer::Standby, Ok(())),
        ("unrelated", Peer::Writable(Lineage::Unrelated), Ok(())),
        (
            "we forked",
            Peer::Writable(Lineage::WeAuthoritative {
                epoch: 2,
                fork_lsn: FORK,
                timeline: 2,
            }),
            Ok(()),
        ),
    ] {
        let mut s = fenced_sample(peer, preserved());
        s.target = target;
        let d = decide_fenced(Rejoin::Auto, &State::default(), &hold_fence(), &s);
        assert_eq!(
            (d.verdict, d.fence.is_none()),
            (Fenced, true),
            "{name}: {:?}",
            d.reasons
        );
    }
    // Fork known and preserved, but no tunnel Service: stays on hold.
    let mut s = fenced_sample(forked(), preserved());
    s.target = Err("tunnel Service missing".into());
    let (_, f, _) = walk(Rejoin::Auto, hold_fence(), &s);
    assert_eq!(f.phase, Phase::Hold);
}

/// An authority whose switchpoint is not yet published (its marker's fork is the position read
/// before its promotion) holds the flow at the fork: nothing is recorded, preserved or followed
/// until the real fork is known; then the flow goes on with it.
#[test]
fn a_pending_fork_is_waited_for() {
    let pending = Peer::Writable(Lineage::PeerAuthoritative {
        epoch: 1,
        timeline: 3,
        fork_lsn: FORK - 0x100,
        fork_pending: true,
    });
    let s = fenced_sample(pending, preserved());
    let d = decide_fenced(Rejoin::Auto, &State::default(), &hold_fence(), &s);
    assert_eq!(d.verdict, Verdict::Fenced);
    assert_eq!(d.fence, None, "nothing written while the fork is pending");
    assert!(
        d.reason_texts()
            .iter()
            .any(|r| r.contains("not yet published")),
        "{:?}",
        d.reasons
    );
    let (_, f, _) = walk(
        Rejoin::Auto,
        hold_fence(),
        &fenced_sample(Peer::Writable(forked_from_us()), preserved()),
    );
    assert_eq!(f.fork_lsn, Some(FORK));
}

#[test]
fn following_becomes_rejoined_once_streaming() {
    let mut f = hold_fence();
    f.phase = Phase::Follow;
    let mut s = fenced_sample(Peer::Writable(forked_from_us()), preserved());
    let d = decide_fenced(Rejoin::Auto, &State::default(), &f, &s);
    assert_eq!(d.verdict, Verdict::Rejoining);
    assert!(d.fence.is_none());
    s.leader_streaming = true;
    let d = decide_fenced(Rejoin::Auto, &State::default(), &f, &s);
    assert_eq!(d.verdict, Verdict::Rejoined);
    assert_eq!(d.next.fenced.rejoined_at, Some(t(0)));
    assert_eq!(d.next.fenced.fence_reason.as_deref(), Some("witness-moved"));
    assert!(d.fence.is_none(), "pgdr_fence stays while following");
}

#[test]
fn divergence_is_announced_once() {
    let s = fenced_sample(
        Peer::Writable(forked_from_us()),
        Preservation::NotYet("copying".into()),
    );
    let d1 = decide_fenced(Rejoin::Auto, &State::default(), &hold_fence(), &s);
    assert!(d1.diverged.is_some());
    let f = d1.fence.unwrap();
    let d2 = decide_fenced(Rejoin::Auto, &d1.next, &f, &s);
    assert!(d2.diverged.is_none(), "same fork, same bytes: not again");
}

#[test]
fn divergence_waits_for_the_demotion_and_takes_the_final_end() {
    let forked = || Peer::Writable(forked_from_us());
    let mut s = fenced_sample(forked(), preserved());
    s.read_only = false;
    let d = decide_fenced(Rejoin::Auto, &State::default(), &hold_fence(), &s);
    assert_eq!(
        (d.verdict, d.fence.is_none(), d.diverged.is_none()),
        (Verdict::Fenced, true, true)
    );
    // Fenced at END, wrote more before Patroni demoted: the later end counts.
    s.read_only = true;
    s.own.wal_end = Some(END + 100);
    let d = decide_fenced(Rejoin::Auto, &State::default(), &hold_fence(), &s);
    assert_eq!(d.diverged.unwrap().diverged_bytes, Some(END + 100 - FORK));
    // On a later timeline of our own (a crash restart after the fork) the end still counts:
    // LSNs go on across our timelines, and the lineage proved we passed the fork.
    s.own.timeline = Some(4);
    s.own.wal_end = Some(END + 300);
    let d = decide_fenced(Rejoin::Auto, &State::default(), &hold_fence(), &s);
    assert_eq!(d.diverged.unwrap().diverged_bytes, Some(END + 300 - FORK));
    // A lower end than the one recorded at the fence never shrinks the divergence.
    s.own.wal_end = Some(END - 10);
    let d = decide_fenced(Rejoin::Auto, &State::default(), &hold_fence(), &s);
    assert_eq!(d.diverged.unwrap().diverged_bytes, Some(END - FORK));
}

#[test]
fn rewind_hazard_table() {
    let ours = |tl, at| {
        Some(vec![HistoryEntry {
            timeline: tl,
            switchpoint: at,
        }])
    };
    // (case, own timeline, own history, peer timeline, following, hazard)
    type Row = (
        &'static str,
        Option<u32>,
        Option<Vec<HistoryEntry>>,
        Option<u32>,
        bool,
        bool,
    );
    let rows: Vec<Row> = vec![
        (
            "never left the fork's timeline",
            Some(3),
            None,
            Some(4),
            false,
            false,
        ),
        (
            "own timeline unknown: no judgement",
            None,
            None,
            Some(4),
            false,
            false,
        ),
        (
            "own 4 after a crash, peer on 4: same number",
            Some(4),
            ours(3, END),
            Some(4),
            false,
            true,
        ),
        (
            "same, already following (and maybe streaming)",
            Some(4),
            ours(3, END),
            Some(4),
            true,
            true,
        ),
        (
            "own 4, peer went on to 5: 4 is looked up by number",
            Some(4),
            ours(3, END),
            Some(5),
            false,
            true,
        ),
        (
            "own 4, history unknown, before following: our own",
            Some(4),
            None,
            Some(4),
            false,
            true,
        ),
        (
            "own 4, history unknown, following: the rewind's result",
            Some(4),
            None,
            Some(4),
            true,
            false,
        ),
        (
            "own 4, peer unknown",
            Some(4),
            ours(3, END),
            None,
            false,
            true,
        ),
        (
            "own 5 above the peer's 4: Patroni rewinds",
            Some(5),
            None,
            Some(4),
            false,
            false,
        ),
        (
            "own history leaves 3 at the fork: the peer's branch",
            Some(4),
            ours(3, FORK),
            Some(4),
            false,
            false,
        ),
        (
            "the peer's branch, following",
            Some(4),
            ours(3, FORK),
            Some(4),
            true,
            false,
        ),
    ];
    for (case, own, history, peer, following, want) in rows {
        let got = rewind_hazard(3, FORK, own, history.as_deref(), peer, following);
        assert_eq!(got.is_some(), want, "{case}: {got:?}");
    }
    let why = rewind_hazard(3, FORK, Some(4), ours(3, END).as_deref(), Some(4), false)
        .unwrap()
        .to_string();
    assert!(
        why.contains("timeline 4 of its own")
            && why.contains("0/6000000")
            && why.contains("re-clone"),
        "{why}"
    );
}

#[test]
fn a_timeline_of_our_own_numbered_like_the_peers_is_never_followed() {
    let forked = || Peer::Writable(forked_from_us());
    // Crash-restarted after the fork: on timeline 4 of our own; the peer is on 4 too.
    let mut s = fenced_sample(forked(), preserved());
    s.own.timeline = Some(4);
    s.own_history = Some(vec![HistoryEntry {
        timeline: 3,
        switchpoint: END,
    }]);
    let (v, f, st) = walk(Rejoin::Auto, hold_fence(), &s);
    assert!(v.iter().all(|v| *v == Verdict::Fenced), "{v:?}");
    assert_eq!(f.phase, Phase::Hold, "never follows");
    assert!(st.fenced.reclone_required_at.is_some());
    assert!(f.reclone.is_some(), "a re-clone is requested instead");
    // Announced once.
    let mut f = f.clone();
    f.reclone = None;
    let d1 = decide_fenced(Rejoin::Auto, &State::default(), &f, &s);
    assert!(d1.reclone.is_some());
    let d2 = decide_fenced(Rejoin::Auto, &d1.next, &f, &s);
    assert!(d2.reclone.is_none(), "not again");
    // Already following (an older agent, or the peer moved to our number later) and even
    // streaming: back to hold, not "rejoined".
    let mut following = f.clone();
    following.phase = Phase::Follow;
    s.leader_streaming = true;
    let d = decide_fenced(Rejoin::Auto, &State::default(), &following, &s);
    assert_eq!(d.verdict, Verdict::Fenced);
    assert_eq!(d.fence.map(|f| f.phase), Some(Phase::Hold));
    assert_eq!(d.next.fenced.rejoined_at, None);
    // Re-cloned from the peer: our history now leaves 3 at the fork, so it follows and rejoins.
    s.own_history = Some(vec![HistoryEntry {
        timeline: 3,
        switchpoint: FORK,
    }]);
    let d = decide_fenced(Rejoin::Auto, &d1.next, &following, &s);
    assert_eq!(d.verdict, Verdict::Rejoined);
    assert_eq!(d.next.fenced.reclone_required_at, None);
}

#[test]
fn a_colliding_timeline_is_recloned_once_every_member_moved_its_data() {
    let forked = || Peer::Writable(forked_from_us());
    let mut s = fenced_sample(forked(), preserved());
    s.own.timeline = Some(4);
    s.own_history = Some(vec![HistoryEntry {
        timeline: 3,
        switchpoint: END,
    }]);
    // The walk ends at the request: preserved, auto, peer authoritative and a target.
    let (_, f, st) = walk(Rejoin::Auto, hold_fence(), &s);
    let request = f.reclone.clone().expect("a re-clone is requested");
    assert_eq!(request.requested_at, t(0).to_string());
    assert!(
        !request.keep_data,
        "the WAL copy is complete: the old data goes"
    );
    assert_eq!(f.phase, Phase::Hold);
    // Members: the site's leader is gone once they moved their data (no timeline, not
    // read-only), which must not stop the step.
    s.own = Own {
        timeline: None,
        wal_end: None,
    };
    s.read_only = false;
    s.lock_held = false;
    let moved = |id: &str| MemberReclone::Moved(id.to_string());
    let rows: Vec<(&str, MemberReports, bool)> = vec![
        ("pods not listed", Err("403".into()), false),
        ("no pods", Ok(vec![]), false),
        (
            "one of two moved",
            Ok(vec![
                ("p-0".into(), moved(&request.requested_at)),
                (
                    "p-1".into(),
                    MemberReclone::NotYet("sidecar unreachable".into()),
                ),
            ]),
            false,
        ),
        (
            "moved for an older request",
            Ok(vec![("p-0".into(), moved("2026-01-01T00:00:00Z"))]),
            false,
        ),
        (
            "both moved",
            Ok(vec![
                ("p-0".into(), moved(&request.requested_at)),
                ("p-1".into(), moved(&request.requested_at)),
            ]),
            true,
        ),
    ];
    for (case, members, go) in rows {
        s.members = members;
        let d = decide_fenced(Rejoin::Auto, &st, &f, &s);
        assert_eq!(d.clear_initialize, go, "{case}: {:?}", d.reasons);
        if go {
            assert_eq!(d.verdict, Verdict::Rejoining, "{case}");
            assert_eq!(
                d.fence.as_ref().map(|f| f.phase),
                Some(Phase::Follow),
                "{case}"
            );
        } else {
            assert_eq!(d.verdict, Verdict::Fenced, "{case}");
            assert_eq!(d.fence, None, "{case}: nothing changes while it waits");
            assert!(
                d.reason_texts()
                    .iter()
                    .any(|r| r.contains("re-clone requested")),
                "{case}"
            );
        }
    }
    // Patroni has not released its lock yet (it would restore the initialize key): waits.
    s.lock_held = true;
    let d = decide_fenced(Rejoin::Auto, &st, &f, &s);
    assert!(!d.clear_initialize && d.fence.is_none(), "{:?}", d.reasons);
    assert!(
        d.reason_texts().iter().any(|r| r.contains("leader lock")),
        "{:?}",
        d.reasons
    );
    s.lock_held = false;
    // Without a follow target it stays on hold, even with every member moved.
    s.target = Err("tunnel Service has no port".into());
    let d = decide_fenced(Rejoin::Auto, &st, &f, &s);
    assert!(!d.clear_initialize && d.fence.is_none(), "{:?}", d.reasons);
    s.target = Ok(());
    // Cloned and streaming on the peer's branch: rejoined, the request is removed.
    let mut following = f.clone();
    following.phase = Phase::Follow;
    s.own = Own {
        timeline: Some(4),
        wal_end: Some(END + 100),
    };
    s.own_history = Some(vec![HistoryEntry {
        timeline: 3,
        switchpoint: FORK,
    }]);
    s.read_only = true;
    s.leader_streaming = true;
    let d = decide_fenced(Rejoin::Auto, &st, &following, &s);
    assert_eq!(d.verdict, Verdict::Rejoined, "{:?}", d.reasons);
    assert_eq!(d.fence.as_ref().and_then(|f| f.reclone.clone()), None);
    assert!(d.next.fenced.recloned_at.is_some() && d.next.fenced.reclone_required_at.is_none());
}

#[test]
fn reclone_is_not_requested_without_approval_proof_or_a_target() {
    let forked = || Peer::Writable(forked_from_us());
    let colliding = |peer: Peer, preservation: Preservation| {
        let mut s = fenced_sample(peer, preservation);
        s.own.timeline = Some(4);
        s.own_history = Some(vec![HistoryEntry {
            timeline: 3,
            switchpoint: END,
        }]);
        s
    };
    // Manual rejoin: no request before `kubectl pgdr rejoin`.
    let (_, f, _) = walk(
        Rejoin::Manual,
        hold_fence(),
        &colliding(forked(), preserved()),
    );
    assert_eq!(f.reclone, None, "manual, not approved");
    let mut approved = f.clone();
    approved.rejoin_approved_at = Some(t(5).to_string());
    let d = decide_fenced(
        Rejoin::Manual,
        &State::default(),
        &approved,
        &colliding(forked(), preserved()),
    );
    assert!(
        d.fence.and_then(|f| f.reclone).is_some(),
        "approved: requested"
    );
    // Preservation still copying: no request.
    let (_, f, _) = walk(
        Rejoin::Auto,
        hold_fence(),
        &colliding(forked(), Preservation::NotYet("copying".into())),
    );
    assert_eq!(f.reclone, None, "not preserved yet");
    // Incomplete copy: requested, keeping the old data directory.
    let (_, f, _) = walk(
        Rejoin::Auto,
        hold_fence(),
        &colliding(forked(), Preservation::Incomplete("missing 1".into())),
    );
    assert_eq!(f.reclone.map(|r| r.keep_data), Some(true));
    // No follow target now: no request (nothing to clone from).
    let mut s = colliding(forked(), preserved());
    let (_, f, _) = walk(Rejoin::Auto, hold_fence(), &s);
    s.target = Err("no tunnel Service".into());
    let mut unrequested = f.clone();
    unrequested.reclone = None;
    let d = decide_fenced(Rejoin::Auto, &State::default(), &unrequested, &s);
    assert!(
        d.fence.and_then(|f| f.reclone).is_none(),
        "no target: {:?}",
        d.reasons
    );
}

#[test]
fn rejoin_fork_table() {
    let tie = |pending| Lineage::EpochTie {
        epoch: 2,
        timeline: 3,
        fork_lsn: FORK,
        fork_pending: pending,
    };
    let ours = Lineage::WeAuthoritative {
        epoch: 2,
        timeline: 2,
        fork_lsn: 0x400,
    };
    let pending_peer = Lineage::PeerAuthoritative {
        epoch: 3,
        timeline: 3,
        fork_lsn: FORK,
        fork_pending: true,
    };
    let rows: Vec<(&str, Lineage, bool, RejoinFork)> = vec![
        (
            "agent: the higher epoch",
            forked_from_us(),
            false,
            RejoinFork::At(3, FORK),
        ),
        (
            "agent: its fork pending",
            pending_peer,
            false,
            RejoinFork::Pending,
        ),
        (
            "agent: a tie is never rejoined",
            tie(false),
            false,
            RejoinFork::None,
        ),
        (
            "agent: never onto an older promotion",
            ours,
            false,
            RejoinFork::None,
        ),
        (
            "operator: the higher epoch",
            forked_from_us(),
            true,
            RejoinFork::At(3, FORK),
        ),
        (
            "operator: a tie, the peer's marker",
            tie(false),
            true,
            RejoinFork::At(3, FORK),
        ),
        (
            "operator: a tie, the peer's fork pending",
            tie(true),
            true,
            RejoinFork::Pending,
        ),
        (
            "operator: our promotion is newer, our own fork",
            ours,
            true,
            RejoinFork::At(2, 0x400),
        ),
        (
            "operator: another database",
            Lineage::DifferentSystem,
            true,
            RejoinFork::None,
        ),
        (
            "operator: no promotion anywhere",
            Lineage::SameTimeline,
            true,
            RejoinFork::None,
        ),
        (
            "operator: a fresh site beside us",
            Lineage::ForeignNewer { epoch: 1 },
            true,
            RejoinFork::None,
        ),
    ];
    for (name, lineage, by_operator, want) in rows {
        assert_eq!(rejoin_fork(&lineage, by_operator), want, "{name}");
    }
}

/// Issue 20 item 3: a person's fence goes through the same flow as the agent's — fork recorded,
/// divergence recorded, WAL preserved — even at a tie, where the agent alone would never act.
#[test]
fn an_operator_fence_at_a_tie_records_and_preserves_before_it_follows() {
    let tie = Peer::Writable(Lineage::EpochTie {
        epoch: 2,
        timeline: 3,
        fork_lsn: FORK,
        fork_pending: false,
    });
    let operator = Fence::hold(t(-100), FenceReason::Operator, "golddr");
    let (v, f, st) = walk(
        Rejoin::Auto,
        operator,
        &fenced_sample(tie.clone(), preserved()),
    );
    assert_eq!(
        v,
        vec![Verdict::Fenced, Verdict::Rejoining, Verdict::Rejoining]
    );
    assert_eq!(f.phase, Phase::Follow);
    assert_eq!(
        f.preserve,
        Some(Preserve {
            timeline: 3,
            from_lsn: FORK
        })
    );
    assert_eq!(
        st.fenced.divergence.unwrap().diverged_bytes,
        Some(END - FORK)
    );
    // The same tie under the agent's own fence: held, nothing asked.
    let agent = hold_fence();
    let (v, f, _) = walk(Rejoin::Auto, agent, &fenced_sample(tie, preserved()));
    assert_eq!(v, vec![Verdict::Fenced]);
    assert_eq!((f.phase, f.preserve), (Phase::Hold, None));
}

/// Runs of a site in phase follow, at these offsets from `t(0)`, each with what `adjust` makes of
/// the sample; the state carried from run to run.
fn follow_runs(
    fence: &Fence,
    at: &[i64],
    adjust: impl Fn(i64, &mut FencedSample),
) -> Vec<FencedDecision> {
    let mut state = State::default();
    at.iter()
        .map(|&secs| {
            let mut s = fenced_sample(Peer::Writable(forked_from_us()), preserved());
            s.at = t(secs);
            adjust(secs, &mut s);
            let d = decide_fenced(Rejoin::Auto, &state, fence, &s);
            state = d.next.clone();
            d
        })
        .collect()
}

#[test]
fn a_follow_that_never_leaves_the_forked_timeline_is_recloned_after_the_stall_bound() {
    // The walk writes the follow form (own timeline 3 = the one the peer left: no hazard).
    let s = fenced_sample(Peer::Writable(forked_from_us()), preserved());
    let (_, follow, _) = walk(Rejoin::Auto, hold_fence(), &s);
    assert_eq!(follow.phase, Phase::Follow);
    let bound = FOLLOW_STALL.as_secs();

    // Still on timeline 3, not streaming, the peer reachable: following until the bound, then
    // back to hold with a re-clone request (the WAL past the fork was preserved).
    let d = follow_runs(&follow, &[0, bound / 2, bound - 1, bound], |_, _| {});
    assert!(
        d[..3]
            .iter()
            .all(|d| d.verdict == Verdict::Rejoining && d.fence.is_none())
    );
    assert_eq!(d[2].next.fenced.follow_stalled_since, Some(t(0)));
    let last = &d[3];
    assert_eq!(last.verdict, Verdict::Fenced);
    assert!(last.reclone_requested);
    let f = last.fence.as_ref().expect("the fence is rewritten");
    assert_eq!(f.phase, Phase::Hold);
    assert_eq!(
        f.reclone
            .as_ref()
            .map(|r| (r.requested_at.clone(), r.keep_data)),
        Some((t(bound).to_string(), false))
    );
    assert_eq!(last.next.fenced.follow_stalled_since, None);
    assert!(
        last.reason_texts()
            .iter()
            .any(|r| r.contains("did not rewind")),
        "{:?}",
        last.reason_texts()
    );

    // Whatever Patroni could not do restarts the clock: the peer silent, the tunnel Service
    // gone, or a moment of streaming.
    type Adjust = fn(&mut FencedSample);
    let interruptions: [(&str, Adjust); 3] = [
        ("peer silent", |s| s.peer = Peer::Silent("timeout".into())),
        ("no target", |s| s.target = Err("no tunnel Service".into())),
        ("streaming", |s| s.leader_streaming = true),
    ];
    for (what, interrupt) in interruptions {
        let half = bound / 2;
        let d = follow_runs(
            &follow,
            &[0, half, bound - 1, bound, bound + half],
            |secs, s| {
                if secs == bound - 1 {
                    interrupt(s);
                }
            },
        );
        assert!(
            d.iter().all(|d| !d.reclone_requested && d.fence.is_none()),
            "{what}: {:?}",
            d.iter().map(|d| d.verdict).collect::<Vec<_>>()
        );
        assert_eq!(
            d[4].next.fenced.follow_stalled_since,
            Some(t(bound)),
            "{what}"
        );
    }

    // On the peer's timeline number with no history of ours to prove the rewind (a crashed
    // site reporting the number it was asked to follow, chaos seed 1017): re-cloned too.
    let d = follow_runs(&follow, &[0, bound], |_, s| s.own.timeline = Some(4));
    assert!(d[1].reclone_requested, "{:?}", d[1].reason_texts());

    // Not past the fork (rewound: replaying the peer's WAL from before it), or the position
    // unknown: no stall however long.
    for end in [Some(FORK), None] {
        let d = follow_runs(&follow, &[0, bound, 3 * bound], |_, s| s.own.wal_end = end);
        assert!(
            d.iter().all(|d| !d.reclone_requested && d.fence.is_none()),
            "{end:?}"
        );
    }

    // A history that leaves 3 at the fork proves nothing (the WAL receiver fetches the peer's
    // history files): not streaming after the bound, it is re-cloned as well.
    let d = follow_runs(&follow, &[0, bound], |_, s| {
        s.own.timeline = Some(4);
        s.own_history = Some(vec![HistoryEntry {
            timeline: 3,
            switchpoint: FORK,
        }]);
    });
    assert!(d[1].reclone_requested, "{:?}", d[1].reason_texts());

    // A stall whose preservation cannot be read now holds without a request (the guard of the
    // re-clone step), rather than re-cloning blind.
    let d = follow_runs(&follow, &[0, bound], |secs, s| {
        if secs == bound {
            s.preservation = Preservation::NotYet("sidecar unreachable".into());
        }
    });
    assert_eq!(d[1].verdict, Verdict::Fenced);
    assert!(!d[1].reclone_requested);
    assert_eq!(d[1].fence.as_ref().map(|f| f.phase), Some(Phase::Hold));
}
