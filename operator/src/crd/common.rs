//! Types shared by `DigNetwork` and `DigNode`: scheduling, storage, exposure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where pods may run. Copied as is into the pod spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    /// Node labels a pod's node must carry (pod `nodeSelector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate (pod `tolerations`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and pod (anti-)affinity (pod `affinity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// The persistent volume that holds a node's `.dig` folder and its identity key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Size of the volume, as a Kubernetes quantity (e.g. `10Gi`). It may grow, never shrink:
    /// existing claims are grown when their StorageClass allows volume expansion (condition
    /// `VolumesResized`).
    #[serde(default = "default_storage_size")]
    #[x_kube(
        validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("storage.size must be a positive quantity such as 10Gi"),
        validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0").message("storage.size cannot shrink: a volume can only grow; set a size at least the current one")
    )]
    pub size: String,
    /// StorageClass of the volume; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

fn default_storage_size() -> String {
    "10Gi".to_string()
}

/// What happens to a claim when its pod goes away (`StatefulSetPersistentVolumeClaimRetentionPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClaimRetention {
    /// The claim and its data stay.
    #[default]
    Retain,
    /// The claim is deleted, and with it the volume when its reclaim policy is `Delete`.
    Delete,
}

impl ClaimRetention {
    /// The StatefulSet's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retain => "Retain",
            Self::Delete => "Delete",
        }
    }
}

/// Whether the nodes' claims outlive their pods, copied into the StatefulSet's
/// `persistentVolumeClaimRetentionPolicy`. Both `Retain` by default: a node's data and identity
/// survive a scale-down and the deletion of its owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRetentionPolicy {
    /// The claims when the StatefulSet is deleted (the DigNetwork or DigNode deleted): `Retain`
    /// (default) or `Delete`.
    #[serde(default)]
    pub when_deleted: ClaimRetention,
    /// The claims of the pods a scale-down removes: `Retain` (default) or `Delete`.
    #[serde(default)]
    pub when_scaled: ClaimRetention,
}

/// How a node is reached from outside the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ExposureType {
    /// Only reachable inside the cluster.
    #[default]
    None,
    /// One NodePort Service per pod.
    NodePort,
    /// One LoadBalancer Service per pod.
    LoadBalancer,
}

/// Per-pod Services that make nodes dialable by peers outside the cluster, and the addresses the
/// nodes announce for them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'NodePort' || !has(self.nodePortBase)").message("exposure.nodePortBase is only used with exposure.type NodePort"),
    validation = Rule::new("self.type != 'NodePort' || !has(self.announceDomain) || has(self.nodePortBase)").message("exposure.announceDomain with type NodePort needs nodePortBase: the announced port must be known")
)]
pub struct Exposure {
    /// `None` (default), `NodePort` or `LoadBalancer`: the type of the per-pod Services.
    #[serde(default, rename = "type")]
    pub type_: ExposureType,
    /// DNS domain under which each pod is reachable as `<pod-name>.<announceDomain>`. When set,
    /// every node announces `/dns4/<pod-name>.<announceDomain>/tcp/<port>` and its Service carries
    /// an external-dns hostname annotation for that name. `<port>` is the P2P port, or the
    /// NodePort (`nodePortBase`) with type NodePort, which therefore serves a single pod (a DigNode,
    /// or a DigNetwork of one node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$"))]
    pub announce_domain: Option<String>,
    /// Extra multiaddrs every node announces. `$(POD_NAME)` is replaced by the pod's name
    /// (Kubernetes expands it from the pod's environment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub announce: Vec<String>,
    /// NodePort of the first pod; pod `i` gets `nodePortBase + i`. Allocated by Kubernetes when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port_base: Option<i32>,
    /// Annotations added to every per-pod Service (e.g. load balancer settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A key of a Secret in the resource's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key in the Secret that holds the value.
    #[serde(default = "default_psk_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_psk_key() -> String {
    "psk".to_string()
}
