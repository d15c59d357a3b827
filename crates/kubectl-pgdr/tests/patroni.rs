//! A switchover round trip (gold → golddr → gold) with real Patroni 4 and PostgreSQL, one
//! in-memory API server per site, under a steady writer: every acknowledged commit must be on
//! the final primary, and the plugin must report a healthy pair after each leg. Then one leg per
//! step of the switchover, alternating directions, with the plugin binary (a process, as a user
//! runs it) SIGKILLed right after it recorded that step and finished with `--resume`: never two
//! writable primaries, exactly one after each leg, nothing acknowledged lost. Last, a switchover
//! killed after the demote and given up with `--abort`: the source takes writes again.
//!
//! The "tunnel" here is direct: each site's tunnel Service points at the other site's member
//! (ClusterIP = its loopback address), which is what the platform's Service does in a cluster.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use pgdr_patroni_harness::{PatroniNode, Scratch};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(120);

/// One acknowledged commit: id, which site took it, when.
type Ack = (u64, &'static str, Instant);

fn writer(nodes: [(&'static str, &PatroniNode); 2], stop: &AtomicBool, acks: &Mutex<Vec<Ack>>) {
    let mut id = 0;
    while !stop.load(Ordering::Relaxed) {
        id += 1;
        for (site, node) in nodes {
            // A commit is acknowledged only if psql returned success.
            if node
                .psql(&format!("INSERT INTO writes VALUES ({id}, '{site}')"))
                .is_ok()
            {
                acks.lock().unwrap().push((id, site, Instant::now()));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The longest gap between two acknowledged commits in `[from, to)`.
fn longest_gap(acks: &[Ack], from: Instant, to: Instant) -> Duration {
    let times: Vec<Instant> = acks
        .iter()
        .map(|a| a.2)
        .filter(|t| *t >= from && *t < to)
        .collect();
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// Steps of the switchover, in order (the plugin's `Step` names, `done` excluded).
const STEPS: [&str; 8] = [
    "hold", "demote", "token", "catch-up", "promote", "promoted", "verify", "release",
];

fn writable(node: &PatroniNode) -> bool {
    node.psql("SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'")
        .is_ok_and(|v| v == "t")
}

fn timeline(node: &PatroniNode) -> u64 {
    node.psql("SELECT timeline_id FROM pg_control_checkpoint()")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn switchover_round_trip_loses_nothing() {
    let scratch = Scratch::new().expect("tools (run `make deps` first)");
    let s = Sites::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Both agents' state ConfigMaps (labels only, as Helm creates them): the holds are exercised.
    for server in [&s.gold, &s.golddr] {
        create(
            server,
            "configmaps",
            json!({"metadata": {"name": "patroni-failover-state"}}),
        );
    }

    let gold = PatroniNode::builder("patroni", "patroni-gold-0")
        .namespace(NS)
        .permanent_slot("pgdr_golddr")
        .start(&scratch, &s.gold)
        .expect("starting gold");
    gold.wait_writable(DEADLINE).expect("gold becomes primary");
    gold.psql("CREATE TABLE writes (id bigint PRIMARY KEY, site text NOT NULL)")
        .unwrap();
    let golddr = PatroniNode::builder("patroni", "patroni-golddr-0")
        .namespace(NS)
        .standby_cluster(gold.as_standby_source(Some("pgdr_golddr")))
        .start(&scratch, &s.golddr)
        .expect("starting golddr");
    golddr
        .wait_rest("/standby-leader", 200, DEADLINE)
        .expect("golddr standby leader");
    tunnel(
        &s.gold,
        "patroni-tunnel-golddr",
        &golddr.address().to_string(),
        golddr.pg_port(),
    );
    tunnel(
        &s.golddr,
        "patroni-tunnel-gold",
        &gold.address().to_string(),
        gold.pg_port(),
    );

    let healthy = |what: &str| {
        gold.wait_for(what, DEADLINE, || {
            let (code, out, _) = rt.block_on(s.run(&["status", "-o", "json"], ""));
            let r: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            if code == 0 {
                Ok(r)
            } else {
                Err(format!("{}", r["problems"]))
            }
        })
        .unwrap_or_else(|e| panic!("{what}: {e}"))
    };
    let r = healthy("the pair to be healthy before the switchover");
    assert_eq!(r["sites"][0]["role"], "primary");
    assert_eq!(r["sites"][1]["role"], "standby");

    let stop = AtomicBool::new(false);
    let acks = Mutex::new(Vec::new());
    let mut legs = Vec::new();
    let mut killed = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| writer([("gold", &gold), ("golddr", &golddr)], &stop, &acks));
        std::thread::sleep(Duration::from_millis(500));
        for (to, from_node, to_node) in [("golddr", &gold, &golddr), ("gold", &golddr, &gold)] {
            let tl_before = timeline(from_node);
            let started = Instant::now();
            let args = ["switchover", "--to", to, "--step-timeout", "120"];
            let (code, err) = if to == "gold" {
                // The way back is interrupted mid-way (the plugin is killed a few seconds in),
                // then resumed: it continues from the recorded step.
                let cut = rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(3), s.run(&args, "")).await
                });
                assert!(cut.is_err(), "the first run was still working after 3 s");
                let (code, out, _) = rt.block_on(s.run(&["status"], ""));
                assert_eq!(code, 1, "{out}");
                assert!(out.contains("switchover --resume"), "{out}");
                let (code, _, err) =
                    rt.block_on(s.run(&["switchover", "--resume", "--step-timeout", "120"], ""));
                assert!(
                    !err.contains("step hold:"),
                    "resumed, not restarted:\n{err}"
                );
                (code, err)
            } else {
                let (code, _, err) = rt.block_on(s.run(&args, ""));
                assert!(err.contains("demotion token"), "{err}");
                (code, err)
            };
            let ended = Instant::now();
            assert_eq!(code, 0, "switchover to {to} failed:\n{err}");
            assert!(err.contains("replayed exactly up to"), "{err}");
            assert!(err.contains("switchover complete, nothing lost"), "{err}");
            to_node
                .wait_writable(DEADLINE)
                .expect("the target is writable");
            let r = healthy("the pair to be healthy after the switchover");
            let to_index = if to == "gold" { 0 } else { 1 };
            assert_eq!(r["sites"][to_index]["role"], "primary", "{r}");
            assert_eq!(r["sites"][1 - to_index]["role"], "standby", "{r}");
            for site in &r["sites"].as_array().unwrap()[..] {
                assert_eq!(site["agent"]["hold"], false, "holds released: {site}");
            }
            // Let the writer commit on the new primary before the next leg.
            std::thread::sleep(Duration::from_secs(1));
            legs.push((
                to,
                longest_gap(&acks.lock().unwrap(), started, Instant::now()),
                ended - started,
                tl_before,
                timeline(to_node),
            ));
        }
        // One leg per step, the plugin binary killed right after recording it, then resumed.
        let mut to = "golddr";
        for step in STEPS {
            let (from_node, to_node) = if to == "golddr" {
                (&gold, &golddr)
            } else {
                (&golddr, &gold)
            };
            let tl_before = timeline(from_node);
            let started = Instant::now();
            let first = s.run_bin(
                &["switchover", "--to", to, "--step-timeout", "120"],
                Some(step),
            );
            let was_killed = first.killed;
            let finished = if was_killed {
                let both = writable(&gold) && writable(&golddr);
                assert!(!both, "killed after step {step}: two writable primaries");
                let (code, out, _) = rt.block_on(s.run(&["status"], ""));
                assert_eq!(code, 1, "a stopped switchover is unhealthy:\n{out}");
                assert!(out.contains("switchover --resume"), "{out}");
                let resumed = s.run_bin(&["switchover", "--resume", "--step-timeout", "120"], None);
                assert!(
                    !resumed.stderr.contains("step hold:"),
                    "resumed, not restarted:\n{}",
                    resumed.stderr
                );
                resumed
            } else {
                first
            };
            assert_eq!(
                finished.code,
                Some(0),
                "switchover to {to} (killed after {step}) failed:\n{}",
                finished.stderr
            );
            to_node
                .wait_writable(DEADLINE)
                .expect("the target is writable");
            let r = healthy("the pair to be healthy after a resumed switchover");
            let to_index = if to == "gold" { 0 } else { 1 };
            assert_eq!(r["sites"][to_index]["role"], "primary", "{r}");
            assert_eq!(r["sites"][1 - to_index]["role"], "standby", "{r}");
            assert!(!writable(from_node), "the old primary is read-only");
            std::thread::sleep(Duration::from_millis(500));
            let tl_after = timeline(to_node);
            assert!(tl_after > tl_before, "a new timeline after step {step}");
            // Every commit acknowledged so far is on the new primary.
            let acked: Vec<String> = acks
                .lock()
                .unwrap()
                .iter()
                .map(|a| a.0.to_string())
                .collect();
            let present = to_node
                .psql(&format!(
                    "SELECT count(*) FROM writes WHERE id IN ({})",
                    acked.join(",")
                ))
                .unwrap();
            assert_eq!(
                present,
                acked.len().to_string(),
                "lost after a kill at {step}"
            );
            killed.push((
                step,
                to,
                was_killed,
                longest_gap(&acks.lock().unwrap(), started, Instant::now()),
                tl_before,
                tl_after,
            ));
            to = if to == "golddr" { "gold" } else { "golddr" };
        }
        // Given up instead (issue 20 item 13): killed after the demote, then `--abort`: the source
        // takes writes again, the target stays a standby, nothing acknowledged is lost.
        assert!(writable(&gold), "gold is the primary after the legs");
        let first = s.run_bin(
            &["switchover", "--to", "golddr", "--step-timeout", "120"],
            Some("demote"),
        );
        assert!(first.killed, "killed after the demote:\n{}", first.stderr);
        let (_, out, _) = rt.block_on(s.run(&["status"], ""));
        assert!(out.contains("--abort"), "status offers the abort:\n{out}");
        let aborted = s.run_bin(&["switchover", "--abort", "--step-timeout", "120"], None);
        assert_eq!(aborted.code, Some(0), "{}", aborted.stderr);
        assert!(
            aborted
                .stderr
                .contains("switchover aborted: gold is the primary again"),
            "{}",
            aborted.stderr
        );
        gold.wait_writable(DEADLINE)
            .expect("gold takes writes again");
        let r = healthy("the pair to be healthy after an aborted switchover");
        assert_eq!(r["sites"][0]["role"], "primary", "{r}");
        assert_eq!(r["sites"][1]["role"], "standby", "{r}");
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
    });

    // Every acknowledged commit is on the final primary (gold) and on the standby.
    let acks = acks.into_inner().unwrap();
    assert!(
        acks.iter().any(|a| a.1 == "golddr"),
        "the writer committed on golddr during the round trip"
    );
    let want = acks.len().to_string();
    let ids: Vec<String> = acks.iter().map(|a| a.0.to_string()).collect();
    let present = gold
        .psql(&format!(
            "SELECT count(*) FROM writes WHERE id IN ({})",
            ids.join(",")
        ))
        .unwrap();
    assert_eq!(present, want, "acknowledged commits lost on gold");
    golddr
        .wait_query(
            &format!(
                "SELECT count(*) FROM writes WHERE id IN ({})",
                ids.join(",")
            ),
            &want,
            DEADLINE,
        )
        .expect("golddr has every acknowledged commit too");
    eprintln!(
        "leg | write unavailability | switchover took | acknowledged lost | timeline before/after"
    );
    for (to, gap, took, before, after) in &legs {
        eprintln!(
            "-> {to} | {:.1}s | {:.1}s | 0 | {before} -> {after}",
            gap.as_secs_f64(),
            took.as_secs_f64()
        );
        assert!(after > before, "a new timeline on the new primary");
    }
    eprintln!(
        "killed after step | leg | killed (else finished first) | write unavailability | timeline"
    );
    for (step, to, was_killed, gap, before, after) in &killed {
        eprintln!(
            "{step} | -> {to} | {was_killed} | {:.1}s | {before} -> {after}",
            gap.as_secs_f64()
        );
    }
    // Every step is followed by at least one API call, so the kill lands before the next step.
    let missed: Vec<&str> = killed.iter().filter(|k| !k.2).map(|k| k.0).collect();
    assert!(
        missed.is_empty(),
        "the plugin finished before the kill after {missed:?}"
    );
    let record = get(&s.gold, "configmaps", "patroni-switchover");
    let progress: Value =
        serde_json::from_str(record["data"]["progress"].as_str().unwrap()).unwrap();
    assert_eq!(progress["step"], "done", "{progress}");
    // The last record is the aborted leg towards golddr.
    assert_eq!(progress["to"], "golddr");
    assert_eq!(progress["aborted"], true, "{progress}");
}
