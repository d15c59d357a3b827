//! Evidence that the peer did not promote past this site, for a primary that has not seen its
//! peer since it became one.
//!
//! A primary coming back (power restored, pod restarted, an in-site failover) cannot tell from
//! its own data whether its peer was promoted meanwhile. The readiness sidecar therefore does not
//! advertise it on `/primary` until it has evidence: a peer check through the tunnel, or a
//! [`Vouch`] in the site's own dynamic config ([`crate::keys::PEER_VOUCH`]) written *after* it
//! became primary, by the failover agent (the peer's Kubernetes API shows a standby cluster) or by
//! a person (`kubectl pgdr advertise SITE`: the peer site is down and will not be promoted).
//!
//! Freshness is by time: the vouch must be taken at or after the moment the sidecar saw the
//! member become a writable primary (both clocks are in one cluster), and for the promotion epoch
//! the site holds now. An older vouch says nothing about this return.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::keys::PEER_VOUCH;

/// Who vouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VouchBy {
    /// The failover agent read the peer's dynamic config through the peer's Kubernetes API (the
    /// peer-API witness): a standby cluster.
    PeerApi,
    /// A person (`kubectl pgdr advertise`).
    Operator,
}

impl VouchBy {
    pub fn as_str(self) -> &'static str {
        match self {
            VouchBy::PeerApi => "peer-api",
            VouchBy::Operator => "operator",
        }
    }
}

/// The `pgdr_peer_vouch` document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouch {
    /// When the evidence was taken (the agent: before it read the peer; a person: when confirmed).
    pub at: Timestamp,
    pub by: VouchBy,
    /// This site's promotion epoch it vouches for.
    pub epoch: u64,
    /// What the evidence was, for people.
    #[serde(default)]
    pub note: String,
}

impl Vouch {
    /// Evidence for a primary that has been one since `primary_since` at promotion epoch `epoch`.
    pub fn covers(&self, primary_since: Timestamp, epoch: u64) -> bool {
        self.at >= primary_since && self.epoch == epoch
    }
}

/// How long after the promotion marker was written (the compare-and-set that removed
/// `standby_cluster`) Patroni may take to run the member as a writable primary and the sidecar to
/// see it: Patroni acts within `loop_wait` (10 s by default), the end-of-recovery checkpoint and
/// one sidecar poll come on top. Generous on purpose: a returning primary's marker is hours old.
pub const PROMOTION_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

/// A member that became a writable primary at `primary_since` through its site's own promotion
/// (marker written at `promoted_at`) needs no further evidence: the promotion chose an epoch above
/// everything known of the peer, and a peer lost is exactly why it was promoted. Only a primary
/// that *returns* (power, restart, an in-site failover long after the promotion) must show that
/// its peer did not promote past it meanwhile.
pub fn promoted_into(primary_since: Timestamp, promoted_at: Option<Timestamp>) -> bool {
    promoted_at.is_some_and(|at| {
        at.checked_add(PROMOTION_GRACE)
            .is_ok_and(|until| until >= primary_since)
    })
}

/// The vouch in a config object; `None` when absent, null or unreadable (no evidence).
pub fn read(config: &Map<String, Value>) -> Option<Vouch> {
    config
        .get(PEER_VOUCH)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Writes `vouch` into a config object (replacing any older one).
pub fn apply(config: &mut Map<String, Value>, vouch: &Vouch) {
    config.insert(
        PEER_VOUCH.into(),
        serde_json::to_value(vouch).expect("a vouch serialises"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_vouch_round_trips_and_unreadable_is_none() {
        let v = Vouch {
            at: t("2026-12-04T10:00:00Z"),
            by: VouchBy::PeerApi,
            epoch: 3,
            note: "standby cluster".into(),
        };
        let mut c = Map::new();
        apply(&mut c, &v);
        assert_eq!(c[PEER_VOUCH]["by"], json!("peer-api"));
        assert_eq!(read(&c), Some(v));
        c.insert(PEER_VOUCH.into(), json!({"at": "yesterday"}));
        assert_eq!(read(&c), None);
        c.insert(PEER_VOUCH.into(), Value::Null);
        assert_eq!(read(&c), None);
    }

    #[test]
    fn a_primary_made_by_its_own_recent_promotion_needs_no_vouch() {
        let since = t("2026-12-04T10:00:00Z");
        let rows = [
            // marker written at, promoted into
            (Some("2026-12-04T09:59:50Z"), true),
            (Some("2026-12-04T09:58:00Z"), true),
            (Some("2026-12-04T10:00:05Z"), true),
            (Some("2026-12-04T09:57:59Z"), false),
            (Some("2026-11-30T16:00:00Z"), false),
            (None, false),
        ];
        for (at, want) in rows {
            assert_eq!(promoted_into(since, at.map(t)), want, "{at:?}");
        }
    }

    #[test]
    fn only_a_vouch_taken_since_the_return_at_the_current_epoch_covers_it() {
        let v = Vouch {
            at: t("2026-12-04T10:00:00Z"),
            by: VouchBy::Operator,
            epoch: 2,
            note: String::new(),
        };
        let rows = [
            // primary since, epoch now, covers
            ("2026-12-04T09:59:00Z", 2, true),
            ("2026-12-04T10:00:00Z", 2, true),
            ("2026-12-04T10:00:01Z", 2, false),
            ("2026-12-04T09:00:00Z", 3, false),
        ];
        for (since, epoch, want) in rows {
            assert_eq!(v.covers(t(since), epoch), want, "{since} epoch {epoch}");
        }
    }
}
