//! The one error type of the test kit.
//!
//! Every variant says what failed, for which node, and (where there is one) what to do about it,
//! because these messages end up in CI logs read by someone who did not write the test.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Result alias used throughout the test kit.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Errors from locating tools, preparing directories, running processes and waiting for them.
#[derive(thiserror::Error)]
pub enum HarnessError {
    /// A binary the tests need is not installed where we looked.
    #[error("{what} not found (looked in {looked}); run `make deps` first")]
    ToolMissing { what: &'static str, looked: String },

    /// A file system or process-spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A helper command (psql, patronictl, pg_ctl, id) ran but reported failure.
    #[error("{node}: `{command}` failed ({status}): {stderr}")]
    Command {
        node: String,
        command: String,
        status: String,
        stderr: String,
    },

    /// A deadline passed before a condition held.
    #[error("{node}: timed out after {waited:.1?} waiting for {what}; last observation: {last}")]
    Timeout {
        node: String,
        what: String,
        waited: Duration,
        last: String,
    },

    /// Patroni stopped while a test still needed it.
    #[error("{node}: Patroni exited unexpectedly ({status}); its log is {log}")]
    PatroniExited {
        node: String,
        status: String,
        log: PathBuf,
    },

    /// The in-memory Kubernetes API server refused a fixture request.
    #[error("{node}: Kubernetes API {method} {path} answered {status}: {body}")]
    Kube {
        node: String,
        method: &'static str,
        path: String,
        status: u16,
        body: String,
    },

    /// A request to a Patroni REST API failed at the transport or protocol level.
    #[error("{node}: HTTP {method} {url}: {detail}")]
    Http {
        node: String,
        method: String,
        url: String,
        detail: String,
    },

    /// The node's settings cannot be turned into a Patroni configuration.
    #[error("{node}: invalid node settings: {detail}")]
    Config { node: String, detail: String },

    /// No loopback address with free PostgreSQL and REST ports was found.
    #[error(
        "no loopback address with free ports {ports:?} after {tries} tries \
         (is something listening on 0.0.0.0 on one of those ports?)"
    )]
    NoAddress { ports: Vec<u16>, tries: u32 },
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// `Debug` prints the message rather than the struct: tests `unwrap()`/`expect()` these errors, and
/// a panic message should read like the `Display` form (which already names the cause).
impl fmt::Debug for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}
