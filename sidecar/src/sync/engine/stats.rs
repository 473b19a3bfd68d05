//! Plain counters kept by the engine. The driver copies them into Prometheus; a simulator reads
//! them directly.

use std::collections::BTreeMap;

use super::rules::Reject;

/// Why a local change was not announced (`dig_sync_refused_local_changes_total{kind}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefusedKind {
    Change,
    Deletion,
    Creation,
}

impl RefusedKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Change => "change",
            Self::Deletion => "deletion",
            Self::Creation => "creation",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Records dropped, by reason.
    pub rejected: BTreeMap<Reject, u64>,
    /// Local changes this node may not write, by kind.
    pub refused_local: BTreeMap<RefusedKind, u64>,
    /// Files kept in `conflicts/`.
    pub conflicts: u64,
    /// Gossip announcements that brought at least one record.
    pub announcements_received: u64,
    /// Announcement messages handed to the driver.
    pub announcements_queued: u64,
    /// Holder notices from direct peers that brought at least one record.
    pub holder_notices_received: u64,
    pub download_failures: BTreeMap<&'static str, u64>,
    /// Downloads installed.
    pub files_received: u64,
    /// Seconds from the start of each download to its install, not yet taken by the driver.
    pub transfer_seconds: Vec<f64>,
    pub peers_banned: u64,
    pub tombstones_pruned: u64,
    /// Concurrent creations that took a store over.
    pub takeovers: u64,
}

impl Stats {
    pub fn reject(&mut self, reason: Reject, count: u64) {
        *self.rejected.entry(reason).or_default() += count;
    }
}
