//! WAL preservation: before a fenced site is rewound, copy the WAL it wrote past the fork point
//! out of `pg_wal` (which the rewind and PostgreSQL's recycling would overwrite) into
//! `<parent of PGDATA>/pgdr-diverged/<timeline>-<from_lsn with / as _>/`, with a
//! `MANIFEST.json`. Files are copied to a temporary name and renamed; existing copies are kept
//! (idempotent); nothing is ever deleted.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use pgdr_core::contract::keys::FENCE;
use pgdr_core::contract::lsn::format as lsn_string;
pub use pgdr_core::contract::sidecar::{Divergence, DivergenceState, HistoryLine};

/// PostgreSQL's default `wal_segment_size`, assumed when no segment file shows the size.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;
pub const DIR_NAME: &str = "pgdr-diverged";
pub const MANIFEST: &str = "MANIFEST.json";

/// What the agent asked for (`pgdr_fence.preserve`) plus the end it recorded, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub timeline: u32,
    pub from_lsn: u64,
    /// `pgdr_fence.local_end_lsn`: segments up to this one are expected.
    pub end_lsn: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PreserveError {
    #[error("{FENCE}.preserve.timeline must be at least 1")]
    BadTimeline,
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> PreserveError + use<'a> {
    move |source| PreserveError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Serialize)]
struct ManifestFile {
    name: String,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Manifest<'a> {
    timeline: u32,
    fork_lsn: String,
    /// The end the agent recorded, else the end of the last copied segment.
    end_lsn: String,
    end_lsn_source: String,
    segment_size: u64,
    /// `segment files` (read from their sizes) or `assumed default` (16 MiB).
    segment_size_source: &'static str,
    source: String,
    files: &'a [ManifestFile],
    bytes: u64,
    missing: &'a [String],
    /// Files that already existed here with another size: kept as they were, not overwritten.
    kept_existing: &'a [String],
    updated_at: String,
}

/// A segment file name `TTTTTTTTXXXXXXXXYYYYYYYY` (optionally `.partial`): (timeline, segno).
fn parse_segment(name: &str, seg_size: u64) -> Option<(u32, u64)> {
    let base = name.strip_suffix(".partial").unwrap_or(name);
    if base.len() != 24 || !base.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&base[0..8], 16).ok()?;
    let log = u64::from_str_radix(&base[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&base[16..24], 16).ok()?;
    let per_log = 0x1_0000_0000 / seg_size;
    (seg < per_log).then_some((tli, log * per_log + seg))
}

pub fn segment_name(tli: u32, segno: u64, seg_size: u64) -> String {
    let per_log = 0x1_0000_0000 / seg_size;
    format!("{tli:08X}{:08X}{:08X}", segno / per_log, segno % per_log)
}

/// This member's PostgreSQL timeline history: the `pg_wal/<timeline>.history` file of its
/// current `timeline` (none on timeline 1). It travels with the data (a re-clone brings the
/// source's), so the failover agent tells a timeline of our own from the peer's by it.
pub fn timeline_history(pgdata: &Path, timeline: u32) -> Result<Vec<HistoryLine>, String> {
    if timeline <= 1 {
        return Ok(Vec::new());
    }
    let path = pgdata
        .join("pg_wal")
        .join(format!("{timeline:08X}.history"));
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let entries = pgdr_core::lineage::parse_timeline_history(&text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(entries.into_iter().map(HistoryLine::from).collect())
}

/// The directory a request is preserved in.
pub fn target_dir(pgdata: &Path, timeline: u32, from_lsn: u64) -> PathBuf {
    let parent = pgdata.parent().unwrap_or(pgdata);
    parent.join(DIR_NAME).join(format!(
        "{timeline}-{}",
        lsn_string(from_lsn).replace('/', "_")
    ))
}

/// Copies the segments and history files; the returned state is `preserved` or `incomplete`.
pub fn preserve(pgdata: &Path, req: &Request) -> Result<Divergence, PreserveError> {
    let from = req.from_lsn;
    if req.timeline == 0 {
        return Err(PreserveError::BadTimeline);
    }
    let wal = pgdata.join("pg_wal");
    let entries = wal_files(&wal)?;
    let (seg_size, seg_source) = segment_size(&entries);
    let start = from / seg_size;
    let wanted = wanted_files(&entries, req.timeline, start, seg_size);
    let end = req.end_lsn;
    let dir = target_dir(pgdata, req.timeline, from);
    fs::create_dir_all(&dir).map_err(io_err("cannot create the preservation directory", &dir))?;
    let kept = copy_new(&wal, &dir, &wanted)?;
    let (files, have) = held_files(&dir, seg_size)?;
    // Expected: every segment from the one holding from_lsn up to the recorded end (or the last
    // one present). A missing one is named, never silently skipped.
    let last = match (end, have.iter().next_back()) {
        (Some(e), _) => e.saturating_sub(1).max(from) / seg_size,
        (None, Some(l)) => *l,
        (None, None) => start,
    };
    let missing: Vec<String> = (start..=last)
        .filter(|s| !have.contains(s))
        .map(|s| segment_name(req.timeline, s, seg_size))
        .collect();
    let bytes = files.iter().map(|f| f.bytes).sum();
    let seg_end = have.iter().next_back().map_or(from, |l| (l + 1) * seg_size);
    let manifest = Manifest {
        timeline: req.timeline,
        fork_lsn: lsn_string(from),
        end_lsn: lsn_string(end.unwrap_or(seg_end)),
        end_lsn_source: if end.is_some() {
            format!("{FENCE}.local_end_lsn")
        } else {
            "end of the last segment".into()
        },
        segment_size: seg_size,
        segment_size_source: seg_source,
        source: wal.display().to_string(),
        files: &files,
        bytes,
        missing: &missing,
        kept_existing: &kept,
        updated_at: jiff::Timestamp::now().to_string(),
    };
    write_manifest(&dir, &manifest)?;
    Ok(Divergence {
        state: if missing.is_empty() {
            DivergenceState::Preserved
        } else {
            DivergenceState::Incomplete
        },
        dir: Some(dir.display().to_string()),
        files: files.len() as u64,
        bytes,
        missing,
        error: None,
    })
}

/// The files of `pg_wal` with their sizes.
fn wal_files(wal: &Path) -> Result<Vec<(String, u64)>, PreserveError> {
    let mut entries = Vec::new();
    for e in fs::read_dir(wal).map_err(io_err("cannot list the WAL directory", wal))? {
        let e = e.map_err(io_err("cannot list the WAL directory", wal))?;
        let path = e.path();
        let meta = e.metadata().map_err(io_err("cannot read", &path))?;
        if meta.is_file() {
            entries.push((e.file_name().to_string_lossy().into_owned(), meta.len()));
        }
    }
    Ok(entries)
}

/// The WAL segment size and where it came from. Full segments are always wal_segment_size long
/// (PostgreSQL preallocates them): the most common size among segment-named files that is a
/// power of two from 1 MiB to 1 GiB.
fn segment_size(entries: &[(String, u64)]) -> (u64, &'static str) {
    let sizes: Vec<u64> = entries
        .iter()
        .filter(|(n, _)| {
            !n.ends_with(".partial") && parse_segment(n, DEFAULT_SEGMENT_SIZE).is_some()
        })
        .map(|(_, s)| *s)
        .filter(|s| s.is_power_of_two() && (1 << 20..=1 << 30).contains(s))
        .collect();
    match sizes
        .iter()
        .max_by_key(|s| sizes.iter().filter(|x| x == s).count())
    {
        Some(s) => (*s, "segment files"),
        None => (DEFAULT_SEGMENT_SIZE, "assumed default"),
    }
}

/// The history files, and the segments of `timeline` (or later) from segment `start` on.
fn wanted_files(
    entries: &[(String, u64)],
    timeline: u32,
    start: u64,
    seg_size: u64,
) -> Vec<(String, u64)> {
    let mut wanted: Vec<(String, u64)> = Vec::new();
    for (name, size) in entries {
        if name.ends_with(".history") {
            wanted.push((name.clone(), *size));
        } else if let Some((tli, segno)) = parse_segment(name, seg_size)
            // Later timelines too: a primary that crash-restarted after the fork went on writing
            // on a timeline of its own (a fenced site holds no one else's WAL: it follows nothing).
            && tli >= timeline
            && segno >= start
        {
            wanted.push((name.clone(), *size));
        }
    }
    wanted.sort();
    wanted
}

/// Copies what is not preserved yet (temporary name, then rename). Returns the files kept as
/// they were although the source's size differs now.
fn copy_new(
    wal: &Path,
    dir: &Path,
    wanted: &[(String, u64)],
) -> Result<Vec<String>, PreserveError> {
    let mut kept = Vec::new();
    for (name, _) in wanted {
        let src = wal.join(name);
        let dst = dir.join(name);
        match fs::metadata(&dst) {
            Ok(m) => {
                // Already preserved: keep it. A different size now is reported, not overwritten.
                if fs::metadata(&src).is_ok_and(|s| s.len() != m.len()) {
                    kept.push(name.clone());
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot read", &dst)(e)),
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        match fs::copy(&src, &tmp) {
            Ok(_) => fs::rename(&tmp, &dst).map_err(io_err("cannot rename into place", &tmp))?,
            // Recycled or removed by PostgreSQL since the listing: counted as missing later.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let _ = fs::remove_file(&tmp); // our own partial temp file, if any
            }
            Err(e) => return Err(io_err("cannot copy", &src)(e)),
        }
    }
    Ok(kept)
}

/// What the directory holds now (this run's copies and earlier ones): its files, and the
/// segment numbers among them.
fn held_files(
    dir: &Path,
    seg_size: u64,
) -> Result<(Vec<ManifestFile>, BTreeSet<u64>), PreserveError> {
    let mut files = Vec::new();
    let mut have = BTreeSet::new();
    for e in fs::read_dir(dir).map_err(io_err("cannot list", dir))? {
        let e = e.map_err(io_err("cannot list", dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let seg = parse_segment(&name, seg_size);
        if !(name.ends_with(".history") || seg.is_some()) {
            continue;
        }
        if let Some((_, segno)) = seg {
            have.insert(segno);
        }
        let bytes = e
            .metadata()
            .map_err(io_err("cannot read", &e.path()))?
            .len();
        files.push(ManifestFile { name, bytes });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((files, have))
}

fn write_manifest(dir: &Path, manifest: &Manifest<'_>) -> Result<(), PreserveError> {
    let text = serde_json::to_string_pretty(manifest).expect("the manifest always serializes");
    let tmp = dir.join(format!(".{MANIFEST}.tmp"));
    let path = dir.join(MANIFEST);
    fs::write(&tmp, text + "\n").map_err(io_err("cannot write", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_err("cannot rename into place", &tmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn fake_pgdata(files: &[(&str, u64)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let wal = root.path().join("data/pg_wal");
        fs::create_dir_all(&wal).unwrap();
        for (name, size) in files {
            let f = fs::File::create(wal.join(name)).unwrap();
            f.set_len(*size).unwrap();
        }
        root
    }

    fn req(tli: u32, from: &str, end: Option<&str>) -> Request {
        Request {
            timeline: tli,
            from_lsn: pgdr_core::contract::lsn::parse(from).unwrap(),
            end_lsn: end.map(|e| pgdr_core::contract::lsn::parse(e).unwrap()),
        }
    }

    #[test]
    fn names() {
        assert_eq!(segment_name(3, 5, 16 * MIB), "000000030000000000000005");
        assert_eq!(segment_name(1, 256, 16 * MIB), "000000010000000100000000");
        assert_eq!(
            parse_segment("000000010000000100000000", 16 * MIB),
            Some((1, 256))
        );
        assert_eq!(
            parse_segment("000000030000000000000005.partial", 16 * MIB),
            Some((3, 5))
        );
        assert_eq!(parse_segment("00000002.history", 16 * MIB), None);
        // Segment number out of range for the size.
        assert_eq!(parse_segment("000000010000000000000100", 16 * MIB), None);
        assert_eq!(
            parse_segment("000000010000000000000100", MIB),
            Some((1, 256))
        );
    }

    #[test]
    fn copies_the_timeline_from_the_fork_segment_on() {
        let seg = 16 * MIB;
        let d = fake_pgdata(&[
            ("000000020000000000000004", seg), // timeline 2 before the fork: not ours
            ("000000030000000000000004", seg), // before the segment holding from_lsn
            ("000000030000000000000005", seg),
            ("000000030000000000000006", seg),
            ("000000040000000000000006", seg), // our later timeline (a crash restart)
            ("00000002.history", 42),
            ("00000003.history", 84),
            ("archive_status", 0),
        ]);
        let pgdata = d.path().join("data");
        let out = preserve(&pgdata, &req(3, "0/5000A28", Some("0/6000100"))).unwrap();
        let dir = d.path().join("pgdr-diverged/3-0_5000A28");
        assert_eq!(out.state, DivergenceState::Preserved);
        assert_eq!(out.dir.as_deref(), Some(dir.to_str().unwrap()));
        assert_eq!(out.files, 5);
        assert_eq!(out.bytes, 3 * seg + 126);
        let mut listed: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            [
                "00000002.history",
                "00000003.history",
                "000000030000000000000005",
                "000000030000000000000006",
                "000000040000000000000006",
                "MANIFEST.json"
            ]
        );
        let m: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(m["fork_lsn"], "0/5000A28");
        assert_eq!(m["end_lsn"], "0/6000100");
        assert_eq!(m["segment_size"], seg);
        assert_eq!(m["segment_size_source"], "segment files");
        assert_eq!(m["bytes"], 3 * seg + 126);
        assert_eq!(m["missing"], serde_json::json!([]));

        // Idempotent: a second run, after PostgreSQL recycled segment 6 and wrote segment 5
        // anew, keeps the preserved copies and reports the same.
        fs::remove_file(pgdata.join("pg_wal/000000030000000000000006")).unwrap();
        fs::File::create(pgdata.join("pg_wal/000000030000000000000005"))
            .unwrap()
            .set_len(5)
            .unwrap();
        let again = preserve(&pgdata, &req(3, "0/5000A28", Some("0/6000100"))).unwrap();
        assert_eq!(again, out);
        assert_eq!(
            fs::metadata(dir.join("000000030000000000000005"))
                .unwrap()
                .len(),
            seg
        );
        let m: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(dir.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(
            m["kept_existing"],
            serde_json::json!(["000000030000000000000005"])
        );
    }

    #[test]
    fn missing_segments_are_named() {
        let seg = 16 * MIB;
        let d = fake_pgdata(&[
            ("000000030000000000000005", seg),
            ("000000030000000000000007", seg),
        ]);
        let out = preserve(
            &d.path().join("data"),
            &req(3, "0/5000A28", Some("0/8000010")),
        )
        .unwrap();
        assert_eq!(out.state, DivergenceState::Incomplete);
        assert_eq!(
            out.missing,
            ["000000030000000000000006", "000000030000000000000008"]
        );
        // Nothing of the timeline left at all: the segment holding from_lsn is named.
        let d = fake_pgdata(&[]);
        let out = preserve(&d.path().join("data"), &req(3, "0/5000A28", None)).unwrap();
        assert_eq!((out.state, out.files), (DivergenceState::Incomplete, 0));
        assert_eq!(out.missing, ["000000030000000000000005"]);
        let m: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(d.path().join("pgdr-diverged/3-0_5000A28").join(MANIFEST)).unwrap(),
        )
        .unwrap();
        assert_eq!(m["segment_size_source"], "assumed default");
    }

    #[test]
    fn segment_size_from_the_files() {
        let seg = MIB;
        let d = fake_pgdata(&[
            ("000000020000000000000050", seg),
            ("000000020000000000000051", seg),
            ("000000020000000000000052.partial", 123),
        ]);
        // 0/5000A28 lies in 1 MiB segment 0x50.
        let out = preserve(&d.path().join("data"), &req(2, "0/5000A28", None)).unwrap();
        assert_eq!((out.state, out.files), (DivergenceState::Preserved, 3));
        assert!(out.dir.unwrap().ends_with("pgdr-diverged/2-0_5000A28"));
    }

    #[test]
    fn errors_name_the_path_and_value() {
        let d = tempfile::tempdir().unwrap();
        let err = preserve(&d.path().join("data"), &req(3, "0/5000A28", None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&d.path().join("data/pg_wal").display().to_string()),
            "{err}"
        );
        // A request whose LSN is not one never reaches the copy: the fence document is unreadable
        // (the member stays fenced; nothing is copied).
        let doc = serde_json::json!({"pgdr_fence": {"since": "2026-11-30T16:00:00Z",
            "reason": "peer-authoritative", "peer": "golddr", "phase": "hold",
            "preserve": {"timeline": 3, "from_lsn": "5000A28"}}});
        let err = pgdr_core::contract::fence::read(doc.as_object().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"5000A28\""), "{err}");
        let err = preserve(d.path(), &req(0, "0/1", None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeline"), "{err}");
    }

    #[test]
    fn timeline_history_of_the_current_timeline() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("pg_wal")).unwrap();
        assert_eq!(timeline_history(d.path(), 1).unwrap(), vec![]);
        let err = timeline_history(d.path(), 2).unwrap_err();
        assert!(err.contains("00000002.history"), "{err}");
        fs::write(
            d.path().join("pg_wal/00000002.history"),
            "1\t0/302A438\tno recovery target specified\n",
        )
        .unwrap();
        assert_eq!(
            timeline_history(d.path(), 2).unwrap(),
            vec![HistoryLine {
                timeline: 1,
                switchpoint: 0x302A438
            }]
        );
    }
}
