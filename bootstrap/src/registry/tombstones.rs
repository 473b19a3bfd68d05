//! Remembered removals, so that an older record (replayed, or relayed late by a sibling) cannot
//! bring a removed peer back. Each is kept for a TTL plus the clock skew, the age of the oldest
//! record it could block.
//!
//! A removal of a key with no record here ("orphan": anyone can sign one with a fresh key) is
//! still kept, since a sibling may relay that peer's older record later, but orphans share a
//! bounded part of the memory budget, oldest forgotten first; they never crowd out records.

use std::collections::{BTreeMap, HashMap};
use std::mem::size_of;
use std::sync::Arc;

use super::footprint;

pub(super) struct Tombstone {
    pub peer_id: Box<str>,
    pub network: Arc<str>,
    pub timestamp_ms: u64,
    pub signature: [u8; 64],
    pub removed_at_ms: u64,
    /// Position in the change feed.
    pub seq: u64,
    /// Kept although no record was removed (see the module comment).
    pub orphan: bool,
}

impl Tombstone {
    fn bytes(&self) -> usize {
        tombstone_bytes(self.peer_id.len(), self.network.len())
    }
}

/// How much memory removals may take.
#[derive(Clone, Copy, Debug)]
pub(super) struct TombstoneLimits {
    pub total_bytes: usize,
    pub orphan_bytes: usize,
}

#[derive(Default)]
pub(super) struct Tombstones {
    by_key: HashMap<[u8; 32], Tombstone>,
    /// Orphans oldest first, by feed position.
    orphans: BTreeMap<u64, [u8; 32]>,
    bytes: usize,
    orphan_bytes: usize,
}

impl Tombstones {
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    #[cfg(test)]
    pub(super) fn orphans(&self) -> usize {
        self.orphans.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn get(&self, key: &[u8; 32]) -> Option<&Tombstone> {
        self.by_key.get(key)
    }

    /// The estimated memory a tombstone of these lengths takes.
    #[cfg(test)]
    pub(super) fn bytes_of(peer_id_len: usize, network_len: usize) -> usize {
        tombstone_bytes(peer_id_len, network_len)
    }

    /// Keeps `tombstone` for `key` (replacing any held). Returns the feed positions of the
    /// tombstones that left: the replaced one, and orphans forgotten so that orphans stay within
    /// `limits.orphan_bytes` and everything within `limits.total_bytes` (of which `other_bytes`
    /// are taken by records and store names). Only orphans are ever left out.
    pub(super) fn insert(
        &mut self,
        key: [u8; 32],
        tombstone: Tombstone,
        limits: TombstoneLimits,
        other_bytes: usize,
    ) -> Vec<u64> {
        let mut gone = Vec::new();
        if let Some(old) = self.remove(&key) {
            gone.push(old.seq);
        }
        let bytes = tombstone.bytes();
        if tombstone.orphan {
            let over = |this: &Self| {
                this.orphan_bytes + bytes > limits.orphan_bytes
                    || other_bytes + this.bytes + bytes > limits.total_bytes
            };
            while over(self) {
                let Some((_, &oldest)) = self.orphans.first_key_value() else {
                    break;
                };
                gone.push(self.take(&oldest).seq);
            }
            if over(self) {
                // No room even alone: not kept (the answer to the client is the same).
                gone.push(tombstone.seq);
                return gone;
            }
            self.orphans.insert(tombstone.seq, key);
            self.orphan_bytes += bytes;
        }
        self.bytes += bytes;
        self.by_key.insert(key, tombstone);
        gone
    }

    /// Every tombstone with its key.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8; 32], &Tombstone)> {
        self.by_key.iter()
    }

    /// The memory estimate counted again from the tombstones held.
    #[cfg(test)]
    pub(super) fn recount_bytes(&self) -> usize {
        self.by_key.values().map(Tombstone::bytes).sum()
    }

    /// Removes the tombstone of `key`, if any.
    pub(super) fn remove(&mut self, key: &[u8; 32]) -> Option<Tombstone> {
        self.by_key.contains_key(key).then(|| self.take(key))
    }

    fn take(&mut self, key: &[u8; 32]) -> Tombstone {
        let tombstone = self.by_key.remove(key).expect("a held tombstone");
        let bytes = tombstone.bytes();
        self.bytes -= bytes;
        if tombstone.orphan {
            self.orphans.remove(&tombstone.seq);
            self.orphan_bytes -= bytes;
        }
        tombstone
    }

    /// Forgets tombstones removed at or before `cutoff_ms`; returns their feed positions.
    pub(super) fn expire(&mut self, cutoff_ms: u64) -> Vec<u64> {
        let expired: Vec<[u8; 32]> = self
            .by_key
            .iter()
            .filter(|(_, t)| t.removed_at_ms <= cutoff_ms)
            .map(|(key, _)| *key)
            .collect();
        expired.iter().map(|key| self.take(key).seq).collect()
    }
}

/// A removal of a `peer_id_len` peer id: the tombstone in the key map, its feed entry and its
/// place in the eviction order.
pub(super) fn tombstone_bytes(peer_id_len: usize, network_len: usize) -> usize {
    let entry = size_of::<([u8; 32], Tombstone)>() + footprint::HASH_ENTRY;
    let heap = footprint::BLOCK + peer_id_len + footprint::BLOCK + 16 + network_len;
    let trees = 2 * (size_of::<(u64, [u8; 32])>() + footprint::TREE_ENTRY);
    entry + heap + trees
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tombstone(seq: u64, orphan: bool) -> Tombstone {
        Tombstone {
            peer_id: "12D3KooWPeer".into(),
            network: Arc::from("testnet"),
            timestamp_ms: 1,
            signature: [0; 64],
            removed_at_ms: seq,
            seq,
            orphan,
        }
    }

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn orphans_are_forgotten_oldest_first_and_never_crowd_out_others() {
        let one = Tombstones::bytes_of("12D3KooWPeer".len(), "testnet".len());
        let limits = TombstoneLimits {
            total_bytes: 100 * one,
            orphan_bytes: 3 * one,
        };
        let mut held = Tombstones::default();
        for n in 1..=5 {
            let gone = held.insert(key(n), tombstone(u64::from(n), true), limits, 0);
            assert_eq!(
                gone,
                if n > 3 {
                    vec![u64::from(n) - 3]
                } else {
                    vec![]
                }
            );
        }
        assert_eq!((held.len(), held.orphans(), held.bytes()), (3, 3, 3 * one));
        assert!(held.get(&key(2)).is_none() && held.get(&key(3)).is_some());
        // A removal of a held record is kept beyond the orphans' share.
        assert!(
            held.insert(key(9), tombstone(9, false), limits, 0)
                .is_empty()
        );
        assert_eq!(held.len(), 4);
        // With the whole budget taken by records, an orphan evicts older orphans, then is not kept.
        let gone = held.insert(key(10), tombstone(10, true), limits, 99 * one);
        assert_eq!(gone, vec![3, 4, 5, 10]);
        assert_eq!((held.len(), held.orphans()), (1, 0));
        assert_eq!(held.expire(9), vec![9]);
        assert_eq!((held.len(), held.bytes()), (0, 0));
    }
}
