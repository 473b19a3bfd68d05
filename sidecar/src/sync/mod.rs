//! Replication between nodes: the sync wire protocol over libp2p-stream, chunked verified
//! downloads from several peers, gossip announcements, anti-entropy inventories, and the
//! replicator that ties them to the local store.

pub mod announce;
pub mod client;
pub mod download;
pub mod metrics;
pub mod protocol;
pub mod server;
pub mod stream_pool;

pub use protocol::sync_protocol;
pub mod config;
pub mod replicator;
pub mod status;

pub use config::ReplicationConfig;
pub use replicator::{Replicator, ReplicatorHandle, SyncError};
pub use status::{StoreStatus, SyncState};

#[cfg(test)]
mod tests;
