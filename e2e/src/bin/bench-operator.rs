//! Operator benchmark on a real control plane (etcd, kube-apiserver, controller-manager,
//! scheduler, kwok): creates N DigNetworks at once (200 by default) and prints the time until
//! the operator has reconciled all of them (status written for their generation) and until all
//! are Ready, the reconcile time per network from the operator's histogram, and the operator's
//! resident memory (VmRSS, VmHWM). Targets: all Ready within 60 s; under 50 MB resident.
//!
//! `cargo build --release -p dig-operator && cargo run --release -p dig-e2e --bin bench-operator`
//! (needs the control-plane tools: `e2e/cluster/cluster.sh build`).
//!
//! kwok's fake node holds 110 pods: the bench adds fake nodes so that every pod has a place.

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

/// How many networks have been reconciled for their generation, and how many are Ready.
fn progress(cluster: &TestCluster) -> anyhow::Result<(usize, usize)> {
    let list: Value = serde_json::from_str(&cluster.kubectl([
        "get",
        "dignetworks",
        "-n",
        NAMESPACE,
        "-o",
        "json",
    ])?)
    .context("kubectl get dignetworks printed no JSON")?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let reconciled = items
        .iter()
        .filter(|n| n["status"]["observedGeneration"] == n["metadata"]["generation"])
        .count();
    let ready = items.iter().filter(|n| is_ready(n)).count();
    Ok((reconciled, ready))
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

    let list = json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": (0..args.networks).map(|i| network(i, &args)).collect::<Vec<_>>()
    });
    let started = Instant::now();
    cluster.kubectl_with_stdin(["create", "-f", "-"], &list.to_string())?;
    let created = started.elapsed();
    println!(
        "created {} DigNetworks in {:.1} s",
        args.networks,
        created.as_secs_f64()
    );

    let deadline = started + Duration::from_secs(args.timeout_seconds);
    let mut all_reconciled = None;
    let mut last_report = Instant::now();
    let all_ready = loop {
        let (reconciled, ready) = progress(&cluster)?;
        if all_reconciled.is_none() && reconciled == args.networks {
            all_reconciled = Some(started.elapsed());
        }
        if ready == args.networks {
            break started.elapsed();
        }
        if Instant::now() >= deadline {
            bail!(
                "after {} s only {ready} of {} networks are Ready ({reconciled} reconciled)",
                args.timeout_seconds,
                args.networks
            );
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            println!(
                "  {:>5.1} s: {reconciled} reconciled, {ready} Ready",
                started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let memory = operator.memory()?;
    let metrics = operator.metrics().await?;
    let (count, sum) = metrics.reconcile_duration(NETWORK_KIND);
    let bound = |q| {
        metrics
            .reconcile_duration_bucket_bound(NETWORK_KIND, q)
            .map_or("?".to_string(), |b| format!("<= {:.0} ms", b * 1000.0))
    };

    println!(
        "all {} reconciled (status for their generation) {:.1} s after creation",
        args.networks,
        all_reconciled.unwrap_or(all_ready).as_secs_f64()
    );
    println!(
        "all {} Ready {:.1} s after creation (target: 60 s)",
        args.networks,
        all_ready.as_secs_f64()
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
