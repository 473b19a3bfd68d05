//! Replication between nodes: the engine (a sans-IO state machine that decides everything about
//! stores) and its driver, the sync wire protocol over libp2p-stream, chunked verified downloads
//! from several peers, gossip announcements and anti-entropy inventories of signed versions.

pub mod announce;
pub mod chunk_maps;
pub mod chunk_plan;
pub mod client;
pub mod config;
pub mod delta;
pub mod download;
pub mod driver;
pub mod engine;
pub mod holder_notices;
pub mod metrics;
pub mod protocol;
pub mod reconcile;
pub mod server;
pub mod status;
pub mod stream_pool;
pub mod swarming;

pub use config::ReplicationConfig;
pub use driver::{Replicator, ReplicatorHandle, SyncError};
pub use protocol::sync_protocol;
pub use status::{LastDownload, StoreStatus, SyncState};

#[cfg(test)]
mod tests;
