//! A bootstrap registry and real `dig-sidecar` processes on loopback: discovery, the API's view of
//! it, and a node that is killed and comes back.

use std::{collections::BTreeSet, time::Duration};

use dig_e2e::{
    bootstrap::metric_value,
    network::{LocalNetwork, wait_fully_connected},
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_find_each_other_and_the_api_and_metrics_agree() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let network = LocalNetwork::start(root.path(), "e2e-five", 5).await?;
    let took = network.wait_fully_connected(CONNECT_TIMEOUT).await?;
    eprintln!("5 nodes fully connected {took:?} after their APIs answered");

    let all: BTreeSet<String> = network.nodes.iter().map(|n| n.peer_id.clone()).collect();
    assert_eq!(all.len(), 5, "five distinct peer ids");
    for node in &network.nodes {
        let connections = node.get_json("/connections").await?;
        let others: BTreeSet<String> = all
            .iter()
            .filter(|id| **id != node.peer_id)
            .cloned()
            .collect();
        let connected = dig_e2e::network::peer_ids(&connections["connectedPeers"]);
        assert_eq!(connected, others, "{} connectedPeers", node.spec.name);
        assert_eq!(connections["peerCount"], 4, "{} peerCount", node.spec.name);
        assert_eq!(connections["peerId"], node.peer_id.as_str());
        assert_eq!(connections["networkId"], "e2e-five");
        let listening = connections["listeningAddresses"].as_array().unwrap();
        assert!(!listening.is_empty());
        for address in listening {
            let address = address.as_str().unwrap();
            assert!(
                !address.ends_with("/tcp/0") && !address.contains("/udp/0/"),
                "{address}"
            );
        }
        let registry = &connections["discovery"]["registry"];
        assert_eq!(registry["enabled"], true);
        assert_eq!(registry["answered"], true);
        assert_eq!(registry["peers"], 4, "{}: {registry}", node.spec.name);
        assert_eq!(connections["discovery"]["mdns"]["enabled"], false);
        assert_eq!(connections["discovery"]["dht"]["enabled"], true);

        let metrics = node.metrics().await?;
        assert_eq!(
            metric_value(&metrics, "dig_node_connected_peers", &[]),
            Some(4.0),
            "{}",
            node.spec.name
        );
        assert_eq!(
            metric_value(
                &metrics,
                "dig_node_discovered_peers",
                &["source=\"registry\""]
            ),
            Some(4.0)
        );
        assert!(
            metric_value(
                &metrics,
                "dig_node_registry_registrations_total",
                &["result=\"ok\""]
            )
            .unwrap_or(0.0)
                >= 1.0
        );
        // libp2p-metrics shares the registry.
        assert!(
            metric_value(&metrics, "libp2p_identify_received_total", &[]).unwrap_or(0.0) >= 4.0,
            "{metrics}"
        );

        let health = node.get_json("/health").await?;
        assert_eq!(health["status"], "ok");
        assert_eq!(health["peerId"], node.peer_id.as_str());
        assert!(health["version"].is_string());
        let ready = reqwest::get(node.url("/ready")).await?;
        assert_eq!(ready.status(), 200);
    }

    // The registry holds every node with the real, bound loopback ports it registered.
    let peers: serde_json::Value = reqwest::get(network.bootstrap.url("/peers?network=e2e-five"))
        .await?
        .json()
        .await?;
    let registered = dig_e2e::network::peer_ids(&peers["peers"]);
    assert_eq!(registered, all);
    for peer in peers["peers"].as_array().unwrap() {
        let addresses = peer["addresses"].as_array().unwrap();
        assert!(!addresses.is_empty(), "{peer}");
        for address in addresses {
            let address = address.as_str().unwrap();
            assert!(address.starts_with("/ip4/127.0.0.1/"), "{address}");
            assert!(
                !address.ends_with("/tcp/0") && !address.contains("/udp/0/"),
                "{address}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_comes_back_with_its_peer_id_and_is_reconnected() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let mut network = LocalNetwork::start(root.path(), "e2e-restart", 4).await?;
    network.wait_fully_connected(CONNECT_TIMEOUT).await?;

    let victim_id = network.nodes[1].peer_id.clone();
    network.nodes[1].kill();
    // The others notice the loss.
    let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        let mut still = 0;
        for node in network.nodes.iter().filter(|n| n.peer_id != victim_id) {
            if node.connected_peer_ids().await?.contains(&victim_id) {
                still += 1;
            }
        }
        if still == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "peers still list the killed node"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    network.nodes[1].restart().await?;
    assert_eq!(
        network.nodes[1].peer_id, victim_id,
        "same peer id after restart"
    );
    let took = wait_fully_connected(&network.nodes, CONNECT_TIMEOUT).await?;
    eprintln!("reconnected {took:?} after the restarted node answered");
    for node in network.nodes.iter().filter(|n| n.peer_id != victim_id) {
        assert!(node.connected_peer_ids().await?.contains(&victim_id));
    }
    Ok(())
}
