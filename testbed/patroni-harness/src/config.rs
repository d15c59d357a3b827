//! Pure parts of a node: its file layout, credentials and the Patroni configuration it runs with.
//!
//! Nothing here touches the file system or spawns anything, so it is unit-tested directly.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rand::Rng;
use serde_json::{Value, json};

/// The kubeconfig context (and cluster/user) name the harness uses; Patroni must be told it
/// explicitly because its default is `kind-kind` (reference §1.1).
pub const KUBE_CONTEXT: &str = "kubesim";

/// PostgreSQL role names and passwords.
///
/// Both sites of a standby pair must share them (the standby is a physical copy and uses its own
/// replication credentials against the primary), so [`Credentials::shared`] is the default.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub superuser: String,
    pub superuser_password: String,
    pub replication_user: String,
    pub replication_password: String,
}

impl Credentials {
    /// Fresh random passwords.
    pub fn generate() -> Self {
        Self {
            superuser: "postgres".into(),
            superuser_password: random_password(),
            replication_user: "replicator".into(),
            replication_password: random_password(),
        }
    }

    /// One random set per test process, used by every node that is not given others.
    pub fn shared() -> Self {
        static SHARED: OnceLock<Credentials> = OnceLock::new();
        SHARED.get_or_init(Self::generate).clone()
    }

    #[cfg(test)]
    pub(crate) fn passwords(&self) -> [&str; 2] {
        [&self.superuser_password, &self.replication_password]
    }
}

/// Never print passwords, even in a failing test's debug output.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("superuser", &self.superuser)
            .field("replication_user", &self.replication_user)
            .finish_non_exhaustive()
    }
}

fn random_password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// `bootstrap.dcs.standby_cluster`: where the standby leader streams from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyCluster {
    pub host: String,
    pub port: u16,
    /// A slot on the remote primary (declare it there as a permanent slot).
    pub primary_slot_name: Option<String>,
}

/// Where a node keeps its files, all below one folder owned by the run-as user.
#[derive(Clone, Debug)]
pub struct NodePaths {
    pub dir: PathBuf,
}

impl NodePaths {
    pub fn config(&self) -> PathBuf {
        self.dir.join("patroni.yml")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    pub fn patroni_log(&self) -> PathBuf {
        self.dir.join("patroni.log")
    }
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    /// `unix_socket_directories`; short because socket paths are limited to ~100 bytes.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    /// PostgreSQL's own log (logging_collector), printed when a test fails.
    pub fn pg_log_dir(&self) -> PathBuf {
        self.dir.join("pglog")
    }
    pub fn pgpass(&self) -> PathBuf {
        self.dir.join("pgpass")
    }
}

/// Patroni's HA timings (`ttl`, `loop_wait`, `retry_timeout`, in seconds).
///
/// The defaults are small so tests move quickly, yet valid: Patroni wants `ttl >= 20` and
/// `loop_wait + 2 * retry_timeout <= ttl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    pub ttl: u32,
    pub loop_wait: u32,
    pub retry_timeout: u32,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            ttl: 20,
            loop_wait: 2,
            retry_timeout: 5,
        }
    }
}

/// Everything that determines a node's Patroni configuration.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub scope: String,
    pub name: String,
    pub namespace: String,
    /// `kubernetes.labels`; Patroni adds `cluster-name: <scope>` itself.
    pub labels: BTreeMap<String, String>,
    pub address: Ipv4Addr,
    pub pg_port: u16,
    pub rest_port: u16,
    pub pg_bin: PathBuf,
    pub paths: NodePaths,
    pub credentials: Credentials,
    pub timings: Timings,
    pub standby: Option<StandbyCluster>,
    /// Names of permanent physical slots (`bootstrap.dcs.slots`).
    pub permanent_slots: Vec<String>,
}

impl NodeSpec {
    /// The Pod's labels: what Patroni selects members by (`labels` + `cluster-name`).
    pub fn pod_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert("cluster-name".into(), self.scope.clone());
        labels
    }

    /// The Patroni configuration as a JSON value (rendered to YAML by [`NodeSpec::render_yaml`]).
    pub fn patroni_config(&self) -> Value {
        let p = &self.paths;
        let c = &self.credentials;
        let pg = format!("{}:{}", self.address, self.pg_port);
        let rest = format!("{}:{}", self.address, self.rest_port);

        let mut dcs = json!({
            "ttl": self.timings.ttl,
            "loop_wait": self.timings.loop_wait,
            "retry_timeout": self.timings.retry_timeout,
            "postgresql": {
                "use_pg_rewind": true,
                "use_slots": true,
                // Kept small: several clusters share one test machine. Both sides of a standby
                // pair get the same values, as physical replication requires.
                "parameters": {
                    "max_connections": 50,
                    "max_wal_senders": 10,
                    "max_replication_slots": 10,
                    "wal_keep_size": "64MB",
                    "hot_standby": true,
                },
            },
        });
        if let Some(sb) = &self.standby {
            let mut standby = json!({
                "host": sb.host,
                "port": sb.port,
                "create_replica_methods": ["basebackup"],
            });
            if let Some(slot) = &sb.primary_slot_name {
                standby["primary_slot_name"] = json!(slot);
            }
            dcs["standby_cluster"] = standby;
        }
        if !self.permanent_slots.is_empty() {
            let slots: serde_json::Map<String, Value> = self
                .permanent_slots
                .iter()
                .map(|slot| (slot.clone(), json!({"type": "physical"})))
                .collect();
            dcs["slots"] = Value::Object(slots);
        }

        json!({
            "scope": self.scope,
            "name": self.name,
            "restapi": {"listen": rest, "connect_address": rest},
            "kubernetes": {
                "namespace": self.namespace,
                "labels": self.labels,
                "context": KUBE_CONTEXT,
                "use_endpoints": false,
            },
            // No /dev/watchdog on test machines; say so instead of letting Patroni probe.
            "watchdog": {"mode": "off"},
            "bootstrap": {
                "dcs": dcs,
                "initdb": [{"encoding": "UTF8"}, "data-checksums"],
            },
            "postgresql": {
                "listen": pg,
                "connect_address": pg,
                "data_dir": text(&p.data_dir()),
                "bin_dir": text(&self.pg_bin),
                "pgpass": text(&p.pgpass()),
                "authentication": {
                    "superuser": {"username": c.superuser, "password": c.superuser_password},
                    "replication": {"username": c.replication_user, "password": c.replication_password},
                },
                "parameters": {
                    "unix_socket_directories": text(&p.socket_dir()),
                    "shared_buffers": "32MB",
                    "logging_collector": true,
                    "log_directory": text(&p.pg_log_dir()),
                    "log_filename": "postgresql.log",
                },
                // Standby bootstrap clones with pg_basebackup; a fast checkpoint on the source
                // saves seconds per clone (the default spreads it over checkpoint_timeout).
                "basebackup": [{"checkpoint": "fast"}],
                // The socket folder is private to the run-as user, so trust there is safe;
                // md5 accepts both md5 and SCRAM password hashes over TCP.
                "pg_hba": [
                    "local all all trust",
                    "host replication all 127.0.0.0/8 md5",
                    "host all all 127.0.0.0/8 md5",
                ],
            },
        })
    }

    pub fn render_yaml(&self) -> Result<String, String> {
        serde_saphyr::to_string(&self.patroni_config()).map_err(|e| e.to_string())
    }
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

/// A program with its arguments and environment, built without side effects so tests can check
/// that no password ever reaches a command line.
#[derive(Clone, Debug)]
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The complete environment: children never inherit ours (no stray `KUBERNETES_SERVICE_HOST`
    /// that would send Patroni down the in-cluster path, no developer `PG*` settings).
    pub env: Vec<(String, String)>,
    /// Working folder: the node's own, which the run-as user can always enter (the test's
    /// working folder may not be readable by `postgres`, and Python minds).
    pub cwd: PathBuf,
}

impl Launch {
    fn new(program: &Path, home: &Path) -> Self {
        Self {
            program: program.to_path_buf(),
            args: Vec::new(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("HOME".into(), text(home)),
                ("LC_ALL".into(), "C.UTF-8".into()),
            ],
            cwd: home.to_path_buf(),
        }
    }

    fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `patroni <config>`; secrets are in the config file only.
    pub fn patroni(patroni: &Path, paths: &NodePaths) -> Self {
        Self::new(patroni, &paths.dir)
            .env("KUBECONFIG", text(&paths.kubeconfig()))
            // Unbuffered so the log is complete even when the process is killed.
            .env("PYTHONUNBUFFERED", "1")
            .arg(text(&paths.config()))
    }

    /// `patronictl -c <config> <args>`.
    pub fn patronictl(patronictl: &Path, paths: &NodePaths, args: &[&str]) -> Self {
        Self::new(patronictl, &paths.dir)
            .env("KUBECONFIG", text(&paths.kubeconfig()))
            .arg("-c")
            .arg(text(&paths.config()))
            .args_from(args)
    }

    /// `psql` over TCP as the superuser; the password travels in `PGPASSWORD`, never in `args`.
    pub fn psql(psql: &Path, spec: &NodeSpec, sql: &str) -> Self {
        Self::new(psql, &spec.paths.dir)
            .env("PGPASSWORD", spec.credentials.superuser_password.clone())
            .env("PGCONNECT_TIMEOUT", "5")
            // A test waiting on a lock should fail with a message, not hang the run.
            .env("PGOPTIONS", "-c statement_timeout=30s")
            .args_from(&["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(spec.address.to_string())
            .arg("-p")
            .arg(spec.pg_port.to_string())
            .arg("-U")
            .arg(spec.credentials.superuser.clone())
            .arg("-d")
            .arg("postgres")
            .arg("-c")
            .arg(sql)
    }

    /// `pg_ctl stop -m immediate`: the last resort for a postmaster that outlived Patroni.
    pub fn pg_ctl_stop_immediate(pg_bin: &Path, paths: &NodePaths) -> Self {
        Self::new(&pg_bin.join("pg_ctl"), &paths.dir)
            .args_from(&["stop", "-m", "immediate", "-w", "-t", "10", "-D"])
            .arg(text(&paths.data_dir()))
    }

    fn args_from(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The command line for messages (arguments only, never the environment).
    pub fn display(&self) -> String {
        let name = self
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::iter::once(name)
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NodeSpec {
        NodeSpec {
            scope: "demo".into(),
            name: "pg0".into(),
            namespace: "site-a".into(),
            labels: BTreeMap::from([("application".into(), "patroni".into())]),
            address: Ipv4Addr::new(127, 10, 20, 30),
            pg_port: 5432,
            rest_port: 8008,
            pg_bin: "/usr/lib/postgresql/15/bin".into(),
            paths: NodePaths {
                dir: "/tmp/pgdr-x/pg0".into(),
            },
            credentials: Credentials::generate(),
            timings: Timings::default(),
            standby: Some(StandbyCluster {
                host: "127.1.2.3".into(),
                port: 5432,
                primary_slot_name: Some("standby_b".into()),
            }),
            permanent_slots: vec!["standby_b".into()],
        }
    }

    #[test]
    fn config_has_the_settings_patroni_needs() {
        let spec = spec();
        let cfg = spec.patroni_config();
        assert_eq!(cfg["kubernetes"]["context"], KUBE_CONTEXT);
        assert_eq!(cfg["kubernetes"]["labels"]["application"], "patroni");
        assert_eq!(cfg["kubernetes"]["use_endpoints"], false);
        assert_eq!(cfg["restapi"]["listen"], "127.10.20.30:8008");
        assert_eq!(cfg["postgresql"]["listen"], "127.10.20.30:5432");
        let dcs = &cfg["bootstrap"]["dcs"];
        assert_eq!(dcs["ttl"], 20);
        assert_eq!(dcs["standby_cluster"]["primary_slot_name"], "standby_b");
        assert_eq!(
            dcs["standby_cluster"]["create_replica_methods"],
            json!(["basebackup"])
        );
        assert_eq!(dcs["slots"]["standby_b"]["type"], "physical");
        let t = spec.timings;
        assert!(t.ttl >= 20 && t.loop_wait + 2 * t.retry_timeout <= t.ttl);
        assert_eq!(
            spec.pod_labels().get("cluster-name").map(String::as_str),
            Some("demo")
        );
    }

    #[test]
    fn yaml_round_trips_to_the_same_config() {
        let spec = spec();
        let yaml = spec.render_yaml().unwrap();
        let back: Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, spec.patroni_config());
    }

    #[test]
    fn passwords_never_reach_a_command_line() {
        let spec = spec();
        let paths = &spec.paths;
        let launches = [
            Launch::patroni(Path::new("/venv/bin/patroni"), paths),
            Launch::patronictl(Path::new("/venv/bin/patronictl"), paths, &["list"]),
            Launch::psql(Path::new("/pg/bin/psql"), &spec, "SELECT 1"),
            Launch::pg_ctl_stop_immediate(&spec.pg_bin, paths),
        ];
        for launch in &launches {
            for secret in spec.credentials.passwords() {
                assert!(
                    !launch.args.iter().any(|a| a.contains(secret)),
                    "password in args of {}",
                    launch.display()
                );
            }
        }
        // psql gets the password through the environment, the only other channel it has.
        let psql = &launches[2];
        assert!(
            psql.env
                .iter()
                .any(|(k, v)| k == "PGPASSWORD" && *v == spec.credentials.superuser_password)
        );
        // Patroni reads it from its config file.
        assert!(
            spec.render_yaml()
                .unwrap()
                .contains(&spec.credentials.replication_password)
        );
    }

    #[test]
    fn credentials_debug_hides_passwords() {
        let c = Credentials::generate();
        let shown = format!("{c:?}");
        for secret in c.passwords() {
            assert!(!shown.contains(secret));
        }
        assert_eq!(Credentials::shared(), Credentials::shared());
    }
}
