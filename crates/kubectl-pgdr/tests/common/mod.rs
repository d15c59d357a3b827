//! Shared set-up: two in-memory API servers (one per site), a config file naming both, and the
//! plugin run in-process with captured output.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use kubectl_pgdr::cli::Cli;
use kubesim::ServerHandle;
use serde_json::{Value, json};

pub const NS: &str = "abc123-prod";

pub struct Sites {
    pub gold: ServerHandle,
    pub golddr: ServerHandle,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Sites {
    /// Both servers, the namespace on each, and a config file (`tunnelHostMode: clusterIP`, as
    /// there is no Service DNS here).
    pub fn start() -> Sites {
        let gold = kubesim::Server::spawn(kubesim::Config::default()).expect("kubesim");
        let golddr = kubesim::Server::spawn(kubesim::Config::default()).expect("kubesim");
        for s in [&gold, &golddr] {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
            let (code, body) = s.request("POST", "/api/v1/namespaces", None, Some(&ns));
            assert_eq!(code, 201, "{body}");
        }
        let dir = tempfile::tempdir().unwrap();
        let kc_gold = dir.path().join("gold.kubeconfig");
        let kc_dr = dir.path().join("golddr.kubeconfig");
        std::fs::write(&kc_gold, gold.kubeconfig_yaml("gold", NS)).unwrap();
        std::fs::write(&kc_dr, golddr.kubeconfig_yaml("golddr", NS)).unwrap();
        let config = dir.path().join("pgdr.yaml");
        std::fs::write(
            &config,
            format!(
                "namespace: {NS}\ntunnelHostMode: clusterIP\nsites:\n  - name: gold\n    context: gold\n    kubeconfig: {}\n  - name: golddr\n    context: golddr\n    kubeconfig: {}\n",
                kc_gold.display(),
                kc_dr.display()
            ),
        )
        .unwrap();
        Sites {
            gold,
            golddr,
            dir,
            config,
        }
    }

    pub fn server(&self, site: &str) -> &ServerHandle {
        if site == "gold" {
            &self.gold
        } else {
            &self.golddr
        }
    }

    /// Runs `kubectl pgdr <args>` in-process; returns (exit code, stdout, stderr). `input` is stdin.
    pub async fn run(&self, args: &[&str], input: &str) -> (i32, String, String) {
        let mut argv = vec!["kubectl-pgdr", "--config", self.config.to_str().unwrap()];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("arguments parse");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdin = input.as_bytes();
        let mut io = kubectl_pgdr::run::Io {
            out: &mut out,
            err: &mut err,
            input: &mut stdin,
            started: Instant::now(),
        };
        let code = match kubectl_pgdr::run(cli, &mut io).await {
            Ok(c) => c,
            Err(e) => {
                let _ = std::io::Write::write_all(&mut err, format!("error: {e}\n").as_bytes());
                e.exit_code()
            }
        };
        let (out, err) = (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        );
        eprintln!("$ kubectl pgdr {}\n{out}{err}", args.join(" "));
        (code, out, err)
    }
}

/// What a run of the plugin binary left: exit code (None: killed), stderr, and whether it was
/// killed after recording the step it was asked to stop at.
pub struct BinRun {
    pub code: Option<i32>,
    pub stderr: String,
    pub killed: bool,
}

impl Sites {
    /// Runs the plugin binary as a process (as a user does), with the config file. With
    /// `kill_after`, SIGKILLs it as soon as it prints `step <kill_after>:` (the step is recorded).
    pub fn run_bin(&self, args: &[&str], kill_after: Option<&str>) -> BinRun {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-pgdr"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start kubectl-pgdr");
        let marker = kill_after.map(|s| format!("step {s}:"));
        let mut stderr = String::new();
        let mut killed = false;
        let err = child.stderr.take().expect("stderr piped");
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            stderr.push_str(&line);
            stderr.push('\n');
            // Lines read `[   0.4s] step demote: ...`.
            let text = line.split_once("] ").map_or(line.as_str(), |(_, t)| t);
            if !killed
                && marker
                    .as_ref()
                    .is_some_and(|m| text.starts_with(m.as_str()))
            {
                let _ = child.kill();
                killed = true;
            }
        }
        let status = child.wait().expect("wait for kubectl-pgdr");
        eprintln!(
            "$ kubectl pgdr {}{}\n{stderr}",
            args.join(" "),
            if killed { "   (SIGKILLed)" } else { "" }
        );
        BinRun {
            code: status.code(),
            stderr,
            // A kill that came after the process had finished on its own is not a kill.
            killed: killed && status.code().is_none(),
        }
    }
}

pub fn path(kind: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/{kind}/{name}")
}

pub fn create(server: &ServerHandle, kind: &str, body: Value) {
    let (code, resp) = server.request(
        "POST",
        &format!("/api/v1/namespaces/{NS}/{kind}"),
        None,
        Some(&body),
    );
    assert_eq!(code, 201, "create {kind}: {resp}");
}

pub fn get(server: &ServerHandle, kind: &str, name: &str) -> Value {
    let (code, body) = server.request("GET", &path(kind, name), None, None);
    assert_eq!(code, 200, "get {kind}/{name}: {body}");
    body
}

pub fn annotation(obj: &Value, key: &str) -> Option<String> {
    obj["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

/// The dynamic config of a site, parsed.
pub fn dynamic_config(server: &ServerHandle) -> Value {
    let cm = get(server, "configmaps", "patroni-config");
    serde_json::from_str(&annotation(&cm, "config").expect("config annotation")).unwrap()
}

/// The tunnel Service the platform creates on `server` towards the other site.
pub fn tunnel(server: &ServerHandle, name: &str, ip: &str, port: u16) {
    create(
        server,
        "services",
        json!({"metadata": {"name": name}, "spec": {"clusterIP": ip, "ports": [{"port": port, "targetPort": port, "protocol": "TCP"}]}}),
    );
}
