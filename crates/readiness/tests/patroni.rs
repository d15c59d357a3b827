//! The sidecar against real Patroni members: a primary and a replica on "gold", a standby
//! leader on "golddr"; then PostgreSQL dies under a paused Patroni, then Patroni itself dies.
//!
//! Needs the tools from `scripts/deps.sh` (PostgreSQL binaries, the Patroni venv).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pgdr_core::Dur;
use pgdr_patroni_harness::{PatroniNode, Scratch};
use pgdr_readiness::Config;
use serde_json::Value;

const STARTUP: Duration = Duration::from_secs(180);

struct Sidecar {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn sidecar(rt: &tokio::runtime::Runtime, node: &PatroniNode, site: &str) -> Sidecar {
    let mut raw: Config = pgdr_core::config::from_vars("READINESS_", std::iter::empty()).unwrap();
    raw.patroni_url = pgdr_core::Url::new(format!("http://{}", node.rest_addr()));
    raw.poll_interval = Dur::millis(200);
    raw.request_timeout = Dur::secs(2);
    raw.site = site.into();
    let settings = raw.validate().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(pgdr_readiness::serve(listener, settings, async move {
        let _ = rx.await;
    }));
    Sidecar { addr, _stop: tx }
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    probe::blocking_get(addr, path)
}

/// A minimal blocking GET over a std socket, as a kubelet probe does it (plain HTTP/1.1).
mod probe {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    pub fn blocking_get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text[9..12].parse().unwrap();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (code, body)
    }
}

/// Waits until `/ready` and `/primary` answer `ready`/`primary`; returns `/status`.
fn wait_codes(addr: SocketAddr, who: &str, ready: u16, primary: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = get(addr, "/ready");
        let p = get(addr, "/primary");
        if r.0 == ready && p.0 == primary {
            let status: Value = serde_json::from_str(&get(addr, "/status").1).unwrap();
            println!(
                "{who:28} /ready {} /primary {}  {}",
                r.0, p.0, status["reason"]
            );
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{who}: wanted /ready {ready} /primary {primary}, got {} ({}) / {} ({})",
            r.0,
            r.1.trim(),
            p.0,
            p.1.trim()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn real_members_map_to_http_codes() {
    let scratch =
        Scratch::new().expect("PostgreSQL and Patroni are installed (run scripts/deps.sh)");
    let rt = tokio::runtime::Runtime::new().unwrap();
    pgdr_core::tls::install_crypto_provider();
    let gold = kubesim::Server::spawn(kubesim::Config::default()).unwrap();
    let golddr = kubesim::Server::spawn(kubesim::Config::default()).unwrap();

    let pg0 = PatroniNode::builder("demo", "gold0")
        .start(&scratch, &gold)
        .unwrap();
    pg0.wait_rest("/primary", 200, STARTUP).unwrap();
    let pg1 = PatroniNode::builder("demo", "gold1")
        .start(&scratch, &gold)
        .unwrap();
    let dr0 = PatroniNode::builder("demo", "golddr0")
        .standby_cluster(pg0.as_standby_source(None))
        .start(&scratch, &golddr)
        .unwrap();
    pg1.wait_rest("/replica", 200, STARTUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", pg1.logs(40)));
    dr0.wait_rest("/standby-leader", 200, STARTUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", dr0.logs(40)));

    let s0 = sidecar(&rt, &pg0, "gold");
    let s1 = sidecar(&rt, &pg1, "gold");
    let sd = sidecar(&rt, &dr0, "golddr");

    let st = wait_codes(s0.addr, "primary", 200, 200);
    assert_eq!(st["role"], "primary");
    assert_eq!(st["standby_cluster"], false);
    assert_eq!(st["member"], "gold0");
    let st = wait_codes(s1.addr, "replica within lag", 200, 503);
    assert_eq!(st["role"], "replica");
    assert!(st["lag_bytes"].as_u64().is_some(), "{st}");
    let st = wait_codes(sd.addr, "standby leader", 200, 503);
    assert_eq!(st["role"], "standby_leader");
    assert_eq!(st["standby_cluster"], true);
    let (_, metrics) = get(s0.addr, "/metrics");
    assert!(
        metrics.contains("pgdr_role{role=\"primary\"} 1"),
        "{metrics}"
    );

    // PostgreSQL gone while Patroni runs (paused, so it does not restart it).
    pg0.patronictl(&["pause", "--wait", "demo"]).unwrap();
    let postmaster = pg1.postmaster_pid().expect("replica's postmaster");
    let killed = std::process::Command::new("kill")
        .args(["-9", &postmaster.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let st = wait_codes(s1.addr, "replica, PostgreSQL killed", 503, 503);
    assert!(
        st["reason"].as_str().unwrap().starts_with("PostgreSQL is"),
        "{st}"
    );
    assert_eq!(st["patroni_reachable"], true);

    // Patroni gone.
    pg1.kill_hard();
    let st = wait_codes(s1.addr, "replica, Patroni killed", 503, 503);
    assert_eq!(st["patroni_reachable"], false);
    assert!(
        st["reason"].as_str().unwrap().contains("unreachable"),
        "{st}"
    );
    assert_eq!(
        get(s1.addr, "/live").0,
        200,
        "liveness does not follow Patroni"
    );
}

/// The split-brain latch against real PostgreSQL: "gold" a primary, "golddr" its standby; the
/// standby is promoted with the promotion marker while gold keeps running (both writable). The
/// sidecar on gold, checking the peer each poll, turns `/primary` to 503 within a poll or two.
#[test]
fn split_brain_latch_against_a_promoted_peer() {
    let scratch =
        Scratch::new().expect("PostgreSQL and Patroni are installed (run scripts/deps.sh)");
    let rt = tokio::runtime::Runtime::new().unwrap();
    pgdr_core::tls::install_crypto_provider();
    let gold = kubesim::Server::spawn(kubesim::Config::default()).unwrap();
    let golddr = kubesim::Server::spawn(kubesim::Config::default()).unwrap();
    let pg0 = PatroniNode::builder("demo", "gold0")
        .start(&scratch, &gold)
        .unwrap();
    pg0.wait_rest("/primary", 200, STARTUP).unwrap();
    let dr0 = PatroniNode::builder("demo", "golddr0")
        .standby_cluster(pg0.as_standby_source(None))
        .start(&scratch, &golddr)
        .unwrap();
    dr0.wait_rest("/standby-leader", 200, STARTUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", dr0.logs(40)));

    let creds = &pg0.spec().credentials;
    let mut raw: Config = pgdr_core::config::from_vars(
        "READINESS_",
        [
            ("READINESS_PEER_HOST", dr0.address().to_string()),
            ("READINESS_PEER_PORT", dr0.pg_port().to_string()),
            ("READINESS_PEER_SSLMODE", "prefer".into()),
            ("READINESS_LOCAL_PG_HOST", pg0.address().to_string()),
            ("READINESS_LOCAL_PG_PORT", pg0.pg_port().to_string()),
            ("READINESS_REPLICATION_USER", creds.replication_user.clone()),
            (
                "READINESS_REPLICATION_PASSWORD",
                creds.replication_password.clone(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    )
    .unwrap();
    raw.patroni_url = pgdr_core::Url::new(format!("http://{}", pg0.rest_addr()));
    raw.poll_interval = Dur::millis(1000);
    raw.site = "gold".into();
    let settings = raw.validate().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(pgdr_readiness::serve(listener, settings, async move {
        let _ = rx.await;
    }));

    // The peer is a standby: a normal primary, no split brain.
    wait_codes(addr, "primary, peer standby", 200, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st: Value = serde_json::from_str(&get(addr, "/status").1).unwrap();
        if st["peer_check"]["state"] == "seen" || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(st["peer_check"]["state"], "seen", "{st}");
    assert_eq!(st["peer_check"]["writable"], false, "{st}");
    assert_eq!(st["split_brain"], false, "{st}");

    // Promote golddr the way the agent does: the marker names gold's timeline and the fork.
    pg0.psql("CREATE TABLE t AS SELECT 1 AS x").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let fork = dr0
        .psql("SELECT pg_last_wal_replay_lsn()")
        .unwrap()
        .trim()
        .to_string();
    let marker = format!("epoch=1 timeline=1 fork_lsn={fork} site=golddr");
    dr0.patch_config(&serde_json::json!({"standby_cluster": null,
        "postgresql": {"parameters": {"pgdr.promoted_from": marker}}}))
        .unwrap();
    dr0.wait_writable(STARTUP)
        .unwrap_or_else(|e| panic!("{e}\n{}", dr0.logs(40)));
    dr0.wait_query("SHOW pgdr.promoted_from", &marker, Duration::from_secs(60))
        .unwrap();
    let promoted = Instant::now();
    // Gold is still writable: only the sidecar's latch keeps a GSLB (/primary) and this site's
    // own Services (/ready) away from it.
    assert_eq!(pg0.psql("SELECT pg_is_in_recovery()").unwrap(), "f");
    let st = wait_codes(addr, "primary, peer promoted from us", 503, 503);
    println!(
        "/primary 503 {:?} after the peer was writable with its marker",
        promoted.elapsed()
    );
    assert!(promoted.elapsed() < Duration::from_secs(5), "{st}");
    assert!(
        st["reason"].as_str().unwrap().contains("split brain"),
        "{st}"
    );
    assert_eq!(st["split_brain"], true, "{st}");
    assert_eq!(st["split_brain_latch"]["fork_lsn"], fork.as_str(), "{st}");
    assert_eq!(st["split_brain_latch"]["timeline"], 1, "{st}");
    assert_eq!(
        st["peer_check"]["lineage"]["kind"], "peer_authoritative",
        "{st}"
    );
    let (_, metrics) = get(addr, "/metrics");
    assert!(metrics.contains("pgdr_split_brain 1"), "{metrics}");
    assert!(metrics.contains("pgdr_peer_authoritative 1"), "{metrics}");
    // The password never reaches /status.
    assert!(!get(addr, "/status").1.contains(&creds.replication_password));
}

/// WAL preservation on a real data directory: the copied segments are what `pg_waldump` reads
/// (the README's recipe), and the rows written after the fork point are in them.
#[test]
fn preserved_wal_reads_with_pg_waldump() {
    use pgdr_readiness::preserve;
    let scratch =
        Scratch::new().expect("PostgreSQL and Patroni are installed (run scripts/deps.sh)");
    let gold = kubesim::Server::spawn(kubesim::Config::default()).unwrap();
    let pg0 = PatroniNode::builder("demo", "gold0")
        .start(&scratch, &gold)
        .unwrap();
    pg0.wait_writable(STARTUP).unwrap();
    let from = pg0.psql("SELECT pg_current_wal_lsn()").unwrap();
    pg0.psql("CREATE TABLE diverged AS SELECT generate_series(1, 1000) AS x")
        .unwrap();
    let filenode = pg0.psql("SELECT pg_relation_filenode('diverged')").unwrap();
    pg0.psql("SELECT pg_switch_wal()").unwrap();
    let end = pg0.psql("SELECT pg_current_wal_flush_lsn()").unwrap();
    let data = pg0.paths().data_dir();
    let out = preserve::preserve(
        &data,
        &preserve::Request {
            timeline: 1,
            from_lsn: pgdr_core::contract::lsn::parse(&from).unwrap(),
            end_lsn: pgdr_core::contract::lsn::parse(&end),
        },
    )
    .unwrap();
    assert_eq!(
        out.state,
        pgdr_core::contract::sidecar::DivergenceState::Preserved,
        "{out:?}"
    );
    assert!(out.files >= 1 && out.missing.is_empty(), "{out:?}");
    let dir = std::path::PathBuf::from(out.dir.clone().unwrap());
    assert_eq!(
        dir.parent().unwrap(),
        data.parent().unwrap().join("pgdr-diverged")
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("MANIFEST.json")).unwrap()).unwrap();
    assert_eq!(manifest["segment_size"], 16 * 1024 * 1024, "{manifest}");
    assert_eq!(manifest["segment_size_source"], "segment files");
    let waldump = scratch.tools().pg_bin.join("pg_waldump");
    let dump = std::process::Command::new(&waldump)
        .args(["--path", dir.to_str().unwrap(), "--timeline", "1"])
        .args(["--start", &from, "--end", &end])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&dump.stderr),
        text
    );
    let rows = text
        .lines()
        .filter(|l| l.contains("rmgr: Heap") && l.contains(&format!("/{filenode}")))
        .count();
    println!(
        "pg_waldump: {} records, {rows} heap records of the table written after the fork",
        text.lines().count()
    );
    assert!(rows > 0, "{text}");
}
