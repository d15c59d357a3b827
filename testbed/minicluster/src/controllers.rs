//! Workload controllers: StatefulSet → Pods (+ PVCs), Job → Pod, CronJob → Jobs, and the garbage
//! collector for owned objects. Each is a level-triggered pass over the current objects.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolumeClaim, PersistentVolumeClaimStatus,
    PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};

use crate::api::{self, Api};
use crate::cron::Schedule;
use crate::error::Result;
use crate::node::Node;
use crate::objects::{self as o, phase, pod_ready};

/// How CronJob schedules are timed in a drill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CronTiming {
    /// Schedules run on the wall clock.
    Real,
    /// Time passes `factor` times faster for schedules (60: `* * * * *` fires every second).
    Compressed(f64),
    /// Every CronJob fires every given interval, whatever its schedule.
    Every(Duration),
}

/// Timings of the emulated controllers.
#[derive(Debug, Clone)]
pub struct ControllerTimings {
    pub cron: CronTiming,
    /// Delay before a failed Job pod is replaced (Kubernetes: 10 s doubling).
    pub job_retry_delay: Duration,
}

impl Default for ControllerTimings {
    fn default() -> Self {
        ControllerTimings {
            cron: CronTiming::Real,
            job_retry_delay: Duration::from_secs(1),
        }
    }
}

fn hash(v: &impl serde::Serialize) -> String {
    // FNV-1a over the canonical JSON: stable across runs, unlike std's RandomState.
    let text = serde_json::to_string(v).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

fn owned_by<'a, T>(items: &'a [T], owner: &ObjectMeta, meta: fn(&T) -> &ObjectMeta) -> Vec<&'a T> {
    let uid = o::uid(owner);
    items
        .iter()
        .filter(|p| o::controller_uid(meta(p)) == Some(uid))
        .collect()
}

fn pod_meta(p: &Pod) -> &ObjectMeta {
    &p.metadata
}

fn job_meta(j: &Job) -> &ObjectMeta {
    &j.metadata
}

/// Whether a Job has a True condition of type `t`.
fn job_has(j: &Job, t: &str) -> bool {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
}

/// Builds a Pod from a template.
fn pod_from_template(
    template: &PodTemplateSpec,
    name: &str,
    owner_ref: OwnerReference,
    extra_labels: &[(&str, String)],
) -> Pod {
    let mut meta = template.metadata.clone().unwrap_or_default();
    meta.name = Some(name.into());
    meta.owner_references = Some(vec![owner_ref]);
    let labels = meta.labels.get_or_insert_with(Default::default);
    for (k, v) in extra_labels {
        labels.insert(k.to_string(), v.clone());
    }
    Pod {
        metadata: meta,
        spec: template.spec.clone(),
        status: None,
    }
}

/// Writes `status` (a merge patch of the status subresource) unless it would change nothing.
fn patch_status_if_changed(
    api: &Api,
    kind: api::Kind,
    meta: &ObjectMeta,
    current: Option<&impl serde::Serialize>,
    status: &impl serde::Serialize,
) -> Result<()> {
    let status = serde_json::to_value(status).unwrap_or_default();
    let current = current.and_then(|c| serde_json::to_value(c).ok());
    if current.as_ref() != Some(&merge_view(current.as_ref(), &status)) {
        api.patch_status(kind, o::namespace(meta), o::name(meta), &status)?;
    }
    Ok(())
}

pub(crate) struct Controllers {
    api: Api,
    node: Arc<Node>,
    timings: ControllerTimings,
    /// CronJob uid → virtual time of the last fire (or of creation).
    cron_last: HashMap<String, jiff::Timestamp>,
    epoch: (Instant, jiff::Timestamp),
    /// Job uid → when its last pod failed (retry delay).
    job_failed_at: HashMap<String, Instant>,
}

impl Controllers {
    pub fn new(api: Api, node: Arc<Node>, timings: ControllerTimings) -> Self {
        Controllers {
            api,
            node,
            timings,
            cron_last: HashMap::new(),
            epoch: (Instant::now(), jiff::Timestamp::now()),
            job_failed_at: HashMap::new(),
        }
    }

    pub fn pass(&mut self) -> Result<()> {
        let pods: Vec<Pod> = self.api.list_as(api::PODS, None)?;
        self.statefulsets(&pods)?;
        self.jobs(&pods)?;
        self.cronjobs()?;
        self.collect_garbage(&pods)?;
        Ok(())
    }

    // ---- StatefulSet ----------------------------------------------------------------------

    fn statefulsets(&mut self, pods: &[Pod]) -> Result<()> {
        for sts in self.api.list_as::<StatefulSet>(api::STATEFULSETS, None)? {
            if o::terminating(&sts.metadata) {
                continue;
            }
            self.statefulset(&sts, pods)?;
        }
        Ok(())
    }

    fn statefulset(&self, sts: &StatefulSet, pods: &[Pod]) -> Result<()> {
        let meta = &sts.metadata;
        let ns = o::namespace(meta);
        let name = o::name(meta);
        let spec = sts.spec.clone().unwrap_or_default();
        let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
        let template = &spec.template;
        let revision = format!("{name}-{}", hash(template));
        let ordered = spec.pod_management_policy.as_deref() != Some("Parallel");
        let owned = owned_by(pods, meta, pod_meta);
        let by_name: HashMap<&str, &Pod> =
            owned.iter().map(|p| (o::name(&p.metadata), *p)).collect();
        let service = spec.service_name.as_deref().unwrap_or("");

        // Scale down: highest ordinals first.
        for p in &owned {
            let ord = o::ordinal(o::name(&p.metadata));
            if ord.is_none_or(|i| i >= replicas) && !o::terminating(&p.metadata) {
                self.api.delete(api::PODS, ns, o::name(&p.metadata))?;
            }
        }
        // Create missing ordinals (OrderedReady: only once every lower one is ready).
        for i in 0..replicas {
            let pname = format!("{name}-{i}");
            match by_name.get(pname.as_str()) {
                Some(p) => {
                    if ordered && !pod_ready(p) {
                        break;
                    }
                    // A finished pod of a StatefulSet is replaced, as the controller does.
                    if matches!(phase(p), "Succeeded" | "Failed") {
                        self.api.delete(api::PODS, ns, &pname)?;
                    }
                }
                None => {
                    // The old pod of this name is gone from the API but not yet from the node.
                    if self.node.holds(ns, &pname) {
                        if ordered {
                            break;
                        }
                        continue;
                    }
                    let mut pod = pod_from_template(
                        template,
                        &pname,
                        o::owner_ref::<StatefulSet>(meta),
                        &[
                            ("statefulset.kubernetes.io/pod-name", pname.clone()),
                            ("apps.kubernetes.io/pod-index", i.to_string()),
                            ("controller-revision-hash", revision.clone()),
                        ],
                    );
                    let pod_spec = pod.spec.get_or_insert_with(Default::default);
                    pod_spec.hostname = Some(pname.clone());
                    if !service.is_empty() {
                        pod_spec.subdomain = Some(service.into());
                    }
                    self.claims(sts, &pname, &mut pod)?;
                    self.api.create_as(api::PODS, ns, &pod)?;
                    if ordered {
                        break;
                    }
                }
            }
        }
        // Rolling update: replace one outdated pod at a time, highest ordinal first, once all
        // are ready.
        let current: Vec<&Pod> = owned
            .iter()
            .copied()
            .filter(|p| !o::terminating(&p.metadata))
            .collect();
        let all_ready = current.len() == replicas && current.iter().all(|p| pod_ready(p));
        let outdated: Vec<&Pod> = current
            .iter()
            .copied()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("controller-revision-hash"))
                    != Some(&revision)
            })
            .collect();
        let on_delete = spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref())
            == Some("OnDelete");
        if all_ready
            && !on_delete
            && let Some(p) = outdated
                .iter()
                .max_by_key(|p| o::ordinal(o::name(&p.metadata)).unwrap_or(0))
        {
            self.api.delete(api::PODS, ns, o::name(&p.metadata))?;
        }
        let ready = current.iter().filter(|p| pod_ready(p)).count() as i32;
        let updated = (current.len() - outdated.len()) as i32;
        let status = StatefulSetStatus {
            observed_generation: Some(meta.generation.unwrap_or(1)),
            replicas: current.len() as i32,
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            current_replicas: Some(if outdated.is_empty() {
                current.len()
            } else {
                outdated.len()
            } as i32),
            updated_replicas: Some(updated),
            current_revision: Some(if outdated.is_empty() {
                revision.clone()
            } else {
                sts.status
                    .as_ref()
                    .and_then(|s| s.current_revision.clone())
                    .unwrap_or_else(|| revision.clone())
            }),
            update_revision: Some(revision),
            collision_count: Some(0),
            conditions: None,
        };
        patch_status_if_changed(
            &self.api,
            api::STATEFULSETS,
            meta,
            sts.status.as_ref(),
            &status,
        )
    }

    /// Creates the pod's PVCs from volumeClaimTemplates and adds them as volumes.
    fn claims(&self, sts: &StatefulSet, pod_name: &str, pod: &mut Pod) -> Result<()> {
        let ns = o::namespace(&sts.metadata);
        let templates = sts
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.clone())
            .unwrap_or_default();
        for t in templates {
            let tname = o::name(&t.metadata).to_string();
            let claim = format!("{tname}-{pod_name}");
            let mut meta = t.metadata.clone();
            meta.name = Some(claim.clone());
            let spec = t.spec.clone().unwrap_or_default();
            let pvc = PersistentVolumeClaim {
                metadata: meta,
                spec: Some(spec.clone()),
                status: None,
            };
            if self.api.create_as(api::PVCS, ns, &pvc)?.is_some() {
                let storage: Option<Quantity> = spec
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage").cloned());
                let status = PersistentVolumeClaimStatus {
                    phase: Some("Bound".into()),
                    access_modes: spec.access_modes.clone(),
                    capacity: storage.map(|s| [("storage".to_string(), s)].into()),
                    ..Default::default()
                };
                self.api.patch_status(
                    api::PVCS,
                    ns,
                    &claim,
                    &serde_json::to_value(status).unwrap_or_default(),
                )?;
            }
            let vols = pod
                .spec
                .get_or_insert_with(Default::default)
                .volumes
                .get_or_insert_with(Vec::new);
            vols.retain(|v| v.name != tname);
            vols.push(Volume {
                name: tname,
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim,
                    read_only: None,
                }),
                ..Default::default()
            });
        }
        Ok(())
    }

    // ---- Job ------------------------------------------------------------------------------

    fn jobs(&mut self, pods: &[Pod]) -> Result<()> {
        for job in self.api.list_as::<Job>(api::JOBS, None)? {
            if !o::terminating(&job.metadata) {
                self.job(&job, pods)?;
            }
        }
        Ok(())
    }

    fn job(&mut self, job: &Job, pods: &[Pod]) -> Result<()> {
        let meta = &job.metadata;
        let ns = o::namespace(meta);
        let name = o::name(meta);
        let uid = o::uid(meta);
        let spec = job.spec.clone().unwrap_or_default();
        let old = job.status.clone().unwrap_or_default();
        let finished = job_has(job, "Complete") || job_has(job, "Failed");
        let owned = owned_by(pods, meta, pod_meta);
        if finished {
            if let Some(ttl) = spec.ttl_seconds_after_finished {
                let done = old.completion_time.clone().or_else(|| {
                    old.conditions
                        .as_ref()
                        .and_then(|c| c.first())
                        .and_then(|c| c.last_transition_time.clone())
                });
                if done.is_some_and(|d| {
                    jiff::Timestamp::now().duration_since(d.0).as_secs() >= i64::from(ttl)
                }) {
                    self.api.delete(api::JOBS, ns, name)?;
                }
            }
            return Ok(());
        }
        let succeeded = owned.iter().filter(|p| phase(p) == "Succeeded").count();
        let failed = owned.iter().filter(|p| phase(p) == "Failed").count();
        let active = owned
            .iter()
            .filter(|p| !matches!(phase(p), "Succeeded" | "Failed") && !o::terminating(&p.metadata))
            .count();
        let backoff_limit = spec.backoff_limit.unwrap_or(6).max(0) as usize;
        let suspended = spec.suspend == Some(true);
        let start_time = old.start_time.clone().unwrap_or_else(o::now);
        let deadline_hit = spec.active_deadline_seconds.is_some_and(|d| {
            jiff::Timestamp::now()
                .duration_since(start_time.0)
                .as_secs()
                >= d
        });
        let now = o::now();
        let cond = |t: &str, reason: &str, msg: &str| JobCondition {
            type_: t.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(msg.into()),
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now.clone()),
        };
        let mut status = JobStatus {
            start_time: Some(start_time.clone()),
            active: Some(active as i32),
            succeeded: Some(succeeded as i32),
            failed: Some(failed as i32),
            ready: Some(owned.iter().filter(|p| pod_ready(p)).count() as i32),
            ..Default::default()
        };
        if succeeded >= 1 {
            let msg = "Reached expected number of succeeded pods";
            status.active = Some(0);
            status.completion_time = Some(now.clone());
            status.conditions = Some(vec![
                cond("SuccessCriteriaMet", "CompletionsReached", msg),
                cond("Complete", "CompletionsReached", msg),
            ]);
            self.job_failed_at.remove(uid);
        } else if failed > backoff_limit || deadline_hit {
            let (reason, msg) = if deadline_hit {
                (
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                )
            } else {
                (
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
            };
            for p in owned
                .iter()
                .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
            {
                self.api.delete(api::PODS, ns, o::name(&p.metadata))?;
            }
            status.active = Some(0);
            status.conditions = Some(vec![
                cond("FailureTarget", reason, msg),
                cond("Failed", reason, msg),
            ]);
            self.job_failed_at.remove(uid);
        } else if active == 0 && !suspended {
            let retry_ok = failed == 0
                || self
                    .job_failed_at
                    .entry(uid.to_string())
                    .or_insert_with(Instant::now)
                    .elapsed()
                    >= self.timings.job_retry_delay;
            if retry_ok {
                self.job_failed_at.remove(uid);
                let suffix: String = (0..5)
                    .map(|_| char::from(b"bcdfghjklmnpqrstvwxz2456789"[rand::random_range(0..27)]))
                    .collect();
                let pod = pod_from_template(
                    &spec.template,
                    &format!("{name}-{suffix}"),
                    o::owner_ref::<Job>(meta),
                    &[
                        ("job-name", name.to_string()),
                        ("batch.kubernetes.io/job-name", name.to_string()),
                        ("controller-uid", uid.to_string()),
                        ("batch.kubernetes.io/controller-uid", uid.to_string()),
                    ],
                );
                self.api.create_as(api::PODS, ns, &pod)?;
                status.active = Some(1);
            }
        }
        patch_status_if_changed(&self.api, api::JOBS, meta, job.status.as_ref(), &status)
    }

    // ---- CronJob --------------------------------------------------------------------------

    fn virtual_now(&self) -> jiff::Timestamp {
        let elapsed = self.epoch.0.elapsed();
        let scaled = match self.timings.cron {
            CronTiming::Compressed(f) => elapsed.mul_f64(f.max(0.0)),
            _ => elapsed,
        };
        self.epoch
            .1
            .checked_add(jiff::SignedDuration::try_from(scaled).unwrap_or_default())
            .unwrap_or(self.epoch.1)
    }

    fn cronjobs(&mut self) -> Result<()> {
        let jobs: Vec<Job> = self.api.list_as(api::JOBS, None)?;
        let now = self.virtual_now();
        let mut seen = HashSet::new();
        for cj in self.api.list_as::<CronJob>(api::CRONJOBS, None)? {
            seen.insert(o::uid(&cj.metadata).to_string());
            if !o::terminating(&cj.metadata) {
                self.cronjob(&cj, &jobs, now)?;
            }
        }
        self.cron_last.retain(|uid, _| seen.contains(uid));
        Ok(())
    }

    fn cronjob(&mut self, cj: &CronJob, jobs: &[Job], now: jiff::Timestamp) -> Result<()> {
        let meta = &cj.metadata;
        let ns = o::namespace(meta);
        let name = o::name(meta);
        let uid = o::uid(meta).to_string();
        let spec = cj.spec.clone().unwrap_or_default();
        let owned = owned_by(jobs, meta, job_meta);
        let active: Vec<&Job> = owned
            .iter()
            .copied()
            .filter(|j| !job_has(j, "Complete") && !job_has(j, "Failed"))
            .collect();
        // History limits: oldest finished Jobs beyond the limit go.
        for (kind, limit) in [
            ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
            ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
        ] {
            let limit = limit.max(0) as usize;
            let mut done: Vec<&Job> = owned.iter().copied().filter(|j| job_has(j, kind)).collect();
            done.sort_by_key(|j| j.metadata.creation_timestamp.clone());
            let excess = done.len().saturating_sub(limit);
            for j in &done[..excess] {
                self.api.delete(api::JOBS, ns, o::name(&j.metadata))?;
            }
        }
        let last = *self.cron_last.entry(uid.clone()).or_insert(now);
        let due = match self.timings.cron {
            CronTiming::Every(every) => {
                let next = last
                    .checked_add(jiff::SignedDuration::try_from(every).unwrap_or_default())
                    .unwrap_or(last);
                (next <= now).then_some(now)
            }
            _ => match Schedule::parse(&spec.schedule) {
                Ok(s) => s.next_after(last).filter(|t| *t <= now),
                Err(e) => {
                    tracing::warn!(cronjob = name, error = %e, "CronJob skipped");
                    None
                }
            },
        };
        let old = cj.status.clone().unwrap_or_default();
        let mut status = CronJobStatus {
            active: Some(
                active
                    .iter()
                    .map(|j| ObjectReference {
                        api_version: Some("batch/v1".into()),
                        kind: Some("Job".into()),
                        name: j.metadata.name.clone(),
                        namespace: Some(ns.into()),
                        uid: j.metadata.uid.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            last_schedule_time: old.last_schedule_time.clone(),
            last_successful_time: owned
                .iter()
                .filter(|j| job_has(j, "Complete"))
                .filter_map(|j| j.status.as_ref()?.completion_time.clone())
                .max(),
        };
        let suspended = spec.suspend == Some(true);
        if let Some(scheduled) = due {
            // A missed or skipped fire is not made up later (the next schedule after now).
            self.cron_last.insert(uid.clone(), scheduled);
            let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
            let create = if suspended {
                false
            } else if active.is_empty() {
                true
            } else {
                match policy {
                    "Forbid" => {
                        tracing::info!(
                            cronjob = name,
                            "previous Job still active; skipped (Forbid)"
                        );
                        false
                    }
                    "Replace" => {
                        for j in &active {
                            self.api.delete(api::JOBS, ns, o::name(&j.metadata))?;
                        }
                        true
                    }
                    _ => true,
                }
            };
            if create {
                let jt = spec.job_template.clone();
                let mut meta_j = jt.metadata.unwrap_or_default();
                // Kubernetes names Jobs by the scheduled minute; compressed time needs seconds.
                meta_j.name = Some(format!("{name}-{}", scheduled.as_second()));
                meta_j.owner_references = Some(vec![o::owner_ref::<CronJob>(meta)]);
                meta_j
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(
                        "batch.kubernetes.io/cronjob-scheduled-timestamp".into(),
                        scheduled.to_string(),
                    );
                let job = Job {
                    metadata: meta_j,
                    spec: jt.spec,
                    status: None,
                };
                self.api.create_as(api::JOBS, ns, &job)?;
                status.last_schedule_time = Some(o::now());
            }
        }
        patch_status_if_changed(&self.api, api::CRONJOBS, meta, cj.status.as_ref(), &status)
    }

    // ---- Garbage collection ---------------------------------------------------------------

    /// Deletes Pods and Jobs whose controlling owner is gone (background propagation).
    fn collect_garbage(&self, pods: &[Pod]) -> Result<()> {
        let mut owners: HashSet<String> = HashSet::new();
        for kind in [api::STATEFULSETS, api::JOBS, api::CRONJOBS] {
            for m in self.api.list_as::<Meta>(kind, None)? {
                owners.insert(o::uid(&m.metadata).to_string());
            }
        }
        let jobs: Vec<Job> = self.api.list_as(api::JOBS, None)?;
        let metas = pods
            .iter()
            .map(|p| (api::PODS, &p.metadata))
            .chain(jobs.iter().map(|j| (api::JOBS, &j.metadata)));
        for (kind, m) in metas {
            if let Some(owner) = o::controller_uid(m)
                && !owners.contains(owner)
                && !o::terminating(m)
            {
                self.api.delete(kind, o::namespace(m), o::name(m))?;
            }
        }
        Ok(())
    }
}

/// Any object, read for its metadata only.
#[derive(serde::Deserialize)]
struct Meta {
    #[serde(default)]
    metadata: ObjectMeta,
}

/// `current` with `patch`'s keys overlaid (what a merge patch would produce for flat status
/// maps), to skip writes that would change nothing.
fn merge_view(current: Option<&Value>, patch: &Value) -> Value {
    let mut out = current.cloned().unwrap_or_else(|| json!({}));
    if let (Some(o), Some(p)) = (out.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            o.insert(k.clone(), v.clone());
        }
    }
    out
}
