//! Signed records and the accept path, for the registry's unit tests.

use libp2p_identity::Keypair;

use super::{Registry, RegistryError, Source, Upserted};
use crate::record::{
    PeerRecord, SignedPeerRecord, SignedUnregister, StoreEntry, UnregisterRequest,
};

/// A record of `keypair` in `testnet` holding `stores` as (name, lamport), stamped `timestamp_ms`.
pub fn signed(keypair: &Keypair, stores: &[(&str, u64)], timestamp_ms: u64) -> SignedPeerRecord {
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

/// A record of no stores.
pub fn signed_at(keypair: &Keypair, timestamp_ms: u64) -> SignedPeerRecord {
    signed(keypair, &[], timestamp_ms)
}

/// A removal of `keypair`'s record in `testnet`, stamped `timestamp_ms`.
pub fn removal(keypair: &Keypair, timestamp_ms: u64) -> SignedUnregister {
    UnregisterRequest {
        peer_id: keypair.public().to_peer_id().to_base58(),
        network_id: "testnet".into(),
        timestamp_ms,
    }
    .sign(keypair)
    .unwrap()
}

/// Verifies `record` as the server does, then offers it to `registry` as a direct registration.
pub fn accept(
    registry: &mut Registry,
    record: &SignedPeerRecord,
    now: u64,
) -> Result<Upserted, RegistryError> {
    let key = record
        .validate_and_verify(&registry.config().limits)
        .unwrap();
    registry.upsert(record, &key, Source::Direct, now)
}

/// Verifies `removal`, then offers it to `registry` as a direct removal.
pub fn remove(
    registry: &mut Registry,
    removal: &SignedUnregister,
    now: u64,
) -> Result<super::Removed, RegistryError> {
    let key = removal.validate_and_verify().unwrap();
    registry.unregister(removal, &key, Source::Direct, now)
}
