//! What the driver's parts share: the driver itself, the engine behind its lock, the running
//! downloads, the loop's inputs, the paths and the clock.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use libp2p::identity::Keypair;
use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::node::NodeHandle;
use crate::store::StoreIndex;
use crate::store::hash::Hash32;
use crate::store::record::KeyCache;
use crate::store::scan::ScanResult;
use crate::store::watcher::{FolderWatcher, WatchEvent};
use crate::sync::config::ReplicationConfig;
use crate::sync::download::Downloader;
use crate::sync::engine::{Engine, Event, Millis, Stats};
use crate::sync::metrics::SyncMetrics;
use crate::sync::server::IndexSource;

/// A running download, as the driver tracks it (for cancelling it and for `/stores` progress).
pub(super) struct Running {
    pub(super) hash: Hash32,
    pub(super) cancel: CancellationToken,
    pub(super) progress: Arc<AtomicU64>,
}

/// What the engine's owner shares with the HTTP API and the sync server: one lock around the
/// engine (never held across IO or an await), and the running downloads.
pub(super) struct Shared {
    pub(super) engine: RwLock<Engine>,
    pub(super) downloads: Mutex<HashMap<String, Running>>,
    /// Origin keys of the records peers send, decoded once.
    pub(super) keys: Mutex<KeyCache>,
}

impl IndexSource for Shared {
    fn index(&self) -> MappedRwLockReadGuard<'_, StoreIndex> {
        RwLockReadGuard::map(self.engine.read(), Engine::index)
    }

    fn draining(&self) -> bool {
        self.engine.read().is_draining()
    }
}

/// What the driver's loop receives from its own tasks and the handle.
pub(super) enum Input {
    Engine(Event),
    Watch(WatchEvent),
    Scan(io::Result<ScanResult>),
    Shutdown(oneshot::Sender<()>),
}

/// Where the driver keeps things.
#[derive(Clone, Debug)]
pub(super) struct Paths {
    pub(super) data_dir: PathBuf,
    pub(super) tmp_dir: PathBuf,
    pub(super) conflicts_dir: PathBuf,
    pub(super) index_path: PathBuf,
}

/// The engine's clock: milliseconds that follow the wall clock but never jump (started at the
/// wall-clock time, advanced by a monotonic clock).
#[derive(Clone, Copy)]
pub(super) struct Clock {
    pub(super) wall_at_start: u64,
    pub(super) started: Instant,
}

impl Clock {
    pub(super) fn start() -> Self {
        Self {
            wall_at_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            started: Instant::now(),
        }
    }

    pub(super) fn now(&self) -> Millis {
        self.wall_at_start + self.started.elapsed().as_millis() as u64
    }
}

pub(super) struct Driver {
    pub(super) config: ReplicationConfig,
    pub(super) paths: Paths,
    pub(super) node: NodeHandle,
    pub(super) protocol: libp2p::StreamProtocol,
    pub(super) shared: Arc<Shared>,
    pub(super) metrics: SyncMetrics,
    pub(super) mirror: StatsMirror,
    pub(super) downloader: Downloader,
    pub(super) inputs: mpsc::UnboundedSender<Input>,
    pub(super) ignored_logged: HashSet<String>,
    pub(super) clock: Clock,
    /// Signs the drafts of new local versions on the hashing threads.
    pub(super) keypair: Keypair,
    pub(super) free_bytes: Option<u64>,
    pub(super) cancel: CancellationToken,
    pub(super) _watcher: FolderWatcher,
}

/// The engine's counters as last copied to Prometheus.
#[derive(Default)]
pub(super) struct StatsMirror {
    pub(super) last: Stats,
    /// When the drain gauge is computed next.
    pub(super) next_drain_gauge: Millis,
}
