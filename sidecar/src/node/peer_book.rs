//! The peers the node knows of and when to dial them: addresses by discovery source, dial backoff,
//! quarantine of foreign peers and bans. Sans-IO: the event loop owns the swarm, passes the time
//! in, and does the dialing, blocking and logging the answers ask for.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId};

use super::status::{BannedPeer, DiscoveredPeer, DiscoverySource};
use crate::backoff::Backoff;

const DIAL_BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A peer known only from a connection or the DHT is forgotten after this many failed dials.
const MAX_FAILED_DIALS_WITHOUT_LISTING: u32 = 10;
/// A peer of another network is not dialed again for this long.
const FOREIGN_PEER_QUARANTINE: Duration = Duration::from_secs(600);
pub(super) const BAN_DURATION: Duration = Duration::from_secs(3600);

struct KnownPeer {
    sources: BTreeMap<DiscoverySource, Vec<Multiaddr>>,
    backoff: Backoff,
    next_dial: Option<Instant>,
    /// The last ping round trip, kept after a disconnection for choosing whom to dial again.
    rtt: Option<Duration>,
}

impl KnownPeer {
    fn new(now: Instant) -> Self {
        Self {
            sources: BTreeMap::new(),
            backoff: Backoff::new(DIAL_BACKOFF_INITIAL, DIAL_BACKOFF_MAX),
            next_dial: Some(now),
            rtt: None,
        }
    }

    fn addresses(&self) -> Vec<Multiaddr> {
        let mut out: Vec<Multiaddr> = Vec::new();
        for address in self.sources.values().flatten() {
            if !out.contains(address) {
                out.push(address.clone());
            }
        }
        out
    }

    /// Listed by a source that keeps its list current (the registry, DNS or mDNS).
    fn is_listed(&self) -> bool {
        self.sources.contains_key(&DiscoverySource::Registry)
            || self.sources.contains_key(&DiscoverySource::Dns)
            || self.sources.contains_key(&DiscoverySource::Mdns)
    }
}

/// A peer refused for [`BAN_DURATION`], and why.
struct Ban {
    until: Instant,
    since_ms: u64,
    until_ms: u64,
    reason: String,
}

/// What [`PeerBook::due_peers`] found.
#[derive(Debug, Default)]
pub(super) struct DuePeers {
    /// Peers that may be dialed now, with their last measured RTT.
    pub due: Vec<(PeerId, Option<Duration>)>,
    /// Peers dropped because no source lists them and too many dials failed.
    pub forgotten: Vec<PeerId>,
}

/// What [`PeerBook::take_due_dials`] decided.
#[cfg(test)]
#[derive(Debug, Default)]
pub(super) struct DueDials {
    /// Peers to dial now, each with all its known addresses.
    pub dial: Vec<(PeerId, Vec<Multiaddr>)>,
    /// Peers dropped because no source lists them and too many dials failed.
    pub forgotten: Vec<PeerId>,
}

/// Peers whose quarantine or ban ended; each is to be unblocked.
#[derive(Debug, Default)]
pub(super) struct Released {
    pub quarantine_ended: Vec<PeerId>,
    pub ban_ended: Vec<PeerId>,
}

#[derive(Default)]
pub(super) struct PeerBook {
    known: HashMap<PeerId, KnownPeer>,
    /// Peers with at least one open connection (confirmed or not): never dialed.
    connected: HashSet<PeerId>,
    quarantined: HashMap<PeerId, Instant>,
    banned: HashMap<PeerId, Ban>,
}

impl PeerBook {
    pub(super) fn on_connected(&mut self, peer: PeerId) {
        self.connected.insert(peer);
        if let Some(known) = self.known.get_mut(&peer) {
            known.backoff.reset();
            known.next_dial = None;
        }
    }

    /// The peer's last connection closed.
    pub(super) fn on_disconnected(&mut self, peer: PeerId, now: Instant) {
        self.connected.remove(&peer);
        if let Some(known) = self.known.get_mut(&peer) {
            known.next_dial = Some(now + known.backoff.next_delay());
        }
    }

    /// The addresses a connected peer of our network listens on (identify).
    pub(super) fn on_identified(&mut self, peer: PeerId, listen: Vec<Multiaddr>, now: Instant) {
        if listen.is_empty() {
            return;
        }
        let known = self
            .known
            .entry(peer)
            .or_insert_with(|| KnownPeer::new(now));
        known.sources.insert(DiscoverySource::Direct, listen);
        known.next_dial = None;
    }

    /// An operator dials `address` of `peer` themselves; the loop does not dial it as well.
    pub(super) fn on_operator_dial(&mut self, peer: PeerId, address: Multiaddr, now: Instant) {
        let known = self
            .known
            .entry(peer)
            .or_insert_with(|| KnownPeer::new(now));
        known
            .sources
            .entry(DiscoverySource::Direct)
            .or_default()
            .push(address);
        known.next_dial = None;
    }

    /// One dialable address of `peer` from `source` (the DHT or mDNS).
    pub(super) fn add_address(
        &mut self,
        peer: PeerId,
        source: DiscoverySource,
        address: Multiaddr,
        now: Instant,
    ) {
        let known = self
            .known
            .entry(peer)
            .or_insert_with(|| KnownPeer::new(now));
        let list = known.sources.entry(source).or_default();
        if !list.contains(&address) {
            list.push(address);
            if !self.connected.contains(&peer) && known.next_dial.is_none() {
                known.next_dial = Some(now);
            }
        }
    }

    /// `source` no longer lists `address` for `peer` (an mDNS record expired).
    pub(super) fn remove_address(
        &mut self,
        peer: PeerId,
        source: DiscoverySource,
        address: &Multiaddr,
    ) {
        if let Some(known) = self.known.get_mut(&peer)
            && let Some(list) = known.sources.get_mut(&source)
        {
            list.retain(|kept| kept != address);
            if list.is_empty() {
                known.sources.remove(&source);
            }
        }
    }

    /// Replaces a source's complete list of dialable addresses (the registry's `/peers` answer).
    /// A peer no source lists any more is forgotten unless it is connected.
    pub(super) fn replace_source(
        &mut self,
        source: DiscoverySource,
        listed: HashMap<PeerId, Vec<Multiaddr>>,
        now: Instant,
    ) {
        for (peer, known) in self.known.iter_mut() {
            if !listed.contains_key(peer) {
                known.sources.remove(&source);
            }
        }
        for (peer, addrs) in listed {
            let connected = self.connected.contains(&peer);
            let known = self
                .known
                .entry(peer)
                .or_insert_with(|| KnownPeer::new(now));
            let previous = known.sources.insert(source, addrs.clone());
            // A new peer, or one that came back on new addresses, is dialed at once.
            if !connected && previous.as_ref() != Some(&addrs) {
                known.backoff.reset();
                known.next_dial = Some(now);
            }
        }
        let connected = &self.connected;
        self.known
            .retain(|peer, known| !known.sources.is_empty() || connected.contains(peer));
    }

    /// A ping round trip to a connected peer.
    pub(super) fn record_rtt(&mut self, peer: PeerId, rtt: Duration) {
        if let Some(known) = self.known.get_mut(&peer) {
            known.rtt = Some(rtt);
        }
    }

    /// The peers that may be dialed now: not connected, quarantined, banned or in backoff, and
    /// with an address. Nothing is dialed yet; [`PeerBook::start_dial`] marks the ones that are.
    pub(super) fn due_peers(&mut self, now: Instant) -> DuePeers {
        let mut out = DuePeers::default();
        for (peer, known) in self.known.iter_mut() {
            if self.connected.contains(peer)
                || self.quarantined.contains_key(peer)
                || self.banned.contains_key(peer)
            {
                continue;
            }
            match known.next_dial {
                Some(at) if at <= now => {}
                Some(_) => continue,
                None => {
                    // Disconnected without a scheduled dial (e.g. quarantine ended): dial now.
                    known.next_dial = Some(now);
                    continue;
                }
            }
            if !known.is_listed() && known.backoff.failures() >= MAX_FAILED_DIALS_WITHOUT_LISTING {
                out.forgotten.push(*peer);
                continue;
            }
            if known.sources.values().all(Vec::is_empty) {
                continue;
            }
            out.due.push((*peer, known.rtt));
        }
        for peer in &out.forgotten {
            self.known.remove(peer);
        }
        out
    }

    /// A due peer is dialed: its addresses, and its next dial put off by the growing backoff,
    /// which a connection resets.
    pub(super) fn start_dial(&mut self, peer: PeerId, now: Instant) -> Vec<Multiaddr> {
        let Some(known) = self.known.get_mut(&peer) else {
            return Vec::new();
        };
        known.next_dial = Some(now + known.backoff.next_delay());
        known.addresses()
    }

    /// Every due peer, dialed: what the node did before it kept a target number of peers.
    #[cfg(test)]
    pub(super) fn take_due_dials(&mut self, now: Instant) -> DueDials {
        let due = self.due_peers(now);
        let dial = due
            .due
            .into_iter()
            .map(|(peer, _)| (peer, self.start_dial(peer, now)))
            .collect();
        DueDials {
            dial,
            forgotten: due.forgotten,
        }
    }

    /// A peer of another network: not dialed for [`FOREIGN_PEER_QUARANTINE`].
    pub(super) fn quarantine(&mut self, peer: PeerId, now: Instant) {
        self.quarantined.insert(peer, now + FOREIGN_PEER_QUARANTINE);
    }

    pub(super) fn ban(&mut self, peer: PeerId, reason: String, now: Instant, now_ms: u64) {
        let ban = Ban {
            until: now + BAN_DURATION,
            since_ms: now_ms,
            until_ms: now_ms + BAN_DURATION.as_millis() as u64,
            reason,
        };
        self.banned.insert(peer, ban);
    }

    /// Ends the quarantines and bans that are over. A peer still held by the other one stays
    /// blocked, so it is returned only when both have ended.
    pub(super) fn expire(&mut self, now: Instant) -> Released {
        let mut out = Released::default();
        let released: Vec<PeerId> = self
            .quarantined
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in released {
            self.quarantined.remove(&peer);
            if !self.banned.contains_key(&peer) {
                out.quarantine_ended.push(peer);
            }
        }
        let expired: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, ban)| ban.until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.banned.remove(&peer);
            if !self.quarantined.contains_key(&peer) {
                out.ban_ended.push(peer);
            }
        }
        out
    }

    /// How many known peers `source` lists.
    pub(super) fn source_count(&self, source: DiscoverySource) -> usize {
        self.known
            .values()
            .filter(|known| known.sources.contains_key(&source))
            .count()
    }

    /// The peers some discovery source lists, sorted by id; `confirmed` says which are connected
    /// and confirmed as peers of our network.
    pub(super) fn discovered_peers(
        &self,
        confirmed: impl Fn(&PeerId) -> bool,
    ) -> Vec<DiscoveredPeer> {
        let mut discovered: Vec<DiscoveredPeer> = self
            .known
            .iter()
            .filter(|(_, known)| {
                known
                    .sources
                    .keys()
                    .any(|source| *source != DiscoverySource::Direct)
            })
            .map(|(peer, known)| DiscoveredPeer {
                peer_id: peer.to_string(),
                addresses: known.addresses().iter().map(ToString::to_string).collect(),
                sources: known
                    .sources
                    .keys()
                    .copied()
                    .filter(|source| *source != DiscoverySource::Direct)
                    .collect(),
                connected: confirmed(peer),
                failed_dials: known.backoff.failures(),
            })
            .collect();
        discovered.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        discovered
    }

    /// The banned peers, the latest ban first.
    pub(super) fn banned_peers(&self) -> Vec<BannedPeer> {
        let mut banned: Vec<BannedPeer> = self
            .banned
            .iter()
            .map(|(peer, ban)| BannedPeer {
                peer_id: peer.to_string(),
                reason: ban.reason.clone(),
                since_ms: ban.since_ms,
                until_ms: ban.until_ms,
            })
            .collect();
        banned.sort_by_key(|ban| std::cmp::Reverse(ban.since_ms));
        banned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    fn a() -> Multiaddr {
        address("/ip4/10.0.0.1/tcp/4001")
    }

    fn b() -> Multiaddr {
        address("/ip4/10.0.0.2/tcp/4001")
    }

    fn c() -> Multiaddr {
        address("/ip4/10.0.0.3/tcp/4001")
    }

    fn listed(peer: PeerId, addrs: Vec<Multiaddr>) -> HashMap<PeerId, Vec<Multiaddr>> {
        HashMap::from([(peer, addrs)])
    }

    fn dialed(book: &mut PeerBook, now: Instant) -> Vec<PeerId> {
        book.take_due_dials(now)
            .dial
            .into_iter()
            .map(|(peer, _)| peer)
            .collect()
    }

    /// The first backoff delay is 500 ms ± a quarter, the second 1 s ± a quarter.
    const FIRST_DELAY_MIN: Duration = Duration::from_millis(375);
    const FIRST_DELAY_MAX: Duration = Duration::from_millis(625);
    const SECOND_DELAY_MIN: Duration = Duration::from_millis(750);
    const SECOND_DELAY_MAX: Duration = Duration::from_millis(1250);
    const JUST: Duration = Duration::from_millis(1);

    #[test]
    fn a_new_peer_is_due_at_once_with_its_addresses() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let from_dht = PeerId::random();
        let from_registry = PeerId::random();
        book.add_address(from_dht, DiscoverySource::Dht, a(), t0);
        book.replace_source(
            DiscoverySource::Registry,
            listed(from_registry, vec![b()]),
            t0,
        );

        let mut due = book.take_due_dials(t0).dial;
        due.sort();
        let mut expected = vec![(from_dht, vec![a()]), (from_registry, vec![b()])];
        expected.sort();
        assert_eq!(due, expected);
    }

    #[test]
    fn a_failed_dial_is_retried_after_a_growing_backoff() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.add_address(peer, DiscoverySource::Dht, a(), t0);
        assert_eq!(dialed(&mut book, t0), vec![peer]);

        // No connection came of it: the next dial waits for the first backoff delay.
        assert!(dialed(&mut book, t0 + FIRST_DELAY_MIN - JUST).is_empty());
        let t1 = t0 + FIRST_DELAY_MAX;
        assert_eq!(dialed(&mut book, t1), vec![peer]);

        // And the one after that for a longer one.
        assert!(dialed(&mut book, t1 + SECOND_DELAY_MIN - JUST).is_empty());
        assert_eq!(dialed(&mut book, t1 + SECOND_DELAY_MAX), vec![peer]);

        let failed = book.discovered_peers(|_| false)[0].failed_dials;
        assert_eq!(failed, 3);
    }

    #[test]
    fn a_connected_peer_is_never_due() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![a()]), t0);
        book.on_connected(peer);
        // Nor do new addresses schedule a dial while it is connected.
        book.add_address(peer, DiscoverySource::Dht, b(), t0);
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![c()]), t0);

        assert!(dialed(&mut book, t0).is_empty());
        assert!(dialed(&mut book, t0 + Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn a_connection_resets_the_backoff_and_a_disconnected_listed_peer_is_due_again() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![a()]), t0);
        for step in 0..4 {
            dialed(&mut book, t0 + Duration::from_secs(60 * step));
        }
        assert_eq!(book.discovered_peers(|_| false)[0].failed_dials, 4);
        book.on_connected(peer);
        assert_eq!(book.discovered_peers(|_| true)[0].failed_dials, 0);

        let t1 = t0 + Duration::from_secs(600);
        book.on_disconnected(peer, t1);
        assert!(dialed(&mut book, t1).is_empty());
        assert!(dialed(&mut book, t1 + FIRST_DELAY_MIN - JUST).is_empty());
        assert_eq!(dialed(&mut book, t1 + FIRST_DELAY_MAX), vec![peer]);
    }

    #[test]
    fn a_peer_identified_while_connected_is_dialed_once_it_is_not() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.on_connected(peer);
        book.on_identified(peer, vec![a()], t0);
        assert!(dialed(&mut book, t0).is_empty());

        book.on_disconnected(peer, t0);
        let later = t0 + FIRST_DELAY_MAX;
        assert_eq!(
            book.take_due_dials(later).dial,
            vec![(peer, vec![a()])],
            "its identify addresses are kept for redials"
        );
        // Only identify knows it: it is not a discovered peer.
        assert!(book.discovered_peers(|_| false).is_empty());
    }

    #[test]
    fn an_operator_dial_is_not_repeated_until_the_tick_after() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.on_operator_dial(peer, a(), t0);
        // The operator's dial is under way: the first tick only schedules the next.
        assert!(dialed(&mut book, t0).is_empty());
        assert_eq!(dialed(&mut book, t0), vec![peer]);
    }

    #[test]
    fn a_due_peer_left_undialed_stays_due_and_keeps_its_rtt() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![a()]), t0);
        book.on_connected(peer);
        book.record_rtt(peer, Duration::from_millis(7));
        book.on_disconnected(peer, t0);

        // Offered but not dialed (the peer set is full): no backoff is spent on it.
        let failed = |book: &PeerBook| book.discovered_peers(|_| false)[0].failed_dials;
        let before = failed(&book);
        let later = t0 + FIRST_DELAY_MAX;
        for _ in 0..3 {
            let due = book.due_peers(later);
            assert_eq!(due.due, vec![(peer, Some(Duration::from_millis(7)))]);
        }
        assert_eq!(failed(&book), before);

        assert_eq!(book.start_dial(peer, later), vec![a()]);
        assert!(
            book.due_peers(later).due.is_empty(),
            "a started dial waits for its backoff"
        );
        assert_eq!(failed(&book), before + 1);
    }

    #[test]
    fn a_quarantined_peer_is_not_due_until_the_quarantine_expires() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![a()]), t0);
        book.quarantine(peer, t0);

        let before = t0 + FOREIGN_PEER_QUARANTINE - JUST;
        let released = book.expire(before);
        assert!(released.quarantine_ended.is_empty() && released.ban_ended.is_empty());
        assert!(dialed(&mut book, before).is_empty());

        let after = t0 + FOREIGN_PEER_QUARANTINE;
        let released = book.expire(after);
        assert_eq!(released.quarantine_ended, vec![peer]);
        assert!(released.ban_ended.is_empty());
        assert_eq!(dialed(&mut book, after), vec![peer]);
    }

    #[test]
    fn a_banned_peer_is_not_due_until_the_ban_expires() {
        let t0 = Instant::now();
        let t0_ms = 1_000_000;
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![a()]), t0);
        book.ban(peer, "served corrupt data".to_string(), t0, t0_ms);

        let banned = book.banned_peers();
        assert_eq!(banned.len(), 1);
        assert_eq!(banned[0].peer_id, peer.to_string());
        assert_eq!(banned[0].reason, "served corrupt data");
        assert_eq!(banned[0].since_ms, t0_ms);
        assert_eq!(banned[0].until_ms, t0_ms + 3_600_000);

        let before = t0 + BAN_DURATION - JUST;
        assert!(book.expire(before).ban_ended.is_empty());
        assert!(dialed(&mut book, before).is_empty());

        let after = t0 + BAN_DURATION;
        let released = book.expire(after);
        assert_eq!(released.ban_ended, vec![peer]);
        assert!(released.quarantine_ended.is_empty());
        assert!(book.banned_peers().is_empty());
        assert_eq!(dialed(&mut book, after), vec![peer]);
    }

    #[test]
    fn a_ban_outlives_a_quarantine_and_a_quarantine_a_ban() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![a()]), t0);
        book.quarantine(peer, t0);
        book.ban(peer, "bad".to_string(), t0, 0);

        // The quarantine ends, the ban holds: nothing to unblock, nothing to dial.
        let quarantine_over = t0 + FOREIGN_PEER_QUARANTINE;
        let released = book.expire(quarantine_over);
        assert!(released.quarantine_ended.is_empty() && released.ban_ended.is_empty());
        assert!(dialed(&mut book, quarantine_over).is_empty());

        let ban_over = t0 + BAN_DURATION;
        assert_eq!(book.expire(ban_over).ban_ended, vec![peer]);
        assert_eq!(dialed(&mut book, ban_over), vec![peer]);

        // A ban that ends while a quarantine holds releases nothing either.
        let t1 = ban_over + Duration::from_secs(1);
        book.ban(peer, "bad again".to_string(), t1, 0);
        book.quarantine(peer, t1 + BAN_DURATION - Duration::from_secs(60));
        let released = book.expire(t1 + BAN_DURATION);
        assert!(released.quarantine_ended.is_empty() && released.ban_ended.is_empty());
        assert!(dialed(&mut book, t1 + BAN_DURATION + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn both_ending_at_once_releases_the_peer_once() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.ban(peer, "bad".to_string(), t0, 0);
        book.quarantine(peer, t0 + BAN_DURATION - FOREIGN_PEER_QUARANTINE);
        let released = book.expire(t0 + BAN_DURATION);
        assert!(released.quarantine_ended.is_empty());
        assert_eq!(released.ban_ended, vec![peer]);
    }

    #[test]
    fn addresses_from_several_sources_are_merged_without_duplicates() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![a(), b()]), t0);
        book.replace_source(DiscoverySource::Dns, listed(peer, vec![b(), c()]), t0);
        book.add_address(peer, DiscoverySource::Dht, a(), t0);
        book.add_address(peer, DiscoverySource::Dht, a(), t0);

        assert_eq!(
            book.take_due_dials(t0).dial,
            vec![(peer, vec![a(), b(), c()])]
        );
        let discovered = book.discovered_peers(|_| false);
        assert_eq!(discovered.len(), 1);
        assert_eq!(
            discovered[0].addresses,
            vec![a().to_string(), b().to_string(), c().to_string()]
        );
        assert_eq!(
            discovered[0].sources,
            vec![
                DiscoverySource::Registry,
                DiscoverySource::Dht,
                DiscoverySource::Dns
            ]
        );
        assert_eq!(book.source_count(DiscoverySource::Dht), 1);
        assert_eq!(book.source_count(DiscoverySource::Mdns), 0);
    }

    #[test]
    fn an_expired_mdns_address_drops_the_source_once_its_last_address_goes() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.add_address(peer, DiscoverySource::Mdns, a(), t0);
        book.add_address(peer, DiscoverySource::Mdns, b(), t0);
        book.remove_address(peer, DiscoverySource::Mdns, &a());
        assert_eq!(book.source_count(DiscoverySource::Mdns), 1);
        book.remove_address(peer, DiscoverySource::Mdns, &b());
        assert_eq!(book.source_count(DiscoverySource::Mdns), 0);
    }

    #[test]
    fn a_peer_the_source_no_longer_lists_is_forgotten_unless_connected() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let gone = PeerId::random();
        let connected = PeerId::random();
        let mut both = listed(gone, vec![a()]);
        both.insert(connected, vec![b()]);
        book.replace_source(DiscoverySource::Registry, both, t0);
        book.on_connected(connected);

        book.replace_source(DiscoverySource::Registry, HashMap::new(), t0);
        assert_eq!(book.source_count(DiscoverySource::Registry), 0);
        // The connected one is kept (for its backoff); the other one is gone.
        book.on_disconnected(connected, t0);
        book.on_disconnected(gone, t0);
        let later = t0 + Duration::from_secs(60);
        assert!(dialed(&mut book, later).is_empty(), "no addresses left");
        book.add_address(connected, DiscoverySource::Dht, c(), later);
        book.add_address(gone, DiscoverySource::Dht, c(), later);
        assert_eq!(
            book.discovered_peers(|_| false)
                .iter()
                .map(|peer| peer.failed_dials)
                .sum::<u32>(),
            1,
            "the kept peer remembers its backoff, the forgotten one starts afresh"
        );
    }

    #[test]
    fn a_peer_listed_again_on_new_addresses_is_dialed_at_once() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let peer = PeerId::random();
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![a()]), t0);
        assert_eq!(dialed(&mut book, t0), vec![peer]);
        // The same list again changes nothing; a new address skips the backoff.
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![a()]), t0);
        assert!(dialed(&mut book, t0).is_empty());
        book.replace_source(DiscoverySource::Registry, listed(peer, vec![b()]), t0);
        assert_eq!(book.take_due_dials(t0).dial, vec![(peer, vec![b()])]);
    }

    #[test]
    fn an_unlisted_peer_is_forgotten_after_ten_failed_dials_and_a_listed_one_kept() {
        let t0 = Instant::now();
        let mut book = PeerBook::default();
        let from_dht = PeerId::random();
        let from_registry = PeerId::random();
        book.add_address(from_dht, DiscoverySource::Dht, a(), t0);
        book.replace_source(
            DiscoverySource::Registry,
            listed(from_registry, vec![b()]),
            t0,
        );

        // Each step is past the 30 s cap, so both are due every time.
        let at = |step: u64| t0 + Duration::from_secs(60 * step);
        for step in 0..MAX_FAILED_DIALS_WITHOUT_LISTING as u64 {
            let due = book.take_due_dials(at(step));
            assert_eq!(due.dial.len(), 2, "step {step}");
            assert!(due.forgotten.is_empty());
        }
        let due = book.take_due_dials(at(10));
        assert_eq!(due.forgotten, vec![from_dht]);
        assert_eq!(due.dial.len(), 1);
        assert_eq!(due.dial[0].0, from_registry);
        assert_eq!(book.source_count(DiscoverySource::Dht), 0);
        assert_eq!(book.source_count(DiscoverySource::Registry), 1);
    }
}
