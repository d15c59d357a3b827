//! Prometheus metrics, updated after each poll and encoded on scrape (OpenMetrics text).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use pgdr_core::contract::keys::FENCE;

use crate::Snapshot;
use crate::decide::{Poll, Verdict};

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Roles always exported (0 or 1) so a dashboard sees a stable set of series.
const ROLES: [&str; 5] = ["primary", "standby_leader", "replica", "fenced", "other"];

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    up: Gauge,
    ready: Gauge,
    primary: Gauge,
    role: Family<Labels, Gauge>,
    timeline: Gauge,
    lag: FloatGauge,
    standby: FloatGauge,
    replication_broken: FloatGauge,
    running: Gauge,
    polls: Family<Labels, Counter>,
    last_success: FloatGauge,
    split_brain: Gauge,
    divergence: Gauge,
    fenced_seconds: Gauge,
    peer_authoritative: Gauge,
    withheld: Gauge,
}

fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

impl Metrics {
    pub fn new(site: &str, version: &str) -> Metrics {
        let mut r = Registry::with_prefix("pgdr");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            up: Gauge::default(),
            ready: Gauge::default(),
            primary: Gauge::default(),
            role: Family::default(),
            timeline: Gauge::default(),
            lag: FloatGauge::default(),
            standby: FloatGauge::default(),
            replication_broken: FloatGauge::default(),
            running: Gauge::default(),
            polls: Family::default(),
            last_success: FloatGauge::default(),
            split_brain: Gauge::default(),
            divergence: Gauge::default(),
            fenced_seconds: Gauge::default(),
            peer_authoritative: Gauge::default(),
            withheld: Gauge::default(),
        };
        r.register(
            "readiness",
            "Sidecar build and site",
            Info::new(vec![
                ("site".to_string(), site.to_string()),
                ("version".to_string(), version.to_string()),
            ]),
        );
        r.register(
            "patroni_up",
            "1 if the last poll of the local Patroni REST API succeeded",
            m.up.clone(),
        );
        r.register(
            "ready",
            "1 if this member can serve its role (what /ready answers)",
            m.ready.clone(),
        );
        r.register(
            "primary",
            "1 if a writable primary runs here (what /primary answers)",
            m.primary.clone(),
        );
        r.register("role", "1 for the member's current role", m.role.clone());
        r.register(
            "postgres_running",
            "1 if Patroni reports PostgreSQL running",
            m.running.clone(),
        );
        r.register(
            "timeline",
            "PostgreSQL timeline (0 when unknown)",
            m.timeline.clone(),
        );
        r.register(
            "replication_lag_bytes",
            "Bytes this replica is behind its leader; NaN when unknown or not a replica",
            m.lag.clone(),
        );
        r.register(
            "standby_cluster",
            "1 if Patroni's dynamic config makes this a standby cluster, 0 if not, NaN when unknown",
            m.standby.clone(),
        );
        r.register(
            "replication_broken",
            "1 if this member should stream WAL (standby leader or replica, running) but does not, 0 if it streams or does not replicate, NaN when unknown",
            m.replication_broken.clone(),
        );
        r.register(
            "patroni_polls",
            "Polls of the Patroni REST API by result",
            m.polls.clone(),
        );
        r.register(
            "patroni_last_success_timestamp_seconds",
            "Unix time of the last successful poll",
            m.last_success.clone(),
        );
        r.register(
            "split_brain",
            "1 while this member and the peer are both writable primaries (the peer check)",
            m.split_brain.clone(),
        );
        r.register(
            "divergence_bytes",
            format!("WAL this site wrote past the fork point of the authoritative peer ({FENCE}.diverged_bytes, or the peer check's figure), 0 when none is known"),
            m.divergence.clone(),
        );
        r.register(
            "fenced_seconds",
            format!("Seconds since this site fenced itself ({FENCE}.since), 0 when not fenced"),
            m.fenced_seconds.clone(),
        );
        r.register(
            "peer_authoritative",
            "1 when the peer is the authoritative site: this site is fenced, or the peer was seen writable with a newer promotion epoch",
            m.peer_authoritative.clone(),
        );
        r.register(
            "primary_withheld",
            "1 while this member is a writable primary that /primary does not advertise: no evidence yet that the peer did not promote past it, or the peer is writable at an epoch not below ours",
            m.withheld.clone(),
        );
        for role in ROLES {
            m.role.get_or_create(&label("role", role)).set(0);
        }
        for result in ["ok", "error"] {
            let _ = m.polls.get_or_create(&label("result", result));
        }
        m.lag.set(f64::NAN);
        m.standby.set(f64::NAN);
        m.replication_broken.set(f64::NAN);
        Metrics {
            registry: Arc::new(r),
            ..m
        }
    }

    /// After a poll of Patroni: counts the poll, then [`Self::update`].
    pub fn record(&self, snap: &Snapshot, verdict: &Verdict, now: jiff::Timestamp) {
        let ok = matches!(snap.poll, Poll::Reachable(_));
        self.polls
            .get_or_create(&label("result", if ok { "ok" } else { "error" }))
            .inc();
        self.update(snap, verdict, now);
    }

    /// The gauges from the snapshot (also when a peer check changed the verdict between two
    /// polls, which must not count as a poll).
    pub fn update(&self, snap: &Snapshot, verdict: &Verdict, now: jiff::Timestamp) {
        let poll = &snap.poll;
        self.split_brain
            .set(snap.split_brain_since.is_some().into());
        let fence = match poll {
            Poll::Reachable(m) => m.fence.as_ref(),
            _ => None,
        };
        self.peer_authoritative
            .set((fence.is_some() || snap.latch.is_some()).into());
        self.fenced_seconds.set(fence.map_or(0, |f| {
            i64::try_from(f.seconds_since(now)).unwrap_or(i64::MAX)
        }));
        let divergence = fence
            .and_then(|f| f.fence())
            .and_then(|f| f.diverged_bytes)
            .or(snap.latch.as_ref().map(|l| l.divergence_bytes))
            .unwrap_or(0);
        self.divergence
            .set(i64::try_from(divergence).unwrap_or(i64::MAX));
        self.ready.set(verdict.ready.into());
        self.primary.set(verdict.primary.into());
        self.withheld.set(snap.withheld.is_some().into());
        let member = match poll {
            Poll::Reachable(m) => Some(m),
            _ => None,
        };
        self.up.set(member.is_some().into());
        let current = member.map(|m| match m.shown_role() {
            r @ ("primary" | "standby_leader" | "replica" | "fenced") => r,
            _ => "other",
        });
        for role in ROLES {
            self.role
                .get_or_create(&label("role", role))
                .set((current == Some(role)).into());
        }
        let Some(m) = member else {
            self.running.set(0);
            self.lag.set(f64::NAN);
            self.standby.set(f64::NAN);
            self.replication_broken.set(f64::NAN);
            return;
        };
        if let Some(t) = snap.last_success_ts {
            self.last_success.set(t.as_millisecond() as f64 / 1000.0);
        }
        self.running.set((m.state == "running").into());
        self.timeline.set(m.timeline.map_or(0, |t| t as i64));
        self.lag.set(m.lag_bytes.map_or(f64::NAN, |l| l as f64));
        self.replication_broken
            .set(if m.replication_broken() { 1.0 } else { 0.0 });
        self.standby.set(
            m.standby_cluster
                .map_or(f64::NAN, |s| if s { 1.0 } else { 0.0 }),
        );
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{Fence, FenceSeen, Latch, MemberView, PeerCheck, Role};

    fn snap(poll: Poll) -> Snapshot {
        Snapshot {
            poll,
            ..Snapshot::initial(PeerCheck::Off)
        }
    }

    #[test]
    fn exposition_reflects_the_last_poll() {
        let m = Metrics::new("golddr", "0.1.0");
        let poll = Poll::Reachable(MemberView {
            member: Some("pg-1".into()),
            scope: Some("demo".into()),
            state: "running".into(),
            role: Role::Replica,
            timeline: Some(3),
            lag_bytes: Some(2048),
            standby_cluster: Some(true),
            replication_state: Some("streaming".into()),
            paused: false,
            cluster_unlocked: false,
            fence: None,
            vouch: None,
            epoch: 0,
            promoted_at: None,
        });
        let v = Verdict {
            ready: true,
            primary: false,
            reason: crate::decide::Reason::StandbyLeader,
        };
        let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        m.record(
            &Snapshot {
                last_success_ts: Some(at),
                ..snap(poll.clone())
            },
            &v,
            at,
        );
        let text = m.encode().unwrap();
        for line in [
            "pgdr_readiness_info{site=\"golddr\",version=\"0.1.0\"} 1",
            "pgdr_patroni_up 1",
            "pgdr_ready 1",
            "pgdr_primary 0",
            "pgdr_role{role=\"replica\"} 1",
            "pgdr_role{role=\"primary\"} 0",
            "pgdr_timeline 3",
            "pgdr_replication_lag_bytes 2048.0",
            "pgdr_standby_cluster 1.0",
            "pgdr_replication_broken 0.0",
            "pgdr_patroni_polls_total{result=\"ok\"} 1",
            "pgdr_patroni_last_success_timestamp_seconds 1800000000.0",
            "pgdr_role{role=\"fenced\"} 0",
            "pgdr_split_brain 0",
            "pgdr_divergence_bytes 0",
            "pgdr_fenced_seconds 0",
            "pgdr_peer_authoritative 0",
            "pgdr_primary_withheld 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }

        m.record(
            &snap(Poll::Unreachable("timeout".into())),
            &Verdict {
                ready: false,
                primary: false,
                reason: crate::decide::Reason::StandbyLeader,
            },
            jiff::Timestamp::now(),
        );
        let text = m.encode().unwrap();
        for line in [
            "pgdr_patroni_up 0",
            "pgdr_ready 0",
            "pgdr_role{role=\"replica\"} 0",
            "pgdr_replication_lag_bytes NaN",
            "pgdr_replication_broken NaN",
            "pgdr_patroni_polls_total{result=\"error\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn fence_and_split_brain_metrics() {
        let m = Metrics::new("gold", "0.1.0");
        let base = MemberView {
            member: Some("pg-0".into()),
            scope: Some("demo".into()),
            state: "running".into(),
            role: Role::StandbyLeader,
            timeline: Some(3),
            lag_bytes: None,
            standby_cluster: Some(true),
            replication_state: None,
            paused: false,
            cluster_unlocked: false,
            fence: Some(FenceSeen::Readable(Fence {
                diverged_bytes: Some(1234),
                ..Fence::hold(
                    "2026-11-30T16:00:00Z".parse().unwrap(),
                    pgdr_core::contract::fence::FenceReason::PeerAuthoritative,
                    "golddr",
                )
            })),
            vouch: None,
            epoch: 0,
            promoted_at: None,
        };
        let v = Verdict {
            ready: true,
            primary: false,
            reason: crate::decide::Reason::StandbyLeader,
        };
        let now: jiff::Timestamp = "2026-11-30T16:00:42Z".parse().unwrap();
        m.record(&snap(Poll::Reachable(base.clone())), &v, now);
        let text = m.encode().unwrap();
        for line in [
            "pgdr_role{role=\"fenced\"} 1",
            "pgdr_role{role=\"standby_leader\"} 0",
            "pgdr_fenced_seconds 42",
            "pgdr_divergence_bytes 1234",
            "pgdr_peer_authoritative 1",
            "pgdr_split_brain 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // A writable primary that saw the peer promoted from its timeline.
        let s = Snapshot {
            split_brain_since: Some(now),
            latch: Some(Latch {
                since: now.to_string(),
                fork_lsn: "0/1".into(),
                timeline: 3,
                divergence_bytes: 77,
            }),
            withheld: Some(crate::decide::UNSEEN),
            ..snap(Poll::Reachable(MemberView {
                role: Role::Primary,
                standby_cluster: Some(false),
                fence: None,
                ..base
            }))
        };
        m.record(&s, &v, now);
        let text = m.encode().unwrap();
        for line in [
            "pgdr_role{role=\"primary\"} 1",
            "pgdr_role{role=\"fenced\"} 0",
            "pgdr_fenced_seconds 0",
            "pgdr_divergence_bytes 77",
            "pgdr_peer_authoritative 1",
            "pgdr_split_brain 1",
            "pgdr_primary_withheld 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
