//! Act: carry out the decision on `<scope>-config` (create, or compare-and-set on its
//! resourceVersion) and record an Event. Events are bounded and best effort.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use pgdr_core::dynamic_config::{self, CONFIG_ANNOTATION};
use pgdr_core::k8s::{EventSpec, Kube};
use serde_json::{Map, Value, json};
use tracing::info;

use crate::decide::{self, LeaderState, Plan, Refusal, Target};
use crate::{COMPONENT, Error, Outcome, Settings, api_error};

/// Carries out `decision`; `config_cm` is the object it was made from (for Events).
pub async fn apply(
    kube: &Kube,
    s: &Settings,
    target: &Target,
    decision: Result<Plan, Refusal>,
    config_cm: Option<&ConfigMap>,
) -> Result<Outcome, Error> {
    let target_text = format!("{}:{}", target.host, target.port);
    match decision {
        Err(refusal) => Err(refuse(kube, s, refusal, config_cm, target_text).await),
        Ok(Plan::Unchanged { .. }) => Ok(Outcome::Unchanged {
            target: target.clone(),
        }),
        Ok(Plan::LeavePromoted { leader, role }) => {
            info!(%leader, %role, "cluster was promoted; leaving standby_cluster out (set PORT_PATCH_FORCE=true to override)");
            let message = format!(
                "port-patch did not add standby_cluster ({target_text}): the cluster was promoted, leader {leader} is {role}"
            );
            event(
                kube,
                config_cm,
                "Normal",
                "StandbyClusterNotRestored",
                message,
                "Skip",
            )
            .await;
            Ok(Outcome::LeftPromoted { leader, role })
        }
        Ok(Plan::Create { config }) => {
            let created = create(kube, s, &config).await?;
            let message =
                format!("port-patch created this ConfigMap with standby_cluster {target_text}");
            event(
                kube,
                Some(&created),
                "Normal",
                "StandbyClusterConfigured",
                message,
                "Create",
            )
            .await;
            Ok(Outcome::Created {
                target: target.clone(),
            })
        }
        Ok(Plan::Update {
            resource_version,
            config,
            before,
        }) => {
            let updated = compare_and_set(kube, s, &resource_version, &config).await?;
            let message = format!(
                "port-patch set standby_cluster to {target_text} (was {})",
                decide::describe_standby(before.as_ref())
            );
            event(
                kube,
                Some(&updated),
                "Normal",
                "StandbyClusterConfigured",
                message,
                "Update",
            )
            .await;
            Ok(Outcome::Updated {
                target: target.clone(),
                before,
                resource_version: updated.metadata.resource_version.unwrap_or_default(),
            })
        }
    }
}

/// The error for a refusal (the object is left untouched), with a Warning Event where useful.
async fn refuse(
    kube: &Kube,
    s: &Settings,
    refusal: Refusal,
    config_cm: Option<&ConfigMap>,
    target: String,
) -> Error {
    let (namespace, name) = (kube.namespace.clone(), s.config_map.clone());
    match refusal {
        Refusal::Malformed(reason) => {
            let message = format!("port-patch left this ConfigMap untouched: {reason}");
            event(
                kube,
                config_cm,
                "Warning",
                "MalformedDynamicConfig",
                message,
                "Validate",
            )
            .await;
            Error::Malformed {
                namespace,
                name,
                reason,
            }
        }
        Refusal::NotStandbyUnconfirmed { leader } => Error::NotStandbyUnconfirmed {
            namespace,
            name,
            leader: match leader {
                None => "no leader holds the lock".into(),
                Some(LeaderState { member, role: None }) => {
                    format!("leader {member} reports no role")
                }
                Some(LeaderState {
                    member,
                    role: Some(r),
                }) => format!("leader {member} is {r}"),
            },
            target,
        },
        Refusal::PromotedSite { record } => {
            let message = format!(
                "port-patch did not add standby_cluster ({target}): this site was promoted at {} \
                 (set portPatch.demotePromotedSite=true for a deliberate failback)",
                record.confirmed_at
            );
            event(
                kube,
                config_cm,
                "Warning",
                "PromotedSiteNotDemoted",
                message,
                "Refuse",
            )
            .await;
            Error::PromotedSite {
                namespace,
                name,
                record: s.promotion_record_configmap.clone(),
                promoted_at: record.confirmed_at,
                target,
            }
        }
    }
}

/// Merge PATCH with `resourceVersion` in the body: a concurrent writer makes it a 409, which the
/// run answers by observing again.
async fn compare_and_set(
    kube: &Kube,
    s: &Settings,
    resource_version: &str,
    config: &Map<String, Value>,
) -> Result<ConfigMap, Error> {
    let patch = json!({
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": { CONFIG_ANNOTATION: dynamic_config::render(config) },
        }
    });
    let pp = PatchParams {
        field_manager: Some(COMPONENT.into()),
        ..PatchParams::default()
    };
    kube.config_maps()
        .patch(&s.config_map, &pp, &Patch::Merge(&patch))
        .await
        .map_err(api_error(
            "updating",
            "ConfigMap",
            &kube.namespace,
            &s.config_map,
        ))
}

async fn create(
    kube: &Kube,
    s: &Settings,
    config: &Map<String, Value>,
) -> Result<ConfigMap, Error> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(s.config_map.clone()),
            namespace: Some(kube.namespace.clone()),
            labels: Some(s.labels.clone()),
            annotations: Some(BTreeMap::from([(
                CONFIG_ANNOTATION.to_string(),
                dynamic_config::render(config),
            )])),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    let pp = PostParams {
        field_manager: Some(COMPONENT.into()),
        ..PostParams::default()
    };
    // A 409 here means someone (Patroni, Helm) created it first: the retry re-observes it.
    kube.config_maps().create(&pp, &cm).await.map_err(api_error(
        "creating",
        "ConfigMap",
        &kube.namespace,
        &s.config_map,
    ))
}

/// An Event on `object` (if there is one), bounded by the request timeout; never fails the run.
async fn event(
    kube: &Kube,
    object: Option<&ConfigMap>,
    type_: &'static str,
    reason: &'static str,
    message: String,
    action: &'static str,
) {
    if let Some(cm) = object {
        let spec = EventSpec {
            type_,
            reason,
            message,
            action,
        };
        kube.event(cm, &spec, COMPONENT).await;
    }
}
