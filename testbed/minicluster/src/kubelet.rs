//! The kubelet: runs each Pod's containers as local processes and reports the Pod's status.
//!
//! One pass (called by the site's reconcile loop) starts new Pods, stops deleted ones and writes
//! status changes. Containers run in tasks of their own: start, wait, restart with backoff per
//! `restartPolicy`; readiness probes run beside them.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgdr_patroni_harness::RunAs;
use rustix::process::Signal;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::{self, Api, obj};
use crate::error::{Error, Result};
use crate::identity;
use crate::node::Node;
use crate::objects::{ctr_ports, resolve_port};
use crate::procs::Procs;
use crate::view::View;
use crate::volumes::{FsGroupPolicy, Materialiser, Sources, decoded, mkdir, write_file};

/// File name, in the pod's folder, of the kubeconfig of its containers that have the
/// ServiceAccount token (RBAC on).
pub(crate) const POD_KUBECONFIG: &str = "kubeconfig";
/// The kubeconfig of its other containers: the CA, no credentials (`system:anonymous`).
const ANONYMOUS_KUBECONFIG: &str = "kubeconfig-anonymous";

#[derive(Debug, Clone, PartialEq)]
enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started: String,
    },
    Terminated {
        code: i32,
        reason: String,
        started: String,
        finished: String,
    },
}

struct Ctr {
    name: String,
    image: String,
    state: Mutex<State>,
    last: Mutex<Option<State>>,
    restarts: AtomicU32,
    ready: AtomicBool,
    /// Probed readiness (httpGet); without an httpGet probe readiness follows Running.
    probed: bool,
}

impl Ctr {
    fn set(&self, s: State) {
        let mut cur = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(s, State::Running { .. }) && matches!(*cur, State::Terminated { .. }) {
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(cur.clone());
        }
        if !self.probed {
            self.ready
                .store(matches!(s, State::Running { .. }), Ordering::Relaxed);
        } else if !matches!(s, State::Running { .. }) {
            self.ready.store(false, Ordering::Relaxed);
        }
        *cur = s;
    }
    fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Policy {
    Always,
    OnFailure,
    Never,
}

struct PodRun {
    ns: String,
    name: String,
    ip: Option<Ipv4Addr>,
    dir: PathBuf,
    policy: Policy,
    ctrs: Vec<Arc<Ctr>>,
    started: bool,
    start_time: String,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    last_status: Value,
    ready_since: (bool, String),
    /// The ServiceAccount token issued for this pod (RBAC on), once.
    token: Option<String>,
}

/// A prepared process: what to exec, with what, where.
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    run_as: Option<RunAs>,
    log: PathBuf,
}

pub(crate) struct Kubelet {
    api: Api,
    node: Arc<Node>,
    pods: HashMap<String, PodRun>,
}

impl Kubelet {
    pub fn new(api: Api, node: Arc<Node>) -> Self {
        Kubelet {
            api,
            node,
            pods: HashMap::new(),
        }
    }

    /// One reconcile pass over all Pods of the site.
    pub fn pass(&mut self) -> Result<()> {
        let pods = self.api.list(api::PODS, None)?;
        let by_uid: HashMap<&str, &Value> = pods.iter().map(|p| (obj::uid(p), p)).collect();
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|uid| by_uid.get(uid.as_str()).is_none_or(|p| obj::terminating(p)))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(run) = self.pods.remove(&uid) {
                self.stop(run);
            }
        }
        for pod in &pods {
            let uid = obj::uid(pod);
            if obj::terminating(pod) {
                continue;
            }
            if !self.pods.contains_key(uid) {
                // A pod of the same name is still stopping: its clean-up would remove this one's
                // folder. Wait for it, as a kubelet waits for the old pod's teardown.
                let (ns, name) = (obj::namespace(pod), obj::name(pod));
                if self.node.holds(ns, name) {
                    continue;
                }
                let run = self.admit(pod);
                self.node
                    .held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(format!("{ns}/{name}"));
                self.pods.insert(uid.to_string(), run);
            }
            let run = self.pods.get_mut(uid).expect("just inserted");
            if !run.started
                && let Err(e) = Self::start(&self.api, &self.node, run, pod)
            {
                {
                    tracing::debug!(pod = %run.name, error = %e, "pod not started yet");
                    let reason = match &e {
                        Error::ImageUnmapped { .. } => "ErrImagePull",
                        _ => "CreateContainerConfigError",
                    };
                    for c in &run.ctrs {
                        c.set(State::Waiting {
                            reason: reason.into(),
                            message: e.to_string(),
                        });
                    }
                }
            }
            let status = Self::status(run);
            if status != run.last_status {
                self.api
                    .patch_status(api::PODS, &run.ns, &run.name, &status)?;
                run.last_status = status;
            }
        }
        Ok(())
    }

    /// Stops every pod (site shutdown); returns once their processes are gone.
    pub async fn shutdown(&mut self) {
        let runs: Vec<PodRun> = self.pods.drain().map(|(_, r)| r).collect();
        for run in runs {
            let _ = run.stop.send(true);
            for t in run.tasks {
                let _ = t.await;
            }
        }
    }

    fn admit(&self, pod: &Value) -> PodRun {
        let ns = obj::namespace(pod).to_string();
        let name = obj::name(pod).to_string();
        let policy = match obj::str_at(pod, "/spec/restartPolicy") {
            Some("Never") => Policy::Never,
            Some("OnFailure") => Policy::OnFailure,
            _ => Policy::Always,
        };
        let ctrs = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                Arc::new(Ctr {
                    name: c.get("name").and_then(Value::as_str).unwrap_or("").into(),
                    image: c.get("image").and_then(Value::as_str).unwrap_or("").into(),
                    state: Mutex::new(State::Waiting {
                        reason: "ContainerCreating".into(),
                        message: String::new(),
                    }),
                    last: Mutex::new(None),
                    restarts: AtomicU32::new(0),
                    ready: AtomicBool::new(false),
                    probed: c.pointer("/readinessProbe/httpGet").is_some(),
                })
            })
            .collect();
        let (stop, _) = watch::channel(false);
        PodRun {
            dir: self.node.dir.join("pods").join(&ns).join(&name),
            ns,
            name,
            ip: None,
            policy,
            ctrs,
            started: false,
            start_time: obj::now(),
            stop,
            tasks: Vec::new(),
            last_status: Value::Null,
            ready_since: (false, obj::now()),
            token: None,
        }
    }

    fn sources(api: &Api, ns: &str) -> Result<Sources> {
        let mut s = Sources::default();
        for o in api.list(api::SECRETS, Some(ns))? {
            s.secrets.insert(obj::name(&o).into(), decoded(&o, true));
        }
        for o in api.list(api::CONFIGMAPS, Some(ns))? {
            s.configmaps
                .insert(obj::name(&o).into(), decoded(&o, false));
        }
        Ok(s)
    }

    /// With RBAC on: the pod as the ServiceAccount admission plugin leaves it (the API access
    /// volume mounted when the token is automounted) and its ServiceAccount's token, issued once
    /// per pod. A missing ServiceAccount keeps the pod from starting (a real cluster refuses to
    /// create it); the next pass tries again.
    fn service_account(
        api: &Api,
        run: &mut PodRun,
        pod: &Value,
    ) -> Result<Option<(Value, String)>> {
        if !api.server().rbac() {
            return Ok(None);
        }
        let name = identity::service_account_name(pod);
        let cfg_err = |reason: String| Error::ContainerConfig {
            pod: run.name.clone(),
            container: "(service account)".into(),
            reason,
        };
        let sa = api
            .get(api::SERVICEACCOUNTS, &run.ns, name)?
            .ok_or_else(|| {
                cfg_err(format!(
                    "service account {}/{name} not found: create it before the pod",
                    run.ns
                ))
            })?;
        let mut admitted = pod.clone();
        if identity::automount(pod, &sa) {
            identity::inject_api_access(&mut admitted);
        }
        let token = match &run.token {
            Some(t) => t.clone(),
            None => api
                .server()
                .service_account_token(&run.ns, name)
                .map_err(|e| {
                    cfg_err(format!(
                        "no token for service account {name}: {}",
                        e.message
                    ))
                })?,
        };
        run.token = Some(token.clone());
        Ok(Some((admitted, token)))
    }

    /// Materialises volumes, prepares every container, then starts them all.
    fn start(api: &Api, node: &Arc<Node>, run: &mut PodRun, pod: &Value) -> Result<()> {
        let account = Self::service_account(api, run, pod)?;
        let pod = account.as_ref().map_or(pod, |(p, _)| p);
        let token = account.as_ref().map(|(_, t)| t.as_str());
        let containers: Vec<Value> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let ip = match run.ip {
            Some(ip) => ip,
            None => {
                let ports: Vec<u16> = containers
                    .iter()
                    .flat_map(ctr_ports)
                    .map(|(_, p)| p)
                    .collect();
                let ip =
                    pgdr_patroni_harness::allocate_loopback(&ports).map_err(|e| Error::Site {
                        site: node.site.clone(),
                        reason: format!("no loopback address for pod {}: {e}", run.name),
                    })?;
                run.ip = Some(ip);
                ip
            }
        };
        let ip_s = ip.to_string();
        let sources = Self::sources(api, &run.ns)?;
        let refs = sources.refs();
        // Files shared by the pod's containers belong to the unprivileged user, if one runs.
        let owner = containers
            .iter()
            .filter_map(|c| node.images.resolve(c.get("image")?.as_str()?))
            .find_map(|i| i.run_as.clone());
        mkdir(&run.dir, 0o755)?;
        let server = api.server();
        // Containers with the ServiceAccount token call as it, the others anonymously.
        let (sa_kubeconfig, anonymous_kubeconfig) = match token {
            None => (node.kubeconfig.clone(), node.kubeconfig.clone()),
            Some(t) => {
                let url = server.url();
                let (sa, anon) = (
                    run.dir.join(POD_KUBECONFIG),
                    run.dir.join(ANONYMOUS_KUBECONFIG),
                );
                let text = |t| identity::kubeconfig(&url, &node.site, &run.ns, t, server.ca_pem());
                write_file(&sa, text(Some(t)).as_bytes(), 0o440, owner.as_ref(), true)?;
                write_file(&anon, text(None).as_bytes(), 0o444, owner.as_ref(), false)?;
                (sa, anon)
            }
        };
        let fs_group = pod_fs_group(pod, node.default_fs_group);
        let m = Materialiser {
            pod,
            pod_ip: &ip_s,
            pod_dir: &run.dir,
            pvc_dir: &node.dir.join("pvc").join(&run.ns),
            sources: &sources,
            owner: owner.as_ref(),
            fs_group,
            token,
            ca_pem: token.map(|_| server.ca_pem()),
        };
        let vols = m.volumes()?;
        let mut launches = Vec::new();
        for c in &containers {
            let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
            let cfg_err = |reason: String| Error::ContainerConfig {
                pod: run.name.clone(),
                container: cname.into(),
                reason,
            };
            let image_ref = c.get("image").and_then(Value::as_str).unwrap_or("");
            let image = node
                .images
                .resolve(image_ref)
                .ok_or_else(|| Error::ImageUnmapped {
                    pod: run.name.clone(),
                    container: cname.into(),
                    image: image_ref.into(),
                })?;
            let root = run.dir.join(cname);
            let mut view = View::new(ip_s.clone());
            for (inside, local) in &image.paths {
                view.map(inside, local);
            }
            for mnt in c
                .get("volumeMounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(p) = mnt.get("mountPath").and_then(Value::as_str) {
                    view.map(p, root.join(p.trim_start_matches('/')));
                }
            }
            m.container_root(&vols, c, &root, &view)?;
            let mut env = crate::env::resolve(c, pod, &ip_s, &refs).map_err(cfg_err)?;
            for (_, v) in env.iter_mut() {
                *v = view.rewrite(v);
            }
            let strings = |field: &str| -> Vec<String> {
                c.get(field)
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|s| view.rewrite(&crate::env::expand(s, &env)))
                    .collect()
            };
            let command = strings("command");
            let args = strings("args");
            let mut argv = if command.is_empty() {
                image.entrypoint.clone()
            } else {
                command
            };
            if !args.is_empty() {
                argv.extend(args);
            } else if c.get("command").is_none() {
                argv.extend(image.cmd.iter().cloned());
            }
            if argv.is_empty() {
                return Err(cfg_err("no command: the image has no entrypoint".into()));
            }
            let mut path_dirs: Vec<String> = image
                .path_dirs
                .iter()
                .map(|d| d.to_string_lossy().into_owned())
                .collect();
            path_dirs.extend(
                [
                    "/usr/local/sbin",
                    "/usr/local/bin",
                    "/usr/sbin",
                    "/usr/bin",
                    "/sbin",
                    "/bin",
                ]
                .map(String::from),
            );
            let program = find_program(&argv[0], &path_dirs)
                .ok_or_else(|| cfg_err(format!("executable {:?} not found", argv[0])))?;
            let mut full_env: Vec<(String, String)> = vec![
                ("PATH".into(), path_dirs.join(":")),
                ("HOSTNAME".into(), run.name.clone()),
                ("HOME".into(), "/".into()),
                (
                    "KUBECONFIG".into(),
                    if token.is_none() || identity::mounts_token(c) {
                        &sa_kubeconfig
                    } else {
                        &anonymous_kubeconfig
                    }
                    .to_string_lossy()
                    .into_owned(),
                ),
                // Stands in for in-cluster config (see identity.rs): Patroni reads a kubeconfig
                // only with an explicit context (its default is `kind-kind`); ours is named after
                // the site.
                ("PATRONI_KUBERNETES_CONTEXT".into(), node.site.clone()),
                ("DRILL_ROOT".into(), root.to_string_lossy().into_owned()),
                ("DRILL_POD_IP".into(), ip_s.clone()),
                ("DRILL_SITE".into(), node.site.clone()),
            ];
            full_env.extend(image.env.iter().cloned());
            for (k, v) in env {
                full_env.retain(|(n, _)| *n != k);
                full_env.push((k, v));
            }
            let cwd = c
                .get("workingDir")
                .and_then(Value::as_str)
                .map(|w| view.local(w).unwrap_or_else(|| PathBuf::from(w)))
                .unwrap_or_else(|| root.clone());
            launches.push(Launch {
                program,
                args: argv[1..].to_vec(),
                env: full_env,
                cwd,
                run_as: image.run_as.clone(),
                log: run.dir.join(format!("{cname}.log")),
            });
        }
        let grace = obj::i64_at(pod, "/spec/terminationGracePeriodSeconds")
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(Duration::from_secs(30))
            .min(node.timings.termination_grace_max);
        for ((launch, ctr), spec) in launches.into_iter().zip(run.ctrs.iter()).zip(&containers) {
            let t = tokio::spawn(run_container(
                launch,
                ctr.clone(),
                run.policy,
                node.clone(),
                run.stop.subscribe(),
                grace,
            ));
            run.tasks.push(t);
            if let Some(probe) = spec.pointer("/readinessProbe/httpGet") {
                let port = probe
                    .get("port")
                    .and_then(|p| resolve_port(p, &containers))
                    .unwrap_or(80);
                let path = probe.get("path").and_then(Value::as_str).unwrap_or("/");
                let url = format!("http://{ip}:{port}{path}");
                let rp = spec.get("readinessProbe").cloned().unwrap_or_default();
                let secs = |f: &str, d: u64| {
                    Duration::from_secs(rp.get(f).and_then(Value::as_u64).unwrap_or(d))
                };
                let period = secs("periodSeconds", 10).min(node.timings.probe_period_max);
                let delay = secs("initialDelaySeconds", 0).min(node.timings.probe_period_max);
                let timeout = secs("timeoutSeconds", 1);
                let failures = rp
                    .get("failureThreshold")
                    .and_then(Value::as_u64)
                    .unwrap_or(3) as u32;
                run.tasks.push(tokio::spawn(probe_loop(
                    node.http.clone(),
                    url,
                    ctr.clone(),
                    (delay, period, timeout, failures),
                    run.stop.subscribe(),
                )));
            }
        }
        run.started = true;
        tracing::info!(site = %node.site, pod = %run.name, %ip, "pod started");
        Ok(())
    }

    fn stop(&self, run: PodRun) {
        // Held since admission; released once the processes are gone and the folder removed.
        let key = format!("{}/{}", run.ns, run.name);
        let _ = run.stop.send(true);
        let node = self.node.clone();
        let dir = run.dir.clone();
        tokio::spawn(async move {
            for t in run.tasks {
                let _ = t.await;
            }
            // Pod-lifetime volumes go with the pod; PVCs stay.
            let _ = std::fs::remove_dir_all(&dir);
            node.held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            tracing::info!(site = %node.site, pod = %key, "pod stopped");
        });
    }

    fn status(run: &mut PodRun) -> Value {
        let states: Vec<State> = run.ctrs.iter().map(|c| c.state()).collect();
        let all_ready = run.ctrs.iter().all(|c| c.ready.load(Ordering::Relaxed));
        let terminated: Vec<i32> = states
            .iter()
            .filter_map(|s| match s {
                State::Terminated { code, .. } => Some(*code),
                _ => None,
            })
            .collect();
        let all_done = terminated.len() == states.len() && !states.is_empty();
        let phase = if !run.started {
            "Pending"
        } else if run.policy != Policy::Always && all_done && terminated.iter().all(|c| *c == 0) {
            "Succeeded"
        } else if run.policy == Policy::Never && all_done {
            "Failed"
        } else {
            "Running"
        };
        let ready = all_ready && phase == "Running";
        if ready != run.ready_since.0 {
            run.ready_since = (ready, obj::now());
        }
        let cond = |t: &str, ok: bool, since: &str| json!({"type": t, "status": if ok { "True" } else { "False" }, "lastTransitionTime": since});
        let since = run.ready_since.1.clone();
        let statuses: Vec<Value> = run
            .ctrs
            .iter()
            .zip(&states)
            .map(|(c, s)| {
                let last = c.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
                json!({
                    "name": c.name,
                    "image": c.image,
                    "imageID": "",
                    "ready": c.ready.load(Ordering::Relaxed),
                    "started": matches!(s, State::Running { .. }),
                    "restartCount": c.restarts.load(Ordering::Relaxed),
                    "state": state_json(s),
                    "lastState": last.as_ref().map(state_json).unwrap_or_else(|| json!({})),
                })
            })
            .collect();
        let mut status = json!({
            "phase": phase,
            "startTime": run.start_time,
            "conditions": [
                cond("PodScheduled", true, &run.start_time),
                cond("Initialized", true, &run.start_time),
                cond("ContainersReady", ready, &since),
                cond("Ready", ready, &since),
            ],
            "containerStatuses": statuses,
        });
        if let Some(ip) = run.ip {
            status["podIP"] = json!(ip.to_string());
            status["podIPs"] = json!([{"ip": ip.to_string()}]);
            status["hostIP"] = json!(ip.to_string());
        }
        status
    }
}

/// The pod's fsGroup (or the admission default when it sets none) and its change policy.
fn pod_fs_group(pod: &Value, default: Option<i64>) -> Option<(u32, FsGroupPolicy)> {
    let sc = pod.pointer("/spec/securityContext");
    let gid = sc
        .and_then(|s| s.get("fsGroup"))
        .and_then(Value::as_i64)
        .or(default)?;
    let policy = FsGroupPolicy::from_spec(
        sc.and_then(|s| s.get("fsGroupChangePolicy"))
            .and_then(Value::as_str),
    );
    Some((u32::try_from(gid).ok()?, policy))
}

fn state_json(s: &State) -> Value {
    match s {
        State::Waiting { reason, message } => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        State::Running { started } => json!({"running": {"startedAt": started}}),
        State::Terminated {
            code,
            reason,
            started,
            finished,
        } => json!({"terminated": {
            "exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished}}),
    }
}

fn find_program(name: &str, path_dirs: &[String]) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    path_dirs
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Runs one container until the pod stops, restarting it as the policy says.
async fn run_container(
    launch: Launch,
    ctr: Arc<Ctr>,
    policy: Policy,
    node: Arc<Node>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut delay = node.timings.restart_backoff;
    loop {
        let started = obj::now();
        let began = tokio::time::Instant::now();
        let key = Procs::new_key();
        let child = spawn(&launch, key);
        let (code, reason) = match child {
            Err(e) => {
                tracing::warn!(site = %node.site, container = %ctr.name, error = %e, "container failed to start");
                (128, format!("StartError: {e}"))
            }
            Ok(mut child) => {
                let pgid = child.id().unwrap_or(0);
                node.procs.register(key, pgid);
                ctr.set(State::Running {
                    started: started.clone(),
                });
                let status = tokio::select! {
                    s = child.wait() => s.ok(),
                    _ = crate::node::wait_stop(&mut stop) => {
                        node.procs.signal_group(key, Signal::TERM);
                        match tokio::time::timeout(grace, child.wait()).await {
                            Ok(s) => s.ok(),
                            Err(_) => None,
                        }
                    }
                };
                // Whatever the container started dies with it (processes that left its group too).
                node.procs.kill(key);
                let _ = child.wait().await;
                use std::os::unix::process::ExitStatusExt;
                match status {
                    Some(s) if s.code().is_some() => {
                        let code = s.code().unwrap_or(1);
                        (
                            code,
                            if code == 0 { "Completed" } else { "Error" }.to_string(),
                        )
                    }
                    Some(s) => (128 + s.signal().unwrap_or(9), "Error".to_string()),
                    None => (137, "Error".to_string()),
                }
            }
        };
        ctr.set(State::Terminated {
            code,
            reason,
            started,
            finished: obj::now(),
        });
        if *stop.borrow() {
            return;
        }
        let restart = match policy {
            Policy::Always => true,
            Policy::OnFailure => code != 0,
            Policy::Never => false,
        };
        if !restart {
            return;
        }
        // A container that ran for a while starts its backoff again, as the kubelet does.
        if began.elapsed() > Duration::from_secs(60) {
            delay = node.timings.restart_backoff;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = crate::node::wait_stop(&mut stop) => return,
        }
        delay = (delay * 2).min(node.timings.restart_backoff_max);
        ctr.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Starts one container process; `key` marks it and everything it starts (see [`crate::procs`]).
fn spawn(l: &Launch, key: u64) -> std::io::Result<tokio::process::Child> {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&l.log)?;
    let log_err = log.try_clone()?;
    let mut cmd = tokio::process::Command::new(&l.program);
    cmd.args(&l.args)
        .env_clear()
        .envs(l.env.iter().cloned())
        .env(crate::procs::MARKER, crate::procs::marker_value(key))
        .current_dir(&l.cwd)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Own group: stopping the container signals it and its children, never the drill.
        .process_group(0);
    if let Some(r) = l.run_as.as_ref().filter(|r| r.switch) {
        cmd.uid(r.uid).gid(r.gid);
    }
    cmd.spawn()
}

async fn probe_loop(
    http: reqwest::Client,
    url: String,
    ctr: Arc<Ctr>,
    (delay, period, timeout, failure_threshold): (Duration, Duration, Duration, u32),
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    let mut wait = delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::node::wait_stop(&mut stop) => return,
        }
        wait = period;
        if !matches!(ctr.state(), State::Running { .. }) {
            failures = 0;
            continue;
        }
        let ok = http
            .get(&url)
            .timeout(timeout)
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() >= 200 && r.status().as_u16() < 400);
        if ok {
            failures = 0;
            ctr.ready.store(true, Ordering::Relaxed);
        } else {
            failures += 1;
            if failures >= failure_threshold.max(1) || !ctr.ready.load(Ordering::Relaxed) {
                ctr.ready.store(false, Ordering::Relaxed);
            }
        }
    }
}
