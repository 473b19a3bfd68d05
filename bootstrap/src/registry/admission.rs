//! The rules a verified record or removal must pass before it changes the state: the network is
//! served, the timestamp is fresh and newer than what is held (no replay), and there is room
//! (`--max-peers`, `--max-state-bytes`).

use libp2p_identity::PublicKey;

use super::Registry;
use super::error::{RegistryError, Removed, Source, Upserted};
use super::footprint;
use super::slots::{PeerSlot, StoredStore};
use super::store_names::{self, StoreNames};
use super::tombstones::{Tombstone, TombstoneLimits};
use crate::record::{
    PeerRecord, RecordError, SignedPeerRecord, SignedUnregister, decode_signature_bytes, parse_hash,
};

fn ed25519_bytes(key: &PublicKey) -> Result<[u8; 32], RecordError> {
    key.clone()
        .try_into_ed25519()
        .map(|k| k.to_bytes())
        .map_err(|_| RecordError::PublicKey {
            detail: "only ed25519 identity keys are accepted".to_owned(),
        })
}

/// Memory a record would add: its own estimate, its holder entries and the names not held yet.
fn record_cost(record: &PeerRecord, names: &StoreNames) -> usize {
    let new_names: usize = record
        .stores
        .iter()
        .filter(|s| names.id(&s.name).is_none())
        .map(|s| store_names::store_name_bytes(s.name.len()))
        .sum();
    footprint::record(
        record.peer_id.len(),
        record.addresses.iter().map(|a| a.len() + 1).sum(),
        record.stores.len(),
        record.network_id.len(),
        record.agent_version.len(),
    ) + record.stores.len() * footprint::HOLDER
        + new_names
}

/// Memory the record in `slot` frees when it leaves (its names may stay, held by others).
fn slot_cost(slot: &PeerSlot) -> usize {
    footprint::record_of(slot) + slot.stores.len() * footprint::HOLDER
}

impl Registry {
    fn check_network(&self, field: &'static str, network_id: &str) -> Result<(), RegistryError> {
        if self.config.allowed_networks.is_empty()
            || self.config.allowed_networks.iter().any(|n| n == network_id)
        {
            return Ok(());
        }
        Err(RegistryError::WrongNetwork {
            field,
            network_id: network_id.to_owned(),
            served: self.config.allowed_networks.join(", "),
        })
    }

    /// The timestamp is at most the clock skew ahead, and at most `max_age_ms` behind.
    fn check_fresh(
        &self,
        field: &'static str,
        timestamp_ms: u64,
        source: Source,
        now_ms: u64,
    ) -> Result<(), RegistryError> {
        // A relayed record may be as old as a TTL: its node registered with the sibling earlier.
        let max_age_ms = match source {
            Source::Direct => self.config.max_clock_skew_ms,
            Source::Federated => self.config.ttl_ms,
        };
        if timestamp_ms > now_ms.saturating_add(self.config.max_clock_skew_ms) {
            return Err(RegistryError::FutureTimestamp {
                field,
                timestamp_ms,
                ahead_ms: timestamp_ms - now_ms,
                limit_ms: self.config.max_clock_skew_ms,
            });
        }
        let age_ms = now_ms.saturating_sub(timestamp_ms);
        if age_ms > max_age_ms {
            return Err(RegistryError::StaleTimestamp {
                field,
                timestamp_ms,
                age_ms,
                limit_ms: max_age_ms,
            });
        }
        Ok(())
    }

    /// Refuses a timestamp not newer than the removal held for `key`.
    fn check_not_removed(
        &self,
        field: &'static str,
        key: &[u8; 32],
        timestamp_ms: u64,
    ) -> Result<(), RegistryError> {
        match self.tombstones.get(key) {
            Some(tombstone) if timestamp_ms <= tombstone.timestamp_ms => {
                Err(RegistryError::NotNewer {
                    field,
                    timestamp_ms,
                    held: "removal",
                    held_ms: tombstone.timestamp_ms,
                })
            }
            _ => Ok(()),
        }
    }

    /// Room for `record`, which replaces the record at `existing` if any. A heartbeat that does
    /// not grow its record always fits, so a full registry never drops the peers it holds.
    fn check_room(&self, record: &PeerRecord, existing: Option<u32>) -> Result<(), RegistryError> {
        if existing.is_none() && self.slots.len() >= self.config.max_peers {
            return Err(RegistryError::Full {
                max_peers: self.config.max_peers,
            });
        }
        let needed = record_cost(record, &self.store_names);
        let freed = existing.map_or(0, |index| slot_cost(self.slots.get(index)));
        let held = self.state_bytes();
        if needed > freed && held.saturating_sub(freed) + needed > self.config.max_state_bytes {
            return Err(RegistryError::MemoryFull {
                needed_bytes: needed,
                held_bytes: held,
                max_bytes: self.config.max_state_bytes,
            });
        }
        Ok(())
    }

    /// Accepts a record whose bounds and signature were already checked
    /// ([`SignedPeerRecord::validate_and_verify`], done outside the lock), applying the freshness,
    /// replay, network and capacity rules.
    pub fn upsert(
        &mut self,
        signed: &SignedPeerRecord,
        key: &PublicKey,
        source: Source,
        now_ms: u64,
    ) -> Result<Upserted, RegistryError> {
        let record = &signed.record;
        const FIELD: &str = "record.timestampMs";
        self.check_network("record.networkId", &record.network_id)?;
        self.check_fresh(FIELD, record.timestamp_ms, source, now_ms)?;
        let key_bytes = ed25519_bytes(key)?;
        let signature = decode_signature_bytes(&signed.signature)?;
        self.check_not_removed(FIELD, &key_bytes, record.timestamp_ms)?;
        let existing = self.slots.find(&key_bytes);
        if let Some(index) = existing {
            let held = self.slots.get(index).timestamp_ms;
            if record.timestamp_ms <= held {
                return Err(RegistryError::NotNewer {
                    field: FIELD,
                    timestamp_ms: record.timestamp_ms,
                    held: "record",
                    held_ms: held,
                });
            }
        }
        self.check_room(record, existing)?;
        let mut hashes = Vec::with_capacity(record.stores.len());
        for (i, store) in record.stores.iter().enumerate() {
            hashes.push(parse_hash(
                &format!("record.stores[{i}].hash"),
                &store.hash,
            )?);
        }

        // Nothing fails from here on. The old record leaves the indexes first, so a store name
        // it alone held is freed before (not after) the new record takes its id.
        if let Some(index) = existing {
            self.unindex(index);
        }
        let stores: Vec<StoredStore> = record
            .stores
            .iter()
            .zip(hashes)
            .map(|(store, hash)| StoredStore {
                name: self.store_names.id_or_insert(&store.name),
                holder_pos: 0,
                size: store.size,
                lamport: store.lamport,
                hash,
            })
            .collect();
        let last_seen_ms = match source {
            Source::Direct => now_ms,
            Source::Federated => record.timestamp_ms.min(now_ms),
        };
        if let Some(tombstone) = self.tombstones.remove(&key_bytes) {
            self.feed.remove_removal(tombstone.seq);
        }
        let slot = PeerSlot {
            public_key: key_bytes,
            peer_id: record.peer_id.as_str().into(),
            signature,
            network: self.interner.intern(&record.network_id),
            agent_version: self.interner.intern(&record.agent_version),
            addresses: record.addresses.join("\n").into_boxed_str(),
            stores: stores.into_boxed_slice(),
            timestamp_ms: record.timestamp_ms,
            last_seen_ms,
            seq: self.feed.next(),
        };
        let expires_at_ms = self.expires_at(last_seen_ms);
        let outcome = match existing {
            Some(index) => {
                self.index(index, slot);
                Upserted::Refreshed { expires_at_ms }
            }
            None => {
                let index = self.slots.allocate(key_bytes);
                self.index(index, slot);
                Upserted::Created { expires_at_ms }
            }
        };
        self.total_registrations += 1;
        self.generation += 1;
        Ok(outcome)
    }

    /// Applies a verified removal ([`SignedUnregister::validate_and_verify`]).
    pub fn unregister(
        &mut self,
        signed: &SignedUnregister,
        key: &PublicKey,
        source: Source,
        now_ms: u64,
    ) -> Result<Removed, RegistryError> {
        let request = &signed.request;
        const FIELD: &str = "request.timestampMs";
        self.check_network("request.networkId", &request.network_id)?;
        self.check_fresh(FIELD, request.timestamp_ms, source, now_ms)?;
        let key_bytes = ed25519_bytes(key)?;
        let signature = decode_signature_bytes(&signed.signature)?;
        self.check_not_removed(FIELD, &key_bytes, request.timestamp_ms)?;
        let mut outcome = Removed::NotFound;
        if let Some(index) = self.slots.find(&key_bytes) {
            let slot = self.slots.get(index);
            if request.timestamp_ms <= slot.timestamp_ms {
                return Err(RegistryError::NotNewer {
                    field: FIELD,
                    timestamp_ms: request.timestamp_ms,
                    held: "record",
                    held_ms: slot.timestamp_ms,
                });
            }
            if *slot.network != *request.network_id {
                return Err(RegistryError::WrongNetwork {
                    field: "request.networkId",
                    network_id: request.network_id.clone(),
                    served: format!("the peer's record is in network {:?}", slot.network),
                });
            }
            self.remove_slot(index);
            outcome = Removed::Removed;
        }
        // A removal that replaces one which removed a record still guards against that record.
        let guards_a_record = outcome == Removed::Removed
            || self.tombstones.get(&key_bytes).is_some_and(|t| !t.orphan);
        let tombstone = Tombstone {
            peer_id: request.peer_id.as_str().into(),
            network: self.interner.intern(&request.network_id),
            timestamp_ms: request.timestamp_ms,
            signature,
            removed_at_ms: now_ms,
            seq: self.feed.next(),
            orphan: !guards_a_record,
        };
        let seq = tombstone.seq;
        let limits = TombstoneLimits {
            total_bytes: self.config.max_state_bytes,
            orphan_bytes: self.orphan_removal_bytes(),
        };
        let others = self.record_bytes + self.store_names.bytes();
        let gone = self.tombstones.insert(key_bytes, tombstone, limits, others);
        for old in &gone {
            self.feed.remove_removal(*old);
        }
        if !gone.contains(&seq) {
            self.feed.insert_removal(seq, key_bytes);
        }
        self.generation += 1;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::super::test_support::{accept, removal, remove, signed, signed_at};
    use super::super::{Registry, RegistryConfig, Removed, Source, Upserted};
    use dig_core::clock::now_ms;

    #[test]
    fn upsert_refresh_and_replay() {
        let mut registry = Registry::new(RegistryConfig::default());
        let keypair = Keypair::generate_ed25519();
        let now = now_ms();
        let first = signed(&keypair, &[("a", 1)], now);
        assert!(matches!(
            accept(&mut registry, &first, now),
            Ok(Upserted::Created { .. })
        ));
        assert_eq!(
            accept(&mut registry, &first, now).unwrap_err().code(),
            "replayed_record"
        );
        let same = signed(&keypair, &[("a", 2)], now + 1);
        accept(&mut registry, &same, now).unwrap();
        assert_eq!(
            registry.peers_with_store("a", None, 10, now).peers[0]
                .stores
                .as_ref()
                .unwrap()[0]
                .lamport,
            2
        );
        let second = signed(&keypair, &[("b", 1)], now + 2);
        assert!(matches!(
            accept(&mut registry, &second, now + 2),
            Ok(Upserted::Refreshed { .. })
        ));
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.store_count(), 1, "store a left the index");
        assert_eq!(registry.peers_with_store("a", None, 10, now + 2).total, 0);
        assert_eq!(registry.peers_with_store("b", None, 10, now + 2).total, 1);
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let mut registry = Registry::new(RegistryConfig::default());
        let keypair = Keypair::generate_ed25519();
        let now = now_ms();
        let old = signed_at(&keypair, now - 61_000);
        assert_eq!(
            accept(&mut registry, &old, now).unwrap_err().code(),
            "stale_timestamp"
        );
        let future = signed_at(&keypair, now + 61_000);
        assert_eq!(
            accept(&mut registry, &future, now).unwrap_err().code(),
            "future_timestamp"
        );
    }

    #[test]
    fn max_peers_refuses_new_peers_but_not_refreshes() {
        let config = RegistryConfig {
            max_peers: 1,
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let now = now_ms();
        let a = Keypair::generate_ed25519();
        accept(&mut registry, &signed_at(&a, now), now).unwrap();
        let b = Keypair::generate_ed25519();
        assert_eq!(
            accept(&mut registry, &signed_at(&b, now), now)
                .unwrap_err()
                .code(),
            "registry_full"
        );
        accept(&mut registry, &signed_at(&a, now + 1), now + 1).unwrap();
    }

    #[test]
    fn unregister_removes_and_blocks_older_records() {
        let mut registry = Registry::new(RegistryConfig::default());
        let keypair = Keypair::generate_ed25519();
        let now = now_ms();
        let record = signed(&keypair, &[("a", 1)], now);
        accept(&mut registry, &record, now).unwrap();
        assert_eq!(
            remove(&mut registry, &removal(&keypair, now + 1), now + 1),
            Ok(Removed::Removed)
        );
        assert!(registry.is_empty());
        // The record signed before the removal cannot come back, even relayed.
        let key = record.verify().unwrap();
        assert_eq!(
            registry
                .upsert(&record, &key, Source::Federated, now + 2)
                .unwrap_err()
                .code(),
            "replayed_record"
        );
        // Removal is relayed.
        let page = registry.records_page(0, 10, now + 2, "e");
        assert_eq!(page.removals.len(), 1);
        page.removals[0].verify().unwrap();
        // A newer record is accepted again.
        accept(&mut registry, &signed_at(&keypair, now + 3), now + 3).unwrap();
        assert_eq!(registry.records_page(0, 10, now + 3, "e").removals.len(), 0);
        assert_eq!(registry.removal_count(), 0);
    }

    #[test]
    fn wrong_network_is_refused_when_networks_are_restricted() {
        let config = RegistryConfig {
            allowed_networks: vec!["mainnet".into()],
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let keypair = Keypair::generate_ed25519();
        let now = now_ms();
        let err = accept(&mut registry, &signed_at(&keypair, now), now).unwrap_err();
        assert_eq!(err.code(), "wrong_network");
        assert_eq!(err.field(), "record.networkId");
    }

    /// A record of ten store names of its own (`s<tag>-<i>`).
    fn ten_store_record(keypair: &Keypair, tag: usize, now: u64) -> crate::SignedPeerRecord {
        let names: Vec<String> = (0..10).map(|i| format!("s{tag}-{i}")).collect();
        let stores: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        signed(keypair, &stores, now)
    }

    #[test]
    fn the_memory_budget_refuses_new_records_but_never_a_heartbeat_that_does_not_grow() {
        let now = now_ms();
        let mut probe = Registry::new(RegistryConfig::default());
        accept(
            &mut probe,
            &ten_store_record(&Keypair::generate_ed25519(), 0, now),
            now,
        )
        .unwrap();
        let one = probe.state_bytes();
        let mut registry = Registry::new(RegistryConfig {
            max_state_bytes: 5 * one + one / 2,
            ..RegistryConfig::default()
        });
        let keys: Vec<Keypair> = (0..8).map(|_| Keypair::generate_ed25519()).collect();
        let mut accepted = 0;
        let mut refused = None;
        for (i, keypair) in keys.iter().enumerate() {
            match accept(&mut registry, &ten_store_record(keypair, i, now), now) {
                Ok(_) => accepted += 1,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        let refused = refused.expect("the budget ran out");
        assert_eq!(accepted, 5);
        assert_eq!(refused.code(), "registry_memory_full");
        assert!(refused.is_capacity());
        assert!(registry.state_bytes() <= registry.config().max_state_bytes);
        // Heartbeats of held peers still pass; a heartbeat that grows past the budget does not.
        accept(
            &mut registry,
            &ten_store_record(&keys[0], 0, now + 1),
            now + 1,
        )
        .unwrap();
        let names: Vec<String> = (0..40).map(|i| format!("grown-{i}")).collect();
        let stores: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let grown = signed(&keys[1], &stores, now + 1);
        assert_eq!(
            accept(&mut registry, &grown, now + 1).unwrap_err().code(),
            "registry_memory_full"
        );
        // A removal frees the room for a new peer.
        remove(&mut registry, &removal(&keys[2], now + 2), now + 2).unwrap();
        accept(
            &mut registry,
            &ten_store_record(&keys[6], 6, now + 2),
            now + 2,
        )
        .unwrap();
    }

    #[test]
    fn removals_of_unknown_keys_stay_within_their_share_and_never_refuse_registrations() {
        let now = now_ms();
        // Room for about ten removals of unknown keys (an eighth of the budget).
        let config = RegistryConfig {
            max_state_bytes: 32 * 1024,
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let mut answered = 0;
        for _ in 0..60 {
            let stranger = Keypair::generate_ed25519();
            assert_eq!(
                remove(&mut registry, &removal(&stranger, now), now),
                Ok(Removed::NotFound)
            );
            answered += 1;
        }
        assert_eq!(answered, 60);
        let held = registry.removal_count();
        assert!(
            registry.state_bytes() <= 32 * 1024 / 8,
            "{} bytes of removals",
            registry.state_bytes()
        );
        assert!((5..20).contains(&held), "{held} removals held");
        assert_eq!(
            registry.records_page(0, 5_000, now, "e").removals.len(),
            held,
            "the feed relays what is held, nothing forgotten"
        );
        // The newest removals are the ones kept.
        let last = Keypair::generate_ed25519();
        remove(&mut registry, &removal(&last, now), now).unwrap();
        let page = registry.records_page(0, 5_000, now, "e");
        assert_eq!(
            page.removals.last().unwrap().request.peer_id,
            last.public().to_peer_id().to_base58()
        );
        // Registrations still fit.
        for _ in 0..10 {
            let keypair = Keypair::generate_ed25519();
            accept(&mut registry, &signed(&keypair, &[("a", 1)], now), now).unwrap();
        }
    }

    #[test]
    fn a_removal_of_a_removed_record_is_kept_whatever_the_orphans() {
        let now = now_ms();
        let mut registry = Registry::new(RegistryConfig {
            max_state_bytes: 16 * 1024,
            ..RegistryConfig::default()
        });
        let keypair = Keypair::generate_ed25519();
        accept(&mut registry, &signed_at(&keypair, now), now).unwrap();
        remove(&mut registry, &removal(&keypair, now + 1), now + 1).unwrap();
        for _ in 0..30 {
            let stranger = Keypair::generate_ed25519();
            remove(&mut registry, &removal(&stranger, now + 1), now + 1).unwrap();
        }
        // The old record is still blocked.
        assert_eq!(
            accept(&mut registry, &signed_at(&keypair, now + 1), now + 1)
                .unwrap_err()
                .code(),
            "replayed_record"
        );
    }
}
