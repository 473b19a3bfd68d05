//! Storage of the live records: a compact slot per peer, reused after removal, found by public key.
//!
//! Indexes elsewhere refer to a record by its slot number (a `u32`), not by key or pointer.

use std::collections::HashMap;
use std::sync::Arc;

/// One store of a record, its name interned as an id of [`super::store_names::StoreNames`].
pub(super) struct StoredStore {
    pub name: u32,
    /// Position of this peer in the store's holder list (O(1) removal).
    pub holder_pos: u32,
    pub size: u64,
    pub lamport: u64,
    pub hash: [u8; 32],
}

/// One peer's record, kept as fixed arrays and shared strings. The signature still verifies: it
/// covers canonical bytes re-encodable from these fields.
pub(super) struct PeerSlot {
    pub public_key: [u8; 32],
    pub peer_id: Box<str>,
    pub signature: [u8; 64],
    pub network: Arc<str>,
    pub agent_version: Arc<str>,
    /// Multiaddrs joined by '\n' (one allocation; validated addresses hold no control chars).
    pub addresses: Box<str>,
    pub stores: Box<[StoredStore]>,
    pub timestamp_ms: u64,
    pub last_seen_ms: u64,
    /// Position in the change feed.
    pub seq: u64,
}

impl PeerSlot {
    pub(super) fn addresses(&self) -> impl Iterator<Item = &str> {
        self.addresses.split('\n').filter(|a| !a.is_empty())
    }
}

/// Slots by number, free numbers for reuse, and the number of each public key.
#[derive(Default)]
pub(super) struct Slots {
    slots: Vec<Option<PeerSlot>>,
    free: Vec<u32>,
    by_key: HashMap<[u8; 32], u32>,
}

impl Slots {
    /// Records held.
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(super) fn find(&self, key: &[u8; 32]) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    pub(super) fn get(&self, index: u32) -> &PeerSlot {
        self.slots[index as usize]
            .as_ref()
            .expect("indexes only point at occupied slots")
    }

    pub(super) fn get_mut(&mut self, index: u32) -> &mut PeerSlot {
        self.slots[index as usize]
            .as_mut()
            .expect("indexes only point at occupied slots")
    }

    /// A free number for the record of `key`, which must not be held yet; fill it with [`Self::put`].
    pub(super) fn allocate(&mut self, key: [u8; 32]) -> u32 {
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            (self.slots.len() - 1) as u32
        });
        self.by_key.insert(key, index);
        index
    }

    pub(super) fn put(&mut self, index: u32, slot: PeerSlot) {
        self.slots[index as usize] = Some(slot);
    }

    /// Empties slot `index`, keeping its number for the same key (a refresh puts the new record).
    pub(super) fn take(&mut self, index: u32) -> PeerSlot {
        self.slots[index as usize]
            .take()
            .expect("take of an occupied slot")
    }

    /// Every occupied slot with its number.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &PeerSlot)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| slot.as_ref().map(|slot| (i as u32, slot)))
    }

    /// Forgets the key of the emptied slot `index` and frees its number.
    pub(super) fn release(&mut self, index: u32, key: &[u8; 32]) {
        debug_assert!(self.slots[index as usize].is_none());
        self.by_key.remove(key);
        self.free.push(index);
    }
}
