//! Chunk swarming between real `dig-sidecar` processes on loopback: receivers of a new store
//! fetch chunks from each other while they download it, so the source sends less than one copy
//! per receiver; and the messages that make it work are checked like any other.

use std::{collections::BTreeMap, time::Duration};

use dig_e2e::{
    hostile::HostilePeer,
    network::{LocalNetwork, SidecarNode},
    replication::{
        assert_folders_hold, metric_sum, metric_sum_labelled, one_node_holding, wait_synced,
        write_store,
    },
};
use futures::AsyncReadExt;

const MIB: u64 = 1 << 20;
const SYNC_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receivers_fetch_chunks_from_each_other_and_the_source_sends_less() {
    let root = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(root.path(), "repl-swarm", 4)
        .await
        .unwrap();
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await
        .unwrap();
    let source = &network.nodes[0];
    let receivers: Vec<&SidecarNode> = network.nodes[1..].iter().collect();
    let all: Vec<&SidecarNode> = network.nodes.iter().collect();

    let size = 256 * MIB;
    let mut expected = BTreeMap::new();
    let hash = write_store(&source.spec.data_dir, "shared", size, 11).unwrap();
    expected.insert("shared".to_owned(), hash);
    wait_synced(&all, &expected, SYNC_TIMEOUT).await.unwrap();

    let mut swarmed = 0.0;
    let mut received = 0.0;
    for node in &receivers {
        let metrics = node.metrics().await.unwrap();
        let from_receivers = metric_sum(&metrics, "dig_sync_swarmed_bytes_total");
        let all_bytes = metric_sum_labelled(
            &metrics,
            "dig_sync_transfer_bytes_total",
            r#"direction="Received""#,
        );
        eprintln!(
            "{}: {all_bytes} bytes received, {from_receivers} of them from other receivers",
            node.spec.name
        );
        swarmed += from_receivers;
        received += all_bytes;
    }
    let source_metrics = source.metrics().await.unwrap();
    let sent = metric_sum_labelled(
        &source_metrics,
        "dig_sync_transfer_bytes_total",
        r#"direction="Sent""#,
    );
    eprintln!("source sent {sent} bytes for 3 receivers of {size} bytes");
    assert_eq!(
        received,
        (3 * size) as f64,
        "every receiver fetched one copy"
    );
    assert!(
        swarmed > 0.0,
        "no receiver fetched a chunk from another receiver"
    );
    assert!(
        sent < (3 * size) as f64,
        "the source sent {sent} bytes: a full copy per receiver"
    );
    assert_folders_hold(&network.nodes, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetching_notices_and_chunk_bitmaps_are_checked() {
    let root = tempfile::tempdir().unwrap();
    let size = 9 * MIB + 3;
    let (network, hash) = one_node_holding(root.path(), "repl-swarm-bounds", "held", size, 5)
        .await
        .unwrap();
    let node = &network.nodes[0];

    let hostile = HostilePeer::start(&network.network_id).unwrap();
    let peer = hostile.connect(node).await.unwrap();
    let mut stream = hostile.open_stream(peer).await.unwrap();
    let refusal = |answer| HostilePeer::refusal(answer);

    // Notices of bad names or hashes are refused; a good one is noted.
    for (name, hash) in [("../etc", hash.as_str()), ("held", "not-a-hash")] {
        let notice = serde_json::json!({"type": "fetching", "name": name, "hash": hash});
        let (kind, message) = refusal(HostilePeer::ask(&mut stream, &notice).await.unwrap());
        assert_eq!(kind, "badRequest", "{message}");
    }
    let notice = serde_json::json!({"type": "fetching", "name": "held", "hash": hash});
    let answer = HostilePeer::ask(&mut stream, &notice)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer["type"], "noted", "{answer}");

    // A chunk of a store the node neither holds nor downloads is refused; the bitmap of a held
    // store has one bit per chunk, all set.
    let absent = serde_json::json!({"type": "have", "name": "absent", "hash": hash});
    let (kind, message) = refusal(HostilePeer::ask(&mut stream, &absent).await.unwrap());
    assert_eq!(kind, "notFound", "{message}");
    let held = serde_json::json!({"type": "have", "name": "held", "hash": hash});
    let answer = HostilePeer::ask(&mut stream, &held).await.unwrap().unwrap();
    assert_eq!(answer["type"], "have", "{answer}");
    assert_eq!(answer["len"], 2, "10 chunks: 2 bytes");
    let mut bitmap = [0u8; 2];
    stream.read_exact(&mut bitmap).await.unwrap();
    assert_eq!(bitmap, [0xff, 0b11]);
}
