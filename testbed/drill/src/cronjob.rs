//! Running a site's CronJob container by hand, once, with the configuration the chart rendered:
//! what an operator does with `kubectl create job --from=cronjob/...`, here as a local process so a
//! scenario can change its environment and read its exit code.

use std::path::PathBuf;
use std::process::Stdio;

use pgdr_minicluster::Site;
use pgdr_minicluster::api::{self, obj};
use serde_json::Value;

use crate::error::{DrillError, Result};
use crate::options::target_dir;

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    /// None: killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The environment of the first container of CronJob `name` on `site`, resolved: plain values,
/// `secretKeyRef`s read from the site's Secrets, the namespace `fieldRef`; a value naming a file
/// under a mounted Secret volume points at a copy of that file in the site's folder.
pub fn environment(site: &Site, name: &str) -> Result<Vec<(String, String)>> {
    let missing = |what: String| DrillError::Site {
        site: site.name().into(),
        reason: what,
    };
    let cj = site
        .get(api::CRONJOBS, name)
        .ok_or_else(|| missing(format!("no CronJob {name}")))?;
    let pod = cj
        .pointer("/spec/jobTemplate/spec/template/spec")
        .ok_or_else(|| missing(format!("CronJob {name} has no pod template")))?;
    let container = &pod["containers"][0];
    let files = site.dir().join("manual-runs").join(name);
    let mut out = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let Some(key) = e["name"].as_str() else {
            continue;
        };
        let value = if let Some(v) = e["value"].as_str() {
            Some(v.to_string())
        } else if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
            let (secret, k) = (
                r["name"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
            );
            secret_value(site, secret, k)
        } else if e.pointer("/valueFrom/fieldRef/fieldPath") == Some(&"metadata.namespace".into()) {
            Some(site.namespace().to_string())
        } else {
            None
        };
        let Some(mut value) = value else { continue };
        if let Some(local) = mounted_secret_file(site, pod, container, &value, &files)? {
            value = local.to_string_lossy().into_owned();
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// Runs `binary` (from the workspace build) with exactly `env`, to completion.
pub async fn run(binary: &str, env: &[(String, String)]) -> Result<Outcome> {
    let path = target_dir().join(binary);
    let out = tokio::process::Command::new(&path)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| DrillError::io(format!("running {}", path.display()), e))?;
    Ok(Outcome {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn secret_value(site: &Site, secret: &str, key: &str) -> Option<String> {
    use base64::Engine;
    let s = site.get(api::SECRETS, secret)?;
    if let Some(v) = s
        .pointer(&format!("/stringData/{key}"))
        .and_then(Value::as_str)
    {
        return Some(v.to_string());
    }
    let b64 = obj::str_at(&s, &format!("/data/{key}"))?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(raw).ok()
}

/// `value` is a path under a Secret volume's mount: write that key of the Secret to `dir` and
/// return the copy's path.
fn mounted_secret_file(
    site: &Site,
    pod: &Value,
    container: &Value,
    value: &str,
    dir: &std::path::Path,
) -> Result<Option<PathBuf>> {
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let (Some(mount), Some(vol)) = (m["mountPath"].as_str(), m["name"].as_str()) else {
            continue;
        };
        let Some(key) = value.strip_prefix(mount).map(|k| k.trim_start_matches('/')) else {
            continue;
        };
        let secret = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == vol)
            .and_then(|v| v.pointer("/secret/secretName"))
            .and_then(Value::as_str);
        let (Some(secret), false) = (secret, key.is_empty()) else {
            continue;
        };
        let Some(content) = secret_value(site, secret, key) else {
            continue;
        };
        std::fs::create_dir_all(dir).map_err(|e| DrillError::io("creating a run folder", e))?;
        let file = dir.join(key.replace('/', "_"));
        std::fs::write(&file, content)
            .map_err(|e| DrillError::io(format!("writing {}", file.display()), e))?;
        return Ok(Some(file));
    }
    Ok(None)
}
