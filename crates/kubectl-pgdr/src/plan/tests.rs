//! Table tests of the switchover step machine and the promotion checks.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::model::tests::{config, member, site};
use crate::model::{Member, SiteObs};
use crate::progress::{Progress, Step, Token};
use pgdr_contract::marker::MARKER_GUC;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn req(force: bool) -> Request {
    Request {
        to: Some("golddr".into()),
        resume: false,
        force,
        max_lag_bytes: 1000,
        force_after: Duration::from_secs(60),
        abort: false,
    }
}

fn with_agent(mut s: SiteObs, hold: bool) -> SiteObs {
    s.agent.installed = true;
    s.agent.hold = hold;
    s
}

/// gold primary at `lsn`, golddr standby leader streaming at `standby_lsn`, agents installed.
fn healthy(lsn: u64, standby_lsn: u64) -> (SiteObs, SiteObs) {
    (
        with_agent(
            site("gold", false, member("gold-0", "primary", 1, lsn)),
            false,
        ),
        with_agent(
            site(
                "golddr",
                true,
                member("golddr-0", "standby_leader", 1, standby_lsn),
            ),
            false,
        ),
    )
}

fn begin(from: &SiteObs, to: &SiteObs, r: &Request) -> Progress {
    match next(&Pair { from, to }, None, r, t(0)) {
        Next::Begin { progress, .. } => progress,
        other => panic!("expected Begin, got {other:?}"),
    }
}

fn at(p: &Progress, step: Step) -> Progress {
    let mut p = p.clone();
    p.step = step;
    p
}

fn run(from: &SiteObs, to: &SiteObs, p: &Progress, now: i64) -> Next {
    next(&Pair { from, to }, Some(p), &req(p.force), t(now))
}

fn recorded(n: Next) -> Progress {
    match n {
        Next::Record { progress } => progress,
        other => panic!("expected Record, got {other:?}"),
    }
}

/// The decision with its reason's text (the reasons are typed: their text is what the plugin
/// prints).
fn contains(n: &Next, needle: &str) -> bool {
    match n {
        Next::Wait(w) | Next::Done(w) | Next::Refuse(w) | Next::Stuck(w) => {
            format!("{n:?} {w}").contains(needle)
        }
        _ => format!("{n:?}").contains(needle),
    }
}

#[test]
fn starting_a_switchover() {
    let (g, d) = healthy(100, 100);
    let mut not_streaming = d.clone();
    not_streaming.members[0].replication_state = None;
    let (g_far, d_far) = healthy(5000, 100);
    let mut d_ahead = d.clone();
    d_ahead.members[0].timeline = Some(2);
    let mut paused = g.clone();
    paused
        .config
        .as_mut()
        .unwrap()
        .config
        .as_mut()
        .unwrap()
        .insert("pause".into(), json!(true));
    let primary_dr = with_agent(
        site("golddr", false, member("golddr-0", "primary", 2, 300)),
        false,
    );
    let following_gold = with_agent(
        site("gold", true, member("gold-0", "standby_leader", 2, 300)),
        false,
    );
    let mut fenced_gold = following_gold.clone();
    fenced_gold.members[0].replication_state = None;
    let both = site("golddr", false, member("golddr-0", "primary", 2, 100));
    // (case, from, to, force, expected variant, needle)
    let cases: Vec<(&str, &SiteObs, &SiteObs, bool, &str, &str)> = vec![
        ("healthy pair", &g, &d, false, "Begin", "started"),
        (
            "lag over the bound",
            &g_far,
            &d_far,
            false,
            "Refuse",
            "lags 4900 bytes",
        ),
        (
            "lag over the bound, forced",
            &g_far,
            &d_far,
            true,
            "Begin",
            "lags 4900 bytes",
        ),
        (
            "target not streaming",
            &g,
            &not_streaming,
            false,
            "Refuse",
            "not streaming",
        ),
        (
            "target not streaming, forced",
            &g,
            &not_streaming,
            true,
            "Begin",
            "not streaming",
        ),
        (
            "target on a later timeline",
            &g,
            &d_ahead,
            true,
            "Refuse",
            "diverged",
        ),
        ("source paused", &paused, &d, true, "Refuse", "paused"),
        (
            "source is not a primary",
            &fenced_gold,
            &d,
            true,
            "Refuse",
            "not a running primary",
        ),
        (
            "already switched",
            &following_gold,
            &primary_dr,
            false,
            "Done",
            "already the primary",
        ),
        ("split brain", &g, &both, true, "Refuse", "split brain"),
    ];
    for (name, from, to, force, variant, needle) in cases {
        let n = next(&Pair { from, to }, None, &req(force), t(0));
        assert!(format!("{n:?}").starts_with(variant), "{name}: {n:?}");
        assert!(contains(&n, needle), "{name}: {n:?}");
    }
    let p = begin(&g, &with_agent(d.clone(), true), &req(false));
    assert_eq!((p.step, p.source_timeline, p.rev), (Step::Hold, Some(1), 1));
    assert_eq!(
        p.held_before,
        vec!["golddr".to_string()],
        "an earlier hold is kept"
    );
}

#[test]
fn resume_and_direction() {
    let (g, d) = healthy(100, 100);
    let resume = Request {
        to: None,
        resume: true,
        ..req(false)
    };
    let n = next(&Pair { from: &g, to: &d }, None, &resume, t(0));
    assert!(
        matches!(n, Next::Refuse(ref m) if m.to_string().contains("nothing to resume")),
        "{n:?}"
    );
    let mut done = begin(&g, &d, &req(false));
    done.step = Step::Done;
    let n = next(&Pair { from: &g, to: &d }, Some(&done), &resume, t(0));
    assert!(matches!(n, Next::Done(_)), "{n:?}");
    // A finished record does not block a new switchover.
    done.rev = 9;
    let n = next(&Pair { from: &g, to: &d }, Some(&done), &req(false), t(0));
    assert!(
        matches!(n, Next::Begin { ref progress, .. } if progress.rev == 10),
        "{n:?}"
    );

    let active = begin(&g, &d, &req(false));
    assert_eq!(
        direction(&resume, Some(&active)).unwrap(),
        Some(("gold".into(), "golddr".into()))
    );
    let other = Request {
        to: Some("gold".into()),
        ..req(false)
    };
    assert!(
        direction(&other, Some(&active))
            .unwrap_err()
            .to_string()
            .contains("in progress")
    );
    assert_eq!(direction(&other, Some(&done)).unwrap(), None);
    let nothing = Request {
        to: None,
        ..req(false)
    };
    assert!(direction(&nothing, None).is_err());
}

#[test]
fn each_step() {
    let (g, d) = healthy(100, 100);
    let p0 = begin(&g, &d, &req(false));

    // hold
    let n = run(&g, &d, &p0, 1);
    assert_eq!(
        n,
        Next::Act {
            action: Action::SetHold {
                sites: vec!["gold".into(), "golddr".into()]
            },
            why: "hold the failover agents so nothing decides mid-way".into()
        }
    );
    let (gh, dh) = (with_agent(g.clone(), true), with_agent(d.clone(), true));
    let p = recorded(run(&gh, &dh, &p0, 1));
    assert_eq!((p.step, p.rev), (Step::Demote, 2));

    // demote: first the position is recorded, then the config is written
    let p = recorded(run(&gh, &dh, &p, 2));
    assert_eq!(
        (p.step, p.source_lsn_before_demote),
        (Step::Demote, Some(100))
    );
    assert!(
        matches!(run(&gh, &dh, &p, 2), Next::Act { action: Action::Demote { ref site }, .. } if site == "gold")
    );
    let mut demoting = gh.clone();
    demoting.config = Some(config(true));
    let p = recorded(run(&demoting, &dh, &p, 3));
    assert_eq!(p.step, Step::Token);

    // token
    assert!(contains(
        &run(&demoting, &dh, &p, 4),
        "still runs as a primary"
    ));
    let mut demoted = demoting.clone();
    demoted.members[0] = Member {
        replication_state: None,
        ..member("gold-0", "standby_leader", 1, 140)
    };
    let tok = recorded(run(&demoted, &dh, &p, 5));
    assert_eq!(
        (tok.step, tok.token),
        (
            Step::CatchUp,
            Some(Token {
                lsn: 140,
                timeline: 1
            })
        )
    );
    let mut wrong_tl = demoted.clone();
    wrong_tl.members[0].timeline = Some(2);
    assert!(
        matches!(run(&wrong_tl, &dh, &p, 5), Next::Stuck(ref m) if m.to_string().contains("timeline 2"))
    );
    let mut behind = demoted.clone();
    behind.members[0] = member("gold-0", "standby_leader", 1, 90);
    assert!(
        matches!(run(&behind, &dh, &p, 5), Next::Stuck(ref m) if m.to_string().contains("not a clean demote"))
    );

    // catch-up
    let target = |lsn: u64, tl: u64| {
        with_agent(
            site(
                "golddr",
                true,
                member("golddr-0", "standby_leader", tl, lsn),
            ),
            true,
        )
    };
    assert!(
        matches!(run(&demoted, &target(120, 1), &tok, 6), Next::Wait(ref m) if m.to_string().contains("20 bytes to go"))
    );
    let p = recorded(run(&demoted, &target(140, 1), &tok, 6));
    assert_eq!(p.step, Step::Promote);
    assert!(
        matches!(run(&demoted, &target(150, 1), &tok, 6), Next::Stuck(ref m) if m.to_string().contains("past the demotion token"))
    );
    let mut received_more = target(140, 1);
    received_more.members[0].receive_lsn = Some(141);
    assert!(matches!(
        run(&demoted, &received_more, &tok, 6),
        Next::Stuck(_)
    ));
    assert!(
        matches!(run(&demoted, &target(100, 2), &tok, 6), Next::Stuck(ref m) if m.to_string().contains("timeline 2"))
    );
    // The way back: token on timeline 2. Once the source demoted, the target's receiver is down
    // (the tunnel reaches only the source's primary Service) and Patroni publishes the target's
    // checkpoint timeline, 1.
    let mut back = tok.clone();
    back.token = Some(Token {
        lsn: 140,
        timeline: 2,
    });
    let stale = |lsn: u64| {
        let mut s = target(lsn, 1);
        s.members[0].replication_state = None;
        s
    };
    // It followed the source on timeline 2 when the switchover began: exactly at the token.
    back.target_timeline = Some(2);
    let promote = recorded(run(&demoted, &stale(140), &back, 6));
    assert_eq!(promote.step, Step::Promote);
    // Short of the token, or still streaming (its timeline is then current): wait.
    assert!(matches!(
        run(&demoted, &stale(139), &back, 6),
        Next::Wait(_)
    ));
    assert!(matches!(
        run(&demoted, &target(140, 1), &back, 6),
        Next::Wait(_)
    ));
    // Not known to have followed on the token's timeline: wait.
    back.target_timeline = Some(1);
    assert!(matches!(
        run(&demoted, &stale(140), &back, 6),
        Next::Wait(_)
    ));
    back.target_timeline = None;
    assert!(matches!(
        run(&demoted, &stale(140), &back, 6),
        Next::Wait(_)
    ));
    // --force: wait first, then promote with the gap recorded
    let mut forced = tok.clone();
    forced.force = true;
    forced.step_started_at = t(0);
    assert!(matches!(
        run(&demoted, &target(120, 1), &forced, 30),
        Next::Wait(_)
    ));
    let f = recorded(run(&demoted, &target(120, 1), &forced, 61));
    assert_eq!((f.step, f.forced_loss_bytes), (Step::Promote, Some(20)));
    // --force given only on --resume counts too.
    let resumed = Request {
        to: None,
        resume: true,
        force: true,
        force_after: Duration::ZERO,
        ..req(false)
    };
    let f = recorded(next(
        &Pair {
            from: &demoted,
            to: &target(120, 1),
        },
        Some(&tok),
        &resumed,
        t(6),
    ));
    assert_eq!(f.forced_loss_bytes, Some(20));
    assert!(
        matches!(run(&demoted, &target(120, 1), &tok, 6000), Next::Wait(_)),
        "never without --force"
    );

    // promote
    let d_caught = target(140, 1);
    assert!(
        matches!(run(&demoted, &d_caught, &p, 7), Next::Act { action: Action::Promote { ref site }, .. } if site == "golddr")
    );
    let mut d_unconfigured = d_caught.clone();
    d_unconfigured.config = Some(config(false));
    let p = recorded(run(&demoted, &d_unconfigured, &p, 8));
    assert_eq!(p.step, Step::Promoted);
    assert!(
        matches!(run(&gh, &d_caught, &at(&p, Step::Promote), 8), Next::Stuck(ref m) if m.to_string().contains("writable again"))
    );

    // promoted
    assert!(matches!(
        run(&demoted, &d_unconfigured, &p, 9),
        Next::Wait(_)
    ));
    let new_primary = with_agent(
        site("golddr", false, member("golddr-0", "primary", 2, 200)),
        true,
    );
    let p = recorded(run(&demoted, &new_primary, &p, 9));
    assert_eq!((p.step, p.new_timeline), (Step::Verify, Some(2)));

    // verify
    assert!(
        matches!(run(&demoted, &new_primary, &p, 10), Next::Wait(ref m) if m.to_string().contains("want 2"))
    );
    let following = with_agent(
        site("gold", true, member("gold-0", "standby_leader", 2, 200)),
        true,
    );
    let p = recorded(run(&following, &new_primary, &p, 10));
    assert_eq!(p.step, Step::Release);

    // release only what we held
    assert!(
        matches!(run(&following, &new_primary, &p, 11), Next::Act { action: Action::ReleaseHold { ref sites }, .. } if sites.len() == 2)
    );
    let mut kept = p.clone();
    kept.held_before = vec!["golddr".into()];
    assert!(
        matches!(run(&following, &new_primary, &kept, 11), Next::Act { action: Action::ReleaseHold { ref sites }, .. } if sites == &vec!["gold".to_string()])
    );
    let (f2, n2) = (
        with_agent(following.clone(), false),
        with_agent(new_primary.clone(), false),
    );
    let done = recorded(run(&f2, &n2, &p, 12));
    assert_eq!(done.step, Step::Done);
    assert!(done.finished_at.is_some());
    assert!(done.log.last().unwrap().message.contains("nothing lost"));
    assert!(matches!(
        run(&f2, &n2, &done, 13),
        Next::Begin { .. } | Next::Done(_)
    ));
}

/// Issue 20 item 13: a switchover whose target cannot catch up (the tunnel cut after the demote)
/// can be undone: `--abort` restores the source and releases the holds, recorded step by step;
/// once the target is promoted, only `--resume` remains.
#[test]
fn abort_restores_the_source_until_the_target_is_promoted() {
    let (mut g, mut d) = healthy(1000, 990);
    g = with_agent(g, false);
    d = with_agent(d, false);
    let abort = Request {
        to: None,
        abort: true,
        ..req(false)
    };
    assert!(matches!(
        next(&Pair { from: &g, to: &d }, None, &abort, t(0)),
        Next::Refuse(ref m) if m.to_string().contains("nothing to abort")
    ));
    // Stuck at catch-up: the source demoted (a standby leader at 1040), the target at 990.
    let p = at(&begin(&g, &d, &req(false)), Step::CatchUp);
    g.config = Some(config(true));
    g.members[0] = member("gold-0", "standby_leader", 1, 1040);
    g.agent.hold = true;
    d.agent.hold = true;
    let Next::Record { progress: p } = next(&Pair { from: &g, to: &d }, Some(&p), &abort, t(1))
    else {
        panic!("the abort is recorded first")
    };
    assert_eq!((p.step, p.aborted), (Step::Restore, true));
    let mut p = p;
    let mut done = None;
    for i in 2..12 {
        // Resuming an aborted switchover goes on with the abort.
        let ask = if i % 2 == 0 { &abort } else { &req(false) };
        match next(&Pair { from: &g, to: &d }, Some(&p), ask, t(i)) {
            Next::Record { progress } => p = progress,
            Next::Act {
                action: Action::Restore { site },
                ..
            } => {
                assert_eq!(site, "gold");
                g.config = Some(config(false));
                g.members[0] = member("gold-0", "primary", 2, 1100);
            }
            Next::Act {
                action: Action::ReleaseHold { sites },
                ..
            } => {
                for s in [&mut g, &mut d] {
                    if sites.contains(&s.site) {
                        s.agent.hold = false;
                    }
                }
            }
            Next::Done(m) => {
                done = Some(m.to_string());
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        if p.step == Step::Done {
            done = Some(p.log.last().unwrap().message.clone());
            break;
        }
    }
    let done = done.expect("the abort finishes");
    assert!(
        done.contains("aborted: gold is the primary again"),
        "{done}"
    );
    assert!(!g.agent.hold && !d.agent.hold);
    assert!(d.is_standby_configured(), "the target was never promoted");

    // Once the target was promoted: refused, --resume finishes it.
    let (g2, mut d2) = healthy(1000, 1040);
    let promoted = at(&begin(&g2, &d2, &req(false)), Step::Promoted);
    d2.config = Some(config(false));
    let n = next(&Pair { from: &g2, to: &d2 }, Some(&promoted), &abort, t(20));
    assert!(
        matches!(n, Next::Refuse(ref m) if m.to_string().contains("--resume")),
        "{n:?}"
    );
}

#[test]
fn unreadable_site_waits_mid_way() {
    let (g, d) = healthy(100, 100);
    let p = at(&begin(&g, &d, &req(false)), Step::CatchUp);
    let down = SiteObs {
        site: "golddr".into(),
        error: Some("connection refused".into()),
        ..SiteObs::default()
    };
    assert!(
        matches!(run(&g, &down, &p, 1), Next::Wait(ref m) if m.to_string().contains("cannot be read"))
    );
}

/// The whole machine against a small simulated pair, acting as Patroni would: the switchover
/// ends with the roles swapped, the token equal to the source's final position, no holds left.
#[test]
fn round_trip_against_a_simulated_pair() {
    let (mut g, mut d) = healthy(1000, 990);
    let mut progress: Option<Progress> = None;
    let mut now = 0;
    for _ in 0..60 {
        now += 1;
        // Patroni's side of the world, one loop per iteration.
        let demote_requested = g.is_standby_configured();
        if demote_requested && g.members[0].is_writable() {
            // clean demote: shutdown checkpoint of 40 bytes, streamed to the standby
            g.members[0] = Member {
                replication_state: None,
                ..member("gold-0", "standby_leader", 1, 1040)
            };
        } else if !d.is_standby_configured() && !d.members[0].is_writable() {
            d.members[0] = member("golddr-0", "primary", 2, 1100);
        } else if d.members[0].is_standby_leader() {
            let caught = if demote_requested { 1040 } else { 1000 };
            d.members[0] = member("golddr-0", "standby_leader", 1, caught);
        }
        if d.members[0].is_writable() && g.members[0].is_standby_leader() {
            g.members[0] = member("gold-0", "standby_leader", 2, 1100);
        }
        let r = req(false);
        match next(&Pair { from: &g, to: &d }, progress.as_ref(), &r, t(now)) {
            Next::Begin { progress: p, .. } | Next::Record { progress: p } => progress = Some(p),
            Next::Act { action, .. } => match action {
                Action::SetHold { sites } => {
                    for s in [&mut g, &mut d] {
                        if sites.contains(&s.site) {
                            s.agent.hold = true;
                        }
                    }
                }
                Action::ReleaseHold { sites } => {
                    for s in [&mut g, &mut d] {
                        if sites.contains(&s.site) {
                            s.agent.hold = false;
                        }
                    }
                }
                Action::Demote { .. } => g.config = Some(config(true)),
                Action::Promote { .. } => d.config = Some(config(false)),
                Action::Restore { .. } => panic!("no abort here"),
            },
            Next::Wait(_) => {}
            Next::Done(_) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let p = progress.expect("a record");
    assert_eq!(p.step, Step::Done, "{:#?}", p.log);
    assert_eq!(
        p.token,
        Some(Token {
            lsn: 1040,
            timeline: 1
        })
    );
    assert_eq!(p.new_timeline, Some(2));
    assert!(!g.agent.hold && !d.agent.hold);
    assert!(d.members[0].is_writable() && !g.members[0].is_writable());
}

#[test]
fn promote_checks() {
    use PromoteKind::Promote;
    let (g, d) = healthy(100, 90);
    let r = check_promote(&d, &g, Promote, true);
    assert!(
        r.unwrap_err().to_string().contains("writable primary"),
        "never two primaries, even forced"
    );
    let gone = SiteObs {
        site: "gold".into(),
        error: Some("timeout".into()),
        ..SiteObs::default()
    };
    assert!(
        check_promote(&d, &gone, Promote, false)
            .unwrap_err()
            .to_string()
            .contains("--force")
    );
    let mut d2 = d.clone();
    d2.agent.last_known_lag_bytes = Some(4096);
    let c = check_promote(&d2, &gone, Promote, true).unwrap();
    assert!(!c.must_type, "the peer cannot be read: --yes is enough");
    let notes = c.notes;
    assert!(notes.iter().any(|n| n.contains("really down")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("4096 bytes")), "{notes:?}");
    assert!(
        notes.iter().any(|n| n.contains("replayed 0/5A")),
        "{notes:?}"
    );
    let mut bad = d.clone();
    bad.config.as_mut().unwrap().config = Err("not JSON".into());
    assert!(
        check_promote(&bad, &gone, Promote, true)
            .unwrap_err()
            .to_string()
            .contains("not JSON")
    );
}

/// Issue 20 item 4: `unfence` ends a fence and nothing else, and neither it nor `promote --force`
/// promotes beside a visibly alive peer without --force and the typed name.
#[test]
fn unfence_only_ends_a_fence_and_a_live_peer_needs_force_and_the_typed_name() {
    use PromoteKind::{Promote, Unfence};
    let (g, d) = healthy(100, 90);
    // golddr is a plain standby (not fenced): unfence refuses and names the right command.
    let gold_down = SiteObs {
        site: "gold".into(),
        error: Some("timeout".into()),
        ..SiteObs::default()
    };
    let e = check_promote(&d, &gold_down, Unfence, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not fenced") && e.contains("promote golddr --force"),
        "{e}"
    );
    // A fenced gold, golddr a running standby leader (visibly alive): refused without --force…
    let mut fenced = g.clone();
    fenced.config.as_mut().unwrap().config = Ok(json!({"pgdr_fence": {"phase": "hold"},
        "standby_cluster": {"restore_command": "false"}})
    .as_object()
    .cloned()
    .unwrap());
    fenced.members[0].role = Some("standby_leader".into());
    assert!(peer_alive(&d).is_some(), "{d:?}");
    let e = check_promote(&fenced, &d, Unfence, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("visibly alive") && e.contains("--force"), "{e}");
    // …and with it the name must be typed (--yes is not enough).
    let c = check_promote(&fenced, &d, Unfence, true).unwrap();
    assert!(c.must_type);
    assert!(c.notes[0].starts_with("WARNING"), "{:?}", c.notes);
    // promote --force beside a live standby peer: the typed name too.
    let (g2, d2) = healthy(100, 90);
    let mut gold_standby = g2.clone();
    gold_standby.members[0].role = Some("standby_leader".into());
    assert!(
        check_promote(&d2, &gold_standby, Promote, true)
            .unwrap()
            .must_type
    );
}

#[test]
fn config_edits_keep_other_keys() {
    let base = json!({"ttl": 30, "postgresql": {"use_pg_rewind": true}, "slots": {"other": {"type": "physical"}}});
    let base = base.as_object().unwrap();
    let target = FollowTarget {
        host: "patroni-golddr.ns.svc".into(),
        port: 31234,
        slot: slot("pgdr_gold"),
    };
    let fenced = with_standby(base, &target);
    assert_eq!(fenced["ttl"], 30);
    assert_eq!(fenced["postgresql"]["use_pg_rewind"], true);
    assert_eq!(
        fenced["standby_cluster"],
        json!({"host": "patroni-golddr.ns.svc", "port": 31234, "primary_slot_name": "pgdr_gold", "create_replica_methods": ["basebackup"]})
    );
    assert_eq!(with_standby(&fenced, &target), fenced, "idempotent");
    let open = without_standby(&fenced, &slot("pgdr_golddr"), FORK, &who(0));
    assert!(!open.contains_key("standby_cluster"));
    assert_eq!(
        open["slots"],
        json!({"other": {"type": "physical"}, "pgdr_golddr": {"type": "physical"}})
    );
    assert_eq!(open["postgresql"]["use_pg_rewind"], true);
    assert_eq!(
        without_standby(&open, &slot("pgdr_golddr"), FORK, &who(0)),
        open,
        "idempotent: an unfenced primary gets no second epoch"
    );
}

#[test]
fn rejoin_approval_table() {
    let map = |v: serde_json::Value| match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    let now = t(1000);
    let fence = |extra: serde_json::Value| {
        let mut f = json!({"since": "2026-12-04T10:00:00Z", "reason": "peer-authoritative",
                           "peer": "golddr", "phase": "hold"});
        f.as_object_mut().unwrap().extend(map(extra));
        f
    };
    let hold = fence(
        json!({"timeline": 3, "fork_lsn": "0/5000A28", "diverged_bytes": 1234,
                            "written_by_a_newer_agent": true}),
    );
    #[rustfmt::skip]
    let cases: Vec<(&str, serde_json::Value, Result<bool, &str>)> = vec![
        // name, config, Ok(changed) or Err(part of the message)
        ("diverged, holding: approved", json!({"ttl": 30, "pgdr_fence": hold}), Ok(true)),
        ("approved before: unchanged", json!({"pgdr_fence": fence(json!({"fork_lsn": "0/1", "rejoin_approved_at": "y"}))}), Ok(false)),
        ("not fenced", json!({"ttl": 30}), Err("is not fenced")),
        ("fence null", json!({"pgdr_fence": null}), Err("is not fenced")),
        ("following already", json!({"pgdr_fence": fence(json!({"phase": "follow", "fork_lsn": "0/1"}))}), Err("already follows")),
        ("fork unknown", json!({"pgdr_fence": fence(json!({}))}), Err("fork point is not known")),
        ("not an object", json!({"pgdr_fence": "yes"}), Err("not a fence document")),
        ("half a document", json!({"pgdr_fence": {"phase": "hold", "fork_lsn": "0/1"}}), Err("not a fence document")),
    ];
    for (name, cfg, want) in cases {
        let cfg = map(cfg);
        match (approve_rejoin("gold", &cfg, now), want) {
            (Ok(Some(c)), Ok(true)) => {
                assert_eq!(
                    c["pgdr_fence"]["rejoin_approved_at"],
                    json!(now.to_string()),
                    "{name}"
                );
                // Everything else kept.
                for (k, v) in &cfg {
                    if k != "pgdr_fence" {
                        assert_eq!(&c[k], v, "{name}: {k}");
                    }
                }
                assert_eq!(c["pgdr_fence"]["diverged_bytes"], 1234, "{name}");
                assert_eq!(c["pgdr_fence"]["written_by_a_newer_agent"], true, "{name}");
            }
            (Ok(None), Ok(false)) => {}
            (Err(e), Err(part)) => {
                let e = e.to_string();
                assert!(e.contains(part) && e.contains("gold"), "{name}: {e}")
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn unfence_and_promotion_remove_the_fence_too() {
    let cfg = match json!({"ttl": 30, "standby_cluster": {"restore_command": "false"},
                           "pgdr_fence": {"phase": "follow"}, "slots": {"a": {"type": "physical"}}})
    {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    let c = without_standby(&cfg, &slot("pgdr_golddr"), FORK, &who(0));
    assert!(c.get("standby_cluster").is_none());
    assert!(c.get("pgdr_fence").is_none());
    assert_eq!(c["ttl"], 30);
    assert_eq!(
        c["slots"],
        json!({"a": {"type": "physical"}, "pgdr_golddr": {"type": "physical"}})
    );
}

const FORK: Fork = Fork {
    timeline: 3,
    replayed: 0x5000A28,
};

fn who(peer_known: u64) -> Promotion<'static> {
    Promotion {
        site: "golddr",
        at: t(0).to_string(),
        peer: pgdr_contract::epoch::PeerEpoch::Read(peer_known),
    }
}

#[test]
fn a_promotion_leaves_the_marker_a_returning_primary_reads() {
    let leader = Member {
        name: "patroni-golddr-0".into(),
        role: Some("standby_leader".into()),
        state: Some("running".into()),
        timeline: Some(3),
        xlog_location: Some(0x5000B00),
        replay_lsn: Some(0x5000A28),
        receive_lsn: Some(0x5000B00),
        replication_state: None,
        pending_restart: false,
        status_problem: None,
    };
    // The fork: the timeline the leader follows and the position it replayed.
    assert_eq!(fork(Some(&leader)), Some(FORK));
    let cfg = match json!({"ttl": 30, "standby_cluster": {"host": "x", "port": 5432},
                           "pgdr_epoch_seen": 2,
                           "postgresql": {"use_pg_rewind": true, "parameters": {"max_connections": 100,
                               "pgdr.promoted_from": "epoch=1 timeline=1 fork_lsn=0/100"}}})
    {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    // The epoch is above this site's own (1), what it saw (2) and the peer's known (4).
    let c = without_standby(&cfg, &slot("pgdr_gold"), FORK, &who(4));
    let marker = pgdr_contract::marker::get(&c).unwrap().unwrap();
    assert_eq!(
        (
            marker.epoch,
            marker.timeline,
            marker.fork_lsn,
            marker.fork_pending
        ),
        (5, 3, 0x5000A28, true)
    );
    assert_eq!(marker.site, "golddr");
    assert_eq!(
        c["postgresql"]["parameters"][MARKER_GUC],
        json!(marker.render())
    );
    assert_eq!(c["postgresql"]["parameters"]["max_connections"], 100);
    assert_eq!(c["postgresql"]["use_pg_rewind"], true);
    // Without a timeline or position there is no fork, and so no promotion (the command refuses).
    let unknown = Member {
        timeline: None,
        ..leader.clone()
    };
    assert_eq!(fork(Some(&unknown)), None);
    assert_eq!(fork(None), None);
}

fn slot(name: &str) -> SlotName {
    SlotName::parse(name).unwrap()
}

/// The slot every plugin write names is the pair's one slot (`replication.slotName`), found on
/// the sites; never a name made from a site name (the bug that left a failed-back site asking
/// for a slot that did not exist).
#[test]
fn slot_name_table() {
    let with = |agent: Option<&str>, standby_slot: Option<&str>, standby: bool| {
        let mut o = site("x", standby, member("x-0", "primary", 1, 1));
        o.agent.slot_name = agent.map(str::to_string);
        if let (Some(s), Some(Ok(cfg))) = (standby_slot, o.config.as_mut().map(|c| &mut c.config)) {
            cfg.insert(
                STANDBY_CLUSTER.into(),
                json!({"host": "h", "port": 5432, "primary_slot_name": s}),
            );
        }
        o
    };
    let given = slot("from_flag");
    // name, --slot-name, both sites, Ok(slot) or Err(part of the message)
    type Row<'a> = (
        &'a str,
        Option<&'a SlotName>,
        [SiteObs; 2],
        Result<&'a str, &'a str>,
    );
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        ("the flag wins", Some(&given),
            [with(Some("pgdr_golddr"), None, false), with(None, None, false)], Ok("from_flag")),
        ("both agents agree", None,
            [with(Some("pgdr_golddr"), None, false), with(Some("pgdr_golddr"), Some("pgdr_golddr"), true)], Ok("pgdr_golddr")),
        ("only the standby's standby_cluster", None,
            [with(None, None, false), with(None, Some("pgdr_golddr"), true)], Ok("pgdr_golddr")),
        ("an agent on one site only", None,
            [with(None, None, false), with(Some("pgdr_golddr"), None, true)], Ok("pgdr_golddr")),
        ("the sites disagree", None,
            [with(Some("pgdr_golddr"), None, false), with(Some("pgdr_gold"), None, true)], Err("different replication slots")),
        ("agent and standby_cluster disagree", None,
            [with(None, None, false), with(Some("a"), Some("b"), true)], Err("different replication slots")),
        ("nothing names it", None,
            [with(None, None, false), with(None, None, true)], Err("pass --slot-name")),
        ("an invalid name is refused", None,
            [with(Some("Gold-DR"), None, false), with(None, None, true)], Err("not a replication slot name")),
    ];
    for (name, configured, obs, want) in rows {
        let got = slot_name(configured, &obs);
        match (got, want) {
            (Ok(s), Ok(w)) => assert_eq!(s.as_str(), w, "{name}"),
            (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{name}: {e}"),
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

/// Issue 20 item 3: `fence` puts a site that may hold writes of its own on hold (its agent
/// records, preserves and rejoins), follows at once only from a running standby, and fences the
/// site with the newer promotion only with --force and the typed name.
#[test]
fn fence_checks() {
    let (g, d) = healthy(100, 90);
    // The writable gold: hold form, the only-primary note, the typed name not required.
    let c = check_fence(&g, &d, false).unwrap();
    assert!(c.hold && !c.must_type, "{c:?}");
    assert!(
        c.notes.iter().any(|n| n.contains("only writable primary")),
        "{c:?}"
    );
    assert!(c.notes.iter().any(|n| n.contains("preserved")), "{c:?}");
    // A running standby: the follow form at once, nothing to preserve.
    let c = check_fence(&d, &g, false).unwrap();
    assert!(!c.hold && !c.must_type, "{c:?}");
    // A site that is down may come back with writes of its own: hold.
    let mut down = g.clone();
    down.members[0].state = Some("stopped".into());
    assert!(check_fence(&down, &d, false).unwrap().hold);
    // Without its agent the hold is said to last.
    let no_agent = with_agent(g.clone(), true);
    let c = check_fence(&no_agent, &d, false).unwrap();
    assert!(c.notes.iter().any(|n| n.contains("not running")), "{c:?}");
    // gold holds the newer promotion (epoch 3 against golddr's 2): refused without --force…
    let marker = |epoch: u64| {
        json!({"postgresql": {"parameters": {"pgdr.promoted_from":
            format!("epoch={epoch} timeline=1 fork_lsn=0/64 site=x at=2026-12-04T10:00:00Z")}}})
        .as_object()
        .cloned()
        .unwrap()
    };
    let (mut newer, mut older) = (g.clone(), d.clone());
    newer.config.as_mut().unwrap().config = Ok(marker(3));
    older.config.as_mut().unwrap().config = Ok(marker(2));
    let e = check_fence(&newer, &older, false).unwrap_err().to_string();
    assert!(
        e.contains("newer promotion") && e.contains("--force"),
        "{e}"
    );
    // …and with it the name is typed.
    let c = check_fence(&newer, &older, true).unwrap();
    assert!(c.must_type && c.hold, "{c:?}");
    // The older site is fenced without --force.
    older.members[0] = newer.members[0].clone();
    assert!(!check_fence(&older, &newer, false).unwrap().must_type);
    // An unreadable site is refused.
    let gone = SiteObs {
        site: "gold".into(),
        error: Some("timeout".into()),
        ..SiteObs::default()
    };
    assert!(check_fence(&gone, &d, false).is_err());
}
