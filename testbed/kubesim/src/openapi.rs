//! A minimal OpenAPI v3 description: enough for kubectl to see that the server validates fields
//! itself (`fieldValidation`), so it neither downloads full schemas nor refuses to apply.
//!
//! No type schemas are published (objects are free-form here); kubectl then computes
//! strategic merge patches from its compiled-in types, as it does against older servers.

use crate::registry::Registry;
use serde_json::{Map, Value, json};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: one entry per served group/version.
pub fn root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for rt in registry.all() {
        let p = gv_path(&rt.group, &rt.version);
        let url = format!("/openapi/v3/{p}");
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`, if served.
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    if !registry.has_group_version(group, version) {
        return None;
    }
    let field_validation = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for rt in registry
        .all()
        .filter(|rt| rt.group == group && rt.version == version)
    {
        let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
        let op = json!({
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [field_validation.clone()],
            "responses": {"200": {"description": "OK"}},
        });
        let base = if rt.namespaced {
            format!(
                "/{}/namespaces/{{namespace}}/{}",
                gv_path(group, version),
                rt.plural
            )
        } else {
            format!("/{}/{}", gv_path(group, version), rt.plural)
        };
        paths.insert(base.clone(), json!({"post": op, "get": op}));
        paths.insert(
            format!("{base}/{{name}}"),
            json!({"put": op, "patch": op, "get": op, "delete": op}),
        );
        let group_part = if group.is_empty() { "core" } else { group };
        schemas.insert(
            format!("kubesim.{group_part}.{version}.{}", rt.kind),
            json!({"type": "object", "x-kubernetes-group-version-kind": [gvk], "x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{}.0", crate::api::KUBE_MINOR)},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
