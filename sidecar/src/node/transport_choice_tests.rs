//! Two in-process nodes on loopback, listening on TCP and QUIC: a peer first reached over QUIC is
//! soon connected over TCP alone, where bulk data costs less CPU.

use std::time::{Duration, Instant};

use libp2p::{Multiaddr, identity::Keypair, multiaddr::Protocol};
use prometheus_client::registry::Registry;

use super::{NodeConfig, NodeHandle, start};

/// Identify, the TCP dial, then the redundant QUIC connection's close, on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

fn tcp_and_quic() -> NodeConfig {
    NodeConfig {
        listen: vec![
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
        ],
        ..NodeConfig::loopback(Keypair::generate_ed25519(), "transport-choice-unit")
    }
}

async fn quic_address(node: &NodeHandle) -> Multiaddr {
    let deadline = Instant::now() + WAIT;
    loop {
        let snapshot = node.snapshot().await.unwrap();
        let quic = snapshot
            .listen_addresses
            .iter()
            .find(|address| super::addresses::is_quic(address));
        if let Some(address) = quic {
            return address.clone().with(Protocol::P2p(node.local_peer_id()));
        }
        assert!(
            Instant::now() < deadline,
            "a QUIC listen address within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_dialed_over_quic_ends_up_connected_over_tcp_alone() {
    let mut dialer_metrics = Registry::default();
    let (dialer, _dialer_task) = start(tcp_and_quic(), &mut dialer_metrics).unwrap();
    let (listener, _listener_task) = start(tcp_and_quic(), &mut Registry::default()).unwrap();
    dialer.dial(quic_address(&listener).await).await.unwrap();
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let snapshot = dialer.snapshot().await.unwrap();
        let connections: Vec<String> = snapshot
            .connected
            .iter()
            .flat_map(|peer| peer.addresses.clone())
            .collect();
        if !connections.is_empty() && connections.iter().all(|a| a.contains("/tcp/")) {
            break;
        }
        if seen.last() != Some(&connections) {
            seen.push(connections);
        }
        assert!(
            Instant::now() < deadline,
            "connected over TCP alone within {WAIT:?}; connections seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The QUIC connection may come and go between two snapshots; the swarm's metrics saw it.
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &dialer_metrics).unwrap();
    let established = |transport: &str| {
        metrics.lines().any(|line| {
            line.starts_with("libp2p_swarm_connections_established_total")
                && line.contains("role=\"Dialer\"")
                && line.contains(transport)
        })
    };
    assert!(
        established("quic-v1"),
        "a QUIC connection first:\n{metrics}"
    );
    assert!(established("/tcp"), "then a TCP one:\n{metrics}");
    dialer.shutdown().await;
    listener.shutdown().await;
}
