//! Moving versions into the data folder: starting downloads, installing finished ones and
//! applying tombstones, each only once the index that records the version is on disk
//! (see `persist`), with whatever is in the way kept in `conflicts/` first.

use super::Engine;
use super::downloads::Blocked;
use super::io::{Action, Applied, DownloadFailure, Fetched, Millis, Replace, SupersededFile};
use crate::store::Version;
use crate::store::hash::Hash32;
use crate::sync::status::LastDownload;

impl Engine {
    pub(super) fn schedule(&mut self, now: Millis) {
        // A draining node takes no new store and no update: it is about to leave.
        if self.drain.is_active() {
            return;
        }
        let (plans, blocked) = self.downloads.plan(
            &self.index,
            &self.config.limits,
            self.peers.connected_peers(),
            now,
            &mut self.rng,
        );
        for (name, why) in blocked {
            let message = why.message(&name);
            let runtime = self.runtime(&name);
            let first = match &why {
                Blocked::TooLarge { .. } => true,
                Blocked::NoSpace { .. } => !runtime
                    .error
                    .as_deref()
                    .is_some_and(|e| e.contains("waits for disk space")),
            };
            runtime.error = Some(message.clone());
            if first {
                let reason = match why {
                    Blocked::TooLarge { .. } => "too_large",
                    Blocked::NoSpace { .. } => "disk_full",
                };
                *self.stats.download_failures.entry(reason).or_default() += 1;
                tracing::warn!("{message}");
            }
        }
        for plan in plans {
            self.runtime(&plan.name).download_started = Some(now);
            let reuse = self.index.get(&plan.name).and_then(|e| {
                Some(SupersededFile {
                    meta: e.superseded?,
                    chunks: e.superseded_chunks.clone()?,
                })
            });
            self.out.push(Action::StartDownload {
                name: plan.name,
                content: plan.content,
                peers: plan.peers,
                reuse,
            });
        }
    }

    /// Stops a running download of `name` (a newer version or a local change replaced it).
    pub(super) fn stop_download(&mut self, name: &str) {
        if let Some(hash) = self.downloads.cancel(name) {
            self.out.push(Action::CancelDownload {
                name: name.to_owned(),
                hash,
            });
        }
        if let Some(runtime) = self.runtime.get_mut(name) {
            runtime.download_started = None;
        }
    }

    pub(super) fn on_download_done(
        &mut self,
        name: &str,
        hash: Hash32,
        outcome: Result<Fetched, DownloadFailure>,
        now: Millis,
    ) {
        if !self.downloads.finished(name, &hash) {
            return;
        }
        let still_wanted = self.index.get(name).is_some_and(|e| {
            e.local.is_none() && e.content.as_ref().is_some_and(|c| c.hash == hash)
        });
        if !still_wanted {
            self.out.push(Action::CancelDownload {
                name: name.to_owned(),
                hash,
            });
            return;
        }
        match outcome {
            Ok(fetched) => {
                self.runtime(name).fetched = Some((hash, fetched));
                self.parked.insert(name.to_owned());
                self.try_install(name);
            }
            Err(failure) => {
                *self
                    .stats
                    .download_failures
                    .entry(failure.reason)
                    .or_default() += 1;
                let delay = self.downloads.retry_later(name, now, &mut self.rng);
                tracing::warn!(store = name, error = %failure.message, retry_in = ?delay, "download failed");
                self.runtime(name).error = Some(failure.message);
            }
        }
    }

    /// Installs a fetched version once the index that records it is durable.
    fn try_install(&mut self, name: &str) {
        let Some(runtime) = self.runtime.get(name) else {
            self.parked.remove(name);
            return;
        };
        let Some((hash, _)) = &runtime.fetched else {
            self.parked.remove(name);
            return;
        };
        if runtime.installing {
            return;
        }
        if !self.persist.is_durable(runtime.generation) {
            self.persist.hurry();
            return;
        }
        let hash = *hash;
        self.parked.remove(name);
        let Some(entry) = self.index.get(name) else {
            return;
        };
        let Some(content) = entry.content.as_ref().filter(|c| c.hash == hash) else {
            self.runtime(name).fetched = None;
            return;
        };
        let action = Action::Install {
            name: name.to_owned(),
            content: content.id(),
            replace: Replace {
                expected: entry.superseded,
                lost: runtime.lost.clone(),
            },
        };
        self.runtime(name).installing = true;
        self.out.push(action);
    }

    pub(super) fn on_installed(
        &mut self,
        name: &str,
        hash: Hash32,
        outcome: Result<Applied, String>,
        now: Millis,
    ) {
        let runtime = self.runtime(name);
        runtime.installing = false;
        let fetched = runtime.fetched.take();
        let applied = match outcome {
            Ok(applied) => applied,
            Err(error) => {
                tracing::error!(store = name, %error, "cannot install a verified download");
                let delay = self.downloads.retry_later(name, now, &mut self.rng);
                let runtime = self.runtime(name);
                runtime.error = Some(error);
                tracing::info!(store = name, retry_in = ?delay, "the install is tried again later");
                return;
            }
        };
        self.persist.data_dir_changed();
        let still_wanted = self.index.get(name).is_some_and(|e| {
            e.local.is_none() && e.content.as_ref().is_some_and(|c| c.hash == hash)
        });
        if !still_wanted {
            // A newer version arrived meanwhile: what was installed is now the older version.
            let chunks = fetched.map(|(_, f)| f.manifest);
            self.index.update(name, |e| {
                if e.local.is_none() {
                    e.set_superseded(applied.meta, chunks);
                }
            });
            self.changed(name, now);
            self.note_kept(name, applied.kept);
            return;
        }
        let manifest = fetched.as_ref().map(|(_, f)| f.manifest.clone());
        self.index.update(name, |e| {
            e.local = applied.meta;
            e.set_superseded(None, None);
            if let (Some(content), Some(manifest)) = (e.content.as_mut(), manifest) {
                content.chunks = Some(manifest);
            }
        });
        self.changed(name, now);
        self.downloads.succeeded(name);
        self.note_kept(name, applied.kept);
        let runtime = self.runtime(name);
        runtime.error = None;
        runtime.conflict_pending = false;
        runtime.lost = None;
        runtime.refused_meta = None;
        let seconds = runtime
            .download_started
            .take()
            .map(|started| now.saturating_sub(started) as f64 / 1000.0);
        runtime.last_download = fetched.as_ref().map(|(_, f)| LastDownload {
            fetched_bytes: f.fetched_bytes,
            reused_bytes: f.reused_bytes,
            resumed_bytes: f.resumed_bytes,
        });
        self.stats.files_received += 1;
        self.stats.transfer_seconds.extend(seconds);
        if let Some(entry) = self.index.get(name) {
            tracing::info!(
                store = name,
                version = %entry.version,
                size = entry.content.as_ref().map_or(0, |c| c.size),
                resumed_bytes = fetched.as_ref().map_or(0, |(_, f)| f.resumed_bytes),
                fetched_bytes = fetched.as_ref().map_or(0, |(_, f)| f.fetched_bytes),
                reused_bytes = fetched.as_ref().map_or(0, |(_, f)| f.reused_bytes),
                seconds = seconds.unwrap_or(0.0),
                "installed a verified store version"
            );
        }
        self.now_holds(name);
    }

    /// Records a file kept in `conflicts/` before it was replaced or removed.
    fn note_kept(&mut self, name: &str, kept: Option<String>) {
        let Some(kept) = kept else { return };
        self.stats.conflicts += 1;
        let runtime = self.runtime(name);
        let reason = runtime
            .refused
            .take()
            .or_else(|| {
                runtime.lost.as_ref().map(|v| {
                    format!("local version {v} lost to a newer version made without seeing it")
                })
            })
            .unwrap_or_else(|| {
                "a local change not yet looked at was in the way of a newer version".to_owned()
            });
        tracing::warn!(store = name, kept = %kept, %reason, "kept the replaced local bytes in conflicts/");
        runtime.last_conflict = Some(kept);
        runtime.last_conflict_reason = Some(reason);
    }

    /// Deletes the store file for a tombstone once the index that records it is durable.
    pub(super) fn request_removal(&mut self, name: &str, version: Version) {
        self.runtime(name).removal = Some(version);
        self.parked.insert(name.to_owned());
        self.try_remove(name);
    }

    fn try_remove(&mut self, name: &str) {
        let Some(runtime) = self.runtime.get(name) else {
            self.parked.remove(name);
            return;
        };
        let Some(version) = runtime.removal.clone() else {
            self.parked.remove(name);
            return;
        };
        if runtime.removing {
            return;
        }
        if !self.persist.is_durable(runtime.generation) {
            self.persist.hurry();
            return;
        }
        self.parked.remove(name);
        let replace = Replace {
            expected: self.index.get(name).and_then(|e| e.superseded),
            lost: runtime.lost.clone(),
        };
        self.runtime(name).removing = true;
        self.out.push(Action::Remove {
            name: name.to_owned(),
            version,
            replace,
        });
    }

    pub(super) fn on_removed(
        &mut self,
        name: &str,
        version: &Version,
        outcome: Result<Applied, String>,
        now: Millis,
    ) {
        let runtime = self.runtime(name);
        runtime.removing = false;
        match outcome {
            Ok(applied) => {
                self.persist.data_dir_changed();
                let runtime = self.runtime(name);
                if runtime.removal.as_ref() == Some(version) {
                    runtime.removal = None;
                }
                self.index.update(name, |e| {
                    e.set_superseded(None, None);
                    e.local = None;
                });
                self.changed(name, now);
                self.note_kept(name, applied.kept);
                let runtime = self.runtime(name);
                runtime.lost = None;
                runtime.refused_meta = None;
                runtime.conflict_pending = false;
                tracing::info!(store = name, %version, "store file deleted for a tombstone");
            }
            Err(error) => {
                tracing::error!(store = name, %error, "cannot delete a store file for a tombstone; tried again at the next rescan");
                runtime.error = Some(error);
            }
        }
    }

    pub(super) fn on_index_saved(
        &mut self,
        generation: u64,
        outcome: Result<(), String>,
        now: Millis,
    ) {
        if let Err(error) = &outcome {
            tracing::error!(%error, "cannot save the store index; installs wait until it is saved");
        }
        self.persist.finished(generation, outcome.is_ok(), now);
        self.release_parked();
    }

    /// Installs and removals whose index save is done.
    pub(super) fn release_parked(&mut self) {
        let parked: Vec<String> = self.parked.iter().cloned().collect();
        for name in parked {
            let removal = self
                .runtime
                .get(&name)
                .is_some_and(|r| r.removal.is_some() && r.fetched.is_none());
            if removal {
                self.try_remove(&name);
            } else {
                self.try_install(&name);
            }
        }
    }

    /// Removals that failed are tried again (called at every rescan).
    pub(super) fn retry_removals(&mut self) {
        let pending: Vec<String> = self
            .runtime
            .iter()
            .filter(|(_, r)| r.removal.is_some() && !r.removing)
            .map(|(name, _)| name.clone())
            .collect();
        for name in pending {
            self.parked.insert(name.clone());
            self.try_remove(&name);
        }
    }
}
