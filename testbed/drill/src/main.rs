//! `pgdr-drill`: both sites on one machine. Thin: parses arguments, sends the logs to a file,
//! calls the library.
//!
//! stdout carries the timeline for people; everything else (the drill's tracing, then every pod's
//! logs) goes to the log file, whose path is printed at the start and at the end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use pgdr_drill::cli::{self, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut command = match Command::parse(&args) {
        Ok(c) => c,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let log = command
        .options()
        .log_file
        .clone()
        .unwrap_or_else(default_log_file);
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "pgdr-drill: cannot open the log file {}: {e}",
                log.display()
            );
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .init();
    match &mut command {
        Command::Up(o) | Command::Rehearse(o) => o.log_file = Some(log.clone()),
    }
    println!("full logs (drill, then every pod): {}", log.display());
    let result = cli::run(command).await;
    println!("full logs: {}", log.display());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgdr-drill: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `pgdr-drill-<UTC time>.log` in the temporary folder.
fn default_log_file() -> PathBuf {
    let now = jiff::Timestamp::now();
    let stamp = jiff::fmt::strtime::format("%Y%m%d-%H%M%S", now).unwrap_or_default();
    std::env::temp_dir().join(format!("pgdr-drill-{stamp}.log"))
}
