//! Shared by the `chart_*` tests: finding `helm` (built by `e2e/cluster/cluster.sh build`),
//! rendering the chart with a set of values, and reading the rendered objects.
//!
//! Gated like the cluster tests: when the tools are not built the tests print why and pass, unless
//! `DIG_E2E_REQUIRE_CLUSTER=1` (set by `e2e/test-all.sh`), which makes that a failure.

#![allow(dead_code)] // each test crate uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use dig_e2e::cluster::{ClusterError, cluster_required, tools_dir};
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

/// The built tools (helm, kubeconform, kubectl...), or `None` (after printing why) when they are
/// not built and not required.
pub fn tools_or_skip(test: &str) -> Option<PathBuf> {
    match tools_dir() {
        Ok(dir) => Some(dir),
        Err(ClusterError::ToolsMissing { reason }) if !cluster_required() => {
            eprintln!(
                "SKIPPED {test}: {reason} (run e2e/cluster/cluster.sh build; DIG_E2E_REQUIRE_CLUSTER=1 makes this a failure)"
            );
            None
        }
        Err(error) => panic!("{test}: the control-plane tools are required: {error}"),
    }
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
