//! The sidecar's HTTP answers for a table of Patroni states, served by a scripted stand-in for
//! Patroni's REST API (states a real cluster cannot be held in on demand: lagging replica,
//! stopped PostgreSQL, unreachable API). The same checks run against real Patroni in
//! `tests/patroni.rs`.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use pgdr_core::Dur;
use pgdr_readiness::{Config, Settings};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Script {
    patroni: Option<Value>,
    config: Option<Value>,
    cluster: Option<Value>,
}

type Shared = Arc<Mutex<Script>>;

fn answer(v: Option<Value>) -> (StatusCode, String) {
    match v {
        Some(v) => (StatusCode::OK, v.to_string()),
        None => (StatusCode::BAD_GATEWAY, "no config".into()),
    }
}

async fn fake_patroni(script: Shared) -> SocketAddr {
    let app = Router::new()
        .route(
            "/patroni",
            get(|State(s): State<Shared>| async move {
                let v = s.lock().unwrap().patroni.clone();
                answer(v)
            }),
        )
        .route(
            "/config",
            get(|State(s): State<Shared>| async move {
                let v = s.lock().unwrap().config.clone();
                answer(v)
            }),
        )
        .route(
            "/cluster",
            get(|State(s): State<Shared>| async move {
                let v = s.lock().unwrap().cluster.clone();
                answer(v)
            }),
        )
        .with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn settings(patroni: SocketAddr) -> Settings {
    let mut raw: Config = pgdr_core::config::from_vars("READINESS_", std::iter::empty()).unwrap();
    raw.patroni_url = pgdr_core::Url::new(format!("http://{patroni}"));
    raw.listen = "127.0.0.1:0".into();
    raw.poll_interval = Dur::millis(100);
    raw.request_timeout = Dur::millis(500);
    raw.max_lag_bytes = 1000;
    raw.site = "golddr".into();
    raw.validate().unwrap()
}

async fn start_sidecar(
    settings: Settings,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        pgdr_readiness::serve(listener, settings, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (addr, tx, task)
}

async fn get_code(client: &reqwest::Client, url: String) -> (u16, String) {
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn member(state: &str, role: &str) -> Value {
    json!({"state": state, "role": role, "server_version": 150018, "timeline": 2,
           "xlog": {"received_location": 100, "replayed_location": 100, "paused": false},
           "dcs_last_seen": 1, "patroni": {"version": "4.1.5", "scope": "demo", "name": "pg-1"}})
}

fn cluster(lag: Value) -> Value {
    json!({"members": [{"name": "pg-0", "role": "leader", "state": "running"},
                       {"name": "pg-1", "role": "replica", "state": "streaming", "lag": lag}], "scope": "demo"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_to_http_codes() {
    pgdr_core::tls::install_crypto_provider();
    let script: Shared = Arc::default();
    let patroni = fake_patroni(script.clone()).await;
    let (sidecar, stop, task) = start_sidecar(settings(patroni)).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();

    let not_standby = json!({"ttl": 30});
    let standby = json!({"standby_cluster": {"host": "pg-gold", "port": 43504}});
    #[rustfmt::skip]
    let cases: Vec<(&str, Script, u16, u16)> = vec![
        // name, Patroni answers, /ready, /primary
        ("primary", Script { patroni: Some(member("running", "primary")), config: Some(not_standby.clone()), cluster: None }, 200, 200),
        ("primary without the leader lock",
         Script { patroni: Some({ let mut m = member("running", "primary"); m["cluster_unlocked"] = json!(true); m }),
                  config: Some(not_standby.clone()), cluster: None }, 200, 503),
        ("standby leader", Script { patroni: Some(member("running", "standby_leader")), config: Some(standby.clone()), cluster: None }, 200, 503),
        ("replica within lag", Script { patroni: Some(member("running", "replica")), config: Some(not_standby.clone()), cluster: Some(cluster(json!(1000))) }, 200, 503),
        ("replica over lag", Script { patroni: Some(member("running", "replica")), config: Some(not_standby.clone()), cluster: Some(cluster(json!(1001))) }, 503, 503),
        ("replica lag unknown", Script { patroni: Some(member("running", "replica")), config: Some(not_standby.clone()), cluster: Some(cluster(json!("unknown"))) }, 503, 503),
        ("replica, /cluster failing", Script { patroni: Some(member("running", "replica")), config: Some(not_standby.clone()), cluster: None }, 503, 503),
        ("PostgreSQL stopped", Script { patroni: Some(json!({"state": "stopped", "role": "replica", "dcs_last_seen": 1})), config: Some(not_standby.clone()), cluster: None }, 503, 503),
        ("PostgreSQL starting", Script { patroni: Some(member("starting", "primary")), config: Some(not_standby.clone()), cluster: None }, 503, 503),
        ("Patroni API failing", Script::default(), 503, 503),
    ];
    for (name, s, ready, primary) in cases {
        *script.lock().unwrap() = s;
        // Three poll intervals: the sidecar has certainly polled the new state.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let (r, body) = get_code(&http, format!("http://{sidecar}/ready")).await;
        assert_eq!(r, ready, "{name}: /ready said {body}");
        let (p, body) = get_code(&http, format!("http://{sidecar}/primary")).await;
        assert_eq!(p, primary, "{name}: /primary said {body}");
        let (code, status) = get_code(&http, format!("http://{sidecar}/status")).await;
        assert_eq!(code, 200);
        let status: Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["ready"], json!(ready == 200), "{name}: {status}");
        assert_eq!(status["site"], "golddr");
        println!(
            "{name:35} /ready {r} /primary {p}  reason: {}",
            status["reason"]
        );
    }

    // A replica in a standby cluster: the flag comes from /config.
    *script.lock().unwrap() = Script {
        patroni: Some(member("running", "replica")),
        config: Some(standby),
        cluster: Some(cluster(json!(0))),
    };
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (_, status) = get_code(&http, format!("http://{sidecar}/status")).await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["standby_cluster"], json!(true), "{status}");
    assert_eq!(status["lag_bytes"], json!(0));
    assert_eq!(status["member"], "pg-1");
    let (code, metrics) = get_code(&http, format!("http://{sidecar}/metrics")).await;
    assert_eq!(code, 200);
    assert!(
        metrics.lines().any(|l| l == "pgdr_standby_cluster 1.0"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "pgdr_role{role=\"replica\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        get_code(&http, format!("http://{sidecar}/live")).await.0,
        200
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("graceful stop")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_patroni_is_not_ready_with_the_reason() {
    pgdr_core::tls::install_crypto_provider();
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (sidecar, stop, _task) = start_sidecar(settings(closed)).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let http = reqwest::Client::new();
    let (code, body) = get_code(&http, format!("http://{sidecar}/ready")).await;
    assert_eq!(code, 503);
    assert!(body.contains("Patroni unreachable"), "{body}");
    let (_, status) = get_code(&http, format!("http://{sidecar}/status")).await;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["patroni_reachable"], json!(false));
    assert!(
        status["error"].as_str().unwrap().contains("refused"),
        "{status}"
    );
    assert!(status["last_success"].is_null());
    // Liveness does not depend on Patroni.
    assert_eq!(
        get_code(&http, format!("http://{sidecar}/live")).await.0,
        200
    );
    let _ = stop.send(());
}
