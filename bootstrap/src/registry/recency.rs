//! Records ordered by when they were last accepted, overall and per network: the order of
//! `/peers` (newest first), of expiry (oldest first) and of the live counts.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// (last seen ms, slot), ascending.
pub(super) type ByLastSeen = BTreeSet<(u64, u32)>;

#[derive(Default)]
pub(super) struct Recency {
    all: ByLastSeen,
    by_network: HashMap<Arc<str>, ByLastSeen>,
}

impl Recency {
    pub(super) fn insert(&mut self, network: &Arc<str>, last_seen_ms: u64, slot: u32) {
        self.all.insert((last_seen_ms, slot));
        self.by_network
            .entry(network.clone())
            .or_default()
            .insert((last_seen_ms, slot));
    }

    pub(super) fn remove(&mut self, network: &Arc<str>, last_seen_ms: u64, slot: u32) {
        self.all.remove(&(last_seen_ms, slot));
        if let Some(set) = self.by_network.get_mut(network) {
            set.remove(&(last_seen_ms, slot));
            if set.is_empty() {
                self.by_network.remove(network);
            }
        }
    }

    pub(super) fn all(&self) -> &ByLastSeen {
        &self.all
    }

    pub(super) fn network(&self, network: &str) -> Option<&ByLastSeen> {
        self.by_network.get(network)
    }

    pub(super) fn networks(&self) -> impl Iterator<Item = (&Arc<str>, &ByLastSeen)> {
        self.by_network.iter()
    }

    /// The least recently seen record.
    pub(super) fn oldest(&self) -> Option<(u64, u32)> {
        self.all.first().copied()
    }

    /// Seen after `after_ms`.
    pub(super) fn seen_after(&self, after_ms: u64) -> usize {
        self.all.range((after_ms.saturating_add(1), 0)..).count()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.all.is_empty() && self.by_network.is_empty()
    }
}

/// Slots of `set` seen after `cutoff_ms`, newest first.
pub(super) fn newest_first(set: &ByLastSeen, cutoff_ms: u64) -> impl Iterator<Item = u32> + '_ {
    set.iter()
        .rev()
        .take_while(move |(last_seen, _)| *last_seen > cutoff_ms)
        .map(|&(_, index)| index)
}

/// How many of `set` were seen after `cutoff_ms`.
pub(super) fn count_after(set: &ByLastSeen, cutoff_ms: u64) -> usize {
    // Expired entries sit at the front until the next sweep; there are few of them.
    let expired = set
        .iter()
        .take_while(|(last_seen, _)| *last_seen <= cutoff_ms)
        .count();
    set.len() - expired
}
