//! What goes into the engine (events) and what comes out (actions). The driver turns the world
//! (watcher, hashing threads, peers, downloads, the disk) into events, and carries the actions out.

use libp2p::PeerId;

use super::rules::Reject;
use crate::store::hash::{ChainingValue, ContentDigest, Hash32};
use crate::store::record::{ContentId, SignedVersion, VersionRecord};
use crate::store::{IndexEntry, LocalMeta, StoreIndex, Version};

/// Time in milliseconds (the driver's clock: monotonic, started at the wall-clock time).
pub type Millis = u64;

/// A record whose signature was checked by the origin's key (only [`VerifiedVersion::check`]
/// makes one, so the engine never sees an unverified record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedVersion(SignedVersion);

impl VerifiedVersion {
    /// Verifies `signed`, or says why not.
    pub fn check(
        signed: SignedVersion,
        keys: &mut crate::store::record::KeyCache,
    ) -> Result<Self, crate::store::record::RecordError> {
        signed.verify(keys)?;
        Ok(Self(signed))
    }

    /// Verifies the signatures of records whose fields and keys were checked
    /// ([`KeyCache::checked_keys`]): all in one batch, one by one only when the batch fails.
    /// Adds the errors of those that fail to `failed`.
    ///
    /// [`KeyCache::checked_keys`]: crate::store::record::KeyCache::checked_keys
    pub fn check_signatures(
        keyed: Vec<(SignedVersion, ed25519_dalek::VerifyingKey)>,
        failed: &mut Vec<crate::store::record::RecordError>,
    ) -> Vec<Self> {
        if keyed.len() > 1 && crate::store::record::signatures_hold(&keyed) {
            return keyed.into_iter().map(|(signed, _)| Self(signed)).collect();
        }
        keyed
            .into_iter()
            .filter_map(|(signed, key)| {
                if signed.signature_holds(&key) {
                    Some(Self(signed))
                } else {
                    failed.push(signed.bad_signature());
                    None
                }
            })
            .collect()
    }

    /// A record identical to one the index holds ([`super::Engine::knows`]): it was verified
    /// when it was accepted, so it is not verified again.
    pub(crate) fn known(signed: SignedVersion) -> Self {
        Self(signed)
    }

    pub fn signed(&self) -> &SignedVersion {
        &self.0
    }

    pub fn into_signed(self) -> SignedVersion {
        self.0
    }
}

/// A store's older file still in the data folder while a newer version downloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupersededFile {
    /// What the file was when it was the current version (a file changed since is not used).
    pub meta: LocalMeta,
    pub chunks: Vec<ChainingValue>,
}

/// How records reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Gossip,
    Inventory,
    /// A direct peer's holder notice: it now holds these versions.
    Notice,
}

/// A store file to hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashRequest {
    pub name: String,
    /// Its size when seen (for batching).
    pub size: u64,
    /// The version the file becomes if its bytes are new, when this node may write the store:
    /// the hashing thread signs it, so a burst of new stores is not signed one by one on the
    /// engine's loop.
    pub draft: Option<VersionDraft>,
}

/// A new version of a store made here, but for its content (known once the file is hashed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionDraft {
    pub version: Version,
    pub owner: String,
    pub replaces: Option<Version>,
}

impl VersionDraft {
    /// The record of this version for a file with `digest`.
    pub fn record(&self, name: &str, digest: &ContentDigest) -> VersionRecord {
        VersionRecord {
            name: name.to_owned(),
            version: self.version.clone(),
            owner: self.owner.clone(),
            content: Some(ContentId {
                size: digest.size,
                hash: digest.hash,
            }),
            replaces: self.replaces.clone(),
        }
    }
}

/// The result of hashing one store file.
#[derive(Debug)]
pub enum HashOutcome {
    Hashed {
        meta: LocalMeta,
        digest: ContentDigest,
        /// The request's draft for these bytes, signed (`None` without a draft, or when signing
        /// failed: the engine then signs itself).
        signed: Option<Box<SignedVersion>>,
    },
    /// The file is gone.
    Missing,
    /// The file changed while it was read: look again later.
    Changing,
    Failed(String),
}

/// What a finished download brought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub manifest: Vec<ChainingValue>,
    pub resumed_bytes: u64,
    pub fetched_bytes: u64,
    /// Copied from the older version of the store (delta sync).
    pub reused_bytes: u64,
}

/// Why a download stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadFailure {
    /// Metric label: `no_manifest`, `incomplete`, `disk_full`, `io`.
    pub reason: &'static str,
    pub message: String,
}

/// What the install of a download or the removal for a tombstone did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The store file's metadata afterwards (`None` after a removal).
    pub meta: Option<LocalMeta>,
    /// Where a file that was in the way was kept.
    pub kept: Option<String>,
}

/// Everything the engine reacts to.
#[derive(Debug)]
pub enum Event {
    /// Time passed (the driver ticks every 50 ms; `now` comes with every event).
    Tick,
    /// The data folder was listed: every store file and its metadata.
    Scanned(Vec<(String, LocalMeta)>),
    /// A store file changed, appeared (`Some`) or disappeared (`None`).
    FileChanged {
        name: String,
        meta: Option<LocalMeta>,
    },
    Hashed(Vec<(String, HashOutcome)>),
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// Verified records from a peer.
    Remote {
        from: PeerId,
        via: Via,
        records: Vec<VerifiedVersion>,
    },
    /// Records from a peer that failed decoding or verification, by reason.
    Rejected {
        from: PeerId,
        via: Via,
        reasons: Vec<(Reject, u32)>,
    },
    /// A peer's full inventory was read (its records came in [`Event::Remote`] before this);
    /// `draining`: the peer said it drains too.
    InventoryComplete {
        peer: PeerId,
        draining: bool,
    },
    /// An inventory exchange with a peer ended (either way).
    InventoryDone(PeerId),
    /// Drain mode on or off (`--drain-annotations`).
    Drain(bool),
    /// A peer served data that failed verification (a bad chunk or manifest).
    BadData {
        peer: PeerId,
        reason: String,
    },
    DownloadDone {
        name: String,
        hash: Hash32,
        outcome: Result<Fetched, DownloadFailure>,
    },
    Installed {
        name: String,
        hash: Hash32,
        outcome: Result<Applied, String>,
    },
    Removed {
        name: String,
        version: Version,
        outcome: Result<Applied, String>,
    },
    IndexSaved {
        generation: u64,
        outcome: Result<(), String>,
    },
    /// Free bytes on the download disk, as if no running download had written anything yet.
    DiskSpace(u64),
}

/// What the file in the way of an install or removal is kept as, if it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replace {
    /// The metadata of the file the index knows is there (replaced without keeping it).
    pub expected: Option<LocalMeta>,
    /// Our own version that lost: kept in `conflicts/` even when it is the expected file.
    pub lost: Option<Version>,
}

/// How the index is saved.
#[derive(Debug)]
pub enum IndexSave {
    /// Write this whole index as the snapshot (its epoch already begun), and drop the journal.
    Snapshot(Box<StoreIndex>),
    /// Append these entries (`None`: removed) to the journal of the snapshot of `epoch`.
    Append {
        epoch: u64,
        changes: Vec<(String, Option<IndexEntry>)>,
    },
}

/// Everything the engine asks the driver to do.
#[derive(Debug)]
pub enum Action {
    /// Hash these store files (signing each draft for the bytes found) and report
    /// [`Event::Hashed`].
    Hash(Vec<HashRequest>),
    /// List the data folder and report [`Event::Scanned`].
    Rescan,
    /// Publish these records on the gossip topic (versions made here).
    Announce(Vec<SignedVersion>),
    /// Tell one connected peer that this node now holds these versions (installed or adopted
    /// here; the peer is not known to hold them).
    NotifyHolding {
        peer: PeerId,
        records: Vec<SignedVersion>,
    },
    /// Compare inventories with a peer; report [`Event::Remote`]/[`Event::Rejected`] and then
    /// [`Event::InventoryDone`].
    ExchangeInventory(PeerId),
    StartDownload {
        name: String,
        content: ContentId,
        peers: Vec<PeerId>,
        /// The older version still in the data folder, whose chunks the download may reuse.
        reuse: Option<SupersededFile>,
    },
    /// Stop a download and remove its partial files.
    CancelDownload { name: String, hash: Hash32 },
    /// Move the verified download into the data folder (keeping what is in the way first, as
    /// `replace` says) and report [`Event::Installed`].
    Install {
        name: String,
        content: ContentId,
        replace: Replace,
    },
    /// Delete a store file for a tombstone (keeping it first, as `replace` says) and report
    /// [`Event::Removed`].
    Remove {
        name: String,
        version: Version,
        replace: Replace,
    },
    /// fsync the data folder if `sync_data_dir` (installs and removals happened since the last
    /// save: they must be durable before an index that records them), then save the index as
    /// `save` says.
    SaveIndex {
        save: IndexSave,
        generation: u64,
        sync_data_dir: bool,
    },
    /// Disconnect the peer and refuse it for a while.
    Ban { peer: PeerId, reason: String },
    /// Delete kept conflicts older than `max_age_ms` and beyond the newest `max_count`.
    PruneConflicts { max_age_ms: u64, max_count: usize },
}
