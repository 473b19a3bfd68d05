//! Carrying out the engine's actions: hashing, downloads, installs and removals (whatever is in
//! the way kept first), index saves (the data folder fsynced first), announcements, bans and the
//! pruning of `conflicts/`.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use libp2p::PeerId;
use libp2p::identity::Keypair;

use super::inbound;
use super::state::{Driver, Input, Paths, Running};
use crate::store::LocalMeta;
use crate::store::conflicts::{self, KeptAs};
use crate::store::hash::{self, CHUNK_SIZE, Hash32};
use crate::store::name::store_path;
use crate::store::record::{ContentId, SignedVersion};
use crate::store::{install, journal};
use crate::sync::announce::Announcement;
use crate::sync::client::{ClientError, SyncClient};
use crate::sync::delta::OlderFile;
use crate::sync::download::{DownloadTarget, PartialFiles};
use crate::sync::engine::{
    Action, Applied, DownloadFailure, Event, Fetched, HashOutcome, HashRequest, IndexSave, Replace,
    SupersededFile,
};
use crate::sync::metrics::{Direction, KindLabels, ReasonLabels};

/// A fetched version to move into the data folder.
pub(super) struct PendingInstall {
    name: String,
    hash: Hash32,
    replace: Replace,
}

impl Driver {
    /// Carries out one action. An install joins `installs`, which the caller runs as one batch
    /// ([`Driver::install_all`]); a removal completes here and returns the event that reports it;
    /// everything else runs in its own task and reports back later.
    pub(super) async fn execute(
        &mut self,
        action: Action,
        installs: &mut Vec<PendingInstall>,
    ) -> Option<Event> {
        match action {
            Action::Hash(batch) => self.hash(batch),
            Action::Rescan => self.start_scan(),
            Action::Announce(records) => self.announce(records),
            Action::NotifyHolding { peer, records } => self.notify_holding(peer, records),
            Action::ExchangeInventory(peer) => inbound::exchange_inventory(
                self.shared.clone(),
                self.node.stream_control(),
                self.protocol.clone(),
                self.config.request_timeout,
                self.inputs.clone(),
                self.metrics.clone(),
                peer,
            ),
            Action::StartDownload {
                name,
                content,
                peers,
                reuse,
            } => self.start_download(name, content, peers, reuse),
            Action::CancelDownload { name, hash } => self.cancel_download(&name, &hash),
            Action::Install {
                name,
                content,
                replace,
            } => installs.push(PendingInstall {
                name,
                hash: content.hash,
                replace,
            }),
            Action::Remove {
                name,
                version,
                replace,
            } => {
                let paths = self.paths.clone();
                let store = name.clone();
                let outcome = tokio::task::spawn_blocking(move || remove(&paths, &store, &replace))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
                return Some(Event::Removed {
                    name,
                    version,
                    outcome,
                });
            }
            Action::SaveIndex {
                save,
                generation,
                sync_data_dir,
            } => self.save(save, generation, sync_data_dir),
            Action::Ban { peer, reason } => self.ban(peer, reason),
            Action::PruneConflicts {
                max_age_ms,
                max_count,
            } => self.prune_conflicts(max_age_ms, max_count),
        }
        None
    }

    fn hash(&self, batch: Vec<HashRequest>) {
        let data_dir = self.paths.data_dir.clone();
        let inputs = self.inputs.clone();
        let keypair = self.keypair.clone();
        tokio::spawn(async move {
            let names: Vec<String> = batch.iter().map(|r| r.name.clone()).collect();
            let results = tokio::task::spawn_blocking(move || {
                batch
                    .into_iter()
                    .map(|request| {
                        let outcome = match store_path(&data_dir, &request.name) {
                            Some(path) => hash_stable(&path),
                            None => HashOutcome::Missing,
                        };
                        let outcome = sign_draft(outcome, &request, &keypair);
                        (request.name, outcome)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_else(|e| {
                names
                    .into_iter()
                    .map(|name| (name, HashOutcome::Failed(e.to_string())))
                    .collect()
            });
            let _ = inputs.send(Input::Engine(Event::Hashed(results)));
        });
    }

    fn announce(&self, records: Vec<SignedVersion>) {
        let messages = Announcement::encode_batches(&records);
        let node = self.node.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            for message in messages {
                match node.publish_announcement(message).await {
                    Ok(()) => {
                        metrics.announcements_sent.inc();
                    }
                    // Peers that miss it learn the same from the next inventory exchange.
                    Err(error) => tracing::debug!(%error, "store announcement not published"),
                };
            }
        });
    }

    /// Sends a holder notice to one peer, in announcement-sized messages on one stream.
    fn notify_holding(&self, peer: PeerId, records: Vec<SignedVersion>) {
        let messages = Announcement::encode_batches(&records);
        let mut control = self.node.stream_control();
        let protocol = self.protocol.clone();
        let timeout = self.config.request_timeout;
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let sent = async {
                let mut client = SyncClient::open(&mut control, peer, protocol, timeout).await?;
                for message in &messages {
                    client.holding(message).await?;
                    metrics.holder_notice(Direction::Sent, 1);
                }
                client.close().await;
                Ok::<_, ClientError>(())
            };
            // A peer that misses it learns the same from the next inventory exchange; one from
            // before holder notices closes the stream.
            if let Err(error) = sent.await {
                tracing::debug!(%peer, %error, "holder notice not delivered");
            }
        });
    }

    fn start_download(
        &self,
        name: String,
        content: ContentId,
        peers: Vec<PeerId>,
        reuse: Option<SupersededFile>,
    ) {
        let cancel = self.cancel.child_token();
        let progress = Arc::new(AtomicU64::new(0));
        self.shared.downloads.lock().insert(
            name.clone(),
            Running {
                hash: content.hash,
                cancel: cancel.clone(),
                progress: progress.clone(),
            },
        );
        let older = reuse.and_then(|file| {
            Some(OlderFile {
                path: store_path(&self.paths.data_dir, &name)?,
                meta: file.meta,
                chunks: file.chunks,
            })
        });
        let target = DownloadTarget {
            name,
            size: content.size,
            hash: content.hash,
            older,
        };
        let downloader = self.downloader.clone();
        let inputs = self.inputs.clone();
        let node = self.node.clone();
        tokio::spawn(async move {
            // Connected peers that do not hold the version may be fetching it too (swarming).
            let neighbours: Vec<PeerId> = if target.size > CHUNK_SIZE {
                let connected = node.connected_peers().await.unwrap_or_default();
                connected
                    .into_iter()
                    .filter(|p| !peers.contains(p))
                    .collect()
            } else {
                Vec::new()
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = downloader.download(&target, &peers, &neighbours, progress) => {
                    let outcome = result
                        .map(|done| Fetched {
                            manifest: done.manifest,
                            resumed_bytes: done.resumed_bytes,
                            fetched_bytes: done.fetched_bytes,
                            reused_bytes: done.reused_bytes,
                        })
                        .map_err(|error| DownloadFailure {
                            reason: error.reason(),
                            message: error.to_string(),
                        });
                    let _ = inputs.send(Input::Engine(Event::DownloadDone {
                        name: target.name,
                        hash: target.hash,
                        outcome,
                    }));
                }
            }
        });
    }

    fn cancel_download(&self, name: &str, hash: &Hash32) {
        let mut downloads = self.shared.downloads.lock();
        if downloads.get(name).is_some_and(|r| r.hash == *hash)
            && let Some(running) = downloads.remove(name)
        {
            running.cancel.cancel();
        }
        drop(downloads);
        self.partial_files(name, hash).remove();
    }

    /// A finished download no longer runs (called before the engine hears of it).
    pub(super) fn download_ended(&self, name: &str, hash: &Hash32) {
        let mut downloads = self.shared.downloads.lock();
        if downloads.get(name).is_some_and(|r| r.hash == *hash) {
            downloads.remove(name);
        }
    }

    /// Installs fetched versions, in order, on one blocking thread (a burst of small stores is
    /// released by one index save), and returns the events that report them: one per install,
    /// even when the blocking task fails, so the engine never waits for an install forever.
    pub(super) async fn install_all(&mut self, installs: Vec<PendingInstall>) -> Vec<Event> {
        let paths = self.paths.clone();
        let crash = self.config.test_crash_after_install;
        let attempted: Vec<(String, Hash32)> =
            installs.iter().map(|i| (i.name.clone(), i.hash)).collect();
        let events = tokio::task::spawn_blocking(move || {
            installs
                .into_iter()
                .map(|PendingInstall { name, hash, replace }| {
                    let outcome = install_download(&paths, &name, &hash, &replace);
                    if crash && outcome.is_ok() {
                        // The test hook of a power cut between the install and the index save.
                        tracing::error!(store = %name, "TEST MODE: aborting right after an install (--test-crash-after-install)");
                        std::process::abort();
                    }
                    Event::Installed {
                        name,
                        hash,
                        outcome,
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|error| {
            attempted
                .into_iter()
                .map(|(name, hash)| Event::Installed {
                    name,
                    hash,
                    outcome: Err(format!("the install task failed: {error}")),
                })
                .collect()
        });
        for event in &events {
            if matches!(event, Event::Installed { outcome: Ok(_), .. }) {
                self.metrics.add_file(Direction::Received);
            }
        }
        events
    }

    fn save(&self, save: IndexSave, generation: u64, sync_data_dir: bool) {
        let paths = self.paths.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let outcome = tokio::task::spawn_blocking(move || {
                if sync_data_dir {
                    crate::store::index::sync_dir(&paths.data_dir).map_err(|e| {
                        format!(
                            "cannot fsync the data folder {}: {e}",
                            paths.data_dir.display()
                        )
                    })?;
                }
                match save {
                    IndexSave::Snapshot(index) => {
                        index.save(&paths.index_path).map_err(|e| e.to_string())
                    }
                    IndexSave::Append { epoch, changes } => {
                        journal::append(&paths.index_path, epoch, &changes).map_err(|e| {
                            format!(
                                "cannot append to the store index journal {}: {e}",
                                journal::path_for(&paths.index_path).display()
                            )
                        })
                    }
                }
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            let _ = inputs.send(Input::Engine(Event::IndexSaved {
                generation,
                outcome,
            }));
        });
    }

    fn ban(&self, peer: PeerId, reason: String) {
        self.downloader.expire_idle_streams(Some(&peer));
        let node = self.node.clone();
        tokio::spawn(async move {
            if let Err(error) = node.ban_peer(peer, reason).await {
                tracing::warn!(%peer, %error, "cannot ban peer");
            }
        });
    }

    fn prune_conflicts(&self, max_age_ms: u64, max_count: usize) {
        let dir = self.paths.conflicts_dir.clone();
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let files = match conflicts::list_conflicts(&dir, std::time::SystemTime::now()) {
                Ok(files) => files,
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot list conflicts");
                    return;
                }
            };
            for path in conflicts::prune_plan(files, max_age_ms, max_count) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        metrics.conflicts_pruned.inc();
                        tracing::info!(path = %path.display(), "pruned an old conflict");
                    }
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "cannot prune a conflict")
                    }
                }
            }
        });
    }

    /// Copies the engine's counters into Prometheus (deltas since the last copy) and sets the
    /// gauges.
    pub(super) fn mirror_stats(&mut self) {
        let (stats, held, held_bytes, pending, seconds) = {
            let mut engine = self.shared.engine.write();
            let (held, held_bytes) = engine.index().held();
            let pending = engine.pending_transfers();
            let seconds = engine.take_transfer_seconds();
            (engine.stats().clone(), held, held_bytes, pending, seconds)
        };
        // The coverage walks the index: once a second, and only while draining.
        let now = self.clock.now();
        if now >= self.mirror.next_drain_gauge {
            self.mirror.next_drain_gauge = now + 1_000;
            let engine = self.shared.engine.read();
            let uncovered = if engine.is_draining() {
                engine.drain_report().uncovered_count
            } else {
                0
            };
            self.metrics.drain_uncovered.set(uncovered as i64);
        }
        let metrics = &self.metrics;
        metrics.stores.set(held as i64);
        metrics.bytes_stored.set(held_bytes as i64);
        metrics.pending_transfers.set(pending as i64);
        for seconds in seconds {
            metrics.transfer_duration.observe(seconds);
        }
        let last = &self.mirror.last;
        for (reason, grew) in growth(&stats.rejected, &last.rejected) {
            let labels = ReasonLabels {
                reason: reason.label().to_owned(),
            };
            metrics.records_rejected.get_or_create(&labels).inc_by(grew);
        }
        for (kind, grew) in growth(&stats.refused_local, &last.refused_local) {
            let labels = KindLabels {
                kind: kind.label().to_owned(),
            };
            metrics
                .refused_local_changes
                .get_or_create(&labels)
                .inc_by(grew);
        }
        for (reason, grew) in growth(&stats.download_failures, &last.download_failures) {
            metrics.download_failed_by(reason, grew);
        }
        metrics.conflicts.inc_by(stats.conflicts - last.conflicts);
        metrics
            .announcements_received
            .inc_by(stats.announcements_received - last.announcements_received);
        metrics.holder_notice(
            Direction::Received,
            stats.holder_notices_received - last.holder_notices_received,
        );
        metrics
            .peers_banned
            .inc_by(stats.peers_banned - last.peers_banned);
        metrics
            .tombstones_pruned
            .inc_by(stats.tombstones_pruned - last.tombstones_pruned);
        metrics.takeovers.inc_by(stats.takeovers - last.takeovers);
        self.mirror.last = stats;
    }
}

/// How much each labelled count grew since `before`.
fn growth<'a, K: Ord>(
    now: &'a BTreeMap<K, u64>,
    before: &'a BTreeMap<K, u64>,
) -> impl Iterator<Item = (&'a K, u64)> + 'a {
    now.iter()
        .map(move |(key, count)| (key, count - before.get(key).copied().unwrap_or(0)))
}

/// Signs the request's draft for the hashed bytes. A failure is left to the engine, which signs
/// (and logs) itself.
fn sign_draft(outcome: HashOutcome, request: &HashRequest, keypair: &Keypair) -> HashOutcome {
    match (outcome, &request.draft) {
        (
            HashOutcome::Hashed {
                meta,
                digest,
                signed: None,
            },
            Some(draft),
        ) => {
            let signed = draft
                .record(&request.name, &digest)
                .sign(keypair)
                .ok()
                .map(Box::new);
            HashOutcome::Hashed {
                meta,
                digest,
                signed,
            }
        }
        (outcome, _) => outcome,
    }
}

/// Hashes a file and checks it did not change meanwhile.
fn hash_stable(path: &Path) -> HashOutcome {
    let before = match LocalMeta::of_path(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return HashOutcome::Missing,
        Err(e) => return HashOutcome::Failed(e.to_string()),
    };
    let digest = match hash::digest_file(path) {
        Ok(digest) => digest,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return HashOutcome::Missing,
        // The file shrank while it was read.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return HashOutcome::Changing,
        Err(e) => return HashOutcome::Failed(e.to_string()),
    };
    match LocalMeta::of_path(path) {
        Ok(after) if after == before && digest.size == before.size => HashOutcome::Hashed {
            meta: before,
            digest,
            signed: None,
        },
        Ok(_) => HashOutcome::Changing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => HashOutcome::Missing,
        Err(e) => HashOutcome::Failed(e.to_string()),
    }
}

/// Keeps the file at `target` in `conflicts/` when `replace` says so: a file the index does not
/// know is there (local bytes), or our own version that lost. Fails (and nothing may replace the
/// file) when it cannot be kept.
fn keep_if_needed(
    paths: &Paths,
    name: &str,
    target: &Path,
    replace: &Replace,
) -> Result<Option<String>, String> {
    let meta = match std::fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot stat {}: {e}", target.display())),
    };
    if !meta.file_type().is_file() {
        return Err(format!(
            "{} is not a regular file; it is left alone",
            target.display()
        ));
    }
    let kept_as = if Some(LocalMeta::from_metadata(&meta)) != replace.expected {
        Some(KeptAs::Local)
    } else {
        replace.lost.as_ref().map(KeptAs::Lost)
    };
    let Some(kept_as) = kept_as else {
        return Ok(None);
    };
    conflicts::preserve_conflict(&paths.conflicts_dir, target, name, kept_as)
        .map(|kept| Some(kept.display().to_string()))
        .map_err(|e| {
            format!(
                "cannot keep {} in {} before replacing it ({e}); it is not replaced",
                target.display(),
                paths.conflicts_dir.display()
            )
        })
}

/// Moves a verified download into the data folder, keeping what is in the way first.
fn install_download(
    paths: &Paths,
    name: &str,
    hash: &Hash32,
    replace: &Replace,
) -> Result<Applied, String> {
    let target =
        store_path(&paths.data_dir, name).ok_or_else(|| format!("invalid store name {name:?}"))?;
    let files = PartialFiles::new(&paths.tmp_dir, name, hash);
    let kept = keep_if_needed(paths, name, &target, replace)?;
    install::install(&files.part, &target).map_err(|e| {
        format!(
            "cannot move the verified download {} into {}: {e}",
            files.part.display(),
            target.display()
        )
    })?;
    files.remove_records();
    let meta = LocalMeta::of_path(&target)
        .map_err(|e| format!("cannot stat the installed {}: {e}", target.display()))?;
    Ok(Applied {
        meta: Some(meta),
        kept,
    })
}

/// Deletes a store file for a tombstone, keeping it first when `replace` says so.
fn remove(paths: &Paths, name: &str, replace: &Replace) -> Result<Applied, String> {
    let target =
        store_path(&paths.data_dir, name).ok_or_else(|| format!("invalid store name {name:?}"))?;
    let kept = keep_if_needed(paths, name, &target, replace)?;
    install::remove_store_file(&target)
        .map_err(|e| format!("cannot delete {}: {e}", target.display()))?;
    Ok(Applied { meta: None, kept })
}

/// Removes partial downloads that no wanted version needs any more.
pub(super) fn clean_tmp(tmp_dir: &Path, wanted: &[(String, Hash32)]) {
    let keep: HashSet<String> = wanted
        .iter()
        .map(|(name, hash)| format!("{name}.{}", hash::to_hex(hash)))
        .collect();
    let Ok(listing) = std::fs::read_dir(tmp_dir) else {
        return;
    };
    for entry in listing.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let stem = [".part", ".manifest", ".done", ".done.tmp"]
            .iter()
            .find_map(|suffix| file.strip_suffix(suffix));
        if !stem.is_some_and(|stem| keep.contains(stem)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Version;

    fn paths(root: &Path) -> Paths {
        let paths = Paths {
            data_dir: root.join("data"),
            tmp_dir: root.join("tmp"),
            conflicts_dir: root.join("conflicts"),
            index_path: root.join("index.json"),
        };
        std::fs::create_dir_all(&paths.data_dir).unwrap();
        std::fs::create_dir_all(&paths.tmp_dir).unwrap();
        paths
    }

    fn staged(paths: &Paths, name: &str, bytes: &[u8]) -> Hash32 {
        let hash = *blake3::hash(bytes).as_bytes();
        std::fs::write(PartialFiles::new(&paths.tmp_dir, name, &hash).part, bytes).unwrap();
        hash
    }

    #[test]
    fn an_unexpected_file_is_kept_before_the_install_replaces_it() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        std::fs::write(paths.data_dir.join("s.dig"), b"local edit").unwrap();
        let hash = staged(&paths, "s", b"network");
        let applied = install_download(
            &paths,
            "s",
            &hash,
            &Replace {
                expected: None,
                lost: None,
            },
        )
        .unwrap();
        let kept = applied.kept.expect("kept");
        assert!(kept.contains("s.local."), "{kept}");
        assert_eq!(std::fs::read(&kept).unwrap(), b"local edit");
        assert_eq!(
            std::fs::read(paths.data_dir.join("s.dig")).unwrap(),
            b"network"
        );
    }

    #[test]
    fn the_expected_file_is_replaced_silently_unless_it_is_our_lost_version() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        let target = paths.data_dir.join("s.dig");
        std::fs::write(&target, b"old").unwrap();
        let expected = Some(LocalMeta::of_path(&target).unwrap());
        let hash = staged(&paths, "s", b"new");
        let applied = install_download(
            &paths,
            "s",
            &hash,
            &Replace {
                expected,
                lost: None,
            },
        )
        .unwrap();
        assert_eq!(applied.kept, None);

        let expected = Some(LocalMeta::of_path(&target).unwrap());
        let hash = staged(&paths, "s", b"newer");
        let lost = Version::new(5, "me");
        let applied = install_download(
            &paths,
            "s",
            &hash,
            &Replace {
                expected,
                lost: Some(lost),
            },
        )
        .unwrap();
        let kept = applied.kept.expect("our lost version is kept");
        assert!(kept.contains("s.5-me."), "{kept}");
        assert_eq!(std::fs::read(kept).unwrap(), b"new");
    }

    #[test]
    fn nothing_is_replaced_when_the_file_in_the_way_cannot_be_kept() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        std::fs::write(paths.data_dir.join("s.dig"), b"precious").unwrap();
        // conflicts/ cannot be created: a file is in its place.
        std::fs::write(&paths.conflicts_dir, b"not a folder").unwrap();
        let hash = staged(&paths, "s", b"network");
        let error = install_download(
            &paths,
            "s",
            &hash,
            &Replace {
                expected: None,
                lost: None,
            },
        )
        .unwrap_err();
        assert!(error.contains("it is not replaced"), "{error}");
        assert_eq!(
            std::fs::read(paths.data_dir.join("s.dig")).unwrap(),
            b"precious"
        );
    }

    #[test]
    fn a_tombstone_removal_keeps_an_unexpected_file_first() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        std::fs::write(paths.data_dir.join("s.dig"), b"edited").unwrap();
        let applied = remove(
            &paths,
            "s",
            &Replace {
                expected: None,
                lost: None,
            },
        )
        .unwrap();
        assert!(applied.kept.is_some());
        assert!(!paths.data_dir.join("s.dig").exists());
    }

    #[test]
    fn clean_tmp_keeps_only_wanted_partials() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        let wanted = staged(&paths, "keep", b"1");
        staged(&paths, "drop", b"2");
        std::fs::write(paths.tmp_dir.join("stray"), b"x").unwrap();
        clean_tmp(&paths.tmp_dir, &[("keep".into(), wanted)]);
        let left: Vec<_> = std::fs::read_dir(&paths.tmp_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left.len(), 1);
        assert!(left[0].starts_with("keep."));
    }
}
