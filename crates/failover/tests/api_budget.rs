//! Every API call is bounded: a flaky cluster whose Events answer 503 (or hang) neither fails a
//! run nor holds it past its budget, and errors report what the server answered.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kubesim::{Action, Rule, ServerHandle};
use pgdr_failover::{Config, Error, exit, run_with};
use serde_json::json;

const NS: &str = "golddr";

fn server() -> ServerHandle {
    let server = kubesim::Server::spawn(kubesim::Config::default()).expect("kubesim starts");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    assert_eq!(
        server
            .request("POST", "/api/v1/namespaces", None, Some(&ns))
            .0,
        201
    );
    server
}

async fn client(server: &ServerHandle) -> kube::Client {
    let kc = Kubeconfig::from_yaml(&server.kubeconfig_yaml("site", NS)).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    pgdr_core::k8s::bounded(cfg, Duration::from_secs(1)).unwrap()
}

fn settings() -> pgdr_failover::Settings {
    let vars = [
        ("FAILOVER_SITE", "golddr"),
        ("FAILOVER_PEER_SITE", "gold"),
        ("FAILOVER_NAMESPACE", NS),
        ("FAILOVER_SCOPE", "golddr"),
        ("FAILOVER_STATE_CONFIGMAP", "golddr-failover-state"),
        ("FAILOVER_TUNNEL_SERVICE", "golddr-gold"),
        ("FAILOVER_REPLICATION_USER", "replicator"),
        ("FAILOVER_REPLICATION_PASSWORD", "x"),
        ("FAILOVER_PEER_SLOT_NAME", "standby_gold"),
        (
            "FAILOVER_PROMOTION_RECORD_CONFIGMAP",
            "golddr-promotion-record",
        ),
        ("FAILOVER_API_TIMEOUT", "1s"),
        ("FAILOVER_PROBE_TIMEOUT", "1s"),
    ];
    let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_vars(vars).unwrap().validate().unwrap()
}

/// A state ConfigMap that cannot be used: the run reports it with a Warning Event and exits 3.
fn unusable_state(server: &ServerHandle) {
    let cm = json!({"metadata": {"name": "golddr-failover-state"}, "data": {"state": "{not json"}});
    let path = format!("/api/v1/namespaces/{NS}/configmaps");
    assert_eq!(server.request("POST", &path, None, Some(&cm)).0, 201);
}

#[tokio::test]
async fn events_answering_503_or_hanging_do_not_hold_the_run() {
    for action in [
        Action::Fail {
            status: 503,
            retry_after: Some(1),
        },
        Action::Delay { ms: 30_000 },
    ] {
        let server = server();
        unusable_state(&server);
        server
            .faults()
            .add(Rule::new(action.clone()).path_contains("/events"));
        let started = Instant::now();
        let err = run_with(&settings(), client(&server).await, "run-1")
            .await
            .unwrap_err();
        // The outcome is the state's, not the Event's.
        assert!(
            matches!(err, Error::StateUnusable { .. }),
            "{action:?}: {err}"
        );
        assert_eq!(err.exit_code(), exit::STATE);
        // Reads within budget, one Event bounded by FAILOVER_API_TIMEOUT (1 s).
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{action:?}: the run took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn an_api_server_answering_503_is_reported_as_such() {
    let server = server();
    server.faults().fail_all(503, None);
    let started = Instant::now();
    let err = run_with(&settings(), client(&server).await, "run-1")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::API, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("503"),
        "says what the server answered: {text}"
    );
    assert!(!text.contains("no answer"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// The peer-API witness against a real (emulated) API server of the primary site: a fresh lock
/// is `alive`, an expired one `down`, an unreachable server `unknown`.
#[tokio::test]
async fn peer_api_witness_reads_the_primary_sites_lock() {
    pgdr_core::tls::install_crypto_provider();
    let gold = server();
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "read-only-token\n").unwrap();
    let url = gold.url();
    let settings_for = |url: &str| {
        let vars = [
            ("FAILOVER_SITE", "golddr"),
            ("FAILOVER_PEER_SITE", "gold"),
            ("FAILOVER_NAMESPACE", NS),
            ("FAILOVER_SCOPE", "demo"),
            ("FAILOVER_STATE_CONFIGMAP", "golddr-failover-state"),
            ("FAILOVER_TUNNEL_SERVICE", "golddr-gold"),
            ("FAILOVER_REPLICATION_USER", "replicator"),
            ("FAILOVER_REPLICATION_PASSWORD", "x"),
            ("FAILOVER_PEER_SLOT_NAME", "standby_gold"),
            (
                "FAILOVER_PROMOTION_RECORD_CONFIGMAP",
                "golddr-promotion-record",
            ),
            ("FAILOVER_PROBE_TIMEOUT", "1s"),
            ("FAILOVER_WITNESS_PEER_API_URL", url),
            ("FAILOVER_WITNESS_PEER_API_NAMESPACE", NS),
            (
                "FAILOVER_WITNESS_PEER_API_TOKEN_FILE",
                token.path().to_str().unwrap(),
            ),
        ];
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_vars(vars).unwrap().validate().unwrap()
    };
    let ask = |s: pgdr_failover::Settings| async move {
        let got = pgdr_failover::witness::ask_all(&s, &reqwest::Client::new()).await;
        match got.as_slice() {
            [w] => w.clone(),
            other => panic!("{other:?}"),
        }
    };
    use pgdr_failover::witness::Witness;

    // Neither the lock nor the cluster's config object: a wrong name or namespace (or a peer
    // Patroni with `use_endpoints`) is no evidence that the primary is down (issue 20 item 15).
    let got = ask(settings_for(&url)).await;
    assert!(
        matches!(got, Witness::Unknown(ref d) if d.contains("demo-config")),
        "{got:?}"
    );
    // The cluster exists (its config object) and has no lock: no leader, down.
    let path = format!("/api/v1/namespaces/{NS}/configmaps");
    let config = json!({"metadata": {"name": "demo-config", "annotations": {"config": "{}"}}});
    assert_eq!(gold.request("POST", &path, None, Some(&config)).0, 201);
    let got = ask(settings_for(&url)).await;
    assert!(
        matches!(got, Witness::Here(ref d) if d.contains("no leader lock")),
        "{got:?}"
    );

    let lock = |renew: jiff::Timestamp| {
        json!({"metadata": {"name": "demo-leader", "annotations": {
            "leader": "demo-0", "ttl": "30", "renewTime": renew.to_string()}}})
    };
    let fresh = lock(jiff::Timestamp::now());
    assert_eq!(gold.request("POST", &path, None, Some(&fresh)).0, 201);
    let got = ask(settings_for(&url)).await;
    assert!(matches!(got, Witness::Peer(_)), "{got:?}");

    let stale = lock(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(120));
    let one = format!("{path}/demo-leader");
    assert_eq!(gold.request("PUT", &one, None, Some(&stale)).0, 200);
    let got = ask(settings_for(&url)).await;
    assert!(
        matches!(got, Witness::Here(ref d) if d.contains("expired")),
        "{got:?}"
    );

    // The API server answers 503 (or cannot be reached): no opinion.
    gold.faults().fail_all(503, None);
    let got = ask(settings_for(&url)).await;
    assert!(
        matches!(got, Witness::Unknown(ref d) if d.contains("503")),
        "{got:?}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    assert!(matches!(
        ask(settings_for(&dead)).await,
        Witness::Unknown(_)
    ));
}
