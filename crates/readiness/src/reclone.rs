//! Re-clone (`pgdr_fence.reclone`): this member's data directory is moved aside so that Patroni,
//! finding it gone, stops PostgreSQL, releases its lock and clones the member from the peer once
//! the agent lets it (failover-env.md rule 8).
//!
//! A rename on the same volume: instant, and PostgreSQL (which works relative to its data
//! directory) keeps running in the moved folder until Patroni stops it. Each request acts once
//! per volume: a receipt next to the moved folder says it was done, so a restarted sidecar, or a
//! fresh clone seen while the request is still in the fence, is never moved again.
//!
//! Acted on only while the request stands at this very look ([`step`]): a request withdrawn
//! meanwhile (a person's `unfence`, the agent's next step) is never retried. The moved folder is
//! deleted only once this member streams from the peer again with no request holding (the new
//! data directory exists and works), never by a timer and never while a `postmaster.pid` is in
//! it; until then it is kept and reported on `/status`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use pgdr_core::contract::fence::Reclone as Request;
pub use pgdr_core::contract::sidecar::{RecloneState, RecloneStatus as Status};

#[derive(Debug, thiserror::Error)]
pub enum RecloneError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the data directory {0} has no parent folder to move it into")]
    NoParent(PathBuf),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RecloneError + 'a {
    move |source| RecloneError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The request's name on disk: its timestamp with the characters a path dislikes replaced.
fn slug(requested_at: &str) -> String {
    requested_at
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn diverged_root(pgdata: &Path) -> Result<PathBuf, RecloneError> {
    Ok(pgdata
        .parent()
        .ok_or_else(|| RecloneError::NoParent(pgdata.to_path_buf()))?
        .join("pgdr-diverged"))
}

/// `<pgroot>/pgdr-diverged/reclone-<request>.json`.
pub fn receipt_path(pgdata: &Path, requested_at: &str) -> Result<PathBuf, RecloneError> {
    Ok(diverged_root(pgdata)?.join(format!("reclone-{}.json", slug(requested_at))))
}

/// `<pgroot>/pgdr-diverged/reclone-<request>/data`: where the data directory goes.
pub fn moved_path(pgdata: &Path, requested_at: &str) -> Result<PathBuf, RecloneError> {
    Ok(diverged_root(pgdata)?
        .join(format!("reclone-{}", slug(requested_at)))
        .join("data"))
}

/// The receipt of a request, when this volume has one.
pub fn receipt(pgdata: &Path, requested_at: &str) -> Result<Option<Status>, RecloneError> {
    let path = receipt_path(pgdata, requested_at)?;
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RecloneError::Io {
                what: "unreadable receipt",
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("cannot read", &path)(e)),
    }
}

fn write_receipt(pgdata: &Path, status: &Status) -> Result<(), RecloneError> {
    let path = receipt_path(pgdata, &status.requested_at)?;
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(status).expect("a status always serializes");
    fs::write(&tmp, body).map_err(io_err("cannot write", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("cannot rename into place", &path))
}

/// Moves the data directory aside for `req`, once: with a receipt already on the volume this
/// returns it and touches nothing.
pub fn move_aside(pgdata: &Path, req: &Request) -> Result<Status, RecloneError> {
    if let Some(done) = receipt(pgdata, &req.requested_at)? {
        return Ok(done);
    }
    let target = moved_path(pgdata, &req.requested_at)?;
    let parent = target.parent().expect("moved_path has a parent");
    fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
    let moved_to = match fs::rename(pgdata, &target) {
        Ok(()) => Some(target.display().to_string()),
        // Nothing to move (already empty, or a member that never had data).
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("cannot move the data directory to", &target)(e)),
    };
    let status = Status {
        requested_at: req.requested_at.clone(),
        state: RecloneState::Moved,
        detail: None,
        moved_to,
        moved_at: Some(jiff::Timestamp::now().to_string()),
        removed: false,
        keep_data: req.keep_data,
    };
    write_receipt(pgdata, &status)?;
    Ok(status)
}

/// This member as the re-cloner sees it at one look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Look {
    /// The request standing right now: the fence holds it, on hold, and this member is not a
    /// writable primary.
    pub standing: Option<Request>,
    /// This member runs as a standby that streams, and no fence holds it: the replacement data
    /// directory exists and works.
    pub streams: bool,
}

/// What the re-cloner does at one look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Move the data directory aside for this request (once: the receipt makes it idempotent).
    Move(Request),
    /// Delete the moved folders of earlier requests (their receipts say which).
    DeleteMoved,
    /// Nothing now.
    Wait,
}

/// The rule: a standing request is moved for; with none standing, moved data goes once the
/// member streams again; otherwise nothing (a moved folder waits, kept and reported).
pub fn step(look: &Look) -> Step {
    match (&look.standing, look.streams) {
        (Some(req), _) => Step::Move(req.clone()),
        (None, true) => Step::DeleteMoved,
        (None, false) => Step::Wait,
    }
}

/// The receipts on this volume whose moved folder still waits for deletion.
pub fn waiting(pgdata: &Path) -> Result<Vec<Status>, RecloneError> {
    let root = diverged_root(pgdata)?;
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot list", &root)(e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !(name.starts_with("reclone-") && name.ends_with(".json")) {
            continue;
        }
        let path = entry.path();
        let bytes = fs::read(&path).map_err(io_err("cannot read", &path))?;
        let Ok(st) = serde_json::from_slice::<Status>(&bytes) else {
            continue;
        };
        if st.moved_to.is_some() && !st.removed && !st.keep_data {
            out.push(st);
        }
    }
    out.sort_by(|a, b| a.requested_at.cmp(&b.requested_at));
    Ok(out)
}

/// Deletes a moved folder, unless `keep_data` or a `postmaster.pid` in it says a PostgreSQL may
/// still run there (then `Ok` unchanged: kept, tried again later). Records the outcome in the
/// receipt.
pub fn remove_moved(pgdata: &Path, status: &Status) -> Result<Status, RecloneError> {
    let mut done = status.clone();
    if status.removed || status.keep_data {
        return Ok(done);
    }
    if let Some(moved) = status.moved_to.as_deref().map(PathBuf::from) {
        if moved.join("postmaster.pid").exists() {
            return Ok(done);
        }
        match fs::remove_dir_all(&moved) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err("cannot delete", &moved)(e));
            }
            _ => {}
        }
        if let Some(p) = moved.parent() {
            let _ = fs::remove_dir(p);
        }
    }
    done.removed = true;
    write_receipt(pgdata, &done)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(keep: bool) -> Request {
        Request {
            requested_at: "2026-11-30T16:00:00.5Z".into(),
            keep_data: keep,
        }
    }

    fn pgdata(root: &Path) -> PathBuf {
        let d = root.join("pgroot/data");
        fs::create_dir_all(d.join("base")).unwrap();
        fs::write(d.join("PG_VERSION"), "18\n").unwrap();
        d
    }

    #[test]
    fn moves_once_and_deletes_only_once_the_postmaster_is_gone() {
        let root = tempfile::tempdir().unwrap();
        let data = pgdata(root.path());
        fs::write(data.join("postmaster.pid"), "123\n").unwrap();
        let st = move_aside(&data, &request(false)).unwrap();
        assert_eq!(st.state, RecloneState::Moved);
        assert!(!data.exists(), "the data directory is gone from its place");
        let moved = PathBuf::from(st.moved_to.clone().unwrap());
        assert!(moved.join("PG_VERSION").exists(), "moved, not deleted yet");
        assert!(moved.starts_with(root.path().join("pgroot/pgdr-diverged")));

        // A fresh clone in place while the request is still pending is never moved again.
        let fresh = pgdata(root.path());
        fs::write(fresh.join("PG_VERSION"), "fresh\n").unwrap();
        assert_eq!(move_aside(&fresh, &request(false)).unwrap(), st);
        assert_eq!(
            fs::read_to_string(fresh.join("PG_VERSION")).unwrap(),
            "fresh\n"
        );
        assert_eq!(waiting(&fresh).unwrap(), vec![st.clone()]);

        // A postmaster.pid in the moved folder: kept, however long it has been.
        let kept = remove_moved(&data, &st).unwrap();
        assert!(!kept.removed && moved.join("PG_VERSION").exists());
        fs::remove_file(moved.join("postmaster.pid")).unwrap();
        let gone = remove_moved(&data, &st).unwrap();
        assert!(gone.removed && !moved.exists());
        assert_eq!(receipt(&data, &st.requested_at).unwrap(), Some(gone));
        assert!(waiting(&fresh).unwrap().is_empty());
    }

    /// Issue 20 items 5–6: a withdrawn request is never acted on, and moved data goes only once
    /// the member streams again with no request standing.
    #[test]
    fn step_table() {
        let req = request(false);
        let rows = [
            (Some(req.clone()), false, Step::Move(req.clone())),
            (Some(req.clone()), true, Step::Move(req.clone())),
            (None, true, Step::DeleteMoved),
            (None, false, Step::Wait),
        ];
        for (standing, streams, want) in rows {
            let look = Look { standing, streams };
            assert_eq!(step(&look), want, "{look:?}");
        }
    }

    #[test]
    fn keep_data_keeps_the_moved_folder_and_a_missing_data_dir_is_nothing_to_move() {
        let root = tempfile::tempdir().unwrap();
        let data = pgdata(root.path());
        let st = move_aside(&data, &request(true)).unwrap();
        let after = remove_moved(&data, &st).unwrap();
        assert!(!after.removed, "kept");
        assert!(
            PathBuf::from(st.moved_to.unwrap())
                .join("PG_VERSION")
                .exists()
        );

        let other = Request {
            requested_at: "2026-12-01T00:00:00Z".into(),
            keep_data: false,
        };
        let st = move_aside(&data, &other).unwrap();
        assert_eq!((st.state, st.moved_to), (RecloneState::Moved, None));
    }
}
