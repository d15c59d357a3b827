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
use pgdr_core::patroni::PatroniClient;
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

/// Promotes this site in one compare-and-set of `<scope>-config` (`pgdr_contract::promote`):
/// `standby_cluster` removed, the peer's permanent slot declared (so the old primary site can
/// later rejoin as a standby without a re-clone) and the promotion marker with the next epoch
/// written; Patroni wakes on the `config` change and promotes its standby leader. Then waits
/// until the leader reports a running primary.
///
/// Fails closed: without the standby leader's timeline and replayed position there is no marker,
/// and a promotion without a fresh marker would let an older one speak for this site (a returning
/// peer could then outrank the site holding the newest writes). A config that is no longer a
/// standby cluster when written means someone else promoted: this run does not promote twice.
pub async fn promote(
    settings: &Settings,
    kube: &Kube,
    patroni: &PatroniClient,
) -> Result<Promoted, Error> {
    let started = std::time::Instant::now();
    let deadline = settings.config.promote_confirm_deadline.get();
    let failed = |detail: String| Error::PromoteFailed {
        leader: patroni.base_url().to_string(),
        detail,
    };
    let status = patroni.member_status().await.map_err(|e| {
        failed(format!(
            "the standby leader's status is unreadable ({}): no promotion marker, so no promotion",
            e.short()
        ))
    })?;
    let fork = match (
        status
            .timeline
            .and_then(|t| u32::try_from(t).ok())
            .filter(|t| *t > 0),
        status.xlog.as_ref().and_then(|x| x.replayed_location),
    ) {
        (Some(timeline), Some(replayed)) => promote::Fork { timeline, replayed },
        _ => {
            return Err(failed(
                "the standby leader reports no timeline or replayed position: no promotion \
                 marker, so no promotion (it would let an older marker speak for this site)"
                    .into(),
            ));
        }
    };
    let who = promote::Promotion {
        site: &settings.config.site,
        at: Timestamp::now().to_string(),
        peer: pgdr_core::contract::epoch::PeerEpoch::Read(0),
    };
    let marker = edit_config(settings, kube, false, |map| {
        if !dynamic_config::is_standby_cluster(map) {
            return Edit::Leave(None);
        }
        Edit::Write(Some(promote::apply(map, &settings.peer_slot, fork, &who)))
    })
    .await?;
    let marker = match marker {
        None => {
            return Err(failed(format!(
                "{} is missing or unreadable: not promoted",
                kube.object(&settings.config_map())
            )));
        }
        Some(None) => {
            return Err(failed(format!(
                "{} is no longer a standby cluster (promoted by someone else meanwhile): not \
                 promoted a second time",
                kube.object(&settings.config_map())
            )));
        }
        Some(Some(m)) => m,
    };
    tracing::warn!(marker = %marker.render(), epoch = marker.epoch, "promotion written (epoch, fork pending until the new timeline's history says)");
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

/// What an edit of `<scope>-config` decided on the document it was given.
pub enum Edit<T> {
    /// Write the edited document (compare-and-set), then return `T`.
    Write(T),
    /// Leave the object as it is and return `T`.
    Leave(T),
}

/// Compare-and-set of this site's dynamic config: `edit` decides on the fresh document every
/// round (a lost race means decide again on what won, never re-apply a stale decision).
/// `Ok(None)`: the object is missing or its config unreadable (logged; nothing written).
/// `clear_initialize`: the write also removes Patroni's `initialize` annotation.
pub async fn edit_config<T>(
    settings: &Settings,
    kube: &Kube,
    clear_initialize: bool,
    edit: impl Fn(&mut serde_json::Map<String, Value>) -> Edit<T>,
) -> Result<Option<T>, Error> {
    let name = settings.config_map();
    let api = kube.config_maps();
    let done = retry::compare_and_set(CAS_ROUNDS, || async {
        let Some(cm): Option<ConfigMap> = kube.get_opt(&api, &name).await? else {
            return Ok(Cas::Done(None));
        };
        let text = cm
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| "{}".into());
        let Ok(mut map) = dynamic_config::parse(&text) else {
            tracing::error!(object = %kube.object(&name), "dynamic config unreadable: nothing written");
            return Ok(Cas::Done(None));
        };
        let out = match edit(&mut map) {
            Edit::Leave(out) => return Ok(Cas::Done(Some(out))),
            Edit::Write(out) => out,
        };
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
            Ok(_) => Ok::<_, Error>(Cas::Done(Some(out))),
            Err(RetryError::Fatal(e)) if k8s::is_conflict(&e) => Ok(Cas::Lost),
            Err(e) => Err(api_error("write", &kube.object(&name), e).into()),
        }
    })
    .await?;
    done.ok_or_else(|| Error::Contention {
        object: kube.object(&name),
    })
}

/// Records the peer's epoch as seen in this site's dynamic config when it is new (a later
/// promotion of this site is numbered above it). Failing to record is logged, never fatal: the
/// next sample tries again.
pub async fn record_seen_epoch(settings: &Settings, kube: &Kube, epoch: u64) {
    let r = edit_config(settings, kube, false, |map| {
        if pgdr_core::contract::epoch::record_seen(map, epoch) {
            Edit::Write(true)
        } else {
            Edit::Leave(false)
        }
    })
    .await;
    match r {
        Ok(Some(true)) => tracing::info!(epoch, "recorded the peer's promotion epoch"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, epoch, "the peer's promotion epoch was not recorded"),
    }
}

/// The promotion marker of this site, once its own timeline history says where it left the
/// marker's timeline: the marker is rewritten with that switchpoint (same epoch), so that a
/// fenced peer can check its rewind against the real fork. `Ok(Some(marker))` when written.
pub async fn settle_fork(
    settings: &Settings,
    kube: &Kube,
    history: &[pgdr_core::lineage::HistoryEntry],
) -> Result<Option<PromotionMarker>, Error> {
    let written = edit_config(settings, kube, false, |map| {
        let Ok(Some(m)) = pgdr_core::contract::marker::get(map) else {
            return Edit::Leave(None);
        };
        let Some(line) = history.iter().find(|h| h.timeline == m.timeline) else {
            return Edit::Leave(None);
        };
        if !m.fork_pending {
            return Edit::Leave(None);
        }
        let settled = m.settled(line.switchpoint);
        pgdr_core::contract::marker::set(map, &settled);
        Edit::Write(Some(settled))
    })
    .await?;
    Ok(written.flatten())
}

/// Compare-and-set of the fence into `<scope>-config`, only while the document still holds
/// `decided_on`, the fence the decision was taken on (`None`: no fence; a primary fencing itself
/// never overwrites a fence written meanwhile by the plugin or another run). A fence that changed
/// in between (a person's `unfence`, another run's step) is left as it is, never overwritten with
/// the stale decision: the next sample decides again on the new one. `Ok(true)` when written.
pub async fn write_fence(
    ctx: &Ctx<'_>,
    f: &Fence,
    target: Option<&FollowTarget>,
    decided_on: Option<&Fence>,
    clear_initialize: bool,
) -> Result<bool, Error> {
    let (settings, kube) = (ctx.settings, &ctx.kube);
    let written = edit_config(settings, kube, clear_initialize, |map| {
        if !fence::unchanged(map, decided_on) {
            tracing::warn!(
                "the fence changed since this sample read it: the decision is not written; the \
                 next sample decides on the new document"
            );
            return Edit::Leave(false);
        }
        fence::apply(map, f, target);
        Edit::Write(true)
    })
    .await?
    .unwrap_or(false);
    if written {
        tracing::warn!(object = %kube.object(&settings.config_map()), phase = ?f.phase, reason = f.reason.as_str(), fork_lsn = ?f.fork_lsn, preserve = ?f.preserve, "fence written");
    }
    Ok(written)
}
