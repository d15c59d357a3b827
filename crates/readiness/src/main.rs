//! `pgdr-readiness`: parse config, start telemetry, serve until SIGTERM, exit 0.

use std::process::ExitCode;

use pgdr_core::exit;
use pgdr_readiness::{COMPONENT, Config, VERSION};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{COMPONENT}: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    pgdr_core::telemetry::init(config.log_format, COMPONENT, VERSION, &config);
    let settings = match config.validate() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::from(exit::CONFIG);
        }
    };
    match pgdr_readiness::run(settings, shutdown_signal()).await {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            tracing::error!(error = %e, "failed");
            ExitCode::from(exit::FAILED)
        }
    }
}

/// SIGTERM (Kubernetes stopping the Pod) or Ctrl-C: a normal, graceful stop. The handler is
/// installed here, before serving starts, so an early SIGTERM is not fatal.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    async move {
        match term {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, shutting down"),
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops gracefully");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
