//! Act: the state ConfigMap (compare-and-set), the promotion itself, its confirmation, and the
//! announcement of a verdict (log + webhook + Event).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use pgdr_core::contract::{marker::PromotionMarker, promote};
use pgdr_core::k8s::{self, EventSpec, Kube, api_error};
use pgdr_core::patroni::{PatroniClient, PatroniError};
use pgdr_core::promotion_record::{self, PromotionRecord};
use pgdr_core::retry::{self, Cas, RetryError, fast_backoff};

use crate::Error;
use crate::config::Settings;
use crate::ctx::Ctx;
use crate::state::{self, STATE_KEY, State, StateProblem};
use pgdr_core::contract::fence::{self, Fence};
use pgdr_core::contract::keys::INITIALIZE_ANNOTATION;
use pgdr_core::contract::slot::FollowTarget;
use pgdr_core::dynamic_config::{self, CONFIG_ANNOTATION};
use serde_json::Value;

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

/// Writes `next` only if the ConfigMap still has `resource_version` (or still does not exist).
pub async fn write_state(
    settings: &Settings,
    kube: &Kube,
    resource_version: Option<&str>,
    next: &State,
) -> Result<Cas<()>, Error> {
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
        Ok(_) => Ok(Cas::Done(())),
        Err(RetryError::Fatal(e)) if k8s::is_conflict(&e) => Ok(Cas::Lost),
        Err(e) => Err(api_error("write", &kube.object(name), e).into()),
    }
}

/// Applies `change` to the stored state with compare-and-set, re-reading on conflict.
/// Used after acting, to record the outcome of our own claim.
pub async fn update_state(
    settings: &Settings,
    kube: &Kube,
    change: impl Fn(&mut State),
) -> Result<(), Error> {
    let object = || kube.object(&settings.config.state_configmap);
    let done = retry::compare_and_set(CAS_ROUNDS, || async {
        let stored = read_state(settings, kube).await?;
        let mut s = stored.state.map_err(|problem| Error::StateUnusable {
            object: object(),
            problem,
        })?;
        change(&mut s);
        write_state(settings, kube, stored.resource_version.as_deref(), &s).await
    })
    .await?;
    done.ok_or_else(|| Error::Contention { object: object() })
}

/// Reads the state, decides with `decide` (which returns the state to write), writes it with
/// compare-and-set; on a lost race reads and decides again. Never writes an unusable state.
pub async fn record<D>(
    settings: &Settings,
    kube: &Kube,
    decide: impl Fn(&State) -> (State, D),
) -> Result<D, Error> {
    let object = || kube.object(&settings.config.state_configmap);
    let done = retry::compare_and_set(CAS_ROUNDS, || async {
        let stored = read_state(settings, kube).await?;
        let state = stored.state.map_err(|problem| Error::StateUnusable {
            object: object(),
            problem,
        })?;
        let (next, d) = decide(&state);
        Ok::<_, Error>(
            match write_state(settings, kube, stored.resource_version.as_deref(), &next).await? {
                Cas::Done(()) => Cas::Done(d),
                Cas::Lost => Cas::Lost,
            },
        )
    })
    .await?;
    done.ok_or_else(|| Error::Contention { object: object() })
}

/// How often a compare-and-set on the state is redone before giving up (contention).
pub const CAS_ROUNDS: u32 = 10;

/// Creates the durable promotion record (or overwrites it), with `helm.sh/resource-policy: keep`
/// so `helm uninstall` leaves it; port-patch reads it before making this site a standby again.
pub async fn write_promotion_record(
    settings: &Settings,
    kube: &Kube,
    record: &PromotionRecord,
) -> Result<(), Error> {
    let name = &settings.config.promotion_record_configmap;
    let api = kube.config_maps();
    let keep = BTreeMap::from([(
        promotion_record::KEEP_ANNOTATION.to_string(),
        promotion_record::KEEP_VALUE.to_string(),
    )]);
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(kube.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/component".to_string(),
                promotion_record::COMPONENT_LABEL.to_string(),
            )])),
            annotations: Some(keep.clone()),
            ..ObjectMeta::default()
        },
        data: Some(record.to_data()),
        ..ConfigMap::default()
    };
    let created = retry::until_deadline(
        &format!("create {name}"),
        kube.deadline,
        fast_backoff(),
        || async { api.create(&PostParams::default(), &cm).await },
        |e| k8s::is_transient(e) && !k8s::is_conflict(e),
    )
    .await;
    let result = match created {
        Ok(_) => return Ok(()),
        // It exists (an earlier promotion, since failed back): this promotion replaces it.
        Err(RetryError::Fatal(e)) if k8s::is_conflict(&e) => {
            let patch = json!({"metadata": {"annotations": keep}, "data": record.to_data()});
            retry::until_deadline(
                &format!("update {name}"),
                kube.deadline,
                fast_backoff(),
                || async {
                    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                },
                k8s::is_transient,
            )
            .await
            .map(|_| ())
        }
        Err(e) => Err(e),
    };
    result.map_err(|e| api_error("write", &kube.object(name), e).into())
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
    // The promotion marker (pgdr_contract::marker): the timeline we leave and where. With it the
    // old primary, seeing us writable, knows it was forked from and fences itself.
    let marker = match patroni.member_status().await {
        Ok(s) => match (
            s.timeline,
            s.xlog.as_ref().and_then(|x| x.replayed_location),
        ) {
            (Some(timeline), Some(fork_lsn)) if timeline > 0 => {
                let marker = PromotionMarker {
                    timeline: u32::try_from(timeline).unwrap_or(u32::MAX),
                    fork_lsn,
                    site: settings.config.site.clone(),
                    at: Timestamp::now().to_string(),
                };
                tracing::info!(marker = %marker.render(), "promotion marker");
                Some(marker)
            }
            _ => {
                tracing::warn!(
                    "the standby leader reports no timeline/replayed position: promoting WITHOUT \
                     a promotion marker (the old primary cannot prove it must fence itself)"
                );
                None
            }
        },
        Err(e) => {
            tracing::warn!(
                error = %e.short(),
                "standby leader status unreadable: promoting WITHOUT a promotion marker"
            );
            None
        }
    };
    let patch = promote::patch(&settings.peer_slot, marker.as_ref());
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
                Ok(s) if s.is_writable_primary() => Ok(s),
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

/// A verdict worth telling people about: one log line, the webhook and a Warning Event.
#[derive(Clone, Debug)]
pub struct Announcement {
    /// CamelCase Event reason, also the webhook's `event` field source.
    pub reason: &'static str,
    /// Event action, e.g. `Promote`.
    pub action: &'static str,
    /// One human-readable line (never a secret).
    pub text: String,
    /// Extra webhook fields.
    pub extra: serde_json::Value,
}

/// Announces a verdict: logs it, then sends the webhook and the Event side by side, so a slow
/// or failing API server never delays or drops the webhook. Each is bounded; neither can fail
/// the run.
pub async fn announce(settings: &Settings, kube: &Kube, http: &reqwest::Client, a: Announcement) {
    tracing::warn!(event = a.reason, text = %a.text, "announcing");
    let spec = EventSpec {
        type_: "Warning",
        reason: a.reason,
        message: a.text.clone(),
        action: a.action,
    };
    tokio::join!(
        webhook(settings, http, &a.text, a.extra),
        event(settings, kube, spec)
    );
}

/// Records an Event on `<scope>-config` (or on the state ConfigMap when that is missing).
/// Best effort and bounded: finding the object and posting the Event each get the API budget.
pub async fn event(settings: &Settings, kube: &Kube, spec: EventSpec) {
    let api = kube.config_maps();
    let find = async {
        match api.get_opt(&settings.config_map()).await {
            Ok(Some(cm)) => Some(cm),
            _ => api
                .get_opt(&settings.config.state_configmap)
                .await
                .ok()
                .flatten(),
        }
    };
    match tokio::time::timeout(kube.deadline, find).await {
        Ok(Some(cm)) => kube.event(&cm, &spec, COMPONENT).await,
        Ok(None) => tracing::warn!(reason = spec.reason, "no ConfigMap to attach the Event to"),
        Err(_) => tracing::warn!(
            reason = spec.reason,
            "Event not recorded: the API server did not answer within the budget"
        ),
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

/// Compare-and-set of the fence into `<scope>-config`. `only_if_absent`: a primary fencing
/// itself never overwrites a fence written meanwhile (by the plugin or another run).
pub async fn write_fence(
    ctx: &Ctx<'_>,
    f: &Fence,
    target: Option<&FollowTarget>,
    only_if_absent: bool,
    clear_initialize: bool,
) -> Result<bool, Error> {
    let (settings, kube) = (ctx.settings, &ctx.kube);
    let name = settings.config_map();
    let api = kube.config_maps();
    let done = retry::compare_and_set(CAS_ROUNDS, || async {
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
