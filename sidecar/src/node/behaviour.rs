//! The composed libp2p behaviour, and the protocol names that keep one DIG network apart from
//! every other network (each carries the network id).

use std::time::Duration;

use libp2p::{
    StreamProtocol, allow_block_list, autonat, connection_limits, gossipsub, identify,
    identity::Keypair, kad, mdns, ping, swarm::NetworkBehaviour, swarm::behaviour::toggle::Toggle,
};

use super::config::NodeConfig;

/// The network-scoped names of one DIG network.
#[derive(Clone, Debug)]
pub struct NetworkProtocols {
    pub network_id: String,
    /// Identify's protocol version: `dig/<net>/1`.
    pub identify_version: String,
    /// `/dig/<net>/kad/1.0.0`
    pub kad: StreamProtocol,
    /// Gossipsub protocol prefix `/dig/<net>/meshsub` (versions appended by gossipsub).
    pub gossip_prefix: String,
    /// `dig/<net>/stores/1`
    pub stores_topic: String,
    /// Every DIG protocol of this network starts with this: `/dig/<net>/`.
    pub protocol_namespace: String,
}

impl NetworkProtocols {
    pub fn new(network_id: &str) -> Result<Self, String> {
        let kad = StreamProtocol::try_from_owned(format!("/dig/{network_id}/kad/1.0.0")).map_err(
            |error| format!("network id {network_id:?} is not usable in a protocol name: {error}"),
        )?;
        Ok(Self {
            network_id: network_id.to_string(),
            identify_version: format!("dig/{network_id}/1"),
            kad,
            gossip_prefix: format!("/dig/{network_id}/meshsub"),
            stores_topic: format!("dig/{network_id}/stores/1"),
            protocol_namespace: format!("/dig/{network_id}/"),
        })
    }

    /// Whether identify's answer shows a peer of this network: the same protocol version, at least
    /// one protocol of our namespace, and no DIG protocol of another network.
    pub fn accepts(&self, protocol_version: &str, protocols: &[StreamProtocol]) -> bool {
        if protocol_version != self.identify_version {
            return false;
        }
        let mut ours = false;
        for protocol in protocols {
            let name = protocol.as_ref();
            if name.starts_with(&self.protocol_namespace) {
                ours = true;
            } else if name.starts_with("/dig/") {
                return false;
            }
        }
        ours
    }
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub dial_policy: super::dial_policy::Behaviour,
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    pub gossipsub: gossipsub::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// AutoNAT v2 client: asks connected peers to dial our candidate addresses back.
    pub autonat_client: Toggle<autonat::v2::client::Behaviour>,
    /// AutoNAT v2 server: dials peers' candidate addresses back for them.
    pub autonat_server: Toggle<autonat::v2::server::Behaviour>,
    pub stream: libp2p_stream::Behaviour,
}

/// Gossip messages are small announcements; anything larger is refused.
pub const MAX_GOSSIP_MESSAGE_BYTES: usize = 256 * 1024;

impl Behaviour {
    pub fn new(
        key: &Keypair,
        config: &NodeConfig,
        protocols: &NetworkProtocols,
    ) -> Result<Self, String> {
        let peer_id = key.public().to_peer_id();
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(config.max_connections))
            // TCP and QUIC, plus an AutoNAT dial-back while it lasts.
            .with_max_established_per_peer(Some(3))
            .with_max_pending_incoming(Some(config.max_connections.max(16) / 2))
            .with_max_pending_outgoing(Some(config.max_connections.max(16) / 2));

        let identify = identify::Behaviour::new(
            identify::Config::new(protocols.identify_version.clone(), key.public())
                .with_agent_version(format!("dig-sidecar/{}", env!("CARGO_PKG_VERSION")))
                .with_push_listen_addr_updates(true),
        );

        let kad = if config.enable_dht {
            let mut kad_config = kad::Config::new(protocols.kad.clone());
            // Only peers that identify confirmed as ours enter the routing table.
            kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
            kad_config.set_periodic_bootstrap_interval(Some(Duration::from_secs(300)));
            let mut behaviour = kad::Behaviour::with_config(
                peer_id,
                kad::store::MemoryStore::new(peer_id),
                kad_config,
            );
            // Kademlia stays a client until an external address is confirmed; we serve at once.
            behaviour.set_mode(Some(kad::Mode::Server));
            Some(behaviour)
        } else {
            None
        };

        let gossip_config = gossipsub::ConfigBuilder::default()
            .protocol_id_prefix(protocols.gossip_prefix.clone())
            .validation_mode(gossipsub::ValidationMode::Strict)
            .max_transmit_size(MAX_GOSSIP_MESSAGE_BYTES)
            .heartbeat_interval(Duration::from_secs(1))
            .build()
            .map_err(|error| format!("gossipsub configuration: {error}"))?;
        let mut gossipsub = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key.clone()),
            gossip_config,
        )
        .map_err(|error| format!("gossipsub: {error}"))?;
        gossipsub
            .subscribe(&gossipsub::IdentTopic::new(protocols.stores_topic.clone()))
            .map_err(|error| format!("subscribing to {}: {error}", protocols.stores_topic))?;

        let mdns = if config.enable_mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|error| format!("starting mDNS: {error}"))?,
            )
        } else {
            None
        };

        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            dial_policy: super::dial_policy::Behaviour::new(config.allow_loopback),
            blocked: allow_block_list::Behaviour::default(),
            identify,
            ping: ping::Behaviour::new(ping::Config::new()),
            kad: Toggle::from(kad),
            gossipsub,
            mdns: Toggle::from(mdns),
            autonat_client: Toggle::from(
                config
                    .enable_autonat
                    .then(autonat::v2::client::Behaviour::default),
            ),
            autonat_server: Toggle::from(
                config
                    .enable_autonat
                    .then(autonat::v2::server::Behaviour::default),
            ),
            stream: libp2p_stream::Behaviour::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocols(names: &[&str]) -> Vec<StreamProtocol> {
        names
            .iter()
            .map(|name| StreamProtocol::try_from_owned(name.to_string()).unwrap())
            .collect()
    }

    #[test]
    fn protocol_names_carry_the_network_id() {
        let net = NetworkProtocols::new("testnet").unwrap();
        assert_eq!(net.kad.as_ref(), "/dig/testnet/kad/1.0.0");
        assert_eq!(net.identify_version, "dig/testnet/1");
        assert_eq!(net.stores_topic, "dig/testnet/stores/1");
    }

    #[test]
    fn identify_check_accepts_only_peers_of_the_same_network() {
        let net = NetworkProtocols::new("alpha").unwrap();
        let ours = protocols(&[
            "/ipfs/id/1.0.0",
            "/dig/alpha/kad/1.0.0",
            "/dig/alpha/meshsub/1.1.0",
        ]);
        assert!(net.accepts("dig/alpha/1", &ours));
        assert!(!net.accepts("dig/beta/1", &ours), "wrong protocol version");
        let mixed = protocols(&["/dig/alpha/kad/1.0.0", "/dig/beta/sync/1"]);
        assert!(
            !net.accepts("dig/alpha/1", &mixed),
            "speaks another network's protocol"
        );
        let ipfs = protocols(&["/ipfs/id/1.0.0", "/ipfs/kad/1.0.0"]);
        assert!(
            !net.accepts("dig/alpha/1", &ipfs),
            "no protocol of our network"
        );
        assert!(!net.accepts("ipfs/0.1.0", &ipfs));
    }
}
