//! Local changes: files that appear, change or disappear in the data folder.
//!
//! - A file with the bytes of the version the index knows is that version (copied in by hand,
//!   touched, or installed by a download): no new version.
//! - Other bytes are a change. If this node may write the store, the change becomes a new signed
//!   version (`lamport = max(the store's version + 1, now)`, origin this node) and is announced. If not,
//!   it is not announced: the store goes back to the network's version (downloaded again) and
//!   the node's own bytes are kept in `conflicts/` before they are replaced.
//! - A deleted file is fetched again, unless `--propagate-deletes` is on and this node may write
//!   the store: then the deletion is a signed tombstone.

use super::io::{HashOutcome, Millis, VersionDraft};
use super::rules::{CONTEST_WINDOW, may_write_locally};
use super::stats::RefusedKind;
use super::{Engine, RECHECK_CHANGING_FILE, RefusedNew};
use crate::store::hash::ContentDigest;
use crate::store::record::{SignedVersion, VersionRecord};
use crate::store::{IndexEntry, LocalMeta, Version};

impl Engine {
    pub(super) fn on_scanned(&mut self, stores: Vec<(String, LocalMeta)>, now: Millis) {
        let present: std::collections::BTreeSet<&str> =
            stores.iter().map(|(name, _)| name.as_str()).collect();
        let missing: Vec<String> = self
            .index
            .names()
            .filter(|name| !present.contains(name.as_str()))
            .cloned()
            .collect();
        self.refused_new
            .retain(|name, _| present.contains(name.as_str()));
        let mut to_hash = 0;
        for (name, meta) in &stores {
            if !self.accounts_for(name, meta) {
                to_hash += 1;
                self.hashing.request_seen(name, meta.size, Some(*meta));
            }
        }
        for name in missing {
            self.on_missing(&name, now);
        }
        self.retry_removals();
        if !self.scanned {
            // First listing: everything the index wants and does not hold is to be fetched.
            self.scanned = true;
            let wanted: Vec<String> = self
                .index
                .iter()
                .filter(|(_, e)| e.content.is_some() && e.local.is_none())
                .map(|(name, _)| name.clone())
                .collect();
            for name in wanted {
                self.downloads.want(&name);
            }
            tracing::info!(stores = stores.len(), to_hash, "scanned the data folder");
        }
    }

    pub(super) fn on_file_changed(&mut self, name: &str, meta: Option<LocalMeta>, now: Millis) {
        match meta {
            None => self.on_missing(name, now),
            Some(meta) if !self.accounts_for(name, &meta) => {
                self.hashing.request_seen(name, meta.size, Some(meta))
            }
            Some(_) => {}
        }
    }

    pub(super) fn on_hashed(&mut self, results: Vec<(String, HashOutcome)>, now: Millis) {
        self.hashing
            .batch_done(results.first().map(|(name, _)| name.as_str()));
        for (name, outcome) in results {
            let hashed = match &outcome {
                HashOutcome::Hashed { meta, .. } => Some(*meta),
                _ => None,
            };
            let again = self.hashing.finished(&name, hashed.as_ref());
            match outcome {
                HashOutcome::Hashed {
                    meta,
                    digest,
                    signed,
                } => self.on_local_content(&name, meta, digest, signed.map(|s| *s), now),
                HashOutcome::Missing => self.on_missing(&name, now),
                HashOutcome::Changing => {
                    let at = now + RECHECK_CHANGING_FILE.as_millis() as u64;
                    self.hashing.recheck_at(&name, at);
                    continue;
                }
                HashOutcome::Failed(error) => {
                    tracing::warn!(store = %name, %error, "cannot hash store file");
                }
            }
            if again {
                self.hashing.request(&name, 0);
            }
        }
    }

    /// True when a file with `meta` is what the index already accounts for: the version held, an
    /// older one still in place while the newer downloads, or a change already refused.
    fn accounts_for(&self, name: &str, meta: &LocalMeta) -> bool {
        if self.hashing.is_pending(name) {
            return false;
        }
        if self.refused_new.get(name).is_some_and(|r| r.meta == *meta) {
            return true;
        }
        // An install or a removal is under way: its outcome settles the file.
        if self
            .runtime
            .get(name)
            .is_some_and(|r| r.installing || r.removing || r.removal.is_some())
        {
            return true;
        }
        let refused = self.runtime.get(name).and_then(|r| r.refused_meta.as_ref()) == Some(meta);
        refused
            || self.index.get(name).is_some_and(|e| {
                e.local.as_ref() == Some(meta) || e.superseded.as_ref() == Some(meta)
            })
    }

    /// What a new version of `name` made here now would be, or `None` when this node may not
    /// write the store.
    pub(super) fn draft(&self, name: &str, now: Millis) -> Option<VersionDraft> {
        let owner = self.owner_for_change(name);
        if !may_write_locally(&self.config.rules, &self.local, owner.as_deref()) {
            return None;
        }
        let replaces = self
            .index
            .get(name)
            .filter(|e| !e.is_legacy())
            .map(|e| e.version.clone());
        Some(VersionDraft {
            version: Version::new(self.index.next_lamport(name, now), self.local.clone()),
            owner: owner.unwrap_or_else(|| self.local.clone()),
            replaces,
        })
    }

    /// The owner a change of `name` answers to; `None` for a new store, and for one known only
    /// from an unsigned old index (the first signed version, ours here, names one).
    fn owner_for_change(&self, name: &str) -> Option<String> {
        self.index
            .get(name)
            .filter(|e| !e.is_legacy())
            .map(|e| e.owner.clone().unwrap_or_else(|| e.version.origin.clone()))
    }

    fn on_local_content(
        &mut self,
        name: &str,
        meta: LocalMeta,
        digest: ContentDigest,
        presigned: Option<SignedVersion>,
        now: Millis,
    ) {
        let current = self.index.get(name).cloned();
        if let Some(entry) = &current
            && entry
                .content
                .as_ref()
                .is_some_and(|c| c.hash == digest.hash)
        {
            self.adopt_local_copy(name, entry, meta, digest, now);
            return;
        }
        let Some(draft) = self.draft(name, now) else {
            let owner = self.owner_for_change(name);
            self.refuse_local_change(name, meta, owner.as_deref(), current.is_some(), now);
            return;
        };
        let record = draft.record(name, &digest);
        let min_lamport = self.index.next_lamport(name, 0);
        let signed = match presigned.filter(|s| fits(s, &record, min_lamport)) {
            Some(signed) => signed,
            None => match self.sign(record) {
                Some(signed) => signed,
                None => return,
            },
        };
        let mut entry = IndexEntry::from_signed(&signed, draft.owner, now);
        entry.content = Some(digest.into());
        entry.local = Some(meta);
        match &current {
            Some(previous) if !previous.is_legacy() => {
                entry.creation = previous.creation.clone();
                entry.contest_until_ms = previous.contest_until_ms;
            }
            _ => entry.contest_until_ms = now + CONTEST_WINDOW.as_millis() as u64,
        }
        tracing::info!(store = name, version = %signed.record.version, size = meta.size, "local change: new version");
        self.index.insert(name.to_owned(), entry);
        self.refused_new.remove(name);
        self.stop_download(name);
        self.downloads.unwant(name);
        let runtime = self.runtime(name);
        runtime.error = None;
        runtime.conflict_pending = false;
        runtime.refused = None;
        runtime.refused_meta = None;
        runtime.lost = None;
        self.changed(name, now);
        self.announce.push(signed);
    }

    /// The file holds the bytes of the version the index knows: it is that version.
    fn adopt_local_copy(
        &mut self,
        name: &str,
        entry: &IndexEntry,
        meta: LocalMeta,
        digest: ContentDigest,
        now: Millis,
    ) {
        let newly_held = entry.local.is_none();
        self.index.update(name, |e| {
            e.local = Some(meta);
            e.set_superseded(None, None);
            if let Some(content) = e.content.as_mut() {
                content.chunks = Some(digest.chunks);
            }
        });
        self.stop_download(name);
        self.downloads.unwant(name);
        let runtime = self.runtime(name);
        runtime.refused_meta = None;
        runtime.conflict_pending = false;
        runtime.error = None;
        self.changed(name, now);
        if newly_held {
            self.now_holds(name);
        }
    }

    /// A change this node may not write: not announced; the network's version comes back and
    /// these bytes are kept in `conflicts/` before it replaces them.
    fn refuse_local_change(
        &mut self,
        name: &str,
        meta: LocalMeta,
        owner: Option<&str>,
        known: bool,
        now: Millis,
    ) {
        let reason = match owner {
            Some(owner) => self.config.rules.refusal(&self.local, owner),
            None => format!(
                "{} may not create stores: it is not on the network's writer list (--write-policy writers)",
                self.local
            ),
        };
        if !known {
            tracing::warn!(store = name, %reason, "new store not replicated: this node may not create stores");
            *self
                .stats
                .refused_local
                .entry(RefusedKind::Creation)
                .or_default() += 1;
            self.refused_new
                .insert(name.to_owned(), RefusedNew { meta, reason });
            return;
        }
        tracing::warn!(
            store = name,
            %reason,
            "local change refused: not announced; the network's version is fetched again and these bytes are kept in conflicts/"
        );
        *self
            .stats
            .refused_local
            .entry(RefusedKind::Change)
            .or_default() += 1;
        self.index.update(name, |e| {
            e.local = None;
            e.set_superseded(None, None);
        });
        let tombstone = self
            .index
            .get(name)
            .filter(|e| e.is_tombstone())
            .map(|e| e.version.clone());
        let runtime = self.runtime(name);
        runtime.refused = Some(format!("local change refused: {reason}"));
        runtime.refused_meta = Some(meta);
        runtime.conflict_pending = true;
        self.changed(name, now);
        match tombstone {
            // The network deleted the store: these bytes are kept and the file removed again.
            Some(version) => self.request_removal(name, version),
            None => {
                self.downloads.unwant(name);
                self.downloads.want(name);
            }
        }
    }

    pub(super) fn on_missing(&mut self, name: &str, now: Millis) {
        self.refused_new.remove(name);
        if let Some(runtime) = self.runtime.get_mut(name) {
            // A refused file that is gone needs no keeping.
            runtime.refused_meta = None;
        }
        let Some(entry) = self.index.get(name).cloned() else {
            return;
        };
        if !entry.is_held() {
            return;
        }
        let owner = entry
            .owner
            .clone()
            .unwrap_or_else(|| entry.version.origin.clone());
        if !self.config.propagate_deletes {
            tracing::info!(
                store = name,
                "store file deleted locally; fetching it again from peers (deletions are propagated only with --propagate-deletes)"
            );
            self.fetch_again(name, now);
            return;
        }
        if entry.is_legacy() || !self.config.rules.may_change(&self.local, &owner) {
            let reason = self.config.rules.refusal(&self.local, &owner);
            tracing::warn!(store = name, %reason, "local deletion refused: not announced; the store is fetched again");
            *self
                .stats
                .refused_local
                .entry(RefusedKind::Deletion)
                .or_default() += 1;
            self.runtime(name).refused = Some(format!("local deletion refused: {reason}"));
            self.fetch_again(name, now);
            return;
        }
        let lamport = self.index.next_lamport(name, now);
        let record = VersionRecord {
            name: name.to_owned(),
            version: Version::new(lamport, self.local.clone()),
            owner: owner.clone(),
            content: None,
            replaces: Some(entry.version.clone()),
        };
        let Some(signed) = self.sign(record) else {
            return;
        };
        let mut tombstone = IndexEntry::from_signed(&signed, owner, now);
        tombstone.creation = entry.creation.clone();
        tombstone.contest_until_ms = entry.contest_until_ms;
        tracing::info!(store = name, version = %signed.record.version, "local deletion: tombstone");
        self.index.insert(name.to_owned(), tombstone);
        self.stop_download(name);
        self.downloads.forget_store(name);
        self.changed(name, now);
        self.announce.push(signed);
    }

    fn fetch_again(&mut self, name: &str, now: Millis) {
        self.index.update(name, |e| {
            e.local = None;
            e.set_superseded(None, None);
        });
        self.changed(name, now);
        self.downloads.unwant(name);
        self.downloads.want(name);
    }
}

/// True when `presigned`, signed by the hashing thread from the draft taken when the hash was
/// asked for, is still the version to make: the same record but for a lamport taken a moment
/// earlier, still at least `min_lamport` (above the store's version). When the index moved
/// meanwhile, `replaces` or the owner differ and the engine signs a new record itself.
fn fits(presigned: &SignedVersion, record: &VersionRecord, min_lamport: u64) -> bool {
    let made = &presigned.record;
    made.version.origin == record.version.origin
        && made.version.lamport >= min_lamport
        && made.name == record.name
        && made.owner == record.owner
        && made.content == record.content
        && made.replaces == record.replaces
}
