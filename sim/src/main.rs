//! `dig-sim`: runs the scenarios of `dig_sim::scenario` on a simulated DIG network and prints
//! what they measure. Every node runs the real replication engine; the network is simulated.

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use dig_sim::inventory::{self, InventorySetup};
use dig_sim::net::NetConfig;
use dig_sim::scenario::{Setup, run};

#[derive(Parser, Debug)]
#[command(about = "Simulate a DIG network: real replication engines over a simulated network")]
struct Args {
    /// Nodes in the network.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Stores written before the measurements start.
    #[arg(long, default_value_t = 100)]
    stores: usize,
    /// Bytes of every store.
    #[arg(long, default_value_t = 1024)]
    store_bytes: u64,
    /// Connections each node opens to random others, so it ends with about twice as many (those
    /// others open count too; `--degree 12` is about a dig-sidecar's default --target-peers of
    /// 24); 0: every node connects to every other, as far as --max-connections allows.
    #[arg(long, default_value_t = 0)]
    degree: usize,
    /// The sidecar's --max-connections.
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// One-way latency between any two nodes.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Upload bandwidth of every node.
    #[arg(long, default_value_t = 100)]
    bandwidth_mbit: u64,
    /// Share of messages lost (0 to 1; downloads are not lost, they retry on failure).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Longest simulated time of one phase, in seconds.
    #[arg(long, default_value_t = 300)]
    phase_limit_s: u64,
    /// Share of the nodes restarted per minute in the churn phase, in percent (0: skip it).
    #[arg(long, default_value_t = 1.0)]
    churn_percent: f64,
    /// Length of the churn phase in simulated minutes.
    #[arg(long, default_value_t = 2)]
    churn_minutes: u64,
    /// Instead of a network, measure two nodes' inventories of this many stores (up to a
    /// million and more): the real index and reconciler, bytes, round trips and CPU.
    #[arg(long)]
    inventory_stores: Option<usize>,
    /// With --inventory-stores: the numbers of stores the asking node lacks, one reconciliation
    /// each.
    #[arg(long, value_delimiter = ',', default_values_t = [0, 1, 10, 100, 1000, 10000])]
    inventory_differences: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let net = NetConfig {
        latency_ms: args.latency_ms,
        bandwidth_bps: args.bandwidth_mbit * 1_000_000,
        loss: args.loss,
    };
    let started = Instant::now();
    if let Some(stores) = args.inventory_stores {
        let setup = InventorySetup {
            stores,
            differences: args.inventory_differences,
            net: net.clone(),
            seed: args.seed,
        };
        let report = inventory::run(&setup)
            .with_context(|| format!("measuring two inventories of {stores} stores"))?;
        report.print(&net);
        print_elapsed(started);
        return Ok(());
    }
    let setup = Setup {
        nodes: args.nodes,
        stores: args.stores,
        store_bytes: args.store_bytes,
        degree: args.degree,
        max_connections: args.max_connections,
        net,
        seed: args.seed,
        phase_limit_ms: args.phase_limit_s * 1000,
        churn_percent: args.churn_percent,
        churn_minutes: args.churn_minutes,
    };
    let report = run(&setup);
    report.print(&setup);
    print_elapsed(started);
    Ok(())
}

fn print_elapsed(started: Instant) {
    println!(
        "  (simulated in {:.1} s of real time)",
        started.elapsed().as_secs_f64()
    );
}
