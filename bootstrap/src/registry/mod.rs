//! The in-memory soft state: live peer records, their indexes, expiry, removals, and the views
//! the routes serve. Pure data structure, no IO: the server wraps it in a lock.
//!
//! Records are kept compactly (interned store names, networks and agent versions; hashes, keys and
//! signatures as fixed arrays) because a registry holds 100,000 peers of many stores each. The
//! signature still verifies later: it covers canonical bytes re-encodable from these fields.
//! Everything held is charged to a memory budget (`--max-state-bytes`) by estimate.
//!
//! - [`error`]: sources, outcomes and refusals.
//! - `admission`: the rules a record or removal must pass (network, freshness, replay, capacity).
//! - `index`: putting a record into every index and taking it out again.
//! - `expiry`: the TTL sweep.
//! - `views`: `/peers`, `/peers/store/{store}`, `/stats`, `/topology`.
//! - `feed`: the change feed siblings pull (`/records`); `feed_positions`: where each change sits.
//! - `slots`, `store_names`, `recency`, `tombstones`, `interner`: the storage and its indexes.
//! - `footprint`: the memory estimates.

mod admission;
mod error;
mod expiry;
mod feed;
mod feed_positions;
mod footprint;
mod index;
mod interner;
mod recency;
mod slots;
mod store_names;
mod tombstones;
mod views;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod test_support;

pub use error::{RegistryError, Removed, Source, Upserted};

use crate::record::RecordLimits;
use feed_positions::FeedPositions;
use interner::Interner;
use recency::Recency;
use slots::Slots;
use store_names::StoreNames;
use tombstones::Tombstones;

/// Limits and timings of a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// A record expires this long after it was last accepted.
    pub ttl_ms: u64,
    /// Most live peers; registrations of new peers beyond it are refused.
    pub max_peers: usize,
    /// Most memory (estimated) records, store names and removals may take together; records
    /// that do not fit are refused.
    pub max_state_bytes: usize,
    /// Bounds on each record's fields.
    pub limits: RecordLimits,
    /// How far a directly registered timestamp may be from the server's clock.
    pub max_clock_skew_ms: u64,
    /// Peers seen within this window count as active in `/stats`.
    pub active_window_ms: u64,
    /// Network ids accepted; empty means any.
    pub allowed_networks: Vec<String>,
    /// Most encoded bytes of a `/records` page (a page holds at least one entry).
    pub records_page_bytes: usize,
}

/// Default of [`RegistryConfig::max_state_bytes`] and of `--max-state-bytes`: 256 MiB.
pub const DEFAULT_MAX_STATE_BYTES: usize = 256 * 1024 * 1024;
/// Default of [`RegistryConfig::records_page_bytes`]: 1 MiB.
pub const DEFAULT_RECORDS_PAGE_BYTES: usize = 1024 * 1024;
/// Share of the memory budget removals of keys with no record may take (one eighth).
const ORPHAN_REMOVALS_SHARE: usize = 8;

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 180_000,
            max_peers: 100_000,
            max_state_bytes: DEFAULT_MAX_STATE_BYTES,
            limits: RecordLimits::default(),
            max_clock_skew_ms: 60_000,
            active_window_ms: 90_000,
            allowed_networks: Vec::new(),
            records_page_bytes: DEFAULT_RECORDS_PAGE_BYTES,
        }
    }
}

/// The registry's state. Not thread-safe by itself; the server holds it behind a lock.
pub struct Registry {
    config: RegistryConfig,
    slots: Slots,
    recency: Recency,
    store_names: StoreNames,
    feed: FeedPositions,
    tombstones: Tombstones,
    interner: Interner,
    /// Estimated memory of the records in `slots` and their index entries.
    record_bytes: usize,
    /// Store entries of all records (for the average in `/stats`).
    store_entries: usize,
    total_registrations: u64,
    /// Bumped on every change, so rendered views can be reused until the next one.
    generation: u64,
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            slots: Slots::default(),
            recency: Recency::default(),
            store_names: StoreNames::default(),
            feed: FeedPositions::default(),
            tombstones: Tombstones::default(),
            interner: Interner::default(),
            record_bytes: 0,
            store_entries: 0,
            total_registrations: 0,
            generation: 0,
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Peers held, including expired ones the next sweep removes.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.len() == 0
    }

    /// Distinct store names held.
    pub fn store_count(&self) -> usize {
        self.store_names.len()
    }

    /// Removals remembered (to block older records of removed peers).
    pub fn removal_count(&self) -> usize {
        self.tombstones.len()
    }

    /// Estimated memory of everything held, the figure `--max-state-bytes` bounds.
    pub fn state_bytes(&self) -> usize {
        self.record_bytes + self.store_names.bytes() + self.tombstones.bytes()
    }

    /// Changes with every accepted record, removal or expiry.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn total_registrations(&self) -> u64 {
        self.total_registrations
    }

    fn expires_at(&self, last_seen_ms: u64) -> u64 {
        last_seen_ms.saturating_add(self.config.ttl_ms)
    }

    fn orphan_removal_bytes(&self) -> usize {
        self.config.max_state_bytes / ORPHAN_REMOVALS_SHARE
    }
}
