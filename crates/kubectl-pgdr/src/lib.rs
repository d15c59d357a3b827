//! `kubectl pgdr`: one view of both Patroni DR sites and the commands that move the primary
//! between them, through each site's Kubernetes API only.
//!
//! Layout: `config` (the two sites) → `kube_api` (observe, the few writes) → `plan` / `status`
//! (pure decisions over `model`) → `run` (the commands' loops). `main` only parses and exits.

#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod error;
pub mod kube_api;
pub mod model;
pub mod plan;
pub mod progress;
pub mod run;
pub mod shell;
pub mod status;

use std::time::{Duration, Instant};

pub use error::Error;

use cli::{Cli, Command};
use run::{Io, Pair2};

/// Exit codes (README "Exit codes"), so that a script can tell what happened:
/// 0 done / healthy; 1 the pair is unhealthy (`status`); 2 the configuration or the command line
/// is wrong (clap uses 2 for usage errors too); 3 refused or not confirmed: nothing was changed;
/// 4 did not finish in time or stopped mid-way: something may have changed, see `status`;
/// 5 a site's API (or the kubeconfig, the tunnel Service, the output) failed.
pub const EXIT_OK: i32 = 0;
pub const EXIT_UNHEALTHY: i32 = 1;
pub const EXIT_CONFIG: i32 = 2;
pub const EXIT_REFUSED: i32 = 3;
pub const EXIT_UNFINISHED: i32 = 4;
pub const EXIT_API: i32 = 5;

/// Runs one command; returns the process exit code.
pub async fn run(cli: Cli, io: &mut Io<'_>) -> Result<i32, Error> {
    let settings = cli.settings()?;
    let timeout = cli.request_timeout();
    let (a, b) = tokio::join!(
        kube_api::connect(&settings.sites[0], timeout),
        kube_api::connect(&settings.sites[1], timeout)
    );
    let pair = Pair2 {
        sites: [a?, b?],
        slot_name: settings.slot_name.clone(),
    };
    let site_ok = |name: &str| settings.site(name).map(|_| ());
    match &cli.command {
        Command::Status {
            output,
            max_lag_bytes,
            watch,
            interval,
            count,
        } => {
            let mut shown = 0u64;
            loop {
                if *watch {
                    run::watch_header(shown, *interval, *output, io)?;
                }
                let healthy = run::status(&pair, &settings, *output, *max_lag_bytes, io).await?;
                shown += 1;
                if !*watch || count.is_some_and(|c| shown >= c) {
                    return Ok(if healthy { EXIT_OK } else { EXIT_UNHEALTHY });
                }
                tokio::time::sleep(Duration::from_secs((*interval).max(1))).await;
            }
        }
        Command::Psql {
            site,
            member,
            dbname,
            print,
            args,
        } => {
            site_ok(site)?;
            let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
            let how = run::Shell {
                member: member.as_deref(),
                print: *print,
            };
            run::psql(&pair, site, &how, dbname, tty, args, io).await
        }
        Command::Logs {
            site,
            component,
            member,
            tail,
            follow,
            print,
        } => {
            site_ok(site)?;
            let how = run::Shell {
                member: member.as_deref(),
                print: *print,
            };
            run::logs(&pair, site, &how, *component, *tail, *follow, io).await
        }
        Command::Hold { site } => {
            run::hold(&pair, &settings, site.as_deref(), true, io).await?;
            Ok(EXIT_OK)
        }
        Command::Release { site } => {
            run::hold(&pair, &settings, site.as_deref(), false, io).await?;
            Ok(EXIT_OK)
        }
        Command::Fence {
            site,
            force,
            yes,
            timeout,
        } => {
            site_ok(site)?;
            run::fence(&pair, site, *force, *yes, Duration::from_secs(*timeout), io).await?;
            Ok(EXIT_OK)
        }
        Command::Unfence {
            site,
            force,
            yes,
            timeout,
        } => {
            site_ok(site)?;
            run::promote(
                &pair,
                site,
                plan::PromoteKind::Unfence,
                *force,
                *yes,
                Duration::from_secs(*timeout),
                io,
            )
            .await?;
            Ok(EXIT_OK)
        }
        Command::Advertise { site, yes } => {
            site_ok(site)?;
            run::advertise(&pair, site, *yes, io).await?;
            Ok(EXIT_OK)
        }
        Command::Rejoin { site, yes } => {
            site_ok(site)?;
            run::rejoin(&pair, site, *yes, io).await?;
            Ok(EXIT_OK)
        }
        Command::Promote {
            site,
            force,
            yes,
            timeout,
        } => {
            site_ok(site)?;
            run::promote(
                &pair,
                site,
                plan::PromoteKind::Promote,
                *force,
                *yes,
                Duration::from_secs(*timeout),
                io,
            )
            .await?;
            Ok(EXIT_OK)
        }
        Command::Switchover {
            to,
            resume,
            abort,
            force,
            max_lag_bytes,
            force_after,
            step_timeout,
        } => {
            if let Some(to) = to {
                site_ok(to)?;
            }
            let req = plan::Request {
                to: to.clone(),
                resume: *resume,
                force: *force,
                max_lag_bytes: *max_lag_bytes,
                force_after: Duration::from_secs(*force_after),
                abort: *abort,
            };
            run::switchover(&pair, &req, Duration::from_secs(*step_timeout), io).await?;
            Ok(EXIT_OK)
        }
    }
}

/// Standard streams, for `main`.
pub fn stdio<'a>(
    out: &'a mut dyn std::io::Write,
    err: &'a mut dyn std::io::Write,
    input: &'a mut dyn std::io::BufRead,
) -> Io<'a> {
    Io {
        out,
        err,
        input,
        started: Instant::now(),
    }
}

/// Logging to stderr: `RUST_LOG` (default `warn`, so the command's own lines stay readable).
pub fn init_logging() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
