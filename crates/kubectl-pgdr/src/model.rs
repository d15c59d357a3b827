//! What one site looks like through the Kubernetes API, as plain data: Patroni's DCS objects,
//! the member Pods' status annotations, the failover agent's state and the tunnel Service.
//!
//! Pure: `from_*` functions turn API objects into this model; nothing here does I/O, so the
//! status and switchover decisions over it are table-tested.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::progress::Progress;

/// Annotation on the state ConfigMap that holds the failover agent (chart: FAILOVER_HOLD_ANNOTATION).
pub const HOLD_ANNOTATION: &str = "patroni-dr/hold";
pub use pgdr_contract::keys::{FENCE, STANDBY_CLUSTER};
pub use pgdr_contract::lsn::format as fmt_lsn;
use pgdr_contract::{dynamic_config, keys, role};

/// One Patroni member, from its Pod's `status` annotation (reference §3.1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Member {
    pub name: String,
    pub role: Option<String>,
    pub state: Option<String>,
    pub timeline: Option<u64>,
    /// Write position on a primary; max(receive, replay) on a standby.
    pub xlog_location: Option<u64>,
    pub replay_lsn: Option<u64>,
    pub receive_lsn: Option<u64>,
    /// `streaming` or `in archive recovery` on a standby.
    pub replication_state: Option<String>,
    pub pending_restart: bool,
    /// The annotation is absent or unreadable (Patroni not started yet).
    pub status_problem: Option<String>,
}

impl Member {
    pub fn is_running(&self) -> bool {
        role::is_running(self.state.as_deref().unwrap_or(""))
    }
    /// A running read-write primary (`pgdr_contract::role`).
    pub fn is_writable(&self) -> bool {
        role::is_writable_primary(
            self.role.as_deref().unwrap_or(""),
            self.state.as_deref().unwrap_or(""),
        )
    }
    pub fn is_standby_leader(&self) -> bool {
        role::is_standby_leader(
            self.role.as_deref().unwrap_or(""),
            self.state.as_deref().unwrap_or(""),
        )
    }
    pub fn is_streaming(&self) -> bool {
        self.replication_state.as_deref() == Some("streaming")
    }
    /// The position a standby has applied (what it would keep if promoted now).
    pub fn replayed(&self) -> Option<u64> {
        self.replay_lsn.or(self.xlog_location)
    }
}

/// `<scope>-config`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DcsConfig {
    pub resource_version: String,
    /// The dynamic config, or why the annotation cannot be used.
    pub config: Result<Map<String, Value>, String>,
    /// PostgreSQL system identifier.
    pub initialize: Option<String>,
}

impl DcsConfig {
    /// Patroni's rule: `standby_cluster` with a truthy host, port or restore_command.
    pub fn is_standby(&self) -> bool {
        self.config
            .as_ref()
            .is_ok_and(dynamic_config::is_standby_cluster)
    }
    pub fn standby_cluster(&self) -> Option<&Map<String, Value>> {
        match &self.config {
            Ok(map) => map.get(STANDBY_CLUSTER).and_then(Value::as_object),
            Err(_) => None,
        }
    }
    pub fn paused(&self) -> bool {
        matches!(&self.config, Ok(m) if m.get("pause").and_then(Value::as_bool) == Some(true))
    }
    /// `pgdr_fence` read through the contract (`None`: absent, or the config is unreadable); an
    /// unreadable document still means "fenced".
    pub fn fence_seen(&self) -> Option<pgdr_contract::fence::Seen> {
        self.config
            .as_ref()
            .ok()
            .and_then(pgdr_contract::fence::seen)
    }

    /// `pgdr_fence`, when the site fenced itself (present and not null).
    pub fn fence(&self) -> Option<&Value> {
        match &self.config {
            Ok(map) => map.get(FENCE).filter(|v| !v.is_null()),
            Err(_) => None,
        }
    }
}

/// `<scope>-leader`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Leader {
    pub member: Option<String>,
    pub optime: Option<u64>,
    pub renew_time: Option<String>,
}

/// The failover agent of a site: its state ConfigMap and CronJob.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Agent {
    /// The state ConfigMap exists (the chart renders it where the agent runs).
    pub installed: bool,
    pub hold: bool,
    pub resource_version: Option<String>,
    /// `FAILOVER_MODE` of the CronJob (`auto` or `observe`).
    pub mode: Option<String>,
    pub suspended: Option<bool>,
    pub last_decision: Option<Decision>,
    pub last_known_lag_bytes: Option<u64>,
    /// A promotion the agent claimed (verdict and when).
    pub promotion: Option<Value>,
    /// The `state` key could not be read.
    pub state_problem: Option<String>,
    /// `FAILOVER_REJOIN` of the CronJob (`auto` or `manual`).
    pub rejoin: Option<String>,
    /// The replication slot the agent uses (`FAILOVER_PEER_SLOT_NAME`: the chart's
    /// `replication.slotName`).
    pub slot_name: Option<String>,
    /// Both sites writable, as the agent last recorded it (since when).
    pub split_brain_since: Option<String>,
    pub fenced_at: Option<String>,
    pub rejoined_at: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub at: Option<String>,
    pub verdict: Option<String>,
    pub reasons: Vec<String>,
}

/// The tunnel Service on this site (towards the peer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tunnel {
    pub service: String,
    pub port: Option<u16>,
    pub cluster_ip: Option<String>,
}

/// One site as observed. `error` is set when its API could not be read at all.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SiteObs {
    pub site: String,
    pub error: Option<String>,
    pub config: Option<DcsConfig>,
    pub leader: Option<Leader>,
    pub members: Vec<Member>,
    pub agent: Agent,
    pub tunnel: Option<Tunnel>,
    /// The switchover record kept on this site, if any.
    pub switchover: Option<StoredProgress>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredProgress {
    pub resource_version: String,
    pub progress: Result<Progress, String>,
}

/// A site's role as shown to the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A running read-write primary, not configured as a standby.
    Primary,
    /// A standby cluster whose standby leader streams from the peer.
    Standby,
    /// A standby cluster whose standby leader is not streaming: read-only and not following.
    Fenced,
    /// `standby_cluster` was added but the leader still runs as a primary.
    Demoting,
    /// `standby_cluster` was removed but the leader is not a primary yet.
    Promoting,
    /// No running leader.
    Down,
    /// The API could not be read.
    Unreachable,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::Fenced => "fenced",
            Role::Demoting => "demoting",
            Role::Promoting => "promoting",
            Role::Down => "down",
            Role::Unreachable => "unreachable",
        }
    }
}

impl SiteObs {
    /// The member holding the leader lock.
    pub fn leader_member(&self) -> Option<&Member> {
        let name = self.leader.as_ref()?.member.as_deref()?;
        self.members.iter().find(|m| m.name == name)
    }
    pub fn is_standby_configured(&self) -> bool {
        self.config.as_ref().is_some_and(DcsConfig::is_standby)
    }
    /// Any member runs as a read-write primary (whatever the config says: a demoting site is
    /// still writable until PostgreSQL stops).
    pub fn writable(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.is_writable())
    }
    pub fn role(&self) -> Role {
        if self.error.is_some() {
            return Role::Unreachable;
        }
        let standby = self.is_standby_configured();
        let leader = self.leader_member();
        match (standby, leader) {
            (_, None) if self.writable().is_none() => Role::Down,
            (false, _) if self.writable().is_some() => Role::Primary,
            (true, _) if self.writable().is_some() => Role::Demoting,
            (true, Some(l)) if l.is_standby_leader() && l.is_streaming() => Role::Standby,
            (true, Some(l)) if l.is_standby_leader() => Role::Fenced,
            (false, Some(l)) if l.is_running() => Role::Promoting,
            _ => Role::Down,
        }
    }
}

fn annotations(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> BTreeMap<String, String> {
    meta.annotations.clone().unwrap_or_default()
}

fn as_u64(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub fn config_from(cm: &ConfigMap) -> DcsConfig {
    let ann = annotations(&cm.metadata);
    let config = match ann.get(keys::CONFIG_ANNOTATION) {
        None => Ok(Map::new()),
        Some(text) => dynamic_config::parse(text).map_err(|e| e.to_string()),
    };
    DcsConfig {
        resource_version: cm.metadata.resource_version.clone().unwrap_or_default(),
        config,
        initialize: ann
            .get(keys::INITIALIZE_ANNOTATION)
            .cloned()
            .filter(|s| !s.is_empty()),
    }
}

pub fn leader_from(cm: &ConfigMap) -> Leader {
    let ann = annotations(&cm.metadata);
    Leader {
        member: ann.get("leader").cloned().filter(|s| !s.is_empty()),
        optime: ann.get("optime").and_then(|s| s.parse().ok()),
        renew_time: ann.get("renewTime").cloned(),
    }
}

pub fn member_from(pod: &Pod) -> Member {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ann = annotations(&pod.metadata);
    let Some(text) = ann.get("status") else {
        return Member {
            name,
            status_problem: Some("no Patroni status annotation yet".into()),
            ..Member::default()
        };
    };
    let v: Value = match serde_json::from_str(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Member {
                name,
                status_problem: Some("the status annotation is not a JSON object".into()),
                ..Member::default()
            };
        }
    };
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Member {
        name,
        role: s("role"),
        state: s("state"),
        timeline: as_u64(v.get("timeline")),
        xlog_location: as_u64(v.get("xlog_location")),
        replay_lsn: as_u64(v.get("replay_lsn")),
        receive_lsn: as_u64(v.get("receive_lsn")),
        replication_state: s("replication_state"),
        pending_restart: v.get("pending_restart").and_then(Value::as_bool) == Some(true),
        status_problem: None,
    }
}

pub fn agent_from(state: Option<&ConfigMap>, cronjob: Option<&CronJob>) -> Agent {
    let mut agent = Agent::default();
    if let Some(cm) = state {
        agent.installed = true;
        agent.resource_version = cm.metadata.resource_version.clone();
        agent.hold = annotations(&cm.metadata)
            .get(HOLD_ANNOTATION)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let text = cm.data.as_ref().and_then(|d| d.get("state"));
        match text.map(|t| serde_json::from_str::<Value>(t)) {
            None => {}
            Some(Ok(v @ Value::Object(_))) => {
                agent.last_known_lag_bytes = as_u64(v.get("last_known_lag_bytes"));
                agent.promotion = v.get("promotion").filter(|p| !p.is_null()).cloned();
                let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
                agent.split_brain_since = text("split_brain_since");
                agent.fenced_at = text("fenced_at");
                agent.rejoined_at = text("rejoined_at");
                if let Some(d) = v.get("last_decision").filter(|d| d.is_object()) {
                    agent.last_decision = Some(Decision {
                        at: d.get("at").and_then(Value::as_str).map(str::to_string),
                        verdict: d.get("verdict").and_then(Value::as_str).map(str::to_string),
                        reasons: d
                            .get("reasons")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default(),
                    });
                }
            }
            Some(_) => agent.state_problem = Some("the 'state' key is not a JSON object".into()),
        }
    }
    if let Some(cj) = cronjob {
        let spec = cj.spec.as_ref();
        agent.suspended = spec.and_then(|s| s.suspend);
        let env = |name: &str| {
            spec.and_then(|s| s.job_template.spec.as_ref())
                .and_then(|j| j.template.spec.as_ref())
                .and_then(|p| p.containers.first())
                .and_then(|c| c.env.as_ref())
                .and_then(|env| env.iter().find(|e| e.name == name))
                .and_then(|e| e.value.clone())
        };
        agent.mode = env("FAILOVER_MODE");
        agent.rejoin = env("FAILOVER_REJOIN");
        agent.slot_name = env(pgdr_contract::slot::AGENT_SLOT_ENV);
    }
    agent
}

pub fn tunnel_from(svc: &Service) -> Tunnel {
    let spec = svc.spec.as_ref();
    Tunnel {
        service: svc.metadata.name.clone().unwrap_or_default(),
        port: spec
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .and_then(|p| u16::try_from(p.port).ok())
            .filter(|p| *p > 0),
        cluster_ip: spec
            .and_then(|s| s.cluster_ip.clone())
            .filter(|ip| !ip.is_empty() && ip != "None"),
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use serde_json::json;

    /// A member with a status like Patroni's.
    pub fn member(name: &str, role: &str, tl: u64, lsn: u64) -> Member {
        let standby = role != "primary";
        Member {
            name: name.into(),
            role: Some(role.into()),
            state: Some("running".into()),
            timeline: Some(tl),
            xlog_location: Some(lsn),
            replay_lsn: standby.then_some(lsn),
            receive_lsn: standby.then_some(lsn),
            replication_state: standby.then(|| "streaming".into()),
            ..Member::default()
        }
    }

    pub fn config(standby: bool) -> DcsConfig {
        let mut map = json!({"ttl": 30}).as_object().unwrap().clone();
        if standby {
            map.insert(STANDBY_CLUSTER.into(), json!({"host": "h", "port": 5432}));
        }
        DcsConfig {
            resource_version: "1".into(),
            config: Ok(map),
            initialize: Some("7".into()),
        }
    }

    /// A site with one member that holds the lock.
    pub fn site(name: &str, standby_config: bool, m: Member) -> SiteObs {
        SiteObs {
            site: name.into(),
            config: Some(config(standby_config)),
            leader: Some(Leader {
                member: Some(m.name.clone()),
                ..Leader::default()
            }),
            members: vec![m],
            ..SiteObs::default()
        }
    }

    #[test]
    fn roles() {
        let primary = site("a", false, member("a-0", "primary", 1, 100));
        assert_eq!(primary.role(), Role::Primary);
        let standby = site("b", true, member("b-0", "standby_leader", 1, 100));
        assert_eq!(standby.role(), Role::Standby);
        let mut fenced = standby.clone();
        fenced.members[0].replication_state = None;
        assert_eq!(fenced.role(), Role::Fenced);
        let demoting = site("a", true, member("a-0", "primary", 1, 100));
        assert_eq!(demoting.role(), Role::Demoting);
        let promoting = site("b", false, member("b-0", "standby_leader", 1, 100));
        assert_eq!(promoting.role(), Role::Promoting);
        let mut down = primary.clone();
        down.leader = None;
        down.members[0].state = Some("stopped".into());
        assert_eq!(down.role(), Role::Down);
        let unreachable = SiteObs {
            error: Some("refused".into()),
            ..primary
        };
        assert_eq!(unreachable.role(), Role::Unreachable);
    }

    #[test]
    fn parses_patroni_objects() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p-0", "annotations": {"status":
                r#"{"conn_url":"postgres://x","state":"running","role":"standby_leader","xlog_location":50331744,"replay_lsn":50331744,"receive_lsn":50331648,"replication_state":"streaming","timeline":2}"#}}
        }))
        .unwrap();
        let m = member_from(&pod);
        assert!(m.is_standby_leader() && m.is_streaming());
        assert_eq!(
            (m.timeline, m.replay_lsn, m.receive_lsn),
            (Some(2), Some(50331744), Some(50331648))
        );
        let bare: Pod = serde_json::from_value(json!({"metadata": {"name": "p-1"}})).unwrap();
        assert!(member_from(&bare).status_problem.is_some());

        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "s-config", "resourceVersion": "9",
            "annotations": {"config": r#"{"ttl":30,"standby_cluster":{"host":"a","port":5432}}"#, "initialize": "123"}}}))
        .unwrap();
        let c = config_from(&cm);
        assert!(c.is_standby());
        assert_eq!(c.resource_version, "9");
        let bad: ConfigMap =
            serde_json::from_value(json!({"metadata": {"annotations": {"config": "{nope"}}}))
                .unwrap();
        assert!(config_from(&bad).config.is_err());

        let state: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "st", "annotations": {HOLD_ANNOTATION: "True"}},
            "data": {"state": r#"{"last_known_lag_bytes":42,"last_decision":{"at":"t","verdict":"healthy","reasons":["streaming"]}}"#}}))
        .unwrap();
        let a = agent_from(Some(&state), None);
        assert!(a.installed && a.hold);
        assert_eq!(a.last_known_lag_bytes, Some(42));
        assert_eq!(
            a.last_decision.unwrap().reasons,
            vec!["streaming".to_string()]
        );
        assert_eq!(fmt_lsn(50331744), "0/3000060");
        assert_eq!(fmt_lsn((1 << 32) + 16), "1/10");
    }
}
