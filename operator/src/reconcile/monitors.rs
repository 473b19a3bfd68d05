//! The Prometheus operator objects of a DigNetwork with `spec.monitoring.serviceMonitor` on: what
//! scrapes the registry and every node of the network. Pure: no IO.
//!
//! - ServiceMonitor `N-bootstrap`: the registry, through its Service (job `N-bootstrap`).
//! - ServiceMonitor `N-node`: the StatefulSet nodes, through their headless Service (job
//!   `N-node`, the Service's name).
//! - PodMonitor `N-injected`: pods with an injected sidecar (`dig.net/inject: N`), port `dig-api`.
//! - PodMonitor `N-dignodes`: the pods of the DigNodes joined to N, port `api`.
//!
//! The PodMonitors relabel `job` to `N-node`, so the dashboards and alerts, which select
//! `job="<network>-node"`, see every node of the network whatever runs it. Each selector matches
//! one kind of pod only (no StatefulSet pod carries either label), so a node is scraped once.
//! Two PodMonitors rather than one because a label selector cannot match "either label": one
//! would need an empty selector and hand-written `keep` relabelings, which no `kubectl get pods
//! -l` can check.

use std::collections::BTreeMap;

use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

use super::{
    apis::{pod_monitor_resource, service_monitor_resource},
    meta::{self, Component, names},
    validate::ValidNetwork,
};
use crate::crd::labels::{INJECT_LABEL, MANAGER, NETWORK_REF_LABEL};

/// Name of the API port the webhook gives an injected sidecar container.
pub const INJECTED_API_PORT: &str = "dig-api";
/// Name of the API port of the operator's own node pods (StatefulSet and DigNode).
pub const NODE_API_PORT: &str = "api";
/// How often Prometheus scrapes each target.
const SCRAPE_INTERVAL: &str = "30s";

/// Metadata of a monitor: the network's labels plus `spec.monitoring.labels` (which the
/// Prometheus resource's `serviceMonitorSelector` / `podMonitorSelector` usually match).
fn monitor(
    valid: &ValidNetwork<'_>,
    component: Component,
    name: &str,
    resource: &ApiResource,
    spec: Value,
) -> DynamicObject {
    let mut labels = meta::labels(&valid.name, component, &valid.network_id);
    labels.extend(valid.network.spec.monitoring.labels.clone());
    let mut object = DynamicObject::new(name, resource);
    object.metadata = meta::child_meta(name, &valid.namespace, labels, &valid.owner);
    object.data = json!({ "spec": spec });
    object
}

/// ServiceMonitors of the registry and of the StatefulSet nodes.
pub fn service_monitors(valid: &ValidNetwork<'_>) -> Vec<DynamicObject> {
    let resource = service_monitor_resource();
    let service_monitor = |component: Component, name: String, port: &str| {
        // The component label tells the Service apart from the federation and exposure Services.
        let mut match_labels = meta::selector_labels(&valid.name, component);
        match_labels.insert(
            "app.kubernetes.io/managed-by".to_string(),
            MANAGER.to_string(),
        );
        monitor(
            valid,
            component,
            &name,
            &resource,
            json!({
                "selector": {"matchLabels": match_labels},
                "namespaceSelector": {"matchNames": [valid.namespace]},
                "endpoints": [{"port": port, "path": "/metrics", "interval": SCRAPE_INTERVAL}],
            }),
        )
    };
    vec![
        service_monitor(Component::Bootstrap, names::bootstrap(&valid.name), "http"),
        service_monitor(Component::Node, names::node(&valid.name), NODE_API_PORT),
    ]
}

/// PodMonitors of the nodes that are not StatefulSet pods: injected sidecars and DigNodes.
pub fn pod_monitors(valid: &ValidNetwork<'_>) -> Vec<DynamicObject> {
    let resource = pod_monitor_resource();
    let pod_monitor = |name: String, match_labels: BTreeMap<String, String>, port: &str| {
        monitor(
            valid,
            Component::Node,
            &name,
            &resource,
            json!({
                "selector": {"matchLabels": match_labels},
                "namespaceSelector": {"matchNames": [valid.namespace]},
                "podMetricsEndpoints": [{
                    "port": port,
                    "path": "/metrics",
                    "interval": SCRAPE_INTERVAL,
                    // A PodMonitor's job is `<namespace>/<name>` by default: the nodes' job
                    // instead, the one the StatefulSet nodes get from their Service's name.
                    "relabelings": [{
                        "action": "replace",
                        "targetLabel": "job",
                        "replacement": names::node(&valid.name),
                    }],
                }],
            }),
        )
    };
    vec![
        pod_monitor(
            names::injected_monitor(&valid.name),
            BTreeMap::from([(INJECT_LABEL.to_string(), valid.name.clone())]),
            INJECTED_API_PORT,
        ),
        pod_monitor(
            names::dignode_monitor(&valid.name),
            dignode_pod_labels(&valid.name),
            NODE_API_PORT,
        ),
    ]
}

/// Labels every pod of a DigNode joined to the DigNetwork `network` carries.
pub fn dignode_pod_labels(network: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/component".to_string(),
            Component::StandaloneNode.as_str().to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGER.to_string(),
        ),
        (NETWORK_REF_LABEL.to_string(), network.to_string()),
    ])
}
