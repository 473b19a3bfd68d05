//! Operator benchmark on a real control plane (etcd, kube-apiserver, controller-manager,
//! scheduler, kwok): creates N DigNetworks at once (200 by default) and prints, per network, when
//! the operator had applied its children and written a status (the operator's share), when the
//! control plane had its pods ready, and when the network was reported Ready (the operator's lag
//! after the pods); then the reconcile count and time from the operator's histogram, and the
//! operator's resident memory (VmRSS, VmHWM). Targets: all Ready within 60 s; under 50 MB.
//!
//! `cargo build --release -p dig-operator && cargo run --release -p dig-e2e --bin bench-operator`
//! (needs the control-plane tools: `e2e/cluster/cluster.sh build`).
//!
//! kwok's fake node holds 110 pods: the bench adds fake nodes so that every pod has a place.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use dig_e2e::cluster::TestCluster;
use dig_e2e::operator::{NETWORK_KIND, OperatorOptions, OperatorProcess, install_crds, is_ready};
use dig_e2e::process::binary_path;
use serde_json::{Value, json};

const NAMESPACE: &str = "bench";
/// Pods per fake node (as `cluster.sh` declares kwok-node-0).
const PODS_PER_NODE: usize = 110;

#[derive(Debug, Parser)]
#[command(about = "Time until N DigNetworks are Ready, reconcile time and the operator's memory")]
struct Args {
    /// DigNetworks to create.
    #[arg(long, default_value_t = 200)]
    networks: usize,
    /// bootstrap.replicas of each network.
    #[arg(long, default_value_t = 1)]
    bootstrap_replicas: usize,
    /// nodes.replicas of each network.
    #[arg(long, default_value_t = 1)]
    node_replicas: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
}

fn network(index: usize, args: &Args) -> Value {
    json!({
        "apiVersion": "dig.net/v1alpha1",
        "kind": "DigNetwork",
        "metadata": {"name": format!("net-{index:03}"), "namespace": NAMESPACE},
        "spec": {
            "bootstrap": {"replicas": args.bootstrap_replicas, "image": "registry.local/dig-bootstrap:bench"},
            "nodes": {"replicas": args.node_replicas, "image": "registry.local/dig-sidecar:bench",
                      "storage": {"size": "1Gi"}}
        }
    })
}

/// Fake nodes beyond kwok-node-0, annotated so that kwok plays their kubelet.
fn extra_nodes(count: usize) -> Value {
    let items: Vec<Value> = (1..=count)
        .map(|index| {
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": format!("kwok-node-{index}"),
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {"kubernetes.io/hostname": format!("kwok-node-{index}"),
                               "kubernetes.io/os": "linux", "type": "kwok"}
                },
                "status": {
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": PODS_PER_NODE.to_string()},
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": PODS_PER_NODE.to_string()}
                }
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// When each network passed each stage, in seconds after creation. The control plane's share
/// (kube-controller-manager creating pods, the scheduler, kwok) is `children_ready`; the
/// operator's is `reconciled` (first status for the generation, children applied) and the lag from
/// `children_ready` to `ready`.
#[derive(Clone, Copy, Debug, Default)]
struct Stages {
    /// Status written for the current generation: the children were applied.
    reconciled: Option<f64>,
    /// The bootstrap Deployment and the node StatefulSet report every replica ready.
    children_ready: Option<f64>,
    /// The DigNetwork's Ready condition is True for its generation.
    ready: Option<f64>,
}

fn items(cluster: &TestCluster, kind: &str) -> anyhow::Result<Vec<Value>> {
    let list: Value =
        serde_json::from_str(&cluster.kubectl(["get", kind, "-n", NAMESPACE, "-o", "json"])?)
            .with_context(|| format!("kubectl get {kind} printed no JSON"))?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// Every replica of a Deployment or StatefulSet is ready, as its controller observed it.
fn workload_ready(object: &Value) -> bool {
    let wanted = object["spec"]["replicas"].as_i64().unwrap_or(1);
    object["status"]["observedGeneration"] == object["metadata"]["generation"]
        && object["status"]["readyReplicas"].as_i64().unwrap_or(0) >= wanted
}

/// Records the stages every network has reached now (`at` seconds after creation).
fn observe(
    cluster: &TestCluster,
    stages: &mut BTreeMap<String, Stages>,
    at: f64,
) -> anyhow::Result<()> {
    let ready_workloads: BTreeSet<String> = items(cluster, "deployments")?
        .iter()
        .chain(items(cluster, "statefulsets")?.iter())
        .filter(|w| workload_ready(w))
        .map(|w| name_of(w).to_string())
        .collect();
    for network in items(cluster, "dignetworks")? {
        let name = name_of(&network).to_string();
        let stage = stages.entry(name.clone()).or_default();
        if stage.reconciled.is_none()
            && network["status"]["observedGeneration"] == network["metadata"]["generation"]
        {
            stage.reconciled = Some(at);
        }
        if stage.children_ready.is_none()
            && ready_workloads.contains(&format!("{name}-bootstrap"))
            && ready_workloads.contains(&format!("{name}-node"))
        {
            stage.children_ready = Some(at);
        }
        if stage.ready.is_none() && is_ready(&network) {
            stage.ready = Some(at);
            // Listed before the networks: pods ready since then count from now.
            stage.children_ready.get_or_insert(at);
        }
    }
    Ok(())
}

/// `(p50, p90, max)` of `values`, in seconds; zeros when empty.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), at(1.0))
}

fn print_spread(label: &str, values: Vec<f64>) {
    let (p50, p90, max) = spread(values);
    println!("  {label:<44} p50 {p50:>5.1} s, p90 {p90:>5.1} s, max {max:>5.1} s");
}

/// kubectl sends at most 5 requests a second (client-go's default rate limit), so one
/// `kubectl create` of 200 objects takes 40 s: the networks are split over parallel kubectl
/// processes, so that they appear at once, as a user's `kubectl apply` of a few would.
const CREATE_BATCH: usize = 10;

fn create_concurrently(cluster: &TestCluster, objects: &[Value]) -> anyhow::Result<()> {
    std::thread::scope(|scope| {
        let batches: Vec<_> = objects
            .chunks(CREATE_BATCH)
            .map(|batch| {
                let list = json!({"apiVersion": "v1", "kind": "List", "items": batch}).to_string();
                scope.spawn(move || cluster.kubectl_with_stdin(["create", "-f", "-"], &list))
            })
            .collect();
        for batch in batches {
            batch
                .join()
                .map_err(|_| anyhow::anyhow!("a kubectl create thread panicked"))??;
        }
        Ok(())
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let operator_binary = binary_path("dig-operator")?;
    println!("operator binary: {}", operator_binary.display());
    if operator_binary
        .components()
        .any(|c| c.as_os_str() == "debug")
    {
        println!(
            "note: a debug build of dig-operator; `cargo build --release -p dig-operator` first for real figures"
        );
    }
    let cluster = TestCluster::start("bench-operator")?;
    install_crds(&cluster)?;
    cluster.kubectl(["create", "namespace", NAMESPACE])?;
    let pods = args.networks * (args.bootstrap_replicas + args.node_replicas);
    let extra = pods.div_ceil(PODS_PER_NODE).saturating_sub(1);
    if extra > 0 {
        cluster.kubectl_with_stdin(["apply", "-f", "-"], &extra_nodes(extra).to_string())?;
        cluster.kubectl([
            "wait",
            "--for=condition=Ready",
            "nodes",
            "--all",
            "--timeout=60s",
        ])?;
    }
    println!(
        "{} networks, {} bootstrap + {} node replicas each ({pods} pods on {} fake nodes)",
        args.networks,
        args.bootstrap_replicas,
        args.node_replicas,
        extra + 1
    );

    let operator = OperatorProcess::start_for(&cluster, OperatorOptions::named("bench")).await?;
    let idle = operator.memory()?;
    println!(
        "operator idle: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        mib(idle.resident_kib),
        mib(idle.peak_resident_kib)
    );

    let networks: Vec<Value> = (0..args.networks).map(|i| network(i, &args)).collect();
    let started = Instant::now();
    create_concurrently(&cluster, &networks)?;
    let created = started.elapsed();
    println!(
        "created {} DigNetworks in {:.1} s",
        args.networks,
        created.as_secs_f64()
    );

    let deadline = started + Duration::from_secs(args.timeout_seconds);
    let mut stages: BTreeMap<String, Stages> = BTreeMap::new();
    let mut last_report = Instant::now();
    let all_ready = loop {
        observe(&cluster, &mut stages, started.elapsed().as_secs_f64())?;
        let count = |stage: fn(&Stages) -> Option<f64>| {
            stages.values().filter(|s| stage(s).is_some()).count()
        };
        let (reconciled, children_ready, ready) = (
            count(|s| s.reconciled),
            count(|s| s.children_ready),
            count(|s| s.ready),
        );
        if ready == args.networks {
            break started.elapsed();
        }
        if Instant::now() >= deadline {
            bail!(
                "after {} s only {ready} of {} networks are Ready ({reconciled} reconciled, {children_ready} with ready pods)",
                args.timeout_seconds,
                args.networks
            );
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            println!(
                "  {:>5.1} s: {reconciled} reconciled, {children_ready} with ready pods, {ready} Ready",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        // Each observation is three kubectl lists; more often would load the shared API server.
        tokio::time::sleep(Duration::from_millis(1000)).await;
    };
    let memory = operator.memory()?;
    let metrics = operator.metrics().await?;
    let (count, sum) = metrics.reconcile_duration(NETWORK_KIND);
    let bound = |q| {
        metrics
            .reconcile_duration_bucket_bound(NETWORK_KIND, q)
            .map_or("?".to_string(), |b| format!("<= {:.0} ms", b * 1000.0))
    };

    let of =
        |stage: fn(&Stages) -> Option<f64>| stages.values().filter_map(stage).collect::<Vec<_>>();
    println!(
        "all {} Ready {:.1} s after creation (target: 60 s); per network, seconds after creation:",
        args.networks,
        all_ready.as_secs_f64()
    );
    print_spread(
        "reconciled (children applied, status written)",
        of(|s| s.reconciled),
    );
    print_spread("pods ready (control plane)", of(|s| s.children_ready));
    print_spread("Ready reported", of(|s| s.ready));
    print_spread(
        "operator lag from pods ready to Ready",
        of(|s| Some(s.ready? - s.children_ready?)),
    );
    println!(
        "reconciles: {count:.0} ({:.1} per network), mean {:.1} ms, p50 {}, p90 {}, p99 {}; errors {:.0}",
        count / args.networks as f64,
        if count > 0.0 {
            sum / count * 1000.0
        } else {
            0.0
        },
        bound(0.5),
        bound(0.9),
        bound(0.99),
        metrics.reconcile_errors(NETWORK_KIND, None)
    );
    println!(
        "operator memory: VmRSS {:.1} MiB, VmHWM {:.1} MiB (target: < 50 MB)",
        mib(memory.resident_kib),
        mib(memory.peak_resident_kib)
    );
    Ok(())
}
