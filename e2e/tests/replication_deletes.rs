//! Deletions between real processes: by default a deleted store comes back from the peers; with
//! `--propagate-deletes` on every node the owner's deletion is a tombstone that removes it
//! everywhere (a non-owner's deletion is undone: see `replication_ownership`).

use std::{collections::BTreeMap, time::Duration};

use dig_e2e::{
    network::LocalNetwork,
    replication::{file_hash, network_with_args, stores, wait_synced, write_store},
};

async fn network(root: &std::path::Path, id: &str, propagate: bool) -> LocalNetwork {
    let args: &[&str] = if propagate {
        &["--propagate-deletes"]
    } else {
        &[]
    };
    network_with_args(root, id, 3, args).await.unwrap()
}

async fn replicated(network: &LocalNetwork) -> BTreeMap<String, String> {
    let mut expected = BTreeMap::new();
    for (i, name) in ["keep", "gone"].iter().enumerate() {
        let hash = write_store(&network.nodes[0].spec.data_dir, name, 1_500_000, i as u64).unwrap();
        expected.insert(name.to_string(), hash);
    }
    let nodes: Vec<_> = network.nodes.iter().collect();
    wait_synced(&nodes, &expected, Duration::from_secs(60))
        .await
        .unwrap();
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_propagate_deletes_a_deleted_store_is_fetched_again() {
    let root = tempfile::tempdir().unwrap();
    let network = network(root.path(), "repl-del-off", false).await;
    let expected = replicated(&network).await;
    let path = network.nodes[1].spec.data_dir.join("gone.dig");
    std::fs::remove_file(&path).unwrap();
    let mut back = false;
    for _ in 0..300 {
        if file_hash(&path).unwrap().as_ref() == expected.get("gone") {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "the deleted store came back on node 1 within 60 s");
    let nodes: Vec<_> = network.nodes.iter().collect();
    wait_synced(&nodes, &expected, Duration::from_secs(60))
        .await
        .unwrap();
    for node in &network.nodes {
        assert!(
            node.spec.data_dir.join("gone.dig").exists(),
            "{}",
            node.spec.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_propagate_deletes_the_owners_deletion_removes_the_store_everywhere() {
    let root = tempfile::tempdir().unwrap();
    let network = network(root.path(), "repl-del-on", true).await;
    let _ = replicated(&network).await;
    // Node 0 wrote (and so owns) the stores.
    std::fs::remove_file(network.nodes[0].spec.data_dir.join("gone.dig")).unwrap();
    let mut done = false;
    for _ in 0..300 {
        let mut all = true;
        for node in &network.nodes {
            let gone = !node.spec.data_dir.join("gone.dig").exists();
            let tombstone = stores(node)
                .await
                .ok()
                .and_then(|s| s.get("gone").map(|(state, _)| state == "tombstone"))
                .unwrap_or(false);
            all &= gone && tombstone;
        }
        if all {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(done, "the tombstone reached every node within 60 s");
    for node in &network.nodes {
        assert!(
            node.spec.data_dir.join("keep.dig").exists(),
            "{}",
            node.spec.name
        );
    }
}
