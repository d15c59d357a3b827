//! `pgdr-port-patch`: parse config, start telemetry, run the Job, map the result to an exit code.

use std::process::ExitCode;

use pgdr_port_patch::{COMPONENT, Config, exit};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{COMPONENT}: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    pgdr_core::telemetry::init(
        config.log_format,
        COMPONENT,
        env!("CARGO_PKG_VERSION"),
        &config,
    );
    let settings = match config.validate() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            return ExitCode::from(exit::CONFIG);
        }
    };
    match pgdr_port_patch::run(&settings).await {
        Ok(report) => {
            tracing::info!(summary = %report.summary(), "done");
            println!("{COMPONENT}: {}", report.summary());
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            tracing::error!(error = %e, exit_code = e.exit_code(), "failed");
            println!("{COMPONENT}: FAILED: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
