//! The command line (`kubectl pgdr ...`): parsed once into [`Cli`], turned into [`Settings`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, ConfigError, HostMode, Overrides, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-pgdr",
    bin_name = "kubectl pgdr",
    version,
    about = "One view of both Patroni DR sites, and the commands to move the primary between them",
    long_about = "Works only through the Kubernetes API of each site, one kubeconfig context per site:\n  \
                  kubectl pgdr status --site gold=GOLD_CONTEXT --site golddr=GOLDDR_CONTEXT\n\
                  or with a config file (--config) naming the sites, contexts and namespaces."
)]
pub struct Cli {
    /// A site and its kubeconfig context, NAME=CONTEXT (give both sites).
    #[arg(long = "site", value_name = "NAME=CONTEXT", global = true)]
    pub sites: Vec<String>,
    /// YAML file with the sites (name, context, kubeconfig, namespace) and chart names.
    #[arg(long, global = true, env = "KUBECTL_PGDR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Namespace on both sites (default: the context's namespace).
    #[arg(long, short = 'n', global = true)]
    pub namespace: Option<String>,
    /// The chart's fullname (release name or fullnameOverride), default `patroni`.
    #[arg(long, global = true)]
    pub fullname: Option<String>,
    /// Patroni scope (`patroni.scope`), default the fullname.
    #[arg(long, global = true)]
    pub scope: Option<String>,
    /// The replication slot between the sites (the chart's `replication.slotName`). Default:
    /// read from the failover agents' CronJobs or the standby site's `standby_cluster`.
    #[arg(long, global = true)]
    pub slot_name: Option<String>,
    /// How standby_cluster names the tunnel Service: `dns` (default) or `clusterIP`.
    #[arg(long, global = true)]
    pub tunnel_host_mode: Option<HostMode>,
    /// Timeout of each API request, in seconds.
    #[arg(long, global = true, default_value_t = 10)]
    pub request_timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    Yaml,
}

/// Which of a site's pieces `logs` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Component {
    Patroni,
    Readiness,
    Agent,
    All,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Both sites side by side; exits 1 when the pair is unhealthy.
    Status {
        #[arg(long, short = 'o', value_enum, default_value = "text")]
        output: Output,
        /// Lag (bytes) above which the pair counts as unhealthy.
        #[arg(long, default_value_t = 16 * 1024 * 1024)]
        max_lag_bytes: u64,
        /// Show the pair again every --interval seconds until interrupted (or --count views);
        /// the exit code is the last view's.
        #[arg(long, short = 'w')]
        watch: bool,
        /// Seconds between two views with --watch.
        #[arg(long, default_value_t = 5, requires = "watch")]
        interval: u64,
        /// Stop after this many views with --watch.
        #[arg(long, requires = "watch")]
        count: Option<u64>,
    },
    /// psql on a member of SITE (default its leader: the primary, or the read-only standby
    /// leader), through `kubectl exec` with the site's context. The superuser's password is
    /// read inside the pod and never passes through this command. Arguments after `--` go to
    /// psql (e.g. `-- -c 'select 1'`).
    Psql {
        site: String,
        /// The member Pod (default: the site's leader).
        #[arg(long)]
        member: Option<String>,
        /// Database to connect to.
        #[arg(long, short = 'd', default_value = "postgres")]
        dbname: String,
        /// Print the kubectl command instead of running it.
        #[arg(long)]
        print: bool,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Logs of SITE's pieces through `kubectl logs` with the site's context: Patroni and the
    /// readiness sidecar of a member (default the leader), and the failover agent's latest run.
    Logs {
        site: String,
        #[arg(long, value_enum, default_value = "all")]
        component: Component,
        /// The member Pod (default: the site's leader).
        #[arg(long)]
        member: Option<String>,
        /// Lines from the end of each log.
        #[arg(long, default_value_t = 100)]
        tail: u64,
        /// Keep streaming (one component only).
        #[arg(long, short = 'f')]
        follow: bool,
        /// Print the kubectl commands instead of running them.
        #[arg(long)]
        print: bool,
    },
    /// Hold the failover agent (one site, or both): it decides nothing until released.
    Hold { site: Option<String> },
    /// Release the hold (one site, or both).
    Release { site: Option<String> },
    /// Make SITE read-only in favour of its peer: a running standby follows the peer at once;
    /// a site that may hold writes of its own is put on hold, and its failover agent records and
    /// preserves them before it rejoins the peer (rewind or re-clone).
    Fence {
        site: String,
        /// Needed to fence the site holding the newer promotion epoch (its newest writes are
        /// then discarded in favour of the peer; recorded and preserved first); the site's name
        /// is typed even with --yes.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Seconds to wait for the site to stop being writable.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Undo a fence: SITE runs as a primary again (refused while the peer is writable). Removes
    /// the failover agent's pgdr_fence too.
    Unfence {
        site: String,
        /// Needed while the peer is visibly alive (its API answers, its leader runs); the site's
        /// name is then typed even with --yes.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        yes: bool,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Approve the rewind of a fenced SITE (failover.rejoin: manual): sets
    /// pgdr_fence.rejoin_approved_at; the WAL it wrote past the fork is preserved first.
    Rejoin {
        site: String,
        #[arg(long)]
        yes: bool,
    },
    /// Vouch that SITE's peer did not promote past it (the peer site is down and stays a
    /// standby): SITE's writable primary is advertised although it has not seen its peer since
    /// it became primary.
    Advertise {
        site: String,
        #[arg(long)]
        yes: bool,
    },
    /// Manual failover: promote SITE (removes standby_cluster). Needs --force.
    Promote {
        site: String,
        /// Required: promoting by hand bypasses the failover agent's checks.
        #[arg(long)]
        force: bool,
        #[arg(long)]
        yes: bool,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Zero-loss planned switchover (and failback): hold, demote, catch up, promote, verify, release.
    Switchover {
        /// The site to make primary.
        #[arg(long, value_name = "SITE", required_unless_present_any = ["resume", "abort"])]
        to: Option<String>,
        /// Continue the recorded switchover.
        #[arg(long)]
        resume: bool,
        /// Give the recorded switchover up before the target is promoted: the source takes
        /// writes again (at its own epoch), the target stays a standby, the holds are released.
        /// Recorded and resumable like every step.
        #[arg(long, conflicts_with_all = ["to", "resume", "force"])]
        abort: bool,
        /// Go ahead despite warnings (lag over the bound, standby not streaming); during catch-up,
        /// promote anyway after --force-after seconds. Prints what may be lost first.
        #[arg(long)]
        force: bool,
        /// Refuse to start when the target lags more than this (bytes).
        #[arg(long, default_value_t = 16 * 1024 * 1024)]
        max_lag_bytes: u64,
        /// With --force: seconds of catch-up before promoting anyway.
        #[arg(long, default_value_t = 60)]
        force_after: u64,
        /// Seconds each step may wait before the command stops (resumable).
        #[arg(long, default_value_t = 300)]
        step_timeout: u64,
    },
}

impl Cli {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let file = self.config.as_deref().map(config::read_file).transpose()?;
        let sites = self
            .sites
            .iter()
            .map(|s| config::parse_site_flag(s))
            .collect::<Result<_, _>>()?;
        config::resolve(
            file,
            &Overrides {
                sites,
                namespace: self.namespace.clone(),
                fullname: self.fullname.clone(),
                scope: self.scope.clone(),
                slot_name: self.slot_name.clone(),
                tunnel_host_mode: self.tunnel_host_mode,
            },
        )
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_issue_commands() {
        let cli = Cli::try_parse_from([
            "kubectl-pgdr",
            "status",
            "--site",
            "gold=a",
            "--site",
            "golddr=b",
            "-o",
            "json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Status {
                output: Output::Json,
                ..
            }
        ));
        assert_eq!(cli.settings().unwrap().sites[1].name, "golddr");
        let cli = Cli::try_parse_from(["kubectl-pgdr", "switchover", "--resume"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Switchover {
                resume: true,
                to: None,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["kubectl-pgdr", "switchover"]).is_err());
        let cli =
            Cli::try_parse_from(["kubectl-pgdr", "promote", "golddr", "--force", "--yes"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Promote {
                force: true,
                yes: true,
                ..
            }
        ));
        let cli = Cli::try_parse_from(["kubectl-pgdr", "--tunnel-host-mode", "clusterIP", "hold"])
            .unwrap();
        assert_eq!(cli.tunnel_host_mode, Some(HostMode::ClusterIp));
        assert!(Cli::try_parse_from(["kubectl-pgdr", "--tunnel-host-mode", "ip", "hold"]).is_err());
    }
}
