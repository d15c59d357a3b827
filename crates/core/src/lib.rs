//! Shared library of the Patroni DR binaries (port-patch Job, failover CronJob, readiness sidecar).
//!
//! What belongs here: code at least two binaries need (configuration parsing, telemetry, exit
//! codes, retries, Kubernetes and Patroni access, the dynamic-config rules). Decisions of one
//! binary stay in that binary's crate.
//!
//! Every binary has the same shape: `config` (one struct from the environment, validated into
//! `Settings`) → `observe` (I/O) → a pure `decide` → `act` → `run`; `main` only parses the config
//! with [`config::from_env`], starts [`telemetry::init`], calls `run` and maps the result to an
//! [`exit`] code.

pub mod config;
pub mod exit;
pub mod k8s;
pub mod lineage;
pub mod patroni;
pub mod retry;
pub mod telemetry;
pub mod tls;

/// The documents shared with the other processes (re-exported: the binaries name them through
/// core or directly).
pub use pgdr_contract as contract;
pub use pgdr_contract::{dynamic_config, promotion_record};

pub use config::{ConfigError, Dur, LogFormat, Secret, Url};
