//! Assertions over the objects `helm template` renders for both sites.

use pgdr_chart_tests::*;
use serde_json::{Value, json};

fn gold() -> Objects {
    Render::site("gold").render()
}

fn golddr() -> Objects {
    Render::site("golddr").render()
}

fn both() -> [(&'static str, Objects); 2] {
    [("gold", gold()), ("golddr", golddr())]
}

/// The bootstrap/local Patroni configuration rendered into the site's ConfigMap.
fn patroni_yml(objs: &Objects, site: &str) -> Value {
    let cm = objs.get("ConfigMap", &format!("patroni-{site}-config"));
    let text = cm["data"]["patroni.yml"].as_str().expect("patroni.yml");
    serde_saphyr::from_str(text).expect("patroni.yml parses")
}

fn statefulset<'a>(objs: &'a Objects, site: &str) -> &'a Value {
    objs.get("StatefulSet", &format!("patroni-{site}"))
}

#[test]
fn transport_server_claim_only_on_the_primary_site() {
    let g = gold();
    let tsc = g.one("TransportServerClaim");
    assert_eq!(tsc["apiVersion"], "porter.devops.gov.bc.ca/v1alpha1");
    assert_eq!(tsc["spec"]["service"], "patroni-tunnel");
    assert_eq!(tsc["spec"]["servicePort"], 5432);
    assert_eq!(tsc["spec"]["monitor"]["type"], "tcp");
    assert_eq!(tsc["spec"]["overrideServicePort"], true);
    // The TSC targets a Service of this release that exists and is NodePort (Feb 2026 rule).
    let svc = g.get("Service", "patroni-tunnel");
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(golddr().count("TransportServerClaim"), 0);
}

#[test]
fn tsc_can_be_forced_either_way() {
    let on = Render::site("golddr")
        .set("transportServerClaim.enabled=true")
        .render();
    assert_eq!(on.count("TransportServerClaim"), 1);
    let off = Render::site("gold")
        .set("transportServerClaim.enabled=false")
        .render();
    assert_eq!(off.count("TransportServerClaim"), 0);
}

#[test]
fn port_patch_only_on_the_standby_site_the_agent_on_both() {
    let g = gold();
    assert_eq!(g.count("Job"), 0, "port-patch Job on the primary site");
    // The agent renders on both sites: a run acts on the site's current role.
    assert_eq!(g.count("CronJob"), 1, "failover agent on the primary site");
    let off = Render::site("gold").set("failover.enabled=false").render();
    assert_eq!(off.count("CronJob"), 0, "failover.enabled=false opts out");

    let d = golddr();
    let job = d.one("Job");
    let ann = &job["metadata"]["annotations"];
    assert_eq!(ann["helm.sh/hook"], "post-install,post-upgrade");
    assert_eq!(ann["helm.sh/hook-delete-policy"], "before-hook-creation");
    assert!(job["spec"]["activeDeadlineSeconds"].as_u64().unwrap() > 240);
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    let cj = d.one("CronJob");
    let spec = &cj["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    assert!(spec["startingDeadlineSeconds"].as_u64().is_some());
    assert!(spec["successfulJobsHistoryLimit"].as_u64().is_some());
    assert!(spec["failedJobsHistoryLimit"].as_u64().is_some());
    assert_eq!(spec["jobTemplate"]["spec"]["backoffLimit"], 0);
    assert!(
        spec["jobTemplate"]["spec"]["activeDeadlineSeconds"]
            .as_u64()
            .is_some()
    );
}

#[test]
fn failover_defaults_are_safe() {
    let d = golddr();
    let cj = d.one("CronJob");
    let c = container(
        &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "failover",
    );
    assert_eq!(env_value(c, "FAILOVER_MODE"), "observe");
    // Debounce: a window that covers an in-site failover of the peer (ttl + loop_wait = 40 s),
    // about a minute with a witness saying `down` (values.yaml explains each number); auto
    // additionally needs a witness (auto_without_a_witness_is_refused).
    assert_eq!(env_value(c, "FAILOVER_FAILURE_THRESHOLD"), "6");
    assert_eq!(env_value(c, "FAILOVER_MIN_FAILURE_SPAN"), "40s");
    assert_eq!(env_value(c, "FAILOVER_SAMPLE_INTERVAL"), "5s");
    assert_eq!(env_value(c, "FAILOVER_ALLOW_NO_WITNESS"), "false");
    assert_eq!(env_value(c, "FAILOVER_MAX_LSN_AGE"), "300s");
    assert_eq!(env_value(c, "FAILOVER_FORCE"), "false");
    assert_eq!(
        env_value(c, "FAILOVER_TUNNEL_SERVICE"),
        "patroni-tunnel-gold"
    );
    assert_eq!(
        env_value(c, "FAILOVER_STATE_CONFIGMAP"),
        "patroni-failover-state"
    );
    // Optional features are absent unless configured.
    for name in [
        "FAILOVER_WITNESS_DNS_NAME",
        "FAILOVER_WITNESS_HTTP_URL",
        "FAILOVER_WEBHOOK_URL",
        "FAILOVER_PATRONI_URL",
        "FAILOVER_WITNESS_PEER_API_URL",
    ] {
        assert!(
            env(c, name).is_none(),
            "{name} set without being configured"
        );
    }
    // The debounce state object exists (labels only).
    let state = d.get("ConfigMap", "patroni-failover-state");
    assert!(state.get("data").is_none());
}

#[test]
fn failover_options_reach_the_environment() {
    let objs = Render::site("golddr")
        .set("failover.mode=auto")
        .set("failover.witness.dns.name=app.glb.gov.bc.ca")
        .set_json(r#"failover.witness.dns.expectedAddresses=["142.34.229.4","142.34.229.5"]"#)
        .set("failover.witness.http.existingSecret=dr-witness")
        .set("failover.webhook.existingSecret=dr-webhook")
        .set("failover.patroniUrl=http://patroni-golddr-0.patroni-headless:8008")
        .render();
    let cj = objs.one("CronJob");
    let c = container(
        &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "failover",
    );
    assert_eq!(env_value(c, "FAILOVER_MODE"), "auto");
    assert_eq!(
        env_value(c, "FAILOVER_WITNESS_DNS_NAME"),
        "app.glb.gov.bc.ca"
    );
    assert_eq!(
        env_value(c, "FAILOVER_WITNESS_DNS_EXPECTED"),
        "142.34.229.4,142.34.229.5"
    );
    // The HTTP witness URL may carry a token: it comes from a Secret, never a literal.
    assert_eq!(
        env(c, "FAILOVER_WITNESS_HTTP_URL").unwrap()["valueFrom"]["secretKeyRef"],
        json!({"name": "dr-witness", "key": "url"})
    );
    let hook = env(c, "FAILOVER_WEBHOOK_URL").unwrap();
    assert_eq!(
        hook["valueFrom"]["secretKeyRef"],
        json!({"name": "dr-webhook", "key": "url"})
    );
}

#[test]
fn failover_env_contract_is_documented() {
    // Every FAILOVER_* variable the chart can set is listed in chart/docs/failover-env.md, and the
    // document lists nothing the chart does not set.
    let objs = Render::site("golddr")
        .set("failover.witness.dns.name=app.glb.gov.bc.ca")
        .set_json(r#"failover.witness.dns.expectedAddresses=["142.34.229.4"]"#)
        .set("failover.witness.http.existingSecret=dr-witness")
        .set("failover.webhook.existingSecret=dr-webhook")
        .set("failover.patroniUrl=http://x:8008")
        .set("failover.witness.peerApi.url=https://api.gold.example:6443")
        .set("failover.witness.peerApi.namespace=abc123-prod")
        .set("failover.witness.peerApi.existingSecret=gold-peer-witness")
        .set("tls.existingSecret=pg-tls")
        .set("tls.sslMode=verify-ca")
        .render();
    let cj = objs.one("CronJob");
    let c = container(
        &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "failover",
    );
    let mut set: Vec<String> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    set.sort();
    let doc = std::fs::read_to_string(chart_dir().join("docs/failover-env.md")).unwrap();
    let mut documented: Vec<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("FAILOVER_") || *n == "RUST_LOG")
        .map(str::to_string)
        .collect();
    documented.sort();
    documented.dedup();
    assert_eq!(
        set, documented,
        "chart/docs/failover-env.md and the CronJob's env differ"
    );
}

#[test]
fn chart_never_templates_patroni_annotations() {
    // A `helm upgrade` after a failover must not write Patroni's dynamic config (or any other
    // DCS annotation) back: no object carries them.
    for (site, objs) in both() {
        for o in objs.all() {
            if let Some(ann) = o["metadata"]["annotations"].as_object() {
                for key in [
                    "config",
                    "leader",
                    "initialize",
                    "history",
                    "optime",
                    "status",
                ] {
                    assert!(
                        !ann.contains_key(key),
                        "{site}: {} has annotation {key}",
                        describe(o)
                    );
                }
            }
        }
        for suffix in ["leader", "config"] {
            let cm = objs.get("ConfigMap", &format!("patroni-{suffix}"));
            assert!(
                cm["metadata"].get("annotations").is_none(),
                "{site}: patroni-{suffix} has annotations"
            );
            assert!(
                cm.get("data").is_none(),
                "{site}: patroni-{suffix} has data"
            );
        }
    }
}

#[test]
fn dcs_configmaps_are_optional_and_found_by_patronis_selector() {
    let objs = gold();
    let sts = statefulset(&objs, "gold");
    let patroni = container(&sts["spec"]["template"]["spec"], "patroni");
    let labels: Value =
        serde_json::from_str(env_value(patroni, "PATRONI_KUBERNETES_LABELS")).unwrap();
    let scope_label = env_value(patroni, "PATRONI_KUBERNETES_SCOPE_LABEL");
    let scope = env_value(patroni, "PATRONI_SCOPE");
    let mut selector = labels.as_object().unwrap().clone();
    selector.insert(scope_label.into(), json!(scope));
    let selector = Value::Object(selector);
    for suffix in ["leader", "config"] {
        let cm = objs.get("ConfigMap", &format!("{scope}-{suffix}"));
        assert!(
            selects(&selector, &cm["metadata"]["labels"]),
            "{scope}-{suffix} not matched by Patroni's selector"
        );
    }
    // Member pods must match it too, or Patroni cannot see them.
    assert!(selects(
        &selector,
        &sts["spec"]["template"]["metadata"]["labels"]
    ));

    let unmanaged = Render::site("gold").set("dcs.helmManaged=false").render();
    assert!(unmanaged.find("ConfigMap", "patroni-tunnel").is_none());
    assert!(unmanaged.find("ConfigMap", "patroni-config").is_none());
}

#[test]
fn patroni_uses_the_kubernetes_dcs_in_configmap_mode() {
    for (site, objs) in both() {
        let sts = statefulset(&objs, site);
        let c = container(&sts["spec"]["template"]["spec"], "patroni");
        assert_eq!(env_value(c, "PATRONI_KUBERNETES_USE_ENDPOINTS"), "false");
        assert_eq!(env_value(c, "PATRONI_KUBERNETES_ROLE_LABEL"), "role");
        assert_eq!(
            env_value(c, "PATRONI_KUBERNETES_LEADER_LABEL_VALUE"),
            "primary"
        );
        assert_eq!(
            env_value(c, "PATRONI_KUBERNETES_FOLLOWER_LABEL_VALUE"),
            "replica"
        );
        assert_eq!(
            env_value(c, "PATRONI_KUBERNETES_STANDBY_LEADER_LABEL_VALUE"),
            "standby-leader"
        );
        let pod_ip = env(c, "PATRONI_KUBERNETES_POD_IP").unwrap();
        assert_eq!(pod_ip["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
        let name = env(c, "PATRONI_NAME").unwrap();
        assert_eq!(name["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
        assert_eq!(
            env_value(c, "PATRONI_POSTGRESQL_CONNECT_ADDRESS"),
            "$(PATRONI_KUBERNETES_POD_IP):5432"
        );
        // Member names are pod names and carry the site.
        assert_eq!(sts["metadata"]["name"], format!("patroni-{site}"));
        // Patroni's config file comes from the ConfigMap the container is given.
        let cfg = patroni_yml(&objs, site);
        assert!(cfg["bootstrap"]["dcs"].is_object());
        assert!(
            cfg.get("kubernetes").is_none(),
            "kubernetes settings belong in PATRONI_KUBERNETES_*"
        );
    }
}

#[test]
fn standby_bootstrap_has_a_placeholder_and_primary_a_permanent_slot() {
    let g = patroni_yml(&gold(), "gold");
    let dcs = &g["bootstrap"]["dcs"];
    assert!(
        dcs.get("standby_cluster").is_none(),
        "primary site must not bootstrap as a standby"
    );
    assert_eq!(dcs["slots"], json!({"pgdr_golddr": {"type": "physical"}}));
    assert_eq!(
        g["postgresql"]["parameters"]["max_slot_wal_keep_size"],
        "96MB"
    );

    let d = patroni_yml(&golddr(), "golddr");
    let sc = &d["bootstrap"]["dcs"]["standby_cluster"];
    assert_eq!(sc["host"], format!("patroni-tunnel-gold.{NAMESPACE}.svc"));
    assert_eq!(sc["port"], 5432);
    assert_eq!(sc["primary_slot_name"], "pgdr_golddr");
    assert_eq!(sc["create_replica_methods"], json!(["basebackup"]));
    assert!(d["bootstrap"]["dcs"].get("slots").is_none());
    assert_eq!(d["postgresql"]["use_pg_rewind"], true);

    // The port-patch Job starts from the same bootstrap.dcs.
    let objs = golddr();
    let cm = objs.get("ConfigMap", "patroni-golddr-config");
    let base: Value =
        serde_json::from_str(cm["data"]["bootstrap-dcs.json"].as_str().unwrap()).unwrap();
    assert_eq!(base, d["bootstrap"]["dcs"]);
}

#[test]
fn port_patch_job_environment_matches_the_binary() {
    let objs = golddr();
    let job = objs.one("Job");
    let spec = &job["spec"]["template"]["spec"];
    let c = container(spec, "port-patch");
    assert_eq!(env_value(c, "PORT_PATCH_SCOPE"), "patroni");
    assert_eq!(
        env_value(c, "PORT_PATCH_TUNNEL_SERVICE"),
        "patroni-tunnel-gold"
    );
    assert_eq!(env_value(c, "PORT_PATCH_PRIMARY_SLOT_NAME"), "pgdr_golddr");
    assert_eq!(env_value(c, "PORT_PATCH_HOST_MODE"), "dns");
    assert_eq!(env_value(c, "PORT_PATCH_FORCE"), "false");
    let base = env(c, "PORT_PATCH_BASE_CONFIG").unwrap();
    assert_eq!(
        base["valueFrom"]["configMapKeyRef"]["key"],
        "bootstrap-dcs.json"
    );
    // PORT_PATCH_LABELS is Patroni's kubernetes.labels as key=value pairs.
    let sts = statefulset(&objs, "golddr");
    let patroni = container(&sts["spec"]["template"]["spec"], "patroni");
    let labels: Value =
        serde_json::from_str(env_value(patroni, "PATRONI_KUBERNETES_LABELS")).unwrap();
    let kv: Vec<String> = labels
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect();
    assert_eq!(env_value(c, "PORT_PATCH_LABELS"), kv.join(","));
}

#[test]
fn security_contexts_pass_the_restricted_scc() {
    for (site, objs) in both() {
        let pods = objs.pod_templates();
        assert!(pods.len() >= 2, "{site}: expected workloads");
        for (what, _, spec) in pods {
            let psc = &spec["securityContext"];
            assert_eq!(psc["runAsNonRoot"], true, "{site} {what}: runAsNonRoot");
            assert_eq!(
                psc["seccompProfile"]["type"], "RuntimeDefault",
                "{site} {what}: seccomp"
            );
            for forbidden in ["runAsUser", "runAsGroup", "fsGroup"] {
                assert!(
                    psc.get(forbidden).is_none(),
                    "{site} {what}: fixed {forbidden} breaks the restricted SCC"
                );
            }
            for key in ["hostNetwork", "hostPID", "hostIPC"] {
                assert!(
                    spec.get(key).is_none() || spec[key] == false,
                    "{site} {what}: {key}"
                );
            }
            for v in spec["volumes"].as_array().into_iter().flatten() {
                assert!(
                    v.get("hostPath").is_none(),
                    "{site} {what}: hostPath volume"
                );
            }
            for c in containers(spec) {
                let sc = &c["securityContext"];
                let name = &c["name"];
                assert_eq!(
                    sc["allowPrivilegeEscalation"], false,
                    "{site} {what} {name}"
                );
                assert_eq!(
                    sc["capabilities"]["drop"],
                    json!(["ALL"]),
                    "{site} {what} {name}"
                );
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{site} {what} {name}");
                assert!(sc.get("privileged").is_none() || sc["privileged"] == false);
                assert!(
                    sc.get("runAsUser").is_none(),
                    "{site} {what} {name}: fixed UID"
                );
                assert!(
                    c["resources"]["requests"]["cpu"].is_string(),
                    "{site} {what} {name}: cpu request"
                );
                assert!(
                    c["resources"]["requests"]["memory"].is_string(),
                    "{site} {what} {name}: memory request"
                );
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{site} {what} {name}: memory limit"
                );
            }
        }
    }
}

#[test]
fn service_account_tokens_only_where_needed() {
    for (site, objs) in both() {
        for sa in objs.of_kind("ServiceAccount") {
            assert_eq!(
                sa["automountServiceAccountToken"],
                false,
                "{site}: {}",
                describe(sa)
            );
        }
        for (what, _, spec) in objs.pod_templates() {
            let needs_api = what.starts_with("Job/") || what.starts_with("CronJob/");
            assert_eq!(
                spec["automountServiceAccountToken"], needs_api,
                "{site} {what}"
            );
        }
        // The Patroni container alone gets the projected token; the sidecar has none.
        let sts = statefulset(&objs, site);
        let spec = &sts["spec"]["template"]["spec"];
        let mounts = |c: &Value| -> Vec<String> {
            c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| m["mountPath"].as_str().unwrap().to_string())
                .collect()
        };
        let token = "/var/run/secrets/kubernetes.io/serviceaccount".to_string();
        assert!(mounts(container(spec, "patroni")).contains(&token));
        assert!(!mounts(container(spec, "readiness")).contains(&token));
    }
}

#[test]
fn rbac_is_least_privilege() {
    for (site, objs) in both() {
        let roles: Vec<&Value> = objs.of_kind("Role").collect();
        assert!(!roles.is_empty());
        assert_eq!(
            objs.count("ClusterRole"),
            0,
            "{site}: cluster-wide permissions"
        );
        assert_eq!(objs.count("ClusterRoleBinding"), 0);
        for role in roles {
            for rule in role["rules"].as_array().unwrap() {
                let resources: Vec<&str> = rule["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect();
                let verbs: Vec<&str> = rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap())
                    .collect();
                let who = describe(role);
                assert!(
                    !resources.contains(&"secrets"),
                    "{site} {who}: secret access"
                );
                assert!(
                    !resources.iter().any(|r| r.contains("exec") || *r == "*"),
                    "{site} {who}: {resources:?}"
                );
                assert!(!verbs.contains(&"*"), "{site} {who}: wildcard verbs");
                assert!(
                    !verbs.contains(&"delete") && !verbs.contains(&"deletecollection"),
                    "{site} {who}: delete"
                );
            }
        }
        // Every ServiceAccount a pod runs as has a Role bound to it.
        for (what, _, spec) in objs.pod_templates() {
            if let Some(sa) = spec["serviceAccountName"].as_str() {
                let bound = objs
                    .of_kind("RoleBinding")
                    .any(|rb| rb["subjects"][0]["name"] == sa);
                assert!(
                    bound,
                    "{site} {what}: ServiceAccount {sa} has no RoleBinding"
                );
                assert!(
                    objs.find("ServiceAccount", sa).is_some(),
                    "{site} {what}: ServiceAccount {sa} not rendered"
                );
            }
        }
    }
}

#[test]
fn selectors_use_labels_the_pods_carry_and_never_the_role() {
    for (site, objs) in both() {
        let sts = statefulset(&objs, site);
        let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
        let selector = &sts["spec"]["selector"]["matchLabels"];
        assert!(
            selects(selector, pod_labels),
            "{site}: StatefulSet selector does not match its pods"
        );
        assert!(
            selector.get("role").is_none(),
            "{site}: the role label is in the StatefulSet selector"
        );
        assert!(
            pod_labels.get("role").is_none(),
            "{site}: the chart must not set the role label"
        );
        for key in ["helm.sh/chart", "app.kubernetes.io/version"] {
            assert!(
                pod_labels.get(key).is_none(),
                "{site}: pod label {key} would restart the database on every chart bump"
            );
        }
        assert_eq!(selector["patroni-dr/site"], site);

        // Anti-affinity term selects the same pods.
        let term = &sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"];
        assert!(selects(&term["labelSelector"]["matchLabels"], pod_labels));

        // Services: the pod labels plus the role value Patroni maintains.
        let with_role = |role: &str| {
            let mut l = pod_labels.as_object().unwrap().clone();
            l.insert("role".into(), json!(role));
            Value::Object(l)
        };
        let primary = objs.get("Service", "patroni");
        assert_eq!(primary["spec"]["selector"]["role"], "primary");
        assert!(selects(&primary["spec"]["selector"], &with_role("primary")));
        assert!(!selects(
            &primary["spec"]["selector"],
            &with_role("standby-leader")
        ));
        let replica = objs.get("Service", "patroni-replica");
        assert!(selects(&replica["spec"]["selector"], &with_role("replica")));
        let headless = objs.get("Service", "patroni-headless");
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(sts["spec"]["serviceName"], "patroni-headless");
        assert!(selects(&headless["spec"]["selector"], pod_labels));

        // PDB and NetworkPolicies select the Patroni pods.
        let pdb = objs.one("PodDisruptionBudget");
        assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
        // A fenced or latched member is NotReady by design and must not block node drains.
        assert_eq!(
            pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow",
            "{site}"
        );
        for np in objs.of_kind("NetworkPolicy") {
            let sel = &np["spec"]["podSelector"];
            if sel.get("matchExpressions").is_some() {
                continue; // the jobs' deny-ingress policy
            }
            assert!(
                selects(&sel["matchLabels"], pod_labels),
                "{site}: {} selects no Patroni pod",
                describe(np)
            );
        }
    }
}

#[test]
fn network_policies_admit_the_tunnel_and_the_release() {
    for (site, objs) in both() {
        let f5 = objs.get("NetworkPolicy", "patroni-from-f5-ingress");
        let rule = &f5["spec"]["ingress"][0];
        assert_eq!(
            rule["from"][0]["namespaceSelector"]["matchLabels"]["policy-group.network.openshift.io/host-network"],
            "",
            "{site}"
        );
        assert_eq!(
            rule["ports"],
            json!([{"port": 5432, "protocol": "TCP"}]),
            "{site}"
        );
        let same = objs.get("NetworkPolicy", "patroni-same-release");
        let ports: Vec<u64> = same["spec"]["ingress"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect();
        assert_eq!(ports, [5432, 8008]);
        // Only the failover agent reaches the readiness sidecar (its /status, before a rejoin).
        let agent = &same["spec"]["ingress"][1];
        assert_eq!(
            agent["ports"],
            json!([{"port": 8080, "protocol": "TCP"}]),
            "{site}"
        );
        assert_eq!(
            agent["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
            "failover",
            "{site}"
        );
        // The DR jobs and test pod are release members, so the same-release policy admits them.
        let from = &same["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"];
        for (what, meta, _) in objs.pod_templates() {
            assert!(
                selects(from, &meta["labels"]),
                "{site}: {what} cannot reach Patroni"
            );
        }
        // Sysdig scraping is on by default, so the scrapers are let in to the port the pods'
        // prometheus.io/port annotation names (a deny-by-default namespace drops them otherwise).
        let np = objs.get("NetworkPolicy", "patroni-metrics");
        let pod = &objs.get("StatefulSet", &format!("patroni-{site}"))["spec"]["template"];
        assert!(
            selects(
                &np["spec"]["podSelector"]["matchLabels"],
                &pod["metadata"]["labels"]
            ),
            "{site}"
        );
        let port = &np["spec"]["ingress"][0]["ports"][0]["port"];
        assert_eq!(
            port.to_string(),
            pod["metadata"]["annotations"]["prometheus.io/port"]
                .as_str()
                .unwrap(),
            "{site}"
        );
        assert_eq!(
            np["spec"]["ingress"][0]["from"],
            json!([
                {"namespaceSelector": {"matchLabels": {"network.openshift.io/policy-group": "monitoring"}}},
                {"namespaceSelector": {"matchLabels": {"policy-group.network.openshift.io/host-network": ""}}}
            ]),
            "{site}: two peers (OR)"
        );
    }
    let metrics = |r: Render| r.render().find("NetworkPolicy", "patroni-metrics").cloned();
    let no_sysdig = || Render::site("gold").set("monitoring.sysdig.enabled=false");
    assert!(metrics(no_sysdig()).is_none(), "no scraping, no opening");
    assert!(metrics(no_sysdig().set("monitoring.serviceMonitor.enabled=true")).is_some());
    assert!(metrics(no_sysdig().set("monitoring.podMonitor.enabled=true")).is_some());
    assert!(metrics(no_sysdig().set("networkPolicy.metrics.enabled=true")).is_some());
    assert!(metrics(Render::site("gold").set("networkPolicy.metrics.enabled=false")).is_none());
    let custom = metrics(Render::site("gold").set_json(
        r#"networkPolicy.metrics.peers=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}},"podSelector":{"matchLabels":{"app":"prometheus"}}}]"#,
    ))
    .unwrap();
    assert_eq!(
        custom["spec"]["ingress"][0]["from"],
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {"matchLabels": {"app": "prometheus"}}}])
    );
}

#[test]
fn names_fit_kubernetes_limits() {
    for (site, objs) in both() {
        for o in objs.all() {
            let name = o["metadata"]["name"].as_str().unwrap();
            assert!(name.len() <= 63, "{site}: {} longer than 63", describe(o));
            let ok = name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !name.starts_with('-')
                && !name.ends_with('-');
            assert!(ok, "{site}: {} is not a DNS label", describe(o));
            if matches!(o["kind"].as_str(), Some("StatefulSet" | "CronJob")) {
                assert!(name.len() <= 52, "{site}: {} longer than 52", describe(o));
            }
            if o["kind"] == "Service" {
                // The platform names the tunnel Service <service>-<peer>.
                assert!(
                    name.len() + 1 + 6 <= 63,
                    "{site}: tunnel name for {name} would be too long"
                );
            }
        }
    }
    // A release name that would overflow fails with a clear message instead of truncating.
    let long = "a-very-long-release-name-for-a-database-cluster-x";
    let err = Render::site("golddr").release(long).render_err();
    assert!(
        err.contains("at most 52") || err.contains("over 63") || err.contains("over 52"),
        "{err}"
    );
}

#[test]
fn standby_requires_the_primarys_credentials() {
    let err = Render::site("golddr")
        .set("credentials.existingSecret=")
        .render_err();
    assert!(
        err.contains("site.role=standby needs credentials.existingSecret"),
        "{err}"
    );
    assert!(err.contains("README"), "{err}");
}

#[test]
fn defaults_alone_ask_for_a_site() {
    let err = Render::defaults().render_err();
    assert!(err.contains("site.name is required"), "{err}");
    let err = Render::defaults()
        .set("site.name=gold")
        .set("site.role=standby")
        .render_err();
    assert!(err.contains("needs site.peer"), "{err}");
}

#[test]
fn credentials_never_appear_as_literals_or_arguments() {
    for (site, objs) in both() {
        for (what, _, spec) in objs.pod_templates() {
            for c in containers(spec) {
                for e in c["env"].as_array().into_iter().flatten() {
                    let name = e["name"].as_str().unwrap();
                    if name.contains("PASSWORD") || name.ends_with("WEBHOOK_URL") {
                        assert!(
                            e.get("value").is_none(),
                            "{site} {what}: {name} is a literal"
                        );
                        assert!(
                            e["valueFrom"]["secretKeyRef"].is_object(),
                            "{site} {what}: {name} not from a Secret"
                        );
                    }
                }
                for key in ["command", "args"] {
                    let text = c[key].to_string().to_lowercase();
                    assert!(
                        !text.contains("password="),
                        "{site} {what}: password on a command line"
                    );
                }
            }
        }
    }
    // The primary site generates the Secret once; the standby site uses the existing one.
    let g = gold();
    let secret = g.get("Secret", "patroni-credentials");
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    for key in [
        "superuser-password",
        "replication-password",
        "rewind-password",
        "restapi-password",
    ] {
        let v = secret["data"][key].as_str().unwrap();
        assert!(v.len() >= 40, "{key} too short");
    }
    assert!(golddr().find("Secret", "patroni-credentials").is_none());
    let sts = golddr();
    let c = container(
        &statefulset(&sts, "golddr")["spec"]["template"]["spec"],
        "patroni",
    );
    assert_eq!(
        env(c, "PATRONI_REPLICATION_PASSWORD").unwrap()["valueFrom"]["secretKeyRef"]["name"],
        "patroni-dr-credentials"
    );
}

#[test]
fn tls_is_on_by_default_and_configurable() {
    let objs = golddr();
    let tls = objs.get("Secret", "patroni-golddr-tls");
    assert_eq!(tls["type"], "kubernetes.io/tls");
    let cfg = patroni_yml(&objs, "golddr");
    assert_eq!(cfg["postgresql"]["parameters"]["ssl"], "on");
    let c = container(
        &statefulset(&objs, "golddr")["spec"]["template"]["spec"],
        "patroni",
    );
    assert_eq!(env_value(c, "PATRONI_REPLICATION_SSLMODE"), "require");

    let verify = Render::site("golddr")
        .set("tls.existingSecret=pg-tls")
        .set("tls.sslMode=verify-ca")
        .set("tls.enforce=true")
        .render();
    assert!(verify.find("Secret", "patroni-golddr-tls").is_none());
    let c = container(
        &statefulset(&verify, "golddr")["spec"]["template"]["spec"],
        "patroni",
    );
    assert_eq!(
        env_value(c, "PATRONI_REPLICATION_SSLROOTCERT"),
        "/etc/pgdr/tls/ca.crt"
    );
    let hba = patroni_yml(&verify, "golddr")["postgresql"]["pg_hba"].clone();
    assert!(
        hba.as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("hostssl replication"))
    );

    let err = Render::site("golddr")
        .set("tls.sslMode=verify-ca")
        .render_err();
    assert!(err.contains("verify-ca needs"), "{err}");

    let off = Render::site("gold").set("tls.enabled=false").render();
    assert!(off.find("Secret", "patroni-gold-tls").is_none());
    assert!(
        patroni_yml(&off, "gold")["postgresql"]["parameters"]
            .get("ssl")
            .is_none()
    );
}

#[test]
fn primary_and_tunnel_target_services_have_one_name_on_both_sites() {
    let g = gold();
    let d = golddr();
    // The applications' write endpoint: the leader of a normal cluster only.
    let (gs, ds) = (g.get("Service", "patroni"), d.get("Service", "patroni"));
    assert_eq!(gs["spec"]["type"], "ClusterIP");
    assert_eq!(gs["spec"]["selector"]["role"], "primary");
    assert_eq!(gs["spec"]["ports"], ds["spec"]["ports"]);
    // The tunnel's target: the lock holder in either role (Patroni's tmp role label), NodePort
    // with the same name in both clusters (the TSC's TransportServers target it).
    let (gl, dl) = (
        g.get("Service", "patroni-tunnel"),
        d.get("Service", "patroni-tunnel"),
    );
    for l in [gl, dl] {
        assert_eq!(l["spec"]["type"], "NodePort");
        assert_eq!(l["spec"]["selector"]["site-leader"], "primary");
        assert!(l["spec"]["selector"].get("role").is_none(), "{l}");
    }
    assert_eq!(gl["spec"]["ports"], dl["spec"]["ports"]);
    let sts = d.get("StatefulSet", "patroni-golddr");
    let env = sts["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(
        env.iter().any(
            |e| e["name"] == "PATRONI_KUBERNETES_TMP_ROLE_LABEL" && e["value"] == "site-leader"
        ),
        "{env:?}"
    );
    // Every site's tunnel Service is the platform's name for the peer's leader Service.
    assert!(
        serde_json::to_string(&d.get("CronJob", "patroni-failover"))
            .unwrap()
            .contains("patroni-tunnel-gold"),
        "the agent probes through patroni-tunnel-gold"
    );
}

#[test]
fn requests_fit_the_default_quota() {
    fn millicores(q: &str) -> u64 {
        q.strip_suffix('m')
            .map(|m| m.parse().unwrap())
            .unwrap_or_else(|| q.parse::<u64>().unwrap() * 1000)
    }
    fn mebibytes(q: &str) -> u64 {
        q.strip_suffix("Mi")
            .map(|m| m.parse().unwrap())
            .unwrap_or_else(|| q.strip_suffix("Gi").unwrap().parse::<u64>().unwrap() * 1024)
    }
    for (site, objs) in both() {
        let (mut cpu, mut mem) = (0, 0);
        for (what, _, spec) in objs.pod_templates() {
            if what.starts_with("Pod/") {
                continue; // helm test pod, run on demand
            }
            let copies = if what.starts_with("StatefulSet/") {
                2
            } else {
                1
            };
            for c in containers(spec) {
                cpu += copies * millicores(c["resources"]["requests"]["cpu"].as_str().unwrap());
                mem += copies * mebibytes(c["resources"]["requests"]["memory"].as_str().unwrap());
            }
        }
        assert!(cpu <= 500, "{site}: {cpu}m CPU requested");
        assert!(mem <= 2048, "{site}: {mem}Mi memory requested");
    }
}

#[test]
fn images_default_to_the_app_version() {
    let chart = std::fs::read_to_string(chart_dir().join("Chart.yaml")).unwrap();
    let chart: Value = serde_saphyr::from_str(&chart).unwrap();
    let version = chart["appVersion"].as_str().unwrap();
    let objs = golddr();
    let mut images = Vec::new();
    for (_, _, spec) in objs.pod_templates() {
        for c in containers(spec) {
            images.push(c["image"].as_str().unwrap().to_string());
        }
    }
    for repo in [
        "pgdr-patroni",
        "pgdr-readiness",
        "pgdr-port-patch",
        "pgdr-failover",
    ] {
        let want = format!("ghcr.io/bcgov/{repo}:{version}");
        assert!(images.contains(&want), "{want} not in {images:?}");
    }
    let digest = format!("sha256:{}", "a".repeat(64));
    let pinned = Render::site("gold")
        .set(&format!("images.patroni.digest={digest}"))
        .render();
    let c = container(
        &statefulset(&pinned, "gold")["spec"]["template"]["spec"],
        "patroni",
    );
    assert_eq!(
        c["image"].as_str().unwrap(),
        format!("ghcr.io/bcgov/pgdr-patroni@{digest}")
    );
}

#[test]
fn single_site_install_has_no_dr_objects() {
    let objs = Render::defaults().set("site.name=main").render();
    assert_eq!(objs.count("TransportServerClaim"), 0);
    assert_eq!(objs.count("Job"), 0);
    assert_eq!(objs.count("CronJob"), 0);
    let cfg = patroni_yml(&objs, "main");
    assert!(cfg["bootstrap"]["dcs"].get("slots").is_none());
}

#[test]
fn helm_tests_check_each_sites_role() {
    let g = gold();
    let t = g.get("Pod", "patroni-test");
    assert_eq!(t["metadata"]["annotations"]["helm.sh/hook"], "test");
    let c = container(&t["spec"], "test");
    assert!(c["command"].to_string().contains("SELECT 1"));
    assert_eq!(env_value(c, "PGHOST"), "patroni");

    let d = golddr();
    let t = d.get("Pod", "patroni-test");
    let c = container(&t["spec"], "test");
    let script = c["command"].to_string();
    assert!(
        script.contains("standby_leader") && script.contains("streaming"),
        "{script}"
    );
}

#[test]
fn pvcs_come_from_claim_templates_and_are_kept() {
    let objs = gold();
    let sts = statefulset(&objs, "gold");
    let vct = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(vct["spec"]["storageClassName"], "netapp-block-standard");
    // Two members fit the platform's default 1 GiB storage quota.
    assert_eq!(vct["spec"]["resources"]["requests"]["storage"], "512Mi");
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
        "Retain"
    );
    assert!(
        sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap()
            >= 30
    );
    let custom = Render::site("gold")
        .set("persistence.size=20Gi")
        .set("persistence.storageClassName=netapp-file-standard")
        .render();
    let vct = &statefulset(&custom, "gold")["spec"]["volumeClaimTemplates"][0];
    assert_eq!(vct["spec"]["resources"]["requests"]["storage"], "20Gi");
    assert_eq!(vct["spec"]["storageClassName"], "netapp-file-standard");
}

#[test]
fn binaries_know_every_variable_the_chart_sets() {
    // The chart's PORT_PATCH_* / READINESS_* / FAILOVER_* variables must be fields of the binary's
    // Config struct (envy ignores unknown variables, so a typo would silently fall back to a default).
    let objs = Render::site("golddr")
        .set("failover.witness.dns.name=app.glb.gov.bc.ca")
        .set_json(r#"failover.witness.dns.expectedAddresses=["142.34.229.4"]"#)
        .set("failover.witness.http.existingSecret=dr-witness")
        .set("failover.webhook.existingSecret=dr-webhook")
        .set("failover.patroniUrl=http://x:8008")
        .render();
    let mut checked = 0;
    for (krate, prefix) in [
        ("port-patch", "PORT_PATCH_"),
        ("readiness", "READINESS_"),
        ("failover", "FAILOVER_"),
    ] {
        let path = workspace_root()
            .join("crates")
            .join(krate)
            .join("src/config.rs");
        let Some(fields) = config_fields(&path) else {
            println!(
                "{} not found: {prefix}* variables not checked against the binary",
                path.display()
            );
            continue;
        };
        assert!(
            !fields.is_empty(),
            "no Config fields found in {}",
            path.display()
        );
        for (what, _, spec) in objs.pod_templates() {
            for c in containers(spec) {
                for e in c["env"].as_array().into_iter().flatten() {
                    let name = e["name"].as_str().unwrap();
                    if let Some(field) = name.strip_prefix(prefix) {
                        checked += 1;
                        assert!(
                            fields.iter().any(|f| f.eq_ignore_ascii_case(field)),
                            "{what}: {name} is not a field of {} (fields: {fields:?})",
                            path.display()
                        );
                    }
                }
            }
        }
    }
    assert!(checked > 0);
}
