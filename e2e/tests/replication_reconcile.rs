//! Range-based reconciliation of inventories between real `dig-sidecar` processes on loopback: a
//! node that missed some stores while it was down learns them with bytes proportional to what it
//! missed, and a node that joins with an empty disk learns every version with about one
//! inventory's worth of bytes, not one per peer.

use std::{collections::BTreeMap, time::Duration};

use dig_e2e::{
    hostile::HostilePeer,
    network::{LocalNetwork, SidecarNode},
    replication::{metric_sum, metric_sum_labelled, wait_synced, write_store},
};
use serde_json::json;

const STORES: u64 = 600;
const MISSED: u64 = 10;
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes of `node`'s full inventory, as it would send it to a peer that asked for all of it.
async fn inventory_bytes(hostile: &HostilePeer, node: &SidecarNode) -> u64 {
    let peer = hostile.connect(node).await.unwrap();
    let mut stream = hostile.open_stream(peer).await.unwrap();
    let header = HostilePeer::ask(&mut stream, &json!({"type": "inventory"}))
        .await
        .unwrap()
        .expect("an inventory header");
    header["len"].as_u64().unwrap_or_else(|| panic!("{header}"))
}

async fn exchanges(node: &SidecarNode) -> (f64, f64, f64) {
    let text = node.metrics().await.unwrap();
    let outcome = |name: &str| {
        metric_sum_labelled(
            &text,
            "dig_sync_inventory_exchanges_total",
            &format!("outcome=\"{name}\""),
        )
    };
    (
        outcome("Reconciled"),
        outcome("Full"),
        metric_sum(&text, "dig_sync_inventory_bytes_received_total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inventories_move_what_differs_and_an_empty_node_learns_everything_once() {
    let root = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start_connected(root.path(), "repl-reconcile", 3)
        .await
        .unwrap();
    let mut expected = BTreeMap::new();
    let write = |expected: &mut BTreeMap<String, String>, network: &LocalNetwork, i: u64| {
        let name = format!("store-{i:04}");
        let hash = write_store(&network.nodes[0].spec.data_dir, &name, 512, i).unwrap();
        expected.insert(name, hash);
    };
    for i in 0..STORES {
        write(&mut expected, &network, i);
    }
    let all: Vec<&SidecarNode> = network.nodes.iter().collect();
    wait_synced(&all, &expected, SYNC_TIMEOUT).await.unwrap();

    // Node 2 is down while a few stores are written; when it is back, its exchanges reconcile.
    network.nodes[2].kill();
    for i in STORES..STORES + MISSED {
        write(&mut expected, &network, i);
    }
    let up: Vec<&SidecarNode> = network.nodes[..2].iter().collect();
    wait_synced(&up, &expected, SYNC_TIMEOUT).await.unwrap();
    network.nodes[2].restart().await.unwrap();
    let all: Vec<&SidecarNode> = network.nodes.iter().collect();
    wait_synced(&all, &expected, SYNC_TIMEOUT).await.unwrap();

    let hostile = HostilePeer::start(&network.network_id).unwrap();
    let inventory = inventory_bytes(&hostile, &network.nodes[0]).await;
    let (reconciled, full, bytes) = exchanges(&network.nodes[2]).await;
    eprintln!(
        "node back after missing {MISSED} of {} stores: {reconciled} exchanges reconciled, \
         {full} full, {bytes} bytes received; one inventory is {inventory} bytes",
        STORES + MISSED
    );
    assert!(reconciled >= 1.0, "the returning node reconciled");
    assert_eq!(full, 0.0, "no full inventory was read");
    assert!(
        bytes < inventory as f64 / 3.0,
        "{bytes} bytes for {MISSED} missed stores; a full inventory is {inventory}"
    );

    // A node with an empty disk: its first exchange runs alone and learns every version; the
    // others find nothing it does not know.
    network.add_nodes(1).await.unwrap();
    let all: Vec<&SidecarNode> = network.nodes.iter().collect();
    wait_synced(&all, &expected, SYNC_TIMEOUT).await.unwrap();
    let joined = &network.nodes[3];
    joined
        .wait_connected_to(
            &[
                network.nodes[0].peer_id.as_str(),
                network.nodes[1].peer_id.as_str(),
                network.nodes[2].peer_id.as_str(),
            ],
            Duration::from_secs(60),
        )
        .await;
    // Every connected peer's exchange has run once it has reconciled three times (or read
    // nothing because the digests matched); wait for them to end.
    let mut last = exchanges(joined).await;
    for _ in 0..50 {
        let text = joined.metrics().await.unwrap();
        let done = metric_sum(&text, "dig_sync_inventory_exchanges_total");
        if done >= 3.0 {
            last = exchanges(joined).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (reconciled, full, bytes) = last;
    eprintln!(
        "empty node joining {} stores: {reconciled} exchanges reconciled, {full} full, \
         {bytes} bytes received; one inventory is {inventory} bytes",
        STORES + MISSED
    );
    assert!(reconciled >= 1.0);
    assert!(
        bytes < inventory as f64 * 1.5,
        "{bytes} bytes to learn an inventory of {inventory} from 3 peers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_reconcile_requests_are_refused_and_answers_stay_bounded() {
    let root = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start_connected(root.path(), "repl-reconcile-hostile", 1)
        .await
        .unwrap();
    let node = &network.nodes[0];
    let hostile = HostilePeer::start(&network.network_id).unwrap();
    let peer = hostile.connect(node).await.unwrap();
    let refusal = |answer| {
        let (kind, message) = HostilePeer::refusal(answer);
        assert_eq!(kind, "badRequest", "{message}");
        message
    };

    // A body far over the limit is refused before it is read.
    let mut stream = hostile.open_stream(peer).await.unwrap();
    let message = refusal(
        HostilePeer::ask(
            &mut stream,
            &json!({"type": "reconcile", "len": 1u64 << 40}),
        )
        .await
        .unwrap(),
    );
    assert!(
        message.contains("reconcile request of 1099511627776 bytes"),
        "{message}"
    );

    // Too many ranges, bounds longer than any store name, garbage, reversed bounds and the
    // whole range asked over and over (each ask would walk the whole index): refused, and the
    // stream still answers the next request.
    let mut stream = hostile.open_stream(peer).await.unwrap();
    let many: Vec<_> = (0..300).map(|i| json!({"l": format!("s{i}")})).collect();
    let long = vec![json!({"l": "x".repeat(200)})];
    let reversed = vec![json!({"l": "z", "u": "a"})];
    let repeated = vec![json!({"l": ""}); 256];
    for body in [
        serde_json::to_vec(&many).unwrap(),
        serde_json::to_vec(&long).unwrap(),
        b"[{\"l\": garbage".to_vec(),
        serde_json::to_vec(&reversed).unwrap(),
        serde_json::to_vec(&repeated).unwrap(),
    ] {
        let request = json!({"type": "reconcile", "len": body.len()});
        let message = refusal(
            HostilePeer::ask_with_body(&mut stream, &request, &body)
                .await
                .unwrap(),
        );
        assert!(message.starts_with("bad reconcile request"), "{message}");
    }
    // Disjoint ranges, in any order, are answered on the same stream.
    let body = serde_json::to_vec(&vec![json!({"l": "m"}), json!({"l": "a", "u": "m"})]).unwrap();
    let request = json!({"type": "reconcile", "len": body.len()});
    let answer = HostilePeer::ask_with_body(&mut stream, &request, &body)
        .await
        .unwrap()
        .expect("an answer");
    assert_eq!(answer["type"], "reconcile", "{answer}");
    assert!(answer["len"].as_u64().unwrap() < 4096, "{answer}");
}
