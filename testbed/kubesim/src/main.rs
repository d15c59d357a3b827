//! `kubesim`: runs one in-memory Kubernetes API server and prints a kubeconfig for it.
//!
//! ```text
//! kubesim [--bind 127.0.0.1:0] [--context kubesim] [--namespace default]
//!         [--kubeconfig FILE] [--watch-timeout SECONDS] [--rbac]
//! ```
//! The kubeconfig goes to FILE if given, else to stdout. Runs until SIGINT or SIGTERM.
//! `--rbac` turns on bearer-token authentication and RBAC authorization; the kubeconfig then
//! carries the admin (`system:masters`) token.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: kubesim [--bind ADDR:PORT] [--context NAME] [--namespace NS] [--kubeconfig FILE] [--watch-timeout SECONDS] [--rbac]";

struct Args {
    cfg: kubesim::Config,
    context: String,
    namespace: String,
    kubeconfig: Option<String>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        cfg: kubesim::Config::default(),
        context: "kubesim".into(),
        namespace: "default".into(),
        kubeconfig: None,
    };
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        if flag == "--rbac" {
            a.cfg.rbac = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--bind" => {
                a.cfg.bind = value
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("--bind {value}: {e} (expected e.g. 127.0.0.1:0)"))?
            }
            "--context" => a.context = value,
            "--namespace" => a.namespace = value,
            "--kubeconfig" => a.kubeconfig = Some(value),
            "--watch-timeout" => {
                let s: u64 = value
                    .parse()
                    .map_err(|_| format!("--watch-timeout {value}: expected whole seconds"))?;
                a.cfg.watch_timeout = Duration::from_secs(s.max(1));
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    let (handle, serve) = match kubesim::Server::start(args.cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kubesim: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let kubeconfig = handle.kubeconfig_yaml(&args.context, &args.namespace);
    match &args.kubeconfig {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &kubeconfig) {
                eprintln!("kubesim: cannot write kubeconfig {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
        None => print!("{kubeconfig}"),
    }
    tracing::info!(url = %handle.url(), rbac = handle.rbac(), version = env!("CARGO_PKG_VERSION"), "kubesim serving");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kubesim: cannot install SIGTERM handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = serve => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("kubesim stopped");
    drop(handle);
    ExitCode::SUCCESS
}
