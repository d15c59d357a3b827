//! With RBAC on, a pod's containers call the API server as its ServiceAccount (those with the
//! token mounted) or anonymously (the others), and RBAC decides: a real HTTPS client in the pod
//! gets 200 for what the Role allows and 403 for the rest.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use pgdr_minicluster::Site;
use pgdr_minicluster::api::{self, Kind};
use pgdr_minicluster::identity::SA_MOUNT;
use pgdr_minicluster::testing::*;
use serde_json::{Value, json};

const ROLES: Kind = Kind {
    base: "apis/rbac.authorization.k8s.io/v1",
    plural: "roles",
};
const ROLE_BINDINGS: Kind = Kind {
    base: "apis/rbac.authorization.k8s.io/v1",
    plural: "rolebindings",
};

/// Reads `KUBECONFIG` as any client would (server, CA, token if any), calls GET and DELETE on the
/// ConfigMap `x` over HTTPS, and prints both status codes. With a mounted ServiceAccount folder
/// (argv[1], a container path the kubelet maps), also whether its token is the kubeconfig's and
/// the namespace it names. Never prints the token.
const CLIENT: &str = r#"
import base64, os, re, ssl, sys, urllib.error, urllib.request
kc = open(os.environ["KUBECONFIG"]).read()
server = re.search(r"server: (\S+)", kc).group(1)
ca = base64.b64decode(re.search(r"certificate-authority-data: (\S+)", kc).group(1)).decode()
token = re.search(r"token: (\S+)", kc)
ctx = ssl.create_default_context(cadata=ca)
def call(method):
    req = urllib.request.Request(server + "/api/v1/namespaces/drill-test/configmaps/x", method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token.group(1))
    try:
        return urllib.request.urlopen(req, context=ctx).status
    except urllib.error.HTTPError as e:
        return e.code
out = ["get=%d" % call("GET"), "delete=%d" % call("DELETE")]
if len(sys.argv) > 1 and os.path.isdir(sys.argv[1]):
    same = token and open(sys.argv[1] + "/token").read() == token.group(1)
    out.append("token-file=%s" % ("same" if same else "different"))
    out.append("namespace=" + open(sys.argv[1] + "/namespace").read())
print(" ".join(out))
"#;

fn client(name: &str, mounts: Value) -> Value {
    json!({"name": name, "image": "web", "args": ["-c", CLIENT, SA_MOUNT], "volumeMounts": mounts})
}

async fn finished(site: &Site, pod: &str) -> Value {
    site.wait_for(
        &format!("pod {pod} to finish"),
        Duration::from_secs(30),
        |a| {
            let p = a.get(api::PODS, NS, pod).ok()??;
            matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(p)
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_call_as_their_service_account_or_anonymously() {
    let site = rbac_site("gold").await;
    let a = site.api();
    assert!(site.url().starts_with("https://"));
    a.create(api::CONFIGMAPS, NS, &json!({"metadata": {"name": "x"}}))
        .unwrap();
    a.create(
        api::SERVICEACCOUNTS,
        NS,
        &json!({"metadata": {"name": "reader"}, "automountServiceAccountToken": false}),
    )
    .unwrap();
    a.create(ROLES, NS, &json!({"metadata": {"name": "reader"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"], "verbs": ["get"]}]}))
        .unwrap();
    a.create(
        ROLE_BINDINGS,
        NS,
        &json!({"metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NS}]}),
    )
    .unwrap();

    // The chart's Patroni pod shape: no automount, the token projected into one container only.
    let token_volume = json!({"name": "api", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token"}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}});
    a.create(api::PODS, NS, &json!({"metadata": {"name": "mixed"}, "spec": {
        "serviceAccountName": "reader", "automountServiceAccountToken": false, "restartPolicy": "Never",
        "containers": [client("with", json!([{"name": "api", "mountPath": SA_MOUNT}])), client("without", json!([]))],
        "volumes": [token_volume]}}))
        .unwrap();
    // The Jobs' shape: automounted token (the pod's setting wins over the ServiceAccount's).
    a.create(api::PODS, NS, &json!({"metadata": {"name": "auto"}, "spec": {
        "serviceAccountName": "reader", "automountServiceAccountToken": true, "restartPolicy": "Never",
        "containers": [client("main", json!([]))]}}))
        .unwrap();
    // No ServiceAccount: the `default` one, which no Role names.
    a.create(
        api::PODS,
        NS,
        &json!({"metadata": {"name": "plain"}, "spec": {
        "restartPolicy": "Never", "containers": [client("main", json!([]))]}}),
    )
    .unwrap();

    for pod in ["mixed", "auto", "plain"] {
        let p = finished(&site, pod).await;
        assert_eq!(p["status"]["phase"], "Succeeded", "{pod}: {p}");
    }
    let log = |pod: &str, c: &str| {
        std::fs::read_to_string(site.log_path(NS, pod, c))
            .unwrap()
            .trim()
            .to_string()
    };
    let ns = format!("namespace={NS}");
    assert_eq!(
        log("mixed", "with"),
        format!("get=200 delete=403 token-file=same {ns}")
    );
    assert_eq!(log("mixed", "without"), "get=403 delete=403");
    assert_eq!(
        log("auto", "main"),
        format!("get=200 delete=403 token-file=same {ns}")
    );
    assert_eq!(
        log("plain", "main"),
        format!("get=403 delete=403 token-file=same {ns}")
    );

    // The server saw who called: the ServiceAccount, anonymous, or `default`.
    let calls: Vec<(String, String, u16)> = site
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.path == format!("/api/v1/namespaces/{NS}/configmaps/x"))
        .map(|r| (r.user, r.method, r.status))
        .collect();
    let reader = format!("system:serviceaccount:{NS}:reader");
    let default = format!("system:serviceaccount:{NS}:default");
    for (user, method, status, times) in [
        (reader.as_str(), "GET", 200, 2),
        (reader.as_str(), "DELETE", 403, 2),
        ("system:anonymous", "GET", 403, 1),
        (default.as_str(), "GET", 403, 1),
    ] {
        let n = calls
            .iter()
            .filter(|(u, m, s)| u == user && m == method && *s == status)
            .count();
        assert_eq!(n, times, "{user} {method} -> {status}: {calls:?}");
    }
    assert!(a.get(api::CONFIGMAPS, NS, "x").unwrap().is_some());

    // A pod whose ServiceAccount does not exist does not start.
    a.create(
        api::PODS,
        NS,
        &json!({"metadata": {"name": "orphan"}, "spec": {
        "serviceAccountName": "nobody", "containers": [client("main", json!([]))]}}),
    )
    .unwrap();
    let waiting = site
        .wait_for("orphan to be refused", Duration::from_secs(10), |a| {
            let p = a.get(api::PODS, NS, "orphan").ok()??;
            let w = p
                .pointer("/status/containerStatuses/0/state/waiting")?
                .clone();
            (w["reason"] == "CreateContainerConfigError").then_some(w)
        })
        .await
        .unwrap();
    assert!(
        waiting["message"]
            .as_str()
            .unwrap()
            .contains("service account drill-test/nobody not found"),
        "{waiting}"
    );
    site.shutdown().await;
}
