//! Errors of the emulated cluster: one variant per failing step, naming the object involved.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API {verb} {path} failed with {status}: {message}")]
    Api {
        verb: &'static str,
        path: String,
        status: u16,
        message: String,
    },

    #[error("{kind} {name}: not a valid object ({reason})")]
    Decode {
        kind: &'static str,
        name: String,
        reason: String,
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

    #[error("site {site}: {reason}")]
    Site { site: String, reason: String },

    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        what: String,
        waited: std::time::Duration,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
