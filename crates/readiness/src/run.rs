//! The sidecar's run: the poller (observe → decide → metrics) and the HTTP server ([`crate::act`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdr_core::patroni::PatroniClient;
use tokio::sync::watch;

use crate::decide::{self, Poll};
use crate::{Error, Settings, Shared, Snapshot, VERSION, act, metrics, observe};

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
        replication_broken_since: None,
    }));
    let poller = tokio::spawn(poll_loop(
        client,
        settings.poll_interval,
        tx,
        metrics.clone(),
        settings.rules.clone(),
    ));
    let addr = listener.local_addr().ok();
    tracing::info!(listen = ?addr, patroni = %pgdr_core::config::redact_url(&settings.patroni.url), "serving");
    let shared = Arc::new(Shared {
        settings,
        snapshot: rx,
        metrics,
        started: Instant::now(),
    });
    let result = axum::serve(listener, act::router(shared))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve);
    poller.abort();
    tracing::info!("stopped");
    result
}

async fn poll_loop(
    client: PatroniClient,
    interval: Duration,
    tx: watch::Sender<Arc<Snapshot>>,
    metrics: metrics::Metrics,
    rules: decide::Rules,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_success_ts = None;
    let mut last_reason = String::new();
    let mut broken_since = None;
    loop {
        tick.tick().await;
        let poll = observe::poll(&client).await;
        let now = jiff::Timestamp::now();
        if matches!(poll, Poll::Reachable(_)) {
            last_success_ts = Some(now);
        }
        let verdict = decide::decide(&poll, Duration::ZERO, &rules);
        if let Poll::Reachable(m) = &poll {
            let was = broken_since;
            broken_since = m.replication_broken().then(|| was.unwrap_or(now));
            if was.is_none() && broken_since.is_some() {
                tracing::warn!(role = m.role.as_str(), replication_state = ?m.replication_state, "replication broken: this member's WAL receiver is not streaming");
            }
        }
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
            replication_broken_since: broken_since,
        }));
    }
}
