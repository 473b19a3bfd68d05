//! DIG Network peer registry: the signed peer record, the REST server and its client.
//!
//! - [`record`]: wire types of signed records, canonical bytes, signing, verification, bounds.
//! - [`api`]: request and response types of the REST API.
//! - [`client`]: [`client::RegistryClient`], used by dig-sidecar, dig-operator and federation.
//! - [`registry`]: the in-memory soft state (indexes, expiry, views).
//! - [`server`], [`federation`], [`metrics`], [`config`]: the `dig-bootstrap` server.

pub mod api;
pub mod client;
pub mod config;
pub mod federation;
pub mod html;
pub mod metrics;
pub mod record;
pub mod registry;
pub mod server;

pub use api::{
    HealthResponse, PeerInfo, PeersQuery, PeersResponse, RegisterResponse, StatsResponse,
};
pub use client::{ClientError, RegistryClient};
pub use record::{PeerRecord, RecordError, SignedPeerRecord, SignedUnregister, StoreEntry};

/// Installs ring as the process-wide rustls crypto provider, unless one is installed already.
/// Both the ring and aws-lc-rs back ends can be compiled into one binary; without an installed
/// provider the first TLS use panics.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
