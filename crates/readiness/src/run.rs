//! The sidecar's run: the poller (observe → decide → metrics), the peer checker, the WAL
//! preserver and the HTTP server ([`crate::act`]). Each is its own task: a slow peer or a long
//! copy never delays the poll of the local Patroni.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdr_core::patroni::PatroniClient;
use tokio::sync::watch;

use crate::decide::{self, PeerCheck, Poll};
use crate::peer::PeerChecker;
use crate::preserve;
use crate::reclone;
use crate::{Error, Settings, Shared, Snapshot, VERSION, act, metrics, observe};
use pgdr_core::contract::fence::Reclone;
use pgdr_core::contract::lsn;
use pgdr_core::contract::sidecar::{Divergence, DivergenceState, RecloneState, RecloneStatus};

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
    let checker = settings.peer.as_ref().map(|p| PeerChecker::new(p.clone()));
    serve_with(
        listener,
        settings,
        checker.map(PeerSource::checker),
        shutdown,
    )
    .await
}

/// The future of one peer check.
pub type PeerFuture = std::pin::Pin<Box<dyn Future<Output = PeerCheck> + Send>>;

/// Where peer checks come from: the real check through the tunnel, or (tests) a script.
#[derive(Clone)]
pub struct PeerSource(Arc<dyn Fn() -> PeerFuture + Send + Sync>);

impl PeerSource {
    pub fn checker(c: PeerChecker) -> Self {
        let c = Arc::new(c);
        PeerSource(Arc::new(move || {
            let c = c.clone();
            Box::pin(async move { c.check().await })
        }))
    }

    pub fn scripted(f: impl Fn() -> PeerCheck + Send + Sync + 'static) -> Self {
        let f = Arc::new(f);
        PeerSource(Arc::new(move || {
            let f = f.clone();
            Box::pin(async move { f() })
        }))
    }
}

/// Like [`serve`] with the peer checks from `peer` (`None`: off).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    settings: Settings,
    peer: Option<PeerSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = PatroniClient::new(&settings.patroni)?;
    let metrics = metrics::Metrics::new(&settings.site, VERSION);
    let initial_peer = if peer.is_some() {
        PeerCheck::Idle
    } else {
        PeerCheck::Off
    };
    let (tx, rx) = watch::channel(Arc::new(Snapshot::initial(initial_peer.clone())));
    let (want_tx, want_rx) = watch::channel(false);
    let (peer_tx, peer_rx) = watch::channel((initial_peer, None));
    let (preserve_tx, preserve_rx) = watch::channel(None);
    let (div_tx, div_rx) = watch::channel(Divergence::default());
    let (reclone_status_tx, reclone_status_rx) = watch::channel(None);
    let mut tasks = vec![tokio::spawn(poll_loop(Poller {
        client,
        interval: settings.poll_interval,
        tx,
        metrics: metrics.clone(),
        rules: settings.rules.clone(),
        want_peer: want_tx,
        peer: peer_rx,
        preserve: preserve_tx,
        pgdata: settings.pgdata.clone(),
    }))];
    if let Some(source) = peer {
        tasks.push(tokio::spawn(peer_loop(
            source,
            settings.poll_interval,
            want_rx,
            peer_tx,
        )));
    }
    tasks.push(tokio::spawn(preserve_loop(preserve_rx, div_tx)));
    if let Some(pgdata) = settings.pgdata.clone() {
        tasks.push(tokio::spawn(reclone_loop(
            rx.clone(),
            pgdata,
            reclone_status_tx,
        )));
    }
    let addr = listener.local_addr().ok();
    tracing::info!(
        listen = ?addr,
        patroni = %pgdr_core::config::redact_url(&settings.patroni.url),
        peer = ?settings.peer.as_ref().map(|p| format!("{}:{} sslmode={:?}", p.host, p.port, p.sslmode)),
        pgdata = ?settings.pgdata,
        "serving"
    );
    let shared = Arc::new(Shared {
        settings,
        snapshot: rx,
        metrics,
        started: Instant::now(),
        divergence: div_rx,
        reclone: reclone_status_rx,
    });
    let result = axum::serve(listener, act::router(shared))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve);
    for t in tasks {
        t.abort();
    }
    tracing::info!("stopped");
    result
}

struct Poller {
    client: PatroniClient,
    interval: Duration,
    tx: watch::Sender<Arc<Snapshot>>,
    metrics: metrics::Metrics,
    rules: decide::Rules,
    /// Tells the peer checker whether this member is a writable primary.
    want_peer: watch::Sender<bool>,
    peer: watch::Receiver<(PeerCheck, Option<jiff::Timestamp>)>,
    preserve: watch::Sender<Option<(PathBuf, preserve::Request)>>,
    pgdata: Option<PathBuf>,
}

async fn poll_loop(mut p: Poller) {
    let mut tick = tokio::time::interval(p.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Snapshot::initial(p.peer.borrow().0.clone());
    let mut last_reason = String::new();
    loop {
        // A new peer result is applied at once (the latch within one poll), without waiting
        // for the next tick; Patroni is polled on its own schedule.
        let polled = tokio::select! {
            _ = tick.tick() => true,
            Ok(()) = p.peer.changed() => false,
        };
        let now = jiff::Timestamp::now();
        let mut snap = Snapshot { ..last.clone() };
        if polled {
            let poll = observe::poll(&p.client).await;
            apply_poll(&last, &mut snap, poll, now);
        }
        let (peer, peer_ts) = p.peer.borrow_and_update().clone();
        let writable = apply_peer(&last, &mut snap, peer, peer_ts, now);
        p.want_peer
            .send_if_modified(|w| std::mem::replace(w, writable) != writable);
        // Only a new request wakes the preserver; no fence (or an unreadable poll) keeps the
        // last one, so a finished job is not forgotten. The re-cloner reads every snapshot.
        offer(&p.preserve, preserve_request(&snap, p.pgdata.as_ref()));
        let verdict = decide::decide(
            &snap.poll,
            Duration::ZERO,
            &p.rules,
            snap.latch.as_ref(),
            snap.withheld,
        );
        if polled {
            p.metrics.record(&snap, &verdict, now);
        } else {
            p.metrics.update(&snap, &verdict, now);
        }
        let reason = verdict.reason.to_string();
        if reason != last_reason {
            tracing::info!(ready = verdict.ready, primary = verdict.primary, %reason, "readiness changed");
            last_reason = reason;
        }
        p.tx.send_replace(Arc::new(snap.clone()));
        last = snap;
    }
}

/// A completed poll of Patroni into the snapshot.
fn apply_poll(last: &Snapshot, snap: &mut Snapshot, mut poll: Poll, now: jiff::Timestamp) {
    // /config unreadable this time (fence unknown): keep the last fence we saw rather than
    // calling the member unfenced.
    if let (Poll::Reachable(m), Poll::Reachable(prev)) = (&mut poll, &last.poll)
        && m.fence.is_none()
        && m.standby_cluster.is_none()
    {
        m.fence = prev.fence.clone();
        m.vouch = prev.vouch.clone();
        m.epoch = prev.epoch;
        m.promoted_at = prev.promoted_at;
    }
    if let Poll::Reachable(m) = &poll {
        snap.last_success_ts = Some(now);
        let was = last.replication_broken_since;
        snap.replication_broken_since = m.replication_broken().then(|| was.unwrap_or(now));
        if was.is_none() && snap.replication_broken_since.is_some() {
            tracing::warn!(role = m.role.as_str(), replication_state = ?m.replication_state, "replication broken: this member's WAL receiver is not streaming");
        }
    }
    snap.poll = poll;
    snap.completed_at = Some(Instant::now());
    snap.completed_ts = Some(now);
}

/// The latest peer check into the snapshot: latch, split brain, the checks since this member
/// became a writable primary and whether it is withheld. Returns whether it is a writable,
/// unfenced primary (then the peer is checked).
fn apply_peer(
    last: &Snapshot,
    snap: &mut Snapshot,
    peer: PeerCheck,
    peer_ts: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> bool {
    let new_result = peer_ts.is_some() && peer_ts != last.peer_checked_ts;
    snap.peer = peer;
    snap.peer_checked_ts = peer_ts;
    snap.latch = decide::next_latch(last.latch.clone(), &snap.poll, &snap.peer, now);
    let sb = decide::split_brain(&snap.poll, &snap.peer);
    snap.split_brain_since = sb.then(|| last.split_brain_since.unwrap_or(now));
    log_changes(last, snap);
    let writable =
        matches!(&snap.poll, Poll::Reachable(m) if m.writable_primary() && m.fence.is_none());
    snap.primary_since = writable.then(|| last.primary_since.unwrap_or(now));
    snap.checks_since_primary = match snap.primary_since {
        None => decide::Checks::default(),
        // Only results of checks that ended after this member became primary count.
        Some(since) if new_result && snap.peer_checked_ts.is_some_and(|t| t >= since) => {
            last.checks_since_primary.after(&snap.peer)
        }
        Some(_) => last.checks_since_primary,
    };
    if let (Some(since), Poll::Reachable(m)) = (snap.primary_since, &snap.poll)
        && !snap.checks_since_primary.vouched
    {
        if pgdr_core::contract::vouch::promoted_into(since, m.promoted_at) {
            snap.checks_since_primary.vouched = true;
            tracing::info!(promoted_at = ?m.promoted_at, epoch = m.epoch, "this site's own promotion made this member primary: no evidence about the peer needed");
        } else if let Some(v) = m.vouch.as_ref().filter(|v| v.covers(since, m.epoch)) {
            snap.checks_since_primary.vouched = true;
            tracing::info!(by = v.by.as_str(), at = %v.at, note = %v.note, "vouched: the peer did not promote past this primary");
        }
    }
    snap.withheld = decide::withheld(writable, snap.checks_since_primary, &snap.peer);
    writable
}

/// `pgdr_fence.preserve` for this member: the leader's copy is the one the agent waits for
/// (replicas would only double the space taken on their own volumes).
fn preserve_request(
    snap: &Snapshot,
    pgdata: Option<&PathBuf>,
) -> Option<(PathBuf, preserve::Request)> {
    let (Poll::Reachable(m), Some(pgdata)) = (&snap.poll, pgdata) else {
        return None;
    };
    if !matches!(m.role, decide::Role::Primary | decide::Role::StandbyLeader) {
        return None;
    }
    let f = m.fence.as_ref()?.fence()?;
    let pr = f.preserve.as_ref()?;
    Some((
        pgdata.clone(),
        preserve::Request {
            timeline: pr.timeline,
            from_lsn: pr.from_lsn,
            end_lsn: f.local_end_lsn,
        },
    ))
}

/// This member as the re-cloner sees it in one snapshot: the request standing right now
/// (`pgdr_fence.reclone` on a fenced member on hold that is not a writable primary, never on a
/// site the agent already let follow: its data may be the fresh clone), and whether it streams
/// again with no fence holding it. An unreadable poll says neither.
fn reclone_look(snap: &Snapshot) -> reclone::Look {
    let Poll::Reachable(m) = &snap.poll else {
        return reclone::Look {
            standing: None,
            streams: false,
        };
    };
    let holding = m.fence.as_ref().filter(|f| f.holds());
    let standing = holding
        .filter(|_| !m.writable_primary())
        .and_then(|f| f.fence())
        .and_then(|f| f.reclone.clone());
    let streams = holding.is_none() && m.streams();
    reclone::Look { standing, streams }
}

/// Hands a request to its worker when it is new; `None` changes nothing.
fn offer<T: Clone + PartialEq>(tx: &watch::Sender<Option<T>>, request: Option<T>) {
    if request.is_some() {
        tx.send_if_modified(|r| {
            let changed = *r != request;
            if changed {
                r.clone_from(&request);
            }
            changed
        });
    }
}

fn log_changes(last: &Snapshot, now: &Snapshot) {
    match (&last.latch, &now.latch) {
        (None, Some(l)) => tracing::error!(
            fork_lsn = %l.fork_lsn, timeline = l.timeline, divergence_bytes = l.divergence_bytes,
            "split brain: the peer is a writable primary with a newer promotion epoch; /primary answers 503 until this member is demoted"
        ),
        (Some(_), None) => {
            tracing::info!("split-brain latch cleared: this member is a standby or fenced now")
        }
        _ => {}
    }
    match (last.split_brain_since, now.split_brain_since) {
        (None, Some(_)) => {
            tracing::error!(peer = ?now.peer, "split brain: both sites are writable primaries")
        }
        (Some(since), None) => {
            tracing::info!(%since, "split brain over: the peer or this member is no longer writable")
        }
        _ => {}
    }
    let fence = |s: &Snapshot| match &s.poll {
        Poll::Reachable(m) => m.fence.clone().map(|f| f.fence().cloned()),
        _ => None,
    };
    if let Poll::Reachable(_) = &now.poll {
        match (fence(last), fence(now)) {
            (None, Some(Some(f))) => {
                tracing::warn!(reason = ?f.reason, peer = %f.peer, phase = ?f.phase, "this site is fenced: /primary answers 503")
            }
            (None, Some(None)) => {
                tracing::warn!(
                    "this site is fenced (the fence document is unreadable): /primary answers 503"
                )
            }
            (Some(a), Some(b)) if a.as_ref().map(|f| f.phase) != b.as_ref().map(|f| f.phase) => {
                tracing::info!(from = ?a.map(|f| f.phase), to = ?b.map(|f| f.phase), "fence phase changed")
            }
            (Some(_), None) => tracing::info!("fence removed from the dynamic config"),
            _ => {}
        }
    }
}

/// Checks the peer every interval while this member is a writable primary (at once when it
/// becomes one); each check is bounded by its own timeout.
async fn peer_loop(
    source: PeerSource,
    interval: Duration,
    mut want: watch::Receiver<bool>,
    tx: watch::Sender<(PeerCheck, Option<jiff::Timestamp>)>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Ok(()) = want.changed() => {}
        }
        if !*want.borrow_and_update() {
            tx.send_if_modified(|(c, _)| std::mem::replace(c, PeerCheck::Idle) != PeerCheck::Idle);
            continue;
        }
        let result = (source.0)().await;
        if let PeerCheck::Failed(reason) = &result {
            tracing::debug!(%reason, "peer check failed");
        }
        tx.send_replace((result, Some(jiff::Timestamp::now())));
    }
}

/// Copies diverged WAL when asked (a new `pgdr_fence.preserve`); retries a failed copy every 30 s.
async fn preserve_loop(
    mut rx: watch::Receiver<Option<(PathBuf, preserve::Request)>>,
    tx: watch::Sender<Divergence>,
) {
    const RETRY: Duration = Duration::from_secs(30);
    let mut failed = false;
    loop {
        if failed {
            let _ = tokio::time::timeout(RETRY, rx.changed()).await;
        } else if rx.changed().await.is_err() {
            return;
        }
        let Some((pgdata, req)) = rx.borrow_and_update().clone() else {
            continue;
        };
        let dir = preserve::target_dir(&pgdata, req.timeline, req.from_lsn);
        tx.send_replace(Divergence {
            state: DivergenceState::Copying,
            dir: Some(dir.display().to_string()),
            ..Divergence::default()
        });
        tracing::info!(timeline = req.timeline, from_lsn = %lsn::format(req.from_lsn), dir = %dir.display(), "preserving diverged WAL");
        let r = tokio::task::spawn_blocking(move || preserve::preserve(&pgdata, &req)).await;
        let out = match r {
            Ok(Ok(d)) => {
                if d.missing.is_empty() {
                    tracing::info!(files = d.files, bytes = d.bytes, dir = ?d.dir, "diverged WAL preserved");
                } else {
                    tracing::warn!(files = d.files, bytes = d.bytes, missing = ?d.missing, dir = ?d.dir, "diverged WAL preserved incompletely: segments missing from pg_wal");
                }
                d
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "preserving diverged WAL failed");
                Divergence {
                    state: DivergenceState::Failed,
                    dir: Some(dir.display().to_string()),
                    error: Some(e.to_string()),
                    ..Divergence::default()
                }
            }
            Err(e) => Divergence {
                state: DivergenceState::Failed,
                dir: Some(dir.display().to_string()),
                error: Some(format!("the copy task failed: {e}")),
                ..Divergence::default()
            },
        };
        failed = out.state == DivergenceState::Failed;
        tx.send_replace(out);
    }
}

/// Re-clone (`pgdr_fence.reclone`), decided afresh at every snapshot ([`reclone::step`]): moves
/// this member's data directory aside while the request stands (a failure is retried every
/// 30 s, only while it still stands: a withdrawn request is never retried), and deletes the moved
/// folders once the member streams again with no request standing (checked every 30 s). The
/// receipts on the volume make every retry and restart safe.
async fn reclone_loop(
    mut snaps: watch::Receiver<Arc<Snapshot>>,
    pgdata: PathBuf,
    tx: watch::Sender<Option<RecloneStatus>>,
) {
    const RETRY: Duration = Duration::from_secs(30);
    let mut failed: Option<(String, Instant)> = None;
    let mut last_sweep: Option<Instant> = None;
    while snaps.changed().await.is_ok() {
        let look = reclone_look(&snaps.borrow_and_update());
        match reclone::step(&look) {
            reclone::Step::Wait => {}
            reclone::Step::Move(req) => {
                let retry_later = failed
                    .as_ref()
                    .is_some_and(|(id, at)| *id == req.requested_at && at.elapsed() < RETRY);
                if retry_later {
                    continue;
                }
                match move_aside(&pgdata, &req).await {
                    Ok(st) => {
                        failed = None;
                        tx.send_if_modified(|cur| {
                            let new = Some(st.clone());
                            std::mem::replace(cur, new.clone()) != new
                        });
                    }
                    Err(detail) => {
                        tracing::error!(error = %detail, requested_at = %req.requested_at, "re-clone: moving the data directory aside failed (retried while the request stands)");
                        failed = Some((req.requested_at.clone(), Instant::now()));
                        tx.send_replace(Some(RecloneStatus {
                            requested_at: req.requested_at.clone(),
                            state: RecloneState::Failed,
                            detail: Some(detail),
                            keep_data: req.keep_data,
                            ..RecloneStatus::default()
                        }));
                    }
                }
            }
            reclone::Step::DeleteMoved => {
                if last_sweep.is_some_and(|t| t.elapsed() < RETRY) {
                    continue;
                }
                last_sweep = Some(Instant::now());
                sweep_moved(&pgdata, &tx).await;
            }
        }
    }
}

/// One move for a standing request (idempotent: a receipt already there is returned as is).
async fn move_aside(pgdata: &std::path::Path, req: &Reclone) -> Result<RecloneStatus, String> {
    let (pgdata, req) = (pgdata.to_path_buf(), req.clone());
    let moved = tokio::task::spawn_blocking(move || reclone::move_aside(&pgdata, &req)).await;
    match moved {
        Ok(Ok(st)) => {
            tracing::warn!(requested_at = %st.requested_at, moved_to = ?st.moved_to, keep_data = st.keep_data, "re-clone: data directory moved aside (kept until this member streams again); Patroni stops PostgreSQL and clones this member once the agent lets it");
            Ok(st)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("the move task failed: {e}")),
    }
}

/// Deletes the moved folders whose receipts wait for it (this member streams again).
async fn sweep_moved(pgdata: &std::path::Path, tx: &watch::Sender<Option<RecloneStatus>>) {
    let pgdata = pgdata.to_path_buf();
    let swept = tokio::task::spawn_blocking(move || {
        let mut done = Vec::new();
        for st in reclone::waiting(&pgdata)? {
            done.push(reclone::remove_moved(&pgdata, &st)?);
        }
        Ok::<_, reclone::RecloneError>(done)
    })
    .await;
    match swept {
        Ok(Ok(done)) => {
            for st in done {
                if st.removed {
                    tracing::info!(requested_at = %st.requested_at, "re-clone: this member streams again; the moved data directory is deleted (the WAL past the fork was preserved)");
                } else {
                    tracing::warn!(requested_at = %st.requested_at, moved_to = ?st.moved_to, "re-clone: the moved data directory still has a postmaster.pid: kept, tried again later");
                }
                tx.send_replace(Some(st));
            }
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "re-clone: deleting a moved data directory failed; it stays on the volume")
        }
        Err(e) => tracing::error!(error = %e, "re-clone: the delete task failed"),
    }
}
