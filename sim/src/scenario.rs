//! The scenarios `dig-sim` runs on one network, in order, and what each measures:
//! 1. start: `stores` stores written at random nodes reach every node (the time, the bytes);
//! 2. idle: a minute with no change, from 10 s after the start (bytes per node per second);
//! 3. spread: one new store, from one node to all (the time to 50 %, 99 % and 100 % of nodes,
//!    bytes per node per second meanwhile);
//! 4. join: a node with an empty disk connects to `degree` peers and learns everything (the time,
//!    the bytes it received against what it stores);
//! 5. partition: the network splits in two halves, a store is written on each side, the halves
//!    heal (the time until every node holds both);
//! 6. churn: for `churn_minutes`, `churn_percent` of the nodes restart each minute (each down for
//!    [`CHURN_DOWN_MS`], then back with its disk, connected to new random peers) while a new store
//!    is written every second at a random running node (how fast those stores reach 99 % of
//!    nodes, bytes per node per second, and when every node holds every one after the churn).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use dig_sidecar::sync::engine::Millis;

use crate::net::{NetConfig, Traffic};
use crate::world::{RECORD_BYTES, World};

/// How the simulated network is built and loaded.
#[derive(Clone, Debug)]
pub struct Setup {
    pub nodes: usize,
    pub stores: usize,
    pub store_bytes: u64,
    /// Connections each node opens to random others (0: every node to every other, as far as
    /// `max_connections` allows).
    pub degree: usize,
    pub max_connections: usize,
    pub net: NetConfig,
    pub seed: u64,
    /// No phase runs longer than this (simulated ms).
    pub phase_limit_ms: Millis,
    /// Share of the nodes restarted per minute in the churn phase (0: no churn phase).
    pub churn_percent: f64,
    pub churn_minutes: u64,
}

/// How long a churning node stays down.
pub const CHURN_DOWN_MS: Millis = 20_000;

/// What one run measured. Times are simulated milliseconds.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub start_ms: Option<Millis>,
    pub start_bytes_per_node: f64,
    pub idle_bytes_per_node_per_s: f64,
    /// Idle bytes by kind, summed over the nodes.
    pub idle_traffic: Traffic,
    pub spread_50_ms: Option<Millis>,
    pub spread_99_ms: Option<Millis>,
    pub spread_100_ms: Option<Millis>,
    pub spread_bytes_per_node_per_s: f64,
    pub join_ms: Option<Millis>,
    pub join_received_bytes: u64,
    pub join_stored_bytes: u64,
    /// Of the bytes received, those of inventory exchanges; and one full inventory's size.
    pub join_inventory_bytes: u64,
    pub inventory_bytes: u64,
    pub partition_heal_ms: Option<Millis>,
    pub churn: Option<ChurnReport>,
    pub events: u64,
}

/// What the churn phase measured.
#[derive(Clone, Debug, Default)]
pub struct ChurnReport {
    pub restarts: usize,
    pub stores: usize,
    /// Time for a store written during churn to reach 99 % of nodes: median and worst.
    pub spread_99_median_ms: Option<Millis>,
    pub spread_99_worst_ms: Option<Millis>,
    pub bytes_per_node_per_s: f64,
    /// After the last restart and write: until every node holds every store.
    pub converged_ms: Option<Millis>,
}

impl Report {
    pub fn print(&self, setup: &Setup) {
        let ms = |t: Option<Millis>| {
            t.map_or("not reached".into(), |t| {
                format!("{:.2} s", t as f64 / 1000.0)
            })
        };
        println!(
            "{} nodes, {} stores of {} bytes, {} connections per node, {} ms latency, {} Mbit/s, {:.1} % loss, seed {}",
            setup.nodes,
            setup.stores,
            setup.store_bytes,
            if setup.degree == 0 {
                "all".to_string()
            } else {
                format!("{} opened", setup.degree)
            },
            setup.net.latency_ms,
            setup.net.bandwidth_bps / 1_000_000,
            setup.net.loss * 100.0,
            setup.seed,
        );
        println!(
            "  start: every store on every node after {} ({:.0} bytes sent per node)",
            ms(self.start_ms),
            self.start_bytes_per_node
        );
        let idle = &self.idle_traffic;
        println!(
            "  idle: {:.0} bytes/s sent per node (of all bytes: gossip {}, holder notices {}, inventories {}, data {})",
            self.idle_bytes_per_node_per_s, idle.gossip, idle.notices, idle.inventory, idle.data
        );
        println!(
            "  spread of a new store: 50 % of nodes {}, 99 % {}, 100 % {} ({:.0} bytes/s sent per node meanwhile)",
            ms(self.spread_50_ms),
            ms(self.spread_99_ms),
            ms(self.spread_100_ms),
            self.spread_bytes_per_node_per_s
        );
        let ratio = self.join_received_bytes as f64 / self.join_stored_bytes.max(1) as f64;
        let inventory_ratio = self.join_inventory_bytes as f64 / self.inventory_bytes.max(1) as f64;
        println!(
            "  join with an empty disk: everything after {}, {} bytes received for {} stored ({ratio:.2}x); of them {} of inventory exchanges for an inventory of about {} ({inventory_ratio:.2}x)",
            ms(self.join_ms),
            self.join_received_bytes,
            self.join_stored_bytes,
            self.join_inventory_bytes,
            self.inventory_bytes
        );
        println!(
            "  partition healed: both sides' new stores everywhere after {}",
            ms(self.partition_heal_ms)
        );
        if let Some(churn) = &self.churn {
            println!(
                "  churn: {} restarts and {} new stores in {} min; a new store on 99 % of nodes after {} (median), {} (worst); {:.0} bytes/s sent per node; every store everywhere {} after the churn",
                churn.restarts,
                churn.stores,
                setup.churn_minutes,
                ms(churn.spread_99_median_ms),
                ms(churn.spread_99_worst_ms),
                churn.bytes_per_node_per_s,
                ms(churn.converged_ms),
            );
        }
        println!("  ({} simulated events)", self.events);
    }
}

/// Bytes all nodes sent since `before` (a copy of `world.net.sent`).
fn sent_since(world: &World, before: &[Traffic]) -> u64 {
    world
        .net
        .sent
        .iter()
        .zip(before)
        .map(|(now, then)| now.minus(then).total())
        .sum()
}

fn total(traffic: &[Traffic]) -> u64 {
    traffic.iter().map(Traffic::total).sum()
}

/// Connects `node` to `degree` random others (or to all, capped).
fn connect_node(world: &mut World, node: usize, setup: &Setup, rng: &mut StdRng) {
    let count = world.nodes.len();
    let mut others: Vec<usize> = (0..count)
        .filter(|&o| o != node && world.nodes[o].online)
        .collect();
    others.shuffle(rng);
    let wanted = if setup.degree == 0 {
        setup.max_connections
    } else {
        setup.degree
    };
    for other in others {
        if world.nodes[node].neighbors.len() >= wanted.min(setup.max_connections) {
            break;
        }
        if world.nodes[other].neighbors.len() < setup.max_connections {
            world.connect(node, other);
        }
    }
}

fn everyone_holds(world: &World, versions: &[(String, [u8; 32])]) -> bool {
    versions
        .iter()
        .all(|(name, hash)| world.holders(name, hash) == world.nodes.len())
}

/// Time after `start` at which `share` of the nodes held the version.
fn reached(arrivals: &[Option<Millis>], share: f64, start: Millis) -> Option<Millis> {
    let mut times: Vec<Millis> = arrivals.iter().flatten().copied().collect();
    times.sort_unstable();
    let needed = ((arrivals.len() as f64) * share).ceil().max(1.0) as usize;
    times.get(needed - 1).map(|t| t - start)
}

pub fn run(setup: &Setup) -> Report {
    let mut rng = StdRng::seed_from_u64(setup.seed);
    let mut world = World::new(setup.nodes, setup.net.clone(), setup.seed);
    let mut report = Report::default();
    for node in 0..setup.nodes {
        connect_node(&mut world, node, setup, &mut rng);
    }

    // 1. Start: stores written at random nodes.
    let mut versions = Vec::new();
    for i in 0..setup.stores {
        let node = rng.gen_range(0..setup.nodes);
        let name = format!("store-{i}");
        let hash = world.write(node, &name, setup.store_bytes, 0);
        versions.push((name, hash));
    }
    let limit = world.now + setup.phase_limit_ms;
    report.start_ms = world.run_while(limit, 100, |w| everyone_holds(w, &versions));
    report.start_bytes_per_node = total(&world.net.sent) as f64 / setup.nodes as f64;

    // 2. Idle: after the last announcements of the start have died out.
    world.run_until(world.now + 10_000);
    let before = world.net.sent.clone();
    let idle_ms = 60_000;
    world.run_until(world.now + idle_ms);
    let idle_traffic = world
        .net
        .sent
        .iter()
        .zip(&before)
        .fold(Traffic::default(), |sum, (now, then)| {
            sum.plus(&now.minus(then))
        });
    let idle = idle_traffic.total();
    report.idle_traffic = idle_traffic;
    report.idle_bytes_per_node_per_s = idle as f64 / setup.nodes as f64 / (idle_ms as f64 / 1000.0);

    // 3. Spread of one new store.
    let writer = rng.gen_range(0..setup.nodes);
    let start = world.now;
    let before = world.net.sent.clone();
    let name = "new-store".to_string();
    let hash = world.write(writer, &name, setup.store_bytes, 1);
    let key = (name.clone(), hash);
    let limit = world.now + setup.phase_limit_ms;
    world.run_while(limit, 10, |w| w.holders(&name, &hash) == w.nodes.len());
    let spread_ms = (world.now - start).max(1);
    let arrivals = &world.arrivals[&key];
    report.spread_50_ms = reached(arrivals, 0.5, start);
    report.spread_99_ms = reached(arrivals, 0.99, start);
    report.spread_100_ms = reached(arrivals, 1.0, start);
    let spread = sent_since(&world, &before);
    report.spread_bytes_per_node_per_s =
        spread as f64 / setup.nodes as f64 / (spread_ms as f64 / 1000.0);
    versions.push(key);

    // 4. A node joins with an empty disk.
    let joiner = world.add_node();
    let start = world.now;
    let join_setup = Setup {
        degree: if setup.degree == 0 {
            setup.max_connections
        } else {
            setup.degree
        },
        ..setup.clone()
    };
    connect_node(&mut world, joiner, &join_setup, &mut rng);
    let limit = world.now + setup.phase_limit_ms;
    report.join_ms = world
        .run_while(limit, 100, |w| {
            versions
                .iter()
                .all(|(name, hash)| w.nodes[joiner].holds(name, hash))
        })
        .map(|t| t - start);
    report.join_received_bytes = world.net.received[joiner].total();
    report.join_inventory_bytes = world.net.received[joiner].inventory;
    report.inventory_bytes = versions.len() as u64 * RECORD_BYTES;
    report.join_stored_bytes = versions.len() as u64 * setup.store_bytes;

    // 5. A partition, a store on each side, then healed.
    let count = world.nodes.len();
    let sides: Vec<u8> = (0..count).map(|i| (i % 2) as u8).collect();
    world.net.partition(sides);
    let left = world.write(0, "left-store", setup.store_bytes, 2);
    let right = world.write(1, "right-store", setup.store_bytes, 2);
    world.run_until(world.now + 10_000);
    world.net.heal();
    let healed = world.now;
    let both = [
        ("left-store".to_string(), left),
        ("right-store".to_string(), right),
    ];
    let limit = world.now + setup.phase_limit_ms;
    report.partition_heal_ms = world
        .run_while(limit, 100, |w| everyone_holds(w, &both))
        .map(|t| t - healed);
    versions.extend(both);

    // 6. Churn.
    if setup.churn_percent > 0.0 && setup.churn_minutes > 0 {
        report.churn = Some(churn(&mut world, setup, &mut rng, &mut versions));
    }
    report.events = world.events_handled;
    report
}

fn random_running(world: &World, rng: &mut StdRng) -> Option<usize> {
    let running: Vec<usize> = (0..world.nodes.len())
        .filter(|&n| world.nodes[n].online)
        .collect();
    (!running.is_empty()).then(|| running[rng.gen_range(0..running.len())])
}

fn churn(
    world: &mut World,
    setup: &Setup,
    rng: &mut StdRng,
    versions: &mut Vec<(String, [u8; 32])>,
) -> ChurnReport {
    let count = world.nodes.len();
    let duration = setup.churn_minutes * 60_000;
    let restarts_per_minute = (count as f64 * setup.churn_percent / 100.0).max(1.0);
    let restart_every = (60_000.0 / restarts_per_minute) as Millis;
    let start = world.now;
    let before = world.net.sent.clone();
    let mut report = ChurnReport::default();
    let mut written = Vec::new();
    let mut down: Vec<(Millis, usize)> = Vec::new();
    let (mut next_restart, mut next_write) = (start, start);
    let end = start + duration;
    while world.now < end {
        let next_back = down.iter().map(|&(at, _)| at).min().unwrap_or(Millis::MAX);
        let step = next_restart.min(next_write).min(next_back).min(end);
        world.run_until(step.max(world.now));
        // Nodes whose time is up come back, connected to new random peers.
        let (back, still_down): (Vec<_>, Vec<_>) =
            down.into_iter().partition(|&(at, _)| at <= world.now);
        down = still_down;
        for (_, node) in back {
            world.restart(node);
            connect_node(world, node, setup, rng);
        }
        if world.now >= next_restart && world.now < end {
            if let Some(node) = random_running(world, rng) {
                world.stop(node);
                down.push((world.now + CHURN_DOWN_MS, node));
                report.restarts += 1;
            }
            next_restart += restart_every;
        }
        if world.now >= next_write && world.now < end {
            if let Some(node) = random_running(world, rng) {
                let name = format!("churn-store-{}", written.len());
                let hash = world.write(node, &name, setup.store_bytes, 3);
                written.push(((name, hash), world.now));
            }
            next_write += 1000;
        }
    }
    let sent = sent_since(world, &before);
    report.bytes_per_node_per_s = sent as f64 / count as f64 / (duration as f64 / 1000.0);
    // The last ones back; then every node must get every store.
    for (back_at, node) in std::mem::take(&mut down) {
        world.run_until(back_at.max(world.now));
        world.restart(node);
        connect_node(world, node, setup, rng);
    }
    let ended = world.now;
    report.stores = written.len();
    let mut spreads: Vec<Option<Millis>> = written
        .iter()
        .map(|(key, at)| reached(&world.arrivals[key], 0.99, *at))
        .collect();
    versions.extend(written.into_iter().map(|(key, _)| key));
    let limit = world.now + setup.phase_limit_ms;
    report.converged_ms = world
        .run_while(limit, 100, |w| everyone_holds(w, versions))
        .map(|t| t - ended);
    spreads.sort_by_key(|s| s.unwrap_or(Millis::MAX));
    report.spread_99_median_ms = spreads.get(spreads.len() / 2).copied().flatten();
    report.spread_99_worst_ms = spreads.last().copied().flatten();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(nodes: usize, degree: usize, seed: u64) -> Setup {
        Setup {
            nodes,
            stores: 20,
            store_bytes: 1024,
            degree,
            max_connections: 256,
            net: NetConfig {
                latency_ms: 50,
                bandwidth_bps: 100_000_000,
                loss: 0.0,
            },
            seed,
            phase_limit_ms: 120_000,
            churn_percent: 0.0,
            churn_minutes: 0,
        }
    }

    #[test]
    fn a_small_network_converges_in_every_phase() {
        let report = run(&setup(12, 3, 7));
        assert!(report.start_ms.is_some(), "{report:?}");
        assert!(report.spread_100_ms.is_some(), "{report:?}");
        assert!(report.spread_50_ms <= report.spread_99_ms);
        assert!(
            report.spread_100_ms.unwrap() >= 2 * 50,
            "a store needs at least an announcement and a download: {report:?}"
        );
        assert!(report.join_ms.is_some(), "{report:?}");
        assert!(
            report.join_received_bytes >= report.join_stored_bytes,
            "{report:?}"
        );
        assert!(report.partition_heal_ms.is_some(), "{report:?}");
    }

    #[test]
    fn nodes_that_restart_during_churn_catch_up_and_every_store_reaches_every_node() {
        let setup = Setup {
            churn_percent: 25.0,
            churn_minutes: 1,
            ..setup(12, 3, 5)
        };
        let report = run(&setup);
        let churn = report.churn.expect("a churn phase");
        assert!(churn.restarts >= 3, "{churn:?}");
        assert!(churn.stores >= 50, "{churn:?}");
        assert!(churn.converged_ms.is_some(), "{churn:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let a = run(&setup(8, 2, 3));
        let b = run(&setup(8, 2, 3));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn a_partition_keeps_a_store_on_its_side_until_healed() {
        let mut world = World::new(4, setup(4, 0, 1).net, 1);
        for a in 0..4 {
            for b in a + 1..4 {
                world.connect(a, b);
            }
        }
        world.run_until(1_000);
        world.net.partition(vec![0, 0, 1, 1]);
        let hash = world.write(0, "s", 1024, 0);
        world.run_until(20_000);
        assert!(world.nodes[1].holds("s", &hash));
        assert!(!world.nodes[2].holds("s", &hash) && !world.nodes[3].holds("s", &hash));
        world.net.heal();
        let healed = world.run_while(120_000, 100, |w| w.holders("s", &hash) == 4);
        assert!(
            healed.is_some(),
            "the next inventory exchange brings it over"
        );
    }
}
