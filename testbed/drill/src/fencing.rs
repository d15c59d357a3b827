//! What the "exactly one writable primary" scenarios measure (issue 12): how often both sites'
//! readiness sidecars answered `/primary` 200 at once, how long both sites acknowledged writes
//! (split brain), which acknowledged writes the authoritative site lost, and what the fenced site
//! reported about the WAL it had to discard (its fence marker, the agent's state and Events, the
//! sidecar's `/status`, the preserved WAL's `MANIFEST.json`).
//!
//! Everything here watches from outside, as a GSLB and the application's clients would: the
//! sampler and the writers hold no handle on a site's processes, only addresses read from the
//! site's API server, so a site that is killed or powered off simply stops answering.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgdr_minicluster::Site;
use pgdr_minicluster::api::{self, Api, obj};
use serde_json::Value;

use crate::chart::RELEASE;
use crate::db::Db;
use crate::gslb;

/// How often the sampler asks every sidecar (the issue's 200 ms).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// One `/primary` request's budget (below the period, so a stuck site cannot slow the sampling).
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(180);

/// A site as the sampler and the writers see it: its name and its API server (for the current
/// pod and Service addresses).
#[derive(Clone)]
pub struct Watched {
    pub name: String,
    api: Api,
    namespace: String,
}

impl Watched {
    pub fn of(site: &Site) -> Watched {
        Watched {
            name: site.name().to_string(),
            api: site.api().clone(),
            namespace: site.namespace().to_string(),
        }
    }
    /// The readiness sidecars of the site's Patroni members (pod, address) now.
    fn sidecars(&self) -> Vec<(String, SocketAddr)> {
        gslb::members(&self.api, &self.namespace)
    }
    /// ClusterIP:port of the site's primary Service.
    fn primary_service(&self) -> Option<SocketAddr> {
        let svc = self
            .api
            .get(api::SERVICES, &self.namespace, RELEASE)
            .ok()??;
        let ip: IpAddr = obj::str_at(&svc, "/spec/clusterIP")?.parse().ok()?;
        let port = svc.pointer("/spec/ports/0/port")?.as_u64()? as u16;
        Some(SocketAddr::new(ip, port))
    }
}

/// What the `/primary` sampler counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrimaryStats {
    pub samples: u64,
    /// Samples in which a sidecar of every site answered 200.
    pub both: u64,
    /// The longest run of consecutive `both` samples, and how long it lasted.
    pub longest_both: u64,
    pub longest_both_for: Duration,
    /// Per site: samples in which one of its sidecars answered 200.
    pub per_site: Vec<(String, u64)>,
    /// Per site: the status of the last sample (200, 503, … ; 0: no answer).
    pub last: Vec<(String, u16)>,
}

#[derive(Default)]
struct SamplerState {
    stats: PrimaryStats,
    run: u64,
    run_since: Option<Instant>,
}

/// Every [`SAMPLE_EVERY`] a `GET /primary` on every readiness sidecar of each site; a site counts
/// as "primary" in a sample when one of its sidecars answered 200. Dropping it stops it.
pub struct PrimarySampler {
    state: Arc<Mutex<SamplerState>>,
    task: tokio::task::JoinHandle<()>,
}

impl PrimarySampler {
    pub fn start(sites: Vec<Watched>) -> PrimarySampler {
        let state = Arc::new(Mutex::new(SamplerState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut answers = Vec::new();
                for s in &sites {
                    let targets = s.sidecars();
                    answers.push((s.name.clone(), site_status(&targets).await));
                }
                let mut g = st.lock().unwrap_or_else(|p| p.into_inner());
                record_sample(&mut g, &answers, Instant::now());
            }
        });
        PrimarySampler { state, task }
    }

    pub fn stats(&self) -> PrimaryStats {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stats
            .clone()
    }

    /// The last sample's status of `site` (None before the first sample).
    pub fn last(&self, site: &str) -> Option<u16> {
        self.stats()
            .last
            .iter()
            .find(|(s, _)| s == site)
            .map(|(_, c)| *c)
    }

    /// Waits until the sampler has seen `site` answer 200 (`want_200`) or anything else.
    pub async fn wait(&self, site: &str, want_200: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.last(site).is_some_and(|c| (c == 200) == want_200) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }
}

impl Drop for PrimarySampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// 200 when one sidecar answered 200, else the first answer seen (0: none answered).
async fn site_status(targets: &[(String, SocketAddr)]) -> u16 {
    let mut seen = 0;
    for (_, addr) in targets {
        match tokio::time::timeout(SAMPLE_TIMEOUT, gslb::http_status(*addr, "/primary")).await {
            Ok(Ok(200)) => return 200,
            Ok(Ok(code)) if seen == 0 => seen = code,
            _ => {}
        }
    }
    seen
}

/// Adds one sample (each site's status) to the counts.
fn record_sample(g: &mut SamplerState, answers: &[(String, u16)], at: Instant) {
    let s = &mut g.stats;
    s.samples += 1;
    for (site, code) in answers {
        match s.per_site.iter_mut().find(|(n, _)| n == site) {
            Some((_, n)) => *n += u64::from(*code == 200),
            None => s.per_site.push((site.clone(), u64::from(*code == 200))),
        }
        match s.last.iter_mut().find(|(n, _)| n == site) {
            Some((_, c)) => *c = *code,
            None => s.last.push((site.clone(), *code)),
        }
    }
    let both = answers.len() >= 2 && answers.iter().all(|(_, c)| *c == 200);
    if both {
        s.both += 1;
        g.run += 1;
        let since = *g.run_since.get_or_insert(at);
        if g.run > g.stats.longest_both {
            g.stats.longest_both = g.run;
            g.stats.longest_both_for = at.saturating_duration_since(since) + SAMPLE_EVERY;
        }
    } else {
        g.run = 0;
        g.run_since = None;
    }
}

/// One acknowledged commit: its id, the site whose primary Service acknowledged it, when.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub id: i64,
    pub site: String,
    pub at: Instant,
}

/// Pause between two commits of one writer.
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// Budget of one connection attempt or one commit: an unanswered commit is not acknowledged.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// First id of each writer: far apart, so a row says which site's writer made it.
const IDS_PER_SITE: i64 = 100_000_000;

/// One writer per site, each committing a row every [`WRITE_EVERY`] through its site's primary
/// Service (as the application on that site would) and recording every acknowledged commit.
/// The ids of site `k` (in the order given) start at `base + k * 100 000 000`, so writers started
/// one after the other on the same pair need bases 1 000 000 000 apart.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    /// Per site: whether its writer is paused (its clients cut off).
    paused: Vec<(String, Arc<AtomicBool>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// The table must exist (created on the primary before).
    pub fn start(sites: Vec<Watched>, password: &str, base: i64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let mut paused = Vec::new();
        let mut tasks = Vec::new();
        for (k, site) in sites.into_iter().enumerate() {
            let pause = Arc::new(AtomicBool::new(false));
            paused.push((site.name.clone(), pause.clone()));
            let (stop, acks, password) = (stop.clone(), acks.clone(), password.to_string());
            tasks.push(tokio::spawn(async move {
                let mut id = base + k as i64 * IDS_PER_SITE;
                let mut conn: Option<(SocketAddr, Db)> = None;
                while !stop.load(Ordering::Relaxed) {
                    if pause.load(Ordering::Relaxed) {
                        conn = None;
                        tokio::time::sleep(WRITE_EVERY).await;
                        continue;
                    }
                    let addr = site.primary_service();
                    // The Service may move (re-created): reconnect to where it is now.
                    if conn.as_ref().map(|c| Some(c.0)) != Some(addr) {
                        conn = None;
                    }
                    if conn.is_none()
                        && let Some(a) = addr
                    {
                        conn = Db::connect(a, &password, WRITE_TIMEOUT)
                            .await
                            .ok()
                            .map(|db| (a, db));
                    }
                    if let Some((_, db)) = &conn {
                        // A fresh id per attempt: an unanswered attempt may still have committed.
                        id += 1;
                        match tokio::time::timeout(WRITE_TIMEOUT, db.insert(id, &site.name)).await {
                            Ok(Ok(())) => {
                                acks.lock().unwrap_or_else(|p| p.into_inner()).push(Ack {
                                    id,
                                    site: site.name.clone(),
                                    at: Instant::now(),
                                })
                            }
                            _ => conn = None,
                        }
                    }
                    tokio::time::sleep(WRITE_EVERY).await;
                }
            }));
        }
        Writers {
            stop,
            acks,
            paused,
            tasks,
        }
    }

    /// Cuts (or restores) a site's clients: its writer stops committing while paused.
    pub fn pause(&self, site: &str, paused: bool) {
        for (s, p) in &self.paused {
            if s == site {
                p.store(paused, Ordering::Relaxed);
            }
        }
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Commits acknowledged by `site` after `since`.
    pub fn acked_since(&self, site: &str, since: Instant) -> usize {
        self.acks()
            .iter()
            .filter(|a| a.site == site && a.at > since)
            .count()
    }

    /// Waits until `site` acknowledged a commit after `since`.
    pub async fn wait_ack(&self, site: &str, since: Instant, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.acked_since(site, since) == 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    pub async fn stop(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        self.acks()
    }
}

/// Pause between two reads of one reader.
const READ_EVERY: Duration = Duration::from_millis(1000);

/// One reader per site, reading every row id through its site's primary Service (as a client of
/// that site would) and recording what it saw: a row read and later lost without a divergence
/// record is a violation of its own (a client acted on it).
pub struct Readers {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<String, BTreeSet<i64>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    pub fn start(sites: Vec<Watched>, password: &str) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<BTreeMap<String, BTreeSet<i64>>>> = Arc::default();
        let tasks = sites
            .into_iter()
            .map(|site| {
                let (stop, seen, password) = (stop.clone(), seen.clone(), password.to_string());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(addr) = site.primary_service()
                            && let Ok(db) = Db::connect(addr, &password, WRITE_TIMEOUT).await
                            && let Ok(Ok(ids)) =
                                tokio::time::timeout(WRITE_TIMEOUT * 3, db.ids()).await
                        {
                            seen.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .entry(site.name.clone())
                                .or_default()
                                .extend(ids);
                        }
                        tokio::time::sleep(READ_EVERY).await;
                    }
                })
            })
            .collect();
        Readers { stop, seen, tasks }
    }

    /// Stops reading; per site, every id read.
    pub async fn stop(mut self) -> BTreeMap<String, BTreeSet<i64>> {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Two commits of one site further apart than this are two separate stretches of acknowledging
/// (the writers commit every 50 ms; a second without a commit means the site stopped).
pub const ACK_STRETCH_GAP: Duration = Duration::from_secs(1);

/// Split brain: the total time during which every site was acknowledging writes. A site is
/// acknowledging from a commit to the next one if they are at most `gap` apart.
pub fn split_brain(acks: &[Ack], sites: &[&str], gap: Duration) -> Duration {
    let stretches: Vec<Vec<(Instant, Instant)>> = sites
        .iter()
        .map(|s| {
            let mut times: Vec<Instant> =
                acks.iter().filter(|a| a.site == *s).map(|a| a.at).collect();
            times.sort();
            let mut out: Vec<(Instant, Instant)> = Vec::new();
            for t in times {
                match out.last_mut() {
                    Some((_, end)) if t.saturating_duration_since(*end) <= gap => *end = t,
                    _ => out.push((t, t)),
                }
            }
            out
        })
        .collect();
    if stretches.len() < 2 {
        return Duration::ZERO;
    }
    // Intersect the stretch lists pairwise, left to right.
    let mut common = stretches[0].clone();
    for other in &stretches[1..] {
        let mut next = Vec::new();
        for (a0, a1) in &common {
            for (b0, b1) in other {
                let (s, e) = ((*a0).max(*b0), (*a1).min(*b1));
                if s < e {
                    next.push((s, e));
                }
            }
        }
        common = next;
    }
    common
        .iter()
        .map(|(s, e)| e.saturating_duration_since(*s))
        .sum()
}

/// Ids acknowledged by `site` that are missing from `have`.
pub fn lost(acks: &[Ack], site: &str, have: &BTreeSet<i64>) -> Vec<i64> {
    acks.iter()
        .filter(|a| a.site == site && !have.contains(&a.id))
        .map(|a| a.id)
        .collect()
}

/// A site's Patroni dynamic config (the `config` annotation of `<scope>-config`).
pub fn dynamic_config(site: &Site) -> Option<Value> {
    let cm = site.get(api::CONFIGMAPS, &format!("{RELEASE}-config"))?;
    serde_json::from_str(obj::str_at(&cm, "/metadata/annotations/config")?).ok()
}

/// The site's fence marker (`pgdr_fence` in its dynamic config), if it is fenced.
pub fn fence(site: &Site) -> Option<Value> {
    dynamic_config(site)
        .and_then(|c| c.get("pgdr_fence").cloned())
        .filter(|f| !f.is_null())
}

/// The failover agent's state on a site (`<fullname>-failover-state`, key `state`).
pub fn agent_state(site: &Site) -> Option<Value> {
    let cm = site.get(api::CONFIGMAPS, &format!("{RELEASE}-failover-state"))?;
    serde_json::from_str(obj::str_at(&cm, "/data/state")?).ok()
}

/// core/v1 Events (what pgdr-core records).
const EVENTS: api::Kind = api::Kind {
    base: "api/v1",
    plural: "events",
};

/// Events of the site's namespace with this reason: (type, message).
pub fn events(site: &Site, reason: &str) -> Vec<(String, String)> {
    site.api()
        .list(EVENTS, Some(site.namespace()))
        .unwrap_or_default()
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The first number found under `key` anywhere in `v` (the agent state's layout is the agent's).
pub fn find_u64(v: &Value, key: &str) -> Option<u64> {
    match v {
        Value::Object(m) => m
            .get(key)
            .and_then(Value::as_u64)
            .or_else(|| m.values().find_map(|x| find_u64(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_u64(x, key)),
        _ => None,
    }
}

/// The agent state's issue-12 records (`split_brain_since`, `fenced_at`, `fence_reason`,
/// `rejoined_at`, `reclone_required_at`, `recloned_at`) found anywhere in it, rendered; absent ones are left out.
pub fn agent_records(site: &Site) -> Vec<(&'static str, String)> {
    fn find<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
        match v {
            Value::Object(m) => m
                .get(key)
                .filter(|x| !x.is_null())
                .or_else(|| m.values().find_map(|x| find(x, key))),
            Value::Array(a) => a.iter().find_map(|x| find(x, key)),
            _ => None,
        }
    }
    let Some(state) = agent_state(site) else {
        return Vec::new();
    };
    [
        "split_brain_since",
        "fenced_at",
        "fence_reason",
        "rejoined_at",
        "reclone_required_at",
        "recloned_at",
    ]
    .into_iter()
    .filter_map(|k| {
        find(&state, k).map(|v| (k, v.as_str().map_or_else(|| v.to_string(), String::from)))
    })
    .collect()
}

/// One line about what a site recorded: its agent's issue-12 records and its `SplitBrain`,
/// `Diverged` Events.
pub fn records_line(site: &Site) -> String {
    let records = agent_records(site)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "{}: state [{records}], SplitBrain Events {}, Diverged Events {}",
        site.name(),
        events(site, "SplitBrain").len(),
        events(site, "Diverged").len()
    )
}

/// `GET /status` of a readiness sidecar, as JSON.
pub async fn sidecar_status(addr: SocketAddr) -> Option<Value> {
    let body = tokio::time::timeout(Duration::from_secs(2), gslb::http_get(addr, "/status"))
        .await
        .ok()?
        .ok()?;
    serde_json::from_str(&body).ok()
}

/// What a site reported about the WAL it discarded when it rejoined.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Divergence {
    /// Bytes between the fork and the site's last WAL position, from the first source that has
    /// them: the fence marker, the agent's state, a sidecar's `/status`, a `MANIFEST.json`.
    pub bytes: Option<u64>,
    /// Where the figure came from.
    pub source: String,
    /// A sidecar reported `divergence.state: preserved`, or a `MANIFEST.json` lists no missing
    /// segment.
    pub preserved: bool,
    /// `Diverged` Warning Events on the site.
    pub events: usize,
    /// The preserved WAL's folders (`<volume>/pgroot/pgdr-diverged/*`).
    pub dirs: Vec<std::path::PathBuf>,
}

/// Reads what `site` reported about its divergence: fence marker, agent state, `Diverged` Events,
/// the sidecars' `/status` and the `MANIFEST.json` files on the members' volumes.
pub async fn divergence(site: &Site) -> Divergence {
    let mut d = Divergence {
        events: events(site, "Diverged").len(),
        ..Divergence::default()
    };
    if let Some(b) = fence(site).and_then(|f| f["diverged_bytes"].as_u64()) {
        d.bytes = Some(b);
        d.source = "pgdr_fence.diverged_bytes".into();
    }
    if d.bytes.is_none()
        && let Some(b) = agent_state(site).and_then(|s| find_u64(&s, "diverged_bytes"))
    {
        d.bytes = Some(b);
        d.source = "failover state".into();
    }
    for (_, addr) in gslb::members(site.api(), site.namespace()) {
        let Some(st) = sidecar_status(addr).await else {
            continue;
        };
        let div = &st["divergence"];
        if div["state"] == "preserved" {
            d.preserved = true;
        }
        if d.bytes.is_none()
            && let Some(b) = div["bytes"].as_u64()
        {
            d.bytes = Some(b);
            d.source = "sidecar /status".into();
        }
    }
    for root in diverged_roots(site) {
        for dir in std::fs::read_dir(root).into_iter().flatten().flatten() {
            // Only the preserved WAL's folders (a re-clone's receipt and moved data aside).
            if !dir.path().is_dir() || dir.file_name().to_string_lossy().starts_with("reclone-") {
                continue;
            }
            let manifest = std::fs::read_to_string(dir.path().join("MANIFEST.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            if let Some(m) = manifest {
                if m["missing"].as_array().is_some_and(Vec::is_empty) {
                    d.preserved = true;
                }
                if d.bytes.is_none()
                    && let Some(b) = m["bytes"].as_u64()
                {
                    d.bytes = Some(b);
                    d.source = "MANIFEST.json".into();
                }
            }
            d.dirs.push(dir.path());
        }
    }
    d
}

/// The drill's row ids (written with one of `labels`) in the WAL `site` keeps aside: every
/// preserved divergence folder (`pgdr-diverged/<timeline>-<lsn>/`) and the `pg_wal` of a data
/// directory a re-clone moved aside and kept (`pgdr-diverged/reclone-*/data/pg_wal`).
pub fn preserved_row_ids(site: &Site, labels: &[&str]) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    for root in diverged_roots(site) {
        for dir in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let path = dir.path();
            if !path.is_dir() {
                continue;
            }
            let folder = if dir.file_name().to_string_lossy().starts_with("reclone-") {
                path.join("data").join("pg_wal")
            } else {
                path
            };
            ids.extend(crate::walscan::ids_in_folder(&folder, labels));
        }
    }
    ids
}

/// The `pgdr-diverged` folders on the members' volumes: next to the data directory
/// (`<volume>/pgroot/pgdr-diverged`).
fn diverged_roots(site: &Site) -> Vec<std::path::PathBuf> {
    let pvc = site.dir().join("pvc").join(site.namespace());
    std::fs::read_dir(&pvc)
        .into_iter()
        .flatten()
        .flatten()
        .map(|claim| claim.path().join("pgroot").join("pgdr-diverged"))
        .filter(|p| p.is_dir())
        .collect()
}

/// The re-clone receipts (`pgdr-diverged/reclone-*.json`) on the members' volumes of `site`.
pub fn reclone_receipts(site: &Site) -> Vec<Value> {
    let mut out = Vec::new();
    for root in diverged_roots(site) {
        for f in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.starts_with("reclone-")
                && name.ends_with(".json")
                && let Some(v) = std::fs::read_to_string(f.path())
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
            {
                out.push(v);
            }
        }
    }
    out
}

/// One scenario's figures, printed as the issue's table line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub scenario: String,
    pub split_brain: Duration,
    pub both_primary_samples: u64,
    pub acked_lost: usize,
    pub discarded_bytes: Option<u64>,
    pub preserved: bool,
    pub rejoin: Option<Duration>,
    /// Commits the old primary acknowledged after the other site was promoted.
    pub isolated_writes: usize,
}

impl Figures {
    /// `FIGURES scenario=… split_brain_s=… both_primary_samples=… acked_lost=… discarded_bytes=…
    /// preserved=yes|no rejoin_s=… isolated_writes=…` (`-`: not measured / not reported).
    pub fn line(&self) -> String {
        format!(
            "FIGURES scenario={} split_brain_s={:.1} both_primary_samples={} acked_lost={} discarded_bytes={} preserved={} rejoin_s={} isolated_writes={}",
            self.scenario,
            self.split_brain.as_secs_f64(),
            self.both_primary_samples,
            self.acked_lost,
            self.discarded_bytes
                .map_or("-".to_string(), |b| b.to_string()),
            if self.preserved { "yes" } else { "no" },
            self.rejoin
                .map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64())),
            self.isolated_writes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(id: i64, site: &str, at: Instant) -> Ack {
        Ack {
            id,
            site: site.into(),
            at,
        }
    }

    #[test]
    fn split_brain_is_the_overlap_of_acknowledging_stretches() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let gap = Duration::from_secs(1);
        // Gold acknowledges 0..3000 ms, GoldDR from 2000 ms on: 1 s of both.
        let mut acks: Vec<Ack> = (0..=30)
            .map(|i| ack(i, "gold", at(i as u64 * 100)))
            .collect();
        acks.extend((0..=30).map(|i| ack(1000 + i, "golddr", at(2000 + i as u64 * 100))));
        let sb = split_brain(&acks, &["gold", "golddr"], gap);
        assert_eq!(sb, Duration::from_millis(1000));
        // A site that stopped (gap > 1 s) does not count in between.
        let acks = vec![
            ack(1, "gold", at(0)),
            ack(2, "gold", at(5000)),
            ack(3, "golddr", at(2000)),
            ack(4, "golddr", at(2500)),
        ];
        assert_eq!(split_brain(&acks, &["gold", "golddr"], gap), Duration::ZERO);
        // One site only: no split brain.
        assert_eq!(split_brain(&acks, &["gold"], gap), Duration::ZERO);
    }

    #[test]
    fn lost_counts_only_the_named_site() {
        let t = Instant::now();
        let acks = vec![ack(1, "gold", t), ack(2, "golddr", t), ack(3, "golddr", t)];
        let have = BTreeSet::from([1, 2]);
        assert_eq!(lost(&acks, "golddr", &have), vec![3]);
        assert!(lost(&acks, "gold", &have).is_empty());
    }

    #[test]
    fn sampler_counts_both_and_the_longest_stretch() {
        let mut g = SamplerState::default();
        let t0 = Instant::now();
        let s = |a: u16, b: u16| vec![("gold".to_string(), a), ("golddr".to_string(), b)];
        let seq = [
            (200, 503),
            (200, 200),
            (200, 200),
            (200, 200),
            (503, 200),
            (200, 200),
        ];
        for (i, (a, b)) in seq.iter().enumerate() {
            record_sample(&mut g, &s(*a, *b), t0 + SAMPLE_EVERY * i as u32);
        }
        assert_eq!(g.stats.samples, 6);
        assert_eq!(g.stats.both, 4);
        assert_eq!(g.stats.longest_both, 3);
        assert_eq!(g.stats.longest_both_for, SAMPLE_EVERY * 3);
        assert_eq!(
            g.stats.per_site,
            vec![("gold".to_string(), 5), ("golddr".to_string(), 5)]
        );
        assert_eq!(
            g.stats.last,
            vec![("gold".to_string(), 200), ("golddr".to_string(), 200)]
        );
    }

    #[test]
    fn find_u64_searches_nested_objects() {
        let v = serde_json::json!({"a": {"divergence": {"diverged_bytes": 42}}, "b": [1]});
        assert_eq!(find_u64(&v, "diverged_bytes"), Some(42));
        assert_eq!(find_u64(&v, "missing"), None);
    }

    #[test]
    fn figures_line_has_the_issue_fields() {
        let f = Figures {
            scenario: "a".into(),
            split_brain: Duration::from_millis(1500),
            both_primary_samples: 0,
            acked_lost: 0,
            discarded_bytes: Some(0),
            preserved: false,
            rejoin: Some(Duration::from_secs(12)),
            isolated_writes: 3,
        };
        assert_eq!(
            f.line(),
            "FIGURES scenario=a split_brain_s=1.5 both_primary_samples=0 acked_lost=0 discarded_bytes=0 preserved=no rejoin_s=12.0 isolated_writes=3"
        );
    }
}
