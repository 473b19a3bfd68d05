//! Connected peers and the anti-entropy rounds: every connected peer's inventory is compared when
//! it connects and every `--inventory-interval`, a few exchanges at a time. The first exchange
//! after start runs alone: a node that starts with an empty (or old) index learns what it lacks
//! from one peer, and the exchanges after it find only what still differs, instead of every
//! connected peer sending it the whole inventory at once.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use libp2p::PeerId;

use super::io::Millis;

pub struct Peers {
    connected: BTreeSet<PeerId>,
    queue: VecDeque<PeerId>,
    in_flight: BTreeSet<PeerId>,
    interval: Millis,
    /// A shorter period while draining.
    fast: Option<Millis>,
    concurrency: usize,
    next_round: Option<Millis>,
    /// An exchange has ended since start.
    first_done: bool,
}

impl Peers {
    pub fn new(interval: Duration, concurrency: usize) -> Self {
        Self {
            connected: BTreeSet::new(),
            queue: VecDeque::new(),
            in_flight: BTreeSet::new(),
            interval: (interval.as_millis() as u64).max(100),
            fast: None,
            concurrency: concurrency.max(1),
            next_round: None,
            first_done: false,
        }
    }

    /// A peer connected: exchange inventories with it now.
    pub fn connected(&mut self, peer: PeerId) {
        self.connected.insert(peer);
        self.enqueue(peer);
    }

    pub fn disconnected(&mut self, peer: &PeerId) {
        self.connected.remove(peer);
        self.queue.retain(|p| p != peer);
    }

    pub fn inventory_done(&mut self, peer: &PeerId) {
        if self.in_flight.remove(peer) {
            self.first_done = true;
        }
    }

    /// Starts a round when one is due.
    pub fn tick(&mut self, now: Millis) {
        match self.next_round {
            Some(at) if now < at => {}
            _ => {
                if self.next_round.is_some() {
                    let peers: Vec<PeerId> = self.connected.iter().copied().collect();
                    for peer in peers {
                        self.enqueue(peer);
                    }
                }
                self.next_round = Some(now + self.period());
            }
        }
    }

    fn period(&self) -> Millis {
        self.fast.map_or(self.interval, |f| f.min(self.interval))
    }

    /// Rounds every `fast` (`None`: every interval again); with a new period every connected
    /// peer is asked now.
    pub fn set_fast(&mut self, fast: Option<Millis>, now: Millis) {
        self.fast = fast;
        let peers: Vec<PeerId> = self.connected.iter().copied().collect();
        for peer in peers {
            self.enqueue(peer);
        }
        self.next_round = Some(now + self.period());
    }

    pub fn connected_peers(&self) -> &BTreeSet<PeerId> {
        &self.connected
    }

    /// Peers with an exchange running.
    pub fn in_flight(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.in_flight.iter().copied()
    }

    pub fn next_round(&self) -> Option<Millis> {
        self.next_round
    }

    /// Exchanges to start now.
    pub fn start_exchanges(&mut self) -> Vec<PeerId> {
        let mut started = Vec::new();
        let concurrency = if self.first_done { self.concurrency } else { 1 };
        while self.in_flight.len() < concurrency {
            let Some(peer) = self.queue.pop_front() else {
                break;
            };
            if self.connected.contains(&peer) && self.in_flight.insert(peer) {
                started.push(peer);
            }
        }
        started
    }

    fn enqueue(&mut self, peer: PeerId) {
        if !self.queue.contains(&peer) && !self.in_flight.contains(&peer) {
            self.queue.push_back(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_peer_is_asked_at_once_and_every_peer_every_interval() {
        let mut peers = Peers::new(Duration::from_secs(30), 8);
        let (a, b) = (PeerId::random(), PeerId::random());
        peers.tick(0);
        peers.connected(a);
        assert_eq!(peers.start_exchanges(), vec![a]);
        assert!(
            peers.start_exchanges().is_empty(),
            "one exchange per peer at a time"
        );
        peers.inventory_done(&a);
        peers.connected(b);
        assert_eq!(peers.start_exchanges(), vec![b]);
        peers.inventory_done(&b);
        peers.tick(29_999);
        assert!(peers.start_exchanges().is_empty());
        peers.tick(30_000);
        assert_eq!(peers.start_exchanges().len(), 2);
    }

    #[test]
    fn exchanges_are_limited_and_gone_peers_skipped() {
        let mut peers = Peers::new(Duration::from_secs(30), 2);
        let all: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        for peer in &all {
            peers.connected(*peer);
        }
        peers.disconnected(&all[2]);
        assert_eq!(
            peers.start_exchanges(),
            vec![all[0]],
            "the first runs alone"
        );
        assert!(peers.start_exchanges().is_empty());
        peers.inventory_done(&all[0]);
        assert_eq!(peers.start_exchanges(), vec![all[1], all[3]]);
        peers.inventory_done(&all[1]);
        assert_eq!(peers.start_exchanges(), vec![all[4]]);
    }
}
