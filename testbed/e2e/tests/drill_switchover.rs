//! Planned switchover on both sites with the real chart (the drill), driven by the kubectl plugin
//! binary run as a process, under a writer committing every few milliseconds:
//! 1. the round trip gold → golddr → gold: nothing acknowledged lost on either leg, a new timeline
//!    each time, and `helm upgrade` of both sites with their original values while golddr is
//!    primary changes no role;
//! 2. the same round trip again with the plugin SIGKILLed mid-way on each leg (after it recorded
//!    `demote` on the way out, `promote` on the way back) and finished with `--resume`: never two
//!    writable primaries, exactly one at the end, nothing acknowledged lost.
//!
//! One setup for both (about three minutes on two cores). Killing at every step is done against
//! real Patroni in `crates/kubectl-pgdr/tests/patroni.rs`, where a leg is cheaper.

use pgdr_drill::options::{Options, REHEARSE_CRON_EVERY};
use pgdr_drill::switchover::{self, LegPlan, UNAVAILABILITY_TARGET};

/// A sanity bound for one leg's write unavailability on a loaded CI machine (the target at drill
/// timings is 10 s, reported in the table; this catches a switchover that stalls).
const UNAVAILABILITY_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_switchover_round_trip_and_interrupted() {
    let o = Options {
        cron_every: Some(REHEARSE_CRON_EVERY),
        switchover: true,
        ..Options::default()
    };
    let legs = [
        switchover::ROUND_TRIP[0],
        switchover::ROUND_TRIP[1],
        LegPlan {
            to: "golddr",
            kill_after: Some("demote"),
        },
        LegPlan {
            to: "gold",
            kill_after: Some("promote"),
        },
    ];
    let report = switchover::rehearse(&o, &legs).await.expect("drill set up");
    eprintln!("{}", report.render(true));
    assert!(report.passed(), "{}", report.render(true));
    assert_eq!(report.legs.len(), legs.len(), "every leg ran");
    assert!(
        report.acknowledged_on_golddr > 0,
        "the writer committed on golddr while it was primary"
    );
    for (leg, plan) in report.legs.iter().zip(&legs) {
        assert_eq!(leg.to, plan.to);
        assert_eq!(leg.lost, 0, "acknowledged commits lost: {leg:?}");
        assert_eq!(
            leg.killed_after.as_deref(),
            plan.kill_after,
            "the plugin was killed where planned: {leg:?}"
        );
        let (Some(before), Some(after)) = (leg.timeline_before, leg.timeline_after) else {
            panic!("timelines unknown: {leg:?}");
        };
        assert!(after > before, "a new timeline on the new primary: {leg:?}");
        assert!(
            leg.unavailability <= UNAVAILABILITY_BOUND,
            "writes unavailable {:?} (target {UNAVAILABILITY_TARGET:?}): {leg:?}",
            leg.unavailability
        );
    }
}
