//! Act: answer `/ready`, `/live`, `/primary`, `/status` and `/metrics` from the latest snapshot.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::decide::{FenceSeen, Latch, Lineage, PeerCheck, Poll};
use crate::{Shared, VERSION};
use pgdr_core::contract::sidecar::{Divergence, HistoryLine, RecloneStatus};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
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
/// `/status` `peer_check`.
#[derive(Debug, Serialize)]
pub struct PeerStatus {
    /// `off`, `idle` (not a writable primary), `failed`, `seen`.
    pub state: &'static str,
    pub at: Option<String>,
    pub error: Option<String>,
    pub writable: Option<bool>,
    pub lineage: Option<Lineage>,
    pub divergence_bytes: Option<u64>,
}

fn peer_status(p: &PeerCheck, at: Option<jiff::Timestamp>) -> PeerStatus {
    let mut out = PeerStatus {
        state: "off",
        at: at.map(|t| t.to_string()),
        error: None,
        writable: None,
        lineage: None,
        divergence_bytes: None,
    };
    match p {
        PeerCheck::Off => {}
        PeerCheck::Idle => out.state = "idle",
        PeerCheck::Failed(e) => {
            out.state = "failed";
            out.error = Some(e.clone());
        }
        PeerCheck::Seen {
            writable,
            lineage,
            divergence_bytes,
        } => {
            out.state = "seen";
            out.writable = Some(*writable);
            out.lineage = Some(*lineage);
            out.divergence_bytes = Some(*divergence_bytes);
        }
    }
    out
}

#[derive(Debug, Serialize)]
pub struct StatusBody {
    pub site: String,
    pub member: Option<String>,
    pub scope: Option<String>,
    /// `fenced` when the dynamic config holds `pgdr_fence`, else Patroni's role.
    pub role: Option<String>,
    /// Patroni's own role (differs from `role` when fenced).
    pub patroni_role: Option<String>,
    /// `pgdr_fence` as read from `/config` (phase, since, reason, peer, fork, divergence).
    pub fence: Option<FenceSeen>,
    pub fenced_seconds: Option<u64>,
    /// Both sites writable right now (the peer check), and since when.
    pub split_brain: bool,
    pub split_brain_since: Option<String>,
    /// Set when the peer was seen writable and with a newer promotion epoch: `/primary` stays 503.
    pub split_brain_latch: Option<Latch>,
    pub peer_check: PeerStatus,
    /// A writable primary not advertised because nothing shows yet that its peer did not promote
    /// past it: since when it has been primary (the failover agent vouches with a read of the
    /// peer's API taken after this; a person with `kubectl pgdr advertise SITE`).
    pub awaiting_peer_evidence_since: Option<String>,
    /// WAL preservation (`pgdr_fence.preserve`).
    pub divergence: Divergence,
    /// Re-clone (`pgdr_fence.reclone`): this member's data directory moved aside.
    pub reclone: Option<RecloneStatus>,
    /// This member's own PostgreSQL timeline history (`pg_wal/<timeline>.history`; empty on
    /// timeline 1); `None` without `READINESS_PGDATA` or a known timeline, or when unreadable.
    pub timeline_history: Option<Vec<HistoryLine>>,
    pub state: Option<String>,
    pub timeline: Option<u64>,
    pub lag_bytes: Option<u64>,
    pub standby_cluster: Option<bool>,
    pub replication_state: Option<String>,
    /// This member should stream WAL but does not (unknown when Patroni is unreachable).
    pub replication_broken: Option<bool>,
    pub replication_broken_since: Option<String>,
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
        role: m.map(|m| m.shown_role().to_string()),
        patroni_role: m.map(|m| m.role.as_str().to_string()),
        fence: m.and_then(|m| m.fence.clone()),
        fenced_seconds: m
            .and_then(|m| m.fence.as_ref())
            .map(|f| f.seconds_since(jiff::Timestamp::now())),
        split_brain: snap.split_brain_since.is_some(),
        split_brain_since: snap.split_brain_since.map(|t| t.to_string()),
        split_brain_latch: snap.latch.clone(),
        peer_check: peer_status(&snap.peer, snap.peer_checked_ts),
        awaiting_peer_evidence_since: snap
            .primary_since
            .filter(|_| snap.withheld == Some(crate::decide::UNSEEN))
            .map(|t| t.to_string()),
        divergence: s.divergence.borrow().clone(),
        reclone: s.reclone.borrow().clone(),
        timeline_history: match (&s.settings.pgdata, m.and_then(|m| m.timeline)) {
            (Some(pgdata), Some(tl)) => u32::try_from(tl)
                .ok()
                .and_then(|tl| crate::preserve::timeline_history(pgdata, tl).ok()),
            _ => None,
        },
        state: m.map(|m| m.state.clone()),
        timeline: m.and_then(|m| m.timeline),
        lag_bytes: m.and_then(|m| m.lag_bytes),
        standby_cluster: m.and_then(|m| m.standby_cluster),
        replication_state: m.and_then(|m| m.replication_state.clone()),
        replication_broken: m.map(|m| m.replication_broken()),
        replication_broken_since: snap.replication_broken_since.map(|t| t.to_string()),
        paused: m.map(|m| m.paused),
        patroni_reachable: m.is_some(),
        ready: v.ready,
        primary: v.primary,
        reason: v.reason.to_string(),
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
