//! Checks the simulator (`dig-sim`) against real `dig-sidecar` processes on the same scenarios:
//! N nodes on loopback, every node connected to every other (what N nodes under the default
//! `--target-peers` of 24 do), and the same N in the simulator (no latency, 10 Gbit/s uplinks, as
//! loopback is).
//!
//! 1. `--stores` stores written at the first node spread to every node.
//! 2. `--rounds` new stores spread one after the other: the times to 50 %, 99 % and 100 % of the
//!    nodes (after the writer indexed the store; its watcher's debounce and hashing are not part
//!    of the spread) and, summed over the nodes, the messages that carried it (gossip
//!    announcements, holder notices, downloads). Both sides count with the engine's own counters:
//!    the real nodes through `/metrics`, the simulated ones from the same `Stats`.
//! 3. A node with an empty disk joins: the bytes of inventory it receives, against one inventory.
//!
//! Then it prints how far apart the two are. Build the binaries first:
//! `cargo build --release -p dig-sidecar -p dig-bootstrap`, then
//! `cargo run --release -p dig-e2e --bin bench-sim-check`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use dig_e2e::network::{LocalNetwork, SidecarNode};
use dig_e2e::replication::{
    metric_sum, metric_sum_labelled, store_status, wait_synced, write_store,
};
use dig_sim::net::NetConfig;
use dig_sim::world::World;

#[derive(Parser)]
#[command(about = "The simulator against real dig-sidecar processes, on the same scenarios")]
struct Args {
    /// Nodes in the network.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Stores written before the rounds (what the joining node learns).
    #[arg(long, default_value_t = 200)]
    stores: u64,
    /// New stores spread, one after the other.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value_t = 1024)]
    store_bytes: u64,
}

const TIMEOUT: Duration = Duration::from_secs(120);
/// After a store is everywhere, how long the counters are given to settle (holder notices go out
/// at the next tick).
const SETTLE: Duration = Duration::from_millis(1500);
/// A signed version in an inventory, in bytes of JSON (what `dig-sim` counts one as).
const RECORD_BYTES: u64 = 330;

/// The counters compared, summed over the nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counters {
    /// Gossip announcements that brought a record.
    announcements: f64,
    /// Holder notices that brought a record.
    notices: f64,
    /// Stores installed.
    downloads: f64,
}

impl Counters {
    fn minus(self, before: Self) -> Self {
        Self {
            announcements: self.announcements - before.announcements,
            notices: self.notices - before.notices,
            downloads: self.downloads - before.downloads,
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            announcements: self.announcements + other.announcements,
            notices: self.notices + other.notices,
            downloads: self.downloads + other.downloads,
        }
    }
}

/// Spread times (ms) to 50 %, 99 % and 100 % of `arrivals` (ms after the start, one per node).
fn quantiles(mut arrivals: Vec<u64>) -> [u64; 3] {
    arrivals.sort_unstable();
    let at = |share: f64| {
        let needed = ((arrivals.len() as f64) * share).ceil().max(1.0) as usize;
        arrivals[needed.min(arrivals.len()) - 1]
    };
    [at(0.5), at(0.99), at(1.0)]
}

async fn real_counters(nodes: &[SidecarNode]) -> anyhow::Result<Counters> {
    let mut sum = Counters::default();
    for node in nodes {
        let text = node.metrics().await?;
        sum = sum.plus(Counters {
            announcements: metric_sum(&text, "dig_sync_announcements_received_total"),
            notices: metric_sum_labelled(
                &text,
                "dig_sync_holder_notices_total",
                r#"direction="Received""#,
            ),
            downloads: metric_sum_labelled(
                &text,
                "dig_sync_transfer_files_total",
                r#"direction="Received""#,
            ),
        });
    }
    Ok(sum)
}

fn simulated_counters(world: &World) -> Counters {
    world
        .nodes
        .iter()
        .map(|node| {
            let stats = node.engine.stats();
            Counters {
                announcements: stats.announcements_received as f64,
                notices: stats.holder_notices_received as f64,
                downloads: stats.files_received as f64,
            }
        })
        .fold(Counters::default(), Counters::plus)
}

/// One store spread among real processes: every node's arrival, in ms after the writer indexed
/// it, and the counters it moved.
async fn real_round(
    network: &LocalNetwork,
    name: &str,
    bytes: u64,
    salt: u64,
) -> anyhow::Result<(Vec<u64>, Counters)> {
    let before = real_counters(&network.nodes).await?;
    let writer = &network.nodes[0];
    write_store(&writer.spec.data_dir, name, bytes, salt)?;
    let started = Instant::now();
    while store_status(writer, name).await?["state"] != "synced" {
        if started.elapsed() > TIMEOUT {
            bail!("{name} not indexed by the writer within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let indexed = Instant::now();
    let mut arrivals: BTreeMap<usize, u64> = BTreeMap::from([(0, 0)]);
    while arrivals.len() < network.nodes.len() {
        for (index, node) in network.nodes.iter().enumerate() {
            if !arrivals.contains_key(&index)
                && store_status(node, name).await?["state"] == "synced"
            {
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
    tokio::time::sleep(SETTLE).await;
    let counters = real_counters(&network.nodes).await?.minus(before);
    Ok((arrivals.into_values().collect(), counters))
}

fn simulated_network(nodes: usize, seed: u64) -> World {
    let net = NetConfig {
        latency_ms: 0,
        bandwidth_bps: 10_000_000_000,
        loss: 0.0,
    };
    let mut world = World::new(nodes, net, seed);
    for a in 0..nodes {
        for b in a + 1..nodes {
            world.connect(a, b);
        }
    }
    world.run_until(5_000);
    world
}

/// Runs the world until every node holds the version of `name` with `hash`; returns the time.
fn simulated_spread(world: &mut World, name: &str, hash: &[u8; 32]) -> anyhow::Result<u64> {
    let start = world.now;
    let nodes = world.nodes.len();
    world
        .run_while(start + TIMEOUT.as_millis() as u64, 1, |w| {
            w.holders(name, hash) == nodes
        })
        .with_context(|| format!("{name} did not reach every simulated node"))
}

fn simulated_round(
    world: &mut World,
    name: &str,
    bytes: u64,
    salt: u64,
) -> anyhow::Result<(Vec<u64>, Counters)> {
    let before = simulated_counters(world);
    let hash = world.write(0, name, bytes, salt);
    let start = world.now;
    simulated_spread(world, name, &hash)?;
    world.run_until(world.now + SETTLE.as_millis() as u64);
    let arrivals = world.arrivals[&(name.to_owned(), hash)]
        .iter()
        .map(|t| t.map_or(u64::MAX, |t| t - start))
        .collect();
    Ok((arrivals, simulated_counters(world).minus(before)))
}

/// How far the simulator is from the real figure, in percent of the real one.
fn gap(real: f64, simulated: f64) -> String {
    if real == 0.0 {
        return if simulated == 0.0 {
            "0 %".into()
        } else {
            "-".into()
        };
    }
    format!("{:+.0} %", (simulated - real) / real * 100.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = tempfile::tempdir()?;
    let mut network = LocalNetwork::start_connected(root.path(), "sim-check", args.nodes).await?;
    let mut world = simulated_network(args.nodes, 1);

    // 1. The stores a joining node will learn.
    let mut expected = BTreeMap::new();
    for i in 0..args.stores {
        let name = format!("base-{i:05}");
        let hash = write_store(&network.nodes[0].spec.data_dir, &name, args.store_bytes, i)?;
        expected.insert(name.clone(), hash);
        let hash = world.write(0, &name, args.store_bytes, i);
        simulated_spread(&mut world, &name, &hash)?;
    }
    let all: Vec<&SidecarNode> = network.nodes.iter().collect();
    wait_synced(&all, &expected, TIMEOUT).await?;
    tokio::time::sleep(SETTLE).await;
    world.run_until(world.now + SETTLE.as_millis() as u64);

    // 2. New stores, one at a time.
    println!(
        "{} nodes, all connected, {}-byte stores; real processes on loopback against dig-sim (no latency, no CPU or disk time)",
        args.nodes, args.store_bytes
    );
    println!(
        "| round | real to 50 % / 99 % / 100 % | simulated | real announcements / notices / downloads | simulated |"
    );
    println!("|---|---|---|---|---|");
    let (mut real_total, mut simulated_total) = (Counters::default(), Counters::default());
    let (mut real_last, mut simulated_last) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let name = format!("check-{round}");
        let salt = 1_000_000 + round as u64;
        let (real_arrivals, real) = real_round(&network, &name, args.store_bytes, salt).await?;
        let (simulated_arrivals, simulated) =
            simulated_round(&mut world, &name, args.store_bytes, salt)?;
        expected.insert(name, String::new());
        let (r, s) = (quantiles(real_arrivals), quantiles(simulated_arrivals));
        println!(
            "| {round} | {} / {} / {} ms | {} / {} / {} ms | {} / {} / {} | {} / {} / {} |",
            r[0],
            r[1],
            r[2],
            s[0],
            s[1],
            s[2],
            real.announcements,
            real.notices,
            real.downloads,
            simulated.announcements,
            simulated.notices,
            simulated.downloads
        );
        real_total = real_total.plus(real);
        simulated_total = simulated_total.plus(simulated);
        real_last.push(r[2] as f64);
        simulated_last.push(s[2] as f64);
    }

    // 3. An empty node joins.
    let inventory = expected.len() as u64 * RECORD_BYTES;
    network.add_nodes(1).await?;
    let joined = network.nodes.last().context("the joined node")?;
    let started = Instant::now();
    let names: BTreeMap<String, String> = expected
        .keys()
        .filter(|name| name.starts_with("base-"))
        .map(|name| (name.clone(), expected[name].clone()))
        .collect();
    wait_synced(&[joined], &names, TIMEOUT).await?;
    let real_join_ms = started.elapsed().as_millis() as u64;
    tokio::time::sleep(SETTLE).await;
    let real_join_bytes = metric_sum(
        &joined.metrics().await?,
        "dig_sync_inventory_bytes_received_total",
    );
    let joiner = world.add_node();
    for peer in 0..joiner {
        world.connect(joiner, peer);
    }
    let join_start = world.now;
    let everything: Vec<(String, [u8; 32])> = world
        .arrivals
        .keys()
        .filter(|(name, _)| name.starts_with("base-"))
        .cloned()
        .collect();
    world
        .run_while(join_start + TIMEOUT.as_millis() as u64, 1, |w| {
            everything
                .iter()
                .all(|(name, hash)| w.nodes[joiner].holds(name, hash))
        })
        .context("the simulated joiner did not learn everything")?;
    let simulated_join_ms = world.now - join_start;
    world.run_until(world.now + SETTLE.as_millis() as u64);
    let simulated_join_bytes = world.net.received[joiner].inventory as f64;

    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    println!();
    println!("| measure | real | simulated | simulated against real |");
    println!("|---|---|---|---|");
    let rounds = args.rounds.max(1) as f64;
    for (what, real, simulated) in [
        (
            "gossip announcements per store",
            real_total.announcements / rounds,
            simulated_total.announcements / rounds,
        ),
        (
            "holder notices per store",
            real_total.notices / rounds,
            simulated_total.notices / rounds,
        ),
        (
            "downloads per store",
            real_total.downloads / rounds,
            simulated_total.downloads / rounds,
        ),
        (
            "time to every node, mean (ms)",
            mean(&real_last),
            mean(&simulated_last),
        ),
        (
            "joining node: inventory bytes received",
            real_join_bytes,
            simulated_join_bytes,
        ),
    ] {
        println!(
            "| {what} | {real:.1} | {simulated:.1} | {} |",
            gap(real, simulated)
        );
    }
    println!(
        "| joining node: inventory bytes / one inventory ({} stores, {inventory} bytes) | {:.2}x | {:.2}x | |",
        expected.len(),
        real_join_bytes / inventory as f64,
        simulated_join_bytes / inventory as f64
    );
    println!(
        "| joining node: time to hold the {} stores (ms; real includes start-up and dialling) | {real_join_ms} | {simulated_join_ms} | |",
        names.len()
    );
    Ok(())
}
