//! Act: the state ConfigMap (compare-and-set), the promotion itself, its confirmation, the
//! Event and the webhook.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use pgdr_core::k8s::{self, EventSpec};
use pgdr_core::patroni::{PatroniClient, PatroniError};
use pgdr_core::retry::{self, RetryError};

use crate::Error;
use crate::config::Settings;
use crate::observe::{Kube, fast_backoff, kube_error};
use crate::state::{self, STATE_KEY, State, StateProblem};

/// The component name on Events.
pub const COMPONENT: &str = "pgdr-failover";

/// The state ConfigMap as read: its resourceVersion (for the compare-and-set), the parsed
/// state (or why it cannot be used) and the hold annotation.
#[derive(Debug)]
pub struct StoredState {
    pub object: Option<ConfigMap>,
    pub resource_version: Option<String>,
    pub state: Result<State, StateProblem>,
    pub hold: bool,
}

pub async fn read_state(settings: &Settings, kube: &Kube) -> Result<StoredState, Error> {
    let name = &settings.config.state_configmap;
    let cm = kube.get_opt(&kube.config_maps(), name).await?;
    let Some(cm) = cm else {
        return Ok(StoredState {
            object: None,
            resource_version: None,
            state: Ok(State::default()),
            hold: false,
        });
    };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(STATE_KEY))
        .map(String::as_str);
    let hold = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&settings.config.hold_annotation))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    Ok(StoredState {
        state: state::parse(text),
        resource_version: cm.metadata.resource_version.clone(),
        object: Some(cm),
        hold,
    })
}

/// How a compare-and-set ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Cas {
    Written,
    /// Someone else wrote first: re-read and decide again.
    Lost,
}

/// Writes `next` only if the ConfigMap still has `resource_version` (or still does not exist).
pub async fn write_state(
    settings: &Settings,
    kube: &Kube,
    resource_version: Option<&str>,
    next: &State,
) -> Result<Cas, Error> {
    let name = &settings.config.state_configmap;
    let api = kube.config_maps();
    let text = state::render(next);
    // One attempt per call: a 409 must go back to the decision, never be retried blindly.
    // Transient errors (5xx, timeouts) of that one write are retried within the deadline.
    let result = match resource_version {
        Some(rv) => {
            let patch = json!({
                "metadata": {"resourceVersion": rv},
                "data": {STATE_KEY: text},
            });
            retry::until_deadline(
                &format!("compare-and-set {name}"),
                kube.deadline,
                fast_backoff(),
                || async {
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                },
                |e| k8s::is_transient(e) && !k8s::is_conflict(e),
            )
            .await
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(kube.namespace.clone()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/component".to_string(),
                        "failover-state".to_string(),
                    )])),
                    ..ObjectMeta::default()
                },
                data: Some(BTreeMap::from([(STATE_KEY.to_string(), text)])),
                ..ConfigMap::default()
            };
            retry::until_deadline(
                &format!("create {name}"),
                kube.deadline,
                fast_backoff(),
                || async { api.create(&PostParams::default(), &cm).await },
                |e| k8s::is_transient(e) && !k8s::is_conflict(e),
            )
            .await
        }
    };
    match result {
        Ok(_) => Ok(Cas::Written),
        Err(RetryError::Fatal(e)) if k8s::is_conflict(&e) => Ok(Cas::Lost),
        Err(e) => Err(kube_error("write", &kube.object(name), e)),
    }
}

/// Applies `change` to the stored state with compare-and-set, re-reading on conflict.
/// Used after acting, to record the outcome of our own claim.
pub async fn update_state(
    settings: &Settings,
    kube: &Kube,
    change: impl Fn(&mut State),
) -> Result<(), Error> {
    for _ in 0..10 {
        let stored = read_state(settings, kube).await?;
        let mut s = stored.state.map_err(|problem| Error::StateUnusable {
            object: kube.object(&settings.config.state_configmap),
            problem,
        })?;
        change(&mut s);
        if write_state(settings, kube, stored.resource_version.as_deref(), &s).await?
            == Cas::Written
        {
            return Ok(());
        }
    }
    Err(Error::Contention {
        object: kube.object(&settings.config.state_configmap),
    })
}

/// What the promotion achieved.
#[derive(Clone, Debug, PartialEq)]
pub struct Promoted {
    pub confirmed_at: Timestamp,
    pub primary_lsn: Option<u64>,
    pub timeline: Option<u64>,
    pub took: Duration,
}

/// Removes `standby_cluster` (and declares the peer's permanent slot, so the old primary site
/// can later rejoin as a standby without a re-clone) through Patroni's `PATCH /config`, which
/// Patroni applies as a compare-and-set on `<scope>-config`; then waits until the leader
/// reports a running primary.
pub async fn promote(settings: &Settings, patroni: &PatroniClient) -> Result<Promoted, Error> {
    let started = std::time::Instant::now();
    let deadline = settings.config.promote_confirm_deadline.get();
    let slot = &settings.config.peer_slot_name;
    let patch = json!({
        "standby_cluster": null,
        "slots": {slot: {"type": "physical"}},
    });
    retry::until_deadline(
        "PATCH /config on the standby leader",
        deadline,
        fast_backoff(),
        || async { patroni.patch_config(&patch).await },
        patroni_retryable,
    )
    .await
    .map_err(|e| Error::PromoteFailed {
        leader: patroni.base_url().to_string(),
        detail: match e {
            RetryError::Fatal(e) => e.to_string(),
            RetryError::Deadline { elapsed, last } => {
                format!(
                    "still failing after {elapsed:.1?}: {}",
                    last.unwrap_or_default()
                )
            }
        },
    })?;
    tracing::info!(
        leader = patroni.base_url(),
        "standby_cluster removed; waiting for a writable primary"
    );

    let remaining = deadline
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(1));
    let status = retry::until_deadline(
        "leader to report a running primary",
        remaining,
        fast_backoff().with_max_delay(Duration::from_millis(500)),
        || async {
            match patroni.member_status().await {
                Ok(s)
                    if matches!(s.role.as_str(), "primary" | "master") && s.state == "running" =>
                {
                    Ok(s)
                }
                Ok(s) => Err(format!("role {} state {}", s.role, s.state)),
                Err(e) => Err(e.short()),
            }
        },
        |_| true,
    )
    .await
    .map_err(|e| Error::NotConfirmed {
        deadline,
        last: match e {
            RetryError::Fatal(s) => s,
            RetryError::Deadline { last, .. } => last.unwrap_or_default(),
        },
    })?;
    Ok(Promoted {
        confirmed_at: Timestamp::now(),
        primary_lsn: status.xlog.as_ref().and_then(|x| x.location),
        timeline: status.timeline,
        took: started.elapsed(),
    })
}

fn patroni_retryable(e: &PatroniError) -> bool {
    match e {
        PatroniError::Unreachable { .. } => true,
        // 409: Patroni lost its own compare-and-set on <scope>-config; the merge is re-done.
        PatroniError::Status { status, .. } => *status == 409 || *status >= 500,
        _ => false,
    }
}

/// Records an Event on `<scope>-config` (or on the state ConfigMap when that is missing).
/// Best effort: an Event never changes the outcome.
pub async fn event(settings: &Settings, kube: &Kube, spec: EventSpec) {
    let api = kube.config_maps();
    let target = match api.get_opt(&settings.config_map()).await {
        Ok(Some(cm)) => Some(cm),
        _ => api
            .get_opt(&settings.config.state_configmap)
            .await
            .ok()
            .flatten(),
    };
    match target {
        Some(cm) => k8s::emit_event(&kube.client, &cm, &spec, COMPONENT).await,
        None => tracing::warn!(reason = spec.reason, "no ConfigMap to attach the Event to"),
    }
}

/// POSTs `{"text": ...}` plus details to the webhook. Best effort; the URL is never logged.
pub async fn webhook(
    settings: &Settings,
    http: &reqwest::Client,
    text: &str,
    extra: serde_json::Value,
) {
    let Some(url) = &settings.config.webhook_url else {
        return;
    };
    let mut body = json!({
        "text": text,
        "site": settings.config.site,
        "peer": settings.config.peer_site,
        "mode": format!("{:?}", settings.policy.mode).to_lowercase(),
        "time": Timestamp::now().to_string(),
    });
    if let (Some(b), serde_json::Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    let sent = retry::until_deadline(
        "webhook",
        Duration::from_secs(10),
        fast_backoff(),
        || async {
            let r = http
                .post(url.expose())
                .timeout(Duration::from_secs(5))
                .json(&body)
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        "timeout".to_string()
                    } else {
                        "unreachable".to_string()
                    }
                })?;
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {}", r.status().as_u16()))
            }
        },
        |_| true,
    )
    .await;
    match sent {
        Ok(()) => tracing::info!("webhook notified"),
        Err(e) => tracing::warn!(error = ?e, "webhook failed (the outcome is unchanged)"),
    }
}
