//! Benchmark: time from killing the primary to a writable standby, and false promotions over a
//! series of short link cuts — this job's policy against the prototype's (one `pg_isready` per
//! CronJob minute, promote on the first failure).
//!
//! `cargo run -p pgdr-failover --example failover_bench`
//!
//! `BENCH_SCALE` (default 0.1) scales every duration of the defaults (sample interval 10 s,
//! N = 6, T = 120 s, CronJob period 60 s, cuts of 10-110 s), so the default run takes a few
//! minutes; `BENCH_SCALE=1` runs the real defaults (about half an hour). Needs `make deps`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use pgdr_failover::decide::{self, Probe, Verdict};
use pgdr_failover::observe::{self, Kube};
use pgdr_failover::state::State;
use pgdr_failover::{Report, Settings};

/// Cut lengths at scale 1, all shorter than T = 120 s: none of them should promote.
const CUTS_S: [f64; 6] = [10.0, 25.0, 45.0, 60.0, 90.0, 110.0];

fn main() {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.1);
    let d = |secs: f64| Duration::from_secs_f64(secs * scale);
    let ms = |secs: f64| format!("{}ms", d(secs).as_millis());
    let cron = d(60.0);
    let ours = common::settings(&[
        ("FAILOVER_SAMPLE_INTERVAL", &ms(10.0)),
        ("FAILOVER_SAMPLES_PER_RUN", "6"),
        ("FAILOVER_FAILURE_THRESHOLD", "6"),
        ("FAILOVER_MIN_FAILURE_SPAN", &ms(120.0)),
        ("FAILOVER_MAX_SAMPLE_GAP", &ms(150.0)),
        ("FAILOVER_PROBE_TIMEOUT", "3s"),
    ]);
    let proto = common::settings(&[
        ("FAILOVER_SAMPLES_PER_RUN", "1"),
        ("FAILOVER_FAILURE_THRESHOLD", "1"),
        ("FAILOVER_MIN_FAILURE_SPAN", "0s"),
        ("FAILOVER_FORCE", "true"),
        ("FAILOVER_PROBE_TIMEOUT", "3s"),
    ]);
    println!(
        "scale {scale}: sample interval {:?}, N 6, T {:?}, prototype CronJob period {cron:?}",
        ours.interval(),
        d(120.0)
    );
    let rt = common::runtime();

    // 1. False promotions: the same samples, through a series of short cuts, judged by both.
    let p = common::pair();
    let (ours_false, proto_false, cuts) = rt.block_on(async {
        let kube = Kube {
            client: common::client(&p.site_b).await,
            namespace: common::NS_B.into(),
            deadline: Duration::from_secs(5),
        };
        let mut state = State::default();
        let mut next_cron = Instant::now();
        let (mut ours_false, mut proto_false) = (0, 0);
        for (i, cut) in CUTS_S.iter().enumerate() {
            // Healthy time between cuts, then the cut.
            for (phase, length) in [("healthy", d(30.0)), ("cut", d(*cut))] {
                if phase == "cut" {
                    p.tunnel.cut();
                } else {
                    p.tunnel.heal();
                }
                let until = Instant::now() + length;
                let (mut ours_hit, mut proto_hit) = (false, false);
                while Instant::now() < until {
                    let tick = Instant::now();
                    let (sample, _) = observe::sample(&ours, &kube, "bench")
                        .await
                        .expect("sample");
                    let decision = decide::decide(&ours.policy, Ok(&state), &sample);
                    if let Some(mut next) = decision.next {
                        next.promotion = None; // count it, but keep judging the next samples
                        state = next;
                    }
                    ours_hit |= decision.verdict == Verdict::Promote;
                    if Instant::now() >= next_cron {
                        next_cron += cron;
                        proto_hit |= matches!(sample.probe, Probe::NoAnswer { .. });
                    }
                    tokio::time::sleep_until((tick + ours.interval()).into()).await;
                }
                if phase == "cut" {
                    println!(
                        "cut {} of {:?}: this job {}, prototype {}",
                        i + 1,
                        length,
                        if ours_hit { "PROMOTES" } else { "holds" },
                        if proto_hit { "PROMOTES" } else { "holds" }
                    );
                    ours_false += u32::from(ours_hit);
                    proto_false += u32::from(proto_hit);
                } else if ours_hit || proto_hit {
                    println!("note: a promotion decision while the link was healthy");
                }
            }
        }
        p.tunnel.heal();
        (ours_false, proto_false, CUTS_S.len())
    });

    // 2. Time from killing the primary to a confirmed writable primary, this job's policy.
    let ours_time = time_to_promote(&rt, &p, &ours, Duration::ZERO);
    drop(p);
    // 3. The same for the prototype: its next CronJob run comes on average half a period later.
    let p = common::pair();
    let proto_time = time_to_promote(&rt, &p, &proto, cron / 2);
    println!("\n| policy | kill -> writable primary | false promotions over {cuts} cuts |");
    println!("|---|---|---|");
    println!(
        "| this job (N 6, T {:?}, interval {:?}) | {ours_time:.1?} | {ours_false} |",
        d(120.0),
        ours.interval()
    );
    println!(
        "| prototype (1 probe per {cron:?}, promote on first failure) | {proto_time:.1?} | {proto_false} |"
    );
}

/// Kills the primary, then runs the job back to back (the prototype: one run per CronJob
/// period, the first `first_run_after` the kill) until it reports a confirmed promotion.
fn time_to_promote(
    rt: &tokio::runtime::Runtime,
    p: &common::Pair,
    s: &Settings,
    first_run_after: Duration,
) -> Duration {
    rt.block_on(async {
        let run = |name: &'static str| async move {
            pgdr_failover::run_with(s, common::client(&p.site_b).await, name).await
        };
        let warm: Report = run("warm-up").await.expect("healthy run");
        assert_eq!(warm.verdict, Verdict::Healthy, "{:?}", warm.reasons);
        p.a.kill_hard();
        let killed = Instant::now();
        tokio::time::sleep(first_run_after).await;
        loop {
            let started = Instant::now();
            let r = run("bench").await.expect("run");
            if r.verdict == Verdict::Promote {
                return killed.elapsed();
            }
            assert!(
                killed.elapsed() < Duration::from_secs(3600),
                "never promoted: {:?}",
                r.reasons
            );
            if s.config.samples_per_run == 1 {
                tokio::time::sleep_until((started + first_run_after * 2).into()).await;
            }
        }
    })
}
