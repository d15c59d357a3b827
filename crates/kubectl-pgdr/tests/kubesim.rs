//! The plugin's API calls against two in-memory API servers (one per site), through kube-rs and
//! HTTP: status, holds, fence/unfence/promote by compare-and-set (409 handling, other keys kept,
//! malformed config left untouched) and the switchover record. Patroni is played by fixtures.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
mod common;

use std::time::Duration;

use common::*;
use kubesim::{Action, Rule, ServerHandle};
use serde_json::{Value, json};

const GOLD_CONFIG: &str = r#"{"ttl":30,"loop_wait":10,"postgresql":{"use_pg_rewind":true,"parameters":{"max_connections":100}},"slots":{"pgdr_golddr":{"type":"physical"}}}"#;
const DR_CONFIG: &str = r#"{"ttl":30,"loop_wait":10,"postgresql":{"use_pg_rewind":true},"standby_cluster":{"host":"10.96.0.10","port":31002,"primary_slot_name":"pgdr_golddr","create_replica_methods":["basebackup"]}}"#;

fn status_json(role: &str, tl: u64, lsn: u64, streaming: bool) -> String {
    let mut s = json!({"conn_url": "postgres://x:5432/postgres", "api_url": "http://x:8008/patroni",
        "state": "running", "role": role, "version": "4.1.5", "xlog_location": lsn, "timeline": tl});
    if role != "primary" {
        s["replay_lsn"] = json!(lsn);
        s["receive_lsn"] = json!(lsn);
        if streaming {
            s["replication_state"] = json!("streaming");
        }
    }
    s.to_string()
}

fn member_pod(server: &ServerHandle, name: &str, status: &str) {
    create(
        server,
        "pods",
        json!({"metadata": {"name": name, "labels": {"cluster-name": "patroni", "application": "patroni"},
            "annotations": {"status": status}}, "spec": {"containers": [{"name": "patroni", "image": "x"}]}}),
    );
}

fn set_pod_status(server: &ServerHandle, name: &str, status: &str) {
    let patch = json!({"metadata": {"annotations": {"status": status}}});
    let (code, body) = server.request(
        "PATCH",
        &path("pods", name),
        Some("application/merge-patch+json"),
        Some(&patch),
    );
    assert_eq!(code, 200, "{body}");
}

/// Gold primary, GoldDR standby streaming at the same position, the agent on GoldDR only (the
/// chart's default), both tunnel Services.
fn fixture() -> Sites {
    let s = Sites::start();
    create(
        &s.gold,
        "configmaps",
        json!({"metadata": {"name": "patroni-config", "annotations": {"config": GOLD_CONFIG, "initialize": "7000"}}}),
    );
    create(
        &s.gold,
        "configmaps",
        json!({"metadata": {"name": "patroni-leader", "annotations": {"leader": "patroni-gold-0", "optime": "100000"}}}),
    );
    member_pod(
        &s.gold,
        "patroni-gold-0",
        &status_json("primary", 1, 100_000, false),
    );
    tunnel(&s.gold, "patroni-tunnel-golddr", "10.96.0.20", 31001);

    create(
        &s.golddr,
        "configmaps",
        json!({"metadata": {"name": "patroni-config", "annotations": {"config": DR_CONFIG, "initialize": "7000"}}}),
    );
    create(
        &s.golddr,
        "configmaps",
        json!({"metadata": {"name": "patroni-leader", "annotations": {"leader": "patroni-golddr-0"}}}),
    );
    member_pod(
        &s.golddr,
        "patroni-golddr-0",
        &status_json("standby_leader", 1, 100_000, true),
    );
    tunnel(&s.golddr, "patroni-tunnel-gold", "10.96.0.10", 31002);
    create(
        &s.golddr,
        "configmaps",
        json!({"metadata": {"name": "patroni-failover-state"}, "data": {"state":
            r#"{"version":1,"consecutive_failures":0,"last_known_lag_bytes":0,"last_decision":{"at":"2026-11-30T12:00:00Z","verdict":"healthy","reasons":["the standby leader is streaming from the primary"],"run":"r1"}}"#}}),
    );
    let cronjob = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "patroni-failover"},
        "spec": {"schedule": "* * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "failover", "image": "x", "env": [{"name": "FAILOVER_MODE", "value": "auto"}, {"name": "FAILOVER_PEER_SLOT_NAME", "value": "pgdr_golddr"}]}]}}}}}});
    let (code, body) = s.golddr.request(
        "POST",
        &format!("/apis/batch/v1/namespaces/{NS}/cronjobs"),
        None,
        Some(&cronjob),
    );
    assert_eq!(code, 201, "{body}");
    s
}

#[tokio::test]
async fn status_shows_both_sites_and_its_exit_code_follows_health() {
    let s = fixture();
    let (code, out, _) = s.run(&["status"], "").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("role             primary"), "{out}");
    assert!(out.contains("patroni-tunnel-golddr port 31001"), "{out}");
    assert!(out.contains("healthy at 2026-11-30T12:00:00Z"), "{out}");
    assert!(out.ends_with("health: OK\n"), "{out}");

    let (code, out, _) = s.run(&["status", "-o", "json"], "").await;
    assert_eq!(code, 0);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["healthy"], true);
    assert_eq!(r["sites"][0]["role"], "primary");
    assert_eq!(r["sites"][1]["role"], "standby");
    assert_eq!(r["sites"][1]["agent"]["mode"], "auto");
    assert_eq!(r["sites"][1]["tunnel"]["port"], 31002);
    assert_eq!(r["lag"]["bytes"], 0);

    let (code, out, _) = s.run(&["status", "-o", "yaml"], "").await;
    assert_eq!(code, 0);
    let y: Value = serde_saphyr::from_str(&out).unwrap();
    assert_eq!(y["sites"][1]["standby_cluster"]["port"], 31002);

    // The standby stops streaming and falls behind: unhealthy, exit 1.
    set_pod_status(
        &s.golddr,
        "patroni-golddr-0",
        &status_json("standby_leader", 1, 90_000, false),
    );
    let (code, out, _) = s.run(&["status", "--max-lag-bytes", "1000"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_UNHEALTHY, "{out}");
    assert!(
        out.contains("PROBLEM: golddr: the standby leader is not streaming from gold"),
        "{out}"
    );
    assert!(out.contains("PROBLEM: golddr lags 10000 bytes"), "{out}");

    // Both writable: split brain.
    set_pod_status(
        &s.golddr,
        "patroni-golddr-0",
        &status_json("primary", 2, 120_000, false),
    );
    let (code, out, _) = s.run(&["status"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_UNHEALTHY);
    assert!(out.contains("SPLIT BRAIN"), "{out}");

    // A site whose API is down is reported, not a crash.
    s.golddr.faults().refuse_for(Duration::from_secs(600));
    let (code, out, _) = s.run(&["status", "--request-timeout", "2"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_UNHEALTHY);
    assert!(out.contains("unreachable"), "{out}");
}

#[tokio::test]
async fn hold_and_release_annotate_the_state_configmap() {
    let s = fixture();
    let (code, _, err) = s.run(&["hold"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("gold: no failover agent here"), "{err}");
    assert!(err.contains("golddr: failover agent held"), "{err}");
    let cm = get(&s.golddr, "configmaps", "patroni-failover-state");
    assert_eq!(annotation(&cm, "patroni-dr/hold").as_deref(), Some("true"));
    assert!(
        cm["data"]["state"]
            .as_str()
            .unwrap()
            .contains("consecutive_failures"),
        "state kept"
    );
    let (_, out, _) = s.run(&["status"], "").await;
    assert!(out.contains("auto, HOLD"), "{out}");

    let (code, _, _) = s.run(&["release", "golddr"], "").await;
    assert_eq!(code, 0);
    let cm = get(&s.golddr, "configmaps", "patroni-failover-state");
    assert_eq!(annotation(&cm, "patroni-dr/hold"), None);

    let (code, _, err) = s.run(&["hold", "nowhere"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_CONFIG);
    assert!(err.contains("'nowhere' is not configured"), "{err}");
}

#[tokio::test]
async fn fence_and_unfence_keep_every_other_key_and_survive_a_409() {
    let s = fixture();
    let _patroni = patroni_stand_in(&s.gold, "patroni-gold-0");
    // One compare-and-set loses against another writer: the plugin reads again and wins.
    s.gold.faults().add(
        Rule::new(Action::Fail {
            status: 409,
            retry_after: None,
        })
        .method("PATCH")
        .path_contains("configmaps/patroni-config")
        .times(1),
    );
    let (code, _, err) = s
        .run(&["fence", "gold", "--yes", "--timeout", "20"], "")
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("gold: fenced (read-only)"), "{err}");
    let patches = s
        .gold
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("configmaps/patroni-config"))
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(patches, vec![409, 200], "retried after the conflict");
    let config = dynamic_config(&s.gold);
    let original: Value = serde_json::from_str(GOLD_CONFIG).unwrap();
    for key in ["ttl", "loop_wait", "postgresql", "slots"] {
        assert_eq!(config[key], original[key], "{key} kept");
    }
    // Issue 20 item 3: gold was writable, so it may hold writes golddr lacks: the hold form
    // (read-only, following nothing) with an operator fence its agent takes from there.
    assert_eq!(
        config["standby_cluster"],
        json!({"restore_command": "false"})
    );
    assert_eq!(
        (
            &config["pgdr_fence"]["reason"],
            &config["pgdr_fence"]["phase"]
        ),
        (&json!("operator"), &json!("hold")),
        "{config}"
    );
    assert!(
        err.contains("its failover agent takes it from here"),
        "{err}"
    );
    // Fencing again changes nothing.
    let before =
        get(&s.gold, "configmaps", "patroni-config")["metadata"]["resourceVersion"].clone();
    let (code, _, err) = s
        .run(&["fence", "gold", "--yes", "--timeout", "5"], "")
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("already fenced (operator, phase hold)"),
        "{err}"
    );
    assert_eq!(
        get(&s.gold, "configmaps", "patroni-config")["metadata"]["resourceVersion"],
        before
    );

    // GoldDR is a standby too now; unfence gold back (the peer is not writable, but visibly
    // alive: --force and the typed name).
    let (code, _, err) = s
        .run(&["unfence", "gold", "--timeout", "20"], "gold\n")
        .await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("visibly alive"), "{err}");
    let (code, _, err) = s
        .run(
            &["unfence", "gold", "--force", "--yes", "--timeout", "20"],
            "gold\n",
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let config = dynamic_config(&s.gold);
    assert!(config.get("standby_cluster").is_none(), "{config}");
    // Every other key kept; unfencing is a promotion, so it leaves the promotion marker a
    // returning peer reads (pgdr.promoted_from: the timeline and position gold left).
    let (pg, was) = (&config["postgresql"], &original["postgresql"]);
    assert_eq!(pg["use_pg_rewind"], was["use_pg_rewind"], "{config}");
    assert_eq!(
        pg["parameters"]["max_connections"],
        was["parameters"]["max_connections"]
    );
    let marker = pg["parameters"]["pgdr.promoted_from"]
        .as_str()
        .unwrap_or_else(|| panic!("no promotion marker: {config}"));
    assert!(
        marker.starts_with("epoch=1 timeline=1 fork_lsn=")
            && marker.contains(" fork=pending site=gold "),
        "{marker}"
    );
    assert_eq!(
        config["slots"],
        json!({"pgdr_golddr": {"type": "physical"}})
    );
}

/// Chaos seed 1015: a person unfences gold while golddr's API cannot be read, and golddr's agent
/// may have promoted meanwhile at `1 + what it knew`. The unfence is numbered by the clock, so it
/// outranks that promotion instead of tying with it (a tie leaves both sites writable and
/// neither advertised until a person settles it).
#[tokio::test]
async fn an_unfence_with_the_peer_unreadable_is_numbered_by_the_clock() {
    let s = fixture();
    let _patroni = patroni_stand_in(&s.gold, "patroni-gold-0");
    let (code, _, err) = s
        .run(&["fence", "gold", "--yes", "--timeout", "20"], "")
        .await;
    assert_eq!(code, 0, "{err}");
    s.golddr.faults().add(Rule::new(Action::Fail {
        status: 503,
        retry_after: None,
    }));
    let before = jiff::Timestamp::now().as_second();
    let (code, _, err) = s
        .run(
            &[
                "unfence",
                "gold",
                "--force",
                "--yes",
                "--slot-name",
                "pgdr_golddr",
                "--timeout",
                "20",
            ],
            "",
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("numbered by the clock"), "{err}");
    let config = dynamic_config(&s.gold);
    let marker = config["postgresql"]["parameters"]["pgdr.promoted_from"]
        .as_str()
        .unwrap_or_else(|| panic!("no promotion marker: {config}"));
    let epoch: i64 = marker
        .strip_prefix("epoch=")
        .and_then(|m| m.split(' ').next())
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("{marker}"));
    assert!(
        (before..before + 120).contains(&epoch),
        "epoch {epoch} not from the clock ({before}): {marker}"
    );
    assert!(
        err.contains(&format!("gold: promotion epoch {epoch}")),
        "{err}"
    );
    assert!(err.contains("golddr was not told of epoch"), "{err}");
    // Each read of the failing site (one per observation: before, after, and the seen-epoch
    // record) is tried once, not retried by kube for minutes (15 tries each).
    let reads = s
        .golddr
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("configmaps/patroni-config") && r.status == 503)
        .count();
    assert!((1..=8).contains(&reads), "{reads} reads of golddr's config");
}

#[tokio::test]
async fn a_config_that_keeps_changing_is_never_overwritten() {
    let s = fixture();
    s.gold.faults().add(
        Rule::new(Action::Fail {
            status: 409,
            retry_after: None,
        })
        .method("PATCH")
        .path_contains("configmaps/patroni-config")
        .times(10),
    );
    let (code, _, err) = s
        .run(&["fence", "gold", "--yes", "--timeout", "2"], "")
        .await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED);
    assert!(err.contains("kept changing"), "{err}");
    assert!(dynamic_config(&s.gold).get("standby_cluster").is_none());
}

#[tokio::test]
async fn promote_is_refused_while_the_peer_is_writable_or_without_force() {
    let s = fixture();
    let (code, _, err) = s.run(&["promote", "golddr", "--force", "--yes"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED);
    assert!(err.contains("gold is a writable primary"), "{err}");
    assert!(
        dynamic_config(&s.golddr).get("standby_cluster").is_some(),
        "untouched"
    );

    // Gold is gone.
    s.gold.faults().refuse_for(Duration::from_secs(600));
    let (code, _, err) = s
        .run(
            &["promote", "golddr", "--yes", "--request-timeout", "2"],
            "",
        )
        .await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED);
    assert!(err.contains("--force"), "{err}");
    // Declined at the prompt: nothing changes.
    let (code, _, err) = s
        .run(
            &["promote", "golddr", "--force", "--request-timeout", "2"],
            "no\n",
        )
        .await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED);
    assert!(
        err.contains("last known lag recorded by the agent: 0 bytes"),
        "{err}"
    );
    assert!(err.contains("not confirmed"), "{err}");
    assert!(
        dynamic_config(&s.golddr).get("standby_cluster").is_some(),
        "untouched"
    );

    let _patroni = patroni_stand_in(&s.golddr, "patroni-golddr-0");
    let (code, _, err) = s
        .run(
            &[
                "promote",
                "golddr",
                "--force",
                "--request-timeout",
                "2",
                "--timeout",
                "20",
            ],
            "golddr\n",
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("golddr: writable primary on timeline 2"),
        "{err}"
    );
    let config = dynamic_config(&s.golddr);
    assert!(config.get("standby_cluster").is_none());
    // The one slot of the pair (replication.slotName), never one named after a site.
    assert_eq!(config["slots"]["pgdr_golddr"], json!({"type": "physical"}));
    assert!(config["slots"].get("pgdr_gold").is_none(), "{config}");
    assert_eq!(config["postgresql"]["use_pg_rewind"], true);
}

#[tokio::test]
async fn a_malformed_config_is_reported_and_left_untouched() {
    let s = fixture();
    let patch = json!({"metadata": {"annotations": {"config": "{not json"}}});
    let (code, _) = s.gold.request(
        "PATCH",
        &path("configmaps", "patroni-config"),
        Some("application/merge-patch+json"),
        Some(&patch),
    );
    assert_eq!(code, 200);
    let (code, _, err) = s.run(&["fence", "gold", "--yes"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED);
    assert!(
        err.contains("cannot be used") && err.contains("nothing was changed"),
        "{err}"
    );
    let cm = get(&s.gold, "configmaps", "patroni-config");
    assert_eq!(annotation(&cm, "config").as_deref(), Some("{not json"));
    let (code, out, _) = s.run(&["status"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_UNHEALTHY);
    assert!(out.contains("not valid JSON"), "{out}");
}

#[tokio::test]
async fn the_switchover_record_is_a_compare_and_set() {
    let s = fixture();
    let settings = kubectl_pgdr::config::resolve(
        Some(kubectl_pgdr::config::read_file(&s.config).unwrap()),
        &kubectl_pgdr::config::Overrides::default(),
    )
    .unwrap();
    let c = kubectl_pgdr::kube_api::connect(&settings.sites[1], Duration::from_secs(5))
        .await
        .unwrap();
    let now = jiff::Timestamp::now();
    let p = kubectl_pgdr::progress::Progress {
        aborted: false,
        version: 1,
        rev: 1,
        from: "gold".into(),
        to: "golddr".into(),
        step: kubectl_pgdr::progress::Step::Hold,
        started_at: now,
        step_started_at: now,
        force: false,
        max_lag_bytes: 0,
        held_before: vec![],
        target_timeline: None,
        source_timeline: Some(1),
        source_lsn_before_demote: None,
        token: None,
        new_timeline: None,
        forced_loss_bytes: None,
        finished_at: None,
        log: vec![],
    };
    assert!(c.write_progress(&p, Some("")).await.unwrap(), "created");
    assert!(
        !c.write_progress(&p, Some("")).await.unwrap(),
        "a second create loses"
    );
    let obs = c.observe().await;
    let stored = obs.switchover.expect("record read back");
    assert_eq!(
        stored.progress.as_ref().unwrap().step,
        kubectl_pgdr::progress::Step::Hold
    );
    let rv = stored.resource_version.clone();
    let mut p2 = p.clone();
    p2.rev = 2;
    assert!(c.write_progress(&p2, Some(&rv)).await.unwrap());
    assert!(
        !c.write_progress(&p2, Some(&rv)).await.unwrap(),
        "stale resourceVersion loses"
    );
    // A stopped switchover makes the pair unhealthy and says how to resume.
    let (code, out, _) = s.run(&["status"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_UNHEALTHY);
    assert!(out.contains("switchover --resume"), "{out}");
    // A switchover the other way is refused while this one is recorded.
    let (code, _, err) = s.run(&["switchover", "--to", "gold"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED);
    assert!(err.contains("in progress"), "{err}");
}

/// Stands in for Patroni on one site: when `standby_cluster` is added to (removed from) the
/// dynamic config, the member's status becomes a standby leader (a primary on the next timeline).
struct StandIn {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn patroni_stand_in(server: &ServerHandle, pod: &'static str) -> StandIn {
    // kubesim's in-process router is shared state behind the handle; reach it over HTTP instead
    // of borrowing the handle across threads.
    let url = server.url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let kc = kube::config::Kubeconfig::from_yaml(&kubesim::kubeconfig_yaml(&url, "x", NS))
                .unwrap();
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .unwrap();
            let client = kube::Client::try_from(cfg).unwrap();
            let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                kube::Api::namespaced(client.clone(), NS);
            let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(client, NS);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(cm) = cms.get("patroni-config").await {
                    let text = cm
                        .metadata
                        .annotations
                        .unwrap_or_default()
                        .remove("config")
                        .unwrap_or_default();
                    if let Ok(config) = serde_json::from_str::<Value>(&text) {
                        let status = if config.get("standby_cluster").is_some() {
                            status_json("standby_leader", 1, 100_040, false)
                        } else {
                            status_json("primary", 2, 100_200, false)
                        };
                        let patch = json!({"metadata": {"annotations": {"status": status}}});
                        let _ = pods
                            .patch(
                                pod,
                                &kube::api::PatchParams::default(),
                                &kube::api::Patch::Merge(&patch),
                            )
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    });
    StandIn {
        stop,
        thread: Some(thread),
    }
}

/// After a failover: GoldDR primary, Gold fenced by its agent and holding (diverged, rejoin
/// manual). `status` shows the fence; `rejoin gold` approves by compare-and-set; refusals leave
/// the config untouched.
#[tokio::test]
async fn rejoin_approves_a_held_fence_and_status_shows_it() {
    let s = fixture();
    let fenced = json!({"ttl": 30, "loop_wait": 10, "slots": {"pgdr_golddr": {"type": "physical"}},
        "standby_cluster": {"restore_command": "false"},
        "pgdr_fence": {"since": "2026-11-30T16:00:00Z", "reason": "witness-moved", "peer": "golddr", "phase": "hold",
                       "timeline": 1, "fork_lsn": "0/5000A28", "local_end_lsn": "0/6000000", "diverged_bytes": 16438744,
                       "preserve": {"timeline": 1, "from_lsn": "0/5000A28"}}});
    let patch = json!({"metadata": {"annotations": {"config": fenced.to_string()}}});
    let (code, body) = s.gold.request(
        "PATCH",
        &path("configmaps", "patroni-config"),
        Some("application/merge-patch+json"),
        Some(&patch),
    );
    assert_eq!(code, 200, "{body}");
    let patch = json!({"metadata": {"annotations": {"config": r#"{"ttl":30,"loop_wait":10,"slots":{"pgdr_golddr":{"type":"physical"}}}"#}}});
    let (code, body) = s.golddr.request(
        "PATCH",
        &path("configmaps", "patroni-config"),
        Some("application/merge-patch+json"),
        Some(&patch),
    );
    assert_eq!(code, 200, "{body}");
    set_pod_status(
        &s.gold,
        "patroni-gold-0",
        &status_json("standby_leader", 1, 0x600_0000, false),
    );
    set_pod_status(
        &s.golddr,
        "patroni-golddr-0",
        &status_json("primary", 2, 0x700_0000, false),
    );
    // Gold's agent runs too (the CronJob renders on both sites), rejoin manual.
    create(
        &s.gold,
        "configmaps",
        json!({"metadata": {"name": "patroni-failover-state"}, "data": {"state":
        r#"{"version":1,"fenced_at":"2026-11-30T16:00:00Z","last_decision":{"at":"2026-11-30T16:01:00Z","verdict":"fenced","reasons":["holding for approval"]}}"#}}),
    );
    let cronjob = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "patroni-failover"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "failover", "image": "x", "env": [{"name": "FAILOVER_MODE", "value": "auto"}, {"name": "FAILOVER_REJOIN", "value": "manual"}, {"name": "FAILOVER_PEER_SLOT_NAME", "value": "pgdr_golddr"}]}]}}}}}});
    let (code, body) = s.gold.request(
        "POST",
        &format!("/apis/batch/v1/namespaces/{NS}/cronjobs"),
        None,
        Some(&cronjob),
    );
    assert_eq!(code, 201, "{body}");

    let (_, out, _) = s.run(&["status"], "").await;
    assert!(
        out.contains("hold (witness-moved) since 2026-11-30T16:00:00Z"),
        "{out}"
    );
    assert!(out.contains("16438744 bytes after 0/5000A28"), "{out}");
    assert!(out.contains("gold: fenced (witness-moved) since 2026-11-30T16:00:00Z, phase hold: golddr is authoritative"), "{out}");
    assert!(out.contains("`kubectl pgdr rejoin gold`"), "{out}");
    let (_, out, _) = s.run(&["status", "-o", "json"], "").await;
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["sites"][0]["fence"]["phase"], "hold", "{r}");
    assert_eq!(r["sites"][1]["fence"], Value::Null);

    // Refused, untouched: GoldDR is not fenced; unfencing Gold while GoldDR is writable.
    let rv = |s: &ServerHandle| {
        get(s, "configmaps", "patroni-config")["metadata"]["resourceVersion"].clone()
    };
    let before = rv(&s.golddr);
    let (code, _, err) = s.run(&["rejoin", "golddr", "--yes"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED);
    assert!(err.contains("site golddr is not fenced"), "{err}");
    assert_eq!(rv(&s.golddr), before);
    let (code, _, err) = s.run(&["unfence", "gold", "--yes"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED);
    assert!(err.contains("golddr is a writable primary"), "{err}");

    // Declined at the prompt: nothing written.
    let before = rv(&s.gold);
    let (code, _, err) = s.run(&["rejoin", "gold"], "no\n").await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED, "{err}");
    assert!(
        err.contains("16438744 bytes on timeline 1 after the fork at 0/5000A28"),
        "{err}"
    );
    assert_eq!(rv(&s.gold), before);

    // Approved through a 409 (another writer first): every other key kept.
    s.gold.faults().add(
        Rule::new(Action::Fail {
            status: 409,
            retry_after: None,
        })
        .method("PATCH")
        .path_contains("configmaps/patroni-config")
        .times(1),
    );
    let (code, _, err) = s.run(&["rejoin", "gold"], "gold\n").await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("gold: rejoin approved"), "{err}");
    let config = dynamic_config(&s.gold);
    assert!(
        config["pgdr_fence"]["rejoin_approved_at"]
            .as_str()
            .unwrap()
            .starts_with("20"),
        "{config}"
    );
    for key in ["ttl", "loop_wait", "slots", "standby_cluster"] {
        assert_eq!(config[key], fenced[key], "{key} kept");
    }
    for key in ["phase", "fork_lsn", "diverged_bytes", "preserve", "since"] {
        assert_eq!(
            config["pgdr_fence"][key], fenced["pgdr_fence"][key],
            "pgdr_fence.{key} kept"
        );
    }
    // Again: nothing to do, nothing written.
    let before = rv(&s.gold);
    let (code, _, err) = s.run(&["rejoin", "gold", "--yes"], "").await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("approved already"), "{err}");
    assert_eq!(rv(&s.gold), before);
    let (_, out, _) = s.run(&["status"], "").await;
    assert!(out.contains("rejoin approved"), "{out}");
    assert!(!out.contains("`kubectl pgdr rejoin gold`"), "{out}");

    // Later GoldDR is a standby again (say, fenced by hand): unfencing Gold removes the fence
    // marker together with standby_cluster.
    set_pod_status(
        &s.golddr,
        "patroni-golddr-0",
        &status_json("standby_leader", 2, 0x700_0000, false),
    );
    let _patroni = patroni_stand_in(&s.gold, "patroni-gold-0");
    let (code, _, err) = s
        .run(
            &["unfence", "gold", "--force", "--yes", "--timeout", "20"],
            "gold\n",
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let config = dynamic_config(&s.gold);
    assert!(config.get("pgdr_fence").is_none(), "{config}");
    assert!(config.get("standby_cluster").is_none(), "{config}");
    assert_eq!(config["ttl"], 30);
}

#[tokio::test]
async fn advertise_vouches_only_for_an_unfenced_writable_primary() {
    let s = fixture();
    // A standby has nothing to advertise: refused (exit 3), nothing written.
    let before =
        get(&s.golddr, "configmaps", "patroni-config")["metadata"]["resourceVersion"].clone();
    let (code, _, err) = s.run(&["advertise", "golddr", "--yes"], "").await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("not a writable primary"), "{err}");
    assert_eq!(
        get(&s.golddr, "configmaps", "patroni-config")["metadata"]["resourceVersion"],
        before
    );
    // The wrong name typed: not confirmed, nothing written.
    let (code, _, err) = s.run(&["advertise", "gold"], "golddr\n").await;
    assert_ne!(code, 0, "{err}");
    assert!(dynamic_config(&s.gold).get("pgdr_peer_vouch").is_none());
    // Confirmed: the vouch names a person and gold's current epoch (0: never promoted); every
    // other key is kept.
    let (code, _, err) = s.run(&["advertise", "gold"], "gold\n").await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("API answers"),
        "the live standby peer is named: {err}"
    );
    let config = dynamic_config(&s.gold);
    let vouch = &config["pgdr_peer_vouch"];
    assert_eq!(
        (&vouch["by"], &vouch["epoch"]),
        (&json!("operator"), &json!(0)),
        "{config}"
    );
    let original: Value = serde_json::from_str(GOLD_CONFIG).unwrap();
    assert_eq!(config["postgresql"], original["postgresql"]);
}

/// `status --watch` shows the pair again until its count; `psql` and `logs` reach the right
/// site, member and container through kubectl (printed here: exec and log streaming need a
/// kubelet, which the test bed has not).
#[tokio::test]
async fn watch_psql_and_logs_reach_the_right_site_and_member() {
    let s = fixture();
    let (code, out, err) = s
        .run(
            &["status", "--watch", "--interval", "1", "--count", "2"],
            "",
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.matches("(every 1s; Ctrl-C to stop)").count(),
        2,
        "{out}"
    );
    assert_eq!(out.matches("health: OK").count(), 2, "{out}");

    let (code, out, err) = s
        .run(&["psql", "golddr", "--print", "--", "-c", "select 1"], "")
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("--context golddr --namespace {NS} exec -i"))
            && out.contains(" patroni-golddr-0 -c patroni -- sh -c "),
        "{out}"
    );
    assert!(out.trim_end().ends_with("postgres -c 'select 1'"), "{out}");
    let (code, _, err) = s
        .run(
            &["psql", "golddr", "--member", "patroni-gold-0", "--print"],
            "",
        )
        .await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED, "{err}");
    assert!(
        err.contains("site golddr has no member patroni-gold-0 (members: patroni-golddr-0)"),
        "{err}"
    );

    // No agent run kept yet: the member's two logs, and a note.
    let (code, out, err) = s.run(&["logs", "golddr", "--print"], "").await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("logs patroni-golddr-0 -c readiness --tail 100"),
        "{out}"
    );
    assert!(err.contains("no failover agent run found"), "{err}");
    // Two runs of the agent's CronJob and one Job of something else: the newest run is shown.
    for (name, owner) in [
        ("patroni-failover-29000001", "patroni-failover"),
        ("patroni-failover-29000002", "patroni-failover"),
        ("backup-29000003", "backup"),
    ] {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": owner,
                "uid": "u1", "controller": true}]},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "failover", "image": "x"}]}}}});
        let (code, body) = s.golddr.request(
            "POST",
            &format!("/apis/batch/v1/namespaces/{NS}/jobs"),
            None,
            Some(&job),
        );
        assert_eq!(code, 201, "{body}");
    }
    let (code, out, err) = s
        .run(
            &["logs", "golddr", "--component", "agent", "-f", "--print"],
            "",
        )
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.trim_end()
            .ends_with("logs job/patroni-failover-29000002 -c failover --tail 100 --follow"),
        "{out}"
    );
    let (code, _, err) = s.run(&["logs", "golddr", "-f", "--print"], "").await;
    assert_eq!(code, kubectl_pgdr::EXIT_REFUSED, "{err}");
    assert!(err.contains("--follow streams one log"), "{err}");
}
