//! Status of the custom resources.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Where the bootstrap registry answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapEndpoint {
    /// In-cluster URL of the registry Service, e.g. `http://net-bootstrap.ns.svc:3000`.
    pub url: String,
    /// First public hostname from `spec.dns.hostnames`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// Observed state of a DigNetwork.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigNetworkStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The network id in use (`spec.networkId` or the object's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    /// Bootstrap registry pods that are ready.
    #[serde(default)]
    pub bootstrap_ready_replicas: i32,
    /// Node pods that are ready.
    #[serde(default)]
    pub ready_nodes: i32,
    /// Node pods wanted (`spec.nodes.replicas`).
    #[serde(default)]
    pub nodes: i32,
    /// Where the bootstrap registry answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_endpoint: Option<BootstrapEndpoint>,
    /// Peers registered with the registry (its `/stats`); absent when it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<u64>,
    /// Distinct stores known to the registry (its `/stats`); absent when it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stores: Option<u64>,
}

/// Observed state of a DigNode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigNodeStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Network id of the referenced DigNetwork.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    /// Whether the node's pod is ready.
    #[serde(default)]
    pub ready: bool,
    /// Name of the node's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
}
