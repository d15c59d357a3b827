//! Shared helpers of the chart tests: find `helm`, render the chart, look objects up, and
//! generate the README's values table from the `# --` comments of `values.yaml`; check the
//! documents' cross-references ([`docs`]).
//!
//! The tests live in `tests/`; this library has no other users.

#![forbid(unsafe_code)]

pub mod docs;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Overrides the tools folder made by `scripts/deps.sh` (holds `bin/helm`).
pub const ENV_TOOLS: &str = "PGDR_TOOLS";
/// Release name used by the tests (the one the design's install commands use).
pub const RELEASE: &str = "patroni";
/// Namespace used by the tests (a BC Gov style licence-plate namespace).
pub const NAMESPACE: &str = "abc123-prod";

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crate lives in <root>/testbed/chart-tests")
        .to_path_buf()
}

pub fn chart_dir() -> PathBuf {
    workspace_root().join("chart")
}

/// The `helm` binary: `$PGDR_TOOLS/bin/helm`, else `<root>/.tools/bin/helm`. Panics with the
/// fix when it is missing.
pub fn helm() -> PathBuf {
    let tools = std::env::var_os(ENV_TOOLS)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools"));
    let helm = tools.join("bin").join("helm");
    assert!(
        helm.is_file(),
        "helm not found at {}: run `make deps` (or `bash scripts/deps.sh`), or set {ENV_TOOLS} to the folder holding bin/helm",
        helm.display()
    );
    helm
}

/// One `helm template` invocation.
#[derive(Clone, Debug, Default)]
pub struct Render {
    values_files: Vec<PathBuf>,
    sets: Vec<String>,
    set_json: Vec<String>,
    release: Option<String>,
    extra_yaml: Option<String>,
    chart: Option<PathBuf>,
}

impl Render {
    /// Renders with the chart's `values-<site>.yaml` overlay (`gold`, `golddr`).
    pub fn site(site: &str) -> Self {
        Self::default().values_file(chart_dir().join(format!("values-{site}.yaml")))
    }

    /// Renders with the chart's defaults only.
    pub fn defaults() -> Self {
        Self::default()
    }

    pub fn values_file(mut self, path: PathBuf) -> Self {
        self.values_files.push(path);
        self
    }

    /// `--set key=value`.
    pub fn set(mut self, kv: &str) -> Self {
        self.sets.push(kv.to_string());
        self
    }

    /// `--set-json key=json`.
    pub fn set_json(mut self, kv: &str) -> Self {
        self.set_json.push(kv.to_string());
        self
    }

    /// A values document given inline (written to a temporary file).
    pub fn yaml(mut self, yaml: &str) -> Self {
        self.extra_yaml = Some(yaml.to_string());
        self
    }

    pub fn release(mut self, name: &str) -> Self {
        self.release = Some(name.to_string());
        self
    }

    /// Renders the chart in `dir` instead of the repository's (e.g. a copy with a test-only
    /// template that calls one of the chart's named templates with fixture data).
    pub fn chart_at(mut self, dir: PathBuf) -> Self {
        self.chart = Some(dir);
        self
    }

    fn command(&self, tmp: &Path) -> Command {
        self.command_with(tmp, &["template"])
    }

    fn command_with(&self, tmp: &Path, verb: &[&str]) -> Command {
        let mut cmd = Command::new(helm());
        cmd.args(verb)
            .arg(self.release.as_deref().unwrap_or(RELEASE))
            .arg(self.chart.clone().unwrap_or_else(chart_dir))
            .args(["--namespace", NAMESPACE]);
        for f in &self.values_files {
            cmd.arg("--values").arg(f);
        }
        if let Some(yaml) = &self.extra_yaml {
            let path = tmp.join("extra-values.yaml");
            std::fs::write(&path, yaml).expect("write temporary values file");
            cmd.arg("--values").arg(path);
        }
        for s in &self.sets {
            cmd.arg("--set").arg(s);
        }
        for s in &self.set_json {
            cmd.arg("--set-json").arg(s);
        }
        // Keep helm away from the user's repositories and caches.
        cmd.env("HELM_CONFIG_HOME", tmp.join("config"))
            .env("HELM_CACHE_HOME", tmp.join("cache"))
            .env("HELM_DATA_HOME", tmp.join("data"));
        cmd
    }

    /// Runs `helm template`; `Err` holds helm's stderr.
    pub fn try_render(&self) -> Result<Objects, String> {
        let tmp = tempfile::tempdir().expect("temporary folder");
        let out = self
            .command(tmp.path())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", helm().display()));
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8(out.stdout).expect("helm output is UTF-8");
        Ok(Objects::parse(&text))
    }

    /// The NOTES a `helm install` prints (a client-side dry run: no cluster, so `lookup` is empty).
    pub fn notes(&self) -> String {
        let tmp = tempfile::tempdir().expect("temporary folder");
        let out = self
            .command_with(tmp.path(), &["install", "--dry-run=client"])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", helm().display()));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "helm install --dry-run failed for {self:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        match text.find("\nNOTES:\n") {
            Some(i) => text[i + "\nNOTES:\n".len()..].to_string(),
            None => panic!("no NOTES in the dry run's output:\n{text}"),
        }
    }

    /// Renders or panics with helm's message.
    pub fn render(&self) -> Objects {
        self.try_render()
            .unwrap_or_else(|e| panic!("helm template failed for {self:?}:\n{e}"))
    }

    /// Renders expecting a failure; returns helm's stderr.
    pub fn render_err(&self) -> String {
        match self.try_render() {
            Ok(_) => panic!("helm template unexpectedly succeeded for {self:?}"),
            Err(e) => e,
        }
    }
}

/// A copy of the chart in a temporary folder, plus `extra` templates (file name, text) in its
/// `templates/`: for calling the chart's named templates with fixture data. Keep the returned
/// folder alive while rendering.
pub fn chart_copy_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("create folder");
        for e in std::fs::read_dir(from)
            .expect("read chart folder")
            .flatten()
        {
            let target = to.join(e.file_name());
            if e.path().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), &target).expect("copy chart file");
            }
        }
    }
    let dir = tempfile::tempdir().expect("temporary folder");
    copy(&chart_dir(), &dir.path().join("patroni"));
    for (name, text) in extra {
        std::fs::write(dir.path().join("patroni/templates").join(name), text)
            .expect("write extra template");
    }
    dir
}

/// The objects of one render.
#[derive(Clone, Debug)]
pub struct Objects(pub Vec<Value>);

impl Objects {
    /// Parses a multi-document YAML stream (comment-only documents are dropped).
    pub fn parse(text: &str) -> Self {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text)
            .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{text}"));
        Objects(docs.into_iter().filter(|d| !d.is_null()).collect())
    }

    pub fn all(&self) -> impl Iterator<Item = &Value> {
        self.0.iter()
    }

    pub fn of_kind<'a>(&'a self, kind: &str) -> impl Iterator<Item = &'a Value> + 'a {
        let kind = kind.to_string();
        self.0.iter().filter(move |o| o["kind"] == kind.as_str())
    }

    pub fn count(&self, kind: &str) -> usize {
        self.of_kind(kind).count()
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.of_kind(kind).find(|o| o["metadata"]["name"] == name)
    }

    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name).unwrap_or_else(|| {
            let have: Vec<String> = self.0.iter().map(describe).collect();
            panic!("no {kind} {name} in the render; have: {have:?}")
        })
    }

    /// The single object of `kind` (panics unless there is exactly one).
    pub fn one(&self, kind: &str) -> &Value {
        let all: Vec<&Value> = self.of_kind(kind).collect();
        assert_eq!(
            all.len(),
            1,
            "expected exactly one {kind}, found {}",
            all.len()
        );
        all[0]
    }

    /// Every pod template of the render: (object description, pod metadata, pod spec).
    pub fn pod_templates(&self) -> Vec<(String, &Value, &Value)> {
        let mut out = Vec::new();
        for o in &self.0 {
            let (meta, spec) = match o["kind"].as_str() {
                Some("StatefulSet" | "Deployment" | "DaemonSet" | "Job") => (
                    &o["spec"]["template"]["metadata"],
                    &o["spec"]["template"]["spec"],
                ),
                Some("CronJob") => (
                    &o["spec"]["jobTemplate"]["spec"]["template"]["metadata"],
                    &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                ),
                Some("Pod") => (&o["metadata"], &o["spec"]),
                _ => continue,
            };
            out.push((describe(o), meta, spec));
        }
        out
    }
}

/// `Kind/name` of an object.
pub fn describe(o: &Value) -> String {
    format!(
        "{}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The containers (and init containers) of a pod spec.
pub fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| spec[*k].as_array())
        .flatten()
        .collect()
}

/// The `env` entry `name` of a container.
pub fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// The literal value of env `name` (panics when missing or not a literal).
pub fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    env(container, name)
        .unwrap_or_else(|| panic!("env {name} missing in container {}", container["name"]))["value"]
        .as_str()
        .unwrap_or_else(|| {
            panic!(
                "env {name} of container {} is not a literal value",
                container["name"]
            )
        })
}

/// The container `name` of a pod spec.
pub fn container<'a>(spec: &'a Value, name: &str) -> &'a Value {
    containers(spec)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// True when every label of `selector` is in `labels` with the same value.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    match selector.as_object() {
        Some(sel) => sel.iter().all(|(k, v)| labels.get(k) == Some(v)),
        None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// README values table, generated from values.yaml.

/// Start and end markers of the generated table in chart/README.md.
pub const TABLE_START: &str = "<!-- values-table:start (generated from values.yaml by `PGDR_UPDATE_CHART_README=1 cargo test -p pgdr-chart-tests --test readme`; do not edit) -->";
pub const TABLE_END: &str = "<!-- values-table:end -->";

/// One documented value.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentedValue {
    pub path: String,
    pub description: String,
}

/// Reads the `# -- description` comments of values.yaml and the key each one documents.
///
/// The format is the helm-docs one restricted to what values.yaml uses: a `# --` line (plus
/// optional `#` continuation lines) directly above a `key:` line; keys are indented by two
/// spaces per level. A documented map documents all of its children.
pub fn documented_values(values_yaml: &str) -> Result<Vec<DocumentedValue>, String> {
    let mut out = Vec::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<String> = None;
    for (n, line) in values_yaml.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(desc) = trimmed.strip_prefix("# --") {
            pending = Some(desc.trim().to_string());
            continue;
        }
        if let Some(more) = trimmed.strip_prefix('#') {
            if let Some(p) = pending.as_mut() {
                p.push(' ');
                p.push_str(more.trim());
            }
            continue;
        }
        if trimmed.is_empty() {
            if pending.is_some() {
                return Err(format!(
                    "values.yaml:{}: a `# --` comment is followed by a blank line",
                    n + 1
                ));
            }
            continue;
        }
        if trimmed.starts_with('-') {
            pending = None;
            continue;
        }
        let Some((key, _)) = trimmed.split_once(':') else {
            continue;
        };
        if key.contains(' ') || key.starts_with('"') {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        stack.push((indent, key.to_string()));
        let path = stack
            .iter()
            .map(|(_, k)| k.as_str())
            .collect::<Vec<_>>()
            .join(".");
        if let Some(description) = pending.take() {
            out.push(DocumentedValue { path, description });
        }
    }
    Ok(out)
}

/// Leaves of a values tree: scalars, lists and empty maps, by dotted path.
pub fn leaves(value: &Value) -> Vec<String> {
    fn walk(v: &Value, prefix: &str, out: &mut Vec<String>) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, child) in map {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(child, &p, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

/// The value at a dotted path.
pub fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, k| v.get(k))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Parses values.yaml, checks that every value is documented and every comment documents a
/// value, and returns the Markdown table (markers included).
pub fn values_table(values_yaml: &str) -> Result<String, String> {
    let values: Value =
        serde_saphyr::from_str(values_yaml).map_err(|e| format!("values.yaml: {e}"))?;
    let docs = documented_values(values_yaml)?;
    let mut problems = Vec::new();
    for d in &docs {
        if at(&values, &d.path).is_none() {
            problems.push(format!(
                "`# --` comment for {} which is not a value",
                d.path
            ));
        }
        if d.description.is_empty() {
            problems.push(format!("{} has an empty description", d.path));
        }
    }
    for leaf in leaves(&values) {
        let covered = docs
            .iter()
            .any(|d| leaf == d.path || leaf.starts_with(&format!("{}.", d.path)));
        if !covered {
            problems.push(format!("{leaf} has no `# --` description"));
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "values.yaml is not fully documented:\n  {}",
            problems.join("\n  ")
        ));
    }
    let mut table = String::new();
    table.push_str(TABLE_START);
    table.push_str("\n| Key | Type | Default | Description |\n|---|---|---|---|\n");
    for d in &docs {
        let v = at(&values, &d.path).expect("checked above");
        let default = serde_json::to_string(v).expect("JSON");
        let _ = writeln!(
            table,
            "| `{}` | {} | `{}` | {} |",
            d.path,
            type_name(v),
            default.replace('|', "\\|"),
            d.description.replace('|', "\\|")
        );
    }
    table.push_str(TABLE_END);
    Ok(table)
}

/// Replaces the generated table inside `readme` (between the markers).
pub fn splice_table(readme: &str, table: &str) -> Result<String, String> {
    let start = readme
        .find(TABLE_START)
        .ok_or("chart/README.md has no values-table start marker")?;
    let end = readme[start..]
        .find(TABLE_END)
        .map(|i| start + i + TABLE_END.len())
        .ok_or("chart/README.md has no values-table end marker")?;
    Ok(format!("{}{}{}", &readme[..start], table, &readme[end..]))
}

/// Field names of `pub struct Config { ... }` in a binary's `config.rs` (its environment
/// variables are `<PREFIX><FIELD>`). `None` when the file does not exist (binary not written yet).
pub fn config_fields(config_rs: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(config_rs).ok()?;
    let start = text.find("pub struct Config {")?;
    let body = &text[start + "pub struct Config {".len()..];
    let body = &body[..body.find("\n}").unwrap_or(body.len())];
    Some(
        body.lines()
            .filter_map(|l| l.trim().strip_prefix("pub "))
            .filter_map(|l| l.split_once(':').map(|(name, _)| name.trim().to_string()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_values_follow_indentation() {
        let yaml = "# -- top\na: 1\nb:\n  # -- nested\n  c: x\n  # -- map\n  d:\n    e: 1\n# -- list\nf:\n  - 1\n";
        let docs = documented_values(yaml).unwrap();
        let paths: Vec<&str> = docs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["a", "b.c", "b.d", "f"]);
    }

    #[test]
    fn undocumented_leaf_is_reported() {
        let yaml = "# -- top\na: 1\nb:\n  c: x\n";
        let err = values_table(yaml).unwrap_err();
        assert!(err.contains("b.c has no `# --` description"), "{err}");
    }

    #[test]
    fn comment_for_missing_value_is_reported() {
        let yaml = "# -- top\na: 1\nb:\n  # -- gone\n  # -- c\n  c: 1\n";
        // The second `# --` replaces the first: only c is documented.
        assert!(values_table(yaml).is_ok());
        let bad = documented_values("# -- x\n\na: 1\n").unwrap_err();
        assert!(bad.contains("blank line"), "{bad}");
    }

    #[test]
    fn splice_replaces_between_markers() {
        let readme = format!("intro\n{TABLE_START}\nold\n{TABLE_END}\noutro\n");
        let new = splice_table(&readme, &format!("{TABLE_START}\nnew\n{TABLE_END}")).unwrap();
        assert_eq!(
            new,
            format!("intro\n{TABLE_START}\nnew\n{TABLE_END}\noutro\n")
        );
    }

    #[test]
    fn selects_is_subset_match() {
        let sel = serde_json::json!({"a": "1"});
        assert!(selects(&sel, &serde_json::json!({"a": "1", "b": "2"})));
        assert!(!selects(&sel, &serde_json::json!({"a": "2"})));
    }
}
