//! `status`: both sites side by side and the pair's health. Pure: built from two observations,
//! rendered as text, JSON or YAML.

use serde::Serialize;
use serde_json::Value;

use pgdr_contract::fence::Seen;

use crate::config::Site;
use crate::model::{Role, SiteObs, StoredProgress, fmt_lsn};
use crate::progress::Progress;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub healthy: bool,
    pub sites: Vec<SiteReport>,
    pub lag: Option<Lag>,
    /// What makes the pair unhealthy (non-zero exit).
    pub problems: Vec<String>,
    /// Worth knowing, not unhealthy.
    pub warnings: Vec<String>,
    pub switchover: Option<Progress>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SiteReport {
    pub name: String,
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub role: Role,
    pub leader: Option<String>,
    pub members: Vec<MemberReport>,
    pub timeline: Option<u64>,
    pub standby_cluster: Option<Value>,
    pub tunnel: Option<TunnelReport>,
    pub agent: AgentReport,
    /// `pgdr_fence` of the dynamic config (phase, reason, peer, since, fork, divergence,
    /// preserve, rejoin_approved_at) while the site is fenced.
    pub fence: Option<Value>,
    /// Both sites writable, as this site's failover agent last recorded it.
    pub split_brain_since: Option<String>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MemberReport {
    pub name: String,
    pub role: Option<String>,
    pub state: Option<String>,
    pub timeline: Option<u64>,
    /// LSNs as PostgreSQL prints them.
    pub write_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    pub receive_lsn: Option<String>,
    pub replication: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TunnelReport {
    pub service: String,
    pub port: Option<u16>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentReport {
    pub installed: bool,
    pub mode: Option<String>,
    pub suspended: Option<bool>,
    pub hold: bool,
    pub last_decision: Option<String>,
    pub reasons: Vec<String>,
    pub last_known_lag_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Lag {
    pub primary: String,
    pub standby: String,
    pub bytes: u64,
    /// Derivable only when nothing is missing (Patroni publishes positions, not times).
    pub seconds: Option<f64>,
}

/// Builds the report. `max_lag_bytes` is the bound above which the pair counts as unhealthy.
pub fn report(sites: &[Site; 2], obs: &[SiteObs; 2], max_lag_bytes: u64) -> Report {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for o in obs {
        site_notes(o, &mut problems, &mut warnings);
    }
    let lag = pair_notes(obs, max_lag_bytes, &mut problems);
    let switchover = switchover_notes(obs, &mut problems, &mut warnings);
    let sites = sites
        .iter()
        .zip(obs)
        .map(|(cfg, o)| site_report(cfg, o))
        .collect();
    Report {
        healthy: problems.is_empty(),
        sites,
        lag,
        problems,
        warnings,
        switchover,
    }
}

/// What one site says on its own: API, config, members, agent, fence, role.
fn site_notes(o: &SiteObs, problems: &mut Vec<String>, warnings: &mut Vec<String>) {
    if let Some(e) = &o.error {
        problems.push(format!("{}: the API cannot be read: {e}", o.site));
        return;
    }
    match &o.config {
        None => problems.push(format!("{}: Patroni's config ConfigMap is missing", o.site)),
        Some(c) => {
            if let Err(e) = &c.config {
                problems.push(format!("{}: {e}", o.site));
            }
            if c.paused() {
                warnings.push(format!("{}: Patroni is paused", o.site));
            }
        }
    }
    for m in &o.members {
        if let Some(p) = &m.status_problem {
            warnings.push(format!("{}: member {}: {p}", o.site, m.name));
        } else if !m.is_running() {
            warnings.push(format!(
                "{}: member {} is {}",
                o.site,
                m.name,
                m.state.as_deref().unwrap_or("unknown")
            ));
        }
        if m.pending_restart {
            warnings.push(format!("{}: member {} needs a restart", o.site, m.name));
        }
    }
    if o.agent.hold {
        warnings.push(format!(
            "{}: the failover agent is held (patroni-dr/hold)",
            o.site
        ));
    }
    if o.agent.suspended == Some(true) {
        warnings.push(format!("{}: the failover CronJob is suspended", o.site));
    }
    if let Some(p) = &o.agent.state_problem {
        warnings.push(format!("{}: agent state: {p}", o.site));
    }
    if let Some(since) = &o.agent.split_brain_since {
        problems.push(format!(
            "SPLIT BRAIN reported by {}'s failover agent since {since}",
            o.site
        ));
    }
    match o.config.as_ref().and_then(|c| c.fence_seen()) {
        Some(pgdr_contract::fence::Seen::Readable(f)) => fence_notes(o, &f, warnings),
        Some(pgdr_contract::fence::Seen::Unreadable { unreadable }) => warnings.push(format!(
            "{}: fenced, but {unreadable} (`kubectl pgdr status -o json` shows it as written)",
            o.site
        )),
        None => {}
    }
    match o.role() {
        Role::Down => problems.push(format!("{}: no running leader", o.site)),
        Role::Demoting | Role::Promoting => {
            problems.push(format!("{}: {} in progress", o.site, o.role().as_str()))
        }
        _ => {}
    }
}

/// What the pair says together: one writable primary, its standby streaming, on the right
/// timeline, within the lag bound. Returns the lag when one is known.
fn pair_notes(obs: &[SiteObs; 2], max_lag_bytes: u64, problems: &mut Vec<String>) -> Option<Lag> {
    let writable: Vec<&SiteObs> = obs.iter().filter(|o| o.writable().is_some()).collect();
    let mut lag = None;
    match writable.as_slice() {
        [_, _] => problems.push(format!(
            "SPLIT BRAIN: both {} and {} are writable primaries",
            obs[0].site, obs[1].site
        )),
        [] => {
            if obs.iter().all(|o| o.error.is_none()) {
                problems.push("no writable primary on either site".into());
            }
        }
        [primary] => {
            let standby = obs
                .iter()
                .find(|o| o.site != primary.site)
                .expect("two sites");
            let p = primary.writable().expect("writable");
            if standby.error.is_none() {
                match standby.leader_member().filter(|l| l.is_standby_leader()) {
                    None => {}
                    Some(l) => {
                        if !l.is_streaming() {
                            problems.push(format!(
                                "{}: the standby leader is not streaming from {}",
                                standby.site, primary.site
                            ));
                        }
                        if let (Some(ptl), Some(stl)) = (p.timeline, l.timeline)
                            && stl > ptl
                        {
                            problems.push(format!(
                                "DIVERGENCE: {} is on timeline {stl}, ahead of primary {} on {ptl}",
                                standby.site, primary.site
                            ));
                        }
                        // Each member refreshes its annotation once per Patroni loop, so a
                        // standby may look ahead of its primary under writes: lag floors at 0.
                        if let (Some(pw), Some(sr)) = (p.xlog_location, l.replayed()) {
                            let bytes = pw.saturating_sub(sr);
                            if bytes > max_lag_bytes {
                                problems.push(format!(
                                    "{} lags {bytes} bytes behind {} (bound {max_lag_bytes})",
                                    standby.site, primary.site
                                ));
                            }
                            lag = Some(Lag {
                                primary: primary.site.clone(),
                                standby: standby.site.clone(),
                                bytes,
                                seconds: (bytes == 0).then_some(0.0),
                            });
                        }
                    }
                }
            }
        }
        _ => unreachable!("two sites"),
    }
    lag
}

/// The most advanced switchover record of either site, and whether it stopped mid-way.
fn switchover_notes(
    obs: &[SiteObs; 2],
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<Progress> {
    let switchover = obs
        .iter()
        .filter_map(|o| o.switchover.as_ref())
        .filter_map(|s| s.progress.as_ref().ok())
        .max_by_key(|p| p.rev)
        .cloned();
    if let Some(p) = &switchover
        && !p.is_finished()
    {
        problems.push(format!(
            "a switchover from {} to {} stopped at step {}: run `kubectl pgdr switchover --resume`{}",
            p.from,
            p.to,
            p.step.as_str(),
            if p.aborted {
                " (it finishes the abort)"
            } else if p.step <= crate::progress::LAST_ABORTABLE {
                " (or `--abort` to give it up: the source takes writes again)"
            } else {
                ""
            }
        ));
    }
    for o in obs {
        if let Some(StoredProgress {
            progress: Err(e), ..
        }) = &o.switchover
        {
            warnings.push(format!("{}: switchover record: {e}", o.site));
        }
    }
    switchover
}

/// What a fenced site's `pgdr_fence` means for the operator.
fn fence_notes(o: &SiteObs, f: &pgdr_contract::fence::Fence, warnings: &mut Vec<String>) {
    warnings.push(format!(
        "{}: fenced ({}) since {}, phase {}: {} is authoritative",
        o.site,
        f.reason.as_str(),
        f.since,
        f.phase.as_str(),
        f.peer,
    ));
    let diverged = f.diverged_bytes.unwrap_or(0);
    if diverged > 0 {
        warnings.push(format!(
            "{}: {diverged} bytes written on timeline {} after the fork at {} (preserved WAL: pgroot/pgdr-diverged/ on the leader's data volume)",
            o.site,
            f.timeline.map_or("?".into(), |t| t.to_string()),
            f.fork_lsn.map_or("?".into(), fmt_lsn),
        ));
    }
    if let Some(r) = &f.reclone {
        warnings.push(format!(
            "{}: re-clone requested at {} (a rewind is unsafe): each member's data directory is moved aside{}, then Patroni clones the site from {}",
            o.site,
            r.requested_at,
            if r.keep_data {
                " and kept (pgroot/pgdr-diverged/reclone-*/data)"
            } else {
                ""
            },
            f.peer,
        ));
    }
    if f.phase == pgdr_contract::fence::Phase::Hold
        && diverged > 0
        && f.rejoin_approved_at.is_none()
        && o.agent.rejoin.as_deref() == Some("manual")
    {
        warnings.push(format!(
            "{}: the rewind (or re-clone) waits for a person (failover.rejoin: manual): `kubectl pgdr rejoin {}`",
            o.site, o.site
        ));
    }
}

fn site_report(cfg: &Site, o: &SiteObs) -> SiteReport {
    let leader = o.leader.as_ref().and_then(|l| l.member.clone());
    let members = o
        .members
        .iter()
        .map(|m| {
            let standby = !m.is_writable();
            MemberReport {
                name: m.name.clone(),
                role: m.role.clone(),
                state: m.state.clone(),
                timeline: m.timeline,
                write_lsn: if standby {
                    None
                } else {
                    m.xlog_location.map(fmt_lsn)
                },
                replay_lsn: m.replay_lsn.map(fmt_lsn),
                receive_lsn: m.receive_lsn.map(fmt_lsn),
                replication: m.replication_state.clone(),
            }
        })
        .collect();
    SiteReport {
        name: o.site.clone(),
        context: cfg.context.clone(),
        namespace: cfg.namespace.clone(),
        role: o.role(),
        timeline: o.leader_member().and_then(|m| m.timeline),
        leader,
        members,
        standby_cluster: o
            .config
            .as_ref()
            .and_then(|c| c.standby_cluster())
            .map(|m| Value::Object(m.clone())),
        tunnel: o.tunnel.as_ref().map(|t| TunnelReport {
            service: t.service.clone(),
            port: t.port,
        }),
        agent: AgentReport {
            installed: o.agent.installed,
            mode: o.agent.mode.clone(),
            suspended: o.agent.suspended,
            hold: o.agent.hold,
            last_decision: o.agent.last_decision.as_ref().map(|d| {
                format!(
                    "{} at {}",
                    d.verdict.as_deref().unwrap_or("?"),
                    d.at.as_deref().unwrap_or("?")
                )
            }),
            reasons: o
                .agent
                .last_decision
                .as_ref()
                .map(|d| d.reasons.clone())
                .unwrap_or_default(),
            last_known_lag_bytes: o.agent.last_known_lag_bytes,
        },
        fence: o.config.as_ref().and_then(|c| c.fence()).cloned(),
        split_brain_since: o.agent.split_brain_since.clone(),
        error: o.error.clone(),
    }
}

/// The side-by-side text view.
pub fn render_text(r: &Report) -> String {
    let mut out = table(&rows(r));
    out.push_str(&footer(r));
    out
}

/// The table: one row per fact, one column per site.
fn rows(r: &Report) -> Vec<(String, Vec<String>)> {
    let col = |f: &dyn Fn(&SiteReport) -> String| r.sites.iter().map(f).collect::<Vec<_>>();
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let mut rows: Vec<(String, Vec<String>)> = vec![
        ("site".into(), col(&|s| s.name.clone())),
        ("context".into(), col(&context_cell)),
        ("role".into(), col(&|s| s.role.as_str().to_string())),
        ("leader".into(), col(&|s| or_dash(s.leader.clone()))),
        (
            "timeline".into(),
            col(&|s| or_dash(s.timeline.map(|t| t.to_string()))),
        ),
    ];
    let max_members = r.sites.iter().map(|s| s.members.len()).max().unwrap_or(0);
    for i in 0..max_members {
        let label = if i == 0 { "members" } else { "" };
        rows.push((label.into(), col(&|s| member_cell(s, i))));
    }
    rows.extend([
        ("replication".into(), col(&replication_cell)),
        ("standby_cluster".into(), col(&standby_cluster_cell)),
        ("fence".into(), col(&fence_cell)),
        ("divergence".into(), col(&divergence_cell)),
        (
            "split brain".into(),
            col(&|s| or_dash(s.split_brain_since.as_ref().map(|t| format!("since {t}")))),
        ),
        ("tunnel".into(), col(&tunnel_cell)),
        ("agent".into(), col(&agent_cell)),
        (
            "last decision".into(),
            col(&|s| or_dash(s.agent.last_decision.clone())),
        ),
    ]);
    rows
}

fn context_cell(s: &SiteReport) -> String {
    format!(
        "{}/{}",
        s.context.as_deref().unwrap_or("(current)"),
        s.namespace.as_deref().unwrap_or("(default)")
    )
}

/// The `i`-th member: name, role/state and its write (or replay) position.
fn member_cell(s: &SiteReport, i: usize) -> String {
    s.members.get(i).map_or(String::new(), |m| {
        let lsn = m
            .write_lsn
            .as_ref()
            .map(|l| format!("write {l}"))
            .or_else(|| m.replay_lsn.as_ref().map(|l| format!("replay {l}")))
            .unwrap_or_default();
        format!(
            "{} {}/{} {}",
            m.name,
            m.role.as_deref().unwrap_or("?"),
            m.state.as_deref().unwrap_or("?"),
            lsn
        )
        .trim_end()
        .to_string()
    })
}

/// The leader's replication state.
fn replication_cell(s: &SiteReport) -> String {
    s.members
        .iter()
        .find(|m| Some(&m.name) == s.leader.as_ref())
        .and_then(|m| m.replication.clone())
        .unwrap_or("-".into())
}

fn standby_cluster_cell(s: &SiteReport) -> String {
    s.standby_cluster.as_ref().map_or("-".into(), |sc| {
        format!(
            "{}:{} slot {}",
            sc["host"].as_str().unwrap_or("?"),
            sc["port"],
            sc.as_object()
                .and_then(pgdr_contract::slot::followed)
                .unwrap_or("-")
        )
    })
}

/// The site's fence read through the contract (the report keeps it as written).
fn fence_seen(s: &SiteReport) -> Option<Seen> {
    s.fence.as_ref().and_then(pgdr_contract::fence::seen_value)
}

fn fence_cell(s: &SiteReport) -> String {
    match fence_seen(s) {
        None => "-".into(),
        Some(Seen::Unreadable { .. }) => "fenced (document unreadable)".into(),
        Some(Seen::Readable(f)) => {
            let approved = if f.rejoin_approved_at.is_some() {
                ", rejoin approved"
            } else {
                ""
            };
            format!(
                "{} ({}) since {}{approved}",
                f.phase.as_str(),
                f.reason.as_str(),
                f.since
            )
        }
    }
}

fn divergence_cell(s: &SiteReport) -> String {
    match fence_seen(s) {
        None => "-".into(),
        Some(Seen::Unreadable { .. }) => "?".into(),
        Some(Seen::Readable(f)) => match (f.diverged_bytes, f.fork_lsn) {
            (Some(b), Some(fork)) => format!("{b} bytes after {}", fmt_lsn(fork)),
            (None, Some(fork)) => format!("fork at {}", fmt_lsn(fork)),
            _ => "fork not known yet".into(),
        },
    }
}

fn tunnel_cell(s: &SiteReport) -> String {
    s.tunnel.as_ref().map_or("-".into(), |t| {
        format!(
            "{} port {}",
            t.service,
            t.port.map_or("?".into(), |p| p.to_string())
        )
    })
}

fn agent_cell(s: &SiteReport) -> String {
    if !s.agent.installed {
        return "-".into();
    }
    format!(
        "{}{}{}",
        s.agent.mode.as_deref().unwrap_or("?"),
        if s.agent.hold { ", HOLD" } else { "" },
        if s.agent.suspended == Some(true) {
            ", suspended"
        } else {
            ""
        }
    )
}

/// The rows as aligned text.
fn table(rows: &[(String, Vec<String>)]) -> String {
    let w0 = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|(_, v)| v[0].len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let line = format!(
            "{k:<w0$}  {:<w1$}  {}",
            v[0],
            v.get(1).map_or("", String::as_str)
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Each agent's reasons (one per line: they are long, and in the table they widened the first
/// site's column), lag, a switchover in progress, warnings, problems and the verdict.
fn footer(r: &Report) -> String {
    let mut out = String::new();
    for s in r.sites.iter().filter(|s| !s.agent.reasons.is_empty()) {
        out.push_str(&format!("{} agent's reasons:\n", s.name));
        for reason in &s.agent.reasons {
            out.push_str(&format!("  - {reason}\n"));
        }
    }
    if let Some(l) = &r.lag {
        out.push_str(&format!(
            "lag: {} is {} bytes behind {}{}\n",
            l.standby,
            l.bytes,
            l.primary,
            l.seconds
                .map(|s| format!(" ({s:.0} s)"))
                .unwrap_or_default()
        ));
    }
    if let Some(p) = &r.switchover {
        out.push_str(&format!(
            "switchover: {} -> {} step {}{}\n",
            p.from,
            p.to,
            p.step.as_str(),
            p.finished_at
                .map(|t| format!(" (finished {t})"))
                .unwrap_or_default()
        ));
    }
    for w in &r.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    for p in &r.problems {
        out.push_str(&format!("PROBLEM: {p}\n"));
    }
    out.push_str(if r.healthy {
        "health: OK\n"
    } else {
        "health: UNHEALTHY\n"
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, resolve};
    use crate::model::tests::{member, site};

    fn sites() -> [Site; 2] {
        let o = Overrides {
            sites: vec![("gold".into(), "a".into()), ("golddr".into(), "b".into())],
            ..Overrides::default()
        };
        resolve(None, &o).unwrap().sites
    }

    fn pair(primary_lsn: u64, standby: crate::model::Member) -> [SiteObs; 2] {
        [
            site("gold", false, member("gold-0", "primary", 1, primary_lsn)),
            site("golddr", true, standby),
        ]
    }

    #[test]
    fn health_table() {
        let mut not_streaming = member("golddr-0", "standby_leader", 1, 90);
        not_streaming.replication_state = None;
        let cases: Vec<(&str, [SiteObs; 2], bool, &str)> = vec![
            (
                "in sync",
                pair(100, member("golddr-0", "standby_leader", 1, 100)),
                true,
                "",
            ),
            (
                "small lag",
                pair(100, member("golddr-0", "standby_leader", 1, 90)),
                true,
                "",
            ),
            (
                "lag over bound",
                pair(5000, member("golddr-0", "standby_leader", 1, 90)),
                false,
                "lags 4910 bytes",
            ),
            (
                "not streaming",
                pair(100, not_streaming),
                false,
                "not streaming",
            ),
            (
                "timeline ahead",
                pair(100, member("golddr-0", "standby_leader", 2, 100)),
                false,
                "DIVERGENCE",
            ),
            (
                "standby annotation newer than the primary's",
                pair(100, member("golddr-0", "standby_leader", 1, 120)),
                true,
                "",
            ),
            (
                "split brain",
                [
                    site("gold", false, member("gold-0", "primary", 1, 100)),
                    site("golddr", false, member("golddr-0", "primary", 2, 100)),
                ],
                false,
                "SPLIT BRAIN",
            ),
            (
                "no primary",
                [
                    site("gold", true, member("gold-0", "standby_leader", 1, 100)),
                    site("golddr", true, member("golddr-0", "standby_leader", 1, 100)),
                ],
                false,
                "no writable primary",
            ),
            (
                "unreachable peer",
                [
                    site("gold", false, member("gold-0", "primary", 1, 100)),
                    SiteObs {
                        site: "golddr".into(),
                        error: Some("connection refused".into()),
                        ..SiteObs::default()
                    },
                ],
                false,
                "cannot be read",
            ),
        ];
        for (name, obs, healthy, needle) in cases {
            let r = report(&sites(), &obs, 1024);
            assert_eq!(r.healthy, healthy, "{name}: {:?}", r.problems);
            if !needle.is_empty() {
                assert!(
                    r.problems.iter().any(|p| p.contains(needle)),
                    "{name}: {:?}",
                    r.problems
                );
            }
        }
    }

    #[test]
    fn lag_and_text() {
        let obs = pair(100, member("golddr-0", "standby_leader", 1, 90));
        let r = report(&sites(), &obs, 1024);
        let lag = r.lag.as_ref().unwrap();
        assert_eq!((lag.bytes, lag.seconds), (10, None));
        let text = render_text(&r);
        assert!(text.contains("role             primary"), "{text}");
        assert!(text.contains("standby"), "{text}");
        assert!(
            text.contains("lag: golddr is 10 bytes behind gold"),
            "{text}"
        );
        assert!(text.ends_with("health: OK\n"), "{text}");
        // Long reasons go under the table, one per line, and never widen a column.
        let mut long = r.clone();
        long.sites[1].agent.reasons = vec!["x".repeat(300), "second".into()];
        let text = render_text(&long);
        assert!(
            text.contains(&format!(
                "golddr agent's reasons:\n  - {}\n  - second\n",
                "x".repeat(300)
            )),
            "{text}"
        );
        let widest_table_line = text
            .lines()
            .take_while(|l| !l.ends_with("reasons:"))
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(widest_table_line < 200, "{text}");
        let in_sync = report(
            &sites(),
            &pair(100, member("golddr-0", "standby_leader", 1, 100)),
            0,
        );
        assert_eq!(in_sync.lag.unwrap().seconds, Some(0.0));
    }

    #[test]
    fn hold_is_a_warning_and_stopped_switchover_a_problem() {
        let mut obs = pair(100, member("golddr-0", "standby_leader", 1, 100));
        obs[1].agent.installed = true;
        obs[1].agent.hold = true;
        let r = report(&sites(), &obs, 1024);
        assert!(r.healthy);
        assert!(
            r.warnings.iter().any(|w| w.contains("held")),
            "{:?}",
            r.warnings
        );
    }

    /// The fence and divergence columns read the fence through the contract's `Fence`; a
    /// document it cannot read still shows the site as fenced.
    #[test]
    fn fence_cells_read_the_contract() {
        let with_fence = |fence: Value| {
            let mut o = site("golddr", true, member("golddr-0", "standby_leader", 1, 100));
            if let Some(Ok(map)) = o.config.as_mut().map(|c| c.config.as_mut()) {
                map.insert(pgdr_contract::keys::FENCE.into(), fence);
            }
            site_report(&sites()[1], &o)
        };
        let r = with_fence(serde_json::json!({"since": "2026-11-30T16:00:00Z",
            "reason": "peer-authoritative", "peer": "gold", "phase": "hold", "timeline": 1,
            "fork_lsn": "0/5000A28", "diverged_bytes": 16438744,
            "rejoin_approved_at": "2026-11-30T17:00:00Z"}));
        assert_eq!(
            fence_cell(&r),
            "hold (peer-authoritative) since 2026-11-30T16:00:00Z, rejoin approved"
        );
        assert_eq!(divergence_cell(&r), "16438744 bytes after 0/5000A28");
        let r = with_fence(serde_json::json!({"since": "2026-11-30T16:00:00Z",
            "reason": "operator", "peer": "gold", "phase": "follow"}));
        assert_eq!(
            fence_cell(&r),
            "follow (operator) since 2026-11-30T16:00:00Z"
        );
        assert_eq!(divergence_cell(&r), "fork not known yet");
        let r = with_fence(serde_json::json!({"phase": 3}));
        assert_eq!(fence_cell(&r), "fenced (document unreadable)");
        assert_eq!(divergence_cell(&r), "?");
        let r = with_fence(Value::Null);
        assert_eq!(
            (fence_cell(&r), divergence_cell(&r)),
            ("-".into(), "-".into())
        );
    }
}
