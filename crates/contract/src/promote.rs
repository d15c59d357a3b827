//! What every promotion writes into the promoted site's dynamic config, whoever promotes (the
//! failover agent through Patroni's `PATCH /config`, the plugin by compare-and-set of the whole
//! config): `standby_cluster` removed, the fence removed, the slot for the peer declared, and the
//! promotion marker set.

use serde_json::{Map, Value, json};

use crate::keys::{FENCE, PARAMETERS, SLOTS, STANDBY_CLUSTER};
use crate::marker::{MARKER_GUC, PromotionMarker};
use crate::slot::{self, SlotName};

/// The promotion applied to a whole config object (every other key kept).
pub fn apply(
    config: &mut Map<String, Value>,
    peer_slot: &SlotName,
    marker: Option<&PromotionMarker>,
) {
    config.remove(STANDBY_CLUSTER);
    config.remove(FENCE);
    if let Some(m) = marker {
        crate::marker::set(config, m);
    }
    slot::declare(config, peer_slot);
}

/// The promotion as a JSON merge patch for `PATCH /config` (null removes a key).
pub fn patch(peer_slot: &SlotName, marker: Option<&PromotionMarker>) -> Value {
    let mut p = json!({
        STANDBY_CLUSTER: null,
        FENCE: null,
        SLOTS: slot::declare_patch(peer_slot),
    });
    if let Some(m) = marker {
        p[crate::keys::POSTGRESQL] = json!({ PARAMETERS: { MARKER_GUC: m.render() } });
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patroni merges a PATCH like RFC 7386 (null deletes); applying the patch that way must give
    /// what `apply` gives.
    fn merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }

    #[test]
    fn patch_and_apply_agree() {
        let slot = SlotName::parse("pgdr_golddr").unwrap();
        let m = PromotionMarker {
            timeline: 1,
            fork_lsn: 0x300,
            site: "golddr".into(),
            at: String::new(),
        };
        let before = json!({"ttl": 30, "standby_cluster": {"host": "h", "port": 1},
            "pgdr_fence": {"phase": "hold"},
            "postgresql": {"parameters": {"max_connections": 100}},
            "slots": {"other": {"type": "physical"}}});
        for marker in [Some(&m), None] {
            let mut via_apply = before.as_object().cloned().unwrap();
            apply(&mut via_apply, &slot, marker);
            let mut via_patch = before.clone();
            merge(&mut via_patch, &patch(&slot, marker));
            assert_eq!(Value::Object(via_apply.clone()), via_patch);
            assert!(!crate::dynamic_config::is_standby_cluster(&via_apply));
            assert!(via_apply.get(FENCE).is_none());
            assert_eq!(via_apply["slots"]["other"]["type"], "physical");
            assert_eq!(via_apply["slots"]["pgdr_golddr"]["type"], "physical");
            assert_eq!(crate::marker::get(&via_apply).unwrap().as_ref(), marker);
        }
    }
}
