//! Peers that send what no honest node sends: strikes within a window, then a ban.
//!
//! - A message (a gossip announcement or an inventory) with a malformed, unsigned or badly signed
//!   record is one strike; [`MAX_MISBEHAVIOUR`] strikes within [`STRIKE_WINDOW`] ban the peer.
//! - A message with versions the sender itself signed but may not write (or with a Lamport value
//!   far ahead) is one strike of its own kind; [`MAX_UNAUTHORISED`] of them ban it. Versions an
//!   honest node relays for others are never held against it: nodes may disagree on the writer
//!   list for a while (during a rollout), and relaying is what they do.
//! - A peer that served a bad chunk or manifest is banned at once.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use libp2p::PeerId;

use super::io::Millis;

pub const STRIKE_WINDOW: Duration = Duration::from_secs(3600);
pub const MAX_MISBEHAVIOUR: usize = 3;
pub const MAX_UNAUTHORISED: usize = 20;
/// As long as the node's own ban (`node::ban_peer`).
pub const BAN_DURATION: Duration = Duration::from_secs(3600);
/// Peers with strikes remembered at most (the oldest are forgotten first).
pub const MAX_TRACKED_PEERS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strike {
    Misbehaviour,
    Unauthorised,
}

#[derive(Default)]
struct Record {
    misbehaviour: VecDeque<Millis>,
    unauthorised: VecDeque<Millis>,
    last: Millis,
}

#[derive(Default)]
pub struct Offences {
    peers: BTreeMap<PeerId, Record>,
    banned: BTreeMap<PeerId, Millis>,
}

impl Offences {
    /// Counts one offending message; returns why the peer is to be banned when it crossed a limit.
    pub fn strike(&mut self, peer: PeerId, strike: Strike, now: Millis) -> Option<String> {
        if self.is_banned(&peer, now) {
            return None;
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_TRACKED_PEERS {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, r)| r.last)
                .map(|(peer, _)| *peer);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
            }
        }
        let window_start = now.saturating_sub(STRIKE_WINDOW.as_millis() as u64);
        let record = self.peers.entry(peer).or_default();
        record.last = now;
        let (list, limit, what) = match strike {
            Strike::Misbehaviour => (
                &mut record.misbehaviour,
                MAX_MISBEHAVIOUR,
                "malformed, unsigned or badly signed version records",
            ),
            Strike::Unauthorised => (
                &mut record.unauthorised,
                MAX_UNAUTHORISED,
                "versions it may not write (or with a Lamport value far ahead)",
            ),
        };
        while list.front().is_some_and(|at| *at < window_start) {
            list.pop_front();
        }
        list.push_back(now);
        if list.len() < limit {
            return None;
        }
        let count = list.len();
        self.ban(peer, now);
        Some(format!(
            "sent {count} messages with {what} within {} s",
            STRIKE_WINDOW.as_secs()
        ))
    }

    /// Marks the peer banned (from now for [`BAN_DURATION`]) and forgets its strikes.
    pub fn ban(&mut self, peer: PeerId, now: Millis) {
        self.peers.remove(&peer);
        self.banned
            .insert(peer, now + BAN_DURATION.as_millis() as u64);
    }

    pub fn is_banned(&self, peer: &PeerId, now: Millis) -> bool {
        self.banned.get(peer).is_some_and(|until| now < *until)
    }

    /// Drops expired bans and strikes.
    pub fn expire(&mut self, now: Millis) {
        self.banned.retain(|_, until| now < *until);
        let window_start = now.saturating_sub(STRIKE_WINDOW.as_millis() as u64);
        self.peers.retain(|_, r| r.last >= window_start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_bad_messages_within_the_window_ban_a_peer() {
        let mut offences = Offences::default();
        let peer = PeerId::random();
        assert_eq!(offences.strike(peer, Strike::Misbehaviour, 0), None);
        assert_eq!(offences.strike(peer, Strike::Misbehaviour, 10), None);
        let reason = offences.strike(peer, Strike::Misbehaviour, 20).unwrap();
        assert!(reason.contains("3 messages"), "{reason}");
        assert!(offences.is_banned(&peer, 21));
        assert_eq!(
            offences.strike(peer, Strike::Misbehaviour, 30),
            None,
            "banned once"
        );
        assert!(!offences.is_banned(&peer, 20 + BAN_DURATION.as_millis() as u64));
    }

    #[test]
    fn strikes_older_than_the_window_do_not_count() {
        let mut offences = Offences::default();
        let peer = PeerId::random();
        let hour = STRIKE_WINDOW.as_millis() as u64;
        offences.strike(peer, Strike::Misbehaviour, 0);
        offences.strike(peer, Strike::Misbehaviour, 1);
        assert_eq!(offences.strike(peer, Strike::Misbehaviour, hour + 2), None);
    }

    #[test]
    fn unauthorised_writes_need_more_strikes() {
        let mut offences = Offences::default();
        let peer = PeerId::random();
        for i in 0..MAX_UNAUTHORISED as u64 - 1 {
            assert_eq!(offences.strike(peer, Strike::Unauthorised, i), None);
        }
        assert!(offences.strike(peer, Strike::Unauthorised, 100).is_some());
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_identities() {
        let mut offences = Offences::default();
        for i in 0..MAX_TRACKED_PEERS as u64 + 50 {
            offences.strike(PeerId::random(), Strike::Unauthorised, i);
        }
        assert_eq!(offences.peers.len(), MAX_TRACKED_PEERS);
        offences.expire(10 * STRIKE_WINDOW.as_millis() as u64);
        assert!(offences.peers.is_empty());
    }
}
