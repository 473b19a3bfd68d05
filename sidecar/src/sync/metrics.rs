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
    pub download_failures: Family<ReasonLabels, Counter>,
    pub announcements_sent: Counter,
    pub announcements_received: Counter,
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
            "Peers banned for serving bad data",
            metrics.peers_banned.clone(),
        );
        sub.register(
            "resumed_bytes",
            "Bytes of interrupted downloads reused (verified again) instead of fetched",
            metrics.resumed_bytes.clone(),
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
            download_failures: Family::default(),
            announcements_sent: Counter::default(),
            announcements_received: Counter::default(),
        }
    }

    pub fn add_bytes(&self, direction: Direction, bytes: u64) {
        self.transfer_bytes
            .get_or_create(&DirectionLabels { direction })
            .inc_by(bytes);
    }

    pub fn add_file(&self, direction: Direction) {
        self.transfer_files
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }

    pub fn download_failed(&self, reason: &str) {
        self.download_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
