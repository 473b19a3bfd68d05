//! Shared by the `chart_*` tests: finding `helm` (built by `e2e/cluster/cluster.sh build`),
//! rendering the chart with a set of values, and reading the rendered objects.
//!
//! Gated like the cluster tests: when the tools are not built the tests print why and pass, unless
//! `DIG_E2E_REQUIRE_CLUSTER=1` (set by `e2e/test-all.sh`), which makes that a failure.

#![allow(dead_code)] // each test crate uses its own subset

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use dig_e2e::cluster::tools_or_skip;
use serde::Deserialize;
use serde_json::Value;

pub const RELEASE: &str = "dig-operator";
pub const NAMESPACE: &str = "dig-system";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the workspace")
        .to_path_buf()
}

pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/dig-operator")
}

pub struct Helm {
    bin: PathBuf,
}

impl Helm {
    pub fn in_tools(tools: &Path) -> Self {
        Self {
            bin: tools.join("helm"),
        }
    }

    pub fn or_skip(test: &str) -> Option<Self> {
        tools_or_skip(test).map(|tools| Self::in_tools(&tools))
    }

    /// Runs helm with an isolated home, so nothing from the user's config or repositories leaks in.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let home = std::env::temp_dir().join(format!("dig-e2e-helm-home-{}", std::process::id()));
        let output = Command::new(&self.bin)
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "`helm {}` failed ({}):\n{stderr}{stdout}",
                args.join(" "),
                output.status
            ))
        }
    }

    /// `helm template` of the chart as release `dig-operator` in `dig-system`, with `extra` arguments
    /// (`--set ...`, `--api-versions ...`); returns the YAML stream.
    pub fn template_text(&self, extra: &[&str]) -> Result<String, String> {
        let chart = chart_dir();
        let mut args = vec![
            "template",
            RELEASE,
            chart.to_str().expect("chart path is UTF-8"),
            "--namespace",
            NAMESPACE,
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Like [`Self::template_text`], parsed; panics naming the values when rendering fails.
    pub fn template(&self, extra: &[&str]) -> Rendered {
        let text = self
            .template_text(extra)
            .unwrap_or_else(|e| panic!("rendering with {extra:?}: {e}"));
        Rendered::parse(&text)
    }
}

/// The objects of a rendered chart.
#[derive(Debug)]
pub struct Rendered {
    pub objects: Vec<Value>,
}

impl Rendered {
    pub fn parse(text: &str) -> Self {
        let mut objects = Vec::new();
        for document in yaml_serde::Deserializer::from_str(text) {
            let value = Value::deserialize(document)
                .unwrap_or_else(|e| panic!("rendered chart is not valid YAML: {e}\n{text}"));
            if !value.is_null() {
                objects.push(value);
            }
        }
        Self { objects }
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    pub fn get(&self, kind: &str, name: &str) -> &Value {
        self.find(kind, name).unwrap_or_else(|| {
            let present: Vec<String> = self
                .objects
                .iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect();
            panic!("no {kind} {name} in the rendered chart; present: {present:?}")
        })
    }

    pub fn names_of_kind(&self, kind: &str) -> Vec<String> {
        self.of_kind(kind)
            .iter()
            .map(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }
}

/// Strings of a JSON array (empty when absent).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Series names a PromQL expression selects: identifiers that are not functions, keywords,
/// label names (inside `{}` or after `by`/`without`/`on`/`ignoring`/`group_*`), durations
/// (inside `[]`), numbers, strings or Grafana variables.
pub fn promql_series_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 8] = [
        "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2",
    ];
    const LABEL_LIST: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips to the bracket that closes the one at `i`, honouring strings inside.
    let skip_group = |mut i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => {
                    let quote = chars[i];
                    i += 1;
                    while i < chars.len() && chars[i] != quote {
                        i += if chars[i] == '\\' { 2 } else { 1 };
                    }
                }
                c if c == open => depth += 1,
                c if c == close => {
                    depth -= 1;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => i = skip_group(i, '{', '}'),
            '[' => i = skip_group(i, '[', ']'),
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                // `sum by (le) (...)`: an aggregation whose modifier comes first is a call too.
                let modifier_follows = ["by", "without"].iter().any(|m| {
                    let rest: String = chars[next..].iter().take(m.len() + 1).collect();
                    rest.strip_prefix(m).is_some_and(|after| {
                        after.is_empty()
                            || !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                    })
                });
                let called = (next < chars.len() && chars[next] == '(') || modifier_follows;
                if LABEL_LIST.contains(&word.as_str()) {
                    if called {
                        i = skip_group(next, '(', ')');
                    }
                } else if !called && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The series a Prometheus text exposition can hold: every sample name, and for every
/// `# TYPE` line the names its samples get (prometheus-client writes `# TYPE x counter` and
/// samples `x_total`; histograms get `_bucket`, `_sum`, `_count`), so families that have not
/// been touched yet still count.
pub fn exposed_series_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            for suffix in suffixes {
                let full = format!("{name}{suffix}");
                // A counter registered with `_total` already is not suffixed twice.
                names.insert(full.replace("_total_total", "_total"));
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line
                .find(|c: char| c == '{' || c.is_whitespace())
                .unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Every expression of the chart's dashboards, with the file and panel it comes from; the
/// metric of each `label_values(metric, label)` variable query too.
pub fn dashboard_expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dir = chart_dir().join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("dashboard file");
        let dashboard: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((format!("{file}: {}", panel["title"]), expr.to_string()));
                }
            }
        }
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(query) = variable["definition"].as_str() else {
                continue;
            };
            if let Some(args) = query
                .strip_prefix("label_values(")
                .and_then(|rest| rest.strip_suffix(')'))
            {
                // label_values(metric{...}, label): only the first argument is a selector.
                let selector = args.rsplit_once(',').map_or(args, |(metric, _)| metric);
                out.push((
                    format!("{file}: variable {}", variable["name"]),
                    selector.to_string(),
                ));
            }
        }
    }
    out
}

/// Every alert expression of the chart's PrometheusRule, rendered by helm.
pub fn alert_expressions(helm: &Helm) -> Vec<(String, String)> {
    let rendered = helm.template(&["--api-versions", "monitoring.coreos.com/v1"]);
    let mut out = Vec::new();
    for rule in rendered.of_kind("PrometheusRule") {
        for group in rule["spec"]["groups"].as_array().into_iter().flatten() {
            for alert in group["rules"].as_array().into_iter().flatten() {
                if let Some(expr) = alert["expr"].as_str() {
                    out.push((format!("alert {}", alert["alert"]), expr.to_string()));
                }
            }
        }
    }
    out
}

/// Whether the binary owning `name`'s prefix registers that family in its metrics module
/// (the name without prefix and sample suffix, as a string literal).
pub fn registered_in_source(name: &str) -> bool {
    // Longest prefixes first: the webhook's families live under the operator's prefix.
    let sources = [
        ("dig_operator_webhook_", "operator/src/webhook/server.rs"),
        ("dig_operator_", "operator/src/metrics.rs"),
        ("dig_bootstrap_", "bootstrap/src/metrics.rs"),
        ("dig_node_", "sidecar/src/metrics.rs"),
        ("dig_sync_", "sidecar/src/sync/metrics.rs"),
    ];
    let Some((prefix, file)) = sources.iter().find(|(p, _)| name.starts_with(p)) else {
        return false;
    };
    let mut base = &name[prefix.len()..];
    for suffix in ["_total", "_bucket", "_sum", "_count"] {
        if let Some(stripped) = base.strip_suffix(suffix) {
            base = stripped;
            break;
        }
    }
    let path = workspace_root().join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .contains(&format!("\"{base}\""))
}

/// The series named by the chart's queries, sorted by what a `/metrics` page showed.
#[derive(Debug, Default)]
pub struct SeriesCheck {
    /// Exported on the page.
    pub checked: BTreeSet<String>,
    /// Not on the page but registered in the owner's metrics module: a labelled family nothing has
    /// touched yet (prometheus-client omits it until its first child).
    pub unobserved: BTreeSet<String>,
    /// Neither: `<origin>: <series>` for each.
    pub missing: Vec<String>,
}

/// Sorts every series that `queries` (origin, PromQL) name and `wanted` keeps against the
/// `exported` series names.
pub fn check_series(
    queries: &[(String, String)],
    exported: &BTreeSet<String>,
    wanted: impl Fn(&str) -> bool,
) -> SeriesCheck {
    let mut check = SeriesCheck::default();
    for (origin, expr) in queries {
        for name in promql_series_names(expr) {
            if !wanted(&name) {
                continue;
            }
            if exported.contains(&name) {
                check.checked.insert(name);
            } else if registered_in_source(&name) {
                check.unobserved.insert(name);
            } else {
                check.missing.push(format!("{origin}: {name}"));
            }
        }
    }
    check
}
