//! The replication engine: a state machine that takes events and the current time and returns
//! actions. It decides everything about stores (which version wins, who may write, what to hash,
//! download, install, keep as a conflict, delete, announce, retry and when) and does no IO: no
//! files, no network, no locks, no tasks, no clock and no global state. The same events and
//! times give the same actions, so it is tested rule by rule ([`tests`]) and can run thousands of
//! times in one process. `sync::driver` carries its actions out.

mod downloads;
mod drain;
mod hashing;
mod io;
mod local;
mod offences;
mod peers;
mod persist;
mod remote;
pub mod rules;
mod stats;
#[cfg(test)]
mod tests;
mod transfer;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use libp2p::PeerId;
use libp2p::identity::Keypair;
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use downloads::{Blocked, Limits};
pub use drain::DrainReport;
pub use io::{
    Action, Applied, DownloadFailure, Event, Fetched, HashOutcome, HashRequest, IndexSave, Millis,
    Replace, SupersededFile, VerifiedVersion, VersionDraft, Via,
};
pub use rules::{Reject, WritePolicy, WriteRules};
pub use stats::{RefusedKind, Stats};

use crate::store::hash::Hash32;
use crate::store::record::{SignedVersion, VersionRecord};
use crate::store::{LocalMeta, StoreIndex, Version};
use crate::sync::status::LastDownload;

/// How often the data folder is listed again (the watcher may miss a create and remove that fall
/// in one debounce window).
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(10);
/// A file that changed while it was hashed is looked at again after this.
pub const RECHECK_CHANGING_FILE: Duration = Duration::from_millis(500);
/// How often tombstones and conflicts are pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// The engine's settings (from `dig-sidecar run` flags).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub keypair: Keypair,
    pub rules: WriteRules,
    /// Local deletions become tombstones, and remote tombstones are applied.
    pub propagate_deletes: bool,
    pub limits: Limits,
    pub inventory_interval: Duration,
    /// Inventory exchanges at once.
    pub inventory_concurrency: usize,
    /// Stores the index takes from peers at most (local stores are always indexed).
    pub max_stores: usize,
    pub tombstone_ttl: Duration,
    pub max_tombstones: usize,
    pub conflict_ttl: Duration,
    pub max_conflicts: usize,
    /// Seed of the engine's random choices (peer order, retry jitter).
    pub seed: u64,
}

/// Facts about a store that are not part of the saved index.
#[derive(Clone, Debug, Default)]
struct StoreRuntime {
    error: Option<String>,
    last_conflict: Option<String>,
    last_conflict_reason: Option<String>,
    /// A local version lost or was refused, and the network's version is not installed yet.
    conflict_pending: bool,
    /// Our own version that lost to one made without seeing it: kept before the winner replaces it.
    lost: Option<Version>,
    /// Why the last local change or deletion was refused.
    refused: Option<String>,
    /// Metadata of the refused file, so it is not hashed (and refused) again and again.
    refused_meta: Option<LocalMeta>,
    /// The index generation that records the current version (an install waits for it).
    generation: u64,
    download_started: Option<Millis>,
    /// A finished download waiting for the index save that allows its install.
    fetched: Option<(Hash32, Fetched)>,
    installing: bool,
    /// A tombstone whose removal waits for an index save (or runs).
    removal: Option<Version>,
    removing: bool,
    /// Where the bytes of the last installed download came from.
    last_download: Option<LastDownload>,
}

/// A new local store this node may not create (`--write-policy writers`): left in the folder,
/// not replicated.
#[derive(Clone, Debug)]
struct RefusedNew {
    meta: LocalMeta,
    reason: String,
}

pub struct Engine {
    config: EngineConfig,
    local: String,
    index: StoreIndex,
    runtime: BTreeMap<String, StoreRuntime>,
    refused_new: BTreeMap<String, RefusedNew>,
    hashing: hashing::HashQueue,
    downloads: downloads::Scheduler,
    persist: persist::Persistence,
    peers: peers::Peers,
    drain: drain::Drain,
    offences: offences::Offences,
    /// Installs (and removals) waiting for an index save.
    parked: BTreeSet<String>,
    announce: Vec<SignedVersion>,
    /// Stores this node came to hold since the last tick: its peers hear of them then.
    newly_held: BTreeSet<String>,
    stats: Stats,
    rng: StdRng,
    scanned: bool,
    next_rescan: Millis,
    next_prune: Millis,
    out: Vec<Action>,
}

impl Engine {
    /// An engine over a loaded index. Versions this node made under the unsigned format 1 index
    /// are signed now and announced.
    pub fn new(config: EngineConfig, mut index: StoreIndex, now: Millis) -> Self {
        let local = config.keypair.public().to_peer_id().to_base58();
        let mut announce = Vec::new();
        let legacy_own: Vec<String> = index
            .iter()
            .filter(|(_, e)| e.is_legacy() && e.version.origin == local)
            .map(|(name, _)| name.clone())
            .collect();
        for name in legacy_own {
            let Some(entry) = index.get(&name) else {
                continue;
            };
            let mut record = entry.record(&name);
            record.owner = local.clone();
            match record.sign(&config.keypair) {
                Ok(signed) => {
                    index.update(&name, |e| {
                        e.owner = Some(local.clone());
                        e.signed_owner = Some(local.clone());
                        e.signature = Some(signed.signature);
                    });
                    if index
                        .get(&name)
                        .is_some_and(|e| e.is_held() || e.is_tombstone())
                    {
                        announce.push(signed);
                    }
                }
                Err(error) => tracing::error!(%error, "cannot sign a version of the old index"),
            }
        }
        let rng = StdRng::seed_from_u64(config.seed);
        let peers = peers::Peers::new(config.inventory_interval, config.inventory_concurrency);
        let mut engine = Self {
            local,
            index,
            runtime: BTreeMap::new(),
            refused_new: BTreeMap::new(),
            hashing: hashing::HashQueue::default(),
            downloads: downloads::Scheduler::default(),
            persist: persist::Persistence::default(),
            peers,
            drain: drain::Drain::default(),
            offences: offences::Offences::default(),
            parked: BTreeSet::new(),
            announce,
            newly_held: BTreeSet::new(),
            stats: Stats::default(),
            rng,
            scanned: false,
            next_rescan: now + RESCAN_INTERVAL.as_millis() as u64,
            next_prune: now,
            out: Vec::new(),
            config,
        };
        if !engine.announce.is_empty() {
            engine.persist.changed(now);
        }
        engine
    }

    /// Feeds one event; returns what to do.
    pub fn handle(&mut self, event: Event, now: Millis) -> Vec<Action> {
        match event {
            Event::Tick => self.on_tick(now),
            Event::Scanned(stores) => self.on_scanned(stores, now),
            Event::FileChanged { name, meta } => self.on_file_changed(&name, meta, now),
            Event::Hashed(results) => self.on_hashed(results, now),
            Event::PeerConnected(peer) => self.peers.connected(peer),
            Event::PeerDisconnected(peer) => {
                self.peers.disconnected(&peer);
                self.downloads.peer_gone(&peer);
                self.drain.disconnected(&peer);
            }
            Event::Remote { from, via, records } => {
                if via == Via::Inventory {
                    let held = records.iter().map(|r| {
                        let record = &r.signed().record;
                        (record.name.as_str(), &record.version, record.is_tombstone())
                    });
                    self.drain.inventory_records(from, held, &self.index);
                }
                self.on_remote(from, via, records, now)
            }
            Event::Rejected { from, via, reasons } => self.on_rejected(from, via, &reasons, now),
            Event::InventoryComplete { peer, draining } => {
                self.drain.inventory_complete(peer, draining)
            }
            Event::InventoryDone(peer) => {
                self.peers.inventory_done(&peer);
                self.drain.exchange_done(&peer);
            }
            Event::Drain(on) => self.set_draining(on, now),
            Event::BadData { peer, reason } => self.ban(peer, reason, now),
            Event::DownloadDone {
                name,
                hash,
                outcome,
            } => self.on_download_done(&name, hash, outcome, now),
            Event::Installed {
                name,
                hash,
                outcome,
            } => self.on_installed(&name, hash, outcome, now),
            Event::Removed {
                name,
                version,
                outcome,
            } => self.on_removed(&name, &version, outcome, now),
            Event::IndexSaved {
                generation,
                outcome,
            } => self.on_index_saved(generation, outcome, now),
            Event::DiskSpace(free) => self.downloads.set_free_bytes(free),
        }
        self.after_event(now);
        std::mem::take(&mut self.out)
    }

    /// The earliest time something is due without a new event (the driver may sleep until then).
    pub fn next_deadline(&self) -> Millis {
        let mut deadline = self.next_rescan.min(self.next_prune);
        for candidate in [
            self.hashing.next_recheck(),
            self.downloads.next_retry(),
            self.downloads.next_distant_fallback(),
            self.persist.next_due(),
            self.peers.next_round(),
            (!self.announce.is_empty()).then_some(0),
        ]
        .into_iter()
        .flatten()
        {
            deadline = deadline.min(candidate);
        }
        deadline
    }

    /// The index (what the server serves, what `/stores` shows).
    pub fn index(&self) -> &StoreIndex {
        &self.index
    }

    /// True while this node drains (`--drain-annotations`): no download starts.
    pub fn is_draining(&self) -> bool {
        self.drain.is_active()
    }

    /// Which held stores a live peer holds too, while draining (`GET /drain`).
    pub fn drain_report(&self) -> DrainReport {
        self.drain.report(&self.index, self.peers.connected_peers())
    }

    /// This node's peer id.
    pub fn local_peer(&self) -> &str {
        &self.local
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Takes the transfer durations recorded since the last call.
    pub fn take_transfer_seconds(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.stats.transfer_seconds)
    }

    /// Downloads wanted, running or waiting to retry.
    pub fn pending_transfers(&self) -> usize {
        self.downloads.pending_count()
    }

    /// True when the record is exactly the version the index holds (its signature was checked
    /// when it was accepted), so the driver can skip verifying it again.
    pub fn knows(&self, signed: &SignedVersion) -> bool {
        self.index
            .get(&signed.record.name)
            .is_some_and(|entry| entry.holds_record(signed))
    }

    /// `signed` as a verified record when [`Self::knows`] it (no second signature check).
    pub fn known_record(&self, signed: &SignedVersion) -> Option<VerifiedVersion> {
        self.knows(signed)
            .then(|| VerifiedVersion::known(signed.clone()))
    }

    /// True while the peer is banned for what it sent.
    pub fn is_banned(&self, peer: &PeerId, now: Millis) -> bool {
        self.offences.is_banned(peer, now)
    }

    /// Partial downloads the index still wants (name and hash), so the driver keeps their files.
    pub fn wanted_partials(&self) -> Vec<(String, Hash32)> {
        self.index
            .iter()
            .filter(|(_, e)| e.local.is_none())
            .filter_map(|(name, e)| Some((name.clone(), e.content.as_ref()?.hash)))
            .collect()
    }

    fn on_tick(&mut self, now: Millis) {
        self.downloads.wake_due(now);
        for name in self.hashing.due_rechecks(now) {
            self.hashing.request(&name, 0);
        }
        if now >= self.next_rescan {
            self.next_rescan = now + RESCAN_INTERVAL.as_millis() as u64;
            self.out.push(Action::Rescan);
        }
        if now >= self.next_prune {
            self.next_prune = now + PRUNE_INTERVAL.as_millis() as u64;
            self.prune_tombstones(now);
            self.offences.expire(now);
            self.out.push(Action::PruneConflicts {
                max_age_ms: self.config.conflict_ttl.as_millis() as u64,
                max_count: self.config.max_conflicts,
            });
        }
        self.peers.tick(now);
        self.notify_holders();
        if !self.announce.is_empty() {
            let records = std::mem::take(&mut self.announce);
            self.stats.announcements_queued += 1;
            self.out.push(Action::Announce(records));
        }
    }

    fn after_event(&mut self, now: Millis) {
        for batch in self.hashing.start_batches() {
            let requests = batch
                .into_iter()
                .map(|(name, size)| HashRequest {
                    draft: self.draft(&name, now),
                    name,
                    size,
                })
                .collect();
            self.out.push(Action::Hash(requests));
        }
        for peer in self.peers.start_exchanges() {
            self.out.push(Action::ExchangeInventory(peer));
        }
        self.schedule(now);
        let (entries, changed) = (self.index.len(), self.index.changes_pending());
        if let Some(save) = self.persist.start(now, entries, changed) {
            let how = if save.snapshot {
                self.index.begin_snapshot();
                IndexSave::Snapshot(Box::new(self.index.clone()))
            } else {
                IndexSave::Append {
                    epoch: self.index.epoch(),
                    changes: self.index.take_changes(),
                }
            };
            self.out.push(Action::SaveIndex {
                save: how,
                generation: save.generation,
                sync_data_dir: save.sync_data_dir,
            });
        }
    }

    fn runtime(&mut self, name: &str) -> &mut StoreRuntime {
        self.runtime.entry(name.to_owned()).or_default()
    }

    /// Records an index change; returns its generation.
    fn changed(&mut self, name: &str, now: Millis) -> u64 {
        let generation = self.persist.changed(now);
        self.runtime(name).generation = generation;
        generation
    }

    /// Notes that this node now holds `name`'s current version; the next tick tells its peers.
    fn now_holds(&mut self, name: &str) {
        self.newly_held.insert(name.to_owned());
    }

    /// Tells each connected peer which of the stores this node came to hold it is not known to
    /// hold itself. Only direct peers hear it (not the whole network through gossip), so an
    /// install costs a few messages, not one per node of the network.
    fn notify_holders(&mut self) {
        let records: Vec<SignedVersion> = std::mem::take(&mut self.newly_held)
            .into_iter()
            .filter_map(|name| {
                let entry = self.index.get(&name).filter(|e| e.is_held())?;
                entry.signed(&name)
            })
            .collect();
        if records.is_empty() {
            return;
        }
        let peers: Vec<PeerId> = self.peers.connected_peers().iter().copied().collect();
        for peer in peers {
            let unaware: Vec<SignedVersion> = records
                .iter()
                .filter(|signed| {
                    signed.record.content.is_some_and(|content| {
                        !self
                            .downloads
                            .is_holder(&signed.record.name, &peer, &content.hash)
                    })
                })
                .cloned()
                .collect();
            if !unaware.is_empty() {
                self.out.push(Action::NotifyHolding {
                    peer,
                    records: unaware,
                });
            }
        }
    }

    /// Signs a new version made here.
    fn sign(&self, record: VersionRecord) -> Option<SignedVersion> {
        match record.sign(&self.config.keypair) {
            Ok(signed) => Some(signed),
            Err(error) => {
                tracing::error!(%error, "cannot sign a local version");
                None
            }
        }
    }

    /// Bans a peer that served data failing verification.
    fn ban(&mut self, peer: PeerId, reason: String, now: Millis) {
        if self.offences.is_banned(&peer, now) {
            return;
        }
        self.offences.ban(peer, now);
        self.enforce_ban(peer, reason);
    }

    /// Enters or leaves drain mode. Entering: every connected peer's full inventory is read
    /// again now and every few seconds; leaving: downloads resume at the next schedule.
    fn set_draining(&mut self, on: bool, now: Millis) {
        if on {
            let in_flight: Vec<PeerId> = self.peers.in_flight().collect();
            if self.drain.start(now, in_flight) {
                self.peers
                    .set_fast(Some(drain::DRAIN_CHECK_INTERVAL_MS), now);
                tracing::info!("draining: no new downloads; waiting for peers to hold every store");
            }
        } else if self.drain.stop() {
            self.peers.set_fast(None, now);
            tracing::info!("drain ended: downloads resume");
        }
    }

    /// Stops using a banned peer and asks the driver to disconnect it.
    fn enforce_ban(&mut self, peer: PeerId, reason: String) {
        self.downloads.peer_gone(&peer);
        self.peers.disconnected(&peer);
        self.drain.disconnected(&peer);
        self.stats.peers_banned += 1;
        self.out.push(Action::Ban { peer, reason });
    }

    /// Drops tombstones older than `--tombstone-ttl`, then the oldest beyond `--max-tombstones`.
    fn prune_tombstones(&mut self, now: Millis) {
        let ttl = self.config.tombstone_ttl.as_millis() as u64;
        let mut tombstones: Vec<(Millis, String)> = self
            .index
            .iter()
            .filter(|(_, e)| e.is_tombstone())
            .map(|(name, e)| (e.accepted_ms, name.clone()))
            .collect();
        tombstones.sort();
        let excess = tombstones.len().saturating_sub(self.config.max_tombstones);
        let mut pruned = 0;
        for (i, (accepted, name)) in tombstones.into_iter().enumerate() {
            let removing = self.runtime.get(&name).is_some_and(|r| r.removal.is_some());
            if (i < excess || accepted.saturating_add(ttl) < now) && !removing {
                self.index.remove(&name);
                self.runtime.remove(&name);
                self.downloads.forget_store(&name);
                pruned += 1;
            }
        }
        if pruned > 0 {
            self.stats.tombstones_pruned += pruned;
            self.persist.changed(now);
            tracing::info!(pruned, "pruned old tombstones");
        }
    }
}

impl Engine {
    /// What this node knows in `[lower, upper)`, for reconciliation (`sync::reconcile`): what
    /// it holds, and the versions still to fetch for which it knows a holder. A version still
    /// to fetch with no known holder (after a restart, say) counts as unknown, so the next peer
    /// that holds it sends it and becomes its source.
    pub fn known_fingerprint(&self, lower: &str, upper: Option<&str>) -> (u64, Hash32) {
        self.index
            .known_range_fingerprint_where(lower, upper, |name, entry| {
                entry
                    .content
                    .as_ref()
                    .is_some_and(|content| self.downloads.has_holder(name, &content.hash))
            })
    }
}
