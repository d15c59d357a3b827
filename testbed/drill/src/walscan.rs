//! Reads the drill's rows back out of raw WAL files (the preserved divergence), so that the fault
//! drill's checker can say a lost write is really in `pgdr-diverged/`, not only that a folder
//! exists.
//!
//! A `drill_rows` insert carries the new tuple's data: `id bigint` (8 bytes, little-endian on the
//! machines we run on, at the start of the data) followed at once by `site text` as a short
//! varlena (a 1-byte header `(len + 1) << 1 | 1`, then the bytes: short varlenas are not
//! aligned). A full-page image of the heap page holds the same bytes. Records cross 8 KiB page
//! boundaries with a page header in between, so the headers are cut out first and the files of
//! one folder are read as one stream in name order (a record may also continue into the next
//! segment). A match is 8 bytes of id + the label: no other WAL content of the drill looks like
//! it, and an id found where it was not written would only make the check weaker, never fail it.

use std::collections::BTreeSet;
use std::path::Path;

/// WAL page size (PostgreSQL's default `XLOG_BLCKSZ`, which the packages use).
const PAGE: usize = 8192;
/// `XLP_LONG_HEADER` in `xlp_info`: the first page of a segment has the long header.
const XLP_LONG_HEADER: u16 = 0x0002;
/// `MAXALIGN(sizeof(XLogPageHeaderData))` and of the long form, on 64-bit builds.
const SHORT_HEADER: usize = 24;
const LONG_HEADER: usize = 40;

/// The bytes of WAL pages without their page headers, concatenated.
pub fn strip_page_headers(wal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wal.len());
    for page in wal.chunks(PAGE) {
        let info = page
            .get(2..4)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
        let header = if info & XLP_LONG_HEADER != 0 {
            LONG_HEADER
        } else {
            SHORT_HEADER
        };
        out.extend_from_slice(page.get(header..).unwrap_or_default());
    }
    out
}

/// The short-varlena form of a text value as a tuple stores it.
fn short_varlena(text: &str) -> Vec<u8> {
    let len = text.len();
    assert!(len < 126, "a short varlena holds at most 126 bytes");
    let mut v = vec![(((len + 1) << 1) | 1) as u8];
    v.extend_from_slice(text.as_bytes());
    v
}

/// The ids of the rows written with one of `labels` (the `site` column) found in `stream`.
pub fn row_ids(stream: &[u8], labels: &[&str]) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    for label in labels {
        let needle = short_varlena(label);
        let mut at = 8;
        while at + needle.len() <= stream.len() {
            if stream[at..].starts_with(&needle) {
                let mut id = [0u8; 8];
                id.copy_from_slice(&stream[at - 8..at]);
                ids.insert(i64::from_le_bytes(id));
                at += needle.len();
            } else {
                at += 1;
            }
        }
    }
    ids
}

/// Whether a file name is a WAL segment (24 hex digits, possibly `.partial`).
fn is_segment(name: &str) -> bool {
    let base = name.strip_suffix(".partial").unwrap_or(name);
    base.len() == 24 && base.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The drill's row ids in the WAL segments of `dir` (read in name order as one stream).
pub fn ids_in_folder(dir: &Path, labels: &[&str]) -> BTreeSet<i64> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| is_segment(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    names.sort();
    let mut stream = Vec::new();
    for path in names {
        if let Ok(bytes) = std::fs::read(&path) {
            stream.extend(strip_page_headers(&bytes));
        }
    }
    row_ids(&stream, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds WAL pages from a record stream: a long header on the first page, short ones after.
    fn pages(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = stream;
        let mut first = true;
        while !rest.is_empty() {
            let header = if first { LONG_HEADER } else { SHORT_HEADER };
            let mut page = vec![0xEEu8; header];
            page[0..2].copy_from_slice(&0xD10Du16.to_le_bytes());
            let info = if first { XLP_LONG_HEADER } else { 0x0001 };
            page[2..4].copy_from_slice(&info.to_le_bytes());
            let take = rest.len().min(PAGE - header);
            page.extend_from_slice(&rest[..take]);
            page.resize(PAGE, 0);
            out.extend(page);
            rest = &rest[take..];
            first = false;
        }
        out
    }

    fn tuple(id: i64, site: &str) -> Vec<u8> {
        let mut t = id.to_le_bytes().to_vec();
        t.extend(short_varlena(site));
        t.extend([0u8; 8]); // the timestamp column
        t
    }

    #[test]
    fn rows_are_found_across_page_headers_and_not_elsewhere() {
        // Filler so that row 7 straddles the first page boundary.
        let mut stream = vec![0x11u8; PAGE - LONG_HEADER - 6];
        stream.extend(tuple(7, "gold"));
        stream.extend(vec![0x22u8; 300]);
        stream.extend(tuple(1_000_000_123, "golddr"));
        stream.extend(tuple(9, "gold"));
        // An id-shaped value followed by another label is not a row of these sites.
        stream.extend(tuple(5, "elsewhere"));
        let wal = pages(&stream);
        assert_eq!(wal.len(), 2 * PAGE);
        assert_eq!(
            row_ids(&strip_page_headers(&wal), &["gold", "golddr"]),
            BTreeSet::from([7, 9, 1_000_000_123])
        );
        assert_eq!(
            row_ids(&strip_page_headers(&wal), &["golddr"]),
            BTreeSet::from([1_000_000_123])
        );
        // Without cutting the headers out, row 7 is split and not found: the cut is needed.
        assert!(!row_ids(&wal, &["gold"]).contains(&7));
    }

    #[test]
    fn a_folder_is_read_as_one_stream_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut stream = vec![0x11u8; PAGE - LONG_HEADER - 4];
        stream.extend(tuple(42, "gold"));
        let wal = pages(&stream);
        // Two "segments" of one page each would each have a long header; here the second file
        // continues the stream with the short-header page, as a split in the middle would.
        let (a, b) = wal.split_at(PAGE);
        std::fs::write(dir.path().join("000000030000000000000005"), a).unwrap();
        std::fs::write(dir.path().join("000000030000000000000006.partial"), b).unwrap();
        std::fs::write(dir.path().join("MANIFEST.json"), tuple(43, "gold")).unwrap();
        assert_eq!(
            ids_in_folder(dir.path(), &["gold"]),
            BTreeSet::from([42]),
            "the manifest is not WAL"
        );
        assert!(is_segment("00000003000000000000000A"));
        assert!(!is_segment("00000003.history"));
    }
}
