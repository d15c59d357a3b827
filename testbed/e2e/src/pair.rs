//! A pair of sites with the GSLB, as the drill scenarios start it, and what they ask of it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pgdr_drill::fencing::Watched;
use pgdr_drill::gslb::{Gslb, GslbConfig};
use pgdr_drill::options::Options;
use pgdr_drill::stage::Stage;

/// Sites of the pair, in the GSLB's preference order.
pub const SITES: [&str; 2] = ["gold", "golddr"];

/// Both sites installed, the GSLB watching them and wired as each site's witness, the failover
/// agent every `cron_every` seconds. `members` per site (None: the overlay's one); `golddr_only`
/// are extra `--set`s for GoldDR.
pub async fn start(cron_every: u64, members: Option<u32>, golddr_only: &[&str]) -> (Gslb, Stage) {
    let gslb = Gslb::start(GslbConfig::drill(), &SITES)
        .await
        .expect("GSLB started");
    let o = Options {
        cron_every: Some(cron_every),
        members,
        // Keep the sites' folders (pod logs, data) for a look after a failure; one subfolder per
        // pair, so the next test does not start on this one's data.
        dir: std::env::var_os("PGDR_DRILL_DIR").map(|d| {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::path::PathBuf::from(d).join(format!("pair-{}-{n}", std::process::id()))
        }),
        ..Options::default()
    };
    let golddr_sets: Vec<String> = golddr_only.iter().map(|s| s.to_string()).collect();
    let started = Instant::now();
    let stage = Stage::up_with_gslb(&o, &gslb, &[], &golddr_sets, false)
        .await
        .expect("both sites installed");
    eprintln!("setup done in {:.1}s", started.elapsed().as_secs_f64());
    (gslb, stage)
}

/// Creates the writers' table on Gold and waits until GoldDR has it.
pub async fn prepare_table(stage: &Stage) {
    let gold = stage
        .wait_writable(stage.gold().expect("gold is up"), Duration::from_secs(30))
        .await
        .expect("gold writable");
    gold.create_table().await.expect("create table");
    gold.insert(1, "gold").await.expect("first row");
    stage
        .wait_rows_on_golddr(&BTreeSet::from([1]), Duration::from_secs(60))
        .await
        .expect("golddr has the table");
}

/// Both sites as the sampler and the writers watch them.
pub fn watched(stage: &Stage) -> Vec<Watched> {
    vec![
        Watched::of(stage.gold().expect("gold is up")),
        Watched::of(&stage.golddr),
    ]
}

/// Rows present on a site's leader (pod address; the primary Service may have no endpoints).
pub async fn rows_on(stage: &Stage, site: &str) -> Option<BTreeSet<i64>> {
    let addr = Stage::leader_addr(stage.site(site).ok()?)?;
    stage.connect(addr).await.ok()?.ids().await.ok()
}

/// Whether a site's leader is a writable primary now.
pub async fn leader_writable(stage: &Stage, site: &str) -> Option<bool> {
    let addr = Stage::leader_addr(stage.site(site).ok()?)?;
    stage.connect(addr).await.ok()?.writable().await.ok()
}

/// The ids `site` acknowledged, and the rows on `on` once they all arrived there (or after
/// `within`): replay of the last commits may still be under way when streaming has begun.
pub async fn acked_rows_reach(
    stage: &Stage,
    acks: &[pgdr_drill::fencing::Ack],
    site: &str,
    on: &str,
    within: Duration,
) -> (BTreeSet<i64>, BTreeSet<i64>) {
    let ids: BTreeSet<i64> = acks
        .iter()
        .filter(|a| a.site == site)
        .map(|a| a.id)
        .collect();
    let deadline = Instant::now() + within;
    loop {
        let rows = rows_on(stage, on).await.unwrap_or_default();
        if ids.is_subset(&rows) || Instant::now() >= deadline {
            return (ids, rows);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
