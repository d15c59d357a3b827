//! The primary role's observation: the peer (through the tunnel), every witness's placement of
//! the application, whether this site holds the promotion record; then the decision, the
//! fence it orders and the announcements.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};

use pgdr_core::dynamic_config::{self, CONFIG_ANNOTATION};
use pgdr_core::k8s::{self, Kube};

use crate::act::write_fence;
use crate::act::{self, Announcement};
use crate::config::{Settings, WitnessConfig};
use crate::ctx::Ctx;
use crate::observe::DnsAnswer;
use crate::primary::{self, PrimarySample};
use crate::role::{Local, log, own, peer};
use crate::sample::Placement;
use crate::standby::{Verdict, Witness};
use crate::{Error, observe};

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

/// Where each witness says the application runs.
async fn placements(settings: &Settings, http: &reqwest::Client) -> Vec<Placement> {
    let asks = settings
        .witnesses
        .iter()
        .map(|w| placement(w, settings, http));
    futures_util::future::join_all(asks).await
}

async fn placement(w: &WitnessConfig, settings: &Settings, http: &reqwest::Client) -> Placement {
    match w {
        WitnessConfig::Dns {
            name,
            expected,
            peer,
        } => {
            let timeout = settings.config.probe_timeout.get();
            let lookup = tokio::net::lookup_host((name.as_str(), 0));
            match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(addrs)) => {
                    dns_placement(name, &addrs.map(|a| a.ip()).collect(), expected, peer)
                }
                _ => Placement::Unknown(format!("DNS witness: {name} did not resolve")),
            }
        }
        // The HTTP contract answers for the asking site: `alive` = the GSLB sends the
        // application to the peer; `down` = to this site.
        WitnessConfig::Http { .. } => match observe::witness(w, settings, http).await {
            Witness::PrimaryAlive(r) => Placement::Peer(r),
            Witness::PrimaryDown(r) => Placement::Here(r),
            Witness::Unknown(r) => Placement::Unknown(r),
        },
        // The peer's lock fresh is not enough (a standby cluster holds one too): its dynamic
        // config must also say it is not a standby cluster.
        WitnessConfig::PeerApi(peer) => match observe::witness(w, settings, http).await {
            Witness::PrimaryAlive(r) => {
                match peer_is_standby_cluster(peer, settings.config.probe_timeout.get()).await {
                    Ok(false) => {
                        Placement::Peer(format!("{r}; its dynamic config is not a standby cluster"))
                    }
                    Ok(true) => Placement::Here(format!("{r}; it is a standby cluster")),
                    Err(e) => Placement::Unknown(e),
                }
            }
            Witness::PrimaryDown(r) => Placement::Here(r),
            Witness::Unknown(r) => Placement::Unknown(r),
        },
    }
}

/// Whether the peer's dynamic config (`<scope>-config`, read through the peer's API) makes it a
/// standby cluster. `Err`: unreadable, and why.
async fn peer_is_standby_cluster(
    peer: &crate::config::PeerApi,
    timeout: std::time::Duration,
) -> Result<bool, String> {
    let config = observe::config_of(&peer.leader_configmap);
    match observe::peer_api_get(peer, timeout, &config).await? {
        observe::PeerAnswer {
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
        observe::PeerAnswer { status, .. } => Err(format!(
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

/// The application runs on the peer only when the name resolves and to none of our addresses.
pub fn dns_placement(
    name: &str,
    got: &BTreeSet<IpAddr>,
    expected: &[IpAddr],
    peer: &[IpAddr],
) -> Placement {
    match DnsAnswer::read(got, expected, peer) {
        (DnsAnswer::Empty, _) => {
            Placement::Unknown(format!("DNS witness: {name} resolved to no address"))
        }
        (DnsAnswer::Here, list) => {
            Placement::Here(format!("DNS witness: {name} resolves to {list}, this site"))
        }
        (DnsAnswer::Mixed, list) => Placement::Unknown(format!(
            "DNS witness: {name} resolves to {list}, this site and another"
        )),
        (DnsAnswer::Peer, list) => Placement::Peer(format!(
            "DNS witness: {name} resolves to {list}, the peer site"
        )),
        (DnsAnswer::Neither, list) if peer.is_empty() => Placement::Unknown(format!(
            "DNS witness: {name} resolves to {list}, not this site; the peer's addresses are not \
             configured (FAILOVER_WITNESS_DNS_PEER_ADDRESSES), so this says nothing"
        )),
        (DnsAnswer::Neither, list) => Placement::Unknown(format!(
            "DNS witness: {name} resolves to {list}, neither this site nor the peer (a last-resort \
             answer or a stale address list): says nothing"
        )),
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
    let (peer, placements, promoted) = tokio::join!(
        peer(settings, kube, local),
        placements(settings, http),
        promoted_here(settings, kube)
    );
    let sample = PrimarySample {
        at: jiff::Timestamp::now(),
        run: run.to_string(),
        peer_site: settings.config.peer_site.clone(),
        peer: peer?.0,
        placements,
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
    log(&d.verdict, &d.reasons, "primary-role sample");
    let c = &settings.config;
    if d.split_brain && !announced.split_brain {
        announced.split_brain = true;
        let text = format!(
            "PostgreSQL SPLIT BRAIN: {} and {} are both writable primaries. {}",
            c.site,
            c.peer_site,
            d.reasons.join("; ")
        );
        let since = d.next.split_brain_since.map(|t| t.to_string());
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
                s.fenced_at = Some(at);
                s.fence_reason = Some(reason.clone());
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
                d.reasons.join("; ")
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
    Ok((d.verdict, d.reasons))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_placement_table() {
        let here: Vec<IpAddr> = vec!["10.9.0.1".parse().unwrap()];
        let set = |ips: &[&str]| {
            ips.iter()
                .map(|i| i.parse().unwrap())
                .collect::<BTreeSet<IpAddr>>()
        };
        let kind = |p: Placement| match p {
            Placement::Peer(_) => "peer",
            Placement::Here(_) => "here",
            Placement::Unknown(_) => "unknown",
        };
        let peer: Vec<IpAddr> = vec!["10.1.0.1".parse().unwrap()];
        let place =
            |ips: &[&str], peer: &[IpAddr]| kind(dns_placement("a", &set(ips), &here, peer));
        assert_eq!(place(&["10.9.0.1"], &peer), "here");
        assert_eq!(place(&["10.1.0.1"], &peer), "peer");
        assert_eq!(place(&["10.1.0.1", "10.9.0.1"], &peer), "unknown");
        assert_eq!(place(&[], &peer), "unknown");
        // Issue 20 item 9: an answer naming neither site (a GSLB's last resort, a stale list) is
        // unknown, and so is any answer when the peer's addresses are not configured.
        assert_eq!(place(&["10.7.0.1"], &peer), "unknown");
        assert_eq!(place(&["10.1.0.1", "10.7.0.1"], &peer), "unknown");
        assert_eq!(place(&["10.1.0.1"], &[]), "unknown");
    }
}
