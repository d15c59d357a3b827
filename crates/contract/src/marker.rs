//! The promotion marker: where a promotion forked the history. A promotion leaves it in the
//! promoted site's own dynamic config (`postgresql.parameters."pgdr.promoted_from"`), so any login
//! role reads it with `current_setting`, and it survives restarts with the config. Written by the
//! failover agent and the plugin, read by the agent and the sidecar: [`PromotionMarker::render`]
//! and [`PromotionMarker::parse`] are the only format.

use serde_json::{Map, Value};

use crate::keys::{PARAMETERS, POSTGRESQL};

/// The custom setting that carries the promotion marker.
/// (A macro so that the identity query can name it in a `concat!`.)
#[macro_export]
macro_rules! marker_guc {
    () => {
        "pgdr.promoted_from"
    };
}
pub const MARKER_GUC: &str = marker_guc!();

/// One promotion: its epoch (the fencing token that orders promotions across the pair) and where
/// it forked the history (the promoted site left `timeline` at `fork_lsn`).
///
/// Authority between two writable sites is the higher `epoch`, never the higher timeline number
/// (the two sites number their timelines independently: a crash restart or an in-site failover
/// moves one of them on). The fork position is what rewinds and divergence records use; it is
/// read before the promotion (the last replayed position) and so may lie a little below the real
/// switchpoint (`fork_pending`) until the promoted site publishes the switchpoint from its own
/// timeline history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotionMarker {
    /// 1 + the highest epoch the promoted site had written or seen ([`crate::epoch`]).
    pub epoch: u64,
    pub timeline: u32,
    pub fork_lsn: u64,
    /// `fork_lsn` is the position read before the promotion, not yet the switchpoint of the
    /// new timeline: authoritative for fencing, not yet for a rewind.
    pub fork_pending: bool,
    /// The site that was promoted and when (RFC 3339); informational.
    pub site: String,
    pub at: String,
}

impl PromotionMarker {
    /// `epoch=4 timeline=3 fork_lsn=0/5000A28 fork=pending site=golddr at=2026-11-30T16:00:00Z`
    /// (order free; `fork`, `site` and `at` optional).
    ///
    /// A marker written before epochs existed (chart 0.1) has no `epoch`: it reads as epoch =
    /// its timeline, which is the order the old rule gave it, so a pair upgraded mid-life keeps
    /// its authority; every later promotion is numbered above both sites' values.
    pub fn parse(text: &str) -> Result<PromotionMarker, MarkerError> {
        let bad = |what: String| MarkerError {
            text: text.to_string(),
            what,
        };
        let (mut epoch, mut timeline, mut fork_lsn) = (None, None, None);
        let (mut fork_pending, mut site, mut at) = (false, String::new(), String::new());
        for word in text.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                return Err(bad(format!("{word:?} is not key=value")));
            };
            match key {
                "epoch" => {
                    epoch = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| bad(format!("epoch {value:?} is not a number")))?,
                    )
                }
                "timeline" => {
                    timeline = Some(
                        value
                            .parse::<u32>()
                            .map_err(|_| bad(format!("timeline {value:?} is not a number")))?,
                    )
                }
                "fork_lsn" => {
                    fork_lsn = Some(
                        crate::lsn::parse(value)
                            .ok_or_else(|| bad(format!("{value:?} is not an LSN")))?,
                    )
                }
                "fork" => fork_pending = value == "pending",
                "site" => site = value.to_string(),
                "at" => at = value.to_string(),
                // Newer writers may add keys; readers ignore them.
                _ => {}
            }
        }
        match (timeline, fork_lsn) {
            (Some(timeline), Some(fork_lsn)) if timeline > 0 => Ok(PromotionMarker {
                epoch: epoch.unwrap_or(u64::from(timeline)),
                timeline,
                fork_lsn,
                fork_pending,
                site,
                at,
            }),
            _ => Err(bad("needs timeline=<n ≥ 1> and fork_lsn=<LSN>".to_string())),
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "epoch={} timeline={} fork_lsn={}",
            self.epoch,
            self.timeline,
            crate::lsn::format(self.fork_lsn)
        );
        if self.fork_pending {
            s.push_str(" fork=pending");
        }
        if !self.site.is_empty() {
            s.push_str(&format!(" site={}", self.site));
        }
        if !self.at.is_empty() {
            s.push_str(&format!(" at={}", self.at));
        }
        s
    }

    /// The marker once the promoted site's own history says where it left `timeline`.
    pub fn settled(&self, switchpoint: u64) -> PromotionMarker {
        PromotionMarker {
            fork_lsn: switchpoint,
            fork_pending: false,
            ..self.clone()
        }
    }
}

/// A promotion marker that cannot be read: acting on half a marker is worse than not acting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{guc} {text:?}: {what}", guc = MARKER_GUC)]
pub struct MarkerError {
    pub text: String,
    pub what: String,
}

/// Sets the marker in a dynamic config object (`postgresql.parameters`), every other key kept.
pub fn set(config: &mut Map<String, Value>, marker: &PromotionMarker) {
    let pg = config
        .entry(POSTGRESQL)
        .or_insert_with(|| Value::Object(Map::new()));
    if !pg.is_object() {
        *pg = Value::Object(Map::new());
    }
    let params = &mut pg[PARAMETERS];
    if !params.is_object() {
        *params = Value::Object(Map::new());
    }
    params[MARKER_GUC] = Value::String(marker.render());
}

/// The marker in a dynamic config object: `Ok(None)` when there is none.
pub fn get(config: &Map<String, Value>) -> Result<Option<PromotionMarker>, MarkerError> {
    match config
        .get(POSTGRESQL)
        .and_then(|pg| pg.get(PARAMETERS))
        .and_then(|p| p.get(MARKER_GUC))
    {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => PromotionMarker::parse(s).map(Some),
        Some(other) => Err(MarkerError {
            text: other.to_string(),
            what: "not text".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn marker(epoch: u64, timeline: u32, fork_lsn: u64, site: &str) -> PromotionMarker {
        PromotionMarker {
            epoch,
            timeline,
            fork_lsn,
            fork_pending: false,
            site: site.into(),
            at: String::new(),
        }
    }

    #[test]
    fn marker_round_trips_and_rejects_half_markers() {
        let m = PromotionMarker {
            fork_pending: true,
            at: "2026-11-30T16:00:00Z".into(),
            ..marker(4, 3, 0x5000A28, "golddr")
        };
        assert_eq!(
            m.render(),
            "epoch=4 timeline=3 fork_lsn=0/5000A28 fork=pending site=golddr at=2026-11-30T16:00:00Z"
        );
        assert_eq!(PromotionMarker::parse(&m.render()), Ok(m.clone()));
        let settled = m.settled(0x5000B00);
        assert_eq!((settled.fork_lsn, settled.fork_pending), (0x5000B00, false));
        assert_eq!(PromotionMarker::parse(&settled.render()), Ok(settled));
        for bad in [
            "timeline=3",
            "fork_lsn=0/1",
            "timeline=x fork_lsn=0/1",
            "timeline=0 fork_lsn=0/1",
            "timeline=3 fork_lsn=zz",
            "epoch=x timeline=3 fork_lsn=0/1",
            "garbage",
        ] {
            let err = PromotionMarker::parse(bad).unwrap_err();
            assert!(err.to_string().contains(MARKER_GUC), "{err}");
        }
        // Unknown keys from a newer writer are ignored.
        assert!(PromotionMarker::parse("epoch=1 timeline=2 fork_lsn=1/0 reason=x").is_ok());
    }

    /// A marker from before epochs (chart 0.1) keeps the order the old rule gave it: its timeline.
    #[test]
    fn a_marker_without_epoch_reads_as_its_timeline() {
        let old = PromotionMarker::parse("timeline=2 fork_lsn=0/300 site=gold").unwrap();
        assert_eq!(old, marker(2, 2, 0x300, "gold"));
    }

    #[test]
    fn set_and_get_keep_every_other_key() {
        let m = marker(1, 2, 0x300, "golddr");
        let mut cfg = json!({"ttl": 30, "postgresql": {"parameters": {"max_connections": 100}, "use_pg_rewind": true}})
            .as_object()
            .cloned()
            .unwrap();
        assert_eq!(get(&cfg), Ok(None));
        set(&mut cfg, &m);
        assert_eq!(cfg["ttl"], 30);
        assert_eq!(cfg["postgresql"]["use_pg_rewind"], true);
        assert_eq!(cfg["postgresql"]["parameters"]["max_connections"], 100);
        assert_eq!(
            cfg["postgresql"]["parameters"][MARKER_GUC],
            "epoch=1 timeline=2 fork_lsn=0/300 site=golddr"
        );
        assert_eq!(get(&cfg), Ok(Some(m)));
        cfg["postgresql"]["parameters"][MARKER_GUC] = json!(3);
        assert!(get(&cfg).is_err());
        let mut odd = json!({"postgresql": "x"}).as_object().cloned().unwrap();
        set(&mut odd, &marker(1, 1, 1, ""));
        assert!(get(&odd).unwrap().is_some());
    }
}
