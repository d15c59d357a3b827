//! Pure readiness rules: from the last poll of Patroni (and the last peer check) to ready /
//! primary verdicts, the fence and the split-brain latch.

use std::time::Duration;

use serde::Serialize;

pub use pgdr_core::contract::fence::{Fence, Seen as FenceSeen};
pub use pgdr_core::contract::lineage::Lineage;
pub use pgdr_core::contract::role::Role;
pub use pgdr_core::contract::vouch::Vouch;

pub use crate::reason::Reason;

/// What one successful poll of Patroni said about this member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberView {
    pub member: Option<String>,
    pub scope: Option<String>,
    /// PostgreSQL state: `running`, `stopped`, `starting`, …
    pub state: String,
    pub role: Role,
    pub timeline: Option<u64>,
    /// Bytes behind the leader (replicas; from `/cluster`), when known.
    pub lag_bytes: Option<u64>,
    /// Whether the dynamic config makes this a standby cluster, when known.
    pub standby_cluster: Option<bool>,
    pub replication_state: Option<String>,
    pub paused: bool,
    /// No member holds the leader lock.
    pub cluster_unlocked: bool,
    /// `pgdr_fence` of the dynamic config: the site fenced itself (the peer is authoritative).
    /// `None` when absent or when `/config` could not be read.
    pub fence: Option<FenceSeen>,
    /// `pgdr_peer_vouch` of the dynamic config: evidence that the peer did not promote past this
    /// site ([`Vouch`]); `None` when absent, unreadable, or `/config` could not be read.
    pub vouch: Option<Vouch>,
    /// This site's promotion epoch (its marker; 0: never promoted or `/config` unreadable).
    pub epoch: u64,
    /// When this site's promotion marker was written, when it has one.
    pub promoted_at: Option<jiff::Timestamp>,
}

impl MemberView {
    /// A writable primary by Patroni's account: role primary, running, holding the leader lock,
    /// not a standby cluster. Fence and latch are applied on top by [`decide`].
    pub fn writable_primary(&self) -> bool {
        self.role == Role::Primary
            && self.state == "running"
            && !self.cluster_unlocked
            && self.standby_cluster != Some(true)
    }

    /// The role shown in `/status` and `pgdr_role`: `fenced` wins over Patroni's role.
    pub fn shown_role(&self) -> &str {
        if self.fence.is_some() {
            "fenced"
        } else {
            self.role.as_str()
        }
    }

    /// Replication broken, as far as this member can see: it should receive WAL (a standby
    /// leader or a replica with PostgreSQL running) but its WAL receiver is not streaming. The
    /// sidecar sees only its own Patroni, so this does not say why (primary site down, tunnel
    /// cut, or the stream rejected while the primary answers); the failover CronJob, which also
    /// probes the primary, tells those apart (its `ReplicationBroken` Event).
    pub fn replication_broken(&self) -> bool {
        self.replicates() && self.replication_state.as_deref() != Some("streaming")
    }

    /// A standby leader or replica with PostgreSQL running.
    pub fn replicates(&self) -> bool {
        matches!(self.role, Role::StandbyLeader | Role::Replica) && self.state == "running"
    }

    /// A running standby whose WAL receiver streams.
    pub fn streams(&self) -> bool {
        self.replicates() && self.replication_state.as_deref() == Some("streaming")
    }
}

/// The outcome of the latest poll.
#[derive(Clone, Debug, PartialEq, Eq)]
// One value per poll, held in one snapshot: the size difference costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Poll {
    NotYet,
    Reachable(MemberView),
    Unreachable(String),
}

/// The result of one check of the peer through the tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerCheck {
    /// Not configured (no `READINESS_PEER_HOST`, or switched off).
    Off,
    /// Not checked: this member is not a writable primary.
    Idle,
    /// The peer or our own PostgreSQL did not answer (reason says which).
    Failed(String),
    Seen {
        /// The peer is out of recovery (`pg_is_in_recovery()` false).
        writable: bool,
        lineage: Lineage,
        /// WAL we wrote past the fork point (0 unless the peer forked from us).
        divergence_bytes: u64,
    },
}

/// Why `/primary` answers 503 for good: the peer is writable and was promoted from our
/// timeline. Cleared only once this member has been seen as a standby (standby leader, a member
/// of a standby cluster) or fenced, so a later primary role comes from a deliberate switchover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Latch {
    pub since: String,
    pub fork_lsn: String,
    pub timeline: u32,
    pub divergence_bytes: u64,
}

/// The latch after this poll / peer check.
pub fn next_latch(
    prev: Option<Latch>,
    poll: &Poll,
    peer: &PeerCheck,
    now: jiff::Timestamp,
) -> Option<Latch> {
    let Poll::Reachable(m) = poll else {
        return prev; // nothing new known about this member: keep what we had
    };
    if m.fence.is_some() || m.standby_cluster == Some(true) || m.role == Role::StandbyLeader {
        return None;
    }
    match (m.writable_primary(), peer) {
        (
            true,
            PeerCheck::Seen {
                writable: true,
                lineage:
                    Lineage::PeerAuthoritative {
                        fork_lsn, timeline, ..
                    },
                divergence_bytes,
            },
        ) => Some(prev.unwrap_or_else(|| Latch {
            since: now.to_string(),
            fork_lsn: lsn_string(*fork_lsn),
            timeline: *timeline,
            divergence_bytes: *divergence_bytes,
        })),
        _ => prev,
    }
}

/// Both sites writable: this member is a writable primary and the peer said it is one too.
pub fn split_brain(poll: &Poll, peer: &PeerCheck) -> bool {
    matches!(poll, Poll::Reachable(m) if m.writable_primary() && m.fence.is_none())
        && matches!(peer, PeerCheck::Seen { writable: true, .. })
}

/// LSN text forms, shared with the lineage rules.
pub use pgdr_core::lineage::{format_lsn as lsn_string, parse_lsn};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub ready_roles: Vec<Role>,
    pub max_lag_bytes: u64,
    pub stale_after: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `/ready`: this member can serve its role.
    pub ready: bool,
    /// `/primary`: a writable primary runs here.
    pub primary: bool,
    pub reason: Reason,
}

impl Verdict {
    fn no(reason: Reason) -> Verdict {
        Verdict {
            ready: false,
            primary: false,
            reason,
        }
    }

    /// The reason wrapped by what overrides it.
    fn wrap(&mut self, wrap: impl FnOnce(Box<Reason>) -> Reason) {
        let role = std::mem::replace(&mut self.reason, Reason::NotPolled);
        self.reason = wrap(Box::new(role));
    }
}

/// `age` is the time since the poll in `poll` completed; `latch` the split-brain latch;
/// `withheld`: why a writable primary is not advertised on `/primary` although nothing is
/// proven against it ([`withheld`]).
pub fn decide(
    poll: &Poll,
    age: Duration,
    rules: &Rules,
    latch: Option<&Latch>,
    withheld: Option<&'static str>,
) -> Verdict {
    let mut v = decide_role(poll, age, rules);
    if let Poll::Reachable(m) = poll
        && let Some(f) = &m.fence
    {
        // Fenced: never a write target; /ready follows the standby rules of its Patroni role.
        v.primary = false;
        v.wrap(|role| match f {
            FenceSeen::Readable(f) => Reason::Fenced {
                reason: f.reason,
                peer: f.peer.clone(),
                phase: f.phase,
                role,
            },
            FenceSeen::Unreadable { unreadable } => Reason::FencedUnreadable {
                unreadable: unreadable.clone(),
                role,
            },
        });
    } else if let Some(l) = latch {
        // Not ready either: the pod leaves this site's Services, so clients in this cluster stop
        // writing rows that the rejoin would discard (the agent fences it within its samples).
        v.primary = false;
        v.ready = false;
        v.wrap(|role| Reason::SplitBrain {
            timeline: l.timeline,
            fork_lsn: l.fork_lsn.clone(),
            since: l.since.clone(),
            role,
        });
    } else if let Some(why) = withheld
        && v.primary
    {
        v.primary = false;
        v.wrap(|role| Reason::Withheld { why, role });
    }
    v
}

/// Peer checks completed since this member became a writable primary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checks {
    /// A check reached the peer (whatever it said).
    pub seen: bool,
    /// Checks that did not reach it.
    pub failed: u32,
    /// The last check that reached the peer found it writable with a promotion epoch not below
    /// ours (a tie, [`Lineage::EpochTie`], or newer). A failed check in between changes nothing:
    /// a timed-out check is no news that the peer stopped being writable.
    pub contested: bool,
    /// A [`Vouch`] taken since this member became primary was seen (sticky, like `seen`).
    pub vouched: bool,
}

impl Checks {
    /// After one more completed check.
    pub fn after(self, check: &PeerCheck) -> Checks {
        match check {
            PeerCheck::Seen {
                writable, lineage, ..
            } => Checks {
                seen: true,
                contested: *writable
                    && matches!(
                        lineage,
                        Lineage::EpochTie { .. }
                            | Lineage::PeerAuthoritative { .. }
                            | Lineage::ForeignNewer { .. }
                    ),
                ..self
            },
            PeerCheck::Failed(_) => Checks {
                failed: self.failed.saturating_add(1),
                ..self
            },
            PeerCheck::Off | PeerCheck::Idle => self,
        }
    }
}

/// Why a writable, unlatched primary is not advertised on `/primary`: until there is evidence
/// that its peer did not promote past it since it became one — a peer check that reached the
/// peer, or a [`Vouch`] taken since (the failover agent read the peer's config through the
/// peer's API; a person ran `kubectl pgdr advertise`) — so a primary coming back beside a
/// promoted peer is never advertised, not even for one poll and not after any number of failed
/// checks (a GSLB that prefers this site would send the application back to stale data); and
/// while the peer is writable at the same promotion epoch (two promotions that did not know of
/// each other: a person settles it) or a newer one, through failed checks until a check sees
/// otherwise. `since_primary` includes `peer`, the latest check. `None` once nothing speaks
/// against it.
pub fn withheld(primary: bool, since_primary: Checks, peer: &PeerCheck) -> Option<&'static str> {
    if !primary || matches!(peer, PeerCheck::Off) {
        return None;
    }
    if !since_primary.seen && !since_primary.vouched {
        return Some(UNSEEN);
    }
    since_primary.contested.then_some(
        "the peer is writable too and its promotion epoch is not below ours (a tie: settle it \
         with `kubectl pgdr fence SITE` on the site to discard; another database at a higher \
         epoch: this site was initialised afresh, rebuild it as a standby)",
    )
}

/// [`withheld`]'s reason while there is no evidence about the peer yet.
pub const UNSEEN: &str = "no evidence yet that the peer did not promote past this primary (no \
     peer check has reached it since it became primary, and no vouch from the failover agent's \
     peer-API check or `kubectl pgdr advertise SITE`)";

fn decide_role(poll: &Poll, age: Duration, rules: &Rules) -> Verdict {
    let m = match poll {
        Poll::NotYet => return Verdict::no(Reason::NotPolled),
        Poll::Unreachable(e) => return Verdict::no(Reason::PatroniUnreachable(e.clone())),
        Poll::Reachable(m) => m,
    };
    if age > rules.stale_after {
        return Verdict::no(Reason::StalePoll(age.as_secs()));
    }
    if m.state != "running" {
        return Verdict::no(Reason::NotRunning(m.state.clone()));
    }
    let allowed = rules.ready_roles.contains(&m.role);
    let role = m.role.as_str();
    match &m.role {
        Role::Primary => {
            // Without the leader lock Patroni is about to demote it; in a standby cluster it would
            // be read-only. Either way it must not attract writes.
            let primary = m.writable_primary();
            let reason = if primary {
                Reason::RunningPrimary
            } else if m.cluster_unlocked {
                Reason::PrimaryUnlocked
            } else {
                Reason::PrimaryInStandbyCluster
            };
            Verdict {
                ready: allowed,
                primary,
                reason: if allowed {
                    reason
                } else {
                    Reason::PrimaryRoleNotReady(Box::new(reason))
                },
            }
        }
        _ if !allowed => Verdict::no(Reason::RoleNotReady(role.to_string())),
        Role::StandbyLeader => Verdict {
            ready: true,
            primary: false,
            reason: Reason::StandbyLeader,
        },
        Role::Replica => match m.lag_bytes {
            Some(lag) if lag <= rules.max_lag_bytes => Verdict {
                ready: true,
                primary: false,
                reason: Reason::ReplicaWithin {
                    lag,
                    max: rules.max_lag_bytes,
                },
            },
            Some(lag) => Verdict::no(Reason::ReplicaOver {
                lag,
                max: rules.max_lag_bytes,
            }),
            None => Verdict::no(Reason::ReplicaLagUnknown),
        },
        Role::Other(r) => Verdict::no(Reason::CannotServe(r.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(state: &str, role: &str, lag: Option<u64>) -> Poll {
        Poll::Reachable(MemberView {
            member: Some("pg-0".into()),
            scope: Some("demo".into()),
            state: state.into(),
            role: Role::parse(role),
            timeline: Some(1),
            lag_bytes: lag,
            standby_cluster: Some(role == "standby_leader"),
            replication_state: None,
            paused: false,
            cluster_unlocked: false,
            fence: None,
            vouch: None,
            epoch: 0,
            promoted_at: None,
        })
    }

    fn view(p: Poll) -> MemberView {
        match p {
            Poll::Reachable(m) => m,
            _ => unreachable!(),
        }
    }

    fn fenced(role: &str, lag: Option<u64>) -> Poll {
        Poll::Reachable(MemberView {
            fence: Some(FenceSeen::Readable(Fence::hold(
                "2026-11-30T16:00:00Z".parse().unwrap(),
                pgdr_core::contract::fence::FenceReason::PeerAuthoritative,
                "golddr",
            ))),
            ..view(member("running", role, lag))
        })
    }

    fn rules() -> Rules {
        Rules {
            ready_roles: vec![Role::Primary, Role::StandbyLeader, Role::Replica],
            max_lag_bytes: 1000,
            stale_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn table() {
        let fresh = Duration::from_secs(1);
        let unlocked = Poll::Reachable(MemberView {
            cluster_unlocked: true,
            ..match member("running", "primary", None) {
                Poll::Reachable(m) => m,
                _ => unreachable!(),
            }
        });
        let leaders_only = Rules {
            ready_roles: vec![Role::Primary, Role::StandbyLeader],
            ..rules()
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, Poll, Duration, Rules, bool, bool)> = vec![
            // name, poll, age, rules, ready, primary
            ("primary", member("running", "primary", None), fresh, rules(), true, true),
            ("old Patroni says master", member("running", "master", None), fresh, rules(), true, true),
            ("primary without lock", unlocked, fresh, rules(), true, false),
            ("standby leader", member("running", "standby_leader", None), fresh, rules(), true, false),
            ("replica in lag limit", member("running", "replica", Some(1000)), fresh, rules(), true, false),
            ("replica over lag limit", member("running", "replica", Some(1001)), fresh, rules(), false, false),
            ("replica lag unknown", member("running", "replica", None), fresh, rules(), false, false),
            ("replica when only leaders may be ready", member("running", "replica", Some(0)), fresh, leaders_only.clone(), false, false),
            ("primary when only leaders may be ready", member("running", "primary", None), fresh, leaders_only, true, true),
            ("stopped", member("stopped", "replica", Some(0)), fresh, rules(), false, false),
            ("starting", member("starting", "primary", None), fresh, rules(), false, false),
            ("creating replica", member("creating replica", "uninitialized", None), fresh, rules(), false, false),
            ("demoted", member("running", "demoted", None), fresh, rules(), false, false),
            ("unreachable", Poll::Unreachable("connection refused".into()), fresh, rules(), false, false),
            ("not polled yet", Poll::NotYet, fresh, rules(), false, false),
            ("stale primary", member("running", "primary", None), Duration::from_secs(11), rules(), false, false),
        ];
        for (name, poll, age, rules, ready, primary) in cases {
            let v = decide(&poll, age, &rules, None, None);
            assert_eq!((v.ready, v.primary), (ready, primary), "{name}: {v:?}");
            assert!(!v.reason.to_string().is_empty(), "{name}");
        }
    }

    #[test]
    fn replication_broken_table() {
        let cases = [
            ("standby_leader", "running", Some("streaming"), false),
            ("standby_leader", "running", None, true),
            ("standby_leader", "running", Some("stopped"), true),
            ("replica", "running", Some("streaming"), false),
            ("replica", "running", Some("in archive recovery"), true),
            // Not replicating by role, or PostgreSQL not running: nothing to say.
            ("primary", "running", None, false),
            ("standby_leader", "starting", None, false),
        ];
        for (role, state, stream, want) in cases {
            let Poll::Reachable(mut m) = member(state, role, None) else {
                unreachable!()
            };
            m.replication_state = stream.map(str::to_string);
            assert_eq!(m.replication_broken(), want, "{role} {state} {stream:?}");
        }
    }

    #[test]
    fn reasons_say_why() {
        let v = decide(
            &Poll::Unreachable("timeout".into()),
            Duration::ZERO,
            &rules(),
            None,
            None,
        );
        assert_eq!(v.reason.to_string(), "Patroni unreachable: timeout");
        let v = decide(
            &member("running", "replica", Some(5000)),
            Duration::ZERO,
            &rules(),
            None,
            None,
        );
        let reason = v.reason.to_string();
        assert!(
            reason.contains("5000") && reason.contains("1000"),
            "{reason}"
        );
    }

    #[test]
    fn fence_table() {
        let latch = Latch {
            since: "2026-11-30T16:00:00Z".into(),
            fork_lsn: "0/5000A28".into(),
            timeline: 3,
            divergence_bytes: 10,
        };
        let fresh = Duration::from_secs(1);
        #[rustfmt::skip]
        type Case<'a> = (&'a str, Poll, Option<&'a Latch>, bool, bool, &'a str);
        let cases: Vec<Case> = vec![
            // name, poll, latch, ready, primary, shown role
            (
                "fenced primary still demoting",
                fenced("primary", None),
                None,
                true,
                false,
                "fenced",
            ),
            (
                "fenced standby leader",
                fenced("standby_leader", None),
                None,
                true,
                false,
                "fenced",
            ),
            (
                "fenced replica within lag",
                fenced("replica", Some(10)),
                None,
                true,
                false,
                "fenced",
            ),
            (
                "fenced replica over lag",
                fenced("replica", Some(5000)),
                None,
                false,
                false,
                "fenced",
            ),
            (
                "latched primary: neither a write target nor in the Services",
                member("running", "primary", None),
                Some(&latch),
                false,
                false,
                "primary",
            ),
            (
                "unlatched primary",
                member("running", "primary", None),
                None,
                true,
                true,
                "primary",
            ),
            (
                "latch does not make a stopped member ready",
                member("stopped", "primary", None),
                Some(&latch),
                false,
                false,
                "primary",
            ),
        ];
        for (name, poll, latch, ready, primary, role) in cases {
            let v = decide(&poll, fresh, &rules(), latch, None);
            assert_eq!((v.ready, v.primary), (ready, primary), "{name}: {v:?}");
            assert_eq!(view(poll.clone()).shown_role(), role, "{name}");
            let reason = v.reason.to_string();
            if latch.is_some() {
                assert!(
                    reason.contains("split brain") && reason.contains("0/5000A28"),
                    "{name}: {reason}"
                );
            }
            if view(poll).fence.is_some() {
                assert!(
                    reason.starts_with(
                        "fenced (peer-authoritative, peer golddr authoritative, phase hold)"
                    ),
                    "{name}: {reason}"
                );
            }
        }
    }

    #[test]
    fn a_primary_is_withheld_until_checked_and_while_the_peer_ties_or_outranks_it() {
        let seen = |lineage| PeerCheck::Seen {
            writable: true,
            lineage,
            divergence_bytes: 0,
        };
        let later = seen(Lineage::EpochTie {
            epoch: 2,
            timeline: 1,
            fork_lsn: 0x100,
            fork_pending: false,
        });
        let none = Checks::default();
        let standby = PeerCheck::Seen {
            writable: false,
            lineage: Lineage::SameTimeline,
            divergence_bytes: 0,
        };
        let seen_once = none.after(&standby);
        let failed = |n: u32| (0..n).fold(none, |c, _| c.after(&PeerCheck::Failed("x".into())));
        let down = || PeerCheck::Failed("timeout".into());
        let rows: Vec<(&str, bool, Checks, PeerCheck, bool)> = vec![
            // name, primary, checks since primary before the latest, latest peer check, withheld
            ("peer check off", true, none, PeerCheck::Off, false),
            ("not checked yet", true, none, PeerCheck::Idle, true),
            (
                "seen: the peer is a standby",
                true,
                seen_once,
                standby.clone(),
                false,
            ),
            (
                "issue 20 item 12: any number of failed checks, no vouch: still withheld (a \
                 primary back beside a peer it cannot see is never advertised on silence)",
                true,
                failed(50),
                down(),
                true,
            ),
            (
                "failed checks, then a vouch since the return: advertised",
                true,
                Checks {
                    vouched: true,
                    ..failed(5)
                },
                down(),
                false,
            ),
            (
                "vouched, but the peer is seen writable at a higher epoch: withheld",
                true,
                Checks {
                    vouched: true,
                    ..none
                },
                seen(Lineage::PeerAuthoritative {
                    epoch: 3,
                    timeline: 2,
                    fork_lsn: 1,
                    fork_pending: false,
                }),
                true,
            ),
            (
                "seen once, failing now",
                true,
                seen_once.after(&down()),
                down(),
                false,
            ),
            (
                "peer writable, promoted at the same epoch",
                true,
                seen_once,
                later.clone(),
                true,
            ),
            (
                "peer writable, never promoted on either side",
                true,
                seen_once,
                seen(Lineage::Unrelated),
                false,
            ),
            (
                "we were promoted from the peer",
                true,
                seen_once,
                seen(Lineage::WeAuthoritative {
                    epoch: 2,
                    fork_lsn: 1,
                    timeline: 1,
                }),
                false,
            ),
            (
                "a tie, then a failed check: still withheld",
                true,
                none.after(&later),
                down(),
                true,
            ),
            (
                "a tie, then seen as a standby: released",
                true,
                none.after(&later),
                standby.clone(),
                false,
            ),
            (
                "issue 20 item 11: another database at a higher epoch (this site initialised \
                 afresh): withheld",
                true,
                seen_once,
                seen(Lineage::ForeignNewer { epoch: 1 }),
                true,
            ),
            (
                "another database, not newer: a misconfigured tunnel, not withheld",
                true,
                seen_once,
                seen(Lineage::DifferentSystem),
                false,
            ),
            ("not a primary", false, none, later, false),
        ];
        for (name, primary, before, peer, want) in rows {
            let checked = before.after(&peer);
            assert_eq!(withheld(primary, checked, &peer).is_some(), want, "{name}");
        }
        let fresh = Duration::from_millis(10);
        let primary = member("running", "primary", None);
        let v = decide(&primary, fresh, &rules(), None, Some("waiting"));
        assert_eq!((v.ready, v.primary), (true, false), "{v:?}");
        let reason = v.reason.to_string();
        assert!(reason.contains("not advertised: waiting"), "{reason}");
        let v = decide(&primary, fresh, &rules(), None, None);
        assert_eq!((v.ready, v.primary), (true, true), "{v:?}");
    }

    #[test]
    fn fence_from_config() {
        use serde_json::Value;
        let cfg = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let read = |v: Value| pgdr_core::contract::fence::seen(&cfg(v));
        assert_eq!(read(serde_json::json!({"ttl": 30})), None);
        assert_eq!(read(serde_json::json!({"pgdr_fence": null})), None);
        let f = read(serde_json::json!({"pgdr_fence": {
            "since": "2026-11-30T16:00:00Z", "reason": "split-brain", "peer": "golddr", "phase": "follow",
            "timeline": 3, "fork_lsn": "0/5000A28", "diverged_bytes": 1234,
            "preserve": {"timeline": 3, "from_lsn": "0/5000A28"}, "future_key": true}}))
        .unwrap();
        let doc = f.fence().unwrap();
        assert_eq!(doc.phase, pgdr_core::contract::fence::Phase::Follow);
        assert_eq!(doc.preserve.as_ref().unwrap().timeline, 3);
        assert_eq!(doc.diverged_bytes, Some(1234));
        assert!(!f.holds());
        let now: jiff::Timestamp = "2026-11-30T16:01:40Z".parse().unwrap();
        assert_eq!(f.seconds_since(now), 100);
        // A marker we cannot read still fences.
        let f = read(serde_json::json!({"pgdr_fence": {"timeline": "three"}})).unwrap();
        assert!(
            matches!(&f, FenceSeen::Unreadable { unreadable } if unreadable.contains("pgdr_fence")),
            "{f:?}"
        );
        let f = read(serde_json::json!({"pgdr_fence": true})).unwrap();
        assert!(f.fence().is_none());
        assert_eq!(f.seconds_since(now), 0);
    }

    #[test]
    fn latch_table() {
        let now: jiff::Timestamp = "2026-11-30T16:00:00Z".parse().unwrap();
        let forked = PeerCheck::Seen {
            writable: true,
            lineage: Lineage::PeerAuthoritative {
                epoch: 1,
                fork_lsn: 0x5000A28,
                timeline: 3,
                fork_pending: false,
            },
            divergence_bytes: 4096,
        };
        let peer_standby = PeerCheck::Seen {
            writable: false,
            lineage: Lineage::SameTimeline,
            divergence_bytes: 0,
        };
        let we_forked = PeerCheck::Seen {
            writable: true,
            lineage: Lineage::WeAuthoritative {
                epoch: 2,
                fork_lsn: 1,
                timeline: 2,
            },
            divergence_bytes: 0,
        };
        let unrelated = PeerCheck::Seen {
            writable: true,
            lineage: Lineage::Unrelated,
            divergence_bytes: 0,
        };
        let failed = PeerCheck::Failed("timeout".into());
        let held = Some(Latch {
            since: "2026-11-30T15:00:00Z".into(),
            fork_lsn: "0/1".into(),
            timeline: 2,
            divergence_bytes: 0,
        });
        let primary = member("running", "primary", None);
        let unlocked = Poll::Reachable(MemberView {
            cluster_unlocked: true,
            ..view(primary.clone())
        });
        let replica_of_standby = Poll::Reachable(MemberView {
            standby_cluster: Some(true),
            ..view(member("running", "replica", Some(0)))
        });
        let replica = Poll::Reachable(MemberView {
            standby_cluster: Some(false),
            ..view(member("running", "replica", Some(0)))
        });
        #[rustfmt::skip]
        type Case<'a> = (&'a str, Option<Latch>, Poll, &'a PeerCheck, Option<&'a str>, bool);
        let cases: Vec<Case> = vec![
            // name, previous latch, poll, peer, latched since (None: no latch), split brain
            (
                "peer forked from us: latch at once",
                None,
                primary.clone(),
                &forked,
                Some("2026-11-30T16:00:00Z"),
                true,
            ),
            (
                "latch keeps its first time",
                held.clone(),
                primary.clone(),
                &forked,
                Some("2026-11-30T15:00:00Z"),
                true,
            ),
            (
                "peer back to standby: latch stays",
                held.clone(),
                primary.clone(),
                &peer_standby,
                Some("2026-11-30T15:00:00Z"),
                false,
            ),
            (
                "peer unreachable: latch stays",
                held.clone(),
                primary.clone(),
                &failed,
                Some("2026-11-30T15:00:00Z"),
                false,
            ),
            (
                "Patroni unreachable: latch stays",
                held.clone(),
                Poll::Unreachable("timeout".into()),
                &PeerCheck::Idle,
                Some("2026-11-30T15:00:00Z"),
                false,
            ),
            (
                "demoted to standby leader: cleared",
                held.clone(),
                member("running", "standby_leader", None),
                &PeerCheck::Idle,
                None,
                false,
            ),
            (
                "replica of a standby cluster: cleared",
                held.clone(),
                replica_of_standby,
                &PeerCheck::Idle,
                None,
                false,
            ),
            (
                "fenced: cleared",
                held.clone(),
                fenced("primary", None),
                &forked,
                None,
                false,
            ),
            (
                "plain replica: kept (not yet a standby)",
                held.clone(),
                replica,
                &PeerCheck::Idle,
                Some("2026-11-30T15:00:00Z"),
                false,
            ),
            (
                "we forked from the peer: split brain, no latch",
                None,
                primary.clone(),
                &we_forked,
                None,
                true,
            ),
            (
                "unrelated histories: split brain, no latch",
                None,
                primary.clone(),
                &unrelated,
                None,
                true,
            ),
            (
                "peer is a standby: nothing",
                None,
                primary.clone(),
                &peer_standby,
                None,
                false,
            ),
            (
                "primary without the lock is not writable",
                None,
                unlocked,
                &forked,
                None,
                false,
            ),
            (
                "check off",
                None,
                primary.clone(),
                &PeerCheck::Off,
                None,
                false,
            ),
        ];
        for (name, prev, poll, peer, since, sb) in cases {
            let l = next_latch(prev, &poll, peer, now);
            assert_eq!(l.as_ref().map(|l| l.since.as_str()), since, "{name}");
            assert_eq!(split_brain(&poll, peer), sb, "{name}");
        }
        let l = next_latch(None, &primary, &forked, now).unwrap();
        assert_eq!(
            (l.fork_lsn.as_str(), l.timeline, l.divergence_bytes),
            ("0/5000A28", 3, 4096)
        );
    }

    #[test]
    fn lsn_text() {
        for (text, n) in [
            ("0/0", 0u64),
            ("0/5000A28", 0x5000A28),
            ("16/B374D848", 0x16_B374_D848),
        ] {
            assert_eq!(parse_lsn(text), Some(n));
            assert_eq!(lsn_string(n), text);
        }
        for bad in ["", "5000A28", "0/x", "1/2/3", "100000000/0"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
    }
}
