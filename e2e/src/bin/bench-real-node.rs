//! The README's Kubernetes walkthrough on a real node, timed: `helm install` to the operator
//! Ready, `kubectl apply` of the README's DigNetwork to the network Ready, a store written into one
//! node's volume to the last node holding it, and every pod's memory (working set, from the
//! kubelet). The images are built from the binaries of `--binaries` (default: target/release, so
//! run `cargo build --release --bins` first) with the Dockerfile's final stages.
//!
//! cargo build --release --bins && cargo run --release -p dig-e2e --bin bench-real-node

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use dig_e2e::cluster::TestCluster;
use dig_e2e::images::Images;
use dig_e2e::replication::write_store;
use dig_e2e::walkthrough::{STEP_TIMEOUT, Walkthrough, wait_replicated};

#[derive(Parser)]
struct Args {
    /// Directory of dig-bootstrap, dig-sidecar and dig-operator.
    #[arg(long)]
    binaries: Option<PathBuf>,
    /// Size of the store written into the first node's volume, in MiB.
    #[arg(long, default_value_t = 16)]
    store_mib: u64,
}

fn secs(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binaries = args
        .binaries
        .unwrap_or_else(|| dig_e2e::process::target_dir().join("release"));
    let images = Images::build(&binaries)
        .with_context(|| format!("building the images from {binaries:?}"))?;
    println!(
        "images: {}, {}, {}",
        images.operator, images.bootstrap, images.sidecar
    );
    let started = std::time::Instant::now();
    let cluster = TestCluster::start_real_node("bench-real-node", Some(&images.dir))?;
    println!(
        "control plane and real node up with the images: {}",
        secs(started.elapsed())
    );
    let walk = Walkthrough::new(&cluster, images)?;

    let install = walk.install_operator()?;
    let apply = walk.apply_network()?;
    let nodes = walk.network_pods("node")?;
    let volumes = nodes
        .iter()
        .map(|node| walk.node_volume(&node.name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let size = args.store_mib << 20;
    let hash = write_store(&volumes[0], "bench", size, 1)?;
    let replicated = wait_replicated(&volumes[1..], "bench", &hash, STEP_TIMEOUT).await?;

    println!();
    println!("| step | time |");
    println!("|---|---|");
    println!(
        "| `helm install` -> operator Deployment rolled out, pods Ready | {} |",
        secs(install)
    );
    println!(
        "| `kubectl apply` of the README's DigNetwork -> Ready condition | {} |",
        secs(apply)
    );
    println!(
        "| {} MiB store written in {}'s volume -> the last of {} other nodes holds it | {} |",
        args.store_mib,
        nodes[0].name,
        nodes.len() - 1,
        secs(replicated)
    );
    println!();
    println!("| pod | working set | RSS |");
    println!("|---|---|---|");
    let mut memory = walk.pod_memory_of_running_pods().await?;
    memory.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    for pod in memory {
        println!(
            "| {}/{} | {:.1} MiB | {:.1} MiB |",
            pod.namespace,
            pod.pod,
            mib(pod.working_set_bytes),
            mib(pod.rss_bytes)
        );
    }
    Ok(())
}
