//! A real local DIG network on this machine: one `dig-bootstrap` and N `dig-sidecar` nodes on
//! loopback (registry and DHT discovery, mDNS off), each with its own data folder. Prints a live
//! table of what each node sees, drops a demo `.dig` file into the first node and reports when
//! every node holds it. Ctrl-C stops every process it started (by PID).
//!
//! `cargo run --release -p dig-e2e --bin dig-local-network -- --help`

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use clap::Parser;
use dig_e2e::network::{LocalNetwork, SidecarNode};

#[derive(Debug, Parser)]
#[command(about = "Run a local DIG network: one bootstrap registry and N nodes on loopback")]
struct Args {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=200))]
    nodes: u16,
    /// Network id.
    #[arg(long, default_value = "local")]
    network: String,
    /// Run folder (node data folders go under it) [default: a new folder under the temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Do not drop a demo .dig file into the first node.
    #[arg(long)]
    no_demo: bool,
    /// Size of the demo file in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    demo_size: usize,
    /// Do not run `cargo build --release --bins` for dig-sidecar and dig-bootstrap first.
    #[arg(long)]
    no_build: bool,
}

fn build_binaries() -> anyhow::Result<()> {
    let root = dig_e2e::process::workspace_root();
    let profile = if cfg!(debug_assertions) {
        None
    } else {
        Some("--release")
    };
    eprintln!(
        "building dig-sidecar and dig-bootstrap ({})",
        profile.unwrap_or("debug")
    );
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&root)
            .args([
                "build",
                "--bins",
                "-p",
                "dig-sidecar",
                "-p",
                "dig-bootstrap",
            ])
            .args(profile)
            .status()
            .context("running cargo build (use --no-build when the binaries are already built)")?;
    anyhow::ensure!(status.success(), "cargo build failed: {status}");
    Ok(())
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Row {
    peers: u64,
    discovered: u64,
    stores: u64,
    ready: bool,
}

async fn row(node: &SidecarNode) -> Option<Row> {
    let connections = node.get_json("/connections").await.ok()?;
    let stores = node.get_json("/stores").await.ok()?;
    let ready = reqwest::get(node.url("/ready"))
        .await
        .ok()?
        .status()
        .is_success();
    Some(Row {
        peers: connections["peerCount"].as_u64().unwrap_or(0),
        discovered: connections["discoveredPeerCount"].as_u64().unwrap_or(0),
        stores: stores["count"].as_u64().unwrap_or(0),
        ready,
    })
}

/// Writes a file of pseudo-random bytes next to the data folder and renames it in, so the node
/// never sees a partial file.
fn write_demo_file(
    root: &Path,
    data_dir: &Path,
    name: &str,
    size: usize,
) -> anyhow::Result<PathBuf> {
    let tmp = root.join(format!("{name}.partial"));
    let mut file = std::fs::File::create(&tmp)?;
    let mut state = unix_secs() | 1;
    let mut block = vec![0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        for byte in block.iter_mut() {
            // xorshift: cheap bytes that do not compress.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        let n = left.min(block.len());
        file.write_all(&block[..n])?;
        left -= n;
    }
    file.sync_all()?;
    let target = data_dir.join(format!("{name}.dig"));
    std::fs::rename(&tmp, &target)?;
    Ok(target)
}

async fn holders(network: &LocalNetwork, store: &str) -> (usize, Option<String>) {
    let mut count = 0;
    let mut hashes = std::collections::BTreeSet::new();
    for node in &network.nodes {
        if let Ok(stores) = node.get_json("/stores").await
            && let Some(list) = stores["stores"].as_array()
            && let Some(entry) = list.iter().find(|s| s["name"] == store)
            && entry["state"] == "synced"
        {
            count += 1;
            hashes.insert(entry["hash"].as_str().unwrap_or_default().to_string());
        }
    }
    let hash = (hashes.len() == 1).then(|| hashes.into_iter().next().unwrap_or_default());
    (count, hash)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.no_build {
        build_binaries()?;
    }
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("dig-local-network-{}", unix_secs())));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    println!("run folder: {}", root.display());

    let started = Instant::now();
    let network = LocalNetwork::start(&root, &args.network, args.nodes as usize).await?;
    println!(
        "bootstrap: {} (pid {}; its page: {}/)",
        network.bootstrap.base_url,
        network.bootstrap.process.pid(),
        network.bootstrap.base_url
    );
    for node in &network.nodes {
        println!(
            "{:<8} pid {:<7} api {}  data {}  peer {}",
            node.spec.name,
            node.process.pid(),
            node.url(""),
            node.spec.data_dir.display(),
            node.peer_id
        );
    }
    println!(
        "Open a node's api address in a browser for its page, or watch it in a terminal: \
         dig-sidecar status --watch --api <api>"
    );
    println!("Ctrl-C stops every process above.\n");

    let expected = network.nodes.len().saturating_sub(1) as u64;
    let mut last_table = String::new();
    let mut connected_at: Option<Duration> = None;
    let mut demo: Option<(String, Instant)> = None;
    let mut demo_done = args.no_demo;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let shutdown = dig_core::shutdown::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let mut table = format!(
            "{:<8} {:>5} {:>10} {:>6} {:>5}\n",
            "NODE", "PEERS", "DISCOVERED", "STORES", "READY"
        );
        let mut all_connected = true;
        for node in &network.nodes {
            match row(node).await {
                Some(row) => {
                    all_connected &= row.peers >= expected;
                    table.push_str(&format!(
                        "{:<8} {:>5} {:>10} {:>6} {:>5}\n",
                        node.spec.name,
                        row.peers,
                        row.discovered,
                        row.stores,
                        if row.ready { "yes" } else { "no" }
                    ));
                }
                None => {
                    all_connected = false;
                    table.push_str(&format!("{:<8} (API not answering)\n", node.spec.name));
                }
            }
        }
        if table != last_table {
            println!("[{:>6.1} s]\n{table}", started.elapsed().as_secs_f64());
            last_table = table;
        }
        if all_connected && connected_at.is_none() {
            let took = started.elapsed();
            connected_at = Some(took);
            println!(
                "all {} nodes fully connected {:.1} s after start",
                network.nodes.len(),
                took.as_secs_f64()
            );
        }
        if connected_at.is_some() && demo.is_none() && !args.no_demo {
            let name = format!("demo-{}", unix_secs());
            let path = write_demo_file(
                &root,
                &network.nodes[0].spec.data_dir,
                &name,
                args.demo_size,
            )?;
            println!(
                "dropped {} ({} bytes) into {}",
                path.display(),
                args.demo_size,
                network.nodes[0].spec.name
            );
            demo = Some((name, Instant::now()));
        }
        if let Some((name, since)) = &demo
            && !demo_done
        {
            let (count, hash) = holders(&network, name).await;
            if count == network.nodes.len() && hash.is_some() {
                println!(
                    "{name}.dig is on all {} nodes (same BLAKE3 {}) {:.1} s after it was dropped",
                    network.nodes.len(),
                    hash.unwrap_or_default(),
                    since.elapsed().as_secs_f64()
                );
                demo_done = true;
            }
        }
    }
    let count = network.nodes.len() + 1;
    drop(network);
    println!("stopped {count} processes; data left in {}", root.display());
    Ok(())
}
