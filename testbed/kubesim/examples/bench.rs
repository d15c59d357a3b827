//! Benchmark (not a test): PATCH throughput with watch fan-out, shaped like Patroni's traffic.
//!
//! `cargo run --release -p kubesim --example bench -- [seconds] [patchers] [watchers]`
//! Each patcher renews its own "leader" ConfigMap with a compare-and-set strategic merge patch
//! (as Patroni does every loop), over one keep-alive connection; every watcher watches all
//! ConfigMaps of the namespace and counts the events it receives.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let secs = args.first().copied().unwrap_or(10);
    let patchers = args.get(1).copied().unwrap_or(8) as usize;
    let watchers = args.get(2).copied().unwrap_or(16) as usize;

    let server = kubesim::Server::spawn(kubesim::Config::default()).expect("server starts");
    let base = format!("{}/api/v1/namespaces/default/configmaps", server.url());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();

    let events = Arc::new(AtomicU64::new(0));
    let start_rv = server.resource_version();
    let mut watch_tasks = Vec::new();
    for _ in 0..watchers {
        let url = format!(
            "{base}?watch=true&resourceVersion={start_rv}&timeoutSeconds={}",
            secs + 30
        );
        let events = events.clone();
        let c = client.clone();
        watch_tasks.push(tokio::spawn(async move {
            let mut resp = c.get(url).send().await.expect("watch starts");
            while let Ok(Some(chunk)) = resp.chunk().await {
                events.fetch_add(
                    chunk.iter().filter(|b| **b == b'\n').count() as u64,
                    Ordering::Relaxed,
                );
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..patchers {
        let c = client.clone();
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("bench{i}-leader");
            let created: serde_json::Value = c
                .post(&base)
                .json(&json!({"metadata": {"name": name, "labels": {"application": "patroni"}}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let body = json!({"metadata": {"annotations": {"leader": name, "renewTime": n.to_string()}, "resourceVersion": rv}});
                let t = Instant::now();
                let r = c
                    .patch(format!("{base}/{name}"))
                    .header("content-type", "application/strategic-merge-patch+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200, "CAS renew failed");
                let v: serde_json::Value = r.json().await.unwrap();
                lat.push(t.elapsed());
                rv = v["metadata"]["resourceVersion"].as_str().unwrap().to_string();
                n += 1;
            }
            lat
        }));
    }
    let started = Instant::now();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let the watchers drain what was sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = events.load(Ordering::Relaxed);
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    let patches = lat.len() as f64;
    println!(
        "kubesim bench: {secs}s, {patchers} patchers (CAS strategic-merge PATCH), {watchers} watchers"
    );
    println!("  PATCH/s            {:.0}", patches / elapsed);
    println!(
        "  PATCH latency      p50 {:?}  p99 {:?}",
        pct(0.50),
        pct(0.99)
    );
    println!(
        "  watch events/s     {:.0} delivered ({} of {} expected = {:.1}%)",
        delivered as f64 / elapsed,
        delivered,
        (patches as u64 + patchers as u64) * watchers as u64,
        100.0 * delivered as f64 / ((patches + patchers as f64) * watchers as f64)
    );
    for t in watch_tasks {
        t.abort();
    }
}
