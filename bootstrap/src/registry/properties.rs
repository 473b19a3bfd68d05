//! Properties of the registry under any sequence of registrations, refreshes, replays, removals,
//! relayed records and sweeps, within a small budget: its indexes agree with its records, its
//! memory estimate equals a recount and never exceeds the budget, and a sweep after every TTL
//! releases everything.
//!
//! Signatures are not checked here (the registry trusts its caller for that, see
//! [`Registry::upsert`]), so records carry a placeholder one and the cases run fast.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use libp2p_identity::{Keypair, PublicKey};
use proptest::prelude::*;

use super::footprint;
use super::{Registry, RegistryConfig, Source};
use crate::record::{
    PeerRecord, SignedPeerRecord, SignedUnregister, StoreEntry, UnregisterRequest, encode_base64,
};

const PEERS: usize = 6;
static KEYS: LazyLock<Vec<Keypair>> =
    LazyLock::new(|| (0..PEERS).map(|_| Keypair::generate_ed25519()).collect());
const START_MS: u64 = 1_700_000_000_000;
const NETWORKS: [&str; 2] = ["mainnet", "testnet"];

#[derive(Clone, Debug)]
enum Op {
    Register {
        peer: usize,
        network: usize,
        stores: Vec<(u8, u64)>,
        addresses: u8,
        skew_ms: i64,
        federated: bool,
    },
    Unregister {
        peer: usize,
        network: usize,
        skew_ms: i64,
        federated: bool,
    },
    Advance(u64),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    let skew = prop_oneof![-2_000i64..2_000, -300_000i64..300_000];
    prop_oneof![
        5 => (
            0..PEERS,
            0..2usize,
            proptest::collection::vec((0u8..16, 0u64..4), 0..12),
            0u8..4,
            skew.clone(),
            any::<bool>()
        )
            .prop_map(|(peer, network, stores, addresses, skew_ms, federated)| Op::Register {
                peer,
                network,
                stores,
                addresses,
                skew_ms,
                federated,
            }),
        2 => (0..PEERS, 0..2usize, skew, any::<bool>()).prop_map(
            |(peer, network, skew_ms, federated)| Op::Unregister {
                peer,
                network,
                skew_ms,
                federated,
            }
        ),
        1 => (1u64..120_000).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
    ]
}

fn key(peer: usize) -> PublicKey {
    KEYS[peer].public()
}

fn store_name(id: u8) -> String {
    // Some long names, so that store names weigh in the budget.
    if id.is_multiple_of(4) {
        format!("{}-{id}", "n".repeat(100))
    } else {
        format!("s{id}")
    }
}

fn record(
    peer: usize,
    network: usize,
    stores: &[(u8, u64)],
    addresses: u8,
    timestamp_ms: u64,
) -> SignedPeerRecord {
    let mut names = BTreeSet::new();
    SignedPeerRecord {
        record: PeerRecord {
            peer_id: key(peer).to_peer_id().to_base58(),
            network_id: NETWORKS[network].to_owned(),
            addresses: (0..addresses)
                .map(|i| format!("/ip4/10.0.0.{i}/tcp/4001"))
                .collect(),
            stores: stores
                .iter()
                .filter(|(id, _)| names.insert(*id))
                .map(|(id, lamport)| StoreEntry {
                    name: store_name(*id),
                    size: u64::from(*id),
                    hash: format!("{lamport:064x}"),
                    lamport: *lamport,
                })
                .collect(),
            agent_version: format!("dig-sidecar/0.{peer}"),
            timestamp_ms,
        },
        public_key: encode_base64(&key(peer).encode_protobuf()),
        signature: encode_base64(&[7u8; 64]),
    }
}

fn removal(peer: usize, network: usize, timestamp_ms: u64) -> SignedUnregister {
    SignedUnregister {
        request: UnregisterRequest {
            peer_id: key(peer).to_peer_id().to_base58(),
            network_id: NETWORKS[network].to_owned(),
            timestamp_ms,
        },
        public_key: encode_base64(&key(peer).encode_protobuf()),
        signature: encode_base64(&[9u8; 64]),
    }
}

impl Registry {
    /// Every index agrees with the slots, and the memory charged equals a recount.
    fn check_invariants(&self) -> Result<(), TestCaseError> {
        let slots: Vec<_> = self.slots.iter().collect();
        prop_assert_eq!(slots.len(), self.slots.len());
        prop_assert_eq!(self.recency.all().len(), slots.len());
        let (feed_records, feed_removals) = self.feed.entries();
        prop_assert_eq!(feed_records.len(), slots.len());
        let mut record_bytes = 0;
        let mut store_entries = 0;
        for (index, slot) in &slots {
            prop_assert_eq!(self.slots.find(&slot.public_key), Some(*index));
            prop_assert!(self.recency.all().contains(&(slot.last_seen_ms, *index)));
            prop_assert!(
                self.recency
                    .network(&slot.network)
                    .is_some_and(|set| set.contains(&(slot.last_seen_ms, *index)))
            );
            prop_assert_eq!(feed_records.get(&slot.seq), Some(index));
            for store in slot.stores.iter() {
                prop_assert_eq!(
                    self.store_names
                        .holders(store.name)
                        .get(store.holder_pos as usize),
                    Some(index)
                );
            }
            record_bytes += footprint::record_of(slot);
            store_entries += slot.stores.len();
        }
        prop_assert_eq!(record_bytes, self.record_bytes);
        prop_assert_eq!(store_entries, self.store_entries);
        for (id, name, holders) in self.store_names.iter() {
            prop_assert!(!holders.is_empty(), "name {} held by nobody", name);
            prop_assert_eq!(self.store_names.id(name), Some(id));
            for holder in holders {
                prop_assert!(self.slots.get(*holder).stores.iter().any(|s| s.name == id));
            }
        }
        prop_assert_eq!(self.store_names.recount_bytes(), self.store_names.bytes());
        prop_assert_eq!(self.tombstones.recount_bytes(), self.tombstones.bytes());
        prop_assert_eq!(feed_removals.len(), self.tombstones.len());
        for (key, tombstone) in self.tombstones.iter() {
            prop_assert_eq!(feed_removals.get(&tombstone.seq), Some(key));
            prop_assert!(
                self.slots.find(key).is_none(),
                "a removed peer has no record"
            );
        }
        prop_assert!(
            self.state_bytes() <= self.config.max_state_bytes,
            "{} bytes held, budget {}",
            self.state_bytes(),
            self.config.max_state_bytes
        );
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn indexes_and_budget_hold_under_any_sequence(
        ops in proptest::collection::vec(op(), 1..60),
        budget_kib in 4usize..24,
    ) {
        let config = RegistryConfig {
            ttl_ms: 180_000,
            max_peers: 4,
            max_state_bytes: budget_kib * 1024,
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let mut now = START_MS;
        for op in &ops {
            let source = |federated: bool| if federated { Source::Federated } else { Source::Direct };
            match op {
                Op::Register { peer, network, stores, addresses, skew_ms, federated } => {
                    let at = now.saturating_add_signed(*skew_ms);
                    let signed = record(*peer, *network, stores, *addresses, at);
                    let before = registry.state_bytes();
                    let held = registry.slots.find(&key(*peer).try_into_ed25519().unwrap().to_bytes()).is_some();
                    if let Err(error) = registry.upsert(&signed, &key(*peer), source(*federated), now)
                        && error.is_capacity()
                    {
                        prop_assert!(!held || registry.state_bytes() == before);
                    }
                }
                Op::Unregister { peer, network, skew_ms, federated } => {
                    let at = now.saturating_add_signed(*skew_ms);
                    let _ = registry.unregister(&removal(*peer, *network, at), &key(*peer), source(*federated), now);
                }
                Op::Advance(ms) => now += ms,
                Op::Sweep => {
                    registry.sweep(now);
                }
            }
            registry.check_invariants()?;
        }
        let generation = registry.generation();
        registry.sweep(now + 180_000 + 60_000 + 1);
        registry.check_invariants()?;
        prop_assert!(registry.is_empty());
        prop_assert_eq!(registry.store_count(), 0);
        prop_assert_eq!(registry.removal_count(), 0);
        prop_assert_eq!(registry.state_bytes(), 0);
        prop_assert!(registry.generation() >= generation);
    }
}
