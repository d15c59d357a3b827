//! Round-trips with the real kubectl (from the npm layer installed by `make deps`):
//! apply, get, get -w, patch (three flavours), delete, create configmap/secret/namespace.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is the failure report

use kubesim::{Config, Server, ServerHandle};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn kubectl_path() -> PathBuf {
    let tools = std::env::var_os("PGDR_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools"));
    let k = tools.join("bin/kubectl");
    assert!(
        k.exists(),
        "kubectl not found at {}: run `make deps` first",
        k.display()
    );
    k
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: tempfile::NamedTempFile,
    dir: tempfile::TempDir,
}

impl Kubectl {
    fn new(s: &ServerHandle) -> Kubectl {
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(kubeconfig.path(), s.kubeconfig_yaml("sim", "default")).unwrap();
        Kubectl {
            bin: kubectl_path(),
            kubeconfig,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("KUBECONFIG", self.kubeconfig.path())
            // A private cache so runs do not share discovery results.
            .env("HOME", self.dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST");
        c
    }

    /// Runs kubectl; panics with its output unless it succeeds.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn manifest(&self, name: &str, yaml: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, yaml).unwrap();
        p.to_string_lossy().to_string()
    }
}

fn get(s: &ServerHandle, path: &str) -> (u16, Value) {
    s.request("GET", path, None, None)
}

#[test]
fn apply_get_patch_delete() {
    let s = Server::spawn(Config::default()).unwrap();
    let k = Kubectl::new(&s);
    let m = k.manifest(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  labels: {app: demo}\ndata:\n  a: \"1\"\n  b: \"2\"\n",
    );
    assert!(
        k.ok(&["apply", "-f", &m])
            .contains("configmap/demo created")
    );
    // Re-apply with a key removed: the three-way merge deletes it on the server.
    let m = k.manifest(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: demo\n  labels: {app: demo}\ndata:\n  a: \"1\"\n",
    );
    assert!(
        k.ok(&["apply", "-f", &m])
            .contains("configmap/demo configured")
    );
    let (_, cm) = get(&s, "/api/v1/namespaces/default/configmaps/demo");
    assert_eq!(cm["data"], json!({"a": "1"}), "{cm}");
    assert!(k.ok(&["apply", "-f", &m]).contains("unchanged"));

    assert_eq!(
        k.ok(&["get", "configmap", "demo", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    assert_eq!(
        k.ok(&["get", "cm", "-l", "app=demo", "-o", "name"]).trim(),
        "configmap/demo"
    );
    assert_eq!(
        k.ok(&["get", "cm", "-l", "app=other", "-o", "name"]).trim(),
        ""
    );

    k.ok(&["patch", "configmap", "demo", "-p", r#"{"data":{"c":"3"}}"#]);
    k.ok(&[
        "patch",
        "configmap",
        "demo",
        "--type=merge",
        "-p",
        r#"{"data":{"a":null}}"#,
    ]);
    k.ok(&[
        "patch",
        "configmap",
        "demo",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/d","value":"4"}]"#,
    ]);
    let (_, cm) = get(&s, "/api/v1/namespaces/default/configmaps/demo");
    assert_eq!(cm["data"], json!({"c": "3", "d": "4"}), "{cm}");

    assert!(k.ok(&["delete", "configmap", "demo"]).contains("deleted"));
    assert_eq!(get(&s, "/api/v1/namespaces/default/configmaps/demo").0, 404);
}

#[test]
fn create_configmap_secret_namespace() {
    let s = Server::spawn(Config::default()).unwrap();
    let k = Kubectl::new(&s);
    k.ok(&["create", "namespace", "abc123-dev"]);
    k.ok(&[
        "-n",
        "abc123-dev",
        "create",
        "configmap",
        "c",
        "--from-literal=k=v",
    ]);
    k.ok(&[
        "-n",
        "abc123-dev",
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ]);
    let (_, cm) = get(&s, "/api/v1/namespaces/abc123-dev/configmaps/c");
    assert_eq!(cm["data"], json!({"k": "v"}));
    let (_, sec) = get(&s, "/api/v1/namespaces/abc123-dev/secrets/creds");
    assert_eq!(sec["data"]["password"], "czNjcmV0");
    // Deleting the namespace deletes what it holds.
    k.ok(&["delete", "namespace", "abc123-dev"]);
    assert_eq!(get(&s, "/api/v1/namespaces/abc123-dev/configmaps/c").0, 404);
}

#[test]
fn get_watch_streams_changes() {
    let s = Server::spawn(Config::default()).unwrap();
    let k = Kubectl::new(&s);
    s.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        None,
        Some(&json!({"metadata": {"name": "w0"}})),
    );
    let mut child = k
        .cmd(&[
            "get",
            "configmaps",
            "-w",
            "-o",
            "name",
            "--request-timeout=0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // kubectl lists, then watches from the list's resourceVersion; give it a moment to connect.
    std::thread::sleep(Duration::from_millis(1500));
    s.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        None,
        Some(&json!({"metadata": {"name": "w1"}})),
    );
    s.request(
        "DELETE",
        "/api/v1/namespaces/default/configmaps/w0",
        None,
        None,
    );
    std::thread::sleep(Duration::from_millis(1000));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"configmap/w0"), "initial list: {text}");
    assert!(lines.contains(&"configmap/w1"), "live ADDED event: {text}");
    assert!(
        lines.iter().filter(|l| **l == "configmap/w0").count() >= 2,
        "DELETED event printed: {text}"
    );
}

#[test]
fn apply_a_crd_then_its_custom_resource() {
    let s = Server::spawn(Config::default()).unwrap();
    let k = Kubectl::new(&s);
    let crd = k.manifest(
        "crd.yaml",
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: transportserverclaims.porter.devops.gov.bc.ca
spec:
  group: porter.devops.gov.bc.ca
  scope: Namespaced
  names: {plural: transportserverclaims, singular: transportserverclaim, kind: TransportServerClaim, shortNames: [tscs]}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#,
    );
    k.ok(&["apply", "-f", &crd]);
    let tsc = k.manifest(
        "tsc.yaml",
        "apiVersion: porter.devops.gov.bc.ca/v1alpha1\nkind: TransportServerClaim\nmetadata:\n  name: db\nspec:\n  service: db-primary\n  servicePort: 5432\n  monitor: {interval: 10, timeout: 10, type: tcp}\n",
    );
    k.ok(&["apply", "-f", &tsc]);
    assert_eq!(
        k.ok(&["get", "tscs", "db", "-o", "jsonpath={.spec.servicePort}"]),
        "5432"
    );
}

#[test]
fn helm_install_wait_upgrade_uninstall() {
    let s = Server::spawn(Config::default()).unwrap();
    let k = Kubectl::new(&s);
    let helm = k.bin.with_file_name("helm");
    assert!(
        helm.exists(),
        "helm not found next to kubectl: run `make deps` first"
    );
    let chart = k.dir.path().join("chart");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/objects.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  v: {{ .Values.v | default \"1\" | quote }}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}-primary\nspec:\n  type: NodePort\n  selector: {app: db}\n  ports: [{name: pg, port: 5432}]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&helm)
            .args(args)
            .env("KUBECONFIG", k.kubeconfig.path())
            .env("HOME", k.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let chart = chart.to_string_lossy().to_string();
    // --wait exercises streaming-list watches (sendInitialEvents + the end-of-initial-events bookmark).
    run(&[
        "upgrade",
        "--install",
        "r",
        &chart,
        "--wait",
        "--timeout",
        "30s",
    ]);
    let (_, svc) = get(&s, "/api/v1/namespaces/default/services/r-primary");
    let node_port = svc["spec"]["ports"][0]["nodePort"].clone();
    assert!(node_port.as_i64().is_some_and(|p| p >= 30000), "{svc}");
    run(&[
        "upgrade",
        "--install",
        "r",
        &chart,
        "--set",
        "v=2",
        "--wait",
        "--timeout",
        "30s",
    ]);
    assert_eq!(
        get(&s, "/api/v1/namespaces/default/configmaps/r-cm").1["data"]["v"],
        "2"
    );
    let (_, svc) = get(&s, "/api/v1/namespaces/default/services/r-primary");
    assert_eq!(
        svc["spec"]["ports"][0]["nodePort"], node_port,
        "an upgrade keeps the allocated nodePort"
    );
    // The release record round-trips through a Secret.
    let (_, secrets) = get(
        &s,
        "/api/v1/namespaces/default/secrets?labelSelector=owner%3Dhelm",
    );
    assert_eq!(secrets["items"].as_array().unwrap().len(), 2, "{secrets}");
    run(&["uninstall", "r", "--wait"]);
    assert_eq!(get(&s, "/api/v1/namespaces/default/configmaps/r-cm").0, 404);
}

/// With RBAC on: the admin kubeconfig works as before, a ServiceAccount token (from a token
/// Secret, or `kubectl create token`) is held to its Role, and kubectl prints the real Forbidden.
#[test]
fn rbac_service_account_tokens_and_forbidden_as_kubectl_prints_it() {
    let s = Server::spawn(Config {
        rbac: true,
        ..Config::default()
    })
    .unwrap();
    let k = Kubectl::new(&s);
    let m = k.manifest(
        "rbac.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: failover\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: failover\nrules:\n\
         - apiGroups: [\"\"]\n  resources: [configmaps]\n  resourceNames: [state]\n  verbs: [get, patch, create]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: failover\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: failover}\n\
         subjects: [{kind: ServiceAccount, name: failover}]\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: failover-token\n  annotations:\n    kubernetes.io/service-account.name: failover\n\
         type: kubernetes.io/service-account-token\n",
    );
    k.ok(&["apply", "-f", &m]);
    let b64 = k.ok(&[
        "get",
        "secret",
        "failover-token",
        "-o",
        "jsonpath={.data.token}",
    ]);
    let out = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b64.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let secret_token = String::from_utf8(out.stdout).unwrap();
    assert!(!secret_token.is_empty());
    let issued = k.ok(&["create", "token", "failover"]);
    for token in [secret_token.trim(), issued.trim()] {
        let t = format!("--token={token}");
        let out = k
            .cmd(&[&t, "create", "configmap", "state", "--from-literal=a=b"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            "error: failed to create configmap: configmaps is forbidden: User \"system:serviceaccount:default:failover\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
        );
        let out = k.cmd(&[&t, "get", "configmaps"]).output().unwrap();
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Error from server (Forbidden): configmaps is forbidden: User \"system:serviceaccount:default:failover\" cannot list resource \"configmaps\""),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The admin acting as the account (`--as`, impersonation) gets the same answer.
    let out = k
        .cmd(&[
            "--as=system:serviceaccount:default:failover",
            "create",
            "configmap",
            "x",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("configmaps is forbidden: User \"system:serviceaccount:default:failover\" cannot create resource"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `kubectl auth can-i` (a SelfSubjectAccessReview, here impersonated) says the same.
    let can_i = |args: &[&str]| {
        let mut a = vec![
            "auth",
            "can-i",
            "--as=system:serviceaccount:default:failover",
        ];
        a.extend_from_slice(args);
        let out = k.cmd(&a).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can_i(&["create", "configmaps"]), "no");
    assert_eq!(can_i(&["patch", "configmaps/state"]), "yes");
    assert_eq!(can_i(&["patch", "configmaps/other"]), "no");
    assert_eq!(can_i(&["get", "pods"]), "no");
    assert_eq!(k.ok(&["auth", "can-i", "delete", "pods"]).trim(), "yes");
    k.ok(&["create", "configmap", "state", "--from-literal=a=b"]);
    let t = format!("--token={}", issued.trim());
    assert_eq!(
        k.ok(&[&t, "get", "configmap", "state", "-o", "jsonpath={.data.a}"]),
        "b"
    );
    k.ok(&[
        &t,
        "patch",
        "configmap",
        "state",
        "-p",
        "{\"data\":{\"a\":\"c\"}}",
    ]);
    assert_eq!(
        get(&s, "/api/v1/namespaces/default/configmaps/state").1["data"]["a"],
        "c"
    );
    let out = k
        .cmd(&["--token=nope", "get", "configmaps"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
