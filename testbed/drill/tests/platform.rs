//! The TransportServerClaim emulation between two sites: generated Services on both sides, a
//! connection from the peer site reaching the primary site's NodePort Service through the tunnel,
//! cut/heal and a port change.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use std::time::Duration;

use pgdr_drill::Platform;
use pgdr_minicluster::api;
use pgdr_minicluster::testing::*;
use serde_json::{Value, json};

fn service_addr(svc: &Value) -> String {
    format!(
        "{}:{}",
        svc["spec"]["clusterIP"].as_str().unwrap(),
        svc["spec"]["ports"][0]["port"]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsc_tunnels_the_peer_site_to_the_primary_nodeport() {
    let gold = rbac_site("gold").await;
    let golddr = rbac_site("golddr").await;
    let platform = Platform::start(&gold, &golddr).await.unwrap();

    // The primary site: a pod behind a NodePort Service `db`, and a TSC for it.
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db-gold", "namespace": NS},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": web_template("db")}});
    gold.api().create(api::STATEFULSETS, NS, &sts).unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": NS},
        "spec": {"type": "NodePort", "selector": {"app": "db"},
                 "ports": [{"name": "postgresql", "port": 5432, "targetPort": "http"}]}});
    gold.api().create(api::SERVICES, NS, &svc).unwrap();
    let tsc = json!({"apiVersion": "porter.devops.gov.bc.ca/v1alpha1", "kind": "TransportServerClaim",
        "metadata": {"name": "db-tsc", "namespace": NS},
        "spec": {"service": "db", "servicePort": 5432, "overrideServicePort": false,
                 "monitor": {"interval": 10, "timeout": 10, "type": "tcp"}}});
    gold.api().create(api::TSCS, NS, &tsc).unwrap();

    // Both generated Services exist, on a random high port with port == targetPort.
    let on_gold = gold
        .wait_for("db-golddr", Duration::from_secs(10), |a| {
            a.get(api::SERVICES, NS, "db-golddr").ok()?
        })
        .await
        .unwrap();
    let on_dr = golddr
        .wait_for("db-gold", Duration::from_secs(10), |a| {
            a.get(api::SERVICES, NS, "db-gold").ok()?
        })
        .await
        .unwrap();
    for s in [&on_gold, &on_dr] {
        let port = s["spec"]["ports"][0]["port"].as_u64().unwrap();
        assert!(port >= 40000, "random high port, got {port}");
        assert_eq!(
            s["spec"]["ports"][0]["targetPort"],
            s["spec"]["ports"][0]["port"]
        );
        assert!(s["spec"].get("selector").is_none());
    }
    // The platform writes the Endpoints right after the Service, not atomically with it.
    golddr
        .wait_for("db-gold endpoints", Duration::from_secs(10), |a| {
            a.get(api::ENDPOINTS, NS, "db-gold").ok()?
        })
        .await
        .unwrap();
    let tsc = gold
        .wait_for("TSC status", Duration::from_secs(10), |a| {
            let t = a.get(api::TSCS, NS, "db-tsc").ok()??;
            t["status"]["port"].is_string().then_some(t)
        })
        .await
        .unwrap();
    assert!(tsc["status"]["address"].is_string());

    // From the DR site, through the tunnel, to the primary's pod.
    let url = format!("http://{}/name", service_addr(&on_dr));
    let mut reply = None;
    for _ in 0..300 {
        reply = get_text(&url).await;
        if reply.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reply.as_deref(), Some("db-gold-0"), "through {url}");
    assert!(platform.stats("db").unwrap().bytes_down > 0);

    // Cut: refused; heal: back.
    platform.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get_text(&url).await, None, "cut link answers nothing");
    platform.heal();
    let mut healed = None;
    for _ in 0..50 {
        healed = get_text(&url).await;
        if healed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(healed.as_deref(), Some("db-gold-0"));

    // The platform moves the tunnel: the Service's port changes, and the new one works.
    let old_port = on_dr["spec"]["ports"][0]["port"].clone();
    platform.change_port();
    let moved = golddr
        .wait_for("a new port", Duration::from_secs(10), |a| {
            let s = a.get(api::SERVICES, NS, "db-gold").ok()??;
            (s["spec"]["ports"][0]["port"] != old_port).then_some(s)
        })
        .await
        .unwrap();
    assert_eq!(
        moved["spec"]["clusterIP"], on_dr["spec"]["clusterIP"],
        "ClusterIP kept"
    );
    assert_eq!(
        platform.peer_port("db").map(u64::from),
        moved["spec"]["ports"][0]["port"].as_u64()
    );
    let url = format!("http://{}/name", service_addr(&moved));
    let mut again = None;
    for _ in 0..50 {
        again = get_text(&url).await;
        if again.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        again.as_deref(),
        Some("db-gold-0"),
        "through the moved tunnel {url}"
    );

    platform.stop().await;
    tokio::join!(gold.shutdown(), golddr.shutdown());
}
