//! Decision tables of the primary-role runs.

use super::*;
use crate::sample::fixtures::*;
use crate::state::PrimaryState;
use pgdr_core::contract::fence::Phase;
use pgdr_core::contract::lsn::format as lsn_text;

fn sample(at: i64, peer: Peer, witnesses: Vec<Witness>) -> PrimarySample {
    PrimarySample {
        at: t(at),
        run: "run-a".into(),
        peer_site: "golddr".into(),
        peer,
        witnesses,
        promoted_here: false,
        own: Own {
            timeline: Some(3),
            wal_end: Some(END),
        },
        epochs: Epochs::default(),
    }
}

fn moved() -> Witness {
    Witness::Peer("HTTP witness: the GSLB sends the application to golddr".into())
}
fn here() -> Witness {
    Witness::Here("HTTP witness: the GSLB sends the application to gold".into())
}
fn unknown() -> Witness {
    Witness::Unknown("DNS witness: no answer".into())
}

#[test]
fn primary_role_table() {
    use Verdict::*;
    struct Row {
        name: &'static str,
        peer: Peer,
        witnesses: Vec<Witness>,
        promoted_here: bool,
        state: State,
        verdict: Verdict,
        fence: Option<(FenceReason, Option<(u32, u64)>)>,
        split_brain: bool,
    }
    let counted = |n: u32| State {
        primary: PrimaryState {
            moved_samples: n,
            moved_since: Some(t(-20)),
            ..PrimaryState::default()
        },
        last_sample_at: Some(t(-10)),
        ..State::default()
    };
    let rows = vec![
        Row {
            name: "peer promoted from us: fence with the fork",
            peer: Peer::Writable(forked_from_us()),
            witnesses: vec![],
            promoted_here: false,
            state: State::default(),
            verdict: Fence,
            fence: Some((FenceReason::PeerAuthoritative, Some((3, FORK)))),
            split_brain: true,
        },
        Row {
            name: "peer promoted from us wins over an old promotion record here",
            peer: Peer::Writable(forked_from_us()),
            witnesses: vec![here()],
            promoted_here: true,
            state: State::default(),
            verdict: Fence,
            fence: Some((FenceReason::PeerAuthoritative, Some((3, FORK)))),
            split_brain: true,
        },
        Row {
            name: "the peer's fork is still pending: fence at once, but record no fork (the \
                   fenced run records the published switchpoint)",
            peer: Peer::Writable(Lineage::PeerAuthoritative {
                epoch: 1,
                timeline: 3,
                fork_lsn: FORK - 0x100,
                fork_pending: true,
            }),
            witnesses: vec![],
            promoted_here: false,
            state: State::default(),
            verdict: Fence,
            fence: Some((FenceReason::PeerAuthoritative, None)),
            split_brain: true,
        },
        Row {
            name: "we were promoted from the peer: split brain, we keep writing",
            peer: Peer::Writable(Lineage::WeAuthoritative {
                epoch: 2,
                fork_lsn: FORK,
                timeline: 2,
            }),
            witnesses: vec![],
            promoted_here: true,
            state: State::default(),
            verdict: SplitBrain,
            fence: None,
            split_brain: true,
        },
        Row {
            name: "unrelated forks: split brain, nobody fenced",
            peer: Peer::Writable(Lineage::Unrelated),
            witnesses: vec![moved()],
            promoted_here: false,
            state: State::default(),
            verdict: SplitBrain,
            fence: None,
            split_brain: true,
        },
        Row {
            name: "same timeline: split brain, nobody fenced",
            peer: Peer::Writable(Lineage::SameTimeline),
            witnesses: vec![],
            promoted_here: false,
            state: State::default(),
            verdict: SplitBrain,
            fence: None,
            split_brain: true,
        },
        Row {
            name: "both promoted at the same epoch: split brain, nobody fenced, even with the \
                   promotion record here",
            peer: Peer::Writable(Lineage::EpochTie {
                epoch: 2,
                timeline: 1,
                fork_lsn: 0x100,
                fork_pending: false,
            }),
            witnesses: vec![moved()],
            promoted_here: true,
            state: State::default(),
            verdict: SplitBrain,
            fence: None,
            split_brain: true,
        },
        Row {
            name: "another database at a higher epoch: this site was initialised afresh beside \
                   the authority; it fences itself (hold, fork unknown)",
            peer: Peer::Writable(Lineage::ForeignNewer { epoch: 2 }),
            witnesses: vec![],
            promoted_here: false,
            state: State::default(),
            verdict: Fence,
            fence: Some((FenceReason::PeerAuthoritative, None)),
            split_brain: true,
        },
        Row {
            name: "another database behind the tunnel: not our peer, nothing done",
            peer: Peer::Writable(Lineage::DifferentSystem),
            witnesses: vec![],
            promoted_here: false,
            state: State::default(),
            verdict: Unknown,
            fence: None,
            split_brain: false,
        },
        Row {
            name: "peer is a standby: ok",
            peer: Peer::Standby,
            witnesses: vec![],
            promoted_here: false,
            state: counted(2),
            verdict: Ok,
            fence: None,
            split_brain: false,
        },
        Row {
            name: "promoted site, peer a standby: already-primary",
            peer: Peer::Standby,
            witnesses: vec![],
            promoted_here: true,
            state: State::default(),
            verdict: AlreadyPrimary,
            fence: None,
            split_brain: false,
        },
        Row {
            name: "peer answers but cannot be identified: nothing done",
            peer: Peer::Unidentified("28P01 password authentication failed".into()),
            witnesses: vec![moved()],
            promoted_here: false,
            state: counted(2),
            verdict: Unknown,
            fence: None,
            split_brain: false,
        },
        Row {
            name: "silent peer, witness keeps the application here: warning",
            peer: silent(),
            witnesses: vec![here()],
            promoted_here: false,
            state: State::default(),
            verdict: PeerUnreachable,
            fence: None,
            split_brain: false,
        },
        Row {
            name: "silent peer, witness unknown: warning",
            peer: silent(),
            witnesses: vec![unknown()],
            promoted_here: false,
            state: counted(2),
            verdict: PeerUnreachable,
            fence: None,
            split_brain: false,
        },
        Row {
            name: "silent peer, no witness: never fences",
            peer: silent(),
            witnesses: vec![],
            promoted_here: false,
            state: counted(2),
            verdict: PeerUnreachable,
            fence: None,
            split_brain: false,
        },
        Row {
            name: "silent peer, witnesses disagree: warning",
            peer: silent(),
            witnesses: vec![moved(), here()],
            promoted_here: false,
            state: counted(2),
            verdict: PeerUnreachable,
            fence: None,
            split_brain: false,
        },
        Row {
            name: "silent peer, witness moved, first sample: counting",
            peer: silent(),
            witnesses: vec![moved(), unknown()],
            promoted_here: false,
            state: State::default(),
            verdict: PeerUnreachable,
            fence: None,
            split_brain: false,
        },
        Row {
            name: "silent peer, witness moved, third sample: fence (hold, fork unknown)",
            peer: silent(),
            witnesses: vec![moved()],
            promoted_here: false,
            state: counted(2),
            verdict: Fence,
            fence: Some((FenceReason::WitnessMoved, None)),
            split_brain: false,
        },
        Row {
            name: "promoted site, silent peer: already-primary",
            peer: silent(),
            witnesses: vec![here()],
            promoted_here: true,
            state: State::default(),
            verdict: AlreadyPrimary,
            fence: None,
            split_brain: false,
        },
    ];
    for r in rows {
        let mut s = sample(0, r.peer, r.witnesses);
        s.promoted_here = r.promoted_here;
        let d = decide_primary(&policy(Mode::Auto), &r.state, &s);
        assert_eq!(d.verdict, r.verdict, "{}: {:?}", r.name, d.reasons);
        assert_eq!(
            d.fence.as_ref().map(|f| (f.reason, f.fork)),
            r.fence,
            "{}: {:?}",
            r.name,
            d.reasons
        );
        assert_eq!(d.split_brain, r.split_brain, "{}", r.name);
        assert_eq!(
            d.next.primary.split_brain_since.is_some(),
            r.split_brain,
            "{}",
            r.name
        );
        assert!(!d.reasons.is_empty(), "{}", r.name);
        assert_eq!(
            d.next.last_decision.as_ref().unwrap().verdict,
            r.verdict.to_string()
        );
    }
}

#[test]
fn fence_order_records_the_divergence_on_the_same_timeline_only() {
    let d = decide_primary(
        &policy(Mode::Auto),
        &State::default(),
        &sample(0, Peer::Writable(forked_from_us()), vec![]),
    );
    let f = d.fence.unwrap().fence(t(0), "golddr");
    assert_eq!(f.phase, Phase::Hold);
    assert_eq!(f.fork_lsn.map(lsn_text).as_deref(), Some("0/5000A28"));
    assert_eq!(f.local_end_lsn.map(lsn_text).as_deref(), Some("0/6000000"));
    assert_eq!(f.diverged_bytes, Some(END - FORK));

    // We moved on to a timeline of our own after the fork (Patroni promotes a crash-restarted
    // primary): the lineage proved our WAL runs through the fork, so all past it diverged.
    let mut s = sample(0, Peer::Writable(forked_from_us()), vec![]);
    s.own.timeline = Some(4);
    let f = decide_primary(&policy(Mode::Auto), &State::default(), &s)
        .fence
        .unwrap()
        .fence(t(0), "golddr");
    assert_eq!(f.diverged_bytes, Some(END - FORK));
}

/// Issue 20 item 12: the promoted site, isolated, is told by the witness that the application
/// runs on the old primary (a GSLB preferring it). Its own promotion is the newest it knows of:
/// it does not fence itself in favour of a peer it cannot see. A site whose peer was last seen at
/// its own epoch or above still fences on the witness.
#[test]
fn isolation_never_moves_authority_down() {
    let p = policy(Mode::Auto);
    let counted = |n: u32| State {
        primary: PrimaryState {
            moved_samples: n,
            moved_since: Some(t(-20)),
            ..PrimaryState::default()
        },
        last_sample_at: Some(t(-10)),
        ..State::default()
    };
    let newest = |own, seen| PrimarySample {
        epochs: Epochs { own, seen },
        ..sample(0, silent(), vec![moved()])
    };
    for (own, seen, fences) in [
        (1, 0, false),
        (3, 2, false),
        (0, 0, true),
        (1, 1, true),
        (1, 2, true),
    ] {
        let d = decide_primary(&p, &counted(2), &newest(own, seen));
        assert_eq!(
            d.fence.is_some(),
            fences,
            "own {own}, seen {seen}: {:?}",
            d.reasons
        );
        if !fences {
            assert_eq!(d.verdict, Verdict::PeerUnreachable);
            assert_eq!(d.next.primary.moved_samples, 0, "the count restarts");
            assert!(
                d.reason_texts().iter().any(|r| r.contains("cannot see")),
                "{:?}",
                d.reasons
            );
        }
    }
}

#[test]
fn observe_mode_fences_on_lineage_but_not_on_a_witness_alone() {
    // Proof (the peer's promotion epoch is higher): fenced in observe mode too.
    let d = decide_primary(
        &policy(Mode::Observe),
        &State::default(),
        &sample(0, Peer::Writable(forked_from_us()), vec![]),
    );
    assert_eq!(d.verdict, Verdict::Fence);
    assert_eq!(
        d.fence.map(|f| f.reason),
        Some(FenceReason::PeerAuthoritative)
    );
    // A witness's word (peer silent): observe mode only says what it would do.
    let p = policy(Mode::Observe);
    let mut state = State::default();
    let mut last = None;
    for at in [0, 10, 20] {
        let d = decide_primary(&p, &state, &sample(at, silent(), vec![moved()]));
        state = d.next.clone();
        last = Some(d);
    }
    let d = last.unwrap();
    assert_eq!(d.verdict, Verdict::Fence);
    assert!(d.fence.is_none());
    assert!(
        d.reason_texts().iter().any(|r| r.contains("WOULD fence")),
        "{:?}",
        d.reasons
    );
}

/// `FAILOVER_FENCING=observe`: no fence is written, not even on proof (issue 20 item 14: the
/// fencing contract is its own setting).
#[test]
fn fencing_observe_writes_no_fence_even_on_proof() {
    let p = Policy {
        fencing: Fencing::Observe,
        ..policy(Mode::Auto)
    };
    let d = decide_primary(
        &p,
        &State::default(),
        &sample(0, Peer::Writable(forked_from_us()), vec![]),
    );
    assert_eq!(d.verdict, Verdict::Fence);
    assert!(d.fence.is_none());
    assert!(
        d.reason_texts()
            .iter()
            .any(|r| r.contains("FAILOVER_FENCING=observe: WOULD fence")),
        "{:?}",
        d.reasons
    );
}

#[test]
fn moved_count_needs_consecutive_spaced_samples() {
    let p = policy(Mode::Auto);
    let mut state = State::default();
    let mut verdicts = Vec::new();
    // 0 s, 2 s (overlapping run: not counted), 10 s, 20 s → third counted sample fences.
    for at in [0, 2, 10, 20] {
        let d = decide_primary(&p, &state, &sample(at, silent(), vec![moved()]));
        verdicts.push((d.verdict, d.next.primary.moved_samples));
        state = d.next;
    }
    assert_eq!(
        verdicts,
        vec![
            (Verdict::PeerUnreachable, 1),
            (Verdict::PeerUnreachable, 1),
            (Verdict::PeerUnreachable, 2),
            (Verdict::Fence, 3),
        ]
    );
    // A witness keeping the application here resets the count.
    let d = decide_primary(&p, &state, &sample(30, silent(), vec![here()]));
    assert_eq!(d.next.primary.moved_samples, 0);
    // A long gap restarts it.
    let gap = State {
        primary: PrimaryState {
            moved_samples: 2,
            ..PrimaryState::default()
        },
        last_sample_at: Some(t(-500)),
        ..State::default()
    };
    let d = decide_primary(&p, &gap, &sample(0, silent(), vec![moved()]));
    assert_eq!(
        (d.verdict, d.next.primary.moved_samples),
        (Verdict::PeerUnreachable, 1)
    );
}

#[test]
fn split_brain_webhook_is_rate_limited_and_cleared() {
    let p = policy(Mode::Auto);
    let writable = || Peer::Writable(Lineage::Unrelated);
    let d1 = decide_primary(&p, &State::default(), &sample(0, writable(), vec![]));
    assert!(d1.notify_webhook);
    assert_eq!(d1.next.primary.split_brain_since, Some(t(0)));
    let d2 = decide_primary(&p, &d1.next, &sample(60, writable(), vec![]));
    assert!(
        d2.split_brain && !d2.notify_webhook,
        "within the renotify period"
    );
    assert_eq!(
        d2.next.primary.split_brain_since,
        Some(t(0)),
        "since the first sample"
    );
    let d3 = decide_primary(&p, &d2.next, &sample(700, writable(), vec![]));
    assert!(d3.notify_webhook, "again after the renotify period");
    let d4 = decide_primary(&p, &d3.next, &sample(710, Peer::Standby, vec![]));
    assert_eq!(d4.next.primary.split_brain_since, None);
    assert_eq!(d4.next.primary.split_brain_notified_at, None);
}

// ----- fenced site -----

#[test]
fn a_vouch_needs_a_waiting_sidecar_a_later_read_and_a_standby_peer() {
    let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
    let start = t("2026-12-04T10:00:00Z");
    let since = Some(start);
    let at = t("2026-12-04T10:00:30Z");
    let v = vouch_from(since, at, 4, Ok(true)).unwrap();
    assert_eq!((v.at, v.epoch, v.by), (at, 4, VouchBy::PeerApi));
    // The contract's freshness rule accepts what the agent writes.
    assert!(v.covers(start, 4));
    type Row = (
        &'static str,
        Option<jiff::Timestamp>,
        jiff::Timestamp,
        Result<bool, String>,
    );
    let rows: Vec<Row> = vec![
        ("nobody waits", None, at, Ok(true)),
        (
            "the read predates the wait",
            since,
            t("2026-12-04T09:59:59Z"),
            Ok(true),
        ),
        ("the peer is not a standby cluster", since, at, Ok(false)),
        (
            "the peer's config is unreadable",
            since,
            at,
            Err("HTTP 403".into()),
        ),
    ];
    let want = [
        NoVouch::NotAwaited,
        NoVouch::Predates {
            at: t("2026-12-04T09:59:59Z"),
            since: start,
        },
        NoVouch::PeerNotStandby,
        NoVouch::PeerUnreadable("HTTP 403".into()),
    ];
    for ((name, awaiting, at, answer), want) in rows.into_iter().zip(want) {
        assert!(
            vouch_from(awaiting, at, 4, answer.clone()).is_err(),
            "{name}"
        );
        assert_eq!(vouch_from(awaiting, at, 4, answer), Err(want), "{name}");
    }
}
