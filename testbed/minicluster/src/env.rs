//! Container environment as the kubelet builds it: `envFrom`, then `env` in order, with
//! `$(VAR)` references to variables defined before expanded. Pure: the caller supplies the pod,
//! its IP and the Secrets/ConfigMaps of the namespace.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// Decoded Secret and ConfigMap data of one namespace, by object name.
#[derive(Debug, Default, Clone)]
pub struct Refs {
    pub secrets: HashMap<String, BTreeMap<String, String>>,
    pub configmaps: HashMap<String, BTreeMap<String, String>>,
}

/// Resolves a container's environment. Errors are the kubelet's `CreateContainerConfigError`
/// reasons (missing Secret/ConfigMap/key that is not `optional`).
pub fn resolve(
    container: &Value,
    pod: &Value,
    pod_ip: &str,
    refs: &Refs,
) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        out.retain(|(n, _)| *n != k);
        out.push((k, v));
    };
    for from in container
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let prefix = from.get("prefix").and_then(Value::as_str).unwrap_or("");
        let (source, map) = if let Some(r) = from.get("secretRef") {
            (r, &refs.secrets)
        } else if let Some(r) = from.get("configMapRef") {
            (r, &refs.configmaps)
        } else {
            continue;
        };
        let name = source.get("name").and_then(Value::as_str).unwrap_or("");
        match map.get(name) {
            Some(data) => {
                for (k, v) in data {
                    set(&mut out, format!("{prefix}{k}"), v.clone());
                }
            }
            None if optional(source) => {}
            None => return Err(format!("envFrom: {name:?} not found")),
        }
    }
    for var in container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = var.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = if let Some(v) = var.get("value").and_then(Value::as_str) {
            Some(expand(v, &out))
        } else if let Some(from) = var.get("valueFrom") {
            value_from(name, from, pod, pod_ip, refs)?
        } else {
            Some(String::new())
        };
        if let Some(value) = value {
            set(&mut out, name.to_string(), value);
        }
    }
    Ok(out)
}

fn optional(r: &Value) -> bool {
    r.get("optional").and_then(Value::as_bool) == Some(true)
}

fn value_from(
    var: &str,
    from: &Value,
    pod: &Value,
    pod_ip: &str,
    refs: &Refs,
) -> Result<Option<String>, String> {
    if let Some(f) = from.get("fieldRef") {
        let path = f.get("fieldPath").and_then(Value::as_str).unwrap_or("");
        return field(pod, path, pod_ip)
            .map(Some)
            .ok_or_else(|| format!("env {var}: unsupported fieldPath {path:?}"));
    }
    if from.get("resourceFieldRef").is_some() {
        // Nothing here limits resources; programs that read this only size caches.
        return Ok(Some("0".into()));
    }
    for (key, map, what) in [
        ("secretKeyRef", &refs.secrets, "Secret"),
        ("configMapKeyRef", &refs.configmaps, "ConfigMap"),
    ] {
        if let Some(r) = from.get(key) {
            let name = r.get("name").and_then(Value::as_str).unwrap_or("");
            let k = r.get("key").and_then(Value::as_str).unwrap_or("");
            return match map.get(name).and_then(|d| d.get(k)) {
                Some(v) => Ok(Some(v.clone())),
                None if optional(r) => Ok(None),
                None => Err(format!("env {var}: {what} {name:?} key {k:?} not found")),
            };
        }
    }
    Err(format!("env {var}: unsupported valueFrom"))
}

/// The downward-API fields the kubelet offers.
pub fn field(pod: &Value, path: &str, pod_ip: &str) -> Option<String> {
    let meta = |f: &str| {
        pod.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
    };
    let keyed = |prefix: &str, map: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            pod.pointer(&format!("/metadata/{map}"))
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )
    };
    match path {
        "metadata.name" => meta("name").map(str::to_string),
        "metadata.namespace" => meta("namespace").map(str::to_string),
        "metadata.uid" => meta("uid").map(str::to_string),
        "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
            Some(pod_ip.to_string())
        }
        "spec.nodeName" => Some("drill-node".into()),
        "spec.serviceAccountName" => Some(
            pod.pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string(),
        ),
        _ => keyed("metadata.labels['", "labels")
            .or_else(|| keyed("metadata.annotations['", "annotations")),
    }
}

/// `$(VAR)` → value of VAR when defined in `env`; `$$` → `$`; anything else stays as written.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = tail.strip_prefix("$(")
            && let Some(end) = body.find(')')
        {
            let name = &body[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"name": "db-0", "namespace": "ns", "uid": "u1", "labels": {"app": "db"}},
               "spec": {"serviceAccountName": "sa"}})
    }

    #[test]
    fn expands_like_the_kubelet() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("$(A):$(B)", &env), "1:$(B)");
        assert_eq!(expand("$$(A) $ x", &env), "$(A) $ x");
        assert_eq!(expand("$(A", &env), "$(A");
    }

    #[test]
    fn resolves_every_source_in_order() {
        let mut refs = Refs::default();
        refs.secrets.insert(
            "s".into(),
            BTreeMap::from([("pw".into(), "hunter2".into())]),
        );
        refs.configmaps
            .insert("c".into(), BTreeMap::from([("K".into(), "v".into())]));
        let c = json!({"envFrom": [{"configMapRef": {"name": "c"}, "prefix": "P_"}],
            "env": [
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                {"name": "ADDR", "value": "$(IP):5432/$(P_K)"}]});
        let env = resolve(&c, &pod(), "127.9.0.1", &refs).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("P_K"), Some("v"));
        assert_eq!(get("NAME"), Some("db-0"));
        assert_eq!(get("APP"), Some("db"));
        assert_eq!(get("SA"), Some("sa"));
        assert_eq!(get("PW"), Some("hunter2"));
        assert_eq!(get("OPT"), None);
        assert_eq!(get("ADDR"), Some("127.9.0.1:5432/v"));
    }

    #[test]
    fn missing_required_secret_is_a_config_error() {
        let c = json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]});
        let err = resolve(&c, &pod(), "127.9.0.1", &Refs::default()).unwrap_err();
        assert!(err.contains("Secret \"s\""), "{err}");
    }
}
