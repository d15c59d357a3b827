//! Pure readiness rules: from the last poll of Patroni to ready / primary verdicts.

use std::time::Duration;

/// A member's role as Patroni's `/patroni` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    StandbyLeader,
    Replica,
    Other(String),
}

impl Role {
    pub fn parse(s: &str) -> Role {
        match s {
            // `master` is the name before Patroni 3.
            "primary" | "master" => Role::Primary,
            "standby_leader" | "standby-leader" => Role::StandbyLeader,
            "replica" => Role::Replica,
            other => Role::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Role::Primary => "primary",
            Role::StandbyLeader => "standby_leader",
            Role::Replica => "replica",
            Role::Other(s) => s,
        }
    }
}

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
}

impl MemberView {
    /// Replication broken, as far as this member can see: it should receive WAL (a standby
    /// leader or a replica with PostgreSQL running) but its WAL receiver is not streaming. The
    /// sidecar sees only its own Patroni, so this does not say why (primary site down, tunnel
    /// cut, or the stream rejected while the primary answers); the failover CronJob, which also
    /// probes the primary, tells those apart (its `ReplicationBroken` Event).
    pub fn replication_broken(&self) -> bool {
        matches!(self.role, Role::StandbyLeader | Role::Replica)
            && self.state == "running"
            && self.replication_state.as_deref() != Some("streaming")
    }
}

/// The outcome of the latest poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Poll {
    NotYet,
    Reachable(MemberView),
    Unreachable(String),
}

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
    pub reason: String,
}

impl Verdict {
    fn no(reason: impl Into<String>) -> Verdict {
        Verdict {
            ready: false,
            primary: false,
            reason: reason.into(),
        }
    }
}

/// `age` is the time since the poll in `poll` completed.
pub fn decide(poll: &Poll, age: Duration, rules: &Rules) -> Verdict {
    let m = match poll {
        Poll::NotYet => return Verdict::no("Patroni not polled yet"),
        Poll::Unreachable(e) => return Verdict::no(format!("Patroni unreachable: {e}")),
        Poll::Reachable(m) => m,
    };
    if age > rules.stale_after {
        return Verdict::no(format!("last poll is {}s old", age.as_secs()));
    }
    if m.state != "running" {
        return Verdict::no(format!(
            "PostgreSQL is {}",
            if m.state.is_empty() {
                "in an unknown state"
            } else {
                &m.state
            }
        ));
    }
    let allowed = rules.ready_roles.contains(&m.role);
    let role = m.role.as_str();
    match &m.role {
        Role::Primary => {
            // Without the leader lock Patroni is about to demote it; in a standby cluster it would
            // be read-only. Either way it must not attract writes.
            let primary = !m.cluster_unlocked && m.standby_cluster != Some(true);
            let reason = if primary {
                "running primary".to_string()
            } else if m.cluster_unlocked {
                "primary without the leader lock".to_string()
            } else {
                "primary in a standby cluster".to_string()
            };
            Verdict {
                ready: allowed,
                primary,
                reason: if allowed {
                    reason
                } else {
                    format!("{reason}; role primary is not in READINESS_READY_ROLES")
                },
            }
        }
        _ if !allowed => Verdict::no(format!("role {role} is not in READINESS_READY_ROLES")),
        Role::StandbyLeader => Verdict {
            ready: true,
            primary: false,
            reason: "running standby leader".into(),
        },
        Role::Replica => match m.lag_bytes {
            Some(lag) if lag <= rules.max_lag_bytes => Verdict {
                ready: true,
                primary: false,
                reason: format!("replica {lag} bytes behind (limit {})", rules.max_lag_bytes),
            },
            Some(lag) => Verdict::no(format!(
                "replica {lag} bytes behind, over the limit of {}",
                rules.max_lag_bytes
            )),
            None => Verdict::no("replica lag unknown"),
        },
        Role::Other(r) => Verdict::no(format!("role {r} cannot serve")),
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
            let v = decide(&poll, age, &rules);
            assert_eq!((v.ready, v.primary), (ready, primary), "{name}: {v:?}");
            assert!(!v.reason.is_empty(), "{name}");
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
        );
        assert_eq!(v.reason, "Patroni unreachable: timeout");
        let v = decide(
            &member("running", "replica", Some(5000)),
            Duration::ZERO,
            &rules(),
        );
        assert!(
            v.reason.contains("5000") && v.reason.contains("1000"),
            "{}",
            v.reason
        );
    }
}
