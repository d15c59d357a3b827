//! Property tests of the failover decision (issue 21 item 5): what must hold for every policy,
//! stored state and sample, and along any sequence of samples. The table in `tests.rs` pins the
//! named cases; these generate the rest.
//!
//! The witness vocabulary is used only in [`witness`], [`says_alive`] and [`says_down`] (it is
//! being renamed elsewhere: fix those three).

use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

use super::*;
use crate::state::{PromotionRecord, StandbyState, State, StateProblem};

const CASES: u32 = 256;

fn t(secs: i64) -> Timestamp {
    crate::sample::fixtures::t(secs)
}

// --- the witness vocabulary, in one place -------------------------------------------------

/// A witness answer: 0 down, 1 alive, 2 unknown.
fn witness(kind: u8, n: usize) -> Witness {
    match kind {
        0 => Witness::Here(format!("witness {n}: the application runs here")),
        1 => Witness::Peer(format!("witness {n}: the primary site answers")),
        _ => Witness::Unknown(format!("witness {n}: no answer")),
    }
}

fn says_alive(w: &Witness) -> bool {
    matches!(w, Witness::Peer(_) | Witness::NotOnlyHere(_))
}

fn says_down(w: &Witness) -> bool {
    matches!(w, Witness::Here(_))
}

// --- generators ------------------------------------------------------------------------------

fn policy() -> impl Strategy<Value = Policy> {
    (
        any::<bool>(),
        0u32..5,
        0u64..60,
        0u64..2000,
        prop::bool::weighted(0.25),
        0u64..10,
        30u64..200,
        (10u64..400, 10u64..400),
    )
        .prop_map(
            |(auto, n, span, lag, force, spacing, gap, (claim, age))| Policy {
                mode: if auto { Mode::Auto } else { Mode::Observe },
                fencing: Fencing::Auto,
                failure_threshold: n,
                min_failure_span: Duration::from_secs(span),
                max_lag_bytes: lag,
                force,
                min_sample_spacing: Duration::from_secs(spacing),
                max_sample_gap: Duration::from_secs(gap),
                claim_ttl: Duration::from_secs(claim),
                max_lsn_age: Duration::from_secs(age),
                replication_broken_renotify: Duration::from_secs(600),
            },
        )
}

fn at(range: std::ops::Range<i64>) -> impl Strategy<Value = Timestamp> {
    range.prop_map(t)
}

fn promotion_record() -> impl Strategy<Value = PromotionRecord> {
    (at(-400..0), any::<bool>(), any::<bool>()).prop_map(|(claimed_at, confirmed, failed)| {
        PromotionRecord {
            run: "run-a".into(),
            claimed_at,
            reasons: Vec::new(),
            standby_lsn: None,
            confirmed_at: confirmed.then_some(claimed_at),
            primary_lsn: None,
            timeline: None,
            failed: failed.then(|| "gave up".into()),
        }
    })
}

/// A stored state: fresh, or a streak of some length, with or without a known position, lag,
/// a broken stream or a claim. Times are before the samples' (which start at 0).
fn state() -> impl Strategy<Value = State> {
    (
        (
            0u32..6,
            prop::option::weighted(0.8, at(-200..0)),
            prop::option::weighted(0.8, at(-30..0)),
        ),
        (
            prop::option::of(at(-400..0)),
            prop::option::of(4000u64..6000),
        ),
        prop::option::of(at(-400..0)),
        prop::option::weighted(0.3, at(-400..0)),
        prop::option::weighted(0.8, 0u64..3000),
        prop::option::weighted(0.2, promotion_record()),
        prop::option::weighted(0.2, at(-400..0)),
    )
        .prop_map(
            |((count, first, last), (success, lsn), lsn_at, broken, lag, promotion, notified)| {
                State {
                    last_sample_at: last,
                    standby: StandbyState {
                        consecutive_failures: count,
                        first_failure_at: first,
                        last_success_at: success,
                        last_primary_lsn: lsn,
                        last_primary_lsn_at: lsn_at,
                        stream_broken_since: broken,
                        last_known_lag_bytes: lag,
                        promotion,
                        would_promote_notified_at: notified,
                        ..StandbyState::default()
                    },
                    ..State::default()
                }
            },
        )
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        6 => Just(Probe::NoAnswer { reason: "connection refused".into() }),
        1 => Just(Probe::Unknown { reason: "tunnel Service missing".into() }),
        1 => Just(Probe::Rejected { reason: "the database system is starting up".into() }),
        1 => (prop::option::of(any::<bool>()), prop::option::of(4000u64..7000))
            .prop_map(|(in_recovery, lsn)| Probe::Accepting { in_recovery, lsn }),
    ]
}

fn leader() -> impl Strategy<Value = LocalLeader> {
    let found = (
        prop_oneof![6 => Just("standby_leader"), 1 => Just("primary"), 1 => Just("replica")],
        prop_oneof![6 => Just("running"), 1 => Just("stopped")],
        prop::bool::weighted(0.2),
        prop::option::of(4000u64..6000),
        prop::option::of(4000u64..6000),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(role, st, streaming, received, replayed, pause)| {
            LocalLeader::Found(Leader {
                name: "dr-0".into(),
                role: role.into(),
                state: st.into(),
                replication_state: streaming.then(|| "streaming".into()),
                received_lsn: received,
                replayed_lsn: replayed,
                pause,
            })
        });
    prop_oneof![
        8 => found,
        1 => Just(LocalLeader::Missing("no leader lock".into())),
        1 => Just(LocalLeader::Unreachable { name: "dr-0".into(), reason: "timeout".into() }),
    ]
}

fn witnesses() -> impl Strategy<Value = Vec<Witness>> {
    prop::collection::vec(
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
        0..4,
    )
    .prop_map(|kinds| {
        kinds
            .into_iter()
            .enumerate()
            .map(|(n, k)| witness(k, n))
            .collect()
    })
}

fn site() -> impl Strategy<Value = SiteConfig> {
    prop_oneof![
        12 => Just(SiteConfig::Standby),
        1 => Just(SiteConfig::NotStandby),
        1 => Just(SiteConfig::Malformed("not JSON".into())),
    ]
}

/// One sample at `at`.
fn sample_at(at: impl Strategy<Value = Timestamp>) -> impl Strategy<Value = Sample> {
    (
        at,
        probe(),
        site(),
        leader(),
        witnesses(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(at, probe, site, leader, witnesses, hold, config_paused)| Sample {
                at,
                run: "run-b".into(),
                probe,
                site,
                leader,
                witnesses,
                hold,
                config_paused,
            },
        )
}

fn sample() -> impl Strategy<Value = Sample> {
    sample_at(at(0..120))
}

/// Samples of consecutive runs: each some seconds after the previous one (0: an overlapping run).
fn samples() -> impl Strategy<Value = Vec<Sample>> {
    prop::collection::vec((0i64..40, sample_at(Just(t(0)))), 1..24).prop_map(|steps| {
        let mut now = 0;
        steps
            .into_iter()
            .map(|(dt, s)| {
                now += dt;
                Sample { at: t(now), ..s }
            })
            .collect()
    })
}

// --- what a decision must satisfy -------------------------------------------------------------

fn promotes(d: &Decision) -> bool {
    matches!(d.verdict, Verdict::Promote | Verdict::WouldPromote)
}

fn stream_alive(s: &Sample) -> bool {
    s.leader.found().is_some_and(Leader::streaming)
}

/// Every precondition of a promotion (or a "would promote"), for one decision.
fn check_promotion(p: &Policy, st: &State, s: &Sample, d: &Decision) -> Result<(), TestCaseError> {
    if !promotes(d) {
        return Ok(());
    }
    // Never while any witness says the primary is alive, forced or not.
    prop_assert!(!s.witnesses.iter().any(says_alive), "{:?}", s.witnesses);
    // Positive evidence: a witness says down, unless none is configured or FAILOVER_FORCE.
    prop_assert!(p.force || s.witnesses.is_empty() || s.witnesses.iter().any(says_down));
    // Only a sample that saw the primary gone: no PostgreSQL answer and no stream.
    prop_assert!(matches!(s.probe, Probe::NoAnswer { .. }), "{:?}", s.probe);
    prop_assert!(!stream_alive(s));
    prop_assert!(d.failed_sample);
    // The local side: a readable standby config, a running standby leader, nothing paused/held.
    prop_assert_eq!(&s.site, &SiteConfig::Standby);
    let l = s.leader.found();
    prop_assert!(l.is_some_and(|l| l.role == "standby_leader" && l.state == "running"));
    prop_assert!(!l.is_some_and(|l| l.pause) && !s.config_paused && !s.hold);
    // The debounce: N counted failures spanning T.
    let next = d.next.as_ref().expect("a promotion writes the state");
    prop_assert!(next.standby.consecutive_failures >= p.failure_threshold.max(1));
    let first = next.standby.first_failure_at.expect("a streak has a start");
    prop_assert!(s.at.duration_since(first) >= signed(p.min_failure_span));
    // Without FAILOVER_FORCE: the lag is known and within the bound.
    if !p.force {
        let lag = next.standby.last_known_lag_bytes;
        prop_assert!(lag.is_some_and(|l| l <= p.max_lag_bytes), "lag {lag:?}");
    }
    // No other run's claim is fresh.
    let fresh_claim = st.standby.promotion.as_ref().is_some_and(|c| {
        c.confirmed_at.is_none()
            && c.failed.is_none()
            && s.at.duration_since(c.claimed_at) < signed(p.claim_ttl)
    });
    prop_assert!(!fresh_claim);
    // The mode decides which of the two.
    match d.verdict {
        Verdict::Promote => {
            prop_assert_eq!(p.mode, Mode::Auto);
            let claim = next
                .standby
                .promotion
                .as_ref()
                .expect("a promotion carries its claim");
            prop_assert_eq!((&claim.run, claim.claimed_at), (&s.run, s.at));
            prop_assert!(claim.confirmed_at.is_none() && claim.failed.is_none());
        }
        _ => prop_assert_eq!(p.mode, Mode::Observe),
    }
    Ok(())
}

/// What the sample's class does to the streak.
fn check_counting(st: &State, s: &Sample, d: &Decision) -> Result<(), TestCaseError> {
    if s.site == SiteConfig::NotStandby {
        // Done or promoting: nothing is written.
        prop_assert!(d.next.is_none());
        prop_assert!(matches!(
            d.verdict,
            Verdict::AlreadyPrimary | Verdict::InProgress
        ));
        return Ok(());
    }
    let next = d
        .next
        .as_ref()
        .expect("a standby decision writes the state");
    let answered = matches!(s.probe, Probe::Accepting { .. } | Probe::Rejected { .. });
    if stream_alive(s) || answered {
        // Any sign of life resets the streak.
        prop_assert_eq!(d.verdict, Verdict::Healthy);
        prop_assert_eq!(next.standby.consecutive_failures, 0);
        prop_assert!(next.standby.first_failure_at.is_none());
    } else if matches!(s.probe, Probe::Unknown { .. }) {
        // An unknown sample neither counts nor resets.
        prop_assert_eq!(d.verdict, Verdict::Unknown);
        prop_assert!(!d.counted);
        prop_assert_eq!(
            next.standby.consecutive_failures,
            st.standby.consecutive_failures
        );
        prop_assert_eq!(next.standby.first_failure_at, st.standby.first_failure_at);
    } else {
        // A failed sample adds at most one.
        prop_assert!(d.failed_sample);
        prop_assert!(next.standby.consecutive_failures <= st.standby.consecutive_failures + 1);
        if d.counted {
            prop_assert!(next.standby.consecutive_failures >= 1);
            prop_assert_eq!(next.last_sample_at, Some(s.at));
        } else {
            // An overlapping run: not counted again, nothing reset.
            prop_assert_eq!(
                next.standby.consecutive_failures,
                st.standby.consecutive_failures
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// One decision, any input: a promotion ("would promote" too) only with every precondition
    /// the design names (no witness alive; a witness down unless none is configured or forced;
    /// no answer and no stream; a running, unpaused, unheld standby leader; N failures spanning
    /// T; a known lag within the bound unless forced; no fresh claim; auto mode for `promote`).
    #[test]
    fn a_promotion_has_every_precondition(p in policy(), st in state(), s in sample()) {
        let d = decide(&p, Ok(&st), &s);
        check_promotion(&p, &st, &s, &d)?;
        check_counting(&st, &s, &d)?;
    }

    /// A witness saying the primary is alive blocks whatever else holds, FAILOVER_FORCE
    /// included.
    #[test]
    fn a_witness_saying_alive_always_blocks(
        p in policy(), st in state(), s in sample(), at_index in 0usize..4,
    ) {
        let mut s = s;
        let i = at_index.min(s.witnesses.len());
        s.witnesses.insert(i, witness(1, 9));
        let forced = Policy { force: true, ..p.clone() };
        for p in [p, forced] {
            let d = decide(&p, Ok(&st), &s);
            prop_assert!(!promotes(&d), "{:?}", d.reasons);
        }
    }

    /// The same input gives the same decision (no clock, no randomness, no hidden state).
    #[test]
    fn decisions_are_deterministic(p in policy(), st in state(), s in sample()) {
        let (a, b) = (decide(&p, Ok(&st), &s), decide(&p.clone(), Ok(&st.clone()), &s.clone()));
        prop_assert_eq!(a, b);
    }

    /// An unusable state is never acted on and never overwritten.
    #[test]
    fn an_unusable_state_is_left_alone(p in policy(), s in sample(), found in 2u32..9) {
        let problem = StateProblem::NewerVersion { found };
        let d = decide(&p, Err(&problem), &s);
        prop_assert_eq!(d.verdict, Verdict::StateUnusable);
        prop_assert!(d.next.is_none());
    }

    /// Along any sequence of runs from a fresh state (each writing what it decided): every
    /// promotion has its preconditions, and the failed samples since the last sign of life are
    /// at least N and span at least T — the streak the state counts is never more than what was
    /// seen. After a promotion claim, no second `promote` within the claim's lifetime.
    #[test]
    fn a_promotion_rests_on_the_samples_seen(p in policy(), ss in samples()) {
        let mut st = State::default();
        let mut since_alive: Vec<Timestamp> = Vec::new();
        let mut claimed: Option<Timestamp> = None;
        for s in &ss {
            let d = decide(&p, Ok(&st), s);
            check_promotion(&p, &st, s, &d)?;
            if s.site == SiteConfig::NotStandby {
                continue;
            }
            if d.verdict == Verdict::Healthy {
                since_alive.clear();
            } else if d.failed_sample {
                since_alive.push(s.at);
            }
            if promotes(&d) {
                prop_assert!(since_alive.len() >= p.failure_threshold.max(1) as usize);
                let first = since_alive[0];
                prop_assert!(s.at.duration_since(first) >= signed(p.min_failure_span));
            }
            if d.verdict == Verdict::Promote {
                if let Some(c) = claimed {
                    prop_assert!(s.at.duration_since(c) >= signed(p.claim_ttl),
                        "second promote at {} after a claim at {c}", s.at);
                }
                claimed = Some(s.at);
            }
            if let Some(next) = d.next {
                st = next;
            }
        }
    }
}

/// The generators reach promotions often enough for the properties above to mean something.
#[test]
fn the_generators_reach_promotions() {
    let mut runner = TestRunner::deterministic();
    let strategy = (policy(), state(), sample());
    let (mut promote, mut would, mut blocked) = (0, 0, 0);
    for _ in 0..2000 {
        let (p, st, s) = strategy.new_tree(&mut runner).expect("a value").current();
        match decide(&p, Ok(&st), &s).verdict {
            Verdict::Promote => promote += 1,
            Verdict::WouldPromote => would += 1,
            Verdict::Blocked => blocked += 1,
            _ => {}
        }
    }
    let mut sequences = 0;
    for _ in 0..300 {
        let (p, ss) = (policy(), samples())
            .new_tree(&mut runner)
            .expect("a value")
            .current();
        let mut st = State::default();
        let mut promoted = false;
        for s in &ss {
            let d = decide(&p, Ok(&st), s);
            promoted |= promotes(&d);
            if let Some(next) = d.next {
                st = next;
            }
        }
        sequences += usize::from(promoted);
    }
    eprintln!(
        "promote {promote}, would-promote {would}, blocked {blocked} of 2000; sequences promoting {sequences} of 300"
    );
    assert!(
        sequences >= 15,
        "only {sequences} of 300 generated sequences reach a promotion"
    );
    assert!(
        promote >= 10 && would >= 10 && blocked >= 100,
        "promote {promote}, would-promote {would}, blocked {blocked} of 2000"
    );
}
