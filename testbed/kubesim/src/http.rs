//! HTTP/1.1 with keep-alive (hyper), chunked watch streams, and the accept loop that can refuse
//! all traffic for a while.

use crate::api::{self, ApiBody, ApiRequest, ApiResponse, State, WatchSpec};
use crate::faults::Action;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

type Body = BoxBody<Bytes, Infallible>;

/// Request bodies above this are refused, like the real server's 3 MiB limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Serves (over TLS when `tls` is given) until `shutdown` turns true. During an outage the
/// listener is closed (connections are refused), open connections are dropped, and the same
/// address is bound again afterwards.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = listener
        .local_addr()
        .expect("bound listener has an address");
    let mut listener = Some(listener);
    let mut outage = state.faults.outage_signal();
    // Each connection watches this; bumping it drops them all.
    let (kill_tx, _) = watch::channel(0u64);
    loop {
        if let Some(until) = state.faults.outage_until() {
            listener = None;
            kill_tx.send_modify(|n| *n += 1);
            tracing::info!(%addr, "outage: refusing connections");
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = outage.changed() => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let l = match &listener {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => {
                    tracing::info!(%addr, "outage over: accepting connections");
                    listener.insert(l)
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "cannot bind again; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::select! {
            accepted = l.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let mut kill = kill_tx.subscribe();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => connection(stream, state, kill).await,
                        Some(acceptor) => {
                            let handshake = tokio::select! {
                                s = acceptor.accept(stream) => s,
                                _ = kill.changed() => return,
                            };
                            match handshake {
                                Ok(s) => connection(s, state, kill).await,
                                Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                            }
                        }
                    }
                });
            }
            _ = outage.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Serves one connection (plain or TLS) until it closes or `kill` fires.
async fn connection<I>(io: I, state: Arc<State>, mut kill: watch::Receiver<u64>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(respond(state, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::select! {
        _ = conn => {}
        _ = kill.changed() => {}
    }
}

async fn respond(state: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let (parts, incoming) = req.into_parts();
    let header = |name: hyper::header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let body = match Limited::new(incoming, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let e = crate::error::ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            );
            return to_http(ApiResponse::error(&e), &state);
        }
    };
    let api_req = ApiRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query,
        content_type: header(CONTENT_TYPE),
        user_agent: header(hyper::header::USER_AGENT),
        authorization: header(hyper::header::AUTHORIZATION),
        impersonate_user: parts
            .headers
            .get("impersonate-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        impersonate_groups: parts
            .headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect(),
        body,
    };
    let resp = if api_req.path.starts_with("/kubesim/") {
        api::handle(&state, &api_req)
    } else {
        let (delay, fail) = state
            .faults
            .check(&api_req.method, &api_req.path, api_req.is_watch());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match fail {
            Some(Action::Fail {
                status,
                retry_after,
            }) => {
                state.record(&api_req, status, "");
                api::injected_failure(status, retry_after)
            }
            _ => api::handle(&state, &api_req),
        }
    };
    tracing::debug!(method = %api_req.method, path = %api_req.path, status = resp.status, "request");
    to_http(resp, &state)
}

fn to_http(resp: ApiResponse, state: &Arc<State>) -> Response<Body> {
    let mut builder = Response::builder()
        .status(resp.status)
        .header("Cache-Control", "no-cache, private");
    if let Some(s) = resp.retry_after {
        builder = builder.header("Retry-After", s.to_string());
    }
    let body = match resp.body {
        ApiBody::Json(v) => {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let mut bytes = serde_json::to_vec(&v).expect("JSON values serialize");
            bytes.push(b'\n');
            Full::new(Bytes::from(bytes)).boxed()
        }
        ApiBody::Text(t) => {
            builder = builder.header(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            Full::new(Bytes::from(t)).boxed()
        }
        ApiBody::Watch(spec) => {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            // No Content-Length: hyper sends Transfer-Encoding: chunked, as Patroni requires.
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            tokio::spawn(run_watch(*spec, tx, state.clone()));
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            StreamBody::new(stream).boxed()
        }
    };
    builder.body(body).expect("valid response parts")
}

fn event_line(ty: &str, object: &Value) -> Bytes {
    let mut b =
        serde_json::to_vec(&json!({"type": ty, "object": object})).expect("JSON values serialize");
    b.push(b'\n');
    Bytes::from(b)
}

/// Streams a watch: the initial events, then live ones, until the timeout, a cut, a lagging
/// receiver (answered with a 410 so the client re-lists) or the client leaving.
async fn run_watch(mut spec: WatchSpec, tx: mpsc::Sender<Bytes>, state: Arc<State>) {
    let sid = spec.rt.storage_id();
    let render = |obj: &Value| {
        let mut o = obj.clone();
        o["apiVersion"] = json!(spec.rt.api_version());
        o["kind"] = json!(spec.rt.kind);
        o
    };
    if let Some(err) = &spec.error {
        let _ = tx.send(event_line("ERROR", err)).await;
        return;
    }
    let mut last_rv = spec.start_rv;
    for ev in &spec.initial {
        if let Some(ty) = api::translate(ev, &spec.filter)
            && tx.send(event_line(ty, &render(&ev.object))).await.is_err()
        {
            return;
        }
        last_rv = last_rv.max(ev.rv);
    }
    if spec.initial_events_end {
        let end = json!({"kind": spec.rt.kind, "apiVersion": spec.rt.api_version(), "metadata": {
            "resourceVersion": last_rv.to_string(),
            "annotations": {"k8s.io/initial-events-end": "true"}}});
        if tx.send(event_line("BOOKMARK", &end)).await.is_err() {
            return;
        }
    }
    let mut cut = state.faults.cut_signal();
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let mut bookmark = tokio::time::interval(state.bookmark_interval);
    bookmark.tick().await;
    let bookmark_line = |rv: u64| {
        event_line(
            "BOOKMARK",
            &json!({"kind": spec.rt.kind, "apiVersion": spec.rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}}),
        )
    };
    loop {
        tokio::select! {
            ev = spec.rx.recv() => match ev {
                Ok(ev) => {
                    if ev.storage_id != sid || spec.namespace.as_ref().is_some_and(|n| *n != ev.namespace) {
                        continue;
                    }
                    last_rv = last_rv.max(ev.rv);
                    if let Some(ty) = api::translate(&ev, &spec.filter)
                        && tx.send(event_line(ty, &render(&ev.object))).await.is_err()
                    {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let e = crate::error::ApiError::gone("too old resource version: watcher fell behind");
                    let _ = tx.send(event_line("ERROR", &e.to_status())).await;
                    return;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = bookmark.tick(), if spec.bookmarks => {
                let rv = last_rv.max(state.store.current_rv());
                if tx.send(bookmark_line(rv)).await.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                if spec.bookmarks {
                    let _ = tx.send(bookmark_line(last_rv.max(state.store.current_rv()))).await;
                }
                return;
            }
            _ = cut.changed() => return,
            _ = tx.closed() => return,
        }
    }
}

/// Binds `addr` (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
