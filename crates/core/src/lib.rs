//! Shared library of the Patroni DR binaries (port-patch Job, failover CronJob, readiness sidecar).
//!
//! Each binary keeps a thin `main`: it parses its config struct with [`config::from_env`], starts
//! [`telemetry::init`], calls its library and maps the result to an exit code.

#![forbid(unsafe_code)]

pub mod config;
pub mod dynamic_config;
pub mod k8s;
pub mod patroni;
pub mod retry;
pub mod telemetry;
pub mod tls;

pub use config::{ConfigError, Dur, LogFormat, Secret};
