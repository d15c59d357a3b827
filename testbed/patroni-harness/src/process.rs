//! Process plumbing: spawning with a deadline, signals, and finding stray PostgreSQL processes.
//!
//! Signals go through the `kill` program and process facts come from `/proc`, which keeps the crate
//! free of `unsafe` and of a libc binding. The tests only run on Linux.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::config::Launch;
use crate::error::{HarnessError, Result};
use crate::tools::RunAs;

/// Output of a finished helper command.
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Builds the `Command` for a launch plan, as the run-as user, with exactly the planned environment.
pub(crate) fn command(launch: &Launch, run_as: &RunAs) -> Command {
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().cloned())
        .current_dir(&launch.cwd);
    run_as.apply(&mut cmd);
    cmd
}

/// Runs a helper to completion, killing it if it takes longer than `timeout`.
pub(crate) fn run(
    launch: &Launch,
    run_as: &RunAs,
    timeout: Duration,
    node: &str,
) -> Result<Finished> {
    let mut child = command(launch, run_as)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError::io(format!("{node}: starting `{}`", launch.display()), e))?;
    // Drain both pipes on threads so a chatty child cannot block on a full pipe while we wait.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Timeout {
                    node: node.into(),
                    what: format!("`{}` to finish", launch.display()),
                    waited: timeout,
                    last: "still running; killed".into(),
                });
            }
            Err(e) => {
                return Err(HarnessError::io(
                    format!("{node}: waiting for `{}`", launch.display()),
                    e,
                ));
            }
        }
    };
    Ok(Finished {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// Sends `signal` (e.g. "TERM", "KILL") to a process, or to a whole process group when `group`.
/// Returns false if there was nothing to signal.
pub(crate) fn signal(pid: u32, signal: &str, group: bool) -> bool {
    let target = if group {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    Command::new("kill")
        .args(["-s", signal, "--", &target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits for a child to exit, up to `timeout`. Returns its status if it exited.
pub(crate) fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => return None,
        }
    }
}

/// The `/proc/<pid>/stat` fields we use.
struct Stat {
    state: char,
    ppid: u32,
    pgrp: u32,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { state, ppid, pgrp })
}

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}

/// Live processes whose stat matches `pred`.
fn processes_where(pred: impl Fn(&Stat) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| stat(p).is_some_and(|s| s.state != 'Z' && pred(&s)))
        .collect()
}

/// Direct children of `pid` (PostgreSQL backends and auxiliary processes of a postmaster).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    processes_where(|s| s.ppid == pid)
}

/// Live members of process group `pgid` (e.g. an initdb or pg_basebackup left by a killed Patroni).
/// A pgid is not reused while any member lives, so whatever this finds is ours.
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    processes_where(|s| s.pgrp == pgid)
}

/// The postmaster running on `data_dir`, if one is alive.
///
/// `postmaster.pid` can be stale after a crash and its pid reused, so the process's command line
/// must also name the data folder (Patroni starts `postgres -D <data_dir> ...`).
pub(crate) fn postmaster(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (alive(pid) && cmdline.contains(&*data_dir.to_string_lossy())).then_some(pid)
}

/// SIGKILLs a postmaster and its children at once (no shutdown checkpoint: like losing the
/// machine), then waits for them to be gone.
pub(crate) fn kill_postgres_tree(postmaster: u32) {
    // Collect the children first: once the postmaster dies they are re-parented.
    let mut pids = children(postmaster);
    pids.push(postmaster);
    for &pid in &pids {
        signal(pid, "KILL", false);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `n` lines of a file, or a note saying why there are none.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_own_process_and_children() {
        let me = std::process::id();
        assert!(alive(me));
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        assert!(children(me).contains(&child.id()));
        assert!(group_members(stat(me).unwrap().pgrp).contains(&child.id()));
        assert!(signal(child.id(), "KILL", false));
        assert!(wait_child(&mut child, Duration::from_secs(5)).is_some());
        assert!(!alive(child.id()));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("log");
        std::fs::write(&file, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&file, 2), "b\nc");
        assert_eq!(tail(&file, 10), "a\nb\nc");
        assert!(tail(&dir.path().join("missing"), 2).starts_with("(cannot read"));
    }
}
