//! The durable promotion record: a ConfigMap the failover CronJob creates on a confirmed
//! promotion and port-patch reads before making a site a standby again.
//!
//! It is created by the binary (not templated by Helm) and carries `helm.sh/resource-policy:
//! keep`, so `helm uninstall` and a reinstall with the standby values do not erase the fact that
//! this site was promoted.

use std::collections::BTreeMap;

/// Annotation that keeps the object when Helm uninstalls the release.
pub const KEEP_ANNOTATION: &str = "helm.sh/resource-policy";
pub const KEEP_VALUE: &str = "keep";
/// `app.kubernetes.io/component` label value.
pub const COMPONENT_LABEL: &str = "promotion-record";

/// What the record says. Stored as flat `data` keys so `kubectl get cm -o yaml` reads well.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromotionRecord {
    /// When the new primary was confirmed (RFC 3339).
    pub confirmed_at: String,
    /// The site that was promoted and the peer it stopped following.
    pub site: String,
    pub peer: String,
    /// The run (Pod) that promoted.
    pub run: String,
    pub timeline: Option<u64>,
    /// Why, as the decision said it.
    pub reasons: String,
}

impl PromotionRecord {
    pub fn to_data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::from([
            ("confirmed_at".to_string(), self.confirmed_at.clone()),
            ("site".to_string(), self.site.clone()),
            ("peer".to_string(), self.peer.clone()),
            ("run".to_string(), self.run.clone()),
            ("reasons".to_string(), self.reasons.clone()),
        ]);
        if let Some(t) = self.timeline {
            data.insert("timeline".to_string(), t.to_string());
        }
        data
    }

    /// A confirmed promotion, or `None` when the data holds none (no `confirmed_at`).
    pub fn from_data(data: &BTreeMap<String, String>) -> Option<PromotionRecord> {
        let get = |k: &str| data.get(k).cloned().unwrap_or_default();
        let confirmed_at = data.get("confirmed_at").filter(|v| !v.trim().is_empty())?;
        Some(PromotionRecord {
            confirmed_at: confirmed_at.clone(),
            site: get("site"),
            peer: get("peer"),
            run: get("run"),
            timeline: data.get("timeline").and_then(|t| t.parse().ok()),
            reasons: get("reasons"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_needs_a_confirmation_time() {
        let r = PromotionRecord {
            confirmed_at: "2026-03-01T12:00:00Z".into(),
            site: "golddr".into(),
            peer: "gold".into(),
            run: "failover-1".into(),
            timeline: Some(3),
            reasons: "witness agrees".into(),
        };
        assert_eq!(PromotionRecord::from_data(&r.to_data()), Some(r));
        assert_eq!(PromotionRecord::from_data(&BTreeMap::new()), None);
        let blank = BTreeMap::from([("confirmed_at".to_string(), " ".to_string())]);
        assert_eq!(PromotionRecord::from_data(&blank), None);
    }
}
