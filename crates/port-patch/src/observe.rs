//! Observe: the tunnel Service (waited for), `<scope>-config` and the leader. Kubernetes reads
//! only; no decisions.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use pgdr_core::dynamic_config::{CONFIG_ANNOTATION, INITIALIZE_ANNOTATION};
use pgdr_core::k8s::{self, Kube};
use pgdr_core::retry::{self, RetryError};
use serde_json::Value;
use tracing::warn;

use crate::decide::PromotionRecord;
use crate::decide::{
    self, ConfigState, LeaderState, Observed, ServiceProblem, ServiceRules, Target,
};
use crate::{Error, Settings, api_error};

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

/// Waits (up to the deadline) for the tunnel Service to exist with a usable port.
pub async fn tunnel_target(kube: &Kube, s: &Settings) -> Result<Target, Error> {
    let api = kube.api::<Service>();
    let namespace = kube.namespace.as_str();
    let rules = ServiceRules {
        port_field: s.port_field,
        port_name: s.port_name.clone(),
        host_mode: s.host_mode,
        host_override: s.host.clone(),
    };
    let look = || async {
        let svc = api.get_opt(&s.tunnel_service).await.map_err(Wait::Api)?;
        let svc = svc.ok_or(Wait::Missing)?;
        decide::endpoint_from_service(&svc, namespace, &rules).map_err(Wait::Problem)
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
        RetryError::Fatal(Wait::Api(source)) => {
            api_error("reading", "Service", namespace, &s.tunnel_service)(source)
        }
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

/// `<scope>-config` (as the object, for Events, and as what the decision needs) and the leader.
pub async fn config_and_leader(
    kube: &Kube,
    s: &Settings,
) -> Result<(Observed, Option<ConfigMap>), Error> {
    let ns = kube.namespace.as_str();
    let config_cm = kube
        .config_maps()
        .get_opt(&s.config_map)
        .await
        .map_err(api_error("reading", "ConfigMap", ns, &s.config_map))?;
    let leader = leader(kube, s).await?;
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
    Ok((observed, config_cm))
}

/// The leader lock holder and its Pod's role. A missing leader object or Pod is an answer
/// (None), not an error: on a fresh install neither exists yet.
async fn leader(kube: &Kube, s: &Settings) -> Result<Option<LeaderState>, Error> {
    let ns = kube.namespace.as_str();
    let leader_cm = kube
        .config_maps()
        .get_opt(&s.leader_config_map)
        .await
        .map_err(api_error("reading", "ConfigMap", ns, &s.leader_config_map))?;
    let member = leader_cm
        .and_then(|cm| cm.metadata.annotations)
        .and_then(|mut a| a.remove("leader"))
        .filter(|m| !m.is_empty());
    let Some(member) = member else {
        return Ok(None);
    };
    let pod = kube
        .api::<Pod>()
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

/// The failover's durable promotion record, if it exists and records a confirmed promotion.
pub async fn promotion_record(kube: &Kube, s: &Settings) -> Result<Option<PromotionRecord>, Error> {
    let name = &s.promotion_record_configmap;
    let cm = kube.config_maps().get_opt(name).await.map_err(api_error(
        "reading",
        "ConfigMap",
        &kube.namespace,
        name,
    ))?;
    Ok(cm
        .and_then(|cm| cm.data)
        .and_then(|data| PromotionRecord::from_data(&data)))
}
