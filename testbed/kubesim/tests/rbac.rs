//! Authentication and RBAC over real HTTP: tokens (admin, ServiceAccount Secret, TokenRequest,
//! issued), 401 and 403 with the real `Status`, each kind of rule (verbs, resourceNames,
//! subresources, cluster vs namespaced bindings, group and user subjects), anonymous requests,
//! and a server without RBAC that ignores all of it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use base64::Engine as _;
use kubesim::{Config, Server, ServerHandle};
use serde_json::{Value, json};
use std::time::Duration;

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";
const CM: &str = "/api/v1/namespaces/db/configmaps";

fn server(rbac: bool) -> ServerHandle {
    let s = Server::spawn(Config {
        rbac,
        ..Config::default()
    })
    .expect("server starts");
    let (st, _) = s.request(
        "POST",
        "/api/v1/namespaces",
        None,
        Some(&json!({"metadata": {"name": "db"}})),
    );
    assert_eq!(st, 201);
    s
}

/// A client that trusts the server's CA (served over HTTPS when RBAC is on).
fn client(s: &ServerHandle) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .add_root_certificate(reqwest::Certificate::from_pem(s.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// One request over HTTP with `token` as the bearer (None: no Authorization header).
async fn send(
    s: &ServerHandle,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = client(s).request(method.parse().unwrap(), format!("{}{path}", s.url()));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        let ct = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        rb = rb
            .header("content-type", ct)
            .body(serde_json::to_vec(&b).unwrap());
    }
    let r = rb.send().await.expect("request sent");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Creates (as admin) an object; panics unless 201.
fn admin_create(s: &ServerHandle, path: &str, obj: Value) -> Value {
    let (st, o) = s.request("POST", path, None, Some(&obj));
    assert_eq!(st, 201, "{path}: {o}");
    o
}

fn service_account(s: &ServerHandle, ns: &str, name: &str) {
    admin_create(
        s,
        &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        json!({"metadata": {"name": name}}),
    );
}

/// A Role in `db` with `rules`, bound to `subjects` by a RoleBinding.
fn role(s: &ServerHandle, name: &str, rules: Value, subjects: Value) {
    admin_create(
        s,
        &format!("{RBAC}/namespaces/db/roles"),
        json!({"metadata": {"name": name}, "rules": rules}),
    );
    admin_create(
        s,
        &format!("{RBAC}/namespaces/db/rolebindings"),
        json!({"metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
               "subjects": subjects}),
    );
}

fn sa_subject(name: &str) -> Value {
    json!([{"kind": "ServiceAccount", "name": name, "namespace": "db"}])
}

/// Sends the request and asserts the real server's refusal: HTTP 403 with a `Forbidden` Status.
/// Returns the Status for the message checks.
async fn forbidden(
    s: &ServerHandle,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let (st, b) = send(s, token, method, path, body).await;
    assert_eq!(st, 403, "{method} {path}: {b}");
    assert_eq!(b["kind"], "Status", "{b}");
    assert_eq!(b["apiVersion"], "v1", "{b}");
    assert_eq!(b["status"], "Failure", "{b}");
    assert_eq!(b["reason"], "Forbidden", "{b}");
    assert_eq!(b["code"], 403, "{b}");
    b
}

#[tokio::test]
async fn without_rbac_tokens_are_ignored_and_everything_is_allowed() {
    let s = server(false);
    assert!(!s.rbac());
    assert!(s.url().starts_with("http://"));
    let kc = s.kubeconfig_yaml("sim", "db");
    assert!(kc.contains("user: {}") && !kc.contains("certificate-authority"));
    for token in [None, Some("not-a-token")] {
        let (st, _) = send(
            &s,
            token,
            "POST",
            CM,
            Some(json!({"metadata": {"name": format!("c{}", token.is_some())}})),
        )
        .await;
        assert_eq!(st, 201);
        let (st, l) = send(&s, token, "GET", CM, None).await;
        assert_eq!(st, 200);
        assert!(!l["items"].as_array().unwrap().is_empty());
    }
    assert!(s.requests().iter().all(|r| r.user.is_empty()));
    // No ServiceAccount controller either: no `default` account appears.
    let sa = "/api/v1/namespaces/db/serviceaccounts/default";
    assert_eq!(s.request("GET", sa, None, None).0, 404);
}

#[tokio::test]
async fn every_namespace_has_a_default_service_account() {
    let s = server(true);
    for ns in ["default", "kube-system", "db"] {
        let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/default");
        assert_eq!(s.request("GET", &path, None, None).0, 200, "{ns}");
    }
    let t = s.service_account_token("db", "default").unwrap();
    let b = forbidden(&s, Some(&t), "GET", CM, None).await;
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("User \"system:serviceaccount:db:default\""),
        "{b}"
    );
}

#[tokio::test]
async fn anonymous_sees_version_and_health_only_and_bad_tokens_are_401() {
    let s = server(true);
    for p in ["/version", "/healthz", "/readyz"] {
        assert_eq!(send(&s, None, "GET", p, None).await.0, 200, "{p}");
    }
    assert_eq!(
        forbidden(&s, None, "GET", "/api", None).await["message"],
        "forbidden: User \"system:anonymous\" cannot get path \"/api\""
    );
    let b = forbidden(&s, None, "GET", &format!("{CM}/x"), None).await;
    assert_eq!(
        b["message"],
        "configmaps \"x\" is forbidden: User \"system:anonymous\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"db\""
    );
    assert_eq!(
        b["details"],
        json!({"name": "x", "kind": "configmaps"}),
        "{b}"
    );
    let forged = format!("{}x", s.admin_token());
    for bad in ["nope", "a.b.c", forged.as_str()] {
        let (st, b) = send(&s, Some(bad), "GET", "/version", None).await;
        assert_eq!(st, 401, "{bad}");
        assert_eq!(
            b,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
        );
    }
    // Discovery is for every authenticated user, even one without any binding.
    let t = s.user_token("jane", &[]);
    for p in ["/api", "/api/v1", "/apis", "/apis/apps/v1", "/openapi/v3"] {
        assert_eq!(send(&s, Some(&t), "GET", p, None).await.0, 200, "{p}");
    }
    assert_eq!(send(&s, Some(&t), "GET", CM, None).await.0, 403);
}

#[tokio::test]
async fn the_admin_kubeconfig_is_a_superuser() {
    let s = server(true);
    assert!(s.url().starts_with("https://127.0.0.1:"));
    let kc = s.kubeconfig_yaml("sim", "db");
    assert!(kc.contains("certificate-authority-data: "), "{kc}");
    let token = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("kubeconfig has a token");
    assert_eq!(token, s.admin_token());
    let (st, _) = send(
        &s,
        Some(token),
        "POST",
        CM,
        Some(json!({"metadata": {"name": "a"}})),
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(
        send(
            &s,
            Some(token),
            "DELETE",
            "/api/v1/namespaces/db/pods",
            None
        )
        .await
        .0,
        200
    );
    let (st, l) = send(
        &s,
        Some(token),
        "GET",
        &format!("{RBAC}/clusterroles"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let names: Vec<&str> = l["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"cluster-admin"), "{names:?}");
    let rec = s.requests();
    let last = rec.last().unwrap();
    assert_eq!(
        (last.path.as_str(), last.user.as_str()),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            "kubernetes-admin"
        )
    );
}

/// The failover ServiceAccount's case: a Role that names the state ConfigMap lets it read and
/// write that ConfigMap, but never create it (resourceNames cannot restrict create) nor list.
#[tokio::test]
async fn resource_names_allow_named_verbs_but_never_create_or_unnamed_list() {
    let s = server(true);
    service_account(&s, "db", "failover");
    role(
        &s,
        "failover",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["state"],
                "verbs": ["get", "update", "patch", "create", "list", "watch"]}]),
        sa_subject("failover"),
    );
    let t = s.service_account_token("db", "failover").unwrap();
    let b = forbidden(
        &s,
        Some(&t),
        "POST",
        CM,
        Some(json!({"metadata": {"name": "state"}})),
    )
    .await;
    assert_eq!(
        b["message"],
        "configmaps is forbidden: User \"system:serviceaccount:db:failover\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"db\""
    );
    assert_eq!(b["details"], json!({"kind": "configmaps"}));
    assert_eq!(
        s.request("GET", &format!("{CM}/state"), None, None).0,
        404,
        "a refused create changes nothing"
    );
    admin_create(&s, CM, json!({"metadata": {"name": "state"}}));
    admin_create(&s, CM, json!({"metadata": {"name": "other"}}));
    let (st, o) = send(&s, Some(&t), "GET", &format!("{CM}/state"), None).await;
    assert_eq!((st, o["metadata"]["name"].as_str()), (200, Some("state")));
    let (st, o) = send(
        &s,
        Some(&t),
        "PATCH",
        &format!("{CM}/state"),
        Some(json!({"data": {"leader": "a"}})),
    )
    .await;
    assert_eq!((st, o["data"]["leader"].as_str()), (200, Some("a")));
    assert_eq!(
        forbidden(&s, Some(&t), "GET", &format!("{CM}/other"), None).await["message"],
        "configmaps \"other\" is forbidden: User \"system:serviceaccount:db:failover\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"db\""
    );
    assert_eq!(
        send(&s, Some(&t), "DELETE", &format!("{CM}/state"), None)
            .await
            .0,
        403
    );
    let b = forbidden(&s, Some(&t), "GET", CM, None).await;
    assert!(
        b["message"].as_str().unwrap().contains("cannot list"),
        "{b}"
    );
    // A list that names its object through the field selector is allowed, as in the real server.
    let (st, l) = send(
        &s,
        Some(&t),
        "GET",
        &format!("{CM}?fieldSelector=metadata.name%3Dstate"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{l}");
    assert_eq!(l["items"].as_array().unwrap().len(), 1);
    // The fix the chart needs: create in its own rule, without resourceNames.
    role(
        &s,
        "failover-create",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]),
        sa_subject("failover"),
    );
    let (st, _) = send(
        &s,
        Some(&t),
        "POST",
        CM,
        Some(json!({"metadata": {"name": "new"}})),
    )
    .await;
    assert_eq!(st, 201);
}

#[tokio::test]
async fn verbs_map_from_method_and_watch() {
    let s = server(true);
    service_account(&s, "db", "reader");
    role(
        &s,
        "reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        sa_subject("reader"),
    );
    admin_create(&s, CM, json!({"metadata": {"name": "a"}}));
    let t = s.service_account_token("db", "reader").unwrap();
    assert_eq!(send(&s, Some(&t), "GET", CM, None).await.0, 200);
    let b = forbidden(&s, Some(&t), "GET", &format!("{CM}?watch=1"), None).await;
    assert!(
        b["message"].as_str().unwrap().contains("cannot watch"),
        "{b}"
    );
    for (method, path, verb) in [
        ("GET", format!("{CM}/a"), "get"),
        ("PUT", format!("{CM}/a"), "update"),
        ("PATCH", format!("{CM}/a"), "patch"),
        ("DELETE", format!("{CM}/a"), "delete"),
        ("DELETE", CM.to_string(), "deletecollection"),
    ] {
        let (st, b) = send(&s, Some(&t), method, &path, Some(json!({}))).await;
        assert_eq!(st, 403, "{method} {path}");
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains(&format!("cannot {verb} resource")),
            "{b}"
        );
    }
    assert_eq!(
        s.request("GET", &format!("{CM}/a"), None, None).0,
        200,
        "refused writes change nothing"
    );
}

#[tokio::test]
async fn subresources_need_their_own_rule() {
    let s = server(true);
    service_account(&s, "db", "kubelet");
    admin_create(
        &s,
        "/api/v1/namespaces/db/pods",
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}),
    );
    role(
        &s,
        "status",
        json!([{"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]}]),
        sa_subject("kubelet"),
    );
    let t = s.service_account_token("db", "kubelet").unwrap();
    let pod = "/api/v1/namespaces/db/pods/p";
    let (st, o) = send(
        &s,
        Some(&t),
        "PATCH",
        &format!("{pod}/status"),
        Some(json!({"status": {"phase": "Running"}})),
    )
    .await;
    assert_eq!((st, o["status"]["phase"].as_str()), (200, Some("Running")));
    assert_eq!(
        forbidden(
            &s,
            Some(&t),
            "PATCH",
            pod,
            Some(json!({"metadata": {"labels": {"a": "b"}}}))
        )
        .await["message"],
        "pods \"p\" is forbidden: User \"system:serviceaccount:db:kubelet\" cannot patch resource \"pods\" in API group \"\" in the namespace \"db\""
    );
    let b = forbidden(&s, Some(&t), "GET", &format!("{pod}/status"), None).await;
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("cannot get resource \"pods/status\""),
        "{b}"
    );
}

#[tokio::test]
async fn cluster_role_bindings_reach_every_namespace_role_bindings_only_theirs() {
    let s = server(true);
    admin_create(
        &s,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "web"}}),
    );
    service_account(&s, "db", "ops");
    admin_create(
        &s,
        &format!("{RBAC}/clusterroles"),
        json!({"metadata": {"name": "cm-reader"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
    );
    // A RoleBinding to a ClusterRole grants it in the binding's namespace only.
    admin_create(
        &s,
        &format!("{RBAC}/namespaces/db/rolebindings"),
        json!({"metadata": {"name": "cm-reader"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "ops"}]}),
    );
    let t = s.service_account_token("db", "ops").unwrap();
    assert_eq!(send(&s, Some(&t), "GET", CM, None).await.0, 200);
    forbidden(
        &s,
        Some(&t),
        "GET",
        "/api/v1/namespaces/web/configmaps",
        None,
    )
    .await;
    assert_eq!(
        forbidden(&s, Some(&t), "GET", "/api/v1/configmaps", None).await["message"],
        "configmaps is forbidden: User \"system:serviceaccount:db:ops\" cannot list resource \"configmaps\" in API group \"\" at the cluster scope"
    );
    admin_create(
        &s,
        &format!("{RBAC}/clusterrolebindings"),
        json!({"metadata": {"name": "cm-reader"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cm-reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "ops", "namespace": "db"}]}),
    );
    assert_eq!(
        send(
            &s,
            Some(&t),
            "GET",
            "/api/v1/namespaces/web/configmaps",
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        send(&s, Some(&t), "GET", "/api/v1/configmaps", None)
            .await
            .0,
        200
    );
    // A binding whose role is missing denies, and says why.
    admin_create(
        &s,
        &format!("{RBAC}/namespaces/db/rolebindings"),
        json!({"metadata": {"name": "dangling"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gone"},
               "subjects": [{"kind": "ServiceAccount", "name": "ops"}]}),
    );
    let b = forbidden(&s, Some(&t), "DELETE", &format!("{CM}/x"), None).await;
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .ends_with(": RBAC: role.rbac.authorization.k8s.io \"gone\" not found"),
        "{b}"
    );
}

#[tokio::test]
async fn group_and_user_subjects() {
    let s = server(true);
    service_account(&s, "db", "a");
    service_account(&s, "db", "b");
    role(
        &s,
        "all-sas",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:serviceaccounts:db"}]),
    );
    role(
        &s,
        "oncall",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]),
        json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "oncall"},
               {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "system:serviceaccount:db:b"}]),
    );
    let ta = s.service_account_token("db", "a").unwrap();
    let tb = s.service_account_token("db", "b").unwrap();
    let jane = s.user_token("jane", &["oncall"]);
    let bob = s.user_token("bob", &["dev"]);
    assert_eq!(send(&s, Some(&ta), "GET", CM, None).await.0, 200);
    assert_eq!(send(&s, Some(&tb), "GET", CM, None).await.0, 200);
    assert_eq!(send(&s, Some(&jane), "GET", CM, None).await.0, 403);
    let new = |n: &str| Some(json!({"metadata": {"name": n}}));
    assert_eq!(send(&s, Some(&ta), "POST", CM, new("x")).await.0, 403);
    assert_eq!(send(&s, Some(&tb), "POST", CM, new("y")).await.0, 201);
    assert_eq!(send(&s, Some(&jane), "POST", CM, new("z")).await.0, 201);
    let b = forbidden(&s, Some(&bob), "POST", CM, new("w")).await;
    assert!(
        b["message"].as_str().unwrap().contains("User \"bob\""),
        "{b}"
    );
}

#[tokio::test]
async fn token_secrets_are_filled_and_valid_while_secret_and_account_exist() {
    let s = server(true);
    let secrets = "/api/v1/namespaces/db/secrets";
    service_account(&s, "db", "failover");
    role(
        &s,
        "failover",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        sa_subject("failover"),
    );
    let secret = admin_create(
        &s,
        secrets,
        json!({"metadata": {"name": "failover-token",
                            "annotations": {"kubernetes.io/service-account.name": "failover"}},
               "type": "kubernetes.io/service-account-token"}),
    );
    let b64 = |v: &Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().expect("a base64 string"))
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(b64(&secret["data"]["namespace"]), "db");
    assert_eq!(b64(&secret["data"]["ca.crt"]), s.ca_pem());
    let (_, sa) = s.request(
        "GET",
        "/api/v1/namespaces/db/serviceaccounts/failover",
        None,
        None,
    );
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        sa["metadata"]["uid"]
    );
    let token = b64(&secret["data"]["token"]);
    assert_eq!(send(&s, Some(&token), "GET", CM, None).await.0, 200);
    let b = forbidden(&s, Some(&token), "GET", secrets, None).await;
    assert!(
        b["message"].as_str().unwrap().contains(
            "User \"system:serviceaccount:db:failover\" cannot list resource \"secrets\""
        ),
        "{b}"
    );
    // Deleting the Secret revokes its token.
    s.request("DELETE", &format!("{secrets}/failover-token"), None, None);
    assert_eq!(send(&s, Some(&token), "GET", CM, None).await.0, 401);

    // A Secret created before its ServiceAccount is filled when the account appears.
    let early = admin_create(
        &s,
        secrets,
        json!({"metadata": {"name": "late-token",
                            "annotations": {"kubernetes.io/service-account.name": "late"}},
               "type": "kubernetes.io/service-account-token"}),
    );
    assert!(early.get("data").is_none(), "{early}");
    service_account(&s, "db", "late");
    let (_, filled) = s.request("GET", &format!("{secrets}/late-token"), None, None);
    let late = b64(&filled["data"]["token"]);
    assert_eq!(send(&s, Some(&late), "GET", "/api", None).await.0, 200);
    let issued = s.service_account_token("db", "late").unwrap();
    assert_eq!(send(&s, Some(&issued), "GET", "/api", None).await.0, 200);
    // Deleting the ServiceAccount takes its token Secret along and revokes every token.
    s.request(
        "DELETE",
        "/api/v1/namespaces/db/serviceaccounts/late",
        None,
        None,
    );
    assert_eq!(
        s.request("GET", &format!("{secrets}/late-token"), None, None)
            .0,
        404
    );
    assert_eq!(send(&s, Some(&late), "GET", "/api", None).await.0, 401);
    assert_eq!(send(&s, Some(&issued), "GET", "/api", None).await.0, 401);
    // Same name again: a new account, the old tokens stay invalid.
    service_account(&s, "db", "late");
    assert_eq!(send(&s, Some(&issued), "GET", "/api", None).await.0, 401);

    // The annotation is required.
    let (st, b) = s.request(
        "POST",
        secrets,
        None,
        Some(&json!({"metadata": {"name": "bad"}, "type": "kubernetes.io/service-account-token"})),
    );
    assert_eq!(st, 422, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("metadata.annotations[kubernetes.io/service-account.name]: Required value"),
        "{b}"
    );
    assert!(s.service_account_token("db", "nobody").is_err());
}

#[tokio::test]
async fn token_request_and_service_account_kubeconfig() {
    let s = server(true);
    service_account(&s, "db", "patroni");
    role(
        &s,
        "patroni",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        sa_subject("patroni"),
    );
    let (st, tr) = send(
        &s,
        Some(s.admin_token()),
        "POST",
        "/api/v1/namespaces/db/serviceaccounts/patroni/token",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 600}})),
    )
    .await;
    assert_eq!(st, 201, "{tr}");
    assert_eq!(tr["kind"], "TokenRequest");
    let t = tr["status"]["token"].as_str().unwrap();
    assert_eq!(send(&s, Some(t), "GET", CM, None).await.0, 200);
    let (st, _) = send(
        &s,
        Some(s.admin_token()),
        "POST",
        "/api/v1/namespaces/db/serviceaccounts/nobody/token",
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 404);
    // The SA itself may not mint tokens without `create serviceaccounts/token`.
    let b = forbidden(
        &s,
        Some(t),
        "POST",
        "/api/v1/namespaces/db/serviceaccounts/patroni/token",
        Some(json!({})),
    )
    .await;
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("cannot create resource \"serviceaccounts/token\""),
        "{b}"
    );

    let kc = s
        .service_account_kubeconfig("sim", "db", "patroni")
        .unwrap();
    assert!(kc.contains("    namespace: db\n"), "{kc}");
    let token = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("kubeconfig has a token");
    assert_eq!(send(&s, Some(token), "GET", CM, None).await.0, 200);
    assert_eq!(
        s.request_as(
            Some(token),
            "POST",
            CM,
            None,
            Some(&json!({"metadata": {"name": "x"}}))
        )
        .0,
        403
    );
    assert_eq!(s.request_as(None, "GET", CM, None, None).0, 403);
}

/// Our binaries' client stack (kube-rs over rustls) with a ServiceAccount kubeconfig: HTTPS
/// trusted through the kubeconfig's CA, the token sent, a 403 surfaced as the API's Status.
#[tokio::test]
async fn kube_rs_with_a_service_account_kubeconfig() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s = server(true);
    service_account(&s, "db", "failover");
    role(
        &s,
        "failover",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["state"],
                "verbs": ["get", "patch"]}]),
        sa_subject("failover"),
    );
    admin_create(&s, CM, json!({"metadata": {"name": "state"}}));
    let kc = s
        .service_account_kubeconfig("sim", "db", "failover")
        .unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&kc).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let got = cms.get("state").await.unwrap();
    assert_eq!(got.metadata.name.as_deref(), Some("state"));
    let err = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
            assert_eq!(
                s.message,
                "configmaps is forbidden: User \"system:serviceaccount:db:failover\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"db\""
            );
        }
        other => panic!("expected a 403 Status, got {other:?}"),
    }
}

/// A watch is authorized when it starts (verb watch) and then streams over HTTPS as usual.
#[tokio::test]
async fn watches_stream_over_https_for_an_allowed_account() {
    let s = server(true);
    service_account(&s, "db", "patroni");
    role(
        &s,
        "patroni",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["watch"]}]),
        sa_subject("patroni"),
    );
    let t = s.service_account_token("db", "patroni").unwrap();
    let mut r = client(&s)
        .get(format!("{}{CM}?watch=1&timeoutSeconds=5", s.url()))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    admin_create(&s, CM, json!({"metadata": {"name": "seen"}}));
    let mut got = Vec::new();
    while !got.contains(&b'\n') {
        let chunk = tokio::time::timeout(Duration::from_secs(5), r.chunk())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .expect("the stream stays open");
        got.extend_from_slice(&chunk);
    }
    let ev: Value =
        serde_json::from_slice(&got[..got.iter().position(|b| *b == b'\n').unwrap()]).unwrap();
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("seen"))
    );
    // The same account cannot get what it may only watch.
    assert_eq!(
        send(&s, Some(&t), "GET", &format!("{CM}/seen"), None)
            .await
            .0,
        403
    );
}

/// `kubectl --as`: the admin may act as a ServiceAccount (then RBAC applies to that account);
/// an account without `impersonate` may not.
#[tokio::test]
async fn impersonation_needs_the_impersonate_verb() {
    let s = server(true);
    service_account(&s, "db", "failover");
    role(
        &s,
        "failover",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        sa_subject("failover"),
    );
    let as_user = |token: &str, user: &str, groups: &[&str]| {
        let mut rb = client(&s)
            .get(format!("{}{CM}", s.url()))
            .bearer_auth(token)
            .header("Impersonate-User", user);
        for g in groups {
            rb = rb.header("Impersonate-Group", *g);
        }
        async move {
            let r = rb.send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap())
        }
    };
    let admin = s.admin_token().to_string();
    assert_eq!(
        as_user(&admin, "system:serviceaccount:db:failover", &[])
            .await
            .0,
        200
    );
    let (st, b) = as_user(&admin, "system:serviceaccount:db:other", &[]).await;
    assert_eq!(st, 403);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("User \"system:serviceaccount:db:other\" cannot list"),
        "{b}"
    );
    // Groups come with the impersonated user and count for bindings.
    role(
        &s,
        "readers",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
        json!([{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "readers"}]),
    );
    assert_eq!(
        as_user(&admin, "jane", &[]).await.0,
        403,
        "jane is not bound"
    );
    assert_eq!(as_user(&admin, "jane", &["readers"]).await.0, 200);
    let t = s.service_account_token("db", "failover").unwrap();
    let (st, b) = as_user(&t, "jane", &[]).await;
    assert_eq!((st, &b["reason"]), (403, &json!("Forbidden")));
    assert_eq!(
        b["message"],
        "users \"jane\" is forbidden: User \"system:serviceaccount:db:failover\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    admin_create(
        &s,
        &format!("{RBAC}/clusterroles"),
        json!({"metadata": {"name": "impersonator"},
               "rules": [{"apiGroups": [""], "resources": ["users"], "resourceNames": ["jane"], "verbs": ["impersonate"]},
                         {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"]}]}),
    );
    admin_create(
        &s,
        &format!("{RBAC}/clusterrolebindings"),
        json!({"metadata": {"name": "impersonator"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonator"},
               "subjects": [{"kind": "ServiceAccount", "name": "failover", "namespace": "db"}]}),
    );
    let (st, b) = as_user(&t, "jane", &["readers"]).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(as_user(&t, "bob", &[]).await.0, 403);
}

/// Access reviews: a SelfSubjectAccessReview answers for the caller (any authenticated user may
/// ask), a SubjectAccessReview for any user (only for those allowed to create it).
#[tokio::test]
async fn access_reviews_answer_with_the_rbac_decision() {
    let s = server(true);
    service_account(&s, "db", "failover");
    role(
        &s,
        "failover",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["state"], "verbs": ["patch"]}]),
        sa_subject("failover"),
    );
    let t = s.service_account_token("db", "failover").unwrap();
    let ssar = |verb: &str, name: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
               "spec": {"resourceAttributes": {"namespace": "db", "verb": verb, "resource": "configmaps", "name": name}}})
    };
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (st, r) = send(&s, Some(&t), "POST", path, Some(ssar("patch", "state"))).await;
    assert_eq!((st, &r["status"]["allowed"]), (201, &json!(true)), "{r}");
    let (_, r) = send(&s, Some(&t), "POST", path, Some(ssar("create", ""))).await;
    assert_eq!(r["status"]["allowed"], false, "{r}");
    let (_, r) = send(&s, Some(&t), "POST", path, Some(ssar("patch", "other"))).await;
    assert_eq!(r["status"]["allowed"], false, "{r}");
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                     "spec": {"user": "system:serviceaccount:db:failover",
                              "resourceAttributes": {"namespace": "db", "verb": "patch", "resource": "configmaps", "name": "state"}}});
    let path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let (st, r) = send(&s, Some(s.admin_token()), "POST", path, Some(sar.clone())).await;
    assert_eq!((st, &r["status"]["allowed"]), (201, &json!(true)), "{r}");
    let (st, _) = send(&s, Some(&t), "POST", path, Some(sar)).await;
    assert_eq!(st, 403, "reviewing others needs its own permission");
    assert_eq!(send(&s, None, "POST", path, Some(json!({}))).await.0, 403);
    // Reviews are not stored.
    assert_eq!(
        send(&s, Some(s.admin_token()), "GET", path, None).await.0,
        405
    );
}
