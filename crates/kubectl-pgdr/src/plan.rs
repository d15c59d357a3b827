//! Pure decisions: the switchover step machine, the checks before a manual promotion, and the
//! dynamic-config edits (fence, unfence, promote). A function of the observed sites and the
//! recorded progress only, so every rule is a table test.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::model::{FENCE, Member, Role, STANDBY_CLUSTER, SiteObs, fmt_lsn};
use crate::progress::{LAST_ABORTABLE, LogEntry, PROGRESS_VERSION, Progress, Step, Token};
use pgdr_contract::dynamic_config;
use pgdr_contract::epoch::PeerEpoch;
use pgdr_contract::fence::Phase;
use pgdr_contract::promote::{self, Fork, Promotion};
use pgdr_contract::slot::{FollowTarget, SlotName};

/// What the operator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `--to`; `None` with `--resume`.
    pub to: Option<String>,
    pub resume: bool,
    pub force: bool,
    pub max_lag_bytes: u64,
    /// With `--force`: promote anyway once catch-up has waited this long.
    pub force_after: Duration,
    /// `--abort`: give the recorded switchover up before the target is promoted.
    pub abort: bool,
}

impl Request {
    /// `--resume` with nothing else.
    pub fn resume() -> Request {
        Request {
            to: None,
            resume: true,
            force: false,
            max_lag_bytes: 0,
            force_after: Duration::ZERO,
            abort: false,
        }
    }
}

/// The API operation a step needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    SetHold {
        sites: Vec<String>,
    },
    /// Add `standby_cluster` pointing at the peer through this site's tunnel.
    Demote {
        site: String,
    },
    /// Remove `standby_cluster` and declare the slot for the peer.
    Promote {
        site: String,
    },
    /// `--abort`: remove the `standby_cluster` the demote added (the site keeps its epoch).
    Restore {
        site: String,
    },
    ReleaseHold {
        sites: Vec<String>,
    },
}

/// The next thing to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Start a new switchover: record this, printing the warnings first.
    Begin {
        progress: Progress,
        warnings: Vec<String>,
    },
    /// Record a new version of the progress (a step advanced or a fact was learnt).
    Record {
        progress: Progress,
    },
    Act {
        action: Action,
        why: String,
    },
    Wait(Why),
    /// Finished (now or earlier).
    Done(Why),
    /// Nothing was changed: the switchover may not start (or resume) for this reason.
    Refuse(Why),
    /// Mid-way and something is wrong: stop here, holds stay, the operator must look.
    Stuck(Why),
}

/// The two sites as seen for one switchover: `from` is the current primary, `to` the target.
pub struct Pair<'a> {
    pub from: &'a SiteObs,
    pub to: &'a SiteObs,
}

/// Byte lag of the target against the source, when both positions are known.
pub fn lag_bytes(primary: &SiteObs, standby: &SiteObs) -> Option<u64> {
    let p = primary.writable()?.xlog_location?;
    let s = standby.leader_member()?.replayed()?;
    Some(p.saturating_sub(s))
}

/// Picks the switchover's direction from the request and what is observed.
pub fn direction(
    req: &Request,
    progress: Option<&Progress>,
) -> Result<Option<(String, String)>, Refusal> {
    match (progress.filter(|p| !p.is_finished()), &req.to) {
        (Some(p), Some(to)) if &p.to != to => Err(Refusal::SwitchoverInProgress {
            from: p.from.clone(),
            to: p.to.clone(),
            step: p.step.as_str(),
        }),
        (Some(p), _) => Ok(Some((p.from.clone(), p.to.clone()))),
        (None, _) if req.resume || req.abort => Ok(None),
        (None, Some(_)) => Ok(None),
        (None, None) => Err(Refusal::NoSwitchoverTarget),
    }
}

/// Checks before a new switchover; returns the warnings `--force` overrides, or the refusal.
/// Positions come from annotations Patroni refreshes once per loop, each member at its own
/// moment: under writes a standby may look ahead of its primary, so only timelines can prove a
/// divergence here. The exact check is the catch-up to the demotion token.
fn preflight(pair: &Pair, req: &Request) -> Result<(Vec<String>, u64, u64), Preflight> {
    let (from, to) = (pair.from, pair.to);
    for s in [from, to] {
        let site = || s.site.clone();
        if let Some(e) = &s.error {
            return Err(Preflight::Unreadable {
                site: site(),
                error: e.clone(),
            });
        }
        if let Some(Err(e)) = s.config.as_ref().map(|c| &c.config) {
            return Err(Preflight::Malformed {
                site: site(),
                error: e.clone(),
            });
        }
        if s.config.as_ref().is_some_and(|c| c.paused()) {
            return Err(Preflight::Paused { site: site() });
        }
    }
    if from.role() != Role::Primary {
        return Err(Preflight::NotPrimary {
            site: from.site.clone(),
            role: from.role().as_str(),
        });
    }
    if to.writable().is_some() {
        return Err(Preflight::BothWritable {
            site: to.site.clone(),
        });
    }
    let primary = from.writable().expect("role primary has a writable member");
    let source_tl = primary.timeline.ok_or_else(|| Preflight::NoTimeline {
        site: from.site.clone(),
    })?;
    let source_lsn = primary.xlog_location.unwrap_or(0);
    let Some(leader) = to.leader_member().filter(|m| m.is_standby_leader()) else {
        return Err(Preflight::NoStandbyLeader {
            site: to.site.clone(),
            role: to.role().as_str(),
        });
    };
    let mut warnings = Vec::new();
    if !leader.is_streaming() {
        warnings.push(format!(
            "site {}'s standby leader is not streaming from {} (replication: {})",
            to.site,
            from.site,
            leader.replication_state.as_deref().unwrap_or("none")
        ));
    }
    match leader.timeline {
        Some(tl) if tl == source_tl => {}
        Some(tl) if tl > source_tl => {
            return Err(Preflight::Diverged {
                to: to.site.clone(),
                timeline: tl,
                from: from.site.clone(),
                source: source_tl,
            });
        }
        other => warnings.push(format!(
            "site {} reports timeline {}, the primary is on {source_tl}",
            to.site,
            other.map_or("unknown".into(), |t| t.to_string())
        )),
    }
    match lag_bytes(from, to) {
        Some(lag) if lag > req.max_lag_bytes => warnings.push(format!(
            "site {} lags {lag} bytes behind {}, over the bound of {} bytes",
            to.site, from.site, req.max_lag_bytes
        )),
        Some(_) => {}
        None => warnings.push(format!("the lag of site {} is unknown", to.site)),
    }
    Ok((warnings, source_tl, source_lsn))
}

fn advance(p: &Progress, step: Step, now: Timestamp, message: String) -> Progress {
    let mut next = p.clone();
    next.rev += 1;
    next.step = step;
    next.step_started_at = now;
    if step == Step::Done {
        next.finished_at = Some(now);
    }
    next.log.push(LogEntry {
        at: now,
        step,
        message,
    });
    next
}

/// The switchover step machine.
pub fn next(pair: &Pair, progress: Option<&Progress>, req: &Request, now: Timestamp) -> Next {
    let (from, to) = (pair.from, pair.to);
    let active = progress.filter(|p| !p.is_finished());
    // Two writable sites at any point: stop everything.
    if from.writable().is_some() && to.writable().is_some() {
        let msg = Why::SplitBrain {
            a: from.site.clone(),
            b: to.site.clone(),
        };
        return if active.is_some() {
            Next::Stuck(msg)
        } else {
            Next::Refuse(msg)
        };
    }
    if req.abort {
        return abort(pair, active, now);
    }
    let Some(p) = active else {
        if req.resume {
            return match progress {
                Some(done) => Next::Done(Why::NothingToResume {
                    from: done.from.clone(),
                    to: done.to.clone(),
                    finished_at: done.finished_at,
                }),
                None => Next::Refuse(Why::NothingRecorded),
            };
        }
        if to.role() == Role::Primary && matches!(from.role(), Role::Standby | Role::Fenced) {
            return Next::Done(Why::AlreadyPrimary {
                site: to.site.clone(),
            });
        }
        return match preflight(pair, req) {
            Err(reason) => Next::Refuse(Why::Preflight(reason)),
            Ok((warnings, _, _)) if !warnings.is_empty() && !req.force => {
                Next::Refuse(Why::Warnings(warnings))
            }
            Ok((warnings, tl, _)) => {
                let held_before = [from, to]
                    .iter()
                    .filter(|s| s.agent.hold)
                    .map(|s| s.site.clone())
                    .collect();
                let progress = Progress {
                    version: PROGRESS_VERSION,
                    // Above any older record, so a stale copy on the other site never wins.
                    rev: progress.map_or(1, |old| old.rev + 1),
                    from: from.site.clone(),
                    to: to.site.clone(),
                    step: Step::Hold,
                    started_at: now,
                    step_started_at: now,
                    force: req.force,
                    max_lag_bytes: req.max_lag_bytes,
                    held_before,
                    source_timeline: Some(tl),
                    target_timeline: to.leader_member().and_then(|m| m.timeline),
                    source_lsn_before_demote: None,
                    token: None,
                    new_timeline: None,
                    forced_loss_bytes: None,
                    finished_at: None,
                    aborted: false,
                    log: vec![LogEntry {
                        at: now,
                        step: Step::Hold,
                        message: format!("switchover from {} to {} started", from.site, to.site),
                    }],
                };
                Next::Begin { progress, warnings }
            }
        };
    };
    step(pair, p, req, now)
}

fn step(pair: &Pair, p: &Progress, req: &Request, now: Timestamp) -> Next {
    let (from, to) = (pair.from, pair.to);
    for s in [from, to] {
        if let Some(e) = &s.error {
            return Next::Wait(Why::Unreadable {
                site: s.site.clone(),
                error: e.clone(),
            });
        }
    }
    match p.step {
        Step::Hold => step_hold(pair, p, now),
        Step::Demote => step_demote(pair, p, now),
        Step::Token => step_token(pair, p, now),
        Step::CatchUp => step_catch_up(pair, p, req, now),
        Step::Promote => step_promote(pair, p, now),
        Step::Promoted => step_promoted(pair, p, now),
        Step::Verify => step_verify(pair, p, now),
        Step::Release => step_release(pair, p, now),
        Step::Done => step_done(),
        Step::Restore => step_restore(pair, p, now),
    }
}

/// `switchover --abort`: possible until the target is promoted (then only `--resume` finishes
/// it); recorded like every step, so an interrupted abort resumes as an abort.
fn abort(pair: &Pair, active: Option<&Progress>, now: Timestamp) -> Next {
    let Some(p) = active else {
        return Next::Refuse(Why::NothingToAbort);
    };
    if p.aborted {
        return step(pair, p, &Request::resume(), now);
    }
    let promoted = pair.to.writable().is_some() || !pair.to.is_standby_configured();
    if p.step > LAST_ABORTABLE || (p.step == LAST_ABORTABLE && promoted) {
        return Next::Refuse(Why::NotAbortable {
            step: p.step,
            to: pair.to.site.clone(),
        });
    }
    let mut rec = advance(
        p,
        Step::Restore,
        now,
        format!(
            "abort asked at step {}: {} is restored, {} stays a standby",
            p.step.as_str(),
            pair.from.site,
            pair.to.site
        ),
    );
    rec.aborted = true;
    Next::Record { progress: rec }
}

/// Switchover step `Restore` (`--abort`): the source runs as a writable primary again; never
/// while the target is writable.
fn step_restore(pair: &Pair, p: &Progress, now: Timestamp) -> Next {
    let (from, to) = (pair.from, pair.to);
    if to.writable().is_some() {
        return Next::Stuck(Why::RestoreBesideWritable {
            to: to.site.clone(),
            from: from.site.clone(),
        });
    }
    if from.writable().is_some() {
        return Next::Record {
            progress: advance(
                p,
                Step::Release,
                now,
                format!("{} is a writable primary again", from.site),
            ),
        };
    }
    if from.is_standby_configured() {
        return Next::Act {
            action: Action::Restore {
                site: from.site.clone(),
            },
            why: format!(
                "restore {} (remove the standby_cluster the demote added)",
                from.site
            ),
        };
    }
    Next::Wait(Why::Promoting {
        site: from.site.clone(),
        role: from.role().as_str(),
    })
}

/// Switchover step `Hold`: Hold both failover agents, so that nothing decides mid-way.
fn step_hold(pair: &Pair, p: &Progress, now: Timestamp) -> Next {
    let (from, to) = (pair.from, pair.to);
    let missing: Vec<String> = [from, to]
        .iter()
        .filter(|s| s.agent.installed && !s.agent.hold)
        .map(|s| s.site.clone())
        .collect();
    if missing.is_empty() {
        Next::Record {
            progress: advance(p, Step::Demote, now, "failover agents held".into()),
        }
    } else {
        Next::Act {
            action: Action::SetHold { sites: missing },
            why: "hold the failover agents so nothing decides mid-way".into(),
        }
    }
}

/// Switchover step `Demote`: Record the source's write position, then make the source a standby cluster following the
/// target (Patroni shuts it down cleanly and restarts it as a standby leader).
fn step_demote(pair: &Pair, p: &Progress, now: Timestamp) -> Next {
    let (from, to) = (pair.from, pair.to);
    if from.is_standby_configured() {
        return Next::Record {
            progress: advance(
                p,
                Step::Token,
                now,
                format!("{} configured as a standby cluster", from.site),
            ),
        };
    }
    if to.writable().is_some() {
        return Next::Stuck(Why::WritableBeforeDemote {
            to: to.site.clone(),
            from: from.site.clone(),
        });
    }
    let Some(primary) = from.writable() else {
        return Next::Wait(Why::NothingToDemote {
            site: from.site.clone(),
            role: from.role().as_str(),
        });
    };
    // The preflight saw one, but the target may have lost it since (pods gone, Patroni down):
    // demoting now would leave the pair without a primary until `--abort`.
    if !to.leader_member().is_some_and(|m| m.is_standby_leader()) {
        return Next::Wait(Why::NoTakeover {
            to: to.site.clone(),
            role: to.role().as_str(),
            from: from.site.clone(),
        });
    }
    if p.source_lsn_before_demote.is_none() {
        let mut rec = p.clone();
        rec.rev += 1;
        rec.source_lsn_before_demote = primary.xlog_location;
        return Next::Record { progress: rec };
    }
    Next::Act {
        action: Action::Demote {
            site: from.site.clone(),
        },
        why: format!(
            "demote {} (clean shutdown, then a standby leader following {})",
            from.site, to.site
        ),
    }
}

/// Switchover step `Token`: Once the source runs as a standby leader: record its final position and timeline (the
/// demotion token).
fn step_token(pair: &Pair, p: &Progress, now: Timestamp) -> Next {
    let from = pair.from;
    let Some(leader) = from.leader_member() else {
        return Next::Wait(Why::NoLeaderAfterDemote {
            site: from.site.clone(),
        });
    };
    if leader.is_writable() {
        return Next::Wait(Why::StillPrimary {
            site: from.site.clone(),
        });
    }
    if !leader.is_standby_leader() {
        return Next::Wait(Why::LeaderIs {
            site: from.site.clone(),
            name: leader.name.clone(),
            role: leader.role.clone(),
            state: leader.state.clone(),
        });
    }
    let (Some(tl), Some(lsn)) = (leader.timeline, leader.replayed()) else {
        return Next::Wait(Why::NoPosition {
            site: from.site.clone(),
        });
    };
    if p.source_timeline.is_some_and(|t| t != tl) {
        return Next::Stuck(Why::TimelineChanged {
            site: from.site.clone(),
            now: tl,
            was: p.source_timeline.unwrap_or_default(),
        });
    }
    if p.source_lsn_before_demote
        .is_some_and(|before| lsn < before)
    {
        return Next::Stuck(Why::PositionBehind {
            site: from.site.clone(),
            after: lsn,
            before: p.source_lsn_before_demote.unwrap_or_default(),
        });
    }
    let mut rec = advance(
        p,
        Step::CatchUp,
        now,
        format!("demotion token: LSN {} on timeline {tl}", fmt_lsn(lsn)),
    );
    rec.token = Some(Token { lsn, timeline: tl });
    Next::Record { progress: rec }
}

/// Switchover step `CatchUp`: Wait until the target has replayed exactly the token (`--force`: promote anyway after
/// `force_after`, saying what may be lost); WAL past the token on the target means divergence.
fn step_catch_up(pair: &Pair, p: &Progress, req: &Request, now: Timestamp) -> Next {
    let to = pair.to;
    // Written with the step; a record edited by hand (or by another version) may lack it.
    let Some(token) = p.token else {
        return Next::Stuck(Why::NoToken { rev: p.rev });
    };
    if to.writable().is_some() {
        return Next::Stuck(Why::WritableBeforeCatchUp {
            site: to.site.clone(),
        });
    }
    let Some(leader) = to.leader_member().filter(|m| m.is_standby_leader()) else {
        return Next::Wait(Why::NoStandbyLeader {
            site: to.site.clone(),
            role: to.role().as_str(),
        });
    };
    let replayed = leader.replayed().unwrap_or(0);
    let received = leader.receive_lsn.unwrap_or(0);
    if replayed > token.lsn || received > token.lsn {
        return Next::Stuck(Why::PastToken {
            site: to.site.clone(),
            replayed,
            received,
            token: token.lsn,
        });
    }
    match leader.timeline {
        Some(tl) if tl > token.timeline => {
            return Next::Stuck(Why::TimelinePastToken {
                site: to.site.clone(),
                timeline: tl,
                token: token.timeline,
            });
        }
        Some(tl) if tl == token.timeline && replayed == token.lsn => {
            return Next::Record {
                progress: advance(
                    p,
                    Step::Promote,
                    now,
                    format!(
                        "{} replayed exactly up to {} on timeline {tl}",
                        to.site,
                        fmt_lsn(token.lsn)
                    ),
                ),
            };
        }
        // The tunnel reaches only the source's primary Service, which has no endpoint
        // once the source demoted: the target's WAL receiver is down and Patroni publishes
        // its checkpoint timeline, older than the token's. The target followed the source
        // on the token's timeline when the switchover began, has been a read-only standby
        // of it since, and replayed exactly up to the token: it is on that timeline.
        Some(tl)
            if tl < token.timeline
                && replayed == token.lsn
                && !leader.is_streaming()
                && p.target_timeline == Some(token.timeline) =>
        {
            return Next::Record {
                progress: advance(
                    p,
                    Step::Promote,
                    now,
                    format!(
                        "{} replayed exactly up to {} on timeline {} (followed on it when the switchover began; receiver down since the demote, Patroni shows checkpoint timeline {tl})",
                        to.site,
                        fmt_lsn(token.lsn),
                        token.timeline
                    ),
                ),
            };
        }
        _ => {}
    }
    let missing = token.lsn - replayed;
    let waited = now.duration_since(p.step_started_at).unsigned_abs();
    if (p.force || req.force) && waited >= req.force_after {
        let mut rec = advance(
            p,
            Step::Promote,
            now,
            format!(
                "FORCED after {waited:?}: {} replayed {}, {missing} bytes short of the token {}",
                to.site,
                fmt_lsn(replayed),
                fmt_lsn(token.lsn)
            ),
        );
        rec.forced_loss_bytes = Some(missing);
        return Next::Record { progress: rec };
    }
    Next::Wait(Why::CatchingUp {
        site: to.site.clone(),
        replayed,
        token: token.lsn,
        missing,
        timeline: leader.timeline,
    })
}

/// Switchover step `Promote`: Remove `standby_cluster` from the target and declare the pair's slot; never while the source
/// is writable.
fn step_promote(pair: &Pair, p: &Progress, now: Timestamp) -> Next {
    let (from, to) = (pair.from, pair.to);
    if from.writable().is_some() {
        return Next::Stuck(Why::WritableAgain {
            from: from.site.clone(),
            to: to.site.clone(),
        });
    }
    if !to.is_standby_configured() {
        return Next::Record {
            progress: advance(
                p,
                Step::Promoted,
                now,
                format!("{} no longer configured as a standby", to.site),
            ),
        };
    }
    Next::Act {
        action: Action::Promote {
            site: to.site.clone(),
        },
        why: format!("promote {}", to.site),
    }
}

/// Switchover step `Promoted`: Wait for a writable primary on the target, on a later timeline.
fn step_promoted(pair: &Pair, p: &Progress, now: Timestamp) -> Next {
    let to = pair.to;
    let token_tl = p.token.map_or(0, |t| t.timeline);
    match to.writable() {
        Some(m) if m.timeline.is_some_and(|tl| tl > token_tl) => {
            let tl = m.timeline.unwrap_or_default();
            let mut rec = advance(
                p,
                Step::Verify,
                now,
                format!("{} is a writable primary on timeline {tl}", to.site),
            );
            rec.new_timeline = Some(tl);
            Next::Record { progress: rec }
        }
        _ => Next::Wait(Why::Promoting {
            site: to.site.clone(),
            role: to.role().as_str(),
        }),
    }
}

/// Switchover step `Verify`: Wait until the source's standby leader streams from the new primary.
fn step_verify(pair: &Pair, p: &Progress, now: Timestamp) -> Next {
    let (from, to) = (pair.from, pair.to);
    let want = p.new_timeline.unwrap_or_default();
    match from.leader_member() {
        Some(l) if l.is_standby_leader() && l.is_streaming() && l.timeline == Some(want) => {
            Next::Record {
                progress: advance(
                    p,
                    Step::Release,
                    now,
                    format!("{} streams from {} on timeline {want}", from.site, to.site),
                ),
            }
        }
        Some(l) => Next::Wait(Why::Verifying {
            site: from.site.clone(),
            name: l.name.clone(),
            role: l.role.clone(),
            state: l.state.clone(),
            replication: l.replication_state.clone(),
            timeline: l.timeline,
            want,
        }),
        None => Next::Wait(Why::NoLeader {
            site: from.site.clone(),
        }),
    }
}

/// Switchover step `Release`: Remove the holds this switchover set (holds set before it are kept).
fn step_release(pair: &Pair, p: &Progress, now: Timestamp) -> Next {
    let (from, to) = (pair.from, pair.to);
    let ours: Vec<String> = [from, to]
        .iter()
        .filter(|s| s.agent.installed && s.agent.hold && !p.held_before.contains(&s.site))
        .map(|s| s.site.clone())
        .collect();
    if ours.is_empty() {
        let msg = match p.forced_loss_bytes {
            _ if p.aborted => format!(
                "switchover aborted: {} is the primary again, {} a standby",
                from.site, to.site
            ),
            Some(b) => {
                format!("switchover complete (forced: up to {b} bytes were not replayed)")
            }
            None => "switchover complete, nothing lost".to_string(),
        };
        Next::Record {
            progress: advance(p, Step::Done, now, msg),
        }
    } else {
        Next::Act {
            action: Action::ReleaseHold { sites: ours },
            why: "release the holds this switchover set".into(),
        }
    }
}

/// Switchover step `Done`: Nothing left to do.
fn step_done() -> Next {
    Next::Done(Why::Complete)
}

/// Which command promotes a site by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromoteKind {
    /// `unfence SITE`: ends a fence (the site must be fenced).
    Unfence,
    /// `promote SITE --force`: promotes a standby site, bypassing the agent's checks.
    Promote,
}

/// What the checks before a manual promotion found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoteCheck {
    pub notes: Vec<String>,
    /// The peer is visibly alive: the site's name must be typed, `--yes` is not enough.
    pub must_type: bool,
}

/// The peer is visibly alive: its API answers and its leader runs (the caller has already refused
/// a writable one). `Some(what was seen)`.
pub fn peer_alive(peer: &SiteObs) -> Option<String> {
    if peer.error.is_some() {
        return None;
    }
    let m = peer.leader_member().filter(|m| m.is_running())?;
    Some(format!(
        "{}'s API answers and its leader {} runs as {}{}",
        peer.site,
        m.name,
        m.role.as_deref().unwrap_or("?"),
        if m.is_streaming() { ", streaming" } else { "" }
    ))
}

/// A site's `<scope>-config` when it can be read and its config annotation parsed; otherwise
/// why not (nothing is changed on such a site).
fn readable_config(site: &SiteObs) -> Result<&crate::model::DcsConfig, Refusal> {
    let name = || site.site.clone();
    if let Some(e) = &site.error {
        return Err(Refusal::Unreadable {
            site: name(),
            error: e.clone(),
        });
    }
    let Some(cfg) = &site.config else {
        return Err(Refusal::NoConfig { site: name() });
    };
    if let Err(e) = &cfg.config {
        return Err(Refusal::Malformed {
            site: name(),
            error: e.clone(),
        });
    }
    Ok(cfg)
}

/// The checks before `unfence` / `promote --force`: never two primaries; `unfence` only ends a
/// fence (a standby is promoted with `promote --force`); and while the peer is visibly alive
/// (a second promotion beside a live site is how a pair gets two authorities) only with `--force`
/// and the site's name typed.
pub fn check_promote(
    site: &SiteObs,
    peer: &SiteObs,
    kind: PromoteKind,
    force: bool,
) -> Result<PromoteCheck, Refusal> {
    let cfg = readable_config(site)?;
    let (name, peer_name) = (|| site.site.clone(), || peer.site.clone());
    if peer.writable().is_some() {
        return Err(Refusal::PeerWritable {
            site: name(),
            peer: peer_name(),
        });
    }
    if kind == PromoteKind::Unfence && cfg.fence_seen().is_none() {
        return Err(Refusal::NotFenced {
            site: name(),
            peer: peer_name(),
        });
    }
    if kind == PromoteKind::Promote && !force {
        return Err(Refusal::PromoteUnforced { site: name() });
    }
    let alive = peer_alive(peer);
    if let Some(what) = &alive
        && !force
    {
        return Err(Refusal::PeerAlive {
            site: name(),
            alive: what.clone(),
        });
    }
    let mut notes = Vec::new();
    if let Some(what) = &alive {
        notes.push(format!(
            "WARNING: {what}. {} keeps what it has; promoting {} makes two histories (type the \
             name: --yes is not enough)",
            peer.site, site.site
        ));
    }
    if let Some(e) = &peer.error {
        notes.push(format!(
            "site {} cannot be read ({e}): make sure it is really down or fenced. If it was \
             promoted meanwhile, this promotion outranks it (its epoch is numbered by the \
             clock): its writes since are fenced there and preserved, not kept",
            peer.site
        ));
    }
    match (site.leader_member(), peer.writable()) {
        (Some(l), _) if l.is_standby_leader() => notes.push(format!(
            "{}'s standby leader {} replayed {} on timeline {}",
            site.site,
            l.name,
            l.replayed().map_or("?".into(), fmt_lsn),
            l.timeline.map_or("?".into(), |t| t.to_string())
        )),
        (Some(l), _) if l.is_writable() => {
            notes.push(format!("{} already runs as a primary", site.site))
        }
        _ => notes.push(format!(
            "{} has no running standby leader right now",
            site.site
        )),
    }
    match site.agent.last_known_lag_bytes {
        Some(b) => notes.push(format!("last known lag recorded by the agent: {b} bytes")),
        None => notes.push("no lag recorded by the agent".into()),
    }
    Ok(PromoteCheck {
        notes,
        must_type: alive.is_some(),
    })
}

/// What `kubectl pgdr fence SITE` writes and what it must tell or ask first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceCheck {
    pub notes: Vec<String>,
    /// The site's name is typed even with `--yes`.
    pub must_type: bool,
    /// Write the hold form (the site may hold writes its peer lacks: its failover agent records
    /// and preserves them and rejoins by rewind or re-clone); `false`: the follow form at once
    /// (the site runs as a standby in recovery: it holds nothing of its own to lose).
    pub hold: bool,
}

/// The epoch of a site's own promotion marker (0: never promoted, or unreadable).
fn written_epoch(obs: &SiteObs) -> u64 {
    obs.config
        .as_ref()
        .and_then(|c| c.config.as_ref().ok())
        .map_or(0, pgdr_contract::epoch::written)
}

/// The checks before `fence SITE` (issue 20 item 3): a site that may hold writes of its own
/// (writable, down, unknown) is fenced in the hold form and goes through the failover agent's
/// flow (divergence recorded, WAL preserved, collision-checked rejoin); only a running standby
/// gets the follow form at once. Fencing the site that holds the newer promotion discards its
/// newest writes in favour of an older peer: only with `--force` and the site's name typed.
pub fn check_fence(site: &SiteObs, peer: &SiteObs, force: bool) -> Result<FenceCheck, Refusal> {
    if let Some(e) = &site.error {
        return Err(Refusal::Unreadable {
            site: site.site.clone(),
            error: e.clone(),
        });
    }
    let standby =
        site.writable().is_none() && site.leader_member().is_some_and(|m| m.is_standby_leader());
    let mut notes = Vec::new();
    let (own, theirs) = (written_epoch(site), written_epoch(peer));
    let newest = own > theirs && site.writable().is_some();
    if newest {
        if !force {
            return Err(Refusal::FencesNewest {
                site: site.site.clone(),
                peer: peer.site.clone(),
                own,
                theirs,
            });
        }
        notes.push(fences_newest(&site.site, &peer.site, own, theirs));
    }
    if site.writable().is_some() && peer.writable().is_none() {
        notes.push(format!(
            "{} is the only writable primary: the database becomes read-only until another site \
             is promoted",
            site.site
        ));
    }
    if !standby {
        notes.push(format!(
            "{} may hold writes {} lacks: its failover agent records what it wrote past the \
             fork, has it preserved, and rejoins {} (rewind, or re-clone when a rewind is \
             unsafe); until then it stays read-only",
            site.site, peer.site, peer.site
        ));
        if !site.agent.installed || site.agent.hold || site.agent.suspended == Some(true) {
            notes.push(format!(
                "{}'s failover agent is not running (not installed, held or suspended): the site \
                 stays read-only and on hold until it runs",
                site.site
            ));
        }
    }
    Ok(FenceCheck {
        notes,
        must_type: newest,
        hold: !standby,
    })
}

/// `kubectl pgdr fence SITE`: a fence document of reason `operator` (so that the site shows as
/// fenced, its agent runs the fenced role and `unfence` knows what it ends) in the hold form, or
/// the follow form for a running standby ([`check_fence`]); every other key kept. A fence already
/// there (the agent's, perhaps holding for a WAL preservation or a re-clone) is never replaced:
/// `Ok(None)`. An unreadable one is refused.
pub fn fenced_by_operator(
    config: &Map<String, Value>,
    target: &FollowTarget,
    peer: &str,
    now: Timestamp,
    hold: bool,
) -> Result<Option<Map<String, Value>>, Refusal> {
    match pgdr_contract::fence::read(config) {
        Ok(Some(_)) => Ok(None),
        Err(e) => Err(Refusal::FenceUnreadable {
            error: e.to_string(),
        }),
        Ok(None) => {
            let mut f = pgdr_contract::fence::Fence::hold(
                now,
                pgdr_contract::fence::FenceReason::Operator,
                peer,
            );
            if !hold {
                f.phase = Phase::Follow;
            }
            let mut c = config.clone();
            pgdr_contract::fence::apply(&mut c, &f, Some(target));
            Ok(Some(c))
        }
    }
}

/// `kubectl pgdr advertise SITE`: the checks before a person vouches that SITE's peer did not
/// promote past it (the peer site is down and will stay a standby), so that SITE's readiness
/// sidecar advertises a primary that has not seen its peer since it became one. Refused unless
/// SITE is a readable, unfenced, writable primary and its peer is not writable.
pub fn check_advertise(site: &SiteObs, peer: &SiteObs) -> Result<Vec<String>, Refusal> {
    let cfg = readable_config(site)?;
    if cfg.fence_seen().is_some() {
        return Err(Refusal::AdvertiseFenced {
            site: site.site.clone(),
        });
    }
    if site.writable().is_none() {
        return Err(Refusal::AdvertiseNotPrimary {
            site: site.site.clone(),
            role: site.role().as_str(),
        });
    }
    if let Some(m) = peer.writable() {
        return Err(Refusal::AdvertiseSplitBrain {
            peer: peer.site.clone(),
            member: m.name.clone(),
        });
    }
    let mut notes = Vec::new();
    match (&peer.error, peer_alive(peer)) {
        (_, Some(alive)) => notes.push(format!(
            "{alive}: it is not writable, so this only advertises {} sooner than the tunnel \
             would show it",
            site.site
        )),
        (Some(e), None) => notes.push(format!(
            "{} cannot be read ({e}): you confirm it is down and will not be promoted while {} \
             is advertised (suspend its failover agent, or `kubectl pgdr hold {}` once it is back)",
            peer.site, site.site, peer.site
        )),
        (None, None) => notes.push(format!(
            "{}'s API answers but no leader runs there: you confirm it will not be promoted \
             while {} is advertised",
            peer.site, site.site
        )),
    }
    Ok(notes)
}

/// The config with a person's vouch for this site's current promotion epoch
/// ([`pgdr_contract::vouch`]); refused when a fence appeared meanwhile (compare-and-set).
pub fn vouched_by_operator(
    config: &Map<String, Value>,
    peer: &str,
    now: Timestamp,
) -> Result<Map<String, Value>, Refusal> {
    if pgdr_contract::fence::read(config).map_or(true, |f| f.is_some()) {
        return Err(Refusal::FencedMeanwhile);
    }
    let mut c = config.clone();
    pgdr_contract::vouch::apply(
        &mut c,
        &pgdr_contract::vouch::Vouch {
            at: now,
            by: pgdr_contract::vouch::VouchBy::Operator,
            epoch: pgdr_contract::epoch::written(config),
            note: format!("a person confirmed that {peer} did not promote past this site"),
        },
    );
    Ok(c)
}

/// The config with `standby_cluster` following `target` (fence / demote); every other key kept.
pub fn with_standby(config: &Map<String, Value>, target: &FollowTarget) -> Map<String, Value> {
    let mut c = config.clone();
    c.insert(STANDBY_CLUSTER.into(), target.standby_cluster());
    c
}

/// The config as a promotion leaves it (promote / unfence / the switchover's promotion: a
/// deliberate act, which is what ends a fence): `pgdr_contract::promote`, the same edit the
/// failover agent makes — `standby_cluster` and the fence removed, the slot for the peer
/// declared, and the promotion marker with the next epoch (above both sites' known epochs), so
/// that a returning former primary finds this site's promotion newer than its own and fences
/// itself. A site that is already an unfenced primary is left as it is (no second epoch).
pub fn without_standby(
    config: &Map<String, Value>,
    peer_slot: &SlotName,
    fork: Fork,
    who: &Promotion<'_>,
) -> Map<String, Value> {
    let mut c = config.clone();
    if !dynamic_config::is_standby_cluster(&c) && !c.contains_key(FENCE) {
        return c;
    }
    promote::apply(&mut c, peer_slot, fork, who);
    c
}

/// Where a promotion of the site with this leader forks: the timeline its leader follows and the
/// last position it replayed (the fork, or just below it until the promoted site publishes its
/// switchpoint). `None` when the leader's status does not say: then there is no promotion (a
/// promotion without a fresh marker would let an older marker speak for the site).
pub fn fork(leader: Option<&Member>) -> Option<Fork> {
    let m = leader?;
    let timeline = u32::try_from(m.timeline?).ok().filter(|t| *t > 0)?;
    let replayed = m.replay_lsn.or(m.xlog_location)?;
    Some(Fork { timeline, replayed })
}

/// What a promotion of the other site knows of this site's epoch: the highest its observed
/// config knows, or `Unread` (numbered by the clock, `pgdr_contract::epoch`) when the config
/// could not be read or parsed.
pub fn peer_epoch(obs: &SiteObs, now: Timestamp) -> PeerEpoch {
    match obs.config.as_ref().and_then(|c| c.config.as_ref().ok()) {
        Some(config) => PeerEpoch::Read(pgdr_contract::epoch::known(config)),
        None => PeerEpoch::Unread {
            now: u64::try_from(now.as_second()).unwrap_or(0),
        },
    }
}

/// Where the one replication slot's name comes from, in order: `--slot-name` (or `slotName` in
/// the config file); the failover agents' CronJobs (`FAILOVER_PEER_SLOT_NAME`, set by the chart
/// from `replication.slotName`); a standby site's `standby_cluster.primary_slot_name`. Every
/// source found must agree: a pair whose sites name different slots is refused, naming them.
pub fn slot_name(configured: Option<&SlotName>, obs: &[SiteObs; 2]) -> Result<SlotName, Refusal> {
    if let Some(s) = configured {
        return Ok(s.clone());
    }
    let mut found: Vec<(String, String)> = Vec::new();
    for o in obs {
        if let Some(s) = &o.agent.slot_name {
            found.push((format!("{}'s failover CronJob", o.site), s.clone()));
        }
        if let Some(s) = o
            .config
            .as_ref()
            .filter(|c| c.is_standby())
            .and_then(|c| c.standby_cluster())
            .and_then(pgdr_contract::slot::followed)
        {
            found.push((format!("{}'s standby_cluster", o.site), s.to_string()));
        }
    }
    let Some((first_from, first)) = found.first() else {
        return Err(Refusal::SlotUnknown);
    };
    if let Some((from, other)) = found.iter().find(|(_, s)| s != first) {
        return Err(Refusal::SlotsDiffer {
            first_from: first_from.clone(),
            first: first.clone(),
            from: from.clone(),
            other: other.clone(),
        });
    }
    SlotName::parse(first).map_err(|e| Refusal::SlotInvalid {
        from: first_from.clone(),
        error: e.to_string(),
    })
}

/// `rejoin SITE`: the config with `pgdr_fence.rejoin_approved_at` set, so the agent lets the
/// fenced site be rewound onto the authoritative peer (`failover.rejoin: manual`). `Ok(None)`:
/// approved already. Refused, naming what is wrong, when nothing waits for an approval.
pub fn approve_rejoin(
    site: &str,
    config: &Map<String, Value>,
    now: Timestamp,
) -> Result<Option<Map<String, Value>>, Refusal> {
    let site = || site.to_string();
    let mut fence = match pgdr_contract::fence::read(config) {
        Ok(Some(f)) => f,
        Ok(None) => return Err(Refusal::RejoinNotFenced { site: site() }),
        Err(e) => {
            return Err(Refusal::RejoinUnreadable {
                site: site(),
                error: e.to_string(),
            });
        }
    };
    if fence.rejoin_approved_at.is_some() {
        return Ok(None);
    }
    if fence.phase != Phase::Hold {
        return Err(Refusal::RejoinFollowing {
            site: site(),
            phase: fence.phase.as_str(),
        });
    }
    if fence.fork_lsn.is_none() {
        return Err(Refusal::RejoinNoFork { site: site() });
    }
    fence.rejoin_approved_at = Some(now.to_string());
    let mut c = config.clone();
    // The document as read, with the approval: keys a newer agent wrote are kept (`other`).
    c.insert(
        FENCE.into(),
        serde_json::to_value(&fence).map_err(|e| Refusal::FenceUnwritable {
            site: site(),
            error: e.to_string(),
        })?,
    );
    Ok(Some(c))
}

mod refusal;
mod why;

pub use refusal::{Refusal, fences_newest};
pub use why::{Preflight, Why};

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
