//! `make bench-failover`: the rehearsal repeated under a steady write load, for two failover
//! policies side by side.
//!
//! Each run installs both sites afresh, starts a writer committing one row at a time on Gold (every
//! acknowledged commit is logged client-side), cuts the tunnel briefly a few times (a promotion then
//! is a false promotion: Gold is alive), and finally kills Gold and measures the time until GoldDR
//! acknowledges a write and which acknowledged commits it does not have.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{DrillError, Result};
use crate::options::{Options, REHEARSE_CRON_EVERY};
use crate::stage::Stage;

/// A failover policy, as chart values for GoldDR.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub sets: Vec<String>,
}

impl Policy {
    /// First word of the name, for folder names.
    pub fn slug(&self) -> &str {
        self.name.split_whitespace().next().unwrap_or("policy")
    }
    /// The project's debounce, scaled down by the drill overlay (N=4 failed samples spanning 4 s).
    pub fn default_policy() -> Policy {
        Policy {
            name: "default (N=4 samples, T>=4s)".into(),
            sets: Vec::new(),
        }
    }
    /// The prototype's: promote on the first failed probe.
    pub fn prototype() -> Policy {
        Policy {
            name: "prototype (first failed probe)".into(),
            sets: vec![
                "failover.failureThreshold=1".into(),
                "failover.minFailureSpanSeconds=0".into(),
            ],
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub runs: usize,
    pub cuts_per_run: usize,
    pub cut: Duration,
    /// Pause between two commits of the writer.
    pub write_every: Duration,
    pub drill: Options,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            runs: 3,
            cuts_per_run: 3,
            cut: Duration::from_millis(1500),
            write_every: Duration::from_millis(5),
            drill: Options {
                cron_every: Some(REHEARSE_CRON_EVERY),
                ..Options::default()
            },
        }
    }
}

/// What one policy measured over all runs.
#[derive(Debug, Default)]
pub struct PolicyResult {
    pub failover_times: Vec<Duration>,
    /// Runs where GoldDR did not become writable within the deadline.
    pub no_promotion: usize,
    pub acked: usize,
    pub lost: usize,
    pub max_lost_in_run: usize,
    pub cuts: usize,
    pub false_promotions: usize,
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

/// One run: setup, short cuts, kill. Adds to `r`.
async fn one_run(policy: &Policy, o: &BenchOptions, r: &mut PolicyResult) -> Result<()> {
    let mut stage = Stage::up(&o.drill, &policy.sets, false).await?;
    let outcome = measure(&mut stage, o, r).await;
    if outcome.is_err() {
        eprintln!("{}", stage.diagnostics());
    }
    stage.shutdown().await;
    outcome
}

async fn measure(stage: &mut Stage, o: &BenchOptions, r: &mut PolicyResult) -> Result<()> {
    let gold = stage
        .wait_writable(stage.gold()?, Duration::from_secs(30))
        .await?;
    gold.create_table().await?;
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let writer = spawn_writer(gold, o.write_every, acked.clone(), stop_rx);
    // The table and the first rows must have reached GoldDR before any fault: otherwise a quick
    // kill measures the creation of the table, not the loss of commits.
    let first = loop {
        if let Some(id) = acked.lock().unwrap_or_else(|p| p.into_inner()).first() {
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
    let cycle = Duration::from_secs(o.drill.cron_every.unwrap_or(3) + 3);
    for _ in 0..o.cuts_per_run {
        stage.platform.cut();
        tokio::time::sleep(o.cut).await;
        stage.platform.heal();
        r.cuts += 1;
        // Give the runs that saw the cut time to act on it.
        tokio::time::sleep(cycle).await;
        if stage.golddr_is_standby_cluster() == Some(false) {
            r.false_promotions += 1;
            // Two primaries now: the rest of this run would measure nothing meaningful.
            let _ = stop.send(true);
            let _ = writer.await;
            return Ok(());
        }
        stage.wait_streaming(Duration::from_secs(60)).await?;
    }
    // Steady load right before the kill, so commits are in flight when it comes.
    tokio::time::sleep(WARM_LOAD).await;
    if writer.is_finished() {
        return Err(DrillError::Check(
            "the writer stopped before gold was killed (a commit on gold failed)".into(),
        ));
    }
    let killed = Instant::now();
    stage.kill_gold().await?;
    // From now on only GoldDR is written to: the Gold writer issues nothing more, and its commit
    // in flight at the kill (if any) fails or times out, so it is not counted.
    let _ = stop.send(true);
    let (written, _) = tokio::join!(first_golddr_write(stage, Duration::from_secs(120)), writer);
    match written {
        Ok((at, db, failed, last_failure)) => {
            r.failover_times.push(at - killed);
            if let Some(e) = last_failure {
                eprintln!(
                    "  run: {failed} write(s) failed on a writable-looking golddr before the first acknowledged one (last: {e})"
                );
            }
            let have = db.ids().await?;
            let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
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

/// Runs every policy `o.runs` times; prints progress on stderr.
pub async fn bench(policies: &[Policy], o: &BenchOptions) -> Result<Vec<(Policy, PolicyResult)>> {
    let mut out = Vec::new();
    for p in policies {
        let mut r = PolicyResult::default();
        for i in 0..o.runs {
            let t = Instant::now();
            // Each run in a folder of its own: a site reusing the last run's volumes would start
            // PostgreSQL on stale data with another run's passwords.
            let mut run = o.clone();
            if let Some(base) = &o.drill.dir {
                run.drill.dir = Some(base.join(format!("{}-run{}", p.slug(), i + 1)));
            }
            one_run(p, &run, &mut r).await?;
            eprintln!(
                "{}: run {}/{} done in {:.0}s (false promotions so far {}, failovers {:?})",
                p.name,
                i + 1,
                o.runs,
                t.elapsed().as_secs_f64(),
                r.false_promotions,
                r.failover_times
            );
        }
        out.push((p.clone(), r));
    }
    Ok(out)
}

/// The side-by-side table.
pub fn table(results: &[(Policy, PolicyResult)], o: &BenchOptions) -> String {
    let secs = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()));
    let mut s = format!(
        "failover benchmark: {} runs per policy, {} tunnel cuts of {:.1}s per run, writer committing every {:?}\n\n",
        o.runs,
        o.cuts_per_run,
        o.cut.as_secs_f64(),
        o.write_every
    );
    s += &format!(
        "{:<32} {:>9} {:>13} {:>13} {:>14} {:>16} {:>18}\n",
        "policy",
        "failovers",
        "failover p50",
        "failover p95",
        "acked commits",
        "acked lost (max)",
        "false promotions"
    );
    for (p, r) in results {
        s += &format!(
            "{:<32} {:>9} {:>13} {:>13} {:>14} {:>16} {:>18}\n",
            p.name,
            format!(
                "{}/{}",
                r.failover_times.len(),
                r.failover_times.len() + r.no_promotion
            ),
            secs(percentile(&r.failover_times, 50.0)),
            secs(percentile(&r.failover_times, 95.0)),
            r.acked,
            format!("{} ({})", r.lost, r.max_lost_in_run),
            format!("{}/{} cuts", r.false_promotions, r.cuts),
        );
    }
    s += "\nfailover = gold SIGKILLed + tunnel cut -> first write acknowledged by golddr's primary Service.\n\
          acked lost = commits gold acknowledged (COMMIT answered OK) before the kill and missing on golddr\n\
          after its promotion (asynchronous replication).\n\
          Runs that falsely promoted end there (two primaries), so they add no failover sample.\n";
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
}
