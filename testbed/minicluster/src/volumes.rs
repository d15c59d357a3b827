//! Materialising a pod's volumes as folders, and each container's root with its mounts.
//!
//! Layout under the site folder (short, because PostgreSQL's socket path must stay under ~100
//! bytes):
//! ```text
//! <site>/pvc/<namespace>/<claim>/          persistentVolumeClaim: outlives pods, like a PV
//! <site>/pods/<namespace>/<pod>/v/<vol>/   emptyDir, secret, projected, downwardAPI (pod lifetime)
//! <site>/pods/<namespace>/<pod>/<ctr>/     the container's root R (DRILL_ROOT); R/<mountPath> is a
//!                                          symlink to the volume (ConfigMaps: a per-container copy
//!                                          with paths rewritten, see view.rs)
//! <site>/pods/<namespace>/<pod>/<ctr>.log  stdout and stderr, appended across restarts
//! ```
//!
//! Ownership: when the pod has an fsGroup (its own or one an admission plugin injected, see
//! `SiteConfig::default_fs_group`), each mount of a persistentVolumeClaim applies the kubelet's
//! ownership change ([`apply_fs_group`]), as block storage gets on a real node. Other volume types
//! keep the drill's simpler ownership (files owned by the user the image runs as): the drill cannot
//! give container processes the fsGroup as a supplementary group, so a group-only secret would be
//! unreadable here while it is readable on a real node.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use pgdr_patroni_harness::RunAs;
use serde_json::Value;

use crate::env::{self, Refs};
use crate::error::{Error, Result};
use crate::view::View;

pub(crate) fn io<T>(r: std::io::Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| Error::io(what(), e))
}

pub(crate) fn mkdir(path: &Path, mode: u32) -> Result<()> {
    io(std::fs::create_dir_all(path), || {
        format!("creating {}", path.display())
    })?;
    io(
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)),
        || format!("chmod {}", path.display()),
    )
}

/// `fsGroupChangePolicy`: when the kubelet changes a volume's ownership on mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsGroupPolicy {
    /// Every mount (the Kubernetes default).
    Always,
    /// Only when the volume root does not already have the group and permissions.
    OnRootMismatch,
}

impl FsGroupPolicy {
    /// The pod's `securityContext.fsGroupChangePolicy` (absent or unknown: `Always`).
    pub fn from_spec(s: Option<&str>) -> Self {
        match s {
            Some("OnRootMismatch") => FsGroupPolicy::OnRootMismatch,
            _ => FsGroupPolicy::Always,
        }
    }
}

/// Group read/write, as the kubelet adds on every file (`rwMask`).
const GROUP_RW: u32 = 0o060;
/// Added on directories: group search and setgid (so new files get the group).
const DIR_EXTRA: u32 = 0o010 | 0o2000;

/// Whether the volume root already has `gid` and the bits the kubelet would add (the kubelet's
/// `requiresPermissionChange`, which decides `OnRootMismatch`).
fn root_matches(root: &Path, gid: u32) -> bool {
    std::fs::metadata(root).is_ok_and(|m| {
        let mode = m.mode() & 0o7777;
        m.gid() == gid
            && m.is_dir()
            && mode & (GROUP_RW | 0o010) == GROUP_RW | 0o010
            && mode & 0o2000 != 0
    })
}

/// The kubelet's volume ownership change for an fsGroup (`SetVolumeOwnership`): every file and
/// folder below `root` gets group `gid` and group read/write, folders also group search and the
/// setgid bit; symlinks are re-grouped but never followed. A PostgreSQL data directory (0700)
/// becomes 02770, which PostgreSQL refuses ("data directory has invalid permissions") until
/// something restores 0700 (the Patroni image's entrypoint does).
///
/// With [`FsGroupPolicy::OnRootMismatch`] nothing is changed when the root already matches.
/// Returns whether anything was changed.
pub fn apply_fs_group(root: &Path, gid: u32, policy: FsGroupPolicy) -> Result<bool> {
    if policy == FsGroupPolicy::OnRootMismatch && root_matches(root, gid) {
        return Ok(false);
    }
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = io(std::fs::symlink_metadata(&path), || {
            format!("stat {}", path.display())
        })?;
        io(std::os::unix::fs::lchown(&path, None, Some(gid)), || {
            format!("chgrp {gid} {}", path.display())
        })?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut mode = (meta.mode() & 0o7777) | GROUP_RW;
        if meta.is_dir() {
            mode |= DIR_EXTRA;
            let entries = io(std::fs::read_dir(&path), || {
                format!("listing {}", path.display())
            })?;
            todo.extend(entries.flatten().map(|e| e.path()));
        }
        io(
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)),
            || format!("chmod {}", path.display()),
        )?;
    }
    Ok(true)
}

fn chown(path: &Path, owner: Option<&RunAs>, uid: bool) -> Result<()> {
    if let Some(r) = owner.filter(|r| r.switch) {
        let u = uid.then_some(r.uid);
        io(std::os::unix::fs::lchown(path, u, Some(r.gid)), || {
            format!("chown {}", path.display())
        })?;
    }
    Ok(())
}

pub(crate) fn write_file(
    path: &Path,
    data: &[u8],
    mode: u32,
    owner: Option<&RunAs>,
    secret: bool,
) -> Result<()> {
    if let Some(parent) = path.parent() {
        mkdir(parent, 0o755)?;
    }
    io(std::fs::write(path, data), || {
        format!("writing {}", path.display())
    })?;
    // Secret files keep the drill's owner and get the pod's group (like fsGroup), so a group-
    // readable key (0440) is accepted by PostgreSQL when it runs as another user. Without a user
    // switch there is no group to share: keep the owner's bits only.
    let mode = if secret && owner.is_none_or(|o| !o.switch) {
        mode & 0o700
    } else {
        mode
    };
    io(
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)),
        || format!("chmod {}", path.display()),
    )?;
    chown(path, owner, false)
}

/// Decoded data of a Secret (base64 `data`) or ConfigMap (`data` + base64 `binaryData`).
pub(crate) fn decoded(obj: &Value, secret: bool) -> BTreeMap<String, Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = BTreeMap::new();
    let mut add = |field: &str, base64: bool| {
        if let Some(m) = obj.get(field).and_then(Value::as_object) {
            for (k, v) in m {
                let s = v.as_str().unwrap_or("");
                let bytes = if base64 {
                    b64.decode(s).unwrap_or_default()
                } else {
                    s.as_bytes().to_vec()
                };
                out.insert(k.clone(), bytes);
            }
        }
    };
    if secret {
        add("data", true);
    } else {
        add("data", false);
        add("binaryData", true);
    }
    out
}

/// Text view of decoded data, for the env resolver.
pub(crate) fn as_text(data: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    data.iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

/// The Secrets and ConfigMaps of a namespace, raw.
#[derive(Default)]
pub(crate) struct Sources {
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    pub configmaps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl Sources {
    pub fn refs(&self) -> Refs {
        Refs {
            secrets: self
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), as_text(v)))
                .collect(),
            configmaps: self
                .configmaps
                .iter()
                .map(|(k, v)| (k.clone(), as_text(v)))
                .collect(),
        }
    }
}

/// Where each of a pod's volumes lives, and what it is.
pub(crate) struct PodVolumes {
    /// Volume name → (local folder, ConfigMap source for per-container copies).
    vols: BTreeMap<String, (PathBuf, Option<Value>)>,
}

fn items_or_all(
    spec: &Value,
    data: &BTreeMap<String, Vec<u8>>,
) -> Vec<(String, Vec<u8>, Option<u32>)> {
    match spec.get("items").and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .filter_map(|i| {
                let key = i.get("key")?.as_str()?;
                let path = i.get("path").and_then(Value::as_str).unwrap_or(key);
                let mode = i.get("mode").and_then(Value::as_u64).map(|m| m as u32);
                Some((path.to_string(), data.get(key)?.clone(), mode))
            })
            .collect(),
        None => data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), None))
            .collect(),
    }
}

fn mode_of(spec: &Value, default: u32) -> u32 {
    spec.get("defaultMode")
        .and_then(Value::as_u64)
        .map(|m| m as u32)
        .unwrap_or(default)
}

/// A materialising context for one pod.
pub(crate) struct Materialiser<'a> {
    pub pod: &'a Value,
    pub pod_ip: &'a str,
    pub pod_dir: &'a Path,
    pub pvc_dir: &'a Path,
    pub sources: &'a Sources,
    pub owner: Option<&'a RunAs>,
    /// The pod's effective fsGroup and change policy (applied to persistentVolumeClaims).
    pub fs_group: Option<(u32, FsGroupPolicy)>,
    /// With RBAC on: the pod's ServiceAccount token (projected `serviceAccountToken` files) and
    /// the cluster CA (`kube-root-ca.crt`).
    pub token: Option<&'a str>,
    pub ca_pem: Option<&'a str>,
}

impl Materialiser<'_> {
    fn missing(&self, what: &str, name: &str) -> Error {
        Error::ContainerConfig {
            pod: crate::api::obj::name(self.pod).to_string(),
            container: "(volumes)".into(),
            reason: format!("{what} {name:?} not found"),
        }
    }

    fn files(
        &self,
        dir: &Path,
        files: Vec<(String, Vec<u8>, Option<u32>)>,
        mode: u32,
        secret: bool,
    ) -> Result<()> {
        for (path, data, m) in files {
            write_file(
                &dir.join(path),
                &data,
                m.unwrap_or(mode),
                self.owner,
                secret,
            )?;
        }
        Ok(())
    }

    /// Writes one projected/secret source into `dir`.
    fn source(&self, dir: &Path, src: &Value, mode: u32) -> Result<()> {
        if let Some(s) = src.get("secret") {
            let name = s.get("name").and_then(Value::as_str).unwrap_or("");
            match self.sources.secrets.get(name) {
                Some(d) => self.files(dir, items_or_all(s, d), mode, true)?,
                None if s.get("optional").and_then(Value::as_bool) == Some(true) => {}
                None => return Err(self.missing("Secret", name)),
            }
        }
        if let Some(c) = src.get("configMap") {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            match self.sources.configmaps.get(name) {
                Some(d) => self.files(dir, items_or_all(c, d), mode, false)?,
                // kube-root-ca.crt is published by the control plane in every namespace.
                None if name == "kube-root-ca.crt" => write_file(
                    &dir.join("ca.crt"),
                    self.ca_pem.unwrap_or("").as_bytes(),
                    mode,
                    self.owner,
                    false,
                )?,
                None if c.get("optional").and_then(Value::as_bool) == Some(true) => {}
                None => return Err(self.missing("ConfigMap", name)),
            }
        }
        if let Some(d) = src.get("downwardAPI") {
            for item in d
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let path = item.get("path").and_then(Value::as_str).unwrap_or("x");
                let field = item
                    .pointer("/fieldRef/fieldPath")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let v = env::field(self.pod, field, self.pod_ip).unwrap_or_default();
                write_file(&dir.join(path), v.as_bytes(), mode, self.owner, false)?;
            }
        }
        if let Some(t) = src.get("serviceAccountToken") {
            // Without RBAC no credentials exist: programs use the site's KUBECONFIG.
            let path = t.get("path").and_then(Value::as_str).unwrap_or("token");
            let token = self.token.unwrap_or("drill-no-token");
            write_file(&dir.join(path), token.as_bytes(), mode, self.owner, true)?;
        }
        Ok(())
    }

    /// Creates every volume of the pod except ConfigMaps (copied per container).
    pub fn volumes(&self) -> Result<PodVolumes> {
        let mut vols = BTreeMap::new();
        let vdir = self.pod_dir.join("v");
        for vol in self
            .pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = vol.get("name").and_then(Value::as_str).unwrap_or("");
            let dir = vdir.join(name);
            if let Some(c) = vol.get("configMap") {
                let cm = c.get("name").and_then(Value::as_str).unwrap_or("");
                if !self.sources.configmaps.contains_key(cm)
                    && c.get("optional").and_then(Value::as_bool) != Some(true)
                {
                    return Err(self.missing("ConfigMap", cm));
                }
                vols.insert(name.to_string(), (dir, Some(c.clone())));
                continue;
            }
            if let Some(claim) = vol
                .pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
            {
                let d = self.pvc_dir.join(claim);
                if !d.exists() {
                    mkdir(&d, 0o770)?;
                    chown(&d, self.owner, true)?;
                }
                if let Some((gid, policy)) = self.fs_group
                    && apply_fs_group(&d, gid, policy)?
                {
                    tracing::info!(pod = %crate::api::obj::name(self.pod), claim, fs_group = gid, ?policy, "volume ownership changed for fsGroup");
                }
                vols.insert(name.to_string(), (d, None));
                continue;
            }
            if let Some(host) = vol.pointer("/hostPath/path").and_then(Value::as_str) {
                vols.insert(name.to_string(), (PathBuf::from(host), None));
                continue;
            }
            mkdir(&dir, 0o755)?;
            if vol.get("emptyDir").is_some() {
                // emptyDir is world-writable in Kubernetes.
                mkdir(&dir, 0o777)?;
            } else if let Some(s) = vol.get("secret") {
                let sname = s.get("secretName").and_then(Value::as_str).unwrap_or("");
                let src = serde_json::json!({"secret": {"name": sname, "items": s.get("items"), "optional": s.get("optional")}});
                let src = strip_nulls(src);
                self.source(&dir, &src, mode_of(s, 0o644))?;
            } else if let Some(p) = vol.get("projected") {
                for src in p
                    .get("sources")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.source(&dir, src, mode_of(p, 0o644))?;
                }
            } else if let Some(d) = vol.get("downwardAPI") {
                self.source(
                    &dir,
                    &serde_json::json!({"downwardAPI": d}),
                    mode_of(d, 0o644),
                )?;
            }
            vols.insert(name.to_string(), (dir, None));
        }
        Ok(PodVolumes { vols })
    }

    /// Builds a container's root: symlinks for its mounts, copies of its ConfigMaps with paths
    /// rewritten by `view` (which must already map every mount).
    pub fn container_root(
        &self,
        vols: &PodVolumes,
        container: &Value,
        root: &Path,
        view: &View,
    ) -> Result<()> {
        let _ = std::fs::remove_dir_all(root);
        mkdir(root, 0o755)?;
        chown(root, self.owner, true)?;
        let mut mounts: Vec<&Value> = container
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        // Parents before nested mounts.
        mounts.sort_by_key(|m| {
            m.get("mountPath")
                .and_then(Value::as_str)
                .unwrap_or("")
                .len()
        });
        for m in mounts {
            let name = m.get("name").and_then(Value::as_str).unwrap_or("");
            let mount_path = m.get("mountPath").and_then(Value::as_str).unwrap_or("/");
            let sub = m.get("subPath").and_then(Value::as_str).unwrap_or("");
            let Some((dir, cm)) = vols.vols.get(name) else {
                return Err(Error::ContainerConfig {
                    pod: crate::api::obj::name(self.pod).into(),
                    container: container
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    reason: format!("volumeMount {name:?} names no volume"),
                });
            };
            let at = root.join(mount_path.trim_start_matches('/'));
            if let Some(parent) = at.parent() {
                mkdir(parent, 0o755)?;
            }
            let target = if let Some(c) = cm {
                // Per-container copy: the file text is rewritten for this container's view.
                let ctr = container.get("name").and_then(Value::as_str).unwrap_or("");
                let copy = self.pod_dir.join("v").join(format!("{name}.{ctr}"));
                let _ = std::fs::remove_dir_all(&copy);
                mkdir(&copy, 0o755)?;
                let cname = c.get("name").and_then(Value::as_str).unwrap_or("");
                if let Some(data) = self.sources.configmaps.get(cname) {
                    for (path, bytes, mode) in items_or_all(c, data) {
                        let bytes = match String::from_utf8(bytes) {
                            Ok(text) => view.rewrite(&text).into_bytes(),
                            Err(e) => e.into_bytes(),
                        };
                        write_file(
                            &copy.join(path),
                            &bytes,
                            mode.unwrap_or(mode_of(c, 0o644)),
                            self.owner,
                            false,
                        )?;
                    }
                }
                copy
            } else {
                dir.clone()
            };
            let target = if sub.is_empty() {
                target
            } else {
                target.join(sub)
            };
            if !sub.is_empty() && !target.exists() {
                mkdir(&target, 0o777)?;
            }
            let _ = std::fs::remove_file(&at);
            io(std::os::unix::fs::symlink(&target, &at), || {
                format!("linking {} to {}", at.display(), target.display())
            })?;
        }
        Ok(())
    }
}

fn strip_nulls(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
        for x in m.values_mut() {
            *x = strip_nulls(x.take());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    /// A volume as Patroni leaves it: root 0770, PostgreSQL's data directory 0700 with a file.
    fn volume(root_mode: u32) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("pgdata");
        let data = root.join("pgroot").join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("PG_VERSION"), "18\n").unwrap();
        std::fs::set_permissions(
            data.join("PG_VERSION"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(root_mode)).unwrap();
        (t, root)
    }

    /// Our own group: chgrp to it needs no privilege, so the test runs as any user.
    fn own_gid(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().gid()
    }

    #[test]
    fn fs_group_makes_the_data_directory_group_writable_and_setgid() {
        let (_t, root) = volume(0o770);
        let gid = own_gid(&root);
        assert!(apply_fs_group(&root, gid, FsGroupPolicy::Always).unwrap());
        let data = root.join("pgroot/data");
        // What PostgreSQL then refuses: "data directory has invalid permissions".
        assert_eq!(mode(&data), 0o2770);
        assert_eq!(mode(&root), 0o2770);
        assert_eq!(mode(&data.join("PG_VERSION")), 0o660);
        assert_eq!(std::fs::metadata(&data).unwrap().gid(), gid);
        // Every mount again: a restored 0700 is undone by the next one.
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(apply_fs_group(&root, gid, FsGroupPolicy::Always).unwrap());
        assert_eq!(mode(&data), 0o2770);
    }

    #[test]
    fn on_root_mismatch_skips_a_matching_root_only() {
        // The root already has the group and bits (a previous mount): nothing below is touched.
        let (_t, root) = volume(0o2770);
        let gid = own_gid(&root);
        assert!(!apply_fs_group(&root, gid, FsGroupPolicy::OnRootMismatch).unwrap());
        assert_eq!(mode(&root.join("pgroot/data")), 0o700);
        // A root that does not match (here: no setgid, as a volume prepared elsewhere or owned by
        // another group): the whole tree is changed, the data directory included.
        let (_t2, root2) = volume(0o750);
        assert!(apply_fs_group(&root2, gid, FsGroupPolicy::OnRootMismatch).unwrap());
        assert_eq!(mode(&root2.join("pgroot/data")), 0o2770);
    }

    #[test]
    fn symlinks_are_not_followed() {
        let (_t, root) = volume(0o770);
        let outside = tempfile::tempdir().unwrap();
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        apply_fs_group(&root, own_gid(&root), FsGroupPolicy::Always).unwrap();
        assert_eq!(mode(outside.path()), 0o700);
    }

    #[test]
    fn policy_from_the_pod_spec() {
        assert_eq!(FsGroupPolicy::from_spec(None), FsGroupPolicy::Always);
        assert_eq!(
            FsGroupPolicy::from_spec(Some("Always")),
            FsGroupPolicy::Always
        );
        assert_eq!(
            FsGroupPolicy::from_spec(Some("OnRootMismatch")),
            FsGroupPolicy::OnRootMismatch
        );
    }
}
