//! Which program this run is: the site's current role from its dynamic config and its leader
//! ([`role`]), the local leader the primary and fenced runs work with, and what they share:
//! this site's own position and the peer through the tunnel ([`peer`]).

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

use pgdr_core::dynamic_config::{self, CONFIG_ANNOTATION};
use pgdr_core::k8s::Kube;
use pgdr_core::lineage::{self, IdentifyError, PeerView};
use pgdr_core::patroni::{MemberStatus, PatroniClient};

use crate::config::Settings;
use crate::sample::{Own, Peer};
use crate::standby::Verdict;
use crate::{Error, observe};
use pgdr_core::contract::fence::{self, Fence};
use pgdr_core::contract::marker::{self, PromotionMarker};
use pgdr_core::contract::sidecar::AgentView;

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
    /// This site's own promotion marker (`None`: never promoted, or unreadable).
    pub marker: Option<PromotionMarker>,
    /// The highest promotion epoch this site has recorded at its peer.
    pub seen_epoch: u64,
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
    let mut local = local(settings, kube).await?;
    local.marker = marker::get(&map).ok().flatten();
    local.seen_epoch = pgdr_core::contract::epoch::seen(&map);
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
        marker: None,
        seen_epoch: 0,
    })
}

pub(crate) fn own(local: &Local) -> Own {
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
pub(crate) async fn peer(
    settings: &Settings,
    kube: &Kube,
    local: &Local,
) -> Result<(Peer, Option<u32>), Error> {
    let (host, port) = match observe::tunnel_target(settings, kube).await? {
        Ok(t) => t,
        Err(why) => return Ok((Peer::Silent(why.to_string()), None)),
    };
    let theirs = observe::identity(settings, &host, port);
    let ours = async {
        match &local.pg {
            Some((h, p)) => observe::identity(settings, h, *p).await,
            None => Err(IdentifyError::NoAddress(format!(
                "{} has no conn_url",
                local.name
            ))),
        }
    };
    let view = lineage::check_peer(theirs, ours).await;
    Ok(match view {
        PeerView::Silent(why) => (Peer::Silent(why), None),
        PeerView::Unidentified(why) => (Peer::Unidentified(why), None),
        PeerView::Seen(seen) => {
            let timeline = Some(seen.peer.timeline);
            let peer = match (seen.writable(), seen.lineage()) {
                (false, _) => Peer::Standby,
                (true, Ok(l)) => Peer::Writable(l),
                (true, Err(why)) => Peer::Unidentified(format!(
                    "the peer is writable but this site's own identity is unknown ({why})"
                )),
            };
            (peer, timeline)
        }
    })
}

/// Why a readiness sidecar's `/status` has no answer (the sample says so and waits).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SidecarUnreachable {
    /// The member (named) has no pod address.
    #[error("{0}: no pod address")]
    NoAddress(String),
    #[error("readiness sidecar {url} unreachable: {error}")]
    Unreachable { url: String, error: String },
}

/// The local leader's readiness sidecar `/status` (WAL preservation, own timeline history).
pub(crate) async fn sidecar_status(
    settings: &Settings,
    http: &reqwest::Client,
    local: &Local,
) -> Result<AgentView, SidecarUnreachable> {
    let Some(host) = &local.host else {
        return Err(SidecarUnreachable::NoAddress(local.name.clone()));
    };
    status_at(settings, http, host).await
}

/// A readiness sidecar's `/status` on a pod address.
pub(crate) async fn status_at(
    settings: &Settings,
    http: &reqwest::Client,
    host: &str,
) -> Result<AgentView, SidecarUnreachable> {
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
    answer.await.map_err(|e| SidecarUnreachable::Unreachable {
        error: e.without_url().to_string(),
        url,
    })
}

pub(crate) fn log(verdict: &Verdict, reasons: &[String], what: &str) {
    let reasons = reasons.join("; ");
    match verdict {
        Verdict::Ok | Verdict::AlreadyPrimary | Verdict::Rejoined => {
            tracing::info!(verdict = %verdict, reasons, "{what}")
        }
        _ => tracing::warn!(verdict = %verdict, reasons, "{what}"),
    }
}
