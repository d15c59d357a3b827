//! The binary's exit codes and output, without Patroni.

use std::process::{Command, Output};

fn run(vars: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgdr-failover"))
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("running pgdr-failover")
}

const BASE: &[(&str, &str)] = &[
    ("FAILOVER_SITE", "golddr"),
    ("FAILOVER_PEER_SITE", "gold"),
    ("FAILOVER_NAMESPACE", "abc123-prod"),
    ("FAILOVER_SCOPE", "patroni"),
    ("FAILOVER_STATE_CONFIGMAP", "patroni-failover-state"),
    ("FAILOVER_TUNNEL_SERVICE", "patroni-gold"),
    ("FAILOVER_REPLICATION_USER", "replicator"),
    ("FAILOVER_REPLICATION_PASSWORD", "do-not-print-me"),
    ("FAILOVER_PEER_SLOT_NAME", "standby_gold"),
    ("FAILOVER_API_TIMEOUT", "1s"),
];

#[test]
fn missing_or_bad_variable_exits_2_naming_it() {
    let out = run(&BASE[1..]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILOVER_SITE"));

    let mut vars = BASE.to_vec();
    vars.push(("FAILOVER_MODE", "yolo"));
    let out = run(&vars);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FAILOVER_MODE"));
}

#[test]
fn unreachable_api_server_exits_1_without_printing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // Port 9 on loopback: nothing listens, every request is refused.
    std::fs::write(
        &kubeconfig,
        kubesim::kubeconfig_yaml("http://127.0.0.1:9", "x", "abc123-prod"),
    )
    .unwrap();
    let mut vars = BASE.to_vec();
    let path = kubeconfig.display().to_string();
    vars.push(("KUBECONFIG", &path));
    vars.push(("FAILOVER_LOG_FORMAT", "plain"));
    let out = run(&vars);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("FAILED"), "{all}");
    assert!(!all.contains("do-not-print-me"), "{all}");
}
