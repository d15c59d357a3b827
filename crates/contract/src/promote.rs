//! What every promotion writes into the promoted site's dynamic config, whoever promotes (the
//! failover agent and the plugin, each by compare-and-set of the whole `<scope>-config`):
//! `standby_cluster` removed, the fence removed, the slot for the peer declared, and the promotion
//! marker with the next epoch ([`crate::epoch`]), all in one write. Patroni wakes on the change of
//! the `config` annotation and promotes the standby leader.

use serde_json::{Map, Value};

use crate::epoch::PeerEpoch;
use crate::keys::{FENCE, STANDBY_CLUSTER};
use crate::marker::PromotionMarker;
use crate::slot::{self, SlotName};

/// Where the site about to be promoted stands: the timeline its leader follows and the last
/// position it replayed (the fork, or a little below it until the new timeline's history says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fork {
    pub timeline: u32,
    pub replayed: u64,
}

/// Who promotes, and what is known of the peer's epoch right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion<'a> {
    pub site: &'a str,
    pub at: String,
    pub peer: PeerEpoch,
}

/// The promotion applied to a whole config object (every other key kept); the marker written.
/// Without a fork position there is no promotion: a promotion that leaves no fresh marker lets an
/// older marker speak for this site (callers refuse and say why).
pub fn apply(
    config: &mut Map<String, Value>,
    peer_slot: &SlotName,
    fork: Fork,
    who: &Promotion<'_>,
) -> PromotionMarker {
    let marker = PromotionMarker {
        epoch: crate::epoch::next(config, who.peer),
        timeline: fork.timeline,
        fork_lsn: fork.replayed,
        fork_pending: true,
        site: who.site.to_string(),
        at: who.at.clone(),
    };
    config.remove(STANDBY_CLUSTER);
    config.remove(FENCE);
    crate::marker::set(config, &marker);
    slot::declare(config, peer_slot);
    marker
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_promotion_writes_the_next_epoch_and_keeps_every_other_key() {
        let slot = SlotName::parse("pgdr_golddr").unwrap();
        let mut config = json!({"ttl": 30, "standby_cluster": {"host": "h", "port": 1},
            "pgdr_fence": {"phase": "hold"}, "pgdr_epoch_seen": 4,
            "postgresql": {"parameters": {"max_connections": 100,
                "pgdr.promoted_from": "epoch=2 timeline=1 fork_lsn=0/100"}},
            "slots": {"other": {"type": "physical"}}})
        .as_object()
        .cloned()
        .unwrap();
        let who = Promotion {
            site: "golddr",
            at: "2026-12-04T00:00:00Z".into(),
            peer: PeerEpoch::Read(3),
        };
        let fork = Fork {
            timeline: 5,
            replayed: 0x300,
        };
        let m = apply(&mut config, &slot, fork, &who);
        assert_eq!(
            (m.epoch, m.timeline, m.fork_lsn, m.fork_pending),
            (5, 5, 0x300, true)
        );
        assert!(!crate::dynamic_config::is_standby_cluster(&config));
        assert!(config.get(FENCE).is_none());
        assert_eq!(config["slots"]["other"]["type"], "physical");
        assert_eq!(config["slots"]["pgdr_golddr"]["type"], "physical");
        assert_eq!(config["postgresql"]["parameters"]["max_connections"], 100);
        assert_eq!(crate::marker::get(&config).unwrap(), Some(m));
        // A peer known higher than anything here wins.
        let again = apply(
            &mut config,
            &slot,
            fork,
            &Promotion {
                peer: PeerEpoch::Read(9),
                ..who.clone()
            },
        );
        assert_eq!(again.epoch, 10);
        // A person's promotion with the peer unread is numbered by the clock, never below what
        // the site knows.
        let blind = |now| Promotion {
            peer: PeerEpoch::Unread { now },
            ..who.clone()
        };
        assert_eq!(
            apply(&mut config, &slot, fork, &blind(1_800_000_000)).epoch,
            1_800_000_000
        );
        assert_eq!(
            apply(&mut config, &slot, fork, &blind(5)).epoch,
            1_800_000_001
        );
    }
}
