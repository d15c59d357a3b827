//! `make bench-failover`: failover time, acknowledged commits lost and false promotions, for the
//! default policy and the prototype's, side by side. Options: `--runs N`, `--cuts N`,
//! `--cut-ms MS` (each short tunnel cut), `--dir DIR` (keep pod logs there, one subfolder per run).

use std::process::ExitCode;
use std::time::Duration;

use pgdr_drill::bench::{self, BenchOptions, Policy};

fn parse() -> Result<(BenchOptions, Vec<Policy>), String> {
    let mut o = BenchOptions::default();
    let mut policies = vec![Policy::default_policy(), Policy::prototype()];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = || -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{a} needs a number"))
        };
        match a.as_str() {
            "--runs" => o.runs = num()? as usize,
            "--cuts" => o.cuts_per_run = num()? as usize,
            "--cut-ms" => o.cut = Duration::from_millis(num()?),
            "--only-default" => policies.truncate(1),
            // Keep the sites' files (pod logs) in this folder.
            "--dir" => {
                o.drill.dir = Some(it.next().ok_or("--dir needs a folder")?.into());
            }
            _ => {
                return Err(format!(
                    "unknown argument {a:?} (--runs N --cuts N --cut-ms MS --dir DIR)"
                ));
            }
        }
    }
    Ok((o, policies))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let (o, policies) = match parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match bench::bench(&policies, &o).await {
        Ok(results) => {
            println!("{}", bench::table(&results, &o));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-failover: {e}");
            ExitCode::FAILURE
        }
    }
}
