//! What every drill command is started with, and where the workspace's pieces are.

use std::path::PathBuf;

/// Seconds between CronJob runs in `rehearse` unless `--cron-every` says otherwise.
pub const REHEARSE_CRON_EVERY: u64 = 3;

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub namespace: String,
    /// Where site files go (default: a fresh folder in /tmp, removed at exit).
    pub dir: Option<PathBuf>,
    /// Fire CronJobs every N seconds instead of on their schedule.
    pub cron_every: Option<u64>,
    /// The full logs (the drill's tracing, then every pod's logs); None: no file.
    pub log_file: Option<PathBuf>,
    /// Secrets created on GoldDR before its chart is installed (what a user creates by hand for
    /// `existingSecret` values, e.g. the HTTP witness URL): name → (key → value).
    pub golddr_secrets: Vec<(String, Vec<(String, String)>)>,
    /// The same for Gold, created before its chart is installed.
    pub gold_secrets: Vec<(String, Vec<(String, String)>)>,
    /// Patroni members per site (`patroni.replicas` on both sites); None: the drill overlay's one.
    pub members: Option<u32>,
    /// `rehearse --switchover`: the planned round trip with the kubectl plugin instead of losing Gold.
    pub switchover: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: "abc123-dev".into(),
            dir: None,
            cron_every: None,
            log_file: None,
            golddr_secrets: Vec::new(),
            gold_secrets: Vec::new(),
            members: None,
            switchover: false,
        }
    }
}

/// The workspace root (the chart, `docker/`, `.tools`).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The workspace's `target/debug` (where the three product binaries are built).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("debug")
}
