//! Peer discovery from outside the swarm: the bootstrap registry client loop and `/dnsaddr`
//! bootstraps. (Kademlia and mDNS run inside the swarm, see `node`.)

pub mod dnsaddr;
pub mod registry;
