//! Versions from peers: every record is judged by [`super::rules::judge_remote`]; an accepted one
//! replaces the store's version (its content is fetched, its tombstone applied), a refused one is
//! counted by reason and, when its sender keeps sending what no honest node sends, the sender is
//! banned.

use libp2p::PeerId;

use super::Engine;
use super::io::{Millis, VerifiedVersion, Via};
use super::offences::Strike;
use super::rules::{CONTEST_WINDOW, Context, Reject, Verdict, judge_remote};
use crate::store::IndexEntry;
use crate::store::record::SignedVersion;

impl Engine {
    pub(super) fn on_remote(
        &mut self,
        from: PeerId,
        via: Via,
        records: Vec<VerifiedVersion>,
        now: Millis,
    ) {
        if self.offences.is_banned(&from, now) {
            return;
        }
        if !records.is_empty() {
            match via {
                Via::Gossip => self.stats.announcements_received += 1,
                Via::Notice => self.stats.holder_notices_received += 1,
                Via::Inventory => {}
            }
        }
        let sender = from.to_base58();
        let mut unauthorised_own = false;
        for verified in records {
            let signed = verified.into_signed();
            let record = &signed.record;
            let context = Context {
                rules: &self.config.rules,
                now_ms: now,
                propagate_deletes: self.config.propagate_deletes,
                room_for_new: self.index.len() < self.config.max_stores,
            };
            let verdict = judge_remote(&context, self.index.get(&record.name), record);
            match verdict {
                Verdict::Accept { owner, takeover } => {
                    self.apply_remote(&signed, owner, takeover, from, now);
                }
                Verdict::Known | Verdict::Stale => self.note_holder(&signed, from),
                Verdict::Refuse(reason) => {
                    self.stats.reject(reason, 1);
                    if reason.is_unauthorised_write() && record.version.origin == sender {
                        unauthorised_own = true;
                    }
                    tracing::debug!(%from, record = %record, reason = reason.label(), "dropped a version from a peer");
                }
            }
        }
        if unauthorised_own {
            self.strike(from, Strike::Unauthorised, now);
        }
    }

    pub(super) fn on_rejected(
        &mut self,
        from: PeerId,
        via: Via,
        reasons: &[(Reject, u32)],
        now: Millis,
    ) {
        let mut misbehaved = false;
        for (reason, count) in reasons {
            self.stats.reject(*reason, u64::from(*count));
            misbehaved |= reason.is_misbehaviour() && *count > 0;
        }
        if misbehaved {
            tracing::warn!(%from, ?via, ?reasons, "peer sent malformed or badly signed version records");
            self.strike(from, Strike::Misbehaviour, now);
        }
    }

    fn strike(&mut self, peer: PeerId, strike: Strike, now: Millis) {
        if let Some(reason) = self.offences.strike(peer, strike, now) {
            self.enforce_ban(peer, reason);
        }
    }

    /// The peer holds this (known or older) version: a source for its content.
    fn note_holder(&mut self, signed: &SignedVersion, from: PeerId) {
        let name = &signed.record.name;
        if !self.index.contains(name) {
            return;
        }
        match &signed.record.content {
            Some(content) => self.downloads.add_holder(name, from, content.hash),
            None => self.downloads.remove_holder(name, &from),
        }
    }

    fn apply_remote(
        &mut self,
        signed: &SignedVersion,
        owner: String,
        takeover: bool,
        from: PeerId,
        now: Millis,
    ) {
        let record = &signed.record;
        let name = record.name.clone();
        let current = self.index.get(&name).cloned();
        let mut entry = IndexEntry::from_signed(signed, owner, now);
        match current.as_ref().filter(|c| !c.is_legacy()) {
            Some(current) if !takeover => {
                entry.creation = if record.is_creation() {
                    Some(record.version.clone())
                } else {
                    current.creation.clone()
                };
                entry.contest_until_ms = current.contest_until_ms;
            }
            Some(current) => entry.contest_until_ms = current.contest_until_ms,
            None => entry.contest_until_ms = now + CONTEST_WINDOW.as_millis() as u64,
        }
        if takeover {
            self.stats.takeovers += 1;
            tracing::warn!(store = %name, new_owner = %record.version.origin, "an earlier concurrent creation takes the store over");
        }
        let mut lost = None;
        if let Some(current) = &current {
            if current.is_held() {
                let same_content = match (&current.content, &record.content) {
                    (Some(held), Some(new)) => held.hash == new.hash,
                    _ => false,
                };
                if same_content {
                    // The bytes are already here: only the version moves on.
                    entry.local = current.local;
                    entry.content.clone_from(&current.content);
                    self.index.insert(name.clone(), entry);
                    self.note_holder(signed, from);
                    self.downloads.unwant(&name);
                    self.changed(&name, now);
                    return;
                }
                // Our own version lost to one made without seeing it: keep ours.
                let ours = current.version.origin == self.local;
                let seen_by_writer = record.replaces.as_ref() == Some(&current.version);
                if ours && !seen_by_writer {
                    lost = Some(current.version.clone());
                }
                let chunks = current.content.as_ref().and_then(|c| c.chunks.clone());
                entry.set_superseded(current.local, chunks);
            } else {
                entry.set_superseded(current.superseded, current.superseded_chunks.clone());
            }
        }
        tracing::debug!(store = %name, version = %record.version, %from, "newer version from a peer");
        self.index.insert(name.clone(), entry);
        self.stop_download(&name);
        self.downloads.unwant(&name);
        self.changed(&name, now);
        let has_file = current
            .as_ref()
            .is_some_and(|c| c.local.is_some() || c.superseded.is_some());
        let runtime = self.runtime(&name);
        if lost.is_some() {
            runtime.lost = lost;
        }
        runtime.error = None;
        runtime.fetched = None;
        match &record.content {
            Some(content) => {
                runtime.conflict_pending |= runtime.lost.is_some();
                self.downloads.add_holder(&name, from, content.hash);
                self.downloads.want(&name);
            }
            None => {
                self.downloads.forget_store(&name);
                let refused_file = self
                    .runtime
                    .get(&name)
                    .is_some_and(|r| r.refused_meta.is_some());
                if has_file || refused_file {
                    self.request_removal(&name, record.version.clone());
                }
            }
        }
    }
}
