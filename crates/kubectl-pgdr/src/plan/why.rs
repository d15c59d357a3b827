//! Why the switchover step machine waits, stops, refuses or is done: structured while deciding,
//! rendered to text only at the edge (the plugin's output and errors).

use std::fmt;

use jiff::Timestamp;

use crate::model::fmt_lsn;
use crate::progress::Step;

/// The reason a [`super::Next`] carries (`Wait`, `Stuck`, `Refuse`, `Done`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// Both sites writable.
    SplitBrain {
        a: String,
        b: String,
    },
    /// `--resume` with a finished switchover recorded.
    NothingToResume {
        from: String,
        to: String,
        finished_at: Option<Timestamp>,
    },
    /// `--resume` with nothing recorded.
    NothingRecorded,
    /// The target already is the primary.
    AlreadyPrimary {
        site: String,
    },
    /// A check before the switchover failed.
    Preflight(Preflight),
    /// Warnings that only `--force` overrides.
    Warnings(Vec<String>),
    /// A site's API cannot be read.
    Unreadable {
        site: String,
        error: String,
    },
    NothingToAbort,
    /// Past the last step that can be undone.
    NotAbortable {
        step: Step,
        to: String,
    },
    /// Step `Restore`: the target is writable.
    RestoreBesideWritable {
        to: String,
        from: String,
    },
    /// A site is promoting (its role).
    Promoting {
        site: String,
        role: &'static str,
    },
    /// Step `Demote`: the target became writable first.
    WritableBeforeDemote {
        to: String,
        from: String,
    },
    /// Step `Demote`: no running primary (its role).
    /// Step `Demote`: the target lost its standby leader since the preflight (its role):
    /// demoting now would leave the pair without a primary.
    NoTakeover {
        to: String,
        role: &'static str,
        from: String,
    },
    /// Step `CatchUp` recorded without its demotion token (a record edited by hand).
    NoToken {
        rev: u64,
    },
    NothingToDemote {
        site: String,
        role: &'static str,
    },
    /// Step `Token`: no leader yet.
    NoLeaderAfterDemote {
        site: String,
    },
    /// Step `Token`: still a primary.
    StillPrimary {
        site: String,
    },
    /// Step `Token`: the leader is something else (role / state).
    LeaderIs {
        site: String,
        name: String,
        role: Option<String>,
        state: Option<String>,
    },
    /// Step `Token`: no position yet.
    NoPosition {
        site: String,
    },
    /// Step `Token`: another timeline after the demote.
    TimelineChanged {
        site: String,
        now: u64,
        was: u64,
    },
    /// Step `Token`: the position went back.
    PositionBehind {
        site: String,
        after: u64,
        before: u64,
    },
    /// Step `CatchUp`: the target became writable first.
    WritableBeforeCatchUp {
        site: String,
    },
    /// Step `CatchUp`: no running standby leader (its role).
    NoStandbyLeader {
        site: String,
        role: &'static str,
    },
    /// Step `CatchUp`: WAL past the token.
    PastToken {
        site: String,
        replayed: u64,
        received: u64,
        token: u64,
    },
    /// Step `CatchUp`: a timeline past the token's.
    TimelinePastToken {
        site: String,
        timeline: u64,
        token: u64,
    },
    /// Step `CatchUp`: not there yet.
    CatchingUp {
        site: String,
        replayed: u64,
        token: u64,
        missing: u64,
        timeline: Option<u64>,
    },
    /// Step `Promote`: the source is writable again.
    WritableAgain {
        from: String,
        to: String,
    },
    /// Step `Verify`: the source's leader as it is.
    Verifying {
        site: String,
        name: String,
        role: Option<String>,
        state: Option<String>,
        replication: Option<String>,
        timeline: Option<u64>,
        want: u64,
    },
    /// Step `Verify`: no leader yet.
    NoLeader {
        site: String,
    },
    /// Step `Done`.
    Complete,
}

/// Why a new switchover may not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Preflight {
    Unreadable {
        site: String,
        error: String,
    },
    Malformed {
        site: String,
        error: String,
    },
    Paused {
        site: String,
    },
    NotPrimary {
        site: String,
        role: &'static str,
    },
    BothWritable {
        site: String,
    },
    NoTimeline {
        site: String,
    },
    NoStandbyLeader {
        site: String,
        role: &'static str,
    },
    Diverged {
        to: String,
        timeline: u64,
        from: String,
        source: u64,
    },
}

impl fmt::Display for Preflight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Preflight::Unreadable { site, error } => {
                write!(f, "site {site} cannot be read: {error}")
            }
            Preflight::Malformed { site, error } => {
                write!(f, "site {site}: {error}; fix the config annotation first")
            }
            Preflight::Paused { site } => write!(
                f,
                "site {site}: Patroni is paused (pause: true); resume it first"
            ),
            Preflight::NotPrimary { site, role } => write!(
                f,
                "site {site} is not a running primary (it is {role}): a switchover starts from the primary"
            ),
            Preflight::BothWritable { site } => write!(
                f,
                "site {site} is also writable: split brain; resolve it before any switchover"
            ),
            Preflight::NoTimeline { site } => write!(
                f,
                "site {site}: the primary publishes no timeline yet; retry in a few seconds"
            ),
            Preflight::NoStandbyLeader { site, role } => write!(
                f,
                "site {site} has no running standby leader (it is {role}): nothing could take over"
            ),
            Preflight::Diverged {
                to,
                timeline,
                from,
                source,
            } => write!(
                f,
                "site {to} is on timeline {timeline}, ahead of {from}'s {source}: the sites diverged"
            ),
        }
    }
}

fn or_q(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("?")
}

fn tl_or_q(t: Option<u64>) -> String {
    t.map_or("?".into(), |t| t.to_string())
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::SplitBrain { a, b } => write!(f, "both {a} and {b} are writable (split brain)"),
            Why::NothingToResume {
                from,
                to,
                finished_at,
            } => write!(
                f,
                "nothing to resume: the switchover from {from} to {to} finished{}",
                finished_at.map(|t| format!(" at {t}")).unwrap_or_default()
            ),
            Why::NothingRecorded => {
                f.write_str("nothing to resume: no switchover is recorded on either site")
            }
            Why::AlreadyPrimary { site } => {
                write!(f, "site {site} is already the primary; nothing to do")
            }
            Why::Preflight(p) => p.fmt(f),
            Why::Warnings(w) => write!(
                f,
                "{}; rerun with --force to switch over anyway",
                w.join("; ")
            ),
            Why::Unreadable { site, error } => write!(f, "site {site} cannot be read: {error}"),
            Why::NothingToAbort => f.write_str("nothing to abort: no switchover is in progress"),
            Why::NotAbortable { step, to } => write!(
                f,
                "the switchover is at step {}: {to} was promoted (or is being promoted), so it can no \
                 longer be undone; finish it with `kubectl pgdr switchover --resume`",
                step.as_str()
            ),
            Why::RestoreBesideWritable { to, from } => {
                write!(f, "{to} is writable: refusing to restore {from} beside it")
            }
            Why::Promoting { site, role } => write!(f, "{site} is promoting ({role})"),
            Why::WritableBeforeDemote { to, from } => {
                write!(f, "site {to} became writable before {from} was demoted")
            }
            Why::NoTakeover { to, role, from } => write!(
                f,
                "site {to} has no running standby leader to take over ({role}): {from} stays primary"
            ),
            Why::NoToken { rev } => write!(
                f,
                "the recorded switchover is at step catch-up without a demotion token (record \
                 revision {rev}): `kubectl pgdr switchover --abort`, or `--resume` after checking \
                 both sites"
            ),
            Why::NothingToDemote { site, role } => {
                write!(f, "site {site} has no running primary to demote ({role})")
            }
            Why::NoLeaderAfterDemote { site } => {
                write!(f, "{site}: waiting for a leader after the demote")
            }
            Why::StillPrimary { site } => write!(
                f,
                "{site} still runs as a primary; Patroni demotes it within a loop"
            ),
            Why::LeaderIs {
                site,
                name,
                role,
                state,
            } => write!(f, "{site}: {name} is {} / {}", or_q(role), or_q(state)),
            Why::NoPosition { site } => {
                write!(f, "{site}: the standby leader publishes no position yet")
            }
            Why::TimelineChanged { site, now, was } => write!(
                f,
                "{site} came back on timeline {now}, it was on {was}: not a clean demote"
            ),
            Why::PositionBehind {
                site,
                after,
                before,
            } => write!(
                f,
                "{site}'s position after the demote ({}) is before its last write position ({}): not a clean demote",
                fmt_lsn(*after),
                fmt_lsn(*before)
            ),
            Why::WritableBeforeCatchUp { site } => write!(
                f,
                "site {site} became writable before the catch-up was confirmed"
            ),
            Why::NoStandbyLeader { site, role } => {
                write!(f, "{site}: no running standby leader ({role})")
            }
            Why::PastToken {
                site,
                replayed,
                received,
                token,
            } => write!(
                f,
                "{site} has WAL past the demotion token ({} replayed, {} received, token {}): the sites diverged",
                fmt_lsn(*replayed),
                fmt_lsn(*received),
                fmt_lsn(*token)
            ),
            Why::TimelinePastToken {
                site,
                timeline,
                token,
            } => write!(
                f,
                "{site} is on timeline {timeline}, past the token's {token}"
            ),
            Why::CatchingUp {
                site,
                replayed,
                token,
                missing,
                timeline,
            } => write!(
                f,
                "{site} replayed {} of {} ({missing} bytes to go, timeline {})",
                fmt_lsn(*replayed),
                fmt_lsn(*token),
                tl_or_q(*timeline)
            ),
            Why::WritableAgain { from, to } => {
                write!(f, "{from} is writable again: refusing to promote {to}")
            }
            Why::Verifying {
                site,
                name,
                role,
                state,
                replication,
                timeline,
                want,
            } => write!(
                f,
                "{site}: {name} is {} / {}, replication {}, timeline {} (want {want})",
                or_q(role),
                or_q(state),
                replication.as_deref().unwrap_or("none"),
                tl_or_q(*timeline)
            ),
            Why::NoLeader { site } => write!(f, "{site}: no leader yet"),
            Why::Complete => f.write_str("switchover complete"),
        }
    }
}
