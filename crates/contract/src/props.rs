//! Property tests of the authority rule (issue 21 item 5): the epoch, the promotion marker and
//! [`crate::lineage::lineage`], over generated identities and configs. The table tests next to
//! each module pin the named cases; these say what must hold for every input.
//!
//! (The mirror of "the peer is authoritative" / "we are" and "never yield to a lower epoch" are
//! `lineage::tests::authority_properties`; the properties here add the other verdicts, other
//! databases, timeline independence and what a promotion writes.)

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::epoch::{self, PeerEpoch};
use crate::lineage::{Identity, Lineage, lineage};
use crate::marker::{self, PromotionMarker};
use crate::promote::{self, Fork, Promotion};
use crate::slot::SlotName;

const CASES: u32 = 256;

fn marker_with(epoch: u64, timeline: u32, fork_lsn: u64, fork_pending: bool) -> PromotionMarker {
    PromotionMarker {
        epoch,
        timeline,
        fork_lsn,
        fork_pending,
        site: String::new(),
        at: String::new(),
    }
}

/// Markers as the pair writes them: epoch ≥ 1 (a marker without `epoch=` reads as its timeline,
/// ≥ 1), small ranges so that equal epochs and timelines are frequent.
fn any_marker() -> impl Strategy<Value = PromotionMarker> {
    (1u64..5, 1u32..6, 0u64..0x1000, any::<bool>()).prop_map(|(e, t, f, p)| marker_with(e, t, f, p))
}

/// An identity of one of two databases ("A" most often), with or without a marker.
fn any_identity() -> impl Strategy<Value = Identity> {
    (
        prop_oneof![4 => Just("A"), 1 => Just("B")],
        1u32..6,
        any::<bool>(),
        0u64..0x2000,
        proptest::option::of(any_marker()),
    )
        .prop_map(|(sys, timeline, in_recovery, wal_end, marker)| Identity {
            system_id: sys.to_string(),
            timeline,
            in_recovery,
            wal_end,
            marker,
        })
}

/// The verdict the other side must reach, given this side's.
fn mirrored(ab: &Lineage, ba: &Lineage) -> bool {
    match (ab, ba) {
        (
            Lineage::PeerAuthoritative {
                epoch,
                timeline,
                fork_lsn,
                ..
            },
            Lineage::WeAuthoritative {
                epoch: e2,
                timeline: t2,
                fork_lsn: f2,
            },
        )
        | (
            Lineage::WeAuthoritative {
                epoch: e2,
                timeline: t2,
                fork_lsn: f2,
            },
            Lineage::PeerAuthoritative {
                epoch,
                timeline,
                fork_lsn,
                ..
            },
        ) => (epoch, timeline, fork_lsn) == (e2, t2, f2),
        (Lineage::EpochTie { epoch, .. }, Lineage::EpochTie { epoch: e2, .. }) => epoch == e2,
        (Lineage::SameTimeline, Lineage::SameTimeline)
        | (Lineage::Unrelated, Lineage::Unrelated)
        | (Lineage::DifferentSystem, Lineage::DifferentSystem)
        | (Lineage::ForeignNewer { .. }, Lineage::DifferentSystem)
        | (Lineage::DifferentSystem, Lineage::ForeignNewer { .. }) => true,
        _ => false,
    }
}

fn config_with(own: Option<PromotionMarker>, seen: Option<u64>) -> Map<String, Value> {
    let mut c = json!({"ttl": 30, "standby_cluster": {"host": "h", "port": 5432}})
        .as_object()
        .cloned()
        .unwrap();
    if let Some(m) = own {
        marker::set(&mut c, &m);
    }
    if let Some(s) = seen {
        c.insert(crate::keys::EPOCH_SEEN.into(), Value::from(s));
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Every pair of identities gets a verdict on both sides, and the two verdicts are mirrors:
    /// "peer authoritative" ↔ "we authoritative" naming the same promotion (epoch, timeline,
    /// fork), ties and the no-promotion verdicts symmetric, "another database" on both sides
    /// (one side may know it was initialised afresh beside a promoted peer).
    #[test]
    fn verdicts_mirror_each_other(a in any_identity(), b in any_identity()) {
        let (ab, ba) = (lineage(&a, &b), lineage(&b, &a));
        prop_assert!(mirrored(&ab, &ba), "lineage(a,b) = {ab:?}, lineage(b,a) = {ba:?}");
    }

    /// A site without a marker (never promoted, or a fresh initialisation) never outranks a site
    /// with one: the marked site is never told to yield, and the fresh one always is (same
    /// database) or learns it was initialised afresh beside it (another database).
    #[test]
    fn a_fresh_site_never_outranks_a_promoted_one(
        fresh in any_identity(), m in any_marker(), promoted in any_identity(),
    ) {
        let fresh = Identity { marker: None, ..fresh };
        let promoted = Identity { marker: Some(m.clone()), ..promoted };
        let (fp, pf) = (lineage(&fresh, &promoted), lineage(&promoted, &fresh));
        prop_assert!(!pf.peer_authoritative(), "{pf:?}");
        if fresh.system_id == promoted.system_id {
            prop_assert!(fp.peer_authoritative(), "{fp:?}");
            prop_assert!(matches!(pf, Lineage::WeAuthoritative { .. }), "{pf:?}");
        } else {
            prop_assert_eq!(fp, Lineage::ForeignNewer { epoch: m.epoch });
            prop_assert_eq!(pf, Lineage::DifferentSystem);
        }
    }

    /// Another database is never an authority and never a tie: only "different system" (or, for
    /// a site never promoted, "initialised afresh beside it").
    #[test]
    fn another_database_is_never_an_authority(a in any_identity(), b in any_identity()) {
        prop_assume!(a.system_id != b.system_id);
        let ab = lineage(&a, &b);
        let foreign_newer_allowed = a.epoch() == 0 && b.epoch() > 0;
        match ab {
            Lineage::DifferentSystem => prop_assert!(!foreign_newer_allowed),
            Lineage::ForeignNewer { epoch } => {
                prop_assert!(foreign_newer_allowed);
                prop_assert_eq!(epoch, b.epoch());
            }
            other => prop_assert!(false, "another database judged as {other:?}"),
        }
    }

    /// Timeline numbers never decide authority: once either site carries a promotion, changing
    /// every timeline number (the identities' and the markers'), WAL position and recovery state
    /// leaves the kind of verdict unchanged.
    #[test]
    fn timeline_numbers_never_decide_authority(
        a in any_identity(), b in any_identity(),
        ta in 1u32..9, tb in 1u32..9, ma in 1u32..9, mb in 1u32..9,
        wa in 0u64..0x2000, wb in any::<u64>(),
    ) {
        prop_assume!(a.epoch() > 0 || b.epoch() > 0);
        let retimed = |id: &Identity, t: u32, mt: u32, w: u64| Identity {
            timeline: t,
            wal_end: w,
            in_recovery: !id.in_recovery,
            marker: id.marker.clone().map(|m| PromotionMarker { timeline: mt, ..m }),
            ..id.clone()
        };
        let (a2, b2) = (retimed(&a, ta, ma, wa), retimed(&b, tb, mb, wb));
        prop_assert_eq!(
            std::mem::discriminant(&lineage(&a, &b)),
            std::mem::discriminant(&lineage(&a2, &b2))
        );
    }

    /// The epoch a promotion writes is above everything the site has written or seen and above
    /// what it knows of the peer right now.
    #[test]
    fn the_next_epoch_is_above_everything_known(
        own in proptest::option::of(any_marker()),
        seen in proptest::option::of(0u64..8),
        peer_known in 0u64..8,
    ) {
        let c = config_with(own.clone(), seen);
        let n = epoch::next(&c, PeerEpoch::Read(peer_known));
        prop_assert!(n > own.map_or(0, |m| m.epoch));
        prop_assert!(n > seen.unwrap_or(0));
        prop_assert!(n > peer_known);
        prop_assert_eq!(n, epoch::known(&c).max(peer_known) + 1);
        // Unread: above what the site knows and not below the clock.
        let u = epoch::next(&c, PeerEpoch::Unread { now: peer_known * 3 });
        prop_assert!(u > epoch::known(&c) && u >= peer_known * 3);
    }

    /// `record_seen` never lowers what a site has seen, and reports a change exactly when it
    /// raised it.
    #[test]
    fn recording_a_seen_epoch_only_raises_it(
        seen in proptest::option::of(0u64..8), epochs in proptest::collection::vec(0u64..10, 1..6),
    ) {
        let mut c = config_with(None, seen);
        for e in epochs {
            let before = epoch::seen(&c);
            let changed = epoch::record_seen(&mut c, e);
            let after = epoch::seen(&c);
            prop_assert_eq!(after, before.max(e));
            prop_assert_eq!(changed, e > before);
        }
    }

    /// A promotion outranks everything it knew: after `promote::apply` on a site that knew the
    /// peer at `peer_known`, a peer whose marker is at most that epoch (or which has none) is
    /// told the promoted site is authoritative, and the promoted site is never told to yield.
    /// Its marker is pending (its switchpoint is not published yet) and names the fork given.
    #[test]
    fn a_promotion_outranks_everything_it_knew(
        own in proptest::option::of(any_marker()),
        seen in proptest::option::of(0u64..6),
        peer_marker in proptest::option::of(any_marker()),
        slack in 0u64..3,
        fork_tl in 1u32..6, fork_lsn in 0u64..0x2000, peer_tl in 1u32..9,
    ) {
        let mut c = config_with(own, seen);
        let peer_epoch = peer_marker.as_ref().map_or(0, |m| m.epoch);
        let who = Promotion { site: "golddr", at: String::new(), peer: PeerEpoch::Read(peer_epoch + slack) };
        let slot = SlotName::parse("pgdr_gold").unwrap();
        let written = promote::apply(&mut c, &slot, Fork { timeline: fork_tl, replayed: fork_lsn }, &who);
        prop_assert_eq!(marker::get(&c).unwrap(), Some(written.clone()));
        prop_assert_eq!(epoch::written(&c), written.epoch);
        prop_assert!(written.fork_pending);
        prop_assert_eq!((written.timeline, written.fork_lsn), (fork_tl, fork_lsn));
        prop_assert!(!crate::dynamic_config::is_standby_cluster(&c));
        let promoted = Identity {
            system_id: "A".into(),
            timeline: fork_tl + 1,
            in_recovery: false,
            wal_end: fork_lsn,
            marker: Some(written),
        };
        let peer = Identity {
            system_id: "A".into(),
            timeline: peer_tl,
            in_recovery: false,
            wal_end: 0,
            marker: peer_marker,
        };
        let (pp, qp) = (lineage(&promoted, &peer), lineage(&peer, &promoted));
        prop_assert!(matches!(pp, Lineage::WeAuthoritative { .. }), "{:?}", pp);
        prop_assert!(qp.peer_authoritative(), "{:?}", qp);
    }

    /// A fence present in the config means fenced, whatever its content: a reader that cannot
    /// understand the document must not make the member writable (only absent or null is "not
    /// fenced"); a readable one keeps what it does not know.
    #[test]
    fn a_present_fence_always_means_fenced(
        value in prop_oneof![
            Just(Value::Null),
            Just(json!("hold")),
            Just(json!(3)),
            Just(json!({"phase": "hold"})),
            Just(json!({"since": "2026-11-30T16:00:00Z", "reason": "galactic", "peer": "x",
                "phase": "something-new", "extra": 1})),
            Just(serde_json::to_value(crate::fence::Fence::hold(
                "2026-11-30T16:00:00Z".parse().unwrap(),
                crate::fence::FenceReason::Operator, "golddr")).unwrap()),
        ],
    ) {
        let mut c = config_with(None, None);
        c.insert(crate::keys::FENCE.into(), value.clone());
        let seen = crate::fence::seen(&c);
        prop_assert_eq!(seen.is_some(), !value.is_null());
        if let Ok(Some(f)) = crate::fence::read(&c) {
            // Keys a newer writer added are kept; a phase or reason this reader does not know
            // reads as `unknown`; a document this version wrote reads back unchanged.
            let back = serde_json::to_value(&f).unwrap();
            for (k, v) in value.as_object().unwrap() {
                if !["phase", "reason"].contains(&k.as_str()) {
                    prop_assert_eq!(back.get(k), Some(v), "{}", k);
                }
            }
            if f.phase != crate::fence::Phase::Unknown && f.reason != crate::fence::FenceReason::Unknown {
                prop_assert_eq!(back, value);
            }
        }
    }

    /// The marker's text is its only format: what `render` writes, `parse` reads back unchanged.
    #[test]
    fn a_marker_reads_back_as_written(
        m in any_marker(),
        site in proptest::option::of("[a-z][a-z0-9-]{0,12}"),
        at in proptest::option::of("20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z"),
        fork_lsn in any::<u64>(),
    ) {
        let m = PromotionMarker {
            fork_lsn,
            site: site.unwrap_or_default(),
            at: at.unwrap_or_default(),
            ..m
        };
        prop_assert_eq!(PromotionMarker::parse(&m.render()), Ok(m));
    }
}
