//! Reconciliation: dereference -> validate -> build (pure) -> apply -> status.

pub mod apis;
pub mod applied;
pub mod apply;
pub mod args;
pub mod aws_dns;
pub mod build;
pub mod build_node;
pub mod conditions;
pub mod context;
pub mod dns;
pub mod dnsaddr;
pub mod drain;
pub mod error;
pub mod fixtures;
pub mod meta;
#[cfg(test)]
pub mod mock_api;
pub mod monitors;
pub mod network;
pub mod node;
pub mod pod;
pub mod pod_http;
pub mod resize;
pub mod scale_down;
pub mod status;
pub mod validate;
pub mod volumes;
