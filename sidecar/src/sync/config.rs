//! Settings of the replication engine (mapped from `dig-sidecar run` flags by the node).

use std::path::PathBuf;
use std::time::Duration;

use super::engine::{WritePolicy, WriteRules};

/// How a node replicates. `Default` gives the documented defaults with `~/.dig` folders.
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// The folder of `<store>.dig` files.
    pub data_dir: PathBuf,
    /// Index, temporary downloads and conflicts live here (default `<data>/.dig-node`).
    pub state_dir: PathBuf,
    /// Turn local deletions into tombstones, and apply remote ones.
    pub propagate_deletes: bool,
    /// Who may write stores (`--write-policy`, `--writer`).
    pub rules: WriteRules,
    /// Largest store file this node downloads (`--max-store-size`).
    pub max_store_bytes: u64,
    /// Free space kept on the disk; downloads that would go below it wait (`--min-free-disk`).
    pub min_free_bytes: u64,
    /// How often connected peers compare inventories (`--inventory-interval`).
    pub inventory_interval: Duration,
    /// Store downloads running at once (`--max-parallel-downloads`). Stores of one chunk
    /// (up to 1 MiB) are latency-bound rather than bandwidth-bound and get eight times as many slots.
    pub max_parallel_downloads: usize,
    /// Concurrent chunk requests per peer and download. Each stream's flow-control window
    /// starts at 256 KiB (yamux), so this bounds the bytes in flight from one peer.
    pub streams_per_peer: usize,
    /// Stores the index takes from peers at most (`--max-stores`).
    pub max_stores: usize,
    /// Tombstones are forgotten after this (`--tombstone-ttl`).
    pub tombstone_ttl: Duration,
    /// Tombstones kept at most, newest first (`--max-tombstones`).
    pub max_tombstones: usize,
    /// Files in `conflicts/` are deleted after this (`--conflict-ttl`).
    pub conflict_ttl: Duration,
    /// Files kept in `conflicts/` at most, newest first (`--max-conflicts`).
    pub max_conflicts: usize,
    /// Quiet time the folder watcher waits for before reporting a change.
    pub watch_debounce: Duration,
    /// Bound on opening a sync stream and on each request.
    pub request_timeout: Duration,
    /// Downward-API annotations file polled for the drain annotation (`--drain-annotations`).
    pub drain_annotations: Option<PathBuf>,
    /// Test-only fault injection: serve chunks with flipped bytes (hidden flag).
    pub test_corrupt_chunks: bool,
    /// Test-only: abort the process right after installing a download, before the index that
    /// records the installed file is saved (hidden flag).
    pub test_crash_after_install: bool,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        let data_dir = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".dig");
        Self {
            state_dir: data_dir.join(".dig-node"),
            data_dir,
            propagate_deletes: false,
            rules: WriteRules::default(),
            max_store_bytes: 64 << 30,
            min_free_bytes: 1 << 30,
            inventory_interval: Duration::from_secs(30),
            max_parallel_downloads: 16,
            streams_per_peer: 8,
            max_stores: 1_000_000,
            tombstone_ttl: Duration::from_secs(30 * 24 * 3600),
            max_tombstones: 100_000,
            conflict_ttl: Duration::from_secs(30 * 24 * 3600),
            max_conflicts: 1_000,
            watch_debounce: Duration::from_millis(100),
            request_timeout: Duration::from_secs(30),
            drain_annotations: None,
            test_corrupt_chunks: false,
            test_crash_after_install: false,
        }
    }
}

impl ReplicationConfig {
    /// The write policy as given (for the start-up check against the pre-shared key).
    pub fn write_policy(&self) -> WritePolicy {
        self.rules.policy
    }
}
