//! Reconciler scenarios against a scripted API server: the exact requests of the create, update,
//! invalid-spec and deletion paths.

use std::{sync::Arc, time::Duration};

use http::Method;
use kube::runtime::controller::Action;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::reconcile;
use crate::reconcile::mock_api::MockApi;
use crate::{
    controller::{Backoff, error_action},
    crd::DigNetwork,
    metrics::Metrics,
    reconcile::{
        apis::{DNS_ENDPOINT_API, MONITORING_API, POD_MONITORS, SERVICE_MONITORS},
        context::{Capabilities, Context, RegistryStats, StatsFetcher},
        error::Error,
        validate::DefaultImages,
    },
};

const NS: &str = "/api/v1/namespaces/ns";
const APPS: &str = "/apis/apps/v1/namespaces/ns";
const STATUS: &str = "/apis/dig.net/v1alpha1/namespaces/ns/dignetworks/net/status";

fn stats(result: Result<RegistryStats, String>) -> StatsFetcher {
    Arc::new(move |_url| {
        let result = result.clone();
        Box::pin(async move { result })
    })
}

/// The Prometheus operator's resources a test cluster serves.
const ALL_MONITORS: &[&str] = &[SERVICE_MONITORS, POD_MONITORS];
const NO_MONITORS: &[&str] = &[];

fn context(
    client: kube::Client,
    registry_stats: StatsFetcher,
    monitoring: &'static [&'static str],
) -> Arc<Context> {
    let metrics = Metrics::register(&mut Registry::default());
    let images = DefaultImages {
        sidecar: "sidecar:1".into(),
        bootstrap: "bootstrap:1".into(),
    };
    let mut ctx = Context::new(
        client.clone(),
        images,
        metrics,
        "test-operator",
        registry_stats,
    );
    ctx.capabilities = Capabilities::new(client, Duration::from_secs(60))
        .with_known(&[(MONITORING_API, monitoring), (DNS_ENDPOINT_API, &[])]);
    Arc::new(ctx)
}

fn network(spec: Value, status: Option<Value>, generation: i64) -> Arc<DigNetwork> {
    let mut object = json!({
        "apiVersion": "dig.net/v1alpha1",
        "kind": "DigNetwork",
        "metadata": {"name": "net", "namespace": "ns", "uid": "uid-1", "generation": generation, "resourceVersion": "10"},
        "spec": spec,
    });
    if let Some(status) = status {
        object["status"] = status;
    }
    Arc::new(serde_json::from_value(object).unwrap())
}

/// The DigNetwork as stored after a status apply.
fn stored(status_request_body: &Value) -> Value {
    let mut object = serde_json::to_value(network(json!({}), None, 1).as_ref()).unwrap();
    object["status"] = status_request_body["status"].clone();
    object
}

fn ready(replicas: i64) -> Value {
    json!({"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas})
}

/// The volume step's read of the node StatefulSet, before the apply: not there yet.
async fn expect_statefulset_read(api: &mut MockApi) {
    api.expect(Method::GET, &format!("{APPS}/statefulsets/net-node"))
        .await
        .not_found();
}

/// The children of a default network, applied in order after the volume step's read of the
/// StatefulSet; workloads answer with `workload_status`.
async fn expect_default_children(api: &mut MockApi, workload_status: Option<Value>) {
    expect_statefulset_read(api).await;
    expect_applied_children(api, workload_status).await;
}

async fn expect_applied_children(api: &mut MockApi, workload_status: Option<Value>) {
    api.expect_apply(&format!("{NS}/configmaps/net-node"))
        .await
        .echo(None);
    for service in ["net-bootstrap", "net-bootstrap-peers", "net-node"] {
        let request = api.expect_apply(&format!("{NS}/services/{service}")).await;
        assert_eq!(
            request.body["metadata"]["ownerReferences"][0]["uid"],
            "uid-1"
        );
        request.echo(None);
    }
    let deployment = api
        .expect_apply(&format!("{APPS}/deployments/net-bootstrap"))
        .await;
    assert_eq!(deployment.body["kind"], "Deployment");
    deployment.echo(workload_status.clone());
    api.expect_apply(&format!("{APPS}/statefulsets/net-node"))
        .await
        .echo(workload_status);
    for pdb in ["net-bootstrap", "net-node"] {
        api.expect_apply(&format!(
            "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/{pdb}"
        ))
        .await
        .echo(None);
    }
}

fn owned_service(name: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "ns", "ownerReferences": [
        {"apiVersion": "dig.net/v1alpha1", "kind": "DigNetwork", "name": "net", "uid": "uid-1", "controller": true}
    ]}})
}

async fn expect_service_list(api: &mut MockApi, items: Vec<Value>) {
    let list = api.expect(Method::GET, &format!("{NS}/services")).await;
    assert!(list.query.contains("labelSelector=app.kubernetes.io%2Finstance%3Dnet%2Capp.kubernetes.io%2Fmanaged-by%3Ddig-operator"), "{}", list.query);
    list.respond(
        200,
        json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": items}),
    );
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

#[tokio::test]
async fn create_applies_every_child_then_the_status() {
    let (client, mut api) = MockApi::new();
    let ctx = context(
        client,
        stats(Err(
            "must not be asked before a bootstrap pod is ready".into()
        )),
        NO_MONITORS,
    );
    let reconciler = tokio::spawn(reconcile(network(json!({}), None, 1), ctx));

    expect_default_children(&mut api, None).await;
    expect_service_list(
        &mut api,
        ["net-bootstrap", "net-bootstrap-peers", "net-node"]
            .map(owned_service)
            .to_vec(),
    )
    .await;
    let status = api.expect_apply(STATUS).await;
    let body = status.body.clone();
    assert_eq!(body["kind"], "DigNetwork");
    assert_eq!(body["status"]["observedGeneration"], 1);
    assert_eq!(body["status"]["networkId"], "net");
    assert_eq!(body["status"]["nodes"], 3);
    // The scale subresource's current replicas and selector.
    assert_eq!(body["status"]["replicas"], 0);
    assert_eq!(
        body["status"]["selector"],
        "app.kubernetes.io/component=node,app.kubernetes.io/instance=net,app.kubernetes.io/name=dig-node"
    );
    assert_eq!(
        body["status"]["bootstrapEndpoint"]["url"],
        "http://net-bootstrap.ns.svc:3000"
    );
    assert_eq!(condition(&body["status"], "Ready")["status"], "False");
    assert_eq!(condition(&body["status"], "Progressing")["status"], "True");
    assert_eq!(condition(&body["status"], "Degraded")["status"], "False");
    assert!(body["status"].get("peers").is_none(), "{body}");
    status.respond(200, stored(&body));
    let event = api.expect_event("ns", "Applied", "Normal").await;
    assert_eq!(event["regarding"]["name"], "net");

    let action = reconciler.await.unwrap().unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
}

#[tokio::test]
async fn update_reports_readiness_registry_figures_and_prunes_scaled_down_services() {
    let (client, mut api) = MockApi::new();
    let ctx = context(
        client,
        stats(Ok(RegistryStats {
            peers: 5,
            stores: 7,
        })),
        NO_MONITORS,
    );
    let previous = json!({
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "False", "reason": "ReplicasNotReady", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    });
    let reconciler = tokio::spawn(reconcile(
        network(json!({"nodes": {"replicas": 3}}), Some(previous), 2),
        ctx,
    ));

    expect_default_children(&mut api, Some(ready(3))).await;
    // `net-node-2` was an exposure Service before exposure was turned off.
    let mut items: Vec<Value> = [
        "net-bootstrap",
        "net-bootstrap-peers",
        "net-node",
        "net-node-2",
    ]
    .map(owned_service)
    .to_vec();
    // Owned by someone else: never touched.
    items.push(json!({"metadata": {"name": "foreign", "namespace": "ns"}}));
    expect_service_list(&mut api, items).await;
    let delete = api
        .expect(Method::DELETE, &format!("{NS}/services/net-node-2"))
        .await;
    delete.respond(
        200,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
    );

    let status = api.expect_apply(STATUS).await;
    let body = status.body.clone();
    assert_eq!(body["status"]["observedGeneration"], 2);
    assert_eq!(body["status"]["readyNodes"], 3);
    assert_eq!(body["status"]["bootstrapReadyReplicas"], 3);
    assert_eq!(body["status"]["peers"], 5);
    assert_eq!(body["status"]["stores"], 7);
    let ready = condition(&body["status"], "Ready");
    assert_eq!(ready["status"], "True");
    assert_ne!(
        ready["lastTransitionTime"], "2026-01-01T00:00:00Z",
        "Ready flipped: new transition time"
    );
    status.respond(200, stored(&body));
    api.expect_event("ns", "Applied", "Normal").await;
    api.expect_event("ns", "Ready", "Normal").await;

    assert_eq!(
        reconciler.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(60))
    );
}

#[tokio::test]
async fn unreachable_registry_is_reported_not_fatal() {
    let (client, mut api) = MockApi::new();
    let ctx = context(
        client,
        stats(Err(
            "registry http://net-bootstrap.ns.svc:3000 did not answer".into(),
        )),
        NO_MONITORS,
    );
    let reconciler = tokio::spawn(reconcile(
        network(json!({}), Some(json!({"observedGeneration": 1})), 1),
        ctx,
    ));
    expect_default_children(&mut api, Some(ready(3))).await;
    // Generation 1 was observed already: no spec change, so nothing to prune and no list.
    let status = api.expect_apply(STATUS).await;
    let message = condition(&status.body["status"], "Ready")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("registry figures unavailable") && message.contains("did not answer"),
        "{message}"
    );
    assert_eq!(condition(&status.body["status"], "Ready")["status"], "True");
    let body = status.body.clone();
    status.respond(200, stored(&body));
    api.expect_event("ns", "Ready", "Normal").await;
    assert!(reconciler.await.unwrap().is_ok());
}

#[tokio::test]
async fn invalid_spec_is_degraded_with_a_warning_and_waits_for_a_change() {
    let (client, mut api) = MockApi::new();
    let ctx = context(client, stats(Err("unused".into())), NO_MONITORS);
    let spec = json!({"dns": {"hostnames": ["bootstrap.example.com"], "weight": 10}});
    let reconciler = tokio::spawn(reconcile(network(spec, None, 3), ctx.clone()));

    let status = api.expect_apply(STATUS).await;
    let degraded = condition(&status.body["status"], "Degraded").clone();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidDns");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("setIdentifier")
    );
    assert_eq!(status.body["status"]["observedGeneration"], 3);
    let body = status.body.clone();
    status.respond(200, stored(&body));
    api.expect_event("ns", "InvalidDns", "Warning").await;

    let error = reconciler.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::InvalidSpec { .. }), "{error}");
    assert_eq!(error.metric_label(), "invalid_spec_invaliddns");
    assert_eq!(
        error_action(&error, &Backoff::default(), "ns/net", ctx.resync),
        Action::await_change()
    );
}

#[tokio::test]
async fn missing_psk_secret_is_degraded() {
    let (client, mut api) = MockApi::new();
    let ctx = context(client, stats(Err("unused".into())), NO_MONITORS);
    let spec = json!({"privateNetwork": {"pskSecretRef": {"name": "psk"}}});
    let reconciler = tokio::spawn(reconcile(network(spec, None, 1), ctx));
    api.expect(Method::GET, &format!("{NS}/secrets/psk"))
        .await
        .not_found();
    let status = api.expect_apply(STATUS).await;
    assert_eq!(
        condition(&status.body["status"], "Degraded")["reason"],
        "PskSecretNotFound"
    );
    let body = status.body.clone();
    status.respond(200, stored(&body));
    api.expect_event("ns", "PskSecretNotFound", "Warning").await;
    let error = reconciler.await.unwrap().unwrap_err();
    assert_eq!(error.event_reason(), "PskSecretNotFound");
}

const MONITORING: &str = "/apis/monitoring.coreos.com/v1/namespaces/ns";

fn owned_monitor(kind: &str, name: &str) -> Value {
    let mut object = owned_service(name);
    object["apiVersion"] = json!("monitoring.coreos.com/v1");
    object["kind"] = json!(kind);
    object
}

async fn expect_monitor_list(api: &mut MockApi, plural: &str, kind: &str, items: Vec<Value>) {
    let list = api
        .expect(Method::GET, &format!("{MONITORING}/{plural}"))
        .await;
    assert!(
        list.query
            .contains("labelSelector=app.kubernetes.io%2Finstance%3Dnet"),
        "{}",
        list.query
    );
    list.respond(
        200,
        json!({"apiVersion": "monitoring.coreos.com/v1", "kind": format!("{kind}List"), "metadata": {}, "items": items}),
    );
}

#[tokio::test]
async fn service_and_pod_monitors_are_applied_when_the_api_exists() {
    let (client, mut api) = MockApi::new();
    let ctx = context(client, stats(Err("unused".into())), ALL_MONITORS);
    let spec = json!({"monitoring": {"serviceMonitor": true}});
    // Generation 2 turned the monitors on: the spec changed, so unwanted children are pruned.
    let reconciler = tokio::spawn(reconcile(
        network(spec, Some(json!({"observedGeneration": 1})), 2),
        ctx,
    ));
    expect_default_children(&mut api, None).await;
    for name in ["net-bootstrap", "net-node"] {
        let monitor = api
            .expect_apply(&format!("{MONITORING}/servicemonitors/{name}"))
            .await;
        assert_eq!(monitor.body["kind"], "ServiceMonitor");
        monitor.echo(None);
    }
    for (name, port) in [("net-injected", "dig-api"), ("net-dignodes", "api")] {
        let monitor = api
            .expect_apply(&format!("{MONITORING}/podmonitors/{name}"))
            .await;
        assert_eq!(monitor.body["kind"], "PodMonitor");
        assert_eq!(
            monitor.body["metadata"]["ownerReferences"][0]["uid"],
            "uid-1"
        );
        let endpoint = &monitor.body["spec"]["podMetricsEndpoints"][0];
        assert_eq!(endpoint["port"], port);
        assert_eq!(endpoint["relabelings"][0]["replacement"], "net-node");
        monitor.echo(None);
    }
    expect_service_list(&mut api, vec![]).await;
    expect_monitor_list(&mut api, "servicemonitors", "ServiceMonitor", vec![]).await;
    expect_monitor_list(&mut api, "podmonitors", "PodMonitor", vec![]).await;
    let status = api.expect_apply(STATUS).await;
    let body = status.body.clone();
    let ready_message = condition(&body["status"], "Ready")["message"]
        .as_str()
        .unwrap();
    assert!(!ready_message.contains("monitoring"), "{ready_message}");
    status.respond(200, stored(&body));
    api.expect_event("ns", "Applied", "Normal").await;
    let result = reconciler.await.unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn monitors_are_pruned_when_monitoring_is_turned_off() {
    let (client, mut api) = MockApi::new();
    let ctx = context(client, stats(Err("unused".into())), ALL_MONITORS);
    let spec = json!({"monitoring": {"serviceMonitor": false}});
    let reconciler = tokio::spawn(reconcile(
        network(spec, Some(json!({"observedGeneration": 1})), 2),
        ctx,
    ));
    expect_default_children(&mut api, None).await;
    expect_service_list(&mut api, vec![]).await;
    expect_monitor_list(
        &mut api,
        "servicemonitors",
        "ServiceMonitor",
        vec![
            owned_monitor("ServiceMonitor", "net-bootstrap"),
            owned_monitor("ServiceMonitor", "net-node"),
        ],
    )
    .await;
    for name in ["net-bootstrap", "net-node"] {
        api.expect(
            Method::DELETE,
            &format!("{MONITORING}/servicemonitors/{name}"),
        )
        .await
        .respond(
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        );
    }
    // One a user made with the same labels but no owner reference is left alone.
    let mut foreign = owned_monitor("PodMonitor", "mine");
    foreign["metadata"]["ownerReferences"] = json!([]);
    expect_monitor_list(
        &mut api,
        "podmonitors",
        "PodMonitor",
        vec![
            owned_monitor("PodMonitor", "net-injected"),
            owned_monitor("PodMonitor", "net-dignodes"),
            foreign,
        ],
    )
    .await;
    for name in ["net-injected", "net-dignodes"] {
        api.expect(Method::DELETE, &format!("{MONITORING}/podmonitors/{name}"))
            .await
            .respond(
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            );
    }
    let status = api.expect_apply(STATUS).await;
    let body = status.body.clone();
    status.respond(200, stored(&body));
    api.expect_event("ns", "Applied", "Normal").await;
    let result = reconciler.await.unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_missing_pod_monitor_api_is_a_warning_not_a_failure() {
    let (client, mut api) = MockApi::new();
    // The ServiceMonitor CRD without the PodMonitor one.
    let ctx = context(client, stats(Err("unused".into())), &[SERVICE_MONITORS]);
    let spec = json!({"monitoring": {"serviceMonitor": true}});
    let reconciler = tokio::spawn(reconcile(network(spec, None, 1), ctx));
    expect_default_children(&mut api, None).await;
    for name in ["net-bootstrap", "net-node"] {
        api.expect_apply(&format!("{MONITORING}/servicemonitors/{name}"))
            .await
            .echo(None);
    }
    // No PodMonitor applied, and no PodMonitor list to prune (the API is absent).
    expect_service_list(&mut api, vec![]).await;
    expect_monitor_list(&mut api, "servicemonitors", "ServiceMonitor", vec![]).await;
    let status = api.expect_apply(STATUS).await;
    let body = status.body.clone();
    let ready_message = condition(&body["status"], "Ready")["message"]
        .as_str()
        .unwrap();
    assert!(
        ready_message.contains("PodMonitor API (monitoring.coreos.com/v1) is not installed"),
        "{ready_message}"
    );
    assert_eq!(condition(&body["status"], "Degraded")["status"], "False");
    status.respond(200, stored(&body));
    api.expect_event("ns", "Applied", "Normal").await;
    let warning = api
        .expect_event("ns", "MonitoringApiMissing", "Warning")
        .await;
    assert!(
        warning["note"]
            .as_str()
            .unwrap()
            .contains("injected and DigNode pods"),
        "{warning}"
    );
    let result = reconciler.await.unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_network_being_deleted_is_left_to_the_garbage_collector() {
    let (client, _api) = MockApi::new();
    let ctx = context(client, stats(Err("unused".into())), NO_MONITORS);
    let mut object = (*network(json!({}), None, 1)).clone();
    object.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    // No request may be made: the mock server never answers, so one would hang until the timeout.
    let action = tokio::time::timeout(Duration::from_secs(5), reconcile(Arc::new(object), ctx))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(action, Action::await_change());
}

/// The watch of `K` as the reconciler's record of applied children sees it, holding every child
/// of that kind the create scenario applies (as `echo` answers: generation 1).
fn watched_children<K>(ctx: &Context, names: &[&str])
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::api::PartialObjectMeta;
    use kube::core::PartialObjectMetaExt;
    use kube::runtime::{reflector::store::Writer, watcher::Event};
    let mut writer = Writer::<PartialObjectMeta<K>>::default();
    for name in names {
        let meta = ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("ns".into()),
            generation: Some(1),
            resource_version: Some("1".into()),
            ..ObjectMeta::default()
        }
        .into_response_partial::<K>();
        writer.apply_watcher_event(&Event::Apply(meta));
    }
    ctx.applied.watch(writer.as_reader());
}

#[tokio::test]
async fn children_unchanged_since_the_last_apply_are_only_read_back() {
    use k8s_openapi::api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{ConfigMap, Service},
        policy::v1::PodDisruptionBudget,
    };
    let (client, mut api) = MockApi::new();
    let ctx = context(client, stats(Err("unused".into())), NO_MONITORS);
    watched_children::<ConfigMap>(&ctx, &["net-node"]);
    watched_children::<Service>(&ctx, &["net-bootstrap", "net-bootstrap-peers", "net-node"]);
    watched_children::<Deployment>(&ctx, &["net-bootstrap"]);
    watched_children::<StatefulSet>(&ctx, &["net-node"]);
    watched_children::<PodDisruptionBudget>(&ctx, &["net-bootstrap", "net-node"]);

    // First reconcile: everything applied (and recorded).
    let reconciler = tokio::spawn(reconcile(network(json!({}), None, 1), ctx.clone()));
    expect_default_children(&mut api, None).await;
    expect_service_list(&mut api, vec![]).await;
    let status = api.expect_apply(STATUS).await;
    let body = status.body.clone();
    status.respond(200, stored(&body));
    api.expect_event("ns", "Applied", "Normal").await;
    reconciler.await.unwrap().unwrap();

    // Second reconcile of the same generation: nothing changed, so no apply, only the workloads
    // read back for the status, which is unchanged and not written.
    let stored_network: Arc<DigNetwork> = Arc::new(serde_json::from_value(stored(&body)).unwrap());
    let reconciler = tokio::spawn(reconcile(stored_network, ctx.clone()));
    // The volume step reads the StatefulSet; its claim template is the spec's size: no more.
    api.expect(Method::GET, &format!("{APPS}/statefulsets/net-node"))
        .await
        .respond(200, statefulset_with_claims_of("10Gi"));
    // As the first reconcile applied them: 2 bootstrap replicas, 3 nodes, none ready yet.
    for (kind, path, replicas) in [
        ("Deployment", format!("{APPS}/deployments/net-bootstrap"), 2),
        ("StatefulSet", format!("{APPS}/statefulsets/net-node"), 3),
    ] {
        let read = api.expect(Method::GET, &path).await;
        let name = path.rsplit('/').next().unwrap().to_string();
        read.respond(
            200,
            json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": "ns", "generation": 1, "resourceVersion": "1"}, "spec": {"replicas": replicas}}),
        );
    }
    // A further request (an apply, a status write) would go unanswered: bounded wait.
    let action = tokio::time::timeout(Duration::from_secs(10), reconciler)
        .await
        .expect("the reconcile made a request beyond the three reads")
        .unwrap()
        .unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
}

fn statefulset_with_claims_of(size: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "net-node", "namespace": "ns", "uid": "sts-uid-1", "generation": 1, "resourceVersion": "1"},
        "spec": {"replicas": 3, "serviceName": "net-node", "selector": {"matchLabels": {}}, "template": {},
            "volumeClaimTemplates": [{"metadata": {"name": "dig-data"}, "spec": {"resources": {"requests": {"storage": size}}}}]}})
}

fn claim(name: &str, size: &str, class: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "ns"},
        "spec": {"storageClassName": class, "resources": {"requests": {"storage": size}}},
        "status": {"phase": "Bound", "capacity": {"storage": size}}})
}

async fn expect_claims(api: &mut MockApi, items: Vec<Value>) {
    let list = api
        .expect(Method::GET, &format!("{NS}/persistentvolumeclaims"))
        .await;
    assert!(
        list.query.contains("labelSelector=app.kubernetes.io%2Fcomponent%3Dnode%2Capp.kubernetes.io%2Finstance%3Dnet%2Capp.kubernetes.io%2Fname%3Ddig-node"),
        "{}",
        list.query
    );
    list.respond(
        200,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {}, "items": items}),
    );
}

async fn expect_storage_class(api: &mut MockApi, name: &str, expandable: bool) {
    api.expect(
        Method::GET,
        &format!("/apis/storage.k8s.io/v1/storageclasses/{name}"),
    )
    .await
    .respond(
        200,
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "p", "allowVolumeExpansion": expandable}),
    );
}

#[tokio::test]
async fn a_grown_size_grows_the_claims_and_recreates_the_statefulset_orphaning_its_pods() {
    let (client, mut api) = MockApi::new();
    let ctx = context(client, stats(Err("unused".into())), NO_MONITORS);
    let spec = json!({"nodes": {"replicas": 2, "storage": {"size": "20Gi"}}});
    let reconciler = tokio::spawn(reconcile(
        network(spec, Some(json!({"observedGeneration": 1})), 2),
        ctx,
    ));
    api.expect(Method::GET, &format!("{APPS}/statefulsets/net-node"))
        .await
        .respond(200, statefulset_with_claims_of("10Gi"));
    expect_claims(
        &mut api,
        vec![
            claim("dig-data-net-node-0", "10Gi", "grow"),
            claim("dig-data-net-node-1", "10Gi", "grow"),
            // Another network's claim with the same labels would not match the name.
            claim("dig-data-other-node-0", "10Gi", "grow"),
        ],
    )
    .await;
    expect_storage_class(&mut api, "grow", true).await;
    for name in ["dig-data-net-node-0", "dig-data-net-node-1"] {
        let patch = api
            .expect(
                Method::PATCH,
                &format!("{NS}/persistentvolumeclaims/{name}"),
            )
            .await;
        assert_eq!(patch.content_type, "application/merge-patch+json");
        assert_eq!(
            patch.body,
            json!({"spec": {"resources": {"requests": {"storage": "20Gi"}}}})
        );
        let body = claim(name, "20Gi", "grow");
        patch.respond(200, body);
    }
    let growing = api.expect_event("ns", "GrowingVolumes", "Normal").await;
    assert!(
        growing["note"]
            .as_str()
            .unwrap()
            .contains("dig-data-net-node-0, dig-data-net-node-1"),
        "{growing}"
    );
    let delete = api
        .expect(Method::DELETE, &format!("{APPS}/statefulsets/net-node"))
        .await;
    assert_eq!(
        delete.body["propagationPolicy"], "Orphan",
        "{}",
        delete.body
    );
    assert_eq!(delete.body["preconditions"]["uid"], "sts-uid-1");
    delete.respond(200, statefulset_with_claims_of("10Gi"));
    // Gone: the apply makes it anew with the grown template.
    api.expect(Method::GET, &format!("{APPS}/statefulsets/net-node"))
        .await
        .not_found();
    api.expect_event("ns", "RecreatingStatefulSet", "Normal")
        .await;
    expect_applied_children(&mut api, None).await;
    expect_service_list(&mut api, vec![]).await;
    let status = api.expect_apply(STATUS).await;
    let body = status.body.clone();
    let resized = condition(&body["status"], "VolumesResized");
    assert_eq!(resized["status"], "False");
    assert_eq!(resized["reason"], "Resizing");
    status.respond(200, stored(&body));
    api.expect_event("ns", "Applied", "Normal").await;
    // Claims are not watched: looked at again soon.
    assert_eq!(
        reconciler.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(3))
    );
}

#[tokio::test]
async fn a_class_without_expansion_is_a_false_condition_and_a_warning() {
    let (client, mut api) = MockApi::new();
    let ctx = context(client, stats(Err("unused".into())), NO_MONITORS);
    let spec = json!({"nodes": {"replicas": 1, "storage": {"size": "20Gi"}}});
    let reconciler = tokio::spawn(reconcile(
        network(spec, Some(json!({"observedGeneration": 1})), 2),
        ctx,
    ));
    api.expect(Method::GET, &format!("{APPS}/statefulsets/net-node"))
        .await
        .respond(200, statefulset_with_claims_of("10Gi"));
    expect_claims(
        &mut api,
        vec![claim("dig-data-net-node-0", "10Gi", "fixed")],
    )
    .await;
    expect_storage_class(&mut api, "fixed", false).await;
    // No claim patched.
    let warning = api
        .expect_event("ns", "StorageClassDisallowsExpansion", "Warning")
        .await;
    assert!(
        warning["note"].as_str().unwrap().contains("\"fixed\""),
        "{warning}"
    );
    let delete = api
        .expect(Method::DELETE, &format!("{APPS}/statefulsets/net-node"))
        .await;
    delete.respond(200, statefulset_with_claims_of("10Gi"));
    api.expect(Method::GET, &format!("{APPS}/statefulsets/net-node"))
        .await
        .not_found();
    api.expect_event("ns", "RecreatingStatefulSet", "Normal")
        .await;
    expect_applied_children(&mut api, None).await;
    expect_service_list(&mut api, vec![]).await;
    let status = api.expect_apply(STATUS).await;
    let body = status.body.clone();
    let resized = condition(&body["status"], "VolumesResized");
    assert_eq!(resized["status"], "False");
    assert_eq!(resized["reason"], "StorageClassDisallowsExpansion");
    assert!(
        resized["message"]
            .as_str()
            .unwrap()
            .contains("claims dig-data-net-node-0 stay below 20Gi"),
        "{resized}"
    );
    status.respond(200, stored(&body));
    api.expect_event("ns", "Applied", "Normal").await;
    assert!(reconciler.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_scale_down_whose_leaving_pod_is_not_running_lowers_the_statefulset_by_one_with_a_warning()
 {
    let (client, mut api) = MockApi::new();
    let ctx = context(client, stats(Err("unused".into())), NO_MONITORS);
    let reconciler = tokio::spawn(reconcile(
        network(
            json!({"nodes": {"replicas": 1}}),
            Some(json!({"observedGeneration": 1, "replicas": 3})),
            1,
        ),
        ctx,
    ));
    let statefulset = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "net-node", "namespace": "ns"},
        "spec": {"replicas": 3, "serviceName": "net-node", "selector": {"matchLabels": {}}, "template": {}}});
    // The volume step's read, then the drain step's.
    for _ in 0..2 {
        api.expect(Method::GET, &format!("{APPS}/statefulsets/net-node"))
            .await
            .respond(200, statefulset.clone());
    }
    api.expect(Method::GET, &format!("{NS}/pods/net-node-2"))
        .await
        .respond(
            200,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "net-node-2", "namespace": "ns"},
                "status": {"phase": "Pending"}}),
        );
    let warning = api.expect_event("ns", "DrainSkipped", "Warning").await;
    assert!(
        warning["note"].as_str().unwrap().contains("net-node-2"),
        "{warning}"
    );
    api.expect_apply(&format!("{NS}/configmaps/net-node"))
        .await
        .echo(None);
    for service in ["net-bootstrap", "net-bootstrap-peers", "net-node"] {
        api.expect_apply(&format!("{NS}/services/{service}"))
            .await
            .echo(None);
    }
    api.expect_apply(&format!("{APPS}/deployments/net-bootstrap"))
        .await
        .echo(None);
    let applied = api
        .expect_apply(&format!("{APPS}/statefulsets/net-node"))
        .await;
    assert_eq!(applied.body["spec"]["replicas"], 2, "one node at a time");
    applied.echo(None);
    for pdb in ["net-bootstrap", "net-node"] {
        api.expect_apply(&format!(
            "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/{pdb}"
        ))
        .await
        .echo(None);
    }
    let status = api.expect_apply(STATUS).await;
    let body = status.body.clone();
    let draining = condition(&body["status"], "Draining");
    assert_eq!(
        (draining["status"].as_str(), draining["reason"].as_str()),
        (Some("False"), Some("NotRunning"))
    );
    assert!(body["status"].get("drain").is_none(), "{body}");
    status.respond(200, stored(&body));
    let action = reconciler.await.unwrap().unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(3)));
}
