//! Day-2 operations of a DigNetwork on a control plane with one real node, the operator installed
//! by its chart (so its RBAC is the chart's): `kubectl scale` through the scale subresource, the
//! claim retention policy on the StatefulSet, `storage.size` grown (every claim grows, the node
//! pods keep running, `VolumesResized` turns True), the same for a DigNode's claim, a shrink
//! refused by the API server's CEL rule, and a StorageClass without volume expansion reported as
//! `VolumesResized=False`.
//!
//! Skipped with a message without the tools or root, unless DIG_E2E_REQUIRE_CLUSTER=1.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use dig_e2e::cluster::{REAL_NODE_FIXED_STORAGE_CLASS, REAL_NODE_STORAGE_CLASS, TestCluster};
use dig_e2e::operator::{NETWORK_KIND, NODE_KIND, condition, dig_manifest, get_object};
use dig_e2e::walkthrough::{
    STEP_TIMEOUT, Walkthrough, network_node_pods, real_node_with_images, wait_until,
};
use serde_json::{Value, json};

const TEST: &str = "operator_day2";
const NS: &str = "day2";

fn kubectl(cluster: &TestCluster, args: &[&str]) -> anyhow::Result<String> {
    Ok(cluster.kubectl(args)?)
}

fn network(cluster: &TestCluster, name: &str) -> anyhow::Result<Value> {
    get_object(cluster, NS, "dignetwork", name)?.with_context(|| format!("no DigNetwork {name}"))
}

fn statefulset(cluster: &TestCluster, name: &str) -> anyhow::Result<Value> {
    get_object(cluster, NS, "statefulset", &format!("{name}-node"))?
        .with_context(|| format!("no StatefulSet {name}-node"))
}

/// Node pods of network `name`: pod name -> uid, for the Ready ones.
fn ready_node_pods(cluster: &TestCluster, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(network_node_pods(cluster, NS, name)?
        .into_iter()
        .filter(|(pod, _)| pod.ready)
        .map(|(pod, _)| (pod.name, pod.uid))
        .collect())
}

/// The Ready pods of DigNode `name`: pod name -> uid.
fn dignode_ready_pods(
    cluster: &TestCluster,
    name: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    let pod = format!("dignode-{name}-0");
    let Some(object) = get_object(cluster, NS, "pod", &pod)? else {
        return Ok(BTreeMap::new());
    };
    let ready = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    Ok(ready
        .then(|| {
            (
                pod,
                object["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .into_iter()
        .collect())
}

/// `status.capacity.storage` of claim `claim` (absent while unbound).
fn claim_capacity(cluster: &TestCluster, claim: &str) -> anyhow::Result<String> {
    Ok(kubectl(
        cluster,
        &[
            "get",
            "pvc",
            claim,
            "-n",
            NS,
            "-o",
            "jsonpath={.status.capacity.storage}",
        ],
    )?
    .trim()
    .to_string())
}

fn create_network(
    cluster: &TestCluster,
    name: &str,
    nodes: i64,
    class: &str,
    size: &str,
) -> anyhow::Result<()> {
    let spec = json!({
        "bootstrap": {"replicas": 1},
        "nodes": {
            "replicas": nodes,
            "storage": {"size": size, "storageClassName": class},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
        },
    });
    let manifest = dig_manifest(NETWORK_KIND, NS, name, spec);
    cluster.kubectl_with_stdin(["apply", "-f", "-"], &manifest.to_string())?;
    Ok(())
}

async fn wait_ready_nodes(cluster: &TestCluster, name: &str, nodes: usize) -> anyhow::Result<()> {
    wait_until(
        &format!("{nodes} node pods of {name} Ready and the status counting them"),
        STEP_TIMEOUT,
        || async {
            let pods = ready_node_pods(cluster, name)?;
            let status = network(cluster, name)?["status"].clone();
            if pods.len() == nodes && status["readyNodes"] == nodes && status["replicas"] == nodes {
                Ok(())
            } else {
                bail!("pods {pods:?}, status {status}")
            }
        },
    )
    .await
}

fn grow(cluster: &TestCluster, name: &str, size: &str) -> anyhow::Result<String> {
    let patch = json!({"spec": {"nodes": {"storage": {"size": size}}}}).to_string();
    kubectl(
        cluster,
        &[
            "patch",
            "dignetwork",
            name,
            "-n",
            NS,
            "--type",
            "merge",
            "-p",
            &patch,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_retention_volume_growth_and_shrink_refusal_on_a_real_node() {
    let Some((cluster, images)) = real_node_with_images(TEST) else {
        return;
    };
    let walk = Walkthrough::new(&cluster, images).expect("the real node");
    walk.install_operator().expect("helm install and rollout");
    kubectl(&cluster, &["create", "namespace", NS]).unwrap();

    // Two nodes on the expandable class; the retention policy lands on the StatefulSet.
    create_network(&cluster, "grow", 2, REAL_NODE_STORAGE_CLASS, "64Mi").unwrap();
    wait_ready_nodes(&cluster, "grow", 2).await.unwrap();
    let sts = statefulset(&cluster, "grow").unwrap();
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Delete", "whenScaled": "Retain"}),
        "{}",
        sts["spec"]
    );

    // kubectl scale, through the scale subresource: the StatefulSet and the status follow.
    let scaled = kubectl(
        &cluster,
        &["scale", "dignetwork", "grow", "-n", NS, "--replicas", "3"],
    )
    .unwrap();
    eprintln!("{}", scaled.trim());
    assert_eq!(
        network(&cluster, "grow").unwrap()["spec"]["nodes"]["replicas"],
        3
    );
    wait_ready_nodes(&cluster, "grow", 3).await.unwrap();
    assert_eq!(
        statefulset(&cluster, "grow").unwrap()["spec"]["replicas"],
        3
    );
    let scale: Value = serde_json::from_str(
        &kubectl(
            &cluster,
            &[
                "get",
                "dignetwork",
                "grow",
                "-n",
                NS,
                "--subresource",
                "scale",
                "-o",
                "json",
            ],
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["replicas"], 3);
    let selector = scale["status"]["selector"].as_str().unwrap_or_default();
    let pods_by_selector = kubectl(
        &cluster,
        &["get", "pods", "-n", NS, "-l", selector, "-o", "name"],
    )
    .unwrap();
    assert_eq!(
        pods_by_selector.lines().count(),
        3,
        "the scale selector {selector:?} selects the node pods:\n{pods_by_selector}"
    );

    // Grown storage: every claim grows, the pods keep running, the condition turns True.
    let before = ready_node_pods(&cluster, "grow").unwrap();
    grow(&cluster, "grow", "128Mi").unwrap();
    let claims: Vec<String> = (0..3).map(|i| format!("dig-data-grow-node-{i}")).collect();
    wait_until(
        "every claim of grow reporting 128Mi and VolumesResized True",
        STEP_TIMEOUT,
        || async {
            let capacities: Vec<String> = claims
                .iter()
                .map(|claim| claim_capacity(&cluster, claim))
                .collect::<anyhow::Result<_>>()?;
            let object = network(&cluster, "grow")?;
            let resized = condition(&object, "VolumesResized").cloned();
            if capacities.iter().all(|c| c == "128Mi")
                && resized.as_ref().is_some_and(|c| c["status"] == "True")
            {
                Ok(())
            } else {
                bail!("capacities {capacities:?}, VolumesResized {resized:?}")
            }
        },
    )
    .await
    .unwrap();
    let sts = statefulset(&cluster, "grow").unwrap();
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"], "128Mi",
        "the StatefulSet was re-created with the grown claim template"
    );
    wait_ready_nodes(&cluster, "grow", 3).await.unwrap();
    assert_eq!(
        ready_node_pods(&cluster, "grow").unwrap(),
        before,
        "the node pods were not restarted (same names and uids)"
    );

    // A DigNode's claim grows the same way, its pod running on.
    let spec = json!({
        "networkRef": {"name": "grow"},
        "storage": {"size": "64Mi", "storageClassName": REAL_NODE_STORAGE_CLASS},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
    });
    let manifest = dig_manifest(NODE_KIND, NS, "solo", spec);
    cluster
        .kubectl_with_stdin(["apply", "-f", "-"], &manifest.to_string())
        .unwrap();
    let solo_claim = "dig-data-dignode-solo-0";
    let solo_pod = wait_until(
        "DigNode solo's pod Ready on a 64Mi claim",
        STEP_TIMEOUT,
        || async {
            let pods = dignode_ready_pods(&cluster, "solo")?;
            let capacity = claim_capacity(&cluster, solo_claim)?;
            match pods.len() {
                1 if capacity == "64Mi" => Ok(pods),
                _ => bail!("pods {pods:?}, claim capacity {capacity:?}"),
            }
        },
    )
    .await
    .unwrap();
    let patch = json!({"spec": {"storage": {"size": "128Mi"}}}).to_string();
    kubectl(
        &cluster,
        &[
            "patch", "dignode", "solo", "-n", NS, "--type", "merge", "-p", &patch,
        ],
    )
    .unwrap();
    wait_until(
        "DigNode solo's claim reporting 128Mi and VolumesResized True",
        STEP_TIMEOUT,
        || async {
            let capacity = claim_capacity(&cluster, solo_claim)?;
            let object = get_object(&cluster, NS, "dignode", "solo")?.context("no DigNode solo")?;
            let resized = condition(&object, "VolumesResized").cloned();
            if capacity == "128Mi" && resized.as_ref().is_some_and(|c| c["status"] == "True") {
                Ok(())
            } else {
                bail!("capacity {capacity:?}, VolumesResized {resized:?}")
            }
        },
    )
    .await
    .unwrap();
    let after = wait_until("DigNode solo's pod Ready", STEP_TIMEOUT, || async {
        let pods = dignode_ready_pods(&cluster, "solo")?;
        if pods.len() == 1 {
            Ok(pods)
        } else {
            bail!("pods {pods:?}")
        }
    })
    .await
    .unwrap();
    assert_eq!(after, solo_pod, "the DigNode's pod was not restarted");

    // A shrink is refused by the API server.
    let refused = grow(&cluster, "grow", "64Mi").expect_err("a shrink is refused");
    assert!(
        refused.to_string().contains("storage.size cannot shrink"),
        "{refused}"
    );

    // A class without volume expansion: nothing grows, the condition says why.
    create_network(&cluster, "fixed", 1, REAL_NODE_FIXED_STORAGE_CLASS, "64Mi").unwrap();
    wait_ready_nodes(&cluster, "fixed", 1).await.unwrap();
    grow(&cluster, "fixed", "128Mi").unwrap();
    let resized = wait_until(
        "fixed reporting VolumesResized False",
        STEP_TIMEOUT,
        || async {
            let object = network(&cluster, "fixed")?;
            match condition(&object, "VolumesResized") {
                Some(c) if c["status"] == "False" => Ok(c.clone()),
                other => bail!("VolumesResized {other:?}"),
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(resized["reason"], "StorageClassDisallowsExpansion");
    let message = resized["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(REAL_NODE_FIXED_STORAGE_CLASS)
            && message.contains("dig-data-fixed-node-0"),
        "{message}"
    );
    assert_eq!(
        claim_capacity(&cluster, "dig-data-fixed-node-0").unwrap(),
        "64Mi"
    );
    let events = kubectl(
        &cluster,
        &[
            "get",
            "events",
            "-n",
            NS,
            "--field-selector",
            "reason=StorageClassDisallowsExpansion",
            "-o",
            "name",
        ],
    )
    .unwrap();
    assert!(!events.trim().is_empty(), "a Warning event was published");
}
