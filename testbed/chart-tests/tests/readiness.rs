//! The readiness sidecar's part of the StatefulSet: the peer check (split-brain latch) and the
//! data volume for WAL preservation.

use pgdr_chart_tests::*;
use serde_json::Value;

fn sidecar(objs: &Objects, site: &str) -> Value {
    let sts = objs.get("StatefulSet", &format!("patroni-{site}"));
    container(&sts["spec"]["template"]["spec"], "readiness").clone()
}

#[test]
fn peer_check_through_the_tunnel_service_on_both_sites() {
    for (site, peer) in [("gold", "golddr"), ("golddr", "gold")] {
        let objs = Render::site(site).render();
        let c = sidecar(&objs, site);
        assert_eq!(
            env_value(&c, "READINESS_PEER_HOST"),
            format!("patroni-tunnel-{peer}.abc123-prod.svc"),
            "{site}"
        );
        assert_eq!(env_value(&c, "READINESS_PEER_PORT"), "5432");
        assert_eq!(env_value(&c, "READINESS_PEER_DATABASE"), "postgres");
        assert_eq!(env_value(&c, "READINESS_REPLICATION_USER"), "replicator");
        // The same Secret key Patroni's replication connections use.
        let pw = &env(&c, "READINESS_REPLICATION_PASSWORD").unwrap()["valueFrom"]["secretKeyRef"];
        let sts = objs.get("StatefulSet", &format!("patroni-{site}"));
        let patroni = container(&sts["spec"]["template"]["spec"], "patroni");
        assert_eq!(
            pw,
            &env(patroni, "PATRONI_REPLICATION_PASSWORD").unwrap()["valueFrom"]["secretKeyRef"],
            "{site}"
        );
        assert!(
            pw["name"].as_str().unwrap().ends_with("credentials"),
            "{site}: {pw}"
        );
        // The sidecar's sslmode is the replication's (one verifier in both binaries).
        let mode = env_value(&c, "READINESS_PEER_SSLMODE");
        assert!(
            ["disable", "prefer", "require", "verify-ca"].contains(&mode),
            "{site}: {mode}"
        );
        assert!(env(&c, "READINESS_PEER_SSLROOTCERT").is_none(), "{site}");
    }
    let c = sidecar(
        &Render::site("gold")
            .set("readiness.peerCheck.port=15432")
            .set("tunnel.serviceName=pg-from-golddr")
            .render(),
        "gold",
    );
    assert_eq!(env_value(&c, "READINESS_PEER_PORT"), "15432");
    assert_eq!(
        env_value(&c, "READINESS_PEER_HOST"),
        "pg-from-golddr.abc123-prod.svc"
    );
    let c = sidecar(
        &Render::site("gold")
            .set("tunnel.bootstrapPort=30123")
            .render(),
        "gold",
    );
    assert_eq!(env_value(&c, "READINESS_PEER_PORT"), "30123");
    // Where Service DNS is not used (e.g. the tunnel named by ClusterIP): an address.
    let c = sidecar(
        &Render::site("gold")
            .set("readiness.peerCheck.host=10.96.0.20")
            .render(),
        "gold",
    );
    assert_eq!(env_value(&c, "READINESS_PEER_HOST"), "10.96.0.20");
    // Its own PostgreSQL over the pod's loopback, on the chart's port.
    assert_eq!(env_value(&c, "READINESS_LOCAL_PG_HOST"), "127.0.0.1");
    assert_eq!(env_value(&c, "READINESS_LOCAL_PG_PORT"), "5432");
    // verify-ca: the sidecar verifies the peer's chain like Patroni's replication connection,
    // with the CA alone mounted from the TLS Secret (never the server key).
    let objs = Render::site("gold")
        .set("tls.enabled=true")
        .set("tls.sslMode=verify-ca")
        .set("tls.existingSecret=pg-tls")
        .render();
    let c = sidecar(&objs, "gold");
    assert_eq!(env_value(&c, "READINESS_PEER_SSLMODE"), "verify-ca");
    let root = env_value(&c, "READINESS_PEER_SSLROOTCERT");
    let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    let mount = mounts
        .iter()
        .find(|m| root.starts_with(m["mountPath"].as_str().unwrap_or("-")))
        .unwrap_or_else(|| panic!("{root} is on no mount of the sidecar: {mounts:?}"));
    assert_eq!(mount["readOnly"], true);
    let sts = objs.get("StatefulSet", "patroni-gold");
    let volume = sts["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap()
        .clone();
    assert_eq!(volume["secret"]["secretName"], "pg-tls");
    assert_eq!(
        volume["secret"]["items"],
        serde_json::json!([{"key": "ca.crt", "path": "ca.crt"}]),
        "only the CA reaches the sidecar"
    );
    assert!(root.ends_with("/ca.crt"), "{root} names the projected file");
}

#[test]
fn peer_check_off_or_without_a_peer_renders_nothing() {
    let off = Render::site("gold")
        .set("readiness.peerCheck.enabled=false")
        .render();
    let solo = Render::defaults().set("site.name=solo").render();
    for (what, c) in [
        ("off", sidecar(&off, "gold")),
        ("no peer", sidecar(&solo, "solo")),
    ] {
        for name in [
            "READINESS_PEER_HOST",
            "READINESS_REPLICATION_PASSWORD",
            "READINESS_REPLICATION_USER",
        ] {
            assert!(env(&c, name).is_none(), "{what}: {name}");
        }
    }
}

#[test]
fn data_volume_in_the_sidecar_for_wal_preservation() {
    let objs = Render::site("gold").render();
    let sts = objs.get("StatefulSet", "patroni-gold");
    let spec = &sts["spec"]["template"]["spec"];
    let mount = |c: &Value| {
        c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == "pgdata")
            .cloned()
    };
    let patroni = mount(container(spec, "patroni")).unwrap();
    let side = mount(container(spec, "readiness")).expect("the sidecar mounts the data volume");
    // Same path as Patroni's (PGDATA means the same there), read-write.
    assert_eq!(side["mountPath"], patroni["mountPath"]);
    assert_ne!(side["readOnly"], true);
    let c = container(spec, "readiness");
    let pgdata = env_value(c, "READINESS_PGDATA");
    assert!(
        pgdata.starts_with(patroni["mountPath"].as_str().unwrap()),
        "{pgdata}"
    );
    // The same data directory Patroni runs PostgreSQL in.
    let cm = objs.get("ConfigMap", "patroni-gold-config");
    let yml: Value = serde_saphyr::from_str(cm["data"]["patroni.yml"].as_str().unwrap()).unwrap();
    assert_eq!(yml["postgresql"]["data_dir"], pgdata);

    let off = Render::site("gold")
        .set("readiness.preserveWal.enabled=false")
        .render();
    let spec = &off.get("StatefulSet", "patroni-gold")["spec"]["template"]["spec"];
    assert!(mount(container(spec, "readiness")).is_none());
    assert!(env(container(spec, "readiness"), "READINESS_PGDATA").is_none());
}

#[test]
fn alerts_on_the_sidecars_split_brain_and_divergence() {
    for site in ["gold", "golddr"] {
        let objs = Render::site(site)
            .set("monitoring.prometheusRule.enabled=true")
            .render();
        let rules = objs.one("PrometheusRule")["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .clone();
        let expr = |name: &str| {
            rules
                .iter()
                .find(|r| r["alert"] == name)
                .unwrap_or_else(|| panic!("{site}: no alert {name}"))["expr"]
                .as_str()
                .unwrap()
                .to_string()
        };
        // Seen by this site's own sidecar: no federated Prometheus needed.
        let sb = expr("PgdrSplitBrain");
        assert!(
            sb.contains("pgdr_split_brain{") && sb.contains(&format!("patroni-{site}-[0-9]+")),
            "{sb}"
        );
        let div = expr("PgdrDiverged");
        assert!(
            div.contains("pgdr_divergence_bytes{") && div.ends_with("> 0"),
            "{div}"
        );
    }
}
