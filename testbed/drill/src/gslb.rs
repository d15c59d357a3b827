//! The drill's GSLB: an emulation of the F5 global server load balancer BC Gov puts in front of
//! Gold and GoldDR, as it behaves for an active/passive application.
//!
//! - A **monitor** health-checks every site on an interval: an HTTP `GET /primary` on the readiness
//!   sidecar of each Patroni pod (the pod address and its `status` port, as the F5 reaches the
//!   member). A site is up when one member answers `200`. A site is marked down only after
//!   `fail_count` consecutive failed checks (no answer within the timeout, connection refused,
//!   non-200); one good check marks it up again (F5's default "time until up" of 0).
//! - **Global availability**: the application's name is answered with the first site, in
//!   preference order (Gold, then GoldDR), that is up; when none is, with the last site (the DR
//!   pool as last resort, so traffic moves there as soon as Gold is marked down). Before the first
//!   check of every site there is no answer.
//! - The failover CronJob asks it through the production **HTTP witness contract** (a URL kept in
//!   a Secret): `200 {"primary":"alive"}` while the GSLB sends the application to the peer site
//!   (Gold), `200 {"primary":"down"}` once it sends it to the asking site, `503` with no answer yet
//!   (the job reads that as `unknown`, which blocks).
//!
//! A scenario can cut the GSLB's health path to a site ([`Gslb::cut_health`]): the monitor's
//! checks of that site then fail as if the F5 could not reach it, whatever the site does.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pgdr_minicluster::Site;
use pgdr_minicluster::api::{self, Api, obj};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::chart::RELEASE;
use crate::error::{DrillError, Result};
use crate::options::Options;

/// Name of the GoldDR Secret holding the witness URL.
pub const WITNESS_SECRET: &str = "gslb-witness";

/// How the monitor checks the sites.
#[derive(Debug, Clone, PartialEq)]
pub struct GslbConfig {
    /// The application's GSLB name.
    pub app_name: String,
    /// Time between two checks of a site.
    pub interval: Duration,
    /// One check's budget (connect, request, status line).
    pub timeout: Duration,
    /// Consecutive failed checks before a site is marked down.
    pub fail_count: u32,
}

impl GslbConfig {
    /// Scaled to the drill's failover timings (1 s samples): a site is down after 3 s of failed
    /// checks.
    pub fn drill() -> GslbConfig {
        GslbConfig {
            app_name: "app.glb.drill".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(800),
            fail_count: 3,
        }
    }
    /// For the chart's production timings: a check every 5 s, down after 3 failures (10–15 s).
    /// An assumption: BC Gov does not publish its GSLB monitor settings (F5's own default, 30 s
    /// interval and 120 s timeout, would add about two minutes to every failover).
    pub fn production() -> GslbConfig {
        GslbConfig {
            app_name: "app.glb.drill".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(3),
            fail_count: 3,
        }
    }
}

/// What the monitor knows about one site.
#[derive(Debug, Clone)]
struct Pool {
    name: String,
    /// The members' readiness sidecars (pod, address); None until [`Gslb::watch`].
    targets: Option<Vec<(String, SocketAddr)>>,
    health_cut: bool,
    /// None until the first check.
    up: Option<bool>,
    failures: u32,
    last: String,
    /// The address the application's name resolves to (the primary Service's ClusterIP).
    address: Option<IpAddr>,
}

#[derive(Debug)]
struct Shared {
    cfg: GslbConfig,
    pools: Mutex<Vec<Pool>>,
}

impl Shared {
    fn pools(&self) -> MutexGuard<'_, Vec<Pool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The GSLB's answer for the application's name.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The chosen site.
    pub site: String,
    pub address: Option<IpAddr>,
    /// Why (the monitor's view of each site).
    pub reason: String,
    /// The chosen site passes its health check (false: the last-resort pick, nothing is up).
    pub healthy: bool,
}

/// A running GSLB: the monitor loop and the witness endpoint. Dropping it stops both.
pub struct Gslb {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Gslb {
    /// Starts the witness endpoint on a free loopback address and the monitor over `sites`
    /// (preference order: primary site first). Sites are attached later with [`Gslb::watch`] (the
    /// witness URL must exist before GoldDR's chart is installed); until every site has been
    /// checked once the GSLB has no answer.
    pub async fn start(cfg: GslbConfig, sites: &[&str]) -> Result<Gslb> {
        // Not 127.0.0.1: the drill rewrites that address in pod env to the pod's own IP.
        let ip = pgdr_patroni_harness::allocate_loopback(&[]).map_err(|e| DrillError::Site {
            site: "gslb".into(),
            reason: format!("no free loopback address for the witness endpoint: {e}"),
        })?;
        let listener = TcpListener::bind((ip, 0))
            .await
            .map_err(|e| DrillError::io("binding the GSLB's witness endpoint", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| DrillError::io("the GSLB's witness address", e))?;
        let shared = Arc::new(Shared {
            cfg,
            pools: Mutex::new(
                sites
                    .iter()
                    .map(|s| Pool {
                        name: s.to_string(),
                        targets: None,
                        health_cut: false,
                        up: None,
                        failures: 0,
                        last: "not checked yet".into(),
                        address: None,
                    })
                    .collect(),
            ),
        });
        let tasks = vec![
            tokio::spawn(serve(listener, shared.clone())),
            tokio::spawn(monitor(shared.clone())),
        ];
        Ok(Gslb {
            addr,
            shared,
            tasks,
        })
    }

    /// The witness URL for the site `asking` (the failover CronJob's site).
    pub fn witness_url(&self, asking: &str) -> String {
        format!("http://{}/witness?site={asking}", self.addr)
    }

    /// Puts the witness URL for GoldDR in a Secret created before GoldDR's install, and returns
    /// the `--set` values that point the failover CronJob at it.
    fn wire(&self, o: &mut Options) -> Vec<String> {
        o.golddr_secrets.push((
            WITNESS_SECRET.into(),
            vec![("url".into(), self.witness_url("golddr"))],
        ));
        vec![format!(
            "failover.witness.http.existingSecret={WITNESS_SECRET}"
        )]
    }

    /// [`Gslb::wire`] for both sites: the witness URL for each site in a Secret created before its
    /// install (the agent renders on both sites), and the `--set` values for each: (Gold's, GoldDR's).
    pub fn wire_both(&self, o: &mut Options) -> (Vec<String>, Vec<String>) {
        o.gold_secrets.push((
            WITNESS_SECRET.into(),
            vec![("url".into(), self.witness_url("gold"))],
        ));
        let golddr = self.wire(o);
        (golddr.clone(), golddr)
    }

    /// Starts monitoring `site`: its Patroni members' sidecar addresses and its primary Service's
    /// address are read now, like the fixed addresses an F5 monitor and pool are configured with
    /// (the GSLB keeps no handle on the site, so a killed site's API server goes with it). Call it
    /// again after a member pod was re-created.
    pub fn watch(&self, site: &Site) {
        self.watch_addresses(
            site.name(),
            members(site.api(), site.namespace()),
            primary_service_ip(site.api(), site.namespace()),
        );
    }

    /// Starts monitoring site `name` at these sidecar addresses (pod, address), answering
    /// `address` for the application while it is chosen.
    pub fn watch_addresses(
        &self,
        name: &str,
        targets: Vec<(String, SocketAddr)>,
        address: Option<IpAddr>,
    ) {
        for p in self.shared.pools().iter_mut() {
            if p.name == name {
                p.targets = Some(targets.clone());
                p.address = address;
            }
        }
    }

    /// Cuts (or restores) the GSLB's health path to a site: its checks fail while cut.
    pub fn cut_health(&self, site: &str, cut: bool) {
        for p in self.shared.pools().iter_mut() {
            if p.name == site {
                p.health_cut = cut;
            }
        }
    }

    /// The answer for the application's name now (None before every site was checked).
    pub fn answer(&self) -> Option<Answer> {
        choose(&self.shared.pools())
    }

    /// Resolves a name as the GSLB's DNS would: the chosen site's address for the application's
    /// name, nothing for any other.
    pub fn resolve(&self, name: &str) -> Option<IpAddr> {
        if name != self.shared.cfg.app_name {
            return None;
        }
        self.answer().and_then(|a| a.address)
    }

    /// Whether the monitor has marked `site` up (None: not checked yet or unknown site).
    pub fn is_up(&self, site: &str) -> Option<bool> {
        self.shared
            .pools()
            .iter()
            .find(|p| p.name == site)
            .and_then(|p| p.up)
    }

    /// Waits until the monitor's view of `site` is `up`.
    pub async fn wait_marked(&self, site: &str, up: bool, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.is_up(site) != Some(up) {
            if Instant::now() >= deadline {
                return Err(DrillError::Timeout {
                    what: format!(
                        "the GSLB marking site {site} {}",
                        if up { "up" } else { "down" }
                    ),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

impl Drop for Gslb {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Global availability: the first site that is up; none up: the last one (last resort); a site
/// never checked: no answer.
fn choose(pools: &[Pool]) -> Option<Answer> {
    if pools.is_empty() || pools.iter().any(|p| p.up.is_none()) {
        return None;
    }
    let view = pools
        .iter()
        .map(|p| {
            format!(
                "{} {} ({})",
                p.name,
                if p.up == Some(true) { "up" } else { "down" },
                p.last
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let chosen = pools
        .iter()
        .find(|p| p.up == Some(true))
        .or_else(|| pools.last())?;
    Some(Answer {
        site: chosen.name.clone(),
        address: chosen.address,
        reason: view,
        healthy: chosen.up == Some(true),
    })
}

/// One monitor step for a site: records a check's outcome, marking the site down after
/// `fail_count` consecutive failures and up after one success.
fn record(p: &mut Pool, ok: bool, what: String, fail_count: u32) {
    if ok {
        p.failures = 0;
        p.up = Some(true);
    } else {
        p.failures += 1;
        if p.failures >= fail_count || p.up.is_none() {
            // A site never seen up starts down (F5 marks a new pool member down until its first
            // successful check), so the first answer does not wait for fail_count checks.
            p.up = Some(false);
        }
    }
    p.last = what;
}

async fn monitor(shared: Arc<Shared>) {
    let cfg = shared.cfg.clone();
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pools = shared.pools().clone();
        for p in pools {
            let Some(targets) = &p.targets else { continue };
            let (ok, what) = if p.health_cut {
                (false, "health path cut".to_string())
            } else {
                check_site(targets, cfg.timeout).await
            };
            if let Some(q) = shared.pools().iter_mut().find(|q| q.name == p.name) {
                record(q, ok, what, cfg.fail_count);
            }
        }
    }
}

/// `GET /primary` on every Patroni member of a site: ok when one answers 200.
async fn check_site(targets: &[(String, SocketAddr)], timeout: Duration) -> (bool, String) {
    if targets.is_empty() {
        return (false, "no member with a status port".into());
    }
    let mut seen = Vec::new();
    for (pod, addr) in targets {
        let addr = *addr;
        match tokio::time::timeout(timeout, http_status(addr, "/primary")).await {
            Ok(Ok(200)) => return (true, format!("{pod} /primary 200")),
            Ok(Ok(code)) => seen.push(format!("{pod} /primary {code}")),
            Ok(Err(e)) => seen.push(format!("{pod} {e}")),
            Err(_) => seen.push(format!("{pod} no answer within {timeout:?}")),
        }
    }
    (false, seen.join(", "))
}

/// Patroni pods of the release with their readiness sidecar's address (pod IP, `status` port).
pub(crate) fn members(api: &Api, ns: &str) -> Vec<(String, SocketAddr)> {
    let pods = api.list(api::PODS, Some(ns)).unwrap_or_default();
    let mut out = Vec::new();
    for pod in pods {
        let name = obj::str_at(&pod, "/metadata/name")
            .unwrap_or("")
            .to_string();
        if !name.starts_with(&format!("{RELEASE}-")) {
            continue;
        }
        let Some(ip) = obj::str_at(&pod, "/status/podIP").and_then(|s| s.parse::<IpAddr>().ok())
        else {
            continue;
        };
        let port = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
            .find(|p| p["name"] == "status")
            .and_then(|p| p["containerPort"].as_u64());
        if let Some(port) = port {
            out.push((name, SocketAddr::new(ip, port as u16)));
        }
    }
    out.sort();
    out
}

fn primary_service_ip(api: &Api, ns: &str) -> Option<IpAddr> {
    let svc = api.get(api::SERVICES, ns, RELEASE).ok().flatten()?;
    obj::str_at(&svc, "/spec/clusterIP")?.parse().ok()
}

/// A bare HTTP/1.1 GET: the status code of the answer.
pub(crate) async fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut sock = TcpStream::connect(addr).await?;
    sock.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    status_of(&buf)
}

/// A bare HTTP/1.1 GET of a 200 answer's body (read to the end: `Connection: close`).
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut sock = TcpStream::connect(addr).await?;
    sock.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await?;
    let code = status_of(&buf)?;
    if code != 200 {
        return Err(std::io::Error::other(format!("GET {path}: status {code}")));
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

fn status_of(buf: &[u8]) -> std::io::Result<u16> {
    let line = String::from_utf8_lossy(buf);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            let first = line.lines().next().unwrap_or("").trim().to_string();
            std::io::Error::other(format!("not an HTTP answer: {first:?}"))
        })
}

/// The witness answer for a site asking: (status, body).
fn witness_answer(pools: &[Pool], asking: &str) -> (u16, Value) {
    match choose(pools) {
        None => (
            503,
            json!({"error": "the GSLB has no answer yet (not every site checked)"}),
        ),
        Some(a) if a.site == asking => (
            200,
            json!({"primary": "down", "reason": format!("the GSLB sends the application to {asking}: {}", a.reason)}),
        ),
        // Nothing is healthy and the other site is only the last resort: no evidence that the
        // application runs there (a primary site must not fence itself on it).
        Some(a) if !a.healthy => (
            503,
            json!({"error": format!("no site is healthy (last resort {}): {}", a.site, a.reason)}),
        ),
        Some(a) => (
            200,
            json!({"primary": "alive", "reason": format!("the GSLB sends the application to {}: {}", a.site, a.reason)}),
        ),
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((mut sock, _)) = listener.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let target = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = route(&shared, target);
            let body = body.to_string();
            let reason = if status == 200 {
                "OK"
            } else {
                "Service Unavailable"
            };
            let resp = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// `/witness?site=S` (the HTTP witness contract) and `/resolve` (the DNS answer, as JSON).
fn route(shared: &Shared, target: &str) -> (u16, Value) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pools = shared.pools();
    match path {
        "/witness" => {
            let asking = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("site="))
                .unwrap_or("");
            witness_answer(&pools, asking)
        }
        "/resolve" => match choose(&pools) {
            Some(a) => (
                200,
                json!({"name": shared.cfg.app_name, "site": a.site, "address": a.address.map(|a| a.to_string())}),
            ),
            None => (503, json!({"error": "no answer yet"})),
        },
        _ => (404, json!({"error": "unknown path"})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, up: Option<bool>) -> Pool {
        Pool {
            name: name.into(),
            targets: None,
            health_cut: false,
            up,
            failures: 0,
            last: String::new(),
            address: None,
        }
    }

    #[test]
    fn global_availability_prefers_gold_and_falls_back_to_the_last_site() {
        let t = |g, d| choose(&[pool("gold", g), pool("golddr", d)]).map(|a| a.site);
        assert_eq!(t(None, Some(false)), None, "no answer before every check");
        assert_eq!(t(Some(true), Some(false)).as_deref(), Some("gold"));
        assert_eq!(t(Some(true), Some(true)).as_deref(), Some("gold"));
        assert_eq!(t(Some(false), Some(true)).as_deref(), Some("golddr"));
        assert_eq!(t(Some(false), Some(false)).as_deref(), Some("golddr"));
    }

    #[test]
    fn a_site_is_marked_down_only_after_the_failure_count() {
        let mut p = pool("gold", None);
        record(&mut p, true, "ok".into(), 3);
        assert_eq!(p.up, Some(true));
        record(&mut p, false, "x".into(), 3);
        record(&mut p, false, "x".into(), 3);
        assert_eq!(p.up, Some(true), "two failures are a flap");
        record(&mut p, false, "x".into(), 3);
        assert_eq!(p.up, Some(false));
        record(&mut p, true, "ok".into(), 3);
        assert_eq!(p.up, Some(true), "one good check marks it up again");
        let mut fresh = pool("golddr", None);
        record(&mut fresh, false, "503".into(), 3);
        assert_eq!(fresh.up, Some(false), "never seen up: down from the start");
    }

    /// A readiness sidecar stand-in: `/primary` answers 200 while `primary` is set, else 503.
    async fn sidecar(primary: Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
        let ip = pgdr_patroni_harness::allocate_loopback(&[]).unwrap();
        let l = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let code = if primary.load(std::sync::atomic::Ordering::Relaxed) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = sock
                    .write_all(format!("HTTP/1.1 {code}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        addr
    }

    /// GET on the GSLB's endpoint: (status, body).
    async fn get(gslb: &Gslb, path: &str) -> (u16, Value) {
        let mut sock = TcpStream::connect(gslb.addr).await.unwrap();
        sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut text = String::new();
        sock.read_to_string(&mut text).await.unwrap();
        let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        (code, serde_json::from_str(body).unwrap())
    }

    #[tokio::test]
    async fn follows_the_sidecars_with_a_failure_count_and_answers_the_witness_contract() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let cfg = GslbConfig {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(200),
            ..GslbConfig::drill()
        };
        let gslb = Gslb::start(cfg, &["gold", "golddr"]).await.unwrap();
        let url = gslb.witness_url("golddr");
        let path = &url[url.find("/witness").unwrap()..];
        assert_eq!(get(&gslb, path).await.0, 503, "no answer before any check");
        let (gold, golddr) = (
            Arc::new(AtomicBool::new(true)),
            Arc::new(AtomicBool::new(false)),
        );
        let g = sidecar(gold.clone()).await;
        let d = sidecar(golddr.clone()).await;
        gslb.watch_addresses("gold", vec![("gold-0".into(), g)], Some(g.ip()));
        gslb.watch_addresses("golddr", vec![("golddr-0".into(), d)], Some(d.ip()));
        gslb.wait_marked("gold", true, Duration::from_secs(5))
            .await
            .unwrap();
        gslb.wait_marked("golddr", false, Duration::from_secs(5))
            .await
            .unwrap();
        let (code, body) = get(&gslb, path).await;
        assert_eq!(
            (code, body["primary"].as_str()),
            (200, Some("alive")),
            "{body}"
        );
        assert_eq!(gslb.resolve("app.glb.drill"), Some(g.ip()));
        assert_eq!(gslb.resolve("other.glb.drill"), None);

        // Gold stops being primary: marked down only after the failure count, then the app moves.
        gold.store(false, Ordering::Relaxed);
        let since = Instant::now();
        gslb.wait_marked("gold", false, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(
            since.elapsed() >= Duration::from_millis(100),
            "marked down before 3 checks"
        );
        let (code, body) = get(&gslb, path).await;
        assert_eq!(
            (code, body["primary"].as_str()),
            (200, Some("down")),
            "{body}"
        );
        assert_eq!(gslb.resolve("app.glb.drill"), Some(d.ip()));

        // Back: one good check and the GSLB prefers Gold again, even with GoldDR up.
        golddr.store(true, Ordering::Relaxed);
        gold.store(true, Ordering::Relaxed);
        gslb.wait_marked("gold", true, Duration::from_secs(5))
            .await
            .unwrap();
        gslb.wait_marked("golddr", true, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(get(&gslb, path).await.1["primary"], "alive");

        // The health path to Gold cut: Gold still answers 200, the GSLB cannot see it.
        gslb.cut_health("gold", true);
        gslb.wait_marked("gold", false, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(gslb.answer().unwrap().site, "golddr");
        assert_eq!(get(&gslb, path).await.1["primary"], "down");
        assert_eq!(get(&gslb, "/nothing").await.0, 404);
    }

    #[test]
    fn witness_contract() {
        let status = |g, d, asking| {
            let (code, body) = witness_answer(&[pool("gold", g), pool("golddr", d)], asking);
            (code, body["primary"].as_str().map(String::from))
        };
        assert_eq!(status(None, None, "golddr"), (503, None));
        assert_eq!(
            status(Some(true), Some(false), "golddr"),
            (200, Some("alive".into()))
        );
        assert_eq!(
            status(Some(false), Some(false), "golddr"),
            (200, Some("down".into()))
        );
        // Gold asking (the primary role's question: does the application run on the peer?):
        // only a healthy GoldDR is evidence; the last-resort pick of a GoldDR that is down too
        // (e.g. still a standby) is no answer.
        assert_eq!(
            status(Some(false), Some(true), "gold"),
            (200, Some("alive".into()))
        );
        assert_eq!(status(Some(false), Some(false), "gold"), (503, None));
        assert_eq!(
            status(Some(true), Some(false), "gold"),
            (200, Some("down".into()))
        );
    }
}
