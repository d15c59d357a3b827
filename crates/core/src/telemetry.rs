//! Logging for every binary: `RUST_LOG` filter (default `info`), JSON or plain lines.

use std::fmt::Debug;
use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber and logs the start-up line with the binary's name, version
/// and effective configuration. Secrets in `config` print as `***` through their own `Debug`.
/// Calling it twice is harmless (the second subscriber is ignored), which keeps tests simple.
pub fn init(format: LogFormat, binary: &str, version: &str, config: &impl Debug) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Plain => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    if installed.is_ok() {
        tracing::info!(binary, version, config = ?config, "starting");
    }
}

/// Plain lines on stderr with `RUST_LOG` (else `default_filter`), without the start-up line: for
/// the test-bed tools (kubesim, the drill) that log like the binaries but have no config struct.
/// Calling it twice is harmless.
pub fn init_plain(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .try_init();
}
