//! Shared by the integration tests and the benchmark example: two sites on two in-memory API
//! servers, real Patroni + PostgreSQL, and the tunnel between them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubesim::ServerHandle;
use pgdr_failover::{Config, Settings};
use pgdr_patroni_harness::{PatroniNode, Scratch, StandbyCluster};
use pgdr_tunnel::Tunnel;
use serde_json::json;

pub const NS_A: &str = "abc123-prod";
pub const NS_B: &str = "abc123-prod";
pub const DEADLINE: Duration = Duration::from_secs(90);
pub const SLOT: &str = "standby_golddr";

/// Both sites and the tunnel. Field order = drop order: the standby stops before the primary.
pub struct Pair {
    pub b: PatroniNode,
    pub tunnel: Tunnel,
    pub a: PatroniNode,
    pub site_b: ServerHandle,
    pub _site_a: ServerHandle,
    pub _scratch: Scratch,
}

pub fn pair() -> Pair {
    let scratch = Scratch::new().expect("locating tools (run `make deps` first)");
    let site_a = kubesim::Server::spawn(kubesim::Config::default()).expect("kubesim A");
    let site_b = kubesim::Server::spawn(kubesim::Config::default()).expect("kubesim B");
    let a = PatroniNode::builder("gold", "gold-0")
        .namespace(NS_A)
        .permanent_slot(SLOT)
        .start(&scratch, &site_a)
        .expect("starting site A");
    a.wait_writable(DEADLINE).expect("site A becomes primary");
    a.wait_query(
        &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{SLOT}'"),
        "1",
        DEADLINE,
    )
    .expect("permanent slot on A");
    let tunnel = Tunnel::spawn(
        "127.0.0.1:0".parse().unwrap(),
        SocketAddr::from((a.address(), a.pg_port())),
    )
    .expect("tunnel");
    let b = PatroniNode::builder("golddr", "golddr-0")
        .namespace(NS_B)
        .standby_cluster(StandbyCluster {
            host: "127.0.0.1".into(),
            port: tunnel.local_addr().port(),
            primary_slot_name: Some(SLOT.into()),
        })
        .start(&scratch, &site_b)
        .expect("starting site B");
    b.wait_rest("/standby-leader", 200, DEADLINE)
        .expect("site B becomes standby leader");
    b.wait_for("B's WAL receiver to stream", DEADLINE, || {
        let r = b.rest("GET", "/patroni", None).map_err(|e| e.to_string())?;
        match r.json()["replication_state"].as_str() {
            Some("streaming") => Ok(()),
            other => Err(format!("replication_state {other:?}")),
        }
    })
    .expect("streaming");
    // The platform's tunnel Service on the standby site.
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "golddr-gold"},
        "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": tunnel.local_addr().port(), "protocol": "TCP"}]}
    });
    let (code, body) = site_b.request(
        "POST",
        &format!("/api/v1/namespaces/{NS_B}/services"),
        None,
        Some(&svc),
    );
    assert_eq!(code, 201, "{body}");
    Pair {
        b,
        tunnel,
        a,
        site_b,
        _site_a: site_a,
        _scratch: scratch,
    }
}

pub fn settings(extra: &[(&str, &str)]) -> Settings {
    let creds = pgdr_patroni_harness::Credentials::shared();
    let mut vars: Vec<(String, String)> = [
        ("FAILOVER_MODE", "auto"),
        ("FAILOVER_SITE", "golddr"),
        ("FAILOVER_PEER_SITE", "gold"),
        ("FAILOVER_NAMESPACE", NS_B),
        ("FAILOVER_SCOPE", "golddr"),
        ("FAILOVER_STATE_CONFIGMAP", "golddr-failover-state"),
        ("FAILOVER_TUNNEL_SERVICE", "golddr-gold"),
        ("FAILOVER_REPLICATION_USER", creds.replication_user.as_str()),
        (
            "FAILOVER_REPLICATION_PASSWORD",
            creds.replication_password.as_str(),
        ),
        ("FAILOVER_PEER_SLOT_NAME", "standby_gold"),
        (
            "FAILOVER_PROMOTION_RECORD_CONFIGMAP",
            "golddr-promotion-record",
        ),
        // These tests exercise the tunnel probe and the stream; witnesses have unit tests.
        ("FAILOVER_ALLOW_NO_WITNESS", "true"),
        ("FAILOVER_SAMPLE_INTERVAL", "200ms"),
        ("FAILOVER_SAMPLES_PER_RUN", "5"),
        ("FAILOVER_FAILURE_THRESHOLD", "3"),
        ("FAILOVER_MIN_FAILURE_SPAN", "1s"),
        ("FAILOVER_PROBE_TIMEOUT", "1s"),
        ("FAILOVER_MAX_SAMPLE_GAP", "30s"),
        ("FAILOVER_API_TIMEOUT", "3s"),
        ("FAILOVER_PROMOTE_CONFIRM_DEADLINE", "60s"),
        ("FAILOVER_LOG_FORMAT", "plain"),
    ]
    .iter()
    .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_vars(vars).unwrap().validate().unwrap()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub async fn client(server: &ServerHandle) -> Client {
    let kc = Kubeconfig::from_yaml(&server.kubeconfig_yaml("site", NS_B)).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    // The production client: every request bounded, kube's own retries off.
    pgdr_core::k8s::bounded(cfg, Duration::from_secs(3)).unwrap()
}

pub fn init_logs() {
    pgdr_core::telemetry::init(pgdr_core::LogFormat::Plain, "test", "0", &"");
}
