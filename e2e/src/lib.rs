//! Helpers shared by the end-to-end tests, the local-network runner and the benchmarks:
//! locating the workspace binaries, starting them as real processes, and stopping them by PID.

pub mod bootstrap;
pub mod browser;
pub mod cluster;
pub mod dns;
pub mod hostile;
pub mod images;
pub mod loop_fs;
pub mod moto;
pub mod netns;
pub mod network;
pub mod operator;
pub mod process;
pub mod prometheus;
pub mod replication;
pub mod syncthing;
pub mod wait;
pub mod walkthrough;
