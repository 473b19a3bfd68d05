//! Generates the parts of `charts/dig-operator` that must follow the Rust code:
//! - `templates/crds/*.yaml`: the CRDs of `dig_operator::crd`, behind `crds.install`, with
//!   `helm.sh/resource-policy: keep` so an uninstall never deletes users' networks;
//! - `values.schema.json`: the JSON schema of [`values::ChartValues`];
//! - the values table of the chart's README, from that schema and `values.yaml`.
//!
//! `cargo run -p dig-operator --bin chartgen` rewrites them; `chartgen --check` fails when a
//! checked-in file differs from what the code generates.

mod crd_templates;
mod error;
mod json;
mod values;
mod values_table;

use std::path::{Path, PathBuf};

use error::ChartgenError;
use json::canonical;
use kube::CustomResourceExt;
use schemars::generate::SchemaSettings;

/// The chart folder, found from this crate's manifest so the bin works from any directory.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/dig-operator")
}

/// Every generated file: its path and the content it must have.
pub fn generated_files(chart: &Path) -> Result<Vec<(PathBuf, String)>, ChartgenError> {
    let mut files = Vec::new();
    for crd in [
        dig_operator::crd::DigNetwork::crd(),
        dig_operator::crd::DigNode::crd(),
    ] {
        let (file_name, text) = crd_templates::render(&crd)?;
        files.push((chart.join("templates/crds").join(file_name), text));
    }
    let schema = values_schema()?;
    files.push((chart.join("values.schema.json"), schema.clone()));
    let readme = chart.join("README.md");
    let readme_text = read(&readme)?;
    let values_path = chart.join("values.yaml");
    let values_yaml = read(&values_path)?;
    let defaults: serde_json::Value =
        yaml_serde::from_str(&values_yaml).map_err(|source| ChartgenError::Values {
            path: values_path.clone(),
            source,
        })?;
    let schema_value: serde_json::Value =
        serde_json::from_str(&schema).map_err(ChartgenError::SchemaJson)?;
    let table = values_table::render(&schema_value, &defaults);
    files.push((
        readme.clone(),
        values_table::replace_in(&readme, &readme_text, &table)?,
    ));
    Ok(files)
}

/// `values.schema.json`: draft 07, which every Helm 3 release validates.
pub fn values_schema() -> Result<String, ChartgenError> {
    let schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<values::ChartValues>();
    let value = serde_json::to_value(&schema).map_err(ChartgenError::SchemaJson)?;
    let mut text =
        serde_json::to_string_pretty(&canonical(value)).map_err(ChartgenError::SchemaJson)?;
    text.push('\n');
    Ok(text)
}

fn read(path: &Path) -> Result<String, ChartgenError> {
    std::fs::read_to_string(path).map_err(|source| ChartgenError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn main() -> anyhow::Result<()> {
    let check = std::env::args().skip(1).any(|arg| arg == "--check");
    let chart = chart_dir();
    let mut stale = Vec::new();
    for (path, text) in generated_files(&chart)? {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == text {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ChartgenError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| ChartgenError::Write {
            path: path.clone(),
            source,
        })?;
        println!("wrote {}", path.display());
    }
    if !stale.is_empty() {
        anyhow::bail!(
            "generated chart files are out of date: {}; run `cargo run -p dig-operator --bin chartgen`",
            stale.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_chart_files_match_the_generated_ones() {
        let chart = chart_dir();
        for (path, expected) in generated_files(&chart).expect("generating the chart files") {
            let actual = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                actual == expected,
                "{} differs from what the code generates; run `cargo run -p dig-operator --bin chartgen`",
                path.display()
            );
        }
    }

    #[test]
    fn values_yaml_parses_into_the_values_types() {
        let path = chart_dir().join("values.yaml");
        let text = std::fs::read_to_string(&path).expect("reading values.yaml");
        let values: values::ChartValues = yaml_serde::from_str(&text).unwrap_or_else(|e| {
            panic!("{} does not match values::ChartValues: {e}", path.display())
        });
        assert!(values.crds.install, "CRDs are installed by default");
        assert_eq!(
            values.replica_count, 2,
            "two replicas share the Lease by default"
        );
    }

    #[test]
    fn an_unknown_or_misspelt_value_is_rejected() {
        let path = chart_dir().join("values.yaml");
        let text = std::fs::read_to_string(&path).expect("reading values.yaml");
        let misspelt = text.replacen("replicaCount:", "replicasCount:", 1);
        assert_ne!(misspelt, text, "values.yaml has a replicaCount key");
        let error = yaml_serde::from_str::<values::ChartValues>(&misspelt)
            .expect_err("a misspelt key must be rejected");
        assert!(error.to_string().contains("replicasCount"), "{error}");

        let schema: serde_json::Value =
            serde_json::from_str(&values_schema().expect("schema")).expect("schema is JSON");
        assert_eq!(
            schema["additionalProperties"],
            serde_json::Value::Bool(false),
            "Helm must reject unknown top-level values too"
        );
    }

    #[test]
    fn crd_templates_are_kept_on_uninstall_and_switchable() {
        let chart = chart_dir();
        let files = generated_files(&chart).expect("generating the chart files");
        let crds: Vec<_> = files
            .iter()
            .filter(|(path, _)| path.parent().is_some_and(|p| p.ends_with("templates/crds")))
            .collect();
        assert_eq!(crds.len(), 2, "DigNetwork and DigNode");
        for (path, text) in crds {
            assert!(
                text.starts_with("{{- if .Values.crds.install }}\n"),
                "{}",
                path.display()
            );
            assert!(
                text.contains("\n    helm.sh/resource-policy: keep\n"),
                "{}",
                path.display()
            );
            assert!(
                text.trim_end().ends_with("{{- end }}"),
                "{}",
                path.display()
            );
        }
    }
}
