//! The port-patch Job: finds the tunnel's port and writes Patroni's `standby_cluster` into the
//! dynamic config on `<scope>-config`, by compare-and-set on its resourceVersion.
//!
//! Same shape as the other binaries: [`config`] → [`observe`] (wait for the tunnel Service, read
//! the ConfigMaps) → [`decide`] (pure) → [`act`] (create or compare-and-set, Event) → [`run`]
//! (the loop: a 409 restarts from observe) → one-line summary.

pub mod act;
pub mod config;
pub mod decide;
pub mod observe;
pub mod run;

use std::time::Duration;

use pgdr_core::dynamic_config;
use pgdr_core::k8s;
use serde_json::Value;

pub use config::{Config, Settings};
use decide::Target;
pub use run::{run, run_with};

/// Exit codes: the shared ones (README.md lists what each means for this Job).
pub use pgdr_core::exit;

/// Name used as field manager, Event source and log `binary`.
pub const COMPONENT: &str = "pgdr-port-patch";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] k8s::ClientError),
    #[error(
        "tunnel Service {namespace}/{name} was not usable within {waited:?} (last: {last}); check that the \
         TransportServerClaim exists on the primary site and that the platform created this Service \
         (PORT_PATCH_TUNNEL_SERVICE), or raise PORT_PATCH_DEADLINE"
    )]
    TunnelNotReady {
        namespace: String,
        name: String,
        waited: Duration,
        last: String,
    },
    #[error("tunnel Service {namespace}/{name} cannot be used: {reason}")]
    TunnelUnusable {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error("{action} {kind} {namespace}/{name} failed: {source}; {hint}")]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        hint: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error(
        "ConfigMap {namespace}/{name}: {reason}; the object was left untouched. Fix the annotation \
         (patronictl edit-config, or kubectl annotate --overwrite) and run the Job again"
    )]
    Malformed {
        namespace: String,
        name: String,
        reason: dynamic_config::MalformedConfig,
    },
    #[error(
        "ConfigMap {namespace}/{name}: the cluster is initialized without standby_cluster, but no running \
         primary confirms a promotion ({leader}); refusing to add standby_cluster because that would demote \
         this site when its primary returns. If this site must follow {target}, set PORT_PATCH_FORCE=true"
    )]
    NotStandbyUnconfirmed {
        namespace: String,
        name: String,
        leader: String,
        target: String,
    },
    #[error(
        "ConfigMap {namespace}/{name}: this site was promoted at {promoted_at} (promotion record \
         {namespace}/{record}); refusing to add standby_cluster, which would make it follow {target} \
         again. For a deliberate failback set portPatch.demotePromotedSite=true \
         (PORT_PATCH_DEMOTE_PROMOTED_SITE=true) and run the Job again"
    )]
    PromotedSite {
        namespace: String,
        name: String,
        record: String,
        promoted_at: String,
        target: String,
    },
    #[error(
        "could not finish with ConfigMap {namespace}/{name} within {waited:?} (last: {last}); rerun the Job"
    )]
    WriteDeadline {
        namespace: String,
        name: String,
        waited: Duration,
        last: String,
    },
}

impl Error {
    /// Every failure of the Job exits 1 (the message says what to do); bad configuration exits 2
    /// from `main`.
    pub fn exit_code(&self) -> u8 {
        exit::FAILED
    }

    /// Worth another attempt within the deadline: conflicts, transient API failures, and a
    /// cluster caught between states (just promoted, or restarting during an upgrade) whose
    /// leader has not yet reported itself primary.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api { source, .. } => k8s::is_transient(source),
            Error::NotStandbyUnconfirmed { .. } => true,
            _ => false,
        }
    }
}

/// What the run did, for the summary line and tests.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Created {
        target: Target,
    },
    Updated {
        target: Target,
        before: Option<Value>,
        resource_version: String,
    },
    Unchanged {
        target: Target,
    },
    LeftPromoted {
        leader: String,
        role: String,
    },
}

/// The Job's result: what happened, on which object, how long it took.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub outcome: Outcome,
    pub namespace: String,
    pub config_map: String,
    pub elapsed: Duration,
    /// How many compare-and-set attempts lost to a concurrent writer (409).
    pub conflicts: u32,
}

impl Report {
    /// The one line printed at the end.
    pub fn summary(&self) -> String {
        let obj = format!("{}/{}", self.namespace, self.config_map);
        let took = format!("{} ms", self.elapsed.as_millis());
        match &self.outcome {
            Outcome::Created { target } => format!(
                "created {obj} with standby_cluster {}:{} in {took}",
                target.host, target.port
            ),
            Outcome::Updated {
                target,
                before,
                resource_version,
            } => format!(
                "updated {obj} standby_cluster {} -> {}:{} (resourceVersion {resource_version}, {} conflict(s) retried) in {took}",
                decide::describe_standby(before.as_ref()),
                target.host,
                target.port,
                self.conflicts
            ),
            Outcome::Unchanged { target } => format!(
                "no change: {obj} already has standby_cluster {}:{} ({took})",
                target.host, target.port
            ),
            Outcome::LeftPromoted { leader, role } => format!(
                "left {obj} alone: the cluster was promoted (leader {leader} is {role}); standby_cluster not re-added ({took})"
            ),
        }
    }
}

pub(crate) fn api_error(
    action: &'static str,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> Error {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| Error::Api {
        action,
        kind,
        hint: k8s::hint(&source),
        namespace,
        name,
        source,
    }
}
