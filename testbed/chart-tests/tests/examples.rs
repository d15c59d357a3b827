//! The files in chart/examples/ render, and say what the chart README promises of them: a
//! production pair in `auto` with a witness on each site, its GitOps variant (and the Argo CD
//! Applications that list it), and the Artifactory registry with placeholders a user must replace.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::PathBuf;

use pgdr_chart_tests::*;
use serde_json::{Value, json};

fn examples_dir() -> PathBuf {
    chart_dir().join("examples")
}

/// Renders with values files given relative to chart/, in order.
fn with_files(files: &[&str]) -> Render {
    files.iter().fold(Render::defaults(), |r, f| {
        r.values_file(chart_dir().join(f))
    })
}

const GOLD_PRODUCTION: &[&str] = &["values-gold.yaml", "examples/values-gold-production.yaml"];
const GOLDDR_PRODUCTION: &[&str] = &[
    "values-golddr.yaml",
    "examples/values-golddr-production.yaml",
];
const GITOPS: &str = "examples/values-gitops.yaml";
const ARTIFACTORY: &str = "examples/values-artifactory.yaml";
const ARGOCD: &str = "argocd-applications.yaml";

/// The Artifactory example's placeholders, replaced the way its comments ask (test values).
fn artifactory() -> Render {
    with_files(&["values-gold.yaml", ARTIFACTORY])
        .set("global.imageRegistry=artifacts.developer.gov.bc.ca/ghcr-remote-test/bcgov")
        .set("global.imagePullSecrets[0]=artifactory-pull-test")
}

fn failover_container(objs: &Objects) -> &Value {
    let cj = objs.get("CronJob", "patroni-failover");
    container(
        &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        "failover",
    )
}

fn patroni_yml(objs: &Objects, site: &str) -> Value {
    let cm = objs.get("ConfigMap", &format!("patroni-{site}-config"));
    serde_saphyr::from_str(cm["data"]["patroni.yml"].as_str().unwrap()).unwrap()
}

/// Secrets the chart generated (anything but the peer-witness token, which Kubernetes fills in).
fn generated_secrets(objs: &Objects) -> Vec<String> {
    objs.of_kind("Secret")
        .filter(|s| s["type"] != "kubernetes.io/service-account-token")
        .map(describe)
        .collect()
}

#[test]
fn every_example_file_is_tested() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    let tested: BTreeSet<String> = [
        GOLD_PRODUCTION[1],
        GOLDDR_PRODUCTION[1],
        GITOPS,
        ARTIFACTORY,
    ]
    .iter()
    .map(|p| p.trim_start_matches("examples/").to_string())
    .chain([ARGOCD.to_string()])
    .collect();
    assert_eq!(
        on_disk, tested,
        "an example without a test (or a test of a missing example)"
    );
    // The chart README's install steps name each of them.
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).unwrap();
    for f in &on_disk {
        assert!(
            readme.contains(&format!("examples/{f}")),
            "chart/README.md does not name examples/{f}"
        );
    }
}

#[test]
fn production_pair_runs_auto_with_a_witness_on_both_sites() {
    let gold = with_files(GOLD_PRODUCTION).render();
    let golddr = with_files(GOLDDR_PRODUCTION).render();
    for (site, peer, objs) in [("gold", "golddr", &gold), ("golddr", "gold", &golddr)] {
        let c = failover_container(objs);
        assert_eq!(env_value(c, "FAILOVER_MODE"), "auto", "{site}");
        // The peer-API witness points at the other cluster's API, in the same namespace.
        let url = env_value(c, "FAILOVER_WITNESS_PEER_API_URL");
        assert_eq!(url, format!("https://api.{peer}.devops.gov.bc.ca:6443"));
        assert_eq!(
            env_value(c, "FAILOVER_WITNESS_PEER_API_NAMESPACE"),
            NAMESPACE
        );
        // Each site exposes the read-only identity the other's witness reads (GoldDR only
        // because the example says exposeOnThisSite: true).
        let role = objs.get("Role", "patroni-peer-witness");
        assert_eq!(
            role["rules"],
            json!([{"apiGroups": [""], "resources": ["configmaps"],
                    "resourceNames": ["patroni-leader", "patroni-config"], "verbs": ["get"]}]),
            "{site}"
        );
        assert!(
            objs.find("Secret", "patroni-peer-witness-token").is_some(),
            "{site}"
        );
        // The application is let in on both sites (it fails over with the GSLB).
        let clients = objs.get("NetworkPolicy", "patroni-clients");
        assert_eq!(
            clients["spec"]["ingress"][0]["from"],
            json!([{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "my-app"}}}]),
            "{site}"
        );
        // Every Secret comes from outside the chart; TLS verified and enforced.
        assert_eq!(generated_secrets(objs), Vec::<String>::new(), "{site}");
        let sts = objs.get("StatefulSet", &format!("patroni-{site}"));
        let patroni = container(&sts["spec"]["template"]["spec"], "patroni");
        assert_eq!(
            env_value(patroni, "PATRONI_REPLICATION_SSLMODE"),
            "verify-ca"
        );
        let hba = patroni_yml(objs, site)["postgresql"]["pg_hba"].clone();
        assert!(
            hba.as_array()
                .unwrap()
                .iter()
                .all(|l| !l.as_str().unwrap().starts_with("host all all 0.0.0.0/0")),
            "{site}: {hba}"
        );
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            "20Gi"
        );
    }
    // What must be equal on both sites is.
    let (g, d) = (
        &patroni_yml(&gold, "gold")["postgresql"]["parameters"],
        &patroni_yml(&golddr, "golddr")["postgresql"]["parameters"],
    );
    for key in [
        "shared_buffers",
        "max_wal_size",
        "min_wal_size",
        "max_slot_wal_keep_size",
    ] {
        assert!(!g[key].is_null(), "{key} not rendered: {g}");
        assert_eq!(g[key], d[key], "{key} differs between the sites");
    }
    // The pair's objects: the TSC on Gold, the port-patch Job on GoldDR.
    assert_eq!(gold.count("TransportServerClaim"), 1);
    assert_eq!(golddr.count("TransportServerClaim"), 0);
    assert!(golddr.find("Job", "patroni-port-patch").is_some());
}

#[test]
fn gitops_variant_generates_nothing_and_leaves_patroni_objects_to_patroni() {
    for (site, base) in [("gold", GOLD_PRODUCTION), ("golddr", GOLDDR_PRODUCTION)] {
        let files: Vec<&str> = base.iter().copied().chain([GITOPS]).collect();
        let objs = with_files(&files).render();
        assert_eq!(generated_secrets(&objs), Vec::<String>::new(), "{site}");
        for dcs in ["patroni-leader", "patroni-config"] {
            assert!(
                objs.find("ConfigMap", dcs).is_none(),
                "{site}: {dcs} is in the manifests"
            );
        }
        assert_eq!(objs.count("Pod"), 0, "{site}: a helm test pod");
        // Nothing in the manifests depends on `lookup` (empty under Argo CD): a second render is
        // identical.
        assert_eq!(
            serde_json::to_string(&objs.0).unwrap(),
            serde_json::to_string(&with_files(&files).render().0).unwrap(),
            "{site}: two renders differ"
        );
    }
    // Patroni creates <scope>-config itself; the port-patch Job may create it when first.
    let golddr = with_files(&[GOLDDR_PRODUCTION[0], GOLDDR_PRODUCTION[1], GITOPS]).render();
    let rules = golddr.get("Role", "patroni-port-patch")["rules"]
        .as_array()
        .unwrap();
    assert!(
        rules.iter().any(|r| r["resources"] == json!(["configmaps"])
            && r["verbs"] == json!(["create"])
            && r.get("resourceNames").is_none()),
        "{rules:?}"
    );
}

#[test]
fn argocd_applications_render_the_gitops_variant() {
    let text = std::fs::read_to_string(examples_dir().join(ARGOCD)).unwrap();
    let apps: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    assert_eq!(apps.len(), 2, "one Application per cluster");
    let mut first_files = Vec::new();
    for app in &apps {
        assert_eq!(app["kind"], "Application");
        let helm = &app["spec"]["source"]["helm"];
        // Name = release name: nothing to fight over even with label tracking.
        assert_eq!(helm["releaseName"], RELEASE);
        assert_eq!(app["metadata"]["name"], RELEASE);
        assert_eq!(app["spec"]["source"]["path"], "chart");
        let files: Vec<&str> = helm["valueFiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(files.contains(&GITOPS), "{files:?}");
        for f in &files {
            assert!(chart_dir().join(f).is_file(), "{f} does not exist");
        }
        let objs = with_files(&files).render();
        assert_eq!(generated_secrets(&objs), Vec::<String>::new());
        first_files.push(files[0].to_string());
        // Patroni's annotations and labels on its DCS ConfigMaps are ignored, and a sync
        // respects that; nothing is pruned automatically.
        for dcs in ["patroni-leader", "patroni-config"] {
            let entry = app["spec"]["ignoreDifferences"]
                .as_array()
                .unwrap()
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["name"] == dcs)
                .unwrap_or_else(|| panic!("no ignoreDifferences for {dcs}"));
            assert_eq!(
                entry["jsonPointers"],
                json!(["/metadata/annotations", "/metadata/labels"])
            );
        }
        let sync = &app["spec"]["syncPolicy"];
        assert!(
            sync["syncOptions"]
                .as_array()
                .unwrap()
                .contains(&json!("RespectIgnoreDifferences=true"))
        );
        assert_eq!(sync["automated"]["prune"], false);
    }
    assert_eq!(first_files, ["values-gold.yaml", "values-golddr.yaml"]);
}

#[test]
fn artifactory_example_needs_its_placeholders_replaced() {
    let err = with_files(&["values-gold.yaml", ARTIFACTORY]).render_err();
    assert!(
        err.contains("global.imageRegistry") && err.contains("replace the placeholder"),
        "{err}"
    );
    let err = with_files(&["values-gold.yaml", ARTIFACTORY])
        .set("global.imageRegistry=artifacts.developer.gov.bc.ca/ghcr-remote-test/bcgov")
        .render_err();
    assert!(
        err.contains("image pull Secret name \"<artifactory-pull-secret>\"")
            && err.contains("replace the placeholder"),
        "{err}"
    );
    let objs = artifactory().render();
    for (what, _, spec) in objs.pod_templates() {
        assert_eq!(
            spec["imagePullSecrets"],
            json!([{"name": "artifactory-pull-test"}]),
            "{what}"
        );
        for c in containers(spec) {
            let image = c["image"].as_str().unwrap();
            assert!(
                image.starts_with("artifacts.developer.gov.bc.ca/ghcr-remote-test/bcgov/pgdr-"),
                "{what}: {image}"
            );
        }
    }
}
