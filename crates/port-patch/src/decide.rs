//! Pure decisions: where the tunnel leads (from the Service) and what to do with Patroni's
//! dynamic config (from the ConfigMaps). No I/O here, so every rule is a table test.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pgdr_core::contract::slot::{PRIMARY_SLOT_NAME, SlotName};
use pgdr_core::dynamic_config::{self, MalformedConfig, STANDBY_CLUSTER};
pub use pgdr_core::promotion_record::PromotionRecord;
use serde_json::{Map, Value};

use crate::config::{HostMode, PortField};

/// What `standby_cluster` should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub primary_slot_name: Option<SlotName>,
    pub create_replica_methods: Option<Vec<String>>,
}

/// How to read the tunnel Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRules {
    pub port_field: PortField,
    pub port_name: Option<String>,
    pub host_mode: HostMode,
    pub host_override: Option<String>,
}

/// Why the Service cannot give a target yet (worth waiting) or at all (a configuration error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceProblem {
    NotReady(String),
    Unusable(String),
}

/// Host and port to connect to, read from the tunnel Service.
pub fn endpoint_from_service(
    svc: &Service,
    namespace: &str,
    rules: &ServiceRules,
) -> Result<(String, u16), ServiceProblem> {
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let spec = svc
        .spec
        .as_ref()
        .ok_or_else(|| ServiceProblem::NotReady("it has no spec yet".into()))?;
    let ports = spec.ports.as_deref().unwrap_or_default();
    let entry = match &rules.port_name {
        None => ports
            .first()
            .ok_or_else(|| ServiceProblem::NotReady("it has no ports yet".into()))?,
        Some(wanted) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(wanted))
            .ok_or_else(|| {
                let names: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
                ServiceProblem::NotReady(format!(
                    "it has no port named '{wanted}' (names: {names:?})"
                ))
            })?,
    };
    let port = match rules.port_field {
        PortField::Port => entry.port,
        PortField::TargetPort => match &entry.target_port {
            Some(IntOrString::Int(p)) => *p,
            Some(IntOrString::String(s)) => {
                return Err(ServiceProblem::Unusable(format!(
                    "its targetPort is the named port '{s}', not a number; use PORT_PATCH_PORT_FIELD=port"
                )));
            }
            // The API server defaults targetPort to port.
            None => entry.port,
        },
    };
    let port = u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
        ServiceProblem::NotReady(format!("its port {port} is not a usable TCP port"))
    })?;
    let host = match (&rules.host_override, rules.host_mode) {
        (Some(h), _) => h.clone(),
        (None, HostMode::Dns) => format!("{name}.{namespace}.svc"),
        (None, HostMode::ClusterIp) => match spec.cluster_ip.as_deref() {
            Some(ip) if !ip.is_empty() && ip != "None" => ip.to_string(),
            _ => return Err(ServiceProblem::NotReady("it has no clusterIP yet".into())),
        },
    };
    Ok((host, port))
}

/// The `<scope>-config` ConfigMap as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigState {
    pub resource_version: String,
    pub initialize: Option<String>,
    pub config: Option<String>,
}

/// The leader lock holder and the role its Pod reports (status annotation), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderState {
    pub member: String,
    pub role: Option<String>,
}

impl LeaderState {
    /// A writable primary, or one being promoted. `master` is Patroni < 3's name for primary.
    pub fn is_primary(&self) -> bool {
        matches!(
            self.role.as_deref(),
            Some("primary" | "master" | "promoted")
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub config_map: Option<ConfigState>,
    pub leader: Option<LeaderState>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// No ConfigMap: create it with this config.
    Create { config: Map<String, Value> },
    /// Compare-and-set the config annotation at `resource_version`.
    Update {
        resource_version: String,
        config: Map<String, Value>,
        before: Option<Value>,
    },
    /// Already as wanted.
    Unchanged { standby_cluster: Value },
    /// The cluster was promoted: adding `standby_cluster` would demote it.
    LeavePromoted { leader: String, role: String },
}

/// Why nothing may be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed(MalformedConfig),
    /// Initialized as a non-standby cluster, yet no running primary confirms a promotion: it may
    /// be a promoted site whose primary is down. Writing would demote it once it comes back.
    NotStandbyUnconfirmed {
        leader: Option<LeaderState>,
    },
    /// The failover CronJob promoted this site (durable record); adding `standby_cluster` would
    /// make it follow the peer again, which needs explicit permission.
    PromotedSite {
        record: Box<PromotionRecord>,
    },
}

impl Plan {
    /// The write would turn a site that is not a standby cluster into one: a new config, or
    /// `standby_cluster` added where Patroni's rule says there was none.
    pub fn adds_standby_cluster(&self) -> bool {
        match self {
            Plan::Create { .. } => true,
            Plan::Update { before, .. } => {
                let mut was = Map::new();
                if let Some(sc) = before {
                    was.insert(STANDBY_CLUSTER.to_string(), sc.clone());
                }
                !dynamic_config::is_standby_cluster(&was)
            }
            Plan::Unchanged { .. } | Plan::LeavePromoted { .. } => false,
        }
    }
}

/// Second look, taken only when `plan` would add `standby_cluster`: a site with a confirmed
/// promotion record stays a primary site unless demotion is explicitly allowed
/// (`PORT_PATCH_DEMOTE_PROMOTED_SITE`). `PORT_PATCH_FORCE` does not override it.
pub fn check_promotion_record(
    plan: Plan,
    record: Option<&PromotionRecord>,
    demote_allowed: bool,
) -> Result<Plan, Refusal> {
    match record {
        Some(record) if plan.adds_standby_cluster() && !demote_allowed => {
            Err(Refusal::PromotedSite {
                record: Box::new(record.clone()),
            })
        }
        _ => Ok(plan),
    }
}

/// Decides what to write. `base` seeds a config that does not exist yet.
pub fn decide(
    obs: &Observed,
    target: &Target,
    base: &Map<String, Value>,
    force: bool,
) -> Result<Plan, Refusal> {
    let primary_leader = obs.leader.as_ref().filter(|l| l.is_primary());
    let promoted = |leader: &LeaderState| Plan::LeavePromoted {
        leader: leader.member.clone(),
        role: leader.role.clone().unwrap_or_default(),
    };
    let Some(cm) = &obs.config_map else {
        if let (Some(leader), false) = (primary_leader, force) {
            return Ok(promoted(leader));
        }
        return Ok(Plan::Create {
            config: with_target(base.clone(), target),
        });
    };
    let current = match &cm.config {
        // Patroni writes the config at the end of bootstrap; before that there is nothing to keep.
        None => None,
        Some(text) => Some(dynamic_config::parse(text).map_err(Refusal::Malformed)?),
    };
    if !force {
        let standby = current
            .as_ref()
            .is_some_and(dynamic_config::is_standby_cluster);
        if !standby {
            if let Some(leader) = primary_leader {
                return Ok(promoted(leader));
            }
            // A config without standby_cluster on an initialized cluster is a promotion (or a
            // mistake) that only a person should undo.
            if current.is_some() && cm.initialize.is_some() {
                return Err(Refusal::NotStandbyUnconfirmed {
                    leader: obs.leader.clone(),
                });
            }
        }
    }
    let before = current
        .as_ref()
        .and_then(|c| c.get(STANDBY_CLUSTER).cloned());
    let wanted = with_target(current.clone().unwrap_or_else(|| base.clone()), target);
    if current.as_ref() == Some(&wanted) {
        return Ok(Plan::Unchanged {
            standby_cluster: wanted.get(STANDBY_CLUSTER).cloned().unwrap_or(Value::Null),
        });
    }
    Ok(Plan::Update {
        resource_version: cm.resource_version.clone(),
        config: wanted,
        before,
    })
}

/// Sets host/port (and the optional keys that are configured) in `standby_cluster`, keeping
/// every other key at both levels.
pub fn with_target(mut config: Map<String, Value>, target: &Target) -> Map<String, Value> {
    let section = config
        .entry(STANDBY_CLUSTER)
        .or_insert_with(|| Value::Object(Map::new()));
    if !section.is_object() {
        // null (or nothing usable): start the section afresh.
        *section = Value::Object(Map::new());
    }
    let sc = section.as_object_mut().expect("made an object above");
    sc.insert("host".into(), Value::from(target.host.clone()));
    sc.insert("port".into(), Value::from(target.port));
    if let Some(slot) = &target.primary_slot_name {
        sc.insert(PRIMARY_SLOT_NAME.into(), Value::from(slot.as_str()));
    }
    if let Some(methods) = &target.create_replica_methods {
        sc.insert(
            "create_replica_methods".into(),
            Value::from(methods.clone()),
        );
    }
    config
}

/// `host:port` of a `standby_cluster` value, for messages.
pub fn describe_standby(sc: Option<&Value>) -> String {
    match sc {
        Some(Value::Object(m)) => {
            let part = |k: &str| match m.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => "-".into(),
                Some(v) => v.to_string(),
            };
            format!("{}:{}", part("host"), part("port"))
        }
        _ => "none".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    fn target() -> Target {
        Target {
            host: "svc-gold.ns.svc".into(),
            port: 43504,
            primary_slot_name: Some(SlotName::parse("golddr").unwrap()),
            create_replica_methods: None,
        }
    }

    fn cm(initialize: Option<&str>, config: Option<Value>) -> Option<ConfigState> {
        Some(ConfigState {
            resource_version: "7".into(),
            initialize: initialize.map(str::to_string),
            config: config.map(|c| match c {
                Value::String(s) => s,
                other => other.to_string(),
            }),
        })
    }

    fn leader(role: Option<&str>) -> Option<LeaderState> {
        Some(LeaderState {
            member: "pg-golddr-0".into(),
            role: role.map(str::to_string),
        })
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Create(Value),
        Update(Value),
        Unchanged,
        Promoted,
        Malformed,
        Unconfirmed,
    }

    #[test]
    fn plan_table() {
        let base = obj(json!({"ttl": 30, "postgresql": {"use_pg_rewind": true}}));
        let sc = json!({"host": "svc-gold.ns.svc", "port": 43504, "primary_slot_name": "golddr"});
        #[rustfmt::skip]
        let cases: Vec<(&str, Observed, bool, Want)> = vec![
            ("fresh install: no ConfigMap",
             Observed { config_map: None, leader: None }, false,
             Want::Create(json!({"ttl": 30, "postgresql": {"use_pg_rewind": true}, "standby_cluster": sc}))),
            ("Helm-made ConfigMap with labels only",
             Observed { config_map: cm(None, None), leader: None }, false,
             Want::Update(json!({"ttl": 30, "postgresql": {"use_pg_rewind": true}, "standby_cluster": sc}))),
            ("standby bootstrap in progress (initialize empty, no config yet)",
             Observed { config_map: cm(Some(""), None), leader: None }, false,
             Want::Update(json!({"ttl": 30, "postgresql": {"use_pg_rewind": true}, "standby_cluster": sc}))),
            ("running standby, old port: other keys kept",
             Observed { config_map: cm(Some("7711"), Some(json!({"loop_wait": 5, "standby_cluster": {"host": "old", "port": 16206, "restore_command": "cp"}}))),
                        leader: leader(Some("standby_leader")) }, false,
             Want::Update(json!({"loop_wait": 5, "standby_cluster": {"host": "svc-gold.ns.svc", "port": 43504, "restore_command": "cp", "primary_slot_name": "golddr"}}))),
            ("already as wanted",
             Observed { config_map: cm(Some("7711"), Some(json!({"loop_wait": 5, "standby_cluster": sc}))),
                        leader: leader(Some("standby_leader")) }, false,
             Want::Unchanged),
            ("port stored as a string is rewritten as a number",
             Observed { config_map: cm(Some("7711"), Some(json!({"standby_cluster": {"host": "svc-gold.ns.svc", "port": "43504", "primary_slot_name": "golddr"}}))),
                        leader: None }, false,
             Want::Update(json!({"standby_cluster": sc}))),
            ("promoted: initialized, no standby_cluster, primary leader",
             Observed { config_map: cm(Some("7711"), Some(json!({"ttl": 30}))), leader: leader(Some("primary")) }, false,
             Want::Promoted),
            ("promoted with standby_cluster: null",
             Observed { config_map: cm(Some("7711"), Some(json!({"standby_cluster": null}))), leader: leader(Some("primary")) }, false,
             Want::Promoted),
            ("promotion in progress",
             Observed { config_map: cm(Some("7711"), Some(json!({}))), leader: leader(Some("promoted")) }, false,
             Want::Promoted),
            ("old Patroni calls the primary master",
             Observed { config_map: cm(Some("7711"), Some(json!({}))), leader: leader(Some("master")) }, false,
             Want::Promoted),
            ("config annotation wiped but a primary runs",
             Observed { config_map: cm(Some("7711"), None), leader: leader(Some("primary")) }, false,
             Want::Promoted),
            ("no ConfigMap but a primary leader (someone deleted it)",
             Observed { config_map: None, leader: leader(Some("primary")) }, false,
             Want::Promoted),
            ("initialized, not standby, leader Pod gone: refuse",
             Observed { config_map: cm(Some("7711"), Some(json!({"ttl": 30}))), leader: leader(None) }, false,
             Want::Unconfirmed),
            ("initialized, not standby, no leader at all: refuse",
             Observed { config_map: cm(Some("7711"), Some(json!({"ttl": 30}))), leader: None }, false,
             Want::Unconfirmed),
            ("standby_cluster without host/port/restore_command is not a standby: refuse",
             Observed { config_map: cm(Some("7711"), Some(json!({"standby_cluster": {"primary_slot_name": "x"}}))), leader: None }, false,
             Want::Unconfirmed),
            ("not initialized, config without standby_cluster (left over): write",
             Observed { config_map: cm(None, Some(json!({"ttl": 20}))), leader: None }, false,
             Want::Update(json!({"ttl": 20, "standby_cluster": sc}))),
            ("force overrides a promotion",
             Observed { config_map: cm(Some("7711"), Some(json!({"ttl": 30}))), leader: leader(Some("primary")) }, true,
             Want::Update(json!({"ttl": 30, "standby_cluster": sc}))),
            ("force does not write over a malformed annotation",
             Observed { config_map: cm(Some("7711"), Some(Value::String("{ttl: 30".into()))), leader: None }, true,
             Want::Malformed),
            ("malformed: not JSON",
             Observed { config_map: cm(Some("7711"), Some(Value::String("ttl=30".into()))), leader: None }, false,
             Want::Malformed),
            ("malformed: standby_cluster is a string",
             Observed { config_map: cm(Some("7711"), Some(json!({"standby_cluster": "host=a port=1"}))), leader: None }, false,
             Want::Malformed),
            ("malformed: array",
             Observed { config_map: cm(None, Some(json!([1]))), leader: None }, false,
             Want::Malformed),
        ];
        for (name, obs, force, want) in cases {
            let got = match decide(&obs, &target(), &base, force) {
                Ok(Plan::Create { config }) => Want::Create(Value::Object(config)),
                Ok(Plan::Update {
                    config,
                    resource_version,
                    ..
                }) => {
                    assert_eq!(resource_version, "7", "{name}");
                    Want::Update(Value::Object(config))
                }
                Ok(Plan::Unchanged { .. }) => Want::Unchanged,
                Ok(Plan::LeavePromoted { leader, .. }) => {
                    assert_eq!(leader, "pg-golddr-0", "{name}");
                    Want::Promoted
                }
                Err(Refusal::Malformed(_)) => Want::Malformed,
                Err(Refusal::NotStandbyUnconfirmed { .. }) => Want::Unconfirmed,
                Err(Refusal::PromotedSite { .. }) => {
                    unreachable!("only check_promotion_record refuses so")
                }
            };
            assert_eq!(got, want, "case: {name}");
        }
    }

    /// A site the failover promoted keeps its record through `helm uninstall`; a reinstall
    /// with the standby values must not turn it back into a standby by accident.
    #[test]
    fn promotion_record_table() {
        let record = PromotionRecord {
            confirmed_at: "2026-03-01T12:00:00Z".into(),
            site: "golddr".into(),
            ..PromotionRecord::default()
        };
        let base = Map::new();
        let standby = cm(
            Some("7711"),
            Some(json!({"standby_cluster": {"host": "old", "port": 1}})),
        );
        #[rustfmt::skip]
        let cases: Vec<(&str, Observed, Option<&PromotionRecord>, bool, bool)> = vec![
            // (name, observed, record, demote allowed, refused)
            ("record + reinstall (no ConfigMap): refused", Observed { config_map: None, leader: None }, Some(&record), false, true),
            ("record + config without standby_cluster, not initialized: refused",
             Observed { config_map: cm(None, Some(json!({"ttl": 20}))), leader: None }, Some(&record), false, true),
            ("record + demotion allowed: written", Observed { config_map: None, leader: None }, Some(&record), true, false),
            ("record + already a standby (port change): written", Observed { config_map: standby.clone(), leader: None }, Some(&record), false, false),
            ("no record: written", Observed { config_map: None, leader: None }, None, false, false),
        ];
        for (name, obs, rec, demote, refused) in cases {
            let plan = decide(&obs, &target(), &base, false).expect(name);
            let got = check_promotion_record(plan, rec, demote);
            assert_eq!(
                matches!(got, Err(Refusal::PromotedSite { .. })),
                refused,
                "{name}: {got:?}"
            );
        }
        // force does not override the record.
        let plan = decide(
            &Observed {
                config_map: None,
                leader: None,
            },
            &target(),
            &base,
            true,
        )
        .unwrap();
        assert!(check_promotion_record(plan, Some(&record), false).is_err());
    }

    #[test]
    fn second_run_is_a_no_op() {
        let base = Map::new();
        let mut obs = Observed {
            config_map: cm(None, None),
            leader: None,
        };
        let Ok(Plan::Update { config, .. }) = decide(&obs, &target(), &base, false) else {
            panic!("first run should update");
        };
        obs.config_map = cm(
            Some(""),
            Some(Value::String(dynamic_config::render(&config))),
        );
        assert!(matches!(
            decide(&obs, &target(), &base, false),
            Ok(Plan::Unchanged { .. })
        ));
    }

    #[test]
    fn optional_keys_only_when_configured() {
        let t = Target {
            create_replica_methods: Some(vec!["basebackup".into()]),
            primary_slot_name: None,
            ..target()
        };
        let out = with_target(
            obj(json!({"standby_cluster": {"primary_slot_name": "keep"}})),
            &t,
        );
        assert_eq!(
            Value::Object(out),
            json!({"standby_cluster": {"host": "svc-gold.ns.svc", "port": 43504, "primary_slot_name": "keep", "create_replica_methods": ["basebackup"]}})
        );
    }

    fn service(ports: Vec<ServicePort>, cluster_ip: Option<&str>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("pg-gold".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                ports: Some(ports),
                cluster_ip: cluster_ip.map(str::to_string),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn sp(name: Option<&str>, port: i32, target: Option<IntOrString>) -> ServicePort {
        ServicePort {
            name: name.map(str::to_string),
            port,
            target_port: target,
            ..ServicePort::default()
        }
    }

    /// name, Service, rules, expected (host, port) or whether the problem is worth waiting for.
    type EndpointCase<'a> = (
        &'a str,
        &'a Service,
        ServiceRules,
        Result<(&'a str, u16), bool>,
    );

    #[test]
    fn endpoint_table() {
        let rules =
            |port_field, port_name: Option<&str>, host_mode, host: Option<&str>| ServiceRules {
                port_field,
                port_name: port_name.map(str::to_string),
                host_mode,
                host_override: host.map(str::to_string),
            };
        let tsc = service(
            vec![sp(None, 5432, Some(IntOrString::Int(53292)))],
            Some("172.30.1.2"),
        );
        let multi = service(
            vec![
                sp(Some("metrics"), 9187, None),
                sp(
                    Some("postgresql"),
                    43504,
                    Some(IntOrString::String("pg".into())),
                ),
            ],
            Some("None"),
        );
        let empty = service(vec![], None);
        use HostMode::*;
        use PortField::*;
        #[rustfmt::skip]
        let cases: Vec<EndpointCase> = vec![
            ("defaults: DNS name and .port", &tsc, rules(Port, None, Dns, None), Ok(("pg-gold.ns.svc", 5432))),
            ("targetPort", &tsc, rules(TargetPort, None, Dns, None), Ok(("pg-gold.ns.svc", 53292))),
            ("clusterIP", &tsc, rules(Port, None, ClusterIp, None), Ok(("172.30.1.2", 5432))),
            ("host override wins", &tsc, rules(Port, None, ClusterIp, Some("127.0.0.9")), Ok(("127.0.0.9", 5432))),
            ("named port", &multi, rules(Port, Some("postgresql"), Dns, None), Ok(("pg-gold.ns.svc", 43504))),
            ("missing named port: wait", &multi, rules(Port, Some("pg"), Dns, None), Err(true)),
            ("named targetPort: unusable", &multi, rules(TargetPort, Some("postgresql"), Dns, None), Err(false)),
            ("targetPort absent falls back to port", &multi, rules(TargetPort, None, Dns, None), Ok(("pg-gold.ns.svc", 9187))),
            ("headless has no clusterIP: wait", &multi, rules(Port, None, ClusterIp, None), Err(true)),
            ("no ports: wait", &empty, rules(Port, None, Dns, None), Err(true)),
        ];
        for (name, svc, r, want) in cases {
            let got = endpoint_from_service(svc, "ns", &r);
            match (got, want) {
                (Ok((h, p)), Ok((wh, wp))) => assert_eq!((h.as_str(), p), (wh, wp), "{name}"),
                (Err(ServiceProblem::NotReady(_)), Err(true))
                | (Err(ServiceProblem::Unusable(_)), Err(false)) => {}
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn describes_standby() {
        assert_eq!(
            describe_standby(Some(&json!({"host": "h", "port": 1}))),
            "h:1"
        );
        assert_eq!(describe_standby(Some(&Value::Null)), "none");
        assert_eq!(describe_standby(None), "none");
    }
}
