//! Finding the external programs the tests drive, and the user they run as.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{HarnessError, Result};

/// Overrides the PostgreSQL binary folder (must hold `initdb`).
pub const ENV_PG_BIN: &str = "PGDR_PG_BIN";
/// Overrides the tools folder made by `scripts/deps.sh` (holds `venv/` and `bin/`).
pub const ENV_TOOLS: &str = "PGDR_TOOLS";

/// The user PostgreSQL and Patroni run as.
///
/// `initdb` refuses to run as root, so when the tests run as root (CI does) the processes are
/// started as `postgres` (the user the Debian package creates); otherwise as the current user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// True when the test process must switch to `uid`/`gid` for child processes (we are root).
    pub switch: bool,
}

/// Paths of every external program the harness uses.
#[derive(Clone, Debug)]
pub struct Tools {
    /// PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`, `pg_basebackup`, ...).
    pub pg_bin: PathBuf,
    pub psql: PathBuf,
    pub patroni: PathBuf,
    pub patronictl: PathBuf,
    pub run_as: RunAs,
}

impl Tools {
    /// Finds PostgreSQL (`$PGDR_PG_BIN`, else the PostgreSQL `make deps` unpacked into the tools
    /// folder, the major the image ships, else the newest `/usr/lib/postgresql/*/bin`), Patroni
    /// (the venv in the tools folder: the workspace's `.tools`, or `$PGDR_TOOLS`) and the user to
    /// run them as.
    pub fn locate() -> Result<Self> {
        let tools_dir = match std::env::var_os(ENV_TOOLS) {
            Some(dir) => PathBuf::from(dir),
            None => workspace_root()?.join(".tools"),
        };
        let pg_bin =
            match std::env::var_os(ENV_PG_BIN) {
                Some(dir) => PathBuf::from(dir),
                None => default_pg_bin(&tools_dir, Path::new("/usr/lib/postgresql")).ok_or_else(
                    || HarnessError::ToolMissing {
                        what: "PostgreSQL server binaries (initdb)",
                        looked: format!(
                            "{}/postgresql/bin (make deps) and /usr/lib/postgresql/*/bin; set \
                         {ENV_PG_BIN} to override",
                            tools_dir.display()
                        ),
                    },
                )?,
            };
        require_file(&pg_bin.join("initdb"), "initdb")?;
        require_file(&pg_bin.join("pg_ctl"), "pg_ctl")?;
        let psql = pg_bin.join("psql");
        require_file(&psql, "psql")?;

        let venv_bin = tools_dir.join("venv").join("bin");
        let patroni = venv_bin.join("patroni");
        let patronictl = venv_bin.join("patronictl");
        require_file(&patroni, "Patroni")?;
        require_file(&patronictl, "patronictl")?;

        Ok(Self {
            pg_bin,
            psql,
            patroni,
            patronictl,
            run_as: RunAs::detect()?,
        })
    }
}

impl RunAs {
    /// `postgres` when we are root, else the current user.
    pub fn detect() -> Result<Self> {
        let euid = id_number(&["-u"])?;
        if euid == 0 {
            Ok(Self {
                user: "postgres".into(),
                uid: id_number(&["-u", "postgres"])?,
                gid: id_number(&["-g", "postgres"])?,
                switch: true,
            })
        } else {
            Ok(Self {
                user: id_text(&["-un"])?,
                uid: euid,
                gid: id_number(&["-g"])?,
                switch: false,
            })
        }
    }

    /// Applies the user switch (if any) to a command about to be spawned.
    pub(crate) fn apply(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        if self.switch {
            // std drops supplementary groups (setgroups(0)) when root sets a uid, like runuser.
            cmd.uid(self.uid).gid(self.gid);
        }
    }

    /// Gives `path` to the run-as user (no-op unless we switch users).
    pub(crate) fn chown(&self, path: &Path) -> Result<()> {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(|e| {
                HarnessError::io(format!("chown {} to {}", path.display(), self.user), e)
            })?;
        }
        Ok(())
    }
}

/// `id` rather than libc: it also resolves users from NSS, and keeps this crate free of `unsafe`.
fn id_text(args: &[&str]) -> Result<String> {
    let out = Command::new("id")
        .args(args)
        .output()
        .map_err(|e| HarnessError::io("running `id`", e))?;
    if !out.status.success() {
        let hint = if args.contains(&"postgres") {
            "; the tests run as root, so PostgreSQL runs as user `postgres`: run `make deps` first"
        } else {
            ""
        };
        return Err(HarnessError::Command {
            node: "harness".into(),
            command: format!("id {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: format!("{}{hint}", String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn id_number(args: &[&str]) -> Result<u32> {
    let text = id_text(args)?;
    text.parse().map_err(|_| HarnessError::Command {
        node: "harness".into(),
        command: format!("id {}", args.join(" ")),
        status: "unparsable output".into(),
        stderr: text,
    })
}

fn require_file(path: &Path, what: &'static str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(HarnessError::ToolMissing {
            what,
            looked: path.display().to_string(),
        })
    }
}

/// The PostgreSQL `make deps` unpacked into the tools folder (`<tools>/postgresql/bin`, the major
/// the image ships) when it has `initdb`, else the newest under `packages` (Debian's).
fn default_pg_bin(tools: &Path, packages: &Path) -> Option<PathBuf> {
    let unpacked = tools.join("postgresql").join("bin");
    if unpacked.join("initdb").is_file() {
        return Some(unpacked);
    }
    newest_pg_bin(packages)
}

/// The `bin` folder of the highest PostgreSQL major version under `base` that has `initdb`.
fn newest_pg_bin(base: &Path) -> Option<PathBuf> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(base)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = version_key(&entry.file_name().to_string_lossy())?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// "15" → [15], "9.6" → [9, 6]; anything else is not a version folder.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The workspace root: the nearest folder above this crate holding `Cargo.lock` or
/// `rust-toolchain.toml`.
fn workspace_root() -> Result<PathBuf> {
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("Cargo.lock").is_file() || dir.join("rust-toolchain.toml").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| HarnessError::ToolMissing {
            what: "the workspace root (for .tools)",
            looked: format!("folders above {}; set {ENV_TOOLS}", start.display()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_folders_sort_numerically() {
        assert_eq!(version_key("15"), Some(vec![15]));
        assert_eq!(version_key("9.6"), Some(vec![9, 6]));
        assert_eq!(version_key("common"), None);
        assert!(version_key("9.6") < version_key("15"));
    }

    #[test]
    fn picks_newest_pg_bin() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "13", "17"] {
            let bin = dir.path().join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            if v != "17" {
                std::fs::write(bin.join("initdb"), "").unwrap();
            }
        }
        // 17 has no initdb (client-only install), so 15 wins.
        assert_eq!(
            newest_pg_bin(dir.path()),
            Some(dir.path().join("15").join("bin"))
        );
    }

    #[test]
    fn prefers_the_postgresql_make_deps_unpacked() {
        let packages = tempfile::tempdir().unwrap();
        let debian = packages.path().join("15").join("bin");
        std::fs::create_dir_all(&debian).unwrap();
        std::fs::write(debian.join("initdb"), "").unwrap();
        let tools = tempfile::tempdir().unwrap();
        let unpacked = tools.path().join("postgresql").join("bin");
        // Not unpacked (yet, or half): Debian's.
        std::fs::create_dir_all(&unpacked).unwrap();
        assert_eq!(default_pg_bin(tools.path(), packages.path()), Some(debian));
        std::fs::write(unpacked.join("initdb"), "").unwrap();
        assert_eq!(
            default_pg_bin(tools.path(), packages.path()),
            Some(unpacked)
        );
    }
}
