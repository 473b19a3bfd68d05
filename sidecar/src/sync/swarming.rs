//! Chunk swarming: nodes that download the same version fetch chunks from each other as well as
//! from the holders.
//!
//! A node that starts a multi-chunk download tells some connected peers that do not hold the
//! version (a `Fetching` notice), and walks its chunks from a random place, so two receivers
//! rarely hold the same chunks. A receiver that hears of another receiver of its version asks it
//! which chunks it has verified (`Have`, a bitmap) and fetches those, verified like any chunk,
//! while the holders serve the rest: the source sends each chunk about once instead of once per
//! receiver.
//!
//! [`Swarming`] is the state both sides share: this node's running downloads (what the server
//! may serve from `tmp/`: only chunks written after they verified) and the peers that said they
//! fetch a version, capped per peer and in all and forgotten after [`FETCHING_TTL`].

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use parking_lot::Mutex;

use crate::store::hash::{Hash32, chunk_count};

/// Versions one peer may say it fetches at once; older notices make room for new ones.
pub const MAX_FETCHING_PER_PEER: usize = 16;
/// Fetching notices kept, all peers together.
pub const MAX_FETCHING: usize = 4096;
/// A fetching notice counts for this long (a download of a large store may outlive it; the
/// receiver then learns of its peers again from their next download, or fetches from holders).
pub const FETCHING_TTL: Duration = Duration::from_secs(600);
/// Connected peers told of a new download.
pub const FETCHING_NOTICES: usize = 8;

/// One version's identity: store name and content hash.
pub type ContentKey = (String, Hash32);

/// A download running on this node, as the server sees it.
pub struct PartialContent {
    pub path: PathBuf,
    pub size: u64,
    /// One flag per chunk: 1 once the chunk is verified and written.
    verified: Vec<AtomicU8>,
}

impl PartialContent {
    /// `done` has one byte per chunk (1 = verified and written), as the download keeps them.
    pub fn new(path: PathBuf, size: u64, done: &[u8]) -> Self {
        debug_assert_eq!(done.len() as u64, chunk_count(size));
        Self {
            path,
            size,
            verified: done
                .iter()
                .map(|d| AtomicU8::new(u8::from(*d != 0)))
                .collect(),
        }
    }

    /// Called after chunk `index` verified and was written.
    pub fn mark(&self, index: u64) {
        if let Some(flag) = self.verified.get(index as usize) {
            flag.store(1, Ordering::Release);
        }
    }

    pub fn has(&self, index: u64) -> bool {
        self.verified
            .get(index as usize)
            .is_some_and(|flag| flag.load(Ordering::Acquire) == 1)
    }

    /// The verified chunks as a bitmap (see [`bitmap_len`]).
    pub fn bitmap(&self) -> Vec<u8> {
        let mut bits = vec![0u8; self.verified.len().div_ceil(8)];
        for (index, flag) in self.verified.iter().enumerate() {
            if flag.load(Ordering::Acquire) == 1 {
                bits[index / 8] |= 1 << (index % 8);
            }
        }
        bits
    }
}

/// Bytes of the chunk bitmap of a store of `size` bytes: one bit per chunk, chunk `i` in bit
/// `i % 8` of byte `i / 8`.
pub fn bitmap_len(size: u64) -> u64 {
    chunk_count(size).div_ceil(8)
}

/// A bitmap with every chunk of a store of `size` bytes set (what a holder answers).
pub fn full_bitmap(size: u64) -> Vec<u8> {
    let chunks = chunk_count(size);
    let mut bits = vec![0xffu8; bitmap_len(size) as usize];
    if !chunks.is_multiple_of(8)
        && let Some(last) = bits.last_mut()
    {
        *last = (1u8 << (chunks % 8)) - 1;
    }
    bits
}

/// True when chunk `index` is set in `bitmap`.
pub fn bit(bitmap: &[u8], index: u64) -> bool {
    bitmap
        .get((index / 8) as usize)
        .is_some_and(|byte| byte & (1 << (index % 8)) != 0)
}

pub fn count_bits(bitmap: &[u8]) -> u64 {
    bitmap.iter().map(|b| u64::from(b.count_ones())).sum()
}

#[derive(Default)]
struct Fetchers {
    /// Per version: who fetches it, and since when.
    by_content: HashMap<ContentKey, Vec<(PeerId, Instant)>>,
    /// Per peer: its notices, oldest first.
    by_peer: HashMap<PeerId, VecDeque<ContentKey>>,
    total: usize,
}

impl Fetchers {
    fn remove(&mut self, peer: &PeerId, key: &ContentKey) {
        if let Some(peers) = self.by_content.get_mut(key) {
            let before = peers.len();
            peers.retain(|(p, _)| p != peer);
            self.total -= before - peers.len();
            if peers.is_empty() {
                self.by_content.remove(key);
            }
        }
    }
}

/// What downloads and the server share about running downloads; cheap to clone.
#[derive(Clone, Default)]
pub struct Swarming {
    local: Arc<Mutex<HashMap<ContentKey, Arc<PartialContent>>>>,
    fetchers: Arc<Mutex<Fetchers>>,
}

/// Keeps a running download servable; unregisters it when dropped.
pub struct Serving {
    swarming: Swarming,
    key: ContentKey,
    pub content: Arc<PartialContent>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        let mut local = self.swarming.local.lock();
        if local
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.content))
        {
            local.remove(&self.key);
        }
    }
}

impl Swarming {
    /// Lets peers fetch the verified chunks of a running download of `name` at `hash`.
    pub fn serve(&self, name: &str, hash: Hash32, content: PartialContent) -> Serving {
        let key = (name.to_owned(), hash);
        let content = Arc::new(content);
        self.local.lock().insert(key.clone(), content.clone());
        Serving {
            swarming: self.clone(),
            key,
            content,
        }
    }

    /// The running download of `name` at `hash`, if any.
    pub fn partial(&self, name: &str, hash: &Hash32) -> Option<Arc<PartialContent>> {
        self.local.lock().get(&(name.to_owned(), *hash)).cloned()
    }

    /// `peer` says it fetches `name` at `hash`. Its oldest notice makes room beyond
    /// [`MAX_FETCHING_PER_PEER`]; false when all peers together reached [`MAX_FETCHING`].
    pub fn note_fetching(&self, peer: PeerId, name: &str, hash: Hash32, now: Instant) -> bool {
        let key = (name.to_owned(), hash);
        let mut fetchers = self.fetchers.lock();
        let fetchers = &mut *fetchers;
        fetchers.remove(&peer, &key);
        let mine = fetchers.by_peer.entry(peer).or_default();
        mine.retain(|k| k != &key);
        let evicted = (mine.len() >= MAX_FETCHING_PER_PEER)
            .then(|| mine.pop_front())
            .flatten();
        if let Some(old) = evicted {
            fetchers.remove(&peer, &old);
        }
        if fetchers.total >= MAX_FETCHING {
            if fetchers.by_peer.get(&peer).is_some_and(VecDeque::is_empty) {
                fetchers.by_peer.remove(&peer);
            }
            return false;
        }
        if let Some(mine) = fetchers.by_peer.get_mut(&peer) {
            mine.push_back(key.clone());
        }
        fetchers
            .by_content
            .entry(key)
            .or_default()
            .push((peer, now));
        fetchers.total += 1;
        true
    }

    /// Peers that said, less than [`FETCHING_TTL`] ago, that they fetch `name` at `hash`.
    pub fn fetchers(&self, name: &str, hash: &Hash32, now: Instant) -> Vec<PeerId> {
        self.fetchers
            .lock()
            .by_content
            .get(&(name.to_owned(), *hash))
            .map(|peers| {
                peers
                    .iter()
                    .filter(|(_, since)| now.saturating_duration_since(*since) < FETCHING_TTL)
                    .map(|(peer, _)| *peer)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets what `peer` said (it disconnected), and notices older than [`FETCHING_TTL`].
    pub fn forget(&self, peer: Option<&PeerId>, now: Instant) {
        let mut fetchers = self.fetchers.lock();
        if let Some(peer) = peer
            && let Some(keys) = fetchers.by_peer.remove(peer)
        {
            for key in keys {
                fetchers.remove(peer, &key);
            }
        }
        let expired: Vec<(PeerId, ContentKey)> = fetchers
            .by_content
            .iter()
            .flat_map(|(key, peers)| {
                peers
                    .iter()
                    .filter(|(_, since)| now.saturating_duration_since(*since) >= FETCHING_TTL)
                    .map(move |(peer, _)| (*peer, key.clone()))
            })
            .collect();
        for (peer, key) in expired {
            fetchers.remove(&peer, &key);
            if let Some(mine) = fetchers.by_peer.get_mut(&peer) {
                mine.retain(|k| k != &key);
                if mine.is_empty() {
                    fetchers.by_peer.remove(&peer);
                }
            }
        }
    }

    #[cfg(test)]
    fn noted(&self) -> usize {
        self.fetchers.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::hash::CHUNK_SIZE;

    #[test]
    fn bitmaps_have_one_bit_per_chunk() {
        let size = 10 * CHUNK_SIZE + 1;
        assert_eq!(bitmap_len(size), 2);
        let full = full_bitmap(size);
        assert_eq!(full, vec![0xff, 0b111]);
        assert_eq!(count_bits(&full), 11);
        assert!(bit(&full, 10) && !bit(&full, 11) && !bit(&full, 1000));
        assert_eq!(full_bitmap(8 * CHUNK_SIZE), vec![0xff]);

        let partial = PartialContent::new(PathBuf::from("x"), size, &[0; 11]);
        partial.mark(3);
        partial.mark(9);
        partial.mark(99);
        assert!(partial.has(3) && !partial.has(4));
        assert_eq!(partial.bitmap(), vec![0b1000, 0b10]);
    }

    #[test]
    fn a_running_download_is_servable_until_its_guard_drops() {
        let swarming = Swarming::default();
        let hash = [1; 32];
        let serving = swarming.serve("a", hash, PartialContent::new("p".into(), 1, &[0]));
        assert!(swarming.partial("a", &hash).is_some());
        assert!(swarming.partial("a", &[2; 32]).is_none());
        drop(serving);
        assert!(swarming.partial("a", &hash).is_none());
    }

    #[test]
    fn fetching_notices_are_capped_per_peer_and_in_all_and_expire() {
        let swarming = Swarming::default();
        let now = Instant::now();
        let (a, b) = (PeerId::random(), PeerId::random());
        for i in 0..(MAX_FETCHING_PER_PEER + 5) {
            assert!(swarming.note_fetching(a, &format!("s{i}"), [0; 32], now));
        }
        assert_eq!(
            swarming.noted(),
            MAX_FETCHING_PER_PEER,
            "the oldest made room"
        );
        assert!(swarming.fetchers("s0", &[0; 32], now).is_empty());
        assert_eq!(swarming.fetchers("s20", &[0; 32], now), vec![a]);
        // The same notice again counts once.
        assert!(swarming.note_fetching(a, "s20", [0; 32], now));
        assert_eq!(swarming.noted(), MAX_FETCHING_PER_PEER);
        assert!(swarming.note_fetching(b, "s20", [0; 32], now));
        assert_eq!(swarming.fetchers("s20", &[0; 32], now).len(), 2);

        swarming.forget(Some(&a), now);
        assert_eq!(swarming.fetchers("s20", &[0; 32], now), vec![b]);
        assert_eq!(swarming.noted(), 1);
        let later = now + FETCHING_TTL;
        assert!(swarming.fetchers("s20", &[0; 32], later).is_empty());
        swarming.forget(None, later);
        assert_eq!(swarming.noted(), 0);

        for p in 0..(MAX_FETCHING / MAX_FETCHING_PER_PEER) {
            let peer = PeerId::random();
            for i in 0..MAX_FETCHING_PER_PEER {
                assert!(swarming.note_fetching(peer, &format!("{p}-{i}"), [0; 32], now));
            }
        }
        assert!(!swarming.note_fetching(a, "one-more", [0; 32], now));
        assert_eq!(swarming.noted(), MAX_FETCHING);
    }
}
