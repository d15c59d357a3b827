//! The object store: one global resourceVersion, create/get/list/update/patch/delete with the
//! real server's semantics, an event log for watch replay, and a broadcast for live watchers.
//!
//! Every write goes through [`Inner::write`], so validation, status-subresource rules,
//! generation, no-op detection and event emission are the same whatever the verb.

use crate::error::ApiError;
use crate::json;
use crate::patch;
use crate::registry::{Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::token;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the log and sent to watchers.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub rv: u64,
    pub kind: EventType,
    pub storage_id: String,
    pub namespace: String,
    /// The object after the change (for DELETED: as it was, with the deletion's resourceVersion).
    pub object: Value,
    /// The object before the change, so watchers with selectors can see it leave or enter.
    pub previous: Option<Value>,
}

/// How a PATCH body is to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<PatchKind> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Which part of the object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: for types with a status subresource, `status` changes are ignored.
    Main,
    /// The `status` subresource: only `status` changes.
    Status,
}

/// Label and field selector of a list, watch or deletecollection.
#[derive(Debug, Default)]
pub struct Filter {
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.labels.as_ref().is_none_or(|s| s.matches(labels))
            && self.fields.as_ref().is_none_or(|s| s.matches(obj))
    }
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Synthetic ADDED events for the current state, then changes (no `resourceVersion`, or "0").
    Current,
    /// Every change after this resourceVersion (replayed from the log), then live ones.
    After(u64),
}

/// What a new watch starts from: see [`Store::watch`].
pub struct WatchStartup {
    pub initial: Vec<Arc<WatchEvent>>,
    pub rx: broadcast::Receiver<Arc<WatchEvent>>,
    /// The store's resourceVersion when the watch started.
    pub rv: u64,
    /// Set when the requested start point is no longer in the log (410 Expired).
    pub gone: Option<ApiError>,
}

type Key = (String, String, String);

pub(crate) struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    log: VecDeque<Arc<WatchEvent>>,
    /// Every event with rv >= this is in the log.
    log_start: u64,
    log_cap: usize,
    next_cluster_ip: u32,
    cluster_ip_prefix: [u8; 2],
    next_node_port: u16,
    /// Every namespace gets a `default` ServiceAccount (see [`Store::default_service_accounts`]).
    default_service_accounts: bool,
    pub(crate) registry: Registry,
    tx: broadcast::Sender<Arc<WatchEvent>>,
}

pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
}

fn key(rt: &ResourceType, ns: &str, name: &str) -> Key {
    (
        rt.storage_id(),
        if rt.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// DNS-1123 subdomain (most names) or the looser ConfigMap/Secret key rules.
fn valid_name(name: &str, loose: bool) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name != "."
        && name != ".."
        && name.chars().all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || c == '-'
                || c == '.'
                || (loose && (c.is_ascii_uppercase() || c == '_'))
        })
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn valid_label_part(s: &str, max: usize) -> bool {
    s.len() <= max
        && (s.is_empty()
            || (s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && s.starts_with(|c: char| c.is_ascii_alphanumeric())
                && s.ends_with(|c: char| c.is_ascii_alphanumeric())))
}

fn validate_label(k: &str, v: &str) -> Result<(), String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if name.is_empty()
        || !valid_label_part(name, 63)
        || prefix.is_some_and(|p| !valid_name(p, false))
    {
        return Err(format!(
            "metadata.labels: Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', must start and end with an alphanumeric character and be at most 63 characters"
        ));
    }
    if !valid_label_part(v, 63) {
        return Err(format!(
            "metadata.labels: Invalid value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', must start and end with an alphanumeric character, and be at most 63 characters"
        ));
    }
    Ok(())
}

/// Decoding checks the real server does before anything else (type errors are 400).
fn check_string_map(meta: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
    match meta.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if !(v.is_string() || v.is_null()) {
                    return Err(ApiError::bad_request(format!(
                        "json: cannot unmarshal {} into Go struct field ObjectMeta.metadata.{field} of type string (key \"{k}\")",
                        json::go_kind(v)
                    )));
                }
            }
            Ok(())
        }
        Some(v) => Err(ApiError::bad_request(format!(
            "json: cannot unmarshal {} into Go struct field ObjectMeta.metadata.{field} of type map[string]string",
            json::go_kind(v)
        ))),
    }
}

/// Drops null and empty string maps (`labels: {a: null}` deletes `a`; empty maps are omitted).
fn drop_nulls(meta: &mut Map<String, Value>, field: &str) {
    if let Some(Value::Object(m)) = meta.get_mut(field) {
        m.retain(|_, v| !v.is_null());
        if m.is_empty() {
            meta.remove(field);
        }
    } else if meta.get(field).is_some_and(Value::is_null) {
        meta.remove(field);
    }
}

/// Empty maps are omitted when the real server serializes (`omitempty`).
fn drop_empty(obj: &mut Value, fields: &[&str]) {
    if let Some(o) = obj.as_object_mut() {
        for f in fields {
            if o.get(*f)
                .is_some_and(|v| v.as_object().is_some_and(Map::is_empty) || v.is_null())
            {
                o.remove(*f);
            }
        }
    }
}

/// The object without the fields a no-op comparison ignores.
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

fn without(obj: &Value, fields: &[&str]) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for f in fields {
            m.remove(*f);
        }
    }
    o
}

impl Store {
    /// `cluster_ip_prefix`: the first two octets of allocated Service ClusterIPs (10.96 by
    /// default; the drill uses a loopback prefix so that it can route them locally).
    pub fn new(log_cap: usize, cluster_ip_prefix: [u8; 2]) -> Store {
        let (tx, _) = broadcast::channel(4096);
        let store = Store {
            inner: Mutex::new(Inner {
                rv: 0,
                objects: BTreeMap::new(),
                log: VecDeque::new(),
                log_start: 1,
                log_cap: log_cap.max(16),
                next_cluster_ip: 1,
                cluster_ip_prefix,
                next_node_port: 30000,
                default_service_accounts: false,
                registry: Registry::default(),
                tx: tx.clone(),
            }),
            tx,
        };
        let ns = store
            .resolve("", "v1", "namespaces")
            .expect("namespaces is built in");
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            store
                .create(&ns, "", json!({"metadata": {"name": name}}), false)
                .expect("initial namespace");
        }
        store
    }

    /// From now on every namespace (existing or new) has a `default` ServiceAccount, as the real
    /// ServiceAccount controller sees to (pods without `serviceAccountName` run as it). Only for
    /// servers that enforce RBAC, so that other users see no extra objects.
    pub fn default_service_accounts(&self) {
        let mut inner = self.lock();
        inner.default_service_accounts = true;
        let Some(ns) = inner.registry.get("", "v1", "namespaces").cloned() else {
            return;
        };
        let names: Vec<String> = inner
            .scan(&ns, None)
            .filter_map(|o| meta_str(o, "name").map(str::to_string))
            .collect();
        for n in names {
            inner.ensure_default_service_account(&n);
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug in this crate; the data is still consistent
        // because every write is applied to a clone first.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock().registry.get(group, version, plural).cloned()
    }

    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        inner.create(rt, ns, obj, dry_run)
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .objects
            .get(&key(rt, ns, name))
            .map(|o| inner.render(rt, o))
            .ok_or_else(|| not_found(rt, name))
    }

    /// Matching objects (all namespaces when `ns` is None) and the list resourceVersion.
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>, filter: &Filter) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .scan(rt, ns)
            .filter(|o| filter.matches(o))
            .map(|o| inner.render(rt, o))
            .collect();
        (items, inner.rv)
    }

    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let old = inner
            .objects
            .get(&key(rt, ns, name))
            .cloned()
            .ok_or_else(|| not_found(rt, name))?;
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(body_name) = meta_str(&obj, "name")
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        inner.write(rt, ns, name, Some(&old), obj, part, dry_run)
    }

    /// Applies a patch; with [`PatchKind::Apply`] a missing object is created. Returns the
    /// object and whether it was created.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        part: Part,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        let mut inner = self.lock();
        let Some(old) = inner.objects.get(&key(rt, ns, name)).cloned() else {
            if kind == PatchKind::Apply && part == Part::Main {
                let mut obj = body.clone();
                meta_mut(&mut obj).insert("name".into(), json!(name));
                return inner.create(rt, ns, obj, dry_run).map(|o| (o, true));
            }
            return Err(not_found(rt, name));
        };
        let mut new = old.clone();
        let res = match kind {
            PatchKind::Json => patch::json_patch(&mut new, body),
            PatchKind::Merge => {
                if !body.is_object() {
                    Err(patch::PatchError::NotAnObject)
                } else {
                    patch::merge_patch(&mut new, body);
                    Ok(())
                }
            }
            PatchKind::Strategic => patch::strategic_merge(&mut new, body),
            PatchKind::Apply => patch::apply_patch(&mut new, body),
        };
        res.map_err(|e| ApiError::invalid(&rt.kind, name, e))?;
        // `new` started as a copy of `old`, so its resourceVersion differs only when the patch
        // set one: that is the precondition, checked in `write` (absent = unconditional).
        if meta_str(&new, "name") != Some(name) {
            return Err(ApiError::invalid(
                &rt.kind,
                name,
                "metadata.name: Invalid value: field is immutable",
            ));
        }
        inner
            .write(rt, ns, name, Some(&old), new, part, dry_run)
            .map(|o| (o, false))
    }

    /// Deletes one object; `precondition_rv` / `precondition_uid` come from DeleteOptions.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        precondition_rv: Option<&str>,
        precondition_uid: Option<&str>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let old = inner
            .objects
            .get(&key(rt, ns, name))
            .cloned()
            .ok_or_else(|| not_found(rt, name))?;
        if precondition_rv.is_some_and(|rv| Some(rv) != meta_str(&old, "resourceVersion"))
            || precondition_uid.is_some_and(|uid| Some(uid) != meta_str(&old, "uid"))
        {
            return Err(conflict(rt, name));
        }
        inner.delete(rt, ns, name, old, dry_run)
    }

    pub fn delete_collection(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        filter: &Filter,
        dry_run: bool,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let mut inner = self.lock();
        let victims: Vec<Value> = inner
            .scan(rt, ns)
            .filter(|o| filter.matches(o))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for v in victims {
            let name = meta_str(&v, "name").unwrap_or_default().to_string();
            let vns = meta_str(&v, "namespace").unwrap_or_default().to_string();
            out.push(inner.delete(rt, &vns, &name, v, dry_run)?);
        }
        Ok((out, inner.rv))
    }

    /// The events a new watch must send first, and a receiver for what follows. Both are taken
    /// under the lock, so nothing falls between them. When `After(rv)` is older than the log,
    /// `gone` is set and nothing is to be replayed (the client must re-list).
    pub fn watch(&self, rt: &ResourceType, ns: Option<&str>, start: WatchStart) -> WatchStartup {
        let inner = self.lock();
        let rx = self.tx.subscribe();
        let sid = rt.storage_id();
        let mut gone = None;
        let initial = match start {
            WatchStart::Current => inner
                .scan(rt, ns)
                .map(|o| {
                    Arc::new(WatchEvent {
                        rv: meta_str(o, "resourceVersion")
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0),
                        kind: EventType::Added,
                        storage_id: sid.clone(),
                        namespace: meta_str(o, "namespace").unwrap_or_default().to_string(),
                        object: o.clone(),
                        previous: None,
                    })
                })
                .collect(),
            WatchStart::After(rv) if rv + 1 < inner.log_start => {
                gone = Some(ApiError::gone(format!(
                    "too old resource version: {rv} ({})",
                    inner.log_start - 1
                )));
                vec![]
            }
            WatchStart::After(rv) => inner
                .log
                .iter()
                .filter(|e| e.rv > rv && e.storage_id == sid && ns.is_none_or(|n| e.namespace == n))
                .cloned()
                .collect(),
        };
        WatchStartup {
            initial,
            rx,
            rv: inner.rv,
            gone,
        }
    }

    /// Renders an object as served under `rt` (apiVersion of the requested version).
    pub fn render(&self, rt: &ResourceType, obj: &Value) -> Value {
        self.lock().render(rt, obj)
    }
}

fn not_found(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::not_found(&rt.qualified_name(), &rt.plural, &rt.group, name)
}

fn conflict(rt: &ResourceType, name: &str) -> ApiError {
    ApiError::conflict(&rt.qualified_name(), &rt.plural, &rt.group, name)
}

impl Inner {
    fn scan<'a>(
        &'a self,
        rt: &ResourceType,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let sid = rt.storage_id();
        let lo: Key = (sid.clone(), ns.unwrap_or("").to_string(), String::new());
        self.objects
            .range(lo..)
            .take_while(move |((s, n, _), _)| *s == sid && ns.is_none_or(|want| n == want))
            .map(|(_, v)| v)
    }

    fn render(&self, rt: &ResourceType, obj: &Value) -> Value {
        let mut o = obj.clone();
        o["apiVersion"] = json!(rt.api_version());
        o["kind"] = json!(rt.kind);
        o
    }

    fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let meta = meta_mut(&mut obj);
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
        {
            let suffix: String = (0..5)
                .map(|_| {
                    let chars = b"bcdfghjklmnpqrstvwxz2456789";
                    chars[rand::random_range(0..chars.len())] as char
                })
                .collect();
            meta.insert("name".into(), json!(format!("{prefix}{suffix}")));
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(
                &rt.kind,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        if self.objects.contains_key(&key(rt, ns, &name)) {
            return Err(ApiError::already_exists(
                &rt.qualified_name(),
                &rt.plural,
                &rt.group,
                &name,
            ));
        }
        if rt.custom {
            // CRDs with a status subresource ignore status on create.
            if rt.status_subresource
                && let Some(m) = obj.as_object_mut()
            {
                m.remove("status");
            }
        }
        self.write(rt, ns, &name, None, obj, Part::Main, dry_run)
    }

    /// Validates and normalizes `new`, merges it with `old` according to `part`, and commits it
    /// unless nothing changed or `dry_run`. The single path of every write.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Option<&Value>,
        mut new: Value,
        part: Part,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let Some(obj) = new.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        };
        // kind/apiVersion in a body must match the URL when given (Patroni never sends them).
        for (field, want) in [("kind", rt.kind.clone()), ("apiVersion", rt.api_version())] {
            if let Some(got) = obj.get(field).and_then(Value::as_str)
                && got != want
                && !(field == "apiVersion"
                    && got.split('/').next() == want.split('/').next()
                    && rt.custom)
            {
                return Err(ApiError::bad_request(format!(
                    "the {what} in the data ({got}) does not match the expected {what} ({want})",
                    what = if field == "kind" {
                        "kind"
                    } else {
                        "API version"
                    }
                )));
            }
        }
        if !obj.get("metadata").is_none_or(Value::is_object) {
            return Err(ApiError::bad_request(
                "json: cannot unmarshal metadata: must be an object",
            ));
        }
        {
            let meta = meta_mut(&mut new);
            check_string_map(meta, "labels")?;
            check_string_map(meta, "annotations")?;
            if rt.namespaced {
                match meta.get("namespace").and_then(Value::as_str) {
                    Some(n) if !n.is_empty() && n != ns => {
                        return Err(ApiError::bad_request(
                            "the namespace of the provided object does not match the namespace sent on the request",
                        ));
                    }
                    _ => {
                        meta.insert("namespace".into(), json!(ns));
                    }
                }
            } else {
                meta.remove("namespace");
            }
            meta.insert("name".into(), json!(name));
            drop_nulls(meta, "labels");
            drop_nulls(meta, "annotations");
            meta.remove("managedFields");
            meta.remove("selfLink");
        }
        // RBAC objects only need to be a valid path segment (`system:discovery`), as in the
        // real server.
        let rbac_name = rt.group == "rbac.authorization.k8s.io"
            && !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains(['/', '%']);
        if !rbac_name && !valid_name(name, matches!(rt.plural.as_str(), "configmaps" | "secrets")) {
            return Err(ApiError::invalid(
                &rt.kind,
                name,
                format!(
                    "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ));
        }
        if let Some(labels) = new.pointer("/metadata/labels").and_then(Value::as_object) {
            for (k, v) in labels {
                validate_label(k, v.as_str().unwrap_or_default())
                    .map_err(|e| ApiError::invalid(&rt.kind, name, e))?;
            }
        }
        let annotations_size: usize = new
            .pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                    .sum()
            })
            .unwrap_or(0);
        if annotations_size > 256 * 1024 {
            return Err(ApiError::invalid(
                &rt.kind,
                name,
                "metadata.annotations: Too long: must have at most 262144 bytes",
            ));
        }
        if rt.namespaced && ns.is_empty() {
            return Err(ApiError::bad_request(
                "the namespace of the object must be set",
            ));
        }
        if rt.namespaced
            && !self.objects.contains_key(&(
                String::from("/namespaces"),
                String::new(),
                ns.to_string(),
            ))
        {
            return Err(ApiError::not_found("namespaces", "namespaces", "", ns));
        }
        self.type_rules(rt, name, &mut new, old)?;

        let mut new = match (old, part) {
            (None, _) => {
                let meta = meta_mut(&mut new);
                meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
                meta.remove("deletionTimestamp");
                if rt.tracks_generation() {
                    meta.insert("generation".into(), json!(1));
                } else {
                    meta.remove("generation");
                }
                new
            }
            (Some(old), _) => {
                let old_rv = meta_str(old, "resourceVersion").unwrap_or_default();
                if let Some(want) = meta_str(&new, "resourceVersion")
                    && !want.is_empty()
                    && want != old_rv
                {
                    return Err(conflict(rt, name));
                }
                if let Some(uid) = meta_str(&new, "uid")
                    && !uid.is_empty()
                    && Some(uid) != meta_str(old, "uid")
                {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!(
                            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            rt.qualified_name(),
                            meta_str(old, "uid").unwrap_or_default()
                        ),
                    ));
                }
                let mut merged = match part {
                    Part::Status => {
                        let mut m = old.clone();
                        match new.get("status") {
                            Some(s) => m["status"] = s.clone(),
                            None => {
                                if let Some(o) = m.as_object_mut() {
                                    o.remove("status");
                                }
                            }
                        }
                        m
                    }
                    Part::Main if rt.status_subresource => {
                        let mut m = new;
                        match old.get("status") {
                            Some(s) => m["status"] = s.clone(),
                            None => {
                                if let Some(o) = m.as_object_mut() {
                                    o.remove("status");
                                }
                            }
                        }
                        m
                    }
                    Part::Main => new,
                };
                let meta = meta_mut(&mut merged);
                for f in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match old.get("metadata").and_then(|m| m.get(f)) {
                        Some(v) => meta.insert(f.into(), v.clone()),
                        None => meta.remove(f),
                    };
                }
                if part == Part::Main {
                    // Labels/annotations are part of metadata: a status write cannot change them.
                } else {
                    for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        match old.get("metadata").and_then(|m| m.get(f)) {
                            Some(v) => meta.insert(f.into(), v.clone()),
                            None => meta.remove(f),
                        };
                    }
                }
                if rt.tracks_generation()
                    && without(&merged, &["metadata", "status", "kind", "apiVersion"])
                        != without(old, &["metadata", "status", "kind", "apiVersion"])
                {
                    let g = old
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    meta_mut(&mut merged).insert("generation".into(), json!(g + 1));
                }
                merged
            }
        };
        let rendered = self.render(rt, &new);
        new = rendered;
        if let Some(old) = old {
            if comparable(&new) == comparable(&self.render(rt, old)) {
                // A no-op write: no new resourceVersion, no event (as the real server).
                return Ok(self.render(rt, old));
            }
            // Finalizers gone from an object being deleted: it goes now.
            if new.pointer("/metadata/deletionTimestamp").is_some()
                && new
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
            {
                return self.remove(rt, ns, name, new, dry_run);
            }
        }
        if dry_run {
            if let Some(old) = old {
                let rv = meta_str(old, "resourceVersion")
                    .unwrap_or_default()
                    .to_string();
                meta_mut(&mut new).insert("resourceVersion".into(), json!(rv));
            } else {
                meta_mut(&mut new).remove("resourceVersion");
            }
            return Ok(new);
        }
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        let stored = self.commit(rt, ns, name, new, old.cloned(), kind);
        self.after_write(rt, &stored, kind);
        Ok(self.render(rt, &stored))
    }

    /// Per-type defaults and checks (the part of admission/strategy our users depend on).
    fn type_rules(
        &mut self,
        rt: &ResourceType,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "configmaps") => {
                drop_empty(obj, &["data", "binaryData"]);
                for field in ["data", "binaryData"] {
                    if let Some(Value::Object(m)) = obj.get(field)
                        && let Some((k, v)) = m.iter().find(|(_, v)| !v.is_string())
                    {
                        return Err(ApiError::bad_request(format!(
                            "json: cannot unmarshal {} into Go struct field ConfigMap.{field} of type string (key \"{k}\")",
                            json::go_kind(v)
                        )));
                    }
                }
            }
            ("", "secrets") => {
                drop_empty(obj, &["data", "stringData"]);
                let string_data = obj.as_object_mut().and_then(|o| o.remove("stringData"));
                if let Some(Value::Object(sd)) = string_data {
                    if !obj.get("data").is_some_and(Value::is_object) {
                        obj["data"] = json!({});
                    }
                    for (k, v) in sd {
                        let s = v.as_str().ok_or_else(|| {
                            ApiError::bad_request(format!("json: cannot unmarshal into Go struct field Secret.stringData of type string (key \"{k}\")"))
                        })?;
                        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                    }
                }
                if let Some(Value::Object(m)) = obj.get("data") {
                    for (k, v) in m {
                        let ok = v.as_str().is_some_and(|s| {
                            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
                        });
                        if !ok {
                            return Err(ApiError::bad_request(format!(
                                "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[\"{k}\"]"
                            )));
                        }
                    }
                }
                if obj.get("type").is_none() {
                    obj["type"] = json!("Opaque");
                }
                if obj.get("type").and_then(Value::as_str) == Some(token::SA_TOKEN_TYPE) {
                    let sa = obj
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(token::SA_NAME_ANNOTATION))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if sa.is_empty() {
                        return Err(ApiError::invalid(
                            &rt.kind,
                            name,
                            format!(
                                "metadata.annotations[{}]: Required value",
                                token::SA_NAME_ANNOTATION
                            ),
                        ));
                    }
                    self.fill_service_account_token(obj);
                }
            }
            ("", "namespaces") => {
                obj["status"] = json!({"phase": "Active"});
                let meta = meta_mut(obj);
                if !meta.get("labels").is_some_and(Value::is_object) {
                    meta.insert("labels".into(), json!({}));
                }
                meta["labels"]["kubernetes.io/metadata.name"] = json!(name);
            }
            ("", "services") => self.service_defaults(rt, name, obj, old)?,
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                let types = Registry::types_from_crd(obj)
                    .map_err(|e| ApiError::invalid(&rt.kind, name, e))?;
                let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
                obj["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": types.iter().map(|t| t.version.clone()).collect::<Vec<_>>(),
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now_rfc3339()},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now_rfc3339()},
                    ],
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn service_defaults(
        &mut self,
        rt: &ResourceType,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        let spec = obj["spec"].as_object_mut().expect("spec is an object");
        let ty = spec
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        spec.insert("type".into(), json!(ty));
        spec.entry("sessionAffinity").or_insert(json!("None"));
        let old_spec = old.and_then(|o| o.get("spec"));
        if ty != "ExternalName" {
            let ip = match spec.get("clusterIP").and_then(Value::as_str) {
                Some(ip) if !ip.is_empty() => ip.to_string(),
                _ => match old_spec
                    .and_then(|s| s.get("clusterIP"))
                    .and_then(Value::as_str)
                {
                    Some(ip) => ip.to_string(),
                    None => {
                        let n = self.next_cluster_ip;
                        self.next_cluster_ip += 1;
                        format!(
                            "{}.{}.{}.{}",
                            self.cluster_ip_prefix[0],
                            self.cluster_ip_prefix[1],
                            n / 250,
                            n % 250 + 1
                        )
                    }
                },
            };
            spec.insert("clusterIP".into(), json!(ip));
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for (i, p) in ports.iter_mut().enumerate() {
                let Some(port) = p.get("port").and_then(Value::as_i64) else {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        name,
                        format!("spec.ports[{i}].port: Required value"),
                    ));
                };
                if !(1..=65535).contains(&port) {
                    return Err(ApiError::invalid(
                        &rt.kind,
                        name,
                        format!(
                            "spec.ports[{i}].port: Invalid value: {port}: must be between 1 and 65535, inclusive"
                        ),
                    ));
                }
                let pm = p.as_object_mut().expect("port entries are objects");
                pm.entry("protocol").or_insert(json!("TCP"));
                pm.entry("targetPort").or_insert(json!(port));
                if ty == "NodePort" || ty == "LoadBalancer" {
                    let keep = old_spec
                        .and_then(|s| s.get("ports"))
                        .and_then(Value::as_array)
                        .and_then(|ps| ps.iter().find(|op| op.get("port") == pm.get("port")))
                        .and_then(|op| op.get("nodePort").cloned());
                    if pm
                        .get("nodePort")
                        .and_then(Value::as_i64)
                        .is_none_or(|n| n <= 0)
                    {
                        let np = keep.unwrap_or_else(|| {
                            let n = self.next_node_port;
                            self.next_node_port = if n >= 32767 { 30000 } else { n + 1 };
                            json!(n)
                        });
                        pm.insert("nodePort".into(), np);
                    }
                } else {
                    pm.remove("nodePort");
                }
            }
        }
        Ok(())
    }

    /// The token controller: a `kubernetes.io/service-account-token` Secret whose ServiceAccount
    /// exists gets `data.token`, `data.namespace`, `data["ca.crt"]` (the CA of the server's
    /// HTTPS, see [`crate::ServerHandle::ca_pem`]) and the ServiceAccount's uid. Done in the write itself (the real controller
    /// follows a moment later); a Secret whose ServiceAccount does not exist yet is filled when
    /// it is created. Returns whether it filled anything.
    fn fill_service_account_token(&self, obj: &mut Value) -> bool {
        let annotation = |obj: &Value, k: &str| {
            obj.pointer("/metadata/annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        if obj
            .pointer("/data/token")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
        {
            return false;
        }
        let sa = annotation(obj, token::SA_NAME_ANNOTATION);
        let ns = meta_str(obj, "namespace").unwrap_or_default().to_string();
        let secret = meta_str(obj, "name").unwrap_or_default().to_string();
        let Some(uid) = self
            .objects
            .get(&(String::from("/serviceaccounts"), ns.clone(), sa.clone()))
            .and_then(|o| meta_str(o, "uid"))
            .map(str::to_string)
        else {
            return false;
        };
        let want_uid = annotation(obj, token::SA_UID_ANNOTATION);
        if !want_uid.is_empty() && want_uid != uid {
            // Meant for an earlier ServiceAccount of that name: never valid.
            return false;
        }
        let minted = token::mint(&token::secret_token_claims(&ns, &secret, &sa, &uid));
        let b64 = |s: &str| json!(base64::engine::general_purpose::STANDARD.encode(s));
        meta_mut(obj)
            .entry("annotations")
            .or_insert(json!({}))
            .as_object_mut()
            .map(|a| a.insert(token::SA_UID_ANNOTATION.into(), json!(uid)));
        if !obj.get("data").is_some_and(Value::is_object) {
            obj["data"] = json!({});
        }
        obj["data"]["token"] = b64(&minted);
        obj["data"]["namespace"] = b64(&ns);
        obj["data"]["ca.crt"] = b64(crate::tls::CA_PEM);
        true
    }

    /// A new ServiceAccount fills its waiting token Secrets; a deleted one takes them along, as
    /// the real token controller does.
    fn service_account_tokens(&mut self, sa: &Value, kind: EventType) {
        let Some(secrets) = self.registry.get("", "v1", "secrets").cloned() else {
            return;
        };
        let ns = meta_str(sa, "namespace").unwrap_or_default().to_string();
        let name = meta_str(sa, "name").unwrap_or_default();
        let mine: Vec<Value> = self
            .scan(&secrets, Some(&ns))
            .filter(|s| s.get("type").and_then(Value::as_str) == Some(token::SA_TOKEN_TYPE))
            .filter(|s| {
                s.pointer("/metadata/annotations")
                    .and_then(|a| a.get(token::SA_NAME_ANNOTATION))
                    .and_then(Value::as_str)
                    == Some(name)
            })
            .cloned()
            .collect();
        for old in mine {
            let secret = meta_str(&old, "name").unwrap_or_default().to_string();
            match kind {
                EventType::Deleted => {
                    let _ = self.remove(&secrets, &ns, &secret, old, false);
                }
                _ => {
                    let mut new = old.clone();
                    if self.fill_service_account_token(&mut new) {
                        self.commit(&secrets, &ns, &secret, new, Some(old), EventType::Modified);
                    }
                }
            }
        }
    }

    /// Side effects of committed writes: CRDs change what is served.
    fn ensure_default_service_account(&mut self, ns: &str) {
        let Some(sa) = self.registry.get("", "v1", "serviceaccounts").cloned() else {
            return;
        };
        if !self.objects.contains_key(&key(&sa, ns, "default")) {
            let _ = self.create(&sa, ns, json!({"metadata": {"name": "default"}}), false);
        }
    }

    fn after_write(&mut self, rt: &ResourceType, obj: &Value, kind: EventType) {
        if self.default_service_accounts
            && rt.group.is_empty()
            && rt.plural == "namespaces"
            && kind == EventType::Added
        {
            let ns = meta_str(obj, "name").unwrap_or_default().to_string();
            self.ensure_default_service_account(&ns);
        }
        if rt.group.is_empty() && rt.plural == "serviceaccounts" && kind != EventType::Modified {
            self.service_account_tokens(obj, kind);
        }
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            let group = obj
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let plural = obj
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let types = if kind == EventType::Deleted {
                vec![]
            } else {
                Registry::types_from_crd(obj).unwrap_or_default()
            };
            if kind == EventType::Deleted {
                // Custom objects go with their definition.
                let crt = self
                    .registry
                    .all()
                    .find(|t| t.custom && t.group == group && t.plural == plural)
                    .cloned();
                if let Some(crt) = crt {
                    let victims: Vec<Value> = self.scan(&crt, None).cloned().collect();
                    for v in victims {
                        let n = meta_str(&v, "name").unwrap_or_default().to_string();
                        let ns = meta_str(&v, "namespace").unwrap_or_default().to_string();
                        let _ = self.remove(&crt, &ns, &n, v, false);
                    }
                }
            }
            self.registry.set_custom(&group, &plural, types);
        }
        if rt.group.is_empty() && rt.plural == "namespaces" && kind == EventType::Deleted {
            let ns = meta_str(obj, "name").unwrap_or_default().to_string();
            let victims: Vec<(ResourceType, Value)> = self
                .objects
                .iter()
                .filter(|((_, n, _), _)| *n == ns)
                .filter_map(|((sid, _, _), v)| {
                    let t = self
                        .registry
                        .all()
                        .find(|t| t.storage_id() == *sid && t.namespaced)?
                        .clone();
                    Some((t, v.clone()))
                })
                .collect();
            for (t, v) in victims {
                let n = meta_str(&v, "name").unwrap_or_default().to_string();
                if !self.objects.contains_key(&key(&t, &ns, &n)) {
                    continue; // already gone with another (a token Secret with its ServiceAccount)
                }
                let _ = self.remove(&t, &ns, &n, v, false);
            }
        }
    }

    fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        old: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let has_finalizers = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if old.pointer("/metadata/deletionTimestamp").is_some() || dry_run {
                return Ok(self.render(rt, &old));
            }
            // Graceful: mark, and delete once the finalizers are removed.
            let mut marked = old.clone();
            meta_mut(&mut marked).insert("deletionTimestamp".into(), json!(now_rfc3339()));
            meta_mut(&mut marked).insert("deletionGracePeriodSeconds".into(), json!(0));
            let stored = self.commit(rt, ns, name, marked, Some(old), EventType::Modified);
            return Ok(self.render(rt, &stored));
        }
        self.remove(rt, ns, name, old, dry_run)
    }

    fn remove(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        if dry_run {
            return Ok(self.render(rt, &obj));
        }
        let prev = self.objects.get(&key(rt, ns, name)).cloned();
        let stored = self.commit(rt, ns, name, obj, prev, EventType::Deleted);
        self.after_write(rt, &stored, EventType::Deleted);
        Ok(self.render(rt, &stored))
    }

    /// Assigns the next resourceVersion, stores (or removes) the object, logs and broadcasts.
    fn commit(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        previous: Option<Value>,
        kind: EventType,
    ) -> Value {
        self.rv += 1;
        let rv = self.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let k = key(rt, ns, name);
        if kind == EventType::Deleted {
            self.objects.remove(&k);
        } else {
            self.objects.insert(k.clone(), obj.clone());
        }
        let ev = Arc::new(WatchEvent {
            rv,
            kind,
            storage_id: k.0,
            namespace: k.1,
            object: obj.clone(),
            previous,
        });
        self.log.push_back(ev.clone());
        while self.log.len() > self.log_cap {
            if let Some(e) = self.log.pop_front() {
                self.log_start = e.rv + 1;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.tx.send(ev);
        obj
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(store: &Store) -> ResourceType {
        store.resolve("", "v1", "configmaps").unwrap()
    }

    #[test]
    fn resource_versions_increase_and_conflicts_are_409() {
        let s = Store::new(100, [10, 96]);
        let rt = cm(&s);
        let a = s
            .create(&rt, "default", json!({"metadata": {"name": "a"}}), false)
            .unwrap();
        let rv1: u64 = a["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let b = s
            .patch(
                &rt,
                "default",
                "a",
                PatchKind::Merge,
                &json!({"data": {"k": "v"}}),
                Part::Main,
                false,
            )
            .unwrap()
            .0;
        let rv2: u64 = b["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(rv2 > rv1);
        let stale = json!({"metadata": {"resourceVersion": rv1.to_string()}, "data": {"k": "w"}});
        let e = s
            .patch(
                &rt,
                "default",
                "a",
                PatchKind::Merge,
                &stale,
                Part::Main,
                false,
            )
            .unwrap_err();
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        assert_eq!(s.get(&rt, "default", "a").unwrap()["data"]["k"], "v");
        let e = s
            .create(&rt, "default", json!({"metadata": {"name": "a"}}), false)
            .unwrap_err();
        assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
    }

    #[test]
    fn noop_patch_keeps_resource_version() {
        let s = Store::new(100, [10, 96]);
        let rt = cm(&s);
        s.create(
            &rt,
            "default",
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}}),
            false,
        )
        .unwrap();
        let before = s.current_rv();
        s.patch(
            &rt,
            "default",
            "a",
            PatchKind::Strategic,
            &json!({"metadata": {"labels": {"x": "1"}}}),
            Part::Main,
            false,
        )
        .unwrap();
        assert_eq!(s.current_rv(), before);
    }

    #[test]
    fn replay_and_gone() {
        let s = Store::new(16, [10, 96]);
        let rt = cm(&s);
        let start = s.current_rv();
        for i in 0..5 {
            s.create(
                &rt,
                "default",
                json!({"metadata": {"name": format!("c{i}")}}),
                false,
            )
            .unwrap();
        }
        let w = s.watch(&rt, Some("default"), WatchStart::After(start + 2));
        assert_eq!(w.initial.len(), 3);
        assert!(w.gone.is_none());
        for i in 5..40 {
            s.create(
                &rt,
                "default",
                json!({"metadata": {"name": format!("c{i}")}}),
                false,
            )
            .unwrap();
        }
        let w = s.watch(&rt, Some("default"), WatchStart::After(start));
        assert_eq!(w.gone.map(|e| e.code), Some(410));
        assert!(w.initial.is_empty());
    }

    #[test]
    fn namespace_must_exist_and_deleting_it_deletes_contents() {
        let s = Store::new(100, [10, 96]);
        let rt = cm(&s);
        let e = s
            .create(&rt, "nope", json!({"metadata": {"name": "a"}}), false)
            .unwrap_err();
        assert_eq!(e.code, 404);
        let ns = s.resolve("", "v1", "namespaces").unwrap();
        s.create(&ns, "", json!({"metadata": {"name": "t"}}), false)
            .unwrap();
        s.create(&rt, "t", json!({"metadata": {"name": "a"}}), false)
            .unwrap();
        s.delete(&ns, "", "t", None, None, false).unwrap();
        assert_eq!(s.get(&rt, "t", "a").unwrap_err().code, 404);
    }

    #[test]
    fn status_subresource_separates_writes() {
        let s = Store::new(100, [10, 96]);
        let pods = s.resolve("", "v1", "pods").unwrap();
        s.create(
            &pods,
            "default",
            json!({"metadata": {"name": "p"}, "spec": {"x": 1}}),
            false,
        )
        .unwrap();
        let (p, _) = s
            .patch(
                &pods,
                "default",
                "p",
                PatchKind::Merge,
                &json!({"status": {"phase": "Running"}, "spec": {"x": 2}}),
                Part::Main,
                false,
            )
            .unwrap();
        assert_eq!(p["spec"]["x"], 2);
        assert!(p.get("status").is_none());
        let (p, _) = s
            .patch(
                &pods,
                "default",
                "p",
                PatchKind::Merge,
                &json!({"status": {"phase": "Running"}, "spec": {"x": 3}}),
                Part::Status,
                false,
            )
            .unwrap();
        assert_eq!(p["spec"]["x"], 2);
        assert_eq!(p["status"]["phase"], "Running");
    }

    #[test]
    fn secrets_encode_string_data_and_reject_bad_base64() {
        let s = Store::new(100, [10, 96]);
        let rt = s.resolve("", "v1", "secrets").unwrap();
        let o = s
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "s"}, "stringData": {"p": "pw"}}),
                false,
            )
            .unwrap();
        assert_eq!(o["data"]["p"], "cHc=");
        assert!(o.get("stringData").is_none());
        let e = s
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "t"}, "data": {"p": "!!"}}),
                false,
            )
            .unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(s.get(&rt, "default", "t").unwrap_err().code, 404);
    }

    #[test]
    fn services_get_cluster_ip_and_node_ports_that_survive_updates() {
        let s = Store::new(100, [10, 96]);
        let rt = s.resolve("", "v1", "services").unwrap();
        let o = s
            .create(&rt, "default", json!({"metadata": {"name": "db"}, "spec": {"type": "NodePort", "ports": [{"port": 5432}]}}), false)
            .unwrap();
        let ip = o["spec"]["clusterIP"].clone();
        let np = o["spec"]["ports"][0]["nodePort"].clone();
        assert!(np.as_i64().unwrap() >= 30000);
        let o = s
            .update(&rt, "default", "db", json!({"metadata": {"name": "db"}, "spec": {"type": "NodePort", "ports": [{"port": 5432}]}}), Part::Main, false)
            .unwrap();
        assert_eq!(o["spec"]["clusterIP"], ip);
        assert_eq!(o["spec"]["ports"][0]["nodePort"], np);
    }

    #[test]
    fn finalizers_delay_deletion() {
        let s = Store::new(100, [10, 96]);
        let rt = cm(&s);
        s.create(
            &rt,
            "default",
            json!({"metadata": {"name": "f", "finalizers": ["x/y"]}}),
            false,
        )
        .unwrap();
        let o = s.delete(&rt, "default", "f", None, None, false).unwrap();
        assert!(o["metadata"]["deletionTimestamp"].is_string());
        assert!(s.get(&rt, "default", "f").is_ok());
        s.patch(
            &rt,
            "default",
            "f",
            PatchKind::Merge,
            &json!({"metadata": {"finalizers": null}}),
            Part::Main,
            false,
        )
        .unwrap();
        assert_eq!(s.get(&rt, "default", "f").unwrap_err().code, 404);
    }
}
