//! Every Kubernetes API call of the plugin: one client per site (its own kubeconfig context),
//! observing a site, and the few writes (hold annotation, dynamic config by compare-and-set,
//! the switchover record).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Resource};
use serde_json::{Map, Value, json};

use crate::config::{HostMode, Site};
use crate::error::{Error, hint, is_status};
use crate::model::{self, SiteObs, StoredProgress};
use crate::progress::{self, PROGRESS_KEY, Progress};
use pgdr_contract::slot::{FollowTarget, SlotName};

/// How many times a compare-and-set is retried after a 409 before giving up.
const CAS_ATTEMPTS: u32 = 5;

/// A connected site.
#[derive(Clone)]
pub struct SiteClient {
    pub site: Site,
    pub client: Client,
    pub namespace: String,
}

/// Builds the client of one site from its kubeconfig context. `timeout` bounds every request.
pub async fn connect(site: &Site, timeout: Duration) -> Result<SiteClient, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let context = site.context.clone().unwrap_or_else(|| "(current)".into());
    let fail = |reason: String| Error::Kubeconfig {
        site: site.name.clone(),
        context: context.clone(),
        reason,
    };
    let kubeconfig = match &site.kubeconfig {
        Some(path) => {
            let path = expand_home(path);
            Kubeconfig::read_from(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?
        }
        None => Kubeconfig::read().map_err(|e| fail(e.to_string()))?,
    };
    let options = KubeConfigOptions {
        context: site.context.clone(),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| fail(e.to_string()))?;
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // kube's own retries (up to 15 tries of 429/503/504, backing off towards minutes) would keep
    // a person waiting on a failing API server far past `--timeout` (chaos: a plugin run against
    // a site answering 503 took six minutes to say it could not read it). One try per read; the
    // waits and compare-and-set loops above retry within their own budgets.
    config.default_retry = false;
    let namespace = site
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(|e| fail(e.to_string()))?;
    Ok(SiteClient {
        site: site.clone(),
        client,
        namespace,
    })
}

/// `~/...` in the config file means the user's home, as in a shell.
fn expand_home(path: &std::path::Path) -> std::path::PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => path.to_path_buf(),
    }
}

impl SiteClient {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn api_err(&self, action: &'static str, object: &str, source: kube::Error) -> Error {
        Error::Api {
            site: self.site.name.clone(),
            action,
            object: format!("{}/{object}", self.namespace),
            hint: hint(&source),
            source: Box::new(source),
        }
    }

    async fn get_opt<K>(&self, name: &str) -> Result<Option<K>, Error>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .get_opt(name)
            .await
            .map_err(|e| self.api_err("reading", name, e))
    }

    /// Everything `status` and the switchover need from this site. API failures on Patroni's
    /// objects make the whole site unreadable (`error`); the agent's, tunnel's and switchover
    /// objects are optional.
    pub async fn observe(&self) -> SiteObs {
        let mut obs = SiteObs {
            site: self.site.name.clone(),
            ..SiteObs::default()
        };
        let core = async {
            let config = self.get_opt::<ConfigMap>(&self.site.config_map()).await?;
            let leader = self.get_opt::<ConfigMap>(&self.site.leader_map()).await?;
            let pods = self
                .api::<Pod>()
                .list(&ListParams::default().labels(&self.site.pod_selector()))
                .await
                .map_err(|e| self.api_err("listing pods", &self.site.pod_selector(), e))?;
            Ok::<_, Error>((config, leader, pods.items))
        };
        match core.await {
            Err(e) => {
                obs.error = Some(e.to_string());
                return obs;
            }
            Ok((config, leader, pods)) => {
                obs.config = config.as_ref().map(model::config_from);
                obs.leader = leader.as_ref().map(model::leader_from);
                let mut members: Vec<_> = pods.iter().map(model::member_from).collect();
                members.sort_by(|a, b| a.name.cmp(&b.name));
                obs.members = members;
            }
        }
        let state = self.get_opt::<ConfigMap>(&self.site.state_map()).await;
        let cronjob = self.get_opt::<CronJob>(&self.site.agent_cronjob()).await;
        if let Err(e) = &cronjob {
            tracing::debug!(site = %self.site.name, error = %e, "failover CronJob not readable");
        }
        match state {
            Ok(state) => {
                obs.agent = model::agent_from(state.as_ref(), cronjob.ok().flatten().as_ref())
            }
            Err(e) => obs.agent.state_problem = Some(e.to_string()),
        }
        if let Ok(Some(svc)) = self.get_opt::<Service>(&self.site.tunnel_service).await {
            obs.tunnel = Some(model::tunnel_from(&svc));
        }
        match self.get_opt::<ConfigMap>(&self.site.switchover_map()).await {
            Ok(Some(cm)) => {
                let text = cm.data.as_ref().and_then(|d| d.get(PROGRESS_KEY));
                // Kept even without a record: its resourceVersion is what the next write
                // compares against.
                obs.switchover = Some(StoredProgress {
                    resource_version: cm.metadata.resource_version.clone().unwrap_or_default(),
                    progress: text.map_or_else(
                        || Err(format!("the ConfigMap has no '{PROGRESS_KEY}' key")),
                        |t| progress::parse(t),
                    ),
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(site = %self.site.name, error = %e, "switchover record not readable")
            }
        }
        obs
    }

    /// The failover agent's latest run: the newest Job its CronJob owns (`None`: none kept).
    pub async fn latest_agent_job(&self) -> Result<Option<String>, Error> {
        let cronjob = self.site.agent_cronjob();
        let jobs = self
            .api::<Job>()
            .list(&ListParams::default())
            .await
            .map_err(|e| self.api_err("listing Jobs", &cronjob, e))?;
        let owned = |j: &Job| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "CronJob" && o.name == cronjob)
        };
        Ok(jobs
            .items
            .into_iter()
            .filter(owned)
            .filter_map(|j| {
                let at = j.metadata.creation_timestamp.as_ref().map(|t| t.0);
                j.metadata.name.map(|n| (at, n))
            })
            .max()
            .map(|(_, name)| name))
    }

    /// Sets or removes the hold annotation on the agent's state ConfigMap. `Ok(false)`: this
    /// site runs no agent (no state ConfigMap), so there is nothing to hold.
    pub async fn set_hold(&self, hold: bool) -> Result<bool, Error> {
        let name = self.site.state_map();
        if self.get_opt::<ConfigMap>(&name).await?.is_none() {
            return Ok(false);
        }
        let value = if hold { json!("true") } else { Value::Null };
        let patch = json!({"metadata": {"annotations": {model::HOLD_ANNOTATION: value}}});
        self.api::<ConfigMap>()
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| self.api_err("annotating", &name, e))?;
        Ok(true)
    }

    /// Where `standby_cluster` on this site must point: the peer through the tunnel Service,
    /// streaming from `slot` (the one slot between the sites).
    pub async fn standby_target(&self, slot: &SlotName) -> Result<FollowTarget, Error> {
        let name = &self.site.tunnel_service;
        let tunnel_err = |reason: &str| Error::Tunnel {
            site: self.site.name.clone(),
            service: name.clone(),
            reason: reason.to_string(),
        };
        let svc = self
            .get_opt::<Service>(name)
            .await?
            .ok_or_else(|| tunnel_err("does not exist"))?;
        let t = model::tunnel_from(&svc);
        let port = t.port.ok_or_else(|| tunnel_err("has no usable port"))?;
        let host = match self.site.tunnel_host_mode {
            HostMode::Dns => format!("{name}.{}.svc", self.namespace),
            HostMode::ClusterIp => t.cluster_ip.ok_or_else(|| tunnel_err("has no ClusterIP"))?,
        };
        Ok(FollowTarget {
            host,
            port,
            slot: slot.clone(),
        })
    }

    /// Compare-and-set of Patroni's dynamic config: read `<scope>-config`, apply `edit`, write
    /// it back only if its resourceVersion is unchanged (409: read again). Every key `edit`
    /// keeps is kept. Returns whether anything changed.
    pub async fn edit_config(
        &self,
        edit: impl Fn(&Map<String, Value>) -> Map<String, Value>,
    ) -> Result<bool, Error> {
        self.try_edit_config(|m| Ok(edit(m))).await
    }

    /// Like [`Self::edit_config`] with an edit that may refuse (checked against the very
    /// version it would replace); a refusal leaves the object untouched.
    pub async fn try_edit_config(
        &self,
        edit: impl Fn(&Map<String, Value>) -> Result<Map<String, Value>, crate::plan::Refusal>,
    ) -> Result<bool, Error> {
        let name = self.site.config_map();
        for attempt in 1..=CAS_ATTEMPTS {
            let cm = self
                .get_opt::<ConfigMap>(&name)
                .await?
                .ok_or_else(|| Error::Missing {
                    site: self.site.name.clone(),
                    object: name.clone(),
                    what: "Patroni has not bootstrapped this site (check --fullname/--scope)",
                })?;
            let observed = model::config_from(&cm);
            let current = observed.config.map_err(|reason| Error::Malformed {
                site: self.site.name.clone(),
                object: name.clone(),
                reason,
            })?;
            let wanted = edit(&current).map_err(Error::Refused)?;
            if wanted == current {
                return Ok(false);
            }
            let text = serde_json::to_string(&wanted).expect("a JSON map serializes");
            let patch = json!({"metadata": {
                "resourceVersion": observed.resource_version,
                "annotations": {"config": text},
            }});
            match self
                .api::<ConfigMap>()
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) if is_status(&e, 409) => {
                    tracing::info!(site = %self.site.name, object = %name, attempt, "config changed concurrently; reading it again");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(e) => return Err(self.api_err("updating", &name, e)),
            }
        }
        Err(Error::Contention {
            site: self.site.name.clone(),
            object: name,
            attempts: CAS_ATTEMPTS,
        })
    }

    /// Writes the switchover record. With `expected = Some(rv)` only over that version, with
    /// `Some("")` only if the ConfigMap does not exist yet; `None` writes unconditionally (the
    /// mirror copy). `Ok(false)`: someone else wrote first.
    pub async fn write_progress(
        &self,
        p: &Progress,
        expected: Option<&str>,
    ) -> Result<bool, Error> {
        let name = self.site.switchover_map();
        let api = self.api::<ConfigMap>();
        let text = progress::render(p);
        let rv = match expected {
            Some(rv) => Some(rv.to_string()),
            None => self
                .get_opt::<ConfigMap>(&name)
                .await?
                .map(|cm| cm.metadata.resource_version.unwrap_or_default()),
        };
        match rv.as_deref() {
            None | Some("") => {
                let cm = ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(BTreeMap::from([
                            (
                                "app.kubernetes.io/part-of".to_string(),
                                "patroni-dr".to_string(),
                            ),
                            (
                                "app.kubernetes.io/component".to_string(),
                                "switchover".to_string(),
                            ),
                        ])),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([(PROGRESS_KEY.to_string(), text)])),
                    ..Default::default()
                };
                match api.create(&PostParams::default(), &cm).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_status(&e, 409) => Ok(false),
                    Err(e) => Err(self.api_err("creating", &name, e)),
                }
            }
            Some(rv) => {
                let mut patch = json!({"data": {PROGRESS_KEY: text}});
                if expected.is_some() {
                    patch["metadata"] = json!({"resourceVersion": rv});
                }
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if is_status(&e, 409) || is_status(&e, 404) => Ok(false),
                    Err(e) => Err(self.api_err("updating", &name, e)),
                }
            }
        }
    }
}
