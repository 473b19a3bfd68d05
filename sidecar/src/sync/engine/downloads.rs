//! Which wanted stores to download now, from whom, and when to try a failed one again.
//!
//! - Slots: `--max-parallel-downloads` stores of more than one chunk at once, and eight times as
//!   many in all (a store of one chunk is latency-bound, not bandwidth-bound).
//! - Disk: a download starts only when the free space, minus everything the running downloads
//!   will still write, leaves `--min-free-disk` free. The reservation covers all downloads at
//!   once, so parallel downloads cannot each see the same free space.
//! - Retries: a failed download waits 2 s, then twice as long after every failure, up to 5
//!   minutes, with ±25 % jitter so nodes that failed together do not retry together.
//! - Sources: connected holders only. A store announced through gossip names its writer as the
//!   one holder, and most nodes are not connected to it: if each dialed it, the writer's uplink
//!   would carry every copy in the network (1 MiB to 1,000 nodes: 84 s at 100 Mbit/s). Instead a
//!   node waits for a connected peer to install the store and say so (a holder notice), so copies
//!   spread outwards hop by hop. Only after [`DISTANT_HOLDER_GRACE`] without a connected holder
//!   does it download from unconnected ones.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use libp2p::PeerId;
use rand::Rng;
use rand::seq::SliceRandom;

use super::io::Millis;
use crate::store::StoreIndex;
use crate::store::hash::{CHUNK_SIZE, Hash32};
use crate::store::record::ContentId;

/// Single-chunk stores get this many times `max_parallel` slots.
pub const SMALL_FILE_SLOTS_FACTOR: usize = 8;
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// How long a wanted store whose holders are all unconnected waits for a connected one.
pub const DISTANT_HOLDER_GRACE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_parallel: usize,
    pub max_store_bytes: u64,
    pub min_free_bytes: u64,
}

/// A running download.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Active {
    pub hash: Hash32,
    pub size: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Backoff {
    attempts: u32,
    at: Millis,
}

/// A download to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub content: ContentId,
    pub peers: Vec<PeerId>,
}

/// Why a wanted store does not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    TooLarge { size: u64, limit: u64 },
    NoSpace { need: u64, reserve: u64, free: u64 },
}

impl Blocked {
    pub fn message(&self, name: &str) -> String {
        match self {
            Self::TooLarge { size, limit } => format!(
                "store {name} is {size} bytes, above the limit of {limit} bytes (--max-store-size)"
            ),
            Self::NoSpace {
                need,
                reserve,
                free,
            } => format!(
                "store {name} waits for disk space: it needs {need} bytes plus the reserve of {reserve} (--min-free-disk), and {free} bytes are free after what running downloads will still write"
            ),
        }
    }
}

/// Who holds which content of one store, in peer order: a sorted vector, since most stores have
/// a few holders and a `BTreeMap` leaf would take about 1.3 KB per store.
#[derive(Default)]
struct Holders(Vec<(PeerId, Hash32)>);

impl Holders {
    fn insert(&mut self, peer: PeerId, hash: Hash32) {
        match self.0.binary_search_by(|(p, _)| p.cmp(&peer)) {
            Ok(at) => self.0[at].1 = hash,
            Err(at) => self.0.insert(at, (peer, hash)),
        }
    }

    fn remove(&mut self, peer: &PeerId) {
        if let Ok(at) = self.0.binary_search_by(|(p, _)| p.cmp(peer)) {
            self.0.remove(at);
        }
    }

    fn get(&self, peer: &PeerId) -> Option<&Hash32> {
        let at = self.0.binary_search_by(|(p, _)| p.cmp(peer)).ok()?;
        Some(&self.0[at].1)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&PeerId, &Hash32)> {
        self.0.iter().map(|(peer, hash)| (peer, hash))
    }
}

#[derive(Default)]
pub struct Scheduler {
    /// Stores whose winning content is not held, not running and not waiting to retry.
    wanted: BTreeSet<String>,
    active: BTreeMap<String, Active>,
    backoff: BTreeMap<String, Backoff>,
    /// Which peer holds which content of which store (only stores in the index).
    holders: BTreeMap<String, Holders>,
    /// Wanted stores with holders but none connected, since when (see [`DISTANT_HOLDER_GRACE`]).
    distant_only_since: BTreeMap<String, Millis>,
    free_bytes: Option<u64>,
}

impl Scheduler {
    pub fn want(&mut self, name: &str) {
        if !self.active.contains_key(name) && !self.backoff.contains_key(name) {
            self.wanted.insert(name.to_owned());
        }
    }

    /// The store is held or no longer wanted: forget it (and its retry state).
    pub fn unwant(&mut self, name: &str) {
        self.wanted.remove(name);
        self.backoff.remove(name);
        self.distant_only_since.remove(name);
    }

    /// Wanted, running or waiting to retry.
    pub fn pending_count(&self) -> usize {
        let waiting = self
            .backoff
            .values()
            .filter(|b| b.at != Millis::MAX)
            .count();
        self.wanted.len() + self.active.len() + waiting
    }

    #[cfg(test)]
    pub fn is_wanted(&self, name: &str) -> bool {
        self.wanted.contains(name) || self.backoff.contains_key(name)
    }

    pub fn active(&self, name: &str) -> Option<Active> {
        self.active.get(name).copied()
    }

    /// Stops tracking a running download; returns its hash if one ran.
    pub fn cancel(&mut self, name: &str) -> Option<Hash32> {
        self.active.remove(name).map(|a| a.hash)
    }

    /// A download ended: true when it was the one running for `name` at `hash`.
    pub fn finished(&mut self, name: &str, hash: &Hash32) -> bool {
        match self.active.get(name) {
            Some(active) if active.hash == *hash => {
                self.active.remove(name);
                true
            }
            _ => false,
        }
    }

    /// A download failed: try again after a growing delay. Returns the delay.
    pub fn retry_later(&mut self, name: &str, now: Millis, rng: &mut impl Rng) -> Duration {
        self.wanted.remove(name);
        let backoff = self.backoff.entry(name.to_owned()).or_default();
        backoff.attempts = backoff.attempts.saturating_add(1);
        let delay = retry_delay(backoff.attempts, rng);
        backoff.at = now + delay.as_millis() as u64;
        delay
    }

    /// The download succeeded: the next failure starts from the shortest delay again.
    pub fn succeeded(&mut self, name: &str) {
        self.backoff.remove(name);
        self.wanted.remove(name);
    }

    /// Moves stores whose retry time came back to the wanted set.
    pub fn wake_due(&mut self, now: Millis) {
        let due: Vec<String> = self
            .backoff
            .iter()
            .filter(|(_, b)| b.at <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            if let Some(backoff) = self.backoff.get_mut(&name) {
                // Keep the attempt count for the next failure; the time is spent.
                backoff.at = Millis::MAX;
            }
            self.wanted.insert(name);
        }
    }

    pub fn next_retry(&self) -> Option<Millis> {
        self.backoff
            .values()
            .map(|b| b.at)
            .filter(|at| *at != Millis::MAX)
            .min()
    }

    /// When the first store waiting for a connected holder may use unconnected ones.
    pub fn next_distant_fallback(&self) -> Option<Millis> {
        self.distant_only_since
            .values()
            .map(|&since| distant_fallback_at(since))
            .min()
    }

    pub fn set_free_bytes(&mut self, free: u64) {
        self.free_bytes = Some(free);
    }

    pub fn add_holder(&mut self, name: &str, peer: PeerId, hash: Hash32) {
        self.holders
            .entry(name.to_owned())
            .or_default()
            .insert(peer, hash);
    }

    pub fn remove_holder(&mut self, name: &str, peer: &PeerId) {
        if let Some(holders) = self.holders.get_mut(name) {
            holders.remove(peer);
            if holders.is_empty() {
                self.holders.remove(name);
            }
        }
    }

    pub fn forget_store(&mut self, name: &str) {
        self.unwant(name);
        self.holders.remove(name);
    }

    pub fn peer_gone(&mut self, peer: &PeerId) {
        self.holders.retain(|_, holders| {
            holders.remove(peer);
            !holders.is_empty()
        });
    }

    /// Whether any peer is known to hold `hash` as `name`'s content.
    pub fn has_holder(&self, name: &str, hash: &Hash32) -> bool {
        self.holders
            .get(name)
            .is_some_and(|holders| holders.iter().any(|(_, held)| held == hash))
    }

    /// Whether `peer` is known to hold `hash` as `name`'s content.
    pub fn is_holder(&self, name: &str, peer: &PeerId, hash: &Hash32) -> bool {
        self.holders
            .get(name)
            .and_then(|holders| holders.get(peer))
            .is_some_and(|held| held == hash)
    }

    pub fn holders_of(&self, name: &str, hash: &Hash32) -> Vec<PeerId> {
        self.holders
            .get(name)
            .map(|h| {
                h.iter()
                    .filter(|(_, held)| *held == hash)
                    .map(|(peer, _)| *peer)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Downloads to start now, and wanted stores that cannot start (and why). Sources are the
    /// `connected` holders (unconnected ones only after [`DISTANT_HOLDER_GRACE`]).
    pub fn plan(
        &mut self,
        index: &StoreIndex,
        limits: &Limits,
        connected: &BTreeSet<PeerId>,
        now: Millis,
        rng: &mut impl Rng,
    ) -> (Vec<Plan>, Vec<(String, Blocked)>) {
        let small_limit = limits.max_parallel.max(1) * SMALL_FILE_SLOTS_FACTOR;
        let large_limit = limits.max_parallel.max(1);
        let mut plans = Vec::new();
        let mut blocked = Vec::new();
        if self.wanted.is_empty() || self.active.len() >= small_limit {
            return (plans, blocked);
        }
        let mut free_slots = small_limit - self.active.len();
        let mut large_running = self.active.values().filter(|a| a.size > CHUNK_SIZE).count();
        let mut reserved: u64 = self.active.values().map(|a| a.size).sum();
        let mut stale = Vec::new();
        for name in &self.wanted {
            if free_slots == 0 {
                break;
            }
            let Some(content) = index
                .get(name)
                .filter(|e| e.local.is_none())
                .and_then(|e| e.content.as_ref())
            else {
                stale.push(name.clone());
                continue;
            };
            if content.size > limits.max_store_bytes {
                blocked.push((
                    name.clone(),
                    Blocked::TooLarge {
                        size: content.size,
                        limit: limits.max_store_bytes,
                    },
                ));
                continue;
            }
            let large = content.size > CHUNK_SIZE;
            if large && large_running >= large_limit {
                continue;
            }
            let holders = self.holders_of(name, &content.hash);
            if holders.is_empty() {
                continue;
            }
            let (mut peers, distant): (Vec<PeerId>, Vec<PeerId>) = holders
                .into_iter()
                .partition(|peer| connected.contains(peer));
            if peers.is_empty() {
                let since = *self.distant_only_since.entry(name.clone()).or_insert(now);
                if now < distant_fallback_at(since) {
                    continue;
                }
                peers = distant;
            }
            if let Some(free) = self.free_bytes {
                let need = reserved
                    .saturating_add(content.size)
                    .saturating_add(limits.min_free_bytes);
                if free < need {
                    blocked.push((
                        name.clone(),
                        Blocked::NoSpace {
                            need: content.size,
                            reserve: limits.min_free_bytes,
                            free: free.saturating_sub(reserved),
                        },
                    ));
                    continue;
                }
            }
            // Spread single-chunk stores (and the first requests of large ones) over holders.
            peers.shuffle(rng);
            reserved = reserved.saturating_add(content.size);
            large_running += usize::from(large);
            free_slots -= 1;
            plans.push(Plan {
                name: name.clone(),
                content: content.id(),
                peers,
            });
        }
        for name in stale {
            self.wanted.remove(&name);
            self.distant_only_since.remove(&name);
        }
        for (name, why) in &blocked {
            if matches!(why, Blocked::TooLarge { .. }) {
                self.wanted.remove(name);
            }
        }
        for plan in &plans {
            self.wanted.remove(&plan.name);
            self.distant_only_since.remove(&plan.name);
            self.active.insert(
                plan.name.clone(),
                Active {
                    hash: plan.content.hash,
                    size: plan.content.size,
                },
            );
        }
        (plans, blocked)
    }
}

/// When a store waiting since `since` for a connected holder may use unconnected ones.
fn distant_fallback_at(since: Millis) -> Millis {
    since.saturating_add(DISTANT_HOLDER_GRACE.as_millis() as u64)
}

fn retry_delay(attempts: u32, rng: &mut impl Rng) -> Duration {
    let doubled = RETRY_FIRST
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(16))
        .min(RETRY_MAX);
    doubled.mul_f64(rng.gen_range(0.75..=1.25))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use crate::store::IndexEntry;
    use crate::store::record::tests::record;
    use libp2p::identity::Keypair;

    fn limits() -> Limits {
        Limits {
            max_parallel: 1,
            max_store_bytes: 10 << 30,
            min_free_bytes: 100,
        }
    }

    fn index_with(sizes: &[(&str, u64)]) -> (StoreIndex, Vec<Hash32>) {
        let key = Keypair::generate_ed25519();
        let mut index = StoreIndex::new();
        let mut hashes = Vec::new();
        for (i, (name, size)) in sizes.iter().enumerate() {
            let mut r = record(&key, name, 1);
            let hash = [i as u8 + 1; 32];
            r.content = Some(ContentId { size: *size, hash });
            let signed = r.sign(&key).unwrap();
            let owner = signed.record.owner.clone();
            index.insert(name.to_string(), IndexEntry::from_signed(&signed, owner, 0));
            hashes.push(hash);
        }
        (index, hashes)
    }

    #[test]
    fn only_stores_with_a_holder_start_and_large_ones_take_the_large_slots() {
        let (index, hashes) = index_with(&[("a", 5 << 20), ("b", 6 << 20), ("c", 10), ("d", 10)]);
        let mut scheduler = Scheduler::default();
        let peer = PeerId::random();
        for (name, hash) in ["a", "b", "c", "d"].iter().zip(&hashes) {
            scheduler.want(name);
            if *name != "d" {
                scheduler.add_holder(name, peer, *hash);
            }
        }
        let mut rng = StdRng::seed_from_u64(1);
        let connected = BTreeSet::from([peer]);
        let (plans, blocked) = scheduler.plan(&index, &limits(), &connected, 0, &mut rng);
        let names: Vec<_> = plans.iter().map(|p| p.name.as_str()).collect();
        // One large slot (a), small stores beside it (c); d has no holder, b waits for a slot.
        assert_eq!(names, vec!["a", "c"]);
        assert!(blocked.is_empty());
        assert!(scheduler.active("a").is_some());
        assert!(scheduler.is_wanted("b") && scheduler.is_wanted("d"));
    }

    #[test]
    fn free_space_is_reserved_across_every_running_download() {
        let (index, hashes) = index_with(&[("a", 600), ("b", 600), ("c", 600)]);
        let mut scheduler = Scheduler::default();
        let peer = PeerId::random();
        for (name, hash) in ["a", "b", "c"].iter().zip(&hashes) {
            scheduler.want(name);
            scheduler.add_holder(name, peer, *hash);
        }
        // 1,400 free, reserve 100: room for two downloads of 600, not three.
        scheduler.set_free_bytes(1400);
        let mut rng = StdRng::seed_from_u64(1);
        let connected = BTreeSet::from([peer]);
        let (plans, blocked) = scheduler.plan(&index, &limits(), &connected, 0, &mut rng);
        assert_eq!(plans.len(), 2);
        assert_eq!(
            blocked,
            vec![(
                "c".to_owned(),
                Blocked::NoSpace {
                    need: 600,
                    reserve: 100,
                    free: 200
                }
            )]
        );
        // Still reserved while they run: a second plan starts nothing.
        let plan = |scheduler: &mut Scheduler, rng: &mut StdRng| {
            scheduler.plan(&index, &limits(), &connected, 0, rng).0
        };
        assert!(plan(&mut scheduler, &mut rng).is_empty());
        assert!(scheduler.finished("a", &hashes[0]));
        let plans = plan(&mut scheduler, &mut rng);
        assert_eq!(plans[0].name, "c");
    }

    #[test]
    fn a_store_above_the_size_limit_is_blocked_and_not_wanted_again() {
        let (index, hashes) = index_with(&[("huge", 20 << 30)]);
        let mut scheduler = Scheduler::default();
        scheduler.want("huge");
        scheduler.add_holder("huge", PeerId::random(), hashes[0]);
        let (plans, blocked) = scheduler.plan(
            &index,
            &limits(),
            &BTreeSet::new(),
            0,
            &mut StdRng::seed_from_u64(1),
        );
        assert!(plans.is_empty());
        assert!(matches!(blocked[0].1, Blocked::TooLarge { .. }));
        assert!(!scheduler.is_wanted("huge"));
    }

    #[test]
    fn sources_are_connected_holders_and_unconnected_ones_only_after_the_grace() {
        let (index, hashes) = index_with(&[("s", 10)]);
        let mut scheduler = Scheduler::default();
        let (writer, neighbour) = (PeerId::random(), PeerId::random());
        let mut connected = BTreeSet::from([neighbour]);
        scheduler.want("s");
        // Gossip named the writer, which is not connected: wait for a connected holder.
        scheduler.add_holder("s", writer, hashes[0]);
        let mut rng = StdRng::seed_from_u64(1);
        let grace = DISTANT_HOLDER_GRACE.as_millis() as u64;
        assert!(
            scheduler
                .plan(&index, &limits(), &connected, 1_000, &mut rng)
                .0
                .is_empty()
        );
        assert_eq!(scheduler.next_distant_fallback(), Some(1_000 + grace));
        // A connected peer installed it and said so: it is the only source.
        scheduler.add_holder("s", neighbour, hashes[0]);
        let (plans, _) = scheduler.plan(&index, &limits(), &connected, 2_000, &mut rng);
        assert_eq!(plans[0].peers, vec![neighbour]);
        assert_eq!(scheduler.next_distant_fallback(), None);

        // Nobody connected holds it for the whole grace: the writer is dialed after all.
        assert!(scheduler.finished("s", &hashes[0]));
        scheduler.want("s");
        scheduler.remove_holder("s", &neighbour);
        connected.clear();
        let waits = scheduler.plan(&index, &limits(), &connected, 5_000, &mut rng);
        assert!(waits.0.is_empty());
        let early = scheduler.plan(&index, &limits(), &connected, 5_000 + grace - 1, &mut rng);
        assert!(early.0.is_empty());
        let (plans, _) = scheduler.plan(&index, &limits(), &connected, 5_000 + grace, &mut rng);
        assert_eq!(plans[0].peers, vec![writer]);
    }

    #[test]
    fn failed_downloads_back_off_with_growing_delays_up_to_the_cap() {
        let mut scheduler = Scheduler::default();
        let mut rng = StdRng::seed_from_u64(7);
        let mut delays = Vec::new();
        for _ in 0..12 {
            delays.push(scheduler.retry_later("s", 0, &mut rng));
        }
        for pair in delays.windows(2).take(6) {
            assert!(pair[1] > pair[0], "{delays:?}");
        }
        assert!(
            delays[0] >= Duration::from_millis(1500) && delays[0] <= Duration::from_millis(2500)
        );
        assert!(
            delays.iter().all(|d| *d <= RETRY_MAX.mul_f64(1.25)),
            "{delays:?}"
        );
        assert!(!scheduler.is_wanted("s") || scheduler.next_retry().is_some());
        let at = scheduler.next_retry().unwrap();
        scheduler.wake_due(at - 1);
        assert!(!scheduler.wanted.contains("s"));
        scheduler.wake_due(at);
        assert!(scheduler.wanted.contains("s"));
        scheduler.succeeded("s");
        assert!(!scheduler.is_wanted("s"));
        let again = scheduler.retry_later("s", 0, &mut rng);
        assert!(
            again <= Duration::from_millis(2500),
            "a success resets the backoff"
        );
    }

    #[test]
    fn holders_follow_peers() {
        let mut scheduler = Scheduler::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        scheduler.add_holder("s", a, [1; 32]);
        scheduler.add_holder("s", b, [2; 32]);
        assert_eq!(scheduler.holders_of("s", &[1; 32]), vec![a]);
        scheduler.peer_gone(&a);
        assert!(scheduler.holders_of("s", &[1; 32]).is_empty());
        scheduler.remove_holder("s", &b);
        assert!(scheduler.holders.is_empty());
    }
}
