//! Delta sync between real `dig-sidecar` processes on loopback: an append, an in-place change and
//! an insertion at the start of a store move only about the bytes that changed; the rest is
//! copied from the receiver's older version, and `/stores` and `/metrics` say how many bytes came
//! from where.

use std::{collections::BTreeMap, path::Path, time::Duration};

use dig_e2e::{
    hostile::HostilePeer,
    network::{LocalNetwork, SidecarNode},
    replication::{
        assert_folders_hold, metric_sum, one_node_holding, store_status, wait_synced, write_store,
    },
};

const MIB: u64 = 1 << 20;
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// Replaces `dir/<name>.dig` with `change(old bytes)` through a hidden file and a rename, as a
/// writer of a new generation does; returns the new BLAKE3 hash (hex).
fn rewrite_store(dir: &Path, name: &str, change: impl FnOnce(&mut Vec<u8>)) -> String {
    let path = dir.join(format!("{name}.dig"));
    let mut bytes = std::fs::read(&path).unwrap();
    change(&mut bytes);
    let tmp = dir.join(format!(".{name}.writing"));
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::File::open(&tmp).unwrap().sync_all().unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    blake3::hash(&bytes).to_hex().to_string()
}

/// `(fetchedBytes, reusedBytes)` of the node's last download of `name`.
async fn last_download(node: &SidecarNode, name: &str) -> (u64, u64) {
    let status = store_status(node, name).await.unwrap();
    let last = &status["lastDownload"];
    (
        last["fetchedBytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{status}")),
        last["reusedBytes"]
            .as_u64()
            .unwrap_or_else(|| panic!("{status}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_an_in_place_change_and_an_insertion_move_only_what_changed() {
    let root = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(root.path(), "repl-delta", 3)
        .await
        .unwrap();
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await
        .unwrap();
    let source = &network.nodes[0];
    let receivers: Vec<&SidecarNode> = network.nodes[1..].iter().collect();
    let all: Vec<&SidecarNode> = network.nodes.iter().collect();
    let data = &source.spec.data_dir;

    let mut expected = BTreeMap::new();
    let hash = write_store(data, "growing", 16 * MIB, 7).unwrap();
    expected.insert("growing".to_owned(), hash);
    wait_synced(&all, &expected, SYNC_TIMEOUT).await.unwrap();
    for node in &receivers {
        assert_eq!(last_download(node, "growing").await, (16 * MIB, 0));
    }

    // A new generation appended: the 16 complete chunks are reused, the new MiB is fetched.
    let appended: Vec<u8> = (0..MIB + 100).map(|i| (i * 31 % 251) as u8).collect();
    let hash = rewrite_store(data, "growing", |bytes| bytes.extend(&appended));
    expected.insert("growing".to_owned(), hash);
    wait_synced(&all, &expected, SYNC_TIMEOUT).await.unwrap();
    for node in &receivers {
        assert_eq!(
            last_download(node, "growing").await,
            (MIB + 100, 16 * MIB),
            "{}",
            node.spec.name
        );
    }

    // One byte changed in chunk 5: that chunk alone is fetched.
    let hash = rewrite_store(data, "growing", |bytes| {
        bytes[5 * MIB as usize + 4321] ^= 0x5a
    });
    expected.insert("growing".to_owned(), hash);
    wait_synced(&all, &expected, SYNC_TIMEOUT).await.unwrap();
    for node in &receivers {
        assert_eq!(
            last_download(node, "growing").await,
            (MIB, 16 * MIB + 100),
            "{}",
            node.spec.name
        );
        let metrics = node.metrics().await.unwrap();
        assert_eq!(
            metric_sum(&metrics, "dig_sync_reused_bytes_total"),
            (32 * MIB + 100) as f64,
            "{}",
            node.spec.name
        );
    }

    // 100,000 bytes inserted at the start: every chunk moved. The receivers match the source's
    // content-defined chunk map against their older file, copy what moved and fetch the rest.
    let inserted: Vec<u8> = (0..100_000u32).map(|i| (i * 17 % 239) as u8).collect();
    let hash = rewrite_store(data, "growing", |bytes| {
        bytes.splice(0..0, inserted.iter().copied());
    });
    expected.insert("growing".to_owned(), hash);
    wait_synced(&all, &expected, SYNC_TIMEOUT).await.unwrap();
    let size = 17 * MIB + 100 + 100_000;
    for node in &receivers {
        let (fetched, reused) = last_download(node, "growing").await;
        eprintln!(
            "{}: insertion of 100,000 bytes: {fetched} bytes fetched, {reused} reused",
            node.spec.name
        );
        assert_eq!(fetched + reused, size, "{}", node.spec.name);
        assert!(
            fetched < MIB,
            "{}: {fetched} bytes fetched for a 100,000-byte insertion",
            node.spec.name
        );
    }

    assert_folders_hold(&network.nodes, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunk_maps_and_ranges_are_bounded_whatever_a_peer_asks() {
    let root = tempfile::tempdir().unwrap();
    let size = 3 * MIB + 5;
    let (network, hash) = one_node_holding(root.path(), "repl-delta-bounds", "held", size, 3)
        .await
        .unwrap();
    let node = &network.nodes[0];

    let hostile = HostilePeer::start(&network.network_id).unwrap();
    let peer = hostile.connect(node).await.unwrap();
    let mut stream = hostile.open_stream(peer).await.unwrap();
    let refusal = |answer| HostilePeer::refusal(answer).1;
    // Ranges past the end, larger than a chunk, empty or overflowing are refused, one by one,
    // on the same stream.
    for (offset, len) in [(size, 1), (0, MIB + 1), (0, 0), (u64::MAX, 2)] {
        let request = serde_json::json!({
            "type": "range", "name": "held", "hash": hash, "offset": offset, "len": len
        });
        let message = refusal(HostilePeer::ask(&mut stream, &request).await.unwrap());
        assert!(message.contains("does not fit store held"), "{message}");
    }
    // A map of a store the node does not hold is refused; the held one is bounded by its size.
    let absent = serde_json::json!({"type": "chunkMap", "name": "absent", "hash": hash});
    let message = refusal(HostilePeer::ask(&mut stream, &absent).await.unwrap());
    assert!(message.contains("not held here"), "{message}");
    let held = serde_json::json!({"type": "chunkMap", "name": "held", "hash": hash});
    let answer = HostilePeer::ask(&mut stream, &held).await.unwrap().unwrap();
    assert_eq!(answer["type"], "chunkMap", "{answer}");
    assert_eq!(answer["scheme"], "fastcdc2020-16k-64k-256k");
    let len = answer["len"].as_u64().unwrap();
    assert!(
        len > 0 && len % 36 == 0 && len <= (size / 16384 + 1) * 36,
        "{len}"
    );
}
