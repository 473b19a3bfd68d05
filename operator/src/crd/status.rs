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
    /// `Ready`, `Progressing` and `Degraded`; `VolumesResized` after `spec.nodes.storage.size`
    /// grew; `Draining` once a scale-down drained a node.
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
    /// Node pods the StatefulSet has (its `status.replicas`): the current replicas of the scale
    /// subresource, which `kubectl scale` and HorizontalPodAutoscalers read.
    #[serde(default)]
    pub replicas: i32,
    /// Label selector of the node pods, as a string (`app.kubernetes.io/name=dig-node,...`): the
    /// scale subresource's selector, by which a HorizontalPodAutoscaler finds the pods' metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Where the bootstrap registry answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_endpoint: Option<BootstrapEndpoint>,
    /// Peers registered with the registry (its `/stats`); absent when it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<u64>,
    /// Distinct stores known to the registry (its `/stats`); absent when it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stores: Option<u64>,
    /// What the operator made in Route53 and CloudWatch (`spec.dns.route53`,
    /// `spec.dns.healthCheck`), as last synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsStatus>,
    /// The node that drains before a scale-down stops it; absent when none does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainStatus>,
}

/// A node draining before it leaves: it takes no new store and waits until another live node
/// holds every store it holds, or `spec.nodes.drainTimeout` passes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainStatus {
    /// The node pod that drains (the highest ordinal above `spec.nodes.replicas`).
    pub pod: String,
    /// When its drain began (RFC 3339; also the value of its `dig.net/drain` annotation).
    pub since: String,
    /// Stores it holds that no other live node holds yet, at its last answer (absent until it
    /// answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncovered: Option<u64>,
    /// Stores it waited for copies of, so far (the most uncovered it reported).
    #[serde(default)]
    pub waited_for: u64,
    /// The first of those stores, by name (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waited_for_stores: Vec<String>,
}

/// What the operator made in AWS for a DigNetwork.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsStatus {
    /// Route53 health checks, one per exposed address of the bootstrap Service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheckRef>,
    /// Names of the CloudWatch alarms on the health checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
    /// Route53 record sets written by the operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RecordRef>,
    /// The `dnsaddr=` values of the `_dnsaddr` TXT records: the exposed nodes' multiaddrs with
    /// their peer ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dnsaddr: Vec<String>,
}

/// A Route53 health check the operator made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckRef {
    /// The checked address: an IP, or a load balancer's hostname.
    pub address: String,
    /// Route53 health check id.
    pub id: String,
}

/// A Route53 record set the operator wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordRef {
    /// Hosted zone id.
    pub hosted_zone_id: String,
    /// Record name.
    pub name: String,
    /// `A`, `AAAA`, `CNAME` or `TXT`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Route53 set identifier, for weighted, failover and multivalue records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
}

/// Observed state of a DigNode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigNodeStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`; `VolumesResized` after `spec.storage.size` grew.
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
