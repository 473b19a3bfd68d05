//! Replication benchmark with real `dig-sidecar` processes on loopback. Prints:
//! - the time for a 1 GiB store to reach 1 other node (2-node network) and 2 other nodes
//!   (3-node network), measured from the moment the file appears in the first node's folder;
//! - the time for 5,000 stores of 1 KiB to reach 2 other nodes;
//! - the peak resident memory (VmHWM) of the receiving nodes;
//! - a breakdown of each transfer: when the source had hashed the file, and when each receiver
//!   learnt of it, verified its first and last byte, and showed it in its data folder.
//!
//!
//! With `--compare-syncthing` it runs instead the side-by-side table of `compare.rs` (DIG and
//! Syncthing on the same workloads), also on a loop-mounted XFS with `--xfs`.
//!
//! Build the binaries first: `cargo build --release -p dig-sidecar -p dig-bootstrap`, then
//! `cargo run --release -p dig-e2e --bin bench-replication`.

mod compare;
mod setup;

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Parser;
use dig_e2e::{
    loop_fs::{LoopXfs, file_system_of},
    network::{LocalNetwork, SidecarNode, clock_ticks_per_second, cpu_ticks},
    replication::{
        metric_sum, node_has, peak_resident_bytes, small_store_content, stores, write_store,
    },
    syncthing,
};
use setup::{Args, TIMEOUT, start_network};

/// When one node passed each step of a transfer, measured from the moment the file appeared in
/// the source's folder.
#[derive(Clone, Copy, Default)]
struct Milestones {
    /// The node lists the store at the expected hash (source: hashed and indexed; receiver: the
    /// announcement arrived).
    known: Option<Duration>,
    /// The receiver verified its first bytes (progress above 0).
    first_byte: Option<Duration>,
    /// The receiver verified its last byte (progress 1.0: only fsync and rename are left).
    last_byte: Option<Duration>,
    /// The file is in the receiver's data folder and reported synced.
    visible: Option<Duration>,
}

impl Milestones {
    fn update(&mut self, state: &StoreView, at: Duration) {
        if self.known.is_none() {
            self.known = Some(at);
        }
        match state {
            StoreView::Downloading(progress) if *progress > 0.0 => {
                self.first_byte.get_or_insert(at);
                if *progress >= 1.0 {
                    self.last_byte.get_or_insert(at);
                }
            }
            StoreView::Synced => {
                self.first_byte.get_or_insert(at);
                self.last_byte.get_or_insert(at);
                self.visible.get_or_insert(at);
            }
            StoreView::Downloading(_) | StoreView::Waiting => {}
        }
    }
}

enum StoreView {
    Waiting,
    Downloading(f64),
    Synced,
}

/// What a node's `/stores` says about `name` at `hash` (`None`: not known at that hash yet).
async fn store_view(node: &SidecarNode, name: &str, hash: &str) -> Option<StoreView> {
    let body = node.get_json("/stores").await.ok()?;
    let store = body["stores"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name && s["hash"] == hash)?;
    Some(match store["state"].as_str() {
        Some("synced") => StoreView::Synced,
        Some("downloading") => StoreView::Downloading(store["progress"].as_f64().unwrap_or(0.0)),
        _ => StoreView::Waiting,
    })
}

fn seconds(at: Option<Duration>) -> String {
    at.map_or_else(|| "-".to_string(), |d| format!("{:.2}", d.as_secs_f64()))
}

/// Polls every node's `/stores` every 10 ms until every receiver holds `name` at `hash`.
/// Returns the source's milestones and each receiver's.
async fn transfer_milestones(
    source: &SidecarNode,
    receivers: &[&SidecarNode],
    name: &str,
    hash: &str,
    started: Instant,
) -> anyhow::Result<(Milestones, Vec<Milestones>)> {
    let mut detected = Milestones::default();
    let mut arrived = vec![Milestones::default(); receivers.len()];
    while arrived.iter().any(|m| m.visible.is_none()) {
        if detected.visible.is_none()
            && let Some(view) = store_view(source, name, hash).await
        {
            detected.update(&view, started.elapsed());
        }
        for (i, node) in receivers.iter().enumerate() {
            if arrived[i].visible.is_none()
                && let Some(view) = store_view(node, name, hash).await
            {
                arrived[i].update(&view, started.elapsed());
            }
        }
        if started.elapsed() > TIMEOUT {
            bail!("store {name} did not arrive within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((detected, arrived))
}

async fn large_file(
    network: &LocalNetwork,
    size: u64,
    label: &str,
    print_logs: bool,
) -> anyhow::Result<()> {
    let source = &network.nodes[0];
    let hash = write_store(&source.spec.data_dir, "large", size, 1)?;
    let cpu_before = network
        .nodes
        .iter()
        .map(|n| cpu_ticks(n.process.pid()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let receivers: Vec<_> = network.nodes[1..].iter().collect();
    let (detected, arrived) =
        transfer_milestones(source, &receivers, "large", &hash, started).await?;
    let ticks = clock_ticks_per_second() as f64;
    for (node, before) in network.nodes.iter().zip(cpu_before) {
        let used = cpu_ticks(node.process.pid())?.saturating_sub(before);
        println!(
            "{label}: CPU time of {} during the transfer: {:.2} s",
            node.spec.name,
            used as f64 / ticks
        );
    }
    println!(
        "{label}: source hashed and indexed the store after {} s",
        seconds(detected.known)
    );
    for (i, m) in arrived.iter().enumerate() {
        println!(
            "{label}: node {}: announced {} s, first byte {} s, last byte {} s, visible {} s",
            i + 1,
            seconds(m.known),
            seconds(m.first_byte),
            seconds(m.last_byte),
            seconds(m.visible)
        );
    }
    let last = arrived
        .iter()
        .filter_map(|m| m.visible)
        .max()
        .unwrap_or_default();
    println!(
        "{label}: {} MiB to {} other node(s): {:.2} s ({:.0} MiB/s per receiver)",
        size >> 20,
        receivers.len(),
        last.as_secs_f64(),
        (size >> 20) as f64 / last.as_secs_f64()
    );
    // Streams ride any of a peer's connections, and QUIC costs more CPU per byte than TCP: a run
    // whose transfer rode QUIC is not comparable with one that rode TCP.
    for node in &network.nodes {
        let peers = node.get_json("/peers").await?;
        let transports: Vec<String> = peers["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|peer| peer["addresses"].as_array().into_iter().flatten())
            .filter_map(|address| address.as_str())
            .map(|address| {
                if address.contains("/quic") {
                    "quic"
                } else {
                    "tcp"
                }
                .to_owned()
            })
            .collect();
        println!(
            "{label}: connections of {}: {}",
            node.spec.name,
            transports.join(", ")
        );
    }
    for node in &network.nodes {
        let peak = peak_resident_bytes(node.process.pid())?;
        println!(
            "{label}: peak resident memory (VmHWM) of {}: {:.1} MB",
            node.spec.name,
            peak as f64 / 1e6
        );
    }
    if print_logs {
        for node in &network.nodes {
            println!("----- {label}: log of {}", node.spec.name);
            print!("{}", node.process.output());
        }
    }
    Ok(())
}

async fn small_files(
    network: &LocalNetwork,
    count: usize,
    bytes: usize,
    print_logs: bool,
) -> anyhow::Result<()> {
    let source = &network.nodes[0];
    let staging = source.spec.data_dir.join(".staging");
    std::fs::create_dir_all(&staging)?;
    let mut expected = BTreeMap::new();
    for i in 0..count {
        let content = small_store_content(i, bytes);
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
    let mut indexed: Option<Duration> = None;
    let mut times: Vec<Option<Duration>> = vec![None; receivers.len()];
    // When each receiver held its first store and half of them: tells a slow start (announcing)
    // from a slow stream of downloads and installs.
    let mut first: Vec<Option<Duration>> = vec![None; receivers.len()];
    let mut half: Vec<Option<Duration>> = vec![None; receivers.len()];
    while times.iter().any(Option::is_none) {
        if indexed.is_none() && metric_sum(&source.metrics().await?, "dig_sync_stores") >= want {
            indexed = Some(started.elapsed());
        }
        for (i, node) in receivers.iter().enumerate() {
            if times[i].is_some() {
                continue;
            }
            let held = metric_sum(&node.metrics().await?, "dig_sync_stores") - already;
            let now = Some(started.elapsed());
            if first[i].is_none() && held >= 1.0 {
                first[i] = now;
            }
            if half[i].is_none() && held >= (count / 2) as f64 {
                half[i] = now;
            }
            if held >= count as f64 {
                times[i] = now;
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
    println!(
        "  source hashed and indexed every store after {} s",
        seconds(indexed)
    );
    for (i, node) in receivers.iter().enumerate() {
        println!(
            "  {}: first store after {} s, half after {} s",
            node.spec.name,
            seconds(first[i]),
            seconds(half[i])
        );
    }
    for node in &receivers {
        let held = stores(node)
            .await?
            .values()
            .filter(|(state, _)| state == "synced")
            .count();
        println!("  {} holds {held} stores", node.spec.name);
    }
    if print_logs {
        for node in &network.nodes {
            println!("----- small stores: log of {}", node.spec.name);
            print!("{}", node.process.output());
        }
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

    if args.compare_syncthing {
        return side_by_side(&args, &root).await;
    }
    {
        let network = start_network(&root.join("two"), "bench-repl-2", 2, &args).await?;
        large_file(&network, size, "2 nodes", args.print_logs).await?;
    }
    {
        let network = start_network(&root.join("three"), "bench-repl-3", 3, &args).await?;
        large_file(&network, size, "3 nodes", args.print_logs).await?;
        small_files(
            &network,
            args.small_count,
            args.small_bytes,
            args.print_logs,
        )
        .await?;
    }
    Ok(())
}

/// The side-by-side tables: on the work dir's file system, then (with `--xfs`) on a loop-mounted
/// XFS, which is unmounted and deleted whatever happens.
async fn side_by_side(args: &Args, root: &Path) -> anyhow::Result<()> {
    let syncthing = syncthing::binary().filter(|_| !args.without_syncthing);
    if syncthing.is_none() && !args.without_syncthing {
        println!(
            "syncthing not found on the PATH: skipping its column (install it: sudo apt-get install syncthing)"
        );
    }
    let kind = file_system_of(root).unwrap_or_else(|| "unknown file system".into());
    let heading = format!("{kind}: {} (3 nodes each, 127.0.0.1)", root.display());
    compare::run(args, syncthing.as_deref(), &root.join("work-dir"), &heading).await?;
    if args.xfs {
        if !LoopXfs::available() {
            println!("--xfs needs root, mkfs.xfs and losetup: skipping the XFS table");
            return Ok(());
        }
        // Sparse: room for three replicas of the large store, each with an old and a new copy.
        let image_size = (8 << 30) + 8 * (args.large_mib << 20);
        let fs = LoopXfs::mount(&root.join("xfs.img"), &root.join("xfs"), image_size)?;
        let heading = format!(
            "xfs with reflinks, loop-mounted at {} (3 nodes each, 127.0.0.1)",
            fs.path().display()
        );
        compare::run(args, syncthing.as_deref(), fs.path(), &heading).await?;
    }
    Ok(())
}
