//! The commands: observe, decide (pure, in `plan`/`status`), act, repeat. Human progress goes to
//! stderr, results to stdout.

use pgdr_contract::epoch::PeerEpoch;
use pgdr_contract::slot::SlotName;
use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::cli::{Component, Output};
use crate::config::Settings;
use crate::error::Error;
use crate::kube_api::SiteClient;
use crate::model::{FENCE, SiteObs, fmt_lsn};
use crate::plan::{self, Action, Next, Pair, Refusal, Request};
use crate::progress::Progress;
use crate::shell;
use crate::status;

/// How often waits re-observe the sites.
const POLL: Duration = Duration::from_millis(1000);

/// Where the human lines and answers go; tests swap in buffers.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub input: &'a mut dyn BufRead,
    pub started: Instant,
}

impl Io<'_> {
    pub fn say(&mut self, msg: impl AsRef<str>) {
        let t = self.started.elapsed().as_secs_f64();
        let _ = writeln!(self.err, "[{t:7.1}s] {}", msg.as_ref());
        tracing::debug!(message = msg.as_ref());
    }

    /// Asks the operator to type `expected`; anything else declines.
    fn confirm(&mut self, question: &str, expected: &str) -> Result<(), Error> {
        let _ = write!(self.err, "{question}\nType '{expected}' to continue: ");
        let _ = self.err.flush();
        let mut line = String::new();
        self.input
            .read_line(&mut line)
            .map_err(|_| Error::NotConfirmed)?;
        if line.trim() == expected {
            Ok(())
        } else {
            Err(Error::NotConfirmed)
        }
    }
}

/// The two connected sites, in configuration order.
pub struct Pair2 {
    pub sites: [SiteClient; 2],
    /// `--slot-name`, when given; else read from the sites ([`Pair2::slot`]).
    pub slot_name: Option<SlotName>,
}

impl Pair2 {
    pub fn index(&self, name: &str) -> usize {
        if self.sites[0].site.name == name {
            0
        } else {
            1
        }
    }
    pub async fn observe(&self) -> [SiteObs; 2] {
        let (a, b) = tokio::join!(self.sites[0].observe(), self.sites[1].observe());
        [a, b]
    }
    /// The one replication slot between the sites (`plan::slot_name`); refused, before anything
    /// is changed, when it cannot be told or the sites disagree.
    pub fn slot(&self, obs: &[SiteObs; 2]) -> Result<SlotName, Error> {
        plan::slot_name(self.slot_name.as_ref(), obs).map_err(Error::Refused)
    }
}

/// `status`: returns whether the pair is healthy.
pub async fn status(
    pair: &Pair2,
    settings: &Settings,
    output: Output,
    max_lag: u64,
    io: &mut Io<'_>,
) -> Result<bool, Error> {
    let obs = pair.observe().await;
    let sites = [pair.sites[0].site.clone(), pair.sites[1].site.clone()];
    let mut r = status::report(&sites, &obs, max_lag);
    // The effective namespaces, for the operator's next kubectl command.
    for (s, c) in r.sites.iter_mut().zip(&pair.sites) {
        s.namespace = Some(c.namespace.clone());
    }
    let _ = settings;
    let text = match output {
        Output::Text => status::render_text(&r),
        Output::Json => {
            serde_json::to_string_pretty(&r).map_err(|e| Error::Output(e.to_string()))? + "\n"
        }
        Output::Yaml => serde_saphyr::to_string(&r).map_err(|e| Error::Output(e.to_string()))?,
    };
    io.out
        .write_all(text.as_bytes())
        .map_err(|e| Error::Output(e.to_string()))?;
    Ok(r.healthy)
}

/// With `status --watch`: a line before each view (a blank line between text views; a YAML
/// document separator between YAML ones; JSON views follow each other as a stream).
pub fn watch_header(
    shown: u64,
    interval: u64,
    output: Output,
    io: &mut Io<'_>,
) -> Result<(), Error> {
    let line = match output {
        Output::Text => format!(
            "{}--- {} (every {interval}s; Ctrl-C to stop)\n",
            if shown > 0 { "\n" } else { "" },
            Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC")
        ),
        Output::Yaml => "---\n".to_string(),
        Output::Json => String::new(),
    };
    io.out
        .write_all(line.as_bytes())
        .map_err(|e| Error::Output(e.to_string()))
}

/// How `psql` and `logs` reach a site: which member, and whether to run kubectl or print it.
pub struct Shell<'a> {
    pub member: Option<&'a str>,
    pub print: bool,
}

/// `psql SITE`: `kubectl exec` into the member's Patroni container (`shell`). Returns psql's
/// exit code.
pub async fn psql(
    pair: &Pair2,
    site: &str,
    how: &Shell<'_>,
    dbname: &str,
    tty: bool,
    extra: &[String],
    io: &mut Io<'_>,
) -> Result<i32, Error> {
    let c = &pair.sites[pair.index(site)];
    let pod =
        shell::pick_member(&c.observe().await, how.member).map_err(|reason| Error::NoMember {
            site: site.to_string(),
            reason,
        })?;
    let args = shell::psql_args(&c.site, &c.namespace, &pod, dbname, tty, extra);
    kubectl(&args, how.print, io)
}

/// `logs SITE`: `kubectl logs` of the member's Patroni and sidecar containers and of the
/// failover agent's latest Job, one after the other under a title. Returns the last non-zero
/// kubectl exit code (0 when all succeeded).
pub async fn logs(
    pair: &Pair2,
    site: &str,
    how: &Shell<'_>,
    component: Component,
    tail: u64,
    follow: bool,
    io: &mut Io<'_>,
) -> Result<i32, Error> {
    let c = &pair.sites[pair.index(site)];
    let no_member = |reason| Error::NoMember {
        site: site.to_string(),
        reason,
    };
    // Decided by the flags alone, before asking the API anything.
    if follow && component == Component::All {
        return Err(no_member(
            "--follow streams one log: pick it with --component".to_string(),
        ));
    }
    let pod = match component {
        Component::Agent => String::new(),
        _ => shell::pick_member(&c.observe().await, how.member).map_err(no_member)?,
    };
    let job = match component {
        Component::Agent | Component::All => c.latest_agent_job().await?,
        _ => None,
    };
    let sources = shell::log_sources(component, &pod, job.as_deref());
    if sources.is_empty() {
        return Err(no_member(format!(
            "has no failover agent run to show (no Job of CronJob {})",
            c.site.agent_cronjob()
        )));
    }
    if job.is_none() && component == Component::All {
        io.say(format!(
            "{site}: no failover agent run found (no Job of CronJob {})",
            c.site.agent_cronjob()
        ));
    }
    let mut code = 0;
    for source in &sources {
        if !how.print {
            let _ = writeln!(io.out, "==> {} <==", source.title(site));
            let _ = io.out.flush();
        }
        let args = shell::logs_args(&c.site, &c.namespace, source, tail, follow);
        match kubectl(&args, how.print, io)? {
            0 => {}
            failed => code = failed,
        }
    }
    Ok(code)
}

/// Prints the command, or runs kubectl with the terminal's streams and returns its exit code.
fn kubectl(args: &[String], print: bool, io: &mut Io<'_>) -> Result<i32, Error> {
    if print {
        writeln!(io.out, "{}", shell::render(args)).map_err(|e| Error::Output(e.to_string()))?;
        return Ok(crate::EXIT_OK);
    }
    let _ = io.out.flush();
    let status = std::process::Command::new("kubectl")
        .args(args)
        .status()
        .map_err(|e| Error::Kubectl(e.to_string()))?;
    Ok(status.code().unwrap_or(crate::EXIT_API))
}

/// `hold` / `release`.
pub async fn hold(
    pair: &Pair2,
    settings: &Settings,
    site: Option<&str>,
    on: bool,
    io: &mut Io<'_>,
) -> Result<(), Error> {
    let targets: Vec<&SiteClient> = match site {
        Some(name) => {
            settings.site(name)?;
            vec![&pair.sites[pair.index(name)]]
        }
        None => pair.sites.iter().collect(),
    };
    for c in targets {
        let verb = if on { "held" } else { "released" };
        if c.set_hold(on).await? {
            io.say(format!(
                "{}: failover agent {verb} ({} on ConfigMap {})",
                c.site.name,
                crate::model::HOLD_ANNOTATION,
                c.site.state_map()
            ));
        } else {
            io.say(format!(
                "{}: no failover agent here (ConfigMap {} not found); nothing to {}",
                c.site.name,
                c.site.state_map(),
                if on { "hold" } else { "release" }
            ));
        }
    }
    Ok(())
}

/// Waits until `done` holds for the observed pair, or the timeout.
async fn wait_for(
    pair: &Pair2,
    what: &str,
    timeout: Duration,
    next: &'static str,
    io: &mut Io<'_>,
    done: impl Fn(&[SiteObs; 2]) -> Result<(), String>,
) -> Result<(), Error> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let obs = pair.observe().await;
        match done(&obs) {
            Ok(()) => return Ok(()),
            Err(seen) => {
                if seen != last {
                    io.say(format!("waiting: {seen}"));
                    last = seen;
                }
            }
        }
        if started.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_string(),
                timeout,
                last,
                next,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `fence SITE`.
pub async fn fence(
    pair: &Pair2,
    site: &str,
    force: bool,
    yes: bool,
    timeout: Duration,
    io: &mut Io<'_>,
) -> Result<(), Error> {
    let i = pair.index(site);
    let c = &pair.sites[i];
    let obs = pair.observe().await;
    let check = plan::check_fence(&obs[i], &obs[1 - i], force).map_err(Error::Refused)?;
    let slot = pair.slot(&obs)?;
    let target = c.standby_target(&slot).await?;
    for n in &check.notes {
        io.say(n);
    }
    if !yes || check.must_type {
        let form = if check.hold {
            "hold: read-only, following nothing until its failover agent has recorded and \
             preserved what it wrote past the fork"
                .to_string()
        } else {
            format!(
                "follow {}:{} (slot {})",
                target.host, target.port, target.slot
            )
        };
        io.confirm(&format!("Fence {site} ({form})."), site)?;
    }
    let now = Timestamp::now();
    let changed = c
        .try_edit_config(|m| {
            Ok(
                plan::fenced_by_operator(m, &target, &c.site.peer, now, check.hold)?
                    .unwrap_or_else(|| m.clone()),
            )
        })
        .await?;
    match obs[i].config.as_ref().and_then(|cfg| cfg.fence_seen()) {
        Some(existing) if !changed => {
            let follows = obs[i]
                .config
                .as_ref()
                .and_then(|cfg| cfg.standby_cluster())
                .and_then(pgdr_contract::slot::followed)
                .map_or_else(
                    || "follows nothing yet (hold)".to_string(),
                    |slot| format!("follows its peer with slot {slot}"),
                );
            io.say(format!(
                "{site}: already fenced ({}, phase {}): left as it is (an existing fence is never \
                 replaced); it {follows}; `kubectl pgdr status` shows its state",
                existing.fence().map_or("unreadable", |f| f.reason.as_str()),
                existing.fence().map_or("unreadable", |f| f.phase.as_str()),
            ))
        }
        _ if check.hold => io.say(format!(
            "{site}: {FENCE} (reason operator, phase hold) {}; its failover agent takes it \
             from here",
            if changed { "written" } else { "already set" },
        )),
        _ => io.say(format!(
            "{site}: standby_cluster {} ({}:{}, slot {}; {FENCE} reason operator)",
            if changed { "written" } else { "already set" },
            target.host,
            target.port,
            target.slot
        )),
    }
    wait_for(
        pair,
        &format!("{site} to stop being writable"),
        timeout,
        "check Patroni's log on that site",
        io,
        |o| match o[i].writable() {
            None => Ok(()),
            Some(m) => Err(format!("{site}: {} still runs as a primary", m.name)),
        },
    )
    .await?;
    io.say(format!("{site}: fenced (read-only)"));
    Ok(())
}

/// `unfence SITE` and `promote SITE --force`: remove standby_cluster, declare the peer's slot,
/// write the next epoch. The site's name is typed unless `--yes`, and always while the peer is
/// visibly alive.
pub async fn promote(
    pair: &Pair2,
    site: &str,
    kind: plan::PromoteKind,
    force: bool,
    yes: bool,
    timeout: Duration,
    io: &mut Io<'_>,
) -> Result<(), Error> {
    let i = pair.index(site);
    let c = &pair.sites[i];
    let obs = pair.observe().await;
    let check = plan::check_promote(&obs[i], &obs[1 - i], kind, force).map_err(Error::Refused)?;
    for n in &check.notes {
        io.say(n);
    }
    if !yes || check.must_type {
        io.confirm(
            &format!("Promote {site} to a writable primary. Writes acknowledged by {} after the position above are lost.", c.site.peer),
            site,
        )?;
    }
    let slot = pair.slot(&obs)?;
    let changed = promote_site(pair, site, &obs, &slot, io).await?;
    io.say(format!(
        "{site}: standby_cluster {} (slot {slot} declared for {})",
        if changed { "removed" } else { "already absent" },
        c.site.peer
    ));
    wait_for(
        pair,
        &format!("{site} to run as a writable primary"),
        timeout,
        "check Patroni's log on that site",
        io,
        |o| match o[i].writable() {
            Some(m) => {
                let _ = m;
                Ok(())
            }
            None => Err(format!("{site} is {}", o[i].role().as_str())),
        },
    )
    .await?;
    let obs = pair.observe().await;
    let tl = obs[i]
        .writable()
        .and_then(|m| m.timeline)
        .map_or("?".into(), |t| t.to_string());
    io.say(format!("{site}: writable primary on timeline {tl}"));
    Ok(())
}

/// `advertise SITE`: a person vouches that SITE's peer did not promote past it, so that SITE's
/// readiness sidecar advertises its primary without having seen the peer (issue 20 item 12).
pub async fn advertise(pair: &Pair2, site: &str, yes: bool, io: &mut Io<'_>) -> Result<(), Error> {
    let i = pair.index(site);
    let c = &pair.sites[i];
    let obs = pair.observe().await;
    let notes = plan::check_advertise(&obs[i], &obs[1 - i]).map_err(Error::Refused)?;
    for n in &notes {
        io.say(n);
    }
    if !yes {
        io.confirm(
            &format!(
                "Advertise {site}: its readiness sidecar sends the application to it although it \
                 has not seen {} since it became primary. If {} was promoted meanwhile, both \
                 sites take writes.",
                c.site.peer, c.site.peer
            ),
            site,
        )?;
    }
    let now = Timestamp::now();
    c.try_edit_config(|m| plan::vouched_by_operator(m, &c.site.peer, now))
        .await?;
    io.say(format!(
        "{site}: vouched ({} {now}); its readiness sidecar advertises it on its next poll \
         (`/status` awaiting_peer_evidence_since clears)",
        pgdr_contract::keys::PEER_VOUCH
    ));
    Ok(())
}

/// `rejoin SITE`: approve the rewind of a fenced site (compare-and-set of
/// `pgdr_fence.rejoin_approved_at`; refused, untouched, when nothing waits for it).
pub async fn rejoin(pair: &Pair2, site: &str, yes: bool, io: &mut Io<'_>) -> Result<(), Error> {
    let i = pair.index(site);
    let c = &pair.sites[i];
    let obs = pair.observe().await;
    if let Some(e) = &obs[i].error {
        return Err(Error::Refused(Refusal::Unreadable {
            site: site.to_string(),
            error: e.clone(),
        }));
    }
    let config = obs[i].config.as_ref().and_then(|c| c.config.as_ref().ok());
    // Checked here for the question, and again inside the compare-and-set.
    if let Some(cfg) = config {
        match plan::approve_rejoin(site, cfg, Timestamp::now()) {
            Err(e) => return Err(Error::Refused(e)),
            Ok(None) => {
                io.say(format!("{site}: rejoin approved already; nothing changed"));
                return Ok(());
            }
            Ok(Some(_)) => {}
        }
    }
    let fence = obs[i]
        .config
        .as_ref()
        .and_then(|c| c.fence_seen())
        .and_then(|seen| seen.fence().cloned());
    let or_unknown = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    let summary = format!(
        "{site} wrote {} bytes on timeline {} after the fork at {} (its end: {}); the rewind onto {} discards them from the database. \
         The failover agent preserves that WAL first (sidecar /status `divergence`; pgroot/pgdr-diverged/ on the leader's data volume).",
        or_unknown(
            fence
                .as_ref()
                .and_then(|f| f.diverged_bytes)
                .map(|b| b.to_string())
        ),
        or_unknown(
            fence
                .as_ref()
                .and_then(|f| f.timeline)
                .map(|t| t.to_string())
        ),
        or_unknown(fence.as_ref().and_then(|f| f.fork_lsn).map(fmt_lsn)),
        or_unknown(fence.as_ref().and_then(|f| f.local_end_lsn).map(fmt_lsn)),
        or_unknown(fence.as_ref().map(|f| f.peer.clone())),
    );
    io.say(&summary);
    if !yes {
        io.confirm(&format!("Approve the rejoin of {site}."), site)?;
    }
    let now = Timestamp::now();
    let changed = c
        .try_edit_config(|m| Ok(plan::approve_rejoin(site, m, now)?.unwrap_or_else(|| m.clone())))
        .await?;
    io.say(format!(
        "{site}: rejoin {} ({FENCE}.rejoin_approved_at); the failover agent rewinds it onto its peer on its next run",
        if changed { "approved" } else { "approved already" }
    ));
    Ok(())
}

/// The most advanced switchover record on either site, and the target's own copy version.
fn pick_progress(obs: &[SiteObs; 2]) -> Option<Progress> {
    obs.iter()
        .filter_map(|o| o.switchover.as_ref())
        .filter_map(|s| s.progress.as_ref().ok())
        .max_by_key(|p| p.rev)
        .cloned()
}

/// `switchover`: runs the step machine until done, refused, stuck, or a step times out.
pub async fn switchover(
    pair: &Pair2,
    req: &Request,
    step_timeout: Duration,
    io: &mut Io<'_>,
) -> Result<String, Error> {
    let mut last_wait = String::new();
    let mut wait_started: Option<Instant> = None;
    loop {
        let obs = pair.observe().await;
        let progress = pick_progress(&obs);
        let logged = progress.as_ref().map_or(0, |p| p.log.len());
        let (from, to) = match plan::direction(req, progress.as_ref()).map_err(Error::Refused)? {
            Some(d) => d,
            None => match &req.to {
                Some(to) => {
                    let i = pair.index(to);
                    if pair.sites[i].site.name != *to {
                        return Err(Error::Refused(Refusal::NotConfigured { site: to.clone() }));
                    }
                    (pair.sites[1 - i].site.name.clone(), to.clone())
                }
                // --resume with nothing active: the machine says so.
                None => (
                    pair.sites[0].site.name.clone(),
                    pair.sites[1].site.name.clone(),
                ),
            },
        };
        let (fi, ti) = (pair.index(&from), pair.index(&to));
        let decision = plan::next(
            &Pair {
                from: &obs[fi],
                to: &obs[ti],
            },
            progress.as_ref(),
            req,
            Timestamp::now(),
        );
        if !matches!(decision, Next::Wait(_)) {
            wait_started = None;
            last_wait.clear();
        }
        match decision {
            Next::Done(why) => {
                let msg = why.to_string();
                io.say(&msg);
                return Ok(msg);
            }
            Next::Refuse(why) => return Err(Error::Refused(Refusal::Switchover(Box::new(why)))),
            Next::Stuck(why) => {
                let step = progress.map_or("start", |p| p.step.as_str());
                return Err(Error::Stuck {
                    step,
                    reason: why.to_string(),
                });
            }
            Next::Begin {
                progress: p,
                warnings,
            } => {
                if !warnings.is_empty() {
                    io.say("--force: going ahead despite:");
                    for w in &warnings {
                        io.say(format!("  - {w}"));
                    }
                    io.say(format!(
                        "  what may be lost: nothing while {to} catches up to the demotion token; if it cannot within {}s, \
                         --force promotes it anyway and writes {from} acknowledged after {to}'s replay position are lost",
                        req.force_after.as_secs()
                    ));
                }
                record(pair, &obs, ti, fi, &p, true, io).await?;
            }
            Next::Record { progress: p } => {
                let written = record(pair, &obs, ti, fi, &p, p.log.len() > logged, io).await?;
                if written && p.is_finished() {
                    return Ok(p.log.last().map_or(String::new(), |l| l.message.clone()));
                }
            }
            Next::Act { action, why } => {
                io.say(&why);
                let slot = pair.slot(&obs)?;
                act(pair, &action, &slot, io).await?;
            }
            Next::Wait(why) => {
                let reason = why.to_string();
                let started = *wait_started.get_or_insert_with(Instant::now);
                if reason != last_wait {
                    io.say(format!("waiting: {reason}"));
                    last_wait = reason.clone();
                }
                if started.elapsed() >= step_timeout {
                    return Err(Error::Timeout {
                        what: format!("step {}", progress.map_or("start", |p| p.step.as_str())),
                        timeout: step_timeout,
                        last: reason,
                        next: "run `kubectl pgdr switchover --resume` to continue from the recorded step",
                    });
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// Writes the record: compare-and-set on the target site (authoritative), then a copy on the
/// source (best effort: the source may be the site that is down).
async fn record(
    pair: &Pair2,
    obs: &[SiteObs; 2],
    ti: usize,
    fi: usize,
    p: &Progress,
    announce: bool,
    io: &mut Io<'_>,
) -> Result<bool, Error> {
    let expected = obs[ti]
        .switchover
        .as_ref()
        .map_or(String::new(), |s| s.resource_version.clone());
    if !pair.sites[ti].write_progress(p, Some(&expected)).await? {
        io.say("the switchover record changed concurrently; reading it again");
        return Ok(false);
    }
    if let Some(last) = p.log.last().filter(|_| announce) {
        io.say(format!("step {}: {}", last.step.as_str(), last.message));
    }
    if let Err(e) = pair.sites[fi].write_progress(p, None).await {
        io.say(format!(
            "warning: could not copy the record to {}: {e}",
            pair.sites[fi].site.name
        ));
    }
    Ok(true)
}

async fn act(pair: &Pair2, action: &Action, slot: &SlotName, io: &mut Io<'_>) -> Result<(), Error> {
    match action {
        Action::SetHold { sites } | Action::ReleaseHold { sites } => {
            let on = matches!(action, Action::SetHold { .. });
            for s in sites {
                let c = &pair.sites[pair.index(s)];
                c.set_hold(on).await?;
                io.say(format!(
                    "{s}: failover agent {}",
                    if on { "held" } else { "released" }
                ));
            }
        }
        Action::Demote { site } => {
            let c = &pair.sites[pair.index(site)];
            let target = c.standby_target(slot).await?;
            c.edit_config(|m| plan::with_standby(m, &target)).await?;
            io.say(format!(
                "{site}: standby_cluster -> {}:{} (slot {})",
                target.host, target.port, target.slot
            ));
        }
        Action::Restore { site } => {
            let c = &pair.sites[pair.index(site)];
            c.edit_config(|m| {
                let mut m = m.clone();
                m.remove(pgdr_contract::keys::STANDBY_CLUSTER);
                m
            })
            .await?;
            io.say(format!(
                "{site}: standby_cluster removed (restored; its promotion epoch unchanged)"
            ));
        }
        Action::Promote { site } => {
            let obs = pair.observe().await;
            promote_site(pair, site, &obs, slot, io).await?;
            io.say(format!(
                "{site}: standby_cluster removed, slot {slot} declared"
            ));
        }
    }
    Ok(())
}

/// Every promotion the plugin makes (promote, unfence, the switchover's promotion): one
/// compare-and-set of the site's config with the next epoch above both sites' known epochs
/// (`pgdr_contract::promote`); refused without the leader's timeline and position (no fresh
/// marker, no promotion). The new epoch is then recorded as seen on the other site when it can
/// be reached, so that a later promotion there is numbered above it. `Ok(changed)`.
async fn promote_site(
    pair: &Pair2,
    site: &str,
    obs: &[SiteObs; 2],
    slot: &SlotName,
    io: &mut Io<'_>,
) -> Result<bool, Error> {
    let i = pair.index(site);
    let c = &pair.sites[i];
    let fork = plan::fork(obs[i].leader_member()).ok_or_else(|| Refusal::NoFork {
        site: site.to_string(),
    })?;
    let now = Timestamp::now();
    let peer = plan::peer_epoch(&obs[1 - i], now);
    if let PeerEpoch::Unread { .. } = peer {
        io.say(format!(
            "note: {}'s config could not be read: the new epoch is numbered by the clock, above \
             any promotion {} made without knowing of this one",
            c.site.peer, c.site.peer
        ));
    }
    let who = pgdr_contract::promote::Promotion {
        site,
        at: now.to_string(),
        peer,
    };
    let changed = c
        .edit_config(|m| plan::without_standby(m, slot, fork, &who))
        .await?;
    let epoch = pair.observe().await[i]
        .config
        .as_ref()
        .and_then(|c| c.config.as_ref().ok())
        .map(pgdr_contract::epoch::written);
    if let Some(e) = epoch.filter(|e| *e > 0) {
        io.say(format!("{site}: promotion epoch {e}"));
        let other = &pair.sites[1 - i];
        let recorded = other
            .edit_config(|m| {
                let mut m = m.clone();
                pgdr_contract::epoch::record_seen(&mut m, e);
                m
            })
            .await;
        if let Err(err) = recorded {
            io.say(format!(
                "note: {} was not told of epoch {e} ({err}); its failover agent records it once \
                 it sees {site}",
                c.site.peer
            ));
        }
    }
    Ok(changed)
}
