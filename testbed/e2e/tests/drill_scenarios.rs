//! Fault scenarios on both sites with the real chart (the drill): one shared setup, scenarios run
//! in sequence, the non-promoting ones first. Every scenario ends with exactly one writable primary
//! and checks that rows written on the primary reached (or survived on) the other site. Both API
//! servers enforce RBAC and every pod calls as its ServiceAccount: after the setup the test checks
//! who called and that a verb no Role grants is a 403, and no pod request may be denied throughout.
//!
//! Sharing one setup keeps the file at about three minutes on two cores; the scenarios that do not
//! promote leave the sites as they found them (Gold primary, GoldDR streaming), which each one
//! checks before the next starts.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::os::unix::fs::MetadataExt;

use pgdr_drill::chart::RELEASE;
use pgdr_drill::db::Db;
use pgdr_drill::images::RESTRICTED_V2_FS_GROUP;
use pgdr_drill::minicluster::api;
use pgdr_drill::options::Options;
use pgdr_drill::rbac::{Calls, service_account_user};
use pgdr_drill::stage::{Stage, failover_lines, member};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a failover run says when GoldDR's API server cannot be reached (pgdr-core's hint).
const API_UNREACHABLE: &str = "the API server is failing or unreachable";

/// The drill's failover runs fire every few seconds; a few of them is "a while".
const CRON_EVERY: u64 = 2;

/// A tiny HTTP witness outside both sites, speaking the documented contract: 200 with
/// `{"primary":"alive"}` or `{"primary":"down"}`. Counts requests so a scenario can show the
/// failover job asked it.
struct Witness {
    addr: SocketAddr,
    alive: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Witness {
    async fn start() -> Witness {
        // Not 127.0.0.1: the drill rewrites that address in pod env to the pod's own IP.
        let ip = pgdr_patroni_harness::allocate_loopback(&[]).expect("a free loopback address");
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("bind witness");
        let addr = listener.local_addr().expect("witness address");
        let alive = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicU64::new(0));
        let (a, h) = (alive.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (a, h) = (a.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = sock.read(&mut buf).await;
                    h.fetch_add(1, Ordering::Relaxed);
                    let body = if a.load(Ordering::Relaxed) {
                        r#"{"primary":"alive","reason":"drill witness"}"#
                    } else {
                        r#"{"primary":"down","reason":"drill witness"}"#
                    };
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        Witness {
            addr,
            alive,
            hits,
            task,
        }
    }
    fn set_alive(&self, alive: bool) {
        self.alive.store(alive, Ordering::Relaxed);
    }
    fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Rows written on the primary, with the next id.
struct Rows {
    next: i64,
    acked: std::collections::BTreeSet<i64>,
}

impl Rows {
    async fn write(&mut self, db: &Db, n: i64, site: &str) {
        for _ in 0..n {
            db.insert(self.next, site)
                .await
                .expect("insert on the primary");
            self.acked.insert(self.next);
            self.next += 1;
        }
    }
}

/// Gold is the one writable primary, GoldDR is still a standby cluster, and fresh rows written on
/// Gold reach GoldDR.
async fn assert_gold_primary_golddr_following(stage: &Stage, rows: &mut Rows, scenario: &str) {
    let gold = stage
        .wait_writable(stage.gold().unwrap(), Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{scenario}: gold not writable: {e}"));
    rows.write(&gold, 10, "gold").await;
    stage
        .wait_streaming(Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{scenario}: {e}\n{}", stage.diagnostics()));
    stage
        .wait_rows_on_golddr(&rows.acked, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{scenario}: {e}\n{}", stage.diagnostics()));
    assert_eq!(
        stage.golddr_is_standby_cluster(),
        Some(true),
        "{scenario}: golddr must still be a standby cluster"
    );
    stage
        .check_one_primary(&member(stage.gold().unwrap()))
        .await
        .unwrap_or_else(|e| panic!("{scenario}: {e}"));
    eprintln!(
        "[{scenario}] ok: gold sole primary, golddr following, {} rows replicated",
        rows.acked.len()
    );
}

/// Deletes Gold's Patroni pod after giving its volume root another group, and waits until the
/// re-created pod serves as a writable primary; checks that the kubelet changed the volume's
/// ownership on the new mount and that PostgreSQL started on the data directory anyway.
async fn recreate_gold_member(stage: &Stage) {
    let gold = stage.gold().unwrap();
    let ns = gold.namespace().to_string();
    let pod = member(gold);
    let root = gold.pvc_path(&ns, &format!("pgdata-{pod}"));
    let data = root.join("pgroot/data");
    let uid_of = |site: &pgdr_drill::minicluster::Site| {
        site.get(api::PODS, &member(site))
            .and_then(|p| p["metadata"]["uid"].as_str().map(String::from))
    };
    let old_uid = uid_of(gold).expect("gold's member pod exists");
    assert_eq!(
        std::fs::metadata(&root).expect("gold's volume").gid() as i64,
        RESTRICTED_V2_FS_GROUP,
        "pod re-created: the first mount did not apply the injected fsGroup"
    );
    std::os::unix::fs::chown(&root, None, Some(0)).expect("chgrp the volume root");
    gold.api()
        .delete(api::PODS, &ns, &pod)
        .expect("delete gold's member pod");
    let started = Instant::now();
    gold.wait_for("a new gold member pod", Duration::from_secs(60), |_| {
        uid_of(gold).filter(|u| *u != old_uid)
    })
    .await
    .unwrap_or_else(|e| panic!("pod re-created: {e}\n{}", stage.diagnostics()));
    let db = stage
        .wait_writable(gold, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("pod re-created: {e}\n{}", stage.diagnostics()));
    drop(db);
    let meta = |p: &std::path::Path| std::fs::metadata(p).expect("volume file");
    // The new mount changed the tree again (root and files: the fsGroup, root setgid)…
    assert_eq!(meta(&root).gid() as i64, RESTRICTED_V2_FS_GROUP);
    assert_eq!(meta(&root).mode() & 0o7777, 0o2770);
    assert_eq!(
        meta(&data.join("PG_VERSION")).gid() as i64,
        RESTRICTED_V2_FS_GROUP
    );
    // …and PostgreSQL runs on a data directory the entrypoint gave 0700 back.
    assert_eq!(meta(&data).mode() & 0o777, 0o700);
    let log = std::fs::read_to_string(gold.log_path(&ns, &pod, "patroni")).unwrap_or_default();
    assert!(
        !log.contains("invalid permissions"),
        "pod re-created: PostgreSQL complained about the data directory:\n{log}"
    );
    eprintln!(
        "[pod re-created] gold writable again {:.1}s after the delete (volume re-grouped, data dir 0700)",
        started.elapsed().as_secs_f64()
    );
}

/// No request of any pod was denied on `site` (a 403 means a chart Role misses a verb or a name).
fn assert_nothing_denied(site: &pgdr_drill::minicluster::Site, scenario: &str) {
    let calls = Calls::of(site);
    // The RBAC step's own two probes (DELETE of the StatefulSet) are meant to be denied.
    let probe = format!(
        "DELETE /apis/apps/v1/namespaces/{}/statefulsets/{RELEASE}-golddr -> 403",
        site.namespace()
    );
    let failures: Vec<String> = calls
        .failures(site.name())
        .into_iter()
        .filter(|f| !f.ends_with(&probe))
        .collect();
    assert!(
        failures.is_empty(),
        "{scenario}: RBAC denied pods' requests:\n{}",
        failures.join("\n")
    );
    eprintln!("[{scenario}] {}: {}", site.name(), calls.summary());
}

/// RBAC as the platform enforces it: GoldDR's pods call its API server as their ServiceAccounts
/// (the failover runs as the CronJob's, Patroni and the port-patch hook as theirs) and none of
/// their requests was denied on either site; what a Role does not grant is a 403 — the failover
/// account cannot delete the StatefulSet, nor can kubectl with the Patroni pod's own kubeconfig.
async fn assert_pods_call_as_their_service_accounts(stage: &Stage) {
    let golddr = &stage.golddr;
    let ns = golddr.namespace().to_string();
    let sts = format!("{RELEASE}-golddr");
    let pod_sa = |kind, name: &str, template: &str| {
        golddr
            .get(kind, name)
            .and_then(|o| {
                o.pointer(&format!("{template}/spec/serviceAccountName"))?
                    .as_str()
                    .map(String::from)
            })
            .unwrap_or_else(|| panic!("RBAC: {name} names no ServiceAccount"))
    };
    let failover = pod_sa(
        api::CRONJOBS,
        &format!("{RELEASE}-failover"),
        "/spec/jobTemplate/spec/template",
    );
    let patroni = pod_sa(api::STATEFULSETS, &sts, "/spec/template");
    let port_patch = golddr
        .api()
        .list(api::SERVICEACCOUNTS, Some(&ns))
        .unwrap()
        .into_iter()
        .find(|sa| sa["metadata"]["labels"]["app.kubernetes.io/component"] == "port-patch")
        .and_then(|sa| sa["metadata"]["name"].as_str().map(String::from))
        .expect("RBAC: the chart's port-patch ServiceAccount");
    let failover_user = service_account_user(&ns, &failover);
    golddr
        .wait_for("a failover run's requests", Duration::from_secs(20), |_| {
            (Calls::of(golddr).count(&failover_user) > 0).then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("RBAC: {e}: the failover job never called as {failover_user}"));
    let calls = Calls::of(golddr);
    for sa in [&failover, &patroni, &port_patch] {
        let user = service_account_user(&ns, sa);
        assert!(
            calls.count(&user) > 0,
            "RBAC: no request from {user} on golddr: {}",
            calls.summary()
        );
    }
    assert!(
        Calls::of(stage.gold().unwrap()).count(&service_account_user(&ns, &patroni)) > 0,
        "RBAC: Patroni on gold never called as its ServiceAccount"
    );
    assert_nothing_denied(golddr, "RBAC");
    assert_nothing_denied(stage.gold().unwrap(), "RBAC");

    // A verb the failover Role does not grant.
    let server = golddr.server();
    let token = server.service_account_token(&ns, &failover).unwrap();
    let sts_path = format!("/apis/apps/v1/namespaces/{ns}/statefulsets/{sts}");
    let (status, body) = server.request_as(Some(&token), "DELETE", &sts_path, None, None);
    assert_eq!(
        status, 403,
        "RBAC: the failover account deleted the StatefulSet: {body}"
    );
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&format!(
            "User \"{failover_user}\" cannot delete resource \"statefulsets\""
        )),
        "RBAC: {message}"
    );
    // The Patroni pod's own credentials, through the real kubectl.
    let out = tokio::process::Command::new(&stage.chart.kubectl)
        .arg("--kubeconfig")
        .arg(golddr.pod_kubeconfig(&ns, &member(golddr)))
        .args(["delete", "statefulset", &sts])
        .output()
        .await
        .expect("run kubectl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("Forbidden")
            && stderr.contains(&format!(
                "User \"{}\" cannot delete resource \"statefulsets\"",
                service_account_user(&ns, &patroni)
            )),
        "RBAC: kubectl with the Patroni pod's kubeconfig: {}\n{stderr}",
        out.status
    );
    assert!(
        golddr.get(api::STATEFULSETS, &sts).is_some(),
        "RBAC: the StatefulSet is gone"
    );
    eprintln!(
        "[RBAC] ok: golddr pods call as {failover}, {patroni}, {port_patch}; nothing denied; the failover and Patroni accounts get 403 deleting the StatefulSet"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_scenarios() {
    let witness = Witness::start().await;
    // The witness URL reaches the CronJob from a Secret, as the chart documents.
    let o = Options {
        cron_every: Some(CRON_EVERY),
        golddr_secrets: vec![(
            "drill-witness".into(),
            vec![("url".into(), format!("http://{}/health", witness.addr))],
        )],
        ..Options::default()
    };
    let sets = ["failover.witness.http.existingSecret=drill-witness".to_string()];
    // These scenarios are GoldDR's decisions against a scripted witness that answers about Gold
    // only; Gold's own agent (which would ask it the primary role's question) is left out.
    let gold = ["failover.enabled=false".to_string()];
    let started = Instant::now();
    let mut stage = Stage::up_both(&o, &gold, &sets, false)
        .await
        .expect("both sites installed");
    eprintln!("setup done in {:.1}s", started.elapsed().as_secs_f64());
    let outcome =
        tokio::time::timeout(Duration::from_secs(480), scenarios(&mut stage, &witness)).await;
    let failed = !matches!(outcome, Ok(Ok(())));
    if failed {
        eprintln!("{}", stage.diagnostics());
    }
    stage.shutdown().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => std::panic::resume_unwind(e),
        Err(_) => panic!("scenarios did not finish within 8 minutes"),
    }
}

/// Runs the scenarios, catching a panic so the caller can print pod logs and shut down first.
async fn scenarios(
    stage: &mut Stage,
    witness: &Witness,
) -> Result<(), Box<dyn std::any::Any + Send>> {
    pgdr_e2e::catching(run_scenarios(stage, witness)).await
}

async fn run_scenarios(stage: &mut Stage, witness: &Witness) {
    let mut rows = Rows {
        next: 1,
        acked: Default::default(),
    };
    {
        let gold = stage
            .wait_writable(stage.gold().unwrap(), Duration::from_secs(30))
            .await
            .expect("gold writable");
        gold.create_table().await.expect("create table");
    }
    assert_gold_primary_golddr_following(stage, &mut rows, "setup").await;
    assert_pods_call_as_their_service_accounts(stage).await;
    let cycle = Duration::from_secs(CRON_EVERY + 4);

    // 1. Tunnel cut shorter than the debounce (4 failed samples spanning >= 4 s): not promoted,
    //    with the witness agreeing that Gold is down so that only the debounce stands in the way.
    witness.set_alive(false);
    stage.platform.cut();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stage.platform.heal();
    tokio::time::sleep(cycle).await;
    let failed_samples = failover_lines(&stage.golddr, &["failed=true"]).len();
    eprintln!("[short cut] failover samples counted as failed so far: {failed_samples}");
    assert_gold_primary_golddr_following(stage, &mut rows, "short cut").await;

    // 2. Tunnel blackholed well past the debounce, witness says Gold is alive: not promoted.
    witness.set_alive(true);
    let hits = witness.hits();
    stage.platform.blackhole();
    tokio::time::sleep(Duration::from_secs(18)).await;
    let vetoes = failover_lines(&stage.golddr, &["PrimaryAlive", "verdict=blocked"]).len();
    stage.platform.heal();
    assert!(
        witness.hits() > hits,
        "blackhole: the failover job never asked the witness"
    );
    assert!(
        vetoes > 0,
        "blackhole: no failover run was blocked by the witness (the debounce alone should have allowed promotion)"
    );
    eprintln!(
        "[blackhole+witness] {vetoes} samples blocked by the witness, {} witness requests",
        witness.hits() - hits
    );
    assert_gold_primary_golddr_following(stage, &mut rows, "blackhole+witness").await;

    // 3. GoldDR's API server refuses connections while the link is down: no decision can be
    //    taken, so no promotion, and the runs say why. The link comes back before the API does.
    witness.set_alive(false);
    let before = failover_lines(&stage.golddr, &[API_UNREACHABLE]).len();
    stage
        .golddr
        .server()
        .faults()
        .refuse_for(Duration::from_secs(20));
    stage.platform.cut();
    tokio::time::sleep(Duration::from_secs(15)).await;
    stage.platform.heal();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let api_errors = failover_lines(&stage.golddr, &[API_UNREACHABLE]);
    assert!(
        api_errors.len() > before,
        "API outage: no failover run reported that it could not decide"
    );
    eprintln!(
        "[DR API outage] {} runs reported the outage, e.g.: {}",
        api_errors.len() - before,
        api_errors.last().map(String::as_str).unwrap_or("")
    );
    tokio::time::sleep(cycle).await;
    assert_gold_primary_golddr_following(stage, &mut rows, "DR API outage").await;

    // 4. The platform moves the tunnel to a new port; `helm upgrade` of GoldDR runs the port-patch
    //    hook, and the standby follows again.
    let old = stage.platform.peer_port("patroni-tunnel");
    stage.platform.change_port();
    let moved = tokio::time::timeout(Duration::from_secs(10), async {
        while stage.platform.peer_port("patroni-tunnel") == old {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(moved.is_ok(), "the platform did not move the tunnel port");
    stage
        .upgrade_golddr(&["failover.witness.http.existingSecret=drill-witness".to_string()])
        .await
        .expect("helm upgrade of golddr after the port change");
    eprintln!(
        "[port change] tunnel port {old:?} -> {:?}, helm upgrade done",
        stage.platform.peer_port("patroni-tunnel")
    );
    assert_gold_primary_golddr_following(stage, &mut rows, "port change + helm upgrade").await;

    // 5. Gold's Patroni pod is deleted (node drain, config upgrade): the StatefulSet re-creates it
    //    and the kubelet mounts the volume again with the fsGroup restricted-v2 gave the pod. The
    //    volume root is first handed to another group (a restored volume, a namespace whose SCC range
    //    changed), so even `fsGroupChangePolicy: OnRootMismatch` changes the whole tree: the data
    //    directory is 02770 when the container starts, and only the entrypoint's chmod 0700 lets
    //    PostgreSQL start. The witness says Gold is alive: its short absence must not promote.
    witness.set_alive(true);
    recreate_gold_member(stage).await;
    assert_gold_primary_golddr_following(stage, &mut rows, "pod re-created").await;
    witness.set_alive(false);

    // 6. The primary site is lost (witness down too): GoldDR is promoted with every row.
    assert_nothing_denied(stage.gold().unwrap(), "before the site loss");
    let killed = Instant::now();
    stage
        .kill_gold()
        .await
        .expect("every gold process is gone after the kill");
    let golddr = stage
        .wait_writable(&stage.golddr, Duration::from_secs(120))
        .await
        .expect("golddr promoted after gold was lost");
    eprintln!(
        "[site lost] golddr writable {:.1}s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let have = golddr.ids().await.expect("read rows on golddr");
    let lost: Vec<_> = rows.acked.difference(&have).collect();
    assert!(
        lost.is_empty(),
        "site lost: rows lost on promotion: {lost:?}"
    );
    rows.write(&golddr, 10, "golddr").await;
    assert_eq!(stage.golddr_is_standby_cluster(), Some(false));
    stage
        .check_one_primary(&member(&stage.golddr))
        .await
        .expect("site lost: one primary");
    drop(golddr);

    // 7. `helm upgrade` of the promoted GoldDR (its values still say role: standby): the port-patch
    //    hook must not re-add standby_cluster; GoldDR stays the primary with its rows.
    stage
        .upgrade_golddr(&["failover.witness.http.existingSecret=drill-witness".to_string()])
        .await
        .expect("helm upgrade of the promoted golddr");
    tokio::time::sleep(cycle).await;
    assert_eq!(
        stage.golddr_is_standby_cluster(),
        Some(false),
        "upgrade after promotion re-added standby_cluster"
    );
    let golddr = stage
        .wait_writable(&stage.golddr, Duration::from_secs(30))
        .await
        .expect("golddr still writable after helm upgrade");
    rows.write(&golddr, 5, "golddr").await;
    let have = golddr.ids().await.expect("read rows on golddr");
    assert!(rows.acked.is_subset(&have), "rows missing after upgrade");
    stage
        .check_one_primary(&member(&stage.golddr))
        .await
        .expect("upgrade after promotion: one primary");
    eprintln!(
        "[upgrade after promotion] ok: golddr still the sole primary, {} rows",
        have.len()
    );
    assert_nothing_denied(&stage.golddr, "after promotion");
}
