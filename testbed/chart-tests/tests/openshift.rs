//! What breaks first on real OpenShift (Gold/GoldDR), asserted on the renders: storage permissions,
//! quotas, F5 ingress, pg_hba/TLS, GitOps credentials, WAL vs disk, the replication slot, the
//! application database, monitoring and the expected knobs.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use pgdr_chart_tests::*;
use serde_json::{Value, json};

fn gold() -> Objects {
    Render::site("gold").render()
}

fn golddr() -> Objects {
    Render::site("golddr").render()
}

fn patroni_yml(objs: &Objects, site: &str) -> Value {
    let cm = objs.get("ConfigMap", &format!("patroni-{site}-config"));
    serde_saphyr::from_str(cm["data"]["patroni.yml"].as_str().unwrap()).unwrap()
}

fn pod_spec<'a>(objs: &'a Objects, site: &str) -> &'a Value {
    &objs.get("StatefulSet", &format!("patroni-{site}"))["spec"]["template"]["spec"]
}

fn hba(objs: &Objects, site: &str) -> Vec<String> {
    patroni_yml(objs, site)["postgresql"]["pg_hba"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// The first pg_hba line that matches a connection (type, database, user), as PostgreSQL picks it.
/// `ssl` says whether the TCP connection uses TLS; `from_pod_network` whether the client address is
/// in 10.128.0.0/14 (listed in `superuserNetworks` by the test) rather than e.g. an F5 address.
fn first_match(
    rules: &[String],
    ssl: bool,
    db: &str,
    user: &str,
    from_pod_network: bool,
) -> String {
    for r in rules {
        let f: Vec<&str> = r.split_whitespace().collect();
        let type_ok = match f[0] {
            "host" => true,
            "hostssl" => ssl,
            "hostnossl" => !ssl,
            _ => false,
        };
        let db_ok = f[1] == db || (f[1] == "all" && db != "replication");
        let user_ok = f[2] == "all" || f[2] == user;
        let addr_ok = match f[3] {
            "0.0.0.0/0" | "::/0" => true,
            "10.128.0.0/14" => from_pod_network,
            _ => false,
        };
        if type_ok && db_ok && user_ok && addr_ok {
            return r.clone();
        }
    }
    "no match (rejected)".into()
}

fn millicores(q: &str) -> u64 {
    q.strip_suffix('m')
        .map(|m| m.parse().unwrap())
        .unwrap_or_else(|| (q.parse::<f64>().unwrap() * 1000.0) as u64)
}

fn mebibytes(q: &str) -> u64 {
    q.strip_suffix("Mi")
        .map(|m| m.parse().unwrap())
        .unwrap_or_else(|| q.strip_suffix("Gi").unwrap().parse::<u64>().unwrap() * 1024)
}

#[test]
fn data_volume_ownership_changes_only_on_root_mismatch() {
    for (site, objs) in [("gold", gold()), ("golddr", golddr())] {
        let psc = &pod_spec(&objs, site)["securityContext"];
        assert_eq!(psc["fsGroupChangePolicy"], "OnRootMismatch", "{site}");
        assert!(
            psc.get("fsGroup").is_none(),
            "{site}: the SCC assigns fsGroup"
        );
    }
}

#[test]
fn everything_fits_the_platform_default_quota_limits_and_storage_included() {
    // Platform default quota: 0.5 CPU / 2 GiB requested, 1.5 CPU / 4 GiB limits, 1 GiB storage.
    for (site, objs) in [("gold", gold()), ("golddr", golddr())] {
        let (mut lcpu, mut lmem, mut rcpu, mut rmem) = (0, 0, 0, 0);
        for (what, _, spec) in objs.pod_templates() {
            let copies = if what.starts_with("StatefulSet/") {
                2
            } else {
                1
            };
            for c in containers(spec) {
                let r = &c["resources"];
                rcpu += copies * millicores(r["requests"]["cpu"].as_str().unwrap());
                rmem += copies * mebibytes(r["requests"]["memory"].as_str().unwrap());
                lcpu += copies * millicores(r["limits"]["cpu"].as_str().unwrap());
                lmem += copies * mebibytes(r["limits"]["memory"].as_str().unwrap());
            }
        }
        assert!(
            rcpu <= 500,
            "{site}: {rcpu}m CPU requested (all pods at once)"
        );
        assert!(rmem <= 2048, "{site}: {rmem}Mi requested");
        assert!(
            lcpu <= 1500,
            "{site}: {lcpu}m CPU limits (all pods at once)"
        );
        assert!(lmem <= 4096, "{site}: {lmem}Mi limits");
        let sts = objs.get("StatefulSet", &format!("patroni-{site}"));
        let replicas = sts["spec"]["replicas"].as_u64().unwrap();
        let size =
            sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
                .as_str()
                .unwrap();
        assert!(
            replicas * mebibytes(size) <= 1024,
            "{site}: {replicas} x {size} over the 1 GiB storage quota"
        );
        // NOTES (computed from the values) and README "Sizing" state the same totals as the
        // rendered pods, so a user can compare them with the namespace's quota.
        let notes = Render::site(site).notes();
        let stated = format!("requests {rcpu}m CPU / {rmem}Mi,\nlimits {lcpu}m CPU / {lmem}Mi,");
        assert!(
            notes.contains(&stated),
            "{site}: want {stated:?} in\n{notes}"
        );
        let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
        let row = format!("| {rcpu}m / {rmem} MiB | {lcpu}m / {lmem} MiB | 2 x 512 MiB |");
        let sizing =
            &readme[readme.find("## Sizing").unwrap()..readme.find("## Credentials").unwrap()];
        assert!(
            sizing.contains(&row),
            "{site}: README \"Sizing\" lacks {row:?}"
        );
        // And what that leaves of the default quota for the application.
        let left = format!(
            "| {}m / {} MiB | {}m / {} MiB | {} |",
            500 - rcpu,
            2048 - rmem,
            1500 - lcpu,
            4096 - lmem,
            1024 - replicas * mebibytes(size)
        );
        assert!(
            sizing.contains(&left),
            "{site}: README \"Sizing\" lacks {left:?}"
        );
    }
    let notes = Render::site("golddr").notes();
    assert!(
        notes.contains("storage 1024Mi (2 x 512Mi), NodePorts 1"),
        "{notes}"
    );
    assert!(
        notes.contains("(2 Patroni pods, a failover run, the port-patch Job, the test pod)"),
        "{notes}"
    );
    let notes = Render::site("gold").notes();
    assert!(
        notes.contains("(2 Patroni pods, a failover run, the test pod)"),
        "{notes}"
    );
}

#[test]
fn f5_ingress_admits_the_host_network_group_not_the_router() {
    // F5 -> NodePort traffic enters through the node (host-network policy group on
    // OVN-Kubernetes); the router (policy-group ingress) never carries the tunnel, so it is not a
    // default peer.
    for objs in [gold(), golddr()] {
        let np = objs.get("NetworkPolicy", "patroni-from-f5-ingress");
        let from = np["spec"]["ingress"][0]["from"].as_array().unwrap();
        assert_eq!(
            from,
            &vec![
                json!({"namespaceSelector": {"matchLabels": {"policy-group.network.openshift.io/host-network": ""}}})
            ],
            "{from:?}"
        );
        let text = serde_json::to_string(&objs.0).unwrap();
        assert!(
            !text.contains(r#""network.openshift.io/policy-group":"ingress""#),
            "a policy admits the router's policy group"
        );
    }
    let custom = Render::site("gold")
        .set_json(r#"networkPolicy.f5Ingress.peers=[{"ipBlock":{"cidr":"142.34.0.0/16"}}]"#)
        .render();
    let np = custom.get("NetworkPolicy", "patroni-from-f5-ingress");
    assert_eq!(
        np["spec"]["ingress"][0]["from"],
        json!([{"ipBlock": {"cidr": "142.34.0.0/16"}}])
    );
}

#[test]
fn tsc_needs_a_nodeport_service() {
    let err = Render::site("gold")
        .set("services.tunnel.type=ClusterIP")
        .render_err();
    assert!(err.contains("must be NodePort"), "{err}");
    // Without a TSC (standby site) another type renders.
    Render::site("golddr")
        .set("services.tunnel.type=ClusterIP")
        .render();
    // The applications' primary Service is ClusterIP by default and may be NodePort.
    let objs = Render::site("gold")
        .set("services.tunnel.nodePort=31432")
        .set("services.tunnel.externalTrafficPolicy=Local")
        .set("services.primary.type=NodePort")
        .set("services.primary.nodePort=31433")
        .render();
    let svc = objs.get("Service", "patroni-tunnel");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 31432);
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(
        objs.get("Service", "patroni")["spec"]["ports"][0]["nodePort"],
        31433
    );
    let err = Render::site("gold")
        .set("services.primary.nodePort=31433")
        .render_err();
    assert!(
        err.contains("services.primary.type is not NodePort"),
        "{err}"
    );
}

#[test]
fn pg_hba_protects_the_tunnel() {
    let rules = hba(&golddr(), "golddr");
    // Replication and rewind need TLS; plain TCP is rejected for them.
    assert!(
        first_match(&rules, true, "replication", "replicator", false)
            .starts_with("hostssl replication replicator")
    );
    assert!(first_match(&rules, false, "replication", "replicator", false).ends_with("reject"));
    assert!(
        first_match(&rules, true, "postgres", "rewinder", false)
            .starts_with("hostssl all rewinder")
    );
    assert!(first_match(&rules, false, "postgres", "rewinder", false).ends_with("reject"));
    // The superuser never over TCP by default (only loopback); with the pod network listed, from
    // there but still never from an F5 address.
    assert!(first_match(&rules, true, "postgres", "postgres", false).ends_with("reject"));
    assert!(first_match(&rules, true, "postgres", "postgres", true).ends_with("reject"));
    let pod_net = hba(
        &Render::site("golddr")
            .set_json(r#"postgresql.superuserNetworks=["10.128.0.0/14"]"#)
            .render(),
        "golddr",
    );
    assert!(first_match(&pod_net, true, "postgres", "postgres", false).ends_with("reject"));
    assert!(first_match(&pod_net, true, "postgres", "postgres", true).ends_with("scram-sha-256"));
    assert!(
        first_match(&rules, true, "replication", "postgres", false).contains("reject")
            || first_match(&rules, true, "replication", "postgres", false).starts_with("no match")
    );
    assert!(rules.contains(&"host all all 127.0.0.1/32 scram-sha-256".to_string()));
    // Applications: scram over TLS only on both sites of a pair by default (tls.enforce null: the
    // tunnel target NodePort is reachable from the whole data-centre network on both sites).
    for (site, objs) in [("gold", gold()), ("golddr", golddr())] {
        let rules = hba(&objs, site);
        assert!(
            first_match(&rules, false, "app", "app", false).ends_with("reject"),
            "{site}: plain TCP for applications: {rules:?}"
        );
        assert!(
            first_match(&rules, true, "app", "app", false).starts_with("hostssl all all"),
            "{site}: {rules:?}"
        );
        assert!(
            !rules
                .iter()
                .any(|l| l.starts_with("host all all 0.0.0.0/0")),
            "{site}: a plain catch-all: {rules:?}"
        );
    }
    // The explicit opt-out keeps plain TCP for applications, and NOTES warn about it.
    let opted_out = hba(
        &Render::site("gold").set("tls.enforce=false").render(),
        "gold",
    );
    assert!(first_match(&opted_out, false, "app", "app", false).starts_with("host all all"));
    let notes = Render::site("gold").set("tls.enforce=false").notes();
    assert!(
        notes.contains("tls.enforce=false while a NodePort exposes PostgreSQL"),
        "{notes}"
    );
    assert!(
        !Render::site("gold")
            .notes()
            .contains("tls.enforce=false while"),
        "warned without the opt-out"
    );
    // No NodePort (a single site with a ClusterIP primary Service): not enforced by default; a
    // NodePort primary Service turns it on; TLS off turns it off; true without TLS is refused.
    let single = Render::defaults().set("site.name=solo").render();
    assert!(
        first_match(&hba(&single, "solo"), false, "app", "app", false).starts_with("host all all")
    );
    let single_np = Render::defaults()
        .set("site.name=solo")
        .set("services.primary.type=NodePort")
        .render();
    assert!(first_match(&hba(&single_np, "solo"), false, "app", "app", false).ends_with("reject"));
    let no_tls = hba(
        &Render::site("gold").set("tls.enabled=false").render(),
        "gold",
    );
    assert!(first_match(&no_tls, false, "app", "app", false).starts_with("host all all"));
    let err = Render::site("gold")
        .set("tls.enabled=false")
        .set("tls.enforce=true")
        .render_err();
    assert!(err.contains("tls.enforce=true needs tls.enabled"), "{err}");

    // extraPgHba lines are inserted before the catch-all (so they match), not replacing the list.
    let extra = hba(
        &Render::site("golddr")
            .set_json(r#"postgresql.extraPgHba=["hostssl app app 10.0.0.0/8 scram-sha-256"]"#)
            .render(),
        "golddr",
    );
    let at = extra
        .iter()
        .position(|l| l == "hostssl app app 10.0.0.0/8 scram-sha-256")
        .unwrap();
    let catch_all = extra
        .iter()
        .position(|l| l.starts_with("hostssl all all 0.0.0.0/0"))
        .unwrap();
    assert!(at < catch_all, "{extra:?}");
    assert!(
        extra
            .iter()
            .any(|l| l.starts_with("hostssl replication replicator"))
    );

    // log_connections on; channel binding on replication and rewind when TLS is on.
    let objs = golddr();
    assert_eq!(
        patroni_yml(&objs, "golddr")["postgresql"]["parameters"]["log_connections"],
        "on"
    );
    let c = container(pod_spec(&objs, "golddr"), "patroni");
    assert_eq!(
        env_value(c, "PATRONI_REPLICATION_CHANNEL_BINDING"),
        "require"
    );
    assert_eq!(env_value(c, "PATRONI_REWIND_CHANNEL_BINDING"), "require");
    let off = Render::site("golddr").set("tls.enabled=false").render();
    let c = container(pod_spec(&off, "golddr"), "patroni");
    assert!(env(c, "PATRONI_REPLICATION_CHANNEL_BINDING").is_none());
    assert!(
        hba(&off, "golddr")
            .iter()
            .all(|l| !l.starts_with("hostssl"))
    );
}

#[test]
fn gitops_can_forbid_generated_secrets() {
    let err = Render::site("gold")
        .set("generateSecrets=false")
        .render_err();
    assert!(
        err.contains("generateSecrets=false needs credentials.existingSecret"),
        "{err}"
    );
    let err = Render::site("gold")
        .set("generateSecrets=false")
        .set("credentials.existingSecret=pg-creds")
        .render_err();
    assert!(err.contains("needs tls.existingSecret"), "{err}");
    let objs = Render::site("gold")
        .set("generateSecrets=false")
        .set("credentials.existingSecret=pg-creds")
        .set("tls.existingSecret=pg-tls")
        .set("appDatabase.existingSecret=pg-app")
        .render();
    for s in objs.of_kind("Secret") {
        assert_ne!(s["type"], "Opaque", "generated {}", describe(s));
        assert_ne!(s["type"], "kubernetes.io/tls", "generated {}", describe(s));
    }
    // The default warns in NOTES.
    let notes = Render::site("gold").notes();
    assert!(notes.contains("Credentials under GitOps"), "{notes}");

    // A standby site never reads the application owner's password (the role arrives by
    // replication; post_bootstrap and the SELECT 1 test run on a primary site only), so GitOps
    // there needs no appDatabase.existingSecret, and nothing refers to the app Secret.
    let golddr = Render::site("golddr")
        .set("generateSecrets=false")
        .set("tls.existingSecret=pg-tls")
        .render();
    for s in golddr.of_kind("Secret") {
        assert_ne!(s["type"], "Opaque", "generated {}", describe(s));
    }
    let text = serde_json::to_string(&golddr.0).unwrap();
    assert!(
        !text.contains("patroni-app"),
        "a standby site refers to the app Secret"
    );
    // The primary site still needs it.
    let err = Render::site("gold")
        .set("generateSecrets=false")
        .set("credentials.existingSecret=pg-creds")
        .set("tls.existingSecret=pg-tls")
        .render_err();
    assert!(
        err.contains("generateSecrets=false needs appDatabase.existingSecret on a primary site"),
        "{err}"
    );
}

#[test]
fn wal_settings_must_fit_the_volume() {
    let cfg = patroni_yml(&gold(), "gold");
    let p = &cfg["postgresql"]["parameters"];
    assert_eq!(p["max_wal_size"], "128MB");
    assert_eq!(p["min_wal_size"], "32MB");
    // 128 + 32 + 96 = 256 MiB = half of 512Mi: fits.
    let err = Render::site("gold")
        .set("postgresql.maxWalSize=1GB")
        .render_err();
    assert!(err.contains("WAL does not fit the volume"), "{err}");
    assert!(err.contains("Resizing the data volumes"), "{err}");
    let err = Render::site("gold")
        .set_json(r#"postgresql.maxSlotWalKeepSize="-1""#)
        .render_err();
    assert!(err.contains("unlimited"), "{err}");
    Render::site("gold")
        .set("postgresql.maxWalSize=1GB")
        .set("persistence.size=5Gi")
        .render();
    let err = Render::site("gold")
        .set("postgresql.minWalSize=256MB")
        .render_err();
    assert!(err.contains("minWalSize"), "{err}");
}

#[test]
fn one_explicit_slot_name_for_both_sites() {
    let g = patroni_yml(&gold(), "gold");
    let d = golddr();
    let slot = "pgdr_golddr";
    assert_eq!(
        g["bootstrap"]["dcs"]["slots"],
        json!({slot: {"type": "physical"}})
    );
    assert_eq!(
        patroni_yml(&d, "golddr")["bootstrap"]["dcs"]["standby_cluster"]["primary_slot_name"],
        slot
    );
    let cj = d.one("CronJob");
    let c = container(
        &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "failover",
    );
    assert_eq!(env_value(c, "FAILOVER_PEER_SLOT_NAME"), slot);
    // A typo in a site name does not change the slot the standby asks for.
    let typo = Render::site("golddr").set("site.name=goldr").render();
    assert_eq!(
        patroni_yml(&typo, "goldr")["bootstrap"]["dcs"]["standby_cluster"]["primary_slot_name"],
        slot
    );
    // Without a shared name, a two-site render fails.
    let err = Render::site("golddr")
        .set("replication.slotName=")
        .render_err();
    assert!(err.contains("replication.slotName is required"), "{err}");
    assert!(
        Render::site("golddr")
            .notes()
            .contains("Replication slot:    pgdr_golddr")
    );
}

#[test]
fn application_database_is_created_at_bootstrap_on_the_primary_site() {
    let objs = gold();
    let cfg = patroni_yml(&objs, "gold");
    assert_eq!(
        cfg["bootstrap"]["post_bootstrap"],
        "sh /etc/patroni/post-bootstrap.sh app app /etc/pgdr/app/password"
    );
    let cm = objs.get("ConfigMap", "patroni-gold-config");
    let script = cm["data"]["post-bootstrap.sh"].as_str().unwrap();
    assert!(
        script.contains("CREATE ROLE :\"owner\" LOGIN PASSWORD :'pw'"),
        "{script}"
    );
    assert!(
        script.contains("CREATE DATABASE :\"db\" OWNER :\"owner\""),
        "{script}"
    );
    let secret = objs.get("Secret", "patroni-app");
    for key in ["username", "password", "database", "host", "port"] {
        assert!(secret["data"][key].is_string(), "app Secret lacks {key}");
    }
    let spec = pod_spec(&objs, "gold");
    let vol = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "app-credentials")
        .unwrap();
    assert_eq!(vol["secret"]["secretName"], "patroni-app");
    // The standby site receives the database by replication: no script, no Secret, no mount.
    let d = golddr();
    assert!(
        patroni_yml(&d, "golddr")["bootstrap"]
            .get("post_bootstrap")
            .is_none()
    );
    assert!(d.find("Secret", "patroni-app").is_none());
    // The owner cannot be a system user.
    let err = Render::site("gold")
        .set("appDatabase.owner=replicator")
        .render_err();
    assert!(err.contains("system users"), "{err}");
    let notes = Render::site("gold").notes();
    assert!(
        notes.contains("postgresql://app@patroni.abc123-prod.svc:5432/app?sslmode=require"),
        "{notes}"
    );
    // The helm test logs in as the owner (the superuser is not admitted over TCP by default).
    let t = objs.get("Pod", "patroni-test");
    let c = container(&t["spec"], "test");
    assert_eq!(env_value(c, "PGUSER"), "app");
    assert_eq!(env_value(c, "PGDATABASE"), "app");
    assert_eq!(
        env(c, "PGPASSWORD").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "patroni-app", "key": "password"})
    );
}

#[test]
fn monitoring_is_optional_and_alerts_cover_dr() {
    let objs = golddr();
    for kind in ["ServiceMonitor", "PodMonitor", "PrometheusRule"] {
        assert_eq!(objs.count(kind), 0, "{kind} rendered by default");
    }
    // Sysdig scraping annotations on the Patroni pods by default.
    let sts = objs.get("StatefulSet", "patroni-golddr");
    let ann = &sts["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "8080");

    let on = |site: &str| {
        Render::site(site)
            .set("monitoring.serviceMonitor.enabled=true")
            .set("monitoring.podMonitor.enabled=true")
            .set("monitoring.prometheusRule.enabled=true")
            .render()
    };
    let alerts = |objs: &Objects| -> Vec<String> {
        objs.one("PrometheusRule")["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["alert"].as_str().unwrap().to_string())
            .collect()
    };
    let d = on("golddr");
    let sm = d.one("ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "status");
    // Another release in the namespace has its own headless Service: the instance label keeps
    // this ServiceMonitor to this release's, and the site label to this site's.
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        RELEASE
    );
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"]["patroni-dr/site"],
        "golddr"
    );
    let selected: Vec<String> = d
        .of_kind("Service")
        .filter(|svc| {
            selects(
                &sm["spec"]["selector"]["matchLabels"],
                &svc["metadata"]["labels"],
            )
        })
        .map(describe)
        .collect();
    assert_eq!(selected, ["Service/patroni-headless"]);
    let headless = d.get("Service", "patroni-headless");
    assert!(selects(
        &sm["spec"]["selector"]["matchLabels"],
        &headless["metadata"]["labels"]
    ));
    assert!(
        headless["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "status")
    );
    let pm = d.one("PodMonitor");
    let pod_labels =
        &d.get("StatefulSet", "patroni-golddr")["spec"]["template"]["metadata"]["labels"];
    assert!(selects(&pm["spec"]["selector"]["matchLabels"], pod_labels));
    let dr = alerts(&d);
    for a in [
        "PgdrReplicationBroken",
        "PgdrReplicationLagHigh",
        "PgdrSitePromoted",
        "PgdrSplitBrain",
        "PgdrPrimaryWithheld",
        "PgdrFailoverRunsFailing",
    ] {
        assert!(dr.contains(&a.to_string()), "{a} missing: {dr:?}");
    }
    let gold_on = on("gold");
    let g = alerts(&gold_on);
    assert!(g.contains(&"PgdrSiteFenced".to_string()), "{g:?}");
    // A fenced primary site that never rejoins is a standby leader that does not stream: the
    // same alert as on the standby site (the chaos drill left one stuck, silent before).
    assert!(g.contains(&"PgdrReplicationBroken".to_string()), "{g:?}");
    // Both sites can run a writable primary the sidecar withholds.
    assert!(g.contains(&"PgdrPrimaryWithheld".to_string()), "{g:?}");
    // The agent runs on both sites, so both watch its runs; without the agent, neither does.
    assert!(g.contains(&"PgdrFailoverRunsFailing".to_string()), "{g:?}");
    // ... and whether runs still complete at all (suspended or unschedulable runs fail nothing).
    let stale = gold_on.one("PrometheusRule")["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "PgdrFailoverAgentStale")
        .unwrap_or_else(|| panic!("gold: no PgdrFailoverAgentStale: {g:?}"))
        .clone();
    let expr = stale["expr"].as_str().unwrap();
    assert!(
        expr.contains(r#"cronjob="patroni-failover""#) && expr.ends_with(") > 600"),
        "{expr}"
    );
    // Both sites watch their own data volumes (the StatefulSet's claims), at the threshold.
    for (site, objs) in [("golddr", &d), ("gold", &gold_on)] {
        let rule = objs.one("PrometheusRule")["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["alert"] == "PgdrVolumeFillingUp")
            .unwrap_or_else(|| panic!("{site}: no PgdrVolumeFillingUp"))
            .clone();
        let expr = rule["expr"].as_str().unwrap();
        let claims = format!(r#"persistentvolumeclaim=~"pgdata-patroni-{site}-[0-9]+""#);
        assert_eq!(expr.matches(&claims).count(), 2, "{site}: {expr}");
        assert!(expr.ends_with(") > 0.85"), "{site}: {expr}");
        let sts = objs.get("StatefulSet", &format!("patroni-{site}"));
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "pgdata",
            "the alert's claim names follow the template"
        );
    }
    let no_agent = Render::site("gold")
        .set("monitoring.prometheusRule.enabled=true")
        .set("failover.enabled=false")
        .render();
    assert!(!alerts(&no_agent).contains(&"PgdrFailoverRunsFailing".to_string()));
    assert!(!alerts(&no_agent).contains(&"PgdrFailoverAgentStale".to_string()));

    // Every alert links its section of docs/runbooks/alerts.md, under the repository's URL.
    let cargo = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let repo = cargo
        .lines()
        .find_map(|l| l.trim().strip_prefix("repository = "))
        .unwrap()
        .trim_matches('"');
    let base = format!("{repo}/blob/main/docs/runbooks/");
    let runbook =
        std::fs::read_to_string(workspace_root().join("docs/runbooks/alerts.md")).unwrap();
    let sections = pgdr_chart_tests::docs::anchors(&runbook);
    for objs in [&d, &gold_on] {
        for rule in objs.one("PrometheusRule")["spec"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
        {
            let alert = rule["alert"].as_str().unwrap();
            let url = rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert} has no runbook_url"));
            let anchor = url
                .strip_prefix(&format!("{base}alerts.md#"))
                .unwrap_or_else(|| panic!("{alert}: {url} is not under {base}alerts.md"));
            assert!(
                sections.contains(anchor),
                "{alert}: docs/runbooks/alerts.md has no section #{anchor}"
            );
        }
    }
    let mirrored = Render::site("gold")
        .set("monitoring.prometheusRule.enabled=true")
        .set("monitoring.prometheusRule.runbookBaseUrl=https://wiki.example/pgdr/")
        .render();
    let rule = &mirrored.one("PrometheusRule")["spec"]["groups"][0]["rules"][0];
    assert!(
        rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap()
            .starts_with("https://wiki.example/pgdr/alerts.md#pgdr"),
        "{rule}"
    );
}

#[test]
fn expected_knobs_reach_the_objects() {
    let objs = Render::site("golddr")
        .set("global.imageRegistry=artifacts.developer.gov.bc.ca/ghcr-remote/bcgov")
        .set_json(r#"global.imagePullSecrets=["artifactory-pull"]"#)
        .set("serviceAccount.create=false")
        .set("serviceAccount.name=shared-sa")
        .set_json(r#"scheduling.affinity={"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"zone","operator":"In","values":["a"]}]}]}}}"#)
        .set_json(r#"scheduling.jobs.nodeSelector={"pool":"jobs"}"#)
        .set_json(r#"scheduling.jobs.tolerations=[{"key":"jobs","operator":"Exists"}]"#)
        .set_json(r#"patroni.extraVolumes=[{"name":"backup","secret":{"secretName":"backup"}}]"#)
        .set_json(r#"patroni.extraVolumeMounts=[{"name":"backup","mountPath":"/etc/backup"}]"#)
        .set("podAnnotations.team=dr")
        .render();
    for (what, _, spec) in objs.pod_templates() {
        assert_eq!(
            spec["imagePullSecrets"],
            json!([{"name": "artifactory-pull"}]),
            "{what}"
        );
        for c in containers(spec) {
            assert!(
                c["image"]
                    .as_str()
                    .unwrap()
                    .starts_with("artifacts.developer.gov.bc.ca/ghcr-remote/bcgov/pgdr-"),
                "{what}: {}",
                c["image"]
            );
        }
        if what.starts_with("StatefulSet/") {
            assert_eq!(spec["serviceAccountName"], "shared-sa");
            assert!(spec["affinity"]["nodeAffinity"].is_object());
            assert!(spec["affinity"].get("podAntiAffinity").is_none());
            assert!(
                spec["volumes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v["name"] == "backup")
            );
            let c = container(spec, "patroni");
            assert!(
                c["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["mountPath"] == "/etc/backup")
            );
        } else {
            assert_eq!(spec["nodeSelector"], json!({"pool": "jobs"}), "{what}");
            assert_eq!(spec["tolerations"][0]["key"], "jobs", "{what}");
        }
    }
    assert!(
        objs.find("ServiceAccount", "shared-sa").is_none(),
        "create=false creates none"
    );
    let rb = objs.get("RoleBinding", "patroni");
    assert_eq!(rb["subjects"][0]["name"], "shared-sa");
    let sts = objs.get("StatefulSet", "patroni-golddr");
    assert_eq!(
        sts["spec"]["template"]["metadata"]["annotations"]["team"],
        "dr"
    );
    let err = Render::site("gold")
        .set("serviceAccount.create=false")
        .render_err();
    assert!(err.contains("needs serviceAccount.name"), "{err}");
}

#[test]
fn patroni_role_is_pinned_to_its_own_objects() {
    let objs = gold();
    let role = objs.get("Role", "patroni");
    let rules = role["rules"].as_array().unwrap();
    let names = |res: &str, verb: &str| -> Option<Vec<String>> {
        rules
            .iter()
            .find(|r| {
                r["resources"][0] == res && r["verbs"].as_array().unwrap().iter().any(|v| v == verb)
            })
            .map(|r| {
                r["resourceNames"]
                    .as_array()
                    .map(|a| a.iter().map(|n| n.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default()
            })
    };
    assert_eq!(
        names("configmaps", "patch").unwrap(),
        [
            "patroni-leader",
            "patroni-config",
            "patroni-sync",
            "patroni-failover"
        ]
    );
    assert_eq!(
        names("pods", "patch").unwrap(),
        ["patroni-gold-0", "patroni-gold-1"]
    );
    // list/watch/create cannot be pinned and are granted unpinned; nothing else is unpinned.
    for r in rules {
        if r.get("resourceNames").is_none() {
            for v in r["verbs"].as_array().unwrap() {
                assert!(
                    ["list", "watch", "create"].contains(&v.as_str().unwrap()),
                    "unpinned {v} in {r}"
                );
            }
        }
    }
    // Scaling extends the pinned list.
    let three = Render::site("gold").set("patroni.replicas=3").render();
    let role = three.get("Role", "patroni");
    let pods = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"][0] == "pods" && r.get("resourceNames").is_some())
        .unwrap();
    assert_eq!(pods["resourceNames"].as_array().unwrap().len(), 3);
}

#[test]
fn readme_install_commands_work_from_the_repository_root() {
    // Every `helm ... -f <file> ... ./chart` command in chart/README.md names files that exist
    // relative to the repository root, where `./chart` is.
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    let mut checked = 0;
    for line in readme
        .lines()
        .filter(|l| l.contains("helm ") && l.contains("./chart"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for w in words.windows(2) {
            if w[0] == "-f" {
                checked += 1;
                // `<site>` placeholders stand for either site's file.
                let file = w[1].replace("<site>", "gold");
                assert!(
                    workspace_root().join(&file).is_file(),
                    "README: `{line}` names {} which does not exist from the repository root",
                    w[1]
                );
            }
        }
    }
    assert!(checked >= 2, "no install commands found");
}

/// NOTES compare the release's needs with what each ResourceQuota has left (`spec.hard` minus
/// `status.used`, plus what this release already holds there, which an upgrade replaces). The
/// chart's helper is called with fixture objects through a test-only template, since `lookup`
/// is empty without a cluster.
#[test]
fn notes_compare_needs_with_what_the_quota_has_left() {
    let ours = |name: &str, phase: &str, req: (&str, &str), lim: (&str, &str)| {
        json!({"metadata": {"name": name, "labels": {"app.kubernetes.io/instance": "patroni"}},
               "spec": {"containers": [{"resources": {"requests": {"cpu": req.0, "memory": req.1},
                                                      "limits": {"cpu": lim.0, "memory": lim.1}}}]},
               "status": {"phase": phase}})
    };
    let member = |n: u32| {
        let mut p = ours(
            &format!("patroni-gold-{n}"),
            "Running",
            ("100m", "256Mi"),
            ("500m", "512Mi"),
        );
        p["spec"]["containers"].as_array_mut().unwrap().push(
            json!({"resources": {"requests": {"cpu": "10m", "memory": "32Mi"},
                                       "limits": {"cpu": "50m", "memory": "64Mi"}}}),
        );
        p
    };
    let fixture = json!({
        "quotas": [
            {"metadata": {"name": "compute-long-running-quota"},
             "spec": {"hard": {"requests.cpu": "500m", "limits.cpu": "1500m", "requests.memory": "2Gi", "limits.memory": "4Gi", "pods": "20"}},
             "status": {"used": {"requests.cpu": "490m", "limits.cpu": "1500m", "requests.memory": "1Gi", "limits.memory": "3Gi", "pods": "5"}}},
            {"metadata": {"name": "storage-quota"},
             "spec": {"hard": {"requests.storage": "2Gi"}},
             "status": {"used": {"requests.storage": "2Gi"}}},
            {"metadata": {"name": "nodeports-held"},
             "spec": {"hard": {"services.nodeports": "1"}},
             "status": {"used": {"services.nodeports": "1"}}},
            {"metadata": {"name": "nodeports-none"},
             "spec": {"hard": {"services.nodeports": "0"}}}
        ],
        "pods": [
            member(0),
            member(1),
            // A finished failover run no longer counts against the quota.
            ours("patroni-failover-1", "Succeeded", ("10m", "32Mi"), ("100m", "64Mi")),
            // Another release's pod is not this release's to replace.
            {"metadata": {"name": "app-0", "labels": {"app.kubernetes.io/instance": "app"}},
             "spec": {"containers": [{"resources": {"requests": {"cpu": "200m"}}}]},
             "status": {"phase": "Running"}}
        ],
        "pvcs": [
            {"metadata": {"name": "pgdata-patroni-gold-0", "labels": {"app.kubernetes.io/instance": "patroni"}},
             "spec": {"resources": {"requests": {"storage": "512Mi"}}}},
            {"metadata": {"name": "pgdata-patroni-gold-1", "labels": {"app.kubernetes.io/instance": "patroni"}},
             "spec": {"resources": {"requests": {"storage": "512Mi"}}}}
        ],
        "services": [
            {"metadata": {"name": "patroni-tunnel", "labels": {"app.kubernetes.io/instance": "patroni"}},
             "spec": {"type": "NodePort"}},
            {"metadata": {"name": "patroni", "labels": {"app.kubernetes.io/instance": "patroni"}},
             "spec": {"type": "ClusterIP"}}
        ]
    });
    let probe = format!(
        "{{{{- $fx := `{fixture}` | fromJson }}}}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: quota-probe\ndata:\n  warnings: {{{{ include \"patroni.quotaShortfalls\" (dict \"root\" . \"quotas\" $fx.quotas \"pods\" $fx.pods \"pvcs\" $fx.pvcs \"services\" $fx.services) | quote }}}}\n"
    );
    let chart = chart_copy_with(&[("zz-quota-probe.yaml", &probe)]);
    let objs = Render::site("gold")
        .chart_at(chart.path().join("patroni"))
        .render();
    let warnings = objs.get("ConfigMap", "quota-probe")["data"]["warnings"]
        .as_str()
        .unwrap()
        .to_string();
    // Gold needs 240m / 640Mi requested, 1300m / 1344Mi limits, 1024Mi storage, 1 NodePort.
    // requests.cpu: 500 - 490 + 220 (the two members; the finished run and the other release's
    // pod are not counted) = 230m < 240m.
    assert!(
        warnings.contains("compute-long-running-quota: requests.cpu leaves 230m for this release (hard 500m, used 490m, 220m of it by this release) but it needs 240m."),
        "{warnings}"
    );
    // limits.cpu: 1500 - 1500 + 1100 = 1100m < 1300m.
    assert!(
        warnings.contains("limits.cpu leaves 1100m for this release"),
        "{warnings}"
    );
    // A quota without status.used: the room is spec.hard.
    assert!(
        warnings.contains("nodeports-none: services.nodeports leaves 0 for this release (hard 0, used 0) but it needs 1."),
        "{warnings}"
    );
    // Enough room: memory (2Gi - 1Gi + 576Mi), storage (the release's own PVCs are replaced, not
    // added), the NodePort the release already holds.
    for fits in [
        "requests.memory",
        "limits.memory",
        "requests.storage",
        "nodeports-held",
        "pods",
    ] {
        assert!(
            !warnings.contains(fits),
            "{fits} warned although it fits:\n{warnings}"
        );
    }
    assert_eq!(warnings.matches("* ResourceQuota").count(), 3, "{warnings}");
    // Without a cluster (lookup empty) NOTES warn about no quota.
    assert!(!Render::site("gold").notes().contains("ResourceQuota"));
}
