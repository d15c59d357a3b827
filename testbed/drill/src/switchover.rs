//! `pgdr-drill rehearse --switchover`: the planned round trip gold → golddr → gold with the kubectl
//! plugin, run as a process the way a user runs it, under a writer committing every few
//! milliseconds through whichever site's primary Service answers.
//!
//! Per leg it measures the write unavailability (the longest gap between two acknowledged commits
//! while the leg ran) and the acknowledged commits missing on the new primary, and it reads the
//! timelines from `kubectl pgdr status -o json`. After the first leg that leaves GoldDR primary,
//! both sites get `helm upgrade` with their original values: no role may change. A leg can be
//! interrupted: the plugin is SIGKILLed right after it records a given step, the pair is checked
//! (never two writable primaries), then `kubectl pgdr switchover --resume` finishes the leg.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgdr_minicluster::Site;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::chart::RELEASE;
use crate::db::Db;
use crate::error::{DrillError, Result};
use crate::gslb::{Gslb, GslbConfig};
use crate::options::{Options, target_dir};
use crate::stage::{Stage, member};

/// The plugin's binary name (built into the workspace's `target/debug` by `make bins`).
pub const PLUGIN: &str = "kubectl-pgdr";
/// Pause between two commits of the writer.
const WRITE_EVERY: Duration = Duration::from_millis(5);
/// Bound on one connection attempt or one commit of the writer: a site that does not answer is
/// left for the other quickly, so the gaps measured are the pair's, not the writer's.
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest a plugin run may take before the drill gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// Passed to the plugin: each step may wait this long.
const STEP_TIMEOUT: &str = "120";
/// The target for the write unavailability of one leg at drill timings (reported).
pub const UNAVAILABILITY_TARGET: Duration = Duration::from_secs(10);
/// After the last leg: long enough for a few failover-agent runs (the drill fires them every 3 s).
const SETTLE: Duration = Duration::from_secs(10);
/// Longest the pair may take to look healthy to `kubectl pgdr status` after a leg.
const HEALTHY_WITHIN: Duration = Duration::from_secs(90);

/// One leg: the site to make primary, and optionally the step after which the plugin is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LegPlan {
    pub to: &'static str,
    pub kill_after: Option<&'static str>,
}

/// `rehearse --switchover`: there and back, uninterrupted.
pub const ROUND_TRIP: [LegPlan; 2] = [
    LegPlan {
        to: "golddr",
        kill_after: None,
    },
    LegPlan {
        to: "gold",
        kill_after: None,
    },
];

/// What one leg measured.
#[derive(Debug, Clone)]
pub struct LegReport {
    pub from: String,
    pub to: String,
    pub killed_after: Option<String>,
    /// The plugin's runs together (start of the first → end of the last).
    pub took: Duration,
    /// Longest gap between two acknowledged commits during the leg.
    pub unavailability: Duration,
    /// Commits acknowledged so far that the new primary does not have.
    pub lost: usize,
    pub timeline_before: Option<u64>,
    pub timeline_after: Option<u64>,
}

#[derive(Debug)]
pub struct Report {
    pub timeline: String,
    pub legs: Vec<LegReport>,
    /// Commits acknowledged during the whole run, and on which site.
    pub acknowledged: usize,
    pub acknowledged_on_golddr: usize,
    pub failures: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The table of the issue, then the verdict.
    pub fn render(&self, with_timeline: bool) -> String {
        let mut s = if with_timeline {
            format!("timeline:\n{}\n\n", self.timeline)
        } else {
            String::new()
        };
        s += "leg | write unavailability | acknowledged lost | timeline before/after | plugin took\n";
        let tl = |t: Option<u64>| t.map_or("?".to_string(), |t| t.to_string());
        for l in &self.legs {
            s += &format!(
                "{} -> {}{} | {:.1}s{} | {} | {} -> {} | {:.1}s\n",
                l.from,
                l.to,
                l.killed_after.as_ref().map_or(String::new(), |k| format!(
                    " (killed after step {k}, resumed)"
                )),
                l.unavailability.as_secs_f64(),
                if l.unavailability > UNAVAILABILITY_TARGET {
                    " (over the 10 s target)"
                } else {
                    ""
                },
                l.lost,
                tl(l.timeline_before),
                tl(l.timeline_after),
                l.took.as_secs_f64(),
            );
        }
        s += &format!(
            "commits acknowledged: {} ({} of them on golddr), one every ~{} ms when a primary answered\n",
            self.acknowledged,
            self.acknowledged_on_golddr,
            WRITE_EVERY.as_millis()
        );
        if self.passed() {
            s += "result: PASS\n";
        } else {
            s += &format!("result: FAIL\n  - {}\n", self.failures.join("\n  - "));
        }
        s
    }
}

/// The plugin's config file for the drill's two sites: each site its own API server, kubeconfig
/// and context (named after the site); no Service DNS, so the tunnel is named by ClusterIP.
pub fn plugin_config(gold: &Site, golddr: &Site) -> String {
    format!(
        "# kubectl pgdr: the drill's two sites (written by pgdr-drill; gone when it stops)\n\
         namespace: {ns}\n\
         fullname: {RELEASE}\n\
         # No Service DNS in the drill: standby_cluster names the tunnel Service by its ClusterIP\n\
         # (the drill's portPatch.hostMode).\n\
         tunnelHostMode: clusterIP\n\
         sites:\n  - name: {g}\n    context: {g}\n    kubeconfig: {gk}\n  - name: {d}\n    context: {d}\n    kubeconfig: {dk}\n",
        ns = gold.namespace(),
        g = gold.name(),
        gk = gold.kubeconfig().display(),
        d = golddr.name(),
        dk = golddr.kubeconfig().display(),
    )
}

/// One finished plugin run.
#[derive(Debug)]
pub struct Run {
    /// None: killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The step after which the drill killed it (None: it ended by itself).
    pub killed_after: Option<String>,
}

/// The plugin binary and the config file it is run with.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub bin: PathBuf,
    pub config: PathBuf,
}

impl Plugin {
    /// Writes the config file into Gold's site folder; fails when the binary is not built.
    pub fn for_sites(gold: &Site, golddr: &Site) -> Result<Plugin> {
        let bin = target_dir().join(PLUGIN);
        if !bin.is_file() {
            return Err(DrillError::Path {
                path: bin,
                reason: "not built: run `make bins` (or `cargo build -p kubectl-pgdr`)".into(),
            });
        }
        let config = gold.dir().join("kubectl-pgdr.yaml");
        std::fs::write(&config, plugin_config(gold, golddr))
            .map_err(|e| DrillError::io(format!("writing {}", config.display()), e))?;
        Ok(Plugin { bin, config })
    }

    /// The command a user types, with this config.
    pub fn command_line(&self, args: &str) -> String {
        format!(
            "KUBECTL_PGDR_CONFIG={} kubectl pgdr {args}",
            self.config.display()
        )
    }

    /// Runs `kubectl-pgdr --config FILE <args>`. With `kill_after`, the process is SIGKILLed as
    /// soon as it reports that it recorded that step (`step <name>: ...` on stderr).
    pub async fn run(&self, args: &[&str], kill_after: Option<&str>) -> Result<Run> {
        self.run_inner(args, kill_after, None).await
    }

    /// Runs it with `typed` on its standard input (a person typing a site's name to confirm).
    pub async fn run_typed(&self, args: &[&str], typed: &str) -> Result<Run> {
        self.run_inner(args, None, Some(typed)).await
    }

    async fn run_inner(
        &self,
        args: &[&str],
        kill_after: Option<&str>,
        typed: Option<&str>,
    ) -> Result<Run> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(if typed.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = format!("kubectl pgdr {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .map_err(|e| DrillError::io(format!("starting {what}"), e))?;
        if let (Some(text), Some(mut stdin)) = (typed, child.stdin.take()) {
            use tokio::io::AsyncWriteExt;
            stdin
                .write_all(format!("{text}\n").as_bytes())
                .await
                .map_err(|e| DrillError::io(format!("typing into {what}"), e))?;
        }
        let mut out = child.stdout.take();
        let out_task = tokio::spawn(async move {
            let mut s = String::new();
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_string(&mut s).await;
            }
            s
        });
        let mut stderr = String::new();
        let mut killed_after = None;
        if let Some(err) = child.stderr.take() {
            let marker = kill_after.map(|s| format!("step {s}:"));
            let mut lines = BufReader::new(err).lines();
            let deadline = tokio::time::sleep(RUN_TIMEOUT);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(l)) => {
                            // Lines read `[   0.4s] step demote: ...`.
                            let text = l.split_once("] ").map_or(l.as_str(), |(_, t)| t);
                            let hit = killed_after.is_none()
                                && marker.as_ref().is_some_and(|m| text.starts_with(m.as_str()));
                            stderr.push_str(&l);
                            stderr.push('\n');
                            if hit {
                                let _ = child.start_kill();
                                killed_after = kill_after.map(String::from);
                            }
                        }
                        _ => break,
                    },
                    _ = &mut deadline => {
                        let _ = child.start_kill();
                        return Err(DrillError::Timeout { what: format!("{what} (stderr so far:\n{stderr})"), waited: RUN_TIMEOUT });
                    }
                }
            }
        }
        let status = child
            .wait()
            .await
            .map_err(|e| DrillError::io(format!("waiting for {what}"), e))?;
        let stdout = out_task.await.unwrap_or_default();
        if status.code().is_some() {
            // It had finished on its own before the kill landed.
            killed_after = None;
        }
        tracing::info!(command = %what, code = ?status.code(), %stdout, %stderr, "kubectl pgdr");
        Ok(Run {
            code: status.code(),
            stdout,
            stderr,
            killed_after,
        })
    }

    /// `status -o json`: (exit code, report).
    pub async fn status(&self) -> Result<(Option<i32>, Value)> {
        let r = self.run(&["status", "-o", "json"], None).await?;
        let v = serde_json::from_str(&r.stdout).map_err(|e| {
            DrillError::Check(format!(
                "kubectl pgdr status -o json printed no JSON ({e}): {}{}",
                r.stdout, r.stderr
            ))
        })?;
        Ok((r.code, v))
    }

    /// Waits until `status` exits 0 with `primary` the primary and the other site its standby.
    pub async fn wait_healthy(&self, primary: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, v) = self.status().await?;
            let roles: Vec<(String, String)> = v["sites"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| {
                            (
                                s["name"].as_str().unwrap_or("").to_string(),
                                s["role"].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let right = roles.len() == 2
                && roles.iter().all(|(n, r)| {
                    (n == primary && r == "primary") || (n != primary && r == "standby")
                });
            if code == Some(0) && right {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(DrillError::Timeout {
                    what: format!(
                        "kubectl pgdr status: a healthy pair with {primary} primary (last: exit {code:?}, roles {roles:?}, problems {})",
                        v["problems"]
                    ),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// A site's leader timeline in a `status -o json` report.
fn timeline_of(status: &Value, site: &str) -> Option<u64> {
    status["sites"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == site)?
        .get("timeline")?
        .as_u64()
}

/// One acknowledged commit: id, site, when.
type Ack = (i64, &'static str, Instant);

/// A writer committing every few milliseconds through whichever primary Service answers (the one
/// that answered last first). A commit counts only once the server acknowledged it.
pub struct Writer {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub fn start(targets: [(&'static str, SocketAddr); 2], password: String) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acks.clone());
        let task = tokio::spawn(async move {
            let mut conns: [Option<Db>; 2] = [None, None];
            let mut prefer = 0;
            let mut id: i64 = 10_000_000;
            while !s.load(Ordering::Relaxed) {
                for k in 0..2 {
                    let i = (prefer + k) % 2;
                    let (site, addr) = targets[i];
                    if conns[i].is_none() {
                        conns[i] = Db::connect(addr, &password, WRITE_TIMEOUT).await.ok();
                    }
                    let Some(db) = &conns[i] else { continue };
                    // A fresh id per attempt: an attempt that timed out may still have committed.
                    id += 1;
                    match tokio::time::timeout(WRITE_TIMEOUT, db.insert(id, site)).await {
                        Ok(Ok(())) => {
                            a.lock().unwrap_or_else(|p| p.into_inner()).push((
                                id,
                                site,
                                Instant::now(),
                            ));
                            prefer = i;
                            break;
                        }
                        _ => conns[i] = None,
                    }
                }
                tokio::time::sleep(WRITE_EVERY).await;
            }
        });
        Writer { stop, acks, task }
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub async fn stop(mut self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = (&mut self.task).await;
        self.acks()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The longest gap between two acknowledged commits in `[from, to]` (the edges count: a leg
/// that ends before any commit on the new primary shows the whole wait).
fn longest_gap(acks: &[Ack], from: Instant, to: Instant) -> Duration {
    let mut times: Vec<Instant> = vec![from];
    times.extend(acks.iter().map(|a| a.2).filter(|t| *t >= from && *t <= to));
    times.push(to);
    times
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default()
}

/// Starts both sites, runs `legs`, stops everything. Errors are setup failures; a [`Report`]
/// with failures means the legs ran and something did not hold.
pub async fn rehearse(o: &Options, legs: &[LegPlan]) -> Result<Report> {
    // GoldDR's agent needs its witness (as in production); the holds keep it out of the legs.
    let gslb = Gslb::start(GslbConfig::drill(), &["gold", "golddr"]).await?;
    let mut stage = Stage::up_with_gslb(o, &gslb, &[], &[], true).await?;
    let result = run(&mut stage, legs).await;
    match &result {
        Ok(r) if r.passed() => {}
        Ok(_) => eprintln!("{}", stage.diagnostics()),
        Err(e) => {
            stage.timeline.fail(&e.to_string());
            eprintln!("{}", stage.diagnostics());
        }
    }
    stage.shutdown().await;
    result
}

/// Runs `legs` on a running pair (Gold primary, GoldDR following).
pub async fn run(stage: &mut Stage, legs: &[LegPlan]) -> Result<Report> {
    let mut failures = Vec::new();
    let plugin = Plugin::for_sites(stage.gold()?, &stage.golddr)?;
    let db = stage
        .wait_writable(stage.gold()?, Duration::from_secs(30))
        .await?;
    db.create_table().await?;
    drop(db);
    plugin.wait_healthy("gold", HEALTHY_WITHIN).await?;
    stage.timeline.mark(format!(
        "plugin: `{}` exits 0 (gold primary, golddr standby)",
        plugin.command_line("status")
    ));
    let service = |site: &Site| {
        Stage::primary_service(site).ok_or_else(|| DrillError::Site {
            site: site.name().into(),
            reason: "no primary Service".into(),
        })
    };
    let writer = Writer::start(
        [
            ("gold", service(stage.gold()?)?),
            ("golddr", service(&stage.golddr)?),
        ],
        stage.password().to_string(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stage.timeline.mark(format!(
        "writer: committing every ~{} ms through the primary Services ({} acknowledged so far)",
        WRITE_EVERY.as_millis(),
        writer.acks().len()
    ));

    let mut reports = Vec::new();
    let mut upgraded = false;
    let mut current = "gold";
    for leg in legs {
        let from = current;
        match run_leg(stage, &plugin, &writer, from, leg, &mut failures).await {
            Ok(r) => {
                reports.push(r);
                current = leg.to;
            }
            Err(e) => {
                failures.push(format!("leg {from} -> {}: {e}", leg.to));
                break;
            }
        }
        if current == "golddr" && !upgraded {
            upgraded = true;
            if let Err(e) = upgrade_keeps_roles(stage, &plugin).await {
                failures.push(format!("helm upgrade after the swap: {e}"));
                break;
            }
        }
    }
    // A few failover-agent runs with the holds released: a false promotion would show below.
    tokio::time::sleep(SETTLE).await;
    let acks = writer.stop().await;
    stage.timeline.mark(format!(
        "writer stopped: {} commits acknowledged",
        acks.len()
    ));
    // Every acknowledged commit on the final primary, and on its standby.
    let ids: BTreeSet<i64> = acks.iter().map(|a| a.0).collect();
    let found = {
        let final_site = if current == "gold" {
            stage.gold()?
        } else {
            &stage.golddr
        };
        stage
            .wait_writable(final_site, Duration::from_secs(30))
            .await
    };
    match found {
        Ok(db) => {
            let have = db.ids().await?;
            let lost = ids.difference(&have).count();
            if lost > 0 {
                failures.push(format!(
                    "{lost} acknowledged commits missing on the final primary {current}"
                ));
            }
            stage.timeline.mark(format!(
                "{current}: all but {lost} of {} acknowledged commits present",
                ids.len()
            ));
        }
        Err(e) => failures.push(format!("final primary {current}: {e}")),
    }
    if current == "gold" {
        if let Err(e) = stage
            .wait_rows_on_golddr(&ids, Duration::from_secs(60))
            .await
        {
            failures.push(e.to_string());
        } else {
            stage
                .timeline
                .mark("golddr: every acknowledged commit present (standby leader)");
        }
    }
    let expected = if current == "gold" {
        member(stage.gold()?)
    } else {
        member(&stage.golddr)
    };
    if let Err(e) = stage.check_one_primary(&expected).await {
        failures.push(e.to_string());
    }
    Ok(Report {
        timeline: stage.timeline.render(),
        legs: reports,
        acknowledged: acks.len(),
        acknowledged_on_golddr: acks.iter().filter(|a| a.1 == "golddr").count(),
        failures,
    })
}

async fn run_leg(
    stage: &mut Stage,
    plugin: &Plugin,
    writer: &Writer,
    from: &'static str,
    leg: &LegPlan,
    failures: &mut Vec<String>,
) -> Result<LegReport> {
    let before = plugin.wait_healthy(from, HEALTHY_WITHIN).await?;
    let started = Instant::now();
    let args = ["switchover", "--to", leg.to, "--step-timeout", STEP_TIMEOUT];
    let first = plugin.run(&args, leg.kill_after).await?;
    let mut said = first.stderr.clone();
    let killed_after = first.killed_after.clone();
    let mut last = first;
    if let Some(step) = &last.killed_after {
        stage.timeline.mark(format!(
            "plugin: `switchover --to {}` SIGKILLed right after it recorded step {step}",
            leg.to
        ));
        // Never two writable primaries, whatever the step.
        let w = stage.writable_members().await;
        if w.len() > 1 {
            failures.push(format!(
                "killed after step {step}: two writable primaries {w:?}"
            ));
        }
        let (code, v) = plugin.status().await?;
        let shown = v["switchover"]["step"].as_str().unwrap_or("").to_string();
        stage.timeline.mark(format!(
            "plugin: status exits {code:?} and shows the stopped switchover at step {shown:?}; writable now: {w:?}"
        ));
        last = plugin
            .run(
                &["switchover", "--resume", "--step-timeout", STEP_TIMEOUT],
                None,
            )
            .await?;
        said += &last.stderr;
        if last.stderr.contains("step hold:") {
            failures.push(format!(
                "the resumed run started over instead of continuing:\n{}",
                last.stderr
            ));
        }
    }
    let took = started.elapsed();
    if last.code != Some(0) {
        return Err(DrillError::Check(format!(
            "kubectl pgdr switchover exited {:?}:\n{}{}",
            last.code, last.stdout, last.stderr
        )));
    }
    for want in [
        "replayed exactly up to",
        "switchover complete, nothing lost",
    ] {
        if !said.contains(want) {
            failures.push(format!(
                "switchover to {}: the plugin did not say {want:?}",
                leg.to
            ));
        }
    }
    let after = plugin.wait_healthy(leg.to, HEALTHY_WITHIN).await?;
    // Let the writer commit on the new primary before measuring.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !writer.acks().iter().any(|a| a.1 == leg.to && a.2 > started) {
        if Instant::now() >= deadline {
            failures.push(format!(
                "no commit acknowledged on {} after the leg",
                leg.to
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acks = writer.acks();
    let unavailability = longest_gap(&acks, started, Instant::now());
    let to_site = if leg.to == "gold" {
        stage.gold()?
    } else {
        &stage.golddr
    };
    let db = stage
        .wait_writable(to_site, Duration::from_secs(30))
        .await?;
    let have = db.ids().await?;
    let lost = acks.iter().filter(|a| !have.contains(&a.0)).count();
    drop(db);
    if lost > 0 {
        failures.push(format!(
            "{from} -> {}: {lost} acknowledged commits missing on the new primary",
            leg.to
        ));
    }
    if let Err(e) = stage.check_one_primary(&member(to_site)).await {
        failures.push(e.to_string());
    }
    let r = LegReport {
        from: from.into(),
        to: leg.to.into(),
        killed_after,
        took,
        unavailability,
        lost,
        timeline_before: timeline_of(&before, from),
        timeline_after: timeline_of(&after, leg.to),
    };
    stage.timeline.mark(format!(
        "{} primary: switchover {from} -> {} took {:.1}s, writes unavailable {:.1}s, {lost} acknowledged lost, timeline {:?} -> {:?}",
        leg.to,
        leg.to,
        took.as_secs_f64(),
        unavailability.as_secs_f64(),
        r.timeline_before,
        r.timeline_after
    ));
    Ok(r)
}

/// `helm upgrade` of both sites with their original values (Gold's says primary, GoldDR's
/// standby) while GoldDR is the primary: nothing may change role.
async fn upgrade_keeps_roles(stage: &mut Stage, plugin: &Plugin) -> Result<()> {
    stage.upgrade_gold(&[]).await?;
    stage.upgrade_golddr(&[]).await?;
    stage.timeline.mark(
        "helm upgrade of both sites with their original values (gold: primary, golddr: standby) done",
    );
    // Patroni acts on config changes within a loop or two: give a wrong change time to show.
    tokio::time::sleep(Duration::from_secs(6)).await;
    if stage.golddr_is_standby_cluster() != Some(false) {
        return Err(DrillError::Check(
            "golddr's dynamic config has standby_cluster again after helm upgrade".into(),
        ));
    }
    plugin.wait_healthy("golddr", HEALTHY_WITHIN).await?;
    stage.check_one_primary(&member(&stage.golddr)).await?;
    stage
        .timeline
        .mark("after helm upgrade: golddr still the one primary, gold still its standby (plugin status exit 0)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_gap_counts_the_edges() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let acks = vec![
            (1, "gold", at(10)),
            (2, "gold", at(20)),
            (3, "golddr", at(900)),
        ];
        assert_eq!(longest_gap(&acks, t0, at(1000)), Duration::from_millis(880));
        // No commit at all during the leg: the whole leg.
        assert_eq!(longest_gap(&[], t0, at(500)), Duration::from_millis(500));
        // A commit before the leg does not count.
        let acks = vec![(1, "gold", t0), (2, "gold", at(300))];
        assert_eq!(
            longest_gap(&acks, at(100), at(350)),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn timeline_is_read_per_site() {
        let v = serde_json::json!({"sites": [{"name": "gold", "timeline": 3}, {"name": "golddr", "timeline": null}]});
        assert_eq!(timeline_of(&v, "gold"), Some(3));
        assert_eq!(timeline_of(&v, "golddr"), None);
        assert_eq!(timeline_of(&v, "other"), None);
    }
}
