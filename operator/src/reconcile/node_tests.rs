//! DigNode reconciler scenarios against a scripted API server.

use std::{sync::Arc, time::Duration};

use http::Method;
use kube::runtime::controller::Action;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::reconcile;
use crate::{
    crd::DigNode,
    metrics::Metrics,
    reconcile::{
        context::{Capabilities, Context, StatsFetcher},
        error::Error,
        mock_api::MockApi,
        validate::DefaultImages,
    },
};

const STATUS: &str = "/apis/dig.net/v1alpha1/namespaces/ns/dignodes/edge/status";

fn context(client: kube::Client) -> Arc<Context> {
    let metrics = Metrics::register(&mut Registry::default());
    let images = DefaultImages {
        sidecar: "sidecar:1".into(),
        bootstrap: "bootstrap:1".into(),
    };
    let fetcher: StatsFetcher = Arc::new(|_| Box::pin(async { Err("unused".to_string()) }));
    let mut ctx = Context::new(client.clone(), images, metrics, "test-operator", fetcher);
    ctx.capabilities = Capabilities::new(client, Duration::from_secs(60));
    Arc::new(ctx)
}

fn node_json(status: Option<Value>) -> Value {
    let mut object = json!({
        "apiVersion": "dig.net/v1alpha1",
        "kind": "DigNode",
        "metadata": {"name": "edge", "namespace": "ns", "uid": "uid-n", "generation": 1},
        "spec": {"networkRef": {"name": "net"}, "existingClaim": "restored"},
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

fn node() -> Arc<DigNode> {
    Arc::new(serde_json::from_value(node_json(None)).unwrap())
}

fn network() -> Value {
    json!({
        "apiVersion": "dig.net/v1alpha1",
        "kind": "DigNetwork",
        "metadata": {"name": "net", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": {"networkId": "testnet", "replication": {"propagateDeletes": true}},
    })
}

#[tokio::test]
async fn create_joins_the_network_and_reports_readiness() {
    let (client, mut api) = MockApi::new();
    let reconciler = tokio::spawn(reconcile(node(), context(client)));

    api.expect(
        Method::GET,
        "/apis/dig.net/v1alpha1/namespaces/ns/dignetworks/net",
    )
    .await
    .respond(200, network());
    // An existing claim is not the StatefulSet's: no volume step.
    let config = api
        .expect_apply("/api/v1/namespaces/ns/configmaps/dignode-edge")
        .await;
    let yaml = config.body["data"]["node.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        yaml.contains("network: testnet") && yaml.contains("propagate-deletes: true"),
        "{yaml}"
    );
    config.echo(None);
    api.expect_apply("/api/v1/namespaces/ns/services/dignode-edge")
        .await
        .echo(None);
    let sts = api
        .expect_apply("/apis/apps/v1/namespaces/ns/statefulsets/dignode-edge")
        .await;
    assert_eq!(
        sts.body["metadata"]["ownerReferences"][0]["kind"],
        "DigNode"
    );
    assert_eq!(
        sts.body["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "dig-data")
            .unwrap()["persistentVolumeClaim"]["claimName"],
        "restored"
    );
    sts.echo(Some(
        json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}),
    ));
    let list = api
        .expect(Method::GET, "/api/v1/namespaces/ns/services")
        .await;
    list.respond(
        200,
        json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": []}),
    );
    let status = api.expect_apply(STATUS).await;
    assert_eq!(status.body["status"]["ready"], true);
    assert_eq!(status.body["status"]["networkId"], "testnet");
    assert_eq!(status.body["status"]["podName"], "dignode-edge-0");
    let stored = node_json(Some(status.body["status"].clone()));
    status.respond(200, stored);
    api.expect_event("ns", "Ready", "Normal").await;

    assert_eq!(
        reconciler.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(60))
    );
}

#[tokio::test]
async fn missing_network_is_degraded_and_looked_at_again() {
    let (client, mut api) = MockApi::new();
    let reconciler = tokio::spawn(reconcile(node(), context(client)));
    api.expect(
        Method::GET,
        "/apis/dig.net/v1alpha1/namespaces/ns/dignetworks/net",
    )
    .await
    .not_found();
    let status = api.expect_apply(STATUS).await;
    let degraded = status.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap()
        .clone();
    assert_eq!(degraded["reason"], "NetworkNotFound");
    let stored = node_json(Some(status.body["status"].clone()));
    status.respond(200, stored);
    api.expect_event("ns", "NetworkNotFound", "Warning").await;
    match reconciler.await.unwrap() {
        Err(Error::InvalidSpec { source, .. }) => assert!(source.waits_for_another_object()),
        other => panic!("expected NetworkNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn a_grown_storage_size_grows_the_claim_and_recreates_the_statefulset() {
    let (client, mut api) = MockApi::new();
    let mut object = node_json(None);
    object["spec"] = json!({"networkRef": {"name": "net"}, "storage": {"size": "20Gi"}});
    let node: Arc<DigNode> = Arc::new(serde_json::from_value(object).unwrap());
    let reconciler = tokio::spawn(reconcile(node, context(client)));
    api.expect(
        Method::GET,
        "/apis/dig.net/v1alpha1/namespaces/ns/dignetworks/net",
    )
    .await
    .respond(200, network());
    let sts_path = "/apis/apps/v1/namespaces/ns/statefulsets/dignode-edge";
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "dignode-edge", "namespace": "ns", "uid": "sts-uid"},
        "spec": {"selector": {}, "serviceName": "dignode-edge", "template": {},
            "volumeClaimTemplates": [{"metadata": {"name": "dig-data"}, "spec": {"resources": {"requests": {"storage": "10Gi"}}}}]}});
    api.expect(Method::GET, sts_path)
        .await
        .respond(200, sts.clone());
    let list = api
        .expect(Method::GET, "/api/v1/namespaces/ns/persistentvolumeclaims")
        .await;
    assert!(
        list.query
            .contains("app.kubernetes.io%2Finstance%3Ddignode-edge"),
        "{}",
        list.query
    );
    list.respond(
        200,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {}, "items": [
            {"metadata": {"name": "dig-data-dignode-edge-0"}, "spec": {"storageClassName": "grow", "resources": {"requests": {"storage": "10Gi"}}}}
        ]}),
    );
    api.expect(
        Method::GET,
        "/apis/storage.k8s.io/v1/storageclasses/grow",
    )
    .await
    .respond(
        200,
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "grow"}, "provisioner": "p", "allowVolumeExpansion": true}),
    );
    let patch = api
        .expect(
            Method::PATCH,
            "/api/v1/namespaces/ns/persistentvolumeclaims/dig-data-dignode-edge-0",
        )
        .await;
    assert_eq!(
        patch.body,
        json!({"spec": {"resources": {"requests": {"storage": "20Gi"}}}})
    );
    patch.respond(
        200,
        json!({"metadata": {"name": "dig-data-dignode-edge-0"}}),
    );
    api.expect_event("ns", "GrowingVolumes", "Normal").await;
    let delete = api.expect(Method::DELETE, sts_path).await;
    assert_eq!(delete.body["propagationPolicy"], "Orphan");
    delete.respond(200, sts);
    api.expect(Method::GET, sts_path).await.not_found();
    api.expect_event("ns", "RecreatingStatefulSet", "Normal")
        .await;
    // Then the children are applied as on creation.
    api.expect_apply("/api/v1/namespaces/ns/configmaps/dignode-edge")
        .await;
    reconciler.abort();
}
