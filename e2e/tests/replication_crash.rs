//! A crash at the worst moment, between real processes: a receiver aborts right after moving a
//! download into its data folder and before saving the index that records it (the hidden test
//! hook `--test-crash-after-install`). After a restart nothing is lost and no version is invented:
//! the file is recognised as the version it was downloaded as.

use std::{collections::BTreeMap, os::unix::process::ExitStatusExt, time::Duration};

use dig_e2e::{
    network::LocalNetwork,
    replication::{file_hash, folder_hashes, stores, wait_synced, write_store},
};
use serde_json::Value;

const HOOK: &str = "--test-crash-after-install";

async fn versions(node: &dig_e2e::network::SidecarNode) -> BTreeMap<String, Value> {
    let body = node.get_json("/stores").await.unwrap();
    body["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["version"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_between_install_and_index_save_loses_nothing_and_invents_no_version() {
    let root = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start_connected(root.path(), "repl-crash", 2)
        .await
        .unwrap();
    let mut expected = BTreeMap::new();
    expected.insert(
        "before".to_string(),
        write_store(&network.nodes[0].spec.data_dir, "before", 200_000, 1).unwrap(),
    );
    let nodes: Vec<_> = network.nodes.iter().collect();
    wait_synced(&nodes, &expected, Duration::from_secs(60))
        .await
        .unwrap();

    // The receiver runs with the hook; the source writes a multi-chunk store.
    network.nodes[1].spec = network.nodes[1].spec.clone().arg(HOOK);
    network.nodes[1].restart().await.unwrap();
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await
        .unwrap();
    expected.insert(
        "during".to_string(),
        write_store(&network.nodes[0].spec.data_dir, "during", 3_500_000, 2).unwrap(),
    );
    let status = network.nodes[1]
        .process
        .wait_timeout_async(Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the receiver aborts after its install within 60 s");
    assert_eq!(
        status.signal(),
        Some(nix::libc::SIGABRT),
        "the test hook aborted it: {status:?}"
    );
    let receiver_dir = network.nodes[1].spec.data_dir.clone();
    assert_eq!(
        file_hash(&receiver_dir.join("during.dig"))
            .unwrap()
            .as_deref(),
        expected.get("during").map(String::as_str),
        "the install happened before the crash"
    );

    // Back without the hook: both stores held, at the source's versions.
    network.nodes[1].spec.extra_args.retain(|arg| arg != HOOK);
    network.nodes[1].restart().await.unwrap();
    wait_synced(&[&network.nodes[1]], &expected, Duration::from_secs(60))
        .await
        .unwrap();
    // Several inventory rounds and rescans later, still nothing new anywhere.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let source_versions = versions(&network.nodes[0]).await;
    let receiver_versions = versions(&network.nodes[1]).await;
    assert_eq!(source_versions, receiver_versions);
    for (name, version) in &source_versions {
        assert_eq!(
            version["origin"],
            network.nodes[0].peer_id.as_str(),
            "{name}: a version the receiver invented"
        );
    }
    assert_eq!(folder_hashes(&receiver_dir).unwrap(), expected);
    for node in &network.nodes {
        assert!(
            folder_hashes(&node.spec.data_dir.join(".dig-node/conflicts"))
                .unwrap_or_default()
                .is_empty(),
            "{} kept a conflict",
            node.spec.name
        );
        let listed = stores(node).await.unwrap();
        assert!(
            listed.values().all(|(state, _)| state == "synced"),
            "{listed:?}"
        );
    }
}
