//! The CRDs and examples against a real API server, without the operator: every manifest in
//! `examples/` passes kubeconform (our CRDs converted to JSON schema) and `kubectl apply
//! --dry-run=server`, and the schema's bounds and CEL rules refuse bad specs with their messages,
//! as `kubectl` shows them.
//!
//! Skipped with a message when the control-plane tools are not built, unless
//! DIG_E2E_REQUIRE_CLUSTER=1 (set by e2e/test-all.sh).

use std::path::{Path, PathBuf};

use dig_e2e::cluster::{ClusterError, TestCluster, kubeconform};
use dig_e2e::operator::{NETWORK_KIND, NODE_KIND, crds_dir, dig_manifest, install_crds};
use dig_e2e::process::workspace_root;
use serde_json::{Value, json};

const NAMESPACE: &str = "manifests";

fn yaml_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    files
}

fn network(name: &str, spec: Value) -> Value {
    dig_manifest(NETWORK_KIND, NAMESPACE, name, spec)
}

fn dignode(name: &str, spec: Value) -> Value {
    dig_manifest(NODE_KIND, NAMESPACE, name, spec)
}

fn apply(cluster: &TestCluster, manifest: &Value, dry_run: bool) -> Result<String, ClusterError> {
    let mut args = vec!["apply", "-f", "-"];
    if dry_run {
        args.push("--dry-run=server");
    }
    cluster.kubectl_with_stdin(args, &manifest.to_string())
}

/// `manifest` must be refused, and kubectl's stderr must contain every one of `expected`.
fn assert_refused(cluster: &TestCluster, manifest: &Value, dry_run: bool, expected: &[&str]) {
    match apply(cluster, manifest, dry_run) {
        Ok(output) => {
            panic!("accepted, expected a refusal naming {expected:?}: {manifest}\n{output}")
        }
        Err(ClusterError::Kubectl { stderr, .. }) => {
            for text in expected {
                assert!(
                    stderr.contains(text),
                    "expected {text:?} in kubectl's error for {manifest}:\n{stderr}"
                );
            }
        }
        Err(other) => panic!("kubectl could not run: {other}"),
    }
}

#[test]
fn examples_pass_kubeconform_with_our_crds() {
    let Some(tools) = dig_e2e::cluster::tools_or_skip("examples_pass_kubeconform_with_our_crds")
    else {
        return;
    };
    let crds = yaml_files(&crds_dir());
    let crds: Vec<&Path> = crds.iter().map(PathBuf::as_path).collect();
    let examples = yaml_files(&workspace_root().join("examples"));
    assert!(!examples.is_empty(), "no manifests in examples/");
    for example in examples {
        let text = std::fs::read_to_string(&example).expect("read example");
        let output = kubeconform(&tools, &crds, &[], &text).expect("cluster.sh kubeconform runs");
        assert!(
            output.status.success(),
            "kubeconform rejects {}:\n{}{}",
            example.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn examples_apply_and_cel_rules_refuse_bad_specs() {
    let Some(cluster) = TestCluster::start_or_skip("operator-manifests") else {
        return;
    };
    install_crds(&cluster).expect("apply the CRDs");
    cluster
        .kubectl(["create", "namespace", NAMESPACE])
        .expect("create namespace");

    // Every example, as a user would apply it (into a namespace of their choice).
    for example in yaml_files(&workspace_root().join("examples")) {
        let path = example.to_string_lossy().into_owned();
        cluster
            .kubectl(["apply", "--dry-run=server", "-n", NAMESPACE, "-f", &path])
            .unwrap_or_else(|e| panic!("{path} does not apply: {e}"));
    }

    // Defaults come from the schema: an empty spec is complete.
    let created = apply(&cluster, &network("defaults", json!({})), false)
        .expect("an empty DigNetwork spec is valid");
    assert!(created.contains("created"), "{created}");
    let stored: Value = serde_json::from_str(
        &cluster
            .kubectl(["get", "dignet", "defaults", "-n", NAMESPACE, "-o", "json"])
            .expect("get the DigNetwork"),
    )
    .expect("JSON");
    assert_eq!(stored["spec"]["bootstrap"]["replicas"], 2, "{stored}");
    assert_eq!(stored["spec"]["nodes"]["replicas"], 3, "{stored}");
    assert_eq!(
        stored["spec"]["nodes"]["storage"]["size"], "10Gi",
        "{stored}"
    );

    // Create-time rules and bounds (the API server's dry run evaluates them all).
    let refused_on_create: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"bootstrap": {"replicas": 0}}),
            vec!["spec.bootstrap.replicas", "greater than or equal to 1"],
        ),
        (
            json!({"nodes": {"replicas": 501}}),
            vec!["spec.nodes.replicas", "less than or equal to 500"],
        ),
        (
            json!({"nodes": {"p2pPort": 70000}}),
            vec!["spec.nodes.p2pPort", "less than or equal to 65535"],
        ),
        (
            json!({"networkId": "Not_Valid"}),
            vec!["spec.networkId", "should match"],
        ),
        (
            json!({"dns": {"hostnames": ["a.example.com"], "weight": 10}}),
            vec!["spec.dns.weight", "dns.weight needs dns.setIdentifier"],
        ),
        (
            json!({"dns": {"hostnames": ["a.example.com"], "failover": "PRIMARY"}}),
            vec!["spec.dns.failover", "dns.failover needs dns.setIdentifier"],
        ),
        (
            json!({"dns": {"hostnames": ["a.example.com"], "setIdentifier": "eu",
                           "weight": 10, "failover": "PRIMARY"}}),
            vec!["dns.weight and dns.failover are different routing policies: set one"],
        ),
        (
            json!({"dns": {"mode": "dnsEndpoint"}}),
            vec![
                "spec.dns.hostnames",
                "dns.mode dnsEndpoint needs at least one hostname",
            ],
        ),
        (
            json!({"nodes": {"storage": {"size": "lots"}}}),
            vec!["storage.size must be a positive quantity such as 10Gi"],
        ),
        (
            json!({"nodes": {"storage": {"size": "0"}}}),
            vec!["storage.size must be a positive quantity such as 10Gi"],
        ),
        (
            json!({"nodes": {"exposure": {"type": "LoadBalancer", "nodePortBase": 30000}}}),
            vec!["exposure.nodePortBase is only used with exposure.type NodePort"],
        ),
        (
            json!({"nodes": {"exposure": {"type": "NodePort", "nodePortBase": 80}}}),
            vec![
                "spec.nodes.exposure.nodePortBase",
                "greater than or equal to 30000",
            ],
        ),
        (
            json!({"nodes": {"exposure": {"type": "Ingress"}}}),
            vec!["spec.nodes.exposure.type", "Unsupported value: \"Ingress\""],
        ),
        (
            json!({"bootstrap": {"service": {"type": "ExternalName"}}}),
            vec!["spec.bootstrap.service.type", "Unsupported value"],
        ),
        (
            json!({"privateNetwork": {"pskSecretRef": {"name": ""}}}),
            vec!["spec.privateNetwork.pskSecretRef.name"],
        ),
        (
            json!({"nodes": {"replica": 3}}),
            vec!["unknown field \"spec.nodes.replica\""],
        ),
    ];
    for (spec, expected) in &refused_on_create {
        assert_refused(&cluster, &network("refused", spec.clone()), true, expected);
    }
    // A name Kubernetes accepts but that cannot be a network id needs spec.networkId.
    assert_refused(
        &cluster,
        &network("eu.prod", json!({})),
        true,
        &["without spec.networkId the name is the network id"],
    );
    apply(
        &cluster,
        &network("eu.prod", json!({"networkId": "eu-prod"})),
        true,
    )
    .expect("a dotted name with a network id is accepted");
    // The same specs fixed are accepted: the refusals above are for the reason named.
    for spec in [
        json!({"dns": {"hostnames": ["a.example.com"], "setIdentifier": "eu", "weight": 10}}),
        json!({"dns": {"hostnames": ["a.example.com"], "setIdentifier": "eu", "failover": "SECONDARY"}}),
        json!({"dns": {"mode": "dnsEndpoint", "hostnames": ["a.example.com"]}}),
        json!({"nodes": {"replicas": 500, "storage": {"size": "500Mi"},
                         "exposure": {"type": "NodePort", "nodePortBase": 30000}}}),
        json!({"bootstrap": {"replicas": 15, "service": {"type": "LoadBalancer"}}}),
    ] {
        apply(&cluster, &network("accepted", spec.clone()), true)
            .unwrap_or_else(|e| panic!("{spec} is refused: {e}"));
    }

    // Transition rules: the network id never changes once set, and cannot be added later.
    apply(
        &cluster,
        &network("pinned", json!({"networkId": "pinned-net"})),
        false,
    )
    .expect("create a DigNetwork with a network id");
    assert_refused(
        &cluster,
        &network("pinned", json!({"networkId": "other-net"})),
        false,
        &[
            "spec.networkId",
            "networkId is immutable: nodes of different network ids cannot talk to each other",
        ],
    );
    assert_refused(
        &cluster,
        &network("defaults", json!({"networkId": "late-net"})),
        false,
        &["networkId is immutable"],
    );
    // Other fields of the same object still change.
    apply(
        &cluster,
        &network(
            "pinned",
            json!({"networkId": "pinned-net", "nodes": {"replicas": 5}}),
        ),
        false,
    )
    .expect("changing nodes.replicas is allowed");

    // DigNode: one volume source, and its network and claim never change.
    assert_refused(
        &cluster,
        &dignode(
            "both",
            json!({"networkRef": {"name": "pinned"}, "storage": {"size": "1Gi"},
                   "existingClaim": "data"}),
        ),
        true,
        &["set either storage or existingClaim, not both"],
    );
    assert_refused(
        &cluster,
        &dignode("no-network", json!({"storage": {"size": "1Gi"}})),
        true,
        &["spec.networkRef", "Required value"],
    );
    apply(
        &cluster,
        &dignode(
            "solo",
            json!({"networkRef": {"name": "pinned"}, "existingClaim": "data"}),
        ),
        false,
    )
    .expect("create a DigNode");
    assert_refused(
        &cluster,
        &dignode(
            "solo",
            json!({"networkRef": {"name": "defaults"}, "existingClaim": "data"}),
        ),
        false,
        &[
            "spec.networkRef.name",
            "networkRef is immutable: a node's identity and data belong to one network",
        ],
    );
    assert_refused(
        &cluster,
        &dignode(
            "solo",
            json!({"networkRef": {"name": "pinned"}, "existingClaim": "restored"}),
        ),
        false,
        &["spec.existingClaim", "existingClaim is immutable"],
    );
}
