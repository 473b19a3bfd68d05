//! Replication metrics, registered into the process's one registry under the `dig_sync` prefix.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Direction {
    Sent,
    Received,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// How an inventory exchange went.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ExchangeOutcome {
    /// The digests matched.
    Equal,
    /// Range-based reconciliation found what differs.
    Reconciled,
    /// The peer's full list was read (this node drains, or the peer predates reconciliation).
    Full,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabels {
    pub outcome: ExchangeOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// Every replication figure a node exports.
#[derive(Clone)]
pub struct SyncMetrics {
    pub stores: Gauge,
    pub bytes_stored: Gauge,
    pub transfer_bytes: Family<DirectionLabels, Counter>,
    pub transfer_files: Family<DirectionLabels, Counter>,
    pub pending_transfers: Gauge,
    pub transfer_duration: Histogram,
    pub verification_failures: Counter,
    pub conflicts: Counter,
    pub peers_banned: Counter,
    pub resumed_bytes: Counter,
    pub reused_bytes: Counter,
    pub swarmed_bytes: Counter,
    pub download_failures: Family<ReasonLabels, Counter>,
    pub announcements_sent: Counter,
    pub announcements_received: Counter,
    pub holder_notices: Family<DirectionLabels, Counter>,
    pub holder_notices_refused: Counter,
    pub inventory_exchanges: Family<ExchangeLabels, Counter>,
    pub inventory_bytes_received: Counter,
    pub records_rejected: Family<ReasonLabels, Counter>,
    pub refused_local_changes: Family<KindLabels, Counter>,
    pub takeovers: Counter,
    pub tombstones_pruned: Counter,
    pub conflicts_pruned: Counter,
    pub streams_refused: Counter,
    pub drain_uncovered: Gauge,
}

impl SyncMetrics {
    /// Creates the metrics and registers them (prefix `dig_sync`) into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::unregistered();
        let sub = registry.sub_registry_with_prefix("dig_sync");
        sub.register(
            "stores",
            "Stores held in the data folder",
            metrics.stores.clone(),
        );
        sub.register(
            "bytes_stored",
            "Bytes of store files held in the data folder",
            metrics.bytes_stored.clone(),
        );
        sub.register(
            "transfer_bytes",
            "Chunk bytes transferred, by direction",
            metrics.transfer_bytes.clone(),
        );
        sub.register(
            "transfer_files",
            "Store files transferred (received = installed, sent = last chunk served)",
            metrics.transfer_files.clone(),
        );
        sub.register(
            "pending_transfers",
            "Store downloads running or waiting",
            metrics.pending_transfers.clone(),
        );
        sub.register(
            "transfer_duration_seconds",
            "Time from the start of a download to its install",
            metrics.transfer_duration.clone(),
        );
        sub.register(
            "verification_failures",
            "Chunks or manifests that did not match the announced BLAKE3 hash",
            metrics.verification_failures.clone(),
        );
        sub.register(
            "conflicts",
            "Local versions that lost to a newer version and were kept in conflicts/",
            metrics.conflicts.clone(),
        );
        sub.register(
            "peers_banned",
            "Peers banned for serving bad data or sending bad version records",
            metrics.peers_banned.clone(),
        );
        sub.register(
            "resumed_bytes",
            "Bytes of interrupted downloads reused (verified again) instead of fetched",
            metrics.resumed_bytes.clone(),
        );
        sub.register(
            "reused_bytes",
            "Bytes of new versions copied from the older version of the same store on this node \
             (and verified) instead of fetched: what delta sync saved",
            metrics.reused_bytes.clone(),
        );
        sub.register(
            "swarmed_bytes",
            "Bytes fetched from peers that were still downloading the same version themselves \
             (chunk swarming)",
            metrics.swarmed_bytes.clone(),
        );
        sub.register(
            "download_failures",
            "Downloads that stopped before completion, by reason",
            metrics.download_failures.clone(),
        );
        sub.register(
            "announcements_sent",
            "Gossip announcements published",
            metrics.announcements_sent.clone(),
        );
        sub.register(
            "announcements_received",
            "Gossip announcements received and accepted",
            metrics.announcements_received.clone(),
        );
        for direction in [Direction::Sent, Direction::Received] {
            metrics.holder_notice(direction, 0);
        }
        sub.register(
            "holder_notices",
            "Holder notices (\"this node now holds these versions\", sent to direct peers after \
             an install) sent and received, by direction",
            metrics.holder_notices.clone(),
        );
        sub.register(
            "holder_notices_refused",
            "Holder notices from peers refused unread: too large, or the peer had too many queued",
            metrics.holder_notices_refused.clone(),
        );
        for outcome in [
            ExchangeOutcome::Equal,
            ExchangeOutcome::Reconciled,
            ExchangeOutcome::Full,
        ] {
            metrics
                .inventory_exchanges
                .get_or_create(&ExchangeLabels { outcome })
                .inc_by(0);
        }
        sub.register(
            "inventory_exchanges",
            "Inventory exchanges completed, by outcome: Equal (digests matched), Reconciled \
             (range-based reconciliation moved what differs), Full (the peer's whole list was read)",
            metrics.inventory_exchanges.clone(),
        );
        sub.register(
            "inventory_bytes_received",
            "Bytes of inventories and reconciliation answers received from peers",
            metrics.inventory_bytes_received.clone(),
        );
        sub.register(
            "records_rejected",
            "Version records from peers that were dropped, by reason (malformed, unsigned, bad_signature, lamport_ahead, unauthorised, index_full, tombstone_ignored)",
            metrics.records_rejected.clone(),
        );
        sub.register(
            "refused_local_changes",
            "Local changes not announced because this node may not write the store, by kind (change, deletion, creation)",
            metrics.refused_local_changes.clone(),
        );
        sub.register(
            "takeovers",
            "Stores taken over by an earlier concurrent creation within the contest window",
            metrics.takeovers.clone(),
        );
        sub.register(
            "tombstones_pruned",
            "Tombstones removed from the index by age or count",
            metrics.tombstones_pruned.clone(),
        );
        sub.register(
            "conflicts_pruned",
            "Files removed from conflicts/ by age or count",
            metrics.conflicts_pruned.clone(),
        );
        sub.register(
            "streams_refused",
            "Inbound sync streams refused because the peer (or all peers) had the most open",
            metrics.streams_refused.clone(),
        );
        sub.register(
            "drain_uncovered_stores",
            "While draining: held stores no connected, non-draining peer holds at the same or a newer version (0 otherwise)",
            metrics.drain_uncovered.clone(),
        );
        metrics
    }

    /// Metrics not attached to any registry (tests).
    pub fn unregistered() -> Self {
        Self {
            stores: Gauge::default(),
            bytes_stored: Gauge::default(),
            transfer_bytes: Family::default(),
            transfer_files: Family::default(),
            pending_transfers: Gauge::default(),
            transfer_duration: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            verification_failures: Counter::default(),
            conflicts: Counter::default(),
            peers_banned: Counter::default(),
            resumed_bytes: Counter::default(),
            reused_bytes: Counter::default(),
            swarmed_bytes: Counter::default(),
            download_failures: Family::default(),
            announcements_sent: Counter::default(),
            announcements_received: Counter::default(),
            holder_notices: Family::default(),
            holder_notices_refused: Counter::default(),
            inventory_exchanges: Family::default(),
            inventory_bytes_received: Counter::default(),
            records_rejected: Family::default(),
            refused_local_changes: Family::default(),
            takeovers: Counter::default(),
            tombstones_pruned: Counter::default(),
            conflicts_pruned: Counter::default(),
            streams_refused: Counter::default(),
            drain_uncovered: Gauge::default(),
        }
    }

    pub fn add_bytes(&self, direction: Direction, bytes: u64) {
        self.transfer_bytes
            .get_or_create(&DirectionLabels { direction })
            .inc_by(bytes);
    }

    pub fn inventory_exchange(&self, outcome: ExchangeOutcome) {
        self.inventory_exchanges
            .get_or_create(&ExchangeLabels { outcome })
            .inc();
    }

    pub fn holder_notice(&self, direction: Direction, count: u64) {
        self.holder_notices
            .get_or_create(&DirectionLabels { direction })
            .inc_by(count);
    }

    pub fn add_file(&self, direction: Direction) {
        self.transfer_files
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }

    pub fn download_failed_by(&self, reason: &str, count: u64) {
        self.download_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(count);
    }
}
