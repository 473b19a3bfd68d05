//! How many peers the node keeps and which: a target number of connections (`--target-peers`),
//! filled half at random and half by lowest round-trip time, trimmed when it grows well past the
//! target, and rotated one peer at a time so the overlay keeps mixing. Announcements spread
//! through the gossip mesh, so a connected overlay of a few dozen links per node is enough; no
//! node needs a connection to every other. Sans-IO: the event loop passes in what it sees and the
//! time, and carries out the dials and disconnections the plan asks for. See
//! docs/DESIGN.md §4 ("Peer set").

use std::time::{Duration, Instant};

use libp2p::PeerId;
use rand::{Rng, rngs::StdRng, seq::SliceRandom};

/// How often one connection we dialed is swapped for a new peer (before jitter).
pub(super) const ROTATION_INTERVAL: Duration = Duration::from_secs(300);
/// A connection younger than this is never closed by the policy and not counted when deciding
/// whether to: the peer (or our own sync) may have opened streams on it at once, a download or
/// an inventory exchange, and closing it would break them. It also stops a dial-then-close
/// flapping when peers dialing us come and go, and lets a DHT query's connections age before they
/// are weighed against the target.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(20);

/// A connected peer as the policy sees it.
#[derive(Clone, Debug)]
pub(super) struct ConnectedView {
    pub peer: PeerId,
    /// We opened the connection ourselves and no operator asked for it: the policy may close it.
    /// Peers that dialed us are never closed here; `--max-connections` bounds them.
    pub closable: bool,
    /// The last ping round trip, if one has been measured.
    pub rtt: Option<Duration>,
    /// When its first open connection was established.
    pub since: Instant,
}

/// A known peer that is not connected and may be dialed now (not in backoff, quarantine or ban).
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    pub peer: PeerId,
    /// Measured while it was connected before, if ever.
    pub rtt: Option<Duration>,
}

/// What the node looks like at one tick.
pub(super) struct PeerSetView<'a> {
    pub connected: &'a [ConnectedView],
    /// Dials the policy started that have neither connected nor failed yet.
    pub dialing: usize,
    pub candidates: &'a [Candidate],
}

/// What the policy asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct PeerSetPlan {
    pub dial: Vec<PeerId>,
    pub close: Vec<PeerId>,
}

pub(super) struct PeerSet {
    target: usize,
    rotation_interval: Duration,
    grace: Duration,
    next_rotation: Instant,
    rng: StdRng,
}

impl PeerSet {
    /// `rng` is injected so tests can seed it; the node seeds it from the OS.
    pub(super) fn new(
        target: usize,
        rotation_interval: Duration,
        grace: Duration,
        now: Instant,
        mut rng: StdRng,
    ) -> Self {
        let next_rotation = now + jittered(rotation_interval, &mut rng);
        Self {
            target: target.max(1),
            rotation_interval,
            grace,
            next_rotation,
            rng,
        }
    }

    pub(super) fn target(&self) -> usize {
        self.target
    }

    /// How far past the target the count may drift (peers dialing us, dials racing) before
    /// connections are closed: a quarter of the target, at least 2, so one extra peer does not
    /// cause a disconnection every tick.
    pub(super) fn slack(&self) -> usize {
        (self.target / 4).max(2)
    }

    /// Decides which peers to dial and which connections to close now. Every connection counts
    /// towards the target when dialing; only those past the grace period are weighed and closed.
    pub(super) fn plan(&mut self, view: &PeerSetView<'_>, now: Instant) -> PeerSetPlan {
        let connected = view.connected.len();
        let settled: Vec<&ConnectedView> = view
            .connected
            .iter()
            .filter(|c| now.saturating_duration_since(c.since) >= self.grace)
            .collect();
        let mut plan = PeerSetPlan::default();
        let counted = connected + view.dialing;
        if counted < self.target {
            plan.dial = self.choose_dials(view.candidates, self.target - counted);
        } else if settled.len() > self.target + self.slack() {
            plan.close = trim(&settled, settled.len() - self.target);
        }
        if now >= self.next_rotation {
            self.next_rotation = now + jittered(self.rotation_interval, &mut self.rng);
            let steady = plan.dial.is_empty() && plan.close.is_empty() && view.dialing == 0;
            if steady && connected >= self.target {
                plan = self.rotate(&settled, view.candidates);
            }
        }
        plan
    }

    /// Half of the `wanted` peers (an odd one by a coin toss) are the lowest-RTT candidates
    /// whose RTT is known, the rest are picked at random: latency keeps paths short, randomness
    /// keeps the overlay from splitting into clusters of nearby nodes.
    fn choose_dials(&mut self, candidates: &[Candidate], wanted: usize) -> Vec<PeerId> {
        if candidates.len() <= wanted {
            return candidates.iter().map(|c| c.peer).collect();
        }
        let by_latency = wanted / 2 + usize::from(wanted % 2 == 1 && self.rng.gen_bool(0.5));
        let mut measured: Vec<&Candidate> = candidates.iter().filter(|c| c.rtt.is_some()).collect();
        measured.sort_by_key(|c| (c.rtt, c.peer));
        let mut chosen: Vec<PeerId> = measured.iter().take(by_latency).map(|c| c.peer).collect();
        let rest: Vec<PeerId> = candidates
            .iter()
            .map(|c| c.peer)
            .filter(|peer| !chosen.contains(peer))
            .collect();
        let random = wanted - chosen.len();
        chosen.extend(rest.choose_multiple(&mut self.rng, random).copied());
        chosen
    }

    /// Swaps one random settled connection we dialed for one random candidate; the count stays
    /// the same.
    fn rotate(&mut self, settled: &[&ConnectedView], candidates: &[Candidate]) -> PeerSetPlan {
        let closable: Vec<PeerId> = settled
            .iter()
            .filter(|c| c.closable)
            .map(|c| c.peer)
            .collect();
        match (
            closable.choose(&mut self.rng),
            candidates.choose(&mut self.rng),
        ) {
            (Some(old), Some(new)) => PeerSetPlan {
                dial: vec![new.peer],
                close: vec![*old],
            },
            _ => PeerSetPlan::default(),
        }
    }
}

/// Up to `excess` closable peers, the slowest first. A peer whose RTT was never measured goes
/// last: nothing is known against it.
fn trim(settled: &[&ConnectedView], excess: usize) -> Vec<PeerId> {
    let mut closable: Vec<&ConnectedView> =
        settled.iter().copied().filter(|c| c.closable).collect();
    closable.sort_by_key(|c| (c.rtt.is_none(), std::cmp::Reverse(c.rtt), c.peer));
    closable.into_iter().take(excess).map(|c| c.peer).collect()
}

/// `interval` ± a quarter, so nodes started together do not rotate in step.
fn jittered(interval: Duration, rng: &mut StdRng) -> Duration {
    interval.mul_f64(rng.gen_range(0.75..1.25))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::SeedableRng;

    use super::*;

    const TARGET: usize = 4;

    fn peer_set(now: Instant, seed: u64) -> PeerSet {
        PeerSet::new(
            TARGET,
            ROTATION_INTERVAL,
            CLOSE_GRACE,
            now,
            StdRng::seed_from_u64(seed),
        )
    }

    fn ms(millis: u64) -> Option<Duration> {
        Some(Duration::from_millis(millis))
    }

    fn connected(count: usize, closable: bool) -> Vec<ConnectedView> {
        (0..count)
            .map(|i| ConnectedView {
                peer: PeerId::random(),
                closable,
                rtt: ms(10 + i as u64),
                since: Instant::now(),
            })
            .collect()
    }

    fn candidates(count: usize) -> Vec<Candidate> {
        (0..count)
            .map(|_| Candidate {
                peer: PeerId::random(),
                rtt: None,
            })
            .collect()
    }

    fn plan(
        set: &mut PeerSet,
        connected: &[ConnectedView],
        dialing: usize,
        candidates: &[Candidate],
        now: Instant,
    ) -> PeerSetPlan {
        let view = PeerSetView {
            connected,
            dialing,
            candidates,
        };
        set.plan(&view, now)
    }

    #[test]
    fn dials_fill_up_to_the_target_and_stop_there() {
        let now = Instant::now();
        let mut set = peer_set(now, 1);
        let known = candidates(20);

        let first = plan(&mut set, &[], 0, &known, now);
        assert_eq!(first.dial.len(), TARGET);
        assert!(first.close.is_empty());
        let distinct: HashSet<_> = first.dial.iter().collect();
        assert_eq!(distinct.len(), TARGET);

        // Dials under way count: nothing more until they connect or fail.
        assert!(plan(&mut set, &[], TARGET, &known, now).dial.is_empty());
        assert_eq!(
            plan(&mut set, &connected(1, true), 1, &known, now)
                .dial
                .len(),
            2
        );
        assert_eq!(
            plan(&mut set, &connected(TARGET, true), 0, &known, now),
            PeerSetPlan::default()
        );
    }

    #[test]
    fn a_target_above_the_known_peers_dials_all_of_them() {
        let now = Instant::now();
        let mut set = peer_set(now, 2);
        let known = candidates(3);
        let mut dialed = plan(&mut set, &[], 0, &known, now).dial;
        dialed.sort();
        let mut all: Vec<PeerId> = known.iter().map(|c| c.peer).collect();
        all.sort();
        assert_eq!(dialed, all);
    }

    #[test]
    fn half_the_dials_go_to_the_lowest_rtt_and_half_at_random() {
        let now = Instant::now();
        let mut set = PeerSet::new(
            8,
            ROTATION_INTERVAL,
            CLOSE_GRACE,
            now,
            StdRng::seed_from_u64(3),
        );
        let mut known = candidates(40);
        // Ten measured candidates, 10 ms .. 100 ms; the rest never measured.
        for (i, candidate) in known.iter_mut().take(10).enumerate() {
            candidate.rtt = ms(100 - 10 * i as u64);
        }
        let fastest: HashSet<PeerId> = known[6..10].iter().map(|c| c.peer).collect();

        let dialed = plan(&mut set, &[], 0, &known, now).dial;
        assert_eq!(dialed.len(), 8);
        let chosen: HashSet<PeerId> = dialed.iter().copied().collect();
        assert!(
            fastest.is_subset(&chosen),
            "the four lowest-RTT candidates are dialed"
        );

        // The random half differs between seeds; the latency half does not.
        let mut other = PeerSet::new(
            8,
            ROTATION_INTERVAL,
            CLOSE_GRACE,
            now,
            StdRng::seed_from_u64(4),
        );
        let other_dialed: HashSet<PeerId> = plan(&mut other, &[], 0, &known, now)
            .dial
            .into_iter()
            .collect();
        assert!(fastest.is_subset(&other_dialed));
        assert_ne!(chosen, other_dialed);
    }

    #[test]
    fn without_measured_rtt_every_dial_is_random() {
        let now = Instant::now();
        let known = candidates(40);
        let picks: HashSet<Vec<PeerId>> = (0..5)
            .map(|seed| plan(&mut peer_set(now, seed), &[], 0, &known, now).dial)
            .collect();
        assert!(picks.iter().all(|dial| dial.len() == TARGET));
        assert!(picks.len() > 1, "different seeds pick different peers");
    }

    #[test]
    fn excess_is_trimmed_to_the_target_from_the_slowest_we_dialed() {
        // Well past the grace period of every connection the test makes from here on.
        let now = Instant::now() + CLOSE_GRACE * 2;
        let mut set = peer_set(now, 5);
        assert_eq!(set.slack(), 2);
        // Within target + slack nothing is closed.
        let mut peers = connected(TARGET + 2, true);
        assert_eq!(
            plan(&mut set, &peers, 0, &candidates(3), now),
            PeerSetPlan::default()
        );

        // Three incoming (not closable), five we dialed (RTT 10..50 ms), one just connected:
        // nine, five over the target.
        peers = connected(3, false);
        peers.extend((0..5).map(|i| ConnectedView {
            peer: PeerId::random(),
            closable: true,
            rtt: ms(10 * (i + 1)),
            since: Instant::now(),
        }));
        let fresh = ConnectedView {
            peer: PeerId::random(),
            closable: true,
            rtt: None,
            since: Instant::now(),
        };
        peers.push(fresh.clone());
        let result = plan(&mut set, &peers, 0, &candidates(3), now);
        assert!(result.dial.is_empty());
        let slowest_first: Vec<PeerId> = peers[3..8].iter().rev().map(|c| c.peer).collect();
        assert_eq!(result.close, slowest_first, "the unmeasured one is kept");
        assert_eq!(peers.len() - result.close.len(), TARGET);
    }

    #[test]
    fn only_peers_we_dialed_are_trimmed() {
        // Well past the grace period of every connection the test makes from here on.
        let now = Instant::now() + CLOSE_GRACE * 2;
        let mut set = peer_set(now, 6);
        let mut peers = connected(9, false);
        let ours = connected(2, true);
        peers.extend(ours.iter().cloned());
        let mut closed = plan(&mut set, &peers, 0, &[], now).close;
        closed.sort();
        let mut expected: Vec<PeerId> = ours.iter().map(|c| c.peer).collect();
        expected.sort();
        assert_eq!(closed, expected, "incoming and operator peers stay");
    }

    #[test]
    fn rotation_waits_for_its_interval_and_keeps_the_count() {
        let start = Instant::now();
        let mut set = peer_set(start, 7);
        let peers = connected(TARGET, true);
        let known = candidates(5);

        let early = start + ROTATION_INTERVAL.mul_f64(0.75) - Duration::from_millis(1);
        assert_eq!(
            plan(&mut set, &peers, 0, &known, early),
            PeerSetPlan::default()
        );

        let due = start + ROTATION_INTERVAL.mul_f64(1.25);
        let rotated = plan(&mut set, &peers, 0, &known, due);
        assert_eq!(rotated.dial.len(), 1);
        assert_eq!(rotated.close.len(), 1);
        assert!(known.iter().any(|c| c.peer == rotated.dial[0]));
        assert!(peers.iter().any(|c| c.peer == rotated.close[0]));

        // The next rotation is a whole (jittered) interval later.
        let soon = due + ROTATION_INTERVAL.mul_f64(0.75) - Duration::from_millis(1);
        assert_eq!(
            plan(&mut set, &peers, 0, &known, soon),
            PeerSetPlan::default()
        );
        let later = due + ROTATION_INTERVAL.mul_f64(1.25);
        assert_eq!(plan(&mut set, &peers, 0, &known, later).close.len(), 1);
    }

    #[test]
    fn rotation_skips_below_target_and_never_closes_a_peer_we_did_not_dial() {
        let start = Instant::now();
        let due = start + ROTATION_INTERVAL * 2;
        let known = candidates(5);

        let mut below = peer_set(start, 8);
        let result = plan(&mut below, &connected(TARGET - 1, true), 0, &known, due);
        assert!(result.close.is_empty(), "below target it only fills");
        assert_eq!(result.dial.len(), 1);

        let mut incoming_only = peer_set(start, 9);
        let result = plan(
            &mut incoming_only,
            &connected(TARGET, false),
            0,
            &known,
            due,
        );
        assert_eq!(result, PeerSetPlan::default());
    }

    #[test]
    fn young_connections_are_neither_closed_nor_weighed() {
        let t0 = Instant::now();
        let mut set = peer_set(t0, 10);
        // Four settled connections we dialed and five that a DHT query just opened.
        let mut peers = connected(TARGET, true);
        let young_since = t0 + Duration::from_secs(60);
        peers.extend(connected(5, true).into_iter().map(|mut c| {
            c.since = young_since;
            c
        }));
        let within_grace = young_since + CLOSE_GRACE - Duration::from_millis(1);
        assert_eq!(
            plan(&mut set, &peers, 0, &candidates(3), within_grace),
            PeerSetPlan::default(),
            "the settled ones are at the target; the young ones are not weighed yet"
        );

        // Once they are past the grace period the excess goes, slowest first.
        let settled = young_since + CLOSE_GRACE;
        assert_eq!(
            plan(&mut set, &peers, 0, &candidates(3), settled)
                .close
                .len(),
            5
        );
    }

    #[test]
    fn rotation_leaves_young_connections_alone() {
        let start = Instant::now();
        let mut set = peer_set(start, 11);
        let due = start + ROTATION_INTERVAL * 2;
        let young: Vec<ConnectedView> = connected(TARGET, true)
            .into_iter()
            .map(|mut c| {
                c.since = due;
                c
            })
            .collect();
        assert_eq!(
            plan(&mut set, &young, 0, &candidates(5), due),
            PeerSetPlan::default()
        );
    }
}
