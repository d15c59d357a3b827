//! The failover job against real Patroni + PostgreSQL on two in-memory API servers (one per
//! site), with the cross-site tunnel emulated by `pgdr-tunnel`.
//!
//! Small thresholds (samples every 200 ms, N = 3, T = 1 s) keep the suite fast. Nothing here
//! asserts timings beyond "not before the threshold"; the drill's benchmark measures them.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use std::time::{Duration, Instant};

use common::{DEADLINE, NS_B, Pair, client, init_logs, pair, runtime, settings};
use kubesim::ServerHandle;
use pgdr_failover::{Error, Report, Settings, Verdict, exit};
use serde_json::{Value, json};

async fn run_once(server: &ServerHandle, settings: &Settings, run: &str) -> Result<Report, Error> {
    pgdr_failover::run_with(settings, client(server).await, run).await
}

/// Runs until a verdict in `stop` or `limit` passes; returns every verdict seen.
async fn run_until(
    server: &ServerHandle,
    settings: &Settings,
    run: &str,
    stop: &[Verdict],
    limit: Duration,
) -> Vec<Result<Report, Error>> {
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < limit {
        let r = run_once(server, settings, run).await;
        let done = matches!(&r, Ok(rep) if stop.contains(&rep.verdict)) || r.is_err();
        seen.push(r);
        if done {
            break;
        }
    }
    seen
}

fn verdicts(seen: &[Result<Report, Error>]) -> Vec<String> {
    seen.iter()
        .map(|r| match r {
            Ok(rep) => rep.verdict.to_string(),
            Err(e) => format!("error: {e}"),
        })
        .collect()
}

fn cm(server: &ServerHandle, name: &str) -> (u16, Value) {
    server.request(
        "GET",
        &format!("/api/v1/namespaces/{NS_B}/configmaps/{name}"),
        None,
        None,
    )
}

fn state(server: &ServerHandle) -> Value {
    let (code, obj) = cm(server, "golddr-failover-state");
    assert_eq!(code, 200, "{obj}");
    serde_json::from_str(obj["data"]["state"].as_str().unwrap()).unwrap()
}

fn dynamic_config(server: &ServerHandle) -> Value {
    let (code, obj) = cm(server, "golddr-config");
    assert_eq!(code, 200, "{obj}");
    serde_json::from_str(obj["metadata"]["annotations"]["config"].as_str().unwrap()).unwrap()
}

fn event_reasons(server: &ServerHandle) -> Vec<String> {
    let (code, list) = server.request(
        "GET",
        &format!("/api/v1/namespaces/{NS_B}/events"),
        None,
        None,
    );
    assert_eq!(code, 200, "{list}");
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A healthy run first: as in production, where the CronJob ran while the primary was alive
/// and recorded its WAL position (the lag guard needs it).
async fn healthy_run(p: &Pair, s: &Settings) {
    let r = run_once(&p.site_b, s, "warm-up")
        .await
        .expect("healthy run");
    assert_eq!(r.verdict, Verdict::Healthy, "{:?}", r.reasons);
    assert!(state(&p.site_b)["last_primary_lsn"].as_u64().is_some());
}

#[test]
fn primary_killed_is_promoted_after_the_threshold_and_writable() {
    init_logs();
    let p = pair();
    let s = settings(&[]);
    let rt = runtime();
    rt.block_on(healthy_run(&p, &s));

    p.a.kill_hard();
    let killed = Instant::now();
    let seen = rt.block_on(run_until(
        &p.site_b,
        &s,
        "run-1",
        &[Verdict::Promote],
        Duration::from_secs(60),
    ));
    let took = killed.elapsed();
    let last = seen.last().unwrap().as_ref().expect("no error");
    assert_eq!(last.verdict, Verdict::Promote, "{:?}", verdicts(&seen));
    assert!(
        took >= Duration::from_secs(1),
        "promoted before T: {took:?}"
    );
    let promoted = last.promoted.as_ref().expect("confirmed");
    assert!(promoted.timeline.unwrap_or(0) >= 2, "{promoted:?}");
    eprintln!(
        "kill -> confirmed primary: {took:?} ({:?})",
        verdicts(&seen)
    );

    // Writable, standby_cluster gone, the peer slot declared, the promotion recorded.
    p.b.wait_writable(DEADLINE).expect("B writable");
    p.b.psql("CREATE TABLE after_failover (x int); INSERT INTO after_failover VALUES (1)")
        .expect("write on B");
    let config = dynamic_config(&p.site_b);
    assert!(config.get("standby_cluster").is_none(), "{config}");
    assert_eq!(
        config["slots"]["standby_gold"]["type"], "physical",
        "{config}"
    );
    let st = state(&p.site_b);
    assert_eq!(st["promotion"]["run"], "run-1", "{st}");
    assert!(st["promotion"]["confirmed_at"].is_string(), "{st}");
    assert!(st["promotion"]["standby_lsn"].as_u64().is_some(), "{st}");
    assert!(event_reasons(&p.site_b).contains(&"PromotedStandbyCluster".to_string()));
    // The durable record, kept by Helm on uninstall.
    let (code, record) = cm(&p.site_b, "golddr-promotion-record");
    assert_eq!(code, 200, "{record}");
    assert_eq!(
        record["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "{record}"
    );
    assert_eq!(record["data"]["site"], "golddr", "{record}");
    assert!(record["data"]["confirmed_at"].is_string(), "{record}");

    // The next run is a no-op.
    let again = rt
        .block_on(run_once(&p.site_b, &s, "run-2"))
        .expect("run after promotion");
    assert_eq!(
        again.verdict,
        Verdict::AlreadyPrimary,
        "{:?}",
        again.reasons
    );
}

#[test]
fn tunnel_cut_shorter_than_the_threshold_does_not_promote() {
    init_logs();
    let p = pair();
    let s = settings(&[("FAILOVER_SAMPLES_PER_RUN", "15")]);
    let rt = runtime();
    rt.block_on(healthy_run(&p, &s));

    p.tunnel.cut();
    let seen = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            p.tunnel.heal();
        });
        rt.block_on(run_until(
            &p.site_b,
            &s,
            "run-cut",
            &[],
            Duration::from_secs(6),
        ))
    });
    let all = verdicts(&seen);
    assert!(seen.iter().all(|r| r.is_ok()), "{all:?}");
    assert!(!all.iter().any(|v| v == "promote"), "{all:?}");
    assert_eq!(all.last().map(String::as_str), Some("healthy"), "{all:?}");
    // The cut was seen (otherwise this test would prove nothing).
    let failed: u32 = seen.iter().flatten().map(|r| r.failed_samples).sum();
    assert!(failed >= 1, "no failed sample during the cut: {all:?}");
    assert!(dynamic_config(&p.site_b).get("standby_cluster").is_some());
    p.b.wait_rest("/standby-leader", 200, DEADLINE)
        .expect("B still a standby leader");
    let _ = &p.a;
}

#[test]
fn witness_saying_the_primary_is_alive_blocks_promotion() {
    init_logs();
    let p = pair();
    // `localhost` resolves to loopback, not to this (made-up) site address: the GSLB still
    // sends the application to the primary site.
    let s = settings(&[
        ("FAILOVER_WITNESS_DNS_NAME", "localhost"),
        ("FAILOVER_WITNESS_DNS_EXPECTED", "10.255.0.1"),
    ]);
    let rt = runtime();
    rt.block_on(healthy_run(&p, &s));
    p.a.kill_hard();
    let seen = rt.block_on(run_until(
        &p.site_b,
        &s,
        "run-w",
        &[Verdict::Promote],
        Duration::from_secs(5),
    ));
    let all = verdicts(&seen);
    assert!(!all.iter().any(|v| v == "promote"), "{all:?}");
    let last = seen.last().unwrap().as_ref().expect("no error");
    assert_eq!(last.verdict, Verdict::Blocked, "{all:?}");
    assert!(
        last.reasons
            .iter()
            .any(|r| r.contains("witness says the primary site is alive")),
        "{:?}",
        last.reasons
    );
    assert!(dynamic_config(&p.site_b).get("standby_cluster").is_some());
}

#[test]
fn two_runs_at_once_promote_exactly_once() {
    init_logs();
    let p = pair();
    let s = settings(&[]);
    let rt = runtime();
    rt.block_on(healthy_run(&p, &s));
    p.a.kill_hard();
    let stop = [
        Verdict::Promote,
        Verdict::AlreadyPrimary,
        Verdict::InProgress,
    ];
    let (one, two) = rt.block_on(async {
        tokio::join!(
            run_until(&p.site_b, &s, "run-a", &stop, Duration::from_secs(60)),
            run_until(&p.site_b, &s, "run-b", &stop, Duration::from_secs(60)),
        )
    });
    let promotions = one
        .iter()
        .chain(two.iter())
        .filter(|r| matches!(r, Ok(rep) if rep.verdict == Verdict::Promote))
        .count();
    assert_eq!(
        promotions,
        1,
        "run-a {:?} run-b {:?}",
        verdicts(&one),
        verdicts(&two)
    );
    let promoted_events = event_reasons(&p.site_b)
        .iter()
        .filter(|r| *r == "PromotedStandbyCluster")
        .count();
    assert_eq!(promoted_events, 1);
    p.b.wait_writable(DEADLINE).expect("B writable");
}

#[test]
fn failing_api_server_means_no_promotion_and_a_non_zero_exit() {
    init_logs();
    let p = pair();
    let s = settings(&[]);
    let rt = runtime();
    rt.block_on(healthy_run(&p, &s));
    p.a.kill_hard();
    p.site_b.faults().fail_all(503, None);
    let seen = rt.block_on(run_until(
        &p.site_b,
        &s,
        "run-api",
        &[Verdict::Promote],
        Duration::from_secs(20),
    ));
    p.site_b.faults().clear();
    let last = seen.last().unwrap();
    match last {
        Err(e) => assert_eq!(e.exit_code(), exit::API, "{e}"),
        Ok(r) => panic!("expected an API error, got {:?}", r.verdict),
    }
    assert!(!verdicts(&seen).iter().any(|v| v == "promote"));
    assert!(dynamic_config(&p.site_b).get("standby_cluster").is_some());
    assert!(state(&p.site_b)["promotion"].is_null());
}

#[test]
fn malformed_state_is_reported_and_left_untouched() {
    init_logs();
    let p = pair();
    let s = settings(&[]);
    let body = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "golddr-failover-state"},
        "data": {"state": "{\"consecutive_failures\": \"lots\""}
    });
    let (code, created) = p.site_b.request(
        "POST",
        &format!("/api/v1/namespaces/{NS_B}/configmaps"),
        None,
        Some(&body),
    );
    assert_eq!(code, 201, "{created}");
    p.a.kill_hard();
    let rt = runtime();
    let err = rt
        .block_on(run_once(&p.site_b, &s, "run-m"))
        .expect_err("a malformed state must fail the run");
    assert_eq!(err.exit_code(), exit::STATE, "{err}");
    assert!(err.to_string().contains("golddr-failover-state"), "{err}");
    let (_, after) = cm(&p.site_b, "golddr-failover-state");
    assert_eq!(
        after["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(after["data"], created["data"]);
    assert!(event_reasons(&p.site_b).contains(&"FailoverStateUnusable".to_string()));
    assert!(dynamic_config(&p.site_b).get("standby_cluster").is_some());
}
