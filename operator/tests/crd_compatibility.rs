//! The CRDs generated from operator/src/crd/ still serve every released version with a schema
//! that only grew (tests/released_crds/ holds each release's CRDs as shipped). Objects users
//! stored under a released version keep validating, keep their meaning and keep merging the same
//! way after the operator (and its chart's CRDs) is upgraded.

use std::path::PathBuf;

use dig_operator::crd::{DigNetwork, DigNode};
use dig_operator::crd_compat::breaking_changes;
use kube::CustomResourceExt;
use serde_json::Value;

fn released_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/released_crds")
}

/// `(file, CRD as JSON)` of every released CRD snapshot.
fn released() -> Vec<(String, Value)> {
    let dir = released_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let crd: Value = yaml_serde::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is no YAML CRD: {e}", path.display()));
            (path.display().to_string(), crd)
        })
        .collect()
}

fn current(name: &str) -> Option<Value> {
    [DigNetwork::crd(), DigNode::crd()]
        .into_iter()
        .find(|crd| crd.metadata.name.as_deref() == Some(name))
        .map(|crd| serde_json::to_value(crd).expect("a CRD serialises to JSON"))
}

#[test]
fn every_released_crd_version_is_still_served_with_an_additive_schema() {
    let released = released();
    assert!(
        released.len() >= 2,
        "no released CRDs in {}",
        released_dir().display()
    );
    let mut failures = Vec::new();
    for (file, old) in &released {
        let name = old["metadata"]["name"].as_str().unwrap_or_default();
        let Some(new) = current(name) else {
            failures.push(format!(
                "{file}: the operator no longer defines the CRD {name}"
            ));
            continue;
        };
        let changes = breaking_changes(old, &new);
        if !changes.is_empty() {
            failures.push(format!(
                "{file} ({name}):\n  {}",
                changes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "the generated CRDs break objects stored under a released version:\n{}\n\n\
         Objects in users' clusters were written against those schemas. Make the change \
         additive (a new optional field, a wider enum or bound), or serve it as a new version \
         (e.g. v1alpha2) with a conversion webhook, keeping the released version served; never \
         edit the snapshots in tests/released_crds/ (see README, Day-2 operations: Upgrade).",
        failures.join("\n")
    );
}

#[test]
fn the_released_snapshots_are_what_the_types_generated_at_release() {
    // A snapshot is a whole CRD as shipped: named, with its versions, one of them stored.
    for (file, crd) in released() {
        assert_eq!(
            crd["kind"], "CustomResourceDefinition",
            "{file} is not a CRD"
        );
        let versions = crd["spec"]["versions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            versions.iter().any(|v| v["storage"] == true),
            "{file} has no storage version"
        );
    }
}

#[test]
fn a_field_removed_from_the_generated_dignetwork_would_fail_the_check() {
    let (_, released) = released()
        .into_iter()
        .find(|(_, crd)| crd["metadata"]["name"] == "dignetworks.dig.net")
        .expect("the released DigNetwork CRD");
    let mut edited = current("dignetworks.dig.net").expect("the DigNetwork CRD");
    let nodes = &mut edited["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["nodes"]["properties"];
    nodes
        .as_object_mut()
        .expect("spec.nodes has properties")
        .remove("replicas")
        .expect("spec.nodes.replicas exists");
    let changes: Vec<String> = breaking_changes(&released, &edited)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        changes,
        vec!["v1alpha1 .spec.nodes.replicas: field removed"],
        "the comparer walks the real schema"
    );
}
