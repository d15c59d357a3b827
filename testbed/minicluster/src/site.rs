//! A site: one in-memory API server with the controllers, kubelet and kube-proxy that make it
//! a cluster whose pods are local processes.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::api::Api;
use crate::controllers::{ControllerTimings, Controllers};
use crate::error::{Error, Result};
use crate::image::ImageMap;
use crate::kubelet::Kubelet;
use crate::node::{KubeletTimings, Node, wait_stop};
use crate::procs::Procs;
use crate::services::Proxy;
use crate::volumes::{io, mkdir};

/// How a site is started.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// Site name (`gold`): kube context name and folder name.
    pub name: String,
    /// Namespace created at start (the release namespace).
    pub namespace: String,
    /// First two octets of Service ClusterIPs; must be `[127, x]` so they can be served here.
    /// The site's node (NodePorts) is `127.x.255.254`.
    pub cluster_ip_prefix: [u8; 2],
    /// API server port on 127.0.0.1 (0: any free port).
    pub api_port: u16,
    /// Parent folder for the site's files; None: a fresh folder in /tmp removed with the site.
    pub dir: Option<PathBuf>,
    pub images: ImageMap,
    pub kubelet: KubeletTimings,
    pub controllers: ControllerTimings,
    /// How often controllers run when nothing changed (process states, probes, schedules).
    pub resync: Duration,
    /// fsGroup given to pods that set none, as OpenShift's restricted-v2 SCC does (None: no
    /// admission plugin sets one). The kubelet then changes volume ownership for it.
    pub default_fs_group: Option<i64>,
    /// The API server enforces RBAC ([`kubesim::Config::rbac`]: HTTPS with its test CA, bearer
    /// tokens) and each container calls it as its pod's ServiceAccount (see [`crate::identity`]);
    /// the site's kubeconfig is then the admin's (token and CA). Off: plain HTTP, every pod uses
    /// the site's kubeconfig and everything is allowed.
    pub rbac: bool,
}

impl SiteConfig {
    pub fn new(name: &str, namespace: &str, cluster_ip_prefix: [u8; 2], images: ImageMap) -> Self {
        SiteConfig {
            name: name.into(),
            namespace: namespace.into(),
            cluster_ip_prefix,
            api_port: 0,
            dir: None,
            images,
            kubelet: KubeletTimings::default(),
            controllers: ControllerTimings::default(),
            resync: Duration::from_millis(200),
            default_fs_group: None,
            rbac: false,
        }
    }
}

/// A running site. Dropping it kills every process it started (SIGKILL) and removes its files
/// unless they live in a caller-given folder; [`Site::shutdown`] stops pods gracefully first.
pub struct Site {
    name: String,
    namespace: String,
    api: Api,
    server: Arc<kubesim::ServerHandle>,
    dir: PathBuf,
    kubeconfig: PathBuf,
    node_ip: Ipv4Addr,
    procs: Procs,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// What a fresh node loop is built from ([`Site::power_on`]).
    cfg: SiteConfig,
    // Last: removed after the processes are gone.
    _tmp: Option<tempfile::TempDir>,
}

impl Site {
    /// Starts the API server and the site's loop on the current Tokio runtime.
    pub async fn start(cfg: SiteConfig) -> Result<Site> {
        if cfg.cluster_ip_prefix[0] != 127 {
            return Err(Error::Site {
                site: cfg.name,
                reason: "cluster_ip_prefix must be a loopback prefix [127, x]".into(),
            });
        }
        // Processes of other users (PostgreSQL) must reach files below: /tmp roots are 0700.
        let (tmp, base) = match &cfg.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = io(
                    tempfile::Builder::new().prefix("drill-").tempdir_in("/tmp"),
                    || "creating a folder in /tmp".into(),
                )?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        mkdir(&base, 0o755)?;
        let reaped = crate::procs::reap_orphans();
        if reaped > 0 {
            tracing::warn!(
                reaped,
                "killed processes left by a drill that was itself killed"
            );
        }
        let dir = base.join(&cfg.name);
        mkdir(&dir, 0o755)?;
        io(
            std::fs::write(
                dir.join(crate::procs::OWNER_FILE),
                crate::procs::owner_line(),
            ),
            || format!("writing {}", dir.join(crate::procs::OWNER_FILE).display()),
        )?;
        let server = kubesim::Server::spawn(kubesim::Config {
            bind: ([127, 0, 0, 1], cfg.api_port).into(),
            cluster_ip_prefix: cfg.cluster_ip_prefix,
            rbac: cfg.rbac,
            ..kubesim::Config::default()
        })
        .map_err(|source| Error::ApiServer {
            site: cfg.name.clone(),
            source,
        })?;
        let server = Arc::new(server);
        let api = Api::new(server.clone());
        api.ensure_namespace(&cfg.namespace)?;
        let kubeconfig = dir.join("kubeconfig");
        io(
            std::fs::write(
                &kubeconfig,
                server.kubeconfig_yaml(&cfg.name, &cfg.namespace),
            ),
            || format!("writing {}", kubeconfig.display()),
        )?;
        if cfg.rbac {
            // The admin's token: for the drill's helm and kubectl only, never for pods.
            use std::os::unix::fs::PermissionsExt;
            io(
                std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o600)),
                || format!("chmod {}", kubeconfig.display()),
            )?;
        }
        let node_ip = Ipv4Addr::new(127, cfg.cluster_ip_prefix[1], 255, 254);
        let procs = Procs::default();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (stop, task) = spawn_node(&cfg, &api, &dir, &kubeconfig, node_ip, &procs)?;
        tracing::info!(site = %cfg.name, url = %server.url(), %node_ip, dir = %dir.display(), "site started");
        Ok(Site {
            name: cfg.name.clone(),
            namespace: cfg.namespace.clone(),
            api,
            server,
            dir,
            kubeconfig,
            node_ip,
            procs,
            stop,
            task: Some(task),
            cfg,
            _tmp: tmp,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    pub fn api(&self) -> &Api {
        &self.api
    }
    pub fn server(&self) -> &kubesim::ServerHandle {
        &self.server
    }
    pub fn url(&self) -> String {
        self.server.url()
    }
    /// The site's kubeconfig (context = site name): the admin's with RBAC on (what helm and
    /// kubectl use), else the one every pod gets as `KUBECONFIG`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
    /// Address NodePort Services are served on.
    pub fn node_ip(&self) -> Ipv4Addr {
        self.node_ip
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The folder of a persistentVolumeClaim (what a PV would hold; outlives pods).
    pub fn pvc_path(&self, namespace: &str, claim: &str) -> PathBuf {
        self.dir.join("pvc").join(namespace).join(claim)
    }
    /// With RBAC on, the kubeconfig a pod's containers that have its ServiceAccount token get as
    /// `KUBECONFIG` (see [`crate::identity`]); it exists while the pod runs.
    pub fn pod_kubeconfig(&self, namespace: &str, pod: &str) -> PathBuf {
        self.dir
            .join("pods")
            .join(namespace)
            .join(pod)
            .join(crate::kubelet::POD_KUBECONFIG)
    }
    /// Log file of a container (stdout and stderr, all restarts).
    pub fn log_path(&self, namespace: &str, pod: &str, container: &str) -> PathBuf {
        self.dir
            .join("pods")
            .join(namespace)
            .join(pod)
            .join(format!("{container}.log"))
    }

    /// Polls `check` against the API until it yields a value.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Api) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = check(&self.api) {
                return Ok(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("{what} on site {}", self.name),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Gets an object of the site's namespace, if it exists.
    pub fn get(&self, kind: crate::api::Kind, name: &str) -> Option<Value> {
        self.api.get(kind, &self.namespace, name).ok().flatten()
    }

    /// The site loses power: the node loop (kubelet, controllers, kube-proxy) stops at once, every
    /// process is SIGKILLed and the API server closes its connections and refuses new ones. What
    /// survives is what survives a real power loss: the API server's objects (etcd is on disk)
    /// and the volumes. In-process calls through [`Site::api`] still answer (the drill reads the
    /// stored objects; nothing on the site runs). See [`Site::power_on`].
    pub fn power_off(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.procs.kill_all();
        // Far longer than any drill; ended by power_on.
        self.server
            .faults()
            .refuse_for(Duration::from_secs(365 * 24 * 3600));
    }

    /// Whether the site is powered off.
    pub fn is_off(&self) -> bool {
        self.task.is_none()
    }

    /// Power comes back after [`Site::power_off`]: the API server serves its objects again and a
    /// fresh node loop starts, whose kubelet starts every pod the API server still has, as after a
    /// node reboot (new pod addresses, same volumes).
    pub fn power_on(&mut self) -> Result<()> {
        if self.task.is_some() {
            return Ok(());
        }
        self.server.faults().clear();
        self.procs = Procs::default();
        let (stop, task) = spawn_node(
            &self.cfg,
            &self.api,
            &self.dir,
            &self.kubeconfig,
            self.node_ip,
            &self.procs,
        )?;
        self.stop = stop;
        self.task = Some(task);
        tracing::info!(site = %self.name, "site powered on");
        Ok(())
    }

    /// Stops every pod gracefully (SIGTERM, then SIGKILL after the grace period) and the site.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
        }
        self.procs.kill_all();
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.procs.kill_all();
    }
}

/// Starts the node loop (kubelet, controllers, kube-proxy) of a site on the current runtime.
fn spawn_node(
    cfg: &SiteConfig,
    api: &Api,
    dir: &Path,
    kubeconfig: &Path,
    node_ip: Ipv4Addr,
    procs: &Procs,
) -> Result<(watch::Sender<bool>, tokio::task::JoinHandle<()>)> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| Error::Site {
            site: cfg.name.clone(),
            reason: format!("building the probe HTTP client: {e}"),
        })?;
    let node = Arc::new(Node {
        site: cfg.name.clone(),
        dir: dir.to_path_buf(),
        kubeconfig: kubeconfig.to_path_buf(),
        images: cfg.images.clone(),
        procs: procs.clone(),
        timings: cfg.kubelet.clone(),
        http,
        default_fs_group: cfg.default_fs_group,
        held: Default::default(),
    });
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(
        api.clone(),
        node,
        cfg.controllers.clone(),
        IpAddr::V4(node_ip),
        cfg.resync,
        stop_rx,
    ));
    Ok((stop, task))
}

/// The site loop: controllers and kube-proxy when anything changed (or on resync), the kubelet on
/// every tick (container states and probes change without API writes).
async fn run(
    api: Api,
    node: Arc<Node>,
    timings: ControllerTimings,
    node_ip: IpAddr,
    resync: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut kubelet = Kubelet::new(api.clone(), node.clone());
    let mut controllers = Controllers::new(api.clone(), node.clone(), timings);
    let mut proxy = Proxy::new(api.clone(), node_ip, node.site.clone());
    let mut last_rv = 0;
    let mut last_full = tokio::time::Instant::now();
    let mut last_refresh = tokio::time::Instant::now();
    let tick = Duration::from_millis(50).min(resync);
    loop {
        let rv = api.resource_version();
        let full = rv != last_rv || last_full.elapsed() >= resync;
        if full {
            last_rv = rv;
            last_full = tokio::time::Instant::now();
            if let Err(e) = controllers.pass() {
                tracing::warn!(site = %node.site, error = %e, "controllers");
            }
        }
        if let Err(e) = kubelet.pass() {
            tracing::warn!(site = %node.site, error = %e, "kubelet");
        }
        if full && let Err(e) = proxy.pass() {
            tracing::warn!(site = %node.site, error = %e, "kube-proxy");
        }
        if last_refresh.elapsed() >= Duration::from_secs(2) {
            last_refresh = tokio::time::Instant::now();
            let procs = node.procs.clone();
            let _ = tokio::task::spawn_blocking(move || procs.refresh()).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = wait_stop(&mut stop) => break,
        }
    }
    kubelet.shutdown().await;
}
