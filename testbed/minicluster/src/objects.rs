//! Small helpers over Kubernetes objects shared by the kubelet, the controllers and kube-proxy.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde_json::Value;

/// Now, to the second (the precision of Kubernetes timestamps).
pub fn now() -> Time {
    let t = jiff::Timestamp::now();
    Time(t.round(jiff::Unit::Second).unwrap_or(t))
}

/// Whether a pod's Ready condition is True.
pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod's phase (`Pending` until the kubelet reports one).
pub fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

pub fn name(m: &ObjectMeta) -> &str {
    m.name.as_deref().unwrap_or("")
}

pub fn namespace(m: &ObjectMeta) -> &str {
    m.namespace.as_deref().unwrap_or("")
}

pub fn uid(m: &ObjectMeta) -> &str {
    m.uid.as_deref().unwrap_or("")
}

pub fn terminating(m: &ObjectMeta) -> bool {
    m.deletion_timestamp.is_some()
}

/// The uid of the controlling owner (ownerReferences with controller: true).
pub fn controller_uid(m: &ObjectMeta) -> Option<&str> {
    m.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// An ownerReference naming `owner` as controller.
pub fn owner_ref<K: k8s_openapi::Resource>(owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: K::API_VERSION.into(),
        kind: K::KIND.into(),
        name: name(owner).into(),
        uid: uid(owner).into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The ordinal of a StatefulSet pod name (`web-2` → 2).
pub fn ordinal(pod_name: &str) -> Option<usize> {
    pod_name.rsplit('-').next()?.parse().ok()
}

pub(crate) fn ctr_ports(c: &Value) -> Vec<(String, u16)> {
    c.get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = p.get("containerPort")?.as_u64()? as u16;
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Some((name, port))
        })
        .collect()
}

/// A port given as a number or a container port name.
pub fn resolve_port(port: &Value, containers: &[Value]) -> Option<u16> {
    if let Some(n) = port.as_u64() {
        return Some(n as u16);
    }
    let name = port.as_str()?;
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    containers
        .iter()
        .flat_map(ctr_ports)
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
}
