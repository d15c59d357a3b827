//! The Patroni image's entrypoint (`docker/patroni/entrypoint.sh`, which the drill runs as the
//! pgdr-patroni image) restores 0700 on a data directory the kubelet's fsGroup change left 02770,
//! before it hands over to Patroni. `patroni` here is a stand-in that prints the mode it finds.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn entrypoint() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docker/patroni/entrypoint.sh")
}

/// A folder other users can traverse, a data directory as the fsGroup change leaves it, and a
/// `patroni` stand-in on PATH that prints the data directory's mode.
struct Fixture {
    dir: tempfile::TempDir,
    data: PathBuf,
}

/// Root is refused by the entrypoint: run as `nobody` then, owning the files as a real pod does.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Fixture {
    fn new(config: Option<&str>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        let data = dir.path().join("pgdata/pgroot/data");
        std::fs::create_dir_all(&data).unwrap();
        chmod(&dir.path().join("pgdata"), 0o2770);
        chmod(&dir.path().join("pgdata/pgroot"), 0o2770);
        chmod(&data, 0o2770);
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let fake = bin.join("patroni");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\nstat -c 'mode=%a' {}\necho \"args=$*\"\n",
                data.display()
            ),
        )
        .unwrap();
        chmod(&fake, 0o755);
        if let Some(text) = config {
            std::fs::write(
                dir.path().join("patroni.yml"),
                text.replace("DATA", &data.display().to_string()),
            )
            .unwrap();
        }
        if is_root() {
            for p in [
                dir.path().join("pgdata"),
                dir.path().join("pgdata/pgroot"),
                data.clone(),
            ] {
                std::os::unix::fs::chown(&p, Some(NOBODY), None).unwrap();
            }
        }
        Fixture { dir, data }
    }

    fn run(&self, env: &[(&str, String)]) -> String {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg(entrypoint())
            .arg(self.dir.path().join("patroni.yml"))
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.dir.path().join("bin").display()),
            )
            .envs(env.iter().map(|(k, v)| (k, v)));
        if is_root() {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "entrypoint failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn restores_0700_on_the_data_dir_named_in_the_patroni_config() {
    let f = Fixture::new(Some(
        "log:\n  level: INFO\npostgresql:\n  bin_dir: /usr/lib/postgresql/18/bin\n  data_dir: DATA\n  pgpass: /tmp/pgpass\n",
    ));
    let out = f.run(&[]);
    assert!(out.starts_with("mode=700\n"), "{out}");
    assert!(
        out.contains("args=") && out.contains("patroni.yml"),
        "{out}"
    );
    // Only the data directory: the volume root keeps what the kubelet gave it.
    let root = std::fs::metadata(f.dir.path().join("pgdata")).unwrap();
    assert_eq!(root.mode() & 0o7777, 0o2770);
}

#[test]
fn the_patroni_environment_override_and_pgdata_are_honoured() {
    // No data_dir in the config: PGDATA names it.
    let f = Fixture::new(Some("postgresql:\n  listen: 0.0.0.0:5432\n"));
    let out = f.run(&[("PGDATA", f.data.display().to_string())]);
    assert!(out.starts_with("mode=700\n"), "{out}");
    // PATRONI_POSTGRESQL_DATA_DIR wins over the config file, as it does in Patroni.
    let g = Fixture::new(Some("postgresql:\n  data_dir: /nonexistent/data\n"));
    let out = g.run(&[("PATRONI_POSTGRESQL_DATA_DIR", g.data.display().to_string())]);
    assert!(out.starts_with("mode=700\n"), "{out}");
}

#[test]
fn a_missing_data_dir_is_left_to_initdb() {
    let f = Fixture::new(Some("postgresql:\n  data_dir: DATA/not-yet\n"));
    let out = f.run(&[]);
    assert!(!f.data.join("not-yet").exists());
    // The existing parent was not touched either.
    assert!(out.starts_with("mode=2770\n"), "{out}");
}
