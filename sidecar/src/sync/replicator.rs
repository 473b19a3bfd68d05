//! The replicator: one task that owns every decision about stores (local changes, remote
//! versions, downloads, installs, conflicts, tombstones). Hashing, downloads, inventories and
//! fsyncs run in their own tasks and report back over a channel, so the decisions are taken in
//! one place, in order, and the watcher's view always meets an index that already knows about
//! the replicator's own installs.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dig_core::record::StoreEntry;
use libp2p::PeerId;
use parking_lot::{Mutex, RwLock};
use prometheus_client::registry::Registry;
use rand::seq::SliceRandom;
use tokio::sync::{Notify, Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::announce::{Announcement, RemoteEntry, WireEntry};
use super::client::SyncClient;
use super::config::ReplicationConfig;
use super::download::{
    DownloadConfig, DownloadError, DownloadTarget, Downloaded, Downloader, PartialFiles,
};
use super::metrics::{Direction, SyncMetrics};
use super::protocol::sync_protocol;
use super::server::{ServeContext, SharedIndex, run_server};
use super::status::{StoreStatus, SyncState};
use crate::node::{NodeEvent, NodeHandle};
use crate::store::hash::{self, CHUNK_SIZE, ContentDigest, Hash32};
use crate::store::index::{self, IndexError, StoreIndex};
use crate::store::install::{self, preserve_conflict};
use crate::store::name::{store_name_from_file_name, store_path};
use crate::store::scan::scan_data_dir;
use crate::store::watcher::{FolderWatcher, WatchError, WatchEvent};
use crate::store::{Content, IndexEntry, LocalMeta, Version};

/// Errors starting the replicator.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot create folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data folder {path} is not usable: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Watch(#[from] WatchError),
    #[error("the sync protocol {protocol} is already registered on this node")]
    ProtocolTaken { protocol: String },
}

const RESCAN_INTERVAL: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_millis(50);
const INDEX_SAVE_DELAY: Duration = Duration::from_millis(500);
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);
const RETRY_AFTER_DISK_FULL: Duration = Duration::from_secs(30);
const RECHECK_CHANGING_FILE: Duration = Duration::from_millis(500);
/// Single-chunk stores get this many times `max_parallel_downloads` slots.
const SMALL_FILE_SLOTS_FACTOR: usize = 8;
/// Hashing tasks at once (hashing is disk and CPU bound; a large file uses every core itself).
const HASH_CONCURRENCY: usize = 2;
/// One hashing task takes up to this many files, or this many bytes, from the queue: a burst of
/// small files costs a thread hand-off per batch rather than per file.
const HASH_BATCH_FILES: usize = 64;
const HASH_BATCH_BYTES: u64 = 16 << 20;
/// Inventory exchanges at once.
const INVENTORY_CONCURRENCY: usize = 8;
/// Sync streams served at once.
const MAX_SERVED_STREAMS: usize = 512;

enum Event {
    Watch(WatchEvent),
    Check(String),
    ExchangeInventory(PeerId),
    Hashed(Vec<(String, HashResult)>),
    Remote {
        holder: PeerId,
        entries: Vec<RemoteEntry>,
    },
    DownloadFinished {
        name: String,
        hash: Hash32,
        started: Instant,
        result: Result<Downloaded, DownloadError>,
    },
    Ban {
        peer: PeerId,
        reason: String,
    },
    Shutdown(oneshot::Sender<()>),
}

type HashResult = Result<Option<(LocalMeta, ContentDigest)>, HashFailure>;

enum HashFailure {
    /// The file changed while it was hashed; look again later.
    Changing,
    Io(io::Error),
}

/// Runtime facts about a store that are not part of the saved index.
#[derive(Default)]
struct Runtime {
    error: Option<String>,
    last_conflict: Option<String>,
    conflict_pending: bool,
    download: Option<Arc<AtomicU64>>,
}

struct Shared {
    index: SharedIndex,
    runtime: Mutex<HashMap<String, Runtime>>,
}

/// The running replication engine, for the HTTP API and the registry record.
#[derive(Clone)]
pub struct ReplicatorHandle {
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    cancel: CancellationToken,
}

impl ReplicatorHandle {
    /// Every store this node knows, with version, content and sync state.
    pub fn stores(&self) -> Vec<StoreStatus> {
        let index = self.shared.index.read();
        let runtime = self.shared.runtime.lock();
        index
            .entries
            .iter()
            .map(|(name, entry)| {
                let rt = runtime.get(name);
                let progress = rt.and_then(|r| r.download.as_ref()).map(|done| {
                    let size = entry.content.as_ref().map_or(0, |c| c.size);
                    if size == 0 {
                        0.0
                    } else {
                        (done.load(Ordering::Relaxed) as f64 / size as f64).min(1.0)
                    }
                });
                let state = if entry.is_tombstone() {
                    SyncState::Tombstone
                } else if entry.is_held() {
                    SyncState::Synced
                } else if progress.is_some() {
                    SyncState::Downloading
                } else if rt.is_some_and(|r| r.error.is_some()) {
                    SyncState::Error
                } else if rt.is_some_and(|r| r.conflict_pending) {
                    SyncState::Conflict
                } else {
                    SyncState::Pending
                };
                StoreStatus {
                    name: name.clone(),
                    lamport: entry.version.lamport,
                    origin: entry.version.origin.clone(),
                    size: entry.content.as_ref().map(|c| c.size),
                    hash: entry.content.as_ref().map(Content::hash_hex),
                    state,
                    progress,
                    error: rt
                        .and_then(|r| r.error.clone())
                        .filter(|_| !entry.is_held()),
                    last_conflict: rt.and_then(|r| r.last_conflict.clone()),
                }
            })
            .collect()
    }

    /// The stores this node holds, for its signed registry record.
    pub fn store_entries(&self) -> Vec<StoreEntry> {
        let index = self.shared.index.read();
        index
            .entries
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

    /// Saves the index and stops every replication task.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.events.send(Event::Shutdown(reply)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
        }
        self.cancel.cancel();
    }
}

/// Starts replication for one node.
pub struct Replicator;

impl Replicator {
    /// Loads the index, scans the folder, starts the watcher, the sync server, anti-entropy and
    /// the decision task. Registers its metrics into `registry`.
    pub async fn start(
        config: ReplicationConfig,
        node: NodeHandle,
        registry: &mut Registry,
    ) -> Result<ReplicatorHandle, SyncError> {
        let metrics = SyncMetrics::register(registry);
        for dir in [&config.data_dir, &config.state_dir] {
            std::fs::create_dir_all(dir).map_err(|source| SyncError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        }
        let data_dir = config
            .data_dir
            .canonicalize()
            .map_err(|source| SyncError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
        let tmp_dir = choose_tmp_dir(&data_dir, &config.state_dir)?;
        let conflicts_dir = config.state_dir.join("conflicts");
        let index_path = config.state_dir.join("index.json");
        let index = StoreIndex::load(&index_path)?;
        let shared = Arc::new(Shared {
            index: Arc::new(RwLock::new(index)),
            runtime: Mutex::new(HashMap::new()),
        });

        let network = node.network_id().to_owned();
        let protocol = sync_protocol(&network);
        let mut control = node.stream_control();
        let incoming = control
            .accept(protocol.clone())
            .map_err(|_| SyncError::ProtocolTaken {
                protocol: protocol.to_string(),
            })?;
        let cancel = CancellationToken::new();
        let serve = Arc::new(ServeContext {
            index: shared.index.clone(),
            data_dir: data_dir.clone(),
            metrics: metrics.clone(),
            corrupt_chunks: config.test_corrupt_chunks,
            streams: Arc::new(Semaphore::new(MAX_SERVED_STREAMS)),
        });
        if config.test_corrupt_chunks {
            tracing::warn!(
                "TEST MODE: this node corrupts every chunk it serves (--test-corrupt-chunks)"
            );
        }
        tokio::spawn(run_server(incoming, serve, cancel.clone()));

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (watch_tx, mut watch_rx) = mpsc::unbounded_channel();
        let watcher = FolderWatcher::start(&data_dir, config.watch_debounce, watch_tx)?;
        {
            let events = events_tx.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let _watcher = watcher;
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        event = watch_rx.recv() => match event {
                            Some(event) => { let _ = events.send(Event::Watch(event)); }
                            None => return,
                        },
                    }
                }
            });
        }

        let (bans_tx, mut bans_rx) = mpsc::unbounded_channel();
        {
            let events = events_tx.clone();
            tokio::spawn(async move {
                while let Some((peer, reason)) = bans_rx.recv().await {
                    if events.send(Event::Ban { peer, reason }).is_err() {
                        return;
                    }
                }
            });
        }
        let downloader = Downloader::new(
            node.stream_control(),
            DownloadConfig {
                protocol: protocol.clone(),
                tmp_dir: tmp_dir.clone(),
                min_free_bytes: config.min_free_bytes,
                streams_per_peer: config.streams_per_peer.max(1),
                request_timeout: config.request_timeout,
            },
            metrics.clone(),
            bans_tx,
        );

        let local_peer = node.local_peer_id().to_base58();
        let node_events = node.subscribe();
        let mut engine = Engine {
            config,
            data_dir,
            tmp_dir,
            conflicts_dir,
            index_path,
            node,
            local_peer,
            protocol,
            shared: shared.clone(),
            metrics,
            downloader,
            events: events_tx.clone(),
            holders: HashMap::new(),
            active: HashMap::new(),
            wanted: BTreeSet::new(),
            retry_at: HashMap::new(),
            hashing: HashSet::new(),
            rehash: HashSet::new(),
            hash_queue: VecDeque::new(),
            hash_tasks: 0,
            inventory_slots: Arc::new(Semaphore::new(INVENTORY_CONCURRENCY)),
            pending_announce: Vec::new(),
            ignored_logged: HashSet::new(),
            dirty_since: None,
            saving: Arc::new(AtomicBool::new(false)),
            dir_sync: Arc::new(Notify::new()),
            cancel: cancel.clone(),
        };
        engine.start_dir_syncer();
        engine.startup_scan().await;
        engine.clean_tmp();
        tokio::spawn(engine.run(events_rx, node_events));

        Ok(ReplicatorHandle {
            shared,
            events: events_tx,
            cancel,
        })
    }
}

/// Downloads go to `<state>/tmp` when it is on the data folder's file system (rename must not
/// cross file systems); otherwise to `<data>/.dig-tmp` (dot-folders are never replicated).
fn choose_tmp_dir(data_dir: &Path, state_dir: &Path) -> Result<PathBuf, SyncError> {
    let create = |path: PathBuf| {
        std::fs::create_dir_all(&path)
            .map(|()| path.clone())
            .map_err(|source| SyncError::CreateDir { path, source })
    };
    let state_tmp = create(state_dir.join("tmp"))?;
    let device = |path: &Path| std::fs::metadata(path).map(|m| m.dev()).ok();
    if device(&state_tmp).is_some() && device(&state_tmp) == device(data_dir) {
        Ok(state_tmp)
    } else {
        let fallback = create(data_dir.join(".dig-tmp"))?;
        tracing::info!(
            tmp = %fallback.display(),
            "state folder is on another file system than the data folder; downloads are staged in the data folder's .dig-tmp"
        );
        Ok(fallback)
    }
}

struct Engine {
    config: ReplicationConfig,
    data_dir: PathBuf,
    tmp_dir: PathBuf,
    conflicts_dir: PathBuf,
    index_path: PathBuf,
    node: NodeHandle,
    local_peer: String,
    protocol: libp2p::StreamProtocol,
    shared: Arc<Shared>,
    metrics: SyncMetrics,
    downloader: Downloader,
    events: mpsc::UnboundedSender<Event>,
    /// Which peer holds which content of which store.
    holders: HashMap<String, HashMap<PeerId, Hash32>>,
    /// Running downloads: store name -> content hash and cancel token.
    active: HashMap<String, (Hash32, CancellationToken, bool)>,
    /// Stores whose newest version is not held here.
    wanted: BTreeSet<String>,
    retry_at: HashMap<String, Instant>,
    hashing: HashSet<String>,
    rehash: HashSet<String>,
    /// Files waiting to be hashed, with their size when they were seen.
    hash_queue: VecDeque<(String, PathBuf, u64)>,
    /// Hashing tasks running.
    hash_tasks: usize,
    inventory_slots: Arc<Semaphore>,
    pending_announce: Vec<WireEntry>,
    ignored_logged: HashSet<String>,
    dirty_since: Option<Instant>,
    saving: Arc<AtomicBool>,
    dir_sync: Arc<Notify>,
    cancel: CancellationToken,
}

impl Engine {
    async fn run(
        mut self,
        mut events: mpsc::UnboundedReceiver<Event>,
        mut node_events: broadcast::Receiver<NodeEvent>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The debouncer drops a create and a remove that fall in one window (e.g. a store
        // deleted right after its install); a stat-only rescan catches what events miss.
        let mut rescan = tokio::time::interval_at(
            tokio::time::Instant::now() + RESCAN_INTERVAL,
            RESCAN_INTERVAL,
        );
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut inventory = tokio::time::interval(
            self.config
                .inventory_interval
                .max(Duration::from_millis(100)),
        );
        inventory.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                event = events.recv() => match event {
                    Some(Event::Shutdown(reply)) => {
                        self.save_index_now();
                        let _ = reply.send(());
                        break;
                    }
                    Some(event) => {
                        self.handle(event);
                        self.schedule();
                    }
                    None => break,
                },
                event = node_events.recv() => match event {
                    Ok(event) => {
                        self.handle_node(event);
                        self.schedule();
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "replicator fell behind node events; asking every peer for its inventory");
                        self.inventory_round();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = inventory.tick() => self.inventory_round(),
                _ = rescan.tick() => self.rescan(),
                _ = tick.tick() => self.on_tick(),
            }
        }
        for (_, (_, cancel, _)) in self.active.drain() {
            cancel.cancel();
        }
        self.cancel.cancel();
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Watch(WatchEvent::Changed(paths)) => {
                tracing::debug!(?paths, "data folder changed");
                for path in paths {
                    let name = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|file| self.store_name_or_log(file));
                    if let Some(name) = name {
                        self.check(&name);
                    }
                }
            }
            Event::Watch(WatchEvent::Rescan) => self.rescan(),
            Event::Check(name) => self.check(&name),
            Event::ExchangeInventory(peer) => self.exchange_inventory(peer),
            Event::Hashed(results) => {
                self.hash_tasks -= 1;
                for (name, result) in results {
                    self.on_hashed(name, result);
                }
                self.start_hashing();
            }
            Event::Remote { holder, entries } => {
                for entry in entries {
                    self.on_remote(holder, entry);
                }
            }
            Event::DownloadFinished {
                name,
                hash,
                started,
                result,
            } => self.on_download_finished(name, hash, started, result),
            Event::Ban { peer, reason } => {
                self.metrics.peers_banned.inc();
                self.downloader.expire_idle_streams(Some(&peer));
                for holders in self.holders.values_mut() {
                    holders.remove(&peer);
                }
                let node = self.node.clone();
                tokio::spawn(async move {
                    if let Err(error) = node.ban_peer(peer, reason.clone()).await {
                        tracing::warn!(%peer, %error, "cannot ban peer");
                    }
                });
            }
            Event::Shutdown(_) => {}
        }
    }

    fn handle_node(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::PeerConnected(peer) => self.exchange_inventory(peer),
            NodeEvent::PeerDisconnected(peer) => {
                for holders in self.holders.values_mut() {
                    holders.remove(&peer);
                }
                self.downloader.expire_idle_streams(Some(&peer));
            }
            NodeEvent::Announcement { source, data } => match Announcement::decode(&data) {
                Ok((holder, entries)) => {
                    self.metrics.announcements_received.inc();
                    for entry in entries {
                        self.on_remote(holder, entry);
                    }
                }
                Err(error) => {
                    tracing::debug!(%source, %error, "ignoring an invalid store announcement");
                }
            },
        }
    }

    fn store_name_or_log(&mut self, file_name: &str) -> Option<String> {
        if let Some(name) = store_name_from_file_name(file_name) {
            return Some(name.to_owned());
        }
        if !file_name.starts_with('.') && self.ignored_logged.insert(file_name.to_owned()) {
            tracing::warn!(
                file = file_name,
                "ignoring a data folder entry that is not a store (<name>.dig with name matching ^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}$)"
            );
        }
        None
    }

    // ---------- local changes ----------

    async fn startup_scan(&mut self) {
        let data_dir = self.data_dir.clone();
        let scan = tokio::task::spawn_blocking(move || scan_data_dir(&data_dir)).await;
        let scan = match scan {
            Ok(Ok(scan)) => scan,
            Ok(Err(error)) => {
                tracing::error!(dir = %self.data_dir.display(), %error, "cannot scan the data folder");
                return;
            }
            Err(error) => {
                tracing::error!(%error, "data folder scan task failed");
                return;
            }
        };
        for ignored in &scan.ignored {
            self.store_name_or_log(ignored);
        }
        let present: HashSet<&str> = scan.stores.iter().map(|(n, _)| n.as_str()).collect();
        let known: Vec<String> = self.shared.index.read().entries.keys().cloned().collect();
        let mut changed = 0;
        for (name, meta) in &scan.stores {
            if !self.matches_index(name, meta) {
                changed += 1;
                self.check(name);
            }
        }
        for name in known.iter().filter(|n| !present.contains(n.as_str())) {
            self.on_missing(name);
        }
        {
            let index = self.shared.index.read();
            for (name, entry) in &index.entries {
                if entry.content.is_some() && entry.local.is_none() {
                    self.wanted.insert(name.clone());
                }
            }
        }
        tracing::info!(
            stores = scan.stores.len(),
            to_hash = changed,
            ignored = scan.ignored.len(),
            "scanned the data folder"
        );
        self.update_gauges();
    }

    fn rescan(&mut self) {
        match scan_data_dir(&self.data_dir) {
            Ok(scan) => {
                let present: HashSet<String> = scan.stores.iter().map(|(n, _)| n.clone()).collect();
                for (name, _) in &scan.stores {
                    self.check(name);
                }
                let known: Vec<String> = self.shared.index.read().entries.keys().cloned().collect();
                for name in known.iter().filter(|n| !present.contains(*n)) {
                    self.on_missing(name);
                }
            }
            Err(error) => tracing::error!(%error, "cannot rescan the data folder"),
        }
    }

    /// True when the file with `meta` is what the index already accounts for.
    fn matches_index(&self, name: &str, meta: &LocalMeta) -> bool {
        let index = self.shared.index.read();
        index
            .entries
            .get(name)
            .is_some_and(|e| e.local.as_ref() == Some(meta) || e.superseded.as_ref() == Some(meta))
    }

    /// Looks at one store file after a watcher event or at start-up.
    fn check(&mut self, name: &str) {
        if self.hashing.contains(name) {
            self.rehash.insert(name.to_owned());
            return;
        }
        let Some(path) = store_path(&self.data_dir, name) else {
            return;
        };
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.on_missing(name),
            Err(error) => tracing::warn!(path = %path.display(), %error, "cannot stat store file"),
            Ok(meta) if !meta.file_type().is_file() => {
                self.store_name_or_log(&format!("{name}.dig"));
            }
            Ok(meta) => {
                if !self.matches_index(name, &LocalMeta::from_metadata(&meta)) {
                    self.hashing.insert(name.to_owned());
                    self.hash_queue
                        .push_back((name.to_owned(), path, meta.len()));
                    self.start_hashing();
                }
            }
        }
    }

    /// Starts hashing tasks for queued files while fewer than `HASH_CONCURRENCY` run.
    fn start_hashing(&mut self) {
        while self.hash_tasks < HASH_CONCURRENCY && !self.hash_queue.is_empty() {
            let mut batch = Vec::new();
            let mut bytes = 0u64;
            while let Some((_, _, size)) = self.hash_queue.front() {
                if !batch.is_empty()
                    && (batch.len() >= HASH_BATCH_FILES || bytes + size > HASH_BATCH_BYTES)
                {
                    break;
                }
                bytes += size;
                let (name, path, _) = self.hash_queue.pop_front().expect("front exists");
                batch.push((name, path));
            }
            self.hash_tasks += 1;
            let events = self.events.clone();
            tokio::spawn(async move {
                let names: Vec<String> = batch.iter().map(|(name, _)| name.clone()).collect();
                let results = tokio::task::spawn_blocking(move || {
                    batch
                        .into_iter()
                        .map(|(name, path)| (name, hash_stable(&path)))
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_else(|e| {
                    let message = e.to_string();
                    names
                        .into_iter()
                        .map(|name| {
                            (
                                name,
                                Err(HashFailure::Io(io::Error::other(message.clone()))),
                            )
                        })
                        .collect()
                });
                let _ = events.send(Event::Hashed(results));
            });
        }
    }

    fn on_hashed(&mut self, name: String, result: HashResult) {
        self.hashing.remove(&name);
        let again = self.rehash.remove(&name);
        match result {
            Ok(None) => self.on_missing(&name),
            Ok(Some((meta, digest))) => self.on_local_content(&name, meta, digest),
            Err(HashFailure::Changing) => {
                let events = self.events.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RECHECK_CHANGING_FILE).await;
                    let _ = events.send(Event::Check(name));
                });
                return;
            }
            Err(HashFailure::Io(error)) => {
                tracing::warn!(store = %name, %error, "cannot hash store file");
            }
        }
        if again {
            self.check(&name);
        }
    }

    fn on_local_content(&mut self, name: &str, meta: LocalMeta, digest: ContentDigest) {
        let mut index = self.shared.index.write();
        let current = index.entries.get(name).cloned();
        if let Some(mut entry) = current.clone()
            && entry
                .content
                .as_ref()
                .is_some_and(|c| c.hash == digest.hash)
        {
            // Same bytes as the version we know (copied in by hand, touched, or a download
            // finished by someone else): no new version.
            let newly_held = entry.local.is_none();
            entry.local = Some(meta);
            entry.superseded = None;
            if let Some(content) = entry.content.as_mut() {
                content.chunks = Some(digest.chunks);
            }
            index.entries.insert(name.to_owned(), entry.clone());
            drop(index);
            self.wanted.remove(name);
            self.cancel_download(name);
            if newly_held {
                self.queue_announce(name, &entry);
            }
            self.mark_dirty();
            return;
        }
        let version = index.next_local_version(&self.local_peer);
        let entry = IndexEntry {
            version: version.clone(),
            content: Some(digest.into()),
            local: Some(meta),
            previous: current.map(|c| c.version),
            superseded: None,
        };
        index.entries.insert(name.to_owned(), entry.clone());
        drop(index);
        tracing::info!(store = name, %version, size = meta.size, "local change: new version");
        self.wanted.remove(name);
        self.cancel_download(name);
        self.runtime(name, |rt| {
            rt.error = None;
            rt.conflict_pending = false;
        });
        self.queue_announce(name, &entry);
        self.mark_dirty();
    }

    fn on_missing(&mut self, name: &str) {
        let mut index = self.shared.index.write();
        let Some(entry) = index.entries.get(name).cloned() else {
            return;
        };
        if !entry.is_held() {
            return;
        }
        if self.config.propagate_deletes {
            let version = index.next_local_version(&self.local_peer);
            let tombstone = IndexEntry {
                version: version.clone(),
                content: None,
                local: None,
                previous: Some(entry.version.clone()),
                superseded: None,
            };
            index.entries.insert(name.to_owned(), tombstone.clone());
            drop(index);
            tracing::info!(store = name, %version, "local deletion: tombstone");
            self.queue_announce(name, &tombstone);
        } else {
            let mut entry = entry;
            entry.local = None;
            entry.superseded = None;
            index.entries.insert(name.to_owned(), entry);
            drop(index);
            tracing::info!(
                store = name,
                "store file deleted locally; fetching it again from peers (deletions are propagated only with --propagate-deletes)"
            );
            self.wanted.insert(name.to_owned());
        }
        self.mark_dirty();
    }

    // ---------- remote versions ----------

    fn on_remote(&mut self, holder: PeerId, remote: RemoteEntry) {
        let name = remote.name.clone();
        let holder_is_self = holder.to_base58() == self.local_peer;
        if !holder_is_self {
            let holders = self.holders.entry(name.clone()).or_default();
            match remote.content {
                Some((_, hash)) => {
                    holders.insert(holder, hash);
                }
                None => {
                    holders.remove(&holder);
                }
            }
        }
        let mut index = self.shared.index.write();
        index.observe_lamport(remote.version.lamport);
        let current = index.entries.get(&name).cloned();
        if current
            .as_ref()
            .is_some_and(|c| c.version >= remote.version)
        {
            return;
        }
        let mut conflict_source: Option<(Version, PathBuf)> = None;
        let mut superseded = None;
        if let Some(current) = &current
            && current.is_held()
        {
            let same_content = match (&current.content, remote.content) {
                (Some(c), Some((_, hash))) => c.hash == hash,
                _ => false,
            };
            if same_content {
                let mut entry = current.clone();
                entry.version = remote.version.clone();
                entry.previous = remote.previous.clone();
                index.entries.insert(name.clone(), entry);
                drop(index);
                self.mark_dirty();
                return;
            }
            // Our own version lost to one made without seeing it: keep ours in conflicts/.
            let ours = current.version.origin == self.local_peer;
            let seen_by_writer = remote.previous.as_ref() == Some(&current.version);
            if ours
                && !seen_by_writer
                && let Some(path) = store_path(&self.data_dir, &name)
            {
                conflict_source = Some((current.version.clone(), path));
            }
            superseded = current.local;
        }
        let entry = IndexEntry {
            version: remote.version.clone(),
            content: remote.content.map(|(size, hash)| Content {
                size,
                hash,
                chunks: None,
            }),
            local: None,
            previous: remote.previous.clone(),
            superseded,
        };
        index.entries.insert(name.clone(), entry.clone());
        drop(index);
        tracing::debug!(store = %name, version = %remote.version, %holder, "newer version from a peer");

        if let Some((version, path)) = conflict_source {
            self.keep_conflict(&name, &version, &path);
            self.runtime(&name, |rt| rt.conflict_pending = entry.content.is_some());
            // The hard link changed the file's ctime; the file is still the superseded version.
            if entry.content.is_some()
                && let Ok(meta) = LocalMeta::of_path(&path)
                && let Some(e) = self.shared.index.write().entries.get_mut(&name)
            {
                e.superseded = Some(meta);
            }
        }
        self.cancel_download(&name);
        self.retry_at.remove(&name);
        if entry.content.is_some() {
            self.wanted.insert(name.clone());
        } else {
            self.wanted.remove(&name);
            self.apply_tombstone(&name, superseded);
        }
        self.mark_dirty();
    }

    fn keep_conflict(&mut self, name: &str, version: &Version, path: &Path) {
        match preserve_conflict(&self.conflicts_dir, path, name, version) {
            Ok(kept) => {
                self.metrics.conflicts.inc();
                tracing::warn!(
                    store = name,
                    %version,
                    kept = %kept.display(),
                    "local version lost to a newer one; kept in conflicts/"
                );
                let kept = kept.display().to_string();
                self.runtime(name, |rt| rt.last_conflict = Some(kept));
            }
            Err(error) => {
                tracing::error!(store = name, %error, "cannot keep the losing local version in conflicts/");
            }
        }
    }

    /// Deletes a store's file for a winning tombstone; a file that is not the version the index
    /// knew (changed locally meanwhile) is kept in conflicts/ first.
    fn apply_tombstone(&mut self, name: &str, expected: Option<LocalMeta>) {
        let Some(path) = store_path(&self.data_dir, name) else {
            return;
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => {
                if Some(LocalMeta::from_metadata(&meta)) != expected {
                    self.keep_conflict(name, &Version::new(0, "unindexed"), &path);
                }
                if let Err(error) = install::remove_store_file(&path) {
                    tracing::error!(store = name, %error, "cannot delete store file for a tombstone");
                } else {
                    tracing::info!(store = name, "store deleted by a tombstone from a peer");
                    self.dir_sync.notify_one();
                }
            }
            _ => {}
        }
    }

    // ---------- downloads ----------

    fn schedule(&mut self) {
        let small_limit = self.config.max_parallel_downloads.max(1) * SMALL_FILE_SLOTS_FACTOR;
        let large_limit = self.config.max_parallel_downloads.max(1);
        if self.wanted.is_empty() || self.active.len() >= small_limit {
            return;
        }
        let now = Instant::now();
        let mut free = small_limit - self.active.len();
        let mut large_running = self.active.values().filter(|a| a.2).count();
        let mut plans = Vec::new();
        let mut stale = Vec::new();
        let mut too_large = Vec::new();
        {
            let index = self.shared.index.read();
            for name in &self.wanted {
                if free == 0 {
                    break;
                }
                if self.active.contains_key(name)
                    || self.retry_at.get(name).is_some_and(|at| *at > now)
                {
                    continue;
                }
                let Some(content) = index
                    .entries
                    .get(name)
                    .filter(|e| e.local.is_none())
                    .and_then(|e| e.content.as_ref())
                else {
                    stale.push(name.clone());
                    continue;
                };
                if content.size > self.config.max_store_bytes {
                    too_large.push((name.clone(), content.size));
                    continue;
                }
                let large = content.size > CHUNK_SIZE;
                if large && large_running >= large_limit {
                    continue;
                }
                let mut peers: Vec<PeerId> = self
                    .holders
                    .get(name)
                    .map(|h| {
                        h.iter()
                            .filter(|(_, hash)| **hash == content.hash)
                            .map(|(p, _)| *p)
                            .collect()
                    })
                    .unwrap_or_default();
                if peers.is_empty() {
                    continue;
                }
                // Spread single-chunk stores (and the first requests of large ones) over holders.
                peers.shuffle(&mut rand::thread_rng());
                large_running += usize::from(large);
                free -= 1;
                plans.push((name.clone(), content.clone(), peers));
            }
        }
        for name in stale {
            self.wanted.remove(&name);
        }
        for (name, size) in too_large {
            let message = format!(
                "store {name} is {size} bytes, above the limit of {} bytes (--max-store-size)",
                self.config.max_store_bytes
            );
            tracing::warn!("{message}");
            self.metrics.download_failed("too_large");
            self.runtime(&name, |rt| rt.error = Some(message));
            self.wanted.remove(&name);
        }
        for (name, content, peers) in plans {
            self.start_download(name, content, peers);
        }
    }

    fn start_download(&mut self, name: String, content: Content, peers: Vec<PeerId>) {
        let cancel = self.cancel.child_token();
        let progress = Arc::new(AtomicU64::new(0));
        self.active.insert(
            name.clone(),
            (content.hash, cancel.clone(), content.size > CHUNK_SIZE),
        );
        self.runtime(&name, |rt| rt.download = Some(progress.clone()));
        let target = DownloadTarget {
            name: name.clone(),
            size: content.size,
            hash: content.hash,
        };
        let downloader = self.downloader.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = downloader.download(&target, &peers, progress) => {
                    let _ = events.send(Event::DownloadFinished { name, hash: target.hash, started, result });
                }
            }
        });
    }

    fn cancel_download(&mut self, name: &str) {
        if let Some((hash, cancel, _)) = self.active.remove(name) {
            cancel.cancel();
            PartialFiles::new(&self.tmp_dir, name, &hash).remove();
        }
        self.runtime(name, |rt| rt.download = None);
    }

    fn on_download_finished(
        &mut self,
        name: String,
        hash: Hash32,
        started: Instant,
        result: Result<Downloaded, DownloadError>,
    ) {
        if self.active.get(&name).map(|a| a.0) != Some(hash) {
            return;
        }
        self.active.remove(&name);
        self.runtime(&name, |rt| rt.download = None);
        match result {
            Ok(downloaded) => self.install(&name, hash, started, downloaded),
            Err(error) => {
                self.metrics.download_failed(error.reason());
                let delay = if error.reason() == "disk_full" {
                    RETRY_AFTER_DISK_FULL
                } else {
                    RETRY_AFTER_FAILURE
                };
                tracing::warn!(store = %name, %error, retry_in = ?delay, "download failed");
                self.retry_at.insert(name.clone(), Instant::now() + delay);
                let message = error.to_string();
                self.runtime(&name, |rt| rt.error = Some(message));
            }
        }
    }

    fn install(&mut self, name: &str, hash: Hash32, started: Instant, downloaded: Downloaded) {
        let files = PartialFiles::new(&self.tmp_dir, name, &hash);
        let entry = self.shared.index.read().entries.get(name).cloned();
        let Some(mut entry) = entry
            .filter(|e| e.local.is_none() && e.content.as_ref().is_some_and(|c| c.hash == hash))
        else {
            files.remove();
            return;
        };
        let Some(target) = store_path(&self.data_dir, name) else {
            files.remove();
            return;
        };
        // Whatever is in the way and is not the superseded version the index knows (a change not
        // yet seen by the watcher) is kept in conflicts/ before it is replaced.
        if let Ok(meta) = std::fs::symlink_metadata(&target)
            && Some(LocalMeta::from_metadata(&meta)) != entry.superseded
        {
            self.keep_conflict(name, &Version::new(0, "unindexed"), &target);
        }
        if let Err(error) = install::install(&downloaded.path, &target) {
            let message = format!(
                "cannot move the verified download into {}: {error}",
                target.display()
            );
            tracing::error!(store = name, "{message}");
            self.runtime(name, |rt| rt.error = Some(message));
            self.retry_at
                .insert(name.to_owned(), Instant::now() + RETRY_AFTER_FAILURE);
            return;
        }
        self.dir_sync.notify_one();
        match LocalMeta::of_path(&target) {
            Ok(meta) => {
                entry.local = Some(meta);
                entry.superseded = None;
                if let Some(content) = entry.content.as_mut() {
                    content.chunks = Some(downloaded.manifest);
                }
                self.shared
                    .index
                    .write()
                    .entries
                    .insert(name.to_owned(), entry.clone());
            }
            Err(error) => {
                tracing::error!(store = name, %error, "cannot stat installed store file");
            }
        }
        let _ = std::fs::remove_file(&files.manifest);
        let _ = std::fs::remove_file(&files.done);
        self.wanted.remove(name);
        self.retry_at.remove(name);
        self.runtime(name, |rt| {
            rt.error = None;
            rt.conflict_pending = false;
        });
        self.metrics.add_file(Direction::Received);
        self.metrics
            .transfer_duration
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            store = name,
            version = %entry.version,
            size = entry.content.as_ref().map_or(0, |c| c.size),
            resumed_bytes = downloaded.resumed_bytes,
            fetched_bytes = downloaded.fetched_bytes,
            seconds = started.elapsed().as_secs_f64(),
            "installed a verified store version"
        );
        self.queue_announce(name, &entry);
        self.mark_dirty();
    }

    /// Removes partial downloads that no wanted version needs any more.
    fn clean_tmp(&self) {
        let keep: HashSet<String> = {
            let index = self.shared.index.read();
            index
                .entries
                .iter()
                .filter(|(_, e)| e.local.is_none())
                .filter_map(|(name, e)| {
                    e.content
                        .as_ref()
                        .map(|c| format!("{name}.{}.", c.hash_hex()))
                })
                .collect()
        };
        let Ok(listing) = std::fs::read_dir(&self.tmp_dir) else {
            return;
        };
        for entry in listing.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if !keep.iter().any(|prefix| file.starts_with(prefix)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    // ---------- announcements and inventories ----------

    fn queue_announce(&mut self, name: &str, entry: &IndexEntry) {
        self.pending_announce
            .push(WireEntry::from_index(name, entry));
    }

    fn flush_announcements(&mut self) {
        if self.pending_announce.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.pending_announce);
        let messages = Announcement::encode_batches(&self.node.local_peer_id(), &entries);
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
                }
            }
        });
    }

    fn inventory_round(&mut self) {
        let node = self.node.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Ok(peers) = node.connected_peers().await {
                for peer in peers {
                    let _ = events.send(Event::ExchangeInventory(peer));
                }
            }
        });
    }

    fn exchange_inventory(&mut self, peer: PeerId) {
        let mut control = self.node.stream_control();
        let protocol = self.protocol.clone();
        let timeout = self.config.request_timeout;
        let index = self.shared.index.clone();
        let events = self.events.clone();
        let slots = self.inventory_slots.clone();
        tokio::spawn(async move {
            let _permit = slots.acquire_owned().await;
            let result = async {
                let mut client = SyncClient::open(&mut control, peer, protocol, timeout).await?;
                let (theirs, _) = client.digest().await?;
                let (ours, _) = index.read().holdings_digest();
                let entries = if theirs == ours {
                    Vec::new()
                } else {
                    client.inventory().await?
                };
                client.close().await;
                Ok::<_, super::client::ClientError>(entries)
            }
            .await;
            match result {
                Ok(wire) if !wire.is_empty() => {
                    let mut entries = Vec::with_capacity(wire.len());
                    for entry in wire {
                        match entry.validate() {
                            Ok(entry) => entries.push(entry),
                            Err(error) => {
                                tracing::debug!(%peer, %error, "ignoring an invalid inventory entry")
                            }
                        }
                    }
                    let _ = events.send(Event::Remote {
                        holder: peer,
                        entries,
                    });
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%peer, %error, "inventory exchange failed"),
            }
        });
    }

    // ---------- housekeeping ----------

    fn on_tick(&mut self) {
        self.downloader.expire_idle_streams(None);
        self.flush_announcements();
        self.schedule();
        self.update_gauges();
        if let Some(since) = self.dirty_since
            && since.elapsed() >= INDEX_SAVE_DELAY
        {
            self.save_index_soon();
        }
    }

    fn mark_dirty(&mut self) {
        self.dirty_since.get_or_insert_with(Instant::now);
    }

    fn save_index_soon(&mut self) {
        if self.saving.swap(true, Ordering::AcqRel) {
            return;
        }
        self.dirty_since = None;
        let snapshot = self.shared.index.read().clone();
        let path = self.index_path.clone();
        let saving = self.saving.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = snapshot.save(&path) {
                tracing::error!(%error, "cannot save the store index");
            }
            saving.store(false, Ordering::Release);
        });
    }

    fn save_index_now(&mut self) {
        let snapshot = self.shared.index.read().clone();
        if let Err(error) = snapshot.save(&self.index_path) {
            tracing::error!(%error, "cannot save the store index");
        }
        self.dirty_since = None;
    }

    /// One background task makes renames and deletions in the data folder durable; bursts of
    /// installs share one directory fsync.
    fn start_dir_syncer(&self) {
        let notify = self.dir_sync.clone();
        let dir = self.data_dir.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = notify.notified() => {}
                }
                let dir = dir.clone();
                let result = tokio::task::spawn_blocking(move || index::sync_dir(&dir)).await;
                if let Ok(Err(error)) = result {
                    tracing::warn!(%error, "cannot fsync the data folder");
                }
            }
        });
    }

    fn runtime(&self, name: &str, update: impl FnOnce(&mut Runtime)) {
        update(
            self.shared
                .runtime
                .lock()
                .entry(name.to_owned())
                .or_default(),
        );
    }

    fn update_gauges(&self) {
        let index = self.shared.index.read();
        let held = index.entries.values().filter(|e| e.is_held());
        let (count, bytes) = held.fold((0i64, 0i64), |(n, b), e| {
            (n + 1, b + e.content.as_ref().map_or(0, |c| c.size as i64))
        });
        self.metrics.stores.set(count);
        self.metrics.bytes_stored.set(bytes);
        self.metrics.pending_transfers.set(self.wanted.len() as i64);
    }
}

/// Hashes a file and checks it did not change meanwhile. `Ok(None)` when it is gone.
fn hash_stable(path: &Path) -> HashResult {
    let before = match LocalMeta::of_path(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(HashFailure::Io(e)),
    };
    let digest = match hash::digest_file(path) {
        Ok(digest) => digest,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // The file shrank while it was read.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(HashFailure::Changing),
        Err(e) => return Err(HashFailure::Io(e)),
    };
    match LocalMeta::of_path(path) {
        Ok(after) if after == before && digest.size == before.size => Ok(Some((before, digest))),
        Ok(_) => Err(HashFailure::Changing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HashFailure::Io(e)),
    }
}
