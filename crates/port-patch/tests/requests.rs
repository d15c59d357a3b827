//! Request-level checks with a mocked API (tower-test): the exact requests port-patch sends,
//! which the in-memory server cannot show as precisely (content type, body, query, order).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use pgdr_port_patch::config::{HostMode, PortField};
use pgdr_port_patch::{Outcome, Settings, run_with};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

const NS: &str = "ns1";

fn settings() -> Settings {
    pgdr_port_patch::Config {
        scope: "demo".into(),
        tunnel_service: "pg-gold".into(),
        namespace: None,
        port_field: PortField::Port,
        port_name: None,
        host_mode: HostMode::Dns,
        host: None,
        primary_slot_name: None,
        create_replica_methods: None,
        labels: Default::default(),
        scope_label: "cluster-name".into(),
        config_map: None,
        leader_config_map: None,
        base_config: None,
        deadline: pgdr_core::Dur::secs(10),
        request_timeout: pgdr_core::Dur::secs(5),
        force: false,
        promotion_record_configmap: "demo-promotion-record".into(),
        demote_promoted_site: false,
        log_format: pgdr_core::LogFormat::Plain,
    }
    .validate()
    .unwrap()
}

type H = Handle<Request<Body>, Response<Body>>;

/// Takes the next request, checks method and path, returns its JSON body and content type
/// (plus the query, which must contain `query_has`).
async fn expect(
    handle: &mut H,
    method: Method,
    path: &str,
    query_has: &str,
) -> (Value, String, mock::SendResponse<Response<Body>>) {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.method(), method, "{} {}", req.method(), req.uri());
    assert_eq!(req.uri().path(), path);
    let query = req.uri().query().unwrap_or_default();
    assert!(
        query.contains(query_has),
        "query {query:?} lacks {query_has:?}"
    );
    let ct = req
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (body, ct, send)
}

fn reply(send: mock::SendResponse<Response<Body>>, code: u16, body: Value) {
    send.send_response(
        Response::builder()
            .status(StatusCode::from_u16(code).unwrap())
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("mock {reason}"), "reason": reason, "code": code})
}

fn cm(rv: &str, config: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "demo-config", "namespace": NS, "resourceVersion": rv, "uid": "u1",
                        "annotations": {"initialize": "77", "config": config.to_string()}}})
}

const SVC: &str = "/api/v1/namespaces/ns1/services/pg-gold";
const CFG: &str = "/api/v1/namespaces/ns1/configmaps/demo-config";
const LEADER: &str = "/api/v1/namespaces/ns1/configmaps/demo-leader";

#[tokio::test]
async fn conflict_rereads_and_patches_again_with_the_new_resource_version() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, NS);
    let job = tokio::spawn(async move { run_with(client, NS, &settings()).await });

    let (_, _, send) = expect(&mut handle, Method::GET, SVC, "").await;
    reply(
        send,
        200,
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "pg-gold", "namespace": NS},
        "spec": {"ports": [{"port": 43504, "targetPort": 43504}]}}),
    );

    // First round: read at RV 5, CAS loses to a concurrent writer.
    let (_, _, send) = expect(&mut handle, Method::GET, CFG, "").await;
    reply(
        send,
        200,
        cm(
            "5",
            json!({"ttl": 30, "standby_cluster": {"host": "old", "port": 1}}),
        ),
    );
    let (_, _, send) = expect(&mut handle, Method::GET, LEADER, "").await;
    reply(send, 404, status(404, "NotFound"));
    let (body, ct, send) = expect(
        &mut handle,
        Method::PATCH,
        CFG,
        "fieldManager=pgdr-port-patch",
    )
    .await;
    assert_eq!(ct, "application/merge-patch+json");
    assert_eq!(
        body["metadata"]["resourceVersion"], "5",
        "the write is a compare-and-set"
    );
    assert_eq!(
        body["metadata"].as_object().unwrap().len(),
        2,
        "only resourceVersion and annotations: {body}"
    );
    assert_eq!(
        body["metadata"]["annotations"].as_object().unwrap().len(),
        1,
        "only the config annotation"
    );
    reply(send, 409, status(409, "Conflict"));

    // Second round: re-read at RV 6 (the other writer changed ttl), CAS at RV 6 keeping ttl 45.
    let (_, _, send) = expect(&mut handle, Method::GET, CFG, "").await;
    reply(
        send,
        200,
        cm(
            "6",
            json!({"ttl": 45, "standby_cluster": {"host": "old", "port": 1}}),
        ),
    );
    let (_, _, send) = expect(&mut handle, Method::GET, LEADER, "").await;
    reply(send, 404, status(404, "NotFound"));
    let (body, _, send) = expect(
        &mut handle,
        Method::PATCH,
        CFG,
        "fieldManager=pgdr-port-patch",
    )
    .await;
    assert_eq!(body["metadata"]["resourceVersion"], "6");
    let written: Value =
        serde_json::from_str(body["metadata"]["annotations"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(
        written,
        json!({"ttl": 45, "standby_cluster": {"host": "pg-gold.ns1.svc", "port": 43504}})
    );
    reply(send, 200, cm("7", written));

    let (event, _, send) = expect(
        &mut handle,
        Method::POST,
        "/api/v1/namespaces/ns1/events",
        "",
    )
    .await;
    assert_eq!(event["reason"], "StandbyClusterConfigured");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["involvedObject"]["resourceVersion"], "7");
    assert!(
        event["message"].as_str().unwrap().contains("was old:1"),
        "{event}"
    );
    reply(send, 201, event.clone());

    let report = job.await.unwrap().unwrap();
    assert_eq!(report.conflicts, 1);
    match report.outcome {
        Outcome::Updated {
            resource_version, ..
        } => assert_eq!(resource_version, "7"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn leader_pod_role_is_read_from_the_patroni_status_annotation() {
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, NS);
    let job = tokio::spawn(async move { run_with(client, NS, &settings()).await });

    let (_, _, send) = expect(&mut handle, Method::GET, SVC, "").await;
    reply(
        send,
        200,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pg-gold"},
        "spec": {"ports": [{"port": 43504}]}}),
    );
    let (_, _, send) = expect(&mut handle, Method::GET, CFG, "").await;
    reply(send, 200, cm("9", json!({"ttl": 30})));
    let (_, _, send) = expect(&mut handle, Method::GET, LEADER, "").await;
    reply(
        send,
        200,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "demo-leader", "annotations": {"leader": "demo-1"}}}),
    );
    let (_, _, send) = expect(
        &mut handle,
        Method::GET,
        "/api/v1/namespaces/ns1/pods/demo-1",
        "",
    )
    .await;
    reply(
        send,
        200,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo-1",
        "annotations": {"status": "{\"state\":\"running\",\"role\":\"primary\",\"timeline\":2}"}}}),
    );
    // No PATCH: only the Event saying why.
    let (event, _, send) = expect(
        &mut handle,
        Method::POST,
        "/api/v1/namespaces/ns1/events",
        "",
    )
    .await;
    assert_eq!(event["reason"], "StandbyClusterNotRestored");
    reply(send, 201, event.clone());

    let report = job.await.unwrap().unwrap();
    assert!(
        matches!(report.outcome, Outcome::LeftPromoted { .. }),
        "{report:?}"
    );
}
