//! Where each live record and remembered removal sits in the change feed (`GET /records`): the
//! sequence number of its last change.

use std::collections::BTreeMap;

/// FeedPositions positions: record slots and removal keys by the sequence number of their last change.
pub(super) struct FeedPositions {
    pub(super) records: BTreeMap<u64, u32>,
    pub(super) removals: BTreeMap<u64, [u8; 32]>,
    next_seq: u64,
}

impl Default for FeedPositions {
    fn default() -> Self {
        Self {
            records: BTreeMap::new(),
            removals: BTreeMap::new(),
            next_seq: 1,
        }
    }
}

impl FeedPositions {
    /// The position of the next change.
    pub(super) fn next(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub(super) fn insert_record(&mut self, seq: u64, slot: u32) {
        self.records.insert(seq, slot);
    }

    pub(super) fn remove_record(&mut self, seq: u64) {
        self.records.remove(&seq);
    }

    pub(super) fn insert_removal(&mut self, seq: u64, key: [u8; 32]) {
        self.removals.insert(seq, key);
    }

    pub(super) fn remove_removal(&mut self, seq: u64) {
        self.removals.remove(&seq);
    }

    /// Record positions and slots, removal positions and keys.
    #[cfg(test)]
    pub(super) fn entries(&self) -> (&BTreeMap<u64, u32>, &BTreeMap<u64, [u8; 32]>) {
        (&self.records, &self.removals)
    }

    /// The last position at or before `after` that holds a change (0 when none does): a page
    /// after either is the same page, so a cursor between changes can share a rendered page.
    pub(super) fn settle(&self, after: u64) -> u64 {
        let last = |map: Option<u64>| map.unwrap_or(0);
        last(self.records.range(..=after).next_back().map(|(s, _)| *s)).max(last(
            self.removals.range(..=after).next_back().map(|(s, _)| *s),
        ))
    }
}
