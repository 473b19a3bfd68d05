//! DIG Network peer registry: the REST server, its in-memory soft state and federation.
//!
//! - [`registry`]: the in-memory soft state (indexes, expiry, views).
//! - [`server`] (with its federation pulls), [`metrics`], [`config`]: the `dig-bootstrap` server.
//!
//! The signed record, the API types and the client live in `dig-core`, which the node and the
//! operator share; they are the registry's API, so they are re-exported here under their paths.

pub use dig_core::{api, client, html, record};

pub mod config;
pub mod metrics;
pub mod registry;
pub mod server;

pub use api::{
    HealthResponse, PeerInfo, PeersQuery, PeersResponse, RegisterResponse, StatsResponse,
};
pub use client::{ClientError, RegistryClient};
pub use record::{PeerRecord, RecordError, SignedPeerRecord, SignedUnregister, StoreEntry};
