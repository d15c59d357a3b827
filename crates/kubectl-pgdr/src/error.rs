//! One error type; every variant says what failed, on which site and object, and what to do.

use std::time::Duration;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("site {site}: cannot use the kubeconfig (context {context}): {reason}")]
    Kubeconfig {
        site: String,
        context: String,
        reason: String,
    },
    #[error("site {site}: {action} {object} failed: {source} ({hint})")]
    Api {
        site: String,
        action: &'static str,
        object: String,
        #[source]
        source: Box<kube::Error>,
        hint: &'static str,
    },
    #[error("site {site}: ConfigMap {object} not found; {what}")]
    Missing {
        site: String,
        object: String,
        what: &'static str,
    },
    #[error(
        "site {site}: the config annotation of ConfigMap {object} cannot be used ({reason}); nothing was changed, fix it with `kubectl edit cm {object}`"
    )]
    Malformed {
        site: String,
        object: String,
        reason: String,
    },
    #[error(
        "site {site}: ConfigMap {object} kept changing under us ({attempts} compare-and-set attempts lost); nothing was overwritten, run the command again"
    )]
    Contention {
        site: String,
        object: String,
        attempts: u32,
    },
    #[error(
        "site {site}: the tunnel Service {service} {reason}; the platform creates it from the TransportServerClaim"
    )]
    Tunnel {
        site: String,
        service: String,
        reason: String,
    },
    #[error("refused, nothing was changed: {0}")]
    Refused(#[from] crate::plan::Refusal),
    #[error(
        "switchover stopped at step {step}: {reason}. The holds stay in place; once resolved, run `kubectl pgdr switchover --resume`"
    )]
    Stuck { step: &'static str, reason: String },
    #[error(
        "{what} did not happen within {timeout:?} (last seen: {last}). Nothing is undone; check `kubectl pgdr status`, then {next}"
    )]
    Timeout {
        what: String,
        timeout: Duration,
        last: String,
        next: &'static str,
    },
    #[error("not confirmed; nothing was changed")]
    NotConfirmed,
    #[error("site {site} {reason}")]
    NoMember { site: String, reason: String },
    #[error("cannot run kubectl ({0}); `psql` and `logs` run it: put it on PATH, or use --print")]
    Kubectl(String),
    #[error("cannot write the output: {0}")]
    Output(String),
}

impl Error {
    /// The process exit code for this error (`crate::EXIT_*`).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => crate::EXIT_CONFIG,
            Error::Refused(_)
            | Error::NotConfirmed
            | Error::Malformed { .. }
            | Error::Contention { .. }
            | Error::Missing { .. }
            | Error::NoMember { .. } => crate::EXIT_REFUSED,
            Error::Stuck { .. } | Error::Timeout { .. } => crate::EXIT_UNFINISHED,
            Error::Kubeconfig { .. }
            | Error::Api { .. }
            | Error::Tunnel { .. }
            | Error::Kubectl(_)
            | Error::Output(_) => crate::EXIT_API,
        }
    }
}

/// A short hint for an API failure, by status code.
pub fn hint(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) => match s.code {
            401 => "log in again: the kubeconfig credentials were refused",
            403 => "your user lacks RBAC permission on this object",
            404 => "check --namespace and the release name (--fullname)",
            409 => "another writer changed the object; run again",
            c if c >= 500 => "the API server is failing; retry later",
            _ => "check the request",
        },
        _ => "check the context and network connectivity to the API server",
    }
}

pub fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A script tells "nothing changed" (3) from "something may have changed" (4) from "could
    /// not talk to a site" (5).
    #[test]
    fn exit_codes_by_kind() {
        let rows: Vec<(Error, i32)> = vec![
            (
                Error::Config(ConfigError::BadSiteFlag("x".into())),
                crate::EXIT_CONFIG,
            ),
            (
                Error::Refused(crate::plan::Refusal::FencedMeanwhile),
                crate::EXIT_REFUSED,
            ),
            (Error::NotConfirmed, crate::EXIT_REFUSED),
            (
                Error::Contention {
                    site: "gold".into(),
                    object: "cm".into(),
                    attempts: 5,
                },
                crate::EXIT_REFUSED,
            ),
            (
                Error::Timeout {
                    what: "promotion".into(),
                    timeout: Duration::from_secs(1),
                    last: "replica".into(),
                    next: "retry",
                },
                crate::EXIT_UNFINISHED,
            ),
            (
                Error::Stuck {
                    step: "catch-up",
                    reason: "diverged".into(),
                },
                crate::EXIT_UNFINISHED,
            ),
            (
                Error::Tunnel {
                    site: "gold".into(),
                    service: "svc".into(),
                    reason: "does not exist".into(),
                },
                crate::EXIT_API,
            ),
            (Error::Output("closed".into()), crate::EXIT_API),
        ];
        for (e, want) in rows {
            assert_eq!(e.exit_code(), want, "{e}");
        }
    }
}
