//! A hand-crafted hostile peer against real processes: while an honest transfer runs it sends
//! forged, unsigned, Lamport-`u64::MAX` and malformed versions on the gossip topic, oversized
//! lengths and a flood of sync streams, and garbage inventories. Nothing it sends changes a store,
//! each kind is counted, it ends up banned, the honest transfer completes and the nodes' memory
//! stays flat.

use std::{collections::BTreeMap, time::Duration};

use dig_e2e::{
    hostile::HostilePeer,
    network::{LocalNetwork, SidecarNode, resident_memory_bytes},
    replication::{metric_sum, peak_resident_bytes, store_status, wait_synced, write_store},
};
use libp2p::identity::Keypair;
use serde_json::Value;

/// Honest transfer during the attack.
const BIG: u64 = 256 << 20;
/// Memory a node may gain during the attack (its own download buffers included).
const MAX_GROWTH: u64 = 96 << 20;

async fn status(node: &SidecarNode, name: &str) -> Value {
    store_status(node, name).await.unwrap()
}

fn rejected(metrics: &str, reason: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("dig_sync_records_rejected_total{")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_peer_changes_nothing_is_banned_and_honest_transfers_go_on_with_memory_flat() {
    let root = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start_connected(root.path(), "repl-hostile", 2)
        .await
        .unwrap();
    let (source, receiver) = (&network.nodes[0], &network.nodes[1]);
    let mut expected = BTreeMap::new();
    expected.insert(
        "victim".to_string(),
        write_store(&source.spec.data_dir, "victim", 100_000, 1).unwrap(),
    );
    wait_synced(&[source, receiver], &expected, Duration::from_secs(60))
        .await
        .unwrap();
    let victim_before = status(receiver, "victim").await;

    let hostile = HostilePeer::start(&network.network_id).unwrap();
    hostile.serve_lies().unwrap();
    let source_peer = hostile.connect(source).await.unwrap();
    let receiver_peer = hostile.connect(receiver).await.unwrap();
    let rss_before: Vec<u64> = network
        .nodes
        .iter()
        .map(|n| resident_memory_bytes(n.process.pid()).unwrap())
        .collect();

    // The honest transfer starts...
    let big_hash = write_store(&source.spec.data_dir, "big", BIG, 7).unwrap();
    expected.insert("big".to_string(), big_hash.clone());

    // ...and the attack runs beside it. Sync streams first: an absurd length, then a flood of
    // streams that ask for chunks and never read the answers.
    for peer in [source_peer, receiver_peer] {
        assert!(
            hostile.send_oversized_length(peer).await.unwrap(),
            "a 4 GiB header length closes the stream"
        );
    }
    let held = hostile
        .flood_streams(source_peer, 150, "big", &big_hash)
        .await;
    eprintln!("the flood holds {} streams", held.len());
    // Still connected to both (a node may close a connection that floods it; dial again).
    hostile.connect(source).await.unwrap();
    hostile.connect(receiver).await.unwrap();

    // Then gossip, up to three rounds: a forgery in the owner's name, an unsigned version, a valid
    // signature on a Lamport value at the end of u64, garbage, and a change of a store the
    // hostile peer does not own.
    let owner = source.peer_id.clone();
    let forger = Keypair::generate_ed25519();
    let next = victim_before["lamport"].as_u64().unwrap() + 1;
    for round in 0..3u64 {
        let forged =
            HostilePeer::entry(&forger, &owner, "victim", next + round, b"forged").unwrap();
        let mut unsigned = hostile.own_entry("unsigned", next + round, b"x").unwrap();
        unsigned.as_object_mut().unwrap().remove("g");
        let far_ahead = hostile
            .own_entry("far-ahead", u64::MAX - round, b"x")
            .unwrap();
        let not_owner = hostile
            .own_entry("victim", next + round, b"mine now")
            .unwrap();
        // Three misbehaving messages ban the peer, so a later round may find no one to tell.
        let sent = match hostile
            .publish(vec![forged, unsigned, far_ahead, not_owner])
            .await
        {
            Ok(()) => {
                hostile
                    .publish_raw(format!("{{\"e\": [garbage {round}").into_bytes())
                    .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = sent {
            assert!(round > 0, "the first round reaches the nodes: {error:#}");
            eprintln!("round {round} not sent (banned by then): {error:#}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The honest transfer completes.
    wait_synced(&[receiver], &expected, Duration::from_secs(300))
        .await
        .unwrap();

    // Nothing the hostile peer sent changed anything.
    for node in [source, receiver] {
        let victim = status(node, "victim").await;
        assert_eq!(
            victim["version"], victim_before["version"],
            "{}",
            node.spec.name
        );
        assert_eq!(victim["owner"], owner.as_str());
        assert_eq!(victim["hash"], expected["victim"].as_str());
        for name in ["unsigned", "far-ahead"] {
            assert!(
                status(node, name).await.is_null(),
                "{name} on {}",
                node.spec.name
            );
        }
    }

    // Every kind was counted, and the hostile peer was banned by both nodes.
    for node in [source, receiver] {
        let metrics = node.metrics().await.unwrap();
        for reason in [
            "bad_signature",
            "unsigned",
            "lamport_ahead",
            "malformed",
            "unauthorised",
        ] {
            assert!(
                rejected(&metrics, reason) >= 1.0,
                "{}: no {reason} rejection counted",
                node.spec.name
            );
        }
        assert!(
            metric_sum(&metrics, "dig_sync_peers_banned_total") >= 1.0,
            "{}",
            node.spec.name
        );
        assert!(
            metric_sum(&metrics, "dig_node_peers_banned_total") >= 1.0,
            "{}",
            node.spec.name
        );
    }
    let source_metrics = source.metrics().await.unwrap();
    assert!(
        metric_sum(&source_metrics, "dig_sync_streams_refused_total") >= 1.0,
        "the stream flood hit the per-peer cap"
    );
    let hostile_id = hostile.peer_id.to_base58();
    for node in [source, receiver] {
        assert!(
            !node
                .connected_peer_ids()
                .await
                .unwrap()
                .contains(&hostile_id),
            "{} still connected to the banned peer",
            node.spec.name
        );
    }
    drop(held);

    // Memory stayed flat.
    for (node, before) in network.nodes.iter().zip(rss_before) {
        let now = resident_memory_bytes(node.process.pid()).unwrap();
        let peak = peak_resident_bytes(node.process.pid()).unwrap();
        eprintln!(
            "{}: resident {:.1} MB before the attack, {:.1} MB after, peak {:.1} MB",
            node.spec.name,
            before as f64 / 1e6,
            now as f64 / 1e6,
            peak as f64 / 1e6
        );
        assert!(
            peak < before + MAX_GROWTH,
            "{}: peak {peak} bytes, {before} before the attack",
            node.spec.name
        );
    }
}
