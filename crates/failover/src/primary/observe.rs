//! The primary role's observation: the peer (through the tunnel), every witness's answer on
//! where the application runs, whether this site holds the promotion record; then the decision, the
//! fence it orders and the announcements.

use serde_json::{Value, json};

use pgdr_core::dynamic_config::{self, CONFIG_ANNOTATION};
use pgdr_core::k8s::{self, Kube};

use crate::Error;
use crate::act::write_fence;
use crate::act::{self, Announcement};
use crate::config::{Settings, WitnessConfig};
use crate::ctx::Ctx;
use crate::primary::{self, PrimarySample};
use crate::role::{Local, log, own, peer};
use crate::standby::Verdict;
use crate::witness::{self, Witness};

/// This site was promoted and its marker's fork is still the position read before the
/// promotion: once its timeline history says where it left that timeline (the readiness
/// sidecar reads `pg_wal`; Patroni's cluster history otherwise), the marker is rewritten with the
/// switchpoint, so that a fenced peer can rewind against the real fork. Bookkeeping, done in
/// every mode; a failure is logged and retried on the next sample.
async fn settle_fork(ctx: &Ctx<'_>, local: &Local) {
    let from_sidecar = crate::role::sidecar_status(ctx.settings, &ctx.http, local)
        .await
        .ok()
        .and_then(|v| v.own_history());
    let history = match (from_sidecar, &local.patroni) {
        (Some(h), _) if !h.is_empty() => h,
        (_, Some(p)) => p.history().await.unwrap_or_default(),
        _ => Vec::new(),
    };
    match act::settle_fork(ctx.settings, &ctx.kube, &history).await {
        Ok(Some(m)) => {
            tracing::info!(marker = %m.render(), "promotion marker settled: the fork is the new timeline's switchpoint")
        }
        Ok(None) => tracing::info!(
            "promotion marker: the new timeline's switchpoint is not in the history yet"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "promotion marker not settled (next sample tries again)")
        }
    }
}

/// Every witness's answer, asked as every role asks it; a peer-API witness's `Peer` is
/// confirmed against the peer's dynamic config (a standby cluster holds a lock too).
async fn witnesses(settings: &Settings, http: &reqwest::Client) -> Vec<Witness> {
    let asks = settings.witnesses.iter().map(|w| async move {
        let answer = witness::ask(w, settings, http).await;
        match (w, answer) {
            (WitnessConfig::PeerApi(peer), Witness::Peer(r)) => {
                confirm_peer(peer, settings, r).await
            }
            (_, answer) => answer,
        }
    });
    futures_util::future::join_all(asks).await
}

/// The peer's lock is fresh: the application runs there only when its dynamic config is not a
/// standby cluster.
async fn confirm_peer(peer: &crate::config::PeerApi, settings: &Settings, r: String) -> Witness {
    match peer_is_standby_cluster(peer, settings.config.probe_timeout.get()).await {
        Ok(false) => Witness::Peer(format!("{r}; its dynamic config is not a standby cluster")),
        Ok(true) => Witness::Here(format!("{r}; it is a standby cluster")),
        Err(e) => Witness::Unknown(e),
    }
}

/// Whether the peer's dynamic config (`<scope>-config`, read through the peer's API) makes it a
/// standby cluster. `Err`: unreadable, and why.
async fn peer_is_standby_cluster(
    peer: &crate::config::PeerApi,
    timeout: std::time::Duration,
) -> Result<bool, String> {
    let config = witness::config_of(&peer.leader_configmap);
    match witness::peer_api_get(peer, timeout, &config).await? {
        witness::PeerAnswer {
            status: 200, body, ..
        } => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|cm| {
                cm["metadata"]["annotations"][CONFIG_ANNOTATION]
                    .as_str()
                    .map(str::to_string)
            })
            .and_then(|t| dynamic_config::parse(&t).ok())
            .map(|m| dynamic_config::is_standby_cluster(&m))
            .ok_or_else(|| format!("peer-API witness: {config} is unreadable")),
        witness::PeerAnswer { status, .. } => Err(format!(
            "peer-API witness: reading {config} answered HTTP {status}"
        )),
    }
}

/// Issue 20 item 12: the readiness sidecar withholds a primary that has not seen its peer since it
/// became one. When the tunnel cannot show the peer, the peer's API can: a peer whose dynamic
/// config is a standby cluster did not promote past us. The vouch is taken before the read (so
/// it never claims a later moment than the evidence) and must postdate the sidecar's "since".
/// Bookkeeping that restores the normal state, done in every mode; a failure waits for the next
/// sample.
async fn vouch_if_awaited(ctx: &Ctx<'_>, local: &Local, peer: &crate::sample::Peer) {
    let settings = ctx.settings;
    let Some(api) = settings.witnesses.iter().find_map(|w| match w {
        WitnessConfig::PeerApi(p) => Some(p),
        _ => None,
    }) else {
        return;
    };
    let awaiting = crate::role::sidecar_status(settings, &ctx.http, local)
        .await
        .ok()
        .and_then(|v| v.awaiting_peer_evidence_since);
    let at = jiff::Timestamp::now();
    let answer = match (awaiting, peer) {
        (Some(_), crate::sample::Peer::Silent(_)) => {
            peer_is_standby_cluster(api, settings.config.probe_timeout.get()).await
        }
        _ => return,
    };
    let epoch = local.marker.as_ref().map_or(0, |m| m.epoch);
    match primary::vouch_from(awaiting, at, epoch, answer) {
        Ok(v) => {
            let written = act::edit_config(settings, &ctx.kube, false, |config| {
                pgdr_core::contract::vouch::apply(config, &v);
                act::Edit::Write(())
            })
            .await;
            match written {
                Ok(Some(())) => {
                    tracing::info!(at = %v.at, epoch, note = %v.note, "vouched for this primary: the peer did not promote past it (the readiness sidecar may advertise it)")
                }
                Ok(None) => tracing::warn!("vouch not written: the dynamic config is unreadable"),
                Err(e) => tracing::warn!(error = %e, "vouch not written (next sample tries again)"),
            }
        }
        Err(why) => tracing::info!(reason = %why, "no vouch for this primary"),
    }
}

async fn promoted_here(settings: &Settings, kube: &Kube) -> Result<bool, Error> {
    Ok(kube
        .get_opt(
            &kube.config_maps(),
            &settings.config.promotion_record_configmap,
        )
        .await?
        .is_some())
}

/// One run's memory of what it already announced (one Event per kind per run).
#[derive(Default)]
pub struct Announced {
    split_brain: bool,
}

/// One sample on a writable primary site.
pub async fn primary_sample(
    ctx: &Ctx<'_>,
    local: &Local,
    announced: &mut Announced,
) -> Result<(Verdict, Vec<String>), Error> {
    let (settings, kube, http, run) = (ctx.settings, &ctx.kube, &ctx.http, ctx.run.as_str());
    if local.marker.as_ref().is_some_and(|m| m.fork_pending) {
        settle_fork(ctx, local).await;
    }
    let (peer, witnesses, promoted) = tokio::join!(
        peer(settings, kube, local),
        witnesses(settings, http),
        promoted_here(settings, kube)
    );
    let sample = PrimarySample {
        at: jiff::Timestamp::now(),
        run: run.to_string(),
        peer_site: settings.config.peer_site.clone(),
        peer: peer?.0,
        witnesses,
        promoted_here: promoted?,
        own: own(local),
        epochs: primary::Epochs {
            own: local.marker.as_ref().map_or(0, |m| m.epoch),
            seen: local.seen_epoch,
        },
    };
    let d = act::record(settings, kube, |state| {
        let d = primary::decide_primary(&settings.policy, state, &sample);
        (d.next.clone(), d)
    })
    .await?;
    let reasons = d.reason_texts();
    log(&d.verdict, &reasons, "primary-role sample");
    let c = &settings.config;
    if d.split_brain && !announced.split_brain {
        announced.split_brain = true;
        let text = format!(
            "PostgreSQL SPLIT BRAIN: {} and {} are both writable primaries. {}",
            c.site,
            c.peer_site,
            reasons.join("; ")
        );
        let since = d.next.primary.split_brain_since.map(|t| t.to_string());
        let spec = k8s::EventSpec {
            type_: "Warning",
            reason: "SplitBrain",
            message: text.clone(),
            action: "Observe",
        };
        if d.notify_webhook {
            act::announce(
                settings,
                kube,
                http,
                Announcement {
                    reason: "SplitBrain",
                    action: "Observe",
                    text,
                    extra: json!({"event": "split-brain", "since": since}),
                },
            )
            .await;
        } else {
            act::event(settings, kube, spec).await;
        }
    }
    if let Some(order) = &d.fence {
        let f = order.fence(sample.at, &c.peer_site);
        let written = write_fence(ctx, &f, None, None, false).await?;
        if written {
            let at = sample.at;
            let reason = order.reason.as_str().to_string();
            if let Err(e) = act::update_state(settings, kube, |s| {
                s.fenced.fenced_at = Some(at);
                s.fenced.fence_reason = Some(reason.clone());
            })
            .await
            {
                tracing::error!(error = %e, "fenced, but the state was not updated");
            }
            let text = format!(
                "PostgreSQL site {} FENCED itself ({}): read-only standby leader, {} is authoritative. {}",
                c.site,
                order.reason.as_str(),
                c.peer_site,
                reasons.join("; ")
            );
            act::announce(
                settings,
                kube,
                http,
                Announcement {
                    reason: "Fenced",
                    action: "Fence",
                    text,
                    extra: json!({"event": "fenced", "reason": order.reason.as_str(),
                    "fork_lsn": f.fork_lsn, "diverged_bytes": f.diverged_bytes}),
                },
            )
            .await;
        }
    }
    // After the fence (never delayed by the sidecar request), and only for a site that stays a
    // primary: a fenced one is not advertised whatever it is vouched for.
    if d.fence.is_none() {
        vouch_if_awaited(ctx, local, &sample.peer).await;
    }
    Ok((d.verdict, reasons))
}
