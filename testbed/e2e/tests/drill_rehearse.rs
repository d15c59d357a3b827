//! `pgdr-drill rehearse` end to end: both sites with the real chart, Gold lost, GoldDR promoted by
//! its CronJob, no acknowledged row lost that GoldDR had confirmed.

use pgdr_drill::options::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_rehearse() {
    let o = Options {
        cron_every: Some(pgdr_drill::options::REHEARSE_CRON_EVERY),
        ..Options::default()
    };
    let report = pgdr_drill::rehearse::rehearse(&o)
        .await
        .expect("rehearsal set up");
    eprintln!("{}", report.render(true));
    assert!(report.passed(), "{}", report.render(true));
    assert!(report.failover_time.is_some());
}
