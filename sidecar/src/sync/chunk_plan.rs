//! The shared state of one multi-chunk download as a sans-IO state machine: which chunks are
//! missing, how many workers pull from each peer, which peers are given up (for this attempt) or
//! caught serving bad data, and when the record of verified chunks is rewritten. The download's
//! workers do the IO and ask it what to do next; one lock around it is the only shared state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;

use libp2p::PeerId;

/// The verified-chunk record is rewritten after this many new chunks.
pub const PERSIST_EVERY: u64 = 16;

/// Why fetching a chunk from a peer failed.
#[derive(Debug)]
pub enum Failure {
    /// The stream broke (the peer may still serve on a new one).
    Stream(String),
    /// The peer refused or answered out of protocol: it cannot serve this version.
    Refused(String),
    /// The bytes failed verification.
    Corrupt(String),
    /// Writing to the local disk failed: the whole download stops.
    Disk(io::Error),
}

/// What a worker does after a failure.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// Open a new stream to the same peer and go on (if it still may).
    Reopen,
    /// This worker stops.
    Stop,
    /// This worker stops and the peer is to be banned (the first bad chunk of this download).
    Ban(String),
}

pub struct ChunkPlan {
    /// Chunks to hand out in order; an entry that is done or taken meanwhile is skipped.
    queue: VecDeque<u64>,
    done: Vec<u8>,
    /// Chunks a worker is fetching now.
    taken: Vec<bool>,
    /// Chunks not verified yet.
    missing: u64,
    workers: BTreeMap<PeerId, usize>,
    unusable: BTreeSet<PeerId>,
    banned: BTreeSet<PeerId>,
    last_error: String,
    fatal: Option<io::Error>,
    since_persist: u64,
}

impl ChunkPlan {
    /// `done` has one byte per chunk: 1 when the chunk is already verified on disk.
    pub fn new(done: Vec<u8>) -> Self {
        Self {
            queue: (0..done.len() as u64)
                .filter(|i| done[*i as usize] == 0)
                .collect(),
            taken: vec![false; done.len()],
            missing: done.iter().filter(|d| **d == 0).count() as u64,
            done,
            workers: BTreeMap::new(),
            unusable: BTreeSet::new(),
            banned: BTreeSet::new(),
            last_error: "no peer holds this version".to_owned(),
            fatal: None,
            since_persist: 0,
        }
    }

    /// Starts over with the chunks `done` says are verified (after a resume), keeping the peers
    /// given up or caught so far.
    pub fn reset_chunks(&mut self, done: Vec<u8>) {
        let fresh = Self::new(done);
        self.queue = fresh.queue;
        self.done = fresh.done;
        self.taken = fresh.taken;
        self.missing = fresh.missing;
        self.since_persist = 0;
    }

    /// Hands chunks out from `first` on (wrapping round): receivers of one version that start at
    /// different places hold different chunks, which they can then fetch from each other.
    pub fn start_at(&mut self, first: u64) {
        let skip = self.queue.iter().position(|i| *i >= first).unwrap_or(0);
        self.queue.rotate_left(skip);
    }

    /// Chunks still missing (not verified, whether or not a worker is fetching them).
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// Starts a round: one worker per (peer, stream) round-robin over the usable peers, never
    /// more workers than missing chunks. Returns the peer of each worker.
    pub fn start_round(&mut self, peers: &[PeerId], streams_per_peer: usize) -> Vec<PeerId> {
        let usable: Vec<PeerId> = peers
            .iter()
            .filter(|p| !self.unusable.contains(p))
            .copied()
            .collect();
        self.workers.clear();
        if usable.is_empty() || self.fatal.is_some() {
            return Vec::new();
        }
        let in_flight = self.taken.iter().filter(|t| **t).count();
        let waiting = self.missing as usize - in_flight;
        let count = (streams_per_peer.max(1) * usable.len()).min(waiting);
        let assigned: Vec<PeerId> = (0..count).map(|i| usable[i % usable.len()]).collect();
        for peer in &assigned {
            *self.workers.entry(*peer).or_default() += 1;
        }
        assigned
    }

    /// The next chunk for a worker pulling from `peer`; `None` tells it to stop.
    pub fn next_chunk(&mut self, peer: &PeerId) -> Option<u64> {
        if self.unusable.contains(peer) || self.fatal.is_some() {
            return None;
        }
        while let Some(index) = self.queue.pop_front() {
            let i = index as usize;
            if self.done[i] == 0 && !self.taken[i] {
                self.taken[i] = true;
                return Some(index);
            }
        }
        None
    }

    /// The next missing chunk, not being fetched, that `have` (a peer's bitmap, see
    /// [`super::swarming::bit`]) marks, searching from `cursor` and wrapping round; `cursor` moves
    /// past it. `None` when there is none now (or the peer is given up).
    pub fn next_chunk_in(&mut self, peer: &PeerId, have: &[u8], cursor: &mut u64) -> Option<u64> {
        if self.unusable.contains(peer) || self.fatal.is_some() {
            return None;
        }
        let total = self.done.len() as u64;
        for step in 0..total {
            let index = (*cursor + step) % total;
            let i = index as usize;
            if self.done[i] == 0 && !self.taken[i] && super::swarming::bit(have, index) {
                self.taken[i] = true;
                *cursor = index + 1;
                return Some(index);
            }
        }
        None
    }

    /// One more worker pulls from `peer` in this round (one that joined after it started).
    pub fn add_worker(&mut self, peer: PeerId) {
        *self.workers.entry(peer).or_default() += 1;
    }

    /// False once `peer` is given up or caught for this download.
    pub fn is_usable(&self, peer: &PeerId) -> bool {
        !self.unusable.contains(peer) && self.fatal.is_none()
    }

    /// A chunk was verified and written. True when the record of verified chunks should be
    /// rewritten now.
    pub fn verified(&mut self, index: u64) -> bool {
        if let Some(flag) = self.done.get_mut(index as usize) {
            if *flag == 0 {
                self.missing -= 1;
            }
            *flag = 1;
            self.taken[index as usize] = false;
        }
        self.since_persist += 1;
        if self.since_persist >= PERSIST_EVERY {
            self.since_persist = 0;
            true
        } else {
            false
        }
    }

    /// A chunk could not be fetched from `peer`: it goes back to the queue for others.
    pub fn failed(&mut self, peer: PeerId, index: u64, failure: Failure) -> AfterFailure {
        if let Some(taken) = self.taken.get_mut(index as usize) {
            *taken = false;
        }
        self.queue.push_front(index);
        match failure {
            Failure::Stream(error) => {
                self.last_error = error;
                AfterFailure::Reopen
            }
            Failure::Refused(error) => {
                self.last_error = error;
                self.unusable.insert(peer);
                AfterFailure::Stop
            }
            Failure::Corrupt(reason) => {
                self.last_error = format!("{peer}: {reason}");
                self.unusable.insert(peer);
                // Several workers may catch the same peer at once; it is reported once.
                if self.banned.insert(peer) {
                    AfterFailure::Ban(reason)
                } else {
                    AfterFailure::Stop
                }
            }
            Failure::Disk(error) => {
                self.fatal.get_or_insert(error);
                AfterFailure::Stop
            }
        }
    }

    /// A worker could not (re)open a stream to its peer. The peer is given up for this round
    /// only when none of its workers is left: streams a peer dropped under load must not stop
    /// the workers whose streams are fine.
    pub fn worker_gave_up(&mut self, peer: PeerId, error: Option<String>) {
        if let Some(error) = error {
            self.last_error = error;
        }
        let left = self.workers.entry(peer).or_default();
        *left = left.saturating_sub(1);
        if *left == 0 {
            self.unusable.insert(peer);
        }
    }

    /// The peer could not serve the manifest (or anything): not used again in this download.
    pub fn give_up(&mut self, peer: PeerId, error: String) {
        self.unusable.insert(peer);
        self.last_error = error;
    }

    /// The peer served a manifest that does not match the hash: true the first time (ban it).
    pub fn caught(&mut self, peer: PeerId, reason: String) -> bool {
        self.unusable.insert(peer);
        self.last_error = format!("{peer}: {reason}");
        self.banned.insert(peer)
    }

    pub fn done_flags(&self) -> Vec<u8> {
        self.done.clone()
    }

    pub fn last_error(&self) -> String {
        self.last_error.clone()
    }

    pub fn take_fatal(&mut self) -> Option<io::Error> {
        self.fatal.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_spread_over_peers_and_never_outnumber_missing_chunks() {
        let mut plan = ChunkPlan::new(vec![0, 1, 0, 0]);
        assert_eq!(plan.missing(), 3);
        let (a, b) = (PeerId::random(), PeerId::random());
        let workers = plan.start_round(&[a, b], 8);
        assert_eq!(workers, vec![a, b, a]);
        assert_eq!(plan.next_chunk(&a), Some(0));
        assert_eq!(plan.next_chunk(&b), Some(2));
    }

    #[test]
    fn a_failed_chunk_goes_back_and_a_refusing_peer_is_dropped() {
        let mut plan = ChunkPlan::new(vec![0, 0]);
        let (a, b) = (PeerId::random(), PeerId::random());
        plan.start_round(&[a, b], 1);
        let chunk = plan.next_chunk(&a).unwrap();
        assert_eq!(
            plan.failed(a, chunk, Failure::Refused("not held".into())),
            AfterFailure::Stop
        );
        assert_eq!(plan.next_chunk(&a), None, "a is given up");
        assert_eq!(plan.next_chunk(&b), Some(chunk), "its chunk went to b");
        assert_eq!(plan.start_round(&[a, b], 4), vec![b]);
    }

    #[test]
    fn a_corrupting_peer_is_reported_once_per_download() {
        let mut plan = ChunkPlan::new(vec![0, 0, 0]);
        let liar = PeerId::random();
        plan.start_round(&[liar], 3);
        let first = plan.next_chunk(&liar).unwrap();
        let second = plan.next_chunk(&liar).unwrap();
        assert!(matches!(
            plan.failed(liar, first, Failure::Corrupt("bad".into())),
            AfterFailure::Ban(_)
        ));
        assert_eq!(
            plan.failed(liar, second, Failure::Corrupt("bad".into())),
            AfterFailure::Stop
        );
        assert_eq!(plan.missing(), 3);
        assert!(plan.last_error().contains("bad"));
    }

    #[test]
    fn a_peer_is_given_up_only_when_its_last_worker_gives_up() {
        let mut plan = ChunkPlan::new(vec![0; 4]);
        let peer = PeerId::random();
        plan.start_round(&[peer], 2);
        plan.worker_gave_up(peer, None);
        assert!(plan.next_chunk(&peer).is_some());
        plan.worker_gave_up(peer, Some("stream reset".into()));
        assert!(plan.next_chunk(&peer).is_none());
    }

    #[test]
    fn a_disk_error_stops_every_worker() {
        let mut plan = ChunkPlan::new(vec![0; 4]);
        let (a, b) = (PeerId::random(), PeerId::random());
        plan.start_round(&[a, b], 1);
        let chunk = plan.next_chunk(&a).unwrap();
        plan.failed(a, chunk, Failure::Disk(io::Error::other("ENOSPC")));
        assert_eq!(plan.next_chunk(&b), None);
        assert!(plan.take_fatal().is_some());
    }

    #[test]
    fn the_record_of_verified_chunks_is_rewritten_every_few_chunks() {
        let mut plan = ChunkPlan::new(vec![0; 40]);
        let persisted = (0..40).filter(|i| plan.verified(*i)).count() as u64;
        assert_eq!(persisted, 40 / PERSIST_EVERY);
        assert!(plan.done_flags().iter().all(|d| *d == 1));
    }

    #[test]
    fn chunks_are_handed_out_from_the_start_place_and_wrap_round() {
        let mut plan = ChunkPlan::new(vec![0, 1, 0, 0, 0]);
        plan.start_at(3);
        let a = PeerId::random();
        plan.start_round(&[a], 8);
        let order: Vec<u64> = std::iter::from_fn(|| plan.next_chunk(&a)).collect();
        assert_eq!(order, vec![3, 4, 0, 2]);
    }

    #[test]
    fn a_partial_source_gets_only_chunks_it_has_that_no_one_fetches() {
        let mut plan = ChunkPlan::new(vec![0; 10]);
        let (holder, receiver) = (PeerId::random(), PeerId::random());
        plan.start_round(&[holder], 1);
        plan.add_worker(receiver);
        assert_eq!(plan.next_chunk(&holder), Some(0));
        // The other receiver has chunks 0, 1 and 9.
        let have = [0b0000_0011, 0b10];
        let mut cursor = 0;
        assert_eq!(plan.next_chunk_in(&receiver, &have, &mut cursor), Some(1));
        assert_eq!(plan.next_chunk_in(&receiver, &have, &mut cursor), Some(9));
        assert_eq!(
            plan.next_chunk_in(&receiver, &have, &mut cursor),
            None,
            "0 is taken"
        );
        // The holder skips what the receiver is fetching.
        assert_eq!(plan.next_chunk(&holder), Some(2));
        assert_eq!(plan.missing(), 10);
        plan.verified(1);
        plan.verified(0);
        assert_eq!(plan.missing(), 8);
        // A chunk the receiver failed goes back to everyone.
        plan.failed(receiver, 9, Failure::Stream("broken".into()));
        assert_eq!(plan.next_chunk(&holder), Some(9));
        assert_eq!(plan.next_chunk(&holder), Some(3));
        plan.verified(1);
        assert_eq!(plan.missing(), 8, "a chunk verified twice counts once");
    }
}
