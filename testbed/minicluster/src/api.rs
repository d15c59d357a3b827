//! Access to a site's API server for the emulated controllers and kubelet.
//!
//! The controllers use the server's in-process entry point rather than HTTP: it runs exactly the
//! same handlers, costs no sockets, and is not subject to the fault injection the scenarios aim at
//! the components under test (a real kubelet keeps running its pods during an API outage too).
//! Instead of watches, the controllers reconcile whenever the server's global resourceVersion
//! moves (see `site.rs`), which is level-triggered and cannot miss an event.

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// A resource collection: the path prefix up to (not including) the namespace part.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// `api/v1` or `apis/apps/v1`.
    pub base: &'static str,
    pub plural: &'static str,
}

pub const PODS: Kind = Kind {
    base: "api/v1",
    plural: "pods",
};
pub const SERVICES: Kind = Kind {
    base: "api/v1",
    plural: "services",
};
pub const ENDPOINTS: Kind = Kind {
    base: "api/v1",
    plural: "endpoints",
};
pub const SECRETS: Kind = Kind {
    base: "api/v1",
    plural: "secrets",
};
pub const CONFIGMAPS: Kind = Kind {
    base: "api/v1",
    plural: "configmaps",
};
pub const PVCS: Kind = Kind {
    base: "api/v1",
    plural: "persistentvolumeclaims",
};
pub const SERVICEACCOUNTS: Kind = Kind {
    base: "api/v1",
    plural: "serviceaccounts",
};
pub const NAMESPACES: Kind = Kind {
    base: "api/v1",
    plural: "namespaces",
};
pub const STATEFULSETS: Kind = Kind {
    base: "apis/apps/v1",
    plural: "statefulsets",
};
pub const JOBS: Kind = Kind {
    base: "apis/batch/v1",
    plural: "jobs",
};
pub const CRONJOBS: Kind = Kind {
    base: "apis/batch/v1",
    plural: "cronjobs",
};
pub const TSCS: Kind = Kind {
    base: "apis/porter.devops.gov.bc.ca/v1alpha1",
    plural: "transportserverclaims",
};

const MERGE: &str = "application/merge-patch+json";

/// A cheap, clonable handle on one site's API server.
#[derive(Clone)]
pub struct Api {
    server: Arc<kubesim::ServerHandle>,
}

impl Api {
    pub fn new(server: Arc<kubesim::ServerHandle>) -> Self {
        Api { server }
    }

    pub fn server(&self) -> &kubesim::ServerHandle {
        &self.server
    }

    /// The global resourceVersion: it moves on every write, so an unchanged value means nothing
    /// needs reconciling.
    pub fn resource_version(&self) -> u64 {
        self.server.resource_version()
    }

    fn collection(kind: Kind, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if kind.plural != "namespaces" => {
                format!("/{}/namespaces/{ns}/{}", kind.base, kind.plural)
            }
            _ => format!("/{}/{}", kind.base, kind.plural),
        }
    }

    fn item(kind: Kind, ns: &str, name: &str) -> String {
        format!("{}/{name}", Self::collection(kind, Some(ns)))
    }

    fn call(
        &self,
        verb: &'static str,
        path: String,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let (status, v) = self.server.request(verb, &path, content_type, body);
        match status {
            200..=299 => Ok(Some(v)),
            404 => Ok(None),
            _ => Err(Error::Api {
                verb,
                path,
                status,
                message: v
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            }),
        }
    }

    /// All objects of a kind, in one namespace or (None) in all.
    pub fn list(&self, kind: Kind, ns: Option<&str>) -> Result<Vec<Value>> {
        let v = self.call("GET", Self::collection(kind, ns), None, None)?;
        Ok(v.and_then(|mut v| v.get_mut("items").map(Value::take))
            .and_then(|items| match items {
                Value::Array(a) => Some(a),
                _ => None,
            })
            .unwrap_or_default())
    }

    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Result<Option<Value>> {
        self.call("GET", Self::item(kind, ns, name), None, None)
    }

    /// Creates an object; an existing one (409 AlreadyExists) is not an error and yields None.
    pub fn create(&self, kind: Kind, ns: &str, obj: &Value) -> Result<Option<Value>> {
        match self.call("POST", Self::collection(kind, Some(ns)), None, Some(obj)) {
            Err(Error::Api { status: 409, .. }) => Ok(None),
            other => other,
        }
    }

    /// JSON merge patch of the main resource.
    pub fn patch(&self, kind: Kind, ns: &str, name: &str, patch: &Value) -> Result<Option<Value>> {
        self.call(
            "PATCH",
            Self::item(kind, ns, name),
            Some(MERGE),
            Some(patch),
        )
    }

    /// JSON merge patch of the status subresource.
    pub fn patch_status(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
        status: &Value,
    ) -> Result<Option<Value>> {
        self.call(
            "PATCH",
            format!("{}/status", Self::item(kind, ns, name)),
            Some(MERGE),
            Some(&json!({ "status": status })),
        )
    }

    /// Replaces an object (used where a merge patch cannot remove list items).
    pub fn replace(&self, kind: Kind, ns: &str, name: &str, obj: &Value) -> Result<Option<Value>> {
        self.call("PUT", Self::item(kind, ns, name), None, Some(obj))
    }

    /// All objects of a kind as typed k8s-openapi objects. One that does not decode (kubesim
    /// checks no schema) is skipped with a warning: a real API server would have refused it, and
    /// it must not stop the controllers from handling the others.
    pub fn list_as<T: DeserializeOwned>(&self, kind: Kind, ns: Option<&str>) -> Result<Vec<T>> {
        Ok(self
            .list(kind, ns)?
            .into_iter()
            .filter_map(|v| match decode(kind, v) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "object skipped");
                    None
                }
            })
            .collect())
    }

    /// One object as a typed k8s-openapi object.
    pub fn get_as<T: DeserializeOwned>(
        &self,
        kind: Kind,
        ns: &str,
        name: &str,
    ) -> Result<Option<T>> {
        self.get(kind, ns, name)?
            .map(|v| decode(kind, v))
            .transpose()
    }

    /// Creates a typed object (see [`Api::create`]).
    pub fn create_as<T: Serialize>(&self, kind: Kind, ns: &str, obj: &T) -> Result<Option<Value>> {
        let v = serde_json::to_value(obj).map_err(|e| Error::Decode {
            kind: kind.plural,
            name: "(new)".into(),
            reason: e.to_string(),
        })?;
        self.create(kind, ns, &v)
    }

    /// Deletes an object; a missing one is fine.
    pub fn delete(&self, kind: Kind, ns: &str, name: &str) -> Result<()> {
        self.call("DELETE", Self::item(kind, ns, name), None, None)
            .map(|_| ())
    }

    /// Ensures a namespace exists.
    pub fn ensure_namespace(&self, ns: &str) -> Result<()> {
        self.create(
            NAMESPACES,
            "",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .map(|_| ())
    }

    /// Registers a CRD (idempotent).
    pub fn ensure_crd(&self, crd: &Value) -> Result<()> {
        self.call(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions".into(),
            None,
            Some(crd),
        )
        .map(|_| ())
        .or_else(|e| match e {
            Error::Api { status: 409, .. } => Ok(()),
            e => Err(e),
        })
    }
}

/// Decodes kubesim's JSON into a typed object.
fn decode<T: DeserializeOwned>(kind: Kind, v: Value) -> Result<T> {
    let name = obj::name(&v).to_string();
    serde_json::from_value(v).map_err(|e| Error::Decode {
        kind: kind.plural,
        name,
        reason: e.to_string(),
    })
}

/// Small accessors over JSON objects (for callers that keep objects as JSON: tests, the drill's
/// platform).
pub mod obj {
    use serde_json::Value;

    pub fn name(o: &Value) -> &str {
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn namespace(o: &Value) -> &str {
        o.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn uid(o: &Value) -> &str {
        o.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn str_at<'a>(o: &'a Value, ptr: &str) -> Option<&'a str> {
        o.pointer(ptr).and_then(Value::as_str)
    }
    pub fn i64_at(o: &Value, ptr: &str) -> Option<i64> {
        o.pointer(ptr).and_then(Value::as_i64)
    }
    pub fn terminating(o: &Value) -> bool {
        o.pointer("/metadata/deletionTimestamp").is_some()
    }
    /// The uid of the controlling owner (ownerReferences with controller: true).
    pub fn controller_uid(o: &Value) -> Option<&str> {
        o.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)?
            .iter()
            .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            .and_then(|r| r.get("uid"))
            .and_then(Value::as_str)
    }
    /// An ownerReference naming `owner` as controller.
    pub fn owner_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
        serde_json::json!({
            "apiVersion": api_version,
            "kind": kind,
            "name": name(owner),
            "uid": uid(owner),
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }
    /// Whether the labels of `o` satisfy a `matchLabels`-style map (equality selector).
    pub fn labels_match(o: &Value, selector: &serde_json::Map<String, Value>) -> bool {
        let labels = o.pointer("/metadata/labels");
        selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }
    pub fn now() -> String {
        jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_string()
    }
}

/// `metadata.name` of an object ("" if missing).
pub fn obj_name(o: &Value) -> &str {
    obj::name(o)
}
