//! What `GET /stores` and the registry record show, computed from the index and the engine's
//! runtime facts.

use dig_core::record::StoreEntry;

use super::Engine;
use crate::store::Content;
use crate::sync::status::{StoreStatus, SyncState, VersionView};

impl Engine {
    /// Every store with its version, owner, content and state. `progress` gives the bytes a
    /// running download has verified so far.
    pub fn statuses(&self, progress: &dyn Fn(&str) -> Option<u64>) -> Vec<StoreStatus> {
        let mut list: Vec<StoreStatus> = self
            .index
            .iter()
            .map(|(name, entry)| {
                let runtime = self.runtime.get(name);
                let size = entry.content.as_ref().map(|c| c.size);
                let downloading = self.downloads.active(name).is_some();
                let fraction = downloading.then(|| {
                    let done = progress(name).unwrap_or(0);
                    match size {
                        Some(size) if size > 0 => (done as f64 / size as f64).min(1.0),
                        _ => 0.0,
                    }
                });
                let conflict_pending = runtime.is_some_and(|r| r.conflict_pending);
                let state = if entry.is_tombstone() {
                    if conflict_pending {
                        SyncState::Conflict
                    } else {
                        SyncState::Tombstone
                    }
                } else if entry.is_held() {
                    SyncState::Synced
                } else if conflict_pending {
                    // Until the network's version is back, say why (`conflictReason`).
                    SyncState::Conflict
                } else if downloading {
                    SyncState::Downloading
                } else if runtime.is_some_and(|r| r.error.is_some()) {
                    SyncState::Error
                } else {
                    SyncState::Pending
                };
                StoreStatus {
                    name: name.clone(),
                    lamport: entry.version.lamport,
                    origin: entry.version.origin.clone(),
                    version: VersionView {
                        lamport: entry.version.lamport,
                        origin: entry.version.origin.clone(),
                    },
                    owner: entry.owner.clone(),
                    size,
                    hash: entry.content.as_ref().map(Content::hash_hex),
                    state,
                    progress: fraction,
                    error: runtime
                        .and_then(|r| r.error.clone())
                        .filter(|_| !entry.is_held()),
                    last_conflict: runtime.and_then(|r| r.last_conflict.clone()),
                    conflict_reason: runtime
                        .and_then(|r| r.refused.clone().or_else(|| r.last_conflict_reason.clone())),
                    last_download: runtime.and_then(|r| r.last_download),
                }
            })
            .collect();
        for (name, refused) in &self.refused_new {
            list.push(StoreStatus {
                name: name.clone(),
                lamport: 0,
                origin: self.local.clone(),
                version: VersionView {
                    lamport: 0,
                    origin: self.local.clone(),
                },
                owner: None,
                size: Some(refused.meta.size),
                hash: None,
                state: SyncState::Refused,
                progress: None,
                error: None,
                last_conflict: None,
                conflict_reason: Some(refused.reason.clone()),
                last_download: None,
            });
        }
        list
    }

    /// The stores this node holds, for its signed registry record.
    pub fn held_entries(&self) -> Vec<StoreEntry> {
        self.index
            .iter()
            .filter(|(_, e)| e.is_held())
            .filter_map(|(name, e)| {
                let content = e.content.as_ref()?;
                Some(StoreEntry {
                    name: name.clone(),
                    size: content.size,
                    hash: content.hash_hex(),
                    lamport: e.version.lamport,
                })
            })
            .collect()
    }
}
