//! The `dig-operator` binary reconciling DigNetworks and DigNodes on a real control plane (kwok
//! reports the pods Running and binds their claims): every child of docs/DESIGN.md §5 with owner
//! references and the `dig-operator` field manager, `kubectl wait --for=condition=Ready`, spec
//! changes rolled out, children deleted or edited by hand put back, an invalid spec Degraded
//! without a requeue storm, ServiceMonitors and PodMonitors only where the API exists and pruned
//! when monitoring is turned off, a DigNode following its network, the operator killed
//! mid-reconcile and the API server restarted, and garbage collection of every child when the
//! network is deleted.
//!
//! One cluster and one operator for all the scenarios (they build on each other).
//!
//! Skipped with a message when the control-plane tools are not built, unless
//! DIG_E2E_REQUIRE_CLUSTER=1 (set by e2e/test-all.sh).

use std::time::{Duration, Instant};

use dig_e2e::cluster::TestCluster;
use dig_e2e::operator::{
    NETWORK_KIND, NODE_KIND, OperatorOptions, OperatorProcess, condition, dig_manifest, get_object,
    install_crds, install_prometheus_operator_crd, is_ready,
};
use dig_e2e::process::workspace_root;
use dig_e2e::wait::{CLUSTER_WAIT, eventually};
use serde_json::{Value, json};

const NAMESPACE: &str = "apps";
const NODE_IMAGE_1: &str = "registry.local/dig-sidecar:1";
const NODE_IMAGE_2: &str = "registry.local/dig-sidecar:2";
const NODE_IMAGE_3: &str = "registry.local/dig-sidecar:3";
const HOSTNAME: &str = "bootstrap.alpha.example.com";

fn network(name: &str, spec: Value) -> Value {
    dig_manifest(NETWORK_KIND, NAMESPACE, name, spec)
}

fn apply(cluster: &TestCluster, manifest: &Value) {
    cluster
        .kubectl_with_stdin(["apply", "-f", "-"], &manifest.to_string())
        .unwrap_or_else(|e| panic!("kubectl apply {manifest}: {e}"));
}

fn merge_patch(cluster: &TestCluster, kind_name: &str, patch: Value) {
    cluster
        .kubectl([
            "patch",
            kind_name,
            "-n",
            NAMESPACE,
            "--type=merge",
            "-p",
            &patch.to_string(),
        ])
        .unwrap_or_else(|e| panic!("kubectl patch {kind_name} {patch}: {e}"));
}

fn get(cluster: &TestCluster, kind: &str, name: &str) -> Option<Value> {
    get_object(cluster, NAMESPACE, kind, name).unwrap_or_else(|e| panic!("{e}"))
}

fn must_get(cluster: &TestCluster, kind: &str, name: &str) -> Value {
    get(cluster, kind, name).unwrap_or_else(|| panic!("{kind} {NAMESPACE}/{name} does not exist"))
}

/// `kubectl wait --for=condition=Ready`, as a user would run it.
fn kubectl_wait_ready(cluster: &TestCluster, kind_name: &str) {
    cluster
        .kubectl([
            "wait",
            "--for=condition=Ready",
            kind_name,
            "-n",
            NAMESPACE,
            &format!("--timeout={}s", CLUSTER_WAIT.as_secs()),
        ])
        .unwrap_or_else(|e| panic!("{kind_name} is not Ready: {e}"));
}

/// Waits until the DigNetwork or DigNode is Ready for its current generation and `check`
/// holds on it; returns it.
async fn ready_with(
    cluster: &TestCluster,
    kind: &str,
    name: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(&format!("{kind} {name} Ready"), CLUSTER_WAIT, || {
        let result = match get(cluster, kind, name) {
            Some(object) if is_ready(&object) && check(&object) => Ok(object),
            other => Err(format!("{other:?}")),
        };
        async move { result }
    })
    .await
}

/// A child of the DigNetwork with uid `owner_uid`: owned by it (controller), written by
/// server-side apply as `dig-operator`, labelled as managed by it.
fn assert_owned_child(child: &Value, owner_uid: &str) {
    let what = format!(
        "{} {}",
        child["kind"].as_str().unwrap_or("?"),
        child["metadata"]["name"].as_str().unwrap_or("?")
    );
    let owners = child["metadata"]["ownerReferences"]
        .as_array()
        .unwrap_or_else(|| panic!("{what} has no ownerReferences"));
    assert!(
        owners
            .iter()
            .any(|o| o["uid"] == owner_uid && o["controller"] == true && o["kind"] == "DigNetwork"),
        "{what}: owner {owner_uid} missing in {owners:?}"
    );
    let managers = child["metadata"]["managedFields"]
        .as_array()
        .unwrap_or_else(|| panic!("{what} has no managedFields"));
    assert!(
        managers
            .iter()
            .any(|m| m["manager"] == "dig-operator" && m["operation"] == "Apply"),
        "{what}: no server-side apply by dig-operator in {managers:?}"
    );
    assert_eq!(
        child["metadata"]["labels"]["app.kubernetes.io/managed-by"], "dig-operator",
        "{what}"
    );
}

/// Waits until no object of `kinds` is labelled `app.kubernetes.io/instance=<instance>`.
async fn until_none_labelled(cluster: &TestCluster, kinds: &str, instance: &str) {
    eventually(
        &format!("no {kinds} of {instance} left"),
        CLUSTER_WAIT,
        || {
            let left = labelled(cluster, kinds, instance);
            async move {
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            }
        },
    )
    .await;
}

/// A PodMonitor's single endpoint sets `job` to `job` (the StatefulSet nodes' job).
fn assert_job_relabelled(monitor: &Value, job: &str) {
    let endpoints = monitor["spec"]["podMetricsEndpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no podMetricsEndpoints: {monitor}"));
    assert_eq!(endpoints.len(), 1, "{monitor}");
    assert_eq!(endpoints[0]["path"], "/metrics", "{monitor}");
    assert!(
        endpoints[0]["relabelings"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["targetLabel"] == "job" && r["replacement"] == job),
        "{monitor}"
    );
}

/// Names of the pods of the namespace a `matchLabels` selector selects.
fn pods_selected_by(cluster: &TestCluster, selector: &Value) -> Vec<String> {
    let labels: Vec<String> = selector["matchLabels"]
        .as_object()
        .unwrap_or_else(|| panic!("no matchLabels: {selector}"))
        .iter()
        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
        .collect();
    cluster
        .kubectl([
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            &labels.join(","),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .unwrap_or_else(|e| panic!("listing pods by {labels:?}: {e}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn string_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn node_image(statefulset: &Value) -> String {
    string_at(statefulset, "/spec/template/spec/containers/0/image").to_string()
}

/// Names of the objects of `kinds` labelled `app.kubernetes.io/instance=<instance>`.
fn labelled(cluster: &TestCluster, kinds: &str, instance: &str) -> Vec<String> {
    cluster
        .kubectl([
            "get",
            kinds,
            "-n",
            NAMESPACE,
            "-l",
            &format!("app.kubernetes.io/instance={instance}"),
            "-o",
            "name",
        ])
        .unwrap_or_else(|e| panic!("listing {kinds}: {e}"))
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_reconciles_networks_and_nodes_on_a_real_cluster() {
    let Some(cluster) = TestCluster::start_or_skip("operator-reconcile") else {
        return;
    };
    let started = Instant::now();
    install_crds(&cluster).expect("apply the CRDs");
    cluster
        .kubectl(["create", "namespace", NAMESPACE])
        .expect("create namespace");
    let mut operator = OperatorProcess::start_for(&cluster, OperatorOptions::named("operator"))
        .await
        .expect("start dig-operator");

    // --- every child, owned and applied by dig-operator; Ready once kwok runs the pods.
    apply(
        &cluster,
        &network(
            "alpha",
            json!({
                "networkId": "alpha-net",
                "bootstrap": {"replicas": 2, "image": "registry.local/dig-bootstrap:1"},
                "nodes": {
                    "replicas": 3,
                    "image": NODE_IMAGE_1,
                    "storage": {"size": "1Gi"},
                    "exposure": {"type": "NodePort"}
                },
                "dns": {"hostnames": [HOSTNAME], "ttl": 60},
                "monitoring": {"serviceMonitor": true}
            }),
        ),
    );
    kubectl_wait_ready(&cluster, "dignetwork/alpha");
    let alpha = ready_with(&cluster, "dignetwork", "alpha", |n| {
        n["status"]["readyNodes"] == 3 && n["status"]["bootstrapReadyReplicas"] == 2
    })
    .await;
    eprintln!("alpha Ready after {:.1} s", started.elapsed().as_secs_f64());
    let alpha_uid = string_at(&alpha, "/metadata/uid").to_string();
    assert_eq!(alpha["status"]["networkId"], "alpha-net");
    assert_eq!(
        condition(&alpha, "Degraded").map(|c| c["status"].clone()),
        Some(json!("False")),
        "{alpha}"
    );

    let children = [
        ("deployment", "alpha-bootstrap"),
        ("service", "alpha-bootstrap"),
        ("service", "alpha-bootstrap-peers"),
        ("statefulset", "alpha-node"),
        ("service", "alpha-node"),
        ("service", "alpha-node-0"),
        ("service", "alpha-node-1"),
        ("service", "alpha-node-2"),
        ("poddisruptionbudget", "alpha-bootstrap"),
        ("poddisruptionbudget", "alpha-node"),
        ("configmap", "alpha-node"),
    ];
    for (kind, name) in children {
        assert_owned_child(&must_get(&cluster, kind, name), &alpha_uid);
    }
    let bootstrap_service = must_get(&cluster, "service", "alpha-bootstrap");
    for prefix in [
        "external-dns.alpha.kubernetes.io/",
        "external-dns.kubernetes.io/",
    ] {
        assert_eq!(
            bootstrap_service["metadata"]["annotations"][format!("{prefix}hostname")],
            HOSTNAME,
            "{bootstrap_service}"
        );
    }
    for headless in ["alpha-bootstrap-peers", "alpha-node"] {
        let service = must_get(&cluster, "service", headless);
        assert_eq!(service["spec"]["clusterIP"], "None", "{service}");
    }
    for ordinal in 0..3 {
        let service = must_get(&cluster, "service", &format!("alpha-node-{ordinal}"));
        assert_eq!(service["spec"]["type"], "NodePort", "{service}");
        assert_eq!(
            service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
            format!("alpha-node-{ordinal}"),
            "{service}"
        );
    }
    let statefulset = must_get(&cluster, "statefulset", "alpha-node");
    let claim = &statefulset["spec"]["volumeClaimTemplates"][0];
    assert_eq!(
        claim["spec"]["resources"]["requests"]["storage"], "1Gi",
        "{statefulset}"
    );
    assert_eq!(node_image(&statefulset), NODE_IMAGE_1);
    let pod_spec = &statefulset["spec"]["template"]["spec"];
    assert_eq!(pod_spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod_spec["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    for pdb in ["alpha-bootstrap", "alpha-node"] {
        let pdb = must_get(&cluster, "poddisruptionbudget", pdb);
        assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{pdb}");
    }
    // kwok's volume stages bind every claim of the StatefulSet.
    let claims = cluster
        .kubectl([
            "get",
            "pvc",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.items[*].status.phase}",
        ])
        .expect("list claims");
    assert_eq!(claims.split_whitespace().collect::<Vec<_>>(), ["Bound"; 3]);
    // No monitoring API: no ServiceMonitor, and the network is Ready all the same.
    let monitoring = cluster
        .kubectl([
            "api-resources",
            "--api-group=monitoring.coreos.com",
            "-o",
            "name",
        ])
        .expect("api-resources");
    assert!(monitoring.trim().is_empty(), "{monitoring}");

    // --- the examples users start from become Ready as they are (the private one with its PSK
    // Secret).
    for example in ["dignetwork-minimal.yaml", "dignetwork-private.yaml"] {
        let path = workspace_root().join("examples").join(example);
        cluster
            .kubectl(["apply", "-n", NAMESPACE, "-f", &path.to_string_lossy()])
            .unwrap_or_else(|e| panic!("kubectl apply -f examples/{example}: {e}"));
    }
    for name in ["dig", "dig-private"] {
        kubectl_wait_ready(&cluster, &format!("dignetwork/{name}"));
        let example = must_get(&cluster, "dignetwork", name);
        let uid = string_at(&example, "/metadata/uid").to_string();
        for kind in ["deployment", "statefulset"] {
            let suffix = if kind == "deployment" {
                "bootstrap"
            } else {
                "node"
            };
            assert_owned_child(&must_get(&cluster, kind, &format!("{name}-{suffix}")), &uid);
        }
    }

    // --- a spec change rolls out.
    merge_patch(
        &cluster,
        "dignetwork/alpha",
        json!({"spec": {"nodes": {"replicas": 4, "image": NODE_IMAGE_2}}}),
    );
    ready_with(&cluster, "dignetwork", "alpha", |n| {
        n["status"]["readyNodes"] == 4
    })
    .await;
    let statefulset = must_get(&cluster, "statefulset", "alpha-node");
    assert_eq!(statefulset["spec"]["replicas"], 4);
    assert_eq!(node_image(&statefulset), NODE_IMAGE_2);
    assert_owned_child(&must_get(&cluster, "service", "alpha-node-3"), &alpha_uid);
    let pod_image = cluster
        .kubectl([
            "get",
            "pod",
            "alpha-node-0",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ])
        .expect("get pod alpha-node-0");
    assert_eq!(pod_image, NODE_IMAGE_2, "the pods were rolled");

    // --- children deleted by hand come back; children edited by hand are put back.
    let old_uid = string_at(
        &must_get(&cluster, "service", "alpha-node"),
        "/metadata/uid",
    )
    .to_string();
    cluster
        .kubectl(["delete", "service", "alpha-node", "-n", NAMESPACE])
        .expect("delete the headless Service");
    cluster
        .kubectl(["delete", "configmap", "alpha-node", "-n", NAMESPACE])
        .expect("delete the ConfigMap");
    eventually("the deleted children are recreated", CLUSTER_WAIT, || {
        let service = get(&cluster, "service", "alpha-node");
        let config_map = get(&cluster, "configmap", "alpha-node");
        let old_uid = old_uid.clone();
        async move {
            match (service, config_map) {
                (Some(service), Some(_)) if string_at(&service, "/metadata/uid") != old_uid => {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    cluster
        .kubectl([
            "scale",
            "deployment",
            "alpha-bootstrap",
            "-n",
            NAMESPACE,
            "--replicas=5",
        ])
        .expect("scale the bootstrap Deployment by hand");
    cluster
        .kubectl([
            "annotate",
            "service",
            "alpha-bootstrap",
            "-n",
            NAMESPACE,
            "--overwrite",
            "external-dns.alpha.kubernetes.io/hostname=hijacked.example.com",
        ])
        .expect("annotate the bootstrap Service by hand");
    eventually("the hand edits are put back", CLUSTER_WAIT, || {
        let deployment = get(&cluster, "deployment", "alpha-bootstrap");
        let service = get(&cluster, "service", "alpha-bootstrap");
        async move {
            let replicas = deployment.as_ref().map(|d| d["spec"]["replicas"].clone());
            let hostname = service.as_ref().map(|s| {
                s["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"].clone()
            });
            if replicas == Some(json!(2)) && hostname == Some(json!(HOSTNAME)) {
                Ok(())
            } else {
                Err(format!("replicas {replicas:?}, hostname {hostname:?}"))
            }
        }
    })
    .await;

    // --- an invalid spec (CEL cannot know the Secret is missing) is Degraded, without a storm.
    apply(
        &cluster,
        &network(
            "broken",
            json!({"nodes": {"replicas": 1},
                   "privateNetwork": {"pskSecretRef": {"name": "no-such-secret"}}}),
        ),
    );
    let broken = eventually("broken is Degraded", CLUSTER_WAIT, || {
        let object = get(&cluster, "dignetwork", "broken");
        async move {
            let object = object.ok_or("not found")?;
            match condition(&object, "Degraded") {
                Some(c) if c["status"] == "True" => Ok(object.clone()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let degraded = condition(&broken, "Degraded").expect("Degraded").clone();
    assert_eq!(degraded["reason"], "PskSecretNotFound", "{degraded}");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no-such-secret"),
        "{degraded}"
    );
    assert_ne!(
        condition(&broken, "Ready").map(|c| c["status"].clone()),
        Some(json!("True"))
    );
    assert!(
        labelled(&cluster, "deployment,statefulset,service", "broken").is_empty(),
        "nothing is built from an invalid spec"
    );
    let events = cluster
        .kubectl([
            "get",
            "events",
            "-n",
            NAMESPACE,
            "--field-selector",
            "involvedObject.name=broken,type=Warning",
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .expect("events of broken");
    assert!(events.contains("PskSecretNotFound"), "events: {events}");
    let before = operator.metrics().await.expect("metrics");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = operator.metrics().await.expect("metrics");
    let reason = Some("invalid_spec_psksecretnotfound");
    let errors = after.reconcile_errors(NETWORK_KIND, reason)
        - before.reconcile_errors(NETWORK_KIND, reason);
    let reconciles = after.reconciles(NETWORK_KIND) - before.reconciles(NETWORK_KIND);
    assert!(
        before.reconcile_errors(NETWORK_KIND, reason) >= 1.0,
        "the invalid spec is counted as an error:\n{}",
        before.text()
    );
    assert!(
        errors <= 1.0 && reconciles <= 3.0,
        "requeue storm: {errors} errors and {reconciles} reconciles in 6 s"
    );

    // --- a DigNode joins alpha, becomes Ready and follows alpha's node image.
    apply(
        &cluster,
        &dig_manifest(
            NODE_KIND,
            NAMESPACE,
            "solo",
            json!({"networkRef": {"name": "alpha"}, "storage": {"size": "1Gi"}}),
        ),
    );
    kubectl_wait_ready(&cluster, "dignode/solo");
    let solo = ready_with(&cluster, "dignode", "solo", |n| {
        n["status"]["ready"] == true
    })
    .await;
    assert_eq!(solo["status"]["networkId"], "alpha-net", "{solo}");
    let solo_set = must_get(&cluster, "statefulset", "dignode-solo");
    assert_eq!(node_image(&solo_set), NODE_IMAGE_2);
    merge_patch(
        &cluster,
        "dignetwork/alpha",
        json!({"spec": {"nodes": {"image": NODE_IMAGE_3}}}),
    );
    eventually(
        "alpha's new image reaches the DigNode",
        CLUSTER_WAIT,
        || {
            let set = get(&cluster, "statefulset", "dignode-solo");
            async move {
                let image = set.as_ref().map(node_image);
                (image.as_deref() == Some(NODE_IMAGE_3))
                    .then_some(())
                    .ok_or(format!("{image:?}"))
            }
        },
    )
    .await;
    ready_with(&cluster, "dignode", "solo", |n| {
        n["status"]["ready"] == true
    })
    .await;

    // --- the operator killed (SIGKILL) in the middle of a reconcile, with the monitoring API
    // installed meanwhile: the restarted operator finishes the job and adds ServiceMonitors.
    for (plural, kind) in [
        ("servicemonitors", "ServiceMonitor"),
        ("podmonitors", "PodMonitor"),
    ] {
        install_prometheus_operator_crd(&cluster, plural, kind)
            .unwrap_or_else(|e| panic!("install the {kind} CRD: {e}"));
    }
    apply(
        &cluster,
        &network(
            "beta",
            json!({"bootstrap": {"replicas": 1}, "nodes": {"replicas": 2},
                   "monitoring": {"serviceMonitor": true, "labels": {"release": "prom"}}}),
        ),
    );
    apply(
        &cluster,
        &network(
            "gamma",
            json!({"bootstrap": {"replicas": 1}, "nodes": {"replicas": 2}}),
        ),
    );
    eventually("the operator starts on beta", CLUSTER_WAIT, || {
        let deployment = get(&cluster, "deployment", "beta-bootstrap");
        async move {
            deployment
                .map(drop)
                .ok_or("no beta-bootstrap yet".to_string())
        }
    })
    .await;
    operator
        .kill_and_restart()
        .await
        .expect("restart dig-operator");
    for name in ["beta", "gamma"] {
        kubectl_wait_ready(&cluster, &format!("dignetwork/{name}"));
    }
    let beta = must_get(&cluster, "dignetwork", "beta");
    let beta_uid = string_at(&beta, "/metadata/uid").to_string();
    // PodMonitors scrape the nodes outside the StatefulSet (injected sidecars, DigNodes) as the
    // network's node job, each pod once.
    for (kind, name) in [
        ("servicemonitor", "beta-bootstrap"),
        ("servicemonitor", "beta-node"),
        ("podmonitor", "beta-injected"),
        ("podmonitor", "beta-dignodes"),
    ] {
        let monitor = eventually("beta's monitors", CLUSTER_WAIT, || {
            let object = get(&cluster, kind, name);
            async move { object.ok_or(format!("no {kind} {name}")) }
        })
        .await;
        assert_owned_child(&monitor, &beta_uid);
        assert_eq!(
            monitor["metadata"]["labels"]["release"], "prom",
            "{monitor}"
        );
        if kind == "podmonitor" {
            assert_job_relabelled(&monitor, "beta-node");
        }
    }
    // alpha asked for one too; gamma did not.
    for monitor in ["alpha-bootstrap", "alpha-node"] {
        assert_owned_child(&must_get(&cluster, "servicemonitor", monitor), &alpha_uid);
    }
    assert!(
        labelled(&cluster, "servicemonitors,podmonitors", "gamma").is_empty(),
        "gamma has serviceMonitor off"
    );

    let injected = must_get(&cluster, "podmonitor", "alpha-injected");
    assert_owned_child(&injected, &alpha_uid);
    assert_eq!(
        injected["spec"]["selector"],
        json!({"matchLabels": {"dig.net/inject": "alpha"}}),
        "{injected}"
    );
    assert_eq!(
        injected["spec"]["podMetricsEndpoints"][0]["port"],
        "dig-api"
    );
    assert_job_relabelled(&injected, "alpha-node");
    let dignodes = must_get(&cluster, "podmonitor", "alpha-dignodes");
    assert_owned_child(&dignodes, &alpha_uid);
    assert_eq!(dignodes["spec"]["podMetricsEndpoints"][0]["port"], "api");
    assert_job_relabelled(&dignodes, "alpha-node");
    // The API server's own selection: alpha's DigNode pod, and none of alpha's StatefulSet pods
    // (the ServiceMonitor alpha-node scrapes those).
    let selected = eventually(
        "the DigNode pod carries its network's label",
        CLUSTER_WAIT,
        || {
            let pods = pods_selected_by(&cluster, &dignodes["spec"]["selector"]);
            async move {
                (pods == ["dignode-solo-0"])
                    .then_some(pods.clone())
                    .ok_or(format!("{pods:?}"))
            }
        },
    )
    .await;
    assert!(!selected.iter().any(|p| p.starts_with("alpha-node-")));
    let solo_pod = must_get(&cluster, "pod", "dignode-solo-0");
    let ports = solo_pod["spec"]["containers"][0]["ports"].to_string();
    assert!(ports.contains(r#""name":"api""#), "{ports}");

    // --- monitoring turned off: beta's monitors are removed, alpha's stay.
    merge_patch(
        &cluster,
        "dignetwork/beta",
        json!({"spec": {"monitoring": {"serviceMonitor": false}}}),
    );
    until_none_labelled(&cluster, "servicemonitors,podmonitors", "beta").await;
    assert_eq!(
        labelled(&cluster, "servicemonitors,podmonitors", "alpha").len(),
        4
    );

    // --- the API server restarted in the middle: a new network still converges, and a change
    // made afterwards is seen (the watches came back).
    apply(
        &cluster,
        &network(
            "delta",
            json!({"bootstrap": {"replicas": 1}, "nodes": {"replicas": 2}}),
        ),
    );
    cluster.restart_apiserver().expect("restart kube-apiserver");
    kubectl_wait_ready(&cluster, "dignetwork/delta");
    // A scale-down waits for the leaving node to drain; nothing answers behind a kwok pod's IP,
    // so a drain timeout of 0s lets it go at once (operator_drain.rs drains real nodes).
    merge_patch(
        &cluster,
        "dignetwork/gamma",
        json!({"spec": {"nodes": {"replicas": 1, "drainTimeout": "0s"}}}),
    );
    ready_with(&cluster, "dignetwork", "gamma", |n| {
        n["status"]["nodes"] == 1
    })
    .await;
    assert_eq!(
        must_get(&cluster, "statefulset", "gamma-node")["spec"]["replicas"],
        1
    );

    // --- deleting the network garbage-collects every child (kube-controller-manager's GC).
    cluster
        .kubectl([
            "delete",
            "dignetwork",
            "alpha",
            "-n",
            NAMESPACE,
            "--timeout=60s",
        ])
        .expect("delete alpha");
    until_none_labelled(
        &cluster,
        "deployment,statefulset,service,configmap,poddisruptionbudget,servicemonitor,podmonitor",
        "alpha",
    )
    .await;
    for (kind, name) in children {
        assert!(get(&cluster, kind, name).is_none(), "{kind} {name} left");
    }
    assert!(operator.is_running(), "{}", operator.output());
    eprintln!(
        "operator reconcile scenarios done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
