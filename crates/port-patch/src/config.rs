//! `PORT_PATCH_*` environment variables (documented in this crate's README.md).

use std::collections::BTreeMap;

use pgdr_core::config::{ConfigError, Dur, KeyValues, LogFormat};
use pgdr_core::contract::slot::SlotName;
use serde::Deserialize;
use serde_json::{Map, Value};

pub const PREFIX: &str = "PORT_PATCH_";

/// Which field of the tunnel Service's port entry holds the port to connect to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum PortField {
    /// `.spec.ports[i].port`: what a client of the Service's DNS name or ClusterIP connects to.
    #[default]
    #[serde(rename = "port")]
    Port,
    /// `.spec.ports[i].targetPort`: the F5 TransportServer port behind the Service.
    #[serde(rename = "targetPort", alias = "target_port", alias = "targetport")]
    TargetPort,
}

/// What to write as `standby_cluster.host`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum HostMode {
    /// `<service>.<namespace>.svc`: survives the Service being re-created with a new ClusterIP.
    #[default]
    #[serde(rename = "dns")]
    Dns,
    /// The Service's `.spec.clusterIP`.
    #[serde(
        rename = "clusterIP",
        alias = "cluster-ip",
        alias = "clusterip",
        alias = "cluster_ip"
    )]
    ClusterIp,
}

/// Raw configuration as read from the environment (logged at start; holds no secret).
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// Patroni `scope` (cluster name).
    pub scope: String,
    /// Name of the tunnel Service the platform creates, `<primary service>-<peer site>`.
    pub tunnel_service: String,
    /// Namespace of everything; defaults to the namespace of the kubeconfig / service account.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub port_field: PortField,
    /// Pick the port entry with this name instead of the first one.
    #[serde(default)]
    pub port_name: Option<String>,
    #[serde(default)]
    pub host_mode: HostMode,
    /// Write this host instead of deriving one from the Service.
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub primary_slot_name: Option<String>,
    /// Comma-separated, e.g. `basebackup`.
    #[serde(default)]
    pub create_replica_methods: Option<Vec<String>>,
    /// Patroni `kubernetes.labels`, used when the ConfigMap has to be created.
    #[serde(default)]
    pub labels: KeyValues,
    /// Patroni `kubernetes.scope_label`.
    #[serde(default = "default_scope_label")]
    pub scope_label: String,
    /// Defaults to `<scope>-config`.
    #[serde(default)]
    pub config_map: Option<String>,
    /// Defaults to `<scope>-leader`.
    #[serde(default)]
    pub leader_config_map: Option<String>,
    /// JSON object: the dynamic config to start from when none exists yet (Patroni's
    /// `bootstrap.dcs`), since Patroni ignores `bootstrap.dcs` once the DCS holds a config.
    #[serde(default)]
    pub base_config: Option<String>,
    /// Overall time budget, waiting for the Service included.
    #[serde(default = "default_deadline")]
    pub deadline: Dur,
    /// Bound on each Kubernetes API request.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Dur,
    /// Write `standby_cluster` even to a cluster that looks promoted.
    #[serde(default)]
    pub force: bool,
    /// The failover's durable promotion record; its presence makes the Job refuse to add
    /// `standby_cluster` (unless `demote_promoted_site`).
    pub promotion_record_configmap: String,
    /// Explicit permission to make a site with a promotion record a standby again (failback).
    #[serde(default)]
    pub demote_promoted_site: bool,
    #[serde(default)]
    pub log_format: LogFormat,
}

fn default_scope_label() -> String {
    "cluster-name".into()
}
fn default_deadline() -> Dur {
    Dur::secs(300)
}
fn default_request_timeout() -> Dur {
    Dur::secs(10)
}

/// Validated settings the library works with.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub scope: String,
    pub tunnel_service: String,
    pub namespace: Option<String>,
    pub port_field: PortField,
    pub port_name: Option<String>,
    pub host_mode: HostMode,
    pub host: Option<String>,
    pub primary_slot_name: Option<SlotName>,
    pub create_replica_methods: Option<Vec<String>>,
    /// Labels for a created ConfigMap: `labels` plus `scope_label=scope`.
    pub labels: BTreeMap<String, String>,
    pub config_map: String,
    pub leader_config_map: String,
    pub base_config: Map<String, Value>,
    pub deadline: std::time::Duration,
    pub request_timeout: std::time::Duration,
    pub force: bool,
    pub promotion_record_configmap: String,
    pub demote_promoted_site: bool,
}

fn var(field: &str) -> String {
    pgdr_core::config::var(PREFIX, field)
}

/// Kubernetes object names and label values: DNS-1123-ish, which is also what Patroni needs.
fn check_name(field: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !value.starts_with(['-', '.'])
        && !value.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            var(field),
            format!(
                "'{value}' is not a valid Kubernetes name (lowercase letters, digits, '-', '.')"
            ),
        ))
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        pgdr_core::config::from_env(PREFIX)
    }

    pub fn validate(self) -> Result<Settings, ConfigError> {
        check_name("scope", &self.scope)?;
        check_name("tunnel_service", &self.tunnel_service)?;
        if let Some(ns) = &self.namespace {
            check_name("namespace", ns)?;
        }
        let config_map = self
            .config_map
            .unwrap_or_else(|| format!("{}-config", self.scope));
        check_name("config_map", &config_map)?;
        let leader_config_map = self
            .leader_config_map
            .unwrap_or_else(|| format!("{}-leader", self.scope));
        check_name("leader_config_map", &leader_config_map)?;
        check_name(
            "promotion_record_configmap",
            &self.promotion_record_configmap,
        )?;
        let port_name = self.port_name.filter(|n| !n.is_empty());
        let host = match self.host {
            Some(h) if h.trim().is_empty() => None,
            Some(h) if h.contains(char::is_whitespace) => {
                return Err(ConfigError::invalid(
                    var("host"),
                    format!("'{h}' contains whitespace"),
                ));
            }
            other => other,
        };
        let primary_slot_name = self
            .primary_slot_name
            .filter(|s| !s.is_empty())
            .map(|s| SlotName::parse(&s))
            .transpose()
            .map_err(|e| ConfigError::invalid(var("primary_slot_name"), e.to_string()))?;
        let create_replica_methods = match self.create_replica_methods {
            Some(list) => {
                let list: Vec<String> = list
                    .into_iter()
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect();
                (!list.is_empty()).then_some(list)
            }
            None => None,
        };
        if self.scope_label.is_empty() {
            return Err(ConfigError::invalid(
                var("scope_label"),
                "must not be empty",
            ));
        }
        let mut labels = self.labels.0;
        labels.insert(self.scope_label, self.scope.clone());
        let base_config = match self.base_config.as_deref().map(str::trim) {
            None | Some("") => Map::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    return Err(ConfigError::invalid(
                        var("base_config"),
                        "must be a JSON object",
                    ));
                }
                Err(e) => {
                    return Err(ConfigError::invalid(
                        var("base_config"),
                        format!("not valid JSON: {e}"),
                    ));
                }
            },
        };
        if self.deadline.get().is_zero() {
            return Err(ConfigError::invalid(
                var("deadline"),
                "must be more than zero",
            ));
        }
        if self.request_timeout.get().is_zero() {
            return Err(ConfigError::invalid(
                var("request_timeout"),
                "must be more than zero",
            ));
        }
        Ok(Settings {
            scope: self.scope,
            tunnel_service: self.tunnel_service,
            namespace: self.namespace,
            port_field: self.port_field,
            port_name,
            host_mode: self.host_mode,
            host,
            primary_slot_name,
            create_replica_methods,
            labels,
            config_map,
            leader_config_map,
            base_config,
            deadline: self.deadline.get(),
            request_timeout: self.request_timeout.get(),
            promotion_record_configmap: self.promotion_record_configmap,
            demote_promoted_site: self.demote_promoted_site,
            force: self.force,
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

    /// `list` without the prefix; the promotion record (required, same in every case) is added.
    fn parse(list: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let record = ("PROMOTION_RECORD_CONFIGMAP", "demo-promotion-record");
        let vars = list
            .iter()
            .chain(std::iter::once(&record))
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()));
        pgdr_core::config::from_vars::<Config, _>(PREFIX, vars)?.validate()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let s = parse(&[("SCOPE", "demo"), ("TUNNEL_SERVICE", "demo-primary-gold")]).unwrap();
        assert_eq!(s.config_map, "demo-config");
        assert_eq!(s.leader_config_map, "demo-leader");
        assert_eq!(s.port_field, PortField::Port);
        assert_eq!(s.host_mode, HostMode::Dns);
        assert_eq!(
            s.labels.get("cluster-name").map(String::as_str),
            Some("demo")
        );
        assert_eq!(s.deadline, std::time::Duration::from_secs(300));
        assert!(s.base_config.is_empty());
        assert!(!s.force);
    }

    #[test]
    fn all_options() {
        let s = parse(&[
            ("SCOPE", "demo"),
            ("TUNNEL_SERVICE", "svc-gold"),
            ("NAMESPACE", "abc123-prod"),
            ("PORT_FIELD", "targetPort"),
            ("PORT_NAME", "postgresql"),
            ("HOST_MODE", "clusterIP"),
            ("PRIMARY_SLOT_NAME", "golddr"),
            ("CREATE_REPLICA_METHODS", "basebackup, wal_g"),
            ("LABELS", "application=patroni,release=patroni"),
            ("SCOPE_LABEL", "cluster"),
            (
                "BASE_CONFIG",
                r#"{"ttl":30,"postgresql":{"use_pg_rewind":true}}"#,
            ),
            ("DEADLINE", "2m"),
            ("REQUEST_TIMEOUT", "3s"),
            ("FORCE", "true"),
            ("LOG_FORMAT", "plain"),
        ])
        .unwrap();
        assert_eq!(s.port_field, PortField::TargetPort);
        assert_eq!(s.host_mode, HostMode::ClusterIp);
        assert_eq!(s.port_name.as_deref(), Some("postgresql"));
        assert_eq!(
            s.create_replica_methods,
            Some(vec!["basebackup".to_string(), "wal_g".to_string()])
        );
        assert_eq!(s.labels.len(), 3);
        assert_eq!(s.labels.get("cluster").map(String::as_str), Some("demo"));
        assert_eq!(s.base_config.get("ttl"), Some(&Value::from(30)));
        assert!(s.force);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let base = [("SCOPE", "demo"), ("TUNNEL_SERVICE", "svc")];
        let cases: &[(&str, &str, &str)] = &[
            ("PORT_FIELD", "nodePort", "PORT_PATCH_PORT_FIELD"),
            ("HOST_MODE", "ip", "PORT_PATCH_HOST_MODE"),
            ("BASE_CONFIG", "[1]", "PORT_PATCH_BASE_CONFIG"),
            ("BASE_CONFIG", "{oops", "PORT_PATCH_BASE_CONFIG"),
            ("DEADLINE", "0", "PORT_PATCH_DEADLINE"),
            ("FORCE", "yes please", "PORT_PATCH_FORCE"),
            (
                "PRIMARY_SLOT_NAME",
                "Gold-DR",
                "PORT_PATCH_PRIMARY_SLOT_NAME",
            ),
            ("SCOPE", "Demo_1", "PORT_PATCH_SCOPE"),
            ("HOST", "a b", "PORT_PATCH_HOST"),
        ];
        for (k, v, want) in cases {
            let mut vars: Vec<(&str, &str)> =
                base.iter().copied().filter(|(b, _)| b != k).collect();
            vars.push((k, v));
            let err = parse(&vars).unwrap_err().to_string();
            assert!(err.contains(want), "{k}={v}: {err}");
        }
        let err = parse(&[("SCOPE", "demo")]).unwrap_err().to_string();
        assert!(err.contains("PORT_PATCH_TUNNEL_SERVICE"), "{err}");
    }
}
