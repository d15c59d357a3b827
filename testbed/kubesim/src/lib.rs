//! An in-memory Kubernetes API server: the one stand-in of this project.
//!
//! It behaves like the real API server where Patroni, kubectl, helm and our binaries depend on it:
//! one global increasing `resourceVersion`, 409 on stale writes, merge semantics, label and field
//! selectors, chunked watches with replay and 410, `Status` errors, CRDs, and fault injection.
#![forbid(unsafe_code)]
// `ApiError` is a whole `Status` (message, details); it is returned rarely and never on a hot
// path, so boxing it would only add noise.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod auth;
pub mod error;
pub mod faults;
mod http;
mod json;
mod openapi;
pub mod patch;
mod protobuf;
pub mod registry;
pub mod selector;
pub mod store;
mod tls;
pub mod token;

pub use api::RequestRecord;
pub use auth::User;
pub use error::ApiError;
pub use faults::{Action, Faults, Rule};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How a server is started.
#[derive(Debug, Clone)]
pub struct Config {
    /// Loopback address and port (port 0 picks a free one).
    pub bind: SocketAddr,
    /// Watches without `timeoutSeconds` end after a random time between `watch_timeout` and
    /// twice that, as the real server's `--min-request-timeout` does; clients then re-list.
    pub watch_timeout: Duration,
    /// How many past events are kept for watch replay; older start points get 410 Gone.
    pub event_log_capacity: usize,
    /// How often BOOKMARK events are sent to watches that asked for them.
    pub bookmark_interval: Duration,
    /// First two octets of the ClusterIPs given to Services (`10.96` like kind; the drill
    /// picks a loopback prefix such as `127.96` so it can serve them on this machine).
    pub cluster_ip_prefix: [u8; 2],
    /// Authenticate bearer tokens and authorize every request with RBAC, as a real cluster
    /// does (see [`auth`]). Off by default: plain HTTP, every request allowed, tokens ignored.
    /// When on, the server speaks HTTPS ([`ServerHandle::url`] is `https://`, trusted through
    /// [`ServerHandle::ca_pem`]) and [`ServerHandle::kubeconfig_yaml`] carries the CA and the
    /// admin token.
    pub rbac: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch_timeout: Duration::from_secs(60),
            event_log_capacity: 10_000,
            bookmark_interval: Duration::from_secs(10),
            cluster_ip_prefix: [10, 96],
            rbac: false,
        }
    }
}

/// An in-memory API server.
pub struct Server;

impl Server {
    /// Starts a server on its own thread and Tokio runtime, so that it keeps serving whatever
    /// the caller does (blocking tests, other runtimes). Dropping the handle stops it.
    pub fn spawn(cfg: Config) -> std::io::Result<ServerHandle> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("kubesim-{}", cfg.bind))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(async move {
                    match Server::start(cfg).await {
                        Ok((handle, fut)) => {
                            let _ = ready_tx.send(Ok(handle));
                            fut.await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })?;
        let mut handle = ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("kubesim thread died during start"))??;
        handle.thread = Some(thread);
        Ok(handle)
    }

    /// Binds and returns a handle plus the future that serves (run it on the current runtime).
    pub async fn start(
        cfg: Config,
    ) -> std::io::Result<(ServerHandle, impl std::future::Future<Output = ()> + Send)> {
        let tls = if cfg.rbac {
            Some(tls::acceptor()?)
        } else {
            None
        };
        let listener = http::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        let store = store::Store::new(cfg.event_log_capacity, cfg.cluster_ip_prefix);
        if cfg.rbac {
            store.default_service_accounts();
            for (plural, obj) in auth::bootstrap_objects() {
                let rt = store
                    .resolve("rbac.authorization.k8s.io", "v1", plural)
                    .expect("RBAC types are built in");
                store
                    .create(&rt, "", obj, false)
                    .expect("bootstrap RBAC objects are valid");
            }
        }
        let state = Arc::new(api::State::new(
            store,
            auth::Auth::new(cfg.rbac),
            Faults::default(),
            (cfg.watch_timeout, cfg.watch_timeout * 2),
            cfg.bookmark_interval,
        ));
        *state.addr.lock().unwrap_or_else(|p| p.into_inner()) = addr.to_string();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let handle = ServerHandle {
            addr,
            tls: tls.is_some(),
            state,
            shutdown: shutdown_tx,
            thread: None,
        };
        let fut = http::serve(listener, handle.state.clone(), tls, shutdown_rx);
        Ok((handle, fut))
    }
}

/// A running server. Dropping it stops the server (and its thread, if it has one).
pub struct ServerHandle {
    addr: SocketAddr,
    tls: bool,
    state: Arc<api::State>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, or `https://ADDR` when the server enforces RBAC (then trust [`Self::ca_pem`]).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA of the server's certificate (served only with RBAC on; also the `ca.crt` of
    /// ServiceAccount token Secrets).
    pub fn ca_pem(&self) -> &'static str {
        tls::CA_PEM
    }

    /// A kubeconfig whose cluster, context and user are all named `context`. Without RBAC the
    /// user has no credentials (`user: {}`), which Patroni, kubectl, helm and kube-rs all
    /// accept; with RBAC it carries the admin token (`system:masters`).
    pub fn kubeconfig_yaml(&self, context: &str, namespace: &str) -> String {
        let token = self.state.auth.enabled.then(|| self.admin_token());
        self.kubeconfig(context, namespace, token)
    }

    fn kubeconfig(&self, context: &str, namespace: &str, token: Option<&str>) -> String {
        let ca = self.tls.then_some(tls::CA_PEM);
        kubeconfig(&self.url(), context, namespace, token, ca)
    }

    /// Whether this server enforces RBAC ([`Config::rbac`]).
    pub fn rbac(&self) -> bool {
        self.state.auth.enabled
    }

    /// The token of the superuser `kubernetes-admin` (group `system:masters`).
    pub fn admin_token(&self) -> &str {
        self.state.auth.admin_token()
    }

    /// A bearer token for the ServiceAccount `namespace/name`, as TokenRequest (or a pod's
    /// projected token) gives it: the user `system:serviceaccount:<namespace>:<name>`, valid
    /// while that ServiceAccount exists (no expiry). NotFound if it does not exist.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Result<String, ApiError> {
        self.state
            .auth
            .issue_service_account(&self.state.store, namespace, name)
    }

    /// A kubeconfig (as [`Self::kubeconfig_yaml`]) whose user is the ServiceAccount
    /// `namespace/name` (its token from [`Self::service_account_token`]) and whose default
    /// namespace is `namespace`: what a pod running as that ServiceAccount uses.
    pub fn service_account_kubeconfig(
        &self,
        context: &str,
        namespace: &str,
        name: &str,
    ) -> Result<String, ApiError> {
        let token = self.service_account_token(namespace, name)?;
        Ok(self.kubeconfig(context, namespace, Some(&token)))
    }

    /// A bearer token for the user `name` in `groups` (plus `system:authenticated`), like an
    /// entry of the real server's static token file.
    pub fn user_token(&self, name: &str, groups: &[&str]) -> String {
        self.state.auth.issue_user(name, groups)
    }

    /// In-process request through the same router as HTTP (no network, no faults), as the
    /// admin. Returns the status and the JSON body; watches are not available this way.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let token = self.admin_token().to_string();
        self.request_as(Some(&token), method, path_and_query, content_type, body)
    }

    /// [`Self::request`] with the bearer `token` (None: anonymous), so that RBAC applies.
    pub fn request_as(
        &self,
        token: Option<&str>,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let req = api::ApiRequest {
            method: method.to_uppercase(),
            path: path.to_string(),
            query: form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            content_type: content_type.map(str::to_string),
            user_agent: Some("kubesim-in-process".into()),
            authorization: token.map(|t| format!("Bearer {t}")),
            impersonate_user: None,
            impersonate_groups: vec![],
            body: body
                .map(|b| bytes::Bytes::from(serde_json::to_vec(b).expect("JSON values serialize")))
                .unwrap_or_default(),
        };
        if req.is_watch() {
            return (
                400,
                error::ApiError::bad_request("watch is not available in-process").to_status(),
            );
        }
        let resp = api::handle(&self.state, &req);
        match resp.body {
            api::ApiBody::Json(v) => (resp.status, v),
            api::ApiBody::Text(t) => (resp.status, serde_json::Value::String(t)),
            api::ApiBody::Watch(_) => unreachable!("watch handled above"),
        }
    }

    pub fn faults(&self) -> Faults {
        self.state.faults.clone()
    }

    /// Requests served so far (most recent last; the oldest are dropped after 20 000).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.requests()
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state.store.current_rv()
    }

    /// Stops serving; open watches end. Also done on drop.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// See [`ServerHandle::kubeconfig_yaml`] (a user without credentials).
pub fn kubeconfig_yaml(server: &str, context: &str, namespace: &str) -> String {
    kubeconfig(server, context, namespace, None, None)
}

/// A kubeconfig whose user presents `token` as a bearer token (None: no credentials) and whose
/// cluster is trusted through `ca_pem` (None: plain HTTP).
fn kubeconfig(
    server: &str,
    context: &str,
    namespace: &str,
    token: Option<&str>,
    ca_pem: Option<&str>,
) -> String {
    use base64::Engine as _;
    let user = match token {
        Some(t) => format!("\n    token: {t}"),
        None => " {}".to_string(),
    };
    let ca = match ca_pem {
        Some(pem) => format!(
            "    certificate-authority-data: {}\n",
            base64::engine::general_purpose::STANDARD.encode(pem)
        ),
        None => String::new(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {context}\n  cluster:\n    server: {server}\n{ca}\
         contexts:\n- name: {context}\n  context:\n    cluster: {context}\n    user: {context}\n    namespace: {namespace}\n\
         current-context: {context}\npreferences: {{}}\nusers:\n- name: {context}\n  user:{user}\n"
    )
}
