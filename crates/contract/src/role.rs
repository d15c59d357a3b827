//! Patroni's member roles, as `/patroni`, `/cluster` and the Pods' `status` annotation report
//! them, and the one definition of "a writable primary".

use std::fmt;

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

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PostgreSQL's state as Patroni reports it: `running` is the only one that serves.
pub fn is_running(state: &str) -> bool {
    state == "running"
}

/// A member that takes writes by Patroni's own account: role primary (or `master`) and
/// PostgreSQL running. Whether the site is fenced or a standby cluster is the caller's to add.
pub fn is_writable_primary(role: &str, state: &str) -> bool {
    Role::parse(role) == Role::Primary && is_running(state)
}

/// A running standby leader (the leader of a standby cluster).
pub fn is_standby_leader(role: &str, state: &str) -> bool {
    Role::parse(role) == Role::StandbyLeader && is_running(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_primary_table() {
        let rows = [
            ("primary", "running", true),
            ("master", "running", true),
            ("primary", "starting", false),
            ("primary", "stopped", false),
            ("standby_leader", "running", false),
            ("replica", "running", false),
            ("", "running", false),
        ];
        for (role, state, want) in rows {
            assert_eq!(is_writable_primary(role, state), want, "{role} {state}");
        }
        assert!(is_standby_leader("standby-leader", "running"));
        assert!(!is_standby_leader("standby_leader", "crashed"));
        assert_eq!(Role::parse("master").as_str(), "primary");
        assert_eq!(Role::parse("demoted").to_string(), "demoted");
    }
}
