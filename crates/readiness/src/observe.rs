//! Observe: one poll of the local Patroni REST API. I/O only; the verdicts are in [`crate::decide`].

use pgdr_core::dynamic_config;
use pgdr_core::patroni::PatroniClient;

use crate::decide::{MemberView, Poll, Role};

/// One poll of Patroni: `/patroni` and `/config` (the standby flag, our fence, the vouch and the
/// promotion epoch) always, `/cluster` for a replica's lag.
pub async fn poll(client: &PatroniClient) -> Poll {
    let status = match client.member_status().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "Patroni poll failed");
            return Poll::Unreachable(e.short());
        }
    };
    let role = Role::parse(&status.role);
    let member = status.patroni.as_ref().and_then(|p| p.name.clone());
    let config = match client.dynamic_config().await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(error = %e, "reading Patroni's /config failed");
            None
        }
    };
    let standby_cluster = match role {
        Role::StandbyLeader => Some(true),
        _ => config.as_ref().map(dynamic_config::is_standby_cluster),
    };
    let fence = config.as_ref().and_then(pgdr_core::contract::fence::seen);
    let vouch = config.as_ref().and_then(pgdr_core::contract::vouch::read);
    let epoch = config
        .as_ref()
        .map_or(0, pgdr_core::contract::epoch::written);
    let promoted_at = config
        .as_ref()
        .and_then(|c| pgdr_core::contract::marker::get(c).ok().flatten())
        .and_then(|m| m.at.parse().ok());
    let lag_bytes = match (&role, &member) {
        (Role::Replica, Some(name)) => client
            .cluster()
            .await
            .ok()
            .and_then(|c| c.members.into_iter().find(|m| &m.name == name))
            .and_then(|m| m.lag),
        _ => None,
    };
    Poll::Reachable(MemberView {
        member,
        scope: status.patroni.and_then(|p| p.scope),
        state: status.state,
        role,
        timeline: status.timeline,
        lag_bytes,
        standby_cluster,
        replication_state: status.replication_state,
        paused: status.pause,
        cluster_unlocked: status.cluster_unlocked,
        fence,
        vouch,
        epoch,
        promoted_at,
    })
}
