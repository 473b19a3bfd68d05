//! Replication between real `dig-sidecar` processes on loopback: many files of mixed sizes on
//! five nodes, concurrent writes of one store, and a node that catches up after being down.

use std::{collections::BTreeMap, path::Path, time::Duration};

use dig_e2e::{
    network::LocalNetwork,
    replication::{folder_hashes, wait_synced, write_store},
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything directly in a data folder except the state folder: only complete stores.
fn visible_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".dig-node")
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_converge_on_two_hundred_files_of_mixed_sizes() {
    let root = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(root.path(), "repl-five", 5)
        .await
        .unwrap();
    network.wait_fully_connected(CONNECT_TIMEOUT).await.unwrap();

    // 150 small (1-64 KiB), 40 medium (256 KiB-4 MiB), 8 large (8-16 MiB), 2 of 64 MiB: ~300 MB.
    let mut sizes: Vec<u64> = Vec::new();
    sizes.extend((0..150u64).map(|i| 1024 + (i * 421) % (63 * 1024)));
    sizes.extend((0..40u64).map(|i| (256 << 10) + (i * 97_531) % (4 << 20)));
    sizes.extend((0..8u64).map(|i| (8 << 20) + i * (1 << 20) + 3));
    sizes.extend([64 << 20, (64 << 20) - 1]);
    assert_eq!(sizes.len(), 200);
    let mut expected = BTreeMap::new();
    for (i, size) in sizes.iter().enumerate() {
        let node = &network.nodes[i % 5];
        let name = format!("store-{i:03}");
        let hash = write_store(&node.spec.data_dir, &name, *size, i as u64).unwrap();
        expected.insert(name, hash);
    }

    let nodes: Vec<_> = network.nodes.iter().collect();
    let took = wait_synced(&nodes, &expected, Duration::from_secs(400))
        .await
        .unwrap();
    eprintln!("200 stores (~300 MB) converged on 5 nodes in {took:?}");
    for node in &network.nodes {
        let on_disk = folder_hashes(&node.spec.data_dir).unwrap();
        assert_eq!(
            on_disk, expected,
            "{} holds different bytes",
            node.spec.name
        );
        let visible = visible_entries(&node.spec.data_dir);
        assert_eq!(visible.len(), 200, "{}: {visible:?}", node.spec.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_of_one_store_converge_and_keep_the_loser() {
    let root = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(root.path(), "repl-conflict", 3)
        .await
        .unwrap();
    network.wait_fully_connected(CONNECT_TIMEOUT).await.unwrap();

    // Nodes 0 and 1 change the same store without seeing each other's change: the writes are
    // made while both are down, so each start-up scan makes its own version.
    network.nodes[0].kill();
    network.nodes[1].kill();
    let hash0 = write_store(&network.nodes[0].spec.data_dir, "shared", 300_000, 100).unwrap();
    let hash1 = write_store(&network.nodes[1].spec.data_dir, "shared", 2_500_000, 101).unwrap();
    let (first, rest) = network.nodes.split_at_mut(1);
    let (r0, r1) = tokio::join!(first[0].restart(), rest[0].restart());
    r0.unwrap();
    r1.unwrap();

    let mut winner = None;
    for _ in 0..600 {
        let hashes: Vec<_> = network
            .nodes
            .iter()
            .map(|n| {
                folder_hashes(&n.spec.data_dir)
                    .unwrap()
                    .get("shared")
                    .cloned()
            })
            .collect();
        if hashes[0].is_some() && hashes.iter().all(|h| *h == hashes[0]) {
            winner = hashes[0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let winner = winner.expect("all three nodes converge to one version within 120 s");
    assert!(winner == hash0 || winner == hash1);
    let (loser_node, loser_hash) = if winner == hash0 {
        (1, &hash1)
    } else {
        (0, &hash0)
    };

    let conflicts = network.nodes[loser_node]
        .spec
        .data_dir
        .join(".dig-node/conflicts");
    let kept = folder_hashes(&conflicts).unwrap_or_default();
    assert_eq!(
        kept.len(),
        1,
        "one losing version kept on node {loser_node}: {kept:?}"
    );
    let (kept_name, kept_hash) = kept.iter().next().unwrap();
    assert!(kept_name.starts_with("shared."), "{kept_name}");
    assert_eq!(
        kept_hash, loser_hash,
        "the kept file holds the losing bytes"
    );
    let winner_node = 1 - loser_node;
    let winner_conflicts = network.nodes[winner_node]
        .spec
        .data_dir
        .join(".dig-node/conflicts");
    assert!(
        folder_hashes(&winner_conflicts)
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_was_down_catches_up_when_it_returns() {
    let root = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(root.path(), "repl-catchup", 3)
        .await
        .unwrap();
    network.wait_fully_connected(CONNECT_TIMEOUT).await.unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..3u64 {
        let hash = write_store(
            &network.nodes[0].spec.data_dir,
            &format!("s{i}"),
            100_000 + i,
            i,
        )
        .unwrap();
        expected.insert(format!("s{i}"), hash);
    }
    let nodes: Vec<_> = network.nodes.iter().collect();
    wait_synced(&nodes, &expected, Duration::from_secs(60))
        .await
        .unwrap();

    network.nodes[2].kill();
    // While node 2 is down: a store changes, one is added on node 0, one on node 1.
    let changed = write_store(&network.nodes[0].spec.data_dir, "s1", 3_000_000, 77).unwrap();
    expected.insert("s1".into(), changed);
    let added = write_store(&network.nodes[0].spec.data_dir, "new0", 5_000, 78).unwrap();
    expected.insert("new0".into(), added);
    let added = write_store(&network.nodes[1].spec.data_dir, "new1", 2_000_000, 79).unwrap();
    expected.insert("new1".into(), added);
    let up: Vec<_> = network.nodes[..2].iter().collect();
    wait_synced(&up, &expected, Duration::from_secs(60))
        .await
        .unwrap();

    network.nodes[2].restart().await.unwrap();
    let took = wait_synced(&[&network.nodes[2]], &expected, Duration::from_secs(90))
        .await
        .unwrap();
    eprintln!("node 2 caught up {took:?} after its restart");
    assert_eq!(
        folder_hashes(&network.nodes[2].spec.data_dir).unwrap(),
        expected
    );
}
