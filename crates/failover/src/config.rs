//! Configuration: `FAILOVER_*` variables (contract: `chart/docs/failover-env.md`), parsed once.

use pgdr_core::contract::slot::SlotName;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use pgdr_core::{ConfigError, Dur, LogFormat, Secret, Url};

use crate::standby::{Fencing, Mode, Policy};
use pgdr_core::tls::ProbeTls;

pub const PREFIX: &str = "FAILOVER_";

pub use pgdr_core::tls::SslMode;

/// The environment, as the chart sets it. `Debug` is safe to log: secrets print as `***`.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Whether a writable primary writes the fences it decides on ([`Fencing`]).
    #[serde(default)]
    pub fencing: Fencing,
    pub site: String,
    pub peer_site: String,
    pub namespace: String,
    pub scope: String,
    pub state_configmap: String,
    #[serde(default = "default_hold")]
    pub hold_annotation: String,
    pub tunnel_service: String,
    /// libpq semantics, see [`crate::tls`].
    #[serde(default)]
    pub tunnel_sslmode: SslMode,
    /// CA file (PEM) for `verify-ca` (required there) and `require` (optional, then verified).
    #[serde(default)]
    pub tunnel_sslrootcert: Option<PathBuf>,
    /// Database the probe connects to (the replication user must be allowed to log in to it, or
    /// the rejection still proves the primary alive).
    #[serde(default = "default_probe_database")]
    pub probe_database: String,
    pub replication_user: String,
    pub replication_password: Secret,
    #[serde(default)]
    /// May carry credentials: logged without them.
    pub patroni_url: Option<Url>,
    #[serde(default)]
    pub patroni_username: Option<String>,
    #[serde(default)]
    pub patroni_password: Option<Secret>,
    #[serde(default = "default_interval")]
    pub sample_interval: Dur,
    #[serde(default = "default_samples")]
    pub samples_per_run: u32,
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_span")]
    pub min_failure_span: Dur,
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout: Dur,
    #[serde(default = "default_max_lag")]
    pub max_lag_bytes: u64,
    #[serde(default)]
    pub force: bool,
    #[serde(default = "default_confirm")]
    pub promote_confirm_deadline: Dur,
    pub peer_slot_name: String,
    /// Longest gap between two counted samples before the streak restarts (not in the chart
    /// contract yet; default suits a CronJob running every minute).
    #[serde(default = "default_max_gap")]
    pub max_sample_gap: Dur,
    /// Bound on each Kubernetes API request, and on retrying one (not in the chart contract yet).
    #[serde(default = "default_api_timeout")]
    pub api_timeout: Dur,
    #[serde(default)]
    pub witness_dns_name: Option<String>,
    #[serde(default)]
    pub witness_dns_expected: Option<String>,
    /// The peer site's addresses in the DNS witness's answers (a primary fences itself on DNS
    /// only when the answer names them).
    #[serde(default)]
    pub witness_dns_peer_addresses: Option<String>,
    #[serde(default)]
    pub witness_http_url: Option<Secret>,
    /// Peer-API witness: the primary site's Kubernetes API server (not through the tunnel).
    #[serde(default)]
    pub witness_peer_api_url: Option<String>,
    #[serde(default)]
    pub witness_peer_api_namespace: Option<String>,
    /// Defaults to `<scope>-leader`.
    #[serde(default)]
    pub witness_peer_api_leader_configmap: Option<String>,
    /// Bearer token of a read-only ServiceAccount on the primary site; read at every sample.
    #[serde(default)]
    pub witness_peer_api_token_file: Option<PathBuf>,
    /// CA bundle (PEM) of the peer API server; read once at start.
    #[serde(default)]
    pub witness_peer_api_ca_file: Option<PathBuf>,
    /// `auto` with no witness is refused unless this is set (the partition risk is accepted).
    #[serde(default)]
    pub allow_no_witness: bool,
    /// The primary position used by the lag guard expires after this age.
    #[serde(default = "default_max_lsn_age")]
    pub max_lsn_age: Dur,
    /// Durable promotion record, created on a confirmed promotion; survives `helm uninstall`.
    pub promotion_record_configmap: String,
    #[serde(default)]
    pub webhook_url: Option<Secret>,
    #[serde(default)]
    pub log_format: LogFormat,
    /// How the follow form of the fence names the reverse tunnel (port-patch's host mode).
    #[serde(default)]
    pub tunnel_host_mode: HostMode,
    /// How a fenced site rejoins once the fork is known (`auto` | `manual`).
    #[serde(default)]
    pub rejoin: Rejoin,
    /// Port of the readiness sidecar on the leader pod (its `/status` reports WAL preservation).
    #[serde(default = "default_readiness_port")]
    pub readiness_port: u16,
    /// Label selector of this site's Patroni member pods (a re-clone asks every member's
    /// sidecar); unset: `cluster-name=<scope>`, Patroni's default scope label.
    #[serde(default)]
    pub member_selector: Option<String>,
}

/// What the fence's follow form writes as `standby_cluster.host`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum HostMode {
    /// `<service>.<namespace>.svc`: survives the Service being re-created with a new ClusterIP.
    #[default]
    #[serde(rename = "dns")]
    Dns,
    /// The Service's ClusterIP (clusters without Service DNS, such as the local drill).
    #[serde(rename = "clusterIP", alias = "clusterip", alias = "cluster-ip")]
    ClusterIp,
}

/// `auto`: rejoin once diverged WAL is preserved; `manual`: a person approves when WAL diverged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rejoin {
    #[default]
    Auto,
    Manual,
}

fn default_readiness_port() -> u16 {
    8080
}

fn default_mode() -> Mode {
    Mode::Observe
}
fn default_hold() -> String {
    "patroni-dr/hold".into()
}
fn default_probe_database() -> String {
    "postgres".into()
}
fn default_interval() -> Dur {
    Dur::secs(10)
}
fn default_samples() -> u32 {
    5
}
fn default_threshold() -> u32 {
    6
}
fn default_span() -> Dur {
    Dur::secs(120)
}
fn default_probe_timeout() -> Dur {
    Dur::secs(3)
}
fn default_max_lag() -> u64 {
    16 * 1024 * 1024
}
fn default_confirm() -> Dur {
    Dur::secs(60)
}
fn default_max_gap() -> Dur {
    Dur::secs(150)
}
fn default_api_timeout() -> Dur {
    Dur::secs(10)
}
fn default_max_lsn_age() -> Dur {
    Dur::secs(300)
}

/// How often a lasting `ReplicationBroken` is announced again.
pub const REPLICATION_BROKEN_RENOTIFY: Duration = Duration::from_secs(600);

/// One witness, validated. Several may be configured at once.
#[derive(Clone, Debug, PartialEq)]
pub enum WitnessConfig {
    Dns {
        name: String,
        expected: Vec<IpAddr>,
        /// The peer site's addresses (empty: unknown, and then a DNS answer never fences).
        peer: Vec<IpAddr>,
    },
    /// The URL may hold a token: kept secret.
    Http { url: Secret },
    /// The primary site's Patroni leader lock, read through its own Kubernetes API.
    PeerApi(PeerApi),
}

/// Where and how to read the primary site's leader lock.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerApi {
    pub url: String,
    pub namespace: String,
    pub leader_configmap: String,
    pub token_file: PathBuf,
    /// PEM bytes of the CA bundle, read at start (`None`: the system roots).
    pub ca_pem: Option<Vec<u8>>,
}

/// Validated settings the library runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: Config,
    pub policy: Policy,
    /// Every configured witness (empty: none, allowed only in observe mode or when waived).
    pub witnesses: Vec<WitnessConfig>,
    /// TLS for the tunnel probe; `None` for `sslmode=disable`.
    pub tls: Option<ProbeTls>,
    /// `FAILOVER_PEER_SLOT_NAME`, validated: the one slot between the sites.
    pub peer_slot: SlotName,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        pgdr_core::config::from_env(PREFIX)
    }

    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        pgdr_core::config::from_vars(PREFIX, vars)
    }

    /// Cross-field checks; each error names the variable.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let var = |name: &str| pgdr_core::config::var(PREFIX, name);
        for (name, value) in [
            ("SITE", &self.site),
            ("PEER_SITE", &self.peer_site),
            ("NAMESPACE", &self.namespace),
            ("SCOPE", &self.scope),
            ("STATE_CONFIGMAP", &self.state_configmap),
            ("TUNNEL_SERVICE", &self.tunnel_service),
            ("REPLICATION_USER", &self.replication_user),
            ("PEER_SLOT_NAME", &self.peer_slot_name),
            (
                "PROMOTION_RECORD_CONFIGMAP",
                &self.promotion_record_configmap,
            ),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::invalid(var(name), "must not be empty"));
            }
        }
        if self.samples_per_run == 0 {
            return Err(ConfigError::invalid(
                var("SAMPLES_PER_RUN"),
                "must be at least 1",
            ));
        }
        if self.failure_threshold == 0 {
            return Err(ConfigError::invalid(
                var("FAILURE_THRESHOLD"),
                "must be at least 1",
            ));
        }
        if self.probe_timeout.get().is_zero() {
            return Err(ConfigError::invalid(
                var("PROBE_TIMEOUT"),
                "must be more than 0",
            ));
        }
        if self.max_sample_gap.get() <= self.sample_interval.get() {
            return Err(ConfigError::invalid(
                var("MAX_SAMPLE_GAP"),
                format!(
                    "must be longer than FAILOVER_SAMPLE_INTERVAL ({})",
                    self.sample_interval
                ),
            ));
        }
        if self.tunnel_sslmode == SslMode::VerifyFull {
            return Err(ConfigError::invalid(
                var("TUNNEL_SSLMODE"),
                SslMode::refuse_verify_full("FAILOVER_TUNNEL_SSLROOTCERT"),
            ));
        }
        // The CA file is read once, here: a missing or unusable file is a configuration error
        // (exit 2), not a failed probe sample.
        let tls = ProbeTls::new(self.tunnel_sslmode, self.tunnel_sslrootcert.as_deref()).map_err(
            |reason| ConfigError::invalid(var("TUNNEL_SSLROOTCERT"), reason.to_string()),
        )?;
        let witnesses = self.witnesses()?;
        if self.mode == Mode::Auto && witnesses.is_empty() && !self.allow_no_witness {
            return Err(ConfigError::invalid(
                var("MODE"),
                "auto with no witness configured: a tunnel-only partition (both sites alive, the \
                 tunnel down) looks exactly like a lost primary site and would promote this site, \
                 leaving two writable primaries. Configure a witness (FAILOVER_WITNESS_DNS_NAME, \
                 FAILOVER_WITNESS_HTTP_URL, FAILOVER_WITNESS_PEER_API_URL) or, to accept that risk, set \
                 FAILOVER_ALLOW_NO_WITNESS=true",
            ));
        }
        if let Some(url) = &self.webhook_url {
            // The error must not echo the URL: it may carry a token.
            reqwest::Url::parse(url.expose())
                .map_err(|_| ConfigError::invalid(var("WEBHOOK_URL"), "not a valid URL"))?;
        }
        let interval = self.sample_interval.get();
        let policy = Policy {
            mode: self.mode,
            fencing: self.fencing,
            failure_threshold: self.failure_threshold,
            min_failure_span: self.min_failure_span.get(),
            max_lag_bytes: self.max_lag_bytes,
            force: self.force,
            // Half an interval: a run's own samples are a full interval apart; an overlapping
            // run's land anywhere in between.
            min_sample_spacing: interval / 2,
            max_sample_gap: self.max_sample_gap.get(),
            claim_ttl: self.promote_confirm_deadline.get() * 2 + self.api_timeout.get() * 2,
            max_lsn_age: self.max_lsn_age.get(),
            replication_broken_renotify: REPLICATION_BROKEN_RENOTIFY,
        };
        let peer_slot = SlotName::parse(&self.peer_slot_name)
            .map_err(|e| ConfigError::invalid(var("PEER_SLOT_NAME"), e.to_string()))?;
        Ok(Settings {
            config: self,
            policy,
            witnesses,
            tls,
            peer_slot,
        })
    }
}

impl Config {
    /// The configured witnesses; each error names its variable.
    fn witnesses(&self) -> Result<Vec<WitnessConfig>, ConfigError> {
        let var = |name: &str| pgdr_core::config::var(PREFIX, name);
        let mut out = Vec::new();
        match (&self.witness_dns_name, &self.witness_dns_expected) {
            (Some(name), expected) => {
                let expected = parse_ips(expected.as_deref().unwrap_or(""))
                    .map_err(|r| ConfigError::invalid(var("WITNESS_DNS_EXPECTED"), r))?;
                if expected.is_empty() {
                    return Err(ConfigError::invalid(
                        var("WITNESS_DNS_EXPECTED"),
                        "required with FAILOVER_WITNESS_DNS_NAME: the addresses that mean the application runs here",
                    ));
                }
                let peer = parse_ips(self.witness_dns_peer_addresses.as_deref().unwrap_or(""))
                    .map_err(|r| ConfigError::invalid(var("WITNESS_DNS_PEER_ADDRESSES"), r))?;
                out.push(WitnessConfig::Dns {
                    name: name.clone(),
                    expected,
                    peer,
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    var("WITNESS_DNS_NAME"),
                    "required when FAILOVER_WITNESS_DNS_EXPECTED is set",
                ));
            }
            (None, None) => {}
        }
        if let Some(url) = &self.witness_http_url {
            // The error must not echo the URL: it may carry a token.
            reqwest::Url::parse(url.expose())
                .map_err(|_| ConfigError::invalid(var("WITNESS_HTTP_URL"), "not a valid URL"))?;
            out.push(WitnessConfig::Http { url: url.clone() });
        }
        if let Some(peer) = self.peer_api()? {
            out.push(WitnessConfig::PeerApi(peer));
        }
        Ok(out)
    }

    fn peer_api(&self) -> Result<Option<PeerApi>, ConfigError> {
        let var = |name: &str| pgdr_core::config::var(PREFIX, name);
        let Some(url) = &self.witness_peer_api_url else {
            for (name, set) in [
                (
                    "WITNESS_PEER_API_NAMESPACE",
                    self.witness_peer_api_namespace.is_some(),
                ),
                (
                    "WITNESS_PEER_API_TOKEN_FILE",
                    self.witness_peer_api_token_file.is_some(),
                ),
            ] {
                if set {
                    return Err(ConfigError::invalid(
                        var(name),
                        "set without FAILOVER_WITNESS_PEER_API_URL",
                    ));
                }
            }
            return Ok(None);
        };
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            ConfigError::invalid(var("WITNESS_PEER_API_URL"), format!("not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(ConfigError::invalid(
                var("WITNESS_PEER_API_URL"),
                "must be an https:// URL (the primary site's API server)",
            ));
        }
        let namespace = self
            .witness_peer_api_namespace
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                ConfigError::invalid(
                    var("WITNESS_PEER_API_NAMESPACE"),
                    "required with FAILOVER_WITNESS_PEER_API_URL: the primary site's namespace",
                )
            })?;
        let token_file = self.witness_peer_api_token_file.clone().ok_or_else(|| {
            ConfigError::invalid(
                var("WITNESS_PEER_API_TOKEN_FILE"),
                "required with FAILOVER_WITNESS_PEER_API_URL: the read-only ServiceAccount's token",
            )
        })?;
        let ca_pem = match &self.witness_peer_api_ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    ConfigError::invalid(
                        var("WITNESS_PEER_API_CA_FILE"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    ConfigError::invalid(
                        var("WITNESS_PEER_API_CA_FILE"),
                        format!("{} holds no usable PEM certificate: {e}", path.display()),
                    )
                })?;
                if certs.is_empty() {
                    return Err(ConfigError::invalid(
                        var("WITNESS_PEER_API_CA_FILE"),
                        format!("{} holds no PEM certificate", path.display()),
                    ));
                }
                Some(pem)
            }
        };
        Ok(Some(PeerApi {
            url: url.trim_end_matches('/').to_string(),
            namespace,
            leader_configmap: self
                .witness_peer_api_leader_configmap
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| format!("{}-leader", self.scope)),
            token_file,
            ca_pem,
        }))
    }
}

fn parse_ips(text: &str) -> Result<Vec<IpAddr>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("'{s}' is not an IP address")))
        .collect()
}

impl Settings {
    pub fn interval(&self) -> Duration {
        self.config.sample_interval.get()
    }
    pub fn config_map(&self) -> String {
        format!("{}-config", self.config.scope)
    }
    pub fn leader_map(&self) -> String {
        format!("{}-leader", self.config.scope)
    }
    pub fn member_selector(&self) -> String {
        self.config
            .member_selector
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| format!("cluster-name={}", self.config.scope))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `chart/docs/failover-env.md` is the one list of variables (its table: what the chart sets;
    /// its list of binary-side settings: what it does not). It must match the config struct, and
    /// the README must not keep a second list.
    #[test]
    fn env_contract_documents_every_variable() {
        let mut code = pgdr_core::config::variables::<Config>(PREFIX);
        code.sort();
        let contract = include_str!("../../../chart/docs/failover-env.md");
        let doc = pgdr_core::config::documented_variables(contract, PREFIX);
        assert_eq!(doc, code, "chart/docs/failover-env.md and Config differ");
        let table_rows: Vec<&str> = include_str!("../README.md")
            .lines()
            .filter(|l| l.starts_with("| `FAILOVER_"))
            .collect();
        assert!(
            table_rows.is_empty(),
            "README.md lists variables again: {table_rows:?}"
        );
    }

    fn base() -> Vec<(String, String)> {
        [
            ("FAILOVER_SITE", "golddr"),
            ("FAILOVER_PEER_SITE", "gold"),
            ("FAILOVER_NAMESPACE", "abc123-prod"),
            ("FAILOVER_SCOPE", "patroni"),
            ("FAILOVER_STATE_CONFIGMAP", "patroni-failover-state"),
            ("FAILOVER_TUNNEL_SERVICE", "patroni-gold"),
            ("FAILOVER_REPLICATION_USER", "replicator"),
            ("FAILOVER_REPLICATION_PASSWORD", "s3cret-rep"),
            ("FAILOVER_PEER_SLOT_NAME", "standby_gold"),
            (
                "FAILOVER_PROMOTION_RECORD_CONFIGMAP",
                "patroni-promotion-record",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn with(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut vars = base();
        vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_vars(vars)?.validate()
    }

    #[test]
    fn defaults_follow_the_chart_contract() {
        let s = with(&[]).unwrap();
        assert_eq!(s.policy.mode, Mode::Observe);
        assert_eq!(s.policy.failure_threshold, 6);
        assert_eq!(s.policy.min_failure_span, Duration::from_secs(120));
        assert_eq!(s.policy.max_lag_bytes, 16 * 1024 * 1024);
        assert_eq!(s.config.samples_per_run, 5);
        assert_eq!(s.config.hold_annotation, "patroni-dr/hold");
        assert!(s.witnesses.is_empty());
        assert_eq!(s.policy.max_lsn_age, Duration::from_secs(300));
        assert_eq!(s.config_map(), "patroni-config");
        let shown = format!("{:?}", s.config);
        assert!(!shown.contains("s3cret-rep"), "{shown}");
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("FAILOVER_MODE", "yolo")], "FAILOVER_MODE"),
            (
                &[("FAILOVER_SAMPLES_PER_RUN", "0")],
                "FAILOVER_SAMPLES_PER_RUN",
            ),
            (
                &[("FAILOVER_FAILURE_THRESHOLD", "0")],
                "FAILOVER_FAILURE_THRESHOLD",
            ),
            (
                &[("FAILOVER_SAMPLE_INTERVAL", "soon")],
                "FAILOVER_SAMPLE_INTERVAL",
            ),
            (
                &[("FAILOVER_WITNESS_DNS_NAME", "app.glb.example")],
                "FAILOVER_WITNESS_DNS_EXPECTED",
            ),
            (
                &[
                    ("FAILOVER_WITNESS_DNS_NAME", "a"),
                    ("FAILOVER_WITNESS_DNS_EXPECTED", "10.0.0.300"),
                ],
                "FAILOVER_WITNESS_DNS_EXPECTED",
            ),
            (
                &[("FAILOVER_WITNESS_DNS_EXPECTED", "10.0.0.1")],
                "FAILOVER_WITNESS_DNS_NAME",
            ),
            (
                &[("FAILOVER_TUNNEL_SSLMODE", "verify-full")],
                "FAILOVER_TUNNEL_SSLMODE",
            ),
            (
                &[("FAILOVER_TUNNEL_SSLMODE", "verify-ca")],
                "FAILOVER_TUNNEL_SSLROOTCERT",
            ),
            (&[("FAILOVER_SITE", " ")], "FAILOVER_SITE"),
            (
                &[("FAILOVER_MAX_SAMPLE_GAP", "5s")],
                "FAILOVER_MAX_SAMPLE_GAP",
            ),
        ];
        for (extra, want) in cases {
            let err = with(extra).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(want), "{extra:?}: {err}");
        }
        let mut vars = base();
        vars.retain(|(k, _)| k != "FAILOVER_REPLICATION_PASSWORD");
        let err = Config::from_vars(vars).unwrap_err().to_string();
        assert!(err.contains("FAILOVER_REPLICATION_PASSWORD"), "{err}");
    }

    #[test]
    fn webhook_error_does_not_echo_the_url() {
        let err = with(&[("FAILOVER_WEBHOOK_URL", "not a url token=abc")])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FAILOVER_WEBHOOK_URL") && !err.contains("token=abc"),
            "{err}"
        );
    }

    /// A CA certificate (EC P-256, valid until 2125) for parsing only.
    const TEST_CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ca.crt");

    #[test]
    fn every_sslmode_parses_with_libpq_semantics() {
        use crate::tls::Verification;
        let verification = |extra: &[(&str, &str)]| {
            let s = with(extra).unwrap();
            (s.config.tunnel_sslmode, s.tls.map(|t| t.verification()))
        };
        // The chart's default when TLS is off, and the binary's default.
        assert_eq!(
            verification(&[]),
            (SslMode::Prefer, Some(Verification::None))
        );
        assert_eq!(
            verification(&[("FAILOVER_TUNNEL_SSLMODE", "disable")]),
            (SslMode::Disable, None)
        );
        assert_eq!(
            verification(&[("FAILOVER_TUNNEL_SSLMODE", "prefer")]),
            (SslMode::Prefer, Some(Verification::None))
        );
        // The chart's default with TLS on: encrypted, certificate not verified.
        assert_eq!(
            verification(&[("FAILOVER_TUNNEL_SSLMODE", "require")]),
            (SslMode::Require, Some(Verification::None))
        );
        // libpq: `require` with a root certificate verifies like verify-ca.
        assert_eq!(
            verification(&[
                ("FAILOVER_TUNNEL_SSLMODE", "require"),
                ("FAILOVER_TUNNEL_SSLROOTCERT", TEST_CA),
            ]),
            (SslMode::Require, Some(Verification::Ca))
        );
        // What the chart renders for tls.sslMode=verify-ca.
        assert_eq!(
            verification(&[
                ("FAILOVER_TUNNEL_SSLMODE", "verify-ca"),
                ("FAILOVER_TUNNEL_SSLROOTCERT", TEST_CA),
            ]),
            (SslMode::VerifyCa, Some(Verification::Ca))
        );
        // A root certificate is not needed (and not read) for disable.
        assert_eq!(
            verification(&[
                ("FAILOVER_TUNNEL_SSLMODE", "disable"),
                ("FAILOVER_TUNNEL_SSLROOTCERT", "/nonexistent/ca.crt"),
            ]),
            (SslMode::Disable, None)
        );
    }

    #[test]
    fn unusable_root_certificate_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("ca.crt");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
        let garbage = garbage.to_str().unwrap();
        for file in ["/nonexistent/ca.crt", garbage] {
            for mode in ["verify-ca", "require"] {
                let err = with(&[
                    ("FAILOVER_TUNNEL_SSLMODE", mode),
                    ("FAILOVER_TUNNEL_SSLROOTCERT", file),
                ])
                .map(|_| ())
                .unwrap_err()
                .to_string();
                assert!(
                    err.contains("FAILOVER_TUNNEL_SSLROOTCERT") && err.contains(file),
                    "{mode} {file}: {err}"
                );
            }
        }
    }

    #[test]
    fn witness_variants() {
        let dns = with(&[
            ("FAILOVER_WITNESS_DNS_NAME", "app.glb.example"),
            ("FAILOVER_WITNESS_DNS_EXPECTED", "10.0.0.1, 10.0.0.2"),
        ])
        .unwrap();
        assert!(
            matches!(dns.witnesses.as_slice(), [WitnessConfig::Dns { expected, .. }] if expected.len() == 2)
        );
        let http = with(&[("FAILOVER_WITNESS_HTTP_URL", "https://status.example/gold")]).unwrap();
        assert!(matches!(
            http.witnesses.as_slice(),
            [WitnessConfig::Http { .. }]
        ));
        // Several witnesses at once: each answers, the decision combines them.
        let both = with(&[
            ("FAILOVER_WITNESS_DNS_NAME", "app.glb.example"),
            ("FAILOVER_WITNESS_DNS_EXPECTED", "10.0.0.1"),
            ("FAILOVER_WITNESS_HTTP_URL", "https://status.example/gold"),
        ])
        .unwrap();
        assert_eq!(both.witnesses.len(), 2);
        let err = with(&[("FAILOVER_WITNESS_HTTP_URL", "nope token=abc")])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FAILOVER_WITNESS_HTTP_URL") && !err.contains("token=abc"),
            "{err}"
        );
    }

    #[test]
    fn patroni_url_credentials_and_verify_full() {
        let s = with(&[("FAILOVER_PATRONI_URL", "https://admin:pw123@pg-0.pg:8008")]).unwrap();
        let shown = format!("{:?}", s.config);
        assert!(
            !shown.contains("pw123") && shown.contains("pg-0.pg:8008"),
            "{shown}"
        );
        let err = with(&[("FAILOVER_TUNNEL_SSLMODE", "verify-full")])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not supported") && err.contains("verify-ca"),
            "{err}"
        );
    }

    #[test]
    fn auto_needs_a_witness_unless_the_risk_is_accepted() {
        let err = with(&[("FAILOVER_MODE", "auto")])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("FAILOVER_MODE")
                && err.contains("two writable primaries")
                && err.contains("FAILOVER_ALLOW_NO_WITNESS"),
            "{err}"
        );
        assert!(
            with(&[
                ("FAILOVER_MODE", "auto"),
                ("FAILOVER_ALLOW_NO_WITNESS", "true")
            ])
            .is_ok()
        );
        assert!(
            with(&[
                ("FAILOVER_MODE", "auto"),
                ("FAILOVER_WITNESS_HTTP_URL", "https://status.example/gold")
            ])
            .is_ok()
        );
        let token = std::env::temp_dir().join("pgdr-failover-config-test-token");
        std::fs::write(&token, "t").unwrap();
        let token = token.to_str().unwrap();
        let peer = with(&[
            ("FAILOVER_MODE", "auto"),
            (
                "FAILOVER_WITNESS_PEER_API_URL",
                "https://api.gold.example:6443",
            ),
            ("FAILOVER_WITNESS_PEER_API_NAMESPACE", "abc123-prod"),
            ("FAILOVER_WITNESS_PEER_API_TOKEN_FILE", token),
        ])
        .unwrap();
        assert!(
            matches!(peer.witnesses.as_slice(), [WitnessConfig::PeerApi(p)] if p.leader_configmap == "patroni-leader"),
            "{:?}",
            peer.witnesses
        );
        for (extra, names) in [
            (
                &[(
                    "FAILOVER_WITNESS_PEER_API_URL",
                    "https://api.gold.example:6443",
                )][..],
                "FAILOVER_WITNESS_PEER_API_NAMESPACE",
            ),
            (
                &[("FAILOVER_WITNESS_PEER_API_NAMESPACE", "abc123-prod")][..],
                "FAILOVER_WITNESS_PEER_API_NAMESPACE",
            ),
            (
                &[
                    (
                        "FAILOVER_WITNESS_PEER_API_URL",
                        "https://api.gold.example:6443",
                    ),
                    ("FAILOVER_WITNESS_PEER_API_NAMESPACE", "abc123-prod"),
                    ("FAILOVER_WITNESS_PEER_API_TOKEN_FILE", token),
                    ("FAILOVER_WITNESS_PEER_API_CA_FILE", "/nonexistent/ca.crt"),
                ][..],
                "FAILOVER_WITNESS_PEER_API_CA_FILE",
            ),
        ] {
            let err = with(extra).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(names), "{extra:?}: {err}");
        }
        // Observe mode never acts, so it needs no witness.
        assert!(with(&[("FAILOVER_MODE", "observe")]).is_ok());
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// Valid settings for unit tests (probe timeout 1 s).
    pub fn settings() -> Settings {
        settings_with(&[])
    }

    /// [`settings`] with variables added or replaced.
    pub fn settings_with(extra: &[(&str, &str)]) -> Settings {
        let base = [
            ("FAILOVER_SITE", "golddr"),
            ("FAILOVER_PEER_SITE", "gold"),
            ("FAILOVER_NAMESPACE", "ns"),
            ("FAILOVER_SCOPE", "demo"),
            ("FAILOVER_STATE_CONFIGMAP", "demo-failover-state"),
            ("FAILOVER_TUNNEL_SERVICE", "demo-gold"),
            ("FAILOVER_REPLICATION_USER", "replicator"),
            ("FAILOVER_REPLICATION_PASSWORD", "x"),
            ("FAILOVER_PEER_SLOT_NAME", "standby_gold"),
            (
                "FAILOVER_PROMOTION_RECORD_CONFIGMAP",
                "demo-promotion-record",
            ),
            ("FAILOVER_PROBE_TIMEOUT", "1s"),
        ];
        let vars = base
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_vars(vars).unwrap().validate().unwrap()
    }
}
