//! One writable primary, with real Patroni 4.1.5 + PostgreSQL on two in-memory API servers: the
//! DR site is promoted (by the agent, leaving its promotion marker) while the primary site keeps
//! taking writes; the primary site's own agent then sees the peer writable and forked from it,
//! fences itself (hold), records the divergence, waits for the WAL to be preserved (a readiness
//! sidecar stand-in), and rejoins: Patroni rewinds it and it streams from the promoted site.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{NS_A, client, init_logs, pair, runtime, settings};
use kubesim::ServerHandle;
use pgdr_failover::{Report, Settings, Verdict};
use pgdr_tunnel::Tunnel;
use serde_json::{Value, json};

fn get(server: &ServerHandle, path: &str) -> Value {
    let (code, obj) = server.request(
        "GET",
        &format!("/api/v1/namespaces/{NS_A}/{path}"),
        None,
        None,
    );
    assert_eq!(code, 200, "{path}: {obj}");
    obj
}

fn dynamic_config(server: &ServerHandle, scope: &str) -> Value {
    let cm = get(server, &format!("configmaps/{scope}-config"));
    serde_json::from_str(cm["metadata"]["annotations"]["config"].as_str().unwrap()).unwrap()
}

/// A readiness sidecar stand-in on the leader's address: `/status` says the WAL is preserved.
async fn sidecar(ip: std::net::Ipv4Addr) -> u16 {
    let body = json!({"role": "fenced", "divergence": {"state": "preserved",
        "dir": "pgdr-diverged/1-0_0", "files": 1, "bytes": 16777216, "missing": []}});
    stub(ip, body.to_string()).await
}

/// An HTTP server answering every request with 200 and `body`.
async fn stub(ip: std::net::Ipv4Addr, body: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

/// Runs the promoted site's agent, as its CronJob would every minute, until its promotion
/// marker carries the new timeline's switchpoint (Patroni records the timeline history within a
/// loop or two of the promotion; a fenced peer waits for it). Returns the last report and the
/// marker.
async fn run_until_fork_published(
    server: &ServerHandle,
    s: &Settings,
    run: &str,
    limit: Duration,
) -> (Report, Option<pgdr_core::lineage::PromotionMarker>) {
    let started = Instant::now();
    loop {
        let r = pgdr_failover::run_with(s, client(server).await, run)
            .await
            .expect("run");
        let marker =
            dynamic_config(server, "golddr")["postgresql"]["parameters"]["pgdr.promoted_from"]
                .as_str()
                .map(|m| pgdr_core::lineage::PromotionMarker::parse(m).unwrap());
        if marker.as_ref().is_some_and(|m| !m.fork_pending) || started.elapsed() > limit {
            return (r, marker);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn run_until(
    server: &ServerHandle,
    s: &Settings,
    run: &str,
    stop: Verdict,
    limit: Duration,
) -> Vec<Report> {
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < limit {
        let r = pgdr_failover::run_with(s, client(server).await, run)
            .await
            .expect("run");
        let done = r.verdict == stop;
        seen.push(r);
        if done {
            break;
        }
    }
    seen
}

#[test]
fn the_old_primary_fences_itself_records_the_divergence_and_rejoins() {
    init_logs();
    let started = Instant::now();
    let p = pair();
    let site_a = &p._site_a;
    let rt = runtime();

    // The platform's reverse tunnel on the primary site: gold -> golddr.
    let reverse = Tunnel::spawn(
        "127.0.0.1:0".parse().unwrap(),
        SocketAddr::from((p.b.address(), p.b.pg_port())),
    )
    .unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gold-golddr"},
        "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": reverse.local_addr().port(), "protocol": "TCP"}]}});
    let (code, body) = site_a.request(
        "POST",
        &format!("/api/v1/namespaces/{NS_A}/services"),
        None,
        Some(&svc),
    );
    assert_eq!(code, 201, "{body}");

    let sidecar_port = rt.block_on(sidecar(p.a.address()));
    let port = sidecar_port.to_string();
    let s_a = settings(&[
        ("FAILOVER_SITE", "gold"),
        ("FAILOVER_PEER_SITE", "golddr"),
        ("FAILOVER_NAMESPACE", NS_A),
        ("FAILOVER_SCOPE", "gold"),
        ("FAILOVER_STATE_CONFIGMAP", "gold-failover-state"),
        ("FAILOVER_TUNNEL_SERVICE", "gold-golddr"),
        (
            "FAILOVER_PROMOTION_RECORD_CONFIGMAP",
            "gold-promotion-record",
        ),
        ("FAILOVER_READINESS_PORT", &port),
        // kubesim has no Service DNS (like the drill): the follow form names the ClusterIP.
        ("FAILOVER_TUNNEL_HOST_MODE", "clusterIP"),
    ]);
    let s_b = settings(&[]);

    // The primary site's agent while all is well: the peer is a standby.
    let r = rt
        .block_on(pgdr_failover::run_with(
            &s_a,
            rt.block_on(client(site_a)),
            "gold-1",
        ))
        .unwrap();
    assert_eq!(r.verdict, Verdict::Ok, "{:?}", r.reasons);

    // The DR site loses the primary (the tunnel is cut) and its agent promotes it.
    rt.block_on(pgdr_failover::run_with(
        &s_b,
        rt.block_on(client(&p.site_b)),
        "golddr-1",
    ))
    .unwrap();
    p.tunnel.cut();
    let seen = rt.block_on(run_until(
        &p.site_b,
        &s_b,
        "golddr-2",
        Verdict::Promote,
        Duration::from_secs(40),
    ));
    assert_eq!(
        seen.last().unwrap().verdict,
        Verdict::Promote,
        "{:?}",
        seen.iter().map(|r| r.verdict).collect::<Vec<_>>()
    );
    let marker =
        dynamic_config(&p.site_b, "golddr")["postgresql"]["parameters"]["pgdr.promoted_from"]
            .as_str()
            .expect("the promotion left its marker")
            .to_string();
    let marker = pgdr_core::lineage::PromotionMarker::parse(&marker).unwrap();
    assert_eq!(marker.timeline, 1);
    p.b.psql("CREATE TABLE after_promotion(x int); INSERT INTO after_promotion VALUES (42)")
        .unwrap();

    // Meanwhile the old primary keeps taking writes: the divergence.
    p.a.psql("CREATE TABLE diverged(x int); INSERT INTO diverged SELECT generate_series(1, 5000)")
        .unwrap();
    let a_end =
        pgdr_core::lineage::parse_lsn(&p.a.psql("SELECT pg_current_wal_flush_lsn()").unwrap())
            .unwrap();
    assert!(a_end > marker.fork_lsn);

    // The promoted site sees the old primary writable once the tunnel works again: split
    // brain, and it is the authoritative side (it was promoted from the peer's timeline).
    p.tunnel.heal();
    let (r, published) = rt.block_on(run_until_fork_published(
        &p.site_b,
        &s_b,
        "golddr-3",
        Duration::from_secs(30),
    ));
    // The fork gold records is the published switchpoint (at or after the pending position).
    let marker = published
        .filter(|m| !m.fork_pending)
        .unwrap_or_else(|| panic!("golddr publishes its switchpoint: {:?}", r.reasons));
    assert_eq!(r.verdict, Verdict::SplitBrain, "{:?}", r.reasons);
    assert!(
        r.reasons
            .iter()
            .any(|x| x.contains("this site is authoritative")),
        "{:?}",
        r.reasons
    );
    let (_, events_b) = p.site_b.request(
        "GET",
        &format!("/api/v1/namespaces/{}/events", common::NS_B),
        None,
        None,
    );
    assert!(events_b.to_string().contains("SplitBrain"), "{events_b}");

    // The old primary's agent: fence (hold) → divergence → preserve → follow → rejoined.
    let fenced_at = Instant::now();
    let seen = rt.block_on(run_until(
        site_a,
        &s_a,
        "gold-2",
        Verdict::Rejoined,
        Duration::from_secs(60),
    ));
    let verdicts: Vec<_> = seen.iter().map(|r| r.verdict.to_string()).collect();
    assert_eq!(
        seen.last().unwrap().verdict,
        Verdict::Rejoined,
        "{verdicts:?}: {:?}",
        seen.last().unwrap().reasons
    );
    eprintln!(
        "FIGURES fenced_to_rejoined_s={:.1} verdicts={verdicts:?}",
        fenced_at.elapsed().as_secs_f64()
    );

    let cfg = dynamic_config(site_a, "gold");
    let f = &cfg["pgdr_fence"];
    assert_eq!(f["reason"], "peer-authoritative", "{cfg}");
    assert_eq!(f["peer"], "golddr");
    assert_eq!(f["phase"], "follow");
    assert_eq!(f["timeline"], 1);
    assert_eq!(
        f["fork_lsn"],
        pgdr_core::lineage::format_lsn(marker.fork_lsn)
    );
    let local_end = pgdr_core::lineage::parse_lsn(f["local_end_lsn"].as_str().unwrap()).unwrap();
    assert!(
        local_end >= a_end,
        "our end {local_end:X} covers the last write {a_end:X}"
    );
    assert_eq!(
        f["diverged_bytes"].as_u64().unwrap(),
        local_end - marker.fork_lsn
    );
    assert_eq!(f["preserve"]["from_lsn"], f["fork_lsn"]);
    assert_eq!(
        cfg["standby_cluster"]["primary_slot_name"], "standby_gold",
        "{cfg}"
    );

    let state: Value = serde_json::from_str(
        get(site_a, "configmaps/gold-failover-state")["data"]["state"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state["divergence"]["fork_lsn"], f["fork_lsn"], "{state}");
    assert_eq!(state["divergence"]["diverged_bytes"], f["diverged_bytes"]);
    assert_eq!(state["fence_reason"], "peer-authoritative");
    assert!(
        state["fenced_at"].is_string() && state["rejoined_at"].is_string(),
        "{state}"
    );
    let events: Vec<String> = get(site_a, "events")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    for want in ["SplitBrain", "Fenced", "Diverged"] {
        assert!(events.iter().any(|e| e == want), "{want} in {events:?}");
    }

    // It streams from the promoted site: its rows arrive, the diverged ones were rewound away.
    p.b.psql("INSERT INTO after_promotion VALUES (43)").unwrap();
    p.a.wait_query(
        "SELECT count(*) FROM after_promotion",
        "2",
        Duration::from_secs(30),
    )
    .unwrap();
    assert_eq!(p.a.psql("SELECT pg_is_in_recovery()").unwrap(), "t");
    assert_eq!(
        p.a.psql("SELECT to_regclass('diverged') IS NULL").unwrap(),
        "t"
    );
    eprintln!("FIGURES total_s={:.1}", started.elapsed().as_secs_f64());
}

/// Scenario (b) in small: the primary site is cut off (no tunnel either way) while the witness
/// says the application runs on the peer, which was promoted. The isolated primary fences
/// itself read-only with the fork unknown; once the tunnel heals it learns the fork from the
/// peer's marker, records and preserves the divergence, and rejoins.
#[test]
fn an_isolated_primary_fences_itself_on_the_witness_and_rejoins_once_reachable() {
    init_logs();
    let p = pair();
    let site_a = &p._site_a;
    let rt = runtime();
    let reverse = Tunnel::spawn(
        "127.0.0.1:0".parse().unwrap(),
        SocketAddr::from((p.b.address(), p.b.pg_port())),
    )
    .unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gold-golddr"},
        "spec": {"clusterIP": "127.0.0.1", "ports": [{"port": reverse.local_addr().port(), "protocol": "TCP"}]}});
    let (code, body) = site_a.request(
        "POST",
        &format!("/api/v1/namespaces/{NS_A}/services"),
        None,
        Some(&svc),
    );
    assert_eq!(code, 201, "{body}");
    let sidecar_port = rt.block_on(sidecar(p.a.address())).to_string();
    // The GSLB's answer for gold: the application is sent to the peer.
    let witness = rt.block_on(stub(
        std::net::Ipv4Addr::LOCALHOST,
        json!({"primary": "alive", "reason": "the GSLB sends the application to golddr"})
            .to_string(),
    ));
    let witness_url = format!("http://127.0.0.1:{witness}/gold");
    let s_a = settings(&[
        ("FAILOVER_SITE", "gold"),
        ("FAILOVER_PEER_SITE", "golddr"),
        ("FAILOVER_NAMESPACE", NS_A),
        ("FAILOVER_SCOPE", "gold"),
        ("FAILOVER_STATE_CONFIGMAP", "gold-failover-state"),
        ("FAILOVER_TUNNEL_SERVICE", "gold-golddr"),
        (
            "FAILOVER_PROMOTION_RECORD_CONFIGMAP",
            "gold-promotion-record",
        ),
        ("FAILOVER_READINESS_PORT", &sidecar_port),
        ("FAILOVER_TUNNEL_HOST_MODE", "clusterIP"),
        ("FAILOVER_ALLOW_NO_WITNESS", "false"),
        ("FAILOVER_WITNESS_HTTP_URL", &witness_url),
    ]);
    let s_b = settings(&[]);

    // Partition: both directions cut. GoldDR promotes (its own witness is not this test's topic).
    rt.block_on(pgdr_failover::run_with(
        &s_b,
        rt.block_on(client(&p.site_b)),
        "golddr-1",
    ))
    .unwrap();
    p.tunnel.cut();
    reverse.cut();
    let seen = rt.block_on(run_until(
        &p.site_b,
        &s_b,
        "golddr-2",
        Verdict::Promote,
        Duration::from_secs(40),
    ));
    assert_eq!(seen.last().unwrap().verdict, Verdict::Promote);
    p.a.psql("CREATE TABLE isolated(x int); INSERT INTO isolated SELECT generate_series(1, 1000)")
        .unwrap();

    // Gold's agent: the peer is silent, the witness says the application moved → after N=3
    // samples it fences itself (hold: read-only, nothing rewound, the fork unknown).
    let r = rt
        .block_on(pgdr_failover::run_with(
            &s_a,
            rt.block_on(client(site_a)),
            "gold-1",
        ))
        .unwrap();
    assert_eq!(r.verdict, Verdict::Fenced, "{:?}", r.reasons);
    let f = dynamic_config(site_a, "gold")["pgdr_fence"].clone();
    assert_eq!(f["reason"], "witness-moved", "{f}");
    assert_eq!(f["phase"], "hold");
    assert!(
        f.get("fork_lsn").is_none(),
        "the fork is unknown while the peer is unreachable: {f}"
    );
    p.a.wait_rest("/standby-leader", 200, Duration::from_secs(30))
        .expect("demoted to a read-only standby leader");
    p.a.wait_query("SELECT pg_is_in_recovery()", "t", Duration::from_secs(30))
        .unwrap();
    assert!(
        p.a.psql("INSERT INTO isolated VALUES (0)").is_err(),
        "read-only"
    );
    assert_eq!(
        p.a.psql("SELECT count(*) FROM isolated").unwrap(),
        "1000",
        "kept, not rewound"
    );
    let r = rt
        .block_on(pgdr_failover::run_with(
            &s_a,
            rt.block_on(client(site_a)),
            "gold-2",
        ))
        .unwrap();
    assert_eq!(
        r.verdict,
        Verdict::Fenced,
        "stays on hold while unreachable: {:?}",
        r.reasons
    );

    // The partition heals: fork from the peer's marker, divergence preserved, rejoined. GoldDR's
    // agent runs as it does every minute: it publishes its new timeline's switchpoint in its
    // promotion marker (until then the marker's fork is pending and Gold waits).
    reverse.heal();
    let (r, marker) = rt.block_on(run_until_fork_published(
        &p.site_b,
        &s_b,
        "golddr-3",
        Duration::from_secs(30),
    ));
    assert!(
        marker
            .as_ref()
            .is_some_and(|m| !m.fork_pending && m.epoch == 1),
        "{marker:?}: {:?}",
        r.reasons
    );
    let seen = rt.block_on(run_until(
        site_a,
        &s_a,
        "gold-3",
        Verdict::Rejoined,
        Duration::from_secs(60),
    ));
    let verdicts: Vec<_> = seen.iter().map(|r| r.verdict.to_string()).collect();
    assert_eq!(
        seen.last().unwrap().verdict,
        Verdict::Rejoined,
        "{verdicts:?}"
    );
    let f = dynamic_config(site_a, "gold")["pgdr_fence"].clone();
    assert_eq!(f["phase"], "follow", "{f}");
    assert!(f["diverged_bytes"].as_u64().unwrap() > 0, "{f}");
    assert!(f["preserve"].is_object(), "{f}");
    p.b.psql("CREATE TABLE healed(x int); INSERT INTO healed VALUES (1)")
        .unwrap();
    p.a.wait_query("SELECT count(*) FROM healed", "1", Duration::from_secs(30))
        .unwrap();
}
