//! DIG Network node: identity, discovery, replication and the HTTP API.

pub mod discovery;
pub mod metrics;
pub mod node;
pub mod store;
pub mod sync;
