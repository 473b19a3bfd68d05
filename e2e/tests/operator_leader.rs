//! Two `dig-operator` replicas with leader election on a real control plane: one holds the
//! coordination.k8s.io Lease and reconciles, the other reconciles nothing; when the leader is
//! killed (SIGKILL, so the Lease is not released) the other takes over once the Lease expires and
//! reconciles a new network.
//!
//! Skipped with a message when the control-plane tools are not built, unless
//! DIG_E2E_REQUIRE_CLUSTER=1 (set by e2e/test-all.sh).

use std::time::{Duration, Instant};

use dig_e2e::cluster::TestCluster;
use dig_e2e::operator::{NETWORK_KIND, OperatorOptions, OperatorProcess, get_object, install_crds};
use dig_e2e::wait::{CLUSTER_WAIT, eventually};
use serde_json::json;

const NAMESPACE: &str = "apps";
const LEASE_NAMESPACE: &str = "dig-system";
const LEASE: &str = "dig-operator-leader";
/// The operator's Lease duration (leader.rs `LeaseConfig::new`).
const LEASE_DURATION: Duration = Duration::from_secs(15);

fn create_network(cluster: &TestCluster, name: &str) {
    let manifest = json!({
        "apiVersion": "dig.net/v1alpha1",
        "kind": "DigNetwork",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"bootstrap": {"replicas": 1}, "nodes": {"replicas": 1}}
    });
    cluster
        .kubectl_with_stdin(["apply", "-f", "-"], &manifest.to_string())
        .unwrap_or_else(|e| panic!("create DigNetwork {name}: {e}"));
}

fn wait_ready(cluster: &TestCluster, name: &str) {
    cluster
        .kubectl([
            "wait",
            "--for=condition=Ready",
            &format!("dignetwork/{name}"),
            "-n",
            NAMESPACE,
            &format!("--timeout={}s", CLUSTER_WAIT.as_secs()),
        ])
        .unwrap_or_else(|e| panic!("DigNetwork {name} is not Ready: {e}"));
}

fn lease_holder(cluster: &TestCluster) -> Option<String> {
    get_object(cluster, LEASE_NAMESPACE, "lease", LEASE)
        .unwrap_or_else(|e| panic!("{e}"))
        .and_then(|lease| lease["spec"]["holderIdentity"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over() {
    let Some(cluster) = TestCluster::start_or_skip("operator-leader") else {
        return;
    };
    install_crds(&cluster).expect("apply the CRDs");
    for namespace in [NAMESPACE, LEASE_NAMESPACE] {
        cluster
            .kubectl(["create", "namespace", namespace])
            .expect("create namespace");
    }
    let options = |name: &str| OperatorOptions {
        lease_namespace: Some(LEASE_NAMESPACE.to_string()),
        ..OperatorOptions::named(name)
    };
    let (first, second) = tokio::join!(
        OperatorProcess::start_for(&cluster, options("replica-a")),
        OperatorProcess::start_for(&cluster, options("replica-b")),
    );
    let mut replicas = [
        first.expect("start replica-a"),
        second.expect("start replica-b"),
    ];

    let holder = eventually("a replica holds the Lease", CLUSTER_WAIT, || {
        let holder = lease_holder(&cluster);
        async move { holder.ok_or("no holder yet".to_string()) }
    })
    .await;
    let leader = replicas
        .iter()
        .position(|r| r.name() == holder)
        .unwrap_or_else(|| panic!("unknown Lease holder {holder}"));
    let follower = 1 - leader;

    create_network(&cluster, "first");
    wait_ready(&cluster, "first");
    let leader_metrics = replicas[leader].metrics().await.expect("leader metrics");
    let follower_metrics = replicas[follower]
        .metrics()
        .await
        .expect("follower metrics");
    assert!(
        leader_metrics.reconciles(NETWORK_KIND) >= 1.0,
        "{}",
        leader_metrics.text()
    );
    assert_eq!(
        follower_metrics.reconciles(NETWORK_KIND),
        0.0,
        "the follower reconciled:\n{}",
        follower_metrics.text()
    );
    assert_eq!(leader_metrics.value("dig_operator_leader", &[]), Some(1.0));
    assert_eq!(
        follower_metrics.value("dig_operator_leader", &[]),
        Some(0.0)
    );
    assert_eq!(lease_holder(&cluster).as_deref(), Some(holder.as_str()));

    // SIGKILL: the Lease stays with the dead leader until it expires.
    replicas[leader].kill();
    let killed = Instant::now();
    create_network(&cluster, "second");
    let new_holder = eventually("the follower takes the Lease", CLUSTER_WAIT, || {
        let holder = lease_holder(&cluster);
        let expected = replicas[follower].name().to_string();
        async move {
            match holder {
                Some(holder) if holder == expected => Ok(holder),
                other => Err(format!("holder {other:?}")),
            }
        }
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!(
        "{new_holder} took the Lease {:.1} s after the leader was killed",
        takeover.as_secs_f64()
    );
    // Within one lease duration after the last renewal, plus the follower's retry period and
    // the slack of a loaded machine.
    assert!(
        takeover <= LEASE_DURATION + Duration::from_secs(10),
        "takeover took {takeover:?}"
    );
    wait_ready(&cluster, "second");
    let metrics = replicas[follower]
        .metrics()
        .await
        .expect("new leader metrics");
    assert!(
        metrics.reconciles(NETWORK_KIND) >= 1.0,
        "{}",
        metrics.text()
    );
    assert_eq!(metrics.value("dig_operator_leader", &[]), Some(1.0));
    let second = get_object(&cluster, NAMESPACE, "deployment", "second-bootstrap")
        .expect("get second-bootstrap")
        .expect("the new leader built the second network");
    assert_eq!(
        second["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "dig-operator"
    );
}
