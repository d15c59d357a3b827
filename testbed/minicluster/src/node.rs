//! What the kubelet shares with the controllers and the site loop: the node's folders, images,
//! processes and timings.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::image::ImageMap;
use crate::procs::Procs;

/// Timings of the emulated kubelet, shortened for drills.
#[derive(Debug, Clone)]
pub struct KubeletTimings {
    /// Upper bound on a probe's `periodSeconds` (and `initialDelaySeconds`).
    pub probe_period_max: Duration,
    /// First restart delay of a crashed container; doubles up to `restart_backoff_max`.
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    /// Upper bound on `terminationGracePeriodSeconds`.
    pub termination_grace_max: Duration,
}

impl Default for KubeletTimings {
    fn default() -> Self {
        KubeletTimings {
            probe_period_max: Duration::from_secs(1),
            restart_backoff: Duration::from_millis(500),
            restart_backoff_max: Duration::from_secs(10),
            termination_grace_max: Duration::from_secs(30),
        }
    }
}

/// What the kubelet shares with the rest of the site.
pub(crate) struct Node {
    pub site: String,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub images: ImageMap,
    pub procs: Procs,
    pub timings: KubeletTimings,
    pub http: reqwest::Client,
    /// The fsGroup an admission plugin gives pods that set none (OpenShift's restricted-v2 SCC
    /// takes it from the namespace's range); None: pods keep what they have.
    pub default_fs_group: Option<i64>,
    /// Pods (namespace/name) the kubelet holds: admitted, and not yet stopped and cleaned up.
    /// A pod deleted from the API stays here until its processes are gone and its folder removed,
    /// so a StatefulSet must not start its successor before (two PostgreSQL on one volume, or the
    /// old pod's clean-up removing the new pod's folder, which has the same name).
    pub held: Mutex<HashSet<String>>,
}

impl Node {
    /// Whether the kubelet still holds a pod of this name (running or stopping).
    pub fn holds(&self, ns: &str, name: &str) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&format!("{ns}/{name}"))
    }
}

/// Resolves once `stop` is true (or its sender is gone); holds no borrow across awaits.
pub(crate) async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
