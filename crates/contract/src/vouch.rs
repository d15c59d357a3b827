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
