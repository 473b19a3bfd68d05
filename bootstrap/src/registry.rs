//! The in-memory soft state: live peer records, their indexes, expiry, removals, and the views
//! the routes serve. Pure data structure, no IO: the server wraps it in a lock.
//!
//! Records are kept compactly (interned store names, networks and agent versions; hashes, keys and
//! signatures as fixed arrays) because a registry holds 100,000 peers of many stores each. The
//! signature still verifies later: it covers canonical bytes re-encodable from these fields.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use libp2p_identity::{PublicKey, ed25519};

use crate::api::{
    NetworkTopology, PeerInfo, PeersResponse, RecordsResponse, StatsResponse, StoreReplication,
    TopologyResponse,
};
use crate::record::{
    PeerRecord, RecordError, RecordLimits, SignedPeerRecord, SignedUnregister, StoreEntry,
    UnregisterRequest, decode_signature_bytes, encode_base64, parse_hash,
};

/// Limits and timings of a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryConfig {
    /// A record expires this long after it was last accepted.
    pub ttl_ms: u64,
    /// Most live peers; registrations of new peers beyond it are refused.
    pub max_peers: usize,
    /// Bounds on each record's fields.
    pub limits: RecordLimits,
    /// How far a directly registered timestamp may be from the server's clock.
    pub max_clock_skew_ms: u64,
    /// Peers seen within this window count as active in `/stats`.
    pub active_window_ms: u64,
    /// Network ids accepted; empty means any.
    pub allowed_networks: Vec<String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 180_000,
            max_peers: 100_000,
            limits: RecordLimits::default(),
            max_clock_skew_ms: 60_000,
            active_window_ms: 90_000,
            allowed_networks: Vec::new(),
        }
    }
}

/// Where a record came from: its own node, or relayed by a sibling bootstrap server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Direct,
    Federated,
}

/// Why the registry refused a verified record or removal.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    #[error("{field}: {timestamp_ms} is {age_ms} ms old, more than the allowed {limit_ms} ms")]
    StaleTimestamp {
        field: &'static str,
        timestamp_ms: u64,
        age_ms: u64,
        limit_ms: u64,
    },
    #[error(
        "{field}: {timestamp_ms} is {ahead_ms} ms ahead of the server clock, more than the allowed {limit_ms} ms"
    )]
    FutureTimestamp {
        field: &'static str,
        timestamp_ms: u64,
        ahead_ms: u64,
        limit_ms: u64,
    },
    #[error(
        "{field}: {timestamp_ms} is not newer than the {held} held for this peer ({held_ms}); replayed or reordered"
    )]
    NotNewer {
        field: &'static str,
        timestamp_ms: u64,
        held: &'static str,
        held_ms: u64,
    },
    #[error("{field}: network {network_id:?} is not served here (served: {served})")]
    WrongNetwork {
        field: &'static str,
        network_id: String,
        served: String,
    },
    #[error("registry is full: {max_peers} live peers (--max-peers); retry after records expire")]
    Full { max_peers: usize },
    #[error(transparent)]
    Record(#[from] RecordError),
}

impl RegistryError {
    /// The JSON path of the field at fault.
    pub fn field(&self) -> &str {
        match self {
            Self::StaleTimestamp { field, .. }
            | Self::FutureTimestamp { field, .. }
            | Self::NotNewer { field, .. }
            | Self::WrongNetwork { field, .. } => field,
            Self::Full { .. } => "record.peerId",
            Self::Record(e) => e.field(),
        }
    }

    /// Machine-readable code, the `error` member of the API error and a metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::StaleTimestamp { .. } => "stale_timestamp",
            Self::FutureTimestamp { .. } => "future_timestamp",
            Self::NotNewer { .. } => "replayed_record",
            Self::WrongNetwork { .. } => "wrong_network",
            Self::Full { .. } => "registry_full",
            Self::Record(e) => e.code(),
        }
    }
}

/// Result of an accepted record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upserted {
    Created { expires_at_ms: u64 },
    Refreshed { expires_at_ms: u64 },
}

impl Upserted {
    pub fn expires_at_ms(&self) -> u64 {
        match self {
            Self::Created { expires_at_ms } | Self::Refreshed { expires_at_ms } => *expires_at_ms,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    Removed,
    NotFound,
}

struct StoredStore {
    /// Index into `Registry::store_names`.
    name: u32,
    /// Position of this peer in the store's holder list (O(1) removal).
    holder_pos: u32,
    size: u64,
    lamport: u64,
    hash: [u8; 32],
}

struct PeerSlot {
    public_key: [u8; 32],
    peer_id: Box<str>,
    signature: [u8; 64],
    network: Arc<str>,
    agent_version: Arc<str>,
    /// Multiaddrs joined by '\n' (one allocation; validated addresses hold no control chars).
    addresses: Box<str>,
    stores: Box<[StoredStore]>,
    timestamp_ms: u64,
    last_seen_ms: u64,
    seq: u64,
}

/// A remembered removal, so an older record (replayed, or relayed late) cannot bring a peer back.
struct Tombstone {
    peer_id: Box<str>,
    network: Arc<str>,
    timestamp_ms: u64,
    signature: [u8; 64],
    removed_at_ms: u64,
    seq: u64,
}

/// One store name and the slots of the peers holding it.
struct StoreName {
    name: Arc<str>,
    holders: Vec<u32>,
}

impl PeerSlot {
    fn addresses(&self) -> impl Iterator<Item = &str> {
        self.addresses.split('\n').filter(|a| !a.is_empty())
    }
}

/// The registry's state. Not thread-safe by itself; the server holds it behind a lock.
pub struct Registry {
    config: RegistryConfig,
    slots: Vec<Option<PeerSlot>>,
    free_slots: Vec<u32>,
    by_key: HashMap<[u8; 32], u32>,
    by_last_seen: BTreeSet<(u64, u32)>,
    by_network: HashMap<Arc<str>, BTreeSet<(u64, u32)>>,
    store_names: Vec<Option<StoreName>>,
    store_ids: HashMap<Arc<str>, u32>,
    free_store_ids: Vec<u32>,
    /// Change feed for federation: sequence number -> slot of a record / key of a removal.
    feed: BTreeMap<u64, u32>,
    removal_feed: BTreeMap<u64, [u8; 32]>,
    tombstones: HashMap<[u8; 32], Tombstone>,
    interned: HashSet<Arc<str>>,
    next_seq: u64,
    store_entries: usize,
    total_registrations: u64,
    /// Bumped on every change, so rendered views can be reused until the next one.
    generation: u64,
}

fn ed25519_bytes(key: &PublicKey) -> Result<[u8; 32], RecordError> {
    key.clone()
        .try_into_ed25519()
        .map(|k| k.to_bytes())
        .map_err(|_| RecordError::PublicKey {
            detail: "only ed25519 identity keys are accepted".to_owned(),
        })
}

fn encoded_public_key(bytes: &[u8; 32]) -> String {
    // The bytes came from a decoded ed25519 key, so they decode again.
    let key = ed25519::PublicKey::try_from_bytes(bytes).expect("stored ed25519 key bytes");
    encode_base64(&PublicKey::from(key).encode_protobuf())
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            slots: Vec::new(),
            free_slots: Vec::new(),
            by_key: HashMap::new(),
            by_last_seen: BTreeSet::new(),
            by_network: HashMap::new(),
            store_names: Vec::new(),
            store_ids: HashMap::new(),
            free_store_ids: Vec::new(),
            feed: BTreeMap::new(),
            removal_feed: BTreeMap::new(),
            tombstones: HashMap::new(),
            interned: HashSet::new(),
            next_seq: 1,
            store_entries: 0,
            total_registrations: 0,
            generation: 0,
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Peers held, including expired ones the next sweep removes.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Distinct store names held.
    pub fn store_count(&self) -> usize {
        self.store_ids.len()
    }

    /// Changes with every accepted record, removal or expiry.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn total_registrations(&self) -> u64 {
        self.total_registrations
    }

    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(existing) = self.interned.get(text) {
            return existing.clone();
        }
        let interned: Arc<str> = Arc::from(text);
        self.interned.insert(interned.clone());
        interned
    }

    /// The id of a store name, creating it (with no holders) when new.
    fn store_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.store_ids.get(name) {
            return id;
        }
        let name: Arc<str> = Arc::from(name);
        let entry = StoreName {
            name: name.clone(),
            holders: Vec::new(),
        };
        let id = match self.free_store_ids.pop() {
            Some(id) => {
                self.store_names[id as usize] = Some(entry);
                id
            }
            None => {
                self.store_names.push(Some(entry));
                (self.store_names.len() - 1) as u32
            }
        };
        self.store_ids.insert(name, id);
        id
    }

    fn store_name(&self, id: u32) -> &StoreName {
        self.store_names[id as usize]
            .as_ref()
            .expect("stored ids point at live store names")
    }

    fn store_name_mut(&mut self, id: u32) -> &mut StoreName {
        self.store_names[id as usize]
            .as_mut()
            .expect("stored ids point at live store names")
    }

    fn slot(&self, index: u32) -> &PeerSlot {
        self.slots[index as usize]
            .as_ref()
            .expect("indexes only point at occupied slots")
    }

    fn expires_at(&self, slot: &PeerSlot) -> u64 {
        slot.last_seen_ms.saturating_add(self.config.ttl_ms)
    }

    fn check_network(&self, field: &'static str, network_id: &str) -> Result<(), RegistryError> {
        if self.config.allowed_networks.is_empty()
            || self.config.allowed_networks.iter().any(|n| n == network_id)
        {
            return Ok(());
        }
        Err(RegistryError::WrongNetwork {
            field,
            network_id: network_id.to_owned(),
            served: self.config.allowed_networks.join(", "),
        })
    }

    fn check_fresh(
        &self,
        field: &'static str,
        timestamp_ms: u64,
        now_ms: u64,
        max_age_ms: u64,
    ) -> Result<(), RegistryError> {
        if timestamp_ms > now_ms.saturating_add(self.config.max_clock_skew_ms) {
            return Err(RegistryError::FutureTimestamp {
                field,
                timestamp_ms,
                ahead_ms: timestamp_ms - now_ms,
                limit_ms: self.config.max_clock_skew_ms,
            });
        }
        let age_ms = now_ms.saturating_sub(timestamp_ms);
        if age_ms > max_age_ms {
            return Err(RegistryError::StaleTimestamp {
                field,
                timestamp_ms,
                age_ms,
                limit_ms: max_age_ms,
            });
        }
        Ok(())
    }

    /// Accepts a record whose bounds and signature were already checked
    /// ([`SignedPeerRecord::validate_and_verify`], done outside the lock), applying the freshness,
    /// replay, network and capacity rules.
    pub fn upsert(
        &mut self,
        signed: &SignedPeerRecord,
        key: &PublicKey,
        source: Source,
        now_ms: u64,
    ) -> Result<Upserted, RegistryError> {
        let record = &signed.record;
        const FIELD: &str = "record.timestampMs";
        self.check_network("record.networkId", &record.network_id)?;
        // A relayed record may be as old as a TTL: its node registered with the sibling earlier.
        let max_age = match source {
            Source::Direct => self.config.max_clock_skew_ms,
            Source::Federated => self.config.ttl_ms,
        };
        self.check_fresh(FIELD, record.timestamp_ms, now_ms, max_age)?;
        let key_bytes = ed25519_bytes(key)?;
        let signature = decode_signature_bytes(&signed.signature)?;
        if let Some(tombstone) = self.tombstones.get(&key_bytes)
            && record.timestamp_ms <= tombstone.timestamp_ms
        {
            return Err(RegistryError::NotNewer {
                field: FIELD,
                timestamp_ms: record.timestamp_ms,
                held: "removal",
                held_ms: tombstone.timestamp_ms,
            });
        }
        let existing = self.by_key.get(&key_bytes).copied();
        if let Some(index) = existing {
            let held = self.slot(index).timestamp_ms;
            if record.timestamp_ms <= held {
                return Err(RegistryError::NotNewer {
                    field: FIELD,
                    timestamp_ms: record.timestamp_ms,
                    held: "record",
                    held_ms: held,
                });
            }
        } else if self.by_key.len() >= self.config.max_peers {
            return Err(RegistryError::Full {
                max_peers: self.config.max_peers,
            });
        }

        let mut hashes = Vec::with_capacity(record.stores.len());
        for (i, store) in record.stores.iter().enumerate() {
            hashes.push(parse_hash(
                &format!("record.stores[{i}].hash"),
                &store.hash,
            )?);
        }
        // Nothing fails from here on. The old record leaves the indexes first, so a store name
        // it alone held is freed before (not after) the new record takes its id.
        if let Some(index) = existing {
            self.unindex(index);
        }
        let stores: Vec<StoredStore> = record
            .stores
            .iter()
            .zip(hashes)
            .map(|(store, hash)| StoredStore {
                name: self.store_id(&store.name),
                holder_pos: 0,
                size: store.size,
                lamport: store.lamport,
                hash,
            })
            .collect();
        let last_seen_ms = match source {
            Source::Direct => now_ms,
            Source::Federated => record.timestamp_ms.min(now_ms),
        };
        if let Some(tombstone) = self.tombstones.remove(&key_bytes) {
            self.removal_feed.remove(&tombstone.seq);
        }
        let slot = PeerSlot {
            public_key: key_bytes,
            peer_id: record.peer_id.as_str().into(),
            signature,
            network: self.intern(&record.network_id),
            agent_version: self.intern(&record.agent_version),
            addresses: record.addresses.join("\n").into_boxed_str(),
            stores: stores.into_boxed_slice(),
            timestamp_ms: record.timestamp_ms,
            last_seen_ms,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let expires_at_ms = self.expires_at(&slot);
        let outcome = match existing {
            Some(index) => {
                self.index(index, slot);
                Upserted::Refreshed { expires_at_ms }
            }
            None => {
                let index = match self.free_slots.pop() {
                    Some(index) => index,
                    None => {
                        self.slots.push(None);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.by_key.insert(key_bytes, index);
                self.index(index, slot);
                Upserted::Created { expires_at_ms }
            }
        };
        self.total_registrations += 1;
        self.generation += 1;
        Ok(outcome)
    }

    /// Puts `slot` at `index` and adds it to every index except `by_key`.
    fn index(&mut self, index: u32, mut slot: PeerSlot) {
        self.by_last_seen.insert((slot.last_seen_ms, index));
        self.by_network
            .entry(slot.network.clone())
            .or_default()
            .insert((slot.last_seen_ms, index));
        for store in slot.stores.iter_mut() {
            let holders = &mut self.store_name_mut(store.name).holders;
            store.holder_pos = holders.len() as u32;
            holders.push(index);
        }
        self.store_entries += slot.stores.len();
        self.feed.insert(slot.seq, index);
        self.slots[index as usize] = Some(slot);
    }

    /// Takes the slot at `index` out of every index except `by_key`.
    fn unindex(&mut self, index: u32) -> PeerSlot {
        let slot = self.slots[index as usize]
            .take()
            .expect("unindex of an occupied slot");
        self.by_last_seen.remove(&(slot.last_seen_ms, index));
        if let Some(set) = self.by_network.get_mut(&slot.network) {
            set.remove(&(slot.last_seen_ms, index));
            if set.is_empty() {
                self.by_network.remove(&slot.network);
            }
        }
        for store in slot.stores.iter() {
            let position = store.holder_pos as usize;
            let holders = &mut self.store_name_mut(store.name).holders;
            holders.swap_remove(position);
            if let Some(&moved) = holders.get(position) {
                // The last holder moved into `position`: update its back-pointer.
                let moved_slot = self.slots[moved as usize]
                    .as_mut()
                    .expect("holders are occupied slots");
                if let Some(entry) = moved_slot.stores.iter_mut().find(|s| s.name == store.name) {
                    entry.holder_pos = position as u32;
                }
            } else if holders.is_empty() {
                let freed = self.store_names[store.name as usize]
                    .take()
                    .expect("live store name");
                self.store_ids.remove(&freed.name);
                self.free_store_ids.push(store.name);
            }
        }
        self.store_entries -= slot.stores.len();
        self.feed.remove(&slot.seq);
        slot
    }

    fn remove_slot(&mut self, index: u32) -> PeerSlot {
        let slot = self.unindex(index);
        self.by_key.remove(&slot.public_key);
        self.free_slots.push(index);
        slot
    }

    /// Applies a verified removal ([`SignedUnregister::validate_and_verify`]).
    pub fn unregister(
        &mut self,
        signed: &SignedUnregister,
        key: &PublicKey,
        source: Source,
        now_ms: u64,
    ) -> Result<Removed, RegistryError> {
        let request = &signed.request;
        const FIELD: &str = "request.timestampMs";
        self.check_network("request.networkId", &request.network_id)?;
        let max_age = match source {
            Source::Direct => self.config.max_clock_skew_ms,
            Source::Federated => self.config.ttl_ms,
        };
        self.check_fresh(FIELD, request.timestamp_ms, now_ms, max_age)?;
        let key_bytes = ed25519_bytes(key)?;
        let signature = decode_signature_bytes(&signed.signature)?;
        if let Some(tombstone) = self.tombstones.get(&key_bytes)
            && request.timestamp_ms <= tombstone.timestamp_ms
        {
            return Err(RegistryError::NotNewer {
                field: FIELD,
                timestamp_ms: request.timestamp_ms,
                held: "removal",
                held_ms: tombstone.timestamp_ms,
            });
        }
        let mut outcome = Removed::NotFound;
        if let Some(&index) = self.by_key.get(&key_bytes) {
            let slot = self.slot(index);
            if request.timestamp_ms <= slot.timestamp_ms {
                return Err(RegistryError::NotNewer {
                    field: FIELD,
                    timestamp_ms: request.timestamp_ms,
                    held: "record",
                    held_ms: slot.timestamp_ms,
                });
            }
            if *slot.network != *request.network_id {
                return Err(RegistryError::WrongNetwork {
                    field: "request.networkId",
                    network_id: request.network_id.clone(),
                    served: format!("the peer's record is in network {:?}", slot.network),
                });
            }
            self.remove_slot(index);
            outcome = Removed::Removed;
        }
        if let Some(old) = self.tombstones.remove(&key_bytes) {
            self.removal_feed.remove(&old.seq);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let network = self.intern(&request.network_id);
        self.tombstones.insert(
            key_bytes,
            Tombstone {
                peer_id: request.peer_id.as_str().into(),
                network,
                timestamp_ms: request.timestamp_ms,
                signature,
                removed_at_ms: now_ms,
                seq,
            },
        );
        self.removal_feed.insert(seq, key_bytes);
        self.generation += 1;
        Ok(outcome)
    }

    /// Removes records not refreshed within the TTL and removals older than any record they could
    /// still block. Returns how many records expired.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        let mut expired = 0;
        while let Some(&(last_seen, index)) = self.by_last_seen.first() {
            if last_seen.saturating_add(self.config.ttl_ms) > now_ms {
                break;
            }
            self.remove_slot(index);
            expired += 1;
        }
        let keep_ms = self.config.ttl_ms + self.config.max_clock_skew_ms;
        let mut dropped_seqs = Vec::new();
        self.tombstones.retain(|_, t| {
            let keep = t.removed_at_ms.saturating_add(keep_ms) > now_ms;
            if !keep {
                dropped_seqs.push(t.seq);
            }
            keep
        });
        for seq in dropped_seqs {
            self.removal_feed.remove(&seq);
        }
        self.interned.retain(|s| Arc::strong_count(s) > 1);
        if expired > 0 {
            self.generation += 1;
        }
        expired
    }

    /// Live peers whose last refresh is within the TTL, newest first.
    fn live_newest_first<'a>(
        &'a self,
        set: &'a BTreeSet<(u64, u32)>,
        now_ms: u64,
    ) -> impl Iterator<Item = u32> + 'a {
        let cutoff = now_ms.saturating_sub(self.config.ttl_ms);
        set.iter()
            .rev()
            .take_while(move |(last_seen, _)| *last_seen > cutoff)
            .map(|&(_, index)| index)
    }

    fn live_count(&self, set: &BTreeSet<(u64, u32)>, now_ms: u64) -> usize {
        let cutoff = now_ms.saturating_sub(self.config.ttl_ms);
        // Expired entries sit at the front until the next sweep; there are few of them.
        let expired = set
            .iter()
            .take_while(|(last_seen, _)| *last_seen <= cutoff)
            .count();
        set.len() - expired
    }

    fn peer_info(&self, index: u32, stores: Option<Vec<StoreEntry>>) -> PeerInfo {
        let slot = self.slot(index);
        PeerInfo {
            peer_id: slot.peer_id.to_string(),
            network_id: slot.network.to_string(),
            addresses: slot.addresses().map(str::to_owned).collect(),
            agent_version: slot.agent_version.to_string(),
            last_seen: slot.last_seen_ms,
            timestamp_ms: slot.timestamp_ms,
            expires_at: self.expires_at(slot),
            store_count: slot.stores.len(),
            stores,
        }
    }

    fn store_entry(&self, store: &StoredStore) -> StoreEntry {
        StoreEntry {
            name: self.store_name(store.name).name.to_string(),
            size: store.size,
            hash: hex::encode(store.hash),
            lamport: store.lamport,
        }
    }

    /// `GET /peers`: live peers, newest first.
    pub fn peers(
        &self,
        network: Option<&str>,
        limit: usize,
        include_stores: bool,
        now_ms: u64,
    ) -> PeersResponse {
        let set = match network {
            Some(network) => match self.by_network.get(network) {
                Some(set) => set,
                None => {
                    return PeersResponse {
                        peers: Vec::new(),
                        count: 0,
                        total: 0,
                        store: None,
                    };
                }
            },
            None => &self.by_last_seen,
        };
        let peers: Vec<PeerInfo> = self
            .live_newest_first(set, now_ms)
            .take(limit)
            .map(|index| {
                let stores = include_stores.then(|| {
                    self.slot(index)
                        .stores
                        .iter()
                        .map(|s| self.store_entry(s))
                        .collect()
                });
                self.peer_info(index, stores)
            })
            .collect();
        PeersResponse {
            count: peers.len(),
            total: self.live_count(set, now_ms),
            peers,
            store: None,
        }
    }

    /// `GET /peers/store/{store}`: live peers holding `store`, newest first, each with its entry
    /// of that store.
    pub fn peers_with_store(
        &self,
        store: &str,
        network: Option<&str>,
        limit: usize,
        now_ms: u64,
    ) -> PeersResponse {
        let cutoff = now_ms.saturating_sub(self.config.ttl_ms);
        let id = self.store_ids.get(store).copied();
        let mut holders: Vec<(u64, u32)> = id
            .map(|id| self.store_name(id).holders.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|&index| {
                let slot = self.slot(index);
                let live = slot.last_seen_ms > cutoff;
                let in_network = network.is_none_or(|n| *slot.network == *n);
                (live && in_network).then_some((slot.last_seen_ms, index))
            })
            .collect();
        let total = holders.len();
        let newest_first = |a: &(u64, u32), b: &(u64, u32)| b.cmp(a);
        if holders.len() > limit && limit > 0 {
            holders.select_nth_unstable_by(limit - 1, newest_first);
        }
        holders.truncate(limit);
        holders.sort_unstable_by(newest_first);
        let peers: Vec<PeerInfo> = holders
            .into_iter()
            .map(|(_, index)| {
                let entry = self
                    .slot(index)
                    .stores
                    .iter()
                    .filter(|s| Some(s.name) == id)
                    .map(|s| self.store_entry(s))
                    .collect();
                self.peer_info(index, Some(entry))
            })
            .collect();
        PeersResponse {
            count: peers.len(),
            total,
            peers,
            store: Some(store.to_owned()),
        }
    }

    /// `GET /stats`.
    pub fn stats(&self, now_ms: u64, uptime_seconds: u64) -> StatsResponse {
        let live = self.live_count(&self.by_last_seen, now_ms) as u64;
        let active_cutoff = now_ms.saturating_sub(self.config.active_window_ms);
        let active = self
            .by_last_seen
            .range((active_cutoff.saturating_add(1), 0)..)
            .count() as u64;
        // Store totals count records until they are swept (at most --sweep-interval after
        // expiry): exact live figures would cost a scan of every record per request.
        let held = self.by_key.len();
        let store_names = self.store_ids.len() as u64;
        let networks = self
            .by_network
            .iter()
            .map(|(name, set)| (name.to_string(), self.live_count(set, now_ms) as u64))
            .filter(|(_, count)| *count > 0)
            .collect();
        StatsResponse {
            total_peers: live,
            active_peers: active.min(live),
            total_stores: store_names,
            average_stores_per_peer: if held == 0 {
                0.0
            } else {
                self.store_entries as f64 / held as f64
            },
            total_registrations: self.total_registrations,
            uptime_seconds,
            networks,
            peer_ttl_seconds: self.config.ttl_ms / 1000,
            max_peers: self.config.max_peers as u64,
        }
    }

    /// `GET /topology`: replication of every store per network, and peers per agent version.
    pub fn topology(&self, now_ms: u64) -> TopologyResponse {
        #[derive(Default)]
        struct Acc {
            replicas: u64,
            latest_lamport: u64,
            latest_hashes: Vec<[u8; 32]>,
            replicas_at_latest: u64,
            latest_size: u64,
        }
        let mut networks: BTreeMap<&str, (u64, BTreeMap<&str, Acc>)> = BTreeMap::new();
        let mut peers_by_version: BTreeMap<String, u64> = BTreeMap::new();
        let mut total = 0;
        for index in self.live_newest_first(&self.by_last_seen, now_ms) {
            let slot = self.slot(index);
            total += 1;
            *peers_by_version
                .entry(slot.agent_version.to_string())
                .or_default() += 1;
            let (peers, stores) = networks.entry(&slot.network).or_default();
            *peers += 1;
            for store in slot.stores.iter() {
                let acc = stores.entry(&self.store_name(store.name).name).or_default();
                acc.replicas += 1;
                if acc.replicas == 1 || store.lamport > acc.latest_lamport {
                    acc.latest_lamport = store.lamport;
                    acc.latest_hashes = vec![store.hash];
                    acc.replicas_at_latest = 1;
                    acc.latest_size = store.size;
                } else if store.lamport == acc.latest_lamport {
                    acc.replicas_at_latest += 1;
                    if !acc.latest_hashes.contains(&store.hash) {
                        acc.latest_hashes.push(store.hash);
                    }
                }
            }
        }
        let networks = networks
            .into_iter()
            .map(|(network_id, (peers, stores))| {
                let stores: Vec<StoreReplication> = stores
                    .into_iter()
                    .map(|(name, acc)| StoreReplication {
                        name: name.to_owned(),
                        replicas: acc.replicas,
                        latest_lamport: acc.latest_lamport,
                        replicas_at_latest: acc.replicas_at_latest,
                        hashes_at_latest: acc.latest_hashes.len() as u64,
                        latest_size: acc.latest_size,
                    })
                    .collect();
                let under_replicated = stores
                    .iter()
                    .filter(|s| s.replicas_at_latest < peers)
                    .map(|s| s.name.clone())
                    .collect();
                NetworkTopology {
                    network_id: network_id.to_owned(),
                    peers,
                    stores,
                    under_replicated,
                }
            })
            .collect();
        TopologyResponse {
            total_peers: total,
            networks,
            peers_by_version,
        }
    }

    fn signed_record(&self, slot: &PeerSlot) -> SignedPeerRecord {
        SignedPeerRecord {
            record: PeerRecord {
                peer_id: slot.peer_id.to_string(),
                network_id: slot.network.to_string(),
                addresses: slot.addresses().map(str::to_owned).collect(),
                stores: slot.stores.iter().map(|s| self.store_entry(s)).collect(),
                agent_version: slot.agent_version.to_string(),
                timestamp_ms: slot.timestamp_ms,
            },
            public_key: encoded_public_key(&slot.public_key),
            signature: encode_base64(&slot.signature),
        }
    }

    /// `GET /records`: the signed records and removals accepted after `after`, oldest change
    /// first, re-encoded from the compact state (each still verifies).
    pub fn records_page(
        &self,
        after: u64,
        limit: usize,
        now_ms: u64,
        epoch: &str,
    ) -> RecordsResponse {
        let cutoff = now_ms.saturating_sub(self.config.ttl_ms);
        let mut records = Vec::new();
        let mut removals = Vec::new();
        let mut next_cursor = after;
        let mut more = false;
        let from = after.saturating_add(1);
        let mut peers = self.feed.range(from..).peekable();
        let mut gone = self.removal_feed.range(from..).peekable();
        let mut taken = 0;
        loop {
            // Merge the two feeds by sequence number.
            let take_peer = match (peers.peek(), gone.peek()) {
                (Some((a, _)), Some((b, _))) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if taken == limit {
                more = true;
                break;
            }
            taken += 1;
            if take_peer {
                let (&seq, &index) = peers.next().expect("peeked");
                next_cursor = seq;
                let slot = self.slot(index);
                if slot.last_seen_ms > cutoff {
                    records.push(self.signed_record(slot));
                }
            } else {
                let (&seq, key) = gone.next().expect("peeked");
                next_cursor = seq;
                if let Some(t) = self.tombstones.get(key) {
                    removals.push(SignedUnregister {
                        request: UnregisterRequest {
                            peer_id: t.peer_id.to_string(),
                            network_id: t.network.to_string(),
                            timestamp_ms: t.timestamp_ms,
                        },
                        public_key: encoded_public_key(key),
                        signature: encode_base64(&t.signature),
                    });
                }
            }
        }
        RecordsResponse {
            epoch: epoch.to_owned(),
            records,
            removals,
            next_cursor,
            more,
        }
    }
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::*;
    use dig_core::clock::now_ms;

    fn signed(keypair: &Keypair, stores: &[(&str, u64)], timestamp_ms: u64) -> SignedPeerRecord {
        PeerRecord {
            peer_id: keypair.public().to_peer_id().to_base58(),
            network_id: "testnet".into(),
            addresses: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            stores: stores
                .iter()
                .map(|(name, lamport)| StoreEntry {
                    name: (*name).into(),
                    size: 5,
                    hash: format!("{:064x}", lamport),
                    lamport: *lamport,
                })
                .collect(),
            agent_version: "dig-sidecar/0.1.0".into(),
            timestamp_ms,
        }
        .sign(keypair)
        .unwrap()
    }

    fn accept(
        registry: &mut Registry,
        record: &SignedPeerRecord,
        now: u64,
    ) -> Result<Upserted, RegistryError> {
        let key = record
            .validate_and_verify(&registry.config().limits)
            .unwrap();
        registry.upsert(record, &key, Source::Direct, now)
    }

    #[test]
    fn upsert_refresh_and_replay() {
        let mut registry = Registry::new(RegistryConfig::default());
        let keypair = Keypair::generate_ed25519();
        let now = now_ms();
        let first = signed(&keypair, &[("a", 1)], now);
        assert!(matches!(
            accept(&mut registry, &first, now),
            Ok(Upserted::Created { .. })
        ));
        assert_eq!(
            accept(&mut registry, &first, now).unwrap_err().code(),
            "replayed_record"
        );
        let same = signed(&keypair, &[("a", 2)], now + 1);
        accept(&mut registry, &same, now).unwrap();
        assert_eq!(
            registry.peers_with_store("a", None, 10, now).peers[0]
                .stores
                .as_ref()
                .unwrap()[0]
                .lamport,
            2
        );
        let second = signed(&keypair, &[("b", 1)], now + 2);
        assert!(matches!(
            accept(&mut registry, &second, now + 2),
            Ok(Upserted::Refreshed { .. })
        ));
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.store_count(), 1, "store a left the index");
        assert_eq!(registry.peers_with_store("a", None, 10, now + 2).total, 0);
        assert_eq!(registry.peers_with_store("b", None, 10, now + 2).total, 1);
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let mut registry = Registry::new(RegistryConfig::default());
        let keypair = Keypair::generate_ed25519();
        let now = now_ms();
        let old = signed(&keypair, &[], now - 61_000);
        assert_eq!(
            accept(&mut registry, &old, now).unwrap_err().code(),
            "stale_timestamp"
        );
        let future = signed(&keypair, &[], now + 61_000);
        assert_eq!(
            accept(&mut registry, &future, now).unwrap_err().code(),
            "future_timestamp"
        );
    }

    #[test]
    fn records_expire_after_ttl_and_indexes_follow() {
        let config = RegistryConfig {
            ttl_ms: 1_000,
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let now = now_ms();
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        accept(&mut registry, &signed(&a, &[("s", 1)], now), now).unwrap();
        accept(&mut registry, &signed(&b, &[("s", 1)], now), now + 500).unwrap();
        assert_eq!(registry.peers(None, 10, false, now + 900).count, 2);
        // a is expired (not yet swept): views hide it already.
        assert_eq!(registry.peers(None, 10, false, now + 1_000).total, 1);
        assert_eq!(registry.sweep(now + 1_000), 1);
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.sweep(now + 1_500), 1);
        assert!(registry.is_empty());
        assert_eq!(registry.store_count(), 0);
        assert!(registry.by_network.is_empty() && registry.by_last_seen.is_empty());
    }

    #[test]
    fn max_peers_refuses_new_peers_but_not_refreshes() {
        let config = RegistryConfig {
            max_peers: 1,
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let now = now_ms();
        let a = Keypair::generate_ed25519();
        accept(&mut registry, &signed(&a, &[], now), now).unwrap();
        let b = Keypair::generate_ed25519();
        assert_eq!(
            accept(&mut registry, &signed(&b, &[], now), now)
                .unwrap_err()
                .code(),
            "registry_full"
        );
        accept(&mut registry, &signed(&a, &[], now + 1), now + 1).unwrap();
    }

    #[test]
    fn unregister_removes_and_blocks_older_records() {
        let mut registry = Registry::new(RegistryConfig::default());
        let keypair = Keypair::generate_ed25519();
        let now = now_ms();
        let record = signed(&keypair, &[("a", 1)], now);
        accept(&mut registry, &record, now).unwrap();
        let removal = UnregisterRequest {
            peer_id: keypair.public().to_peer_id().to_base58(),
            network_id: "testnet".into(),
            timestamp_ms: now + 1,
        }
        .sign(&keypair)
        .unwrap();
        let key = removal.validate_and_verify().unwrap();
        assert_eq!(
            registry.unregister(&removal, &key, Source::Direct, now + 1),
            Ok(Removed::Removed)
        );
        assert!(registry.is_empty());
        // The record signed before the removal cannot come back, even relayed.
        let key = record.verify().unwrap();
        assert_eq!(
            registry
                .upsert(&record, &key, Source::Federated, now + 2)
                .unwrap_err()
                .code(),
            "replayed_record"
        );
        // Removal is relayed.
        let page = registry.records_page(0, 10, now + 2, "e");
        assert_eq!(page.removals.len(), 1);
        page.removals[0].verify().unwrap();
        // A newer record is accepted again.
        accept(&mut registry, &signed(&keypair, &[], now + 3), now + 3).unwrap();
        assert_eq!(registry.records_page(0, 10, now + 3, "e").removals.len(), 0);
    }

    #[test]
    fn records_feed_relays_verifiable_records_in_pages() {
        let mut registry = Registry::new(RegistryConfig::default());
        let now = now_ms();
        let keys: Vec<Keypair> = (0..5).map(|_| Keypair::generate_ed25519()).collect();
        for (i, keypair) in keys.iter().enumerate() {
            let record = signed(keypair, &[("s1", i as u64), ("s2", 7)], now);
            accept(&mut registry, &record, now).unwrap();
        }
        let first = registry.records_page(0, 3, now, "e");
        assert_eq!(first.records.len(), 3);
        assert!(first.more);
        let second = registry.records_page(first.next_cursor, 3, now, "e");
        assert_eq!(second.records.len(), 2);
        assert!(!second.more);
        for record in first.records.iter().chain(&second.records) {
            record
                .validate_and_verify(&RecordLimits::default())
                .unwrap();
        }
        // A refresh moves the peer to the end of the feed.
        let refreshed = signed(&keys[0], &[("s1", 9)], now + 1);
        accept(&mut registry, &refreshed, now + 1).unwrap();
        let third = registry.records_page(second.next_cursor, 10, now + 1, "e");
        assert_eq!(third.records, vec![refreshed]);
    }

    #[test]
    fn peers_are_newest_first_and_filtered_by_network() {
        let mut registry = Registry::new(RegistryConfig::default());
        let now = now_ms();
        let mut ids = Vec::new();
        for i in 0..4u64 {
            let keypair = Keypair::generate_ed25519();
            ids.push(keypair.public().to_peer_id().to_base58());
            accept(&mut registry, &signed(&keypair, &[("s", 1)], now), now + i).unwrap();
        }
        let page = registry.peers(None, 2, true, now + 4);
        assert_eq!(page.count, 2);
        assert_eq!(page.total, 4);
        assert_eq!(page.peers[0].peer_id, ids[3]);
        assert_eq!(page.peers[1].peer_id, ids[2]);
        assert_eq!(page.peers[0].stores.as_ref().unwrap().len(), 1);
        assert!(
            registry.peers(None, 2, false, now + 4).peers[0]
                .stores
                .is_none()
        );
        assert_eq!(registry.peers(Some("other"), 10, false, now + 4).total, 0);
        assert_eq!(registry.peers(Some("testnet"), 10, false, now + 4).total, 4);
        let holders = registry.peers_with_store("s", None, 3, now + 4);
        assert_eq!(holders.total, 4);
        let got: Vec<_> = holders.peers.iter().map(|p| p.peer_id.clone()).collect();
        assert_eq!(got, vec![ids[3].clone(), ids[2].clone(), ids[1].clone()]);
    }

    #[test]
    fn topology_counts_replicas_and_under_replication() {
        let mut registry = Registry::new(RegistryConfig::default());
        let now = now_ms();
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        accept(&mut registry, &signed(&a, &[("x", 2), ("y", 1)], now), now).unwrap();
        accept(&mut registry, &signed(&b, &[("x", 1)], now), now).unwrap();
        let topology = registry.topology(now);
        assert_eq!(topology.total_peers, 2);
        assert_eq!(topology.peers_by_version["dig-sidecar/0.1.0"], 2);
        let network = &topology.networks[0];
        assert_eq!(network.peers, 2);
        let x = network.stores.iter().find(|s| s.name == "x").unwrap();
        assert_eq!(
            (x.replicas, x.latest_lamport, x.replicas_at_latest),
            (2, 2, 1)
        );
        assert_eq!(
            network.under_replicated,
            vec!["x".to_owned(), "y".to_owned()]
        );
        let stats = registry.stats(now, 0);
        assert_eq!(stats.total_peers, 2);
        assert_eq!(stats.total_stores, 2);
        assert!((stats.average_stores_per_peer - 1.5).abs() < 1e-9);
    }

    #[test]
    fn store_holder_index_stays_consistent_through_removals() {
        let config = RegistryConfig {
            ttl_ms: 10_000,
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let now = now_ms();
        let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate_ed25519()).collect();
        for (i, keypair) in keys.iter().enumerate() {
            let stores: &[(&str, u64)] = if i % 2 == 0 {
                &[("s", 1), ("t", 1)]
            } else {
                &[("t", 1), ("s", 1)]
            };
            accept(&mut registry, &signed(keypair, stores, now), now + i as u64).unwrap();
        }
        let holders = |r: &Registry, store: &str| {
            let mut ids: Vec<String> = r
                .peers_with_store(store, None, 100, now + 10)
                .peers
                .into_iter()
                .map(|p| p.peer_id)
                .collect();
            ids.sort();
            ids
        };
        let id = |k: &Keypair| k.public().to_peer_id().to_base58();
        // Removing the first holder moves the last one into its place; then remove that one.
        registry.sweep(now + 10_000);
        assert_eq!(registry.len(), 3);
        accept(
            &mut registry,
            &signed(&keys[3], &[("t", 2)], now + 20),
            now + 20,
        )
        .unwrap();
        let mut expected = vec![id(&keys[1]), id(&keys[2])];
        expected.sort();
        assert_eq!(holders(&registry, "s"), expected);
        assert_eq!(holders(&registry, "t").len(), 3);
        registry.sweep(now + 10_003);
        assert_eq!(holders(&registry, "s"), Vec::<String>::new());
        assert_eq!(holders(&registry, "t"), vec![id(&keys[3])]);
        assert_eq!(registry.store_count(), 1);
        // Freed ids are reused without mixing names up.
        accept(
            &mut registry,
            &signed(&keys[0], &[("u", 1)], now + 30),
            now + 30,
        )
        .unwrap();
        assert_eq!(holders(&registry, "u"), vec![id(&keys[0])]);
        assert_eq!(holders(&registry, "t"), vec![id(&keys[3])]);
        let page = registry.peers(None, 10, true, now + 30);
        let names: Vec<_> = page.peers[0]
            .stores
            .as_ref()
            .unwrap()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(names, vec!["u".to_owned()]);
    }

    #[test]
    fn wrong_network_is_refused_when_networks_are_restricted() {
        let config = RegistryConfig {
            allowed_networks: vec!["mainnet".into()],
            ..RegistryConfig::default()
        };
        let mut registry = Registry::new(config);
        let keypair = Keypair::generate_ed25519();
        let now = now_ms();
        let err = accept(&mut registry, &signed(&keypair, &[], now), now).unwrap_err();
        assert_eq!(err.code(), "wrong_network");
        assert_eq!(err.field(), "record.networkId");
    }
}
