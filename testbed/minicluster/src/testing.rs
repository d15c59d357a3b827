//! Helpers for tests of an emulated site (this crate's and the drill's): small sites running
//! trivial local programs as images, a web pod template, HTTP and status helpers.
//! Test support only; the drill itself never uses it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use crate::{ControllerTimings, CronTiming, Image, ImageMap, Site, SiteConfig};
use serde_json::Value;

pub const NS: &str = "drill-test";

/// A ClusterIP prefix no other site of this test process uses (127.100–127.249).
pub fn prefix() -> [u8; 2] {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    static START: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| rand::random_range(0..150));
    [
        127,
        100 + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % 150,
    ]
}

/// `web` runs python3 (images pass their own arguments), `sh` runs /bin/sh.
pub fn images() -> ImageMap {
    ImageMap::new()
        .with(Image::program("web", "/usr/bin/python3"))
        .with(Image::program("sh", "/bin/sh"))
}

/// A site with default controller timings, without RBAC.
pub async fn site(name: &str) -> Site {
    site_with(name, ControllerTimings::default(), false).await
}

/// A site enforcing RBAC, as the drill's are (the platform acts as the admin).
pub async fn rbac_site(name: &str) -> Site {
    site_with(name, ControllerTimings::default(), true).await
}

/// Panics when the site cannot start: a test cannot go on without it.
#[allow(clippy::expect_used)]
pub async fn site_with(name: &str, controllers: ControllerTimings, rbac: bool) -> Site {
    let mut cfg = SiteConfig::new(name, NS, prefix(), images());
    cfg.controllers = controllers;
    cfg.rbac = rbac;
    Site::start(cfg).await.expect("site starts")
}

pub fn every(secs: u64) -> ControllerTimings {
    ControllerTimings {
        cron: CronTiming::Every(Duration::from_secs(secs)),
        ..ControllerTimings::default()
    }
}

/// A pod template serving its own name over HTTP on port 8000 (named `http`), ready when it
/// answers. `0.0.0.0` and `/www` exercise the address and path rewrites.
pub fn web_template(app: &str) -> Value {
    serde_json::json!({
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [{
                "name": "web",
                "image": "example.org/web:1",
                "args": ["-m", "http.server", "--bind", "0.0.0.0", "--directory", "/www", "8000"],
                "ports": [{"name": "http", "containerPort": 8000}],
                "readinessProbe": {"httpGet": {"path": "/name", "port": "http"}, "periodSeconds": 1},
                "volumeMounts": [{"name": "www", "mountPath": "/www"}],
            }],
            "volumes": [{"name": "www", "downwardAPI": {"items": [
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}],
        }
    })
}

/// Panics when no client can be built (never with these options).
#[allow(clippy::expect_used)]
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("a plain client builds")
}

pub async fn get_text(url: &str) -> Option<String> {
    let r = http().get(url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

pub fn ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Panics when the list fails: the in-memory API does not fail a list of a known kind.
#[allow(clippy::expect_used)]
pub fn items(site: &Site, kind: crate::api::Kind) -> Vec<Value> {
    site.api().list(kind, Some(NS)).expect("list")
}

pub fn cond(o: &Value, t: &str) -> bool {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == t && c["status"] == "True")
}
