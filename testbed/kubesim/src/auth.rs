//! Authentication (bearer tokens) and authorization (RBAC), as the real API server does them.
//! Both are off unless [`crate::Config::rbac`] is set; then every request is answered 401 (bad
//! token) or 403 (no rule allows it) before it reaches a handler.
//!
//! Identities:
//! - the admin token of the server's kubeconfig: `kubernetes-admin` in `system:masters`
//!   (a superuser, as the real authorizer hard-wires that group);
//! - ServiceAccount tokens, from a `kubernetes.io/service-account-token` Secret (filled in by the
//!   store like the real token controller) or issued directly (TokenRequest, or
//!   [`crate::ServerHandle::service_account_token`]): `system:serviceaccount:<ns>:<name>` in
//!   `system:serviceaccounts` and `system:serviceaccounts:<ns>`; valid while the ServiceAccount
//!   (and, for a Secret token, the Secret) exists;
//! - user tokens issued in-process (like a static token file);
//! - no token at all: `system:anonymous` in `system:unauthenticated`;
//! - any of these acting as another user with `Impersonate-User`/`-Group` (`kubectl --as`).
//!
//! Every authenticated user is also in `system:authenticated`.
//!
//! The default bindings of a real cluster that matter are created at start: `cluster-admin`
//! (for `system:masters`), `system:discovery` (`/api`, `/apis`, `/openapi`, `/version`, health,
//! for every authenticated user), `system:basic-user` (SelfSubjectAccessReviews, i.e.
//! `kubectl auth can-i`, for every authenticated user) and `system:public-info-viewer`
//! (`/version` and health, for anonymous users too).
//!
//! Not emulated: aggregated ClusterRoles (`aggregationRule` is ignored), escalation prevention
//! (anyone allowed to write Roles and bindings may grant anything; no `escalate`/`bind` verbs),
//! impersonation of `uid`s and extra fields (users, ServiceAccounts and groups are: the
//! `impersonate` verb on `users`, `serviceaccounts`, `groups`), rules reviews
//! (`kubectl auth can-i --list`), token expiry and
//! audiences, client certificates, re-creating a deleted `default` ServiceAccount (each namespace
//! gets one when it is created), and the other bootstrap roles (`admin`, `edit`, `view`,
//! `system:*` controllers).

use crate::error::ApiError;
use crate::store::{Filter, Store};
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

use crate::token::mint;
pub use crate::token::{SA_NAME_ANNOTATION, SA_TOKEN_TYPE, SA_UID_ANNOTATION};
const RBAC: &str = "rbac.authorization.k8s.io";
const MASTERS: &str = "system:masters";
const AUTHENTICATED: &str = "system:authenticated";
const UNAUTHENTICATED: &str = "system:unauthenticated";

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// `system:serviceaccount:<ns>:<name>` with the groups the real authenticator gives it.
    pub fn service_account(namespace: &str, name: &str) -> User {
        User {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                AUTHENTICATED.into(),
            ],
        }
    }

    pub fn anonymous() -> User {
        User {
            name: "system:anonymous".into(),
            groups: vec![UNAUTHENTICATED.into()],
        }
    }

    fn admin() -> User {
        User {
            name: "kubernetes-admin".into(),
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
        }
    }
}

/// What an issued token stands for.
#[derive(Debug, Clone)]
enum Issued {
    User(User),
    /// Valid while this ServiceAccount (same uid) exists.
    ServiceAccount {
        namespace: String,
        name: String,
        uid: String,
    },
}

/// The server's token book.
pub struct Auth {
    pub enabled: bool,
    admin_token: String,
    issued: Mutex<HashMap<String, Issued>>,
}

fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn unauthorized() -> ApiError {
    ApiError::new(401, "Unauthorized", "Unauthorized")
}

fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn service_account(store: &Store, namespace: &str, name: &str) -> Option<Value> {
    let rt = store.resolve("", "v1", "serviceaccounts")?;
    store.get(&rt, namespace, name).ok()
}

impl Auth {
    pub fn new(enabled: bool) -> Auth {
        Auth {
            enabled,
            admin_token: mint(&json!({"iss": "kubesim", "sub": "kubernetes-admin"})),
            issued: Mutex::new(HashMap::new()),
        }
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    fn book(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        self.issued.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token for an arbitrary user (the real server's static token file).
    pub fn issue_user(&self, name: &str, groups: &[&str]) -> String {
        let token = mint(&json!({"iss": "kubesim", "sub": name}));
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        }
        self.book().insert(
            token.clone(),
            Issued::User(User {
                name: name.into(),
                groups,
            }),
        );
        token
    }

    /// A token for an existing ServiceAccount (what TokenRequest returns). Not found when the
    /// ServiceAccount does not exist, as the real TokenRequest answers.
    pub fn issue_service_account(
        &self,
        store: &Store,
        namespace: &str,
        name: &str,
    ) -> Result<String, ApiError> {
        let sa = service_account(store, namespace, name)
            .ok_or_else(|| ApiError::not_found("serviceaccounts", "serviceaccounts", "", name))?;
        let uid = uid_of(&sa).to_string();
        let token = mint(&json!({
            "iss": "kubesim",
            "sub": format!("system:serviceaccount:{namespace}:{name}"),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
        }));
        self.book().insert(
            token.clone(),
            Issued::ServiceAccount {
                namespace: namespace.into(),
                name: name.into(),
                uid,
            },
        );
        Ok(token)
    }

    /// Maps the `Authorization` header to a user. No bearer token is anonymous; a bearer token
    /// the server does not know (or whose ServiceAccount or Secret is gone) is 401, never
    /// anonymous, as in the real server.
    pub fn authenticate(&self, store: &Store, header: Option<&str>) -> Result<User, ApiError> {
        let token = match header.map(str::trim) {
            Some(h)
                if h.get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case("bearer ")) =>
            {
                h[7..].trim()
            }
            _ => return Ok(User::anonymous()),
        };
        if token.is_empty() {
            return Ok(User::anonymous());
        }
        if token == self.admin_token {
            return Ok(User::admin());
        }
        let issued = self.book().get(token).cloned();
        match issued {
            Some(Issued::User(u)) => Ok(u),
            Some(Issued::ServiceAccount {
                namespace,
                name,
                uid,
            }) => match service_account(store, &namespace, &name) {
                Some(sa) if uid_of(&sa) == uid => Ok(User::service_account(&namespace, &name)),
                _ => Err(unauthorized()),
            },
            None => self.authenticate_secret_token(store, token),
        }
    }

    /// A legacy token: valid while its Secret holds it and the ServiceAccount it names exists.
    fn authenticate_secret_token(&self, store: &Store, token: &str) -> Result<User, ApiError> {
        let c = claims(token).ok_or_else(unauthorized)?;
        let claim = |k: &str| {
            c.get(format!("kubernetes.io/serviceaccount/{k}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (ns, secret_name, sa) = (
            claim("namespace"),
            claim("secret.name"),
            claim("service-account.name"),
        );
        let secrets = store
            .resolve("", "v1", "secrets")
            .ok_or_else(unauthorized)?;
        let secret = store
            .get(&secrets, &ns, &secret_name)
            .map_err(|_| unauthorized())?;
        let stored = secret
            .pointer("/data/token")
            .and_then(Value::as_str)
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
        let annotation = |k: &str| {
            secret
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let valid = secret.get("type").and_then(Value::as_str) == Some(SA_TOKEN_TYPE)
            && stored.as_deref() == Some(token.as_bytes())
            && annotation(SA_NAME_ANNOTATION) == sa
            && service_account(store, &ns, &sa)
                .is_some_and(|o| uid_of(&o) == annotation(SA_UID_ANNOTATION));
        if valid {
            Ok(User::service_account(&ns, &sa))
        } else {
            Err(unauthorized())
        }
    }
}

/// What a request asks to do, read from method, path and query as the real server's
/// RequestInfo resolver reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub path: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// `field_selector`: a `metadata.name=X` term names the object of a list or watch, so that
/// `resourceNames` can allow it (as in the real server).
pub fn attributes(
    method: &str,
    path: &str,
    watch: bool,
    field_selector: Option<&str>,
) -> Attributes {
    let mut a = Attributes {
        path: path.to_string(),
        ..Attributes::default()
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let non_resource = |mut a: Attributes| {
        a.verb = method.to_lowercase();
        a
    };
    if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
        return non_resource(a);
    }
    let mut rest = &parts[1..];
    if parts[0] == "apis" {
        if rest.len() < 3 {
            return non_resource(a);
        }
        a.group = rest[0].to_string();
        rest = &rest[1..];
    }
    a.resource_request = true;
    rest = &rest[1..]; // the version
    a.verb = match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
    .to_string();
    if rest.first() == Some(&"namespaces")
        && let Some(ns) = rest.get(1)
    {
        a.namespace = ns.to_string();
        // `namespaces/{ns}/status` and `/finalize` are the namespace's own subresources.
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    if let Some(r) = rest.first() {
        a.resource = r.to_string();
    }
    if let Some(n) = rest.get(1) {
        a.name = n.to_string();
    }
    if let Some(s) = rest.get(2) {
        a.subresource = s.to_string();
    }
    if a.name.is_empty() && a.verb == "get" {
        a.verb = if watch { "watch" } else { "list" }.into();
        if let Some(name) = field_selector.and_then(name_from_field_selector) {
            a.name = name;
        }
    }
    if a.name.is_empty() && a.verb == "delete" {
        a.verb = "deletecollection".into();
    }
    a
}

fn name_from_field_selector(sel: &str) -> Option<String> {
    sel.split(',').find_map(|term| {
        let (k, v) = term
            .split_once("==")
            .or_else(|| term.split_once('='))
            .filter(|(k, _)| !k.ends_with('!'))?;
        (k.trim() == "metadata.name"
            && !v.is_empty()
            && v != "."
            && v != ".."
            && !v.contains(['/', '%']))
        .then(|| v.trim().to_string())
    })
}

/// The RBAC objects a decision needs (the Roles and RoleBindings of the request's namespace).
#[derive(Debug, Default, Clone)]
pub struct Policy {
    pub cluster_roles: Vec<Value>,
    pub cluster_role_bindings: Vec<Value>,
    pub roles: Vec<Value>,
    pub role_bindings: Vec<Value>,
}

fn strs<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn name_of(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn namespace_of(v: &Value) -> &str {
    v.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn subject_matches(subject: &Value, user: &User, binding_namespace: &str) -> bool {
    let s = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or("");
    match s("kind") {
        "User" => s("name") == user.name,
        "Group" => user.groups.iter().any(|g| g == s("name")),
        "ServiceAccount" => {
            let ns = if s("namespace").is_empty() {
                binding_namespace
            } else {
                s("namespace")
            };
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{}", s("name"))
        }
        _ => false,
    }
}

/// The real `RuleAllows`: verbs, then API groups + resources (`*`, `res/sub`, `*/sub`) +
/// resourceNames for resource requests, or nonResourceURLs (`*`, exact, `prefix*`).
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strs(rule, "verbs");
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if !a.resource_request {
        return strs(rule, "nonResourceURLs").iter().any(|u| {
            *u == "*"
                || *u == a.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| a.path.starts_with(prefix))
        });
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let groups_ok = strs(rule, "apiGroups")
        .iter()
        .any(|g| *g == "*" || *g == a.group);
    let resources_ok = strs(rule, "resources").iter().any(|r| {
        *r == "*"
            || *r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    });
    let names = strs(rule, "resourceNames");
    // A named rule never matches a request without a name (create, list, deletecollection).
    let names_ok = names.is_empty() || names.contains(&a.name.as_str());
    groups_ok && resources_ok && names_ok
}

impl Policy {
    /// Reads the bindings that can apply to a request in `namespace` ("" = cluster scope).
    pub fn load(store: &Store, namespace: &str) -> Policy {
        let all = |plural: &str, ns: Option<&str>| {
            store
                .resolve(RBAC, "v1", plural)
                .map(|rt| store.list(&rt, ns, &Filter::default()).0)
                .unwrap_or_default()
        };
        let (roles, role_bindings) = if namespace.is_empty() {
            (vec![], vec![])
        } else {
            (
                all("roles", Some(namespace)),
                all("rolebindings", Some(namespace)),
            )
        };
        Policy {
            cluster_roles: all("clusterroles", None),
            cluster_role_bindings: all("clusterrolebindings", None),
            roles,
            role_bindings,
        }
    }

    fn role_rules<'a>(
        &'a self,
        binding: &Value,
        binding_namespace: &str,
    ) -> Result<&'a Value, String> {
        let r = |k: &str| {
            binding
                .pointer(&format!("/roleRef/{k}"))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let name = r("name");
        let found = match r("kind") {
            "ClusterRole" => self.cluster_roles.iter().find(|c| name_of(c) == name),
            "Role" if !binding_namespace.is_empty() => self
                .roles
                .iter()
                .find(|c| name_of(c) == name && namespace_of(c) == binding_namespace),
            other => return Err(format!("unsupported role reference kind: \"{other}\"")),
        };
        found
            .map(|role| role.get("rules").unwrap_or(&Value::Null))
            .ok_or_else(|| {
                format!(
                    "{}.rbac.authorization.k8s.io \"{name}\" not found",
                    r("kind").to_lowercase()
                )
            })
    }

    /// Allowed, or the reason to append to the Forbidden message (empty, or `RBAC: ...` when a
    /// binding refers to a role that does not exist), as the real RBAC authorizer decides.
    pub fn allows(&self, user: &User, a: &Attributes) -> Result<(), String> {
        if user.groups.iter().any(|g| g == MASTERS) {
            return Ok(());
        }
        let mut errors = Vec::new();
        let cluster = self.cluster_role_bindings.iter().map(|b| (b, ""));
        let local = self
            .role_bindings
            .iter()
            .filter(|b| !a.namespace.is_empty() && namespace_of(b) == a.namespace)
            .map(|b| (b, a.namespace.as_str()));
        for (binding, ns) in cluster.chain(local) {
            let subjects = binding.get("subjects").and_then(Value::as_array);
            if !subjects.is_some_and(|s| s.iter().any(|s| subject_matches(s, user, ns))) {
                continue;
            }
            match self.role_rules(binding, ns) {
                Ok(rules) => {
                    if rules
                        .as_array()
                        .is_some_and(|rs| rs.iter().any(|r| rule_allows(r, a)))
                    {
                        return Ok(());
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        Err(match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        })
    }
}

/// The 403 the real server sends, message and details included.
pub fn forbidden(user: &User, a: &Attributes, reason: &str) -> ApiError {
    let what = if !a.resource_request {
        format!(
            "User \"{}\" cannot {} path \"{}\"",
            user.name, a.verb, a.path
        )
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{}\"", a.namespace)
        };
        format!(
            "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            user.name, a.verb, a.group
        )
    };
    let what = if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    };
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let message = if qualified.is_empty() {
        format!("forbidden: {what}")
    } else if a.name.is_empty() {
        format!("{qualified} is forbidden: {what}")
    } else {
        format!("{qualified} \"{}\" is forbidden: {what}", a.name)
    };
    let mut e = ApiError::new(403, "Forbidden", message);
    e.kind = (!a.resource.is_empty()).then(|| a.resource.clone());
    e.group = (!a.group.is_empty()).then(|| a.group.clone());
    e.name = (!a.name.is_empty()).then(|| a.name.clone());
    e
}

/// The default roles and bindings of a real cluster that matter here: `cluster-admin` for
/// `system:masters`, discovery for every authenticated user, version and health for everyone.
pub fn bootstrap_objects() -> Vec<(&'static str, Value)> {
    let meta = |name: &str| {
        json!({
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        })
    };
    let group = |name: &str| json!({"kind": "Group", "apiGroup": RBAC, "name": name});
    let binding = |name: &str, subjects: Value| {
        (
            "clusterrolebindings",
            json!({
                "metadata": meta(name),
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": name},
                "subjects": subjects,
            }),
        )
    };
    let public = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let mut discovery = vec![
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/openapi",
        "/openapi/*",
    ];
    discovery.extend(public);
    vec![
        (
            "clusterroles",
            json!({"metadata": meta("cluster-admin"), "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ]}),
        ),
        (
            "clusterroles",
            json!({"metadata": meta("system:discovery"), "rules": [
                {"nonResourceURLs": discovery, "verbs": ["get"]},
            ]}),
        ),
        (
            "clusterroles",
            json!({"metadata": meta("system:public-info-viewer"), "rules": [
                {"nonResourceURLs": public, "verbs": ["get"]},
            ]}),
        ),
        (
            "clusterroles",
            json!({"metadata": meta("system:basic-user"), "rules": [
                {"apiGroups": ["authorization.k8s.io"],
                 "resources": ["selfsubjectaccessreviews"], "verbs": ["create"]},
            ]}),
        ),
        binding("cluster-admin", json!([group(MASTERS)])),
        binding("system:basic-user", json!([group(AUTHENTICATED)])),
        binding("system:discovery", json!([group(AUTHENTICATED)])),
        binding(
            "system:public-info-viewer",
            json!([group(AUTHENTICATED), group(UNAUTHENTICATED)]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa() -> User {
        User::service_account("db", "patroni")
    }

    fn attrs(method: &str, path: &str) -> Attributes {
        attributes(method, path, false, None)
    }

    /// "METHOD PATH[?watch|?fs=SELECTOR]", with `CM` for the configmaps of namespace db.
    fn request(spec: &str) -> Attributes {
        let (method, rest) = spec.split_once(' ').unwrap();
        let rest = rest.replace("CM", "/api/v1/namespaces/db/configmaps");
        let (path, query) = rest.split_once('?').unwrap_or((&rest, ""));
        let watch = query.split('&').any(|q| q == "watch");
        let fs = query.split('&').find_map(|q| q.strip_prefix("fs="));
        attributes(method, path, watch, fs)
    }

    #[test]
    fn request_attributes_like_the_real_resolver() {
        // request -> "verb group resource[/sub] namespace name" ('-' = empty)
        let cases = [
            ("GET CM", "list - configmaps db -"),
            ("GET CM?watch", "watch - configmaps db -"),
            ("GET CM?fs=metadata.name=x", "list - configmaps db x"),
            ("GET CM?fs=a=b,metadata.name==x", "list - configmaps db x"),
            ("GET CM?fs=metadata.name!=x", "list - configmaps db -"),
            ("GET CM/x", "get - configmaps db x"),
            ("POST CM", "create - configmaps db -"),
            ("PUT CM/x", "update - configmaps db x"),
            ("DELETE CM/x", "delete - configmaps db x"),
            ("DELETE CM", "deletecollection - configmaps db -"),
            (
                "PUT /api/v1/namespaces/db/pods/p/status",
                "update - pods/status db p",
            ),
            (
                "PATCH /apis/apps/v1/namespaces/db/statefulsets/s",
                "patch apps statefulsets db s",
            ),
            ("GET /api/v1/namespaces/db", "get - namespaces db db"),
            (
                "PUT /api/v1/namespaces/db/status",
                "update - namespaces/status db db",
            ),
            ("GET /api/v1/namespaces", "list - namespaces - -"),
            ("GET /api/v1/pods", "list - pods - -"),
            (
                "GET /apis/rbac.authorization.k8s.io/v1/clusterroles/x",
                "get rbac.authorization.k8s.io clusterroles - x",
            ),
        ];
        for (req, want) in cases {
            let a = request(req);
            assert!(a.resource_request, "{req}");
            let resource = [a.resource.as_str(), a.subresource.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            let got = [a.verb.as_str(), &a.group, &resource, &a.namespace, &a.name]
                .map(|f| if f.is_empty() { "-" } else { f })
                .join(" ");
            assert_eq!(got, want, "{req}");
        }
        for p in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/openapi/v3",
        ] {
            let a = attrs("GET", p);
            assert!(!a.resource_request, "{p}");
            assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", p));
        }
    }

    /// "verbs group/resources[names]" (group empty for the core group) or "verbs url:URLS".
    fn rule(spec: &str) -> Value {
        let (verbs, what) = spec.split_once(' ').unwrap();
        let list = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        if let Some(urls) = what.strip_prefix("url:") {
            return json!({"verbs": list(verbs), "nonResourceURLs": list(urls)});
        }
        let (group, rest) = what.split_once('/').unwrap();
        let (resources, names) = match rest.split_once('[') {
            Some((r, n)) => (r, list(n.trim_end_matches(']'))),
            None => (rest, vec![]),
        };
        json!({"verbs": list(verbs), "apiGroups": [group], "resources": list(resources),
               "resourceNames": names})
    }

    /// "sa:NAME", "sa:NS/NAME", "group:NAME" or "user:NAME".
    fn subject(spec: &str) -> Value {
        let (kind, name) = spec.split_once(':').unwrap();
        match kind {
            "sa" => match name.split_once('/') {
                Some((ns, n)) => json!({"kind": "ServiceAccount", "name": n, "namespace": ns}),
                None => json!({"kind": "ServiceAccount", "name": name}),
            },
            "group" => json!({"kind": "Group", "name": name}),
            _ => json!({"kind": "User", "name": name}),
        }
    }

    /// One role with `rules`, bound to `subject` by a RoleBinding in db or a ClusterRoleBinding.
    fn policy(rules: Value, subject: Value, cluster: bool) -> Policy {
        let mut p = Policy::default();
        if cluster {
            p.cluster_roles
                .push(json!({"metadata": {"name": "r"}, "rules": rules}));
            p.cluster_role_bindings.push(json!({
                "metadata": {"name": "b"},
                "roleRef": {"kind": "ClusterRole", "name": "r", "apiGroup": RBAC},
                "subjects": [subject],
            }));
        } else {
            p.roles
                .push(json!({"metadata": {"name": "r", "namespace": "db"}, "rules": rules}));
            p.role_bindings.push(json!({
                "metadata": {"name": "b", "namespace": "db"},
                "roleRef": {"kind": "Role", "name": "r", "apiGroup": RBAC},
                "subjects": [subject],
            }));
        }
        p
    }

    #[test]
    fn rules_decide_like_the_rbac_authorizer() {
        const NS: bool = false;
        const CLUSTER: bool = true;
        let named = "get,update,patch,delete,create,list,watch /configmaps[state]";
        // (allowed, request by system:serviceaccount:db:patroni, subject, binding, rule)
        let cases = [
            (true, "GET CM/x", "sa:patroni", NS, "get /configmaps"),
            (false, "POST CM", "sa:patroni", NS, "get /configmaps"),
            (true, "DELETE CM", "sa:patroni", NS, "* /configmaps"),
            (false, "GET CM", "sa:patroni", NS, "* apps/configmaps"),
            (true, "GET CM", "sa:patroni", NS, "* */configmaps"),
            // resourceNames: named verbs only; never create, list/watch/deletecollection
            (true, "GET CM/state", "sa:patroni", NS, named),
            (true, "PATCH CM/state", "sa:patroni", NS, named),
            (true, "DELETE CM/state", "sa:patroni", NS, named),
            (false, "GET CM/other", "sa:patroni", NS, named),
            (false, "POST CM", "sa:patroni", NS, named),
            (false, "GET CM", "sa:patroni", NS, named),
            (false, "GET CM?watch", "sa:patroni", NS, named),
            (
                true,
                "GET CM?watch&fs=metadata.name=state",
                "sa:patroni",
                NS,
                named,
            ),
            (
                true,
                "GET CM?fs=metadata.name=state",
                "sa:patroni",
                NS,
                named,
            ),
            (
                false,
                "GET CM?fs=metadata.name=other",
                "sa:patroni",
                NS,
                named,
            ),
            (false, "DELETE CM", "sa:patroni", NS, named),
            // subresources
            (
                false,
                "PATCH /api/v1/namespaces/db/pods/p/status",
                "sa:patroni",
                NS,
                "* /pods",
            ),
            (
                true,
                "PATCH /api/v1/namespaces/db/pods/p/status",
                "sa:patroni",
                NS,
                "patch /pods/status",
            ),
            (
                false,
                "PATCH /api/v1/namespaces/db/pods/p",
                "sa:patroni",
                NS,
                "patch /pods/status",
            ),
            (
                true,
                "PATCH /api/v1/namespaces/db/pods/p/status",
                "sa:patroni",
                NS,
                "patch /*/status",
            ),
            (
                true,
                "PATCH /api/v1/namespaces/db/pods/p/status",
                "sa:patroni",
                NS,
                "* */*",
            ),
            // binding scope
            (
                false,
                "GET /api/v1/namespaces/web/configmaps/x",
                "sa:patroni",
                NS,
                "get /configmaps",
            ),
            (
                false,
                "GET /api/v1/configmaps",
                "sa:patroni",
                NS,
                "list /configmaps",
            ),
            (
                true,
                "GET /api/v1/namespaces/web/configmaps/x",
                "sa:db/patroni",
                CLUSTER,
                "get /configmaps",
            ),
            (
                true,
                "GET /api/v1/configmaps",
                "sa:db/patroni",
                CLUSTER,
                "list /configmaps",
            ),
            (false, "GET CM/x", "sa:patroni", CLUSTER, "get /configmaps"),
            // subjects
            (false, "GET CM/x", "sa:web/patroni", NS, "get /configmaps"),
            (
                true,
                "GET CM/x",
                "group:system:serviceaccounts:db",
                NS,
                "get /configmaps",
            ),
            (
                true,
                "GET CM/x",
                "group:system:serviceaccounts",
                NS,
                "get /configmaps",
            ),
            (
                true,
                "GET CM/x",
                "group:system:authenticated",
                NS,
                "get /configmaps",
            ),
            (
                false,
                "GET CM/x",
                "group:system:serviceaccounts:web",
                NS,
                "get /configmaps",
            ),
            (
                true,
                "GET CM/x",
                "user:system:serviceaccount:db:patroni",
                NS,
                "get /configmaps",
            ),
            (false, "GET CM/x", "user:patroni", NS, "get /configmaps"),
            // non-resource URLs
            (
                true,
                "GET /metrics/x",
                "group:system:authenticated",
                CLUSTER,
                "get url:/metrics*",
            ),
            (
                false,
                "GET /metricsx",
                "group:system:authenticated",
                CLUSTER,
                "get url:/metrics",
            ),
            (
                false,
                "POST /metrics",
                "group:system:authenticated",
                CLUSTER,
                "get url:/metrics",
            ),
            (
                false,
                "GET /metrics",
                "group:system:authenticated",
                NS,
                "get url:/metrics",
            ),
        ];
        let me = User::service_account("db", "patroni");
        for (want, req, who, cluster, r) in cases {
            let p = policy(json!([rule(r)]), subject(who), cluster);
            let a = request(req);
            assert_eq!(
                p.allows(&me, &a).is_ok(),
                want,
                "{req} by {who} with {r}: {a:?}"
            );
        }
    }

    #[test]
    fn masters_bypass_and_dangling_role_refs_are_the_reason() {
        let admin = User::admin();
        let a = attrs("DELETE", "/api/v1/namespaces/db/pods");
        assert!(Policy::default().allows(&admin, &a).is_ok());
        let mut p = policy(
            json!([]),
            json!({"kind": "Group", "name": "system:serviceaccounts"}),
            false,
        );
        p.roles.clear();
        assert_eq!(
            p.allows(&sa(), &a).unwrap_err(),
            "RBAC: role.rbac.authorization.k8s.io \"r\" not found"
        );
    }

    #[test]
    fn forbidden_messages_match_the_real_server() {
        let e = forbidden(
            &sa(),
            &attrs("POST", "/api/v1/namespaces/db/configmaps"),
            "",
        );
        assert_eq!(
            e.message,
            "configmaps is forbidden: User \"system:serviceaccount:db:patroni\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"db\""
        );
        let e = forbidden(
            &sa(),
            &attrs("PATCH", "/apis/apps/v1/namespaces/db/statefulsets/s/status"),
            "",
        );
        assert_eq!(
            e.message,
            "statefulsets.apps \"s\" is forbidden: User \"system:serviceaccount:db:patroni\" cannot patch resource \"statefulsets/status\" in API group \"apps\" in the namespace \"db\""
        );
        assert_eq!(
            (e.kind.as_deref(), e.group.as_deref(), e.name.as_deref()),
            (Some("statefulsets"), Some("apps"), Some("s"))
        );
        let e = forbidden(&User::anonymous(), &attrs("GET", "/api/v1/nodes"), "");
        assert!(e.message.ends_with("at the cluster scope"), "{}", e.message);
        let e = forbidden(&User::anonymous(), &attrs("GET", "/apis"), "");
        assert_eq!(
            e.message,
            "forbidden: User \"system:anonymous\" cannot get path \"/apis\""
        );
    }

    #[test]
    fn tokens_carry_readable_claims() {
        use crate::token::secret_token_claims;
        let t = mint(&secret_token_claims("db", "s", "patroni", "u"));
        assert_eq!(t.split('.').count(), 3);
        let c = claims(&t).unwrap();
        assert_eq!(c["sub"], "system:serviceaccount:db:patroni");
        assert_ne!(t, mint(&secret_token_claims("db", "s", "patroni", "u")));
    }
}
