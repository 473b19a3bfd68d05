//! Two nodes' inventories at a scale the network simulation cannot hold (each simulated node keeps
//! a real index, so memory bounds nodes × stores): up to a million stores. Builds two real indexes
//! of signed versions, runs the sidecar's own reconciler and answer between them (the asker's
//! `Reconciler` against the answering node's `answer`, as `crate::reconcile` does in the network
//! simulation), and counts bytes, round trips and CPU time; then times the index's snapshot save and
//! load, the other costs that grow with the number of stores.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use dig_sidecar::store::hash::to_hex;
use dig_sidecar::store::record::{ContentId, VersionRecord};
use dig_sidecar::store::{IndexEntry, LocalMeta, StoreIndex, Version};
use dig_sidecar::sync::announce::WireEntry;
use dig_sidecar::sync::reconcile::{Reconciler, answer, check_asks};
use libp2p_identity::Keypair;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

use crate::reconcile::{FRAME_BYTES, json_len};

use crate::net::NetConfig;

/// What to measure.
#[derive(Clone, Debug)]
pub struct InventorySetup {
    /// Stores the answering node holds.
    pub stores: usize,
    /// Stores the asking node lacks, one reconciliation per value.
    pub differences: Vec<usize>,
    pub net: NetConfig,
    pub seed: u64,
}

/// One reconciliation between the two indexes.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// Stores the asker lacked.
    pub lacking: usize,
    /// Entries it was sent (a range of at most 32 comes whole, known entries too).
    pub sent: usize,
    /// Of those, the versions it lacked.
    pub learned: usize,
    pub round_trips: u64,
    /// Bytes of requests and answers (JSON bodies and framing).
    pub bytes: u64,
    /// CPU time of the answering node's `answer` calls.
    pub answer_cpu: Duration,
    /// CPU time of the asker's side (its fingerprints and the checks of the answers).
    pub ask_cpu: Duration,
}

impl Exchange {
    /// Time on the simulated network: a round trip per request, and the bytes on one uplink.
    pub fn network_time(&self, net: &NetConfig) -> Duration {
        let round_trips = Duration::from_millis(2 * net.latency_ms * self.round_trips);
        let transfer = Duration::from_secs_f64(self.bytes as f64 * 8.0 / net.bandwidth_bps as f64);
        round_trips + transfer
    }
}

#[derive(Clone, Debug)]
pub struct InventoryReport {
    pub stores: usize,
    /// Time to build (sign) the answering node's index.
    pub build: Duration,
    /// Resident memory the index took, per store (from the process's RSS).
    pub memory_per_store: Option<u64>,
    /// Bytes of the full inventory (every signed version as JSON), what a node sent before
    /// reconciliation.
    pub inventory_bytes: u64,
    pub exchanges: Vec<Exchange>,
    /// An empty node's reconciliation with a full one.
    pub join: Exchange,
    /// The snapshot's bytes and the time to save and to load it (`index.json`).
    pub snapshot_bytes: u64,
    pub save: Duration,
    pub load: Duration,
}

/// Origins that wrote the stores (signing keys).
const WRITERS: u64 = 16;

pub fn run(setup: &InventorySetup) -> std::io::Result<InventoryReport> {
    let mut rng = StdRng::seed_from_u64(setup.seed);
    let writers: Vec<Keypair> = (0..WRITERS).map(|i| key(setup.seed, i)).collect();
    let rss_before = resident_bytes();
    let started = Instant::now();
    let full = index_of(&writers, setup.stores, &mut rng);
    let build = started.elapsed();
    let memory_per_store = rss_before
        .zip(resident_bytes())
        .map(|(before, after)| after.saturating_sub(before) / setup.stores.max(1) as u64);

    let inventory_bytes = full
        .iter()
        .filter_map(|(name, entry)| entry.signed(name))
        .map(|signed| json_len(&WireEntry::from_signed(&signed)) + 1)
        .sum::<u64>()
        + 2;

    let names: Vec<String> = full.names().cloned().collect();
    let mut exchanges = Vec::new();
    for &lacking in &setup.differences {
        let lacking = lacking.min(setup.stores);
        let mut asker = full.clone();
        for i in sample(&mut rng, names.len(), lacking) {
            asker.remove(&names[i]);
        }
        exchanges.push(reconcile(&asker, &full, lacking));
    }
    let join = reconcile(&StoreIndex::new(), &full, setup.stores);

    let folder = tempfile::tempdir()?;
    let path = folder.path().join("index.json");
    let started = Instant::now();
    full.save(&path)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let save = started.elapsed();
    let snapshot_bytes = std::fs::metadata(&path)?.len();
    let started = Instant::now();
    let loaded = StoreIndex::load(&path).map_err(|e| std::io::Error::other(e.to_string()))?;
    let load = started.elapsed();
    assert_eq!(loaded.holdings_digest(), full.holdings_digest());

    Ok(InventoryReport {
        stores: setup.stores,
        build,
        memory_per_store,
        inventory_bytes,
        exchanges,
        join,
        snapshot_bytes,
        save,
        load,
    })
}

/// The asker's whole reconciliation against the answering node, counted; checks that it learned
/// exactly what it lacked.
fn reconcile(asker: &StoreIndex, answerer: &StoreIndex, lacking: usize) -> Exchange {
    let mut reconciler = Reconciler::new(asker);
    let mut exchange = Exchange {
        lacking,
        sent: 0,
        learned: 0,
        round_trips: 0,
        bytes: 0,
        answer_cpu: Duration::ZERO,
        ask_cpu: Duration::ZERO,
    };
    let mut sent = BTreeSet::new();
    loop {
        let started = Instant::now();
        let Some(asks) = reconciler.next_asks().expect("an honest peer agrees") else {
            break;
        };
        exchange.ask_cpu += started.elapsed();
        check_asks(&asks).expect("the reconciler asks what a server accepts");
        let started = Instant::now();
        let answers = answer(answerer, &asks);
        exchange.answer_cpu += started.elapsed();
        exchange.round_trips += 1;
        exchange.bytes += 2 * FRAME_BYTES + json_len(&asks) + json_len(&answers);
        let started = Instant::now();
        let entries = reconciler
            .take(asker, asks, answers)
            .expect("an honest answer is accepted");
        exchange.ask_cpu += started.elapsed();
        exchange.sent += entries.len();
        sent.extend(entries.into_iter().map(|entry| entry.name));
    }
    exchange.learned = sent.iter().filter(|name| !asker.contains(name)).count();
    exchange
}

fn key(seed: u64, i: u64) -> Keypair {
    let secret = *blake3::hash(format!("inventory writer {seed} {i}").as_bytes()).as_bytes();
    Keypair::ed25519_from_bytes(secret).expect("32 bytes are an ed25519 secret")
}

/// `stores` held stores with random 64-hex names (as DIG store ids are), each signed by one of
/// the writers.
fn index_of(writers: &[Keypair], stores: usize, rng: &mut StdRng) -> StoreIndex {
    let mut index = StoreIndex::new();
    for i in 0..stores {
        let writer = &writers[i % writers.len()];
        let origin = writer.public().to_peer_id().to_base58();
        let name = to_hex(&rng.r#gen::<[u8; 32]>());
        let size = rng.gen_range(1024..1u64 << 30);
        let record = VersionRecord {
            name: name.clone(),
            version: Version::new(1_700_000_000_000 + i as u64, origin.clone()),
            owner: origin.clone(),
            content: Some(ContentId {
                size,
                hash: rng.r#gen(),
            }),
            replaces: None,
        };
        let signed = record.sign(writer).expect("an ed25519 key signs");
        let mut entry = IndexEntry::from_signed(&signed, origin, 0);
        entry.local = Some(LocalMeta {
            size,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: i as u64 + 1,
        });
        index.insert(name, entry);
    }
    index.take_changes();
    index
}

/// This process's resident memory (Linux), to estimate the index's bytes per store.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl InventoryReport {
    pub fn print(&self, net: &NetConfig) {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        println!(
            "Two nodes, {} stores (the sidecar's index, reconciler and answer; {} ms one way, {} Mbit/s)",
            self.stores,
            net.latency_ms,
            net.bandwidth_bps / 1_000_000
        );
        println!(
            "  index: built (signed) in {:.1} s, about {} bytes of memory per store; snapshot {:.1} MiB, saved in {:.2} s, loaded in {:.2} s",
            self.build.as_secs_f64(),
            self.memory_per_store
                .map_or_else(|| "?".to_owned(), |b| b.to_string()),
            mib(self.snapshot_bytes),
            self.save.as_secs_f64(),
            self.load.as_secs_f64()
        );
        println!(
            "  full inventory (what a differing digest cost before reconciliation): {:.1} MiB",
            mib(self.inventory_bytes)
        );
        println!(
            "  | asker lacks | learned (entries sent) | round trips | bytes | bytes per store lacked | answering CPU | asking CPU | time on the network |"
        );
        println!("  |---|---|---|---|---|---|---|---|");
        for exchange in self.exchanges.iter().chain([&self.join]) {
            let lacking = if std::ptr::eq(exchange, &self.join) {
                format!("everything ({}), empty node", exchange.lacking)
            } else {
                exchange.lacking.to_string()
            };
            println!(
                "  | {lacking} | {} ({}) | {} | {} | {} | {:.0} ms | {:.0} ms | {:.2} s |",
                exchange.learned,
                exchange.sent,
                exchange.round_trips,
                exchange.bytes,
                exchange.bytes / exchange.lacking.max(1) as u64,
                exchange.answer_cpu.as_secs_f64() * 1000.0,
                exchange.ask_cpu.as_secs_f64() * 1000.0,
                exchange.network_time(net).as_secs_f64()
            );
        }
        println!(
            "  empty node: {:.3}x one inventory on the wire",
            self.join.bytes as f64 / self.inventory_bytes.max(1) as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciliation_learns_exactly_what_differs_at_a_few_thousand_stores() {
        let setup = InventorySetup {
            stores: 3000,
            differences: vec![0, 1, 30],
            net: NetConfig {
                latency_ms: 50,
                bandwidth_bps: 100_000_000,
                loss: 0.0,
            },
            seed: 7,
        };
        let report = run(&setup).unwrap();
        let [same, one, thirty] = &report.exchanges[..] else {
            panic!("three exchanges: {:?}", report.exchanges);
        };
        assert_eq!((same.learned, same.round_trips), (0, 1));
        assert!(same.bytes < 300, "{same:?}");
        assert_eq!(one.learned, 1);
        assert_eq!(thirty.learned, 30);
        // Proportional to what differs: 1 % of the stores costs a fraction of the inventory
        // (each difference brings its leaf range of up to 32 entries).
        assert!(thirty.bytes * 4 < report.inventory_bytes, "{thirty:?}");
        assert!(one.bytes * 10 < thirty.bytes, "{one:?}");
        assert_eq!(report.join.learned, 3000);
        let ratio = report.join.bytes as f64 / report.inventory_bytes as f64;
        assert!((1.0..1.1).contains(&ratio), "empty join ratio {ratio}");
        assert!(report.snapshot_bytes > report.inventory_bytes / 2);
    }
}
