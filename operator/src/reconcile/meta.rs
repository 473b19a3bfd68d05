//! Names, labels and metadata shared by every child object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::crd::labels::{
    COMPONENT_LABEL, INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGER, NAME_LABEL, NETWORK_LABEL,
};

/// What a pod or Service is part of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Bootstrap,
    Node,
    /// The headless Service through which bootstrap replicas federate.
    BootstrapFederation,
    /// A per-pod Service that exposes one node outside the cluster.
    NodeExposure,
    /// A node of a DigNode resource.
    StandaloneNode,
}

impl Component {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bootstrap => "bootstrap",
            Self::BootstrapFederation => "bootstrap-federation",
            Self::Node => "node",
            Self::NodeExposure => "node-exposure",
            Self::StandaloneNode => "dignode",
        }
    }

    /// `app.kubernetes.io/name`: the program the pods run.
    fn app_name(self) -> &'static str {
        match self {
            Self::Bootstrap | Self::BootstrapFederation => "dig-bootstrap",
            Self::Node | Self::NodeExposure | Self::StandaloneNode => "dig-node",
        }
    }
}

/// Labels that select the pods of a component; stable for the life of the owner, because
/// Deployment and StatefulSet selectors are immutable.
pub fn selector_labels(instance: &str, component: Component) -> BTreeMap<String, String> {
    let component = match component {
        Component::NodeExposure => Component::Node,
        Component::BootstrapFederation => Component::Bootstrap,
        other => other,
    };
    BTreeMap::from([
        (NAME_LABEL.to_string(), component.app_name().to_string()),
        (INSTANCE_LABEL.to_string(), instance.to_string()),
        (COMPONENT_LABEL.to_string(), component.as_str().to_string()),
    ])
}

/// [`selector_labels`] as a label selector string (`k=v,k=v`), as the scale subresource wants it.
pub fn selector_string(instance: &str, component: Component) -> String {
    selector_labels(instance, component)
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Every label of a child object.
pub fn labels(instance: &str, component: Component, network_id: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(instance, component);
    labels.insert(COMPONENT_LABEL.to_string(), component.as_str().to_string());
    labels.insert(MANAGED_BY_LABEL.to_string(), MANAGER.to_string());
    labels.insert(NETWORK_LABEL.to_string(), network_id.to_string());
    labels
}

/// The label selector (as a string) of every child a DigNetwork or DigNode owns, used to prune.
pub fn owned_selector(instance: &str) -> String {
    format!("{INSTANCE_LABEL}={instance},{MANAGED_BY_LABEL}={MANAGER}")
}

/// Metadata of a child object.
pub fn child_meta(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: &OwnerReference,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Names of the children of a DigNetwork named `network`.
pub mod names {
    pub fn bootstrap(network: &str) -> String {
        format!("{network}-bootstrap")
    }
    /// Headless Service through which bootstrap replicas federate.
    pub fn bootstrap_peers(network: &str) -> String {
        format!("{network}-bootstrap-peers")
    }
    pub fn node(network: &str) -> String {
        format!("{network}-node")
    }
    /// Per-pod exposure Service of StatefulSet pod `ordinal`; also that pod's name.
    pub fn node_pod(network: &str, ordinal: i32) -> String {
        format!("{network}-node-{ordinal}")
    }
    /// PodMonitor of the pods with an injected sidecar joined to `network`.
    pub fn injected_monitor(network: &str) -> String {
        format!("{network}-injected")
    }
    /// PodMonitor of the pods of the DigNodes joined to `network`.
    pub fn dignode_monitor(network: &str) -> String {
        format!("{network}-dignodes")
    }
    /// Children of a DigNode named `node`.
    pub fn dignode(node: &str) -> String {
        format!("dignode-{node}")
    }
}
