//! Issue 11's "done when", on the drill: a tunnel-only partition (blackholed both ways) held for
//! "10 minutes" scaled to the drill's timings, both sites alive and writes flowing to Gold.
//!
//! - With the drill's GSLB as witness (it still sees Gold healthy and answers `alive`): no
//!   promotion, and the failover runs say the witness blocked them.
//! - With no witness in `auto`: the chart refuses (`helm upgrade` fails with its message) and so
//!   does the binary (run with the CronJob's own configuration minus the witness: configuration
//!   error, exit code 2).
//! - Then the GSLB's health path to Gold is cut: it marks Gold down and moves the application to
//!   GoldDR, the witness answers `down`, and GoldDR is promoted with every row it had confirmed.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgdr_drill::cronjob;
use pgdr_drill::gslb::{Gslb, GslbConfig};
use pgdr_drill::minicluster::api;
use pgdr_drill::options::Options;
use pgdr_drill::stage::{Stage, failover_lines, member};

/// The drill's failover runs fire every few seconds.
const CRON_EVERY: u64 = 2;
/// 10 minutes at production timings, scaled by the ratio of the failure windows: the chart's
/// defaults need N=5 samples 5 s apart spanning T >= 20 s, the drill overlay N=4 samples 1 s apart
/// spanning T >= 4 s — a factor of 5, so 120 s (30 failure windows either way).
const PARTITION: Duration = Duration::from_secs(600 / 5);
/// The binary's exit code for a configuration error (crates/core `exit::CONFIG`).
const EXIT_CONFIG: i32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_partition() {
    let gslb = Gslb::start(GslbConfig::drill(), &["gold", "golddr"])
        .await
        .expect("GSLB started");
    let o = Options {
        cron_every: Some(CRON_EVERY),
        ..Options::default()
    };
    let started = Instant::now();
    let mut stage = Stage::up_with_gslb(&o, &gslb, &[], &[], false)
        .await
        .expect("both sites installed");
    eprintln!("setup done in {:.1}s", started.elapsed().as_secs_f64());
    let outcome = tokio::time::timeout(
        Duration::from_secs(360),
        pgdr_e2e::catching(scenario(&mut stage, &gslb)),
    )
    .await;
    if !matches!(outcome, Ok(Ok(()))) {
        eprintln!("{}", stage.diagnostics());
    }
    stage.shutdown().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => std::panic::resume_unwind(e),
        Err(_) => panic!("the partition scenario did not finish within 6 minutes"),
    }
}

async fn scenario(stage: &mut Stage, gslb: &Gslb) {
    let gold = stage
        .wait_writable(stage.gold().unwrap(), Duration::from_secs(30))
        .await
        .expect("gold writable");
    gold.create_table().await.expect("create table");
    for id in 1..=20 {
        gold.insert(id, "gold").await.expect("insert on gold");
    }
    let confirmed: BTreeSet<i64> = (1..=20).collect();
    stage
        .wait_streaming(Duration::from_secs(60))
        .await
        .expect("golddr streaming");
    stage
        .wait_rows_on_golddr(&confirmed, Duration::from_secs(30))
        .await
        .expect("rows on golddr before the partition");
    gslb.wait_marked("gold", true, Duration::from_secs(20))
        .await
        .expect("the GSLB sees gold healthy");
    assert_eq!(gslb.answer().map(|a| a.site).as_deref(), Some("gold"));

    // Writes keep flowing to Gold for the whole partition.
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut id = 1_000;
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_secs(2), gold.insert(id, "gold")).await {
                    Ok(Ok(())) => {
                        acked.lock().unwrap().insert(id);
                    }
                    other => panic!("a write on gold failed during the partition: {other:?}"),
                }
                id += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let acked_count = || acked.lock().unwrap().len();

    // The partition: the tunnel blackholed both ways, both sites alive.
    let blocked_before = failover_lines(&stage.golddr, &["PrimaryAlive", "verdict=blocked"]).len();
    let partitioned = Instant::now();
    stage.platform.blackhole();
    eprintln!("[partition] tunnel blackholed for {PARTITION:?}");

    // Meanwhile, `auto` with no witness is refused: by the chart...
    tokio::time::sleep(Duration::from_secs(10)).await;
    let err = stage
        .upgrade_golddr(&[
            "failover.witness.http.existingSecret=".to_string(),
            "failover.allowNoWitness=false".to_string(),
        ])
        .await
        .expect_err("helm accepted mode auto with no witness");
    let msg = err.to_string();
    assert!(
        msg.contains("failover.mode=auto needs a witness")
            && msg.contains("tunnel-only partition would promote"),
        "the chart refused, but not with the witness message: {msg}"
    );
    eprintln!("[no witness] helm upgrade refused: {msg}");

    // ...and by the binary, run with the CronJob's own configuration minus the witness.
    let cj = stage
        .golddr
        .api()
        .list(api::CRONJOBS, Some(stage.golddr.namespace()))
        .unwrap()
        .into_iter()
        .filter_map(|c| c["metadata"]["name"].as_str().map(String::from))
        .find(|n| n.contains("failover"))
        .expect("golddr's failover CronJob");
    let mut env = cronjob::environment(&stage.golddr, &cj).expect("the CronJob's environment");
    assert!(
        env.iter().any(|(k, v)| k == "FAILOVER_MODE" && v == "auto"),
        "the drill's CronJob runs in auto: {env:?}"
    );
    assert!(
        env.iter().any(|(k, _)| k == "FAILOVER_WITNESS_HTTP_URL"),
        "the drill's CronJob has the GSLB as witness"
    );
    env.retain(|(k, _)| !k.starts_with("FAILOVER_WITNESS_") && k != "FAILOVER_ALLOW_NO_WITNESS");
    let run = cronjob::run("pgdr-failover", &env)
        .await
        .expect("ran pgdr-failover");
    let out = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.code,
        Some(EXIT_CONFIG),
        "pgdr-failover in auto with no witness must exit with a configuration error:\n{out}"
    );
    assert!(
        out.contains("auto with no witness configured"),
        "pgdr-failover refused, but not with the witness message:\n{out}"
    );
    eprintln!("[no witness] pgdr-failover exited {EXIT_CONFIG} (configuration error)");

    // The rest of the partition: never promoted, while Gold keeps acknowledging writes.
    let at_start = acked_count();
    while partitioned.elapsed() < PARTITION {
        assert_eq!(
            stage.golddr_is_standby_cluster(),
            Some(true),
            "golddr promoted {:.0}s into a tunnel-only partition, gold alive and the GSLB seeing it healthy",
            partitioned.elapsed().as_secs_f64()
        );
        assert!(!writer.is_finished(), "the writer on gold stopped");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let blocked =
        failover_lines(&stage.golddr, &["PrimaryAlive", "verdict=blocked"]).len() - blocked_before;
    assert!(
        blocked > 0,
        "no failover sample was blocked by the GSLB witness during the partition"
    );
    assert_eq!(gslb.answer().map(|a| a.site).as_deref(), Some("gold"));
    let during = acked_count() - at_start;
    assert!(
        during > 0,
        "no write acknowledged on gold during the partition"
    );
    stage
        .check_one_primary(&member(stage.gold().unwrap()))
        .await
        .expect("gold the one primary after the partition");
    eprintln!(
        "[partition] {:.0}s: 0 promotions, {blocked} samples blocked by the GSLB witness, {during} writes acknowledged on gold meanwhile",
        partitioned.elapsed().as_secs_f64()
    );

    // The GSLB loses Gold (its health path cut, the tunnel still down): it marks Gold down after
    // its failure count, sends the application to GoldDR, and GoldDR is promoted.
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let cut = Instant::now();
    gslb.cut_health("gold", true);
    gslb.wait_marked("gold", false, Duration::from_secs(15))
        .await
        .expect("the GSLB marks gold down");
    assert_eq!(gslb.answer().map(|a| a.site).as_deref(), Some("golddr"));
    let golddr = stage
        .wait_writable(&stage.golddr, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("golddr not promoted once the GSLB moved the app: {e}"));
    eprintln!(
        "[GSLB moved] golddr writable {:.1}s after the GSLB's health path to gold was cut",
        cut.elapsed().as_secs_f64()
    );
    let have = golddr.ids().await.expect("rows on golddr");
    let lost: Vec<_> = confirmed.difference(&have).collect();
    assert!(
        lost.is_empty(),
        "rows golddr had confirmed are gone: {lost:?}"
    );
    assert_eq!(stage.golddr_is_standby_cluster(), Some(false));
    assert!(
        !failover_lines(
            &stage.golddr,
            &["PrimaryDown", "the GSLB sends the application to golddr"]
        )
        .is_empty(),
        "no failover sample logged the GSLB witness's down answer"
    );
    // Gold is still running, isolated (fencing it is not this scenario's subject): end with the
    // site lost so that one writable primary remains.
    stage.kill_gold().await.expect("gold killed");
    stage
        .check_one_primary(&member(&stage.golddr))
        .await
        .expect("golddr the one primary");
}
