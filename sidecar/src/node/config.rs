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
    /// `/dnsaddr` bootstraps are configured.
    pub dns_enabled: bool,
    pub enable_dht: bool,
    pub enable_mdns: bool,
    pub allow_loopback: bool,
    /// Confirm external addresses with AutoNAT v2 (client) and dial peers back for theirs (server).
    pub enable_autonat: bool,
    pub psk: Option<PreSharedKey>,
    pub max_connections: u32,
    /// Connections the node keeps by dialing and rotating; at most `max_connections`.
    pub target_peers: u32,
}

impl NodeConfig {
    /// A node on 127.0.0.1 (TCP, a port the OS picks) that finds nobody by itself: no registry,
    /// DHT, mDNS or AutoNAT. For tests and tools that connect nodes by hand.
    pub fn loopback(keypair: Keypair, network_id: &str) -> Self {
        Self {
            keypair,
            network_id: network_id.to_string(),
            listen: vec![
                "/ip4/127.0.0.1/tcp/0"
                    .parse()
                    .expect("a valid loopback address"),
            ],
            announce: Vec::new(),
            registry_enabled: false,
            dns_enabled: false,
            enable_dht: false,
            enable_mdns: false,
            allow_loopback: true,
            enable_autonat: false,
            psk: None,
            max_connections: 64,
            target_peers: 24,
        }
    }
}
