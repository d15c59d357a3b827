//! The promotion epoch: a fencing token that orders every promotion of the pair.
//!
//! Every promotion (the failover agent's, `kubectl pgdr promote`, `switchover`, `unfence`)
//! writes `epoch = 1 + the highest epoch this site has written or seen` in its promotion marker,
//! in the same compare-and-set that removes `standby_cluster` ([`crate::promote::apply`]). Of two
//! writable sites the higher epoch is the authority ([`crate::lineage::lineage`]); equal epochs
//! above zero are two promotions that did not know of each other, and neither site is the
//! authority until a person settles it.
//!
//! "Seen" is what this site learned of its peer: the failover agent records the peer's epoch when
//! its probe reads the peer's marker, a fence records the authority's, and the plugin records the
//! new epoch on the site it demotes. It lives in the site's own dynamic config
//! ([`crate::keys::EPOCH_SEEN`]) beside the marker, so a promotion reads both in the object it
//! writes.
//!
//! A person's promotion made while the peer's config cannot be read ([`PeerEpoch::Unread`]) is
//! numbered at least the current Unix time in seconds. The peer may have promoted meanwhile at
//! `1 + what it knew`, which can equal this site's `1 + what it knew` (a tie that only a person
//! settles; chaos seed 1015: the standby site's agent promoted during a tunnel cut and a person
//! unfenced the old primary with the standby site's API down, both at epoch 1). Agents number by
//! one from what they know, so the clock-numbered promotion outranks every promotion that did
//! not know of it, and of two such promotions the later one wins.

use serde_json::{Map, Value};

use crate::keys::EPOCH_SEEN;
use crate::marker::{self, PromotionMarker};

/// The epoch of this site's own promotion marker (0: never promoted, or no readable marker).
pub fn written(config: &Map<String, Value>) -> u64 {
    marker::get(config)
        .ok()
        .flatten()
        .map_or(0, |m: PromotionMarker| m.epoch)
}

/// The highest epoch this site has recorded at its peer (0: none).
pub fn seen(config: &Map<String, Value>) -> u64 {
    config.get(EPOCH_SEEN).and_then(Value::as_u64).unwrap_or(0)
}

/// The highest epoch this site knows of: its own or its peer's.
pub fn known(config: &Map<String, Value>) -> u64 {
    written(config).max(seen(config))
}

/// What a promotion knows of the peer's epoch beyond what this site recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerEpoch {
    /// Read from the peer's config just now (0: none there). The failover agent passes 0: it
    /// goes by what its probes recorded ([`seen`]).
    Read(u64),
    /// A person promotes while the peer's config cannot be read; `now`: Unix seconds.
    Unread { now: u64 },
}

/// The epoch a promotion of this site writes, given what is known of the peer right now.
pub fn next(config: &Map<String, Value>, peer: PeerEpoch) -> u64 {
    match peer {
        PeerEpoch::Read(peer_known) => known(config).max(peer_known) + 1,
        PeerEpoch::Unread { now } => (known(config) + 1).max(now),
    }
}

/// Records `epoch` as seen at the peer when it is higher than what this site knew; `true` when
/// the config changed (only then is there anything to write).
pub fn record_seen(config: &mut Map<String, Value>, epoch: u64) -> bool {
    if epoch <= seen(config) {
        return false;
    }
    config.insert(EPOCH_SEEN.into(), Value::from(epoch));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn next_is_above_everything_known() {
        let fresh = config(json!({"ttl": 30}));
        assert_eq!(
            (
                written(&fresh),
                seen(&fresh),
                next(&fresh, PeerEpoch::Read(0))
            ),
            (0, 0, 1)
        );
        assert_eq!(next(&fresh, PeerEpoch::Read(4)), 5);
        let promoted = config(json!({"postgresql": {"parameters": {
            "pgdr.promoted_from": "epoch=3 timeline=2 fork_lsn=0/300"}}}));
        assert_eq!(next(&promoted, PeerEpoch::Read(0)), 4);
        let mut both = promoted.clone();
        assert!(record_seen(&mut both, 7));
        assert_eq!(next(&both, PeerEpoch::Read(2)), 8);
        // Never lowered, and nothing to write when nothing is new.
        assert!(!record_seen(&mut both, 5));
        assert!(!record_seen(&mut both, 7));
        assert_eq!(seen(&both), 7);
        // An unreadable marker counts as no epoch; the recorded peer still counts.
        let broken = config(json!({"pgdr_epoch_seen": 2, "postgresql": {"parameters": {
            "pgdr.promoted_from": "garbage"}}}));
        assert_eq!(next(&broken, PeerEpoch::Read(0)), 3);
    }
}
