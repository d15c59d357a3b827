//! `make bench-failover` / `make bench-failover-prod`: the rehearsal repeated under a steady write
//! load, for two failover policies side by side (ours and the prototype's).
//!
//! Each run installs both sites afresh, starts a writer committing one row at a time on Gold (every
//! acknowledged commit is logged client-side), optionally holds a long tunnel-only partition while
//! Gold keeps taking writes (first run only), cuts the tunnel briefly a few times (a promotion then
//! is a false promotion: Gold is alive), and finally loses Gold — killed (every process SIGKILLed,
//! the tunnel refusing) or blackholed (the tunnel and the GSLB's checks get no answer at all, Gold's
//! clients are cut off) — and measures the time until GoldDR acknowledges a write and which
//! acknowledged commits it does not have.
//!
//! Our policy has the drill's GSLB ([`crate::gslb`]) as its witness, as production needs; the
//! prototype had no witness. [`Timings::Production`] replaces the drill overlay's short failover
//! timings with the chart's defaults and lets the CronJob fire on its real schedule.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{DrillError, Result};
use crate::gslb::{Gslb, GslbConfig};
use crate::options::{Options, REHEARSE_CRON_EVERY};
use crate::stage::Stage;

/// A failover policy, as chart values for GoldDR.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub sets: Vec<String>,
    /// Whether the failover CronJob asks the drill's GSLB (HTTP witness).
    pub witness: bool,
}

/// Which failover timings the sites run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timings {
    /// The drill overlay's (1 s samples, N=4, T=4 s), CronJobs fired every few seconds.
    Drill,
    /// The chart's defaults ([`production_sets`]), CronJobs on their real schedule (once a minute).
    Production,
}

/// The chart's default failover schedule and policy (values.yaml), set over the drill overlay's
/// short timings; also Patroni's loop and `wal_receiver_timeout` (the chart's, from
/// `failover.walReceiverTimeoutSeconds`). A unit test keeps these equal to values.yaml.
pub fn production_sets() -> Vec<String> {
    [
        "failover.schedule=* * * * *",
        "failover.sampleIntervalSeconds=5",
        "failover.samplesPerRun=9",
        "failover.failureThreshold=6",
        "failover.minFailureSpanSeconds=40",
        // The drill overlay allows its short window; production does not.
        "failover.allowShortWindow=false",
        "failover.probeTimeoutSeconds=3",
        "failover.promoteConfirmSeconds=60",
        "failover.activeDeadlineSeconds=180",
        "failover.startingDeadlineSeconds=30",
        "failover.walReceiverTimeoutSeconds=10",
        // The overlay's 5 s back to what the chart renders from walReceiverTimeoutSeconds (the
        // schema does not let a value be unset with null).
        "postgresql.parameters.wal_receiver_timeout=10s",
        "patroni.dcs.ttl=30",
        "patroni.dcs.loopWait=10",
        "patroni.dcs.retryTimeout=10",
    ]
    .map(String::from)
    .to_vec()
}

impl Policy {
    /// First word of the name, for folder names.
    pub fn slug(&self) -> &str {
        self.name.split_whitespace().next().unwrap_or("policy")
    }
    /// The project's debounce, scaled down by the drill overlay (N=4 failed samples spanning 4 s),
    /// with the GSLB as witness.
    pub fn default_policy() -> Policy {
        Policy {
            name: "ours (N=4, T>=4s, GSLB witness)".into(),
            sets: Vec::new(),
            witness: true,
        }
    }
    /// The prototype's: promote on the first failed probe, no witness.
    pub fn prototype() -> Policy {
        Policy {
            name: "prototype (first failed probe, no witness)".into(),
            sets: vec![
                "failover.failureThreshold=1".into(),
                "failover.minFailureSpanSeconds=0".into(),
                "failover.allowNoWitness=true".into(),
            ],
            witness: false,
        }
    }
    /// The chart's defaults (N=5 samples 5 s apart spanning >= 40 s, 9 samples a run, once a
    /// minute) with the GSLB as witness.
    pub fn production_default() -> Policy {
        Policy {
            name: "ours (chart defaults, GSLB witness)".into(),
            sets: production_sets(),
            witness: true,
        }
    }
    /// The prototype at its own timings: one probe a minute, promote on the first failure, no
    /// witness.
    pub fn production_prototype() -> Policy {
        let mut sets = production_sets();
        sets.extend(
            [
                "failover.samplesPerRun=1",
                "failover.failureThreshold=1",
                "failover.minFailureSpanSeconds=0",
                "failover.allowShortWindow=true",
                "failover.allowNoWitness=true",
            ]
            .map(String::from),
        );
        Policy {
            name: "prototype (1 probe/min, first failure, no witness)".into(),
            sets,
            witness: false,
        }
    }
    /// The two policies compared at `t`.
    pub fn pair(t: Timings) -> Vec<Policy> {
        match t {
            Timings::Drill => vec![Policy::default_policy(), Policy::prototype()],
            Timings::Production => {
                vec![Policy::production_default(), Policy::production_prototype()]
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub timings: Timings,
    /// Runs per policy; each ends with the loss of Gold (odd runs: killed, even runs: blackholed).
    pub runs: usize,
    pub cuts_per_run: usize,
    pub cut: Duration,
    /// Wait after a short cut before checking for a promotion (runs that saw it act on it).
    pub settle: Duration,
    /// A tunnel-only partition (blackholed both ways) held in the first run of each policy while
    /// Gold takes writes and the GSLB sees it healthy; None: none.
    pub partition: Option<Duration>,
    /// Longest wait for GoldDR's first acknowledged write after the loss.
    pub loss_deadline: Duration,
    /// Pause between two commits of the writer.
    pub write_every: Duration,
    pub drill: Options,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            timings: Timings::Drill,
            runs: 3,
            cuts_per_run: 3,
            cut: Duration::from_millis(1500),
            settle: Duration::from_secs(REHEARSE_CRON_EVERY + 3),
            partition: None,
            loss_deadline: Duration::from_secs(120),
            write_every: Duration::from_millis(5),
            drill: Options {
                cron_every: Some(REHEARSE_CRON_EVERY),
                ..Options::default()
            },
        }
    }
}

impl BenchOptions {
    /// Item 9's benchmark: the chart's defaults, CronJobs once a minute, 6 losses (3 killed, 3
    /// blackholed), 24 cuts of 10 s (a quarter of the 40 s window), one 10-minute partition.
    pub fn production() -> Self {
        BenchOptions {
            timings: Timings::Production,
            runs: 6,
            cuts_per_run: 4,
            cut: Duration::from_secs(10),
            settle: Duration::from_secs(20),
            partition: Some(Duration::from_secs(600)),
            loss_deadline: Duration::from_secs(300),
            write_every: Duration::from_millis(20),
            drill: Options::default(),
        }
    }
    fn gslb_config(&self) -> GslbConfig {
        match self.timings {
            Timings::Drill => GslbConfig::drill(),
            Timings::Production => GslbConfig::production(),
        }
    }
}

/// How Gold is lost at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Every Gold process SIGKILLed, the tunnel refusing.
    Kill,
    /// Gold's network goes dark: the tunnel and the GSLB's checks get no answer, its clients are
    /// cut off (the writer stops); its processes keep running, isolated.
    Blackhole,
}

/// What one policy measured over all runs.
#[derive(Debug, Default)]
pub struct PolicyResult {
    pub failover_times: Vec<Duration>,
    pub kill_times: Vec<Duration>,
    pub blackhole_times: Vec<Duration>,
    /// Runs where GoldDR did not become writable within the deadline.
    pub no_promotion: usize,
    pub acked: usize,
    pub lost: usize,
    pub max_lost_in_run: usize,
    pub cuts: usize,
    pub false_promotions: usize,
    /// Partitions held, and those that ended in a promotion (a false one: Gold was alive).
    pub partitions: usize,
    pub partition_promotions: usize,
    /// Commits acknowledged on Gold during a partition that did not promote, missing on GoldDR
    /// after the tunnel healed.
    pub partition_lost: usize,
    /// Runs that failed to set up or to measure (nothing counted from them).
    pub errors: usize,
}

/// Nearest-rank percentile of `xs` (sorted here).
pub fn percentile(xs: &[Duration], p: f64) -> Option<Duration> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Some(v[rank.min(v.len()) - 1])
}

/// Writes on Gold with no fault before the kill.
const WARM_LOAD: Duration = Duration::from_secs(3);

/// Ids GoldDR's writes use, far above anything the Gold writer reaches.
const GOLDDR_IDS: i64 = 1 << 40;

/// Commits one row at a time on Gold until told to stop or a commit fails or goes unanswered.
/// Only commits the server answered OK count as acknowledged.
fn spawn_writer(
    db: crate::db::Db,
    every: Duration,
    acked: Arc<Mutex<BTreeSet<i64>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut id = 1i64;
        while !*stop.borrow() {
            // A killed site may leave the connection hanging: no answer in time = not acknowledged.
            match tokio::time::timeout(Duration::from_secs(2), db.insert(id, "gold")).await {
                Ok(Ok(())) => {
                    acked.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                }
                _ => return,
            }
            id += 1;
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    })
}

/// Writes to GoldDR's primary Service (fresh connection per attempt) until one commit is
/// acknowledged; returns when that was, the connection, and how many attempts failed on a
/// writable-looking server before (with the last such error), for the report.
async fn first_golddr_write(
    stage: &Stage,
    deadline: Duration,
) -> Result<(Instant, crate::db::Db, usize, Option<DrillError>)> {
    let until = Instant::now() + deadline;
    let mut last = String::from("no primary Service yet");
    let (mut failed, mut last_failure) = (0, None);
    // A new id per attempt: an attempt that committed but went unanswered must not make the
    // next one fail on the primary key.
    let mut id = GOLDDR_IDS;
    loop {
        id += 1;
        if let Some(addr) = Stage::primary_service(&stage.golddr) {
            match stage.connect(addr).await {
                Ok(db) => {
                    match tokio::time::timeout(Duration::from_secs(2), db.insert(id, "golddr"))
                        .await
                    {
                        Ok(Ok(())) => return Ok((Instant::now(), db, failed, last_failure)),
                        Ok(Err(e)) => {
                            last = e.to_string();
                            // Read-only is the standby before promotion, not a failure.
                            if !matches!(db.writable().await, Ok(false)) {
                                failed += 1;
                                last_failure = Some(e);
                            }
                        }
                        Err(_) => last = format!("INSERT on {addr} unanswered after 2s"),
                    }
                }
                // No endpoints while GoldDR is a standby: the connection is refused.
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() >= until {
            return Err(DrillError::Timeout {
                what: format!("a write acknowledged by golddr's primary Service (last: {last})"),
                waited: deadline,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One run: setup, (partition), short cuts, loss. Adds to `r`.
async fn one_run(
    policy: &Policy,
    o: &BenchOptions,
    loss: Loss,
    partition: Option<Duration>,
    r: &mut PolicyResult,
) -> Result<()> {
    let gslb = Gslb::start(o.gslb_config(), &["gold", "golddr"]).await?;
    let mut stage = if policy.witness {
        // Ours: the agent on both sites, each with the GSLB as its witness.
        Stage::up_with_gslb(&o.drill, &gslb, &policy.sets, &policy.sets, false).await?
    } else {
        // The prototype had no agent on the primary site.
        let gold = ["failover.enabled=false".to_string()];
        let stage = Stage::up_both(&o.drill, &gold, &policy.sets, false).await?;
        gslb.watch(stage.gold()?);
        gslb.watch(&stage.golddr);
        stage
    };
    let outcome = measure(&mut stage, &gslb, o, loss, partition, r).await;
    if outcome.is_err() {
        eprintln!("{}", stage.diagnostics());
    }
    stage.shutdown().await;
    outcome
}

/// Stops the writer and waits for it.
async fn stop_writer(stop: &tokio::sync::watch::Sender<bool>, writer: tokio::task::JoinHandle<()>) {
    let _ = stop.send(true);
    let _ = writer.await;
}

async fn measure(
    stage: &mut Stage,
    gslb: &Gslb,
    o: &BenchOptions,
    loss: Loss,
    partition: Option<Duration>,
    r: &mut PolicyResult,
) -> Result<()> {
    let gold = stage
        .wait_writable(stage.gold()?, Duration::from_secs(30))
        .await?;
    gold.create_table().await?;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let writer = spawn_writer(gold, o.write_every, acked.clone(), stop_rx);
    let snapshot = || acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // The table and the first rows must have reached GoldDR before any fault: otherwise a quick
    // kill measures the creation of the table, not the loss of commits.
    let first = loop {
        if let Some(id) = snapshot().first() {
            break *id;
        }
        if writer.is_finished() {
            return Err(DrillError::Check(
                "the writer stopped before its first commit".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stage
        .wait_rows_on_golddr(&BTreeSet::from([first]), Duration::from_secs(30))
        .await?;
    // The GSLB must have seen Gold healthy before any fault, or the witness has nothing to say.
    gslb.wait_marked("gold", true, Duration::from_secs(30))
        .await?;

    if let Some(len) = partition {
        r.partitions += 1;
        eprintln!("  partition: tunnel blackholed for {len:?}, gold taking writes");
        stage.platform.blackhole();
        let until = Instant::now() + len;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stage.golddr_is_standby_cluster() == Some(false) {
                break;
            }
        }
        stage.platform.heal();
        if stage.golddr_is_standby_cluster() == Some(false) {
            r.partition_promotions += 1;
            // Two primaries now: the rest of this run would measure nothing meaningful.
            stop_writer(&stop, writer).await;
            return Ok(());
        }
        if writer.is_finished() {
            return Err(DrillError::Check(
                "the writer stopped during the partition (a commit on gold failed)".into(),
            ));
        }
        stage.wait_streaming(Duration::from_secs(120)).await?;
        let during = snapshot();
        if let Err(e) = stage
            .wait_rows_on_golddr(&during, Duration::from_secs(120))
            .await
        {
            eprintln!("  partition: {e}");
            let have = stage.golddr_member().await?.ids().await?;
            r.partition_lost += during.difference(&have).count();
        }
    }

    for _ in 0..o.cuts_per_run {
        stage.platform.cut();
        tokio::time::sleep(o.cut).await;
        stage.platform.heal();
        r.cuts += 1;
        // Give the runs that saw the cut time to act on it.
        tokio::time::sleep(o.settle).await;
        if stage.golddr_is_standby_cluster() == Some(false) {
            r.false_promotions += 1;
            stop_writer(&stop, writer).await;
            return Ok(());
        }
        stage.wait_streaming(Duration::from_secs(120)).await?;
    }
    // The loss starts a fresh failure streak from a known lag, as in production.
    stage
        .wait_agent_baseline(&stage.golddr, Duration::from_secs(180))
        .await?;
    // Steady load right before the loss, so commits are in flight when it comes.
    tokio::time::sleep(WARM_LOAD).await;
    if writer.is_finished() {
        return Err(DrillError::Check(
            "the writer stopped before gold was lost (a commit on gold failed)".into(),
        ));
    }
    let lost_at = Instant::now();
    match loss {
        Loss::Kill => stage.kill_gold().await?,
        Loss::Blackhole => {
            stage.platform.blackhole();
            gslb.cut_health("gold", true);
        }
    }
    // From now on only GoldDR is written to: the Gold writer issues nothing more, and its commit
    // in flight at the loss (if any) is counted only if Gold acknowledged it.
    let _ = stop.send(true);
    let (written, _) = tokio::join!(first_golddr_write(stage, o.loss_deadline), writer);
    match written {
        Ok((at, db, failed, last_failure)) => {
            let t = at - lost_at;
            r.failover_times.push(t);
            match loss {
                Loss::Kill => r.kill_times.push(t),
                Loss::Blackhole => r.blackhole_times.push(t),
            }
            if let Some(e) = last_failure {
                eprintln!(
                    "  run: {failed} write(s) failed on a writable-looking golddr before the first acknowledged one (last: {e})"
                );
            }
            let have = db.ids().await?;
            let acked = snapshot();
            let lost = acked.difference(&have).count();
            r.acked += acked.len();
            r.lost += lost;
            r.max_lost_in_run = r.max_lost_in_run.max(lost);
        }
        Err(e) => {
            eprintln!("  run: golddr not promoted: {e}");
            r.no_promotion += 1;
        }
    }
    Ok(())
}

/// Runs every policy `o.runs` times, interleaved (run 1 of each policy, then run 2, ...; losses
/// alternate kill / blackhole, the partition in the first run); prints progress on stderr and
/// hands the figures so far to `progress` after every run (so an interrupted benchmark still
/// leaves its partial figures). A run that fails to set up or to measure is reported and counted
/// in [`PolicyResult::errors`], and the benchmark goes on.
pub async fn bench(
    policies: &[Policy],
    o: &BenchOptions,
    mut progress: impl FnMut(&[(Policy, PolicyResult)], &str),
) -> Vec<(Policy, PolicyResult)> {
    let mut out: Vec<(Policy, PolicyResult)> = policies
        .iter()
        .map(|p| (p.clone(), PolicyResult::default()))
        .collect();
    for i in 0..o.runs {
        for k in 0..out.len() {
            let (p, r) = &mut out[k];
            let t = Instant::now();
            // Each run in a folder of its own: a site reusing the last run's volumes would start
            // PostgreSQL on stale data with another run's passwords.
            let mut run = o.clone();
            if let Some(base) = &o.drill.dir {
                run.drill.dir = Some(base.join(format!("{}-run{}", p.slug(), i + 1)));
            }
            let loss = if i % 2 == 0 {
                Loss::Kill
            } else {
                Loss::Blackhole
            };
            let partition = if i == 0 { o.partition } else { None };
            if let Err(e) = one_run(p, &run, loss, partition, r).await {
                eprintln!("{}: run {} FAILED: {e}", p.name, i + 1);
                r.errors += 1;
            }
            eprintln!(
                "{}: run {}/{} ({loss:?}) done in {:.0}s (false promotions: cuts {}, partition {}; failovers {:?})",
                p.name,
                i + 1,
                o.runs,
                t.elapsed().as_secs_f64(),
                r.false_promotions,
                r.partition_promotions,
                r.failover_times
            );
            let status = if i + 1 == o.runs && k + 1 == out.len() {
                String::new()
            } else {
                format!(
                    "**Partial figures**: written after run {} of {} of policy \"{}\" (policies take \
                     turns, run by run); the settings above are what was planned, the table holds \
                     only the runs finished by then.",
                    i + 1,
                    o.runs,
                    out[k].0.name
                )
            };
            progress(&out, &status);
        }
    }
    out
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()))
}

/// One row per policy: (header, cells).
fn rows(results: &[(Policy, PolicyResult)]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "policy",
        "failovers",
        "p50",
        "p95",
        "p50 kill / blackhole",
        "acked commits",
        "acked lost (max/run)",
        "false promotions: cuts",
        "false promotions: partition",
        "runs failed",
    ];
    let body = results
        .iter()
        .map(|(p, r)| {
            vec![
                p.name.clone(),
                format!(
                    "{}/{}",
                    r.failover_times.len(),
                    r.failover_times.len() + r.no_promotion
                ),
                secs(percentile(&r.failover_times, 50.0)),
                secs(percentile(&r.failover_times, 95.0)),
                format!(
                    "{} / {}",
                    secs(percentile(&r.kill_times, 50.0)),
                    secs(percentile(&r.blackhole_times, 50.0))
                ),
                r.acked.to_string(),
                format!("{} ({})", r.lost, r.max_lost_in_run),
                format!("{}/{}", r.false_promotions, r.cuts),
                if r.partition_lost > 0 {
                    format!(
                        "{}/{} ({} acked lost)",
                        r.partition_promotions, r.partitions, r.partition_lost
                    )
                } else {
                    format!("{}/{}", r.partition_promotions, r.partitions)
                },
                r.errors.to_string(),
            ]
        })
        .collect();
    (header, body)
}

/// What was run, in one paragraph.
fn settings(o: &BenchOptions) -> String {
    let timings = match o.timings {
        Timings::Drill => format!(
            "drill timings (values-drill.yaml: 1 s samples, N=4, T>=4 s; CronJobs fired every {}s)",
            o.drill.cron_every.unwrap_or(REHEARSE_CRON_EVERY)
        ),
        Timings::Production => {
            // From the values the runs use, so the description cannot drift from them.
            let sets = production_sets();
            let v = |key: &str| {
                sets.iter()
                    .find_map(|s| s.strip_prefix(key)?.strip_prefix('='))
                    .unwrap_or("?")
                    .to_string()
            };
            format!(
                "production timings (the chart's defaults: {} samples {} s apart a run, N={}, T>={} s, \
                 probe timeout {} s, wal_receiver_timeout {} s, Patroni ttl {} s and loop_wait {} s; \
                 the CronJob on its real schedule, once a minute)",
                v("failover.samplesPerRun"),
                v("failover.sampleIntervalSeconds"),
                v("failover.failureThreshold"),
                v("failover.minFailureSpanSeconds"),
                v("failover.probeTimeoutSeconds"),
                v("failover.walReceiverTimeoutSeconds"),
                v("patroni.dcs.ttl"),
                v("patroni.dcs.loopWait"),
            )
        }
    };
    let gslb = o.gslb_config();
    format!(
        "{timings}; {} runs per policy, Gold lost at the end of each (killed and blackholed in turn); \
         {} tunnel cuts of {:.0}s per run ({:.0}s wait after each); {}; GSLB monitor: /primary every {:?}, \
         down after {} failed checks; writer committing every {:?}.",
        o.runs,
        o.cuts_per_run,
        o.cut.as_secs_f64(),
        o.settle.as_secs_f64(),
        match o.partition {
            Some(p) => format!(
                "one tunnel-only partition of {:.0}s (blackholed both ways) in the first run, Gold alive and taking writes, the GSLB seeing it healthy",
                p.as_secs_f64()
            ),
            None => "no long partition".into(),
        },
        gslb.interval,
        gslb.fail_count,
        o.write_every
    )
}

const LEGEND: &str = "failover = Gold lost (killed, or its network blackholed) -> first write acknowledged by GoldDR's primary Service.\n\
acked lost = commits Gold acknowledged (COMMIT answered OK) before the loss and missing on GoldDR after its promotion (asynchronous replication).\n\
false promotions = GoldDR promoted while Gold was alive: after a short tunnel cut, or during the long partition.\n\
A run that falsely promoted ends there (two primaries), so it adds no failover sample.\n\
runs failed = runs that could not be set up or measured (their figures are not counted; the log says why).\n";

/// The side-by-side table (plain text, for the terminal).
pub fn table(results: &[(Policy, PolicyResult)], o: &BenchOptions) -> String {
    let (header, body) = rows(results);
    let width: Vec<usize> = (0..header.len())
        .map(|i| {
            body.iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut s = format!("failover benchmark: {}\n\n", settings(o));
    s += &line(header.clone());
    for r in &body {
        s += &line(r.iter().map(String::as_str).collect());
    }
    s + "\n" + LEGEND
}

/// `docs/benchmarks.md`: the table as Markdown, with what was run and when.
pub fn markdown(
    results: &[(Policy, PolicyResult)],
    o: &BenchOptions,
    command: &str,
    when: &str,
    note: &str,
) -> String {
    let (header, body) = rows(results);
    let mut s = format!(
        "# Failover benchmark\n\n\
         <!-- Generated by `{command}`: do not edit by hand, re-run it. -->\n\
         _Generated by `{command}` on {when}; do not edit by hand._\n\n{}\n\n",
        settings(o)
    );
    s += &format!("| {} |\n", header.join(" | "));
    s += &format!("|{}\n", "---|".repeat(header.len()));
    for r in &body {
        s += &format!("| {} |\n", r.join(" | "));
    }
    s += "\n";
    for l in LEGEND.lines() {
        s += &format!("- {l}\n");
    }
    if !note.is_empty() {
        s += &format!("\n{note}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let d = |s| Duration::from_secs(s);
        let xs = [d(5), d(1), d(3), d(2), d(4)];
        assert_eq!(percentile(&xs, 50.0), Some(d(3)));
        assert_eq!(percentile(&xs, 95.0), Some(d(5)));
        assert_eq!(percentile(&[d(7)], 95.0), Some(d(7)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    /// The production benchmark runs the chart's defaults: every `failover.*` value it sets is the
    /// one values.yaml ships.
    #[test]
    fn production_sets_are_the_chart_defaults() {
        let values = std::fs::read_to_string(crate::options::workspace().join("chart/values.yaml"))
            .expect("chart/values.yaml");
        let block = |top: &str| -> Vec<String> {
            values
                .lines()
                .skip_while(|l| *l != top)
                .skip(1)
                .take_while(|l| l.is_empty() || l.starts_with(' '))
                .map(|l| l.trim().to_string())
                .collect()
        };
        let failover = block("failover:");
        let patroni = block("patroni:");
        for set in production_sets() {
            let (key, value) = set.split_once('=').unwrap();
            let (section, rest) = key.split_once('.').unwrap();
            let leaf = rest.rsplit('.').next().unwrap();
            let lines = match section {
                "failover" => &failover,
                "patroni" => &patroni,
                _ => continue,
            };
            let want = if value.contains(' ') {
                format!("{leaf}: \"{value}\"")
            } else {
                format!("{leaf}: {value}")
            };
            assert!(
                lines.contains(&want),
                "values.yaml has no `{want}` under {section}"
            );
        }
    }

    #[test]
    fn markdown_says_it_is_generated() {
        let r = PolicyResult {
            failover_times: vec![Duration::from_secs(40)],
            kill_times: vec![Duration::from_secs(40)],
            ..PolicyResult::default()
        };
        let md = markdown(
            &[(Policy::production_default(), r)],
            &BenchOptions::production(),
            "make bench-failover-prod",
            "today",
            "",
        );
        assert!(md.contains("Generated by `make bench-failover-prod`"));
        assert!(md.contains("| ours (chart defaults, GSLB witness) | 1/1 | 40.0s | 40.0s |"));
    }
}
