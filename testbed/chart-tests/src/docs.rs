//! Cross-references between the repository's documents: relative Markdown links, `#anchors` and
//! `README "Section"` references, checked against the files and headings they name.
//!
//! Anchors follow GitHub's rules (the links are read on GitHub): a heading's anchor is its text,
//! lower-cased, with punctuation other than `-` and `_` removed and each space turned into `-`;
//! a repeated anchor gets `-1`, `-2`, ... in document order.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// GitHub's anchor for a heading's text (inline Markdown already removed or not).
pub fn github_slug(heading: &str) -> String {
    plain_text(heading)
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The text GitHub renders for inline Markdown: links keep their text, code spans their content,
/// HTML tags and emphasis asterisks disappear.
fn plain_text(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if c == '['
            && let Some(close) = rest.find("](")
            && let Some(end) = rest[close..].find(')')
        {
            out.push_str(&rest[1..close]);
            rest = &rest[close + end + 1..];
            continue;
        }
        if c == '<'
            && let Some(end) = rest.find('>')
        {
            rest = &rest[end + 1..];
            continue;
        }
        if c != '*' && c != '`' {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out.trim().to_string()
}

/// Lines of a Markdown document outside fenced code blocks, with their 1-based numbers.
fn prose_lines(markdown: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (n, line) in markdown.lines().enumerate() {
        let t = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| t.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push((n + 1, line)),
            _ => {}
        }
    }
    out
}

/// The ATX headings (`# ...` to `###### ...`) outside code blocks, as written.
pub fn headings(markdown: &str) -> Vec<String> {
    prose_lines(markdown)
        .into_iter()
        .filter_map(|(_, line)| {
            let t = line.trim_start();
            let hashes = t.chars().take_while(|&c| c == '#').count();
            if !(1..=6).contains(&hashes) || line.len() - t.len() > 3 {
                return None;
            }
            let text = &t[hashes..];
            if !(text.is_empty() || text.starts_with(' ')) {
                return None;
            }
            Some(text.trim().trim_end_matches('#').trim().to_string())
        })
        .collect()
}

/// Every anchor a document offers: its headings' slugs (numbered when repeated) and the `id` /
/// `name` attributes of HTML anchors.
pub fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for h in headings(markdown) {
        let slug = github_slug(&h);
        let mut candidate = slug.clone();
        let mut n = 0;
        while out.contains(&candidate) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
        out.insert(candidate);
    }
    for (_, line) in prose_lines(markdown) {
        for attr in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(i) = rest.find(attr) {
                rest = &rest[i + attr.len()..];
                if let Some(end) = rest.find('"') {
                    out.insert(rest[..end].to_string());
                }
            }
        }
    }
    out
}

/// Blanks inline code spans so that link-like text inside them is not taken for a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else {
            out.push(if in_code { ' ' } else { c });
        }
    }
    out
}

/// One link of a Markdown document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub line: usize,
    pub target: String,
}

/// Inline links and images (`[text](target)`) and reference definitions (`[id]: target`),
/// outside code blocks and code spans.
pub fn links(markdown: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (n, raw) in prose_lines(markdown) {
        let line = without_code_spans(raw);
        let t = line.trim_start();
        if t.starts_with('[')
            && let Some(close) = t.find("]:")
            && let Some(target) = t[close + 2..].split_whitespace().next()
        {
            out.push(Link {
                line: n,
                target: target.trim_matches(['<', '>']).to_string(),
            });
        }
        let mut rest = line.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            out.push(Link {
                line: n,
                target: target.trim_matches(['<', '>']).to_string(),
            });
            rest = &rest[end..];
        }
    }
    out
}

/// The end of the white space from `at` on; a line break may be followed by a comment marker
/// (`#`, as in a values.yaml comment that wraps).
fn gap(bytes: &[u8], mut at: usize) -> usize {
    let mut new_line = false;
    while at < bytes.len() {
        match bytes[at] {
            b' ' | b'\t' => {}
            b'\n' => new_line = true,
            b'#' if new_line => {}
            _ => break,
        }
        at += 1;
    }
    at
}

/// A `README "Section"` reference: prose naming a section of a README by its heading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionRef {
    pub line: usize,
    /// The README it names: relative to the referring file's folder, or to the repository root
    /// when it starts with `/`; `None` for a bare `README` (the nearest README.md in that folder
    /// or above it).
    pub readme: Option<String>,
    pub section: String,
}

/// Finds `README "Section"`, `README.md "Section"`, `path/README.md "Section"`,
/// `[...](path/README.md) "Section"` and `chart README "Section"` (optionally with the word
/// `section` before the quotes) in any text: Markdown, YAML comments, templates.
pub fn section_refs(text: &str) -> Vec<SectionRef> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find("README").map(|i| from + i) {
        from = i + "README".len();
        let mut j = from;
        // Paths written in prose are relative to the repository root (marked with a leading
        // `/`); a Markdown link target is relative to the referring file.
        let mut path: Option<String> = None;
        if text[j..].starts_with(".md") {
            j += 3;
            let start = text[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
                .map_or(0, |k| k + 1);
            if start < i {
                path = Some(format!("/{}", &text[start..j]));
            }
            if text[j..].starts_with("](") {
                let Some(end) = text[j..].find(')') else {
                    continue;
                };
                path = Some(text[j + 2..j + end].to_string());
                j += end + 1;
            }
        } else if text[..i].trim_end().ends_with("chart")
            && text[..i].ends_with(char::is_whitespace)
        {
            path = Some("/chart/README.md".into());
        }
        if j < bytes.len() && bytes[j] == b'`' {
            j += 1;
        }
        let mut k = gap(bytes, j);
        if text[k..].starts_with("section") {
            k = gap(bytes, k + "section".len());
        }
        // A quote right after the name (allowing a line break, not other words in between).
        if k == j || k >= bytes.len() || bytes[k] != b'"' {
            continue;
        }
        let Some(len) = text[k + 1..].find('"') else {
            continue;
        };
        let section = text[k + 1..k + 1 + len]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if section.is_empty() || section.len() > 100 {
            continue;
        }
        out.push(SectionRef {
            line: text[..i].matches('\n').count() + 1,
            readme: path,
            section,
        });
    }
    out
}

/// True when a heading of `markdown` is `section` or starts with it (followed by a non-word
/// character): `README "Standby bootstrap"` names "Standby bootstrap (the placeholder) — ...".
pub fn has_section(markdown: &str, section: &str) -> bool {
    let want = section.to_lowercase();
    headings(markdown).iter().any(|h| {
        let h = plain_text(h).to_lowercase();
        h == want
            || h.strip_prefix(&want)
                .is_some_and(|rest| rest.starts_with(|c: char| !c.is_alphanumeric()))
    })
}

/// Joins `rel` to `base` lexically (`..` pops a component); `None` when it leaves the root.
fn join(base: &Path, rel: &str) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Reads files below `root` by repository-relative path (a trait so the checker can be tested
/// on a made-up tree).
pub trait Tree {
    /// The file's text; `None` when it does not exist (a folder is `Some("")`).
    fn read(&self, rel: &Path) -> Option<String>;
}

/// The working tree.
pub struct Disk(pub PathBuf);

impl Tree for Disk {
    fn read(&self, rel: &Path) -> Option<String> {
        let p = self.0.join(rel);
        if p.is_dir() {
            return Some(String::new());
        }
        std::fs::read_to_string(p).ok()
    }
}

/// Problems of one Markdown file's relative links and anchors, as `path:line: message`.
pub fn check_links(tree: &dyn Tree, file: &Path) -> Vec<String> {
    let Some(text) = tree.read(file) else {
        return vec![format!("{}: cannot be read", file.display())];
    };
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();
    for link in links(&text) {
        let t = link.target.as_str();
        if t.is_empty() || t.contains("://") || t.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match t.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (t, None),
        };
        let target = if path.is_empty() {
            Some(file.to_path_buf())
        } else {
            join(dir, path)
        };
        let at = format!("{}:{}", file.display(), link.line);
        let Some(target) = target else {
            problems.push(format!("{at}: link {t} leaves the repository"));
            continue;
        };
        let Some(body) = tree.read(&target) else {
            problems.push(format!(
                "{at}: link {t}: {} does not exist",
                target.display()
            ));
            continue;
        };
        if let Some(anchor) = anchor {
            let markdown = target.extension().is_some_and(|e| e == "md");
            if markdown && !anchors(&body).contains(anchor) {
                problems.push(format!(
                    "{at}: link {t}: no heading with anchor #{anchor} in {}",
                    target.display()
                ));
            }
        }
    }
    problems
}

/// Problems of one file's `README "Section"` references.
pub fn check_section_refs(tree: &dyn Tree, file: &Path) -> Vec<String> {
    let Some(text) = tree.read(file) else {
        return vec![format!("{}: cannot be read", file.display())];
    };
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut problems = Vec::new();
    for r in section_refs(&text) {
        let at = format!("{}:{}", file.display(), r.line);
        let readme = match &r.readme {
            Some(p) => match p.strip_prefix('/') {
                Some(root) => Some(PathBuf::from(root)),
                None => join(dir, p),
            },
            // The nearest README.md in the file's folder or above it.
            None => dir
                .ancestors()
                .map(|d| d.join("README.md"))
                .find(|p| tree.read(p).is_some()),
        };
        let Some(readme) = readme else {
            problems.push(format!("{at}: README \"{}\": no README found", r.section));
            continue;
        };
        match tree.read(&readme) {
            None => problems.push(format!(
                "{at}: README \"{}\": {} does not exist",
                r.section,
                readme.display()
            )),
            Some(body) if !has_section(&body, &r.section) => problems.push(format!(
                "{at}: README \"{}\": {} has no such section",
                r.section,
                readme.display()
            )),
            Some(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Fake(BTreeMap<PathBuf, String>);

    impl Tree for Fake {
        fn read(&self, rel: &Path) -> Option<String> {
            self.0.get(rel).cloned()
        }
    }

    fn fake(files: &[(&str, &str)]) -> Fake {
        Fake(
            files
                .iter()
                .map(|(p, t)| (PathBuf::from(p), t.to_string()))
                .collect(),
        )
    }

    #[test]
    fn slugs_follow_github() {
        assert_eq!(github_slug("Peer-API witness"), "peer-api-witness");
        assert_eq!(
            github_slug(
                "Standby bootstrap (the placeholder) — why the chart writes `standby_cluster` at all"
            ),
            "standby-bootstrap-the-placeholder--why-the-chart-writes-standby_cluster-at-all"
        );
        assert_eq!(github_slug("pg_hba and TLS"), "pg_hba-and-tls");
        assert_eq!(
            github_slug("Image contract (`pgdr-patroni`, built from docker/)"),
            "image-contract-pgdr-patroni-built-from-docker"
        );
        assert_eq!(
            github_slug("See [the runbook](x.md) now"),
            "see-the-runbook-now"
        );
        assert_eq!(
            github_slug("1. Gold comes back: make it follow"),
            "1-gold-comes-back-make-it-follow"
        );
    }

    #[test]
    fn repeated_headings_are_numbered_and_code_blocks_are_not_headings() {
        let md = "# A\n## Notes\n```sh\n# Notes\n```\n## Notes\n<a id=\"custom\"></a>\n";
        let a = anchors(md);
        assert!(a.contains("notes") && a.contains("notes-1") && a.contains("custom"));
        assert!(!a.contains("notes-2"), "{a:?}");
    }

    #[test]
    fn broken_links_and_anchors_are_reported() {
        let tree = fake(&[
            (
                "docs/a.md",
                "# Title\n## Real section\nSee [b](b.md#step-1), [bad](b.md#step-9), [gone](c.md), \
                 [self](#real-section), [typo](#real-sections), `[code](nowhere.md)` and \
                 [web](https://example.com/x.md#y).\n```\n[fenced](nowhere.md)\n```\n",
            ),
            ("docs/b.md", "# B\n## Step 1\n"),
        ]);
        let problems = check_links(&tree, Path::new("docs/a.md"));
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("#step-9"), "{problems:#?}");
        assert!(
            problems[1].contains("docs/c.md does not exist"),
            "{problems:#?}"
        );
        assert!(problems[2].contains("#real-sections"), "{problems:#?}");
    }

    #[test]
    fn section_references_resolve_to_headings() {
        let tree = fake(&[
            ("README.md", "# Top\n## Running pieces\n"),
            (
                "chart/README.md",
                "# Chart\n## Standby bootstrap (the placeholder)\n## After a failover\n",
            ),
            ("crates/x/README.md", "# x\n## Reading preserved WAL\n"),
            (
                "chart/values.yaml",
                "# -- see README \"After a failover\" and README \"Standby bootstrap\",\n\
                 # crates/x/README.md \"Reading preserved WAL\", README \"Failback\" and\n\
                 # README section\n# \"Nowhere\".\n",
            ),
            (
                "docs/runbooks/r.md",
                "(chart README \"After a failover\"; [x](../../crates/x/README.md) \"Reading preserved WAL\"; README \"Running pieces\"; the chart\nREADME \"Standby bootstrap\")\n",
            ),
        ]);
        let problems = check_section_refs(&tree, Path::new("chart/values.yaml"));
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].contains("\"Failback\""), "{problems:#?}");
        assert!(
            problems[1].contains("\"Nowhere\"") && problems[1].contains("values.yaml:3"),
            "{problems:#?}"
        );
        // In docs/runbooks a bare README is the nearest one: the repository's (no docs/README.md).
        let problems = check_section_refs(&tree, Path::new("docs/runbooks/r.md"));
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn prose_without_a_quoted_section_is_no_reference() {
        assert!(section_refs("the README explains \"why\" later").is_empty());
        assert!(section_refs("see README.md for \"x\"").is_empty());
    }
}
