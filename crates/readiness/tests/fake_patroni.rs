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

/// The split-brain latch and the fence through the HTTP answers: a scripted peer check (the real
/// one needs two PostgreSQL histories; `pgdr_core::lineage` has its own tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_and_split_brain_latch() {
    use pgdr_readiness::decide::{Lineage, PeerCheck};
    use pgdr_readiness::run::PeerSource;
    pgdr_core::tls::install_crypto_provider();
    let script: Shared = Arc::default();
    let patroni = fake_patroni(script.clone()).await;
    *script.lock().unwrap() = Script {
        patroni: Some(member("running", "primary")),
        config: Some(json!({"ttl": 30})),
        cluster: None,
    };
    let peer: Arc<Mutex<PeerCheck>> = Arc::new(Mutex::new(PeerCheck::Seen {
        writable: false,
        lineage: Lineage::SameTimeline,
        divergence_bytes: 0,
    }));
    let source = {
        let peer = peer.clone();
        PeerSource::scripted(move || peer.lock().unwrap().clone())
    };
    let mut s = settings(patroni);
    // A long poll interval: the latch must come from the peer result itself, not the next poll.
    s.poll_interval = Duration::from_secs(2);
    s.rules.stale_after = Duration::from_secs(10);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sidecar = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pgdr_readiness::run::serve_with(
        listener,
        s,
        Some(source),
        async move {
            let _ = rx.await;
        },
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let status = |http: reqwest::Client| async move {
        let (_, body) = get_code(&http, format!("http://{sidecar}/status")).await;
        serde_json::from_str::<Value>(&body).unwrap()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        get_code(&http, format!("http://{sidecar}/primary")).await.0,
        200
    );
    let st = status(http.clone()).await;
    assert_eq!(st["peer_check"]["state"], "seen", "{st}");
    assert_eq!(st["split_brain"], json!(false));

    // The peer's promotion is newer: /primary 503 within one poll interval.
    *peer.lock().unwrap() = PeerCheck::Seen {
        writable: true,
        lineage: Lineage::PeerAuthoritative {
            epoch: 1,
            fork_lsn: 0x5000A28,
            timeline: 3,
            fork_pending: false,
        },
        divergence_bytes: 4096,
    };
    let t = std::time::Instant::now();
    loop {
        let (code, body) = get_code(&http, format!("http://{sidecar}/primary")).await;
        if code == 503 {
            assert!(body.contains("split brain"), "{body}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "/primary still 200: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("latched after {:?}", t.elapsed());
    let st = status(http.clone()).await;
    assert_eq!(st["split_brain"], json!(true), "{st}");
    assert_eq!(st["split_brain_latch"]["fork_lsn"], "0/5000A28", "{st}");
    let (_, metrics) = get_code(&http, format!("http://{sidecar}/metrics")).await;
    for line in [
        "pgdr_split_brain 1",
        "pgdr_peer_authoritative 1",
        "pgdr_divergence_bytes 4096",
        "pgdr_primary 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line}: {metrics}"
        );
    }

    // The peer goes away: still 503 (latched), split brain over.
    *peer.lock().unwrap() = PeerCheck::Failed("timeout".into());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        get_code(&http, format!("http://{sidecar}/primary")).await.0,
        503
    );
    let st = status(http.clone()).await;
    assert_eq!(st["split_brain"], json!(false), "{st}");
    assert_eq!(st["peer_check"]["state"], "failed", "{st}");

    // Fenced by the agent: role fenced, /ready follows the standby rules.
    *script.lock().unwrap() = Script {
        patroni: Some(member("running", "standby_leader")),
        config: Some(json!({"standby_cluster": {"restore_command": "false"},
            "pgdr_fence": {"since": "2026-11-30T16:00:00Z", "reason": "peer-authoritative", "peer": "gold",
                           "phase": "hold", "timeline": 3, "fork_lsn": "0/5000A28", "diverged_bytes": 4096}})),
        cluster: None,
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        get_code(&http, format!("http://{sidecar}/ready")).await.0,
        200
    );
    let (code, body) = get_code(&http, format!("http://{sidecar}/primary")).await;
    assert_eq!(code, 503);
    assert!(body.contains("fenced (peer-authoritative"), "{body}");
    let st = status(http.clone()).await;
    assert_eq!(st["role"], "fenced", "{st}");
    assert_eq!(st["patroni_role"], "standby_leader", "{st}");
    assert_eq!(st["fence"]["phase"], "hold", "{st}");
    assert_eq!(
        st["split_brain_latch"],
        Value::Null,
        "seen fenced: the latch is cleared"
    );
    assert_eq!(st["divergence"]["state"], "none", "{st}");
    let (_, metrics) = get_code(&http, format!("http://{sidecar}/metrics")).await;
    assert!(
        metrics.lines().any(|l| l == "pgdr_role{role=\"fenced\"} 1"),
        "{metrics}"
    );

    // /config unreadable for a while: the last fence seen still holds, even for a primary.
    *script.lock().unwrap() = Script {
        patroni: Some(member("running", "primary")),
        config: None,
        cluster: None,
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (code, body) = get_code(&http, format!("http://{sidecar}/primary")).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(status(http.clone()).await["role"], "fenced");

    // A deliberate switchover later makes it primary again; the peer is a standby by then.
    *peer.lock().unwrap() = PeerCheck::Seen {
        writable: false,
        lineage: Lineage::WeAuthoritative {
            epoch: 2,
            fork_lsn: 1,
            timeline: 4,
        },
        divergence_bytes: 0,
    };
    *script.lock().unwrap() = Script {
        patroni: Some(member("running", "primary")),
        config: Some(json!({"ttl": 30})),
        cluster: None,
    };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        get_code(&http, format!("http://{sidecar}/primary")).await.0,
        200
    );
    let _ = stop.send(());
}

/// `pgdr_fence.preserve` makes the sidecar copy the diverged WAL out of its PGDATA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserves_wal_when_asked() {
    pgdr_core::tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let pgdata = tmp.path().join("pgroot/data");
    std::fs::create_dir_all(pgdata.join("pg_wal")).unwrap();
    for name in ["000000030000000000000005", "000000030000000000000006"] {
        std::fs::File::create(pgdata.join("pg_wal").join(name))
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
    }
    std::fs::write(
        pgdata.join("pg_wal/00000003.history"),
        "1\t0/3000000\tno recovery target specified\n2\t0/4000000\tx\n",
    )
    .unwrap();
    let script: Shared = Arc::default();
    let patroni = fake_patroni(script.clone()).await;
    let mut s = settings(patroni);
    s.pgdata = Some(pgdata.clone());
    *script.lock().unwrap() = Script {
        patroni: Some(member("running", "standby_leader")),
        config: Some(json!({"standby_cluster": {"restore_command": "false"},
            "pgdr_fence": {"since": "2026-11-30T16:00:00Z", "reason": "witness-moved", "peer": "golddr", "phase": "hold",
                           "timeline": 3, "fork_lsn": "0/5000A28", "local_end_lsn": "0/7000010",
                           "preserve": {"timeline": 3, "from_lsn": "0/5000A28"}}})),
        cluster: None,
    };
    // A replica of the fenced site copies nothing: the agent reads the leader's copy.
    let fenced_config = script.lock().unwrap().config.clone();
    *script.lock().unwrap() = Script {
        patroni: Some(member("running", "replica")),
        config: fenced_config.clone(),
        cluster: Some(cluster(json!(0))),
    };
    let (sidecar, stop, _task) = start_sidecar(s).await;
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, body) = get_code(&http, format!("http://{sidecar}/status")).await;
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["role"], "fenced", "{st}");
    assert_eq!(st["divergence"]["state"], "none", "{st}");
    assert!(!tmp.path().join("pgroot/pgdr-diverged").exists());
    *script.lock().unwrap() = Script {
        patroni: Some(member("running", "standby_leader")),
        config: fenced_config,
        cluster: None,
    };
    let t = std::time::Instant::now();
    let st = loop {
        let (_, body) = get_code(&http, format!("http://{sidecar}/status")).await;
        let st: Value = serde_json::from_str(&body).unwrap();
        if st["divergence"]["state"] != "none" && st["divergence"]["state"] != "copying" {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Segment 7 holds local_end_lsn but is gone from pg_wal: named, state incomplete.
    let d = &st["divergence"];
    assert_eq!(d["state"], "incomplete", "{st}");
    assert_eq!(d["missing"], json!(["000000030000000000000007"]));
    assert_eq!(d["files"], 3);
    let dir = tmp.path().join("pgroot/pgdr-diverged/3-0_5000A28");
    assert_eq!(d["dir"], dir.display().to_string());
    assert!(dir.join("MANIFEST.json").exists());
    assert!(dir.join("000000030000000000000006").exists());
    let _ = stop.send(());
}
