//! Putting a record into every index (recency, store holders, change feed, memory charge) and
//! taking it out again, so that the indexes always agree with the slots.

use super::Registry;
use super::footprint;
use super::slots::PeerSlot;
use super::store_names::HolderRemoved;

impl Registry {
    /// Puts `slot` at the allocated number `index` and into every index.
    pub(super) fn index(&mut self, index: u32, mut slot: PeerSlot) {
        self.recency.insert(&slot.network, slot.last_seen_ms, index);
        for store in slot.stores.iter_mut() {
            store.holder_pos = self.store_names.add_holder(store.name, index);
        }
        self.store_entries += slot.stores.len();
        self.record_bytes += footprint::record_of(&slot);
        self.feed.insert_record(slot.seq, index);
        self.slots.put(index, slot);
    }

    /// Takes the record at `index` out of every index; its number stays allocated to its key.
    pub(super) fn unindex(&mut self, index: u32) -> PeerSlot {
        let slot = self.slots.take(index);
        self.recency.remove(&slot.network, slot.last_seen_ms, index);
        for store in slot.stores.iter() {
            match self.store_names.remove_holder(store.name, store.holder_pos) {
                HolderRemoved::Moved { slot: moved } => {
                    // The last holder moved into this position: its back-pointer follows.
                    let moved = self.slots.get_mut(moved);
                    if let Some(entry) = moved.stores.iter_mut().find(|s| s.name == store.name) {
                        entry.holder_pos = store.holder_pos;
                    }
                }
                HolderRemoved::NameFreed | HolderRemoved::Nothing => {}
            }
        }
        self.store_entries -= slot.stores.len();
        self.record_bytes -= footprint::record_of(&slot);
        self.feed.remove_record(slot.seq);
        slot
    }

    /// Removes the record at `index` entirely and frees its number.
    pub(super) fn remove_slot(&mut self, index: u32) -> PeerSlot {
        let slot = self.unindex(index);
        self.slots.release(index, &slot.public_key);
        slot
    }
}
