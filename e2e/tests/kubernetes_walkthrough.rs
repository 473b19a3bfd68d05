//! The README's Kubernetes walkthrough for real: a control plane with one real node (kubelet,
//! kube-proxy, containerd, CoreDNS), the three images built here from the Dockerfile's final
//! stages, `helm install`, `helm test`, the README's DigNetwork, replication between the nodes'
//! volumes, a node pod deleted and back with its identity, an injected pod, and the clean-up.
//! One cluster for all steps (starting one costs about a minute).
//!
//! Skipped with a message without the tools or root, unless DIG_E2E_REQUIRE_CLUSTER=1.

use std::collections::BTreeSet;

use dig_e2e::replication::write_store;
use dig_e2e::walkthrough::{
    NETWORK_NAMESPACE, OPERATOR_NAMESPACE, STEP_TIMEOUT, Walkthrough, real_node_with_images,
    visible_files, wait_replicated, wait_until,
};

const TEST: &str = "kubernetes_walkthrough";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_on_a_real_node() {
    let Some((cluster, images)) = real_node_with_images(TEST) else {
        return;
    };
    let walk = Walkthrough::new(&cluster, images).expect("the real node");

    // helm install: the operator's pods Running and Ready through their real probes.
    let install = walk.install_operator().expect("helm install and rollout");
    eprintln!("helm install -> operator Ready: {install:.1?}");
    let operators = walk.pods(OPERATOR_NAMESPACE).unwrap();
    assert!(!operators.is_empty(), "the chart runs operator pods");
    assert!(
        operators.iter().all(|p| p.ready),
        "every operator pod is Ready: {operators:?}"
    );

    // helm test: a real Pod calls the operator's Service by its DNS name.
    let test_output = walk.helm_test().expect("helm test passes");
    assert!(
        test_output
            .lines()
            .any(|line| line.starts_with("Phase:") && line.ends_with("Succeeded")),
        "{test_output}"
    );

    // The README's DigNetwork, Ready; every pod Ready through its probes.
    let apply = walk
        .apply_network()
        .expect("the README's DigNetwork becomes Ready");
    eprintln!("kubectl apply -> network Ready: {apply:.1?}");
    let registries = walk.network_pods("bootstrap").unwrap();
    let nodes = walk.network_pods("node").unwrap();
    assert_eq!(registries.len(), 2, "two registry replicas: {registries:?}");
    assert_eq!(nodes.len(), 3, "three nodes: {nodes:?}");
    wait_until("every pod of the network Ready", STEP_TIMEOUT, || async {
        let pods = walk.pods(NETWORK_NAMESPACE)?;
        match pods.iter().find(|p| !p.ready) {
            Some(pod) => anyhow::bail!("{} not Ready", pod.name),
            None => Ok(()),
        }
    })
    .await
    .unwrap();

    // Nodes registered through the registry's Service name (cluster DNS, kube-proxy); both
    // replicas answer the same /peers, each federating with the other and never with itself.
    let mut node_ids = BTreeSet::new();
    for node in &nodes {
        node_ids.insert(walk.node_peer_id(node).await.unwrap());
    }
    let views = wait_until(
        "both registry replicas list the three nodes",
        STEP_TIMEOUT,
        || async {
            let views = walk.registry_views().await?;
            if views.len() == 2 && views.values().all(|ids| *ids == node_ids) {
                Ok(views)
            } else {
                anyhow::bail!("views {views:?}, nodes {node_ids:?}")
            }
        },
    )
    .await
    .unwrap();
    eprintln!("registry views: {views:?}");
    // ... and the only registry the nodes know is that Service's name: they got there through
    // CoreDNS and kube-proxy.
    let node_config = cluster
        .kubectl([
            "get",
            "configmap,statefulset",
            "-n",
            NETWORK_NAMESPACE,
            "-o",
            "yaml",
        ])
        .unwrap();
    assert!(
        node_config.contains("http://example-bootstrap.dig.svc:3000"),
        "the nodes register at the registry's Service name:\n{node_config}"
    );
    for registry in walk.network_pods("bootstrap").unwrap() {
        let metrics = walk
            .get_text(&format!("http://{}:3000/metrics", registry.ip.unwrap()))
            .await
            .unwrap();
        let replicas = metrics
            .lines()
            .find(|line| line.starts_with("dig_bootstrap_federation_sibling_replicas{"))
            .unwrap_or_else(|| panic!("{}: no sibling replicas gauge:\n{metrics}", registry.name));
        assert!(
            replicas.ends_with(" 1"),
            "{} pulls exactly the other replica: {replicas}",
            registry.name
        );
    }

    // A store written into one node's volume appears byte-identical in the others'.
    let volumes: Vec<_> = nodes
        .iter()
        .map(|node| walk.node_volume(&node.name).unwrap())
        .collect();
    let hash = write_store(&volumes[0], "walkthrough", 1 << 20, 18).unwrap();
    let replicated = wait_replicated(&volumes[1..], "walkthrough", &hash, STEP_TIMEOUT)
        .await
        .unwrap();
    eprintln!("store written in one volume -> last node holding it: {replicated:.1?}");

    // A deleted node pod comes back with the same peer id and catches up.
    let victim = &nodes[1];
    let victim_id = walk.node_peer_id(victim).await.unwrap();
    cluster
        .kubectl([
            "delete",
            "pod",
            &victim.name,
            "-n",
            NETWORK_NAMESPACE,
            "--wait=true",
        ])
        .unwrap();
    let late_hash = write_store(&volumes[0], "while-away", 256 << 10, 19).unwrap();
    let back = wait_until(
        "the deleted node pod back and Ready",
        STEP_TIMEOUT,
        || async {
            let pod = walk
                .network_pods("node")?
                .into_iter()
                .find(|p| p.name == victim.name && p.uid != victim.uid && p.ready);
            pod.ok_or_else(|| anyhow::anyhow!("{} not back yet", victim.name))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        walk.node_peer_id(&back).await.unwrap(),
        victim_id,
        "the recreated pod keeps its identity (its volume)"
    );
    wait_replicated(
        &[walk.node_volume(&back.name).unwrap()],
        "while-away",
        &late_hash,
        STEP_TIMEOUT,
    )
    .await
    .unwrap();

    // A pod labelled for injection runs the node as a native sidecar and syncs its volume.
    let busybox = cluster.node_image("BUSYBOX_IMAGE").unwrap();
    let example = std::fs::read_to_string(
        dig_e2e::process::workspace_root().join("examples/inject-pod.yaml"),
    )
    .unwrap()
    .replace("image: busybox:1.37", &format!("image: {busybox}"));
    cluster
        .kubectl_with_stdin(["apply", "-n", NETWORK_NAMESPACE, "-f", "-"], &example)
        .unwrap();
    cluster
        .kubectl([
            "wait",
            "--for=condition=Ready",
            "pod/dig-app",
            "-n",
            NETWORK_NAMESPACE,
            "--timeout=300s",
        ])
        .unwrap();
    let init = cluster
        .kubectl([
            "get",
            "pod",
            "dig-app",
            "-n",
            NETWORK_NAMESPACE,
            "-o",
            "jsonpath={range .spec.initContainers[*]}{.name}={.restartPolicy} {end}",
        ])
        .unwrap();
    assert!(
        init.split_whitespace().any(|c| c == "dig-sidecar=Always"),
        "the node runs as a native sidecar: {init}"
    );
    let app_volume = walk.claim_dir(NETWORK_NAMESPACE, "dig-app-stores").unwrap();
    wait_replicated(
        std::slice::from_ref(&app_volume),
        "walkthrough",
        &hash,
        STEP_TIMEOUT,
    )
    .await
    .unwrap();
    wait_replicated(
        std::slice::from_ref(&app_volume),
        "while-away",
        &late_hash,
        STEP_TIMEOUT,
    )
    .await
    .unwrap();

    for memory in walk.pod_memory_of_running_pods().await.unwrap() {
        eprintln!(
            "memory {}/{}: working set {:.1} MiB, RSS {:.1} MiB",
            memory.namespace,
            memory.pod,
            memory.working_set_bytes as f64 / (1 << 20) as f64,
            memory.rss_bytes as f64 / (1 << 20) as f64
        );
    }

    // Clean-up as a user does it: the app, the network, then the chart.
    cluster
        .kubectl([
            "delete",
            "pod/dig-app",
            "pvc/dig-app-stores",
            "-n",
            NETWORK_NAMESPACE,
            "--wait=true",
        ])
        .ok();
    cluster
        .kubectl([
            "delete",
            "dignetwork",
            "example",
            "-n",
            NETWORK_NAMESPACE,
            "--wait=true",
            "--timeout=120s",
        ])
        .unwrap();
    cluster
        .helm([
            "uninstall",
            "dig-operator",
            "-n",
            OPERATOR_NAMESPACE,
            "--wait",
        ])
        .unwrap();
    let left = wait_until("nothing but the kept claims left", STEP_TIMEOUT, || async {
        let mut left = Vec::new();
        for namespace in [NETWORK_NAMESPACE, OPERATOR_NAMESPACE] {
            let names =
                cluster.kubectl(["get", "pods,services,pvc", "-n", namespace, "-o", "name"])?;
            left.extend(names.lines().map(|l| format!("{namespace}/{l}")));
        }
        // The StatefulSet's claims stay (Kubernetes' default retention): the nodes' data is
        // deleted by a person, never by an uninstall.
        let unexpected: Vec<_> = left
            .iter()
            .filter(|name| {
                !(name.starts_with("dig/persistentvolumeclaim/") && name.contains("-example-node-"))
            })
            .collect();
        if unexpected.is_empty() {
            Ok(left.clone())
        } else {
            anyhow::bail!("still there: {unexpected:?}")
        }
    })
    .await
    .unwrap();
    assert_eq!(left.len(), 3, "the three nodes' claims are kept: {left:?}");
    assert!(
        cluster
            .kubectl(["get", "crd", "dignetworks.dig.net"])
            .is_ok(),
        "the CRDs are kept (helm.sh/resource-policy: keep)"
    );
    cluster
        .kubectl([
            "delete",
            "pvc",
            "--all",
            "-n",
            NETWORK_NAMESPACE,
            "--wait=true",
        ])
        .unwrap();
    wait_until("the released volumes deleted", STEP_TIMEOUT, || async {
        let pvs = cluster.kubectl(["get", "pv", "-o", "name"])?;
        let dirs = visible_files(&walk.node.volumes_dir);
        if pvs.trim().is_empty() && dirs.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("volumes {pvs:?}, directories {dirs:?}")
        }
    })
    .await
    .unwrap();
}
