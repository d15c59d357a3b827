//! `READINESS_*` environment variables (documented in this crate's README.md).

use pgdr_core::tls::ProbeTls;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pgdr_core::config::{ConfigError, Dur, LogFormat, Secret, Url};
use pgdr_core::patroni::PatroniClientConfig;
use serde::Deserialize;

use crate::decide::{Role, Rules};

pub const PREFIX: &str = "READINESS_";

/// libpq `sslmode` of the peer check: the failover probe's ([`pgdr_core::tls`]), with the same
/// verifier: `verify-ca` checks the chain against `READINESS_PEER_SSLROOTCERT`, `require` and
/// `prefer` encrypt without checking the certificate, `verify-full` is refused with its reason.
pub use pgdr_core::tls::SslMode;

/// Raw configuration as read from the environment (logged at start; the password prints `***`).
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// Base URL of the local Patroni REST API.
    #[serde(default = "default_patroni_url")]
    pub patroni_url: Url,
    #[serde(default)]
    pub patroni_username: Option<String>,
    #[serde(default)]
    pub patroni_password: Option<Secret>,
    /// PEM CA bundle for an HTTPS Patroni API.
    #[serde(default)]
    pub patroni_ca_file: Option<PathBuf>,
    /// Address the probe/metrics server listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Dur,
    /// Bound on each Patroni request.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Dur,
    /// A poll result older than this counts as unknown (not ready). Default: 3 poll intervals +
    /// 3 request timeouts, so one slow poll does not flap readiness.
    #[serde(default)]
    pub stale_after: Option<Dur>,
    /// Largest replication lag (bytes) at which a replica is still ready.
    #[serde(default = "default_max_lag")]
    pub max_lag_bytes: u64,
    /// Roles that may be ready, comma-separated: primary, standby_leader, replica.
    #[serde(default = "default_ready_roles")]
    pub ready_roles: Vec<String>,
    /// Site name shown in `/status` and the info metric.
    #[serde(default)]
    pub site: String,
    #[serde(default)]
    pub log_format: LogFormat,
    /// Peer PostgreSQL through the tunnel Service; unset: no peer check (no split-brain latch).
    #[serde(default)]
    pub peer_host: Option<String>,
    #[serde(default = "default_pg_port")]
    pub peer_port: u16,
    #[serde(default)]
    pub peer_sslmode: SslMode,
    /// CA file (PEM) for `verify-ca` (required there) and `require` (optional, then verified).
    #[serde(default)]
    pub peer_sslrootcert: Option<PathBuf>,
    /// Database both identity checks connect to (`replication=database`).
    #[serde(default = "default_peer_database")]
    pub peer_database: String,
    /// Bound on one peer check (peer and own identity together). Default: ¾ of the poll
    /// interval; must be shorter than the poll interval.
    #[serde(default)]
    pub peer_timeout: Option<Dur>,
    #[serde(default)]
    pub replication_user: Option<String>,
    #[serde(default)]
    pub replication_password: Option<Secret>,
    /// The local PostgreSQL, for this member's own identity.
    #[serde(default = "default_local_pg_host")]
    pub local_pg_host: String,
    #[serde(default = "default_pg_port")]
    pub local_pg_port: u16,
    /// This member's data directory (the data volume mounted into the sidecar); unset: no WAL
    /// preservation.
    #[serde(default)]
    pub pgdata: Option<PathBuf>,
}

fn default_pg_port() -> u16 {
    5432
}
fn default_peer_database() -> String {
    "postgres".into()
}
fn default_local_pg_host() -> String {
    "127.0.0.1".into()
}

/// The peer check's connections (the `peer` module). `Debug` prints the password as `***`.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    pub host: String,
    pub port: u16,
    pub sslmode: SslMode,
    /// The TLS client of the peer connection, built once from the mode and the CA file (`None`
    /// for `disable`).
    pub tls: Option<ProbeTls>,
    pub database: String,
    pub user: String,
    pub password: Secret,
    pub timeout: Duration,
    pub local_host: String,
    pub local_port: u16,
}

fn default_patroni_url() -> Url {
    Url::new("http://127.0.0.1:8008")
}
fn default_listen() -> String {
    "0.0.0.0:8080".into()
}
fn default_poll_interval() -> Dur {
    Dur::secs(2)
}
fn default_request_timeout() -> Dur {
    Dur::secs(2)
}
fn default_max_lag() -> u64 {
    16 * 1024 * 1024
}
fn default_ready_roles() -> Vec<String> {
    vec!["primary".into(), "standby_leader".into(), "replica".into()]
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub patroni: PatroniClientConfig,
    pub listen: SocketAddr,
    pub poll_interval: Duration,
    pub rules: Rules,
    pub site: String,
    /// `None`: the peer check is off.
    pub peer: Option<PeerSettings>,
    pub pgdata: Option<PathBuf>,
}

fn var(field: &str) -> String {
    pgdr_core::config::var(PREFIX, field)
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        pgdr_core::config::from_env(PREFIX)
    }

    pub fn validate(self) -> Result<Settings, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|e| {
            ConfigError::invalid(
                var("listen"),
                format!("'{}' is not host:port ({e})", self.listen),
            )
        })?;
        let url = self.patroni_url.expose().trim().to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                var("patroni_url"),
                format!("'{}' must start with http:// or https://", self.patroni_url),
            ));
        }
        if self.patroni_password.is_some() && self.patroni_username.is_none() {
            return Err(ConfigError::invalid(
                var("patroni_username"),
                "is required when READINESS_PATRONI_PASSWORD is set",
            ));
        }
        let poll_interval = self.poll_interval.get();
        if poll_interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                var("poll_interval"),
                "must be at least 100ms",
            ));
        }
        let timeout = self.request_timeout.get();
        if timeout.is_zero() {
            return Err(ConfigError::invalid(
                var("request_timeout"),
                "must be more than zero",
            ));
        }
        let stale_after = match self.stale_after {
            Some(d) if d.get() < poll_interval => {
                return Err(ConfigError::invalid(
                    var("stale_after"),
                    "must be at least the poll interval",
                ));
            }
            Some(d) => d.get(),
            None => poll_interval * 3 + timeout * 3,
        };
        let ready_roles = self.ready_roles()?;
        let peer = self.peer_settings(poll_interval)?;
        let pgdata = self.pgdata.filter(|p| !p.as_os_str().is_empty());
        if let Some(p) = &pgdata
            && (!p.is_absolute() || p.parent().is_none())
        {
            return Err(ConfigError::invalid(
                var("pgdata"),
                format!(
                    "'{}' must be an absolute path below a directory (diverged WAL goes next to it)",
                    p.display()
                ),
            ));
        }
        Ok(Settings {
            peer,
            pgdata,
            patroni: PatroniClientConfig {
                url,
                timeout,
                username: self.patroni_username,
                password: self.patroni_password,
                ca_file: self.patroni_ca_file,
            },
            listen,
            poll_interval,
            rules: Rules {
                ready_roles,
                max_lag_bytes: self.max_lag_bytes,
                stale_after,
            },
            site: self.site,
        })
    }

    /// `READINESS_READY_ROLES`: the Patroni roles that may be ready.
    fn ready_roles(&self) -> Result<Vec<Role>, ConfigError> {
        let mut ready_roles = Vec::new();
        for r in self
            .ready_roles
            .iter()
            .map(|r| r.trim())
            .filter(|r| !r.is_empty())
        {
            match Role::parse(r) {
                Role::Other(_) => {
                    return Err(ConfigError::invalid(
                        var("ready_roles"),
                        format!("unknown role '{r}' (use primary, standby_leader, replica)"),
                    ));
                }
                role => ready_roles.push(role),
            }
        }
        Ok(ready_roles)
    }

    /// The peer check's settings (`None` without `READINESS_PEER_HOST`); its timeout must be
    /// shorter than the poll interval.
    fn peer_settings(&self, poll_interval: Duration) -> Result<Option<PeerSettings>, ConfigError> {
        let peer_timeout = match self.peer_timeout {
            Some(d) if d.get().is_zero() || d.get() >= poll_interval => {
                return Err(ConfigError::invalid(
                    var("peer_timeout"),
                    "must be more than zero and shorter than READINESS_POLL_INTERVAL",
                ));
            }
            Some(d) => d.get(),
            None => poll_interval * 3 / 4,
        };
        if self.peer_sslmode == SslMode::VerifyFull {
            return Err(ConfigError::invalid(
                var("peer_sslmode"),
                SslMode::refuse_verify_full("READINESS_PEER_SSLROOTCERT"),
            ));
        }
        Ok(match self.peer_host.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(host) => {
                let Some(user) = self
                    .replication_user
                    .clone()
                    .filter(|u| !u.trim().is_empty())
                else {
                    return Err(ConfigError::invalid(
                        var("replication_user"),
                        "is required when READINESS_PEER_HOST is set (the peer check logs in as the replication user)",
                    ));
                };
                let Some(password) = self.replication_password.clone() else {
                    return Err(ConfigError::invalid(
                        var("replication_password"),
                        "is required when READINESS_PEER_HOST is set",
                    ));
                };
                // The CA file is read once, here: a missing or unusable file is a configuration
                // error, not a failed peer check.
                let tls = ProbeTls::new(self.peer_sslmode, self.peer_sslrootcert.as_deref())
                    .map_err(|reason| {
                        ConfigError::invalid(var("peer_sslrootcert"), reason.to_string())
                    })?;
                Some(PeerSettings {
                    host: host.to_string(),
                    port: self.peer_port,
                    sslmode: self.peer_sslmode,
                    tls,
                    database: self.peer_database.clone(),
                    user,
                    password,
                    timeout: peer_timeout,
                    local_host: self.local_pg_host.clone(),
                    local_port: self.local_pg_port,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's table is the one list of variables; it must match the config struct.
    #[test]
    fn readme_documents_every_variable() {
        let mut code = pgdr_core::config::variables::<Config>(PREFIX);
        code.sort();
        let doc = pgdr_core::config::documented_variables(include_str!("../README.md"), PREFIX);
        assert_eq!(doc, code, "README.md's variable table and Config differ");
    }

    fn parse(list: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let vars = list
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()));
        pgdr_core::config::from_vars::<Config, _>(PREFIX, vars)?.validate()
    }

    #[test]
    fn defaults() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.patroni.url, "http://127.0.0.1:8008");
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.poll_interval, Duration::from_secs(2));
        assert_eq!(s.rules.stale_after, Duration::from_secs(12));
        assert_eq!(s.rules.max_lag_bytes, 16 * 1024 * 1024);
        assert_eq!(
            s.rules.ready_roles,
            vec![Role::Primary, Role::StandbyLeader, Role::Replica]
        );
        assert!(s.peer.is_none());
        assert!(s.pgdata.is_none());
    }

    #[test]
    fn peer_check_settings() {
        let s = parse(&[
            ("PEER_HOST", "demo-golddr.ns.svc"),
            ("PEER_PORT", "15432"),
            ("PEER_SSLMODE", "require"),
            ("REPLICATION_USER", "replicator"),
            ("REPLICATION_PASSWORD", "r3pl"),
            ("PGDATA", "/home/postgres/pgdata/pgroot/data"),
        ])
        .unwrap();
        let p = s.peer.unwrap();
        assert_eq!((p.host.as_str(), p.port), ("demo-golddr.ns.svc", 15432));
        assert_eq!(p.sslmode, SslMode::Require);
        assert_eq!(p.database, "postgres");
        assert_eq!((p.local_host.as_str(), p.local_port), ("127.0.0.1", 5432));
        // Shorter than the poll interval, so a check never overlaps the next poll.
        assert_eq!(p.timeout, Duration::from_millis(1500));
        assert!(!format!("{p:?}").contains("r3pl"));
        assert_eq!(p.password.expose(), "r3pl");
        assert_eq!(
            s.pgdata.unwrap(),
            PathBuf::from("/home/postgres/pgdata/pgroot/data")
        );
        let err = parse(&[("PEER_HOST", "x"), ("REPLICATION_USER", "replicator")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("READINESS_REPLICATION_PASSWORD"), "{err}");
    }

    /// verify-ca like the failover probe: the CA file is required and read at start (the same
    /// verifier, pgdr_core::tls), `require` verifies too when one is given.
    #[test]
    fn peer_check_verify_ca() {
        let peer = [
            ("PEER_HOST", "demo-golddr.ns.svc"),
            ("REPLICATION_USER", "replicator"),
            ("REPLICATION_PASSWORD", "r3pl"),
        ];
        fn with<'a>(
            peer: &[(&'a str, &'a str)],
            extra: &[(&'a str, &'a str)],
        ) -> Result<Settings, ConfigError> {
            let mut v = peer.to_vec();
            v.extend_from_slice(extra);
            parse(&v)
        }
        let err = with(&peer, &[("PEER_SSLMODE", "verify-ca")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("READINESS_PEER_SSLROOTCERT"), "{err}");
        let err = with(
            &peer,
            &[
                ("PEER_SSLMODE", "verify-ca"),
                ("PEER_SSLROOTCERT", "/nonexistent/ca.crt"),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/ca.crt"), "{err}");
        let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/../failover/testdata/ca.crt");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.crt");
        std::fs::copy(ca, &path).unwrap();
        let path = path.display().to_string();
        for mode in ["verify-ca", "require"] {
            let s = with(
                &peer,
                &[("PEER_SSLMODE", mode), ("PEER_SSLROOTCERT", &path)],
            )
            .unwrap();
            let tls = s.peer.unwrap().tls.unwrap();
            assert_eq!(
                tls.verification(),
                pgdr_core::tls::Verification::Ca,
                "{mode}"
            );
        }
        let s = with(&peer, &[("PEER_SSLMODE", "disable")]).unwrap();
        assert!(s.peer.unwrap().tls.is_none());
    }

    #[test]
    fn options_and_redaction() {
        let raw: Config = pgdr_core::config::from_vars(
            PREFIX,
            [
                ("READINESS_PATRONI_USERNAME", "patroni"),
                ("READINESS_PATRONI_PASSWORD", "s3cret"),
                ("READINESS_READY_ROLES", "primary,standby_leader"),
                ("READINESS_MAX_LAG_BYTES", "1024"),
                ("READINESS_SITE", "golddr"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap();
        assert!(!format!("{raw:?}").contains("s3cret"));
        let s = raw.validate().unwrap();
        assert_eq!(
            s.rules.ready_roles,
            vec![Role::Primary, Role::StandbyLeader]
        );
        assert_eq!(s.rules.max_lag_bytes, 1024);
        assert_eq!(s.patroni.password.as_ref().unwrap().expose(), "s3cret");
        assert!(!format!("{:?}", s.patroni).contains("s3cret"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            ("LISTEN", "8080", "READINESS_LISTEN"),
            ("PATRONI_URL", "127.0.0.1:8008", "READINESS_PATRONI_URL"),
            ("MAX_LAG_BYTES", "16MB", "READINESS_MAX_LAG_BYTES"),
            ("READY_ROLES", "primary,leader", "READINESS_READY_ROLES"),
            ("POLL_INTERVAL", "10ms", "READINESS_POLL_INTERVAL"),
            ("PATRONI_PASSWORD", "x", "READINESS_PATRONI_USERNAME"),
            ("STALE_AFTER", "1s", "READINESS_STALE_AFTER"),
            ("PEER_HOST", "gold-golddr", "READINESS_REPLICATION_USER"),
            ("PEER_SSLMODE", "verify-full", "READINESS_PEER_SSLMODE"),
            ("PEER_SSLMODE", "verify-all", "READINESS_PEER_SSLMODE"),
            ("PEER_TIMEOUT", "2s", "READINESS_PEER_TIMEOUT"),
            ("PEER_PORT", "x", "READINESS_PEER_PORT"),
            ("PGDATA", "pgroot/data", "READINESS_PGDATA"),
        ];
        for (k, v, want) in cases {
            let err = parse(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(want), "{k}={v}: {err}");
            assert!(!err.contains("x\""), "{err}");
        }
    }
}
