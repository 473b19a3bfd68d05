//! The Kubernetes test harness itself: a real control plane with a kwok node runs Deployments
//! and StatefulSets (with volume claims), collects garbage, signs service-account tokens and
//! enforces RBAC, and survives an API server restart.
//!
//! Skipped with a message when the control-plane tools are not built, unless
//! DIG_E2E_REQUIRE_CLUSTER=1 (as `e2e/test-all.sh` sets), which makes that a failure.

use std::time::Instant;

use dig_e2e::cluster::{FAKE_NODE, KUBERNETES_VERSION, STORAGE_CLASS, TestCluster};
use dig_e2e::wait::{CLUSTER_WAIT, eventually};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const NAMESPACE: &str = "smoke";
fn object<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("test manifest matches its Kubernetes type")
}

fn pod_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// Waits until exactly `count` pods match `selector` and all are Running, Ready and on the fake
/// node.
async fn wait_pods_running(client: &Client, selector: &str, count: usize) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let list = ListParams::default().labels(selector);
    eventually(
        &format!("{count} pods {selector} Running and Ready"),
        CLUSTER_WAIT,
        || {
            let (pods, list) = (pods.clone(), list.clone());
            async move {
                let found = pods.list(&list).await.map_err(|e| e.to_string())?.items;
                let ready = found
                    .iter()
                    .filter(|pod| pod_ready(pod))
                    .filter(|pod| {
                        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(FAKE_NODE)
                    })
                    .count();
                if found.len() == count && ready == count {
                    Ok(found)
                } else {
                    Err(format!(
                        "{} pods, {ready} ready on {FAKE_NODE}",
                        found.len()
                    ))
                }
            }
        },
    )
    .await
}

async fn wait_gone<K>(api: &Api<K>, selector: &str, what: &str)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let list = ListParams::default().labels(selector);
    eventually(
        &format!("{what} {selector} garbage-collected"),
        CLUSTER_WAIT,
        || {
            let (api, list) = (api.clone(), list.clone());
            async move {
                let left = api
                    .list(&list)
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .len();
                if left == 0 {
                    Ok(())
                } else {
                    Err(format!("{left} left"))
                }
            }
        },
    )
    .await
}

async fn check_version_and_node(cluster: &TestCluster, client: &Client) {
    let version = client
        .apiserver_version()
        .await
        .expect("GET /version answers");
    assert_eq!(version.git_version, KUBERNETES_VERSION, "{version:?}");

    let kubectl_version = cluster
        .kubectl(["version", "--output=json"])
        .expect("kubectl version runs");
    let kubectl_version: serde_json::Value =
        serde_json::from_str(&kubectl_version).expect("kubectl version prints JSON");
    assert_eq!(
        kubectl_version["clientVersion"]["gitVersion"], KUBERNETES_VERSION,
        "{kubectl_version}"
    );
    assert_eq!(
        kubectl_version["serverVersion"]["gitVersion"], KUBERNETES_VERSION,
        "{kubectl_version}"
    );

    let nodes: Api<Node> = Api::all(client.clone());
    let node = nodes.get(FAKE_NODE).await.expect("the fake node exists");
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.clone());
    assert_eq!(ready.as_deref(), Some("True"), "node {FAKE_NODE}: {node:?}");
    let listed = nodes
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    assert_eq!(listed.items.len(), 1, "exactly the fake node");
}

async fn check_deployment_and_garbage_collection(cluster: &TestCluster, client: &Client) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let deployment: Deployment = object(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "labels": { "app": "web" } },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "registry.invalid/web:1" }] }
            }
        }
    }));
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create Deployment web");
    wait_pods_running(client, "app=web", 2).await;
    eventually(
        "Deployment web reports 2 ready replicas",
        CLUSTER_WAIT,
        || {
            let deployments = deployments.clone();
            async move {
                let status = deployments
                    .get("web")
                    .await
                    .map_err(|e| e.to_string())?
                    .status
                    .unwrap_or_default();
                match status.ready_replicas {
                    Some(2) => Ok(()),
                    other => Err(format!("readyReplicas {other:?}")),
                }
            }
        },
    )
    .await;

    // Deleting the owner leaves the ReplicaSet and its Pods to the garbage collector.
    cluster
        .kubectl([
            "delete",
            "deployment",
            "web",
            "--namespace",
            NAMESPACE,
            "--cascade=background",
        ])
        .expect("kubectl delete deployment web");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
    wait_gone(&replica_sets, "app=web", "ReplicaSets").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    wait_gone(&pods, "app=web", "Pods").await;
}

async fn check_statefulset_with_volume_claims(client: &Client) {
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NAMESPACE);
    let statefulset: StatefulSet = object(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": "db", "labels": { "app": "db" } },
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": { "matchLabels": { "app": "db" } },
            "template": {
                "metadata": { "labels": { "app": "db" } },
                "spec": { "containers": [{
                    "name": "db",
                    "image": "registry.invalid/db:1",
                    "volumeMounts": [{ "name": "data", "mountPath": "/data" }]
                }] }
            },
            // No storageClassName: the default class (kwok-volume) is filled in on admission.
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": { "requests": { "storage": "1Gi" } }
                }
            }]
        }
    }));
    statefulsets
        .create(&PostParams::default(), &statefulset)
        .await
        .expect("create StatefulSet db");
    wait_pods_running(client, "app=db", 2).await;

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    for ordinal in 0..2 {
        let claim = claims
            .get(&format!("data-db-{ordinal}"))
            .await
            .expect("the StatefulSet created its claim");
        let spec = claim.spec.clone().unwrap_or_default();
        assert_eq!(spec.storage_class_name.as_deref(), Some(STORAGE_CLASS));
        assert_eq!(
            claim.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Bound"),
            "{claim:?}"
        );
        let volume_name = spec.volume_name.expect("a bound claim names its volume");
        let volume = Api::<PersistentVolume>::all(client.clone())
            .get(&volume_name)
            .await
            .expect("kwok created the volume");
        assert_eq!(
            volume
                .spec
                .and_then(|s| s.claim_ref)
                .and_then(|r| r.name)
                .as_deref(),
            Some(format!("data-db-{ordinal}").as_str())
        );
    }

    statefulsets
        .delete("db", &DeleteParams::background())
        .await
        .expect("delete StatefulSet db");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    wait_gone(&pods, "app=db", "Pods").await;
}

/// Without a provisioner that binds the claim, kube-scheduler does not place a Pod whose claim
/// is unbound: this is why the harness installs kwok's volume stages and a default class.
async fn check_unbound_claim_blocks_scheduling(client: &Client) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NAMESPACE);
    let claim: PersistentVolumeClaim = object(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": "orphan" },
        "spec": {
            "storageClassName": "no-such-provisioner",
            "accessModes": ["ReadWriteOnce"],
            "resources": { "requests": { "storage": "1Gi" } }
        }
    }));
    claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("create claim orphan");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod: Pod = object(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "orphan", "labels": { "app": "orphan" } },
        "spec": {
            "containers": [{ "name": "c", "image": "registry.invalid/c:1",
                             "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": "orphan" } }]
        }
    }));
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod orphan");
    let message = eventually("pod orphan reported unschedulable", CLUSTER_WAIT, || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("orphan").await.map_err(|e| e.to_string())?;
            let scheduled = pod
                .status
                .and_then(|s| s.conditions)
                .and_then(|c| c.into_iter().find(|c| c.type_ == "PodScheduled"));
            match scheduled {
                Some(c) if c.status == "False" && c.reason.as_deref() == Some("Unschedulable") => {
                    Ok(c.message.unwrap_or_default())
                }
                other => Err(format!("PodScheduled {other:?}")),
            }
        }
    })
    .await;
    assert!(message.contains("unbound"), "scheduler said: {message}");
    pods.delete("orphan", &DeleteParams::default())
        .await
        .expect("delete pod orphan");
}

/// Token authentication, service-account keys and RBAC are real: a token the API server signs
/// for a service account (TokenRequest) is accepted, its user is refused what no role grants and
/// allowed once a RoleBinding grants it; an unknown token is refused outright.
async fn check_service_account_tokens_and_rbac(cluster: &TestCluster) {
    use dig_e2e::cluster::ClusterError;
    cluster
        .kubectl([
            "create",
            "serviceaccount",
            "reader",
            "--namespace",
            NAMESPACE,
        ])
        .expect("create service account reader");
    let token = cluster
        .kubectl([
            "create",
            "token",
            "reader",
            "--namespace",
            NAMESPACE,
            "--duration=10m",
        ])
        .expect("the API server issues a service-account token");
    let token = token.trim().to_string();
    let as_reader = |token: &str| {
        cluster.kubectl([
            "get",
            "configmaps",
            "--namespace",
            NAMESPACE,
            "--token",
            token,
        ])
    };
    let stderr_of = |result: Result<String, ClusterError>| match result {
        Ok(output) => panic!("expected a refusal, got: {output}"),
        Err(ClusterError::Kubectl { stderr, .. }) => stderr,
        Err(other) => panic!("kubectl could not run: {other}"),
    };
    let forbidden = stderr_of(as_reader(&token));
    assert!(
        forbidden.contains("Forbidden")
            && forbidden.contains(&format!("system:serviceaccount:{NAMESPACE}:reader")),
        "{forbidden}"
    );
    let unknown = stderr_of(as_reader("not-a-token"));
    assert!(unknown.contains("Unauthorized"), "{unknown}");

    cluster
        .kubectl([
            "create",
            "role",
            "read-config",
            "--verb=list",
            "--resource=configmaps",
            "--namespace",
            NAMESPACE,
        ])
        .expect("create role read-config");
    cluster
        .kubectl([
            "create",
            "rolebinding",
            "reader-reads-config",
            "--role=read-config",
            &format!("--serviceaccount={NAMESPACE}:reader"),
            "--namespace",
            NAMESPACE,
        ])
        .expect("create rolebinding");
    eventually(
        "the bound service account lists configmaps",
        CLUSTER_WAIT,
        || {
            let result = as_reader(&token).map_err(|e| e.to_string());
            async move { result.map(drop) }
        },
    )
    .await;
}

async fn check_apiserver_restart(cluster: &TestCluster, client: &Client) {
    cluster.restart_apiserver().expect("restart kube-apiserver");
    // The same client reconnects; the data is in etcd, so the namespace is still there.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually("the client lists namespaces again", CLUSTER_WAIT, || {
        let namespaces = namespaces.clone();
        async move {
            let names: Vec<_> = namespaces
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .collect();
            if names.iter().any(|n| n == NAMESPACE) {
                Ok(())
            } else {
                Err(format!("namespaces {names:?}"))
            }
        }
    })
    .await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let config_map: ConfigMap = object(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "after-restart" }, "data": { "written": "yes" }
    }));
    config_maps
        .create(&PostParams::default(), &config_map)
        .await
        .expect("write after the restart");

    // The controllers, the scheduler and kwok re-established their watches too.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let deployment: Deployment = object(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "after-restart" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "after-restart" } },
            "template": {
                "metadata": { "labels": { "app": "after-restart" } },
                "spec": { "containers": [{ "name": "c", "image": "registry.invalid/c:1" }] }
            }
        }
    }));
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create Deployment after-restart");
    wait_pods_running(client, "app=after-restart", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_runs_workloads_and_survives_an_apiserver_restart() {
    let Some(cluster) = TestCluster::start_or_skip("smoke") else {
        return;
    };
    let client = cluster.client().await.expect("client from the kubeconfig");

    check_version_and_node(&cluster, &client).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &object(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": NAMESPACE } })),
        )
        .await
        .expect("create namespace");
    // The namespace's default service account must exist before Pods are admitted.
    eventually("service account smoke/default", CLUSTER_WAIT, || {
        let client = client.clone();
        async move {
            Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client, NAMESPACE)
                .get("default")
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    })
    .await;

    let step = Instant::now();
    check_deployment_and_garbage_collection(&cluster, &client).await;
    eprintln!(
        "smoke: Deployment ready and collected in {:?}",
        step.elapsed()
    );
    let step = Instant::now();
    check_statefulset_with_volume_claims(&client).await;
    eprintln!(
        "smoke: StatefulSet with claims ready and collected in {:?}",
        step.elapsed()
    );
    check_unbound_claim_blocks_scheduling(&client).await;
    check_service_account_tokens_and_rbac(&cluster).await;
    let step = Instant::now();
    check_apiserver_restart(&cluster, &client).await;
    eprintln!(
        "smoke: API server restarted and a new Deployment ready in {:?}",
        step.elapsed()
    );
}
