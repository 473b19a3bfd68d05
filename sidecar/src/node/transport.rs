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
                noise::Config::new,
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
