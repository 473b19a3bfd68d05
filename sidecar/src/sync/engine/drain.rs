//! Draining before a node leaves (a scale-down): no download starts, and every store this node
//! holds must be seen at an equal or newer version in the full inventory of a connected peer that
//! is not draining itself, fetched after the drain began. What peers hold is kept only while
//! draining, only for the stores this node holds, and for at most [`MAX_DRAIN_PEERS`] peers.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::PeerId;
use serde::Serialize;

use super::io::Millis;
use crate::store::{StoreIndex, Version};

/// Peers whose holdings are kept while draining (one full copy elsewhere is all a drain needs).
pub const MAX_DRAIN_PEERS: usize = 64;
/// Uncovered store names a report lists.
pub const MAX_UNCOVERED_LISTED: usize = 50;
/// How often every connected peer's full inventory is fetched while draining.
pub const DRAIN_CHECK_INTERVAL_MS: Millis = 3_000;

/// What a peer held at its last complete inventory since the drain began.
struct Holdings {
    draining: bool,
    held: BTreeMap<String, Version>,
}

#[derive(Default)]
pub struct Drain {
    since: Option<Millis>,
    /// Peers whose exchange began before the drain: what they send does not count.
    stale: BTreeSet<PeerId>,
    /// Records of exchanges in flight, moved to `holdings` when the inventory is complete.
    pending: BTreeMap<PeerId, BTreeMap<String, Version>>,
    holdings: BTreeMap<PeerId, Holdings>,
    checks: u64,
}

/// The answer of `GET /drain`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainReport {
    pub draining: bool,
    /// When the drain began (ms since the Unix epoch).
    pub since_ms: Option<Millis>,
    /// Stores this node holds.
    pub held: u64,
    /// Held stores a live, non-draining peer holds at the same or a newer version.
    pub covered: u64,
    /// The first [`MAX_UNCOVERED_LISTED`] held stores without such a copy, by name.
    pub uncovered: Vec<String>,
    pub uncovered_count: u64,
    /// Peers whose full inventory was read since the drain began (and still connected).
    pub peers_checked: u64,
    /// Draining, and every held store covered after at least one check since it began (or none
    /// held).
    pub drained: bool,
}

impl Drain {
    pub fn is_active(&self) -> bool {
        self.since.is_some()
    }

    /// Starts draining at `now`; exchanges in flight (`in_flight`) began before it and do not
    /// count. Returns false when already draining.
    pub fn start(&mut self, now: Millis, in_flight: impl IntoIterator<Item = PeerId>) -> bool {
        if self.since.is_some() {
            return false;
        }
        *self = Self {
            since: Some(now),
            stale: in_flight.into_iter().collect(),
            ..Self::default()
        };
        true
    }

    /// Stops draining and forgets every peer's holdings. Returns false when not draining.
    pub fn stop(&mut self) -> bool {
        let was = self.since.is_some();
        *self = Self::default();
        was
    }

    /// Records of `peer`'s inventory: the versions of stores this node holds are kept until the
    /// exchange completes.
    pub fn inventory_records<'a>(
        &mut self,
        peer: PeerId,
        records: impl Iterator<Item = (&'a str, &'a Version, bool)>,
        index: &StoreIndex,
    ) {
        if !self.is_active() || self.stale.contains(&peer) {
            return;
        }
        let known = self.pending.contains_key(&peer) || self.holdings.contains_key(&peer);
        if !known && self.pending.len() + self.holdings.len() >= MAX_DRAIN_PEERS {
            return;
        }
        let pending = self.pending.entry(peer).or_default();
        for (name, version, tombstone) in records {
            if !tombstone && index.get(name).is_some_and(|e| e.is_held()) {
                pending.insert(name.to_owned(), version.clone());
            }
        }
    }

    /// `peer`'s full inventory arrived (its records came before this): it is checked now.
    pub fn inventory_complete(&mut self, peer: PeerId, draining: bool) {
        if !self.is_active() || self.stale.contains(&peer) {
            return;
        }
        let known = self.pending.contains_key(&peer) || self.holdings.contains_key(&peer);
        if !known && self.holdings.len() >= MAX_DRAIN_PEERS {
            return;
        }
        let held = self.pending.remove(&peer).unwrap_or_default();
        self.holdings.insert(peer, Holdings { draining, held });
        self.checks += 1;
    }

    /// An exchange with `peer` ended, complete or not.
    pub fn exchange_done(&mut self, peer: &PeerId) {
        self.stale.remove(peer);
        self.pending.remove(peer);
    }

    /// A disconnected peer's copies no longer count.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.pending.remove(peer);
        self.holdings.remove(peer);
    }

    /// Coverage of the stores `index` holds by the peers checked (`connected` filters them).
    pub fn report(&self, index: &StoreIndex, connected: &BTreeSet<PeerId>) -> DrainReport {
        let Some(since) = self.since else {
            return DrainReport::default();
        };
        let holders: Vec<&Holdings> = self
            .holdings
            .iter()
            .filter(|(peer, _)| connected.contains(peer))
            .map(|(_, h)| h)
            .collect();
        let live: Vec<&Holdings> = holders.iter().copied().filter(|h| !h.draining).collect();
        let mut report = DrainReport {
            draining: true,
            since_ms: Some(since),
            peers_checked: holders.len() as u64,
            ..DrainReport::default()
        };
        for (name, entry) in index.iter().filter(|(_, e)| e.is_held()) {
            report.held += 1;
            let covered = live
                .iter()
                .any(|h| h.held.get(name).is_some_and(|v| *v >= entry.version));
            if covered {
                report.covered += 1;
            } else {
                report.uncovered_count += 1;
                if report.uncovered.len() < MAX_UNCOVERED_LISTED {
                    report.uncovered.push(name.clone());
                }
            }
        }
        // A node that holds nothing loses nothing by leaving, even with no peer to ask.
        report.drained = report.uncovered_count == 0 && (self.checks > 0 || report.held == 0);
        report
    }
}
