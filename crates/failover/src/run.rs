//! One run: take samples, decide on each, record the state with compare-and-set, act on the
//! verdict. The wiring of `observe` → `decide` → `act`; no rule lives here.

use kube::Client;
use serde_json::json;

use pgdr_core::k8s::Kube;
use pgdr_core::retry;

use crate::act::{self, Announcement, Promoted, StoredState};
use crate::ctx::Ctx;
use crate::role::{self, Role};
use crate::standby::{self as decide, Decision, Probe, Reason, Sample, Verdict};
use crate::{COMPONENT, Error, Report, Settings};
use crate::{fenced, primary};

/// Builds the Kubernetes client from the environment and runs.
pub async fn run(settings: &Settings) -> Result<Report, Error> {
    let (client, _) = pgdr_core::k8s::client(settings.config.api_timeout.get()).await?;
    let run_id =
        std::env::var("HOSTNAME").unwrap_or_else(|_| format!("{COMPONENT}-{}", std::process::id()));
    run_with(settings, client, &run_id).await
}

/// One run with a given client and run id (the Pod name in a cluster).
pub async fn run_with(settings: &Settings, client: Client, run_id: &str) -> Result<Report, Error> {
    pgdr_core::tls::install_crypto_provider();
    let ctx = Ctx {
        settings,
        kube: Kube {
            client,
            namespace: settings.config.namespace.clone(),
            deadline: settings.config.api_timeout.get(),
        },
        http: reqwest::Client::builder()
            .timeout(settings.config.probe_timeout.get())
            .build()
            .expect("a plain reqwest client always builds"),
        run: run_id.to_string(),
    };
    let (kube, http) = (&ctx.kube, &ctx.http);
    if settings.witnesses.is_empty() {
        tracing::warn!(
            mode = ?settings.policy.mode,
            "no witness configured (FAILOVER_ALLOW_NO_WITNESS): a tunnel-only partition, with both \
             sites alive, looks like a lost primary site and can promote this one"
        );
    }
    let started = tokio::time::Instant::now();
    let mut failed_samples = 0;
    let mut taken = 0;
    let mut last: Option<Decision> = None;
    // The latest primary-role or fenced-site verdict, when the latest sample was one.
    let mut last_guard: Option<(Verdict, Vec<String>)> = None;
    let mut announced = primary::observe::Announced::default();
    // The peer's epoch already recorded by this run (recorded once per run at most per value).
    let mut recorded_epoch = 0;

    for i in 0..settings.config.samples_per_run {
        tokio::time::sleep_until(started + settings.interval() * i).await;
        // The site's current role decides what this sample does (never the values file: after
        // a failover the roles have swapped without a `helm upgrade`).
        match role::role(settings, kube).await? {
            Role::Primary(local) => {
                let seen = primary::observe::primary_sample(&ctx, &local, &mut announced).await?;
                taken = i + 1;
                last_guard = Some(seen);
                continue;
            }
            Role::Fenced(local, fence) => {
                let seen = fenced::observe::fenced_sample(&ctx, &local, &fence).await?;
                taken = i + 1;
                last_guard = Some(seen);
                continue;
            }
            Role::Unknown(reason) => {
                tracing::error!(%reason, "unreadable fence");
                taken = i + 1;
                last_guard = Some((Verdict::Unknown, vec![reason]));
                break;
            }
            Role::Standby => last_guard = None,
        }
        let (sample, patroni, peer_epoch) = crate::observe::sample(settings, kube, run_id).await?;
        if let Some(epoch) = peer_epoch.filter(|e| *e > recorded_epoch) {
            act::record_seen_epoch(settings, kube, epoch).await;
            recorded_epoch = epoch;
        }
        let (decision, stored) = decide_and_record(settings, kube, sample.clone()).await?;
        taken = i + 1;
        failed_samples += u32::from(decision.failed_sample && decision.counted);
        log_sample(taken, &sample, &decision, stored.as_ref());
        if decision.notify_replication_broken {
            announce_replication_broken(settings, kube, http, &decision).await;
        }

        match decision.verdict {
            Verdict::Promote => {
                log_decision(&decision);
                let promoted = promote(settings, kube, http, &sample, &decision, patroni).await?;
                return Ok(report(decision, taken, failed_samples, Some(promoted)));
            }
            Verdict::WouldPromote => {
                if decision.notify {
                    announce_would_promote(settings, kube, http, &decision).await;
                }
                last = Some(decision);
                break;
            }
            Verdict::AlreadyPrimary | Verdict::InProgress => {
                last = Some(decision);
                break;
            }
            _ => last = Some(decision),
        }
    }
    if let Some((verdict, reasons)) = last_guard {
        return Ok(Report {
            verdict,
            reasons,
            samples: taken,
            failed_samples,
            promoted: None,
        });
    }
    let Some(decision) = last else {
        unreachable!("FAILOVER_SAMPLES_PER_RUN is validated to be at least 1")
    };
    log_decision(&decision);
    Ok(report(decision, taken, failed_samples, None))
}

fn report(d: Decision, samples: u32, failed_samples: u32, promoted: Option<Promoted>) -> Report {
    Report {
        verdict: d.verdict,
        reasons: d.reason_texts(),
        samples,
        failed_samples,
        promoted,
    }
}

/// Reads the state, decides, writes with compare-and-set; on a lost race re-reads and decides
/// again with the same observations.
async fn decide_and_record(
    settings: &Settings,
    kube: &Kube,
    sample: Sample,
) -> Result<(Decision, Option<StoredState>), Error> {
    let object = || kube.object(&settings.config.state_configmap);
    let done = retry::compare_and_set(act::CAS_ROUNDS, || {
        let mut sample = sample.clone();
        async move {
            let stored = act::read_state(settings, kube).await?;
            sample.hold = stored.hold;
            let decision = decide::decide(&settings.policy, stored.state.as_ref(), &sample);
            if let Err(problem) = &stored.state {
                log_decision(&decision);
                report_unusable_state(settings, kube, problem).await;
                return Err(Error::StateUnusable {
                    object: object(),
                    problem: problem.clone(),
                });
            }
            let Some(next) = &decision.next else {
                return Ok(retry::Cas::Done((decision, Some(stored))));
            };
            let cas =
                act::write_state(settings, kube, stored.resource_version.as_deref(), next).await?;
            Ok(match cas {
                retry::Cas::Done(()) => retry::Cas::Done((decision, Some(stored))),
                retry::Cas::Lost => retry::Cas::Lost,
            })
        }
    })
    .await?;
    done.ok_or_else(|| Error::Contention { object: object() })
}

async fn report_unusable_state(
    settings: &Settings,
    kube: &Kube,
    problem: &crate::state::StateProblem,
) {
    let object = kube.object(&settings.config.state_configmap);
    let spec = pgdr_core::k8s::EventSpec {
        type_: "Warning",
        reason: "FailoverStateUnusable",
        message: format!(
            "state ConfigMap {object} is unusable ({problem}); left untouched, no decision taken"
        ),
        action: "Decide",
    };
    act::event(settings, kube, spec).await;
}

/// Promotes through the local leader, records the outcome on our claim, announces it.
async fn promote(
    settings: &Settings,
    kube: &Kube,
    http: &reqwest::Client,
    sample: &Sample,
    decision: &Decision,
    patroni: Option<pgdr_core::patroni::PatroniClient>,
) -> Result<Promoted, Error> {
    let result = match patroni {
        Some(p) => act::promote(settings, kube, &p).await,
        // decide() never promotes without a reachable leader; keep the types honest anyway.
        None => Err(Error::PromoteFailed {
            leader: sample.leader.name(),
            detail: "no REST client for the local leader".into(),
        }),
    };
    record_outcome(settings, kube, &sample.run, &result).await;
    let why = primary_site_reasons(decision);
    if let Ok(p) = &result {
        leave_promotion_record(settings, kube, &sample.run, p, &why).await;
    }
    let announcement = match &result {
        Ok(p) => {
            tracing::warn!(site = %settings.config.site, peer = %settings.config.peer_site, took_ms = p.took.as_millis() as u64, timeline = ?p.timeline, primary_lsn = ?p.primary_lsn, "PROMOTED: this site now runs the primary");
            promoted_announcement(settings, decision, p, &why)
        }
        Err(e) => Announcement {
            reason: "PromotionFailed",
            action: "Promote",
            text: format!(
                "PostgreSQL site {} promotion FAILED: {e}",
                settings.config.site
            ),
            extra: json!({"reason": why, "event": "promotion-failed"}),
        },
    };
    act::announce(settings, kube, http, announcement).await;
    result
}

/// The durable record port-patch reads (kept by `helm uninstall`). Logged, not returned: the
/// promotion stands either way, but a missing record must be loud.
async fn leave_promotion_record(
    settings: &Settings,
    kube: &Kube,
    run: &str,
    p: &Promoted,
    why: &str,
) {
    let record = pgdr_core::promotion_record::PromotionRecord {
        confirmed_at: p.confirmed_at.to_string(),
        site: settings.config.site.clone(),
        peer: settings.config.peer_site.clone(),
        run: run.to_string(),
        timeline: p.timeline,
        reasons: why.to_string(),
    };
    match act::write_promotion_record(settings, kube, &record).await {
        Ok(()) => tracing::info!(
            configmap = %settings.config.promotion_record_configmap,
            "promotion record written"
        ),
        Err(e) => tracing::error!(
            error = %e,
            "promotion confirmed but the durable promotion record was NOT written: create it by \
             hand before reinstalling this site"
        ),
    }
}

/// Writes the outcome into our own claim in the state (confirmed, or why it failed). Logged, not
/// returned: the promotion's outcome stands whether or not it could be recorded.
async fn record_outcome(
    settings: &Settings,
    kube: &Kube,
    run: &str,
    result: &Result<Promoted, Error>,
) {
    let failed = result.as_ref().err().map(ToString::to_string);
    let recorded = act::update_state(settings, kube, |s| {
        let Some(claim) = s.standby.promotion.as_mut().filter(|c| c.run == run) else {
            return;
        };
        match result {
            Ok(p) => {
                claim.confirmed_at = Some(p.confirmed_at);
                claim.primary_lsn = p.primary_lsn;
                claim.timeline = p.timeline;
            }
            Err(_) => claim.failed = failed.clone(),
        }
    })
    .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, promoted = result.is_ok(), "the promotion's outcome was not recorded in the state ConfigMap");
    }
}

/// The reasons that concern the primary site (not the local leader's own details), as text.
fn primary_site_reasons(decision: &Decision) -> String {
    let why: Vec<&Reason> = decision
        .reasons
        .iter()
        .filter(|r| !r.is_about_local_leader())
        .collect();
    why.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn promoted_announcement(
    settings: &Settings,
    decision: &Decision,
    p: &Promoted,
    why: &str,
) -> Announcement {
    let c = &settings.config;
    let standby_lsn = decision
        .next
        .as_ref()
        .and_then(|s| s.standby.promotion.as_ref())
        .and_then(|p| p.standby_lsn);
    let text = format!(
        "PostgreSQL site {} promoted to primary: {} was unreachable. Standby LSN {}, new timeline {}. {}",
        c.site,
        c.peer_site,
        standby_lsn.map_or_else(|| "unknown".into(), lsn_string),
        p.timeline.map_or("?".into(), |t| t.to_string()),
        why
    );
    Announcement {
        reason: "PromotedStandbyCluster",
        action: "Promote",
        text,
        extra: json!({"lsn": standby_lsn.map(lsn_string), "reason": why, "event": "promoted"}),
    }
}

/// The primary answers but the local stream does not: this site is silently falling behind.
async fn announce_replication_broken(
    settings: &Settings,
    kube: &Kube,
    http: &reqwest::Client,
    decision: &Decision,
) {
    let c = &settings.config;
    let since = decision
        .replication_broken
        .map_or_else(|| "?".to_string(), |t| t.to_string());
    let text = format!(
        "PostgreSQL site {}: replication from {} is BROKEN since {since}: the primary answers but this \
         site's WAL receiver does not stream, so a failover now would lose data. Check the replication \
         credentials, the slot and the standby leader's log.",
        c.site, c.peer_site
    );
    let extra = json!({"event": "replication-broken", "since": since});
    let a = Announcement {
        reason: "ReplicationBroken",
        action: "Observe",
        text,
        extra,
    };
    act::announce(settings, kube, http, a).await;
}

async fn announce_would_promote(
    settings: &Settings,
    kube: &Kube,
    http: &reqwest::Client,
    decision: &Decision,
) {
    let c = &settings.config;
    let text = format!(
        "PostgreSQL site {} WOULD promote ({} unreachable) but FAILOVER_MODE=observe: {}",
        c.site,
        c.peer_site,
        decision.reason_texts().join("; ")
    );
    let extra = json!({"event": "would-promote"});
    let a = Announcement {
        reason: "WouldPromote",
        action: "Decide",
        text,
        extra,
    };
    act::announce(settings, kube, http, a).await;
}

fn lsn_string(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// One line per sample: what was seen and how it was counted.
fn log_sample(n: u32, sample: &Sample, d: &Decision, stored: Option<&StoredState>) {
    let probe = match &sample.probe {
        Probe::Accepting {
            in_recovery: Some(false),
            ..
        } => "writable-primary".to_string(),
        Probe::Accepting {
            in_recovery: Some(true),
            ..
        } => "in-recovery".to_string(),
        Probe::Accepting { .. } => "accepting".to_string(),
        Probe::Rejected { reason } => format!("rejected: {reason}"),
        Probe::NoAnswer { reason } => format!("no-answer: {reason}"),
        Probe::Unknown { reason } => format!("unknown: {reason}"),
    };
    let stream = match sample.leader.found() {
        Some(l) => l
            .replication_state
            .clone()
            .unwrap_or_else(|| "not-streaming".into()),
        None => sample.leader.name() + " unavailable",
    };
    let next = d.next.as_ref();
    tracing::info!(
        sample = n,
        at = %sample.at,
        probe,
        stream,
        witnesses = ?crate::standby::WitnessLog(&sample.witnesses),
        hold = stored.is_some_and(|s| s.hold),
        failed = d.failed_sample,
        counted = d.counted,
        consecutive_failures = next.map(|s| s.standby.consecutive_failures),
        first_failure_at = next.and_then(|s| s.standby.first_failure_at).map(|t| t.to_string()),
        last_known_lag_bytes = next.and_then(|s| s.standby.last_known_lag_bytes),
        verdict = %d.verdict,
        "sample"
    );
}

/// One line for the decision, with every reason.
fn log_decision(d: &Decision) {
    let reasons = d.reason_texts().join("; ");
    match d.verdict {
        Verdict::Promote | Verdict::WouldPromote | Verdict::StateUnusable | Verdict::Unknown => {
            tracing::warn!(verdict = %d.verdict, reasons, "decision")
        }
        _ => tracing::info!(verdict = %d.verdict, reasons, "decision"),
    }
}
