//! AutoNAT between two in-process nodes on loopback: the dialing node's observed address is
//! dialed back and confirmed, and kept only when loopback networks were asked for.

use std::time::{Duration, Instant};

use libp2p::{Multiaddr, identity::Keypair, multiaddr::Protocol};
use prometheus_client::registry::Registry;

use super::{NodeConfig, NodeHandle, NodeSnapshot, start};

const NETWORK: &str = "autonat-unit";
/// Longer than the AutoNAT client's 5 s probe interval, with room for a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

fn config(allow_loopback: bool, enable_autonat: bool) -> NodeConfig {
    NodeConfig {
        keypair: Keypair::generate_ed25519(),
        network_id: NETWORK.into(),
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        announce: Vec::new(),
        registry_enabled: false,
        dns_enabled: false,
        enable_dht: false,
        enable_mdns: false,
        allow_loopback,
        enable_autonat,
        psk: None,
        max_connections: 16,
        target_peers: 8,
    }
}

async fn listening(node: &NodeHandle) -> Multiaddr {
    let deadline = Instant::now() + WAIT;
    loop {
        let snapshot = node.snapshot().await.unwrap();
        if let Some(address) = snapshot.listen_addresses.first() {
            return address.clone();
        }
        assert!(Instant::now() < deadline, "node listening within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `node`'s listen address with its peer id, as another node dials it.
async fn dial_address(node: &NodeHandle) -> Multiaddr {
    listening(node)
        .await
        .with(Protocol::P2p(node.local_peer_id()))
}

/// Starts a server node and a client node with `client`'s settings, has the client dial the
/// server (the AutoNAT client asks only peers it dialed), and waits until `done` holds for the
/// client's snapshot.
async fn probe_from(
    client: NodeConfig,
    done: impl Fn(&NodeSnapshot) -> bool,
) -> (NodeSnapshot, Multiaddr) {
    let (server, _server_task) = start(config(true, true), &mut Registry::default()).unwrap();
    let (client, _client_task) = start(client, &mut Registry::default()).unwrap();
    let client_address = listening(&client).await;
    client.dial(dial_address(&server).await).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let snapshot = client.snapshot().await.unwrap();
        if done(&snapshot) {
            server.shutdown().await;
            client.shutdown().await;
            return (snapshot, client_address);
        }
        assert!(
            Instant::now() < deadline,
            "AutoNAT outcome within {WAIT:?}: {:?}",
            snapshot.discovery.autonat
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_address_is_confirmed_by_a_dial_back_when_loopback_is_allowed() {
    // The probe is counted on the event after the confirmation: wait for both.
    let (snapshot, own) = probe_from(config(true, true), |snapshot| {
        !snapshot.external_addresses.is_empty() && snapshot.discovery.autonat.probes_succeeded >= 1
    })
    .await;
    assert_eq!(snapshot.external_addresses, vec![own.clone()]);
    assert_eq!(
        snapshot.discovery.autonat.confirmed_addresses,
        vec![own.to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_allow_loopback_no_loopback_address_is_dialed_so_none_is_probed() {
    let (node, _task) = start(config(false, true), &mut Registry::default()).unwrap();
    let (other, _other_task) = start(config(true, true), &mut Registry::default()).unwrap();
    let error = node.dial(dial_address(&other).await).await.unwrap_err();
    assert!(error.to_string().contains("--allow-loopback"), "{error}");
    let snapshot = node.snapshot().await.unwrap();
    assert!(snapshot.connected.is_empty());
    assert!(snapshot.external_addresses.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_autonat_no_address_is_probed_or_confirmed() {
    // Connected for two probe intervals, and nothing: the client that would ask is not there.
    let (client, _task) = start(config(true, false), &mut Registry::default()).unwrap();
    let (server, _server_task) = start(config(true, true), &mut Registry::default()).unwrap();
    client.dial(dial_address(&server).await).await.unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    let snapshot = client.snapshot().await.unwrap();
    assert!(!snapshot.connected.is_empty(), "the nodes stayed connected");
    assert!(!snapshot.discovery.autonat.enabled);
    assert!(snapshot.external_addresses.is_empty());
    assert_eq!(snapshot.discovery.autonat.probes_succeeded, 0);
    assert_eq!(
        server
            .snapshot()
            .await
            .unwrap()
            .discovery
            .autonat
            .dial_backs_succeeded,
        0
    );
}
