//! A TCP proxy standing in for the cross-cluster tunnel (the BC Gov TransportServerClaim) in
//! tests and the local drill. It can be cut, blackholed, slowed and healed while connections
//! are open.
//!
//! The proxy runs on its own thread and runtime, so it can be driven from synchronous tests and
//! from async code alike; dropping the [`Tunnel`] stops it and closes every connection.
//!
//! Modes, and how faithful they are on loopback:
//! - [`Mode::Pass`]: bytes flow both ways.
//! - [`Mode::Cut`]: the listening socket is closed (new connections are refused by the kernel)
//!   and open connections are closed, as when the tunnel's Service or the F5 goes away.
//! - [`Mode::Blackhole`]: connections are still accepted but nothing is forwarded or answered;
//!   bytes are read and dropped. Connections that lost bytes are closed when the mode changes
//!   again (their stream is no longer intact), as TCP would eventually give up on them. Unlike a
//!   real blackhole, the kernel still completes handshakes and acknowledges keepalives.
//! - [`Mode::Slow`]: every chunk is delivered after the given extra latency, each direction.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// How the tunnel treats traffic right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Cut,
    Blackhole,
    Slow(Duration),
}

/// Counters, readable at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    pub active: u64,
    /// Client → upstream bytes delivered.
    pub bytes_up: u64,
    /// Upstream → client bytes delivered.
    pub bytes_down: u64,
    /// Bytes read and dropped by a blackhole.
    pub bytes_dropped: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
    dropped: AtomicU64,
}

/// Longest wait for the upstream connect; the drill's upstream is local.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Chunks queued per direction before reading pauses (back-pressure in slow mode).
const MAX_QUEUED: usize = 256;

/// A running proxy. Drop it (or call [`Tunnel::stop`]) to stop.
pub struct Tunnel {
    local: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    stop: watch::Sender<bool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl Tunnel {
    /// Listens on `listen` (port 0 picks a free one) and forwards to `upstream`.
    pub fn spawn(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Tunnel> {
        // std sets SO_REUSEADDR on Unix, so re-binding after a cut works despite TIME_WAIT.
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let local = std_listener.local_addr()?;
        let (mode_tx, mode_rx) = watch::channel(Mode::Pass);
        let (stop_tx, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tunnel-{}", local.port()))
            .spawn(move || {
                runtime.block_on(serve(std_listener, local, upstream, mode_rx, stop_rx, c));
            })?;
        tracing::info!(%local, %upstream, "tunnel listening");
        Ok(Tunnel {
            local,
            upstream,
            mode: mode_tx,
            stop: stop_tx,
            counters,
            thread: Some(thread),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    pub fn set_mode(&self, mode: Mode) {
        tracing::info!(local = %self.local, ?mode, "tunnel mode");
        self.mode.send_replace(mode);
    }

    /// Refuse new connections and close open ones.
    pub fn cut(&self) {
        self.set_mode(Mode::Cut)
    }

    /// Accept connections but forward and answer nothing.
    pub fn blackhole(&self) {
        self.set_mode(Mode::Blackhole)
    }

    /// Add `latency` to every chunk in each direction.
    pub fn slow(&self, latency: Duration) {
        self.set_mode(Mode::Slow(latency))
    }

    /// Back to normal forwarding.
    pub fn heal(&self) {
        self.set_mode(Mode::Pass)
    }

    pub fn stats(&self) -> Stats {
        let c = &self.counters;
        Stats {
            accepted: c.accepted.load(Ordering::Relaxed),
            active: c.active.load(Ordering::Relaxed),
            bytes_up: c.up.load(Ordering::Relaxed),
            bytes_down: c.down.load(Ordering::Relaxed),
            bytes_dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops the proxy and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(
    first: std::net::TcpListener,
    local: SocketAddr,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
) {
    let mut pending = Some(first);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let current = *mode.borrow_and_update();
        if current == Mode::Cut {
            // Closing the listener makes the kernel refuse new connections.
            pending = None;
            tokio::select! {
                _ = mode.changed() => continue,
                _ = stop.changed() => break,
            }
        }
        let std_listener = match pending.take() {
            Some(l) => l,
            None => match std::net::TcpListener::bind(local)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(%local, error = %e, "tunnel cannot listen again; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        _ = stop.changed() => break,
                    }
                }
            },
        };
        let listener = match TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "tunnel listener unusable");
                break;
            }
        };
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((client, _)) => {
                        counters.accepted.fetch_add(1, Ordering::Relaxed);
                        let c = counters.clone();
                        let m = mode.clone();
                        connections.spawn(async move {
                            c.active.fetch_add(1, Ordering::Relaxed);
                            connection(client, upstream, m, &c).await;
                            c.active.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "tunnel accept failed"),
                },
                changed = mode.changed() => {
                    if changed.is_err() || *mode.borrow() == Mode::Cut {
                        break;
                    }
                }
                _ = stop.changed() => {
                    connections.shutdown().await;
                    return;
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
    }
    connections.shutdown().await;
}

/// How one direction of a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The reader reached EOF and everything queued was delivered.
    Eof,
    /// The connection must close: cut, bytes lost to a blackhole, or an I/O error.
    Close,
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    c: &Counters,
) {
    let _ = client.set_nodelay(true);
    if *mode.borrow_and_update() == Mode::Blackhole {
        // Accepted during a blackhole: never connect upstream; swallow bytes until the mode changes.
        let (mut r, _w) = client.into_split();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                n = r.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => { c.dropped.fetch_add(n as u64, Ordering::Relaxed); }
                },
                _ = mode.changed() => return,
            }
        }
    }
    let server = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%upstream, error = %e, "upstream refused; closing client");
            return;
        }
        Err(_) => return,
    };
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = direction(cr, sw, mode.clone(), &c.up, &c.dropped);
    let down = direction(sr, cw, mode, &c.down, &c.dropped);
    tokio::pin!(up, down);
    // A half-close (EOF one way) lets the other direction finish; anything else closes both.
    tokio::select! {
        end = &mut up => if end == End::Eof { down.await; },
        end = &mut down => if end == End::Eof { up.await; },
    }
}

async fn direction<R, W>(
    mut reader: R,
    mut writer: W,
    mut mode: watch::Receiver<Mode>,
    delivered: &AtomicU64,
    dropped: &AtomicU64,
) -> End
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut eof = false;
    let mut lost_bytes = false;
    loop {
        if eof && queue.is_empty() {
            let _ = writer.shutdown().await;
            return End::Eof;
        }
        let due = queue.front().map(|(t, _)| *t);
        tokio::select! {
            n = reader.read(&mut buf), if !eof && queue.len() < MAX_QUEUED => match n {
                Ok(0) => eof = true,
                // The mode is read when the bytes arrive, not when the wait began, so a change
                // applies to the very next chunk.
                Ok(n) => match *mode.borrow() {
                    Mode::Blackhole => {
                        lost_bytes = true;
                        dropped.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Mode::Slow(latency) => queue.push_back((Instant::now() + latency, buf[..n].to_vec())),
                    Mode::Pass => queue.push_back((Instant::now(), buf[..n].to_vec())),
                    Mode::Cut => return End::Close,
                },
                Err(_) => return End::Close,
            },
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                let (_, chunk) = queue.pop_front().expect("due implies a queued chunk");
                if *mode.borrow() == Mode::Blackhole {
                    lost_bytes = true;
                    dropped.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                } else {
                    if writer.write_all(&chunk).await.is_err() {
                        return End::Close;
                    }
                    delivered.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            },
            changed = mode.changed() => {
                let now = *mode.borrow_and_update();
                if changed.is_err() || now == Mode::Cut || (lost_bytes && now != Mode::Blackhole) {
                    return End::Close;
                }
            },
        }
    }
}
