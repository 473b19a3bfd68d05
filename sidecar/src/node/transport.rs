//! Builds the swarm: TCP secured with TLS 1.3 ([`TlsConfig`], AES-GCM first) or Noise, and QUIC;
//! or, on a private network (`--psk-file`), TCP wrapped in the pnet pre-shared-key handshake, then
//! the same TLS or Noise (QUIC cannot carry pnet, so it is left out). TCP connections use our
//! yamux adapter ([`YamuxConfig`]) for its larger data frames.

use std::time::Duration;

use futures::{AsyncRead, AsyncWrite, FutureExt, future, future::BoxFuture};
use libp2p::{
    PeerId, Swarm, SwarmBuilder, Transport,
    core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo, Version},
    noise, pnet, tcp,
};
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
                let security = TlsOrNoise::new(key)?;
                Ok::<_, BoxedError>(
                    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                        .and_then(move |socket, _| pnet::PnetConfig::new(psk).handshake(socket))
                        .upgrade(Version::V1Lazy)
                        .authenticate(security)
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

/// TLS first, then Noise, for the private network's transport, which is built by hand (the swarm
/// builder does this selection for the public one). Streams are either kind.
#[derive(Clone)]
struct TlsOrNoise {
    tls: TlsConfig,
    noise: noise::Config,
}

type SecuredStream<C> = future::Either<libp2p::tls::TlsStream<C>, noise::Output<C>>;

#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    #[error("Noise handshake: {0}")]
    Noise(#[from] noise::Error),
}

impl TlsOrNoise {
    fn new(keypair: &libp2p::identity::Keypair) -> Result<Self, BoxedError> {
        Ok(Self {
            tls: TlsConfig::new(keypair)?,
            noise: noise::Config::new(keypair)?,
        })
    }
}

impl UpgradeInfo for TlsOrNoise {
    type Info = &'static str;
    type InfoIter = std::iter::Chain<
        <TlsConfig as UpgradeInfo>::InfoIter,
        <noise::Config as UpgradeInfo>::InfoIter,
    >;

    fn protocol_info(&self) -> Self::InfoIter {
        self.tls.protocol_info().chain(self.noise.protocol_info())
    }
}

impl TlsOrNoise {
    /// The handshake of the protocol multistream-select agreed on, as the dialer (`outbound`) or
    /// the listener.
    fn handshake<C>(
        self,
        socket: C,
        protocol: &'static str,
        outbound: bool,
    ) -> BoxFuture<'static, Result<(PeerId, SecuredStream<C>), HandshakeError>>
    where
        C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        if self.tls.protocol_info().any(|tls| tls == protocol) {
            let handshake = if outbound {
                self.tls.upgrade_outbound(socket, protocol)
            } else {
                self.tls.upgrade_inbound(socket, protocol)
            };
            async move {
                let (peer, stream) = handshake.await?;
                Ok((peer, future::Either::Left(stream)))
            }
            .boxed()
        } else {
            let handshake = if outbound {
                self.noise.upgrade_outbound(socket, protocol)
            } else {
                self.noise.upgrade_inbound(socket, protocol)
            };
            async move {
                let (peer, stream) = handshake.await?;
                Ok((peer, future::Either::Right(stream)))
            }
            .boxed()
        }
    }
}

impl<C> InboundConnectionUpgrade<C> for TlsOrNoise
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, SecuredStream<C>);
    type Error = HandshakeError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, protocol: Self::Info) -> Self::Future {
        self.handshake(socket, protocol, false)
    }
}

impl<C> OutboundConnectionUpgrade<C> for TlsOrNoise
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, SecuredStream<C>);
    type Error = HandshakeError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, protocol: Self::Info) -> Self::Future {
        self.handshake(socket, protocol, true)
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use libp2p::{Multiaddr, PeerId, identity::Keypair, swarm::SwarmEvent, tls, yamux};

    use super::*;

    const WAIT: Duration = Duration::from_secs(20);

    fn node_config(psk: Option<pnet::PreSharedKey>) -> NodeConfig {
        NodeConfig {
            psk,
            ..NodeConfig::loopback(Keypair::generate_ed25519(), "transport-unit")
        }
    }

    /// The one security protocol a stock libp2p peer offers.
    #[derive(Clone, Copy, Debug)]
    enum StockSecurity {
        /// Older dig-sidecar nodes, and libp2p peers without TLS.
        Noise,
        /// libp2p peers without Noise (ChaCha20-Poly1305 first, libp2p's yamux).
        Tls,
        /// Older dig-sidecar nodes of a private network: pnet, then Noise.
        PrivateNoise(pnet::PreSharedKey),
    }

    fn stock_peer(security: StockSecurity) -> Swarm<libp2p::swarm::dummy::Behaviour> {
        let builder = SwarmBuilder::with_new_identity().with_tokio();
        let tcp = tcp::Config::default().nodelay(true);
        match security {
            StockSecurity::Noise => builder
                .with_tcp(tcp, noise::Config::new, yamux::Config::default)
                .unwrap()
                .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
                .unwrap()
                .with_swarm_config(|c| c.with_idle_connection_timeout(WAIT))
                .build(),
            StockSecurity::Tls => builder
                .with_tcp(tcp, tls::Config::new, yamux::Config::default)
                .unwrap()
                .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)
                .unwrap()
                .with_swarm_config(|c| c.with_idle_connection_timeout(WAIT))
                .build(),
            StockSecurity::PrivateNoise(psk) => builder
                .with_other_transport(|key| {
                    tcp::tokio::Transport::new(tcp)
                        .and_then(move |socket, _| pnet::PnetConfig::new(psk).handshake(socket))
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise::Config::new(key).unwrap())
                        .multiplex(yamux::Config::default())
                })
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

    async fn node_connects_both_ways(psk: Option<pnet::PreSharedKey>, security: StockSecurity) {
        let protocols = NetworkProtocols::new("transport-unit").unwrap();
        for node_dials in [true, false] {
            let mut node = build_swarm(&node_config(psk), &protocols, &mut Registry::default())
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

    #[tokio::test]
    async fn a_node_connects_both_ways_to_peers_with_only_noise_or_only_tls() {
        node_connects_both_ways(None, StockSecurity::Noise).await;
        node_connects_both_ways(None, StockSecurity::Tls).await;
    }

    #[tokio::test]
    async fn a_private_network_node_connects_both_ways_to_older_noise_only_nodes() {
        let psk = pnet::PreSharedKey::new([7; 32]);
        node_connects_both_ways(Some(psk), StockSecurity::PrivateNoise(psk)).await;
    }

    #[tokio::test]
    async fn private_network_nodes_secure_their_connections_with_tls() {
        let psk = pnet::PreSharedKey::new([7; 32]);
        let protocols = NetworkProtocols::new("transport-unit").unwrap();
        let security = TlsOrNoise::new(&Keypair::generate_ed25519()).unwrap();
        assert_eq!(
            security.protocol_info().collect::<Vec<_>>(),
            ["/tls/1.0.0", "/noise"],
            "offered in this order"
        );
        let mut a = build_swarm(
            &node_config(Some(psk)),
            &protocols,
            &mut Registry::default(),
        )
        .expect("a private node's swarm");
        let mut b = build_swarm(
            &node_config(Some(psk)),
            &protocols,
            &mut Registry::default(),
        )
        .expect("a private node's swarm");
        let address = listening(&mut b).await;
        a.dial(address).unwrap();
        both_connected(&mut a, &mut b).await;
    }
}
