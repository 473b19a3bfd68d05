//! What `GET /stores` shows for every store.

use serde::Serialize;

/// Where a store stands on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SyncState {
    /// The data folder holds the newest known version.
    Synced,
    /// The newest version is being downloaded (see `progress`).
    Downloading,
    /// The newest version is known but not held yet (waiting for a peer or a download slot).
    Pending,
    /// A local version lost to a newer one (kept in `conflicts/`) and the winner is not installed yet.
    Conflict,
    /// The last download attempt failed (see `error`); it is retried.
    Error,
    /// The store was deleted (with `--propagate-deletes`) at this version.
    Tombstone,
}

/// One store in `GET /stores`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    pub name: String,
    pub lamport: u64,
    /// Peer id of the node that made this version.
    pub origin: String,
    /// Size in bytes (absent for a tombstone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// BLAKE3 hash, 64 lowercase hex digits (absent for a tombstone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub state: SyncState,
    /// Fraction downloaded, 0.0 to 1.0, while downloading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// Why the last download failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Path of the last local version kept in `conflicts/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_conflict: Option<String>,
}
