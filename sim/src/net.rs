//! The simulated network: one-way latency, each node's upload bandwidth (what it sends is
//! serialised on its uplink), message loss and partitions. Seeded, so a run is reproducible.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use dig_sidecar::sync::engine::Millis;

/// What the network is like.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub latency_ms: Millis,
    /// Upload bandwidth of every node, in bits per second.
    pub bandwidth_bps: u64,
    /// Probability that one message (gossip, inventory request or response) is lost.
    pub loss: f64,
}

/// Bytes a node sent, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub gossip: u64,
    /// Holder notices to direct peers.
    pub notices: u64,
    pub inventory: u64,
    pub data: u64,
}

impl Traffic {
    pub fn total(&self) -> u64 {
        self.gossip + self.notices + self.inventory + self.data
    }

    fn add(&mut self, kind: Kind, bytes: u64) {
        match kind {
            Kind::Gossip => self.gossip += bytes,
            Kind::Notice => self.notices += bytes,
            Kind::Inventory => self.inventory += bytes,
            Kind::Data => self.data += bytes,
        }
    }

    pub fn plus(&self, other: &Traffic) -> Traffic {
        Traffic {
            gossip: self.gossip + other.gossip,
            notices: self.notices + other.notices,
            inventory: self.inventory + other.inventory,
            data: self.data + other.data,
        }
    }

    pub fn minus(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            gossip: self.gossip - earlier.gossip,
            notices: self.notices - earlier.notices,
            inventory: self.inventory - earlier.inventory,
            data: self.data - earlier.data,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gossip,
    Notice,
    Inventory,
    Data,
}

pub struct Network {
    config: NetConfig,
    rng: StdRng,
    /// When each node's uplink is free again, in microseconds (a small message takes far less
    /// than a millisecond).
    uplink_free_at_us: Vec<u64>,
    /// The side of a partition each node is on (all 0: no partition).
    side: Vec<u8>,
    pub sent: Vec<Traffic>,
    pub received: Vec<Traffic>,
}

impl Network {
    pub fn new(config: NetConfig, nodes: usize, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            uplink_free_at_us: vec![0; nodes],
            side: vec![0; nodes],
            sent: vec![Traffic::default(); nodes],
            received: vec![Traffic::default(); nodes],
        }
    }

    pub fn add_node(&mut self) -> usize {
        self.uplink_free_at_us.push(0);
        self.side.push(0);
        self.sent.push(Traffic::default());
        self.received.push(Traffic::default());
        self.sent.len() - 1
    }

    pub fn latency(&self) -> Millis {
        self.config.latency_ms
    }

    /// Splits the nodes: `side[i]` is node i's side; nodes on different sides cannot talk.
    pub fn partition(&mut self, side: Vec<u8>) {
        self.side = side;
    }

    pub fn heal(&mut self) {
        self.side.iter_mut().for_each(|s| *s = 0);
    }

    pub fn reachable(&self, from: usize, to: usize) -> bool {
        self.side[from] == self.side[to]
    }

    /// Sends `bytes` from `from` to `to` at `now`: when they arrive, or `None` when the message
    /// is lost or the nodes are on different sides of a partition. Lost bytes still used the
    /// sender's uplink.
    pub fn send(
        &mut self,
        from: usize,
        to: usize,
        bytes: u64,
        kind: Kind,
        now: Millis,
    ) -> Option<Millis> {
        let start_us = (now * 1000).max(self.uplink_free_at_us[from]);
        // Microseconds on the wire: bytes * 8 bits / (bits per µs).
        let busy_us = (bytes * 8 * 1_000_000).div_ceil(self.config.bandwidth_bps.max(1));
        self.uplink_free_at_us[from] = start_us + busy_us;
        let sent_ms = (start_us + busy_us).div_ceil(1000);
        self.sent[from].add(kind, bytes);
        let lost = kind != Kind::Data && self.rng.gen_bool(self.config.loss.clamp(0.0, 1.0));
        let delivered = !lost && self.reachable(from, to);
        if delivered {
            self.received[to].add(kind, bytes);
        }
        delivered.then_some(sent_ms + self.config.latency_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(loss: f64) -> Network {
        Network::new(
            NetConfig {
                latency_ms: 50,
                bandwidth_bps: 8_000_000,
                loss,
            },
            3,
            1,
        )
    }

    #[test]
    fn sends_queue_on_the_senders_uplink_and_arrive_after_the_latency() {
        let mut net = net(0.0);
        // 1 MB at 8 Mbit/s is 1,000 ms.
        assert_eq!(net.send(0, 1, 1_000_000, Kind::Data, 0), Some(1_050));
        assert_eq!(
            net.send(0, 2, 1_000_000, Kind::Data, 0),
            Some(2_050),
            "the second waits for the first on the uplink"
        );
        assert_eq!(net.send(1, 2, 1_000, Kind::Gossip, 0), Some(51));
        assert_eq!(net.sent[0].data, 2_000_000);
    }

    #[test]
    fn a_partition_drops_messages_across_it_until_healed() {
        let mut net = net(0.0);
        net.partition(vec![0, 1, 1]);
        assert_eq!(net.send(0, 1, 10, Kind::Gossip, 0), None);
        assert!(net.send(1, 2, 10, Kind::Gossip, 0).is_some());
        net.heal();
        assert!(net.send(0, 1, 10, Kind::Gossip, 0).is_some());
    }

    #[test]
    fn loss_drops_about_the_given_share_of_messages() {
        let mut net = net(0.1);
        let lost = (0..10_000)
            .filter(|_| net.send(0, 1, 1, Kind::Gossip, 0).is_none())
            .count();
        assert!((800..1_200).contains(&lost), "{lost}");
    }
}
