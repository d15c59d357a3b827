//! Routing and handlers: an HTTP-independent request in, a response out.
//!
//! The HTTP layer (`http.rs`) and the in-process [`crate::ServerHandle::request`] both call
//! [`handle`], so tests that skip the network exercise exactly the same code.

use crate::auth::{self, Auth, Policy, User};
use crate::error::{ApiError, reason_for};
use crate::faults::Faults;
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Filter, Part, PatchKind, Store, WatchEvent, WatchStart};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;

/// The Kubernetes version the server reports (and helm's `kubeVersion` checks see).
pub const KUBE_MINOR: u32 = 33;

#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    /// The `Authorization` header (read only when the server enforces RBAC).
    pub authorization: Option<String>,
    /// `Impersonate-User` and every `Impersonate-Group` header (`kubectl --as`, `--as-group`).
    pub impersonate_user: Option<String>,
    pub impersonate_groups: Vec<String>,
    pub body: Bytes,
}

impl ApiRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "True" | "1"))
    }

    pub fn is_watch(&self) -> bool {
        self.method == "GET" && self.flag("watch")
    }
}

/// What a watch needs to stream; the HTTP layer runs it.
pub struct WatchSpec {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub filter: Filter,
    pub initial: Vec<Arc<WatchEvent>>,
    pub rx: broadcast::Receiver<Arc<WatchEvent>>,
    /// Sent as the only event (then the stream ends): a 410 for a start point that is too old.
    pub error: Option<Value>,
    pub timeout: Duration,
    pub bookmarks: bool,
    /// `sendInitialEvents=true` (streaming lists, used by helm 4's `--wait`): after the initial
    /// ADDED events, a BOOKMARK annotated `k8s.io/initial-events-end: "true"`.
    pub initial_events_end: bool,
    pub start_rv: u64,
}

pub enum ApiBody {
    Json(Value),
    Text(String),
    Watch(Box<WatchSpec>),
}

pub struct ApiResponse {
    pub status: u16,
    pub body: ApiBody,
    pub retry_after: Option<u32>,
}

impl ApiResponse {
    fn json(status: u16, v: Value) -> Self {
        ApiResponse {
            status,
            body: ApiBody::Json(v),
            retry_after: None,
        }
    }

    pub fn error(e: &ApiError) -> Self {
        ApiResponse {
            status: e.code,
            body: ApiBody::Json(e.to_status()),
            retry_after: e.retry_after,
        }
    }
}

/// One served request, kept for tests and diagnostics.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub user_agent: String,
    /// The authenticated user name; empty when the server does not authenticate (or the
    /// request failed before authentication, as an injected fault does).
    pub user: String,
}

pub struct State {
    pub store: Store,
    pub auth: Auth,
    pub faults: Faults,
    pub watch_timeout: (Duration, Duration),
    pub bookmark_interval: Duration,
    pub addr: Mutex<String>,
    log: Mutex<VecDeque<RequestRecord>>,
}

const REQUEST_LOG: usize = 20_000;

impl State {
    pub fn new(
        store: Store,
        auth: Auth,
        faults: Faults,
        watch_timeout: (Duration, Duration),
        bookmark_interval: Duration,
    ) -> State {
        State {
            store,
            auth,
            faults,
            watch_timeout,
            bookmark_interval,
            addr: Mutex::new(String::new()),
            log: Mutex::new(VecDeque::new()),
        }
    }

    pub fn record(&self, req: &ApiRequest, status: u16, user: &str) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() >= REQUEST_LOG {
            log.pop_front();
        }
        log.push_back(RequestRecord {
            method: req.method.clone(),
            path: req.path.clone(),
            query: form_urlencoded::Serializer::new(String::new())
                .extend_pairs(req.query.iter())
                .finish(),
            status,
            user_agent: req.user_agent.clone().unwrap_or_default(),
            user: user.to_string(),
        });
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Handles one request (faults are applied by the caller, which may need to sleep).
pub fn handle(state: &State, req: &ApiRequest) -> ApiResponse {
    let (user, resp) = match admit(state, req) {
        Ok(user) => {
            let resp = route(state, req, user.as_ref());
            (user, resp)
        }
        Err((user, e)) => (user, Err(e)),
    };
    let resp = resp.unwrap_or_else(|e| ApiResponse::error(&e));
    state.record(
        req,
        resp.status,
        user.as_ref().map_or("", |u| u.name.as_str()),
    );
    resp
}

/// Authentication and authorization when the server enforces RBAC (never for `/kubesim/`, the
/// test bed's own control endpoint). Returns the user, or the 401/403 to answer.
fn admit(state: &State, req: &ApiRequest) -> Result<Option<User>, (Option<User>, ApiError)> {
    if !state.auth.enabled || req.path.starts_with("/kubesim/") {
        return Ok(None);
    }
    let caller = state
        .auth
        .authenticate(&state.store, req.authorization.as_deref())
        .map_err(|e| (None, e))?;
    let user = impersonate(state, req, caller)?;
    let a = auth::attributes(
        &req.method,
        &req.path,
        req.is_watch(),
        req.param("fieldSelector"),
    );
    let policy = if user.groups.iter().any(|g| g == "system:masters") {
        Policy::default()
    } else {
        Policy::load(&state.store, &a.namespace)
    };
    match policy.allows(&user, &a) {
        Ok(()) => Ok(Some(user)),
        Err(reason) => {
            let e = auth::forbidden(&user, &a, &reason);
            tracing::info!(user = %user.name, method = %req.method, path = %req.path, message = %e.message, "RBAC: forbidden");
            Err((Some(user), e))
        }
    }
}

/// A `Status` for an injected failure.
pub fn injected_failure(status: u16, retry_after: Option<u32>) -> ApiResponse {
    let mut e = ApiError::new(
        status,
        reason_for(status),
        format!("injected failure ({status})"),
    );
    e.retry_after = retry_after;
    ApiResponse::error(&e)
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

fn route(state: &State, req: &ApiRequest, user: Option<&User>) -> Result<ApiResponse, ApiError> {
    let segs = segments(&req.path);
    let store = &state.store;
    match segs.as_slice() {
        ["version"] => Ok(ApiResponse::json(200, version())),
        ["healthz" | "livez" | "readyz", ..] => Ok(ApiResponse {
            status: 200,
            body: ApiBody::Text("ok".into()),
            retry_after: None,
        }),
        ["kubesim", "faults"] => admin_faults(state, req),
        ["openapi", "v3"] => Ok(ApiResponse::json(
            200,
            crate::openapi::root(&store.registry()),
        )),
        ["openapi", "v3", "api", version] => {
            crate::openapi::group_version(&store.registry(), "", version)
                .map(|d| ApiResponse::json(200, d))
                .ok_or_else(ApiError::path_not_found)
        }
        ["openapi", "v3", "apis", group, version] => {
            crate::openapi::group_version(&store.registry(), group, version)
                .map(|d| ApiResponse::json(200, d))
                .ok_or_else(ApiError::path_not_found)
        }
        ["api"] => Ok(ApiResponse::json(
            200,
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": state.addr.lock().unwrap_or_else(|p| p.into_inner()).clone()}
            ]}),
        )),
        ["api", "v1"] => Ok(ApiResponse::json(
            200,
            store.registry().resource_list("", "v1"),
        )),
        ["api", "v1", rest @ ..] => resource(state, req, "", "v1", rest),
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            kind @ ("selfsubjectaccessreviews" | "subjectaccessreviews"),
        ] => access_review(state, req, kind, user),
        ["apis"] => Ok(ApiResponse::json(200, store.registry().group_list())),
        ["apis", group] => store
            .registry()
            .group(group)
            .map(|g| ApiResponse::json(200, g))
            .ok_or_else(ApiError::path_not_found),
        ["apis", group, version] if store.registry().has_group_version(group, version) => Ok(
            ApiResponse::json(200, store.registry().resource_list(group, version)),
        ),
        ["apis", group, version, rest @ ..]
            if store.registry().has_group_version(group, version) =>
        {
            resource(state, req, group, version, rest)
        }
        _ => Err(ApiError::path_not_found()),
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR.to_string(),
        "gitVersion": format!("v1.{KUBE_MINOR}.0"),
        "gitCommit": "kubesim",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
        "emulator": format!("kubesim {}", env!("CARGO_PKG_VERSION")),
    })
}

struct Target<'a> {
    rt: ResourceType,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

/// Resolves `rest` (the path after `/api/v1` or `/apis/g/v`) to a resource, namespace, name and
/// subresource. `namespaces/{ns}/status` is the namespace's status, not a resource called status.
fn target<'a>(
    store: &Store,
    group: &str,
    version: &str,
    rest: &[&'a str],
) -> Result<Target<'a>, ApiError> {
    let namespaced_type = |plural: &str| {
        store
            .resolve(group, version, plural)
            .filter(|rt| rt.namespaced)
    };
    if let ["namespaces", ns, plural, tail @ ..] = rest
        && let Some(rt) = namespaced_type(plural)
    {
        return match tail {
            [] => Ok(Target {
                rt,
                namespace: Some(ns),
                name: None,
                sub: None,
            }),
            [name] => Ok(Target {
                rt,
                namespace: Some(ns),
                name: Some(name),
                sub: None,
            }),
            [name, sub] => Ok(Target {
                rt,
                namespace: Some(ns),
                name: Some(name),
                sub: Some(sub),
            }),
            _ => Err(ApiError::path_not_found()),
        };
    }
    let (plural, tail) = rest.split_first().ok_or_else(ApiError::path_not_found)?;
    let rt = store
        .resolve(group, version, plural)
        .ok_or_else(ApiError::path_not_found)?;
    match tail {
        [] => Ok(Target {
            rt,
            namespace: None,
            name: None,
            sub: None,
        }),
        [name] if !rt.namespaced => Ok(Target {
            rt,
            namespace: None,
            name: Some(name),
            sub: None,
        }),
        [name, sub] if !rt.namespaced => Ok(Target {
            rt,
            namespace: None,
            name: Some(name),
            sub: Some(sub),
        }),
        _ => Err(ApiError::path_not_found()),
    }
}

fn filter(req: &ApiRequest) -> Result<Filter, ApiError> {
    let labels = match req.param("labelSelector") {
        Some(s) if !s.is_empty() => {
            Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?)
        }
        _ => None,
    };
    let fields = match req.param("fieldSelector") {
        Some(s) if !s.is_empty() => {
            Some(FieldSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?)
        }
        _ => None,
    };
    Ok(Filter { labels, fields })
}

/// Parses a request body: JSON (also when no Content-Type is sent, as Patroni does) or YAML.
fn body(req: &ApiRequest) -> Result<Value, ApiError> {
    let ct = req.content_type.as_deref().unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let yaml = media.ends_with("yaml");
    let json_like = media == "application/json"
        || media.ends_with("+json")
        || media == "*/*"
        || media.is_empty();
    if yaml {
        let text = std::str::from_utf8(&req.body)
            .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else if media == "application/vnd.kubernetes.protobuf" {
        crate::protobuf::decode(&req.body).map_err(|e| {
            let mut err = ApiError::unsupported_media_type(ct);
            err.message = format!("{}: {e}", err.message);
            err
        })
    } else if json_like {
        serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        })
    } else {
        Err(ApiError::unsupported_media_type(ct))
    }
}

fn list_body(rt: &ResourceType, items: Vec<Value>, rv: u64) -> Value {
    json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })
}

fn resource(
    state: &State,
    req: &ApiRequest,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<ApiResponse, ApiError> {
    let store = &state.store;
    let t = target(store, group, version, rest)?;
    let rt = &t.rt;
    let dry_run = req.param("dryRun") == Some("All");
    if let Some(d) = req.param("dryRun")
        && d != "All"
    {
        return Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: \"{d}\": supported values: \"All\""
        )));
    }
    let ns = t.namespace.unwrap_or("");
    if t.sub == Some("token") && !rt.custom && rt.group.is_empty() && rt.plural == "serviceaccounts"
    {
        return token_request(state, req, ns, t.name.unwrap_or_default());
    }
    let part = match t.sub {
        None => Part::Main,
        Some("status") if rt.status_subresource => Part::Status,
        Some(_) => return Err(ApiError::path_not_found()),
    };
    match (req.method.as_str(), t.name) {
        ("GET", None) if req.is_watch() => watch(state, req, rt, t.namespace),
        ("GET", None) => {
            let f = filter(req)?;
            let (items, rv) = store.list(rt, t.namespace, &f);
            Ok(ApiResponse::json(200, list_body(rt, items, rv)))
        }
        ("POST", None) => {
            if rt.namespaced && t.namespace.is_none() {
                return Err(ApiError::method_not_allowed("POST"));
            }
            let obj = body(req)?;
            Ok(ApiResponse::json(201, store.create(rt, ns, obj, dry_run)?))
        }
        ("DELETE", None) => {
            let f = filter(req)?;
            let (items, rv) = store.delete_collection(rt, t.namespace, &f, dry_run)?;
            Ok(ApiResponse::json(200, list_body(rt, items, rv)))
        }
        ("GET", Some(name)) => Ok(ApiResponse::json(200, store.get(rt, ns, name)?)),
        ("PUT", Some(name)) => {
            let obj = body(req)?;
            Ok(ApiResponse::json(
                200,
                store.update(rt, ns, name, obj, part, dry_run)?,
            ))
        }
        ("PATCH", Some(name)) => {
            let ct = req.content_type.as_deref().unwrap_or("");
            let kind = PatchKind::from_content_type(ct)
                .ok_or_else(|| ApiError::unsupported_media_type(ct))?;
            if kind == PatchKind::Apply && req.param("fieldManager").is_none_or(str::is_empty) {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let patch = body(req)?;
            let (obj, created) = store.patch(rt, ns, name, kind, &patch, part, dry_run)?;
            Ok(ApiResponse::json(if created { 201 } else { 200 }, obj))
        }
        ("DELETE", Some(name)) => {
            if part == Part::Status {
                return Err(ApiError::method_not_allowed("DELETE"));
            }
            let opts = if req.body.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                body(req)?
            };
            let rv = opts
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str);
            let uid = opts.pointer("/preconditions/uid").and_then(Value::as_str);
            let dry_run = dry_run
                || opts
                    .get("dryRun")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.contains(&json!("All")));
            Ok(ApiResponse::json(
                200,
                store.delete(rt, ns, name, rv, uid, dry_run)?,
            ))
        }
        (m, _) => Err(ApiError::method_not_allowed(m)),
    }
}

/// `POST` of a SelfSubjectAccessReview (about the caller: `kubectl auth can-i`) or a
/// SubjectAccessReview (about `spec.user`/`spec.groups`): the RBAC decision, nothing stored.
/// Without RBAC every request is allowed, so every review is.
fn access_review(
    state: &State,
    req: &ApiRequest,
    kind: &str,
    caller: Option<&User>,
) -> Result<ApiResponse, ApiError> {
    if req.method != "POST" {
        return Err(ApiError::method_not_allowed(&req.method));
    }
    let review = body(req)?;
    let spec = review.get("spec").cloned().unwrap_or(json!({}));
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let a = if let Some(r) = spec.get("resourceAttributes") {
        auth::Attributes {
            verb: s(r, "verb"),
            resource_request: true,
            group: s(r, "group"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            namespace: s(r, "namespace"),
            name: s(r, "name"),
            ..auth::Attributes::default()
        }
    } else if let Some(n) = spec.get("nonResourceAttributes") {
        auth::Attributes {
            verb: s(n, "verb"),
            path: s(n, "path"),
            ..auth::Attributes::default()
        }
    } else {
        return Err(ApiError::invalid(
            kind,
            "",
            "spec: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    let subject = if kind == "subjectaccessreviews" {
        let groups = spec
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Some(User {
            name: s(&spec, "user"),
            groups,
        })
    } else {
        caller.cloned()
    };
    let decision = match (&subject, state.auth.enabled) {
        (Some(u), true) => Policy::load(&state.store, &a.namespace).allows(u, &a),
        _ => Ok(()),
    };
    let mut status = json!({"allowed": decision.is_ok()});
    if let Err(reason) = &decision
        && !reason.is_empty()
    {
        status["reason"] = json!(reason);
    }
    let kind_name = if kind == "subjectaccessreviews" {
        "SubjectAccessReview"
    } else {
        "SelfSubjectAccessReview"
    };
    Ok(ApiResponse::json(
        201,
        json!({"kind": kind_name, "apiVersion": "authorization.k8s.io/v1",
               "metadata": {"creationTimestamp": null}, "spec": spec, "status": status}),
    ))
}

/// Acts as `Impersonate-User` (with its `Impersonate-Group`s) when the caller may `impersonate`
/// that user (or ServiceAccount) and each group, as the real server does.
fn impersonate(
    state: &State,
    req: &ApiRequest,
    caller: User,
) -> Result<User, (Option<User>, ApiError)> {
    let Some(name) = req.impersonate_user.as_deref() else {
        if req.impersonate_groups.is_empty() {
            return Ok(caller);
        }
        return Err((
            Some(caller),
            ApiError::bad_request("impersonating groups requires impersonating a user"),
        ));
    };
    let sa = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'));
    let mut checks = vec![match sa {
        Some((ns, n)) => ("serviceaccounts", ns.to_string(), n.to_string()),
        None => ("users", String::new(), name.to_string()),
    }];
    for g in &req.impersonate_groups {
        checks.push(("groups", String::new(), g.clone()));
    }
    for (resource, namespace, object) in checks {
        let a = auth::Attributes {
            verb: "impersonate".into(),
            resource_request: true,
            path: req.path.clone(),
            resource: resource.into(),
            namespace,
            name: object,
            ..auth::Attributes::default()
        };
        let policy = Policy::load(&state.store, &a.namespace);
        if let Err(reason) = policy.allows(&caller, &a) {
            let e = auth::forbidden(&caller, &a, &reason);
            return Err((Some(caller), e));
        }
    }
    let mut user = match sa {
        Some((ns, n)) => User::service_account(ns, n),
        None => User {
            name: name.to_string(),
            groups: vec![],
        },
    };
    for g in &req.impersonate_groups {
        if !user.groups.contains(g) {
            user.groups.push(g.clone());
        }
    }
    if name != "system:anonymous" && !user.groups.iter().any(|g| g == "system:authenticated") {
        user.groups.push("system:authenticated".into());
    }
    Ok(user)
}

/// `POST .../serviceaccounts/{name}/token` (TokenRequest, as `kubectl create token` sends it).
/// The expiry is reported but not enforced: the token is valid while the ServiceAccount exists.
fn token_request(
    state: &State,
    req: &ApiRequest,
    ns: &str,
    name: &str,
) -> Result<ApiResponse, ApiError> {
    if req.method != "POST" {
        return Err(ApiError::method_not_allowed(&req.method));
    }
    let protobuf = req
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf"));
    // kubectl sends protobuf, which is not decoded here: its spec (audiences, expiry) would
    // change nothing, since expiry is not enforced.
    let spec = if protobuf || req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body(req)?.get("spec").cloned().unwrap_or(json!({}))
    };
    let seconds = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    let token = state.auth.issue_service_account(&state.store, ns, name)?;
    let now = jiff::Timestamp::now();
    let expires = now + jiff::SignedDuration::from_secs(seconds);
    let mut spec = spec;
    if spec.get("audiences").is_none() {
        spec["audiences"] = json!(["https://kubernetes.default.svc"]);
    }
    spec["expirationSeconds"] = json!(seconds);
    Ok(ApiResponse::json(
        201,
        json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()},
        }),
    ))
}

fn watch(
    state: &State,
    req: &ApiRequest,
    rt: &ResourceType,
    ns: Option<&str>,
) -> Result<ApiResponse, ApiError> {
    let f = filter(req)?;
    let start = match req.param("resourceVersion") {
        _ if req.flag("sendInitialEvents") => WatchStart::Current,
        None | Some("" | "0") => WatchStart::Current,
        Some(rv) => WatchStart::After(rv.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: \"{rv}\": must be an integer"
            ))
        })?),
    };
    let timeout = match req.param("timeoutSeconds") {
        Some(s) => Duration::from_secs(s.parse().map_err(|_| {
            ApiError::bad_request(format!("timeoutSeconds: Invalid value: \"{s}\""))
        })?),
        None => {
            // Like the real server: a random time between the bounds, so clients re-list apart.
            let (lo, hi) = state.watch_timeout;
            if hi > lo {
                lo + (hi - lo).mul_f64(rand::random::<f64>())
            } else {
                lo
            }
        }
    };
    // A start point older than the log is not an HTTP error: the real server answers 200 and
    // sends one ERROR event with code 410, which is what clients (Patroni) look for.
    let w = state.store.watch(rt, ns, start);
    let (initial, rx, start_rv, error) = (w.initial, w.rx, w.rv, w.gone.map(|e| e.to_status()));
    Ok(ApiResponse {
        status: 200,
        body: ApiBody::Watch(Box::new(WatchSpec {
            rt: rt.clone(),
            namespace: ns.map(str::to_string),
            filter: f,
            initial,
            rx,
            error,
            timeout,
            bookmarks: req.flag("allowWatchBookmarks"),
            initial_events_end: req.flag("sendInitialEvents"),
            start_rv,
        })),
        retry_after: None,
    })
}

/// `/kubesim/faults`: GET lists rules, POST adds one (`{"rule": Rule}`, `{"cut_watches": true}`
/// or `{"refuse_ms": N}`), DELETE clears everything.
fn admin_faults(state: &State, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let faults = &state.faults;
    match req.method.as_str() {
        "GET" => Ok(ApiResponse::json(200, json!({"rules": faults.rules()}))),
        "DELETE" => {
            faults.clear();
            Ok(ApiResponse::json(200, json!({"cleared": true})))
        }
        "POST" => {
            let b = body(req)?;
            if let Some(rule) = b.get("rule") {
                let rule = serde_json::from_value(rule.clone())
                    .map_err(|e| ApiError::bad_request(format!("rule: {e}")))?;
                faults.add(rule);
            } else if b.get("cut_watches").and_then(Value::as_bool) == Some(true) {
                faults.cut_watches();
            } else if let Some(ms) = b.get("refuse_ms").and_then(Value::as_u64) {
                faults.refuse_for(Duration::from_millis(ms));
            } else {
                return Err(ApiError::bad_request(
                    "expected one of: rule, cut_watches, refuse_ms",
                ));
            }
            Ok(ApiResponse::json(200, json!({"rules": faults.rules()})))
        }
        m => Err(ApiError::method_not_allowed(m)),
    }
}

/// What a watcher with `filter` sees of `ev`: an object entering the selection is ADDED, one
/// leaving it DELETED, as the real server does.
pub fn translate(ev: &WatchEvent, filter: &Filter) -> Option<&'static str> {
    use crate::store::EventType::*;
    let now = filter.matches(&ev.object);
    match ev.kind {
        Added => now.then_some("ADDED"),
        Deleted => now.then_some("DELETED"),
        Modified => {
            let before = ev.previous.as_ref().is_some_and(|p| filter.matches(p));
            match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
    }
}
