//! Who may write, between real processes: a node that does not own a store overwrites and deletes
//! it locally; the other nodes keep the owner's bytes, that node gets them back and keeps its own
//! in `conflicts/`; the owner's next update still reaches everyone.

use std::{collections::BTreeMap, time::Duration};

use dig_e2e::{
    network::{LocalNetwork, SidecarNode},
    replication::{
        file_hash, folder_hashes, metric_sum, network_with_args, store_status, wait_synced,
        write_store,
    },
    wait::eventually,
};
use serde_json::Value;

/// Three nodes that apply tombstones and compare inventories every 2 s.
async fn network(root: &std::path::Path, id: &str) -> LocalNetwork {
    let args = ["--propagate-deletes", "--inventory-interval", "2s"];
    network_with_args(root, id, 3, &args).await.unwrap()
}

async fn status(node: &SidecarNode, name: &str) -> Value {
    store_status(node, name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_owner_cannot_change_or_delete_a_store_and_the_owners_update_reaches_everyone() {
    let root = tempfile::tempdir().unwrap();
    let network = network(root.path(), "repl-owner").await;
    let [owner, intruder, bystander] = [&network.nodes[0], &network.nodes[1], &network.nodes[2]];

    let mut expected = BTreeMap::new();
    expected.insert(
        "owned".to_string(),
        write_store(&owner.spec.data_dir, "owned", 2_500_000, 1).unwrap(),
    );
    expected.insert(
        "doc".to_string(),
        write_store(&owner.spec.data_dir, "doc", 40_000, 2).unwrap(),
    );
    wait_synced(
        &network.nodes.iter().collect::<Vec<_>>(),
        &expected,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    for node in &network.nodes {
        for name in ["owned", "doc"] {
            let found = status(node, name).await;
            assert_eq!(
                found["owner"],
                owner.peer_id.as_str(),
                "{}: {found}",
                node.spec.name
            );
        }
    }
    let owners_version = status(owner, "owned").await["version"].clone();

    // The intruder overwrites a store it does not own, and deletes another.
    let intruder_hash = write_store(&intruder.spec.data_dir, "owned", 1_000_000, 666).unwrap();
    std::fs::remove_file(intruder.spec.data_dir.join("doc.dig")).unwrap();

    eventually(
        "the intruder gets the owner's bytes back",
        Duration::from_secs(60),
        || async {
            let found = folder_hashes(&intruder.spec.data_dir).unwrap_or_default();
            if found == expected {
                Ok(())
            } else {
                Err(format!("{found:?}"))
            }
        },
    )
    .await;
    let conflicts = folder_hashes(&intruder.spec.data_dir.join(".dig-node/conflicts")).unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let (kept, kept_hash) = conflicts.iter().next().unwrap();
    assert!(kept.starts_with("owned.local."), "{kept}");
    assert_eq!(
        kept_hash, &intruder_hash,
        "the intruder's own bytes are kept"
    );
    let refused = status(intruder, "owned").await;
    assert_eq!(refused["state"], "synced", "{refused}");
    let reason = refused["conflictReason"].as_str().unwrap_or("");
    assert!(
        reason.contains("refused") && reason.contains(owner.peer_id.as_str()),
        "{refused}"
    );
    assert!(
        refused["lastConflict"]
            .as_str()
            .unwrap()
            .contains("owned.local.")
    );
    assert_eq!(
        refused["version"], owners_version,
        "no version of the intruder's"
    );
    let metrics = intruder.metrics().await.unwrap();
    assert!(
        metric_sum(&metrics, "dig_sync_refused_local_changes_total") >= 2.0,
        "{metrics}"
    );
    assert!(metric_sum(&metrics, "dig_sync_conflicts_total") >= 1.0);

    // The others never took the intruder's change or deletion (several inventory rounds later).
    tokio::time::sleep(Duration::from_secs(5)).await;
    for node in [owner, bystander] {
        assert_eq!(
            folder_hashes(&node.spec.data_dir).unwrap(),
            expected,
            "{}",
            node.spec.name
        );
        assert_eq!(status(node, "owned").await["version"], owners_version);
        assert!(
            folder_hashes(&node.spec.data_dir.join(".dig-node/conflicts"))
                .unwrap_or_default()
                .is_empty()
        );
    }

    // The owner's next update reaches everyone, the intruder included, without conflicts.
    let updated = write_store(&owner.spec.data_dir, "owned", 3_000_000, 3).unwrap();
    expected.insert("owned".to_string(), updated.clone());
    wait_synced(
        &network.nodes.iter().collect::<Vec<_>>(),
        &expected,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(
        file_hash(&intruder.spec.data_dir.join("owned.dig"))
            .unwrap()
            .as_deref(),
        Some(updated.as_str())
    );
    assert_eq!(
        folder_hashes(&intruder.spec.data_dir.join(".dig-node/conflicts"))
            .unwrap()
            .len(),
        1,
        "no new conflict on the intruder"
    );

    // A store the intruder creates itself is its own: others take it.
    let its_own = write_store(&intruder.spec.data_dir, "intruders-own", 10_000, 4).unwrap();
    expected.insert("intruders-own".to_string(), its_own);
    wait_synced(&[owner, bystander], &expected, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        status(bystander, "intruders-own").await["owner"],
        intruder.peer_id.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listed_writer_may_change_a_store_it_does_not_own() {
    let root = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(root.path(), "repl-writer", 0)
        .await
        .unwrap();
    // Every node, the writer included, gets the same writer list (as the operator passes it):
    // start the writer once to learn its peer id.
    let mut writer = SidecarNode::start(network.node_spec(0)).await.unwrap();
    let writer_id = writer.peer_id.clone();
    writer.spec = writer.spec.clone().arg("--writer").arg(writer_id.clone());
    writer.restart().await.unwrap();
    network.nodes.push(writer);
    for index in 1..3 {
        let spec = network
            .node_spec(index)
            .arg("--writer")
            .arg(writer_id.clone());
        network.nodes.push(SidecarNode::start(spec).await.unwrap());
    }
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await
        .unwrap();
    let owner = &network.nodes[1];
    let mut expected = BTreeMap::new();
    expected.insert(
        "shared".to_string(),
        write_store(&owner.spec.data_dir, "shared", 50_000, 1).unwrap(),
    );
    wait_synced(
        &network.nodes.iter().collect::<Vec<_>>(),
        &expected,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let edited = write_store(&network.nodes[0].spec.data_dir, "shared", 60_000, 2).unwrap();
    expected.insert("shared".to_string(), edited);
    wait_synced(
        &network.nodes[1..].iter().collect::<Vec<_>>(),
        &expected,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let changed = status(&network.nodes[2], "shared").await;
    assert_eq!(changed["origin"], writer_id.as_str());
    assert_eq!(changed["owner"], owner.peer_id.as_str(), "the owner stays");
}
