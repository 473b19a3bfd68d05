//! DIG Network node: identity, discovery, replication and the HTTP API.

pub mod discovery;
pub mod metrics;
pub mod node;
pub mod store;
pub mod sync;
pub mod cli;
pub mod config;
pub mod http;
pub mod identity;
pub mod run;
