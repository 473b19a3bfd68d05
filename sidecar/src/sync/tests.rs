//! In-process replication scenarios: real nodes (`node::start`) on loopback TCP, each with a
//! Replicator on its own folders.

use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use prometheus_client::registry::Registry;

use super::{ReplicationConfig, Replicator, ReplicatorHandle, SyncState};
use crate::node::{self, NodeConfig, NodeHandle};
use crate::store::hash::CHUNK_SIZE;

const NET: &str = "repl-unit";

struct TestNode {
    node: NodeHandle,
    replicator: ReplicatorHandle,
    data: PathBuf,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start_node(propagate_deletes: bool) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    start_node_in(dir, propagate_deletes).await
}

async fn start_node_in(dir: tempfile::TempDir, propagate_deletes: bool) -> TestNode {
    let mut registry = Registry::default();
    let (node, _task) = node::start(
        NodeConfig {
            keypair: Keypair::generate_ed25519(),
            network_id: NET.into(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            announce: Vec::new(),
            registry_enabled: false,
            dns_enabled: false,
            enable_dht: false,
            enable_mdns: false,
            allow_loopback: true,
            enable_autonat: false,
            psk: None,
            max_connections: 64,
        },
        &mut registry,
    )
    .unwrap();
    let data = dir.path().join("data");
    let state = data.join(".dig-node");
    let replicator = Replicator::start(
        config(&data, propagate_deletes),
        node.clone(),
        &mut registry,
    )
    .await
    .unwrap();
    TestNode {
        node,
        replicator,
        data,
        state,
        _dir: dir,
    }
}

fn config(data: &Path, propagate_deletes: bool) -> ReplicationConfig {
    ReplicationConfig {
        data_dir: data.to_owned(),
        state_dir: data.join(".dig-node"),
        propagate_deletes,
        min_free_bytes: 0,
        inventory_interval: Duration::from_secs(1),
        watch_debounce: Duration::from_millis(50),
        ..ReplicationConfig::default()
    }
}

async fn connect(a: &TestNode, b: &TestNode) {
    let mut address = None;
    for _ in 0..100 {
        let snapshot = b.node.snapshot().await.unwrap();
        if let Some(first) = snapshot.listen_addresses.first() {
            address = Some(first.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let address = address
        .expect("node listens within 5 s")
        .with(Protocol::P2p(b.node.local_peer_id()));
    a.node.dial(address).await.unwrap();
    for _ in 0..200 {
        if a.node
            .connected_peers()
            .await
            .unwrap()
            .contains(&b.node.local_peer_id())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nodes did not connect within 10 s");
}

/// Polls (bounded) until `check` holds.
async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + seed as usize * 13) % 251) as u8)
        .collect()
}

fn read(node: &TestNode, name: &str) -> Option<Vec<u8>> {
    std::fs::read(node.data.join(format!("{name}.dig"))).ok()
}

fn state_of(node: &TestNode, name: &str) -> Option<SyncState> {
    node.replicator
        .stores()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| s.state)
}

fn conflicts(node: &TestNode) -> Vec<String> {
    std::fs::read_dir(node.state.join("conflicts"))
        .map(|list| {
            list.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_file_written_on_one_node_reaches_the_others_and_updates_follow() {
    let a = start_node(false).await;
    let b = start_node(false).await;
    let c = start_node(false).await;
    connect(&a, &b).await;
    connect(&b, &c).await;
    connect(&a, &c).await;

    let big = content(3 * CHUNK_SIZE as usize + 17, 1);
    std::fs::write(a.data.join("big.dig"), &big).unwrap();
    std::fs::write(a.data.join("small.dig"), b"hello").unwrap();
    std::fs::write(a.data.join("not a store.txt"), b"ignored").unwrap();
    eventually("both stores on b and c", Duration::from_secs(30), || {
        [&b, &c].iter().all(|n| {
            read(n, "big").as_ref() == Some(&big) && read(n, "small").as_deref() == Some(b"hello")
        })
    })
    .await;
    assert!(!b.data.join("not a store.txt").exists());
    for n in [&b, &c] {
        let status = n.replicator.stores();
        let big_status = status.iter().find(|s| s.name == "big").unwrap();
        // The receivers did not mistake the install for a local change.
        assert_eq!(big_status.origin, a.node.local_peer_id().to_base58());
        assert!(big_status.lamport <= 2, "{big_status:?}");
        assert_eq!(big_status.state, SyncState::Synced);
        assert_eq!(
            big_status.hash.as_deref(),
            Some(blake3::hash(&big).to_hex().as_str())
        );
    }
    assert_eq!(a.replicator.store_entries().len(), 2);

    // An update on c supersedes a's version everywhere, without conflicts (c had seen it).
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(c.data.join("small.dig"), b"hello again").unwrap();
    eventually("update on a and b", Duration::from_secs(30), || {
        [&a, &b]
            .iter()
            .all(|n| read(n, "small").as_deref() == Some(b"hello again"))
    })
    .await;
    assert!(conflicts(&a).is_empty(), "{:?}", conflicts(&a));
    let on_a = a
        .replicator
        .stores()
        .into_iter()
        .find(|s| s.name == "small")
        .unwrap();
    assert_eq!(on_a.origin, c.node.local_peer_id().to_base58());
    assert!(on_a.lamport >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_converge_and_the_loser_is_kept_in_conflicts() {
    let a = start_node(false).await;
    let b = start_node(false).await;
    std::fs::create_dir_all(&a.data).unwrap();
    std::fs::write(a.data.join("s.dig"), b"from a").unwrap();
    std::fs::write(b.data.join("s.dig"), b"from b").unwrap();
    eventually("both versions made", Duration::from_secs(10), || {
        state_of(&a, "s") == Some(SyncState::Synced) && state_of(&b, "s") == Some(SyncState::Synced)
    })
    .await;
    connect(&a, &b).await;
    eventually("one winner on both", Duration::from_secs(30), || {
        let (x, y) = (read(&a, "s"), read(&b, "s"));
        x.is_some() && x == y
    })
    .await;
    let winner = read(&a, "s").unwrap();
    let (loser, loser_node) = if winner == b"from a" {
        (&b"from b"[..], &b)
    } else {
        (&b"from a"[..], &a)
    };
    let kept = conflicts(loser_node);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with("s.1-"), "{kept:?}");
    assert_eq!(
        std::fs::read(loser_node.state.join("conflicts").join(&kept[0])).unwrap(),
        loser
    );
    let winner_node = if std::ptr::eq(loser_node, &a) { &b } else { &a };
    assert!(conflicts(winner_node).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletions_are_refetched_by_default_and_propagated_when_asked() {
    for propagate in [false, true] {
        let a = start_node(propagate).await;
        let b = start_node(propagate).await;
        connect(&a, &b).await;
        std::fs::write(a.data.join("d.dig"), b"data").unwrap();
        eventually("replicated", Duration::from_secs(30), || {
            read(&b, "d").is_some()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::remove_file(b.data.join("d.dig")).unwrap();
        if propagate {
            eventually("tombstone deletes it on a", Duration::from_secs(30), || {
                read(&a, "d").is_none()
            })
            .await;
            assert_eq!(state_of(&a, "d"), Some(SyncState::Tombstone));
            assert_eq!(state_of(&b, "d"), Some(SyncState::Tombstone));
            // A tombstone is a version like any other: writing the store again beats it.
            std::fs::write(a.data.join("d.dig"), b"reborn").unwrap();
            eventually(
                "re-created store reaches b",
                Duration::from_secs(30),
                || read(&b, "d").as_deref() == Some(b"reborn"),
            )
            .await;
        } else {
            eventually(
                "deleted file comes back on b",
                Duration::from_secs(30),
                || read(&b, "d").as_deref() == Some(b"data"),
            )
            .await;
            assert_eq!(read(&a, "d").as_deref(), Some(&b"data"[..]));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_reuses_the_index_and_finds_offline_changes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let a = start_node_in(dir, false).await;
    std::fs::write(a.data.join("keep.dig"), b"unchanged").unwrap();
    std::fs::write(a.data.join("edit.dig"), b"before").unwrap();
    eventually("both hashed", Duration::from_secs(10), || {
        a.replicator.store_entries().len() == 2
    })
    .await;
    a.replicator.shutdown().await;
    a.node.shutdown().await;
    let TestNode { _dir: dir, .. } = a;
    assert!(root.join("data/.dig-node/index.json").exists());

    std::fs::write(root.join("data/edit.dig"), b"after, offline").unwrap();
    let again = start_node_in(dir, false).await;
    eventually("offline edit seen", Duration::from_secs(10), || {
        again
            .replicator
            .stores()
            .iter()
            .any(|s| s.name == "edit" && s.lamport == 3)
    })
    .await;
    let keep = again
        .replicator
        .stores()
        .into_iter()
        .find(|s| s.name == "keep")
        .unwrap();
    assert!(
        keep.lamport <= 2,
        "unchanged store was re-versioned: {keep:?}"
    );
}
