//! Checks the simulator (`dig-sim`) against real `dig-sidecar` processes: the same network (N
//! nodes on loopback, every node connected to every other) spreads a new store, and the times to
//! 50 %, 99 % and 100 % of the nodes are printed side by side with the simulator's for the same
//! setup (no latency, 10 Gbit/s uplinks). Times start when the writing node has indexed the store
//! (its watcher's debounce and hashing are not part of the spread).
//!
//! Build the binaries first: `cargo build --release -p dig-sidecar -p dig-bootstrap`, then
//! `cargo run --release -p dig-e2e --bin bench-sim-check`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use dig_e2e::network::LocalNetwork;
use dig_e2e::replication::{store_status, write_store};
use dig_sim::net::NetConfig;
use dig_sim::world::World;

#[derive(Parser)]
#[command(about = "The simulator against real dig-sidecar processes: spread of a new store")]
struct Args {
    /// Nodes in the network.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// New stores spread, one after the other.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 1024)]
    store_bytes: u64,
}

const TIMEOUT: Duration = Duration::from_secs(60);

/// Spread times (ms) to 50 %, 99 % and 100 % of `arrivals` (ms after the start, one per node).
fn quantiles(mut arrivals: Vec<u64>) -> [u64; 3] {
    arrivals.sort_unstable();
    let at = |share: f64| {
        let needed = ((arrivals.len() as f64) * share).ceil().max(1.0) as usize;
        arrivals[needed.min(arrivals.len()) - 1]
    };
    [at(0.5), at(0.99), at(1.0)]
}

/// One store spread among real processes: every node's arrival, in ms after the writer indexed it.
async fn real_round(network: &LocalNetwork, round: usize, bytes: u64) -> anyhow::Result<Vec<u64>> {
    let name = format!("check-{round}");
    let writer = &network.nodes[0];
    write_store(&writer.spec.data_dir, &name, bytes, round as u64)?;
    let started = Instant::now();
    loop {
        if store_status(writer, &name).await?["state"] == "synced" {
            break;
        }
        if started.elapsed() > TIMEOUT {
            bail!("{name} not indexed by the writer within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let indexed = Instant::now();
    let mut arrivals: BTreeMap<usize, u64> = BTreeMap::from([(0, 0)]);
    while arrivals.len() < network.nodes.len() {
        for (index, node) in network.nodes.iter().enumerate() {
            if arrivals.contains_key(&index) {
                continue;
            }
            if store_status(node, &name).await?["state"] == "synced" {
                arrivals.insert(index, indexed.elapsed().as_millis() as u64);
            }
        }
        if indexed.elapsed() > TIMEOUT {
            bail!(
                "{name} on {} of {} nodes after {TIMEOUT:?}",
                arrivals.len(),
                network.nodes.len()
            );
        }
    }
    Ok(arrivals.into_values().collect())
}

/// The same spread in the simulator.
fn simulated_round(nodes: usize, round: usize, bytes: u64) -> Vec<u64> {
    let net = NetConfig {
        latency_ms: 0,
        bandwidth_bps: 10_000_000_000,
        loss: 0.0,
    };
    let mut world = World::new(nodes, net, round as u64 + 1);
    for a in 0..nodes {
        for b in a + 1..nodes {
            world.connect(a, b);
        }
    }
    world.run_until(5_000);
    let name = format!("check-{round}");
    let hash = world.write(0, &name, bytes, round as u64);
    let start = world.now;
    world.run_while(start + TIMEOUT.as_millis() as u64, 1, |w| {
        w.holders(&name, &hash) == nodes
    });
    world.arrivals[&(name, hash)]
        .iter()
        .map(|t| t.map_or(u64::MAX, |t| t - start))
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = tempfile::tempdir()?;
    let network = LocalNetwork::start_connected(root.path(), "sim-check", args.nodes).await?;
    println!(
        "spread of a new {}-byte store to {} nodes, all connected (ms after the writer indexed it):",
        args.store_bytes, args.nodes
    );
    println!("round | real 50 % / 99 % / 100 % | simulated 50 % / 99 % / 100 %");
    for round in 0..args.rounds {
        let real = quantiles(real_round(&network, round, args.store_bytes).await?);
        let simulated = quantiles(simulated_round(args.nodes, round, args.store_bytes));
        println!(
            "{round} | {} / {} / {} | {} / {} / {}",
            real[0], real[1], real[2], simulated[0], simulated[1], simulated[2]
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}
