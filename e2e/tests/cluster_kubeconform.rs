//! `cluster.sh kubeconform`: offline validation against the Kubernetes schemas built by
//! `cluster.sh build` and against JSON schemas made from CRDs. No cluster is started.
//!
//! Skipped with a message when the tools are not built, unless DIG_E2E_REQUIRE_CLUSTER=1.

use std::path::Path;
use std::process::Output;

use dig_e2e::cluster::tools_or_skip;

/// A small CRD with the shapes the converter must handle: nested objects, int-or-string,
/// nullable, and a subtree that keeps unknown fields.
const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.test
spec:
  group: example.test
  names: { kind: Widget, plural: widgets, singular: widget }
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: { type: integer, minimum: 1 }
              port: { x-kubernetes-int-or-string: true }
              label: { type: string, nullable: true }
              extra: { type: object, x-kubernetes-preserve-unknown-fields: true }
"#;

/// Validates `documents` with the offline schemas (and those of `crds`).
fn kubeconform(tools: &Path, crds: &[&Path], documents: &str) -> Output {
    dig_e2e::cluster::kubeconform(tools, crds, &[], documents).expect("cluster.sh kubeconform runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dig-e2e-kubeconform-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write temp file");
    path
}

#[test]
fn builtin_kinds_are_checked_strictly_offline() {
    let Some(tools) = tools_or_skip("builtin_kinds_are_checked_strictly_offline") else {
        return;
    };
    let valid = r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: web }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec: { containers: [ { name: web, image: "web:1" } ] }
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { ports: [ { port: 80, targetPort: http } ] }
"#;
    let output = kubeconform(&tools, &[], valid);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("Valid: 2"), "{}", text(&output));

    let misspelt = valid.replace("replicas: 2", "replicas: 2\n  replica: 3");
    let output = kubeconform(&tools, &[], &misspelt);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("replica"), "{}", text(&output));

    let wrong_type = valid.replace("replicas: 2", "replicas: two");
    let output = kubeconform(&tools, &[], &wrong_type);
    assert!(!output.status.success(), "{}", text(&output));
}

#[test]
fn custom_resources_are_checked_against_their_crd() {
    let Some(tools) = tools_or_skip("custom_resources_are_checked_against_their_crd") else {
        return;
    };
    let crd = temp_file("widget-crd.yaml", WIDGET_CRD);
    let widget = |spec: &str| {
        format!(
            "apiVersion: example.test/v1\nkind: Widget\nmetadata: {{ name: w }}\nspec: {spec}\n"
        )
    };

    let output = kubeconform(
        &tools,
        &[&crd],
        &widget("{ size: 3, port: http, label: null, extra: { anything: [1, 2] } }"),
    );
    assert!(output.status.success(), "{}", text(&output));
    let output = kubeconform(&tools, &[&crd], &widget("{ size: 3, port: 8080 }"));
    assert!(output.status.success(), "{}", text(&output));

    for bad in [
        "{ size: 0 }",               // below the minimum
        "{ port: 80 }",              // size is required
        "{ size: 3, colour: red }",  // unknown field outside the preserved subtree
        "{ size: 3, port: [80] }",   // neither integer nor string
        "{ size: 3, label: false }", // not a string
    ] {
        let output = kubeconform(&tools, &[&crd], &widget(bad));
        assert!(!output.status.success(), "{bad} passed: {}", text(&output));
    }

    let wrong_version = widget("{ size: 3 }").replace("example.test/v1", "example.test/v2");
    let output = kubeconform(&tools, &[&crd], &wrong_version);
    assert!(
        !output.status.success(),
        "an unknown version must not pass: {}",
        text(&output)
    );
    std::fs::remove_dir_all(crd.parent().expect("temp dir")).expect("remove temp dir");
}

#[test]
fn the_repository_crds_convert_and_refuse_unknown_fields() {
    let Some(tools) = tools_or_skip("the_repository_crds_convert_and_refuse_unknown_fields") else {
        return;
    };
    let crds_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut crds: Vec<_> = std::fs::read_dir(&crds_dir)
        .expect("crds/ exists")
        .map(|entry| entry.expect("read crds/").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    crds.sort();
    assert!(!crds.is_empty(), "no CRDs in {}", crds_dir.display());
    for crd in &crds {
        let source = std::fs::read_to_string(crd).expect("read CRD");
        let definition: serde_json::Value =
            yaml_serde::from_str(&source).unwrap_or_else(|e| panic!("{}: {e}", crd.display()));
        let spec = &definition["spec"];
        let (group, kind) = (spec["group"].as_str(), spec["names"]["kind"].as_str());
        let (Some(group), Some(kind)) = (group, kind) else {
            panic!("{}: no group or kind", crd.display());
        };
        let Some(version) = spec["versions"][0]["name"].as_str() else {
            panic!("{}: no version", crd.display());
        };
        let document = format!(
            "apiVersion: {group}/{version}\nkind: {kind}\nmetadata: {{ name: x }}\nspec: {{ notAFieldOf{kind}: 1 }}\n"
        );
        let output = kubeconform(&tools, &[crd.as_path()], &document);
        assert!(
            !output.status.success(),
            "{}: an unknown spec field passed: {}",
            crd.display(),
            text(&output)
        );
        assert!(
            text(&output).contains(&format!("notAFieldOf{kind}")),
            "{}: {}",
            crd.display(),
            text(&output)
        );
    }
}
