//! Holder notices on their way from the sync server to the replication engine. A direct peer
//! that installed a store says so with a `Holding` request; the server queues its body here and
//! the driver verifies it like a gossip announcement. The queue is bounded in all and per peer,
//! and a place in it is taken before the body is read, so a peer that floods notices holds at
//! most [`MAX_QUEUED_PER_PEER`] bodies of [`MAX_HOLDING_BYTES`] and cannot crowd out the others.

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::PeerId;
use parking_lot::Mutex;
use tokio::sync::mpsc;

#[cfg(doc)]
use super::protocol::MAX_HOLDING_BYTES;

/// Notices queued or being verified, all peers together.
pub const MAX_QUEUED: usize = 64;
/// Notices queued or being verified for one peer.
pub const MAX_QUEUED_PER_PEER: usize = 4;

/// A notice body from `from` (an encoded announcement, not yet decoded or verified). Its place
/// in the queue is released when it is dropped, after the driver handled it.
pub struct HolderNotice {
    pub from: PeerId,
    pub body: Vec<u8>,
    _place: Place,
}

/// The sending side, held by the sync server.
#[derive(Clone)]
pub struct NoticeQueue {
    sender: mpsc::Sender<HolderNotice>,
    places: Arc<Mutex<Places>>,
}

#[derive(Default)]
struct Places {
    taken: usize,
    per_peer: HashMap<PeerId, usize>,
}

/// One notice's place in the queue.
pub struct Place {
    places: Arc<Mutex<Places>>,
    peer: PeerId,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut places = self.places.lock();
        places.taken -= 1;
        if let Some(count) = places.per_peer.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                places.per_peer.remove(&self.peer);
            }
        }
    }
}

impl NoticeQueue {
    /// The queue and the driver's end of it.
    pub fn new() -> (Self, mpsc::Receiver<HolderNotice>) {
        let (sender, receiver) = mpsc::channel(MAX_QUEUED);
        let queue = Self {
            sender,
            places: Arc::new(Mutex::new(Places::default())),
        };
        (queue, receiver)
    }

    /// A place for one more notice of `peer`, if the caps allow it.
    pub fn reserve(&self, peer: PeerId) -> Option<Place> {
        let mut places = self.places.lock();
        let of_peer = places.per_peer.get(&peer).copied().unwrap_or(0);
        if places.taken >= MAX_QUEUED || of_peer >= MAX_QUEUED_PER_PEER {
            return None;
        }
        places.taken += 1;
        places.per_peer.insert(peer, of_peer + 1);
        Some(Place {
            places: self.places.clone(),
            peer,
        })
    }

    /// Queues a notice in its reserved place; false when the driver has stopped.
    pub fn push(&self, place: Place, body: Vec<u8>) -> bool {
        let notice = HolderNotice {
            from: place.peer,
            body,
            _place: place,
        };
        // Never full: the channel holds `MAX_QUEUED` and every notice in it has a place.
        self.sender.try_send(notice).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_are_capped_per_peer_and_in_all_and_come_back_when_handled() {
        let (queue, mut receiver) = NoticeQueue::new();
        let flooder = PeerId::random();
        let places: Vec<Place> = (0..MAX_QUEUED_PER_PEER)
            .map(|_| queue.reserve(flooder).expect("within the peer's share"))
            .collect();
        assert!(queue.reserve(flooder).is_none(), "the peer's share is used");
        let honest = PeerId::random();
        let place = queue.reserve(honest).expect("another peer still has room");
        assert!(queue.push(place, b"{}".to_vec()));

        for place in places {
            assert!(queue.push(place, vec![0; 8]));
        }
        assert!(
            queue.reserve(flooder).is_none(),
            "queued notices keep their places"
        );
        let first = receiver.recv().await.unwrap();
        assert_eq!(first.from, honest);
        assert_eq!(first.body, b"{}");
        let second = receiver.recv().await.unwrap();
        assert_eq!(second.from, flooder);
        drop(second);
        assert!(
            queue.reserve(flooder).is_some(),
            "a handled notice frees its place"
        );

        let others: Vec<Place> = (0..MAX_QUEUED)
            .filter_map(|_| queue.reserve(PeerId::random()))
            .collect();
        assert_eq!(
            others.len(),
            MAX_QUEUED - 1 - (MAX_QUEUED_PER_PEER - 1),
            "all peers together stay within the total"
        );
    }

    #[test]
    fn a_stopped_driver_refuses_notices() {
        let (queue, receiver) = NoticeQueue::new();
        drop(receiver);
        let place = queue.reserve(PeerId::random()).unwrap();
        assert!(!queue.push(place, Vec::new()));
    }
}
