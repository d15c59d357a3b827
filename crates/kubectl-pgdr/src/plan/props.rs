//! Property tests of the switchover plan and the checks before a manual promotion, fence or
//! advertisement (issue 21 item 5): for any two observed sites and any recorded step, what the
//! plan may never do. The tables in `tests.rs` pin the named paths.

use std::time::Duration;

use jiff::Timestamp;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};

use super::*;
use crate::model::{DcsConfig, Leader, Member, Role, SiteObs};
use crate::progress::{Progress, Step, Token};
use pgdr_contract::fence::{Fence, FenceReason};
use pgdr_contract::marker::PromotionMarker;

const CASES: u32 = 256;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

// --- generators ------------------------------------------------------------------------------

fn member(i: usize) -> impl Strategy<Value = Member> {
    (
        prop_oneof![3 => Just("primary"), 3 => Just("standby_leader"), 1 => Just("replica")],
        prop_oneof![5 => Just("running"), 1 => Just("stopped"), 1 => Just("starting")],
        prop::option::weighted(0.9, 1u64..4),
        prop::option::of(90u64..110),
        prop::option::of(90u64..110),
        prop::option::of(90u64..110),
        prop::bool::weighted(0.7),
    )
        .prop_map(
            move |(role, state, timeline, xlog, replay, receive, streaming)| Member {
                name: format!("m-{i}"),
                role: Some(role.into()),
                state: Some(state.into()),
                timeline,
                xlog_location: xlog,
                replay_lsn: (role != "primary").then_some(replay).flatten(),
                receive_lsn: (role != "primary").then_some(receive).flatten(),
                replication_state: (role != "primary" && streaming).then(|| "streaming".into()),
                ..Member::default()
            },
        )
}

/// The dynamic config: a standby cluster or not, paused, fenced, with a promotion marker of
/// some epoch; now and then unreadable.
fn config() -> impl Strategy<Value = Option<DcsConfig>> {
    let readable = (
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
        prop::option::of(1u64..4),
    )
        .prop_map(|(standby, pause, fenced, epoch)| {
            let mut map: Map<String, Value> = json!({"ttl": 30}).as_object().unwrap().clone();
            if standby {
                map.insert(STANDBY_CLUSTER.into(), json!({"host": "h", "port": 5432}));
            }
            if pause {
                map.insert("pause".into(), json!(true));
            }
            if fenced {
                let f = Fence::hold(t(-100), FenceReason::Operator, "peer");
                map.insert(FENCE.into(), serde_json::to_value(f).unwrap());
            }
            if let Some(epoch) = epoch {
                let m = PromotionMarker {
                    epoch,
                    timeline: 1,
                    fork_lsn: 0x100,
                    fork_pending: false,
                    site: String::new(),
                    at: String::new(),
                };
                pgdr_contract::marker::set(&mut map, &m);
            }
            Ok(map)
        });
    prop_oneof![
        12 => readable,
        1 => Just(Err("not JSON".to_string())),
    ]
    .prop_map(|config| {
        Some(DcsConfig {
            resource_version: "1".into(),
            config,
            initialize: Some("7".into()),
        })
    })
}

fn site_obs(name: &'static str) -> impl Strategy<Value = SiteObs> {
    (
        prop::option::weighted(0.08, Just("connection refused".to_string())),
        config(),
        prop::collection::vec(0usize..1, 0..3).prop_flat_map(|slots| {
            let n = slots.len();
            (0..n).map(member).collect::<Vec<_>>()
        }),
        prop::option::weighted(0.9, 0usize..3),
        (any::<bool>(), prop::bool::weighted(0.4)),
    )
        .prop_map(move |(error, config, members, leader, (installed, hold))| {
            let leader = leader.and_then(|i| members.get(i)).map(|m| Leader {
                member: Some(m.name.clone()),
                ..Leader::default()
            });
            let mut s = SiteObs {
                site: name.into(),
                error,
                config,
                leader,
                members,
                ..SiteObs::default()
            };
            s.agent.installed = installed;
            s.agent.hold = hold;
            s
        })
}

fn request() -> impl Strategy<Value = Request> {
    (
        any::<bool>(),
        0u64..20,
        0u64..120,
        prop::bool::weighted(0.1),
    )
        .prop_map(|(force, max_lag_bytes, after, abort)| Request {
            to: Some("golddr".into()),
            resume: false,
            force,
            max_lag_bytes,
            force_after: Duration::from_secs(after),
            abort,
        })
}

/// A recorded switchover at any step, with what the earlier steps recorded.
fn progress() -> impl Strategy<Value = Progress> {
    (
        prop::sample::select(vec![
            Step::Hold,
            Step::Demote,
            Step::Token,
            Step::CatchUp,
            Step::Promote,
            Step::Promoted,
            Step::Verify,
            Step::Release,
            Step::Done,
            Step::Restore,
        ]),
        any::<bool>(),
        (1u64..4, 90u64..110),
        prop::option::of(90u64..110),
        prop::option::of(1u64..4),
        -120i64..0,
        any::<bool>(),
    )
        .prop_map(
            |(step, force, (tl, lsn), before, new_tl, started, aborted)| {
                let after_token = step >= Step::CatchUp && step != Step::Restore;
                Progress {
                    version: crate::progress::PROGRESS_VERSION,
                    rev: 3,
                    from: "gold".into(),
                    to: "golddr".into(),
                    step,
                    started_at: t(started - 60),
                    step_started_at: t(started),
                    force,
                    max_lag_bytes: 10,
                    held_before: Vec::new(),
                    source_timeline: Some(tl),
                    target_timeline: Some(tl),
                    source_lsn_before_demote: before,
                    token: after_token.then_some(Token { lsn, timeline: tl }),
                    new_timeline: (step >= Step::Verify).then_some(new_tl).flatten(),
                    forced_loss_bytes: None,
                    finished_at: (step == Step::Done).then_some(t(0)),
                    aborted: aborted && step <= Step::Promote || step == Step::Restore,
                    log: Vec::new(),
                }
            },
        )
}

/// Any two sites; half of them shaped like a pair in service (a primary, and a standby whose
/// leader runs), the rest of each site generated freely, so that the switchover can start.
fn pair() -> impl Strategy<Value = (SiteObs, SiteObs)> {
    let free = (site_obs("gold"), site_obs("golddr"));
    let shaped = (site_obs("gold"), site_obs("golddr"), member(0), member(0)).prop_map(
        |(mut from, mut to, mut p, mut s)| {
            p.role = Some("primary".into());
            p.state = Some("running".into());
            p.replay_lsn = None;
            p.receive_lsn = None;
            p.replication_state = None;
            s.role = Some("standby_leader".into());
            s.state = Some("running".into());
            s.replay_lsn = s.replay_lsn.or(s.xlog_location);
            for (site, m, standby) in [(&mut from, p, false), (&mut to, s, true)] {
                site.error = None;
                site.leader = Some(Leader {
                    member: Some(m.name.clone()),
                    ..Leader::default()
                });
                site.members.retain(|o| o.name != m.name);
                site.members.insert(0, m);
                if let Some(Ok(map)) = site.config.as_mut().map(|c| &mut c.config) {
                    map.remove("pause");
                    if standby {
                        map.insert(STANDBY_CLUSTER.into(), json!({"host": "h", "port": 5432}));
                    } else {
                        map.remove(STANDBY_CLUSTER);
                    }
                }
            }
            (from, to)
        },
    );
    prop_oneof![free, shaped]
}

// --- what the plan must satisfy ----------------------------------------------------------------

fn standby_leader_runs(s: &SiteObs) -> bool {
    s.leader_member().is_some_and(Member::is_standby_leader)
}

/// Every action and every start, for one call of [`next`].
fn check(
    from: &SiteObs,
    to: &SiteObs,
    p: Option<&Progress>,
    r: &Request,
    n: &Next,
) -> Result<(), TestCaseError> {
    // Two writable sites: never act, only refuse or stop.
    if from.writable().is_some() && to.writable().is_some() {
        prop_assert!(matches!(n, Next::Refuse(_) | Next::Stuck(_)), "{n:?}");
    }
    match n {
        // Never a second writable site: the target is promoted only while the source is not
        // writable, the source restored only while the target is not.
        Next::Act {
            action: Action::Promote { site },
            ..
        } => {
            prop_assert_eq!(site, &to.site);
            prop_assert!(from.writable().is_none());
            prop_assert!(p.is_some_and(|p| p.step == Step::Promote && p.token.is_some()));
        }
        Next::Act {
            action: Action::Restore { site },
            ..
        } => {
            prop_assert_eq!(site, &from.site);
            prop_assert!(to.writable().is_none());
            prop_assert!(p.is_some_and(|p| p.aborted));
        }
        // The source is demoted only inside a recorded switchover, at its step, with its last
        // write position recorded and the target not writable.
        Next::Act {
            action: Action::Demote { site },
            ..
        } => {
            prop_assert_eq!(site, &from.site);
            prop_assert!(to.writable().is_none());
            let p = p.expect("a demote is a step of a recorded switchover");
            prop_assert_eq!(p.step, Step::Demote);
            prop_assert!(p.source_lsn_before_demote.is_some());
        }
        // A switchover starts only from a readable, unpaused running primary towards a readable,
        // unpaused, non-writable site with a running standby leader not ahead of it; warnings
        // only with --force.
        Next::Begin { progress, warnings } => {
            prop_assert!(p.is_none_or(|p| p.is_finished()));
            prop_assert!(from.error.is_none() && to.error.is_none());
            for s in [from, to] {
                let cfg = s.config.as_ref().map(|c| &c.config);
                prop_assert!(!matches!(cfg, Some(Err(_))));
                prop_assert!(!s.config.as_ref().is_some_and(DcsConfig::paused));
            }
            prop_assert_eq!(from.role(), Role::Primary);
            prop_assert!(to.writable().is_none());
            prop_assert!(standby_leader_runs(to));
            let source_tl = from.writable().and_then(|m| m.timeline);
            prop_assert!(source_tl.is_some());
            prop_assert!(to.leader_member().and_then(|m| m.timeline) <= source_tl);
            prop_assert!(warnings.is_empty() || r.force);
            prop_assert_eq!(progress.step, Step::Hold);
            prop_assert_eq!((&progress.from, &progress.to), (&from.site, &to.site));
        }
        // Every step recorded moves forward (an abort moves to restore), one revision up; the
        // promotion step is reached only with the target exactly at the token, or forced.
        Next::Record { progress } => {
            let p = p.expect("a record continues a switchover");
            prop_assert_eq!(progress.rev, p.rev + 1);
            prop_assert!(progress.step >= p.step || progress.step == Step::Release);
            if progress.step == Step::Restore {
                prop_assert!(progress.aborted && p.step <= Step::Promote);
            }
            if progress.step == Step::Promote && p.step == Step::CatchUp {
                let token = p.token.expect("catch-up has a token");
                let at_token = to.leader_member().and_then(Member::replayed) == Some(token.lsn);
                prop_assert!(
                    at_token || (progress.forced_loss_bytes.is_some() && (p.force || r.force))
                );
                prop_assert!(to.writable().is_none());
            }
        }
        _ => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// A new switchover, any two sites: it starts only when every precondition holds, and never
    /// acts before it is recorded.
    #[test]
    fn a_switchover_starts_only_on_its_preconditions((from, to) in pair(), r in request()) {
        let n = next(&Pair { from: &from, to: &to }, None, &r, t(0));
        prop_assert!(!matches!(n, Next::Act { .. } | Next::Record { .. }), "{n:?}");
        check(&from, &to, None, &r, &n)?;
    }

    /// A recorded switchover at any step, any two sites: never two writable sites intended,
    /// never a demote outside its step, never a promotion before the catch-up (unless forced).
    #[test]
    fn a_recorded_switchover_never_makes_two_primaries(
        (from, to) in pair(), p in progress(), r in request(), now in 0i64..200,
    ) {
        let r = Request { to: None, resume: true, ..r };
        let n = next(&Pair { from: &from, to: &to }, Some(&p), &r, t(now));
        check(&from, &to, Some(&p), &r, &n)?;
    }

    /// `unfence` / `promote --force` never make a second writable site, `promote` needs
    /// `--force`, `unfence` a fence, and a visibly alive peer needs `--force` and the name typed.
    #[test]
    fn a_manual_promotion_never_makes_two_primaries(
        (site, peer) in pair(), unfence in any::<bool>(), force in any::<bool>(),
    ) {
        let kind = if unfence { PromoteKind::Unfence } else { PromoteKind::Promote };
        if let Ok(c) = check_promote(&site, &peer, kind, force) {
            prop_assert!(site.error.is_none());
            prop_assert!(peer.writable().is_none());
            if kind == PromoteKind::Promote {
                prop_assert!(force);
            } else {
                prop_assert!(site.config.as_ref().and_then(DcsConfig::fence_seen).is_some());
            }
            if peer_alive(&peer).is_some() {
                prop_assert!(force && c.must_type);
            }
        }
    }

    /// `fence SITE` on the writable site that holds the newer promotion epoch needs `--force`
    /// and the name typed; a running standby is fenced in the follow form, anything else holds.
    #[test]
    fn fencing_the_newer_promotion_needs_force((site, peer) in pair(), force in any::<bool>()) {
        let own = site.config.as_ref().and_then(|c| c.config.as_ref().ok())
            .map_or(0, pgdr_contract::epoch::written);
        let theirs = peer.config.as_ref().and_then(|c| c.config.as_ref().ok())
            .map_or(0, pgdr_contract::epoch::written);
        let newest = own > theirs && site.writable().is_some();
        match check_fence(&site, &peer, force) {
            Ok(c) => {
                prop_assert!(site.error.is_none());
                prop_assert!(!newest || (force && c.must_type));
                let standby = site.writable().is_none() && standby_leader_runs(&site);
                prop_assert_eq!(c.hold, !standby);
            }
            Err(_) => prop_assert!(site.error.is_some() || (newest && !force)),
        }
    }

    /// `advertise SITE` only for a readable, unfenced, writable site whose peer is not writable.
    #[test]
    fn only_a_lone_unfenced_primary_is_advertised((site, peer) in pair()) {
        if check_advertise(&site, &peer).is_ok() {
            prop_assert!(site.error.is_none());
            prop_assert!(site.writable().is_some());
            prop_assert!(peer.writable().is_none());
            prop_assert!(site.config.as_ref().and_then(DcsConfig::fence_seen).is_none());
        }
    }
}

/// The generators reach starts, demotes, promotions and restores, so the properties above are
/// not vacuous.
#[test]
fn the_generators_reach_every_action() {
    let mut runner = TestRunner::deterministic();
    let (mut begin, mut demote, mut promote, mut restore) = (0, 0, 0, 0);
    for _ in 0..4000 {
        let ((from, to), p, r) = (pair(), progress(), request())
            .new_tree(&mut runner)
            .expect("a value")
            .current();
        let pair = Pair {
            from: &from,
            to: &to,
        };
        if matches!(next(&pair, None, &r, t(0)), Next::Begin { .. }) {
            begin += 1;
        }
        let r = Request {
            to: None,
            resume: true,
            ..r
        };
        match next(&pair, Some(&p), &r, t(100)) {
            Next::Act {
                action: Action::Demote { .. },
                ..
            } => demote += 1,
            Next::Act {
                action: Action::Promote { .. },
                ..
            } => promote += 1,
            Next::Act {
                action: Action::Restore { .. },
                ..
            } => restore += 1,
            _ => {}
        }
    }
    assert!(
        begin >= 10 && demote >= 10 && promote >= 10 && restore >= 5,
        "begin {begin}, demote {demote}, promote {promote}, restore {restore}"
    );
}

/// Found by a property (a recorded switchover at step `demote`, the target site down): the
/// preflight that starts a switchover requires a running standby leader on the target, but
/// [`step_demote`] checks only that the target is not writable, so a switchover resumed after
/// the target was lost demotes the only primary with nothing to take over (the database is
/// read-only until `--abort` restores the source). Minimal input below.
#[test]
fn the_only_primary_is_never_demoted_without_a_target() {
    use crate::model::tests::{member, site};
    let from = site("gold", false, member("gold-0", "primary", 1, 100));
    let mut to = site("golddr", true, member("golddr-0", "standby_leader", 1, 100));
    // The target's pods are gone: no member, no leader lock.
    to.members.clear();
    to.leader = None;
    let p = Progress {
        version: crate::progress::PROGRESS_VERSION,
        rev: 3,
        from: "gold".into(),
        to: "golddr".into(),
        step: Step::Demote,
        started_at: t(-60),
        step_started_at: t(-10),
        force: false,
        max_lag_bytes: 10,
        held_before: Vec::new(),
        source_timeline: Some(1),
        target_timeline: Some(1),
        source_lsn_before_demote: Some(100),
        token: None,
        new_timeline: None,
        forced_loss_bytes: None,
        finished_at: None,
        aborted: false,
        log: Vec::new(),
    };
    let n = next(
        &Pair {
            from: &from,
            to: &to,
        },
        Some(&p),
        &Request::resume(),
        t(0),
    );
    // It was: Act { Demote { site: "gold" } } (found by the properties).
    assert!(matches!(&n, Next::Wait(Why::NoTakeover { .. })), "{n:?}");
    // With the target's standby leader back, the same record demotes.
    let to = site("golddr", true, member("golddr-0", "standby_leader", 1, 100));
    let n = next(
        &Pair {
            from: &from,
            to: &to,
        },
        Some(&p),
        &Request::resume(),
        t(0),
    );
    assert!(
        matches!(
            n,
            Next::Act {
                action: Action::Demote { .. },
                ..
            }
        ),
        "{n:?}"
    );
}

/// A record at step catch-up without its token (edited by hand) is refused, not a panic.
#[test]
fn a_catch_up_without_a_token_is_refused() {
    use crate::model::tests::{member, site};
    let from = site("gold", true, member("gold-0", "standby_leader", 1, 100));
    let to = site("golddr", true, member("golddr-0", "standby_leader", 1, 100));
    let p = Progress {
        version: crate::progress::PROGRESS_VERSION,
        rev: 5,
        from: "gold".into(),
        to: "golddr".into(),
        step: Step::CatchUp,
        started_at: t(-60),
        step_started_at: t(-10),
        force: false,
        max_lag_bytes: 10,
        held_before: Vec::new(),
        source_timeline: Some(1),
        target_timeline: Some(1),
        source_lsn_before_demote: Some(100),
        token: None,
        new_timeline: None,
        forced_loss_bytes: None,
        finished_at: None,
        aborted: false,
        log: Vec::new(),
    };
    let pair = Pair {
        from: &from,
        to: &to,
    };
    let n = next(&pair, Some(&p), &Request::resume(), t(0));
    assert!(matches!(&n, Next::Stuck(Why::NoToken { rev: 5 })), "{n:?}");
}
