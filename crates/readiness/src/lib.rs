//! The readiness sidecar: polls the local Patroni REST API and serves `/ready`, `/live`,
//! `/primary`, `/status` (JSON) and `/metrics` (OpenMetrics text).
//!
//! One task polls Patroni every interval (each request bounded by a timeout) and publishes a
//! snapshot; the HTTP handlers only read the latest snapshot, so probes never wait on Patroni.

#![forbid(unsafe_code)]

pub mod config;
pub mod metrics;
pub mod rules;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pgdr_core::dynamic_config;
use pgdr_core::patroni::{PatroniClient, PatroniError};
use serde::Serialize;
use tokio::sync::watch;

pub use config::{Config, Settings};
use rules::{MemberView, Poll, Role, Verdict};

pub const COMPONENT: &str = "pgdr-readiness";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}; choose a free port with READINESS_LISTEN")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the Patroni client: {0}")]
    Patroni(#[from] PatroniError),
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The latest poll and when it completed.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub poll: Poll,
    pub completed_at: Option<Instant>,
    pub completed_ts: Option<jiff::Timestamp>,
    pub last_success_ts: Option<jiff::Timestamp>,
}

impl Snapshot {
    fn age(&self) -> Duration {
        self.completed_at.map_or(Duration::MAX, |t| t.elapsed())
    }
}

struct Shared {
    settings: Settings,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    metrics: metrics::Metrics,
    started: Instant,
}

impl Shared {
    fn verdict(&self) -> (Arc<Snapshot>, Verdict) {
        let snap = self.snapshot.borrow().clone();
        let v = rules::assess(&snap.poll, snap.age(), &self.settings.rules);
        (snap, v)
    }
}

/// One poll of Patroni: `/patroni` always, `/config` for the standby flag, `/cluster` for a
/// replica's lag.
pub async fn poll_once(client: &PatroniClient) -> Poll {
    let status = match client.member_status().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "Patroni poll failed");
            return Poll::Unreachable(e.short());
        }
    };
    let role = Role::parse(&status.role);
    let member = status.patroni.as_ref().and_then(|p| p.name.clone());
    let standby_cluster = match role {
        Role::StandbyLeader => Some(true),
        _ => client
            .dynamic_config()
            .await
            .ok()
            .map(|c| dynamic_config::is_standby_cluster(&c)),
    };
    let lag_bytes = match (&role, &member) {
        (Role::Replica, Some(name)) => client
            .cluster()
            .await
            .ok()
            .and_then(|c| c.members.into_iter().find(|m| &m.name == name))
            .and_then(|m| m.lag),
        _ => None,
    };
    Poll::Reachable(MemberView {
        member,
        scope: status.patroni.and_then(|p| p.scope),
        state: status.state,
        role,
        timeline: status.timeline,
        lag_bytes,
        standby_cluster,
        replication_state: status.replication_state,
        paused: status.pause,
        cluster_unlocked: status.cluster_unlocked,
    })
}

async fn poll_loop(
    client: PatroniClient,
    interval: Duration,
    tx: watch::Sender<Arc<Snapshot>>,
    metrics: metrics::Metrics,
    rules: rules::Rules,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_success_ts = None;
    let mut last_reason = String::new();
    loop {
        tick.tick().await;
        let poll = poll_once(&client).await;
        let now = jiff::Timestamp::now();
        if matches!(poll, Poll::Reachable(_)) {
            last_success_ts = Some(now);
        }
        let verdict = rules::assess(&poll, Duration::ZERO, &rules);
        metrics.record(&poll, &verdict, now);
        if verdict.reason != last_reason {
            tracing::info!(ready = verdict.ready, primary = verdict.primary, reason = %verdict.reason, "readiness changed");
            last_reason = verdict.reason.clone();
        }
        tx.send_replace(Arc::new(Snapshot {
            poll,
            completed_at: Some(Instant::now()),
            completed_ts: Some(now),
            last_success_ts,
        }));
    }
}

/// Serves until `shutdown` completes, then drains open requests and returns.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: settings.listen,
            source,
        })?;
    serve(listener, settings, shutdown).await
}

/// Like [`run`] on an already bound listener (tests bind port 0).
pub async fn serve(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = PatroniClient::new(&settings.patroni)?;
    let metrics = metrics::Metrics::new(&settings.site, VERSION);
    let (tx, rx) = watch::channel(Arc::new(Snapshot {
        poll: Poll::NotYet,
        completed_at: None,
        completed_ts: None,
        last_success_ts: None,
    }));
    let poller = tokio::spawn(poll_loop(
        client,
        settings.poll_interval,
        tx,
        metrics.clone(),
        settings.rules.clone(),
    ));
    let addr = listener.local_addr().ok();
    tracing::info!(listen = ?addr, patroni = %settings.patroni.url, "serving");
    let shared = Arc::new(Shared {
        settings,
        snapshot: rx,
        metrics,
        started: Instant::now(),
    });
    let result = axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve);
    poller.abort();
    tracing::info!("stopped");
    result
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/live", get(live))
        .route("/primary", get(primary))
        .route("/status", get(status))
        .route("/metrics", get(metrics_text))
        .with_state(shared)
}

fn text(code: StatusCode, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body + "\n",
    )
        .into_response()
}

async fn ready(State(s): State<Arc<Shared>>) -> Response {
    let (_, v) = s.verdict();
    if v.ready {
        text(StatusCode::OK, format!("ready: {}", v.reason))
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}", v.reason),
        )
    }
}

async fn primary(State(s): State<Arc<Shared>>) -> Response {
    let (_, v) = s.verdict();
    if v.primary {
        text(StatusCode::OK, format!("primary: {}", v.reason))
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not primary: {}", v.reason),
        )
    }
}

/// Alive while the poller keeps completing polls (each bounded by timeouts, so a stuck poller
/// means a bug worth a restart). Patroni being down is not a reason to restart the sidecar.
async fn live(State(s): State<Arc<Shared>>) -> Response {
    let snap = s.snapshot.borrow().clone();
    let limit = s.settings.rules.stale_after * 2;
    let idle = match snap.completed_at {
        Some(t) => t.elapsed(),
        None => s.started.elapsed(),
    };
    if idle <= limit {
        text(StatusCode::OK, "alive".into())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("poller stalled: no poll completed for {}s", idle.as_secs()),
        )
    }
}

/// `/status` body.
#[derive(Debug, Serialize)]
pub struct StatusBody {
    pub site: String,
    pub member: Option<String>,
    pub scope: Option<String>,
    pub role: Option<String>,
    pub state: Option<String>,
    pub timeline: Option<u64>,
    pub lag_bytes: Option<u64>,
    pub standby_cluster: Option<bool>,
    pub replication_state: Option<String>,
    pub paused: Option<bool>,
    pub patroni_reachable: bool,
    pub ready: bool,
    pub primary: bool,
    pub reason: String,
    pub error: Option<String>,
    pub last_poll: Option<String>,
    pub last_success: Option<String>,
    pub version: &'static str,
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let (snap, v) = s.verdict();
    let m = match &snap.poll {
        Poll::Reachable(m) => Some(m),
        _ => None,
    };
    let body = StatusBody {
        site: s.settings.site.clone(),
        member: m.and_then(|m| m.member.clone()),
        scope: m.and_then(|m| m.scope.clone()),
        role: m.map(|m| m.role.as_str().to_string()),
        state: m.map(|m| m.state.clone()),
        timeline: m.and_then(|m| m.timeline),
        lag_bytes: m.and_then(|m| m.lag_bytes),
        standby_cluster: m.and_then(|m| m.standby_cluster),
        replication_state: m.and_then(|m| m.replication_state.clone()),
        paused: m.map(|m| m.paused),
        patroni_reachable: m.is_some(),
        ready: v.ready,
        primary: v.primary,
        reason: v.reason,
        error: match &snap.poll {
            Poll::Unreachable(e) => Some(e.clone()),
            _ => None,
        },
        last_poll: snap.completed_ts.map(|t| t.to_string()),
        last_success: snap.last_success_ts.map(|t| t.to_string()),
        version: VERSION,
    };
    // Always 200: /status is for people and dashboards; probes use /ready, /primary and /live.
    axum::Json(body).into_response()
}

async fn metrics_text(State(s): State<Arc<Shared>>) -> Response {
    match s.metrics.encode() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}"),
        ),
    }
}
