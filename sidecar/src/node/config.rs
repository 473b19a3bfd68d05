//! What the node needs to start.

use libp2p::{Multiaddr, identity::Keypair, pnet::PreSharedKey};

/// Everything the node needs to start; `config::RunArgs` is turned into this.
#[derive(Clone)]
pub struct NodeConfig {
    pub keypair: Keypair,
    pub network_id: String,
    pub listen: Vec<Multiaddr>,
    pub announce: Vec<Multiaddr>,
    pub registry_enabled: bool,
    pub enable_dht: bool,
    pub enable_mdns: bool,
    pub allow_loopback: bool,
    /// Confirm external addresses with AutoNAT v2 (client) and dial peers back for theirs (server).
    pub enable_autonat: bool,
    pub psk: Option<PreSharedKey>,
    pub max_connections: u32,
}
