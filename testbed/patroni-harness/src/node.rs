//! A Patroni + PostgreSQL member running as local processes against a `kubesim` server.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use kubesim::ServerHandle;
use serde_json::{Value, json};

use crate::addr::allocate_loopback;
use crate::config::{
    Credentials, KUBE_CONTEXT, Launch, NodePaths, NodeSpec, StandbyCluster, Timings,
};
use crate::error::{HarnessError, Result};
use crate::http::{self, Response};
use crate::process;
use crate::scratch::Scratch;
use crate::wait::poll;

/// How long a graceful stop may take before the node is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Deadline for one psql / patronictl invocation.
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for one REST request.
const REST_TIMEOUT: Duration = Duration::from_secs(5);
/// Log lines printed per file when a test fails.
const LOG_TAIL: usize = 200;

/// Settings for a node; see [`PatroniNode::builder`].
#[derive(Clone, Debug)]
pub struct PatroniNodeBuilder {
    scope: String,
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    address: Option<Ipv4Addr>,
    pg_port: u16,
    rest_port: u16,
    credentials: Option<Credentials>,
    timings: Timings,
    standby: Option<StandbyCluster>,
    permanent_slots: Vec<String>,
}

impl PatroniNodeBuilder {
    /// Kubernetes namespace of the DCS objects and the Pod (created if missing). Default `default`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// `kubernetes.labels`, replacing the default `{application: patroni}`.
    pub fn labels<K: Into<String>, V: Into<String>>(
        mut self,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.labels = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// A fixed address instead of a freshly allocated one (its ports must be free).
    pub fn address(mut self, address: Ipv4Addr) -> Self {
        self.address = Some(address);
        self
    }

    /// PostgreSQL and REST ports. Default 5432 and 8008, like in a pod.
    pub fn ports(mut self, pg_port: u16, rest_port: u16) -> Self {
        self.pg_port = pg_port;
        self.rest_port = rest_port;
        self
    }

    /// Credentials; default [`Credentials::shared`], so both sites of a test agree.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    pub fn timings(mut self, timings: Timings) -> Self {
        self.timings = timings;
        self
    }

    /// Bootstraps this node as the standby leader of a standby cluster.
    pub fn standby_cluster(mut self, standby: StandbyCluster) -> Self {
        self.standby = Some(standby);
        self
    }

    /// Declares a permanent physical replication slot (`bootstrap.dcs.slots`).
    pub fn permanent_slot(mut self, name: impl Into<String>) -> Self {
        self.permanent_slots.push(name.into());
        self
    }

    /// Creates the member's Pod on `server`, writes the kubeconfig and Patroni config into a
    /// folder of `scratch`, and starts Patroni. Returns at once; use [`PatroniNode::wait_rest`]
    /// to wait for a role.
    pub fn start(self, scratch: &Scratch, server: &ServerHandle) -> Result<PatroniNode> {
        check_member_name(&self.name)?;
        let address = match self.address {
            Some(address) => address,
            None => allocate_loopback(&[self.pg_port, self.rest_port])?,
        };
        let dir = scratch.subdir(&self.name)?;
        let spec = NodeSpec {
            scope: self.scope,
            name: self.name,
            namespace: self.namespace,
            labels: self.labels,
            address,
            pg_port: self.pg_port,
            rest_port: self.rest_port,
            pg_bin: scratch.tools().pg_bin.clone(),
            paths: NodePaths { dir },
            credentials: self.credentials.unwrap_or_else(Credentials::shared),
            timings: self.timings,
            standby: self.standby,
            permanent_slots: self.permanent_slots,
        };

        // PostgreSQL cannot create a unix socket whose path exceeds ~107 bytes.
        let socket = spec
            .paths
            .socket_dir()
            .join(format!(".s.PGSQL.{}", spec.pg_port));
        if socket.as_os_str().len() > 100 {
            return Err(HarnessError::Config {
                node: spec.name.clone(),
                detail: format!(
                    "socket path {} is too long; use a shorter name",
                    socket.display()
                ),
            });
        }

        let yaml = spec.render_yaml().map_err(|detail| HarnessError::Config {
            node: spec.name.clone(),
            detail: format!("rendering YAML: {detail}"),
        })?;
        // The config holds the passwords: readable by the run-as user only.
        scratch.write_file(&spec.paths.config(), &yaml, 0o600)?;
        let kubeconfig = server.kubeconfig_yaml(KUBE_CONTEXT, &spec.namespace);
        scratch.write_file(&spec.paths.kubeconfig(), &kubeconfig, 0o600)?;
        create_pod(server, &spec)?;

        let node = PatroniNode {
            spec,
            scratch: scratch.clone(),
            child: Mutex::new(None),
        };
        node.spawn()?;
        Ok(node)
    }
}

/// A running Patroni member. Dropping it stops Patroni and PostgreSQL (SIGTERM, then SIGKILL),
/// and prints the logs if the test is failing.
pub struct PatroniNode {
    spec: NodeSpec,
    /// Keeps the scratch folder alive as long as this node's processes may use it.
    scratch: Scratch,
    /// Patroni, started as the leader of its own process group (pgid = its pid).
    child: Mutex<Option<Child>>,
}

impl PatroniNode {
    /// A builder for member `name` of Patroni cluster `scope`.
    pub fn builder(scope: impl Into<String>, name: impl Into<String>) -> PatroniNodeBuilder {
        PatroniNodeBuilder {
            scope: scope.into(),
            name: name.into(),
            namespace: "default".into(),
            labels: BTreeMap::from([("application".into(), "patroni".into())]),
            address: None,
            pg_port: 5432,
            rest_port: 8008,
            credentials: None,
            timings: Timings::default(),
            standby: None,
            permanent_slots: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }
    pub fn scope(&self) -> &str {
        &self.spec.scope
    }
    pub fn namespace(&self) -> &str {
        &self.spec.namespace
    }
    pub fn address(&self) -> Ipv4Addr {
        self.spec.address
    }
    pub fn pg_port(&self) -> u16 {
        self.spec.pg_port
    }
    pub fn rest_addr(&self) -> SocketAddr {
        SocketAddr::from((self.spec.address, self.spec.rest_port))
    }
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }
    pub fn paths(&self) -> &NodePaths {
        &self.spec.paths
    }

    /// Patroni's pid while it runs (also its process group id).
    pub fn patroni_pid(&self) -> Option<u32> {
        let mut child = self.lock_child();
        let c = child.as_mut()?;
        matches!(c.try_wait(), Ok(None)).then(|| c.id())
    }

    /// The postmaster's pid while PostgreSQL runs.
    pub fn postmaster_pid(&self) -> Option<u32> {
        process::postmaster(&self.spec.paths.data_dir())
    }

    /// `standby_cluster` settings that stream from this node (for the other site's builder).
    pub fn as_standby_source(&self, primary_slot_name: Option<&str>) -> StandbyCluster {
        StandbyCluster {
            host: self.spec.address.to_string(),
            port: self.spec.pg_port,
            primary_slot_name: primary_slot_name.map(str::to_string),
        }
    }

    /// Starts Patroni again after [`stop`](Self::stop) or [`kill_hard`](Self::kill_hard), with
    /// the same folder, address and Pod: a lost site coming back. No-op while it runs.
    pub fn start_again(&self) -> Result<()> {
        if self.ensure_running().is_ok() {
            return Ok(());
        }
        self.stop();
        self.spawn()
    }

    fn spawn(&self) -> Result<()> {
        use std::os::unix::process::CommandExt;
        let paths = &self.spec.paths;
        let log_path = paths.patroni_log();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| HarnessError::io(format!("creating {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| HarnessError::io("duplicating the log file handle", e))?;
        let launch = Launch::patroni(&self.scratch.tools().patroni, paths);
        let child = process::command(&launch, &self.scratch.tools().run_as)
            // Own process group: stopping the node signals Patroni and whatever it is running
            // (initdb, pg_basebackup) without touching the test process.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                HarnessError::io(
                    format!("{}: starting `{}`", self.spec.name, launch.display()),
                    e,
                )
            })?;
        *self.lock_child() = Some(child);
        Ok(())
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic while holding the lock leaves the Child intact; keep using it.
        self.child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fails if Patroni is no longer running.
    pub fn ensure_running(&self) -> Result<()> {
        let mut child = self.lock_child();
        let status = match child.as_mut() {
            None => "stopped by the test".to_string(),
            Some(c) => match c.try_wait() {
                Ok(None) => return Ok(()),
                Ok(Some(status)) => status.to_string(),
                Err(e) => format!("unknown: {e}"),
            },
        };
        Err(HarnessError::PatroniExited {
            node: self.spec.name.clone(),
            status,
            log: self.spec.paths.patroni_log(),
        })
    }

    /// Polls `probe` until it returns `Ok(value)`, failing early if Patroni exits.
    /// `Err(observation)` means "not yet"; the last one is reported on timeout.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Result<T, String>,
    ) -> Result<T> {
        poll(&self.spec.name, what, timeout, || {
            self.ensure_running()?;
            Ok(probe())
        })
    }

    /// One request to this node's Patroni REST API.
    pub fn rest(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let body = body.map(Value::to_string);
        http::request(
            self.rest_addr(),
            method,
            path,
            body.as_deref(),
            REST_TIMEOUT,
        )
        .map_err(|detail| HarnessError::Http {
            node: self.spec.name.clone(),
            method: method.into(),
            url: format!("http://{}{path}", self.rest_addr()),
            detail,
        })
    }

    /// Waits until `GET path` answers `status` (e.g. `/primary` 200, `/standby-leader` 200).
    pub fn wait_rest(&self, path: &str, status: u16, timeout: Duration) -> Result<Response> {
        self.wait_for(
            &format!("GET {path} to answer {status}"),
            timeout,
            || match self.rest("GET", path, None) {
                Ok(r) if r.status == status => Ok(r),
                Ok(r) => Err(format!("HTTP {}: {}", r.status, shorten(&r.body))),
                Err(e) => Err(e.to_string()),
            },
        )
    }

    /// Waits until `sql` (through [`psql`](Self::psql)) outputs exactly `expected`.
    pub fn wait_query(&self, sql: &str, expected: &str, timeout: Duration) -> Result<()> {
        self.wait_for(
            &format!("`{sql}` to return {expected:?}"),
            timeout,
            || match self.psql(sql) {
                Ok(out) if out == expected => Ok(()),
                Ok(out) => Err(format!("returned {out:?}")),
                Err(e) => Err(e.to_string()),
            },
        )
    }

    /// Waits until this node is the leader of a non-standby cluster *and* PostgreSQL accepts
    /// writes. Patroni's `/primary` alone is not enough: it answers 200 as soon as the node holds
    /// the leader lock outside a standby cluster, even while PostgreSQL is still starting or
    /// promoting (`api.py`, `do_GET`).
    pub fn wait_writable(&self, timeout: Duration) -> Result<()> {
        self.wait_rest("/primary", 200, timeout)?;
        self.wait_query("SELECT pg_is_in_recovery()", "f", timeout)
    }

    /// `PATCH /config` with a JSON merge document (null deletes a key); returns the new config.
    pub fn patch_config(&self, patch: &Value) -> Result<Value> {
        let r = self.rest("PATCH", "/config", Some(patch))?;
        if r.status != 200 {
            return Err(HarnessError::Http {
                node: self.spec.name.clone(),
                method: "PATCH".into(),
                url: format!("http://{}/config", self.rest_addr()),
                detail: format!("HTTP {}: {}", r.status, shorten(&r.body)),
            });
        }
        Ok(r.json())
    }

    /// Runs SQL through `psql -X -A -t -v ON_ERROR_STOP=1` as the superuser over TCP; returns
    /// stdout without the trailing newline. The password goes through `PGPASSWORD`.
    pub fn psql(&self, sql: &str) -> Result<String> {
        let tools = self.scratch.tools();
        let launch = Launch::psql(&tools.psql, &self.spec, sql);
        self.helper(&launch)
    }

    /// Runs `patronictl -c <this node's config> <args>` with this node's kubeconfig.
    pub fn patronictl(&self, args: &[&str]) -> Result<String> {
        let tools = self.scratch.tools();
        let launch = Launch::patronictl(&tools.patronictl, &self.spec.paths, args);
        self.helper(&launch)
    }

    fn helper(&self, launch: &Launch) -> Result<String> {
        let tools = self.scratch.tools();
        let out = process::run(launch, &tools.run_as, HELPER_TIMEOUT, &self.spec.name)?;
        if out.status.success() {
            Ok(out.stdout.trim_end_matches('\n').to_string())
        } else {
            Err(HarnessError::Command {
                node: self.spec.name.clone(),
                command: launch.display(),
                status: out.status.to_string(),
                stderr: out.stderr.trim().to_string(),
            })
        }
    }

    /// SIGKILLs Patroni and PostgreSQL at once: the site is lost (no shutdown checkpoint, the
    /// leader lock stays in the DCS until its TTL runs out).
    pub fn kill_hard(&self) {
        if let Some(mut child) = self.lock_child().take() {
            let pgid = child.id();
            process::signal(pgid, "KILL", true);
            let _ = child.wait();
        }
        if let Some(postmaster) = process::postmaster(&self.spec.paths.data_dir()) {
            process::kill_postgres_tree(postmaster);
        }
    }

    /// Stops Patroni gracefully (it stops PostgreSQL and releases the leader lock), killing it
    /// after 15 s; then makes sure no PostgreSQL of this node survives.
    pub fn stop(&self) {
        let name = &self.spec.name;
        if let Some(mut child) = self.lock_child().take() {
            let pgid = child.id();
            if matches!(child.try_wait(), Ok(None)) {
                process::signal(pgid, "TERM", true);
                if process::wait_child(&mut child, STOP_GRACE).is_none() {
                    eprintln!("{name}: Patroni ignored SIGTERM for {STOP_GRACE:?}; killing it");
                    process::signal(pgid, "KILL", true);
                    let _ = child.wait();
                }
            }
            // Anything Patroni left in its group (an initdb or pg_basebackup) goes too.
            if !process::group_members(pgid).is_empty() {
                process::signal(pgid, "KILL", true);
            }
        }
        // Patroni starts the postmaster in a session of its own, so it is not in the group.
        let data_dir = self.spec.paths.data_dir();
        if let Some(postmaster) = process::postmaster(&data_dir) {
            eprintln!("{name}: PostgreSQL (pid {postmaster}) outlived Patroni; stopping it");
            let tools = self.scratch.tools();
            let launch = Launch::pg_ctl_stop_immediate(&tools.pg_bin, &self.spec.paths);
            let _ = process::run(&launch, &tools.run_as, HELPER_TIMEOUT, name);
            if let Some(postmaster) = process::postmaster(&data_dir) {
                process::kill_postgres_tree(postmaster);
            }
        }
    }

    /// The last lines of the Patroni log and of the PostgreSQL log.
    pub fn logs(&self, lines: usize) -> String {
        let mut files: Vec<PathBuf> = vec![self.spec.paths.patroni_log()];
        if let Ok(entries) = std::fs::read_dir(self.spec.paths.pg_log_dir()) {
            let mut pg: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            pg.sort();
            files.extend(pg);
        }
        files
            .iter()
            .map(|file| {
                format!(
                    "----- {}: last {lines} lines of {} -----\n{}\n",
                    self.spec.name,
                    file.display(),
                    process::tail(file, lines)
                )
            })
            .collect()
    }
}

impl Drop for PatroniNode {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.logs(LOG_TAIL));
        }
    }
}

/// The member name is a Pod name and a folder name: a DNS label keeps both valid.
fn check_member_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(HarnessError::Config {
            node: name.into(),
            detail: "member names must be DNS labels (a-z, 0-9, '-', at most 63)".into(),
        })
    }
}

/// Pre-creates the member's Pod: Patroni never creates Pods, and a member without one is invisible
/// (reference §3). Labels are the selector labels; `status.podIP` is the node's address.
fn create_pod(server: &ServerHandle, spec: &NodeSpec) -> Result<()> {
    let node = spec.name.as_str();
    let ns = spec.namespace.as_str();
    let ip = spec.address.to_string();

    // Namespaces other than the built-in ones must exist first; 409 means they already do.
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    kube(
        server,
        node,
        "POST",
        "/api/v1/namespaces",
        &namespace,
        &[201, 409],
    )?;

    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": node, "namespace": ns, "labels": spec.pod_labels()},
        "spec": {
            "hostname": node,
            "nodeName": "localhost",
            "containers": [{"name": "patroni", "image": "patroni"}],
        },
        "status": {"phase": "Running", "podIP": ip},
    });
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let created = kube(server, node, "POST", &pods, &pod, &[201])?;
    // A real API server ignores `status` on create; set it through the status subresource then.
    if created["status"]["podIP"] != json!(ip) {
        let status = json!({"status": {"phase": "Running", "podIP": ip}});
        kube(
            server,
            node,
            "PATCH",
            &format!("{pods}/{node}/status"),
            &status,
            &[200],
        )?;
    }
    Ok(())
}

fn kube(
    server: &ServerHandle,
    node: &str,
    method: &'static str,
    path: &str,
    body: &Value,
    ok: &[u16],
) -> Result<Value> {
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let (status, response) = server.request(method, path, Some(content_type), Some(body));
    if ok.contains(&status) {
        Ok(response)
    } else {
        Err(HarnessError::Kube {
            node: node.into(),
            method,
            path: path.into(),
            status,
            body: response.to_string(),
        })
    }
}

/// Keeps error messages readable when a body is long.
fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_dns_labels() {
        for ok in ["pg0", "gold-0", "patroni-golddr-1"] {
            assert!(check_member_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Pg0", "a/b", "-x", "x-", "a_b", &"x".repeat(64)] {
            assert!(check_member_name(bad).is_err(), "{bad}");
        }
    }
}
