//! Kubernetes access: client construction (KUBECONFIG or in-cluster), the [`Kube`] handle every
//! binary uses (client, namespace, per-call budget), error classification and Events.
//!
//! Every call is bounded: kube's own retry layer is switched off (it retries 429/503/504 up to
//! 15 times, far past any budget) and our retries run inside [`retry::until_deadline`].

use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::retry::{self, RetryError};

/// Why no Kubernetes client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no Kubernetes configuration found (neither KUBECONFIG/~/.kube/config nor the in-cluster service account): {0}; \
         run inside a Pod with a service account or set KUBECONFIG"
    )]
    Infer(#[source] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client from the configuration: {0}")]
    Build(#[source] kube::Error),
}

/// Builds a client from KUBECONFIG (or `~/.kube/config`), falling back to the in-cluster
/// service account. `timeout` bounds connect and each read, so no API call can hang.
/// Returns the client and the namespace the configuration points at.
pub async fn client(timeout: Duration) -> Result<(Client, String), ClientError> {
    let config = kube::Config::infer().await.map_err(ClientError::Infer)?;
    let namespace = config.default_namespace.clone();
    Ok((bounded(config, timeout)?, namespace))
}

/// A client from `config` with every request bounded by `timeout` and kube's own retry layer
/// off: callers retry within their own budget, which kube's retries (up to 15 tries of
/// 429/503/504 with backoff) would not respect. Tests build their clients here too.
pub fn bounded(mut config: kube::Config, timeout: Duration) -> Result<Client, ClientError> {
    crate::tls::install_crypto_provider();
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    config.default_retry = false;
    Client::try_from(config).map_err(ClientError::Build)
}

/// HTTP status of an API error response, if the error is one.
pub fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    status_code(e) == Some(404)
}

/// 409: a stale resourceVersion on update, or a create that lost a race (AlreadyExists).
pub fn is_conflict(e: &kube::Error) -> bool {
    status_code(e) == Some(409)
}

/// Errors worth retrying: conflicts, throttling, server-side failures and transport errors
/// (connection refused, timeouts). 4xx other than 409/429 mean the request itself is wrong.
pub fn is_transient(e: &kube::Error) -> bool {
    match status_code(e) {
        Some(code) => code == 409 || code == 429 || code >= 500,
        None => matches!(
            e,
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_)
        ),
    }
}

/// A short hint for the operator, by status code.
pub fn hint(e: &kube::Error) -> &'static str {
    match status_code(e) {
        Some(401) => "check the service account token",
        Some(403) => "check the Role/RoleBinding of the service account",
        Some(404) => "check the namespace and object name",
        Some(409) => "another writer changed the object; retrying usually succeeds",
        Some(c) if c >= 500 => "the API server is failing; retry later",
        _ => "check connectivity to the API server",
    }
}

/// A Kubernetes call that failed for good (after retries within its budget).
#[derive(Debug, thiserror::Error)]
#[error("Kubernetes API: cannot {action} {object}: {detail}; {hint}")]
pub struct ApiError {
    pub action: &'static str,
    /// `namespace/name`.
    pub object: String,
    pub detail: String,
    pub hint: &'static str,
}

/// Turns the end of a retried call into an [`ApiError`] that says what the server answered.
pub fn api_error(action: &'static str, object: &str, e: RetryError<kube::Error>) -> ApiError {
    let (detail, hint) = match e {
        RetryError::Fatal(e) => (e.to_string(), hint(&e)),
        RetryError::Deadline { elapsed, last } => (
            match last {
                Some(last) => format!("still failing after {elapsed:.1?}: {last}"),
                None => format!("no answer within {elapsed:.1?}"),
            },
            "the API server is failing or unreachable; nothing was changed by this call",
        ),
    };
    ApiError {
        action,
        object: object.to_string(),
        detail,
        hint,
    }
}

/// Kubernetes access for one run: the client, the namespace, and the budget of each call
/// (retries included).
#[derive(Clone)]
pub struct Kube {
    pub client: Client,
    pub namespace: String,
    pub deadline: Duration,
}

impl Kube {
    /// The API of a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn config_maps(&self) -> Api<ConfigMap> {
        self.api()
    }

    /// `namespace/name`, for messages.
    pub fn object(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }

    /// GET with retries on transient errors within the budget; `Ok(None)` on 404.
    pub async fn get_opt<K>(&self, api: &Api<K>, name: &str) -> Result<Option<K>, ApiError>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let got = retry::until_deadline(
            &format!("GET {name}"),
            self.deadline,
            retry::fast_backoff(),
            || async { api.get_opt(name).await },
            is_transient,
        )
        .await;
        got.map_err(|e| api_error("read", &self.object(name), e))
    }

    /// Records an Event about `object` within this handle's budget. Never fails the caller.
    pub async fn event<K>(&self, object: &K, spec: &EventSpec, component: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        emit_event(&self.client, object, spec, component, self.deadline).await
    }
}

/// What to record as a Kubernetes Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// CamelCase reason, e.g. `StandbyClusterConfigured`.
    pub reason: &'static str,
    /// Human-readable; must never contain a secret.
    pub message: String,
    /// What was done, e.g. `Update`.
    pub action: &'static str,
}

/// Builds a core/v1 Event about `object` (pure, so its shape is unit-tested).
pub fn build_event<K>(
    object: &K,
    spec: &EventSpec,
    component: &str,
    instance: &str,
    now: jiff::Timestamp,
) -> Event
where
    K: Resource<DynamicType = ()>,
{
    let name = object.name_any();
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: object.namespace(),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(name),
            namespace: object.namespace(),
            uid: object.meta().uid.clone(),
            resource_version: object.meta().resource_version.clone(),
            ..ObjectReference::default()
        },
        reason: Some(spec.reason.to_string()),
        message: Some(spec.message.clone()),
        type_: Some(spec.type_.to_string()),
        action: Some(spec.action.to_string()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        reporting_component: Some(component.to_string()),
        reporting_instance: Some(instance.to_string()),
        ..Event::default()
    }
}

/// Records an Event about `object`, giving up after `budget`. An Event is a courtesy: failure is
/// logged, not returned, so it never turns a successful run into a failed one, nor a quick run
/// into a slow one. One attempt: an Event worth retrying for longer is not worth the delay.
pub async fn emit_event<K>(
    client: &Client,
    object: &K,
    spec: &EventSpec,
    component: &str,
    budget: Duration,
) where
    K: Resource<DynamicType = ()>,
{
    let Some(ns) = object.namespace() else {
        tracing::warn!(
            reason = spec.reason,
            "object has no namespace; event not recorded"
        );
        return;
    };
    // The Pod name identifies which Job run reported it.
    let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| component.to_string());
    let event = build_event(object, spec, component, &instance, jiff::Timestamp::now());
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    match tokio::time::timeout(budget, api.create(&PostParams::default(), &event)).await {
        Ok(Ok(_)) => tracing::debug!(reason = spec.reason, "event recorded"),
        Err(_) => tracing::warn!(
            reason = spec.reason,
            budget_ms = budget.as_millis() as u64,
            "could not record the Kubernetes Event: no answer within its budget"
        ),
        Ok(Err(e)) => tracing::warn!(
            reason = spec.reason,
            error = %e,
            hint = hint(&e),
            "could not record the Kubernetes Event"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn event_points_at_the_object() {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("demo-config".into()),
                namespace: Some("ns1".into()),
                uid: Some("u-1".into()),
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let spec = EventSpec {
            type_: "Normal",
            reason: "StandbyClusterConfigured",
            message: "m".into(),
            action: "Update",
        };
        let now: jiff::Timestamp = "2026-01-02T03:04:05Z".parse().unwrap();
        let ev = build_event(&cm, &spec, "pgdr-port-patch", "job-abc", now);
        assert_eq!(ev.metadata.generate_name.as_deref(), Some("demo-config."));
        assert_eq!(ev.metadata.namespace.as_deref(), Some("ns1"));
        let r = &ev.involved_object;
        assert_eq!(r.kind.as_deref(), Some("ConfigMap"));
        assert_eq!(r.api_version.as_deref(), Some("v1"));
        assert_eq!(r.name.as_deref(), Some("demo-config"));
        assert_eq!(r.uid.as_deref(), Some("u-1"));
        assert_eq!(r.resource_version.as_deref(), Some("42"));
        assert_eq!(ev.reason.as_deref(), Some("StandbyClusterConfigured"));
        assert_eq!(ev.type_.as_deref(), Some("Normal"));
        assert_eq!(ev.reporting_instance.as_deref(), Some("job-abc"));
        assert_eq!(ev.last_timestamp, Some(Time(now)));
    }
}
