//! Who a pod's containers are to the API server, decided as a real cluster decides it (used when
//! the site enforces RBAC, [`crate::SiteConfig::rbac`]).
//!
//! - **ServiceAccount admission.** A pod calls as its ServiceAccount (`spec.serviceAccountName`,
//!   `default` when unset). When the pod's `automountServiceAccountToken` (else its
//!   ServiceAccount's, else `true`) is true, the admission plugin adds the `kube-api-access-*`
//!   projected volume (token, `ca.crt`, `namespace`) mounted at [`SA_MOUNT`] in every container
//!   that has nothing mounted there; the kubelet here does the same to its own copy of the pod
//!   ([`inject_api_access`]).
//! - **Credentials per container.** A container with [`SA_MOUNT`] mounted (that volume, or a
//!   projected `serviceAccountToken` the pod mounts itself, as the chart does for Patroni only)
//!   calls as `system:serviceaccount:<ns>:<sa>`; any other container has no credentials and calls
//!   as `system:anonymous`.
//!
//! Pods here have no mount namespace, and client libraries read the in-cluster files from fixed
//! absolute paths (plus `KUBERNETES_SERVICE_HOST`), so the kubelet hands each container the same
//! identity as a kubeconfig (`KUBECONFIG`; its context is the site name, which Patroni is told
//! with `PATRONI_KUBERNETES_CONTEXT`): the ServiceAccount's token and the cluster CA, or the CA
//! alone. The mounted folder holds the same token, so a process reading the files gets the same
//! identity.

use serde_json::{Value, json};

/// Where the ServiceAccount's token, CA and namespace are mounted in a container.
pub const SA_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Name of the volume the admission plugin adds (a real cluster adds a random suffix).
pub const API_ACCESS_VOLUME: &str = "kube-api-access-drill";

/// The pod's ServiceAccount (`spec.serviceAccountName`, the deprecated `spec.serviceAccount`,
/// else `default`).
pub fn service_account_name(pod: &Value) -> &str {
    ["/spec/serviceAccountName", "/spec/serviceAccount"]
        .iter()
        .find_map(|p| pod.pointer(p).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

/// Whether the admission plugin mounts the token into the pod: the pod's setting wins over its
/// ServiceAccount's; both unset means yes.
pub fn automount(pod: &Value, service_account: &Value) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .or_else(|| service_account.get("automountServiceAccountToken"))
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// Whether a container has something mounted at [`SA_MOUNT`].
pub fn mounts_token(container: &Value) -> bool {
    container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("mountPath").and_then(Value::as_str))
        .any(|p| p.trim_end_matches('/') == SA_MOUNT)
}

/// Adds the `kube-api-access` volume and its read-only mount at [`SA_MOUNT`] to every container
/// without one, as the ServiceAccount admission plugin does for an automounted token.
pub fn inject_api_access(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let mut mounted = false;
    for c in spec
        .get_mut("containers")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if mounts_token(c) {
            continue;
        }
        let Some(c) = c.as_object_mut() else { continue };
        let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
        if let Some(m) = mounts.as_array_mut() {
            m.push(json!({"name": API_ACCESS_VOLUME, "mountPath": SA_MOUNT, "readOnly": true}));
            mounted = true;
        }
    }
    if !mounted {
        return;
    }
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(v) = volumes.as_array_mut() {
        v.push(json!({"name": API_ACCESS_VOLUME, "projected": {"defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}}));
    }
}

/// A kubeconfig whose cluster, context and user are all named `context`, trusting `ca_pem`; the
/// user presents `token` (None: no credentials, i.e. anonymous).
pub fn kubeconfig(
    server: &str,
    context: &str,
    namespace: &str,
    token: Option<&str>,
    ca_pem: &str,
) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let user = match token {
        Some(t) => format!("\n    token: {t}"),
        None => " {}".into(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {context}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         contexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: {context}\n    namespace: {namespace}\n\
         current-context: {context}\npreferences: {{}}\nusers:\n- name: {context}\n  user:{user}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    #[test]
    fn service_account_defaults_to_default() {
        assert_eq!(service_account_name(&pod(json!({}))), "default");
        assert_eq!(
            service_account_name(&pod(json!({"serviceAccountName": "fo"}))),
            "fo"
        );
        assert_eq!(
            service_account_name(&pod(json!({"serviceAccount": "old"}))),
            "old"
        );
    }

    #[test]
    fn automount_pod_setting_wins_over_the_service_account() {
        let sa_off = json!({"automountServiceAccountToken": false});
        let sa_unset = json!({});
        let cases = [
            (json!({}), &sa_unset, true),
            (json!({}), &sa_off, false),
            (json!({"automountServiceAccountToken": true}), &sa_off, true),
            (
                json!({"automountServiceAccountToken": false}),
                &sa_unset,
                false,
            ),
        ];
        for (spec, sa, want) in cases {
            assert_eq!(automount(&pod(spec.clone()), sa), want, "{spec} {sa}");
        }
    }

    #[test]
    fn injection_mounts_every_container_without_a_token_mount() {
        let mut p = pod(json!({"containers": [
            {"name": "a"},
            {"name": "b", "volumeMounts": [{"name": "own", "mountPath": format!("{SA_MOUNT}/")}]},
        ]}));
        inject_api_access(&mut p);
        let cs = p["spec"]["containers"].as_array().unwrap();
        assert!(mounts_token(&cs[0]));
        assert_eq!(cs[0]["volumeMounts"][0]["name"], API_ACCESS_VOLUME);
        // The container that mounts its own token keeps only that mount.
        assert_eq!(cs[1]["volumeMounts"].as_array().unwrap().len(), 1);
        let vols = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        assert!(
            vols[0]
                .pointer("/projected/sources/0/serviceAccountToken")
                .is_some()
        );

        // Nothing to mount: no volume either.
        let mut q = pod(json!({"containers": [{"name": "b",
            "volumeMounts": [{"name": "own", "mountPath": SA_MOUNT}]}]}));
        inject_api_access(&mut q);
        assert!(q["spec"].get("volumes").is_none());
    }

    #[test]
    fn kubeconfig_carries_the_token_and_ca_or_no_user() {
        let with = kubeconfig("https://127.0.0.1:1", "gold", "ns", Some("t0k"), "PEM");
        assert!(with.contains("    token: t0k\n"), "{with}");
        assert!(
            with.contains("certificate-authority-data: UEVN\n"),
            "{with}"
        );
        assert!(with.contains("namespace: ns\n") && with.contains("current-context: gold\n"));
        let anon = kubeconfig("https://127.0.0.1:1", "gold", "ns", None, "PEM");
        assert!(anon.ends_with("  user: {}\n"), "{anon}");
        assert!(!anon.contains("token"));
    }
}
