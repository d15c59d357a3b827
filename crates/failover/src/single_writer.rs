//! The runs that keep one writable primary: on a writable primary site (check the peer and the
//! witness, fence this site when the peer is authoritative) and on a fenced site (record the
//! divergence, have it preserved, rejoin). Observation and acts here; the rules are in
//! [`crate::guard`].

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use pgdr_core::dynamic_config::{self, CONFIG_ANNOTATION};
use pgdr_core::k8s::{self, Kube, api_error};
use pgdr_core::lineage::{self, PeerView};
use pgdr_core::patroni::{MemberStatus, PatroniClient};
use pgdr_core::retry::{self, Cas, RetryError, fast_backoff};

use crate::act::{self, Announcement};
use crate::config::{HostMode, Settings, WitnessConfig};
use crate::decide::Verdict;
use crate::guard::{
    self, FencedSample, MemberReclone, Own, Peer, Placement, Preservation, PrimarySample,
};
use crate::observe;
use crate::{Error, decide::Witness};
use pgdr_core::contract::fence::{self, Fence, Phase};
use pgdr_core::contract::keys::INITIALIZE_ANNOTATION;
use pgdr_core::contract::sidecar::{
    AgentView, Divergence, DivergenceState, RecloneState, RecloneStatus,
};
use pgdr_core::contract::slot::FollowTarget;

/// What this site is right now, from its dynamic config and its leader.
pub enum Role {
    /// A standby cluster (or promoting): the failover decision.
    Standby,
    /// A writable primary without a fence.
    Primary(Local),
    /// `pgdr_fence` is set.
    Fenced(Local, Box<Fence>),
    /// `pgdr_fence` is present but unreadable: never promote or fence on a guess.
    Unknown(String),
}

/// The local leader as needed by the primary and fenced runs.
pub struct Local {
    pub name: String,
    /// A member holds the leader lock (`name` is that member).
    pub lock_held: bool,
    /// Host of its REST API (the pod IP in a cluster): the readiness sidecar listens there too.
    pub host: Option<String>,
    /// Its PostgreSQL address (`conn_url` of the member), for its own identity.
    pub pg: Option<(String, u16)>,
    pub status: Option<MemberStatus>,
    pub patroni: Option<PatroniClient>,
}

/// Reads `<scope>-config` and, when it is not a standby cluster or carries a fence, the leader.
pub async fn role(settings: &Settings, kube: &Kube) -> Result<Role, Error> {
    let cm = kube
        .get_opt(&kube.config_maps(), &settings.config_map())
        .await?;
    let map = cm
        .as_ref()
        .and_then(|c| c.metadata.annotations.as_ref())
        .and_then(|a| a.get(CONFIG_ANNOTATION))
        .and_then(|t| dynamic_config::parse(t).ok());
    let Some(map) = map else {
        // Missing or malformed: the failover path reports it and never acts.
        return Ok(Role::Standby);
    };
    let fenced = match fence::read(&map) {
        Ok(f) => f,
        Err(e) => {
            return Ok(Role::Unknown(format!(
                "{}: {e}; nothing done until it is fixed (or removed with `kubectl pgdr unfence`)",
                kube.object(&settings.config_map())
            )));
        }
    };
    if fenced.is_none() && dynamic_config::is_standby_cluster(&map) {
        return Ok(Role::Standby);
    }
    let local = local(settings, kube).await?;
    if let Some(f) = fenced {
        return Ok(Role::Fenced(local, Box::new(f)));
    }
    let primary = local
        .status
        .as_ref()
        .is_some_and(|s| s.is_writable_primary());
    Ok(if primary {
        Role::Primary(local)
    } else {
        // Promoting, or no leader: the failover path says in-progress.
        Role::Standby
    })
}

async fn local(settings: &Settings, kube: &Kube) -> Result<Local, Error> {
    let lock = settings.leader_map();
    let name = kube
        .get_opt(&kube.config_maps(), &lock)
        .await?
        .and_then(|cm| cm.metadata.annotations)
        .and_then(|a| a.get("leader").cloned())
        .filter(|n| !n.is_empty());
    let pod = match &name {
        Some(n) => kube.get_opt(&kube.api::<Pod>(), n).await?,
        None => None,
    };
    let status: Option<Value> = pod
        .as_ref()
        .and_then(|p| p.metadata.annotations.as_ref())
        .and_then(|a| a.get("status"))
        .and_then(|s| serde_json::from_str(s).ok());
    let url = |key: &str| {
        status
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .and_then(|u| reqwest::Url::parse(u).ok())
    };
    let api = settings
        .config
        .patroni_url
        .as_ref()
        .and_then(|u| reqwest::Url::parse(u.expose()).ok())
        .or_else(|| url("api_url"));
    let host = api.as_ref().and_then(|u| u.host_str().map(str::to_string));
    let pg =
        url("conn_url").and_then(|u| Some((u.host_str()?.to_string(), u.port().unwrap_or(5432))));
    let base = api.map(|u| {
        let mut u = u;
        u.set_path("");
        u.to_string().trim_end_matches('/').to_string()
    });
    let patroni = base.and_then(|b| observe::patroni_client(settings, &b).ok());
    let status = match &patroni {
        Some(p) => p.member_status().await.ok(),
        None => None,
    };
    Ok(Local {
        lock_held: name.is_some(),
        name: name.unwrap_or_else(|| "(no leader)".into()),
        host,
        pg,
        status,
        patroni,
    })
}

fn own(local: &Local) -> Own {
    let s = local.status.as_ref();
    Own {
        timeline: s
            .and_then(|s| s.timeline)
            .and_then(|t| u32::try_from(t).ok()),
        wal_end: s
            .and_then(|s| s.xlog.as_ref())
            .and_then(|x| x.location.or(x.replayed_location.max(x.received_location))),
    }
}

/// The peer through the tunnel Service, judged against our own identity; with the peer's
/// current timeline when it could be identified.
async fn peer(
    settings: &Settings,
    kube: &Kube,
    local: &Local,
) -> Result<(Peer, Option<u32>), Error> {
    let (host, port) = match observe::tunnel_target(settings, kube).await? {
        Ok(t) => t,
        Err(why) => return Ok((Peer::Silent(why), None)),
    };
    let theirs = observe::identity(settings, &host, port);
    let ours = async {
        match &local.pg {
            Some((h, p)) => observe::identity(settings, h, *p)
                .await
                .map_err(|e| e.to_string()),
            None => Err(format!("{} has no conn_url", local.name)),
        }
    };
    let view = lineage::check_peer(
        theirs,
        ours,
        local.patroni.as_ref(),
        settings.config.probe_timeout.get(),
    )
    .await;
    Ok(match view {
        PeerView::Silent(why) => (Peer::Silent(why), None),
        PeerView::Unidentified(why) => (Peer::Unidentified(why), None),
        PeerView::Seen(seen) => {
            let timeline = Some(seen.peer.timeline);
            let peer = match (seen.writable(), seen.lineage, &seen.own) {
                (false, _, _) => Peer::Standby,
                (true, Some(l), _) => Peer::Writable(l),
                (true, None, Err(why)) => Peer::Unidentified(format!(
                    "the peer is writable but this site's own identity is unknown ({why})"
                )),
                (true, None, Ok(_)) => Peer::Unidentified("the peer could not be judged".into()),
            };
            (peer, timeline)
        }
    })
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
        WitnessConfig::Dns { name, expected } => {
            let timeout = settings.config.probe_timeout.get();
            let lookup = tokio::net::lookup_host((name.as_str(), 0));
            match tokio::time::timeout(timeout, lookup).await {
                Ok(Ok(addrs)) => dns_placement(name, &addrs.map(|a| a.ip()).collect(), expected),
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
                let config = peer
                    .leader_configmap
                    .trim_end_matches("-leader")
                    .to_string()
                    + "-config";
                match observe::peer_api_get(peer, settings.config.probe_timeout.get(), &config)
                    .await
                {
                    Ok((200, body)) => {
                        let standby = serde_json::from_str::<Value>(&body)
                            .ok()
                            .and_then(|cm| {
                                cm["metadata"]["annotations"][CONFIG_ANNOTATION]
                                    .as_str()
                                    .map(str::to_string)
                            })
                            .and_then(|t| dynamic_config::parse(&t).ok())
                            .map(|m| dynamic_config::is_standby_cluster(&m));
                        match standby {
                            Some(false) => Placement::Peer(format!(
                                "{r}; its dynamic config is not a standby cluster"
                            )),
                            Some(true) => Placement::Here(format!("{r}; it is a standby cluster")),
                            None => Placement::Unknown(format!(
                                "peer-API witness: {config} is unreadable"
                            )),
                        }
                    }
                    Ok((status, _)) => Placement::Unknown(format!(
                        "peer-API witness: reading {config} answered HTTP {status}"
                    )),
                    Err(e) => Placement::Unknown(e),
                }
            }
            Witness::PrimaryDown(r) => Placement::Here(r),
            Witness::Unknown(r) => Placement::Unknown(r),
        },
    }
}

/// The application runs on the peer only when the name resolves and to none of our addresses.
pub fn dns_placement(name: &str, got: &BTreeSet<IpAddr>, expected: &[IpAddr]) -> Placement {
    let list = got
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if got.is_empty() {
        Placement::Unknown(format!("DNS witness: {name} resolved to no address"))
    } else if got.iter().all(|ip| expected.contains(ip)) {
        Placement::Here(format!("DNS witness: {name} resolves to {list}, this site"))
    } else if got.iter().any(|ip| expected.contains(ip)) {
        Placement::Unknown(format!(
            "DNS witness: {name} resolves to {list}, this site and another"
        ))
    } else {
        Placement::Peer(format!(
            "DNS witness: {name} resolves to {list}, not this site"
        ))
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
    settings: &Settings,
    kube: &Kube,
    http: &reqwest::Client,
    run: &str,
    local: &Local,
    announced: &mut Announced,
) -> Result<(Verdict, Vec<String>), Error> {
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
    };
    let d = act::record(settings, kube, |state| {
        let d = guard::decide_primary(&settings.policy, state, &sample);
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
        let written = write_fence(settings, kube, &f, None, true, false).await?;
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
    Ok((d.verdict, d.reasons))
}

/// One sample on a fenced site.
pub async fn fenced_sample(
    settings: &Settings,
    kube: &Kube,
    http: &reqwest::Client,
    run: &str,
    local: &Local,
    current: &Fence,
) -> Result<(Verdict, Vec<String>), Error> {
    let c = &settings.config;
    let (peer, target, sidecar, members) = tokio::join!(
        peer(settings, kube, local),
        observe::tunnel_target(settings, kube),
        sidecar_status(settings, http, local),
        async {
            match &current.reclone {
                Some(_) => members_reclone(settings, kube, http).await,
                None => Ok(Vec::new()),
            }
        },
    );
    let (peer, peer_timeline) = peer?;
    let preservation = match (&current.preserve, &sidecar) {
        (None, _) => Preservation::NotYet("not requested yet".into()),
        (Some(_), Ok(v)) => preservation_from(v.divergence.as_ref()),
        (Some(_), Err(why)) => Preservation::NotYet(why.clone()),
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
        target: target.as_ref().map(|_| ()).map_err(Clone::clone),
        lock_held: local.lock_held,
        members,
    };
    let d = act::record(settings, kube, |state| {
        let d = guard::decide_fenced(c.rejoin, state, current, &sample);
        (d.next.clone(), d)
    })
    .await?;
    log(&d.verdict, &d.reasons, "fenced-site sample");
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
    if let Some(f) = &d.fence {
        let target = target.ok().filter(|_| f.phase == Phase::Follow);
        let written = write_fence(
            settings,
            kube,
            f,
            target.as_ref(),
            false,
            d.clear_initialize,
        )
        .await?;
        if written && d.clear_initialize {
            tracing::warn!(object = %kube.object(&settings.config_map()), "re-clone: Patroni's initialize key removed with the follow form; Patroni bootstraps a standby leader from the peer");
        }
    }
    Ok((d.verdict, d.reasons))
}

/// Every member pod of this site and its sidecar's answer on the pending re-clone request.
async fn members_reclone(
    settings: &Settings,
    kube: &Kube,
    http: &reqwest::Client,
) -> guard::MemberReports {
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
                Err(why) => MemberReclone::NotYet(why),
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

/// The local leader's readiness sidecar `/status` (WAL preservation, own timeline history).
async fn sidecar_status(
    settings: &Settings,
    http: &reqwest::Client,
    local: &Local,
) -> Result<AgentView, String> {
    let Some(host) = &local.host else {
        return Err(format!("{}: no pod address", local.name));
    };
    status_at(settings, http, host).await
}

/// A readiness sidecar's `/status` on a pod address.
async fn status_at(
    settings: &Settings,
    http: &reqwest::Client,
    host: &str,
) -> Result<AgentView, String> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let url = format!("http://{host}:{}/status", settings.config.readiness_port);
    let answer = async {
        let r = http.get(&url).send().await?;
        r.json::<AgentView>().await
    };
    answer
        .await
        .map_err(|e| format!("readiness sidecar {url} unreachable: {}", e.without_url()))
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

/// Compare-and-set of the fence into `<scope>-config`. `only_if_absent`: a primary fencing
/// itself never overwrites a fence written meanwhile (by the plugin or another run).
pub async fn write_fence(
    settings: &Settings,
    kube: &Kube,
    f: &Fence,
    target: Option<&FollowTarget>,
    only_if_absent: bool,
    clear_initialize: bool,
) -> Result<bool, Error> {
    let name = settings.config_map();
    let api = kube.config_maps();
    let done = retry::compare_and_set(act::CAS_ROUNDS, || async {
        let Some(cm): Option<ConfigMap> = kube.get_opt(&api, &name).await? else {
            return Ok(Cas::Done(false));
        };
        let text = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| "{}".into());
        let Ok(mut map) = dynamic_config::parse(&text) else {
            tracing::error!(object = %kube.object(&name), "dynamic config unreadable: fence NOT written");
            return Ok(Cas::Done(false));
        };
        if only_if_absent && matches!(fence::read(&map), Ok(Some(_)) | Err(_)) {
            return Ok(Cas::Done(false));
        }
        fence::apply(&mut map, f, target);
        let mut annotations = json!({CONFIG_ANNOTATION: dynamic_config::render(&map)});
        if clear_initialize {
            // Merge patch: null removes the key.
            annotations[INITIALIZE_ANNOTATION] = Value::Null;
        }
        let patch = json!({"metadata": {
            "resourceVersion": cm.metadata.resource_version,
            "annotations": annotations,
        }});
        let r = retry::until_deadline(
            &format!("compare-and-set {name}"),
            kube.deadline,
            fast_backoff(),
            || async { api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await },
            |e| k8s::is_transient(e) && !k8s::is_conflict(e),
        )
        .await;
        match r {
            Ok(_) => Ok::<_, Error>(Cas::Done(true)),
            Err(RetryError::Fatal(e)) if k8s::is_conflict(&e) => Ok(Cas::Lost),
            Err(e) => Err(api_error("write", &kube.object(&name), e).into()),
        }
    })
    .await?;
    let written = done.ok_or_else(|| Error::Contention {
        object: kube.object(&name),
    })?;
    if written {
        tracing::warn!(object = %kube.object(&name), phase = ?f.phase, reason = f.reason.as_str(), fork_lsn = ?f.fork_lsn, preserve = ?f.preserve, "fence written");
    }
    Ok(written)
}

fn log(verdict: &Verdict, reasons: &[String], what: &str) {
    let reasons = reasons.join("; ");
    match verdict {
        Verdict::Ok | Verdict::AlreadyPrimary | Verdict::Rejoined => {
            tracing::info!(verdict = %verdict, reasons, "{what}")
        }
        _ => tracing::warn!(verdict = %verdict, reasons, "{what}"),
    }
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
        assert_eq!(kind(dns_placement("a", &set(&["10.9.0.1"]), &here)), "here");
        assert_eq!(kind(dns_placement("a", &set(&["10.1.0.1"]), &here)), "peer");
        assert_eq!(
            kind(dns_placement("a", &set(&["10.1.0.1", "10.9.0.1"]), &here)),
            "unknown"
        );
        assert_eq!(kind(dns_placement("a", &set(&[]), &here)), "unknown");
    }

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
