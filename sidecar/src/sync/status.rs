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
    /// A local version lost to a newer one, or a local change was refused (this node may not
    /// write the store): the network's version is not installed yet (see `conflictReason`); the
    /// local bytes are kept in `conflicts/` when it is.
    Conflict,
    /// The last download attempt failed (see `error`); it is retried.
    Error,
    /// The store was deleted (with `--propagate-deletes`) at this version.
    Tombstone,
    /// A new local store this node may not create (`--write-policy writers`): not replicated.
    Refused,
}

/// A version: `(lamport, origin)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionView {
    pub lamport: u64,
    pub origin: String,
}

/// One store in `GET /stores`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    pub name: String,
    pub lamport: u64,
    /// Peer id of the node that made (and signed) this version.
    pub origin: String,
    /// The same two fields as one object.
    pub version: VersionView,
    /// Peer id of the store's owner: the origin of its first accepted version. Only the owner
    /// and the network's writers may change it. Absent for a store known only from an old,
    /// unsigned index, and for a refused new store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
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
    /// Why local bytes were (or are about to be) kept in `conflicts/`: a local change refused
    /// because this node may not write the store, or a local version that lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict_reason: Option<String>,
    /// Where the bytes of the last version this node downloaded came from (since it started).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_download: Option<LastDownload>,
}

/// The bytes of one finished download, by where they came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastDownload {
    /// Fetched from peers.
    pub fetched_bytes: u64,
    /// Copied from the older version of the store on this node (delta sync).
    pub reused_bytes: u64,
    /// Kept from an interrupted attempt.
    pub resumed_bytes: u64,
}
