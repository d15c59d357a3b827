//! Errors of the drill: one variant per failing step, naming the object involved. The emulated
//! cluster's own errors pass through as [`DrillError::Cluster`].

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(transparent)]
    Cluster(#[from] pgdr_minicluster::Error),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

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
