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

/// Where a promotion forked the history: the promoted site left `timeline` at `fork_lsn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotionMarker {
    pub timeline: u32,
    pub fork_lsn: u64,
    /// The site that was promoted and when (RFC 3339); informational.
    pub site: String,
    pub at: String,
}

impl PromotionMarker {
    /// `timeline=3 fork_lsn=0/5000A28 site=golddr at=2026-11-30T16:00:00Z` (order free; `site`
    /// and `at` optional).
    pub fn parse(text: &str) -> Result<PromotionMarker, String> {
        let (mut timeline, mut fork_lsn, mut site, mut at) = (None, None, String::new(), "".into());
        for word in text.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                return Err(format!("{MARKER_GUC}: {word:?} is not key=value"));
            };
            match key {
                "timeline" => {
                    timeline =
                        Some(value.parse::<u32>().map_err(|_| {
                            format!("{MARKER_GUC}: timeline {value:?} is not a number")
                        })?)
                }
                "fork_lsn" => {
                    fork_lsn = Some(
                        crate::lsn::parse(value)
                            .ok_or_else(|| format!("{MARKER_GUC}: {value:?} is not an LSN"))?,
                    )
                }
                "site" => site = value.to_string(),
                "at" => at = value.to_string(),
                // Newer writers may add keys; readers ignore them.
                _ => {}
            }
        }
        match (timeline, fork_lsn) {
            (Some(timeline), Some(fork_lsn)) if timeline > 0 => Ok(PromotionMarker {
                timeline,
                fork_lsn,
                site,
                at,
            }),
            _ => Err(format!(
                "{MARKER_GUC}: {text:?} needs timeline=<n ≥ 1> and fork_lsn=<LSN>"
            )),
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "timeline={} fork_lsn={}",
            self.timeline,
            crate::lsn::format(self.fork_lsn)
        );
        if !self.site.is_empty() {
            s.push_str(&format!(" site={}", self.site));
        }
        if !self.at.is_empty() {
            s.push_str(&format!(" at={}", self.at));
        }
        s
    }
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
pub fn get(config: &Map<String, Value>) -> Result<Option<PromotionMarker>, String> {
    match config
        .get(POSTGRESQL)
        .and_then(|pg| pg.get(PARAMETERS))
        .and_then(|p| p.get(MARKER_GUC))
    {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => PromotionMarker::parse(s).map(Some),
        Some(other) => Err(format!("{MARKER_GUC} is {other}, not text")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn marker_round_trips_and_rejects_half_markers() {
        let m = PromotionMarker {
            timeline: 3,
            fork_lsn: 0x5000A28,
            site: "golddr".into(),
            at: "2026-11-30T16:00:00Z".into(),
        };
        assert_eq!(
            m.render(),
            "timeline=3 fork_lsn=0/5000A28 site=golddr at=2026-11-30T16:00:00Z"
        );
        assert_eq!(PromotionMarker::parse(&m.render()), Ok(m));
        for bad in [
            "timeline=3",
            "fork_lsn=0/1",
            "timeline=x fork_lsn=0/1",
            "timeline=0 fork_lsn=0/1",
            "timeline=3 fork_lsn=zz",
            "garbage",
        ] {
            assert!(PromotionMarker::parse(bad).is_err(), "{bad}");
        }
        // Unknown keys from a newer writer are ignored.
        assert!(PromotionMarker::parse("timeline=2 fork_lsn=1/0 reason=x").is_ok());
    }

    #[test]
    fn set_and_get_keep_every_other_key() {
        let m = PromotionMarker {
            timeline: 2,
            fork_lsn: 0x300,
            site: "golddr".into(),
            at: String::new(),
        };
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
            "timeline=2 fork_lsn=0/300 site=golddr"
        );
        assert_eq!(get(&cfg), Ok(Some(m)));
        cfg["postgresql"]["parameters"][MARKER_GUC] = json!(3);
        assert!(get(&cfg).is_err());
        let mut odd = json!({"postgresql": "x"}).as_object().cloned().unwrap();
        set(
            &mut odd,
            &PromotionMarker {
                timeline: 1,
                fork_lsn: 1,
                site: String::new(),
                at: String::new(),
            },
        );
        assert!(get(&odd).unwrap().is_some());
    }
}
