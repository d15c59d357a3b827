//! The binary's exit codes and output, without Patroni.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

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
    (
        "FAILOVER_PROMOTION_RECORD_CONFIGMAP",
        "patroni-promotion-record",
    ),
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

/// The chart's default with TLS on (`require`) and its `verify-ca` rendering start the run
/// (here: exit 1 on the unreachable API server, not 2); `verify-ca` without a CA exits 2.
#[test]
fn tls_modes_from_the_chart_pass_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kubesim::kubeconfig_yaml("http://127.0.0.1:9", "x", "abc123-prod"),
    )
    .unwrap();
    let kubeconfig = kubeconfig.display().to_string();
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ca.crt");
    let cases: &[(&[(&str, &str)], i32)] = &[
        (&[("FAILOVER_TUNNEL_SSLMODE", "require")], 1),
        (
            &[
                ("FAILOVER_TUNNEL_SSLMODE", "verify-ca"),
                ("FAILOVER_TUNNEL_SSLROOTCERT", ca),
            ],
            1,
        ),
        (&[("FAILOVER_TUNNEL_SSLMODE", "verify-ca")], 2),
    ];
    for (extra, code) in cases {
        let mut vars = BASE.to_vec();
        vars.push(("KUBECONFIG", &kubeconfig));
        vars.push(("FAILOVER_LOG_FORMAT", "plain"));
        vars.extend_from_slice(extra);
        let out = run(&vars);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{extra:?}: {stderr}");
        if *code == 2 {
            assert!(stderr.contains("FAILOVER_TUNNEL_SSLROOTCERT"), "{stderr}");
        }
    }
}
