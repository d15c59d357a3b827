//! The port-patch Job: finds the tunnel's port and writes Patroni's `standby_cluster` into the
//! dynamic config on `<scope>-config`, by compare-and-set on its resourceVersion.
//!
//! Pipeline: wait for the tunnel Service → observe the ConfigMaps → [`plan::plan`] (pure) →
//! create or compare-and-set → Event + one-line summary. A 409 restarts from observe.

#![forbid(unsafe_code)]

pub mod config;
pub mod plan;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use pgdr_core::dynamic_config::{self, CONFIG_ANNOTATION, INITIALIZE_ANNOTATION};
use pgdr_core::k8s::{self, EventSpec};
use pgdr_core::retry::{self, RetryError};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, warn};

pub use config::{Config, Settings};
use plan::{
    ConfigState, LeaderState, Observed, Plan, Refusal, ServiceProblem, ServiceRules, Target,
};

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
    /// Worth another attempt within the deadline: conflicts, transient API failures, and a
    /// cluster caught between states (just promoted, or restarting during an upgrade) whose
    /// leader has not yet reported itself primary.
    fn is_retryable(&self) -> bool {
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
                plan::describe_standby(before.as_ref()),
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

/// Runs the Job with a client built from the environment.
pub async fn run(settings: &Settings) -> Result<Report, Error> {
    let (client, default_ns) = k8s::client(settings.request_timeout).await?;
    let namespace = settings.namespace.clone().unwrap_or(default_ns);
    run_with(client, &namespace, settings).await
}

/// Runs the Job against `client` in `namespace`.
pub async fn run_with(client: Client, namespace: &str, s: &Settings) -> Result<Report, Error> {
    let started = Instant::now();
    let deadline = started + s.deadline;

    let target = wait_for_target(&client, namespace, s)
        .instrument(info_span!("wait_for_tunnel", service = %s.tunnel_service))
        .await?;
    info!(host = %target.host, port = target.port, "tunnel target found");

    let conflicts = std::sync::atomic::AtomicU32::new(0);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let attempt = || async {
        let result = observe_and_apply(&client, namespace, s, &target).await;
        if let Err(Error::Api { source, .. }) = &result
            && k8s::is_conflict(source)
        {
            conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        result
    };
    let outcome = retry::until_deadline(
        "compare-and-set of the config annotation",
        remaining,
        retry::default_backoff(),
        attempt,
        Error::is_retryable,
    )
    .instrument(info_span!("apply", config_map = %s.config_map))
    .await
    .map_err(|e| match e {
        RetryError::Fatal(e) => e,
        RetryError::Deadline { elapsed, last } => Error::WriteDeadline {
            namespace: namespace.to_string(),
            name: s.config_map.clone(),
            waited: elapsed,
            last: last.unwrap_or_else(|| "no attempt finished".into()),
        },
    })?;

    Ok(Report {
        outcome,
        namespace: namespace.to_string(),
        config_map: s.config_map.clone(),
        elapsed: started.elapsed(),
        conflicts: conflicts.into_inner(),
    })
}

/// Why one look at the Service did not give a target.
#[derive(Debug)]
enum Wait {
    Missing,
    Problem(ServiceProblem),
    Api(kube::Error),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Missing => f.write_str("the Service does not exist yet"),
            Wait::Problem(ServiceProblem::NotReady(r) | ServiceProblem::Unusable(r)) => {
                f.write_str(r)
            }
            Wait::Api(e) => write!(f, "{e} ({})", k8s::hint(e)),
        }
    }
}

async fn wait_for_target(client: &Client, namespace: &str, s: &Settings) -> Result<Target, Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let rules = ServiceRules {
        port_field: s.port_field,
        port_name: s.port_name.clone(),
        host_mode: s.host_mode,
        host_override: s.host.clone(),
    };
    let look = || async {
        let svc = api.get_opt(&s.tunnel_service).await.map_err(Wait::Api)?;
        let svc = svc.ok_or(Wait::Missing)?;
        plan::endpoint_from_service(&svc, namespace, &rules).map_err(Wait::Problem)
    };
    let retryable = |w: &Wait| match w {
        Wait::Missing | Wait::Problem(ServiceProblem::NotReady(_)) => true,
        Wait::Problem(ServiceProblem::Unusable(_)) => false,
        Wait::Api(e) => k8s::is_transient(e),
    };
    let (host, port) = retry::until_deadline(
        "tunnel Service",
        s.deadline,
        retry::default_backoff(),
        look,
        retryable,
    )
    .await
    .map_err(|e| match e {
        RetryError::Deadline { elapsed, last } => Error::TunnelNotReady {
            namespace: namespace.into(),
            name: s.tunnel_service.clone(),
            waited: elapsed,
            last: last.unwrap_or_else(|| "no answer from the API server".into()),
        },
        RetryError::Fatal(Wait::Api(source)) => Error::Api {
            action: "reading",
            kind: "Service",
            namespace: namespace.into(),
            name: s.tunnel_service.clone(),
            hint: k8s::hint(&source),
            source,
        },
        RetryError::Fatal(other) => Error::TunnelUnusable {
            namespace: namespace.into(),
            name: s.tunnel_service.clone(),
            reason: other.to_string(),
        },
    })?;
    Ok(Target {
        host,
        port,
        primary_slot_name: s.primary_slot_name.clone(),
        create_replica_methods: s.create_replica_methods.clone(),
    })
}

fn api_error(
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

/// One observe → plan → act round. A lost compare-and-set comes back as a retryable 409.
async fn observe_and_apply(
    client: &Client,
    ns: &str,
    s: &Settings,
    target: &Target,
) -> Result<Outcome, Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let config_cm = cms.get_opt(&s.config_map).await.map_err(api_error(
        "reading",
        "ConfigMap",
        ns,
        &s.config_map,
    ))?;
    let leader = observe_leader(client, ns, s).await?;
    let observed = Observed {
        config_map: config_cm.as_ref().map(|cm| {
            let ann = cm.metadata.annotations.as_ref();
            ConfigState {
                resource_version: cm.metadata.resource_version.clone().unwrap_or_default(),
                initialize: ann.and_then(|a| a.get(INITIALIZE_ANNOTATION)).cloned(),
                config: ann.and_then(|a| a.get(CONFIG_ANNOTATION)).cloned(),
            }
        }),
        leader,
    };
    tracing::debug!(?observed, "observed");

    let decision = plan::plan(&observed, target, &s.base_config, s.force);
    let target_text = format!("{}:{}", target.host, target.port);
    match decision {
        Err(Refusal::Malformed(reason)) => {
            if let Some(cm) = &config_cm {
                let spec = EventSpec {
                    type_: "Warning",
                    reason: "MalformedDynamicConfig",
                    message: format!("port-patch left this ConfigMap untouched: {reason}"),
                    action: "Validate",
                };
                k8s::emit_event(client, cm, &spec, COMPONENT).await;
            }
            Err(Error::Malformed {
                namespace: ns.into(),
                name: s.config_map.clone(),
                reason,
            })
        }
        Err(Refusal::NotStandbyUnconfirmed { leader }) => Err(Error::NotStandbyUnconfirmed {
            namespace: ns.into(),
            name: s.config_map.clone(),
            leader: match leader {
                None => "no leader holds the lock".into(),
                Some(LeaderState { member, role: None }) => {
                    format!("leader {member} reports no role")
                }
                Some(LeaderState {
                    member,
                    role: Some(r),
                }) => format!("leader {member} is {r}"),
            },
            target: target_text,
        }),
        Ok(Plan::Unchanged { .. }) => Ok(Outcome::Unchanged {
            target: target.clone(),
        }),
        Ok(Plan::LeavePromoted { leader, role }) => {
            info!(%leader, %role, "cluster was promoted; leaving standby_cluster out (set PORT_PATCH_FORCE=true to override)");
            if let Some(cm) = &config_cm {
                let spec = EventSpec {
                    type_: "Normal",
                    reason: "StandbyClusterNotRestored",
                    message: format!(
                        "port-patch did not add standby_cluster ({target_text}): the cluster was promoted, leader {leader} is {role}"
                    ),
                    action: "Skip",
                };
                k8s::emit_event(client, cm, &spec, COMPONENT).await;
            }
            Ok(Outcome::LeftPromoted { leader, role })
        }
        Ok(Plan::Create { config }) => {
            let created = create_config_map(&cms, ns, s, &config).await?;
            let spec = EventSpec {
                type_: "Normal",
                reason: "StandbyClusterConfigured",
                message: format!(
                    "port-patch created this ConfigMap with standby_cluster {target_text}"
                ),
                action: "Create",
            };
            k8s::emit_event(client, &created, &spec, COMPONENT).await;
            Ok(Outcome::Created {
                target: target.clone(),
            })
        }
        Ok(Plan::Update {
            resource_version,
            config,
            before,
        }) => {
            let rendered = dynamic_config::render(&config);
            // resourceVersion in the body is a precondition: a concurrent writer makes this a 409.
            let patch = json!({
                "metadata": {
                    "resourceVersion": resource_version,
                    "annotations": { CONFIG_ANNOTATION: rendered },
                }
            });
            let pp = PatchParams {
                field_manager: Some(COMPONENT.into()),
                ..PatchParams::default()
            };
            let updated = cms
                .patch(&s.config_map, &pp, &Patch::Merge(&patch))
                .await
                .map_err(api_error("updating", "ConfigMap", ns, &s.config_map))?;
            let spec = EventSpec {
                type_: "Normal",
                reason: "StandbyClusterConfigured",
                message: format!(
                    "port-patch set standby_cluster to {target_text} (was {})",
                    plan::describe_standby(before.as_ref())
                ),
                action: "Update",
            };
            k8s::emit_event(client, &updated, &spec, COMPONENT).await;
            Ok(Outcome::Updated {
                target: target.clone(),
                before,
                resource_version: updated.metadata.resource_version.unwrap_or_default(),
            })
        }
    }
}

/// The leader lock holder and its Pod's role. A missing leader object or Pod is an answer
/// (None), not an error: on a fresh install neither exists yet.
async fn observe_leader(
    client: &Client,
    ns: &str,
    s: &Settings,
) -> Result<Option<LeaderState>, Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let leader_cm = cms.get_opt(&s.leader_config_map).await.map_err(api_error(
        "reading",
        "ConfigMap",
        ns,
        &s.leader_config_map,
    ))?;
    let member = leader_cm
        .and_then(|cm| cm.metadata.annotations)
        .and_then(|mut a| a.remove("leader"))
        .filter(|m| !m.is_empty());
    let Some(member) = member else {
        return Ok(None);
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod = pods
        .get_opt(&member)
        .await
        .map_err(api_error("reading", "Pod", ns, &member))?;
    let role = pod
        .and_then(|p| p.metadata.annotations)
        .and_then(|a| a.get("status").cloned())
        .and_then(|status| serde_json::from_str::<Value>(&status).ok())
        .and_then(|v| v.get("role").and_then(Value::as_str).map(str::to_string));
    if role.is_none() {
        warn!(%member, "leader Pod missing or without a readable Patroni status annotation");
    }
    Ok(Some(LeaderState { member, role }))
}

async fn create_config_map(
    cms: &Api<ConfigMap>,
    ns: &str,
    s: &Settings,
    config: &serde_json::Map<String, Value>,
) -> Result<ConfigMap, Error> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(s.config_map.clone()),
            namespace: Some(ns.to_string()),
            labels: Some(s.labels.clone()),
            annotations: Some(BTreeMap::from([(
                CONFIG_ANNOTATION.to_string(),
                dynamic_config::render(config),
            )])),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let pp = PostParams {
        field_manager: Some(COMPONENT.into()),
        ..PostParams::default()
    };
    // A 409 here means someone (Patroni, Helm) created it first: the retry re-observes it.
    cms.create(&pp, &cm)
        .await
        .map_err(api_error("creating", "ConfigMap", ns, &s.config_map))
}
