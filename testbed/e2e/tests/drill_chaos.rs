//! Issue 21: the randomized fault drill. A seeded schedule of faults ([`Schedule`]: power
//! cycles, tunnel cuts and blackholes, GSLB health cuts, switchovers with the plugin) runs against
//! a pair with the real chart, Patroni and PostgreSQL while one writer per site commits through
//! its site's primary Service and a sampler asks both sidecars `/primary` every 200 ms; then
//! everything heals and the checker ([`pgdr_drill::chaos::check`]) judges the invariants on what
//! was recorded.
//!
//! `PGDR_CHAOS_SEED` (default 1) and `PGDR_CHAOS_STEPS` (default 4) choose the schedule; CI runs
//! the default, `make chaos` runs more seeds and writes the table in docs/chaos.md.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pgdr_drill::chaos::{self, Bounds, Fault, History, Schedule};
use pgdr_drill::fencing::{self, PrimarySampler, Writers};
use pgdr_drill::gslb::Gslb;
use pgdr_drill::stage::Stage;
use pgdr_drill::switchover::Plugin;
use pgdr_e2e::pair::{SITES, leader_writable, prepare_table, rows_on, watched};

/// The failover CronJob's period in this drill (seconds).
const CRON_EVERY: u64 = 2;

/// The bounds the invariants are held to at the drill's timings: an isolated primary may answer
/// `/primary` until its agent fences it on the witness's word (the fencing scenarios' 30 s); a
/// pair converges within a re-clone and a rejoin.
const BOUNDS: Bounds = Bounds {
    both_advertised: Duration::from_secs(30),
    converge: Duration::from_secs(180),
};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_chaos() {
    let seed = env_u64("PGDR_CHAOS_SEED", 1);
    let steps = env_u64("PGDR_CHAOS_STEPS", 4) as usize;
    let schedule = Schedule::generate(seed, steps);
    eprintln!("[chaos] {schedule}");
    let (gslb, mut stage) = pgdr_e2e::pair::start(CRON_EVERY, None, &[]).await;
    let budget = Duration::from_secs(300 + 90 * steps as u64);
    let outcome = tokio::time::timeout(
        budget,
        pgdr_e2e::catching(async {
            prepare_table(&stage).await;
            run(&mut stage, &gslb, &schedule).await;
        }),
    )
    .await;
    let failed = !matches!(outcome, Ok(Ok(())));
    if failed {
        eprintln!("{}", stage.diagnostics());
    }
    stage.shutdown().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("[chaos] {schedule}: not done within {budget:?}"),
    }
}

async fn run(stage: &mut Stage, gslb: &Gslb, schedule: &Schedule) {
    let plugin = Plugin::for_sites(stage.gold().unwrap(), &stage.golddr)
        .unwrap_or_else(|e| panic!("the kubectl plugin: {e:?}"));
    let sampler = PrimarySampler::start(watched(stage));
    let writers = Writers::start(watched(stage), stage.password(), 5_000_000_000);
    gslb.wait_marked("gold", true, Duration::from_secs(30))
        .await
        .expect("the GSLB sees gold healthy");
    stage
        .wait_agent_baseline(&stage.golddr, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (i, step) in schedule.steps.iter().enumerate() {
        tokio::time::sleep(step.after).await;
        eprintln!("[chaos] step {}: {} for {:?}", i + 1, step.fault, step.hold);
        apply(stage, gslb, &plugin, &step.fault, step.hold).await;
    }
    // Heal whatever is left and let the pair settle.
    stage.platform.heal();
    for site in SITES {
        gslb.cut_health(site, false);
    }
    let healed = Instant::now();
    let converged_after = converge(stage, BOUNDS.converge)
        .await
        .map(|_| healed.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acks = writers.stop().await;
    let stats = sampler.stats();

    let mut acked: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for a in &acks {
        acked.entry(a.site.clone()).or_default().insert(a.id);
    }
    let mut final_primary = None;
    for site in SITES {
        if leader_writable(stage, site).await == Some(true) {
            final_primary = rows_on(stage, site).await.map(|r| (site.to_string(), r));
        }
    }
    let mut preserved_divergence = BTreeMap::new();
    for site in SITES {
        let d = fencing::divergence(stage.site(site).unwrap()).await;
        let covered = d.bytes.is_some_and(|b| b > 0) && d.preserved;
        preserved_divergence.insert(site.to_string(), covered);
        eprintln!(
            "[chaos] {site}: divergence {:?} ({}), preserved {}",
            d.bytes, d.source, d.preserved
        );
    }
    let history = History {
        acked,
        final_primary,
        preserved_divergence,
        longest_both_advertised: stats.longest_both_for,
        converged_after,
    };
    let (figures, violations) = chaos::check(&history, &BOUNDS);
    println!(
        "CHAOS seed={} steps={} acked={} missing={} missing_preserved={} both_advertised_s={:.1} converged_s={} violations={}",
        schedule.seed,
        schedule.steps.len(),
        figures.acked,
        figures.missing,
        figures.missing_preserved,
        history.longest_both_advertised.as_secs_f64(),
        history
            .converged_after
            .map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64())),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "[chaos] {schedule}: {} invariant(s) did not hold:\n  - {}",
        violations.len(),
        violations
            .iter()
            .map(|v| v.0.as_str())
            .collect::<Vec<_>>()
            .join("\n  - ")
    );
}

/// Starts one fault and undoes it `hold` later.
async fn apply(stage: &mut Stage, gslb: &Gslb, plugin: &Plugin, fault: &Fault, hold: Duration) {
    match fault {
        Fault::PowerCycle { site } => {
            let before = pgdr_drill::stage::members(stage.site(site).unwrap());
            stage
                .power_off(site)
                .await
                .unwrap_or_else(|e| panic!("power off {site}: {e:?}"));
            tokio::time::sleep(hold).await;
            stage
                .power_on(site)
                .unwrap_or_else(|e| panic!("power on {site}: {e:?}"));
            let s = stage.site(site).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let now = pgdr_drill::stage::members(s);
                if !now.is_empty() && now.iter().all(|m| !before.contains(m)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            gslb.watch(s);
        }
        Fault::TunnelCut => {
            stage.platform.cut();
            tokio::time::sleep(hold).await;
            stage.platform.heal();
        }
        Fault::TunnelBlackhole => {
            stage.platform.blackhole();
            tokio::time::sleep(hold).await;
            stage.platform.heal();
        }
        Fault::GslbHealthCut { site } => {
            gslb.cut_health(site, true);
            tokio::time::sleep(hold).await;
            gslb.cut_health(site, false);
        }
        Fault::Switchover { to } => {
            let r = plugin
                .run(&["switchover", "--to", to, "--step-timeout", "60"], None)
                .await;
            match r {
                Ok(r) => eprintln!(
                    "[chaos] switchover --to {to}: exit {:?}; {}",
                    r.code,
                    r.stderr.lines().last().unwrap_or("")
                ),
                Err(e) => eprintln!("[chaos] switchover --to {to}: {e:?}"),
            }
        }
    }
}

/// Waits until exactly one site is a writable primary and the other site's leader streams from
/// it; `Some(())` then, `None` after `within`.
async fn converge(stage: &Stage, within: Duration) -> Option<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let mut writable = Vec::new();
        for site in SITES {
            if leader_writable(stage, site).await == Some(true) {
                writable.push(site);
            }
        }
        if let [primary] = writable[..] {
            let other = SITES.iter().find(|s| **s != primary).unwrap();
            let left = deadline.saturating_duration_since(Instant::now());
            let streaming = stage
                .wait_site_streaming(stage.site(other).unwrap(), left.min(Duration::from_secs(5)))
                .await;
            if streaming.is_ok() {
                eprintln!("[chaos] converged: {primary} primary, {other} streams from it");
                return Some(());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    None
}
