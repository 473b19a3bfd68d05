//! Replication benchmark with real `dig-sidecar` processes on loopback. Prints:
//! - the time for a 1 GiB store to reach 1 other node (2-node network) and 2 other nodes
//!   (3-node network), measured from the moment the file appears in the first node's folder;
//! - the time for 5,000 stores of 1 KiB to reach 2 other nodes;
//! - the peak resident memory (VmHWM) of the receiving nodes.
//!
//! Build the binaries first: `cargo build --release -p dig-sidecar -p dig-bootstrap`, then
//! `cargo run --release -p dig-e2e --bin bench-replication`.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use dig_e2e::{
    network::{LocalNetwork, SidecarNode},
    replication::{metric_sum, node_has, peak_resident_bytes, stores, write_store},
};

#[derive(Parser)]
#[command(about = "Replication benchmark: real dig-sidecar processes on loopback")]
struct Args {
    /// Size of the large store in MiB.
    #[arg(long, default_value_t = 1024)]
    large_mib: u64,
    /// Number of small stores.
    #[arg(long, default_value_t = 5000)]
    small_count: usize,
    /// Size of each small store in bytes.
    #[arg(long, default_value_t = 1024)]
    small_bytes: usize,
    /// Folder for the nodes' data (default: a temporary folder).
    #[arg(long)]
    work_dir: Option<std::path::PathBuf>,
    /// Extra `dig-sidecar run` arguments for every node (repeatable).
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    node_args: Vec<String>,
}

const TIMEOUT: Duration = Duration::from_secs(600);

async fn start_network(
    root: &Path,
    id: &str,
    count: usize,
    extra: &[String],
) -> anyhow::Result<LocalNetwork> {
    let mut network = LocalNetwork::start(root, id, 0).await?;
    for index in 0..count {
        let mut spec = network.node_spec(index);
        spec.log = "warn".into();
        for arg in extra {
            spec = spec.arg(arg.clone());
        }
        network.nodes.push(SidecarNode::start(spec).await?);
    }
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await?;
    Ok(network)
}

/// Polls the receivers every 20 ms; returns when each one first had every expected store.
async fn arrival_times(
    receivers: &[&SidecarNode],
    expected: &BTreeMap<String, String>,
    started: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut arrived: Vec<Option<Duration>> = vec![None; receivers.len()];
    while arrived.iter().any(Option::is_none) {
        for (i, node) in receivers.iter().enumerate() {
            if arrived[i].is_none() && node_has(node, expected).await {
                arrived[i] = Some(started.elapsed());
            }
        }
        if started.elapsed() > TIMEOUT {
            bail!("stores did not arrive within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(arrived.into_iter().flatten().collect())
}

async fn large_file(network: &LocalNetwork, size: u64, label: &str) -> anyhow::Result<()> {
    let source = &network.nodes[0];
    let hash = write_store(&source.spec.data_dir, "large", size, 1)?;
    let started = Instant::now();
    let expected = BTreeMap::from([("large".to_string(), hash)]);
    let receivers: Vec<_> = network.nodes[1..].iter().collect();
    let times = arrival_times(&receivers, &expected, started).await?;
    for (i, time) in times.iter().enumerate() {
        println!(
            "{label}: {} MiB reached node {} after {:.2} s",
            size >> 20,
            i + 1,
            time.as_secs_f64()
        );
    }
    let last = times.iter().max().copied().unwrap_or_default();
    println!(
        "{label}: {} MiB to {} other node(s): {:.2} s ({:.0} MiB/s per receiver)",
        size >> 20,
        receivers.len(),
        last.as_secs_f64(),
        (size >> 20) as f64 / last.as_secs_f64()
    );
    for node in &network.nodes {
        let peak = peak_resident_bytes(node.process.pid())?;
        println!(
            "{label}: peak resident memory (VmHWM) of {}: {:.1} MB",
            node.spec.name,
            peak as f64 / 1e6
        );
    }
    Ok(())
}

async fn small_files(network: &LocalNetwork, count: usize, bytes: usize) -> anyhow::Result<()> {
    let source = &network.nodes[0];
    let staging = source.spec.data_dir.join(".staging");
    std::fs::create_dir_all(&staging)?;
    let mut expected = BTreeMap::new();
    for i in 0..count {
        let mut content = vec![0u8; bytes];
        let tag = format!("small store {i}\n");
        for (j, b) in content.iter_mut().enumerate() {
            *b = tag.as_bytes()[j % tag.len()];
        }
        let name = format!("small-{i:05}");
        std::fs::write(staging.join(format!("{name}.dig")), &content)?;
        expected.insert(name, blake3::hash(&content).to_hex().to_string());
    }
    let started = Instant::now();
    for name in expected.keys() {
        let file = format!("{name}.dig");
        std::fs::rename(staging.join(&file), source.spec.data_dir.join(&file))
            .with_context(|| format!("moving {file} into the data folder"))?;
    }
    let receivers: Vec<_> = network.nodes[1..].iter().collect();
    // Polling the small /metrics (the dig_sync_stores gauge) instead of a 5,000-entry /stores
    // keeps the measurement from loading the nodes; hashes are checked once at the end.
    let already = metric_sum(&receivers[0].metrics().await?, "dig_sync_stores");
    let want = already + count as f64;
    let mut times: Vec<Option<Duration>> = vec![None; receivers.len()];
    while times.iter().any(Option::is_none) {
        for (i, node) in receivers.iter().enumerate() {
            if times[i].is_none() && metric_sum(&node.metrics().await?, "dig_sync_stores") >= want {
                times[i] = Some(started.elapsed());
            }
        }
        if started.elapsed() > TIMEOUT {
            bail!("small stores did not arrive within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let times: Vec<Duration> = times.into_iter().flatten().collect();
    for node in &receivers {
        if !node_has(node, &expected).await {
            bail!(
                "{} does not hold every small store with the right hash",
                node.spec.name
            );
        }
    }
    let last = times.iter().max().copied().unwrap_or_default();
    println!(
        "{count} stores of {bytes} bytes to {} other node(s): {:.2} s (first node {:.2} s)",
        receivers.len(),
        last.as_secs_f64(),
        times
            .iter()
            .min()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
    );
    for node in &receivers {
        let held = stores(node)
            .await?
            .values()
            .filter(|(state, _)| state == "synced")
            .count();
        println!("  {} holds {held} stores", node.spec.name);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let root = args
        .work_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let size = args.large_mib << 20;

    {
        let network = start_network(&root.join("two"), "bench-repl-2", 2, &args.node_args).await?;
        large_file(&network, size, "2 nodes").await?;
    }
    {
        let network =
            start_network(&root.join("three"), "bench-repl-3", 3, &args.node_args).await?;
        large_file(&network, size, "3 nodes").await?;
        small_files(&network, args.small_count, args.small_bytes).await?;
    }
    Ok(())
}
