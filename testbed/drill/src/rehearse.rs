//! `pgdr-drill rehearse`: install both sites (GoldDR's failover CronJob asking the drill's GSLB as
//! its witness), write on Gold, lose Gold, let GoldDR's CronJob promote it once the GSLB has moved
//! the application, write on GoldDR, and measure.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::gslb::{Gslb, GslbConfig};
use crate::options::Options;
use crate::rbac::Calls;
use crate::stage::{Stage, member};

/// Rows confirmed on GoldDR before the kill (losing any is a failure, not a measurement).
const CONFIRMED_ROWS: i64 = 100;
/// Rows written right before the kill without waiting for GoldDR: what asynchronous replication
/// can lose.
const TRAILING_ROWS: i64 = 50;
const GOLDDR_ROWS: i64 = 20;
/// Longest wait for GoldDR to become writable after the kill.
const PROMOTION_DEADLINE: Duration = Duration::from_secs(180);

/// What a rehearsal measured.
#[derive(Debug)]
pub struct Report {
    pub timeline: String,
    /// Kill → first acknowledged write through GoldDR's primary Service.
    pub failover_time: Option<Duration>,
    pub acknowledged_on_gold: usize,
    /// Acknowledged on Gold, missing on GoldDR after the promotion.
    pub rows_lost: usize,
    /// Failed checks (empty: everything held).
    pub failures: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The figures and verdict, after the timeline when `with_timeline` (it was not printed live).
    pub fn render(&self, with_timeline: bool) -> String {
        let mut s = if with_timeline {
            format!("timeline:\n{}\n\n", self.timeline)
        } else {
            String::new()
        };
        s += &format!(
            "failover time (gold killed -> golddr writable): {}\n",
            self.failover_time
                .map_or("n/a (no promotion)".into(), |d| format!(
                    "{:.1}s",
                    d.as_secs_f64()
                ))
        );
        s += &format!(
            "rows acknowledged on gold: {} ({CONFIRMED_ROWS} confirmed on golddr before the kill, {TRAILING_ROWS} written just before it)\n",
            self.acknowledged_on_gold
        );
        s += &format!(
            "rows lost (acknowledged on gold, missing on golddr): {}\n",
            self.rows_lost
        );
        if self.passed() {
            s += "result: PASS\n";
        } else {
            s += &format!("result: FAIL\n  - {}\n", self.failures.join("\n  - "));
        }
        s
    }
}

/// Runs the rehearsal. Errors are setup failures (nothing measured); a [`Report`] with failures
/// means the rehearsal ran and something did not hold.
pub async fn rehearse(o: &Options) -> Result<Report> {
    // The GSLB is GoldDR's witness, as in production: it follows Gold's `/primary` and moves the
    // application to GoldDR once Gold is marked down.
    let gslb = Gslb::start(GslbConfig::drill(), &["gold", "golddr"]).await?;
    let mut stage = Stage::up_with_gslb(o, &gslb, &[], &[], true).await?;
    let result = run(&mut stage, &gslb).await;
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

async fn run(stage: &mut Stage, gslb: &Gslb) -> Result<Report> {
    let mut failures = Vec::new();
    let gold = stage
        .wait_writable(stage.gold()?, Duration::from_secs(30))
        .await?;
    gold.create_table().await?;
    let mut acked = BTreeSet::new();
    for id in 1..=CONFIRMED_ROWS {
        gold.insert(id, "gold").await?;
        acked.insert(id);
    }
    stage.timeline.mark(format!(
        "gold: {CONFIRMED_ROWS} rows written (each commit acknowledged)"
    ));
    let confirmed = acked.clone();
    stage
        .wait_rows_on_golddr(&confirmed, Duration::from_secs(30))
        .await?;
    stage.timeline.mark(format!(
        "golddr: all {CONFIRMED_ROWS} rows present (read on the standby leader)"
    ));
    stage
        .wait_agent_baseline(&stage.golddr, Duration::from_secs(60))
        .await?;
    stage
        .timeline
        .mark("golddr: failover agent has a healthy probe of gold on record (a known lag)");
    for id in CONFIRMED_ROWS + 1..=CONFIRMED_ROWS + TRAILING_ROWS {
        gold.insert(id, "gold").await?;
        acked.insert(id);
    }
    drop(gold);
    stage.timeline.mark(format!(
        "gold: {TRAILING_ROWS} more rows acknowledged, not waited for on golddr"
    ));

    // Gold's API server goes with the site: what RBAC answered its pods, before the kill.
    let calls = Calls::of(stage.gold()?);
    stage.timeline.mark(format!("gold: {}", calls.summary()));
    failures.extend(calls.failures("gold"));

    gslb.wait_marked("gold", true, Duration::from_secs(30))
        .await?;
    let killed = Instant::now();
    stage.kill_gold().await?;
    stage
        .timeline
        .mark("gold KILLED: every gold process SIGKILLed, kubelet and API server gone, tunnel cut");

    let (promoted, marked) = tokio::join!(
        stage.wait_writable(&stage.golddr, PROMOTION_DEADLINE),
        async {
            gslb.wait_marked("gold", false, PROMOTION_DEADLINE)
                .await
                .map(|()| killed.elapsed())
        }
    );
    match marked {
        Ok(t) => stage.timeline.mark(format!(
            "gslb: gold marked down {:.1}s after the kill (failed /primary checks), the app answered with {}",
            t.as_secs_f64(),
            gslb.answer().map_or("nothing".into(), |a| a.site)
        )),
        Err(e) => failures.push(format!("the GSLB never marked gold down: {e}")),
    }
    let (failover_time, db) = match promoted {
        Ok(db) => match db.insert(1_000_001, "golddr").await {
            Ok(()) => (Some(killed.elapsed()), Some(db)),
            Err(e) => {
                failures.push(format!(
                    "golddr looked writable but the first write failed: {e}"
                ));
                (None, None)
            }
        },
        Err(e) => {
            failures.push(format!("golddr was not promoted: {e}"));
            (None, None)
        }
    };
    if let Some(t) = failover_time {
        stage.timeline.mark(format!(
            "golddr: PROMOTED by the failover CronJob, first write acknowledged {:.1}s after the kill",
            t.as_secs_f64()
        ));
    }

    let mut rows_lost = acked.len();
    if let Some(db) = db {
        for id in 0..GOLDDR_ROWS {
            if let Err(e) = db.insert(2_000_000 + id, "golddr").await {
                failures.push(format!("write {id} on golddr failed: {e}"));
                break;
            }
        }
        stage
            .timeline
            .mark(format!("golddr: {GOLDDR_ROWS} more rows written"));
        let have = db.ids().await?;
        let lost: BTreeSet<i64> = acked.difference(&have).copied().collect();
        rows_lost = lost.len();
        let lost_confirmed = confirmed.intersection(&lost).count();
        if lost_confirmed > 0 {
            failures.push(format!(
                "{lost_confirmed} rows that golddr had before the kill are gone after the promotion"
            ));
        }
        stage.timeline.mark(format!(
            "golddr: {} of {} rows acknowledged on gold present, {rows_lost} lost",
            acked.len() - rows_lost,
            acked.len()
        ));
    }
    let calls = Calls::of(&stage.golddr);
    stage.timeline.mark(format!("golddr: {}", calls.summary()));
    failures.extend(calls.failures("golddr"));
    match stage.golddr_is_standby_cluster() {
        Some(false) => {}
        other => failures.push(format!(
            "golddr's dynamic config should have no standby_cluster after promotion (standby: {other:?})"
        )),
    }
    if let Err(e) = stage.check_one_primary(&member(&stage.golddr)).await {
        failures.push(e.to_string());
    }
    Ok(Report {
        timeline: stage.timeline.render(),
        failover_time,
        acknowledged_on_gold: acked.len(),
        rows_lost,
        failures,
    })
}
