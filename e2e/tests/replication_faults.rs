//! Faults between real processes: a receiver killed with SIGKILL again and again during a large
//! transfer never shows a partial file and resumes; a peer that serves corrupted chunks is banned
//! and the file comes from an honest peer.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use dig_e2e::{
    network::{LocalNetwork, SidecarNode},
    replication::{file_hash, metric_sum, wait_synced, write_store},
};

/// Watches a path from a thread until stopped: every time the file exists, its size must be
/// `full_size`. Returns the sizes seen that were not.
fn watch_for_partial(
    path: PathBuf,
    full_size: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let mut bad = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.len() != full_size
            {
                bad.push(meta.len());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        bad
    })
}

async fn progress(node: &SidecarNode, name: &str) -> Option<f64> {
    let body = node.get_json("/stores").await.ok()?;
    body["stores"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["progress"].as_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_killed_during_a_large_transfer_never_shows_a_partial_file_and_resumes() {
    const SIZE: u64 = 768 << 20;
    let root = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start_connected(root.path(), "repl-kill", 2)
        .await
        .unwrap();
    let hash = write_store(&network.nodes[0].spec.data_dir, "big", SIZE, 42).unwrap();

    let target = network.nodes[1].spec.data_dir.join("big.dig");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_for_partial(target.clone(), SIZE, stop.clone());

    let mut kills = 0;
    let thresholds = [0.08, 0.2, 0.32, 0.44, 0.56];
    let deadline = Instant::now() + Duration::from_secs(300);
    while kills < thresholds.len() && Instant::now() < deadline {
        match progress(&network.nodes[1], "big").await {
            Some(p) if p >= thresholds[kills] => {
                network.nodes[1].kill();
                kills += 1;
                eprintln!("killed the receiver at {:.0}% (kill {kills})", p * 100.0);
                assert!(
                    !target.exists() || std::fs::metadata(&target).unwrap().len() == SIZE,
                    "partial file visible after a kill"
                );
                network.nodes[1].restart().await.unwrap();
            }
            _ => {}
        }
        assert!(
            !(target.exists()
                && kills < thresholds.len()
                && file_hash(&target).unwrap().as_deref() == Some(hash.as_str())),
            "the transfer finished before {} kills; make the file larger",
            thresholds.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        kills,
        thresholds.len(),
        "the receiver was killed {kills} times before the deadline"
    );

    let expected = BTreeMap::from([("big".to_string(), hash.clone())]);
    wait_synced(&[&network.nodes[1]], &expected, Duration::from_secs(180))
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let partial_sizes = watcher.join().unwrap();
    assert!(
        partial_sizes.is_empty(),
        "partial file sizes seen in the data folder: {partial_sizes:?}"
    );
    assert_eq!(file_hash(&target).unwrap().as_deref(), Some(hash.as_str()));

    // The last run continued from the verified chunks of the killed ones.
    let metrics = network.nodes[1].metrics().await.unwrap();
    let resumed = metric_sum(&metrics, "dig_sync_resumed_bytes_total");
    let fetched = metric_sum(&metrics, "dig_sync_transfer_bytes_total");
    eprintln!("last run: resumed {resumed} bytes, fetched {fetched} bytes");
    assert!(resumed >= 0.5 * SIZE as f64, "resumed only {resumed} bytes");
    assert!(
        fetched < 0.5 * SIZE as f64,
        "fetched {fetched} bytes: restarted from zero?"
    );
    let tmp = network.nodes[1].spec.data_dir.join(".dig-node/tmp");
    let leftovers: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_serving_corrupted_chunks_is_banned_and_an_honest_peer_provides_the_file() {
    let root = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(root.path(), "repl-corrupt", 0)
        .await
        .unwrap();
    let honest = network.node_spec(0);
    let liar = network.node_spec(1).arg("--test-corrupt-chunks");
    network
        .nodes
        .push(SidecarNode::start(honest).await.unwrap());
    network.nodes.push(SidecarNode::start(liar).await.unwrap());
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await
        .unwrap();

    // The liar gets a good copy (corruption only affects what it serves)...
    let hash = write_store(&network.nodes[0].spec.data_dir, "victim", 6 << 20, 9).unwrap();
    let expected = BTreeMap::from([("victim".to_string(), hash.clone())]);
    wait_synced(&[&network.nodes[1]], &expected, Duration::from_secs(60))
        .await
        .unwrap();

    // ...and is the only holder when the receiver first asks.
    network.nodes[0].kill();
    let receiver = network.node_spec(2);
    network
        .nodes
        .push(SidecarNode::start(receiver).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = network.nodes[2].metrics().await.unwrap_or_default();
        if metric_sum(&metrics, "dig_sync_peers_banned_total") >= 1.0 {
            assert!(metric_sum(&metrics, "dig_sync_verification_failures_total") >= 1.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the corrupting peer was not banned within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !network.nodes[2].spec.data_dir.join("victim.dig").exists(),
        "nothing from the corrupting peer reached the data folder"
    );

    network.nodes[0].restart().await.unwrap();
    wait_synced(&[&network.nodes[2]], &expected, Duration::from_secs(90))
        .await
        .unwrap();
    let got = file_hash(&network.nodes[2].spec.data_dir.join("victim.dig")).unwrap();
    assert_eq!(got.as_deref(), Some(hash.as_str()));
}
