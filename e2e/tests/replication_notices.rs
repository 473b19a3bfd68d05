//! Holder notices between real `dig-sidecar` processes on loopback: a node that installs a store
//! tells its direct peers with a `Holding` request instead of announcing it again to the whole
//! network through gossip, and a notice from a hostile peer is bounded and verified like any
//! other version record.

use std::{collections::BTreeMap, time::Duration};

use dig_e2e::{
    hostile::HostilePeer,
    network::LocalNetwork,
    replication::{metric_sum, metric_sum_labelled, wait_synced, write_store},
};
use libp2p::identity::Keypair;
use serde_json::{Value, json};

const STORES: u64 = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn installs_are_told_to_direct_peers_and_never_gossiped_again() {
    let root = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start_connected(root.path(), "repl-notices", 3)
        .await
        .unwrap();
    let source = &network.nodes[0];
    let mut expected = BTreeMap::new();
    for i in 0..STORES {
        let name = format!("store-{i}");
        let hash = write_store(&source.spec.data_dir, &name, 2048 + i, i).unwrap();
        expected.insert(name, hash);
    }
    let all: Vec<_> = network.nodes.iter().collect();
    wait_synced(&all, &expected, Duration::from_secs(90))
        .await
        .unwrap();

    // Each receiver knows the writer holds every store (its gossip said so), so only the other
    // receiver hears of an install; one that heard first need not answer. Received counters are
    // mirrored on the driver's tick: give the last notices a moment to land.
    let notices = |text: &str, direction: &str| {
        metric_sum_labelled(
            text,
            "dig_sync_holder_notices_total",
            &format!("direction=\"{direction}\""),
        )
    };
    let mut metrics = Vec::new();
    for _ in 0..50 {
        metrics.clear();
        for node in &network.nodes {
            metrics.push(node.metrics().await.unwrap());
        }
        if notices(&metrics[1], "Received") + notices(&metrics[2], "Received") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metric_sum(&metrics[0], "dig_sync_announcements_sent_total") >= 1.0,
        "the writer announces its new versions through gossip"
    );
    for (i, text) in metrics.iter().enumerate().skip(1) {
        assert_eq!(
            metric_sum(text, "dig_sync_announcements_sent_total"),
            0.0,
            "node {i} installed {STORES} stores and announced none of them to the network"
        );
    }
    let sent = notices(&metrics[1], "Sent") + notices(&metrics[2], "Sent");
    let received = notices(&metrics[1], "Received") + notices(&metrics[2], "Received");
    assert!(
        sent >= 1.0 && received >= 1.0,
        "the receivers told each other what they installed (sent {sent}, received {received})"
    );
    assert_eq!(
        notices(&metrics[0], "Sent"),
        0.0,
        "the writer installed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_holder_notices_are_bounded_and_verified() {
    let root = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start_connected(root.path(), "repl-notices-hostile", 1)
        .await
        .unwrap();
    let node = &network.nodes[0];
    let hostile = HostilePeer::start(&network.network_id).unwrap();
    let peer = hostile.connect(node).await.unwrap();

    // A notice larger than one announcement is refused before its body is read.
    let mut stream = hostile.open_stream(peer).await.unwrap();
    let (kind, message) = HostilePeer::refusal(
        HostilePeer::ask(&mut stream, &json!({"type": "holding", "len": 1u64 << 40}))
            .await
            .unwrap(),
    );
    assert_eq!(kind, "badRequest");
    assert!(
        message.contains("holder notice of 1099511627776 bytes"),
        "{message}"
    );

    // A forged record (signed by a key that is not its origin) is taken off the wire, then
    // dropped by verification and counted; garbage is counted as malformed.
    let forger = Keypair::generate_ed25519();
    let forged =
        HostilePeer::entry(&forger, &node.peer_id, "forged", 1, b"not the owner's").unwrap();
    let body = serde_json::to_vec(&json!({"e": [forged]})).unwrap();
    let mut stream = hostile.open_stream(peer).await.unwrap();
    let answer = HostilePeer::ask_with_body(
        &mut stream,
        &json!({"type": "holding", "len": body.len()}),
        &body,
    )
    .await
    .unwrap()
    .expect("an answer");
    assert_eq!(answer["type"], "noted", "{answer}");
    let garbage = b"{\"e\": [garbage";
    let answer = HostilePeer::ask_with_body(
        &mut stream,
        &json!({"type": "holding", "len": garbage.len()}),
        garbage,
    )
    .await
    .unwrap()
    .expect("an answer");
    assert_eq!(answer["type"], "noted", "{answer}");

    let counted = |text: &str, reason: &str| {
        metric_sum_labelled(
            text,
            "dig_sync_records_rejected_total",
            &format!("reason=\"{reason}\""),
        )
    };
    let mut text = String::new();
    for _ in 0..50 {
        text = node.metrics().await.unwrap();
        if counted(&text, "bad_signature") >= 1.0 && counted(&text, "malformed") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(counted(&text, "bad_signature") >= 1.0, "{text}");
    assert!(counted(&text, "malformed") >= 1.0, "{text}");
    assert!(metric_sum(&text, "dig_sync_holder_notices_refused_total") >= 1.0);
    let stores: Value = node.get_json("/stores").await.unwrap();
    assert!(
        !stores.to_string().contains("\"forged\""),
        "a forged version never enters the index: {stores}"
    );
}
