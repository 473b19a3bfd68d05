//! The simulation: nodes, the network between them, and a queue of timed events. Each node's
//! engine gets the events its driver would give it, and its actions are carried out the way the
//! driver does, with the network's delays and costs:
//! - gossip goes as gossipsub sends it: its publisher floods it to every connected peer, other
//!   nodes forward it once to their mesh of [`MESH_N`] peers and drop it when seen again;
//! - a holder notice goes to the one direct peer it names;
//! - an inventory exchange sends the digest and, when the digests differ, runs the sidecar's
//!   range-based reconciliation between the two indexes ([`crate::reconcile`]);
//! - a download moves the store's bytes on the source's uplink;
//! - hashing, installs and index saves take a millisecond.
//!
//! Everything runs in one thread in time order, so a seed gives the same run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use dig_sidecar::store::hash::{ContentDigest, Hash32, digest_reader};
use dig_sidecar::store::record::SignedVersion;
use dig_sidecar::sync::engine::{
    Action, Applied, DownloadFailure, Event, Fetched, HashOutcome, Millis, VerifiedVersion, Via,
};
use libp2p_identity::PeerId;

use crate::net::{Kind, NetConfig, Network};
use crate::node::{File, SimNode};
use crate::reconcile::reconcile;

/// Bytes of one signed version on the wire (name, lamport, origin, owner, size, hash, replaces,
/// signature, framing), as measured from the sidecar's announcement encoding.
pub const RECORD_BYTES: u64 = 330;
/// Bytes of a digest request or response, or a download request.
pub const SMALL_MESSAGE_BYTES: u64 = 80;
/// A download whose source does not answer fails after this.
pub const DOWNLOAD_TIMEOUT_MS: Millis = 10_000;
/// Gossipsub's mesh degree (its default `mesh_n`, which dig-sidecar keeps).
pub const MESH_N: usize = 6;
/// The driver ticks its engine every 50 ms.
pub const TICK_MS: Millis = 50;

enum SimEvent {
    /// An event for a node's engine.
    Engine {
        node: usize,
        event: Event,
    },
    Tick {
        node: usize,
    },
    Gossip {
        to: usize,
        publisher: usize,
        id: u64,
        records: Arc<Vec<SignedVersion>>,
    },
    /// A holder notice from a direct peer reached `to`.
    Notice {
        from: usize,
        to: usize,
        records: Vec<SignedVersion>,
    },
    /// A digest request reached `to`; it answers `from`.
    InventoryRequest {
        from: usize,
        to: usize,
    },
    /// `from`'s inventory (or only its digest, when equal) reached `to`.
    InventoryResponse {
        from: usize,
        to: usize,
        records: Option<Arc<Vec<SignedVersion>>>,
    },
    /// A download ended (unless it was cancelled meanwhile).
    DownloadEnded {
        node: usize,
        name: String,
        hash: Hash32,
        outcome: Result<Fetched, DownloadFailure>,
    },
    /// A download request reached the source.
    DownloadRequest {
        from: usize,
        source: usize,
        name: String,
        hash: Hash32,
    },
}

pub struct World {
    pub nodes: Vec<SimNode>,
    pub net: Network,
    pub now: Millis,
    queue: BTreeMap<(Millis, u64), SimEvent>,
    seq: u64,
    by_peer: HashMap<PeerId, usize>,
    /// Content of every store version written: digest by hash.
    contents: HashMap<Hash32, Arc<ContentDigest>>,
    next_gossip_id: u64,
    seed: u64,
    /// When each node first held each store version (name, hash) -> node -> time.
    pub arrivals: HashMap<(String, Hash32), Vec<Option<Millis>>>,
    pub events_handled: u64,
}

impl World {
    pub fn new(nodes: usize, net: NetConfig, seed: u64) -> Self {
        let mut world = Self {
            nodes: Vec::new(),
            net: Network::new(net, 0, seed),
            now: 0,
            queue: BTreeMap::new(),
            seq: 0,
            by_peer: HashMap::new(),
            contents: HashMap::new(),
            next_gossip_id: 0,
            seed,
            arrivals: HashMap::new(),
            events_handled: 0,
        };
        for _ in 0..nodes {
            world.add_node();
        }
        world
    }

    /// A new node with an empty folder; returns its index.
    pub fn add_node(&mut self) -> usize {
        let index = self.net.add_node();
        let node = SimNode::new(self.seed.wrapping_mul(1_000_003) + index as u64, self.now);
        self.by_peer.insert(node.peer, index);
        self.nodes.push(node);
        for arrivals in self.arrivals.values_mut() {
            arrivals.push(None);
        }
        self.push(
            self.now,
            SimEvent::Engine {
                node: index,
                event: Event::DiskSpace(u64::MAX / 4),
            },
        );
        self.push(
            self.now,
            SimEvent::Engine {
                node: index,
                event: Event::Scanned(Vec::new()),
            },
        );
        index
    }

    /// Connects two nodes (both engines see the peer connect).
    pub fn connect(&mut self, a: usize, b: usize) {
        if a != b && self.nodes[a].neighbors.insert(b) {
            self.nodes[b].neighbors.insert(a);
            self.linked(a, b, true);
        }
    }

    pub fn disconnect(&mut self, a: usize, b: usize) {
        if self.nodes[a].neighbors.remove(&b) {
            self.nodes[b].neighbors.remove(&a);
            self.linked(a, b, false);
        }
    }

    /// Tells both engines that the connection between `a` and `b` came up (or went down).
    fn linked(&mut self, a: usize, b: usize, up: bool) {
        for (node, other) in [(a, b), (b, a)] {
            self.nodes[node].mesh_cache = None;
            let peer = self.nodes[other].peer;
            let event = if up {
                Event::PeerConnected(peer)
            } else {
                Event::PeerDisconnected(peer)
            };
            self.push(self.now, SimEvent::Engine { node, event });
        }
    }

    /// Stops `node`: its connections drop, and it handles nothing until [`World::restart`].
    pub fn stop(&mut self, node: usize) {
        let neighbors: Vec<usize> = self.nodes[node].neighbors.iter().copied().collect();
        for other in neighbors {
            self.disconnect(node, other);
        }
        self.nodes[node].online = false;
    }

    /// Starts a stopped node again from its index and folder (connect it again afterwards).
    pub fn restart(&mut self, node: usize) {
        self.nodes[node].restart(self.now);
        let folder = self.nodes[node].listing();
        self.push(
            self.now,
            SimEvent::Engine {
                node,
                event: Event::DiskSpace(u64::MAX / 4),
            },
        );
        self.push(
            self.now,
            SimEvent::Engine {
                node,
                event: Event::Scanned(folder),
            },
        );
    }

    /// Writes a new store version of `size` bytes into `node`'s folder (the watcher sees it).
    /// Returns the content hash.
    pub fn write(&mut self, node: usize, name: &str, size: u64, salt: u64) -> Hash32 {
        let digest = content_of(name, size, salt);
        let hash = digest.hash;
        self.contents.insert(hash, Arc::new(digest));
        let meta = self.nodes[node].new_meta(size, self.now);
        self.nodes[node]
            .folder
            .insert(name.to_owned(), File { hash, meta });
        let mut arrivals = vec![None; self.nodes.len()];
        arrivals[node] = Some(self.now);
        self.arrivals.insert((name.to_owned(), hash), arrivals);
        self.push(
            self.now,
            SimEvent::Engine {
                node,
                event: Event::FileChanged {
                    name: name.to_owned(),
                    meta: Some(meta),
                },
            },
        );
        hash
    }

    /// How many nodes hold the version, and when the last of them got it.
    pub fn holders(&self, name: &str, hash: &Hash32) -> usize {
        self.nodes.iter().filter(|n| n.holds(name, hash)).count()
    }

    /// Runs every event up to `until` (the clock ends there).
    pub fn run_until(&mut self, until: Millis) {
        while let Some(entry) = self.queue.first_entry() {
            let (at, _) = *entry.key();
            if at > until {
                break;
            }
            let event = entry.remove();
            self.now = at;
            self.events_handled += 1;
            self.dispatch(event);
        }
        self.now = until;
    }

    /// Runs until `done` holds (checked every `step` ms) or `limit` passes; returns the time.
    pub fn run_while(
        &mut self,
        limit: Millis,
        step: Millis,
        mut done: impl FnMut(&World) -> bool,
    ) -> Option<Millis> {
        while self.now < limit {
            if done(self) {
                return Some(self.now);
            }
            let next = (self.now + step).min(limit);
            self.run_until(next);
        }
        done(self).then_some(self.now)
    }

    fn push(&mut self, at: Millis, event: SimEvent) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    fn dispatch(&mut self, event: SimEvent) {
        match event {
            SimEvent::Engine { node, event } => self.handle(node, event),
            SimEvent::Tick { node } => {
                if self.nodes[node].tick_at == Some(self.now) {
                    self.nodes[node].tick_at = None;
                    self.handle(node, Event::Tick);
                }
            }
            SimEvent::Gossip {
                to,
                publisher,
                id,
                records,
            } => self.on_gossip(to, publisher, id, records),
            SimEvent::Notice { from, to, records } => {
                if self.nodes[to].online {
                    let from = self.nodes[from].peer;
                    self.deliver(to, from, Via::Notice, &records);
                }
            }
            SimEvent::InventoryRequest { from, to } => self.on_inventory_request(from, to),
            SimEvent::InventoryResponse { from, to, records } => {
                self.on_inventory_response(from, to, records)
            }
            SimEvent::DownloadRequest {
                from,
                source,
                name,
                hash,
            } => self.on_download_request(from, source, name, hash),
            SimEvent::DownloadEnded {
                node,
                name,
                hash,
                outcome,
            } => {
                // A cancelled download reports nothing.
                if self.nodes[node].downloads.get(&name) == Some(&hash) {
                    self.nodes[node].downloads.remove(&name);
                    self.handle(
                        node,
                        Event::DownloadDone {
                            name,
                            hash,
                            outcome,
                        },
                    );
                }
            }
        }
    }

    /// Feeds `event` to `node`'s engine and carries out its actions.
    fn handle(&mut self, node: usize, event: Event) {
        if !self.nodes[node].online {
            return;
        }
        let actions = self.nodes[node].engine.handle(event, self.now);
        for action in actions {
            self.act(node, action);
        }
        // The driver ticks the engine every 50 ms (each node from its own start): what is due
        // (announcements, retries, saves) waits for the first tick at or after its deadline.
        let due = self.nodes[node]
            .engine
            .next_deadline()
            .max(self.now + 1)
            .min(self.now + TICK_MS * 20);
        let phase = node as Millis % TICK_MS;
        let deadline = (due.saturating_sub(phase)).div_ceil(TICK_MS) * TICK_MS + phase;
        if self.nodes[node].tick_at.is_none_or(|at| deadline < at) {
            self.nodes[node].tick_at = Some(deadline);
            self.push(deadline, SimEvent::Tick { node });
        }
    }

    fn act(&mut self, node: usize, action: Action) {
        let now = self.now;
        match action {
            Action::Hash(requests) => {
                let results = requests
                    .into_iter()
                    .map(|request| {
                        let outcome = match self.nodes[node].folder.get(&request.name) {
                            None => HashOutcome::Missing,
                            Some(file) => {
                                let digest = (*self.contents[&file.hash]).clone();
                                let signed = request.draft.as_ref().and_then(|draft| {
                                    draft
                                        .record(&request.name, &digest)
                                        .sign(&self.nodes[node].key)
                                        .ok()
                                        .map(Box::new)
                                });
                                HashOutcome::Hashed {
                                    meta: file.meta,
                                    digest,
                                    signed,
                                }
                            }
                        };
                        (request.name, outcome)
                    })
                    .collect();
                self.push(
                    now + 1,
                    SimEvent::Engine {
                        node,
                        event: Event::Hashed(results),
                    },
                );
            }
            Action::Rescan => {
                let stores = self.nodes[node].listing();
                self.push(
                    now + 1,
                    SimEvent::Engine {
                        node,
                        event: Event::Scanned(stores),
                    },
                );
            }
            Action::Announce(records) => {
                let id = self.next_gossip_id;
                self.next_gossip_id += 1;
                self.nodes[node].seen.insert(id);
                let records = Arc::new(records);
                let everyone: Vec<usize> = self.nodes[node].neighbors.iter().copied().collect();
                self.forward(node, &everyone, node, id, &records);
            }
            Action::NotifyHolding { peer, records } => {
                let Some(&to) = self.by_peer.get(&peer) else {
                    return;
                };
                let bytes = SMALL_MESSAGE_BYTES + RECORD_BYTES * records.len() as u64;
                if let Some(at) = self.net.send(node, to, bytes, Kind::Notice, now) {
                    self.push(
                        at,
                        SimEvent::Notice {
                            from: node,
                            to,
                            records,
                        },
                    );
                }
            }
            Action::ExchangeInventory(peer) => {
                let Some(&to) = self.by_peer.get(&peer) else {
                    return;
                };
                match self
                    .net
                    .send(node, to, SMALL_MESSAGE_BYTES, Kind::Inventory, now)
                {
                    Some(at) => self.push(at, SimEvent::InventoryRequest { from: node, to }),
                    // The request times out: the exchange ends with nothing learnt.
                    None => self.inventory_timed_out(node, to),
                }
            }
            // The simulated stores are never updated, so there is no older file to reuse.
            Action::StartDownload {
                name,
                content,
                peers,
                reuse: _,
            } => {
                self.nodes[node]
                    .downloads
                    .insert(name.clone(), content.hash);
                let source = peers.iter().find_map(|p| self.by_peer.get(p).copied());
                let sent = source.and_then(|source| {
                    self.net
                        .send(node, source, SMALL_MESSAGE_BYTES, Kind::Inventory, now)
                        .map(|at| (source, at))
                });
                match sent {
                    Some((source, at)) => self.push(
                        at,
                        SimEvent::DownloadRequest {
                            from: node,
                            source,
                            name,
                            hash: content.hash,
                        },
                    ),
                    None => self.fail_download(node, name, content.hash, now + DOWNLOAD_TIMEOUT_MS),
                }
            }
            Action::CancelDownload { name, hash } => {
                if self.nodes[node].downloads.get(&name) == Some(&hash) {
                    self.nodes[node].downloads.remove(&name);
                }
            }
            Action::Install { name, content, .. } => {
                let meta = self.nodes[node].new_meta(content.size, now);
                self.nodes[node].folder.insert(
                    name.clone(),
                    File {
                        hash: content.hash,
                        meta,
                    },
                );
                if let Some(arrivals) = self.arrivals.get_mut(&(name.clone(), content.hash)) {
                    arrivals[node].get_or_insert(now);
                }
                self.push(
                    now + 1,
                    SimEvent::Engine {
                        node,
                        event: Event::Installed {
                            name,
                            hash: content.hash,
                            outcome: Ok(Applied {
                                meta: Some(meta),
                                kept: None,
                            }),
                        },
                    },
                );
            }
            Action::Remove { name, version, .. } => {
                self.nodes[node].folder.remove(&name);
                self.push(
                    now + 1,
                    SimEvent::Engine {
                        node,
                        event: Event::Removed {
                            name,
                            version,
                            outcome: Ok(Applied {
                                meta: None,
                                kept: None,
                            }),
                        },
                    },
                );
            }
            Action::SaveIndex { generation, .. } => self.push(
                now + 1,
                SimEvent::Engine {
                    node,
                    event: Event::IndexSaved {
                        generation,
                        outcome: Ok(()),
                    },
                },
            ),
            Action::Ban { peer, .. } => {
                if let Some(&other) = self.by_peer.get(&peer) {
                    self.disconnect(node, other);
                }
            }
            Action::PruneConflicts { .. } => {}
        }
    }

    /// Sends gossip message `id` (first published by `publisher`) from `node` to `peers`.
    fn forward(
        &mut self,
        node: usize,
        peers: &[usize],
        publisher: usize,
        id: u64,
        records: &Arc<Vec<SignedVersion>>,
    ) {
        let bytes = SMALL_MESSAGE_BYTES + RECORD_BYTES * records.len() as u64;
        for &to in peers {
            if to == publisher {
                continue;
            }
            if let Some(at) = self.net.send(node, to, bytes, Kind::Gossip, self.now) {
                self.push(
                    at,
                    SimEvent::Gossip {
                        to,
                        publisher,
                        id,
                        records: records.clone(),
                    },
                );
            }
        }
    }

    fn on_gossip(
        &mut self,
        to: usize,
        publisher: usize,
        id: u64,
        records: Arc<Vec<SignedVersion>>,
    ) {
        if !self.nodes[to].online || !self.nodes[to].seen.insert(id) {
            return;
        }
        let mesh = self.nodes[to].mesh(MESH_N);
        self.forward(to, &mesh, publisher, id, &records);
        let from = self.nodes[publisher].peer;
        self.deliver(to, from, Via::Gossip, &records);
    }

    /// Verifies records the way the driver does (those identical to the index's are known) and
    /// hands them to the engine.
    fn deliver(&mut self, to: usize, from: PeerId, via: Via, records: &[SignedVersion]) {
        let node = &mut self.nodes[to];
        let mut verified = Vec::new();
        for signed in records {
            // Known records still name their sender as a holder, as in the driver.
            let record = node
                .engine
                .known_record(signed)
                .or_else(|| VerifiedVersion::check(signed.clone(), &mut node.keys).ok());
            verified.extend(record);
        }
        if !verified.is_empty() {
            self.handle(
                to,
                Event::Remote {
                    from,
                    via,
                    records: verified,
                },
            );
        }
    }

    /// `to` does not answer `from`'s exchange: the request times out, as the driver's does.
    fn inventory_timed_out(&mut self, from: usize, to: usize) {
        let peer = self.nodes[to].peer;
        self.push(
            self.now + DOWNLOAD_TIMEOUT_MS,
            SimEvent::Engine {
                node: from,
                event: Event::InventoryDone(peer),
            },
        );
    }

    fn on_inventory_request(&mut self, from: usize, to: usize) {
        if !self.nodes[to].online {
            self.inventory_timed_out(from, to);
            return;
        }
        let same = self.nodes[from].engine.index().holdings_digest()
            == self.nodes[to].engine.index().holdings_digest();
        let (records, answered_bytes, extra_round_trips) = if same {
            (None, 0, 0)
        } else {
            let reconciled = reconcile(&self.nodes[from].engine, self.nodes[to].engine.index());
            // The asks ride on the asker's uplink; their timing is folded into the round trips.
            let _ = self
                .net
                .send(from, to, reconciled.asked_bytes, Kind::Inventory, self.now);
            (
                Some(Arc::new(reconciled.records)),
                reconciled.answered_bytes,
                reconciled.round_trips.saturating_sub(1),
            )
        };
        let bytes = SMALL_MESSAGE_BYTES + answered_bytes;
        match self.net.send(to, from, bytes, Kind::Inventory, self.now) {
            Some(at) => self.push(
                at + extra_round_trips * 2 * self.net.latency(),
                SimEvent::InventoryResponse {
                    from: to,
                    to: from,
                    records,
                },
            ),
            None => self.inventory_timed_out(from, to),
        }
    }

    fn on_inventory_response(
        &mut self,
        from: usize,
        to: usize,
        records: Option<Arc<Vec<SignedVersion>>>,
    ) {
        let peer = self.nodes[from].peer;
        if let Some(records) = records {
            self.deliver(to, peer, Via::Inventory, &records);
        }
        self.handle(to, Event::InventoryDone(peer));
    }

    fn on_download_request(&mut self, from: usize, source: usize, name: String, hash: Hash32) {
        let holds = self.nodes[source].online && self.nodes[source].holds(&name, &hash);
        let digest = self.contents.get(&hash).cloned();
        match (holds, digest) {
            (true, Some(digest)) => {
                let bytes = digest.size + 32 * digest.chunks.len() as u64;
                match self.net.send(source, from, bytes, Kind::Data, self.now) {
                    Some(at) => {
                        let fetched = Fetched {
                            manifest: digest.chunks.clone(),
                            resumed_bytes: 0,
                            fetched_bytes: digest.size,
                            reused_bytes: 0,
                        };
                        self.finish_download(from, name, hash, Ok(fetched), at);
                    }
                    None => self.fail_download(from, name, hash, self.now + DOWNLOAD_TIMEOUT_MS),
                }
            }
            _ => self.fail_download(from, name, hash, self.now + self.net.latency()),
        }
    }

    fn fail_download(&mut self, node: usize, name: String, hash: Hash32, at: Millis) {
        let failure = DownloadFailure {
            reason: "incomplete",
            message: "the source did not serve the store".into(),
        };
        self.finish_download(node, name, hash, Err(failure), at);
    }

    fn finish_download(
        &mut self,
        node: usize,
        name: String,
        hash: Hash32,
        outcome: Result<Fetched, DownloadFailure>,
        at: Millis,
    ) {
        self.push(
            at,
            SimEvent::DownloadEnded {
                node,
                name,
                hash,
                outcome,
            },
        );
    }
}

/// The content of version `salt` of store `name`: `size` pseudo-random bytes, hashed the way the
/// sidecar hashes a file (BLAKE3 with its chunk manifest).
pub fn content_of(name: &str, size: u64, salt: u64) -> ContentDigest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(name.as_bytes());
    hasher.update(&salt.to_le_bytes());
    let mut reader = hasher.finalize_xof();
    let mut bytes = vec![0u8; size as usize];
    reader.fill(&mut bytes);
    digest_reader(&bytes[..]).expect("hashing bytes in memory cannot fail")
}
