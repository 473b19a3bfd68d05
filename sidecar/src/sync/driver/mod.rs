//! The driver: the thin IO shell around the [`Engine`]. One task owns the engine's event loop:
//! it turns the watcher, the node's events, finished tasks and the clock into engine events, and
//! carries out the actions that come back (hashing, downloads, installs, index saves,
//! announcements, inventories, bans). Installs and removals run to completion before the next
//! event, so the engine always knows about its own installs before the watcher reports them.

mod drain_file;
mod effects;
mod inbound;
mod state;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dig_core::record::StoreEntry;
use libp2p::PeerId;
use libp2p::identity::Keypair;
use parking_lot::{Mutex, RwLock};
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::config::ReplicationConfig;
use super::download::{DownloadConfig, Downloader, PartialFiles};
use super::engine::{DrainReport, Engine, EngineConfig, Event, Limits, Via};
use super::holder_notices::NoticeQueue;
use super::metrics::SyncMetrics;
use super::protocol::sync_protocol;
use super::server::{ServeContext, run_server};
use super::status::StoreStatus;
use super::swarming::Swarming;
use crate::node::{NodeEvent, NodeHandle};
use crate::store::StoreIndex;
use crate::store::disk;
use crate::store::hash::Hash32;
use crate::store::index::IndexError;
use crate::store::name::store_name_from_file_name;
use crate::store::scan::{ScanResult, scan_data_dir};
use crate::store::watcher::{FolderWatcher, WatchError, WatchEvent};
use state::{Clock, Driver, Input, Paths, Shared, StatsMirror};

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

/// The driver's tick: the engine's timers are checked this often.
const TICK: Duration = Duration::from_millis(50);
/// Inventory exchanges at once.
const INVENTORY_CONCURRENCY: usize = 8;
/// Finished downloads handled (and installed) together at most.
const FINISHED_BATCH: usize = 256;

/// The running replication engine, for the HTTP API and the registry record.
#[derive(Clone)]
pub struct ReplicatorHandle {
    shared: Arc<Shared>,
    inputs: mpsc::UnboundedSender<Input>,
    cancel: CancellationToken,
    running: Arc<AtomicBool>,
}

impl ReplicatorHandle {
    /// Every store this node knows, with version, owner, content and sync state.
    pub fn stores(&self) -> Vec<StoreStatus> {
        let progress: HashMap<String, u64> = self
            .shared
            .downloads
            .lock()
            .iter()
            .map(|(name, r)| (name.clone(), r.progress.load(Ordering::Relaxed)))
            .collect();
        self.shared
            .engine
            .read()
            .statuses(&|name| progress.get(name).copied())
    }

    /// Whether this node drains and which of its stores no live peer holds yet (`GET /drain`).
    pub fn drain(&self) -> DrainReport {
        self.shared.engine.read().drain_report()
    }

    /// The stores this node holds, for its signed registry record.
    pub fn store_entries(&self) -> Vec<StoreEntry> {
        self.shared.engine.read().held_entries()
    }

    /// False once the replication task has stopped (it panicked or was shut down): `/health`
    /// then fails, so Kubernetes restarts the node.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Saves the index and stops every replication task.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.inputs.send(Input::Shutdown(reply)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
        }
        self.cancel.cancel();
    }
}

/// Starts replication for one node.
pub struct Replicator;

impl Replicator {
    /// Loads the index, scans the folder, starts the watcher, the sync server and the engine's
    /// loop. `keypair` is the node's identity: it signs this node's versions. Registers the
    /// metrics into `registry`.
    pub async fn start(
        config: ReplicationConfig,
        keypair: Keypair,
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
        let paths = Paths {
            tmp_dir: choose_tmp_dir(&data_dir, &config.state_dir)?,
            conflicts_dir: config.state_dir.join("conflicts"),
            index_path: config.state_dir.join("index.json"),
            data_dir,
        };
        let index = StoreIndex::load(&paths.index_path)?;
        let clock = Clock::start();
        let engine = Engine::new(
            EngineConfig {
                keypair: keypair.clone(),
                rules: config.rules.clone(),
                propagate_deletes: config.propagate_deletes,
                limits: Limits {
                    max_parallel: config.max_parallel_downloads,
                    max_store_bytes: config.max_store_bytes,
                    min_free_bytes: config.min_free_bytes,
                },
                inventory_interval: config.inventory_interval,
                inventory_concurrency: INVENTORY_CONCURRENCY,
                max_stores: config.max_stores,
                tombstone_ttl: config.tombstone_ttl,
                max_tombstones: config.max_tombstones,
                conflict_ttl: config.conflict_ttl,
                max_conflicts: config.max_conflicts,
                seed: rand::random(),
            },
            index,
            clock.now(),
        );
        effects::clean_tmp(&paths.tmp_dir, &engine.wanted_partials());
        let shared = Arc::new(Shared {
            engine: RwLock::new(engine),
            downloads: Mutex::new(HashMap::new()),
            keys: Mutex::new(Default::default()),
        });

        let protocol = sync_protocol(node.network_id());
        let mut control = node.stream_control();
        let incoming = control
            .accept(protocol.clone())
            .map_err(|_| SyncError::ProtocolTaken {
                protocol: protocol.to_string(),
            })?;
        let cancel = CancellationToken::new();
        if config.test_corrupt_chunks {
            tracing::warn!(
                "TEST MODE: this node corrupts every chunk it serves (--test-corrupt-chunks)"
            );
        }
        if config.test_crash_after_install {
            tracing::warn!(
                "TEST MODE: this node aborts right after its first install (--test-crash-after-install)"
            );
        }
        let (notices, notices_rx) = NoticeQueue::new();
        let swarming = Swarming::default();
        let serve = ServeContext::new(
            shared.clone(),
            paths.data_dir.clone(),
            metrics.clone(),
            config.test_corrupt_chunks,
            Some(notices),
            swarming.clone(),
        );
        tokio::spawn(run_server(incoming, serve, cancel.clone()));

        let (inputs_tx, inputs_rx) = mpsc::unbounded_channel();
        inbound::take_holder_notices(
            shared.clone(),
            notices_rx,
            inputs_tx.clone(),
            cancel.clone(),
        );
        let watcher = start_watcher(&paths.data_dir, &config, &inputs_tx, &cancel)?;
        if let Some(path) = config.drain_annotations.clone() {
            drain_file::watch(path, inputs_tx.clone(), cancel.clone());
        }
        let (bans_tx, bans_rx) = mpsc::unbounded_channel();
        forward_bans(bans_rx, inputs_tx.clone());
        let downloader = Downloader::new(
            node.stream_control(),
            DownloadConfig {
                protocol: protocol.clone(),
                tmp_dir: paths.tmp_dir.clone(),
                min_free_bytes: config.min_free_bytes,
                streams_per_peer: config.streams_per_peer.max(1),
                request_timeout: config.request_timeout,
            },
            metrics.clone(),
            bans_tx,
            swarming.clone(),
        );
        let running = Arc::new(AtomicBool::new(true));
        let node_events = node.subscribe();
        let mut driver = Driver {
            config,
            paths,
            node,
            protocol,
            shared: shared.clone(),
            metrics,
            mirror: StatsMirror::default(),
            downloader,
            inputs: inputs_tx.clone(),
            ignored_logged: HashSet::new(),
            clock,
            keypair,
            free_bytes: None,
            cancel: cancel.clone(),
            _watcher: watcher,
        };
        let scan = driver.scan_now().await;
        driver.on_scan(scan).await;
        supervise(driver.run(inputs_rx, node_events), running.clone());

        Ok(ReplicatorHandle {
            shared,
            inputs: inputs_tx,
            cancel,
            running,
        })
    }
}

/// Downloads that finished while the loop was busy are handled together: `first` and those of the
/// inputs waiting right behind it (at most [`FINISHED_BATCH`]). Returns them, and the first other
/// input taken from the queue, which is handled next.
fn finished_downloads(
    first: Event,
    inputs: &mut mpsc::UnboundedReceiver<Input>,
) -> (Vec<Event>, Option<Input>) {
    let mut finished = vec![first];
    while finished.len() < FINISHED_BATCH {
        match inputs.try_recv() {
            Ok(Input::Engine(event @ Event::DownloadDone { .. })) => finished.push(event),
            Ok(other) => return (finished, Some(other)),
            Err(_) => break,
        }
    }
    (finished, None)
}

/// Runs the loop and marks the replicator stopped when it ends, whether it returned or panicked.
fn supervise(
    run: impl std::future::Future<Output = ()> + Send + 'static,
    running: Arc<AtomicBool>,
) {
    let task = tokio::spawn(run);
    tokio::spawn(async move {
        let result = task.await;
        running.store(false, Ordering::Relaxed);
        if let Err(error) = result {
            tracing::error!(%error, "the replication task died; /health now fails");
        }
    });
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

fn start_watcher(
    data_dir: &Path,
    config: &ReplicationConfig,
    inputs: &mpsc::UnboundedSender<Input>,
    cancel: &CancellationToken,
) -> Result<FolderWatcher, SyncError> {
    let (watch_tx, mut watch_rx) = mpsc::unbounded_channel();
    let watcher = FolderWatcher::start(data_dir, config.watch_debounce, watch_tx)?;
    let inputs = inputs.clone();
    let cancel = cancel.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                event = watch_rx.recv() => match event {
                    Some(event) => { let _ = inputs.send(Input::Watch(event)); }
                    None => return,
                },
            }
        }
    });
    Ok(watcher)
}

/// Peers the downloader caught serving bad data go to the engine, which bans them.
fn forward_bans(
    mut bans: mpsc::UnboundedReceiver<(PeerId, String)>,
    inputs: mpsc::UnboundedSender<Input>,
) {
    tokio::spawn(async move {
        while let Some((peer, reason)) = bans.recv().await {
            if inputs
                .send(Input::Engine(Event::BadData { peer, reason }))
                .is_err()
            {
                return;
            }
        }
    });
}

impl Driver {
    async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut node_events: broadcast::Receiver<NodeEvent>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'events: loop {
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                input = inputs.recv() => {
                    let Some(input) = input else { break };
                    let mut next = Some(input);
                    while let Some(input) = next.take() {
                        match input {
                            Input::Shutdown(reply) => {
                                self.save_now().await;
                                let _ = reply.send(());
                                break 'events;
                            }
                            Input::Engine(event @ Event::DownloadDone { .. }) => {
                                let (finished, after) = finished_downloads(event, &mut inputs);
                                self.feed_all(finished).await;
                                next = after;
                            }
                            Input::Engine(event) => self.feed(event).await,
                            Input::Watch(event) => self.on_watch(event).await,
                            Input::Scan(scan) => self.on_scan(scan).await,
                        }
                    }
                }
                event = node_events.recv() => match event {
                    Ok(event) => self.on_node_event(event).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "replication fell behind node events; asking every peer for its inventory");
                        if let Ok(peers) = self.node.connected_peers().await {
                            for peer in peers {
                                self.feed(Event::PeerConnected(peer)).await;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tick.tick() => self.on_tick().await,
            }
        }
        for (_, running) in self.shared.downloads.lock().drain() {
            running.cancel.cancel();
        }
        self.cancel.cancel();
    }

    /// Feeds one event and carries out the actions, and the events those produce.
    async fn feed(&mut self, event: Event) {
        self.feed_all(vec![event]).await;
    }

    /// Feeds events and carries out the actions, and the events those produce, in order; the
    /// installs they ask for run together once the events are handled (one blocking call for a
    /// burst of small stores instead of one thread hand-off each), and complete before anything
    /// else is read, so the engine knows about its installs before the watcher reports them.
    async fn feed_all(&mut self, events: Vec<Event>) {
        let mut queue = VecDeque::from(events);
        let mut installed = false;
        while !queue.is_empty() {
            let mut installs = Vec::new();
            while let Some(event) = queue.pop_front() {
                if let Event::DownloadDone { name, hash, .. } = &event {
                    self.download_ended(name, hash);
                }
                let now = self.clock.now();
                let actions = self.shared.engine.write().handle(event, now);
                for action in actions {
                    if let Some(follow) = self.execute(action, &mut installs).await {
                        queue.push_back(follow);
                    }
                }
            }
            if !installs.is_empty() {
                installed = true;
                queue.extend(self.install_all(installs).await);
            }
        }
        if installed {
            // `/metrics` shows a received store at once, not at the next tick.
            self.mirror_stats();
        }
    }

    async fn on_tick(&mut self) {
        self.downloader.expire_idle_streams(None);
        if let Some(free) = self.free_bytes_now()
            && self.free_bytes != Some(free)
        {
            self.free_bytes = Some(free);
            self.feed(Event::DiskSpace(free)).await;
        }
        self.feed(Event::Tick).await;
        self.mirror_stats();
    }

    /// Free bytes on the download disk as if no running download had written anything yet (the
    /// engine reserves each running download's full size).
    fn free_bytes_now(&self) -> Option<u64> {
        let available = disk::available_bytes(&self.paths.tmp_dir).ok()?;
        let written: u64 = self
            .shared
            .downloads
            .lock()
            .values()
            .map(|r| r.progress.load(Ordering::Relaxed))
            .sum();
        Some(available.saturating_add(written))
    }

    async fn on_node_event(&mut self, event: NodeEvent) {
        match event {
            NodeEvent::PeerConnected(peer) => self.feed(Event::PeerConnected(peer)).await,
            NodeEvent::PeerDisconnected(peer) => {
                self.downloader.expire_idle_streams(Some(&peer));
                self.feed(Event::PeerDisconnected(peer)).await;
            }
            NodeEvent::Announcement { source, data } => {
                let mut events =
                    inbound::announcement(&self.shared, source, Via::Gossip, &data).await;
                for event in events.drain(..) {
                    self.feed(event).await;
                }
            }
        }
    }

    async fn on_watch(&mut self, event: WatchEvent) {
        match event {
            WatchEvent::Changed(paths) => {
                tracing::debug!(?paths, "data folder changed");
                for path in paths {
                    let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                        continue;
                    };
                    let Some(name) = self.store_name_or_log(file) else {
                        continue;
                    };
                    let meta = match std::fs::symlink_metadata(&path) {
                        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                        Err(error) => {
                            tracing::warn!(path = %path.display(), %error, "cannot stat store file");
                            continue;
                        }
                        Ok(meta) if !meta.file_type().is_file() => {
                            self.log_ignored(file);
                            continue;
                        }
                        Ok(meta) => Some(crate::store::LocalMeta::from_metadata(&meta)),
                    };
                    self.feed(Event::FileChanged { name, meta }).await;
                }
            }
            WatchEvent::Rescan => self.start_scan(),
        }
    }

    async fn scan_now(&self) -> io::Result<ScanResult> {
        let data_dir = self.paths.data_dir.clone();
        tokio::task::spawn_blocking(move || scan_data_dir(&data_dir))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    /// Lists the data folder in the background; the result comes back as an input.
    fn start_scan(&self) {
        let data_dir = self.paths.data_dir.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let scan = tokio::task::spawn_blocking(move || scan_data_dir(&data_dir))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
            let _ = inputs.send(Input::Scan(scan));
        });
    }

    async fn on_scan(&mut self, scan: io::Result<ScanResult>) {
        match scan {
            Ok(scan) => {
                for ignored in &scan.ignored {
                    self.store_name_or_log(ignored);
                }
                self.feed(Event::Scanned(scan.stores)).await;
            }
            Err(error) => {
                tracing::error!(dir = %self.paths.data_dir.display(), %error, "cannot scan the data folder")
            }
        }
    }

    fn store_name_or_log(&mut self, file_name: &str) -> Option<String> {
        if let Some(name) = store_name_from_file_name(file_name) {
            return Some(name.to_owned());
        }
        self.log_ignored(file_name);
        None
    }

    fn log_ignored(&mut self, file_name: &str) {
        if !file_name.starts_with('.') && self.ignored_logged.insert(file_name.to_owned()) {
            tracing::warn!(
                file = file_name,
                "ignoring a data folder entry that is not a store (a file <name>.dig with name matching ^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}$)"
            );
        }
    }

    /// Saves the index now (at shutdown), after making the data folder durable.
    async fn save_now(&mut self) {
        let mut index = self.shared.engine.read().index().clone();
        index.begin_snapshot();
        let paths = self.paths.clone();
        let result = tokio::task::spawn_blocking(move || {
            crate::store::index::sync_dir(&paths.data_dir)
                .map_err(|e| e.to_string())
                .and_then(|()| index.save(&paths.index_path).map_err(|e| e.to_string()))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(error) = result {
            tracing::error!(%error, "cannot save the store index at shutdown");
        }
    }

    fn partial_files(&self, name: &str, hash: &Hash32) -> PartialFiles {
        PartialFiles::new(&self.paths.tmp_dir, name, hash)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    #[tokio::test]
    async fn a_replication_task_that_dies_is_seen_as_stopped() {
        let running = Arc::new(AtomicBool::new(true));
        supervise(
            async {
                panic!("a bug in the replication loop");
            },
            running.clone(),
        );
        for _ in 0..100 {
            if !running.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the supervisor did not notice the task died");
    }

    #[test]
    fn the_engine_clock_follows_the_wall_clock() {
        let clock = Clock::start();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(clock.now().abs_diff(wall) < 5_000);
        assert!(clock.now() <= clock.now());
    }
}
