//! Both sites with the chart installed, Gold primary and GoldDR following it: the starting point of
//! the rehearsal, the fault scenarios and the benchmark.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgdr_minicluster::api::{self, obj};
use pgdr_minicluster::{ControllerTimings, CronTiming, Site, SiteConfig};
use serde_json::Value;

use crate::chart::{self, Chart, RELEASE};
use crate::db::Db;
use crate::error::{DrillError, Result};
use crate::gslb::Gslb;
use crate::images::{self, RESTRICTED_V2_FS_GROUP};
use crate::options::{Options, target_dir};
use crate::platform::Platform;
use crate::timeline::Timeline;

/// Patroni pod 0 of a site (the only member with the drill overlay's one member per site; see
/// [`Stage::leader`] with `--members 2`).
pub fn member(site: &Site) -> String {
    format!("{RELEASE}-{}-0", site.name())
}

const CONNECT: Duration = Duration::from_secs(3);

/// The running pair: both sites and the platform between them, with the chart installed once
/// [`Stage::up_both`] returns. Dropping it kills everything (SIGKILL) and removes the sites' folders.
pub struct Stage {
    /// None once the primary site has been killed.
    pub gold: Option<Site>,
    pub golddr: Site,
    pub platform: Platform,
    pub chart: Chart,
    pub timeline: Timeline,
    /// The drill's log file, if any: every pod's logs are appended to it before a site's folder
    /// goes away (kill, shutdown), so the file holds the whole story.
    pub log_file: Option<PathBuf>,
    password: String,
    golddr_secrets: Vec<(String, Vec<(String, String)>)>,
    gold_secrets: Vec<(String, Vec<(String, String)>)>,
    /// `--set` values GoldDR was installed with; every later upgrade repeats them.
    golddr_sets: Vec<String>,
    /// `--set` values Gold was installed with.
    gold_sets: Vec<String>,
}

impl Stage {
    /// Starts `gold` (ClusterIPs 127.96/16) and `golddr` (127.97/16) with the project's images and
    /// the platform between them; nothing installed yet. `PGDR_DRILL_IP_BASE` moves both prefixes
    /// (e.g. `100` → 127.100/16 and 127.101/16) so that two drills can run on one machine.
    pub async fn start(o: &Options, live: bool) -> Result<Stage> {
        let mut timeline = Timeline::new(live);
        let chart = Chart::locate()?;
        let tools = pgdr_patroni_harness::Tools::locate()?;
        // The chart's default PostgreSQL bin dir inside the image.
        let images = images::project(&target_dir(), &tools, "/usr/lib/postgresql/18/bin");
        let cfg = |name: &str, prefix: [u8; 2]| {
            let mut c = SiteConfig::new(name, &o.namespace, prefix, images.clone());
            c.dir = o.dir.clone();
            // The platform is OpenShift: restricted-v2 gives the chart's pods an fsGroup.
            c.default_fs_group = Some(RESTRICTED_V2_FS_GROUP);
            // RBAC as the platform enforces it: each pod calls as its ServiceAccount; helm, kubectl
            // and the drill itself as the admin.
            c.rbac = true;
            if let Some(s) = o.cron_every {
                c.controllers = ControllerTimings {
                    cron: CronTiming::Every(Duration::from_secs(s)),
                    ..ControllerTimings::default()
                };
            }
            c
        };
        let base = ip_base()?;
        let gold = Site::start(cfg("gold", [127, base])).await?;
        let golddr = Site::start(cfg("golddr", [127, base + 1])).await?;
        let platform = Platform::start(&gold, &golddr).await?;
        timeline.mark(format!(
            "sites started: gold API {} / golddr API {}",
            gold.url(),
            golddr.url()
        ));
        Ok(Stage {
            gold: Some(gold),
            golddr,
            platform,
            chart,
            timeline,
            log_file: o.log_file.clone(),
            golddr_secrets: o.golddr_secrets.clone(),
            gold_secrets: o.gold_secrets.clone(),
            golddr_sets: Vec::new(),
            gold_sets: Vec::new(),
            password: String::new(),
        })
    }

    /// Starts both sites, installs Gold (waiting for its workloads), copies the credentials, installs
    /// GoldDR (helm waits for the port-patch hook), and waits until Gold is a writable primary and
    /// GoldDR's standby leader streams from it. `gold_sets` / `golddr_sets` are extra `--set`
    /// values (the agent runs on both sites and `auto` needs a witness on each: see
    /// [`Stage::up_with_gslb`]); `o.gold_secrets` are created on Gold before its install.
    pub async fn up_both(
        o: &Options,
        gold_sets: &[String],
        golddr_sets: &[String],
        live: bool,
    ) -> Result<Stage> {
        // The images run these; a missing one would only show as pods that never start.
        for bin in ["pgdr-port-patch", "pgdr-failover", "pgdr-readiness"] {
            let p = target_dir().join(bin);
            if !p.is_file() {
                return Err(DrillError::Path {
                    path: p,
                    reason: "not built: run `cargo build -p pgdr-port-patch -p pgdr-failover -p pgdr-readiness`".into(),
                });
            }
        }
        let mut stage = Stage::start(o, live).await?;
        stage.golddr_sets = golddr_sets.to_vec();
        stage.gold_sets = gold_sets.to_vec();
        // The sidecar's peer check goes through the tunnel Service, whose address the drill's
        // platform fixes (no cluster DNS here).
        let peer_host = |site: &Site| {
            format!(
                "readiness.peerCheck.host={}",
                crate::platform::tunnel_service_ip(site.node_ip(), 0)
            )
        };
        stage.gold_sets.push(peer_host(stage.gold()?));
        stage.golddr_sets.push(peer_host(&stage.golddr));
        if let Some(n) = o.members {
            // Both sites run what production runs (the chart's default is 2).
            for sets in [&mut stage.gold_sets, &mut stage.golddr_sets] {
                sets.push(format!("patroni.replicas={n}"));
            }
        }
        match stage.install().await {
            Ok(()) => Ok(stage),
            Err(e) => {
                stage.timeline.fail(&e.to_string());
                eprintln!("{}", stage.diagnostics());
                Err(e)
            }
        }
    }

    /// Both sites with the emulated GSLB as each site's witness (the agent runs on both, and
    /// `auto` needs a witness), each site watched by it; `gold_sets` / `golddr_sets` come after
    /// the witness values.
    pub async fn up_with_gslb(
        o: &Options,
        gslb: &Gslb,
        gold_sets: &[String],
        golddr_sets: &[String],
        live: bool,
    ) -> Result<Stage> {
        let mut o = o.clone();
        let (mut gold, mut golddr) = gslb.wire_both(&mut o);
        gold.extend_from_slice(gold_sets);
        golddr.extend_from_slice(golddr_sets);
        let stage = Stage::up_both(&o, &gold, &golddr, live).await?;
        if let Some(g) = &stage.gold {
            gslb.watch(g);
        }
        gslb.watch(&stage.golddr);
        Ok(stage)
    }

    async fn install(&mut self) -> Result<()> {
        let long = Duration::from_secs(180);
        let gold = self.gold.as_ref().ok_or_else(killed)?;
        create_secrets(gold, &self.gold_secrets)?;
        self.chart
            .upgrade(gold, "values-gold.yaml", &self.gold_sets, true, long)
            .await?;
        self.timeline.mark(
            "gold: helm upgrade --install (values-gold.yaml + values-drill.yaml) --wait done",
        );
        self.password = superuser_password(gold)?;
        self.chart
            .copy_credentials(gold, &format!("{RELEASE}-credentials"), &self.golddr)
            .await?;
        self.timeline
            .mark("credentials copied gold -> golddr (README command)");
        create_secrets(&self.golddr, &self.golddr_secrets)?;
        for (name, _) in &self.golddr_secrets {
            self.timeline.mark(format!("golddr: Secret {name} created"));
        }
        self.chart
            .upgrade(
                &self.golddr,
                "values-golddr.yaml",
                &self.golddr_sets,
                false,
                long,
            )
            .await?;
        self.timeline.mark(
            "golddr: helm upgrade --install (values-golddr.yaml + values-drill.yaml) done, port-patch hook completed",
        );
        self.wait_writable(self.gold()?, Duration::from_secs(60))
            .await?;
        self.timeline
            .mark("gold: leader is a writable primary (through the primary Service)");
        self.wait_streaming(Duration::from_secs(120)).await?;
        self.timeline
            .mark("golddr: standby leader streaming from gold through the tunnel");
        Ok(())
    }

    pub fn gold(&self) -> Result<&Site> {
        self.gold.as_ref().ok_or_else(killed)
    }

    /// ClusterIP:port of a site's primary Service (selects the writable leader).
    pub fn primary_service(site: &Site) -> Option<SocketAddr> {
        let svc = site.get(api::SERVICES, RELEASE)?;
        let ip = obj::str_at(&svc, "/spec/clusterIP")?.parse().ok()?;
        let port = svc.pointer("/spec/ports/0/port")?.as_u64()? as u16;
        Some(SocketAddr::new(ip, port))
    }

    /// The Patroni member's own address (pod IP, PostgreSQL port).
    pub fn member_addr(site: &Site) -> Option<SocketAddr> {
        let pod = site.get(api::PODS, &member(site))?;
        let ip = obj::str_at(&pod, "/status/podIP")?.parse().ok()?;
        Some(SocketAddr::new(ip, 5432))
    }

    /// Patroni's role label on a site's member (`primary`, `standby-leader`, ...).
    pub fn role(site: &Site) -> Option<String> {
        site.get(api::PODS, &member(site))
            .and_then(|p| obj::str_at(&p, "/metadata/labels/role").map(String::from))
    }

    /// The superuser password (for a caller's own connections; never print it).
    pub fn password(&self) -> &str {
        &self.password
    }

    pub async fn connect(&self, addr: SocketAddr) -> Result<Db> {
        Db::connect(addr, &self.password, CONNECT).await
    }

    /// Connects through a site's primary Service once it leads to a writable primary.
    pub async fn wait_writable(&self, site: &Site, timeout: Duration) -> Result<Db> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no primary Service yet");
        loop {
            if let Some(addr) = Self::primary_service(site) {
                match self.connect(addr).await {
                    Ok(db) => match db.writable().await {
                        Ok(true) => return Ok(db),
                        Ok(false) => last = format!("{addr} answers but is read-only"),
                        Err(e) => last = e.to_string(),
                    },
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() >= deadline {
                return Err(DrillError::Timeout {
                    what: format!(
                        "a writable primary behind site {}'s primary Service (last: {last})",
                        site.name()
                    ),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The site's Patroni leader pod (role label `primary` or `standby-leader`), if one is labelled.
    pub fn leader(site: &Site) -> Option<String> {
        let pods = site.api().list(api::PODS, Some(site.namespace())).ok()?;
        pods.iter()
            .filter(|p| {
                matches!(
                    obj::str_at(p, "/metadata/labels/role"),
                    Some("primary" | "standby-leader")
                ) && !obj::terminating(p)
            })
            .filter_map(|p| obj::str_at(p, "/metadata/name").map(String::from))
            .min()
    }

    /// The leader's address (pod IP, PostgreSQL port); with no labelled leader, member 0's.
    pub fn leader_addr(site: &Site) -> Option<SocketAddr> {
        let pod = site.get(
            api::PODS,
            &Self::leader(site).unwrap_or_else(|| member(site)),
        )?;
        let ip = obj::str_at(&pod, "/status/podIP")?.parse().ok()?;
        Some(SocketAddr::new(ip, 5432))
    }

    /// Connects to GoldDR's leader directly (its primary Service has no endpoints while standby).
    pub async fn golddr_member(&self) -> Result<Db> {
        let addr = Self::leader_addr(&self.golddr).ok_or_else(|| DrillError::Site {
            site: "golddr".into(),
            reason: "member pod has no IP".into(),
        })?;
        self.connect(addr).await
    }

    /// Waits until GoldDR's WAL receiver is streaming.
    pub async fn wait_streaming(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.golddr_member().await {
                Ok(db) => match db.wal_receiver().await {
                    Ok(Some(s)) if s == "streaming" => return Ok(()),
                    Ok(s) => format!("WAL receiver: {s:?}"),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(DrillError::Timeout {
                    what: format!("golddr streaming from gold (last: {last})"),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until `site`'s failover agent's last sample was a healthy probe of its peer with a known
    /// replication lag. The agent promotes only from such a baseline: a loss staged before its first
    /// healthy sample is (rightly) blocked as "lag unknown", and one staged before the first healthy
    /// sample after a cut would join the cut's failure streak and look faster than it is.
    pub async fn wait_agent_baseline(&self, site: &Site, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = crate::fencing::agent_state(site);
            // The last sample was healthy (no open failure streak) and measured the lag.
            if state.as_ref().is_some_and(|s| {
                s["consecutive_failures"] == 0 && s["last_known_lag_bytes"].is_u64()
            }) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DrillError::Timeout {
                    what: format!(
                        "{}'s failover agent recording a healthy probe of its peer (state: {})",
                        site.name(),
                        state.map_or("none".into(), |s| s.to_string())
                    ),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every id in `ids` is visible on GoldDR's member.
    pub async fn wait_rows_on_golddr(&self, ids: &BTreeSet<i64>, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let missing = match self.golddr_member().await {
                Ok(db) => match db.ids().await {
                    Ok(have) => ids.difference(&have).count(),
                    Err(_) => ids.len(),
                },
                Err(_) => ids.len(),
            };
            if missing == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DrillError::Check(format!(
                    "{missing} of {} rows written on gold never appeared on golddr within {timeout:?}",
                    ids.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Writable primaries among every Patroni member of every live site (connecting to pods
    /// directly).
    pub async fn writable_members(&self) -> Vec<String> {
        let mut out = Vec::new();
        for site in self.gold.iter().chain(std::iter::once(&self.golddr)) {
            for (pod, addr) in members(site) {
                if let Ok(db) = self.connect(addr).await
                    && matches!(db.writable().await, Ok(true))
                {
                    out.push(pod);
                }
            }
        }
        out
    }

    /// Fails unless exactly `expected` is the one writable primary.
    pub async fn check_one_primary(&self, expected: &str) -> Result<()> {
        let w = self.writable_members().await;
        if w != [expected.to_string()] {
            return Err(DrillError::Check(format!(
                "expected exactly one writable primary ({expected}), found {w:?}"
            )));
        }
        Ok(())
    }

    /// GoldDR's dynamic config (the `config` annotation of `<scope>-config`).
    pub fn golddr_dynamic_config(&self) -> Option<Value> {
        let cm = self
            .golddr
            .get(api::CONFIGMAPS, &format!("{RELEASE}-config"))?;
        let text = obj::str_at(&cm, "/metadata/annotations/config")?;
        serde_json::from_str(text).ok()
    }

    /// Whether GoldDR's dynamic config still has `standby_cluster` (None: unreadable).
    pub fn golddr_is_standby_cluster(&self) -> Option<bool> {
        self.golddr_dynamic_config()
            .map(|c| c.get("standby_cluster").is_some_and(|s| !s.is_null()))
    }

    /// The primary site is lost: the tunnel is cut and every Gold process is SIGKILLed (its
    /// kubelet, kube-proxy connections and API server stop with it). Fails if any Gold process
    /// is still alive shortly after: a surviving postmaster would keep acknowledging commits that
    /// GoldDR can never have, and every measurement after this would be wrong.
    pub async fn kill_gold(&mut self) -> Result<()> {
        self.platform.cut();
        let Some(gold) = self.gold.take() else {
            return Ok(());
        };
        let dir = gold.dir().to_path_buf();
        self.save_pod_logs(&gold);
        drop(gold);
        // SIGKILL is delivered asynchronously: allow a moment before calling a process a survivor.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = pgdr_minicluster::procs::survivors_under(&dir);
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let list: Vec<String> = left
                    .iter()
                    .map(|pid| {
                        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                            .unwrap_or_default();
                        format!("{pid} {}", cmd.trim())
                    })
                    .collect();
                return Err(DrillError::Site {
                    site: "gold".into(),
                    reason: format!("processes survived the kill: {}", list.join("; ")),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A site loses power with its data ([`Site::power_off`]): every process SIGKILLed, its API
    /// server refusing connections, its objects and volumes kept. Fails if a process survived.
    pub async fn power_off(&mut self, name: &str) -> Result<()> {
        let site = self.site_mut(name)?;
        site.power_off();
        let dir = site.dir().to_path_buf();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = pgdr_minicluster::procs::survivors_under(&dir);
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(DrillError::Site {
                    site: name.into(),
                    reason: format!("processes survived the power loss: {left:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.timeline.mark(format!(
            "{name} POWERED OFF: every process SIGKILLed, API server refusing, data kept"
        ));
        Ok(())
    }

    /// Power comes back to a site ([`Site::power_on`]): its API server with its objects, its
    /// kubelet starting every pod again on the same volumes.
    pub fn power_on(&mut self, name: &str) -> Result<()> {
        self.site_mut(name)?.power_on()?;
        self.timeline.mark(format!(
            "{name} POWERED ON: API server and pods back with their data"
        ));
        Ok(())
    }

    /// A live (or powered-off) site by name.
    pub fn site(&self, name: &str) -> Result<&Site> {
        match name {
            "gold" => self.gold(),
            "golddr" => Ok(&self.golddr),
            other => Err(DrillError::Site {
                site: other.into(),
                reason: "no such site (gold, golddr)".into(),
            }),
        }
    }

    fn site_mut(&mut self, name: &str) -> Result<&mut Site> {
        match name {
            "gold" => self.gold.as_mut().ok_or_else(killed),
            "golddr" => Ok(&mut self.golddr),
            other => Err(DrillError::Site {
                site: other.into(),
                reason: "no such site (gold, golddr)".into(),
            }),
        }
    }

    /// Waits until `site`'s leader is a standby (read-only) whose WAL receiver is streaming.
    pub async fn wait_site_streaming(&self, site: &Site, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match Self::leader_addr(site) {
                Some(addr) => match self.connect(addr).await {
                    Ok(db) => match db.wal_receiver().await {
                        Ok(Some(s)) if s == "streaming" => return Ok(()),
                        Ok(s) => format!("WAL receiver: {s:?}"),
                        Err(e) => e.to_string(),
                    },
                    Err(e) => e.to_string(),
                },
                None => "no leader address".into(),
            };
            if Instant::now() >= deadline {
                return Err(DrillError::Timeout {
                    what: format!("{}'s leader streaming (last: {last})", site.name()),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every Patroni member of `site` has a streaming WAL receiver (a standby
    /// leader from the peer, its replicas from it).
    pub async fn wait_members_streaming(&self, site: &Site, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut last = Vec::new();
            for (name, addr) in members(site) {
                let state = match self.connect(addr).await {
                    Ok(db) => match db.wal_receiver().await {
                        Ok(Some(s)) if s == "streaming" => continue,
                        Ok(s) => format!("WAL receiver {s:?}"),
                        Err(e) => e.to_string(),
                    },
                    Err(e) => e.to_string(),
                };
                last.push(format!("{name}: {state}"));
            }
            if last.is_empty() && !members(site).is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DrillError::Timeout {
                    what: format!(
                        "every {} member streaming (last: {})",
                        site.name(),
                        last.join("; ")
                    ),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `helm upgrade` of GoldDR with its values and the `--set`s it was installed with (plus `sets`).
    /// `helm upgrade` of Gold with the values it was installed with (e.g. its witness), then
    /// `sets`; no `--wait` (Gold may be a standby now).
    pub async fn upgrade_gold(&self, sets: &[String]) -> Result<String> {
        let all: Vec<String> = self.gold_sets.iter().chain(sets).cloned().collect();
        self.chart
            .upgrade(
                self.gold()?,
                "values-gold.yaml",
                &all,
                false,
                Duration::from_secs(180),
            )
            .await
    }

    pub async fn upgrade_golddr(&self, sets: &[String]) -> Result<String> {
        // The values it was installed with (e.g. its witness), then the caller's.
        let all: Vec<String> = self.golddr_sets.iter().chain(sets).cloned().collect();
        self.chart
            .upgrade(
                &self.golddr,
                "values-golddr.yaml",
                &all,
                false,
                Duration::from_secs(180),
            )
            .await
    }

    /// Tails of the logs of every pod of every live site, for a failure report.
    pub fn diagnostics(&self) -> String {
        let mut out = match &self.log_file {
            Some(f) => format!(
                "---- tails of the pod logs (full logs: {}) ----\n",
                f.display()
            ),
            None => String::from("---- tails of the pod logs ----\n"),
        };
        for site in self.gold.iter().chain(std::iter::once(&self.golddr)) {
            let dir = site.dir().join("pods").join(site.namespace());
            let mut pods: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            pods.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
            // Every failover run is a pod: the last three say enough.
            let failover: Vec<&PathBuf> = pods
                .iter()
                .filter(|p| p.to_string_lossy().contains("-failover-"))
                .collect();
            let skip = failover.len().saturating_sub(3);
            for pod in pods.iter().filter(|p| !failover[..skip].contains(p)) {
                let logs = std::fs::read_dir(pod)
                    .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
                    .unwrap_or_default();
                for log in logs
                    .iter()
                    .filter(|l| l.extension().is_some_and(|e| e == "log"))
                {
                    out.push_str(&format!(
                        "== {} {} ==\n{}\n",
                        site.name(),
                        log.strip_prefix(&dir).unwrap_or(log).display(),
                        chart::tail(log, 25)
                    ));
                }
            }
        }
        out
    }

    /// Appends every container log of `site` to the drill's log file (if there is one).
    fn save_pod_logs(&self, site: &Site) {
        let Some(file) = &self.log_file else {
            return;
        };
        let mut out = String::new();
        let dir = site.dir().join("pods").join(site.namespace());
        let mut pods: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        pods.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        for pod in pods {
            let mut logs: Vec<PathBuf> = std::fs::read_dir(&pod)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            logs.retain(|l| l.extension().is_some_and(|e| e == "log"));
            logs.sort();
            for log in logs {
                out.push_str(&format!(
                    "\n==== {} {} ====\n{}",
                    site.name(),
                    log.strip_prefix(&dir).unwrap_or(&log).display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
        }
        if let Err(e) = append(file, &out) {
            eprintln!(
                "pgdr-drill: could not save pod logs to {}: {e}",
                file.display()
            );
        }
    }

    /// Stops both sites gracefully (their pod logs saved first).
    pub async fn shutdown(self) {
        if let Some(g) = &self.gold {
            self.save_pod_logs(g);
        }
        self.save_pod_logs(&self.golddr);
        let Stage {
            gold,
            golddr,
            platform,
            ..
        } = self;
        platform.stop().await;
        match gold {
            Some(g) => {
                tokio::join!(g.shutdown(), golddr.shutdown());
            }
            None => golddr.shutdown().await,
        }
    }
}

/// Every Patroni member of a site: (pod, address of PostgreSQL).
pub fn members(site: &Site) -> Vec<(String, SocketAddr)> {
    let mut out: Vec<(String, SocketAddr)> = site
        .api()
        .list(api::PODS, Some(site.namespace()))
        .unwrap_or_default()
        .iter()
        .filter(|p| {
            p.pointer("/metadata/labels/app.kubernetes.io~1component")
                == Some(&Value::from("patroni"))
        })
        .filter_map(|p| {
            let ip = obj::str_at(p, "/status/podIP")?.parse().ok()?;
            Some((
                obj::str_at(p, "/metadata/name")?.to_string(),
                SocketAddr::new(ip, 5432),
            ))
        })
        .collect();
    out.sort();
    out
}

/// The failover agent's log lines on a site (all runs so far, oldest first) that contain every
/// one of `needles`.
pub fn failover_lines(site: &Site, needles: &[&str]) -> Vec<String> {
    pod_logs(site, "failover")
        .iter()
        .flat_map(|(_, text)| text.lines())
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(String::from)
        .collect()
}

/// Container logs of a site's pods whose name contains `-<component>-`, oldest first.
pub fn pod_logs(site: &Site, component: &str) -> Vec<(String, String)> {
    let dir = site.dir().join("pods").join(site.namespace());
    let mut pods: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    pods.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(&format!("-{component}-")))
    });
    pods.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    pods.iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text =
                std::fs::read_to_string(p.join(format!("{component}.log"))).unwrap_or_default();
            (name, text)
        })
        .collect()
}

/// Creates Secrets (name → key → value) in a site's namespace, as a user does by hand.
fn create_secrets(site: &Site, secrets: &[(String, Vec<(String, String)>)]) -> Result<()> {
    for (name, entries) in secrets {
        let string_data: serde_json::Map<String, Value> = entries
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name}, "type": "Opaque", "stringData": string_data,
        });
        let ns = site.namespace();
        site.api().ensure_namespace(ns)?;
        site.api().create(api::SECRETS, ns, &secret)?;
    }
    Ok(())
}

fn killed() -> DrillError {
    DrillError::Site {
        site: "gold".into(),
        reason: "the site has been killed".into(),
    }
}

/// The superuser password from the primary site's generated Secret (never printed).
fn superuser_password(gold: &Site) -> Result<String> {
    use base64::Engine;
    let secret = gold
        .get(api::SECRETS, &format!("{RELEASE}-credentials"))
        .ok_or_else(|| DrillError::Site {
            site: "gold".into(),
            reason: "the chart did not create the credentials Secret".into(),
        })?;
    let b64 = obj::str_at(&secret, "/data/superuser-password").unwrap_or("");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| DrillError::Site {
            site: "gold".into(),
            reason: format!("credentials Secret: superuser-password is not base64: {e}"),
        })?;
    String::from_utf8(raw).map_err(|_| DrillError::Site {
        site: "gold".into(),
        reason: "credentials Secret: superuser-password is not UTF-8".into(),
    })
}

fn append(file: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?
        .write_all(text.as_bytes())
}

/// The second octet of Gold's ClusterIP prefix (GoldDR's is the next one): `PGDR_DRILL_IP_BASE`,
/// default 96.
fn ip_base() -> Result<u8> {
    match std::env::var("PGDR_DRILL_IP_BASE") {
        Err(_) => Ok(96),
        Ok(v) => v
            .parse::<u8>()
            .ok()
            .filter(|b| (2..=250).contains(b))
            .ok_or_else(|| DrillError::Path {
                path: PathBuf::from("PGDR_DRILL_IP_BASE"),
                reason: format!(
                    "{v:?} is not a number from 2 to 250 (the second octet of 127.x.0.0/16)"
                ),
            }),
    }
}
