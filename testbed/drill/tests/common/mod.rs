//! Shared helpers: small sites running trivial local programs as images (the emulated cluster's
//! own tests have the fuller set, in testbed/minicluster/tests/common).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use pgdr_minicluster::{Image, ImageMap, Site, SiteConfig};
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

/// A site enforcing RBAC, as the drill's are (the platform acts as the admin).
pub async fn site(name: &str) -> Site {
    let mut cfg = SiteConfig::new(name, NS, prefix(), images());
    cfg.rbac = true;
    Site::start(cfg).await.expect("site starts")
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

pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

pub async fn get_text(url: &str) -> Option<String> {
    let r = http().get(url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}
