//! The server's own test suite, over real HTTP: conflicts, replay, 410, selectors, merge
//! semantics, the status subresource, error shapes, CRDs, watch framing and fault injection.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use kubesim::{Action, Config, Rule, Server, ServerHandle};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn server() -> ServerHandle {
    Server::spawn(Config::default()).expect("server starts")
}

fn client() -> reqwest::Client {
    // reqwest is built without a bundled crypto provider (the workspace links only ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

const CM: &str = "/api/v1/namespaces/default/configmaps";

async fn send(
    c: &reqwest::Client,
    s: &ServerHandle,
    method: &str,
    path: &str,
    ct: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = c.request(method.parse().unwrap(), format!("{}{path}", s.url()));
    if let Some(ct) = ct {
        rb = rb.header("content-type", ct);
    }
    if let Some(b) = body {
        rb = rb.body(serde_json::to_vec(&b).unwrap());
    }
    let r = rb.send().await.expect("request sent");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion is a string")
        .parse()
        .expect("resourceVersion is an integer")
}

fn assert_status(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn create_without_content_type_then_cas_conflict() {
    let s = server();
    let c = client();
    // Patroni's create: no Content-Type, no kind/apiVersion.
    let (st, obj) = send(
        &c,
        &s,
        "POST",
        CM,
        None,
        Some(json!({"metadata": {"namespace": "default", "name": "demo-config", "labels": {"application": "patroni"}, "annotations": {"initialize": "", "gone": null}}})),
    )
    .await;
    assert_eq!(st, 201, "{obj}");
    assert_eq!(obj["kind"], "ConfigMap");
    assert_eq!(obj["apiVersion"], "v1");
    assert!(obj["metadata"]["uid"].is_string() && obj["metadata"]["creationTimestamp"].is_string());
    assert!(
        obj["metadata"]["annotations"].get("gone").is_none(),
        "null annotations are dropped"
    );
    let rv1 = rv(&obj);

    let (st, body) = send(
        &c,
        &s,
        "POST",
        CM,
        None,
        Some(json!({"metadata": {"name": "demo-config"}})),
    )
    .await;
    assert_eq!(st, 409);
    assert_status(&body, 409, "AlreadyExists");
    assert_eq!(body["details"]["name"], "demo-config");

    // CAS write with the right RV succeeds, then the same RV is stale.
    let smp = Some("application/strategic-merge-patch+json");
    let patch = json!({"metadata": {"annotations": {"initialize": "123"}, "resourceVersion": rv1.to_string()}});
    let (st, obj2) = send(
        &c,
        &s,
        "PATCH",
        &format!("{CM}/demo-config"),
        smp,
        Some(patch.clone()),
    )
    .await;
    assert_eq!(st, 200, "{obj2}");
    assert!(rv(&obj2) > rv1);
    let stale = json!({"metadata": {"annotations": {"initialize": "999"}, "resourceVersion": rv1.to_string()}});
    let (st, body) = send(
        &c,
        &s,
        "PATCH",
        &format!("{CM}/demo-config"),
        smp,
        Some(stale),
    )
    .await;
    assert_eq!(st, 409);
    assert_status(&body, 409, "Conflict");
    let (_, now) = send(&c, &s, "GET", &format!("{CM}/demo-config"), None, None).await;
    assert_eq!(
        now["metadata"]["annotations"]["initialize"], "123",
        "a conflicting write changes nothing"
    );

    // PUT with a stale RV is a conflict too; PUT with the current one works.
    let mut put = now.clone();
    put["metadata"]["resourceVersion"] = json!(rv1.to_string());
    let (st, _) = send(
        &c,
        &s,
        "PUT",
        &format!("{CM}/demo-config"),
        Some("application/json"),
        Some(put),
    )
    .await;
    assert_eq!(st, 409);
    let mut put = now.clone();
    put["data"] = json!({"k": "v"});
    let (st, obj3) = send(
        &c,
        &s,
        "PUT",
        &format!("{CM}/demo-config"),
        Some("application/json"),
        Some(put),
    )
    .await;
    assert_eq!(st, 200, "{obj3}");
    assert_eq!(obj3["data"]["k"], "v");
}

#[tokio::test]
async fn merge_null_deletes_and_lists_are_replaced() {
    let s = server();
    let c = client();
    send(
        &c,
        &s,
        "POST",
        "/api/v1/namespaces/default/endpoints",
        Some("application/json"),
        Some(
            json!({"metadata": {"name": "ep", "annotations": {"leader": "pg0", "ttl": "30"}},
                    "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}]}),
        ),
    )
    .await;
    let (st, o) = send(
        &c,
        &s,
        "PATCH",
        "/api/v1/namespaces/default/endpoints/ep",
        Some("application/strategic-merge-patch+json"),
        Some(json!({"metadata": {"annotations": {"leader": null, "optime": "5"}}, "subsets": [{"addresses": [{"ip": "10.0.0.3"}]}]})),
    )
    .await;
    assert_eq!(st, 200, "{o}");
    let ann = &o["metadata"]["annotations"];
    assert!(ann.get("leader").is_none(), "null deletes: {ann}");
    assert_eq!(ann["ttl"], "30");
    assert_eq!(ann["optime"], "5");
    assert_eq!(
        o["subsets"],
        json!([{"addresses": [{"ip": "10.0.0.3"}]}]),
        "subsets replaced"
    );

    // JSON merge patch and JSON patch.
    let (st, o) = send(
        &c,
        &s,
        "PATCH",
        "/api/v1/namespaces/default/endpoints/ep",
        Some("application/merge-patch+json"),
        Some(json!({"metadata": {"annotations": {"ttl": null}}})),
    )
    .await;
    assert_eq!(st, 200);
    assert!(o["metadata"]["annotations"].get("ttl").is_none());
    let (st, o) = send(
        &c,
        &s,
        "PATCH",
        "/api/v1/namespaces/default/endpoints/ep",
        Some("application/json-patch+json"),
        Some(json!([{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}])),
    )
    .await;
    assert_eq!(st, 200, "{o}");
    assert_eq!(o["metadata"]["labels"]["a"], "b");
}

#[tokio::test]
async fn malformed_requests_get_status_errors_and_change_nothing() {
    let s = server();
    let c = client();
    let (_, created) = send(
        &c,
        &s,
        "POST",
        CM,
        None,
        Some(json!({"metadata": {"name": "keep"}, "data": {"a": "1"}})),
    )
    .await;
    let before = rv(&created);
    // (method, path, content type, body, expected code, expected reason)
    type Case<'a> = (
        &'a str,
        String,
        Option<&'a str>,
        Option<&'a [u8]>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("PATCH", format!("{CM}/keep"), Some("text/plain"), Some(b"{}"), 415, "UnsupportedMediaType"),
        ("PATCH", format!("{CM}/keep"), Some("application/merge-patch+json"), Some(b"{not json"), 400, "BadRequest"),
        ("PATCH", format!("{CM}/keep"), Some("application/json-patch+json"), Some(br#"[{"op":"test","path":"/data/a","value":"2"},{"op":"add","path":"/data/b","value":"x"}]"#), 422, "Invalid"),
        ("PATCH", format!("{CM}/keep"), Some("application/merge-patch+json"), Some(br#"{"data":{"a":1}}"#), 400, "BadRequest"),
        ("PATCH", format!("{CM}/keep"), Some("application/merge-patch+json"), Some(br#"{"metadata":{"labels":{"bad key":"x"}}}"#), 422, "Invalid"),
        ("PATCH", format!("{CM}/keep"), Some("application/merge-patch+json"), Some(br#"{"metadata":{"annotations":{"n":5}}}"#), 400, "BadRequest"),
        ("PATCH", format!("{CM}/nope"), Some("application/merge-patch+json"), Some(b"{}"), 404, "NotFound"),
        ("GET", format!("{CM}?labelSelector=a%20in%20(b"), None, None, 400, "BadRequest"),
        ("GET", format!("{CM}?fieldSelector=metadata.name"), None, None, 400, "BadRequest"),
        ("POST", CM.to_string(), Some("application/json"), Some(br#"{"metadata":{"name":"Bad_Name!"}}"#), 422, "Invalid"),
        ("POST", "/api/v1/namespaces/missing/configmaps".to_string(), None, Some(br#"{"metadata":{"name":"x"}}"#), 404, "NotFound"),
        ("POST", CM.to_string(), Some("application/json"), Some(br#"{"kind":"Secret","metadata":{"name":"x"}}"#), 400, "BadRequest"),
        ("GET", "/api/v1/namespaces/default/widgets".to_string(), None, None, 404, "NotFound"),
        ("GET", "/apis/example.com/v1".to_string(), None, None, 404, "NotFound"),
    ];
    for (method, path, ct, body, code, reason) in cases {
        let mut rb = c.request(method.parse().unwrap(), format!("{}{path}", s.url()));
        if let Some(ct) = ct {
            rb = rb.header("content-type", ct);
        }
        if let Some(b) = body {
            rb = rb.body(b.to_vec());
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status().as_u16(), code, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert_status(&v, code, reason);
    }
    let (_, after) = send(&c, &s, "GET", &format!("{CM}/keep"), None, None).await;
    assert_eq!(
        rv(&after),
        before,
        "no malformed request changed the object"
    );
    assert_eq!(after["data"], json!({"a": "1"}));
    assert_eq!(
        s.resource_version(),
        before,
        "nothing else was written either"
    );
}

#[tokio::test]
async fn selectors_filter_lists_and_delete_collection() {
    let s = server();
    let c = client();
    for (name, labels) in [
        (
            "a",
            json!({"application": "patroni", "cluster-name": "demo", "role": "primary"}),
        ),
        (
            "b",
            json!({"application": "patroni", "cluster-name": "demo", "role": "replica"}),
        ),
        (
            "c",
            json!({"application": "patroni", "cluster-name": "other"}),
        ),
        ("d", json!({"app": "web"})),
    ] {
        let (st, _) = send(
            &c,
            &s,
            "POST",
            CM,
            None,
            Some(json!({"metadata": {"name": name, "labels": labels}})),
        )
        .await;
        assert_eq!(st, 201);
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    for (sel, want) in [
        (
            "application%3Dpatroni%2Ccluster-name%3Ddemo",
            vec!["a", "b"],
        ),
        ("role%21%3Dprimary", vec!["b", "c", "d"]),
        ("role%20in%20(primary%2Creplica)", vec!["a", "b"]),
        ("!role", vec!["c", "d"]),
        ("cluster-name", vec!["a", "b", "c"]),
        ("cluster-name%20notin%20(demo)", vec!["c", "d"]),
    ] {
        let (st, l) = send(
            &c,
            &s,
            "GET",
            &format!("{CM}?labelSelector={sel}"),
            None,
            None,
        )
        .await;
        assert_eq!(st, 200);
        assert_eq!(l["kind"], "ConfigMapList");
        assert_eq!(names(&l), want, "selector {sel}");
    }
    let (_, l) = send(
        &c,
        &s,
        "GET",
        &format!("{CM}?fieldSelector=metadata.name%3Db"),
        None,
        None,
    )
    .await;
    assert_eq!(names(&l), vec!["b"]);
    let (_, l) = send(
        &c,
        &s,
        "GET",
        "/api/v1/configmaps?fieldSelector=metadata.namespace%3Ddefault",
        None,
        None,
    )
    .await;
    assert_eq!(
        names(&l).len(),
        4,
        "all-namespaces list with a namespace field selector"
    );
    let (_, l) = send(
        &c,
        &s,
        "GET",
        "/api/v1/namespaces/kube-system/configmaps",
        None,
        None,
    )
    .await;
    assert_eq!(l["items"], json!([]), "an empty list has an items array");

    let (st, _) = send(
        &c,
        &s,
        "DELETE",
        &format!("{CM}?labelSelector=application%3Dpatroni%2Ccluster-name%3Ddemo"),
        None,
        None,
    )
    .await;
    assert_eq!(st, 200);
    let (_, l) = send(&c, &s, "GET", CM, None, None).await;
    assert_eq!(names(&l), vec!["c", "d"]);
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let s = server();
    let c = client();
    let sts = "/apis/apps/v1/namespaces/default/statefulsets";
    let (st, o) = send(
        &c,
        &s,
        "POST",
        sts,
        None,
        Some(
            json!({"metadata": {"name": "db"}, "spec": {"replicas": 1}, "status": {"replicas": 9}}),
        ),
    )
    .await;
    assert_eq!(st, 201, "{o}");
    assert_eq!(o["metadata"]["generation"], 1);
    let mp = Some("application/merge-patch+json");
    let (_, o) = send(
        &c,
        &s,
        "PATCH",
        &format!("{sts}/db"),
        mp,
        Some(json!({"spec": {"replicas": 2}, "status": {"replicas": 5}})),
    )
    .await;
    assert_eq!(
        o["metadata"]["generation"], 2,
        "spec change bumps generation"
    );
    assert_eq!(o["spec"]["replicas"], 2);
    assert_ne!(
        o["status"]["replicas"], 5,
        "status is ignored on the main resource"
    );
    let (st, o) = send(
        &c,
        &s,
        "PATCH",
        &format!("{sts}/db/status"),
        mp,
        Some(json!({"spec": {"replicas": 7}, "status": {"readyReplicas": 2}})),
    )
    .await;
    assert_eq!(st, 200, "{o}");
    assert_eq!(o["status"]["readyReplicas"], 2);
    assert_eq!(
        o["spec"]["replicas"], 2,
        "spec is ignored on the status subresource"
    );
    assert_eq!(
        o["metadata"]["generation"], 2,
        "status writes do not bump generation"
    );
    let (st, _) = send(
        &c,
        &s,
        "GET",
        "/api/v1/namespaces/default/configmaps/x/status",
        None,
        None,
    )
    .await;
    assert_eq!(st, 404, "configmaps have no status subresource");
}

#[tokio::test]
async fn crd_registration_serves_custom_resources() {
    let s = server();
    let c = client();
    let tsc = "/apis/porter.devops.gov.bc.ca/v1alpha1/namespaces/default/transportserverclaims";
    let (st, _) = send(&c, &s, "GET", tsc, None, None).await;
    assert_eq!(st, 404, "not served before its CRD");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "transportserverclaims.porter.devops.gov.bc.ca"},
        "spec": {"group": "porter.devops.gov.bc.ca", "scope": "Namespaced",
                 "names": {"plural": "transportserverclaims", "singular": "transportserverclaim", "kind": "TransportServerClaim", "shortNames": ["tscs"]},
                 "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    let (st, o) = send(
        &c,
        &s,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        None,
        Some(crd),
    )
    .await;
    assert_eq!(st, 201, "{o}");
    assert!(
        o["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
    let (_, groups) = send(&c, &s, "GET", "/apis", None, None).await;
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "porter.devops.gov.bc.ca")
    );
    let (_, res) = send(
        &c,
        &s,
        "GET",
        "/apis/porter.devops.gov.bc.ca/v1alpha1",
        None,
        None,
    )
    .await;
    assert!(
        res["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "transportserverclaims" && r["shortNames"] == json!(["tscs"]))
    );
    let (st, o) = send(
        &c,
        &s,
        "POST",
        tsc,
        Some("application/json"),
        Some(json!({"apiVersion": "porter.devops.gov.bc.ca/v1alpha1", "kind": "TransportServerClaim",
                    "metadata": {"name": "db"}, "spec": {"service": "db", "servicePort": 5432}, "status": {"port": "1"}})),
    )
    .await;
    assert_eq!(st, 201, "{o}");
    assert!(
        o.get("status").is_none(),
        "status is ignored on create when the CRD has a status subresource"
    );
    let (st, o) = send(
        &c,
        &s,
        "PATCH",
        &format!("{tsc}/db/status"),
        Some("application/merge-patch+json"),
        Some(json!({"status": {"port": "53292"}})),
    )
    .await;
    assert_eq!(st, 200, "{o}");
    assert_eq!(o["status"]["port"], "53292");
    // Deleting the CRD removes the type and its objects.
    let (st, _) = send(&c, &s, "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/transportserverclaims.porter.devops.gov.bc.ca", None, None).await;
    assert_eq!(st, 200);
    let (st, _) = send(&c, &s, "GET", tsc, None, None).await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn discovery_lists_required_resources() {
    let s = server();
    let c = client();
    let (_, v) = send(&c, &s, "GET", "/version", None, None).await;
    assert_eq!(v["major"], "1");
    let (_, core) = send(&c, &s, "GET", "/api/v1", None, None).await;
    let names: Vec<&str> = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for r in [
        "configmaps",
        "secrets",
        "services",
        "endpoints",
        "pods",
        "events",
        "serviceaccounts",
        "namespaces",
        "pods/status",
    ] {
        assert!(names.contains(&r), "{r} in /api/v1");
    }
    for (gv, r) in [
        ("apps/v1", "statefulsets"),
        ("batch/v1", "jobs"),
        ("batch/v1", "cronjobs"),
        ("policy/v1", "poddisruptionbudgets"),
        ("networking.k8s.io/v1", "networkpolicies"),
        ("rbac.authorization.k8s.io/v1", "roles"),
        ("rbac.authorization.k8s.io/v1", "rolebindings"),
        ("coordination.k8s.io/v1", "leases"),
        ("apiextensions.k8s.io/v1", "customresourcedefinitions"),
    ] {
        let (st, l) = send(&c, &s, "GET", &format!("/apis/{gv}"), None, None).await;
        assert_eq!(st, 200);
        assert!(
            l["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == r),
            "{r} in {gv}"
        );
    }
}

/// Reads an HTTP/1.1 response head from a raw socket.
fn read_head(sock: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        sock.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap().to_lowercase()
}

/// Reads one chunk of a chunked body (None at the terminating chunk).
fn read_chunk(sock: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        sock.read_exact(&mut b).unwrap();
        line.push(b[0]);
    }
    let size = usize::from_str_radix(std::str::from_utf8(&line).unwrap().trim(), 16).unwrap();
    let mut data = vec![0u8; size + 2];
    sock.read_exact(&mut data).unwrap();
    (size > 0).then(|| String::from_utf8(data[..size].to_vec()).unwrap())
}

fn events(sock: &mut TcpStream, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut buf = String::new();
    while out.len() < n {
        buf.push_str(&read_chunk(sock).expect("stream still open"));
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            if !line.trim().is_empty() {
                out.push(serde_json::from_str(line.trim()).unwrap());
            }
        }
    }
    out
}

#[test]
fn watch_is_chunked_replays_after_rv_and_keeps_the_connection() {
    let s = server();
    let mk = |name: &str| {
        let (st, o) = s.request(
            "POST",
            CM,
            None,
            Some(&json!({"metadata": {"name": name, "labels": {"application": "patroni"}}})),
        );
        assert_eq!(st, 201);
        rv(&o)
    };
    let rv_a = mk("a");
    mk("b");
    let mut sock = TcpStream::connect(s.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Patroni's exact query: capital-T True, selector first.
    write!(
        sock,
        "GET {CM}?labelSelector=application%3Dpatroni&watch=True&resourceVersion={rv_a} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut sock);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    let ev = events(&mut sock, 1);
    assert_eq!(ev[0]["type"], "ADDED");
    assert_eq!(
        ev[0]["object"]["metadata"]["name"], "b",
        "replayed the change after rv_a only"
    );
    assert_eq!(ev[0]["object"]["kind"], "ConfigMap");
    // A change made after the watch started arrives live; a label change that leaves the
    // selection arrives as DELETED with a higher resourceVersion.
    let (_, o) = s.request(
        "PATCH",
        &format!("{CM}/a"),
        Some("application/merge-patch+json"),
        Some(&json!({"data": {"x": "1"}})),
    );
    let ev = events(&mut sock, 1);
    assert_eq!(
        (ev[0]["type"].as_str(), rv(&ev[0]["object"])),
        (Some("MODIFIED"), rv(&o))
    );
    s.request(
        "PATCH",
        &format!("{CM}/a"),
        Some("application/merge-patch+json"),
        Some(&json!({"metadata": {"labels": {"application": null}}})),
    );
    let ev = events(&mut sock, 1);
    assert_eq!(ev[0]["type"], "DELETED");
    s.request("DELETE", &format!("{CM}/b"), None, None);
    let ev = events(&mut sock, 1);
    assert_eq!(ev[0]["type"], "DELETED");
    assert!(
        rv(&ev[0]["object"]) > rv(&o),
        "DELETED carries a new resourceVersion"
    );
    // No BOOKMARK unless asked: cut the watch, the stream ends cleanly with the last chunk.
    s.faults().cut_watches();
    assert_eq!(read_chunk(&mut sock), None, "clean end of stream");
    // Keep-alive: the same connection serves another request.
    write!(sock, "GET /version HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let head = read_head(&mut sock);
    assert!(head.starts_with("http/1.1 200"), "{head}");
}

#[test]
fn watch_from_a_too_old_rv_gets_410_error_event() {
    let s = Server::spawn(Config {
        event_log_capacity: 16,
        ..Config::default()
    })
    .unwrap();
    for i in 0..40 {
        s.request(
            "POST",
            CM,
            None,
            Some(&json!({"metadata": {"name": format!("c{i}")}})),
        );
    }
    let mut sock = TcpStream::connect(s.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "GET {CM}?watch=true&resourceVersion=2 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut sock);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let ev = events(&mut sock, 1);
    assert_eq!(ev[0]["type"], "ERROR");
    assert_eq!(ev[0]["object"]["code"], 410);
    assert_eq!(ev[0]["object"]["reason"], "Expired");
    assert_eq!(read_chunk(&mut sock), None);
}

#[test]
fn bookmarks_only_when_asked_and_watch_timeout_honoured() {
    let s = Server::spawn(Config {
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .unwrap();
    let open = |q: &str| {
        let mut sock = TcpStream::connect(s.addr()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(sock, "GET {CM}?watch=1&{q} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        read_head(&mut sock);
        sock
    };
    let mut with = open("allowWatchBookmarks=true&timeoutSeconds=5");
    let ev = events(&mut with, 1);
    assert_eq!(ev[0]["type"], "BOOKMARK");
    assert!(ev[0]["object"]["metadata"]["resourceVersion"].is_string());
    let started = Instant::now();
    let mut without = open("timeoutSeconds=1");
    assert_eq!(
        read_chunk(&mut without),
        None,
        "no events, no bookmark: just the end after the timeout"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn injected_failures_delays_and_outages() {
    let s = server();
    let c = client();
    s.faults().fail_next(1, 503, Some(2));
    let r = c.get(format!("{}{CM}", s.url())).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    let v: Value = r.json().await.unwrap();
    assert_status(&v, 503, "ServiceUnavailable");
    let (st, _) = send(&c, &s, "GET", CM, None, None).await;
    assert_eq!(st, 200, "only the next request failed");

    s.faults().add(
        Rule::new(Action::Fail {
            status: 500,
            retry_after: None,
        })
        .method("PATCH"),
    );
    let (st, _) = send(
        &c,
        &s,
        "POST",
        CM,
        None,
        Some(json!({"metadata": {"name": "f"}})),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = send(
        &c,
        &s,
        "PATCH",
        &format!("{CM}/f"),
        Some("application/merge-patch+json"),
        Some(json!({"data": {"a": "b"}})),
    )
    .await;
    assert_eq!(st, 500);
    s.faults().clear();

    s.faults().delay_all(Duration::from_millis(300));
    let t = Instant::now();
    send(&c, &s, "GET", CM, None, None).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    s.faults().clear();

    // Outage: connections are refused, then the server is back on the same address.
    s.faults().refuse_for(Duration::from_millis(800));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        std::net::TcpStream::connect(s.addr()).is_err(),
        "connection refused during the outage"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (st, _) = send(&client(), &s, "GET", CM, None, None).await;
    assert_eq!(st, 200, "serving again after the outage");

    // The admin endpoint drives the same faults over HTTP (for separate processes).
    let (st, _) = send(
        &c,
        &s,
        "POST",
        "/kubesim/faults",
        None,
        Some(json!({"rule": {"action": {"type": "fail", "status": 504}, "times": 1}})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = send(&c, &s, "GET", CM, None, None).await;
    assert_eq!(st, 504);
    let (st, _) = send(&c, &s, "GET", CM, None, None).await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn two_servers_are_independent() {
    let a = server();
    let b = server();
    assert_ne!(a.addr(), b.addr());
    let c = client();
    send(
        &c,
        &a,
        "POST",
        CM,
        None,
        Some(json!({"metadata": {"name": "only-a"}})),
    )
    .await;
    let (st, _) = send(&c, &b, "GET", &format!("{CM}/only-a"), None, None).await;
    assert_eq!(st, 404);
}
