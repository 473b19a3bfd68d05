//! Test fixtures shared by the build step's unit tests and the e2e tests that parse the built
//! arguments (`e2e/tests/operator_args.rs`): the custom resources as the API server returns them,
//! and the parts of the built children that tests look at.

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{Container, PersistentVolumeClaim, PodTemplateSpec},
};

use super::{
    build::{NetworkChildren, build_network},
    build_node::{NodeChildren, build_node, validate_node},
    validate::{DefaultImages, NetworkFacts, validate_network},
};
use crate::crd::{DigNetwork, DigNode, labels::CONFIG_HASH_ANNOTATION};

/// A container's args as the kubelet runs them in pod `pod` whose IP is `pod_ip`: the
/// downward-API variables of the node containers (`pod::node_env`) expanded.
pub fn kubelet_expanded(args: &[String], pod: &str, pod_ip: &str) -> Vec<String> {
    args.iter()
        .map(|arg| arg.replace("$(POD_NAME)", pod).replace("$(POD_IP)", pod_ip))
        .collect()
}

/// The operator's default images.
pub fn images() -> DefaultImages {
    DefaultImages {
        sidecar: "ghcr.io/dig/sidecar:1".into(),
        bootstrap: "ghcr.io/dig/bootstrap:1".into(),
    }
}

/// `spec_yaml` indented under `spec:` after the given metadata.
fn resource_yaml(kind: &str, name: &str, uid: &str, spec_yaml: &str) -> String {
    format!(
        "apiVersion: dig.net/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: ns\n  uid: {uid}\n  generation: 1\nspec:\n{}",
        spec_yaml
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    )
}

fn parse<K: serde::de::DeserializeOwned>(yaml: &str) -> K {
    yaml_serde::from_str(yaml).unwrap_or_else(|e| panic!("fixture does not parse: {e}\n{yaml}"))
}

/// The DigNetwork `ns/net` (uid `1234`, generation 1) with `spec_yaml` as its spec.
pub fn network(spec_yaml: &str) -> DigNetwork {
    parse(&resource_yaml("DigNetwork", "net", "1234", spec_yaml))
}

/// The DigNode `ns/<name>` (uid `5678`, generation 1) with `spec_yaml` as its spec.
pub fn dig_node(name: &str, spec_yaml: &str) -> DigNode {
    parse(&resource_yaml("DigNode", name, "5678", spec_yaml))
}

/// The children of `network`, validated with `facts` and the default [`images`].
pub fn build_with(network: &DigNetwork, facts: NetworkFacts) -> NetworkChildren {
    let valid = validate_network(network, &images(), facts)
        .unwrap_or_else(|invalid| panic!("the fixture is invalid: {invalid}"));
    build_network(&valid)
}

/// The children of the DigNode `edge` with `spec_yaml` as its spec, joined to the public
/// `network`.
pub fn build_edge_node(network: &DigNetwork, spec_yaml: &str) -> NodeChildren {
    let node = dig_node("edge", spec_yaml);
    let valid = validate_node(&node, Some(network), &images(), None)
        .unwrap_or_else(|invalid| panic!("the fixture is invalid: {invalid}"));
    build_node(&valid)
}

/// The pod template of a StatefulSet (the network's nodes, or a DigNode's).
pub fn template(statefulset: &StatefulSet) -> &PodTemplateSpec {
    &statefulset
        .spec
        .as_ref()
        .expect("a built StatefulSet has a spec")
        .template
}

/// The (one) volume claim template of a StatefulSet.
pub fn claim_template(statefulset: &StatefulSet) -> &PersistentVolumeClaim {
    &statefulset
        .spec
        .as_ref()
        .and_then(|spec| spec.volume_claim_templates.as_ref())
        .expect("the StatefulSet has a claim template")[0]
}

/// The node container of a StatefulSet's pods.
pub fn statefulset_container(statefulset: &StatefulSet) -> &Container {
    &template(statefulset)
        .spec
        .as_ref()
        .expect("a built pod template has a spec")
        .containers[0]
}

/// The node container of the network's StatefulSet.
pub fn node_container(children: &NetworkChildren) -> &Container {
    statefulset_container(&children.node_statefulset)
}

/// The registry container of the bootstrap Deployment.
pub fn bootstrap_container(children: &NetworkChildren) -> &Container {
    &children
        .bootstrap_deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .expect("a built Deployment has a pod spec")
        .containers[0]
}

/// The configuration hash on the node pod template: it rolls the nodes out when it changes.
pub fn node_config_hash(children: &NetworkChildren) -> String {
    template(&children.node_statefulset)
        .metadata
        .as_ref()
        .and_then(|meta| meta.annotations.as_ref())
        .and_then(|annotations| annotations.get(CONFIG_HASH_ANNOTATION))
        .cloned()
        .expect("the node pod template carries the config hash")
}
