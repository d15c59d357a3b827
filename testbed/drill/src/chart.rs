//! Installing the project's chart into drill sites with the real `helm` and `kubectl` binaries, the
//! way the README tells users to.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use pgdr_minicluster::Site;

use crate::error::{DrillError, Result};
use crate::options::workspace;

/// Release name the drill installs (the README's).
pub const RELEASE: &str = "patroni";

/// Where helm, kubectl, the chart and the drill overlay are.
#[derive(Debug, Clone)]
pub struct Chart {
    pub helm: PathBuf,
    pub kubectl: PathBuf,
    /// The chart folder (`chart/`).
    pub dir: PathBuf,
    /// `testbed/drill/values-drill.yaml`, applied after the site's values file.
    pub overlay: PathBuf,
}

/// `$PGDR_TOOLS/bin/<name>` (what `make deps` installs), else `<name>` from PATH.
fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os(pgdr_patroni_harness::ENV_TOOLS)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".tools"));
    let p = dir.join("bin").join(name);
    if p.is_file() { p } else { PathBuf::from(name) }
}

impl Chart {
    /// The workspace's chart and overlay, the project-local helm and kubectl.
    pub fn locate() -> Result<Chart> {
        let c = Chart {
            helm: tool("helm"),
            kubectl: tool("kubectl"),
            dir: workspace().join("chart"),
            overlay: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("values-drill.yaml"),
        };
        for p in [&c.dir, &c.overlay] {
            if !p.exists() {
                return Err(DrillError::Path {
                    path: p.clone(),
                    reason: "missing (the drill runs from the workspace)".into(),
                });
            }
        }
        Ok(c)
    }

    /// `helm upgrade --install -n <ns> -f <site values> -f values-drill.yaml [--set ...] patroni
    /// ./chart`. Helm always waits for hooks (the port-patch Job); `wait` adds `--wait` for the
    /// workloads, which a standby site must not use: its pod only gets ready after the hook has
    /// written the tunnel port.
    pub async fn upgrade(
        &self,
        site: &Site,
        site_values: &str,
        sets: &[String],
        wait: bool,
        timeout: Duration,
    ) -> Result<String> {
        let mut cmd = Command::new(&self.helm);
        cmd.arg("upgrade")
            .arg("--install")
            .arg("--kubeconfig")
            .arg(site.kubeconfig())
            .arg("-n")
            .arg(site.namespace())
            .arg("-f")
            .arg(self.dir.join(site_values))
            .arg("-f")
            .arg(&self.overlay)
            .arg("--timeout")
            .arg(format!("{}s", timeout.as_secs()));
        for s in sets {
            cmd.arg("--set").arg(s);
        }
        if wait {
            cmd.arg("--wait");
        }
        cmd.arg(RELEASE).arg(&self.dir);
        run(
            cmd,
            None,
            &format!("helm upgrade --install on site {}", site.name()),
        )
        .await
    }

    /// The README's "Credentials" command, verbatim apart from `--kubeconfig` and the source's
    /// name: copies the Secret `secret` of the site running the database (the primary site's
    /// generated one; after a failover GoldDR's `patroni-dr-credentials`) to the site to install as
    /// a standby as `patroni-dr-credentials`, no password on any command line.
    pub async fn copy_credentials(&self, from: &Site, secret: &str, to: &Site) -> Result<()> {
        let template = "{{\"apiVersion: v1\\nkind: Secret\\nmetadata:\\n  name: patroni-dr-credentials\\ntype: Opaque\\ndata:\\n\"}}{{range $k, $v := .data}}{{printf \"  %s: %s\\n\" $k $v}}{{end}}";
        let mut get = Command::new(&self.kubectl);
        get.arg("--kubeconfig")
            .arg(from.kubeconfig())
            .args(["-n", from.namespace(), "get", "secret", secret])
            .arg("-o")
            .arg(format!("go-template={template}"));
        let manifest = run(get, None, "kubectl get secret (primary site)").await?;
        let mut apply = Command::new(&self.kubectl);
        apply.arg("--kubeconfig").arg(to.kubeconfig()).args([
            "-n",
            to.namespace(),
            "apply",
            "-f",
            "-",
        ]);
        run(
            apply,
            Some(manifest.as_bytes()),
            "kubectl apply secret (standby site)",
        )
        .await
        .map(|_| ())
    }
}

/// Runs a command to completion (killed if the future is dropped) and returns its stdout.
async fn run(mut cmd: Command, stdin: Option<&[u8]>, what: &str) -> Result<String> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| DrillError::io(format!("starting {what}"), e))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .await
            .map_err(|e| DrillError::io(format!("writing to {what}"), e))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| DrillError::io(format!("waiting for {what}"), e))?;
    if !out.status.success() {
        return Err(DrillError::Command {
            what: what.into(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `n` lines of a text file ("" if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
