//! One simulated node: a real replication engine (`dig_sidecar::sync::engine::Engine`), its key,
//! and the data folder it would have (names and content hashes: the bytes themselves are not
//! kept).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use dig_sidecar::store::hash::Hash32;
use dig_sidecar::store::record::KeyCache;
use dig_sidecar::store::{LocalMeta, StoreIndex};
use dig_sidecar::sync::engine::{Engine, EngineConfig, Limits, Millis, WritePolicy, WriteRules};
use libp2p_identity::{Keypair, PeerId};

/// A file in a node's data folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File {
    pub hash: Hash32,
    pub meta: LocalMeta,
}

pub struct SimNode {
    pub engine: Engine,
    pub key: Keypair,
    pub peer: PeerId,
    pub folder: BTreeMap<String, File>,
    pub keys: KeyCache,
    /// Gossip messages seen (dropped when seen again).
    pub seen: HashSet<u64>,
    /// Connected nodes.
    pub neighbors: BTreeSet<usize>,
    /// The gossip mesh (a stable random choice among the neighbors), until they change.
    pub mesh_cache: Option<Vec<usize>>,
    seed: u64,
    /// When a Tick is scheduled for this node.
    pub tick_at: Option<Millis>,
    /// Downloads under way: store name -> content hash (a cancelled one is removed).
    pub downloads: BTreeMap<String, Hash32>,
    pub online: bool,
    next_inode: u64,
}

impl SimNode {
    pub fn new(seed: u64, now: Millis) -> Self {
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&blake3::hash(&seed.to_le_bytes()).as_bytes()[..]);
        let key = Keypair::ed25519_from_bytes(secret).expect("32 bytes are an ed25519 secret");
        let config = engine_config(&key, seed);
        Self {
            engine: Engine::new(config, StoreIndex::new(), now),
            peer: key.public().to_peer_id(),
            key,
            folder: BTreeMap::new(),
            keys: KeyCache::default(),
            seen: HashSet::new(),
            neighbors: BTreeSet::new(),
            mesh_cache: None,
            seed,
            tick_at: None,
            downloads: BTreeMap::new(),
            online: true,
            next_inode: 1,
        }
    }

    /// Starts again from the saved index and the folder, as a restarted process does: running
    /// downloads, gossip seen and connections are gone.
    pub fn restart(&mut self, now: Millis) {
        let index = self.engine.index().clone();
        self.engine = Engine::new(engine_config(&self.key, self.seed), index, now);
        self.seen.clear();
        self.neighbors.clear();
        self.mesh_cache = None;
        self.tick_at = None;
        self.downloads.clear();
        self.online = true;
    }

    /// Metadata of a file written now.
    pub fn new_meta(&mut self, size: u64, now: Millis) -> LocalMeta {
        self.next_inode += 1;
        LocalMeta {
            size,
            mtime_ns: now as i64 * 1_000_000,
            ctime_ns: now as i64 * 1_000_000,
            inode: self.next_inode,
        }
    }

    /// Up to `size` neighbors this node forwards gossip to: a random choice that stays the same
    /// while the neighbors do.
    pub fn mesh(&mut self, size: usize) -> Vec<usize> {
        if let Some(mesh) = &self.mesh_cache {
            return mesh.clone();
        }
        let mut ranked: Vec<(blake3::Hash, usize)> = self
            .neighbors
            .iter()
            .map(|&n| {
                let mut key = self.seed.to_le_bytes().to_vec();
                key.extend_from_slice(&(n as u64).to_le_bytes());
                (blake3::hash(&key), n)
            })
            .collect();
        ranked.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mesh: Vec<usize> = ranked.into_iter().take(size).map(|(_, n)| n).collect();
        self.mesh_cache = Some(mesh.clone());
        mesh
    }

    /// The folder as a scan reports it: names and metadata.
    pub fn listing(&self) -> Vec<(String, LocalMeta)> {
        self.folder
            .iter()
            .map(|(name, file)| (name.clone(), file.meta))
            .collect()
    }

    /// True when the folder holds `name` with content `hash`.
    pub fn holds(&self, name: &str, hash: &Hash32) -> bool {
        self.folder.get(name).is_some_and(|f| &f.hash == hash)
    }
}

fn engine_config(key: &Keypair, seed: u64) -> EngineConfig {
    EngineConfig {
        keypair: key.clone(),
        rules: WriteRules {
            policy: WritePolicy::Owner,
            writers: BTreeSet::new(),
        },
        propagate_deletes: false,
        limits: Limits {
            max_parallel: 8,
            max_store_bytes: 1 << 40,
            min_free_bytes: 0,
        },
        inventory_interval: Duration::from_secs(30),
        inventory_concurrency: 8,
        max_stores: 10_000_000,
        tombstone_ttl: Duration::from_secs(7 * 24 * 3600),
        max_tombstones: 100_000,
        conflict_ttl: Duration::from_secs(7 * 24 * 3600),
        max_conflicts: 1_000,
        seed,
    }
}
