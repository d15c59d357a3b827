//! Which of two writable sites is authoritative: their identities and the promotion marker
//! ([`crate::marker`]).
//!
//! Both sites run the same database (one system identifier). A promotion leaves a marker naming
//! the timeline the promoted site left and the LSN where it left it (the fork). With it, a site
//! that sees its peer writable can tell "the peer was promoted from me" (the peer is
//! authoritative, I must stop taking writes) from "I was promoted from the peer" and from a case
//! it cannot judge alone (then only a witness may decide).
//!
//! Why a marker and not the timeline history: reading `<tli>.history` needs a replication
//! connection (`TIMELINE_HISTORY`) or file-read privileges; the marker needs neither, works with
//! the replication user the probe already has, and survives restarts with the dynamic config.
//!
//! The query that reads an identity ([`IDENTITY_SQL`]) is here; running it is I/O and lives in
//! `pgdr_core::lineage::identify`.

use std::fmt;

use serde::Serialize;

pub use crate::lsn::{format as format_lsn, parse as parse_lsn};
pub use crate::marker::{MARKER_GUC, PromotionMarker};

/// What one server says about itself (see [`IDENTITY_SQL`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub system_id: String,
    /// The timeline it writes (primary) or last checkpointed on (in recovery).
    pub timeline: u32,
    pub in_recovery: bool,
    /// Flush position (primary) or last replayed position (in recovery).
    pub wal_end: u64,
    /// Its promotion marker, if it has one.
    pub marker: Option<PromotionMarker>,
    /// The timelines it left and where (Patroni's cluster history, `/history` or the `history`
    /// annotation of `<scope>-config`); empty when unknown (always for a peer seen over SQL).
    pub history: Vec<HistoryEntry>,
}

/// One line of a timeline history: `timeline` ended at `switchpoint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub timeline: u32,
    pub switchpoint: u64,
}

impl Identity {
    /// Where this server left `timeline`: `Some(None)` while still on it, `Some(Some(lsn))` from
    /// its history, `None` when its history does not say.
    pub fn left(&self, timeline: u32) -> Option<Option<u64>> {
        if self.timeline == timeline {
            return Some(None);
        }
        self.history
            .iter()
            .find(|h| h.timeline == timeline)
            .map(|h| Some(h.switchpoint))
    }
}

/// PostgreSQL's own timeline history file (`pg_wal/0000000N.history`): one line per timeline
/// left, `parent-timeline <tab> switchpoint <tab> reason`; blank and `#` lines are skipped.
/// Unlike Patroni's cluster history it moves with the data: a re-cloned server has its source's.
pub fn parse_timeline_history(text: &str) -> Result<Vec<HistoryEntry>, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let mut fields = line.split_whitespace();
            let timeline = fields.next().and_then(|t| t.parse::<u32>().ok());
            let switchpoint = fields.next().and_then(parse_lsn);
            match (timeline, switchpoint) {
                (Some(timeline), Some(switchpoint)) => Ok(HistoryEntry {
                    timeline,
                    switchpoint,
                }),
                _ => Err(format!(
                    "timeline history line {line:?} is not \"<timeline> <lsn> <reason>\""
                )),
            }
        })
        .collect()
}

/// Patroni's cluster history (`GET /history`, or the `history` annotation of `<scope>-config`):
/// a JSON list of `[timeline, lsn, reason, time, new leader]`; numbers may come as strings.
pub fn parse_patroni_history(text: &str) -> Result<Vec<HistoryEntry>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("Patroni history is not JSON: {e}"))?;
    let lines = value
        .as_array()
        .ok_or_else(|| "Patroni history is not a JSON list".to_string())?;
    let number = |v: &serde_json::Value| -> Option<u64> {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    };
    lines
        .iter()
        .map(|line| {
            let timeline = line
                .get(0)
                .and_then(number)
                .and_then(|t| u32::try_from(t).ok());
            let switchpoint = line.get(1).and_then(number);
            match (timeline, switchpoint) {
                (Some(timeline), Some(switchpoint)) => Ok(HistoryEntry {
                    timeline,
                    switchpoint,
                }),
                _ => Err(format!(
                    "Patroni history line {line} has no timeline and LSN"
                )),
            }
        })
        .collect()
}

/// How two identities relate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lineage {
    /// Not the same database: never act on it.
    DifferentSystem,
    /// Both on one timeline: no fork visible.
    SameTimeline,
    /// The peer was promoted from our timeline at `fork_lsn`: the peer is authoritative.
    PeerForkedFromUs { fork_lsn: u64, timeline: u32 },
    /// We were promoted from the peer's timeline at `fork_lsn`: we are authoritative.
    WeForkedFromPeer { fork_lsn: u64, timeline: u32 },
    /// Timelines differ and no marker links them: no automatic authority.
    Unrelated,
    /// No proof either way (same or unrelated timelines), but the peer carries a promotion
    /// marker newer than ours: it was promoted later, most likely from us. Only
    /// [`lineage_for_advertising`] says this (the sidecar does not advertise such a member);
    /// [`lineage`] never does.
    PeerPromotedLater,
}

impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lineage::DifferentSystem => write!(f, "a different database (system identifier)"),
            Lineage::SameTimeline => write!(f, "the same timeline (no fork)"),
            Lineage::PeerForkedFromUs { fork_lsn, timeline } => write!(
                f,
                "the peer was promoted from our timeline {timeline} at {}",
                format_lsn(*fork_lsn)
            ),
            Lineage::WeForkedFromPeer { fork_lsn, timeline } => write!(
                f,
                "we were promoted from the peer's timeline {timeline} at {}",
                format_lsn(*fork_lsn)
            ),
            Lineage::Unrelated => write!(
                f,
                "different timelines with no promotion marker linking them"
            ),
            Lineage::PeerPromotedLater => write!(
                f,
                "no fork visible, but the peer carries a newer promotion marker than ours"
            ),
        }
    }
}

/// The rule. The peer is authoritative when its marker is the newer promotion (ours, if any,
/// names an older timeline), it moved on from the marker's timeline, and we wrote on that
/// timeline up to the fork or past it: still on it, or left it at or after the fork (Patroni
/// promotes a crashed primary that kept its lock onto a new timeline of its own, so "same
/// timeline number" alone proves nothing). A stale marker from an earlier round never matches:
/// our newer marker wins, and a timeline we never wrote on is not ours.
pub fn lineage(own: &Identity, peer: &Identity) -> Lineage {
    if own.system_id != peer.system_id {
        return Lineage::DifferentSystem;
    }
    let ours_is_newer = |m: &PromotionMarker| {
        own.marker
            .as_ref()
            .is_some_and(|o| o.timeline >= m.timeline)
    };
    if let Some(m) = &peer.marker
        && peer.timeline > m.timeline
        && !ours_is_newer(m)
        && match own.left(m.timeline) {
            Some(None) => true,
            Some(Some(left_at)) => left_at >= m.fork_lsn,
            None => false,
        }
    {
        return Lineage::PeerForkedFromUs {
            fork_lsn: m.fork_lsn,
            timeline: m.timeline,
        };
    }
    if let Some(m) = &own.marker
        && m.timeline == peer.timeline
        && own.timeline > peer.timeline
    {
        return Lineage::WeForkedFromPeer {
            fork_lsn: m.fork_lsn,
            timeline: peer.timeline,
        };
    }
    if own.timeline == peer.timeline {
        Lineage::SameTimeline
    } else {
        Lineage::Unrelated
    }
}

/// [`lineage`], refined for the question "may this member be advertised as the write target?":
/// where it proves nothing (same or unrelated timelines) but the peer carries a promotion marker
/// newer than ours (or we have none), the peer was most likely promoted from us:
/// [`Lineage::PeerPromotedLater`].
pub fn lineage_for_advertising(own: &Identity, peer: &Identity) -> Lineage {
    let l = lineage(own, peer);
    let peer_marker_newer = peer.marker.as_ref().is_some_and(|pm| {
        own.marker
            .as_ref()
            .is_none_or(|om| om.timeline < pm.timeline)
    });
    if peer_marker_newer && matches!(l, Lineage::SameTimeline | Lineage::Unrelated) {
        Lineage::PeerPromotedLater
    } else {
        l
    }
}

/// WAL a site wrote past the fork (0 when it stopped before it).
pub fn divergence_bytes(own_end: u64, fork_lsn: u64) -> u64 {
    own_end.saturating_sub(fork_lsn)
}

/// One query any login role may run (PostgreSQL ≥ 10): system identifier, in recovery, timeline
/// as 8 hex digits, WAL end, marker. On a primary the timeline comes from the current WAL file
/// name (exact right after a promotion, unlike `pg_control_checkpoint()`, which waits for the
/// next checkpoint); in recovery from the last checkpoint.
pub const IDENTITY_SQL: &str = concat!(
    "SELECT (SELECT system_identifier FROM pg_control_system())::text, \
     pg_is_in_recovery()::text, \
     CASE WHEN pg_is_in_recovery() \
          THEN lpad(to_hex((SELECT timeline_id FROM pg_control_checkpoint())), 8, '0') \
          ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END, \
     CASE WHEN pg_is_in_recovery() \
          THEN coalesce(pg_last_wal_replay_lsn(), pg_last_wal_receive_lsn())::text \
          ELSE pg_current_wal_flush_lsn()::text END, \
     current_setting('",
    crate::marker_guc!(),
    "', true)"
);

/// Builds an [`Identity`] from the row of [`IDENTITY_SQL`]. A present but unreadable marker is an
/// error: acting on half a marker is worse than not acting.
pub fn identity_from_row(cols: &[Option<&str>]) -> Result<Identity, String> {
    let col = |i: usize, what: &str| {
        cols.get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("the identity query returned no {what}"))
    };
    let system_id = col(0, "system identifier")?.to_string();
    let in_recovery = match col(1, "recovery state")? {
        "true" => true,
        "false" => false,
        other => return Err(format!("pg_is_in_recovery() returned {other:?}")),
    };
    let tli = col(2, "timeline")?;
    let timeline = u32::from_str_radix(tli, 16)
        .map_err(|_| format!("timeline {tli:?} is not 8 hex digits"))?;
    let end = col(3, "WAL position")?;
    let wal_end = parse_lsn(end).ok_or_else(|| format!("WAL position {end:?} is not an LSN"))?;
    let marker = match cols.get(4).copied().flatten().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(PromotionMarker::parse(text)?),
    };
    Ok(Identity {
        system_id,
        timeline,
        in_recovery,
        wal_end,
        marker,
        history: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(timeline: u32, marker: Option<(u32, u64)>) -> Identity {
        Identity {
            system_id: "7000".into(),
            timeline,
            in_recovery: false,
            wal_end: 0x6000000,
            marker: marker.map(|(timeline, fork_lsn)| PromotionMarker {
                timeline,
                fork_lsn,
                site: "x".into(),
                at: String::new(),
            }),
            history: Vec::new(),
        }
    }

    /// `id` with a history: (timeline, where it was left).
    fn with_history(mut i: Identity, lines: &[(u32, u64)]) -> Identity {
        i.history = lines
            .iter()
            .map(|&(timeline, switchpoint)| HistoryEntry {
                timeline,
                switchpoint,
            })
            .collect();
        i
    }

    #[test]
    fn lineage_table() {
        let other_system = Identity {
            system_id: "7001".into(),
            ..id(4, Some((3, 0x500)))
        };
        let rows: Vec<(&str, Identity, Identity, Lineage)> = vec![
            (
                "different database",
                id(3, None),
                other_system,
                Lineage::DifferentSystem,
            ),
            (
                "same timeline, no markers",
                id(3, None),
                id(3, None),
                Lineage::SameTimeline,
            ),
            (
                "peer promoted from our timeline",
                id(3, None),
                id(4, Some((3, 0x500))),
                Lineage::PeerForkedFromUs {
                    fork_lsn: 0x500,
                    timeline: 3,
                },
            ),
            (
                "we were promoted from the peer's timeline",
                id(4, Some((3, 0x500))),
                id(3, None),
                Lineage::WeForkedFromPeer {
                    fork_lsn: 0x500,
                    timeline: 3,
                },
            ),
            (
                "peer's marker names another timeline (stale, earlier round)",
                id(5, None),
                id(6, Some((3, 0x500))),
                Lineage::Unrelated,
            ),
            (
                "peer newer but no marker: no authority",
                id(3, None),
                id(4, None),
                Lineage::Unrelated,
            ),
            (
                "both promoted separately from timeline 3 (both on 4)",
                id(4, Some((3, 0x700))),
                id(4, Some((3, 0x500))),
                Lineage::SameTimeline,
            ),
            (
                "marker names our timeline but the peer is older (impossible order): no authority",
                id(5, None),
                id(4, Some((5, 0x500))),
                Lineage::Unrelated,
            ),
            (
                "we crash-restarted onto timeline 2 after the fork (Patroni promotes a crashed \
                 primary that kept its lock): the peer is still authoritative",
                with_history(id(2, None), &[(1, 0x900)]),
                id(2, Some((1, 0x500))),
                Lineage::PeerForkedFromUs {
                    fork_lsn: 0x500,
                    timeline: 1,
                },
            ),
            (
                "we left the marker's timeline before the fork: someone else wrote it, no authority",
                with_history(id(2, None), &[(1, 0x400)]),
                id(2, Some((1, 0x500))),
                Lineage::SameTimeline,
            ),
            (
                "our history is unknown and we moved on: no authority",
                id(3, None),
                id(2, Some((1, 0x500))),
                Lineage::Unrelated,
            ),
            (
                "failback: our marker (timeline 2) is newer than the peer's stale one (timeline 1)",
                with_history(id(3, Some((2, 0x800))), &[(1, 0x500), (2, 0x800)]),
                id(2, Some((1, 0x500))),
                Lineage::WeForkedFromPeer {
                    fork_lsn: 0x800,
                    timeline: 2,
                },
            ),
        ];
        for (name, own, peer, want) in rows {
            assert_eq!(lineage(&own, &peer), want, "{name}");
        }
    }

    #[test]
    fn advertising_refines_only_what_proves_nothing() {
        // Same timeline, the peer has a marker and we have none: promoted later.
        assert_eq!(
            lineage_for_advertising(&id(3, None), &id(3, Some((2, 0x500)))),
            Lineage::PeerPromotedLater
        );
        // Our marker is as new: nothing to refine.
        assert_eq!(
            lineage_for_advertising(&id(3, Some((2, 0x600))), &id(3, Some((2, 0x500)))),
            Lineage::SameTimeline
        );
        // A proof stays a proof.
        assert_eq!(
            lineage_for_advertising(&id(3, None), &id(4, Some((3, 0x500)))),
            Lineage::PeerForkedFromUs {
                fork_lsn: 0x500,
                timeline: 3
            }
        );
        // No marker on the peer: nothing to refine.
        assert_eq!(
            lineage_for_advertising(&id(3, None), &id(4, None)),
            Lineage::Unrelated
        );
    }

    #[test]
    fn identity_rows() {
        let ok = identity_from_row(&[
            Some("7713991272635035741"),
            Some("false"),
            Some("0000000A"),
            Some("0/1501260"),
            Some(""),
        ])
        .unwrap();
        assert_eq!(
            (ok.timeline, ok.wal_end, ok.in_recovery),
            (10, 0x1501260, false)
        );
        assert_eq!(ok.marker, None);
        let marked = identity_from_row(&[
            Some("1"),
            Some("true"),
            Some("00000004"),
            Some("0/6000000"),
            Some("timeline=3 fork_lsn=0/5000000"),
        ])
        .unwrap();
        assert_eq!(marked.marker.map(|m| m.fork_lsn), Some(0x5000000));
        // No marker setting at all (NULL) is fine; a broken one is not.
        assert!(
            identity_from_row(&[Some("1"), Some("true"), Some("1"), Some("0/1"), None]).is_ok()
        );
        assert!(
            identity_from_row(&[
                Some("1"),
                Some("true"),
                Some("1"),
                Some("0/1"),
                Some("timeline=")
            ])
            .is_err()
        );
        assert!(
            identity_from_row(&[Some("1"), Some("maybe"), Some("1"), Some("0/1"), None]).is_err()
        );
        assert!(
            identity_from_row(&[Some("1"), Some("true"), Some("zz"), Some("0/1"), None]).is_err()
        );
        assert!(identity_from_row(&[Some("1"), Some("true"), Some("1"), None, None]).is_err());
    }

    #[test]
    fn patroni_history() {
        let h = parse_patroni_history(
            r#"[[1, 25165984, "no recovery target specified", "2026-11-30T16:00:00+00:00", "golddr-0"], ["2", "33554592", "x"]]"#,
        )
        .unwrap();
        assert_eq!(
            h,
            vec![
                HistoryEntry {
                    timeline: 1,
                    switchpoint: 25165984
                },
                HistoryEntry {
                    timeline: 2,
                    switchpoint: 33554592
                }
            ]
        );
        assert_eq!(parse_patroni_history("[]").unwrap(), vec![]);
        assert!(parse_patroni_history("{}").is_err());
        assert!(parse_patroni_history("[[1]]").is_err());
        assert!(parse_patroni_history("nope").is_err());
    }

    #[test]
    fn lsn_text_and_divergence() {
        assert_eq!(parse_lsn("1/5000A28"), Some((1 << 32) | 0x5000A28));
        assert_eq!(format_lsn((1 << 32) | 0x5000A28), "1/5000A28");
        assert_eq!(parse_lsn("nope"), None);
        assert_eq!(divergence_bytes(0x6000000, 0x5000000), 0x1000000);
        assert_eq!(divergence_bytes(0x4000000, 0x5000000), 0);
    }

    #[test]
    fn postgres_timeline_history_files() {
        let text =
            "1\t0/302A438\tno recovery target specified\n\n2\t0/5000000\tat restore point \"x\"\n";
        assert_eq!(
            parse_timeline_history(text).unwrap(),
            vec![
                HistoryEntry {
                    timeline: 1,
                    switchpoint: 0x302A438
                },
                HistoryEntry {
                    timeline: 2,
                    switchpoint: 0x5000000
                },
            ]
        );
        assert_eq!(parse_timeline_history("").unwrap(), vec![]);
        let err = parse_timeline_history("1\tnot-an-lsn\treason").unwrap_err();
        assert!(err.contains("not-an-lsn"), "{err}");
    }
}
