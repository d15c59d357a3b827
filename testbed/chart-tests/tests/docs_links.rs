//! Every relative Markdown link, `#anchor` and `README "Section"` reference in the documents
//! resolves: the file exists and the anchor or section names one of its headings (GitHub's
//! anchor rules). The chart's values files, examples and templates name README sections too
//! (they reach users through the values table, the files they copy and NOTES), so their
//! references are checked as well.

use std::path::{Path, PathBuf};

use pgdr_chart_tests::docs::{Disk, check_links, check_section_refs, links, section_refs};
use pgdr_chart_tests::workspace_root;

/// Repository-relative paths of the files whose `*.md` names match, below `dir`.
fn markdown_below(root: &Path, dir: &str, recursive: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::from(dir)];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&d)) else {
            continue;
        };
        for e in entries.flatten() {
            let rel = d.join(e.file_name());
            if e.path().is_dir() {
                if recursive {
                    todo.push(rel);
                }
            } else if rel.extension().is_some_and(|x| x == "md") {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// The documents: both READMEs, the chart's docs, docs/ and every crate's README.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md"), PathBuf::from("chart/README.md")];
    files.extend(markdown_below(root, "chart/docs", false));
    files.extend(markdown_below(root, "docs", true));
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .flatten()
        .map(|e| {
            PathBuf::from("crates")
                .join(e.file_name())
                .join("README.md")
        })
        .filter(|p| root.join(p).is_file())
        .collect();
    crates.sort();
    files.extend(crates);
    files
}

#[test]
fn document_links_and_anchors_resolve() {
    let root = workspace_root();
    let tree = Disk(root.clone());
    let files = documents(&root);
    assert!(files.len() >= 10, "documents found: {files:?}");
    // The parser still sees the documents' links (a parser gone blind passes everything).
    let seen: usize = files
        .iter()
        .map(|f| links(&std::fs::read_to_string(root.join(f)).unwrap_or_default()).len())
        .sum();
    assert!(seen >= 15, "only {seen} links found in {files:?}");
    let problems: Vec<String> = files.iter().flat_map(|f| check_links(&tree, f)).collect();
    assert!(
        problems.is_empty(),
        "broken links:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn readme_section_references_resolve() {
    let root = workspace_root();
    let tree = Disk(root.clone());
    let mut files = documents(&root);
    // The values files and examples users copy, and every template (NOTES, alerts and the
    // helm test reach users too).
    for values in [
        "chart/values.yaml",
        "chart/values-gold.yaml",
        "chart/values-golddr.yaml",
    ] {
        files.push(PathBuf::from(values));
    }
    for dir in ["chart/examples", "chart/templates", "chart/templates/tests"] {
        let mut more: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .flatten()
            .filter(|e| e.path().is_file())
            .map(|e| PathBuf::from(dir).join(e.file_name()))
            .collect();
        more.sort();
        assert!(!more.is_empty(), "no files in {dir}");
        files.extend(more);
    }
    let seen: usize = files
        .iter()
        .map(|f| section_refs(&std::fs::read_to_string(root.join(f)).unwrap_or_default()).len())
        .sum();
    assert!(seen >= 30, "only {seen} README section references found");
    let problems: Vec<String> = files
        .iter()
        .flat_map(|f| check_section_refs(&tree, f))
        .collect();
    assert!(
        problems.is_empty(),
        "README section references that name no heading:\n  {}",
        problems.join("\n  ")
    );
}
