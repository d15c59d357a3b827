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
}

/// One line of a timeline history: `timeline` ended at `switchpoint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub timeline: u32,
    pub switchpoint: u64,
}

/// Why an identity row or a timeline history cannot be read: acting on half a document is worse
/// than not acting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the identity query returned no {0}")]
    Missing(&'static str),
    #[error("the identity query returned {what} {text:?}, which is not {expected}")]
    Malformed {
        what: &'static str,
        text: String,
        expected: &'static str,
    },
    #[error(transparent)]
    Marker(#[from] crate::marker::MarkerError),
    #[error("timeline history line {0:?} is not \"<timeline> <lsn> <reason>\"")]
    HistoryLine(String),
    #[error("Patroni history is not a JSON list of [timeline, lsn, ...]: {0}")]
    PatroniHistory(String),
}

/// PostgreSQL's own timeline history file (`pg_wal/0000000N.history`): one line per timeline
/// left, `parent-timeline <tab> switchpoint <tab> reason`; blank and `#` lines are skipped.
/// Unlike Patroni's cluster history it moves with the data: a re-cloned server has its source's.
pub fn parse_timeline_history(text: &str) -> Result<Vec<HistoryEntry>, ReadError> {
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
                _ => Err(ReadError::HistoryLine(line.to_string())),
            }
        })
        .collect()
}

/// Patroni's cluster history (`GET /history`, or the `history` annotation of `<scope>-config`):
/// a JSON list of `[timeline, lsn, reason, time, new leader]`; numbers may come as strings.
pub fn parse_patroni_history(text: &str) -> Result<Vec<HistoryEntry>, ReadError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ReadError::PatroniHistory(format!("not JSON ({e})")))?;
    let lines = value
        .as_array()
        .ok_or_else(|| ReadError::PatroniHistory("not a list".into()))?;
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
                _ => Err(ReadError::PatroniHistory(format!(
                    "line {line} has no timeline and LSN"
                ))),
            }
        })
        .collect()
}

/// How two identities relate. Authority is the higher promotion epoch ([`crate::epoch`]), never
/// the higher timeline number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Lineage {
    /// Not the same database: never act on it.
    DifferentSystem,
    /// Not the same database, this site never promoted (epoch 0) and the peer promoted: this site
    /// was most likely initialised afresh (a lost site rebuilt with its primary values) beside the
    /// authority. It must not be advertised or take writes; it is rebuilt as a standby of the
    /// peer (chart README "Rebuild a lost site").
    ForeignNewer { epoch: u64 },
    /// Neither site was ever promoted (epoch 0 both) and both are on one timeline.
    SameTimeline,
    /// The peer's promotion is the newer one (its epoch is higher): the peer is authoritative.
    /// It left `timeline` at `fork_lsn`; `fork_pending`: that is the position read before its
    /// promotion, not yet the switchpoint from its history (good for fencing, not for a rewind).
    PeerAuthoritative {
        epoch: u64,
        timeline: u32,
        fork_lsn: u64,
        fork_pending: bool,
    },
    /// Our promotion is the newer one: we are authoritative (we left `timeline` at `fork_lsn`).
    WeAuthoritative {
        epoch: u64,
        timeline: u32,
        fork_lsn: u64,
    },
    /// Neither site was ever promoted (epoch 0 both) and the timelines differ: no authority.
    Unrelated,
    /// Both sites carry promotions of the same epoch: two promotions that did not know of each
    /// other. Neither is the authority; neither may be advertised until a person settles it.
    /// `timeline`, `fork_lsn`, `fork_pending`: where the *peer* left its timeline (its marker),
    /// the fork a person's fence of this site rejoins against (the peer is then the authority by
    /// that person's word).
    EpochTie {
        epoch: u64,
        timeline: u32,
        fork_lsn: u64,
        fork_pending: bool,
    },
}

impl Lineage {
    /// The peer is the authority (whatever its fork's state).
    pub fn peer_authoritative(&self) -> bool {
        matches!(self, Lineage::PeerAuthoritative { .. })
    }
}

impl fmt::Display for Lineage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lineage::DifferentSystem => write!(f, "a different database (system identifier)"),
            Lineage::ForeignNewer { epoch } => write!(
                f,
                "a different database (system identifier) at a higher promotion epoch ({epoch}): \
                 this site was initialised afresh beside the authority"
            ),
            Lineage::SameTimeline => write!(f, "the same timeline (no promotion on either site)"),
            Lineage::PeerAuthoritative {
                epoch,
                timeline,
                fork_lsn,
                fork_pending,
            } => write!(
                f,
                "the peer's promotion is newer (epoch {epoch}; it left timeline {timeline} at {}{})",
                format_lsn(*fork_lsn),
                if *fork_pending {
                    ", switchpoint not yet published"
                } else {
                    ""
                }
            ),
            Lineage::WeAuthoritative {
                epoch,
                timeline,
                fork_lsn,
            } => write!(
                f,
                "our promotion is newer (epoch {epoch}; we left timeline {timeline} at {})",
                format_lsn(*fork_lsn)
            ),
            Lineage::Unrelated => write!(
                f,
                "different timelines and no promotion on either site (no authority)"
            ),
            Lineage::EpochTie { epoch, .. } => write!(
                f,
                "both sites were promoted at epoch {epoch} (two promotions that did not know of \
                 each other): no authority until a person settles it"
            ),
        }
    }
}

impl Identity {
    /// The epoch of this server's promotion marker (0: never promoted).
    pub fn epoch(&self) -> u64 {
        self.marker.as_ref().map_or(0, |m| m.epoch)
    }
}

/// The rule: the higher epoch is the authority; equal epochs above zero are a tie; with no
/// promotion on either side only "same timeline or not" is said. Timeline numbers are never
/// compared to decide authority (each site numbers its own: a crash restart or an in-site
/// failover moves one of them on).
pub fn lineage(own: &Identity, peer: &Identity) -> Lineage {
    if own.system_id != peer.system_id {
        // Only a site never promoted (epoch 0) can be a fresh initialisation; a promoted one
        // facing another database is a misdirected tunnel, never a reason to stop.
        return if own.epoch() == 0 && peer.epoch() > 0 {
            Lineage::ForeignNewer {
                epoch: peer.epoch(),
            }
        } else {
            Lineage::DifferentSystem
        };
    }
    match (&own.marker, &peer.marker) {
        (_, Some(p)) if p.epoch > own.epoch() => Lineage::PeerAuthoritative {
            epoch: p.epoch,
            timeline: p.timeline,
            fork_lsn: p.fork_lsn,
            fork_pending: p.fork_pending,
        },
        (Some(o), _) if o.epoch > peer.epoch() => Lineage::WeAuthoritative {
            epoch: o.epoch,
            timeline: o.timeline,
            fork_lsn: o.fork_lsn,
        },
        (Some(o), Some(p)) if o.epoch > 0 => Lineage::EpochTie {
            epoch: o.epoch,
            timeline: p.timeline,
            fork_lsn: p.fork_lsn,
            fork_pending: p.fork_pending,
        },
        _ if own.timeline == peer.timeline => Lineage::SameTimeline,
        _ => Lineage::Unrelated,
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
pub fn identity_from_row(cols: &[Option<&str>]) -> Result<Identity, ReadError> {
    let col = |i: usize, what: &'static str| {
        cols.get(i)
            .copied()
            .flatten()
            .ok_or(ReadError::Missing(what))
    };
    let malformed = |what, text: &str, expected| ReadError::Malformed {
        what,
        text: text.to_string(),
        expected,
    };
    let system_id = col(0, "system identifier")?.to_string();
    let in_recovery = match col(1, "recovery state")? {
        "true" => true,
        "false" => false,
        other => return Err(malformed("pg_is_in_recovery()", other, "true or false")),
    };
    let tli = col(2, "timeline")?;
    let timeline =
        u32::from_str_radix(tli, 16).map_err(|_| malformed("timeline", tli, "8 hex digits"))?;
    let end = col(3, "WAL position")?;
    let wal_end = parse_lsn(end).ok_or_else(|| malformed("WAL position", end, "an LSN"))?;
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An identity on `timeline` with a marker `(epoch, marker timeline, fork)`.
    fn id(timeline: u32, marker: Option<(u64, u32, u64)>) -> Identity {
        Identity {
            system_id: "7000".into(),
            timeline,
            in_recovery: false,
            wal_end: 0x6000000,
            marker: marker.map(|(epoch, timeline, fork_lsn)| PromotionMarker {
                epoch,
                timeline,
                fork_lsn,
                fork_pending: false,
                site: "x".into(),
                at: String::new(),
            }),
        }
    }

    fn peer_auth(epoch: u64, timeline: u32, fork_lsn: u64) -> Lineage {
        Lineage::PeerAuthoritative {
            epoch,
            timeline,
            fork_lsn,
            fork_pending: false,
        }
    }

    #[test]
    fn lineage_table() {
        let other_system = Identity {
            system_id: "7001".into(),
            ..id(4, Some((1, 3, 0x500)))
        };
        let rows: Vec<(&str, Identity, Identity, Lineage)> = vec![
            (
                "different database, not promoted later than us",
                id(3, Some((1, 2, 0x100))),
                other_system.clone(),
                Lineage::DifferentSystem,
            ),
            (
                "issue 20 item 11: a site initialised afresh (epoch 0) beside a promoted peer",
                id(1, None),
                other_system,
                Lineage::ForeignNewer { epoch: 1 },
            ),
            (
                "same timeline, never promoted",
                id(3, None),
                id(3, None),
                Lineage::SameTimeline,
            ),
            (
                "the peer was promoted (epoch 1), we never were",
                id(3, None),
                id(4, Some((1, 3, 0x500))),
                peer_auth(1, 3, 0x500),
            ),
            (
                "we were promoted",
                id(4, Some((1, 3, 0x500))),
                id(3, None),
                Lineage::WeAuthoritative {
                    epoch: 1,
                    timeline: 3,
                    fork_lsn: 0x500,
                },
            ),
            (
                "never promoted, timelines differ (an in-site failover): no authority",
                id(3, None),
                id(4, None),
                Lineage::Unrelated,
            ),
            (
                "issue item 1: our promotion (epoch 3) is newer though the peer's marker names a \
                 higher timeline than ours",
                id(4, Some((3, 1, 0x300))),
                id(4, Some((2, 2, 0x800))),
                Lineage::WeAuthoritative {
                    epoch: 3,
                    timeline: 1,
                    fork_lsn: 0x300,
                },
            ),
            (
                "issue item 2: the peer's marker names a timeline we left by an in-site failover; \
                 its epoch still makes it the authority",
                id(6, Some((1, 2, 0x100))),
                id(6, Some((2, 5, 0x500))),
                peer_auth(2, 5, 0x500),
            ),
            (
                "two promotions from the same epoch: a tie, neither is the authority",
                id(4, Some((2, 3, 0x700))),
                id(4, Some((2, 3, 0x500))),
                Lineage::EpochTie {
                    epoch: 2,
                    timeline: 3,
                    fork_lsn: 0x500,
                    fork_pending: false,
                },
            ),
            (
                "we crash-restarted onto a timeline of our own: the peer's epoch still decides",
                id(2, None),
                id(2, Some((1, 1, 0x500))),
                peer_auth(1, 1, 0x500),
            ),
            (
                "a pending fork is passed on",
                id(1, None),
                Identity {
                    marker: Some(PromotionMarker {
                        fork_pending: true,
                        ..PromotionMarker::parse("epoch=1 timeline=1 fork_lsn=0/10").unwrap()
                    }),
                    ..id(2, None)
                },
                Lineage::PeerAuthoritative {
                    epoch: 1,
                    timeline: 1,
                    fork_lsn: 0x10,
                    fork_pending: true,
                },
            ),
        ];
        for (name, own, peer, want) in rows {
            assert_eq!(lineage(&own, &peer), want, "{name}");
        }
    }

    /// Any two identities of one database: at most one side is the authority, the two sides'
    /// verdicts mirror each other, and a lower epoch never outranks a higher one.
    mod authority_properties {
        use super::*;
        use proptest::prelude::*;

        fn identity() -> impl Strategy<Value = Identity> {
            (
                1u32..6,
                proptest::option::of((0u64..5, 1u32..6, 0u64..0x1000, any::<bool>())),
            )
                .prop_map(|(timeline, m)| Identity {
                    marker: m.map(|(epoch, t, fork_lsn, fork_pending)| PromotionMarker {
                        epoch,
                        timeline: t,
                        fork_lsn,
                        fork_pending,
                        site: String::new(),
                        at: String::new(),
                    }),
                    ..id(timeline, None)
                })
        }

        proptest! {
            #[test]
            fn at_most_one_authority(a in identity(), b in identity()) {
                let (ab, ba) = (lineage(&a, &b), lineage(&b, &a));
                // a says "the peer is authoritative" exactly when b says "we are".
                prop_assert_eq!(ab.peer_authoritative(),
                    matches!(ba, Lineage::WeAuthoritative { .. }));
                prop_assert_eq!(ba.peer_authoritative(),
                    matches!(ab, Lineage::WeAuthoritative { .. }));
                prop_assert!(!(ab.peer_authoritative() && ba.peer_authoritative()));
                // Ties are symmetric.
                prop_assert_eq!(matches!(ab, Lineage::EpochTie { .. }),
                    matches!(ba, Lineage::EpochTie { .. }));
            }

            #[test]
            fn never_told_to_yield_to_a_lower_epoch(a in identity(), b in identity()) {
                if lineage(&a, &b).peer_authoritative() {
                    prop_assert!(b.epoch() > a.epoch());
                }
                if b.epoch() > a.epoch() {
                    prop_assert!(lineage(&a, &b).peer_authoritative());
                }
            }
        }
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
        assert!(err.to_string().contains("not-an-lsn"), "{err}");
    }
}
