//! A deterministic simulator of a DIG network: thousands of nodes' real replication engines (the
//! sans-IO core of `dig-sidecar`) in one process, over a simulated network with latency,
//! bandwidth, loss and partitions. A seed gives the same run. `dig-sim` runs the scenarios
//! ([`scenario`]) and prints what they measure.

pub mod inventory;
pub mod net;
pub mod node;
pub mod reconcile;
pub mod scenario;
pub mod world;
