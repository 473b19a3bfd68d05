//! The change feed sibling servers pull (`GET /records`): every live record and remembered
//! removal at the position of its last change, re-encoded as the signed wire types (each still
//! verifies), in pages bounded by count and by encoded size.

use libp2p_identity::{PublicKey, ed25519};

use super::Registry;
use super::slots::PeerSlot;
use crate::api::RecordsResponse;
use crate::record::{
    PeerRecord, SignedPeerRecord, SignedUnregister, StoreEntry, UnregisterRequest, encode_base64,
};

/// Bytes of the JSON around the variable texts of one signed record or removal (member names,
/// quotes, key and signature, numbers at their longest): an upper bound for the page size.
const ENTRY_OVERHEAD: usize = 400;
/// The same for one store entry, beside its name.
const STORE_OVERHEAD: usize = 160;

fn encoded_public_key(bytes: &[u8; 32]) -> String {
    // The bytes came from a decoded ed25519 key, so they decode again.
    let key = ed25519::PublicKey::try_from_bytes(bytes).expect("stored ed25519 key bytes");
    encode_base64(&PublicKey::from(key).encode_protobuf())
}

impl Registry {
    /// The cursor a page after `after` is rendered from (see `FeedPositions::settle`).
    pub fn settled_cursor(&self, after: u64) -> u64 {
        self.feed.settle(after)
    }

    fn signed_record(&self, slot: &PeerSlot) -> SignedPeerRecord {
        SignedPeerRecord {
            record: PeerRecord {
                peer_id: slot.peer_id.to_string(),
                network_id: slot.network.to_string(),
                addresses: slot.addresses().map(str::to_owned).collect(),
                stores: slot.stores.iter().map(|s| self.store_entry(s)).collect(),
                agent_version: slot.agent_version.to_string(),
                timestamp_ms: slot.timestamp_ms,
            },
            public_key: encoded_public_key(&slot.public_key),
            signature: encode_base64(&slot.signature),
        }
    }

    fn encoded_size(&self, slot: &PeerSlot) -> usize {
        let stores: usize = slot
            .stores
            .iter()
            .map(|s| STORE_OVERHEAD + self.store_names.name(s.name).len())
            .sum();
        ENTRY_OVERHEAD
            + slot.peer_id.len()
            + slot.network.len()
            + slot.agent_version.len()
            + slot.addresses.len()
            + 3 * slot.stores.len().max(1)
            + stores
    }

    /// `GET /records`: the signed records and removals changed after `after`, oldest change
    /// first: at most `limit` of them and, past the first, at most the configured page bytes.
    pub fn records_page(
        &self,
        after: u64,
        limit: usize,
        now_ms: u64,
        epoch: &str,
    ) -> RecordsResponse {
        let cutoff = now_ms.saturating_sub(self.config.ttl_ms);
        let mut records = Vec::new();
        let mut removals = Vec::new();
        let mut next_cursor = after;
        let mut more = false;
        let mut bytes = 0;
        let from = after.saturating_add(1);
        let mut peers = self.feed.records.range(from..).peekable();
        let mut gone = self.feed.removals.range(from..).peekable();
        let mut taken = 0;
        loop {
            // Merge the two feeds by sequence number.
            let take_peer = match (peers.peek(), gone.peek()) {
                (Some((a, _)), Some((b, _))) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let size = if take_peer {
                let (_, index) = peers.peek().expect("peeked");
                self.encoded_size(self.slots.get(**index))
            } else {
                ENTRY_OVERHEAD
            };
            if taken == limit || (taken > 0 && bytes + size > self.config.records_page_bytes) {
                more = true;
                break;
            }
            taken += 1;
            bytes += size;
            if take_peer {
                let (&seq, &index) = peers.next().expect("peeked");
                next_cursor = seq;
                let slot = self.slots.get(index);
                if slot.last_seen_ms > cutoff {
                    records.push(self.signed_record(slot));
                }
            } else {
                let (&seq, key) = gone.next().expect("peeked");
                next_cursor = seq;
                if let Some(t) = self.tombstones.get(key) {
                    removals.push(SignedUnregister {
                        request: UnregisterRequest {
                            peer_id: t.peer_id.to_string(),
                            network_id: t.network.to_string(),
                            timestamp_ms: t.timestamp_ms,
                        },
                        public_key: encoded_public_key(key),
                        signature: encode_base64(&t.signature),
                    });
                }
            }
        }
        RecordsResponse {
            epoch: epoch.to_owned(),
            records,
            removals,
            next_cursor,
            more,
        }
    }

    pub(super) fn store_entry(&self, store: &super::slots::StoredStore) -> StoreEntry {
        StoreEntry {
            name: self.store_names.name(store.name).to_string(),
            size: store.size,
            hash: hex::encode(store.hash),
            lamport: store.lamport,
        }
    }
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::super::test_support::{accept, removal, remove, signed, signed_at};
    use super::super::{Registry, RegistryConfig};
    use crate::record::RecordLimits;
    use dig_core::clock::now_ms;

    #[test]
    fn records_feed_relays_verifiable_records_in_pages() {
        let mut registry = Registry::new(RegistryConfig::default());
        let now = now_ms();
        let keys: Vec<Keypair> = (0..5).map(|_| Keypair::generate_ed25519()).collect();
        for (i, keypair) in keys.iter().enumerate() {
            let record = signed(keypair, &[("s1", i as u64), ("s2", 7)], now);
            accept(&mut registry, &record, now).unwrap();
        }
        let first = registry.records_page(0, 3, now, "e");
        assert_eq!(first.records.len(), 3);
        assert!(first.more);
        let second = registry.records_page(first.next_cursor, 3, now, "e");
        assert_eq!(second.records.len(), 2);
        assert!(!second.more);
        for record in first.records.iter().chain(&second.records) {
            record
                .validate_and_verify(&RecordLimits::default())
                .unwrap();
        }
        // A refresh moves the peer to the end of the feed.
        let refreshed = signed(&keys[0], &[("s1", 9)], now + 1);
        accept(&mut registry, &refreshed, now + 1).unwrap();
        let third = registry.records_page(second.next_cursor, 10, now + 1, "e");
        assert_eq!(third.records, vec![refreshed]);
    }

    #[test]
    fn pages_are_bounded_by_encoded_size_and_never_empty() {
        let config = RegistryConfig {
            records_page_bytes: 4_000,
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let now = now_ms();
        let stores: Vec<(String, u64)> = (0..20).map(|i| (format!("store-{i:03}"), 1)).collect();
        let stores: Vec<(&str, u64)> = stores.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        for _ in 0..6 {
            let keypair = Keypair::generate_ed25519();
            accept(&mut registry, &signed(&keypair, &stores, now), now).unwrap();
        }
        let mut cursor = 0;
        let mut pages = 0;
        let mut seen = 0;
        loop {
            let page = registry.records_page(cursor, 5_000, now, "e");
            let encoded = serde_json::to_vec(&page).unwrap().len();
            assert!(!page.records.is_empty(), "a page holds at least one entry");
            assert!(
                page.records.len() == 1 || encoded <= 4_000,
                "{} records in {encoded} bytes",
                page.records.len()
            );
            seen += page.records.len();
            pages += 1;
            cursor = page.next_cursor;
            if !page.more {
                break;
            }
        }
        assert_eq!(seen, 6);
        assert!(pages >= 3, "{pages} pages");
        // A record larger than a page still travels, alone.
        registry.config.records_page_bytes = 10;
        let page = registry.records_page(0, 10, now, "e");
        assert_eq!((page.records.len(), page.more), (1, true));
    }

    #[test]
    fn cursors_between_changes_settle_on_the_change_before() {
        let mut registry = Registry::new(RegistryConfig::default());
        let now = now_ms();
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        accept(&mut registry, &signed(&a, &[], now), now).unwrap();
        accept(&mut registry, &signed(&b, &[], now), now).unwrap();
        // a's refresh leaves position 1 empty; b's removal moves it to position 4.
        accept(&mut registry, &signed_at(&a, now + 1), now + 1).unwrap();
        remove(&mut registry, &removal(&b, now + 2), now + 2).unwrap();
        assert_eq!(registry.settled_cursor(0), 0);
        assert_eq!(registry.settled_cursor(2), 0);
        assert_eq!(registry.settled_cursor(3), 3);
        assert_eq!(registry.settled_cursor(1_000), 4);
        for after in [0, 1, 2] {
            assert_eq!(
                registry.records_page(after, 10, now + 2, "e"),
                registry.records_page(0, 10, now + 2, "e")
            );
        }
    }
}
