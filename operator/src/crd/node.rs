//! The `DigNode` custom resource: one node outside the network's StatefulSet, with its own volume.

// Each `printcolumn(...)` repeats the same keys, which this lint mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{ClaimRetentionPolicy, Exposure, Scheduling, Storage};
use super::status::DigNodeStatus;

/// One DIG node bound to a DigNetwork of the same namespace, with its own volume: a new PVC from
/// `storage`, or an existing claim (e.g. a volume restored from a snapshot).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "dig.net",
    version = "v1alpha1",
    kind = "DigNode",
    namespaced,
    status = "DigNodeStatus",
    shortname = "dignode",
    category = "dig",
    doc = "One DIG node bound to a DigNetwork, with its own volume.",
    printcolumn(
        name = "Network",
        type_ = "string",
        json_path = ".spec.networkRef.name",
        description = "The DigNetwork this node belongs to"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the node is ready"
    ),
    printcolumn(
        name = "Pod",
        type_ = "string",
        json_path = ".status.podName",
        description = "The node's pod"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!(has(self.storage) && has(self.existingClaim))").message("set either storage or existingClaim, not both"),
    validation = Rule::new("self.networkRef.name == oldSelf.networkRef.name").message("networkRef is immutable: a node's identity and data belong to one network").field_path(".networkRef.name"),
    validation = Rule::new("has(self.existingClaim) == has(oldSelf.existingClaim) && (!has(self.existingClaim) || self.existingClaim == oldSelf.existingClaim)").message("existingClaim is immutable").field_path(".existingClaim")
)]
pub struct DigNodeSpec {
    /// The DigNetwork (same namespace) this node joins.
    pub network_ref: NetworkRef,
    /// A new volume for the node (PVC `dig-data-dignode-<name>-0`); the default when neither this
    /// nor `existingClaim` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// Whether the claim made from `storage` is kept (`Retain`, default) or deleted (`Delete`)
    /// when the DigNode is deleted (`whenDeleted`; `whenScaled` never applies to one node).
    #[serde(default)]
    pub persistent_volume_claim_retention_policy: ClaimRetentionPolicy,
    /// Name of an existing PersistentVolumeClaim to use as the node's volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub existing_claim: Option<String>,
    /// Container image of dig-sidecar; the network's node image (or the operator's default) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Compute resources of the node container; the network's node resources when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where the node's pod may run.
    #[serde(default, flatten)]
    pub scheduling: Scheduling,
    /// A Service that makes the node dialable from outside the cluster.
    #[serde(default)]
    pub exposure: Exposure,
}

/// Reference to a DigNetwork in the same namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkRef {
    /// Name of the DigNetwork.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
