//! Errors of the drill library: one variant per failing step, naming the object involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error("API {verb} {path} failed with {status}: {message}")]
    Api {
        verb: &'static str,
        path: String,
        status: u16,
        message: String,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("starting the API server of site {site}: {source}")]
    ApiServer {
        site: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "pod {pod} container {container}: no local program for image {image:?}; add an ImageMap entry for it"
    )]
    ImageUnmapped {
        pod: String,
        container: String,
        image: String,
    },

    #[error("pod {pod} container {container}: {reason}")]
    ContainerConfig {
        pod: String,
        container: String,
        reason: String,
    },

    #[error("invalid cron schedule {schedule:?}: {reason}")]
    Cron { schedule: String, reason: String },

    #[error("locating tools: {0}")]
    Tools(#[from] pgdr_patroni_harness::HarnessError),

    #[error("tunnel for {service}: {source}")]
    Tunnel {
        service: String,
        #[source]
        source: std::io::Error,
    },

    #[error("site {site}: {reason}")]
    Site { site: String, reason: String },

    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        what: String,
        waited: std::time::Duration,
    },

    #[error("{what} failed ({status}): {stderr}")]
    Command {
        what: String,
        status: String,
        stderr: String,
    },

    #[error("SQL on {target}: {source}{}", .source.as_db_error().map(|d| format!(": {} ({})", d.message(), d.code().code())).unwrap_or_default())]
    Sql {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("rehearsal check failed: {0}")]
    Check(String),

    #[error("{path}: {reason}")]
    Path { path: PathBuf, reason: String },
}

impl DrillError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        DrillError::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = DrillError> = std::result::Result<T, E>;
