//! A CRD as a chart template: behind `crds.install`, with the chart's labels and
//! `helm.sh/resource-policy: keep` (Helm then never deletes it, so `helm uninstall` leaves users'
//! DigNetworks alone, while `helm upgrade` still updates the schema).

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::error::ChartgenError;
use crate::json::canonical;

/// The template's file name and text for one CRD.
pub fn render(crd: &CustomResourceDefinition) -> Result<(String, String), ChartgenError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let yaml_error = |source| ChartgenError::CrdYaml {
        crd: name.clone(),
        source,
    };
    let spec_value = serde_json::to_value(&crd.spec).map_err(|source| ChartgenError::CrdJson {
        crd: name.clone(),
        source,
    })?;
    let spec = yaml_serde::to_string(&canonical(spec_value)).map_err(yaml_error)?;
    let mut annotations = crd.metadata.annotations.clone().unwrap_or_default();
    annotations.insert("helm.sh/resource-policy".into(), "keep".into());
    let labels = crd.metadata.labels.clone().unwrap_or_default();

    let mut text = String::new();
    text.push_str("{{- if .Values.crds.install }}\n");
    text.push_str("# Generated from the dig_operator::crd types by `cargo run -p dig-operator --bin chartgen`; do not edit.\n");
    text.push_str("apiVersion: apiextensions.k8s.io/v1\n");
    text.push_str("kind: CustomResourceDefinition\n");
    text.push_str("metadata:\n");
    text.push_str(&format!("  name: {name}\n"));
    text.push_str("  annotations:\n");
    text.push_str(&indent(&map_yaml(&annotations).map_err(yaml_error)?, 4));
    text.push_str("  labels:\n");
    if !labels.is_empty() {
        text.push_str(&indent(&map_yaml(&labels).map_err(yaml_error)?, 4));
    }
    text.push_str("    {{- include \"dig-operator.labels\" . | nindent 4 }}\n");
    text.push_str("spec:\n");
    text.push_str(&indent(&spec, 2));
    text.push_str("{{- end }}\n");

    // Descriptions come from doc comments; one that held a template delimiter would break the
    // chart (or worse, be evaluated), so refuse rather than escape silently.
    if spec.contains("{{") || spec.contains("}}") {
        return Err(ChartgenError::TemplateDelimiter { crd: name });
    }
    Ok((format!("{name}.yaml"), text))
}

fn map_yaml(map: &BTreeMap<String, String>) -> Result<String, yaml_serde::Error> {
    yaml_serde::to_string(map)
}

/// Indents every non-empty line; block scalars stay valid because all their lines move together.
fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    let mut out = String::with_capacity(text.len() + text.lines().count() * spaces);
    for line in text.lines() {
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indenting_keeps_empty_lines_empty() {
        assert_eq!(indent("a: |\n  x\n\n  y\n", 2), "  a: |\n    x\n\n    y\n");
    }
}
