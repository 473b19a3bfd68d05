//! Peer discovery helpers: the bootstrap registry client loop, `/dnsaddr` bootstraps, address
//! rules and backoff.
//! (Kademlia and mDNS run inside the swarm, see `node`.)

pub mod addresses;
pub mod backoff;
pub mod dnsaddr;
pub mod registry;
