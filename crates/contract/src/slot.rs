//! The one physical replication slot between the sites (the chart's `replication.slotName`).
//!
//! Whichever site is primary keeps it; the other streams from it. A promotion declares it on the
//! promoted site (so the old primary can return as a standby without a re-clone), and a fence or
//! a demotion names it in `standby_cluster.primary_slot_name`. The name is the same on both
//! sites and never derived from a site name: every writer takes it from [`SlotName`], and the
//! two `standby_cluster`/`slots` shapes are built here only.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::keys::SLOTS;

/// The key of `standby_cluster` that names the slot to stream from.
pub const PRIMARY_SLOT_NAME: &str = "primary_slot_name";

/// The failover agent's environment variable that carries the slot name (the chart sets it from
/// `replication.slotName`); the plugin reads it from the agent's CronJob.
pub const AGENT_SLOT_ENV: &str = "FAILOVER_PEER_SLOT_NAME";

/// A valid physical replication slot name: 1–63 lower-case letters, digits and `_`
/// (PostgreSQL's rule, `ReplicationSlotValidateName`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SlotName(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a replication slot name (1-63 lower-case letters, digits or '_'; the chart's \
     replication.slotName, the same on both sites)"
)]
pub struct InvalidSlotName(pub String);

impl SlotName {
    pub fn parse(name: &str) -> Result<SlotName, InvalidSlotName> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(SlotName(name.to_string()))
        } else {
            Err(InvalidSlotName(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SlotName {
    type Error = InvalidSlotName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SlotName::parse(&s)
    }
}

impl From<SlotName> for String {
    fn from(s: SlotName) -> String {
        s.0
    }
}

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a standby site streams from: the tunnel Service towards its peer, and the slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowTarget {
    pub host: String,
    pub port: u16,
    pub slot: SlotName,
}

impl FollowTarget {
    /// The `standby_cluster` value that follows this target (fence follow phase, demotion).
    /// Base backup is the only replica method: a member without data clones from the peer.
    pub fn standby_cluster(&self) -> Value {
        json!({
            "host": self.host,
            "port": self.port,
            PRIMARY_SLOT_NAME: self.slot.as_str(),
            "create_replica_methods": ["basebackup"],
        })
    }
}

/// The slot a `standby_cluster` section streams from, when it names one.
pub fn followed(standby_cluster: &Map<String, Value>) -> Option<&str> {
    standby_cluster
        .get(PRIMARY_SLOT_NAME)
        .and_then(Value::as_str)
}

/// Declares `slot` as a permanent physical slot in a dynamic config object; every other key and
/// slot kept (an existing declaration of the same name is left as it is).
pub fn declare(config: &mut Map<String, Value>, slot: &SlotName) {
    let slots = config
        .entry(SLOTS)
        .or_insert_with(|| Value::Object(Map::new()));
    if !slots.is_object() {
        *slots = Value::Object(Map::new());
    }
    if let Value::Object(s) = slots {
        s.entry(slot.as_str().to_string())
            .or_insert_with(|| json!({"type": "physical"}));
    }
}

/// The `slots` fragment of a `PATCH /config` that declares `slot` (Patroni merges it).
pub fn declare_patch(slot: &SlotName) -> Value {
    json!({ slot.as_str(): {"type": "physical"} })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["pgdr_golddr", "a", "x9_", &"a".repeat(63)] {
            assert_eq!(SlotName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Gold", "gold-dr", "a b", "ä", &"a".repeat(64)] {
            assert!(SlotName::parse(bad).is_err(), "{bad:?}");
        }
        let err = SlotName::parse("gold-dr").unwrap_err().to_string();
        assert!(
            err.contains("gold-dr") && err.contains("replication.slotName"),
            "{err}"
        );
        assert!(serde_json::from_value::<SlotName>(json!("Bad")).is_err());
        assert_eq!(
            serde_json::to_value(SlotName::parse("s1").unwrap()).unwrap(),
            json!("s1")
        );
    }

    #[test]
    fn declare_keeps_other_slots_and_keys() {
        let slot = SlotName::parse("pgdr_golddr").unwrap();
        let mut cfg =
            json!({"ttl": 30, "slots": {"other": {"type": "logical", "database": "app"}}})
                .as_object()
                .cloned()
                .unwrap();
        declare(&mut cfg, &slot);
        declare(&mut cfg, &slot);
        assert_eq!(cfg["ttl"], 30);
        assert_eq!(cfg["slots"]["other"]["type"], "logical");
        assert_eq!(cfg["slots"]["pgdr_golddr"], json!({"type": "physical"}));
        let mut odd = json!({"slots": []}).as_object().cloned().unwrap();
        declare(&mut odd, &slot);
        assert_eq!(odd["slots"], json!({"pgdr_golddr": {"type": "physical"}}));
        assert_eq!(
            declare_patch(&slot),
            json!({"pgdr_golddr": {"type": "physical"}})
        );
    }

    #[test]
    fn follow_form() {
        let t = FollowTarget {
            host: "patroni-golddr.ns.svc".into(),
            port: 31000,
            slot: SlotName::parse("pgdr_golddr").unwrap(),
        };
        assert_eq!(
            t.standby_cluster(),
            json!({"host": "patroni-golddr.ns.svc", "port": 31000,
                   "primary_slot_name": "pgdr_golddr", "create_replica_methods": ["basebackup"]})
        );
    }
}
