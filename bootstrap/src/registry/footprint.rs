//! Estimated memory of what the registry holds: the unit of `--max-state-bytes`.
//!
//! An estimate is the size of the structs kept plus their heap blocks plus a fixed overhead per
//! block and per map or tree entry. It errs high (an interned network id or agent version is
//! charged to every record that names it), so the budget holds; the load bench prints it beside
//! the process's resident memory.

use std::mem::size_of;

use super::slots::{PeerSlot, StoredStore};

/// Allocator bookkeeping and rounding of one heap block.
pub(super) const BLOCK: usize = 16;
/// Control bytes and spare capacity of a hash map entry (load factor at most 7/8, growth x2).
pub(super) const HASH_ENTRY: usize = 24;
/// Share of a B-tree node's spare room and child pointers, per entry.
pub(super) const TREE_ENTRY: usize = 16;

/// One slot number in a store's holder list (doubling growth: up to twice the length).
pub(super) const HOLDER: usize = 2 * size_of::<u32>();

/// A record of `peer_id_len`, `addresses_len` (joined), `stores` entries and the texts of its
/// network and agent version, with its entries in the key map, the two recency trees and the
/// change feed. Its store names and holder entries are charged by the store-name table.
pub(super) fn record(
    peer_id_len: usize,
    addresses_len: usize,
    stores: usize,
    network_len: usize,
    agent_version_len: usize,
) -> usize {
    let slot = size_of::<Option<PeerSlot>>();
    let heap = 3 * BLOCK + peer_id_len + addresses_len + stores * size_of::<StoredStore>();
    let shared = 2 * (BLOCK + 16) + network_len + agent_version_len;
    let key_entry = size_of::<([u8; 32], u32)>() + HASH_ENTRY;
    let tree_entries = 3 * (size_of::<(u64, u32)>() + TREE_ENTRY);
    slot + heap + shared + key_entry + tree_entries
}

pub(super) fn record_of(slot: &PeerSlot) -> usize {
    record(
        slot.peer_id.len(),
        slot.addresses.len(),
        slot.stores.len(),
        slot.network.len(),
        slot.agent_version.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_grow_with_every_length_and_count() {
        let base = record(52, 60, 10, 7, 17);
        assert!(base > 500, "{base}");
        assert!(record(53, 60, 10, 7, 17) > base);
        assert!(record(52, 61, 10, 7, 17) > base);
        assert!(record(52, 60, 11, 7, 17) >= base + size_of::<StoredStore>());
    }
}
