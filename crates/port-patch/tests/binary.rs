//! The `pgdr-port-patch` binary as a Job runs it: environment in, exit code and summary out.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::json;

const NS: &str = "abc123-prod";

fn run(vars: &[(&str, &str)]) -> (Output, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgdr-port-patch"));
    cmd.env_clear().env("RUST_LOG", "info");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let out = cmd.output().expect("binary runs");
    (out, started.elapsed())
}

#[test]
fn missing_or_bad_variables_exit_2_naming_them() {
    let (out, _) = run(&[("PORT_PATCH_SCOPE", "demo")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PORT_PATCH_TUNNEL_SERVICE"), "{err}");

    let (out, _) = run(&[
        ("PORT_PATCH_SCOPE", "demo"),
        ("PORT_PATCH_TUNNEL_SERVICE", "svc"),
        (
            "PORT_PATCH_PROMOTION_RECORD_CONFIGMAP",
            "demo-promotion-record",
        ),
        ("PORT_PATCH_BASE_CONFIG", "[]"),
        ("PORT_PATCH_LOG_FORMAT", "plain"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PORT_PATCH_BASE_CONFIG"), "{err}");
}

#[test]
fn happy_path_exits_0_with_a_summary_and_json_logs() {
    let server = kubesim::Server::spawn(kubesim::Config::default()).unwrap();
    let post = |path: &str, body: serde_json::Value| {
        let (code, resp) = server.request("POST", path, None, Some(&body));
        assert_eq!(code, 201, "{resp}");
    };
    post("/api/v1/namespaces", json!({"metadata": {"name": NS}}));
    post(
        &format!("/api/v1/namespaces/{NS}/services"),
        json!({"metadata": {"name": "demo-primary-gold"}, "spec": {"clusterIP": "172.30.0.9", "ports": [{"port": 43504}]}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml("golddr", NS)).unwrap();
    let vars = [
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("PORT_PATCH_SCOPE", "demo"),
        ("PORT_PATCH_TUNNEL_SERVICE", "demo-primary-gold"),
        (
            "PORT_PATCH_PROMOTION_RECORD_CONFIGMAP",
            "demo-promotion-record",
        ),
        ("PORT_PATCH_LABELS", "application=patroni"),
    ];
    let (out, took) = run(&vars);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    assert!(stdout.contains("created abc123-prod/demo-config with standby_cluster demo-primary-gold.abc123-prod.svc:43504"), "{stdout}");
    // JSON logs by default, starting with the effective configuration.
    let first: serde_json::Value =
        serde_json::from_str(stderr.lines().next().unwrap()).expect("JSON log line");
    assert_eq!(first["message"], "starting");
    assert!(
        first["config"].as_str().unwrap().contains("tunnel_service"),
        "{first}"
    );
    println!(
        "happy path (create) wall time: {:.0} ms",
        took.as_secs_f64() * 1000.0
    );

    let (out, took) = run(&vars);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pgdr-port-patch: no change"));
    println!(
        "second run (no-op) wall time: {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
}

#[test]
fn failure_exits_non_zero() {
    let server = kubesim::Server::spawn(kubesim::Config::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig_yaml("golddr", NS)).unwrap();
    let (out, _) = run(&[
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("PORT_PATCH_SCOPE", "demo"),
        ("PORT_PATCH_TUNNEL_SERVICE", "demo-primary-gold"),
        (
            "PORT_PATCH_PROMOTION_RECORD_CONFIGMAP",
            "demo-promotion-record",
        ),
        ("PORT_PATCH_DEADLINE", "1s"),
        ("PORT_PATCH_LOG_FORMAT", "plain"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAILED") && stdout.contains("demo-primary-gold"),
        "{stdout}"
    );
}
