//! The resource types the server serves: the built-in ones and those added by CRDs.

use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One served resource (a group/version/plural), as discovery describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub status_subresource: bool,
    /// Defined by a CustomResourceDefinition (and removed with it).
    pub custom: bool,
}

impl ResourceType {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key: objects are shared between versions of a group, as in the real server.
    pub fn storage_id(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `configmaps` or `statefulsets.apps`, as the real server names resources in messages.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether `metadata.generation` is maintained (spec-carrying types).
    pub fn tracks_generation(&self) -> bool {
        self.custom || self.status_subresource
    }

    fn discovery_entries(&self) -> Vec<Value> {
        let verbs = json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ]);
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        let mut out = vec![main];
        if !self.custom && self.group.is_empty() && self.plural == "serviceaccounts" {
            // TokenRequest (`kubectl create token`).
            out.push(json!({
                "name": "serviceaccounts/token",
                "singularName": "",
                "namespaced": true,
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }));
        }
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

/// All served types, keyed by (group, version, plural).
#[derive(Debug, Clone)]
pub struct Registry {
    types: BTreeMap<(String, String, String), ResourceType>,
}

struct Builtin(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
);

// (group, version, plural, kind, namespaced, short names, status subresource)
const BUILTINS: &[Builtin] = &[
    Builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
    Builtin("", "v1", "secrets", "Secret", true, &[], false),
    Builtin("", "v1", "services", "Service", true, &["svc"], true),
    Builtin("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
    Builtin("", "v1", "pods", "Pod", true, &["po"], true),
    Builtin("", "v1", "events", "Event", true, &["ev"], false),
    Builtin(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    Builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true),
    Builtin(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        true,
    ),
    Builtin(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        &["sts"],
        true,
    ),
    Builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        true,
    ),
    Builtin("batch", "v1", "jobs", "Job", true, &[], true),
    Builtin("batch", "v1", "cronjobs", "CronJob", true, &["cj"], true),
    Builtin(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        true,
    ),
    Builtin(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        &[],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    Builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    // Access reviews (`kubectl auth can-i`): answered, never stored.
    Builtin(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
        &[],
        false,
    ),
    Builtin(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        false,
        &[],
        false,
    ),
    Builtin(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        &[],
        false,
    ),
    Builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
];

impl Default for Registry {
    fn default() -> Self {
        let mut types = BTreeMap::new();
        for b in BUILTINS {
            let rt = ResourceType {
                group: b.0.into(),
                version: b.1.into(),
                plural: b.2.into(),
                singular: b.3.to_lowercase(),
                kind: b.3.into(),
                namespaced: b.4,
                short_names: b.5.iter().map(|s| s.to_string()).collect(),
                status_subresource: b.6,
                custom: false,
            };
            types.insert(
                (rt.group.clone(), rt.version.clone(), rt.plural.clone()),
                rt,
            );
        }
        Registry { types }
    }
}

impl Registry {
    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    /// Whether any version of `group` is served.
    pub fn has_group_version(&self, group: &str, version: &str) -> bool {
        self.types
            .keys()
            .any(|(g, v, _)| g == group && v == version)
    }

    /// Types defined by a CRD object (served versions only). Errors say what is wrong.
    pub fn types_from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
        let spec = crd.get("spec").ok_or("spec: Required value")?;
        let s = |v: Option<&Value>, what: &str| -> Result<String, String> {
            v.and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or(format!("{what}: Required value"))
        };
        let group = s(spec.get("group"), "spec.group")?;
        let names = spec.get("names").ok_or("spec.names: Required value")?;
        let plural = s(names.get("plural"), "spec.names.plural")?;
        let kind = s(names.get("kind"), "spec.names.kind")?;
        let singular = names
            .get("singular")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase());
        let short_names: Vec<String> = names
            .get("shortNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let namespaced = match spec.get("scope").and_then(Value::as_str) {
            Some("Namespaced") => true,
            Some("Cluster") => false,
            _ => return Err("spec.scope: Unsupported value: must be Namespaced or Cluster".into()),
        };
        let expected_name = format!("{plural}.{group}");
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if name != expected_name {
            return Err(format!(
                "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group (\"{expected_name}\")"
            ));
        }
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .filter(|v| !v.is_empty())
            .ok_or("spec.versions: Invalid value: must have exactly one version marked as storage version")?;
        let mut out = Vec::new();
        for v in versions {
            let version = s(v.get("name"), "spec.versions[].name")?;
            if v.get("served").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            out.push(ResourceType {
                group: group.clone(),
                version,
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                short_names: short_names.clone(),
                status_subresource: v.pointer("/subresources/status").is_some(),
                custom: true,
            });
        }
        Ok(out)
    }

    /// Replaces the types a CRD of this group/plural defined with `types`.
    pub fn set_custom(&mut self, group: &str, plural: &str, types: Vec<ResourceType>) {
        self.types
            .retain(|(g, _, p), rt| !(rt.custom && g == group && p == plural));
        for rt in types {
            self.types.insert(
                (rt.group.clone(), rt.version.clone(), rt.plural.clone()),
                rt,
            );
        }
    }

    /// `/api/v1` or `/apis/{group}/{version}` body.
    pub fn resource_list(&self, group: &str, version: &str) -> Value {
        let resources: Vec<Value> = self
            .types
            .values()
            .filter(|rt| rt.group == group && rt.version == version)
            .flat_map(ResourceType::discovery_entries)
            .collect();
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
    }

    fn group_versions(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (g, v, _) in self.types.keys() {
            let vs = groups.entry(g.clone()).or_default();
            if !vs.contains(v) {
                vs.push(v.clone());
            }
        }
        groups
    }

    fn group_json(name: &str, versions: &[String]) -> Value {
        let vs: Vec<Value> = versions
            .iter()
            .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
            .collect();
        json!({"name": name, "versions": vs, "preferredVersion": vs[0].clone()})
    }

    /// `/apis` body.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .group_versions()
            .iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, vs)| Self::group_json(g, vs))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `/apis/{group}` body, if served.
    pub fn group(&self, group: &str) -> Option<Value> {
        let gv = self.group_versions();
        let vs = gv.get(group).filter(|_| !group.is_empty())?;
        let mut g = Self::group_json(group, vs);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        Some(g)
    }

    /// All types, for generated documents such as OpenAPI.
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(scope: &str, name: &str) -> Value {
        json!({
            "metadata": {"name": name},
            "spec": {
                "group": "porter.devops.gov.bc.ca",
                "scope": scope,
                "names": {"plural": "transportserverclaims", "kind": "TransportServerClaim", "shortNames": ["tscs"]},
                "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}}},
                             {"name": "v1old", "served": false, "storage": false}]
            }
        })
    }

    #[test]
    fn crd_defines_served_versions_only() {
        let t = Registry::types_from_crd(&crd(
            "Namespaced",
            "transportserverclaims.porter.devops.gov.bc.ca",
        ))
        .unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].kind, "TransportServerClaim");
        assert_eq!(t[0].singular, "transportserverclaim");
        assert!(t[0].namespaced && t[0].status_subresource && t[0].custom);
        let mut r = Registry::default();
        assert!(!r.has_group_version("porter.devops.gov.bc.ca", "v1alpha1"));
        r.set_custom("porter.devops.gov.bc.ca", "transportserverclaims", t);
        assert!(
            r.get(
                "porter.devops.gov.bc.ca",
                "v1alpha1",
                "transportserverclaims"
            )
            .is_some()
        );
        assert!(r.group("porter.devops.gov.bc.ca").is_some());
        r.set_custom("porter.devops.gov.bc.ca", "transportserverclaims", vec![]);
        assert!(r.group("porter.devops.gov.bc.ca").is_none());
    }

    #[test]
    fn crd_errors_name_the_field() {
        let e = Registry::types_from_crd(&crd(
            "Galaxy",
            "transportserverclaims.porter.devops.gov.bc.ca",
        ))
        .unwrap_err();
        assert!(e.contains("spec.scope"), "{e}");
        let e = Registry::types_from_crd(&crd("Namespaced", "wrong")).unwrap_err();
        assert!(e.contains("metadata.name"), "{e}");
    }

    #[test]
    fn discovery_lists_status_subresource() {
        let r = Registry::default();
        let l = r.resource_list("", "v1");
        let names: Vec<&str> = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"pods/status") && names.contains(&"configmaps"));
        assert!(!names.contains(&"configmaps/status"));
        let groups = r.group_list();
        assert!(
            groups["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "batch")
        );
    }
}
