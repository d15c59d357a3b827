//! Real Patroni 4 and PostgreSQL against the in-memory Kubernetes API server.
//!
//! These are correctness tests: deadlines are generous and nothing here measures timing. Every
//! node stops its processes on drop, and prints its logs if the test is failing.

use std::time::Duration;

use kubesim::{Config, Server, ServerHandle};
use pgdr_patroni_harness::{PatroniNode, Scratch};
use serde_json::{Value, json};

/// Deadline for each wait: bootstrap and promotion take seconds, CI machines can be slow.
const DEADLINE: Duration = Duration::from_secs(90);

fn start_site() -> ServerHandle {
    Server::spawn(Config::default()).expect("starting a kubesim server")
}

/// GETs an object; `Err` (not yet) unless it exists.
fn get(server: &ServerHandle, path: &str) -> Result<Value, String> {
    match server.request("GET", path, None, None) {
        (200, object) => Ok(object),
        (status, body) => Err(format!("GET {path}: {status} {body}")),
    }
}

/// The string value of `metadata.<field>.<key>` (annotations or labels) of an object.
fn meta<'a>(object: &'a Value, field: &str, key: &str) -> Option<&'a str> {
    object["metadata"][field][key].as_str()
}

/// Patroni was never refused by the API server, apart from the 409s its races expect (reference
/// §4.4-4.5). Anything else means kubesim differs from a real API server where Patroni cares.
fn assert_api_served_patroni(server: &ServerHandle) {
    let refused: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("Patroni/") && r.status >= 300 && r.status != 409)
        .map(|r| format!("{} {}?{} -> {}", r.method, r.path, r.query, r.status))
        .collect();
    assert!(
        refused.is_empty(),
        "kubesim refused Patroni:\n{}",
        refused.join("\n")
    );
}

/// Runs SQL that must succeed; returns its rows, one per line.
fn query(node: &PatroniNode, sql: &str) -> String {
    node.psql(sql)
        .unwrap_or_else(|e| panic!("query on {}: {e}", node.name()))
}

#[test]
fn one_member_cluster_bootstraps_and_publishes_its_state() {
    let scratch = Scratch::new().expect("locating tools");
    let server = start_site();
    let ns = "site-a";
    let pg0 = PatroniNode::builder("demo", "pg0")
        .namespace(ns)
        .start(&scratch, &server)
        .expect("starting pg0");
    pg0.wait_writable(DEADLINE).expect("pg0 becomes primary");

    let sysid = query(&pg0, "SELECT system_identifier FROM pg_control_system()");
    let cm = |name: &str| format!("/api/v1/namespaces/{ns}/configmaps/{name}");

    let leader = pg0
        .wait_for("demo-leader to name pg0", DEADLINE, || {
            let object = get(&server, &cm("demo-leader"))?;
            match meta(&object, "annotations", "leader") {
                Some("pg0") => Ok(object),
                other => Err(format!("leader annotation {other:?}")),
            }
        })
        .expect("leader ConfigMap");
    assert_eq!(meta(&leader, "labels", "cluster-name"), Some("demo"));
    assert_eq!(meta(&leader, "labels", "application"), Some("patroni"));

    let config = pg0
        .wait_for(
            "demo-config to hold initialize and config",
            DEADLINE,
            || {
                let object = get(&server, &cm("demo-config"))?;
                let init = meta(&object, "annotations", "initialize");
                let config = meta(&object, "annotations", "config");
                match (init, config) {
                    (Some(init), Some(config)) if init == sysid => {
                        serde_json::from_str::<Value>(config).map_err(|e| format!("config {e}"))
                    }
                    _ => Err(format!("annotations {}", object["metadata"]["annotations"])),
                }
            },
        )
        .expect("config ConfigMap");
    assert_eq!(config["ttl"], 20, "dynamic config: {config}");
    assert_eq!(config["postgresql"]["use_pg_rewind"], true, "{config}");

    // Patroni 4 labels the leader's Pod role=primary (leader_label_value).
    pg0.wait_for("Pod pg0 to be labelled role=primary", DEADLINE, || {
        let pod = get(&server, &format!("/api/v1/namespaces/{ns}/pods/pg0"))?;
        match meta(&pod, "labels", "role") {
            Some("primary") => Ok(()),
            other => Err(format!("role label {other:?}")),
        }
    })
    .expect("Pod role label");

    let pod = get(&server, &format!("/api/v1/namespaces/{ns}/pods/pg0")).expect("Pod pg0");
    assert_eq!(pod["status"]["podIP"], pg0.address().to_string());
    let member: Value = meta(&pod, "annotations", "status")
        .and_then(|status| serde_json::from_str(status).ok())
        .unwrap_or_else(|| panic!("Pod pg0 has no member status annotation: {pod}"));
    assert_eq!(member["role"], "primary", "{member}");
    assert_eq!(member["state"], "running", "{member}");

    let list = pg0.patronictl(&["list"]).expect("patronictl list");
    let row = list
        .lines()
        .find(|line| line.contains("pg0"))
        .unwrap_or_else(|| panic!("pg0 missing from patronictl list:\n{list}"));
    assert!(
        row.contains("Leader") && row.contains("running"),
        "pg0 should be a running Leader:\n{list}"
    );
    assert_api_served_patroni(&server);
}

#[test]
fn standby_cluster_follows_the_other_site_and_promotes() {
    let scratch = Scratch::new().expect("locating tools");
    // One API server per site, as with two OpenShift clusters.
    let gold = start_site();
    let golddr = start_site();

    let a = PatroniNode::builder("gold", "gold-0")
        .permanent_slot("standby_b")
        .start(&scratch, &gold)
        .expect("starting site A");
    a.wait_writable(DEADLINE).expect("site A becomes primary");
    a.wait_query(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'standby_b'",
        "1",
        DEADLINE,
    )
    .expect("Patroni creates the permanent slot on site A");
    query(
        &a,
        "CREATE TABLE orders (id int PRIMARY KEY, note text NOT NULL);
         INSERT INTO orders SELECT g, 'before standby' FROM generate_series(1, 100) g",
    );

    let b = PatroniNode::builder("golddr", "golddr-0")
        .standby_cluster(a.as_standby_source(Some("standby_b")))
        .start(&scratch, &golddr)
        .expect("starting site B");
    b.wait_rest("/standby-leader", 200, DEADLINE)
        .expect("site B becomes standby leader");

    // Rows written after B's clone arrive by streaming through the slot.
    query(
        &a,
        "INSERT INTO orders SELECT g, 'streamed' FROM generate_series(101, 150) g",
    );
    b.wait_query("SELECT count(*) FROM orders", "150", DEADLINE)
        .expect("replication A -> B");
    assert_eq!(
        query(
            &a,
            "SELECT active FROM pg_replication_slots WHERE slot_name = 'standby_b'"
        ),
        "t",
        "B streams through the permanent slot"
    );

    // A standby cluster is not a primary and refuses writes.
    let primary = b.rest("GET", "/primary", None).expect("GET /primary on B");
    assert_ne!(primary.status, 200, "B is not primary: {}", primary.body);
    let refused = b
        .psql("INSERT INTO orders VALUES (999, 'must fail')")
        .expect_err("a standby must refuse writes");
    assert!(
        refused.to_string().contains("read-only"),
        "unexpected error: {refused}"
    );

    // Promote B: remove standby_cluster from its dynamic config (what the failover job does).
    let new_config = b
        .patch_config(&json!({"standby_cluster": null}))
        .expect("PATCH /config on B");
    assert!(new_config.get("standby_cluster").is_none(), "{new_config}");
    b.wait_writable(DEADLINE).expect("site B becomes primary");
    b.wait_for("site B on timeline 2", DEADLINE, || {
        let status = b.rest("GET", "/patroni", None).map_err(|e| e.to_string())?;
        match status.json()["timeline"].as_u64() {
            Some(2) => Ok(()),
            other => Err(format!("timeline {other:?}: {}", status.body)),
        }
    })
    .expect("promotion starts timeline 2");

    query(
        &b,
        "INSERT INTO orders SELECT g, 'after promotion' FROM generate_series(151, 160) g",
    );
    assert!(
        query(&b, "SELECT pg_walfile_name(pg_current_wal_lsn())").starts_with("00000002"),
        "B writes WAL on timeline 2"
    );
    assert_eq!(
        query(
            &b,
            "SELECT note || '=' || count(*) FROM orders GROUP BY note ORDER BY min(id)"
        ),
        "before standby=100\nstreamed=50\nafter promotion=10",
        "B keeps everything written before the promotion"
    );
    assert_api_served_patroni(&gold);
    assert_api_served_patroni(&golddr);
}
