//! DIG Network node: identity, discovery, replication and the HTTP API.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod node;
pub mod run;
pub mod store;
pub mod sync;
