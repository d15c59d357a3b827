//! The failover CronJob of the standby site: observe the primary site, decide, promote.
//!
//! - [`observe`]: one sample = tunnel probe + local standby leader + witness (network I/O).
//! - [`decide`]: a pure function of (policy, persisted state, sample) → verdict + reasons.
//! - [`act`]: state ConfigMap compare-and-set, promotion, confirmation, Event, webhook.
//!
//! A run takes `FAILOVER_SAMPLES_PER_RUN` samples. After each it decides and writes the state
//! with a compare-and-set; a lost compare-and-set means another run wrote in between, so the
//! run re-reads and decides again (never acts on a stale read). A promotion is first *claimed*
//! in the state (again a compare-and-set), so two overlapping runs cannot both act.

#![forbid(unsafe_code)]

pub mod act;
pub mod config;
pub mod decide;
pub mod observe;
pub mod state;
pub mod tls;

use std::time::Duration;

use kube::Client;
use serde_json::json;

use pgdr_core::k8s::{ClientError, EventSpec};

pub use config::{Config, Settings};
pub use decide::{Decision, Mode, Verdict};

use crate::act::{Cas, StoredState};
use crate::decide::{LocalLeader, Probe, Sample};
use crate::observe::Kube;
use crate::state::{PromotionRecord, StateProblem};

pub const COMPONENT: &str = act::COMPONENT;

/// Exit codes (documented in README.md).
pub mod exit {
    /// No action needed, blocked by a guard, "would promote" (observe), promotion confirmed, or
    /// already primary.
    pub const OK: u8 = 0;
    /// The Kubernetes API failed (after retries): no decision was taken.
    pub const API: u8 = 1;
    /// Bad configuration (the message names the variable).
    pub const CONFIG: u8 = 2;
    /// The state ConfigMap holds something unusable; it was left untouched.
    pub const STATE: u8 = 3;
    /// Promotion attempted but failed or was not confirmed within the deadline.
    pub const PROMOTION: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("Kubernetes API: cannot {action} {object}: {detail}; {hint}")]
    Kube {
        action: &'static str,
        object: String,
        detail: String,
        hint: &'static str,
    },
    #[error(
        "state ConfigMap {object} is unusable: {problem}; it was left untouched: fix its 'state' key \
         (or delete the key to start afresh)"
    )]
    StateUnusable {
        object: String,
        problem: StateProblem,
    },
    #[error(
        "state ConfigMap {object} kept changing during this run (compare-and-set lost repeatedly); \
         is another failover run stuck in a loop?"
    )]
    Contention { object: String },
    #[error(
        "promotion through {leader} failed: {detail}; the site is still a standby cluster — check the \
         standby leader's Patroni log and the REST credentials"
    )]
    PromoteFailed { leader: String, detail: String },
    #[error(
        "standby_cluster was removed but the leader did not report a running primary within {deadline:?} \
         (last seen: {last}); check Patroni on the standby leader"
    )]
    NotConfirmed { deadline: Duration, last: String },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Client(_) | Error::Kube { .. } | Error::Contention { .. } => exit::API,
            Error::StateUnusable { .. } => exit::STATE,
            Error::PromoteFailed { .. } | Error::NotConfirmed { .. } => exit::PROMOTION,
        }
    }
}

/// How a run ended without error.
#[derive(Clone, Debug)]
pub struct Report {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub samples: u32,
    pub failed_samples: u32,
    pub promoted: Option<act::Promoted>,
}

impl Report {
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} after {} sample(s), {} failed",
            self.verdict, self.samples, self.failed_samples
        );
        if let Some(p) = &self.promoted {
            s.push_str(&format!(
                "; promoted and confirmed in {:.1?} (timeline {:?}, LSN {:?})",
                p.took, p.timeline, p.primary_lsn
            ));
        }
        s
    }
}

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
    let kube = Kube {
        client,
        namespace: settings.config.namespace.clone(),
        deadline: settings.config.api_timeout.get(),
    };
    let http = reqwest::Client::builder()
        .timeout(settings.config.probe_timeout.get())
        .build()
        .expect("a plain reqwest client always builds");
    let started = tokio::time::Instant::now();
    let mut failed_samples = 0;
    let mut last: Option<Decision> = None;

    for i in 0..settings.config.samples_per_run {
        tokio::time::sleep_until(started + settings.interval() * i).await;
        let (sample, patroni) = observe::sample(settings, &kube, run_id).await?;
        let (decision, stored) = decide_and_record(settings, &kube, sample.clone()).await?;
        failed_samples += u32::from(decision.failed_sample && decision.counted);
        log_sample(i + 1, &sample, &decision, stored.as_ref());

        match decision.verdict {
            Verdict::Promote => {
                log_decision(&decision);
                let promoted = promote(settings, &kube, &http, &sample, &decision, patroni).await?;
                return Ok(Report {
                    verdict: Verdict::Promote,
                    reasons: decision.reasons,
                    samples: i + 1,
                    failed_samples,
                    promoted: Some(promoted),
                });
            }
            Verdict::WouldPromote => {
                if decision.notify {
                    announce_would_promote(settings, &kube, &http, &decision).await;
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
    let decision = last.expect("at least one sample is taken");
    log_decision(&decision);
    Ok(Report {
        verdict: decision.verdict,
        reasons: decision.reasons,
        samples: settings.config.samples_per_run,
        failed_samples,
        promoted: None,
    })
}

/// Reads the state, decides, writes with compare-and-set; on a lost race re-reads and decides
/// again with the same observations.
async fn decide_and_record(
    settings: &Settings,
    kube: &Kube,
    mut sample: Sample,
) -> Result<(Decision, Option<StoredState>), Error> {
    for _ in 0..10 {
        let stored = act::read_state(settings, kube).await?;
        sample.hold = stored.hold;
        let decision = decide::decide(&settings.policy, stored.state.as_ref(), &sample);
        if let Err(problem) = &stored.state {
            let object = kube.object(&settings.config.state_configmap);
            act::event(
                settings,
                kube,
                EventSpec {
                    type_: "Warning",
                    reason: "FailoverStateUnusable",
                    message: format!("state ConfigMap {object} is unusable ({problem}); left untouched, no decision taken"),
                    action: "Decide",
                },
            )
            .await;
            log_decision(&decision);
            return Err(Error::StateUnusable {
                object,
                problem: problem.clone(),
            });
        }
        let Some(next) = &decision.next else {
            return Ok((decision, Some(stored)));
        };
        match act::write_state(settings, kube, stored.resource_version.as_deref(), next).await? {
            Cas::Written => return Ok((decision, Some(stored))),
            Cas::Lost => {
                tracing::info!("state changed by another run while deciding; deciding again")
            }
        }
    }
    Err(Error::Contention {
        object: kube.object(&settings.config.state_configmap),
    })
}

async fn promote(
    settings: &Settings,
    kube: &Kube,
    http: &reqwest::Client,
    sample: &Sample,
    decision: &Decision,
    patroni: Option<pgdr_core::patroni::PatroniClient>,
) -> Result<act::Promoted, Error> {
    let c = &settings.config;
    let result = match patroni {
        Some(p) => act::promote(settings, &p).await,
        // decide() never promotes without a reachable leader; keep the types honest anyway.
        None => Err(Error::PromoteFailed {
            leader: leader_name(&sample.leader),
            detail: "no REST client for the local leader".into(),
        }),
    };
    let why = decision
        .reasons
        .iter()
        .filter(|r| !r.starts_with("local leader"))
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    match result {
        Ok(p) => {
            let record = p.clone();
            let run = sample.run.clone();
            act::update_state(settings, kube, move |s| {
                if let Some(claim) = s.promotion.as_mut().filter(|c| c.run == run) {
                    claim.confirmed_at = Some(record.confirmed_at);
                    claim.primary_lsn = record.primary_lsn;
                    claim.timeline = record.timeline;
                }
            })
            .await
            .unwrap_or_else(|e| tracing::error!(error = %e, "promotion confirmed but not recorded in the state ConfigMap"));
            let standby_lsn = claim_lsn(decision);
            let text = format!(
                "PostgreSQL site {} promoted to primary: {} was unreachable. Standby LSN {}, new timeline {}. {}",
                c.site,
                c.peer_site,
                lsn_text(standby_lsn),
                p.timeline.map_or("?".into(), |t| t.to_string()),
                why
            );
            tracing::warn!(site = %c.site, peer = %c.peer_site, took_ms = p.took.as_millis() as u64, timeline = ?p.timeline, primary_lsn = ?p.primary_lsn, "PROMOTED: this site now runs the primary");
            act::event(
                settings,
                kube,
                EventSpec {
                    type_: "Warning",
                    reason: "PromotedStandbyCluster",
                    message: text.clone(),
                    action: "Promote",
                },
            )
            .await;
            act::webhook(
                settings,
                http,
                &text,
                json!({"lsn": standby_lsn.map(lsn_string), "reason": why, "event": "promoted"}),
            )
            .await;
            Ok(p)
        }
        Err(e) => {
            let msg = e.to_string();
            let run = sample.run.clone();
            let failed = msg.clone();
            act::update_state(settings, kube, move |s| {
                if let Some(claim) = s.promotion.as_mut().filter(|c| c.run == run) {
                    claim.failed = Some(failed.clone());
                }
            })
            .await
            .unwrap_or_else(
                |e| tracing::error!(error = %e, "could not record the failed promotion"),
            );
            act::event(
                settings,
                kube,
                EventSpec {
                    type_: "Warning",
                    reason: "PromotionFailed",
                    message: format!("promotion of site {} failed: {msg}", c.site),
                    action: "Promote",
                },
            )
            .await;
            act::webhook(
                settings,
                http,
                &format!("PostgreSQL site {} promotion FAILED: {msg}", c.site),
                json!({"reason": why, "event": "promotion-failed"}),
            )
            .await;
            Err(e)
        }
    }
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
        decision.reasons.join("; ")
    );
    act::event(
        settings,
        kube,
        EventSpec {
            type_: "Warning",
            reason: "WouldPromote",
            message: text.clone(),
            action: "Decide",
        },
    )
    .await;
    act::webhook(settings, http, &text, json!({"event": "would-promote"})).await;
}

fn claim_lsn(decision: &Decision) -> Option<u64> {
    decision
        .next
        .as_ref()
        .and_then(|s| s.promotion.as_ref())
        .and_then(|p: &PromotionRecord| p.standby_lsn)
}

fn lsn_string(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

fn lsn_text(lsn: Option<u64>) -> String {
    lsn.map_or_else(|| "unknown".into(), lsn_string)
}

fn leader_name(leader: &LocalLeader) -> String {
    match leader {
        LocalLeader::Found(l) => l.name.clone(),
        LocalLeader::Unreachable { name, .. } => name.clone(),
        LocalLeader::Missing(_) => "(no leader)".into(),
    }
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
    };
    let stream = match &sample.leader {
        LocalLeader::Found(l) => l
            .replication_state
            .clone()
            .unwrap_or_else(|| "not-streaming".into()),
        other => leader_name(other) + " unavailable",
    };
    let next = d.next.as_ref();
    tracing::info!(
        sample = n,
        at = %sample.at,
        probe,
        stream,
        witness = ?sample.witness,
        hold = stored.is_some_and(|s| s.hold),
        failed = d.failed_sample,
        counted = d.counted,
        consecutive_failures = next.map(|s| s.consecutive_failures),
        first_failure_at = next.and_then(|s| s.first_failure_at).map(|t| t.to_string()),
        last_known_lag_bytes = next.and_then(|s| s.last_known_lag_bytes),
        verdict = %d.verdict,
        "sample"
    );
}

/// One line for the decision, with every reason.
fn log_decision(d: &Decision) {
    let reasons = d.reasons.join("; ");
    match d.verdict {
        Verdict::Promote | Verdict::WouldPromote | Verdict::StateUnusable => {
            tracing::warn!(verdict = %d.verdict, reasons, "decision")
        }
        _ => tracing::info!(verdict = %d.verdict, reasons, "decision"),
    }
}
