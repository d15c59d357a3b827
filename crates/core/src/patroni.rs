//! Typed client for Patroni's REST API (`/patroni`, `/cluster`, `/config`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::config::Secret;

/// Everything needed to reach one Patroni member's REST API.
#[derive(Clone, Debug)]
pub struct PatroniClientConfig {
    /// Base URL, e.g. `http://127.0.0.1:8008`.
    pub url: String,
    /// Bound on each request (connect + response).
    pub timeout: Duration,
    /// Basic auth (Patroni `restapi.authentication`), sent with every request when set (the
    /// product only reads; a REST API that demands it for reads gets it).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// PEM CA bundle to verify an HTTPS Patroni API.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum PatroniError {
    #[error("Patroni URL '{url}' is invalid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot read the Patroni CA file {path}: {source}; point the CA file setting at a readable PEM bundle"
    )]
    CaFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client for Patroni: {0}")]
    Client(#[source] reqwest::Error),
    #[error("Patroni at {url} did not answer: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Patroni at {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("Patroni at {url} sent a response we cannot read: {source}")]
    Decode {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Patroni at {url} sent JSON we cannot use: {reason}")]
    Unexpected { url: String, reason: String },
}

impl PatroniError {
    /// A short reason for status pages and metrics labels (no URLs, no bodies).
    pub fn short(&self) -> String {
        match self {
            PatroniError::Unreachable { source, .. } if source.is_timeout() => "timeout".into(),
            PatroniError::Unreachable { source, .. } if source.is_connect() => {
                "connection refused or unreachable".into()
            }
            PatroniError::Unreachable { source, .. } => {
                format!("request failed: {}", root_cause(source))
            }
            PatroniError::Status { status, .. } => format!("HTTP {status}"),
            PatroniError::Decode { .. } => "unreadable response".into(),
            other => other.to_string(),
        }
    }
}

/// The innermost error message (reqwest's own Display only says which request failed).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// `GET /patroni`: this member's view of itself (`api.py` `get_postgresql_status`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct MemberStatus {
    /// `running`, `stopped`, `starting`, `creating replica`, `unknown`, …
    #[serde(default)]
    pub state: String,
    /// `primary` (or `master` before Patroni 3), `replica`, `standby_leader`, `demoted`, `uninitialized`, …
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub server_version: Option<u64>,
    #[serde(default)]
    pub timeline: Option<u64>,
    #[serde(default)]
    pub xlog: Option<Xlog>,
    /// `streaming`, `in archive recovery`, … (replicas only)
    #[serde(default)]
    pub replication_state: Option<String>,
    #[serde(default)]
    pub pause: bool,
    #[serde(default)]
    pub cluster_unlocked: bool,
    #[serde(default)]
    pub dcs_last_seen: Option<u64>,
    #[serde(default)]
    pub patroni: Option<PatroniInfo>,
}

impl MemberStatus {
    /// A running primary by Patroni's account ([`pgdr_contract::role::is_writable_primary`]).
    pub fn is_writable_primary(&self) -> bool {
        pgdr_contract::role::is_writable_primary(&self.role, &self.state)
    }
    pub fn is_running(&self) -> bool {
        pgdr_contract::role::is_running(&self.state)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Xlog {
    /// Primary: current flush LSN (bytes).
    #[serde(default)]
    pub location: Option<u64>,
    /// Replica: received and replayed LSNs (bytes).
    #[serde(default)]
    pub received_location: Option<u64>,
    #[serde(default)]
    pub replayed_location: Option<u64>,
    #[serde(default)]
    pub paused: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PatroniInfo {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `GET /cluster` (`utils.py` `cluster_as_json`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ClusterStatus {
    #[serde(default)]
    pub members: Vec<ClusterMember>,
    #[serde(default)]
    pub pause: bool,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct ClusterMember {
    pub name: String,
    /// `leader`, `standby_leader`, `sync_standby`, `quorum_standby`, `replica`.
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Bytes behind the cluster's last known LSN; Patroni sends `"unknown"` when it cannot tell.
    #[serde(default, deserialize_with = "lag_or_unknown")]
    pub lag: Option<u64>,
}

fn lag_or_unknown<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64(),
        _ => None,
    })
}

/// A Patroni REST client with timeouts, optional basic auth and optional private CA.
#[derive(Clone, Debug)]
pub struct PatroniClient {
    base: String,
    http: reqwest::Client,
    username: Option<String>,
    password: Option<Secret>,
}

impl PatroniClient {
    pub fn new(cfg: &PatroniClientConfig) -> Result<Self, PatroniError> {
        crate::tls::install_crypto_provider();
        let base = cfg.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base).map_err(|e| PatroniError::BadUrl {
            url: cfg.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(PatroniError::BadUrl {
                url: cfg.url.clone(),
                reason: "scheme must be http or https".into(),
            });
        }
        let mut builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // Patroni runs next to us; a proxy from the environment would only get in the way.
            .no_proxy()
            .pool_max_idle_per_host(2);
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|source| PatroniError::CaFile {
                path: path.clone(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(PatroniError::Client)?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(PatroniClient {
            base,
            http: builder.build().map_err(PatroniError::Client)?,
            username: cfg.username.clone(),
            password: cfg.password.clone(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `GET /patroni`.
    pub async fn member_status(&self) -> Result<MemberStatus, PatroniError> {
        self.get("/patroni").await
    }

    /// `GET /cluster`.
    pub async fn cluster(&self) -> Result<ClusterStatus, PatroniError> {
        self.get("/cluster").await
    }

    /// `GET /config`: the dynamic configuration (502 when the DCS holds none yet).
    pub async fn dynamic_config(&self) -> Result<Map<String, Value>, PatroniError> {
        self.get("/config").await
    }

    /// `GET /history`: the cluster's timeline history (which timeline ended where), read by the
    /// failover agent to publish a promotion's real switchpoint in its marker. An unreadable
    /// history is an error.
    pub async fn history(&self) -> Result<Vec<pgdr_contract::lineage::HistoryEntry>, PatroniError> {
        let url = format!("{}/history", self.base);
        let raw: Value = self.get("/history").await?;
        pgdr_contract::lineage::parse_patroni_history(&raw.to_string()).map_err(|e| {
            PatroniError::Unexpected {
                url,
                reason: e.to_string(),
            }
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, PatroniError> {
        let url = format!("{}{path}", self.base);
        let req = self.auth(self.http.get(&url));
        Self::read(url, req).await
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.username {
            Some(user) => req.basic_auth(user, self.password.as_ref().map(Secret::expose)),
            None => req,
        }
    }

    async fn read<T: DeserializeOwned>(
        url: String,
        req: reqwest::RequestBuilder,
    ) -> Result<T, PatroniError> {
        let resp = match req.send().await {
            Ok(r) => r,
            Err(source) => return Err(PatroniError::Unreachable { url, source }),
        };
        let status = resp.status();
        if !status.is_success() {
            let mut body = resp.text().await.unwrap_or_default();
            body.truncate(200);
            return Err(PatroniError::Status {
                url,
                status: status.as_u16(),
                body,
            });
        }
        resp.json()
            .await
            .map_err(|source| PatroniError::Decode { url, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_real_shapes() {
        // Shapes as Patroni 4.1.5 sends them (api.py get_postgresql_status, utils.py cluster_as_json).
        let replica: MemberStatus = serde_json::from_str(
            r#"{"state":"running","postmaster_start_time":"2026-01-01 00:00:00+00:00","role":"replica",
                "server_version":150018,"xlog":{"received_location":50331744,"replayed_location":50331744,
                "replayed_timestamp":null,"paused":false},"timeline":1,"replication_state":"streaming",
                "dcs_last_seen":1767225600,"database_system_identifier":"7711510653626458384",
                "patroni":{"version":"4.1.5","scope":"demo","name":"pg1"}}"#,
        )
        .unwrap();
        assert_eq!(replica.role, "replica");
        assert_eq!(replica.xlog.unwrap().replayed_location, Some(50331744));
        assert_eq!(replica.patroni.unwrap().name.as_deref(), Some("pg1"));

        let stopped: MemberStatus = serde_json::from_str(
            r#"{"state":"stopped","role":"uninitialized","cluster_unlocked":true}"#,
        )
        .unwrap();
        assert!(stopped.cluster_unlocked);
        assert_eq!(stopped.timeline, None);

        let cluster: ClusterStatus = serde_json::from_str(
            r#"{"members":[{"name":"pg0","role":"leader","state":"running","timeline":1},
                {"name":"pg1","role":"replica","state":"streaming","lag":16,"lsn":"0/3000060"},
                {"name":"pg2","role":"replica","state":"stopped","lag":"unknown","lsn":"unknown"}],"scope":"demo"}"#,
        )
        .unwrap();
        let lags: Vec<_> = cluster.members.iter().map(|m| m.lag).collect();
        assert_eq!(lags, vec![None, Some(16), None]);
    }

    #[test]
    fn rejects_bad_urls() {
        for url in ["not a url", "ftp://x:8008"] {
            let cfg = PatroniClientConfig {
                url: url.into(),
                timeout: Duration::from_secs(1),
                username: None,
                password: None,
                ca_file: None,
            };
            assert!(
                matches!(PatroniClient::new(&cfg), Err(PatroniError::BadUrl { .. })),
                "{url}"
            );
        }
    }
}
