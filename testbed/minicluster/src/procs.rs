//! Which processes belong to a container, and killing them all.
//!
//! There are no cgroups here, and a container's processes leave its process group: Patroni starts
//! the postmaster through a helper that calls `setsid()` and exits, so the postmaster is re-parented
//! to init, in a session whose leader is gone, often running as another user. The process tree
//! alone then loses it whenever no refresh happened to run during the helper's short life. So each
//! container is started with a marker in its environment ([`MARKER`] = its key), which
//! `fork`/`exec` pass on (Patroni hands its environment to PostgreSQL minus `PATRONI_*`). A
//! container owns: its process group, every process carrying its marker, and (closure) every
//! process descended from one of those or in a session led by one of them — PostgreSQL backends
//! overwrite their environment with their process title but are children of the postmaster.
//! Members are also remembered (pid and start time) as they are seen, refreshed every few seconds.
//!
//! Killing stops every member first (SIGSTOP, repeated until no new member appears: a stopped
//! process cannot fork, and a child forked just before is found under its stopped parent), then
//! SIGKILLs them all, so nothing escapes by forking during the kill.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rustix::process::{Pid, Signal};

/// Environment variable carrying a container's key (hex) to every process it starts.
pub const MARKER: &str = "DRILL_CONTAINER";

/// The `MARKER=value` environment entry for a container key.
pub fn marker_value(key: u64) -> String {
    format!("{key:016x}")
}

#[derive(Clone, Copy, Debug)]
struct Stat {
    ppid: u32,
    pgid: u32,
    sid: u32,
    start: u64,
    zombie: bool,
    /// The container key in the process's environment, if any (and readable).
    marker: Option<u64>,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces; fields follow the last ')'.
    let f: Vec<&str> = text[text.rfind(')')? + 2..].split_whitespace().collect();
    Some(Stat {
        zombie: f.first()? == &"Z",
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        sid: f.get(3)?.parse().ok()?,
        start: f.get(19)?.parse().ok()?,
        marker: marker(pid),
    })
}

/// The container key in `/proc/<pid>/environ` (unreadable for other users' processes unless the
/// drill runs as root, which is exactly when containers switch user).
fn marker(pid: u32) -> Option<u64> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{MARKER}=");
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .and_then(|v| u64::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok())
}

fn scan() -> HashMap<u32, Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .filter(|(_, s)| !s.zombie)
        .collect()
}

/// The processes of one container.
#[derive(Debug, Default)]
struct Members {
    key: u64,
    /// Process group (= pid of the container's main process).
    pgid: u32,
    /// (pid, start time) of every member seen so far.
    known: HashSet<(u32, u64)>,
}

impl Members {
    /// Live members in `table`, remembering any new ones.
    fn refresh(&mut self, table: &HashMap<u32, Stat>) -> Vec<u32> {
        let mut set: HashSet<u32> = table
            .iter()
            .filter(|(pid, s)| {
                s.pgid == self.pgid
                    || s.marker == Some(self.key)
                    || self.known.contains(&(**pid, s.start))
            })
            .map(|(pid, _)| *pid)
            .collect();
        loop {
            let more: Vec<u32> = table
                .iter()
                .filter(|(pid, s)| {
                    !set.contains(pid) && (set.contains(&s.ppid) || set.contains(&s.sid))
                })
                .map(|(pid, _)| *pid)
                .collect();
            if more.is_empty() {
                break;
            }
            set.extend(more);
        }
        self.known = set.iter().map(|p| (*p, table[p].start)).collect();
        set.into_iter().collect()
    }
}

#[derive(Default)]
struct Inner {
    members: HashMap<u64, Members>,
    /// Set by [`Procs::kill_all`]: the site is gone, so a container its kubelet still manages to
    /// start (a restart racing the teardown) is killed at once.
    closed: bool,
}

/// Every container a site started, to refresh and to kill.
#[derive(Clone, Default)]
pub struct Procs {
    inner: Arc<Mutex<Inner>>,
}

fn send(pids: &[u32], signal: Signal) {
    for &pid in pids {
        if let Some(pid) = Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
}

/// Stops every member of `members` until no new one appears, then SIGKILLs them all.
fn freeze_and_kill(members: &mut [Members]) {
    let mut stopped: HashSet<u32> = HashSet::new();
    // Each round can only find children forked before their parent stopped; a few suffice.
    for _ in 0..20 {
        let table = scan();
        let new: Vec<u32> = members
            .iter_mut()
            .flat_map(|m| m.refresh(&table))
            .filter(|p| !stopped.contains(p))
            .collect();
        if new.is_empty() {
            break;
        }
        send(&new, Signal::STOP);
        stopped.extend(new);
    }
    send(&stopped.into_iter().collect::<Vec<_>>(), Signal::KILL);
}

impl Procs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh container key: put `MARKER=marker_value(key)` in the container's environment, then
    /// [`Procs::register`] it once started.
    pub fn new_key() -> u64 {
        rand::random()
    }

    /// Registers the container `key` whose main process (a group leader) is `pgid`.
    pub fn register(&self, key: u64, pgid: u32) {
        let mut m = Members {
            key,
            pgid,
            known: HashSet::new(),
        };
        if let Some(s) = stat(pgid) {
            m.known.insert((pgid, s.start));
        }
        let mut inner = self.lock();
        if inner.closed {
            drop(inner);
            freeze_and_kill(&mut [m]);
        } else {
            inner.members.insert(key, m);
        }
    }

    /// Remembers the current members of every container.
    pub fn refresh(&self) {
        let table = scan();
        for m in self.lock().members.values_mut() {
            m.refresh(&table);
        }
    }

    /// Sends `signal` to the container's group (only), e.g. SIGTERM for a graceful stop.
    pub fn signal_group(&self, key: u64, signal: Signal) {
        if let Some(m) = self.lock().members.get(&key)
            && let Some(pid) = Pid::from_raw(m.pgid as i32)
        {
            let _ = rustix::process::kill_process_group(pid, signal);
        }
    }

    /// SIGKILLs every member of the container and forgets it.
    pub fn kill(&self, key: u64) {
        let one = self.lock().members.remove(&key);
        freeze_and_kill(&mut one.into_iter().collect::<Vec<_>>());
    }

    /// SIGKILLs every member of every container, now and of any container registered later (site
    /// teardown, also on panic).
    pub fn kill_all(&self) {
        let mut all: Vec<Members> = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.members.drain().map(|(_, m)| m).collect()
        };
        freeze_and_kill(&mut all);
    }
}

/// Live processes (not zombies) started for a container under `root` (a site's folder, found by
/// the `DRILL_ROOT` every container gets) and their descendants: after the site is killed there
/// must be none.
pub fn survivors_under(root: &std::path::Path) -> Vec<u32> {
    let want = format!("DRILL_ROOT={}/", root.display());
    let table = scan();
    let mut set: HashSet<u32> = table
        .keys()
        .copied()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|kv| kv.starts_with(want.as_bytes()))
            })
        })
        .collect();
    loop {
        let more: Vec<u32> = table
            .iter()
            .filter(|(pid, s)| !set.contains(pid) && set.contains(&s.ppid))
            .map(|(pid, _)| *pid)
            .collect();
        if more.is_empty() {
            break;
        }
        set.extend(more);
    }
    let mut v: Vec<u32> = set.into_iter().collect();
    v.sort();
    v
}

/// SIGKILLs the processes started for containers under `root` (see [`survivors_under`]) whose
/// executable's file name is `exe` (a container's main process: the readiness sidecar, a
/// failover agent run), as a crash or an OOM kill would; returns how many. The kubelet then
/// restarts or fails the container as its policy says.
pub fn kill_named_under(root: &std::path::Path, exe: &str) -> usize {
    let pids: Vec<u32> = survivors_under(root)
        .into_iter()
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|p| p.file_name().is_some_and(|n| n == exe))
        })
        .collect();
    send(&pids, Signal::KILL);
    pids.len()
}

/// The file in a site's folder naming the process that runs the site (pid and start time).
pub const OWNER_FILE: &str = "owner";

/// This process as an owner line: `<pid> <start time in clock ticks since boot>`.
pub fn owner_line() -> String {
    let pid = std::process::id();
    format!("{pid} {}", stat(pid).map_or(0, |s| s.start))
}

fn owner_alive(line: &str) -> bool {
    let mut f = line.split_whitespace().map(str::parse::<u64>);
    match (f.next(), f.next()) {
        (Some(Ok(pid)), Some(Ok(start))) => {
            stat(pid as u32).is_some_and(|s| s.start == start && !s.zombie)
        }
        _ => true, // unreadable: never reap on a guess
    }
}

/// SIGKILLs the processes of sites whose owner is gone: containers started by a drill that was
/// itself killed (a test binary SIGKILLed by a timeout keeps running Patroni and PostgreSQL in
/// their own process groups, holding the loopback addresses the next drill needs). A process is
/// reaped only when a folder above its `DRILL_ROOT` holds an [`OWNER_FILE`] naming a process
/// that no longer runs. Returns how many were killed.
pub fn reap_orphans() -> usize {
    let table = scan();
    let mut verdicts: HashMap<std::path::PathBuf, bool> = HashMap::new();
    let mut dead: HashSet<u32> = HashSet::new();
    for pid in table.keys() {
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let Some(root) = env
            .split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(b"DRILL_ROOT="))
            .map(|v| std::path::PathBuf::from(String::from_utf8_lossy(v).into_owned()))
        else {
            continue;
        };
        let orphan = root.ancestors().find_map(|dir| {
            if let Some(v) = verdicts.get(dir) {
                return Some(*v);
            }
            let line = std::fs::read_to_string(dir.join(OWNER_FILE)).ok()?;
            let v = !owner_alive(&line);
            verdicts.insert(dir.to_path_buf(), v);
            Some(v)
        });
        if orphan == Some(true) {
            dead.insert(*pid);
        }
    }
    // Their descendants too (PostgreSQL's backends do not carry the environment marker).
    loop {
        let more: Vec<u32> = table
            .iter()
            .filter(|(pid, s)| !dead.contains(pid) && dead.contains(&s.ppid))
            .map(|(pid, _)| *pid)
            .collect();
        if more.is_empty() {
            break;
        }
        dead.extend(more);
    }
    let pids: Vec<u32> = dead.into_iter().collect();
    send(&pids, Signal::KILL);
    pids.len()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    use super::*;

    fn gone(pid: u32) -> bool {
        // Init may be slow to reap (or not reap) the re-parented orphan: a zombie is dead.
        stat(pid).is_none_or(|s| s.zombie)
    }

    /// What Patroni does with the postmaster: a helper in a new session starts it and exits, so it
    /// is neither in the container's group nor under any of its processes.
    #[test]
    fn kill_reaches_a_process_that_left_the_group_session_and_tree() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let key = Procs::new_key();
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "setsid sh -c 'sleep 300 & echo $! > {}'; sleep 300",
                pidfile.display()
            ))
            .env(MARKER, marker_value(key))
            .process_group(0)
            .spawn()
            .unwrap();
        let procs = Procs::default();
        procs.register(key, child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        let orphan: u32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                && stat(pid).is_some_and(|s| s.ppid != child.id() && s.sid != child.id())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "the orphan never appeared");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_ne!(stat(orphan).unwrap().pgid, child.id());

        procs.kill(key);
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(3);
        while !gone(orphan) {
            assert!(
                Instant::now() < deadline,
                "orphan {orphan} survived the kill"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_container_registered_after_kill_all_is_killed_at_once() {
        let procs = Procs::default();
        procs.kill_all();
        let key = Procs::new_key();
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 300"])
            .env(MARKER, marker_value(key))
            .process_group(0)
            .spawn()
            .unwrap();
        procs.register(key, child.id());
        let status = child.wait().unwrap();
        assert!(!status.success());
    }

    #[test]
    fn orphans_of_a_dead_owner_are_reaped_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let spawn = |site: &str, owner: &str| {
            let root = dir.path().join(site).join("pods/ns/pod/ctr");
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(dir.path().join(site).join(OWNER_FILE), owner).unwrap();
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg("sleep 300")
                .env("DRILL_ROOT", &root)
                .process_group(0)
                .spawn()
                .unwrap()
        };
        // A pid that ran once and is gone: a short-lived child, reaped by us.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let mut orphan = spawn("a", &format!("{gone_pid} 1"));
        let mut kept = spawn("b", &owner_line());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && std::fs::read(format!("/proc/{}/environ", orphan.id())).map_or(true, |e| {
                !String::from_utf8_lossy(&e).contains("DRILL_ROOT")
            })
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(reap_orphans() >= 1);
        let status = orphan.wait().unwrap();
        assert!(!status.success(), "the orphan was killed: {status:?}");
        assert!(
            kept.try_wait().unwrap().is_none(),
            "a live owner's process is kept"
        );
        kept.kill().unwrap();
        let _ = kept.wait();
    }
}
