//! The drill's commands: `up` (both sites with the chart until Ctrl-C) and `rehearse` (the chart
//! installed on both, Gold lost, GoldDR promoted; with `--switchover`, the planned round trip with
//! the kubectl plugin instead).

use std::path::PathBuf;
use std::time::Duration;

use pgdr_minicluster::Site;

use crate::error::{DrillError, Result};
use crate::gslb::{Gslb, GslbConfig};
use crate::options::{Options, REHEARSE_CRON_EVERY};
use crate::stage::Stage;
use crate::switchover;

pub const USAGE: &str = "usage: pgdr-drill <up|rehearse [--switchover]> [--namespace NS] [--dir DIR] [--cron-every SECS] [--members N] [--log FILE]";

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Up(Options),
    Rehearse(Options),
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
                "--log" => o.log_file = Some(PathBuf::from(val()?)),
                "--switchover" if verb == "rehearse" => o.switchover = true,
                "--members" => {
                    o.members = Some(
                        val()?
                            .parse()
                            .ok()
                            .filter(|n| (1..=5).contains(n))
                            .ok_or(format!("--members: a number from 1 to 5\n{USAGE}"))?,
                    )
                }
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

/// How to point the kubectl plugin at both sites: the config file written for them, and the
/// `status` command, run once here to show it works.
async fn plugin_sheet(gold: &Site, golddr: &Site) -> String {
    let plugin = match switchover::Plugin::for_sites(gold, golddr) {
        Ok(p) => p,
        Err(e) => return format!("kubectl pgdr: {e}\n"),
    };
    let mut s = format!(
        "kubectl pgdr (the plugin: {bin}; copy it onto PATH, or `make plugin` for the static build):\n  \
         config for both sites: {cfg}\n  export KUBECTL_PGDR_CONFIG={cfg}\n  kubectl pgdr status\n  \
         (without PATH: {bin} --config {cfg} status)\n  \
         then e.g. `kubectl pgdr switchover --to golddr`, and back with `--to gold` (docs/runbooks/)\n",
        bin = plugin.bin.display(),
        cfg = plugin.config.display(),
    );
    // Patroni publishes the standby's streaming state within a loop or two of the install.
    if let Err(e) = plugin
        .wait_healthy(gold.name(), Duration::from_secs(60))
        .await
    {
        s += &format!("the pair is not healthy yet: {e}\n");
    }
    match plugin.run(&["status"], None).await {
        Ok(r) => {
            s += &format!(
                "$ kubectl pgdr status   (exit {})\n{}{}",
                r.code.unwrap_or(-1),
                r.stdout,
                r.stderr
            )
        }
        Err(e) => s += &format!("kubectl pgdr status could not run: {e}\n"),
    }
    s
}

impl Command {
    pub fn options(&self) -> &Options {
        match self {
            Command::Up(o) | Command::Rehearse(o) => o,
        }
    }
}

pub async fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Up(o) => {
            // GoldDR's failover agent runs `auto` with the emulated GSLB as its witness, as in
            // `rehearse`; it lives as long as the sites.
            let gslb = Gslb::start(GslbConfig::drill(), &["gold", "golddr"]).await?;
            let stage = Stage::up_with_gslb(&o, &gslb, &[], &[], true).await?;
            if let Some(gold) = &stage.gold {
                println!("{}", cheat_sheet(gold));
            }
            println!("{}", cheat_sheet(&stage.golddr));
            if let Some(gold) = &stage.gold {
                println!("{}", plugin_sheet(gold, &stage.golddr).await);
            }
            println!("Both sites are running; Ctrl-C stops them.");
            tokio::signal::ctrl_c()
                .await
                .map_err(|e| DrillError::io("waiting for Ctrl-C", e))?;
            stage.shutdown().await;
            Ok(())
        }
        Command::Rehearse(mut o) => {
            // CronJobs on their real (minutely) schedule would make the rehearsal slow for nothing.
            o.cron_every.get_or_insert(REHEARSE_CRON_EVERY);
            if o.switchover {
                println!(
                    "pgdr-drill rehearse --switchover: gold and golddr with the real chart, a steady writer, then gold -> golddr -> gold with kubectl pgdr"
                );
                let report = switchover::rehearse(&o, &switchover::ROUND_TRIP).await?;
                println!("\n{}", report.render(false));
                return if report.passed() {
                    Ok(())
                } else {
                    Err(DrillError::Check(report.failures.join("; ")))
                };
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn switchover_is_a_rehearse_flag() {
        let Ok(Command::Rehearse(o)) = Command::parse(&args(&["rehearse", "--switchover"])) else {
            panic!("rehearse --switchover parses");
        };
        assert!(o.switchover);
        let Ok(Command::Rehearse(o)) = Command::parse(&args(&["rehearse"])) else {
            panic!("rehearse parses");
        };
        assert!(!o.switchover);
        assert!(Command::parse(&args(&["up", "--switchover"])).is_err());
    }

    #[test]
    fn members_per_site_is_a_small_number() {
        let Ok(Command::Up(o)) = Command::parse(&args(&["up", "--members", "2"])) else {
            panic!("up --members 2 parses");
        };
        assert_eq!(o.members, Some(2));
        for bad in ["0", "9", "two"] {
            let err = Command::parse(&args(&["up", "--members", bad])).unwrap_err();
            assert!(err.contains("--members: a number from 1 to 5"), "{err}");
        }
    }
}
