//! Workload controllers: StatefulSet → Pods (+ PVCs), Job → Pod, CronJob → Jobs, and the garbage
//! collector for owned objects. Each is a level-triggered pass over the current objects.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{self, Api, obj};
use crate::cron::Schedule;
use crate::error::Result;
use crate::kubelet::Node;

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

fn hash(v: &Value) -> String {
    // FNV-1a over the canonical JSON: stable across runs, unlike std's RandomState.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in v.to_string().bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:010x}", h & 0xff_ffff_ffff)
}

fn pod_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn phase(p: &Value) -> &str {
    obj::str_at(p, "/status/phase").unwrap_or("Pending")
}

fn owned_by<'a>(items: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    let uid = obj::uid(owner);
    items
        .iter()
        .filter(|p| obj::controller_uid(p) == Some(uid))
        .collect()
}

/// Builds a Pod from a template.
fn pod_from_template(
    template: &Value,
    name: &str,
    owner_ref: Value,
    extra_labels: &[(&str, String)],
) -> Value {
    let mut meta = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    meta["name"] = json!(name);
    meta["ownerReferences"] = json!([owner_ref]);
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta["labels"] = json!({});
    }
    for (k, v) in extra_labels {
        meta["labels"][*k] = json!(v);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
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
        let pods = self.api.list(api::PODS, None)?;
        self.statefulsets(&pods)?;
        self.jobs(&pods)?;
        self.cronjobs()?;
        self.collect_garbage(&pods)?;
        Ok(())
    }

    // ---- StatefulSet ----------------------------------------------------------------------

    fn statefulsets(&mut self, pods: &[Value]) -> Result<()> {
        for sts in self.api.list(api::STATEFULSETS, None)? {
            if obj::terminating(&sts) {
                continue;
            }
            self.statefulset(&sts, pods)?;
        }
        Ok(())
    }

    fn statefulset(&self, sts: &Value, pods: &[Value]) -> Result<()> {
        let ns = obj::namespace(sts);
        let name = obj::name(sts);
        let replicas = obj::i64_at(sts, "/spec/replicas").unwrap_or(1).max(0) as usize;
        let template = sts.pointer("/spec/template").cloned().unwrap_or_default();
        let revision = format!("{name}-{}", hash(&template));
        let ordered = obj::str_at(sts, "/spec/podManagementPolicy") != Some("Parallel");
        let owned = owned_by(pods, sts);
        let by_name: HashMap<&str, &Value> = owned.iter().map(|p| (obj::name(p), *p)).collect();
        let service = obj::str_at(sts, "/spec/serviceName").unwrap_or("");

        // Scale down: highest ordinals first.
        for p in &owned {
            let ord = obj::name(p)
                .rsplit('-')
                .next()
                .and_then(|o| o.parse::<usize>().ok());
            if ord.is_none_or(|o| o >= replicas) && !obj::terminating(p) {
                self.api.delete(api::PODS, ns, obj::name(p))?;
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
                    if self.node.is_stopping(ns, &pname) {
                        if ordered {
                            break;
                        }
                        continue;
                    }
                    let mut pod = pod_from_template(
                        &template,
                        &pname,
                        obj::owner_ref(sts, "apps/v1", "StatefulSet"),
                        &[
                            ("statefulset.kubernetes.io/pod-name", pname.clone()),
                            ("apps.kubernetes.io/pod-index", i.to_string()),
                            ("controller-revision-hash", revision.clone()),
                        ],
                    );
                    pod["spec"]["hostname"] = json!(pname);
                    if !service.is_empty() {
                        pod["spec"]["subdomain"] = json!(service);
                    }
                    self.claims(sts, &pname, &mut pod)?;
                    self.api.create(api::PODS, ns, &pod)?;
                    if ordered {
                        break;
                    }
                }
            }
        }
        // Rolling update: replace one outdated pod at a time, highest ordinal first, once all
        // are ready.
        let current: Vec<&&Value> = owned.iter().filter(|p| !obj::terminating(p)).collect();
        let all_ready = current.len() == replicas && current.iter().all(|p| pod_ready(p));
        let outdated: Vec<&&Value> = current
            .iter()
            .filter(|p| {
                obj::str_at(p, "/metadata/labels/controller-revision-hash") != Some(&revision)
            })
            .copied()
            .collect();
        let on_delete = obj::str_at(sts, "/spec/updateStrategy/type") == Some("OnDelete");
        let ordinal = |p: &Value| {
            obj::name(p)
                .rsplit('-')
                .next()
                .and_then(|o| o.parse::<usize>().ok())
                .unwrap_or(0)
        };
        if all_ready
            && !on_delete
            && let Some(p) = outdated.iter().max_by_key(|p| ordinal(p))
        {
            self.api.delete(api::PODS, ns, obj::name(p))?;
        }
        let ready = current.iter().filter(|p| pod_ready(p)).count();
        let updated = current.len() - outdated.len();
        let status = json!({
            "observedGeneration": obj::i64_at(sts, "/metadata/generation").unwrap_or(1),
            "replicas": current.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": if outdated.is_empty() { current.len() } else { outdated.len() },
            "updatedReplicas": updated,
            "currentRevision": if outdated.is_empty() { revision.clone() } else {
                obj::str_at(sts, "/status/currentRevision").unwrap_or(&revision).to_string() },
            "updateRevision": revision,
            "collisionCount": 0,
        });
        if sts.get("status") != Some(&merge_view(sts.get("status"), &status)) {
            self.api
                .patch_status(api::STATEFULSETS, ns, name, &status)?;
        }
        Ok(())
    }

    /// Creates the pod's PVCs from volumeClaimTemplates and adds them as volumes.
    fn claims(&self, sts: &Value, pod_name: &str, pod: &mut Value) -> Result<()> {
        let ns = obj::namespace(sts);
        for t in sts
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let tname = obj::name(t);
            let claim = format!("{tname}-{pod_name}");
            let mut meta = t.get("metadata").cloned().unwrap_or_else(|| json!({}));
            meta["name"] = json!(claim);
            let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": meta, "spec": t.get("spec").cloned().unwrap_or_default()});
            if self.api.create(api::PVCS, ns, &pvc)?.is_some() {
                self.api.patch_status(
                    api::PVCS,
                    ns,
                    &claim,
                    &json!({"phase": "Bound",
                    "accessModes": t.pointer("/spec/accessModes"),
                    "capacity": {"storage": t.pointer("/spec/resources/requests/storage")}}),
                )?;
            }
            let vols = pod["spec"]
                .as_object_mut()
                .expect("pod spec is an object")
                .entry("volumes")
                .or_insert_with(|| json!([]));
            if let Some(v) = vols.as_array_mut() {
                v.retain(|v| v["name"] != json!(tname));
                v.push(json!({"name": tname, "persistentVolumeClaim": {"claimName": claim}}));
            }
        }
        Ok(())
    }

    // ---- Job ------------------------------------------------------------------------------

    fn jobs(&mut self, pods: &[Value]) -> Result<()> {
        for job in self.api.list(api::JOBS, None)? {
            if !obj::terminating(&job) {
                self.job(&job, pods)?;
            }
        }
        Ok(())
    }

    fn job(&mut self, job: &Value, pods: &[Value]) -> Result<()> {
        let ns = obj::namespace(job);
        let name = obj::name(job);
        let uid = obj::uid(job);
        let finished = job
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True");
        let owned = owned_by(pods, job);
        if finished {
            if let Some(ttl) = obj::i64_at(job, "/spec/ttlSecondsAfterFinished") {
                let done = obj::str_at(job, "/status/completionTime")
                    .or(obj::str_at(job, "/status/conditions/0/lastTransitionTime"))
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok());
                if done.is_some_and(|d| jiff::Timestamp::now().duration_since(d).as_secs() >= ttl) {
                    self.api.delete(api::JOBS, ns, name)?;
                }
            }
            return Ok(());
        }
        let succeeded = owned.iter().filter(|p| phase(p) == "Succeeded").count();
        let failed = owned.iter().filter(|p| phase(p) == "Failed").count();
        let active = owned
            .iter()
            .filter(|p| !matches!(phase(p), "Succeeded" | "Failed") && !obj::terminating(p))
            .count();
        let backoff_limit = obj::i64_at(job, "/spec/backoffLimit").unwrap_or(6).max(0) as usize;
        let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        let start_time = obj::str_at(job, "/status/startTime")
            .map(str::to_string)
            .unwrap_or_else(obj::now);
        let deadline_hit = obj::i64_at(job, "/spec/activeDeadlineSeconds").is_some_and(|d| {
            start_time
                .parse::<jiff::Timestamp>()
                .is_ok_and(|s| jiff::Timestamp::now().duration_since(s).as_secs() >= d)
        });
        let now = obj::now();
        let cond = |t: &str, reason: &str, msg: &str| {
            json!({"type": t, "status": "True", "reason": reason, "message": msg,
                   "lastProbeTime": now, "lastTransitionTime": now})
        };
        let mut status = json!({
            "startTime": start_time, "active": active, "succeeded": succeeded, "failed": failed,
            "ready": owned.iter().filter(|p| pod_ready(p)).count(),
        });
        if succeeded >= 1 {
            status["active"] = json!(0);
            status["completionTime"] = json!(now);
            status["conditions"] = json!([
                cond(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                ),
                cond(
                    "Complete",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                ),
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
                self.api.delete(api::PODS, ns, obj::name(p))?;
            }
            status["active"] = json!(0);
            status["conditions"] = json!([
                cond("FailureTarget", reason, msg),
                cond("Failed", reason, msg)
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
                let template = job.pointer("/spec/template").cloned().unwrap_or_default();
                let suffix: String = (0..5)
                    .map(|_| char::from(b"bcdfghjklmnpqrstvwxz2456789"[rand::random_range(0..27)]))
                    .collect();
                let pod = pod_from_template(
                    &template,
                    &format!("{name}-{suffix}"),
                    obj::owner_ref(job, "batch/v1", "Job"),
                    &[
                        ("job-name", name.to_string()),
                        ("batch.kubernetes.io/job-name", name.to_string()),
                        ("controller-uid", uid.to_string()),
                        ("batch.kubernetes.io/controller-uid", uid.to_string()),
                    ],
                );
                self.api.create(api::PODS, ns, &pod)?;
                status["active"] = json!(1);
            }
        }
        if job.get("status") != Some(&merge_view(job.get("status"), &status)) {
            self.api.patch_status(api::JOBS, ns, name, &status)?;
        }
        Ok(())
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
        let jobs = self.api.list(api::JOBS, None)?;
        let now = self.virtual_now();
        let mut seen = HashSet::new();
        for cj in self.api.list(api::CRONJOBS, None)? {
            seen.insert(obj::uid(&cj).to_string());
            if !obj::terminating(&cj) {
                self.cronjob(&cj, &jobs, now)?;
            }
        }
        self.cron_last.retain(|uid, _| seen.contains(uid));
        Ok(())
    }

    fn cronjob(&mut self, cj: &Value, jobs: &[Value], now: jiff::Timestamp) -> Result<()> {
        let ns = obj::namespace(cj);
        let name = obj::name(cj);
        let uid = obj::uid(cj).to_string();
        let owned = owned_by(jobs, cj);
        let finished = |j: &Value, t: &str| {
            j.pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c["type"] == t && c["status"] == "True")
        };
        let active: Vec<&&Value> = owned
            .iter()
            .filter(|j| !finished(j, "Complete") && !finished(j, "Failed"))
            .collect();
        // History limits: oldest finished Jobs beyond the limit go.
        for (kind, default, field) in [
            ("Complete", 3, "successfulJobsHistoryLimit"),
            ("Failed", 1, "failedJobsHistoryLimit"),
        ] {
            let limit = obj::i64_at(cj, &format!("/spec/{field}"))
                .unwrap_or(default)
                .max(0) as usize;
            let mut done: Vec<&&Value> = owned.iter().filter(|j| finished(j, kind)).collect();
            done.sort_by_key(|j| {
                obj::str_at(j, "/metadata/creationTimestamp")
                    .unwrap_or("")
                    .to_string()
            });
            let excess = done.len().saturating_sub(limit);
            for j in &done[..excess] {
                self.api.delete(api::JOBS, ns, obj::name(j))?;
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
            _ => {
                let schedule = obj::str_at(cj, "/spec/schedule").unwrap_or("");
                match Schedule::parse(schedule) {
                    Ok(s) => s.next_after(last).filter(|t| *t <= now),
                    Err(e) => {
                        tracing::warn!(cronjob = name, error = %e, "CronJob skipped");
                        None
                    }
                }
            }
        };
        let mut status = json!({
            "active": active.iter().map(|j| json!({"apiVersion": "batch/v1", "kind": "Job",
                "name": obj::name(j), "namespace": ns, "uid": obj::uid(j)})).collect::<Vec<_>>(),
        });
        if let Some(t) = owned
            .iter()
            .filter(|j| finished(j, "Complete"))
            .filter_map(|j| obj::str_at(j, "/status/completionTime"))
            .max()
        {
            status["lastSuccessfulTime"] = json!(t);
        }
        if let Some(t) = obj::str_at(cj, "/status/lastScheduleTime") {
            status["lastScheduleTime"] = json!(t);
        }
        let suspended = cj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
        if let Some(scheduled) = due {
            // A missed or skipped fire is not made up later (the next schedule after now).
            self.cron_last.insert(uid.clone(), scheduled);
            let policy = obj::str_at(cj, "/spec/concurrencyPolicy").unwrap_or("Allow");
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
                            self.api.delete(api::JOBS, ns, obj::name(j))?;
                        }
                        true
                    }
                    _ => true,
                }
            };
            if create {
                let real_now = jiff::Timestamp::now();
                let jt = cj.pointer("/spec/jobTemplate").cloned().unwrap_or_default();
                let mut meta = jt.get("metadata").cloned().unwrap_or_else(|| json!({}));
                // Kubernetes names Jobs by the scheduled minute; compressed time needs seconds.
                let jname = format!("{name}-{}", scheduled.as_second());
                meta["name"] = json!(jname);
                meta["ownerReferences"] = json!([obj::owner_ref(cj, "batch/v1", "CronJob")]);
                if !meta.get("annotations").is_some_and(Value::is_object) {
                    meta["annotations"] = json!({});
                }
                meta["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] =
                    json!(scheduled.to_string());
                let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                    "spec": jt.get("spec").cloned().unwrap_or_default()});
                self.api.create(api::JOBS, ns, &job)?;
                status["lastScheduleTime"] = json!(
                    real_now
                        .round(jiff::Unit::Second)
                        .unwrap_or(real_now)
                        .to_string()
                );
            }
        }
        if cj.get("status") != Some(&merge_view(cj.get("status"), &status)) {
            self.api.patch_status(api::CRONJOBS, ns, name, &status)?;
        }
        Ok(())
    }

    // ---- Garbage collection ---------------------------------------------------------------

    /// Deletes Pods, Jobs and PVCs whose controlling owner is gone (background propagation).
    fn collect_garbage(&self, pods: &[Value]) -> Result<()> {
        let mut owners: HashSet<String> = HashSet::new();
        for kind in [api::STATEFULSETS, api::JOBS, api::CRONJOBS] {
            for o in self.api.list(kind, None)? {
                owners.insert(obj::uid(&o).to_string());
            }
        }
        let jobs = self.api.list(api::JOBS, None)?;
        for (kind, items) in [(api::PODS, pods), (api::JOBS, &jobs[..])] {
            for o in items {
                if let Some(owner) = obj::controller_uid(o)
                    && !owners.contains(owner)
                    && !obj::terminating(o)
                {
                    self.api.delete(kind, obj::namespace(o), obj::name(o))?;
                }
            }
        }
        Ok(())
    }
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
