//! port-patch against the in-memory API server: the scenarios of the issue, end to end through
//! kube-rs and HTTP (fault injection included), without Patroni.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::{Duration, Instant};

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubesim::{Action, Rule, ServerHandle};
use pgdr_port_patch::config::{HostMode, PortField};
use pgdr_port_patch::{Error, Outcome, Settings, run_with};
use serde_json::{Value, json};

const NS: &str = "abc123-prod";

fn server() -> ServerHandle {
    let server = kubesim::Server::spawn(kubesim::Config::default()).expect("kubesim starts");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    let (code, body) = server.request("POST", "/api/v1/namespaces", None, Some(&ns));
    assert_eq!(code, 201, "{body}");
    server
}

async fn client(server: &ServerHandle) -> Client {
    pgdr_core::tls::install_crypto_provider();
    let kc = Kubeconfig::from_yaml(&server.kubeconfig_yaml("site", NS)).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    // The production client: every request bounded, kube's own retries off.
    pgdr_core::k8s::bounded(cfg, Duration::from_secs(5)).unwrap()
}

fn settings() -> Settings {
    pgdr_port_patch::Config {
        scope: "demo".into(),
        tunnel_service: "demo-primary-gold".into(),
        namespace: Some(NS.into()),
        port_field: PortField::Port,
        port_name: None,
        host_mode: HostMode::Dns,
        host: None,
        primary_slot_name: Some("golddr".into()),
        create_replica_methods: Some(vec!["basebackup".into()]),
        labels: "application=patroni".parse().unwrap(),
        scope_label: "cluster-name".into(),
        config_map: None,
        leader_config_map: None,
        base_config: Some(
            r#"{"ttl":30,"loop_wait":10,"postgresql":{"use_pg_rewind":true}}"#.into(),
        ),
        deadline: pgdr_core::Dur::secs(10),
        request_timeout: pgdr_core::Dur::secs(5),
        force: false,
        promotion_record_configmap: "demo-promotion-record".into(),
        demote_promoted_site: false,
        log_format: pgdr_core::LogFormat::Plain,
    }
    .validate()
    .unwrap()
}

fn path(kind: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/{kind}/{name}")
}

fn create(server: &ServerHandle, kind: &str, body: Value) {
    let (code, resp) = server.request(
        "POST",
        &format!("/api/v1/namespaces/{NS}/{kind}"),
        None,
        Some(&body),
    );
    assert_eq!(code, 201, "create {kind}: {resp}");
}

fn tunnel_service(server: &ServerHandle, port: i32, target_port: i32) {
    create(
        server,
        "services",
        json!({
            "metadata": {"name": "demo-primary-gold"},
            "spec": {"clusterIP": "172.30.40.50", "ports": [{"port": port, "targetPort": target_port, "protocol": "TCP"}]}
        }),
    );
}

fn get(server: &ServerHandle, kind: &str, name: &str) -> (u16, Value) {
    server.request("GET", &path(kind, name), None, None)
}

fn config_of(server: &ServerHandle) -> Value {
    let (code, cm) = get(server, "configmaps", "demo-config");
    assert_eq!(code, 200, "{cm}");
    serde_json::from_str(
        cm["metadata"]["annotations"]["config"]
            .as_str()
            .expect("config annotation"),
    )
    .unwrap()
}

fn rv_of(server: &ServerHandle, name: &str) -> String {
    get(server, "configmaps", name).1["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

fn events(server: &ServerHandle) -> Vec<Value> {
    let (code, list) = server.request(
        "GET",
        &format!("/api/v1/namespaces/{NS}/events"),
        None,
        None,
    );
    assert_eq!(code, 200, "{list}");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn reasons(server: &ServerHandle) -> Vec<String> {
    events(server)
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn want_standby(port: u16) -> Value {
    json!({
        "host": format!("demo-primary-gold.{NS}.svc"),
        "port": port,
        "primary_slot_name": "golddr",
        "create_replica_methods": ["basebackup"],
    })
}

fn promoted_site(server: &ServerHandle, role: &str) {
    create(
        server,
        "configmaps",
        json!({"metadata": {"name": "demo-config", "labels": {"cluster-name": "demo"},
               "annotations": {"initialize": "7711510653626458384", "config": "{\"ttl\":30,\"loop_wait\":10}"}}}),
    );
    create(
        server,
        "configmaps",
        json!({"metadata": {"name": "demo-leader", "annotations": {"leader": "demo-golddr-0", "ttl": "30"}}}),
    );
    let status = json!({"state": "running", "role": role, "timeline": 2}).to_string();
    create(
        server,
        "pods",
        json!({"metadata": {"name": "demo-golddr-0", "labels": {"cluster-name": "demo"}, "annotations": {"status": status}},
               "spec": {"containers": [{"name": "patroni", "image": "patroni"}]}}),
    );
}

#[tokio::test]
async fn service_appearing_late_then_configmap_created_with_labels_and_event() {
    let server = server();
    let c = client(&server).await;
    let started = Instant::now();
    let job = tokio::spawn(async move { run_with(c, NS, &settings()).await });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!job.is_finished(), "must wait for the Service");
    tunnel_service(&server, 43504, 43504);
    let report = job.await.unwrap().expect("port-patch succeeds");
    assert!(started.elapsed() >= Duration::from_millis(1200));
    assert!(
        matches!(report.outcome, Outcome::Created { .. }),
        "{report:?}"
    );
    println!("{}", report.summary());

    let config = config_of(&server);
    assert_eq!(config["standby_cluster"], want_standby(43504));
    // Seeded from the base config (Patroni's bootstrap.dcs), which Patroni would otherwise ignore.
    assert_eq!(config["postgresql"]["use_pg_rewind"], json!(true));
    assert_eq!(config["ttl"], json!(30));
    let cm = get(&server, "configmaps", "demo-config").1;
    assert_eq!(
        cm["metadata"]["labels"],
        json!({"application": "patroni", "cluster-name": "demo"})
    );

    let evs = events(&server);
    let ev = evs
        .iter()
        .find(|e| e["reason"] == "StandbyClusterConfigured")
        .expect("event recorded");
    assert_eq!(ev["involvedObject"]["name"], "demo-config");
    assert_eq!(ev["involvedObject"]["kind"], "ConfigMap");
    assert!(ev["message"].as_str().unwrap().contains("43504"), "{ev}");
}

#[tokio::test]
async fn service_that_never_appears_fails_after_the_deadline() {
    let server = server();
    let c = client(&server).await;
    let mut s = settings();
    s.deadline = Duration::from_millis(1500);
    let started = Instant::now();
    let err = run_with(c, NS, &s).await.expect_err("must fail");
    let took = started.elapsed();
    assert!(matches!(err, Error::TunnelNotReady { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("{NS}/demo-primary-gold")), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(
        get(&server, "configmaps", "demo-config").0,
        404,
        "nothing written"
    );
}

#[tokio::test]
async fn existing_config_keeps_every_other_key_and_second_run_is_a_no_op() {
    let server = server();
    tunnel_service(&server, 43504, 43504);
    let old = json!({
        "ttl": 30, "loop_wait": 5,
        "postgresql": {"parameters": {"max_slot_wal_keep_size": "10GB"}, "use_pg_rewind": true},
        "slots": {"golddr": {"type": "physical"}},
        "standby_cluster": {"host": "old.example", "port": 16206, "restore_command": "cp /arch/%f %p"}
    });
    create(
        &server,
        "configmaps",
        json!({"metadata": {"name": "demo-config", "labels": {"cluster-name": "demo", "application": "patroni"},
               "annotations": {"initialize": "7711510653626458384", "config": old.to_string(),
                               "history": "[[1,50331744,\"no recovery target specified\",\"2026-01-01T00:00:00+00:00\",\"pg0\"]]"}}}),
    );
    let c = client(&server).await;
    let first = run_with(c.clone(), NS, &settings()).await.unwrap();
    match &first.outcome {
        Outcome::Updated { before, .. } => {
            assert_eq!(before.as_ref().unwrap()["port"], json!(16206))
        }
        other => panic!("{other:?}"),
    }
    println!("{}", first.summary());
    let mut want = old.clone();
    want["standby_cluster"] = json!({
        "host": format!("demo-primary-gold.{NS}.svc"), "port": 43504, "restore_command": "cp /arch/%f %p",
        "primary_slot_name": "golddr", "create_replica_methods": ["basebackup"]
    });
    assert_eq!(config_of(&server), want);
    let cm = get(&server, "configmaps", "demo-config").1;
    assert!(
        cm["metadata"]["annotations"]["history"]
            .as_str()
            .unwrap()
            .contains("no recovery target")
    );
    assert_eq!(
        cm["metadata"]["annotations"]["initialize"],
        "7711510653626458384"
    );

    let rv = rv_of(&server, "demo-config");
    let events_before = events(&server).len();
    let second = run_with(c, NS, &settings()).await.unwrap();
    assert!(
        matches!(second.outcome, Outcome::Unchanged { .. }),
        "{second:?}"
    );
    assert!(
        second.summary().starts_with("no change"),
        "{}",
        second.summary()
    );
    assert_eq!(rv_of(&server, "demo-config"), rv, "a no-op must not write");
    assert_eq!(
        events(&server).len(),
        events_before,
        "a no-op records no Event"
    );
}

#[tokio::test]
async fn concurrent_writer_causes_409_and_nothing_is_lost() {
    let server = server();
    tunnel_service(&server, 43504, 43504);
    create(
        &server,
        "configmaps",
        json!({"metadata": {"name": "demo-config", "annotations": {"initialize": "1",
               "config": "{\"ttl\":30,\"standby_cluster\":{\"host\":\"old\",\"port\":1}}"}}}),
    );
    // Hold our first PATCH long enough for the concurrent write to land before it.
    server.faults().add(
        Rule::new(Action::Delay { ms: 400 })
            .method("PATCH")
            .path_contains("/configmaps/demo-config")
            .times(1),
    );
    let c = client(&server).await;
    let job = tokio::spawn(async move { run_with(c, NS, &settings()).await });

    // Like Patroni would: as soon as port-patch has read the object, change the config by CAS.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = server
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/configmaps/demo-config"));
        if seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "port-patch never read the ConfigMap"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rv = rv_of(&server, "demo-config");
    let patch = json!({"metadata": {"resourceVersion": rv, "annotations": {
        "config": "{\"ttl\":45,\"standby_cluster\":{\"host\":\"old\",\"port\":1}}"}}});
    let (code, body) = server.request(
        "PATCH",
        &path("configmaps", "demo-config"),
        Some("application/merge-patch+json"),
        Some(&patch),
    );
    assert_eq!(code, 200, "{body}");

    let report = job
        .await
        .unwrap()
        .expect("port-patch succeeds after retrying");
    assert!(
        report.conflicts >= 1,
        "expected a 409 to be retried: {report:?}"
    );
    let patches: Vec<u16> = server
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.user_agent != "kubesim-in-process")
        .map(|r| r.status)
        .collect();
    assert_eq!(
        patches,
        vec![409, 200],
        "one lost CAS, then a successful one"
    );
    let config = config_of(&server);
    assert_eq!(config["ttl"], json!(45), "the concurrent write survived");
    assert_eq!(
        config["standby_cluster"]["port"],
        json!(43504),
        "and so did ours"
    );
}

#[tokio::test]
async fn promoted_cluster_is_left_alone_unless_forced() {
    let server = server();
    tunnel_service(&server, 43504, 43504);
    promoted_site(&server, "primary");
    let rv = rv_of(&server, "demo-config");
    let c = client(&server).await;
    let report = run_with(c.clone(), NS, &settings()).await.unwrap();
    match &report.outcome {
        Outcome::LeftPromoted { leader, role } => {
            assert_eq!(leader, "demo-golddr-0");
            assert_eq!(role, "primary");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        report.summary().contains("promoted"),
        "{}",
        report.summary()
    );
    assert_eq!(rv_of(&server, "demo-config"), rv, "untouched");
    assert!(config_of(&server).get("standby_cluster").is_none());
    assert!(reasons(&server).contains(&"StandbyClusterNotRestored".to_string()));

    let mut forced = settings();
    forced.force = true;
    let report = run_with(c, NS, &forced).await.unwrap();
    assert!(
        matches!(report.outcome, Outcome::Updated { .. }),
        "{report:?}"
    );
    assert_eq!(config_of(&server)["standby_cluster"]["port"], json!(43504));
}

#[tokio::test]
async fn not_standby_without_a_running_primary_is_refused() {
    let server = server();
    tunnel_service(&server, 43504, 43504);
    promoted_site(&server, "demoted");
    let rv = rv_of(&server, "demo-config");
    let mut s = settings();
    // Waits for the leader to settle (it may be mid-promotion), then gives up without writing.
    s.deadline = Duration::from_millis(1500);
    let err = run_with(client(&server).await, NS, &s)
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::WriteDeadline { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("demo-golddr-0 is demoted") && text.contains("PORT_PATCH_FORCE"),
        "{text}"
    );
    assert_eq!(rv_of(&server, "demo-config"), rv);
}

#[tokio::test]
async fn malformed_annotation_is_reported_and_left_untouched() {
    let server = server();
    tunnel_service(&server, 43504, 43504);
    create(
        &server,
        "configmaps",
        json!({"metadata": {"name": "demo-config", "annotations": {"initialize": "1", "config": "{ttl: 30"}}}),
    );
    let rv = rv_of(&server, "demo-config");
    let started = Instant::now();
    let err = run_with(client(&server).await, NS, &settings())
        .await
        .expect_err("malformed");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no retrying a malformed object"
    );
    assert!(matches!(err, Error::Malformed { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{NS}/demo-config")) && text.contains("not valid JSON"),
        "{text}"
    );
    let cm = get(&server, "configmaps", "demo-config").1;
    assert_eq!(cm["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(cm["metadata"]["annotations"]["config"], "{ttl: 30");
    let evs = events(&server);
    let ev = evs
        .iter()
        .find(|e| e["reason"] == "MalformedDynamicConfig")
        .expect("warning event");
    assert_eq!(ev["type"], "Warning");
}

#[tokio::test]
async fn cluster_ip_and_target_port_modes_and_api_errors_are_retried() {
    let server = server();
    tunnel_service(&server, 5432, 53292);
    // The API server fails a few times: transient, so retried within the deadline.
    server.faults().fail_next(3, 503, None);
    let mut s = settings();
    s.host_mode = HostMode::ClusterIp;
    s.port_field = PortField::TargetPort;
    let report = run_with(client(&server).await, NS, &s).await.unwrap();
    assert!(
        matches!(report.outcome, Outcome::Created { .. }),
        "{report:?}"
    );
    let sc = &config_of(&server)["standby_cluster"];
    assert_eq!(sc["host"], "172.30.40.50");
    assert_eq!(sc["port"], json!(53292));
}

#[tokio::test]
async fn forbidden_is_not_retried() {
    let server = server();
    server.faults().fail_all(403, None);
    let started = Instant::now();
    let err = run_with(client(&server).await, NS, &settings())
        .await
        .expect_err("forbidden");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(text.contains("Role/RoleBinding"), "{text}");
}

/// A flaky cluster answering 503 to every Event: the run still writes the config, succeeds, and
/// finishes within its budget (an Event never fails or stalls a run).
#[tokio::test]
async fn events_answering_503_neither_fail_nor_stall_the_run() {
    let server = server();
    tunnel_service(&server, 5432, 5432);
    server.faults().add(
        Rule::new(Action::Fail {
            status: 503,
            retry_after: None,
        })
        .path_contains("/events"),
    );
    let started = Instant::now();
    let report = run_with(client(&server).await, NS, &settings())
        .await
        .expect("the run succeeds without its Event");
    assert!(
        matches!(report.outcome, Outcome::Created { .. }),
        "{report:?}"
    );
    assert_eq!(config_of(&server)["standby_cluster"], want_standby(5432));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an Event held the run for {:?}",
        started.elapsed()
    );
}

fn promotion_record(server: &ServerHandle) {
    create(
        server,
        "configmaps",
        json!({"metadata": {"name": "demo-promotion-record",
                            "annotations": {"helm.sh/resource-policy": "keep"}},
               "data": {"confirmed_at": "2026-03-01T12:00:00Z", "site": "golddr", "peer": "gold"}}),
    );
}

/// helm uninstall + reinstall with the standby values on a promoted site: the record survived,
/// port-patch refuses to make it a standby again, and writes nothing.
#[tokio::test]
async fn promoted_site_is_not_made_a_standby_again_without_permission() {
    let server = server();
    tunnel_service(&server, 5432, 5432);
    promotion_record(&server);
    let err = run_with(client(&server).await, NS, &settings())
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::PromotedSite { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("promoted at 2026-03-01T12:00:00Z") && text.contains("demotePromotedSite"),
        "{text}"
    );
    assert_eq!(get(&server, "configmaps", "demo-config").0, 404);

    // The explicit permission (a deliberate failback) lets it write.
    let mut s = settings();
    s.demote_promoted_site = true;
    let report = run_with(client(&server).await, NS, &s).await.unwrap();
    assert!(
        matches!(report.outcome, Outcome::Created { .. }),
        "{report:?}"
    );
}
