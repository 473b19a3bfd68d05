//! Network isolation: two network ids on one registry never connect, a foreign node that dials
//! directly is disconnected, and a private network (`--psk-file`) admits only nodes with its key.

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dig_e2e::{
    bootstrap::{BootstrapServer, metric_value},
    network::{NodeSpec, SidecarNode, wait_fully_connected, write_psk_file},
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

async fn start_nodes(
    root: &std::path::Path,
    network: &str,
    count: usize,
    bootstrap: &BootstrapServer,
    extra: &[String],
) -> anyhow::Result<Vec<SidecarNode>> {
    let mut nodes = Vec::new();
    for index in 0..count {
        let mut spec = NodeSpec::loopback(
            &format!("{network}-{index}"),
            network,
            root.join(format!("{network}-{index}")),
            std::slice::from_ref(&bootstrap.base_url),
        );
        spec.extra_args.extend(extra.iter().cloned());
        nodes.push(SidecarNode::start(spec).await?);
    }
    Ok(nodes)
}

async fn connected_everywhere(nodes: &[SidecarNode]) -> anyhow::Result<BTreeSet<String>> {
    let mut all = BTreeSet::new();
    for node in nodes {
        all.extend(node.connected_peer_ids().await?);
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_networks_on_one_registry_never_connect() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let bootstrap = BootstrapServer::start(&[]).await?;
    let alpha = start_nodes(root.path(), "alpha", 2, &bootstrap, &[]).await?;
    let beta = start_nodes(root.path(), "beta", 2, &bootstrap, &[]).await?;
    wait_fully_connected(&alpha, CONNECT_TIMEOUT).await?;
    wait_fully_connected(&beta, CONNECT_TIMEOUT).await?;

    let alpha_ids: BTreeSet<String> = alpha.iter().map(|n| n.peer_id.clone()).collect();
    let beta_ids: BTreeSet<String> = beta.iter().map(|n| n.peer_id.clone()).collect();
    // Several registry polls later, still nothing crosses.
    for _ in 0..10 {
        assert!(connected_everywhere(&alpha).await?.is_disjoint(&beta_ids));
        assert!(connected_everywhere(&beta).await?.is_disjoint(&alpha_ids));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Make beta dial alpha-0 directly: register alpha-0's key and addresses as a beta peer (the
    // test holds its key file). Both sides then see identify's network and hang up.
    let target = &alpha[0];
    let key_bytes = std::fs::read(target.spec.data_dir.join(".dig-node/identity.key"))?;
    let keypair = libp2p_identity::Keypair::from_protobuf_encoding(&key_bytes)?;
    let connections = target.get_json("/connections").await?;
    let addresses: Vec<String> = connections["announcedAddresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert!(!addresses.is_empty());
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let forged = dig_bootstrap::PeerRecord {
        peer_id: keypair.public().to_peer_id().to_base58(),
        network_id: "beta".into(),
        addresses,
        stores: Vec::new(),
        agent_version: "dig-e2e".into(),
        timestamp_ms: now_ms + 1000,
    }
    .sign(&keypair)?;
    bootstrap.client()?.register(&forged).await?;

    let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        let metrics = target.metrics().await?;
        let rejected =
            metric_value(&metrics, "dig_node_foreign_peers_rejected_total", &[]).unwrap_or(0.0);
        if rejected >= 1.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alpha-0 never rejected a beta dialer:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..10 {
        assert!(connected_everywhere(&alpha).await?.is_disjoint(&beta_ids));
        assert!(connected_everywhere(&beta).await?.is_disjoint(&alpha_ids));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Kademlia holds only the own network's peers.
    for node in alpha.iter().chain(&beta) {
        let connections = node.get_json("/connections").await?;
        assert!(
            connections["discovery"]["dht"]["peers"].as_u64().unwrap() <= 1,
            "{}",
            node.spec.name
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_network_admits_only_nodes_with_its_key() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let bootstrap = BootstrapServer::start(&[]).await?;
    let key_a = root.path().join("a.psk");
    let key_b = root.path().join("b.psk");
    write_psk_file(&key_a)?;
    write_psk_file(&key_b)?;
    let with = |path: &std::path::Path| vec!["--psk-file".to_string(), path.display().to_string()];
    let members = start_nodes(root.path(), "private", 2, &bootstrap, &with(&key_a)).await?;
    let mut outsider_spec = NodeSpec::loopback(
        "outsider",
        "private",
        root.path().join("outsider"),
        std::slice::from_ref(&bootstrap.base_url),
    );
    outsider_spec.extra_args.extend(with(&key_b));
    let outsider = SidecarNode::start(outsider_spec).await?;

    wait_fully_connected(&members, CONNECT_TIMEOUT).await?;
    // The outsider is listed by the registry and dialed, but the pnet handshake fails.
    for _ in 0..15 {
        assert!(outsider.connected_peer_ids().await?.is_empty());
        assert!(
            !connected_everywhere(&members)
                .await?
                .contains(&outsider.peer_id)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let discovered = outsider.get_json("/connections").await?["discoveredPeerCount"].as_u64();
    assert_eq!(discovered, Some(2), "the outsider did learn of the members");
    // A dial that fails in the pnet handshake is counted once the handshake gives up, which on a
    // loaded machine can take a while: wait for it, bounded.
    let mut failed_dials = 0.0;
    for _ in 0..150 {
        let metrics = outsider.metrics().await?;
        failed_dials =
            metric_value(&metrics, "dig_node_dials_total", &["result=\"failed\""]).unwrap_or(0.0);
        if failed_dials >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        failed_dials >= 1.0,
        "the outsider's dials to the members never failed (dig_node_dials_total{{result=\"failed\"}} = {failed_dials})"
    );

    // QUIC is off on a private network, and says so.
    for node in members.iter().chain([&outsider]) {
        let listening = node.get_json("/connections").await?["listeningAddresses"].clone();
        assert!(!listening.to_string().contains("quic"), "{listening}");
        assert!(
            node.process.output().contains("QUIC is disabled"),
            "{}",
            node.spec.name
        );
    }
    Ok(())
}
