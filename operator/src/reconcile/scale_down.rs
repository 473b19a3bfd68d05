//! The drain step of a reconcile, before the apply: reads the node StatefulSet, the leaving pod
//! and its `GET /drain`, annotates or releases pods, publishes the drain's events, and returns
//! the plan `drain::plan` made (the StatefulSet's replicas to apply, the status and condition).

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::StatefulSet,
    core::v1::{ObjectReference, Pod},
};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::events::EventType,
};
use serde_json::json;

use super::{
    build::ChildObject,
    context::Context,
    dnsaddr,
    drain::{self, DRAIN_ANNOTATION, DrainFacts, DrainPlan, NodeReport, PodFacts},
    error::{Error, Result},
    pod_http,
};
use crate::crd::status::DrainStatus;

/// Bound of a node's `/drain` answer (50 names of at most 255 bytes and a few figures).
const MAX_REPORT_BYTES: usize = 64 * 1024;
/// Bound of the call to a node.
const NODE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the drain step needs of the network.
pub struct NodeScale<'a> {
    pub namespace: &'a str,
    pub statefulset: &'a str,
    /// `spec.nodes.replicas`.
    pub wanted: i32,
    /// `status.replicas` as last written (the StatefulSet's pods).
    pub status_replicas: i32,
    pub previous: Option<&'a DrainStatus>,
    pub api_port: i32,
    pub timeout: Duration,
}

/// Reads, plans and acts; `None` when no drain is due or under way (nothing was read).
pub async fn step(
    ctx: &Context,
    scale: &NodeScale<'_>,
    object: &str,
    reference: &ObjectReference,
) -> Result<Option<DrainPlan>> {
    if !drain::needs_facts(scale.wanted, scale.status_replicas, scale.previous) {
        return Ok(None);
    }
    let ns = scale.namespace;
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let current = statefulsets
        .get_opt(scale.statefulset)
        .await
        .map_err(Error::reading(
            format!("StatefulSet {ns}/{}", scale.statefulset),
            object,
        ))?
        .and_then(|s| s.spec.and_then(|s| s.replicas));
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let (mut pod, mut report) = (None, None);
    if let Some(current) = current.filter(|c| *c > scale.wanted) {
        let name = drain::leaving_pod(scale.statefulset, current);
        let found = pods
            .get_opt(&name)
            .await
            .map_err(Error::reading(format!("Pod {ns}/{name}"), object))?;
        if let Some(found) = found.filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let (facts, ip) = pod_facts(&found);
            if let Some(ip) = ip.filter(|_| facts.reachable) {
                let url = format!(
                    "http://{}/drain",
                    SocketAddr::new(ip, scale.api_port as u16)
                );
                report = Some(fetch_report(&url).await);
            }
            pod = Some(facts);
        }
    }
    let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::now());
    let plan = drain::plan(&DrainFacts {
        wanted: scale.wanted,
        current,
        statefulset: scale.statefulset,
        previous: scale.previous,
        pod,
        report,
        timeout: scale.timeout,
        now,
    });
    let params = PatchParams::default();
    if let Some((name, since)) = &plan.annotate {
        let patch = json!({"metadata": {"annotations": {DRAIN_ANNOTATION: since}}});
        pods.patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::Drain {
                pod: name.clone(),
                object: object.to_string(),
                source: Box::new(source),
            })?;
        tracing::info!(object, pod = %name, "annotated a node pod to drain before it leaves");
    }
    if let Some(name) = &plan.release {
        let patch = json!({"metadata": {"annotations": {DRAIN_ANNOTATION: null}}});
        match pods.patch(name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {}
            // Gone already: nothing drains.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Drain {
                    pod: name.clone(),
                    object: object.to_string(),
                    source: Box::new(source),
                });
            }
        }
    }
    if let Some(event) = &plan.event {
        let type_ = if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let pod = ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            name: Some(event.pod.clone()),
            namespace: Some(ns.to_string()),
            ..ObjectReference::default()
        };
        ctx.event_related(
            reference,
            Some(pod),
            type_,
            event.reason,
            "Drain",
            event.message.clone(),
        )
        .await;
    }
    Ok(Some(plan))
}

/// Whether the pod runs with an address the operator may ask, its IP, and its drain annotation.
fn pod_facts(pod: &Pod) -> (PodFacts, Option<IpAddr>) {
    let status = pod.status.as_ref();
    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
    let ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .filter(|ip| dnsaddr::may_ask(*ip, &[]));
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRAIN_ANNOTATION))
        .cloned();
    (
        PodFacts {
            reachable: running && ip.is_some(),
            annotation,
        },
        ip,
    )
}

/// `GET <url>` of a node's drain report, bounded in time and size; the error is a message.
async fn fetch_report(url: &str) -> Result<NodeReport, String> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    let client = CLIENT
        .get_or_init(|| pod_http::client(NODE_TIMEOUT))
        .clone()?;
    let body = pod_http::get_bounded(&client, url, MAX_REPORT_BYTES).await?;
    parse_report(&body).map_err(|e| format!("GET {url}: {e}"))
}

/// A node's `/drain` JSON (an older node without the route answers 404 before this).
fn parse_report(body: &[u8]) -> Result<NodeReport, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let count = |key: &str| value[key].as_u64().unwrap_or(0);
    Ok(NodeReport {
        draining: value["draining"].as_bool().unwrap_or(false),
        drained: value["drained"].as_bool().unwrap_or(false),
        uncovered: value["uncovered"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .take(50)
            .map(str::to_string)
            .collect(),
        uncovered_count: count("uncoveredCount"),
        peers_checked: count("peersChecked"),
    })
}

/// Holds the StatefulSet at `replicas` while a node drains (the built body says
/// `spec.nodes.replicas`).
pub fn hold_replicas(children: &mut [ChildObject], replicas: i32) {
    for child in children
        .iter_mut()
        .filter(|c| c.resource.kind == "StatefulSet")
    {
        child.body["spec"]["replicas"] = json!(replicas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_report_is_read_from_the_nodes_json() {
        let body = br#"{"draining":true,"sinceMs":1,"held":3,"covered":1,"uncovered":["a","b"],"uncoveredCount":2,"peersChecked":1,"drained":false}"#;
        let report = parse_report(body).unwrap();
        assert_eq!(
            report,
            NodeReport {
                draining: true,
                drained: false,
                uncovered: vec!["a".into(), "b".into()],
                uncovered_count: 2,
                peers_checked: 1,
            }
        );
        assert!(parse_report(b"<html>").is_err());
        assert!(!parse_report(b"null").unwrap().draining);
    }

    #[test]
    fn pods_without_a_usable_ip_or_not_running_cannot_be_asked() {
        let pod = |phase: &str, ip: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "net-node-2", "annotations": {DRAIN_ANNOTATION: "t"}},
                "status": {"phase": phase, "podIP": ip}
            }))
            .unwrap()
        };
        let (facts, ip) = pod_facts(&pod("Running", "10.244.0.7"));
        assert!(facts.reachable && ip.is_some());
        assert_eq!(facts.annotation.as_deref(), Some("t"));
        assert!(!pod_facts(&pod("Pending", "10.244.0.7")).0.reachable);
        assert!(!pod_facts(&pod("Running", "169.254.169.254")).0.reachable);
    }
}
