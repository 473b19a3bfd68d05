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
    queue: VecDeque<u64>,
    done: Vec<u8>,
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
        self.since_persist = 0;
    }

    /// Chunks still missing.
    pub fn missing(&self) -> u64 {
        self.queue.len() as u64
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
        let count = (streams_per_peer.max(1) * usable.len()).min(self.queue.len());
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
        self.queue.pop_front()
    }

    /// A chunk was verified and written. True when the record of verified chunks should be
    /// rewritten now.
    pub fn verified(&mut self, index: u64) -> bool {
        if let Some(flag) = self.done.get_mut(index as usize) {
            *flag = 1;
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
}
