//! End to end with real Patroni and PostgreSQL: a standby cluster on "golddr" streams from the
//! "gold" primary through a TCP proxy (the tunnel) on the port port-patch wrote; the tunnel then
//! moves to a new port and port-patch follows it; finally the promoted DR site is left alone.
//!
//! Needs the tools from `scripts/deps.sh` (PostgreSQL binaries, the Patroni venv).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::net::SocketAddr;
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubesim::ServerHandle;
use pgdr_patroni_harness::{PatroniNode, Scratch};
use pgdr_port_patch::config::{HostMode, PortField};
use pgdr_port_patch::{Outcome, Report, Settings, run_with};
use pgdr_tunnel::Tunnel;
use serde_json::{Value, json};

const NS: &str = "default";
const STARTUP: Duration = Duration::from_secs(180);

async fn client(server: &ServerHandle) -> Client {
    pgdr_core::tls::install_crypto_provider();
    let kc = Kubeconfig::from_yaml(&server.kubeconfig_yaml("golddr", NS)).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

/// The chart would pass Patroni's `bootstrap.dcs` here; these match the test harness's, so the
/// standby gets the same PostgreSQL parameters as the primary (physical replication needs it).
fn settings() -> Settings {
    pgdr_port_patch::Config {
        scope: "demo".into(),
        tunnel_service: "demo-primary-gold".into(),
        namespace: Some(NS.into()),
        port_field: PortField::Port,
        port_name: None,
        // The Service's DNS name does not resolve here; its ClusterIP is the tunnel's address.
        host_mode: HostMode::ClusterIp,
        host: None,
        primary_slot_name: Some("golddr".into()),
        create_replica_methods: Some(vec!["basebackup".into()]),
        labels: "application=patroni".parse().unwrap(),
        scope_label: "cluster-name".into(),
        config_map: None,
        leader_config_map: None,
        base_config: Some(
            json!({"ttl": 20, "loop_wait": 2, "retry_timeout": 5,
                   "postgresql": {"use_pg_rewind": true, "use_slots": true,
                                  "parameters": {"max_connections": 50, "max_wal_senders": 10,
                                                 "max_replication_slots": 10, "wal_keep_size": "64MB",
                                                 "hot_standby": true}}})
            .to_string(),
        ),
        deadline: pgdr_core::Dur::secs(30),
        request_timeout: pgdr_core::Dur::secs(5),
        force: false,
        promotion_record_configmap: "demo-promotion-record".into(),
        demote_promoted_site: false,
        log_format: pgdr_core::LogFormat::Plain,
    }
    .validate()
    .unwrap()
}

fn port_patch(rt: &tokio::runtime::Runtime, server: &ServerHandle) -> Report {
    let report = rt
        .block_on(async { run_with(client(server).await, NS, &settings()).await })
        .expect("port-patch succeeds");
    println!("port-patch: {}", report.summary());
    report
}

fn tunnel_to(node: &PatroniNode) -> Tunnel {
    let upstream = SocketAddr::from((node.address(), node.pg_port()));
    Tunnel::spawn("127.0.0.1:0".parse().unwrap(), upstream).expect("tunnel starts")
}

fn set_service_port(server: &ServerHandle, port: u16) {
    let path = format!("/api/v1/namespaces/{NS}/services/demo-primary-gold");
    let (code, _) = server.request("GET", &path, None, None);
    let (code, body) = if code == 404 {
        let svc = json!({"metadata": {"name": "demo-primary-gold"},
                         "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": port, "targetPort": port}]}});
        server.request(
            "POST",
            &format!("/api/v1/namespaces/{NS}/services"),
            None,
            Some(&svc),
        )
    } else {
        let patch = json!({"spec": {"ports": [{"port": port, "targetPort": port}]}});
        server.request(
            "PATCH",
            &path,
            Some("application/merge-patch+json"),
            Some(&patch),
        )
    };
    assert!(code == 200 || code == 201, "{body}");
}

fn wait_sql(node: &PatroniNode, sql: &str, want: &str) {
    node.wait_for(
        &format!("`{sql}` to return {want}"),
        Duration::from_secs(60),
        || match node.psql(sql) {
            Ok(out) if out == want => Ok(()),
            Ok(out) => Err(format!("got {out:?}")),
            Err(e) => Err(e.to_string()),
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node.logs(40)));
}

fn dynamic_config(server: &ServerHandle) -> Value {
    let (_, cm) = server.request(
        "GET",
        &format!("/api/v1/namespaces/{NS}/configmaps/demo-config"),
        None,
        None,
    );
    serde_json::from_str(cm["metadata"]["annotations"]["config"].as_str().unwrap()).unwrap()
}

#[test]
fn standby_streams_through_the_tunnel_on_the_port_the_job_wrote() {
    let scratch =
        Scratch::new().expect("PostgreSQL and Patroni are installed (run scripts/deps.sh)");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gold = kubesim::Server::spawn(kubesim::Config::default()).unwrap();
    let golddr = kubesim::Server::spawn(kubesim::Config::default()).unwrap();

    // Primary site, with the permanent slot the standby site streams from.
    let pg0 = PatroniNode::builder("demo", "gold0")
        .permanent_slot("golddr")
        .start(&scratch, &gold)
        .unwrap();
    pg0.wait_rest("/primary", 200, STARTUP).unwrap();
    pg0.psql(
        "CREATE TABLE drill(id int PRIMARY KEY, note text); INSERT INTO drill VALUES (1, 'before')",
    )
    .unwrap();

    // The platform's tunnel: a proxy on a port nobody chose, exposed as a Service on golddr.
    let tunnel1 = tunnel_to(&pg0);
    let port1 = tunnel1.local_addr().port();
    set_service_port(&golddr, port1);

    // Fresh install on golddr: port-patch creates the config, then Patroni bootstraps from it
    // (its own bootstrap.dcs has no standby_cluster at all).
    let report = port_patch(&rt, &golddr);
    assert!(
        matches!(report.outcome, Outcome::Created { .. }),
        "{report:?}"
    );
    let dr0 = PatroniNode::builder("demo", "golddr0")
        .start(&scratch, &golddr)
        .unwrap();
    dr0.wait_rest("/standby-leader", 200, STARTUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", dr0.logs(60)));
    wait_sql(&dr0, "SELECT note FROM drill WHERE id = 1", "before");
    wait_sql(
        &dr0,
        "SELECT status || ':' || sender_port FROM pg_stat_wal_receiver",
        &format!("streaming:{port1}"),
    );
    assert!(
        tunnel1.stats().bytes_down > 0,
        "the clone and the WAL came through the tunnel"
    );
    wait_sql(
        &pg0,
        "SELECT active FROM pg_replication_slots WHERE slot_name = 'golddr'",
        "t",
    );

    // The platform moves the tunnel to another port; the Job (post-upgrade) follows it.
    let tunnel2 = tunnel_to(&pg0);
    let port2 = tunnel2.local_addr().port();
    set_service_port(&golddr, port2);
    let report = port_patch(&rt, &golddr);
    match &report.outcome {
        Outcome::Updated { before, target, .. } => {
            assert_eq!(before.as_ref().unwrap()["port"], json!(port1));
            assert_eq!(target.port, port2);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        dynamic_config(&golddr)["ttl"],
        json!(20),
        "Patroni's other keys kept"
    );
    tunnel1.cut();
    pg0.psql("INSERT INTO drill VALUES (2, 'after the port moved')")
        .unwrap();
    wait_sql(
        &dr0,
        "SELECT note FROM drill WHERE id = 2",
        "after the port moved",
    );
    wait_sql(
        &dr0,
        "SELECT status || ':' || sender_port FROM pg_stat_wal_receiver",
        &format!("streaming:{port2}"),
    );

    // Re-running changes nothing.
    let report = port_patch(&rt, &golddr);
    assert!(
        matches!(report.outcome, Outcome::Unchanged { .. }),
        "{report:?}"
    );

    // Promote golddr (what the failover job does), then run the Job as a post-upgrade hook would.
    dr0.patch_config(&json!({"standby_cluster": null})).unwrap();
    dr0.wait_rest("/primary", 200, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", dr0.logs(60)));
    let report = port_patch(&rt, &golddr);
    match &report.outcome {
        Outcome::LeftPromoted { leader, role } => {
            assert_eq!(leader, "golddr0");
            // The Pod status may still say "promoted" for a cycle right after the promotion.
            assert!(role == "primary" || role == "promoted", "{role}");
        }
        other => panic!("{other:?}"),
    }
    assert!(dynamic_config(&golddr).get("standby_cluster").is_none());
    // Still a writable primary a few HA cycles later.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(dr0.rest("GET", "/primary", None).unwrap().status, 200);
    dr0.psql("INSERT INTO drill VALUES (3, 'written on golddr')")
        .unwrap();
    drop(tunnel2);
}

/// The order Helm really produces: the StatefulSet starts first, its Patroni bootstraps from a
/// `bootstrap.dcs.standby_cluster` whose port is a placeholder (the real one is unknown at
/// install time), fails to clone and exits; meanwhile the post-install Job writes the real port
/// into the DCS; the restarted container (same member name) then bootstraps from the DCS config.
#[test]
fn standby_bootstrapping_on_a_placeholder_port_recovers_after_the_job_runs() {
    let scratch =
        Scratch::new().expect("PostgreSQL and Patroni are installed (run scripts/deps.sh)");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gold = kubesim::Server::spawn(kubesim::Config::default()).unwrap();
    let golddr = kubesim::Server::spawn(kubesim::Config::default()).unwrap();

    let pg0 = PatroniNode::builder("demo", "gold0")
        .permanent_slot("golddr")
        .start(&scratch, &gold)
        .unwrap();
    pg0.wait_rest("/primary", 200, STARTUP).unwrap();
    pg0.psql("CREATE TABLE drill(id int PRIMARY KEY); INSERT INTO drill VALUES (1)")
        .unwrap();

    // A port nobody listens on stands for the placeholder.
    let placeholder = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let standby = |scratch: &Scratch| {
        PatroniNode::builder("demo", "golddr0")
            .standby_cluster(pgdr_patroni_harness::StandbyCluster {
                host: "127.0.0.1".into(),
                port: placeholder,
                primary_slot_name: Some("golddr".into()),
            })
            .start(scratch, &golddr)
            .unwrap()
    };
    let first = standby(&scratch);
    // The Job runs while that bootstrap is failing (initialize is "", no config yet).
    std::thread::sleep(Duration::from_secs(2));
    let tunnel = tunnel_to(&pg0);
    set_service_port(&golddr, tunnel.local_addr().port());
    let report = port_patch(&rt, &golddr);
    assert!(
        matches!(
            report.outcome,
            Outcome::Updated { .. } | Outcome::Created { .. }
        ),
        "{report:?}"
    );

    // Patroni gives up on the placeholder and exits, as a container would before its restart.
    let exited = first
        .wait_for(
            "Patroni to give up on the placeholder",
            Duration::from_secs(60),
            || Err::<(), _>("still running".to_string()),
        )
        .is_err();
    assert!(
        exited && first.ensure_running().is_err(),
        "Patroni should exit after a failed standby bootstrap"
    );
    drop(first);

    // Kubernetes restarts the container: same Pod name, empty data directory.
    let (code, body) = golddr.request(
        "DELETE",
        &format!("/api/v1/namespaces/{NS}/pods/golddr0"),
        None,
        None,
    );
    assert_eq!(code, 200, "{body}");
    let scratch2 = Scratch::new().unwrap();
    let dr0 = standby(&scratch2);
    dr0.wait_rest("/standby-leader", 200, STARTUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", dr0.logs(80)));
    wait_sql(&dr0, "SELECT count(*) FROM drill", "1");
    wait_sql(
        &dr0,
        "SELECT status || ':' || sender_port FROM pg_stat_wal_receiver",
        &format!("streaming:{}", tunnel.local_addr().port()),
    );
    // Patroni rewrote its config after bootstrap; the port the Job wrote is what it kept.
    assert_eq!(
        dynamic_config(&golddr)["standby_cluster"]["port"],
        json!(tunnel.local_addr().port())
    );
}
