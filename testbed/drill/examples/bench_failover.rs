//! `make bench-failover` / `make bench-failover-prod`: failover time, acknowledged commits lost and
//! false promotions, for our policy (with the drill's GSLB as witness) and the prototype's, side by
//! side.
//!
//! Options: `--production` (the chart's default timings, CronJobs once a minute, 6 losses, 24 cuts,
//! a 10-minute partition), `--runs N`, `--cuts N`, `--cut-ms MS` (each short tunnel cut),
//! `--settle-s S` (wait after a cut), `--partition-s S` (0: none), `--only-default`,
//! `--prototype-first` (each round starts with the prototype's run),
//! `--out FILE` (also write the Markdown table there, e.g. docs/benchmarks.md), `--append`
//! (keep what FILE held before this run and add this run's section after it),
//! `--dir DIR` (keep pod logs there, one subfolder per run).

use std::process::ExitCode;
use std::time::Duration;

use pgdr_drill::bench::{self, BenchOptions, Policy};

struct Args {
    o: BenchOptions,
    policies: Vec<Policy>,
    out: Option<std::path::PathBuf>,
    /// What `out` held before this run (`--append`), kept above this run's section.
    keep: String,
    command: String,
}

fn parse() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = if args.iter().any(|a| a == "--production") {
        BenchOptions::production()
    } else {
        BenchOptions::default()
    };
    let mut policies = Policy::pair(o.timings);
    let mut out = None;
    let mut append = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = || -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{a} needs a number"))
        };
        match a.as_str() {
            "--production" => {}
            "--runs" => o.runs = num()? as usize,
            "--cuts" => o.cuts_per_run = num()? as usize,
            "--cut-ms" => o.cut = Duration::from_millis(num()?),
            "--settle-s" => o.settle = Duration::from_secs(num()?),
            "--partition-s" => {
                o.partition = Some(num()?).filter(|s| *s > 0).map(Duration::from_secs)
            }
            "--only-default" => policies.truncate(1),
            // Each round runs the prototype first (short when it falsely promotes early).
            "--prototype-first" => policies.reverse(),
            "--out" => out = Some(it.next().ok_or("--out needs a file")?.into()),
            "--append" => append = true,
            // Keep the sites' files (pod logs) in this folder.
            "--dir" => {
                o.drill.dir = Some(it.next().ok_or("--dir needs a folder")?.into());
            }
            _ => {
                return Err(format!(
                    "unknown argument {a:?} (--production --runs N --cuts N --cut-ms MS --settle-s S \
                     --partition-s S --only-default --prototype-first --out FILE --append --dir DIR)"
                ));
            }
        }
    }
    let command = format!("bench_failover {}", args.join(" "));
    let keep = match (&out, append) {
        (Some(path), true) => std::fs::read_to_string(path).unwrap_or_default(),
        _ => String::new(),
    };
    Ok(Args {
        o,
        policies,
        out,
        keep,
        command: command.trim().to_string(),
    })
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
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let write = |results: &[(Policy, bench::PolicyResult)], note: &str| -> std::io::Result<()> {
        let Some(out) = &a.out else { return Ok(()) };
        let when = jiff::Timestamp::now()
            .strftime("%Y-%m-%d %H:%M UTC")
            .to_string();
        let section = bench::markdown(results, &a.o, &a.command, &when, note);
        let text = if a.keep.is_empty() {
            section
        } else {
            format!("{}\n\n{section}", a.keep.trim_end())
        };
        std::fs::write(out, text)
    };
    let run = bench::bench(&a.policies, &a.o, |r, note| {
        if let Err(e) = write(r, note) {
            eprintln!("bench-failover: writing the table: {e}");
        }
    });
    // Ctrl-C or SIGTERM: drop the run, which kills the sites' processes (a bare exit would leave
    // PostgreSQL and Patroni running); the table keeps the runs finished so far.
    let results = tokio::select! {
        r = run => r,
        _ = interrupted() => {
            eprintln!("bench-failover: interrupted; the figures of the finished runs are in the table written so far");
            return ExitCode::from(130);
        }
    };
    println!("{}", bench::table(&results, &a.o));
    if let Some(out) = &a.out {
        println!("written to {}", out.display());
    }
    if results.iter().any(|(_, r)| r.errors > 0) {
        eprintln!("bench-failover: some runs failed (see above)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
