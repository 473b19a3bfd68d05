//! The read-only views the routes serve: `/peers`, `/peers/store/{store}`, `/stats`, `/topology`.
//! Records past their TTL are hidden here already, before the sweep removes them.

use std::collections::BTreeMap;

use super::Registry;
use super::recency::{self, ByLastSeen};
use crate::api::{
    NetworkTopology, PeerInfo, PeersResponse, StatsResponse, StoreReplication, TopologyResponse,
};
use crate::record::StoreEntry;

impl Registry {
    /// Records last accepted at or before this are expired at `now_ms`.
    fn live_cutoff(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.config.ttl_ms)
    }

    fn live_newest_first<'a>(
        &'a self,
        set: &'a ByLastSeen,
        now_ms: u64,
    ) -> impl Iterator<Item = u32> + 'a {
        recency::newest_first(set, self.live_cutoff(now_ms))
    }

    fn live_count(&self, set: &ByLastSeen, now_ms: u64) -> usize {
        recency::count_after(set, self.live_cutoff(now_ms))
    }

    fn peer_info(&self, index: u32, stores: Option<Vec<StoreEntry>>) -> PeerInfo {
        let slot = self.slots.get(index);
        PeerInfo {
            peer_id: slot.peer_id.to_string(),
            network_id: slot.network.to_string(),
            addresses: slot.addresses().map(str::to_owned).collect(),
            agent_version: slot.agent_version.to_string(),
            last_seen: slot.last_seen_ms,
            timestamp_ms: slot.timestamp_ms,
            expires_at: self.expires_at(slot.last_seen_ms),
            store_count: slot.stores.len(),
            stores,
        }
    }

    /// `GET /peers`: live peers, newest first.
    pub fn peers(
        &self,
        network: Option<&str>,
        limit: usize,
        include_stores: bool,
        now_ms: u64,
    ) -> PeersResponse {
        let set = match network {
            Some(network) => match self.recency.network(network) {
                Some(set) => set,
                None => {
                    return PeersResponse {
                        peers: Vec::new(),
                        count: 0,
                        total: 0,
                        store: None,
                    };
                }
            },
            None => self.recency.all(),
        };
        let peers: Vec<PeerInfo> = self
            .live_newest_first(set, now_ms)
            .take(limit)
            .map(|index| {
                let stores = include_stores.then(|| {
                    self.slots
                        .get(index)
                        .stores
                        .iter()
                        .map(|s| self.store_entry(s))
                        .collect()
                });
                self.peer_info(index, stores)
            })
            .collect();
        PeersResponse {
            count: peers.len(),
            total: self.live_count(set, now_ms),
            peers,
            store: None,
        }
    }

    /// `GET /peers/store/{store}`: live peers holding `store`, newest first, each with its entry
    /// of that store.
    pub fn peers_with_store(
        &self,
        store: &str,
        network: Option<&str>,
        limit: usize,
        now_ms: u64,
    ) -> PeersResponse {
        let cutoff = self.live_cutoff(now_ms);
        let id = self.store_names.id(store);
        let mut holders: Vec<(u64, u32)> = id
            .map(|id| self.store_names.holders(id))
            .unwrap_or_default()
            .iter()
            .filter_map(|&index| {
                let slot = self.slots.get(index);
                let live = slot.last_seen_ms > cutoff;
                let in_network = network.is_none_or(|n| *slot.network == *n);
                (live && in_network).then_some((slot.last_seen_ms, index))
            })
            .collect();
        let total = holders.len();
        let newest_first = |a: &(u64, u32), b: &(u64, u32)| b.cmp(a);
        if holders.len() > limit && limit > 0 {
            holders.select_nth_unstable_by(limit - 1, newest_first);
        }
        holders.truncate(limit);
        holders.sort_unstable_by(newest_first);
        let peers: Vec<PeerInfo> = holders
            .into_iter()
            .map(|(_, index)| {
                let entry = self
                    .slots
                    .get(index)
                    .stores
                    .iter()
                    .filter(|s| Some(s.name) == id)
                    .map(|s| self.store_entry(s))
                    .collect();
                self.peer_info(index, Some(entry))
            })
            .collect();
        PeersResponse {
            count: peers.len(),
            total,
            peers,
            store: Some(store.to_owned()),
        }
    }

    /// `GET /stats`.
    pub fn stats(&self, now_ms: u64, uptime_seconds: u64) -> StatsResponse {
        let live = self.live_count(self.recency.all(), now_ms) as u64;
        let active =
            self.recency
                .seen_after(now_ms.saturating_sub(self.config.active_window_ms)) as u64;
        // Store totals count records until they are swept (at most --sweep-interval after
        // expiry): exact live figures would cost a scan of every record per request.
        let held = self.slots.len();
        let networks = self
            .recency
            .networks()
            .map(|(name, set)| (name.to_string(), self.live_count(set, now_ms) as u64))
            .filter(|(_, count)| *count > 0)
            .collect();
        StatsResponse {
            total_peers: live,
            active_peers: active.min(live),
            total_stores: self.store_names.len() as u64,
            average_stores_per_peer: if held == 0 {
                0.0
            } else {
                self.store_entries as f64 / held as f64
            },
            total_registrations: self.total_registrations,
            uptime_seconds,
            networks,
            peer_ttl_seconds: self.config.ttl_ms / 1000,
            max_peers: self.config.max_peers as u64,
        }
    }

    /// `GET /topology`: replication of every store per network, and peers per agent version.
    pub fn topology(&self, now_ms: u64) -> TopologyResponse {
        #[derive(Default)]
        struct Acc {
            replicas: u64,
            latest_lamport: u64,
            latest_hashes: Vec<[u8; 32]>,
            replicas_at_latest: u64,
            latest_size: u64,
        }
        let mut networks: BTreeMap<&str, (u64, BTreeMap<&str, Acc>)> = BTreeMap::new();
        let mut peers_by_version: BTreeMap<String, u64> = BTreeMap::new();
        let mut total = 0;
        for index in self.live_newest_first(self.recency.all(), now_ms) {
            let slot = self.slots.get(index);
            total += 1;
            *peers_by_version
                .entry(slot.agent_version.to_string())
                .or_default() += 1;
            let (peers, stores) = networks.entry(&slot.network).or_default();
            *peers += 1;
            for store in slot.stores.iter() {
                let acc = stores.entry(self.store_names.name(store.name)).or_default();
                acc.replicas += 1;
                if acc.replicas == 1 || store.lamport > acc.latest_lamport {
                    acc.latest_lamport = store.lamport;
                    acc.latest_hashes = vec![store.hash];
                    acc.replicas_at_latest = 1;
                    acc.latest_size = store.size;
                } else if store.lamport == acc.latest_lamport {
                    acc.replicas_at_latest += 1;
                    if !acc.latest_hashes.contains(&store.hash) {
                        acc.latest_hashes.push(store.hash);
                    }
                }
            }
        }
        let networks = networks
            .into_iter()
            .map(|(network_id, (peers, stores))| {
                let stores: Vec<StoreReplication> = stores
                    .into_iter()
                    .map(|(name, acc)| StoreReplication {
                        name: name.to_owned(),
                        replicas: acc.replicas,
                        latest_lamport: acc.latest_lamport,
                        replicas_at_latest: acc.replicas_at_latest,
                        hashes_at_latest: acc.latest_hashes.len() as u64,
                        latest_size: acc.latest_size,
                    })
                    .collect();
                let under_replicated = stores
                    .iter()
                    .filter(|s| s.replicas_at_latest < peers)
                    .map(|s| s.name.clone())
                    .collect();
                NetworkTopology {
                    network_id: network_id.to_owned(),
                    peers,
                    stores,
                    under_replicated,
                }
            })
            .collect();
        TopologyResponse {
            total_peers: total,
            networks,
            peers_by_version,
        }
    }
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::super::test_support::{accept, signed};
    use super::super::{Registry, RegistryConfig};
    use dig_core::clock::now_ms;

    #[test]
    fn peers_are_newest_first_and_filtered_by_network() {
        let mut registry = Registry::new(RegistryConfig::default());
        let now = now_ms();
        let mut ids = Vec::new();
        for i in 0..4u64 {
            let keypair = Keypair::generate_ed25519();
            ids.push(keypair.public().to_peer_id().to_base58());
            accept(&mut registry, &signed(&keypair, &[("s", 1)], now), now + i).unwrap();
        }
        let page = registry.peers(None, 2, true, now + 4);
        assert_eq!(page.count, 2);
        assert_eq!(page.total, 4);
        assert_eq!(page.peers[0].peer_id, ids[3]);
        assert_eq!(page.peers[1].peer_id, ids[2]);
        assert_eq!(page.peers[0].stores.as_ref().unwrap().len(), 1);
        assert!(
            registry.peers(None, 2, false, now + 4).peers[0]
                .stores
                .is_none()
        );
        assert_eq!(registry.peers(Some("other"), 10, false, now + 4).total, 0);
        assert_eq!(registry.peers(Some("testnet"), 10, false, now + 4).total, 4);
        let holders = registry.peers_with_store("s", None, 3, now + 4);
        assert_eq!(holders.total, 4);
        let got: Vec<_> = holders.peers.iter().map(|p| p.peer_id.clone()).collect();
        assert_eq!(got, vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]);
    }

    #[test]
    fn topology_counts_replicas_and_under_replication() {
        let mut registry = Registry::new(RegistryConfig::default());
        let now = now_ms();
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        accept(&mut registry, &signed(&a, &[("x", 2), ("y", 1)], now), now).unwrap();
        accept(&mut registry, &signed(&b, &[("x", 1)], now), now).unwrap();
        let topology = registry.topology(now);
        assert_eq!(topology.total_peers, 2);
        assert_eq!(topology.peers_by_version["dig-sidecar/0.1.0"], 2);
        let network = &topology.networks[0];
        assert_eq!(network.peers, 2);
        let x = network.stores.iter().find(|s| s.name == "x").unwrap();
        assert_eq!(
            (x.replicas, x.latest_lamport, x.replicas_at_latest),
            (2, 2, 1)
        );
        assert_eq!(
            network.under_replicated,
            vec!["x".to_owned(), "y".to_owned()]
        );
        let stats = registry.stats(now, 0);
        assert_eq!(stats.total_peers, 2);
        assert_eq!(stats.total_stores, 2);
        assert!((stats.average_stores_per_peer - 1.5).abs() < 1e-9);
    }

    #[test]
    fn store_holder_index_stays_consistent_through_removals() {
        let config = RegistryConfig {
            ttl_ms: 10_000,
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let now = now_ms();
        let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate_ed25519()).collect();
        for (i, keypair) in keys.iter().enumerate() {
            let stores: &[(&str, u64)] = if i % 2 == 0 {
                &[("s", 1), ("t", 1)]
            } else {
                &[("t", 1), ("s", 1)]
            };
            accept(&mut registry, &signed(keypair, stores, now), now + i as u64).unwrap();
        }
        let holders = |r: &Registry, store: &str| {
            let mut ids: Vec<String> = r
                .peers_with_store(store, None, 100, now + 10)
                .peers
                .into_iter()
                .map(|p| p.peer_id)
                .collect();
            ids.sort();
            ids
        };
        let id = |k: &Keypair| k.public().to_peer_id().to_base58();
        // Removing the first holder moves the last one into its place; then remove that one.
        registry.sweep(now + 10_000);
        assert_eq!(registry.len(), 3);
        accept(
            &mut registry,
            &signed(&keys[3], &[("t", 2)], now + 20),
            now + 20,
        )
        .unwrap();
        let mut expected = vec![id(&keys[1]), id(&keys[2])];
        expected.sort();
        assert_eq!(holders(&registry, "s"), expected);
        assert_eq!(holders(&registry, "t").len(), 3);
        registry.sweep(now + 10_003);
        assert_eq!(holders(&registry, "s"), Vec::<String>::new());
        assert_eq!(holders(&registry, "t"), vec![id(&keys[3])]);
        assert_eq!(registry.store_count(), 1);
        // Freed ids are reused without mixing names up.
        accept(
            &mut registry,
            &signed(&keys[0], &[("u", 1)], now + 30),
            now + 30,
        )
        .unwrap();
        assert_eq!(holders(&registry, "u"), vec![id(&keys[0])]);
        assert_eq!(holders(&registry, "t"), vec![id(&keys[3])]);
        let page = registry.peers(None, 10, true, now + 30);
        let names: Vec<_> = page.peers[0]
            .stores
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(names, vec!["u".to_owned()]);
    }
}
