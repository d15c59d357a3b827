//! The fenced role's observation: the peer, this site's leader and its sidecar (preservation,
//! own timeline history, re-clone receipts of every member), the follow target; then the
//! decision and the fence's compare-and-set (`act::write_fence`, also the primary role's).

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::json;

use crate::Error;
use crate::act::write_fence;
use crate::act::{self, Announcement};
use crate::config::HostMode;
use crate::ctx::Ctx;
use crate::fenced::{self, FencedSample, MemberReclone, Preservation};
use crate::observe::{self, TunnelUnusable};
use crate::role::{Local, log, own, peer, sidecar_status, status_at};
use crate::standby::Verdict;
use pgdr_core::contract::fence::{Fence, Phase};
use pgdr_core::contract::sidecar::{Divergence, DivergenceState, RecloneState, RecloneStatus};
use pgdr_core::contract::slot::FollowTarget;

/// One sample on a fenced site: observe, decide (recorded by compare-and-set), announce, and
/// write the fence the decision asks for.
pub async fn fenced_sample(
    ctx: &Ctx<'_>,
    local: &Local,
    current: &Fence,
) -> Result<(Verdict, Vec<String>), Error> {
    let (settings, kube) = (ctx.settings, &ctx.kube);
    let (sample, target) = observe_fenced(ctx, local, current).await?;
    let d = act::record(settings, kube, |state| {
        let d = fenced::decide_fenced(settings.config.rejoin, state, current, &sample);
        (d.next.clone(), d)
    })
    .await?;
    let reasons = d.reason_texts();
    log(&d.verdict, &reasons, "fenced-site sample");
    announce_fenced(ctx, current, &d).await;
    if let Some(f) = &d.fence {
        let target = target.ok().filter(|_| f.phase == Phase::Follow);
        let written =
            write_fence(ctx, f, target.as_ref(), Some(current), d.clear_initialize).await?;
        if written && d.clear_initialize {
            tracing::warn!(object = %kube.object(&settings.config_map()), "re-clone: Patroni's initialize key removed with the follow form; Patroni bootstraps a standby leader from the peer");
        }
    }
    Ok((d.verdict, reasons))
}

/// The fenced site's sample: the peer, the follow target, the leader's sidecar (preservation,
/// own history) and, while a re-clone is pending, every member's sidecar.
async fn observe_fenced(
    ctx: &Ctx<'_>,
    local: &Local,
    current: &Fence,
) -> Result<(FencedSample, Result<FollowTarget, TunnelUnusable>), Error> {
    let (settings, kube, http, run) = (ctx.settings, &ctx.kube, &ctx.http, ctx.run.as_str());
    let c = &settings.config;
    let (peer, target, sidecar, members) = tokio::join!(
        peer(settings, kube, local),
        observe::tunnel_target(settings, kube),
        sidecar_status(settings, http, local),
        async {
            match &current.reclone {
                Some(_) => members_reclone(ctx).await,
                None => Ok(Vec::new()),
            }
        },
    );
    let (peer, peer_timeline) = peer?;
    let preservation = match (&current.preserve, &sidecar) {
        (None, _) => Preservation::NotYet("not requested yet".into()),
        (Some(_), Ok(v)) => preservation_from(v.divergence.as_ref()),
        (Some(_), Err(why)) => Preservation::NotYet(why.to_string()),
    };
    let own_history = sidecar.ok().and_then(|v| v.own_history());
    let target = target?.map(|(ip, port)| FollowTarget {
        host: match c.tunnel_host_mode {
            HostMode::Dns => format!("{}.{}.svc", c.tunnel_service, kube.namespace),
            HostMode::ClusterIp => ip,
        },
        port,
        slot: settings.peer_slot.clone(),
    });
    let streaming = local
        .status
        .as_ref()
        .is_some_and(|s| s.replication_state.as_deref() == Some("streaming"));
    let sample = FencedSample {
        at: jiff::Timestamp::now(),
        run: run.to_string(),
        peer,
        peer_timeline,
        own: own(local),
        own_history,
        preservation,
        read_only: local
            .status
            .as_ref()
            .is_some_and(|s| s.is_running() && !s.is_writable_primary()),
        leader_streaming: streaming,
        target: target.as_ref().map(|_| ()).map_err(ToString::to_string),
        lock_held: local.lock_held,
        members,
    };
    Ok((sample, target))
}

/// The Events (and webhook) of a fenced run: divergence recorded, re-clone required, re-clone
/// requested.
async fn announce_fenced(ctx: &Ctx<'_>, current: &Fence, d: &fenced::FencedDecision) {
    let (settings, kube, http) = (ctx.settings, &ctx.kube, &ctx.http);
    let c = &settings.config;
    if let Some(div) = &d.diverged {
        let bytes = div
            .diverged_bytes
            .map_or_else(|| "unknown".to_string(), |b| b.to_string());
        tracing::warn!(fork_lsn = %div.fork_lsn, timeline = div.timeline, local_end_lsn = ?div.local_end_lsn, diverged_bytes = %bytes, "DIVERGED: WAL this site wrote past the fork");
        let text = format!(
            "PostgreSQL site {} diverged from {}: {} left timeline {} at {}; this site wrote up to {} ({} bytes past the fork). {}",
            c.site,
            div.peer,
            div.peer,
            div.timeline,
            div.fork_lsn,
            div.local_end_lsn.as_deref().unwrap_or("unknown"),
            bytes,
            if div.diverged_bytes == Some(0) {
                "Nothing is discarded by the rejoin."
            } else {
                "The WAL past the fork is preserved before the rewind (readiness sidecar, pgdr-diverged/ on the data volume)."
            }
        );
        act::announce(settings, kube, http, Announcement {
            reason: "Diverged",
            action: "Fence",
            text,
            extra: json!({"event": "diverged", "timeline": div.timeline, "fork_lsn": div.fork_lsn,
                "local_end_lsn": div.local_end_lsn, "diverged_bytes": div.diverged_bytes}),
        })
        .await;
    }
    if let Some(why) = &d.reclone {
        tracing::error!(reason = %why, "RE-CLONE REQUIRED: rejoining by rewind is unsafe");
        act::announce(
            settings,
            kube,
            http,
            Announcement {
                reason: "RecloneRequired",
                action: "Fence",
                text: format!(
                    "PostgreSQL site {} cannot rejoin {} by rewind: {why}",
                    c.site, current.peer
                ),
                extra: json!({"event": "reclone-required", "peer": current.peer}),
            },
        )
        .await;
    }
    if d.reclone_requested {
        tracing::warn!(peer = %current.peer, "RE-CLONE: every member's sidecar moves its data directory aside, then Patroni clones this site from the peer");
        act::announce(
            settings,
            kube,
            http,
            Announcement {
                reason: "Reclone",
                action: "Fence",
                text: format!(
                    "PostgreSQL site {} is re-cloned from {}: the WAL it wrote past the fork is \
                     preserved (pgdr-diverged/ on the data volume); each member's data directory \
                     is moved aside, then Patroni clones the site through the tunnel",
                    c.site, current.peer
                ),
                extra: json!({"event": "reclone", "peer": current.peer}),
            },
        )
        .await;
    }
}

/// Every member pod of this site and its sidecar's answer on the pending re-clone request.
async fn members_reclone(ctx: &Ctx<'_>) -> fenced::MemberReports {
    let (settings, kube, http) = (ctx.settings, &ctx.kube, &ctx.http);
    let selector = settings.member_selector();
    let pods = kube
        .api::<Pod>()
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("listing pods {selector}: {e}"))?;
    let asks = pods.items.into_iter().map(|p| async move {
        let name = p.metadata.name.clone().unwrap_or_default();
        let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
        let answer = match ip {
            None => MemberReclone::NotYet("no pod address (not running)".into()),
            Some(ip) => match status_at(settings, http, &ip).await {
                Ok(v) => member_reclone_from(v.reclone.as_ref()),
                Err(why) => MemberReclone::NotYet(why.to_string()),
            },
        };
        (name, answer)
    });
    Ok(futures_util::future::join_all(asks).await)
}

/// `/status` `reclone` → the member's answer.
pub fn member_reclone_from(r: Option<&RecloneStatus>) -> MemberReclone {
    match r {
        Some(r) if r.state == RecloneState::Moved => MemberReclone::Moved(r.requested_at.clone()),
        Some(r) => MemberReclone::NotYet(format!(
            "sidecar reclone state {:?}{}",
            r.state,
            r.detail
                .as_deref()
                .map_or_else(String::new, |d| format!(" ({d})"))
        )),
        None => MemberReclone::NotYet("sidecar reports no re-clone yet".into()),
    }
}

/// `/status` `divergence` → what the fenced flow needs.
pub fn preservation_from(d: Option<&Divergence>) -> Preservation {
    match d {
        Some(d) if d.state == DivergenceState::Preserved => Preservation::Preserved(d.describe()),
        Some(d) if d.state == DivergenceState::Incomplete => Preservation::Incomplete(d.describe()),
        Some(d) => Preservation::NotYet(format!("sidecar divergence state {:?}", d.state)),
        None => Preservation::NotYet("sidecar divergence state absent".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn sidecar_status_table() {
        let kind = |v: Value| match preservation_from(
            serde_json::from_value::<Option<Divergence>>(v)
                .unwrap()
                .as_ref(),
        ) {
            Preservation::Preserved(_) => "preserved",
            Preservation::Incomplete(w) => {
                assert!(w.contains("missing"), "{w}");
                "incomplete"
            }
            Preservation::NotYet(_) => "not-yet",
        };
        assert_eq!(
            kind(json!({"state": "preserved", "dir": "d", "files": 2, "bytes": 10})),
            "preserved"
        );
        assert_eq!(
            kind(json!({"state": "incomplete", "missing": ["000000030000000000000004"]})),
            "incomplete"
        );
        for s in ["copying", "failed", "none"] {
            assert_eq!(kind(json!({"state": s})), "not-yet");
        }
        assert_eq!(kind(Value::Null), "not-yet");
    }
}
