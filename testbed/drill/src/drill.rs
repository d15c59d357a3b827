//! The drill's commands: `up` (both sites until Ctrl-C) and `rehearse` (to be wired to the chart).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{DrillError, Result};
use crate::image::ImageMap;
use crate::platform::Platform;
use crate::site::{Site, SiteConfig};
use crate::workloads::{ControllerTimings, CronTiming};

/// Seconds between CronJob runs in `rehearse` unless `--cron-every` says otherwise.
pub const REHEARSE_CRON_EVERY: u64 = 3;

pub const USAGE: &str =
    "usage: pgdr-drill <up|rehearse> [--namespace NS] [--dir DIR] [--cron-every SECS]";

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Up(Options),
    Rehearse(Options),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub namespace: String,
    /// Where site files go (default: a fresh folder in /tmp, removed at exit).
    pub dir: Option<PathBuf>,
    /// Fire CronJobs every N seconds instead of on their schedule.
    pub cron_every: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            namespace: "abc123-dev".into(),
            dir: None,
            cron_every: None,
        }
    }
}

impl Command {
    pub fn parse(args: &[String]) -> std::result::Result<Command, String> {
        let mut it = args.iter();
        let verb = it.next().ok_or(USAGE)?;
        let mut o = Options::default();
        while let Some(a) = it.next() {
            let mut val = || {
                it.next()
                    .cloned()
                    .ok_or(format!("{a} needs a value\n{USAGE}"))
            };
            match a.as_str() {
                "--namespace" => o.namespace = val()?,
                "--dir" => o.dir = Some(PathBuf::from(val()?)),
                "--cron-every" => {
                    o.cron_every = Some(
                        val()?
                            .parse()
                            .map_err(|_| format!("--cron-every: not a number\n{USAGE}"))?,
                    )
                }
                _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
            }
        }
        match verb.as_str() {
            "up" => Ok(Command::Up(o)),
            "rehearse" => Ok(Command::Rehearse(o)),
            _ => Err(USAGE.to_string()),
        }
    }
}

/// The workspace's `target/debug` (where the three product binaries are built).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("debug")
}

/// The two sites and the platform between them.
pub struct Drill {
    pub gold: Site,
    pub golddr: Site,
    pub platform: Platform,
}

impl Drill {
    /// Starts `gold` (ClusterIPs 127.96/16) and `golddr` (127.97/16) with the project's images.
    pub async fn start(o: &Options) -> Result<Drill> {
        let tools = pgdr_patroni_harness::Tools::locate()?;
        // The chart's default PostgreSQL bin dir inside the image.
        let images = ImageMap::project(&target_dir(), &tools, "/usr/lib/postgresql/18/bin");
        let cfg = |name: &str, prefix: [u8; 2]| {
            let mut c = SiteConfig::new(name, &o.namespace, prefix, images.clone());
            c.dir = o.dir.clone();
            if let Some(s) = o.cron_every {
                c.controllers = ControllerTimings {
                    cron: CronTiming::Every(Duration::from_secs(s)),
                    ..ControllerTimings::default()
                };
            }
            c
        };
        let gold = Site::start(cfg("gold", [127, 96])).await?;
        let golddr = Site::start(cfg("golddr", [127, 97])).await?;
        let platform = Platform::start(&gold, &golddr).await?;
        Ok(Drill {
            gold,
            golddr,
            platform,
        })
    }

    pub async fn shutdown(self) {
        self.platform.stop().await;
        tokio::join!(self.gold.shutdown(), self.golddr.shutdown());
    }
}

fn cheat_sheet(site: &Site) -> String {
    format!(
        "site {name}: API {url}\n  export KUBECONFIG={kc}\n  kubectl --kubeconfig {kc} get pods,svc,endpoints -n {ns}\n  \
         container logs: {dir}/pods/{ns}/<pod>/<container>.log\n  \
         psql: psql -h <ClusterIP of the primary Service> -U postgres (ClusterIPs are 127.x addresses; NodePorts on {node})\n",
        name = site.name(),
        url = site.url(),
        kc = site.kubeconfig().display(),
        ns = site.namespace(),
        dir = site.dir().display(),
        node = site.node_ip(),
    )
}

pub async fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Up(o) => {
            let drill = Drill::start(&o).await?;
            println!("{}{}", cheat_sheet(&drill.gold), cheat_sheet(&drill.golddr));
            println!("Both sites are running; Ctrl-C stops them.");
            tokio::signal::ctrl_c()
                .await
                .map_err(|e| DrillError::io("waiting for Ctrl-C", e))?;
            drill.shutdown().await;
            Ok(())
        }
        Command::Rehearse(mut o) => {
            // CronJobs on their real (minutely) schedule would make the rehearsal slow for nothing.
            o.cron_every.get_or_insert(REHEARSE_CRON_EVERY);
            println!(
                "pgdr-drill rehearse: gold and golddr on this machine, the real chart, then gold is lost"
            );
            let report = crate::rehearse::rehearse(&o).await?;
            println!("\n{}", report.render(false));
            if report.passed() {
                Ok(())
            } else {
                Err(DrillError::Check(report.failures.join("; ")))
            }
        }
    }
}
