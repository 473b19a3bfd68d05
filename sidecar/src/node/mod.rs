//! The libp2p node: one swarm owned by one event loop task, driven through [`NodeHandle`].

mod addresses;
#[cfg(test)]
mod autonat_tests;
mod behaviour;
mod config;
mod dial_policy;
mod event_loop;
mod handle;
mod muxer;
mod peer_book;
mod peer_set;
mod status;
mod tls;
mod transport;

use prometheus_client::registry::Registry;
use tokio::{
    sync::{broadcast, mpsc},
    task::JoinHandle,
};

pub use behaviour::{MAX_GOSSIP_MESSAGE_BYTES, NetworkProtocols};
pub use config::NodeConfig;
pub use handle::{NodeError, NodeEvent, NodeHandle};
pub use muxer::{YAMUX_SPLIT_SEND_SIZE, YamuxConfig};
pub use status::{
    AutonatStats, BannedPeer, ConnectedPeer, DiscoveredPeer, DiscoverySource, DiscoveryStats,
    NodeSnapshot, RegistryOutcome, SourceStats,
};
pub use tls::{TlsConfig, TlsError};

use crate::metrics::NodeMetrics;

/// Builds the swarm, starts listening and spawns the event loop. Needs a tokio runtime.
pub fn start(
    config: NodeConfig,
    registry: &mut Registry,
) -> Result<(NodeHandle, JoinHandle<()>), NodeError> {
    let protocols = NetworkProtocols::new(&config.network_id).map_err(NodeError::Build)?;
    let libp2p_metrics = libp2p::metrics::Metrics::new(registry);
    let metrics = NodeMetrics::register(registry);
    let mut swarm = transport::build_swarm(&config, &protocols, registry)?;

    for address in &config.listen {
        if config.psk.is_some() && addresses::is_quic(address) {
            tracing::warn!(
                %address,
                "QUIC is disabled on a private network (--psk-file works over TCP only); not listening"
            );
            continue;
        }
        swarm
            .listen_on(address.clone())
            .map_err(|error| NodeError::Listen {
                address: address.clone(),
                reason: error.to_string(),
            })?;
    }
    for address in &config.announce {
        swarm.add_external_address(address.clone());
    }

    let (command_sender, commands) = mpsc::channel(256);
    let (events, _) = broadcast::channel(1024);
    let handle = NodeHandle {
        commands: command_sender,
        events: events.clone(),
        stream_control: swarm.behaviour().stream.new_control(),
        local_peer_id: *swarm.local_peer_id(),
        network_id: config.network_id.clone(),
    };
    let event_loop = event_loop::EventLoop::new(
        swarm,
        commands,
        events,
        libp2p_metrics,
        metrics,
        protocols,
        event_loop::LoopSettings {
            allow_loopback: config.allow_loopback,
            registry_enabled: config.registry_enabled,
            dns_enabled: config.dns_enabled,
            dht_enabled: config.enable_dht,
            mdns_enabled: config.enable_mdns,
            autonat_enabled: config.enable_autonat,
            announce: config.announce.clone(),
            target_peers: config.target_peers as usize,
        },
    );
    let task = tokio::spawn(event_loop.run());
    Ok((handle, task))
}
