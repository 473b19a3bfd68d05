//! Builds the swarm: TCP and QUIC with Noise and Yamux, or, on a private network (`--psk-file`),
//! TCP wrapped in the pnet pre-shared-key handshake (QUIC cannot carry pnet, so it is left out).
//! TCP connections use our yamux adapter ([`YamuxConfig`]) for its larger data frames.

use std::time::Duration;

use libp2p::{Swarm, SwarmBuilder, Transport, core::upgrade::Version, noise, pnet, tcp};
use prometheus_client::registry::Registry;

use super::{
    behaviour::{Behaviour, NetworkProtocols},
    config::NodeConfig,
    handle::NodeError,
    muxer::YamuxConfig,
    tls::TlsConfig,
};

type BoxedError = Box<dyn std::error::Error + Send + Sync>;

/// How long a connection without any active protocol stays open; long because peers of one
/// network stay connected to replicate, and ping detects dead connections anyway.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(3600);

pub fn build_swarm(
    config: &NodeConfig,
    protocols: &NetworkProtocols,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>, NodeError> {
    let build_error = |error: &dyn std::fmt::Display| NodeError::Build(error.to_string());
    let swarm_config =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    match config.psk {
        None => Ok(SwarmBuilder::with_existing_identity(config.keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                (TlsConfig::new, noise::Config::new),
                YamuxConfig::default,
            )
            .map_err(|e| build_error(&e))?
            .with_quic()
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key| Behaviour::new(key, config, protocols).map_err(BoxedError::from))
            .map_err(|e| build_error(&e))?
            .with_swarm_config(swarm_config)
            .build()),
        Some(psk) => Ok(SwarmBuilder::with_existing_identity(config.keypair.clone())
            .with_tokio()
            .with_other_transport(|key| {
                let noise = noise::Config::new(key).map_err(BoxedError::from)?;
                Ok::<_, BoxedError>(
                    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                        .and_then(move |socket, _| pnet::PnetConfig::new(psk).handshake(socket))
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise)
                        .multiplex(YamuxConfig::default())
                        .timeout(Duration::from_secs(20)),
                )
            })
            .map_err(|e| build_error(&e))?
            .with_bandwidth_metrics(registry)
            .with_behaviour(|key| Behaviour::new(key, config, protocols).map_err(BoxedError::from))
            .map_err(|e| build_error(&e))?
            .with_swarm_config(swarm_config)
            .build()),
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use libp2p::{Multiaddr, PeerId, identity::Keypair, swarm::SwarmEvent, tls, yamux};

    use super::*;

    const WAIT: Duration = Duration::from_secs(20);

    fn node_config() -> NodeConfig {
        NodeConfig {
            keypair: Keypair::generate_ed25519(),
            network_id: "transport-unit".into(),
            listen: Vec::new(),
            announce: Vec::new(),
            registry_enabled: false,
            dns_enabled: false,
            enable_dht: false,
            enable_mdns: false,
            allow_loopback: true,
            enable_autonat: false,
            psk: None,
            max_connections: 16,
            target_peers: 8,
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum StockSecurity {
        /// Older dig-sidecar nodes, and libp2p peers without TLS.
        NoiseOnly,
        /// libp2p peers without Noise (ChaCha20-Poly1305 first, libp2p's yamux).
        TlsOnly,
    }

    fn stock_peer(security: StockSecurity) -> Swarm<libp2p::swarm::dummy::Behaviour> {
        let builder = SwarmBuilder::with_new_identity().with_tokio();
        let tcp = tcp::Config::default().nodelay(true);
        match security {
            StockSecurity::NoiseOnly => builder
                .with_tcp(tcp, noise::Config::new, yamux::Config::default)
                .unwrap()
                .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
                .unwrap()
                .with_swarm_config(|c| c.with_idle_connection_timeout(WAIT))
                .build(),
            StockSecurity::TlsOnly => builder
                .with_tcp(tcp, tls::Config::new, yamux::Config::default)
                .unwrap()
                .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
                .unwrap()
                .with_swarm_config(|c| c.with_idle_connection_timeout(WAIT))
                .build(),
        }
    }

    async fn listening<B: libp2p::swarm::NetworkBehaviour>(swarm: &mut Swarm<B>) -> Multiaddr {
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    }

    /// Whether `event` is a connection to `peer`; a failed dial fails the test.
    fn connected_to<T>(event: &SwarmEvent<T>, peer: PeerId) -> bool {
        if let SwarmEvent::OutgoingConnectionError { error, .. } = event {
            panic!("dialing {peer}: {error}");
        }
        matches!(event, SwarmEvent::ConnectionEstablished { peer_id, .. } if *peer_id == peer)
    }

    /// Drives both swarms until each reports a connection to the other.
    async fn both_connected<A, B>(a: &mut Swarm<A>, b: &mut Swarm<B>)
    where
        A: libp2p::swarm::NetworkBehaviour,
        B: libp2p::swarm::NetworkBehaviour,
    {
        let (a_peer, b_peer) = (*a.local_peer_id(), *b.local_peer_id());
        let (mut a_done, mut b_done) = (false, false);
        tokio::time::timeout(WAIT, async {
            while !(a_done && b_done) {
                tokio::select! {
                    event = a.select_next_some() => a_done |= connected_to(&event, b_peer),
                    event = b.select_next_some() => b_done |= connected_to(&event, a_peer),
                }
            }
        })
        .await
        .expect("both ends connected");
    }

    #[tokio::test]
    async fn a_node_connects_both_ways_to_peers_with_only_noise_or_only_tls() {
        let protocols = NetworkProtocols::new("transport-unit").unwrap();
        for security in [StockSecurity::NoiseOnly, StockSecurity::TlsOnly] {
            for node_dials in [true, false] {
                let mut node = build_swarm(&node_config(), &protocols, &mut Registry::default())
                    .expect("the node's swarm");
                let mut stock = stock_peer(security);
                if node_dials {
                    let address = listening(&mut stock).await;
                    node.dial(address).unwrap();
                } else {
                    let address = listening(&mut node).await;
                    stock.dial(address).unwrap();
                }
                both_connected(&mut node, &mut stock).await;
            }
        }
    }
}
