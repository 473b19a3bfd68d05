//! Peer discovery from outside the swarm: the bootstrap registry client loop. (Kademlia and mDNS
//! run inside the swarm, see `node`.)

pub mod registry;
