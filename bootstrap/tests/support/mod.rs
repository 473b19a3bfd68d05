//! What the property tests share: a runtime, valid signed requests to start from, and the JSON
//! mutations of [`json_mutation`].

#![allow(dead_code)] // each test file uses part of it

pub mod json_mutation;
pub use json_mutation::json_mutation;

use std::sync::LazyLock;

use dig_bootstrap::record::{PeerRecord, StoreEntry, UnregisterRequest};
use dig_bootstrap::{SignedPeerRecord, SignedUnregister};
use dig_core::clock::now_ms;
use libp2p_identity::Keypair;

pub static KEYPAIR: LazyLock<Keypair> = LazyLock::new(Keypair::generate_ed25519);

pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    });
    &RUNTIME
}

/// A valid record of [`KEYPAIR`], signed now.
pub fn signed_record() -> SignedPeerRecord {
    PeerRecord {
        peer_id: KEYPAIR.public().to_peer_id().to_base58(),
        network_id: "testnet".into(),
        addresses: vec![
            "/ip4/127.0.0.1/tcp/4001".into(),
            "/ip6/::1/udp/4001/quic-v1".into(),
        ],
        stores: vec![
            StoreEntry {
                name: "alpha".into(),
                size: 10,
                hash: "0a".repeat(32),
                lamport: 1,
            },
            StoreEntry {
                name: "beta".into(),
                size: 20,
                hash: "0b".repeat(32),
                lamport: 2,
            },
        ],
        agent_version: "dig-sidecar/0.1.0".into(),
        timestamp_ms: now_ms(),
    }
    .sign(&KEYPAIR)
    .expect("signing")
}

pub fn signed_record_json() -> Vec<u8> {
    serde_json::to_vec(&signed_record()).expect("records encode")
}

/// A valid removal of [`KEYPAIR`]'s record, signed now.
pub fn signed_removal() -> SignedUnregister {
    UnregisterRequest::new_signed(&KEYPAIR, "testnet").expect("signing")
}

pub fn signed_removal_json() -> Vec<u8> {
    serde_json::to_vec(&signed_removal()).expect("removals encode")
}
