//! The chart installed with the real helm into two in-memory API servers (one per site), the way
//! the README says: Gold, the documented credentials copy, GoldDR; then upgrades and uninstall.
//! Workloads do not run here (no controllers): the drill does that. Hooks are skipped for the
//! same reason (the port-patch Job would never complete).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use pgdr_chart_tests::{NAMESPACE, RELEASE, chart_dir, helm};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};

struct Site {
    server: kubesim::ServerHandle,
    kubeconfig: tempfile::NamedTempFile,
    home: tempfile::TempDir,
}

impl Site {
    fn new(name: &str) -> Site {
        let server = kubesim::Server::spawn(kubesim::Config::default()).unwrap();
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(kubeconfig.path(), server.kubeconfig_yaml(name, NAMESPACE)).unwrap();
        let (st, body) = server.request(
            "POST",
            "/api/v1/namespaces",
            None,
            Some(&json!({"metadata": {"name": NAMESPACE}})),
        );
        assert_eq!(st, 201, "{body}");
        // The platform's CRD exists on BC Gov clusters; the chart creates a TSC on the primary site.
        let crd = json!({
            "metadata": {"name": "transportserverclaims.porter.devops.gov.bc.ca"},
            "spec": {"group": "porter.devops.gov.bc.ca", "scope": "Namespaced",
                     "names": {"plural": "transportserverclaims", "singular": "transportserverclaim", "kind": "TransportServerClaim", "shortNames": ["tscs"]},
                     "versions": [{"name": "v1alpha1", "served": true, "storage": true, "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        });
        let (st, body) = server.request(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            None,
            Some(&crd),
        );
        assert_eq!(st, 201, "{body}");
        Site {
            server,
            kubeconfig,
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn tool(&self, bin: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .env("KUBECONFIG", self.kubeconfig.path())
            .env("HOME", self.home.path())
            .env("HELM_CONFIG_HOME", self.home.path().join("helm"))
            .env("HELM_CACHE_HOME", self.home.path().join("helm-cache"))
            .env_remove("KUBERNETES_SERVICE_HOST");
        c
    }

    fn helm(&self, args: &[&str]) {
        let out = self.tool(&helm(), args).output().unwrap();
        assert!(
            out.status.success(),
            "helm {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.server.request(
            "GET",
            &format!("/api/v1/namespaces/{NAMESPACE}/{path}"),
            None,
            None,
        )
    }

    fn install(&self, site: &str, extra: &[&str]) {
        let chart = chart_dir();
        let values = chart.join(format!("values-{site}.yaml"));
        let mut args = vec![
            "upgrade",
            "--install",
            "-n",
            NAMESPACE,
            "-f",
            values.to_str().unwrap(),
            RELEASE,
            chart.to_str().unwrap(),
            "--no-hooks",
        ];
        args.extend_from_slice(extra);
        self.helm(&args);
    }
}

fn kubectl() -> std::path::PathBuf {
    helm().with_file_name("kubectl")
}

#[test]
fn both_sites_install_upgrade_and_uninstall() {
    let gold = Site::new("gold");
    let golddr = Site::new("golddr");

    gold.install("gold", &[]);
    let (st, creds) = gold.get("secrets/patroni-credentials");
    assert_eq!(st, 200, "generated credentials exist: {creds}");
    let (st, cfg) = gold.get("configmaps/patroni-config");
    assert_eq!(st, 200);
    assert!(
        cfg.pointer("/metadata/annotations/config").is_none(),
        "the chart never writes Patroni's config annotation: {cfg}"
    );
    let (st, tsc) = gold.server.request(
        "GET",
        &format!(
            "/apis/porter.devops.gov.bc.ca/v1alpha1/namespaces/{NAMESPACE}/transportserverclaims"
        ),
        None,
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(
        tsc["items"].as_array().unwrap().len(),
        1,
        "one TSC on the primary site: {tsc}"
    );

    // An upgrade keeps the generated passwords (lookup) and never adds the config annotation.
    gold.install(
        "gold",
        &["--set", "postgresql.parameters.max_connections=120"],
    );
    assert_eq!(
        gold.get("secrets/patroni-credentials").1["data"],
        creds["data"],
        "passwords survive upgrades"
    );

    // Patroni writes its dynamic config; a later helm upgrade must leave it alone (a promoted
    // site stays promoted).
    let (st, _) = gold.server.request(
        "PATCH",
        &format!("/api/v1/namespaces/{NAMESPACE}/configmaps/patroni-config"),
        Some("application/merge-patch+json"),
        Some(
            &json!({"metadata": {"annotations": {"config": "{\"ttl\":30}", "initialize": "123"}}}),
        ),
    );
    assert_eq!(st, 200);
    gold.install("gold", &[]);
    let cfg = gold.get("configmaps/patroni-config").1;
    assert_eq!(
        cfg["metadata"]["annotations"]["config"], "{\"ttl\":30}",
        "{cfg}"
    );
    assert_eq!(cfg["metadata"]["annotations"]["initialize"], "123");

    // The README's copy command, verbatim in shape: no password on any command line.
    let template = r#"{{"apiVersion: v1\nkind: Secret\nmetadata:\n  name: patroni-dr-credentials\ntype: Opaque\ndata:\n"}}{{range $k, $v := .data}}{{printf "  %s: %s\n" $k $v}}{{end}}"#;
    let exported = gold
        .tool(
            &kubectl(),
            &[
                "-n",
                NAMESPACE,
                "get",
                "secret",
                "patroni-credentials",
                "-o",
                &format!("go-template={template}"),
            ],
        )
        .output()
        .unwrap();
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let mut apply = golddr
        .tool(&kubectl(), &["-n", NAMESPACE, "apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(&exported.stdout)
        .unwrap();
    let out = apply.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        golddr.get("secrets/patroni-dr-credentials").1["data"],
        creds["data"]
    );

    golddr.install("golddr", &[]);
    let (st, _) = golddr.get("secrets/patroni-credentials");
    assert_eq!(
        st, 404,
        "the standby site uses the copied Secret, generates none"
    );
    let (_, tsc) = golddr.server.request(
        "GET",
        &format!(
            "/apis/porter.devops.gov.bc.ca/v1alpha1/namespaces/{NAMESPACE}/transportserverclaims"
        ),
        None,
        None,
    );
    assert_eq!(tsc["items"], json!([]), "no TSC on the standby site");
    let (_, cronjobs) = golddr.server.request(
        "GET",
        &format!("/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs"),
        None,
        None,
    );
    assert_eq!(
        cronjobs["items"].as_array().unwrap().len(),
        1,
        "the failover CronJob runs on the standby site"
    );
    let (_, cronjobs) = gold.server.request(
        "GET",
        &format!("/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs"),
        None,
        None,
    );
    assert_eq!(
        cronjobs["items"].as_array().unwrap().len(),
        1,
        "and on the primary site (the same agent; a run acts on the current role)"
    );

    golddr.helm(&["uninstall", "-n", NAMESPACE, RELEASE]);
    let (_, sts) = golddr.server.request(
        "GET",
        &format!("/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets"),
        None,
        None,
    );
    assert_eq!(sts["items"], json!([]), "uninstall removes the workloads");
}
