//! A bounded peer set on real processes: one registry and eight `dig-sidecar` nodes with
//! `--target-peers 3` on loopback. The registry lists every node to every node, yet no node
//! dials them all: each keeps about three connections, the overlay stays connected, and a store
//! written on one node reaches all eight through gossip relays, without a full mesh.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dig_e2e::{
    network::{LocalNetwork, SidecarNode},
    replication::{wait_synced, write_store},
    wait::eventually,
};
use serde_json::Value;

const NODES: usize = 8;
const TARGET: usize = 3;
/// The policy's slack over the target before it closes connections: a quarter, at least 2.
const SLACK: usize = 2;
/// Every other node: what a full mesh would give each node.
const FULL_MESH_DEGREE: usize = NODES - 1;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const SYNC_TIMEOUT: Duration = Duration::from_secs(90);
/// Samples of the peer counts, half a second apart: twice the policy's 250 ms tick, so an excess
/// the policy trims is gone by the next sample.
const SAMPLES: usize = 12;
const SAMPLE_PAUSE: Duration = Duration::from_millis(500);
/// The policy neither closes nor weighs a connection younger than this (`CLOSE_GRACE` in
/// `sidecar/src/node/peer_set.rs`); a DHT query or a download may open such connections to any
/// node at any time, so the bounds below hold for the connections older than it. The margin
/// covers a tick and the close itself.
const SETTLED_AFTER: Duration = Duration::from_millis(20_000 + 1_500);

/// One node's connections: every peer, and those connected for longer than the grace period
/// (settled), with how many of these the node dialed.
#[derive(Debug)]
struct Links {
    peers: BTreeSet<String>,
    settled: BTreeSet<String>,
    settled_outbound: usize,
}

async fn links(node: &SidecarNode) -> anyhow::Result<Links> {
    let connections = node.get_json("/connections").await?;
    let listed = connections["connectedPeers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let settled_before = now_ms.saturating_sub(SETTLED_AFTER.as_millis() as u64);
    let id = |peer: &Value| peer["peerId"].as_str().map(str::to_string);
    let peers = listed.iter().filter_map(id).collect();
    let settled: Vec<&Value> = listed
        .iter()
        .filter(|peer| peer["connectedSinceMs"].as_u64().unwrap_or(now_ms) <= settled_before)
        .collect();
    let settled_outbound = settled
        .iter()
        .filter(|peer| peer["direction"] == "outbound")
        .count();
    Ok(Links {
        peers,
        settled: settled.into_iter().filter_map(id).collect(),
        settled_outbound,
    })
}

async fn all_links(nodes: &[SidecarNode]) -> anyhow::Result<Vec<Links>> {
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        out.push(links(node).await?);
    }
    Ok(out)
}

/// Whether the graph of connections reaches every node from the first one.
fn overlay_is_connected(nodes: &[SidecarNode], links: &[Links]) -> bool {
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.peer_id.as_str(), i))
        .collect();
    let mut seen = vec![false; nodes.len()];
    let mut queue = vec![0];
    seen[0] = true;
    while let Some(at) = queue.pop() {
        // A link counts from either end: one side may list it a moment before the other.
        let neighbours = links[at]
            .peers
            .iter()
            .filter_map(|peer| index.get(peer.as_str()).copied())
            .chain(
                (0..nodes.len()).filter(|other| links[*other].peers.contains(&nodes[at].peer_id)),
            );
        for next in neighbours.collect::<Vec<_>>() {
            if !seen[next] {
                seen[next] = true;
                queue.push(next);
            }
        }
    }
    seen.iter().all(|s| *s)
}

/// Distinct node pairs with a settled connection.
fn settled_edges(nodes: &[SidecarNode], links: &[Links]) -> usize {
    let mut pairs = BTreeSet::new();
    for (i, node) in nodes.iter().enumerate() {
        for (j, other) in nodes.iter().enumerate() {
            if i < j
                && (links[i].settled.contains(&other.peer_id)
                    || links[j].settled.contains(&node.peer_id))
            {
                pairs.insert((i, j));
            }
        }
    }
    pairs.len()
}

/// Samples the peer counts for a few seconds, checks the bounds the policy guarantees for
/// settled connections (older than its grace period), and returns each node's highest count of
/// them:
/// - a node keeps at most target + slack settled connections it dialed itself: the policy dials
///   only while below the target and, once the settled total passes target + slack, closes
///   settled connections it dialed down to the target at its next tick (so only an excess seen
///   in two samples in a row fails);
/// - no node keeps a settled link to every other, and the settled overlay is not a full mesh.
///   Peers dialing a node are accepted up to `--max-connections`, so one node's total has no
///   tighter sound bound than that; what keeps totals low is that every link is dialed by one
///   of its ends, which trims its side. `unbounded` is a node exempt from this: the writer of a
///   store, which every downloader may dial (a download opens a connection to a holder it is not
///   connected to, and the store's first holder is its writer).
async fn check_bounds(nodes: &[SidecarNode], when: &str, unbounded: Option<usize>) -> Vec<usize> {
    let mut over_outbound = vec![false; nodes.len()];
    let mut full_degree = vec![false; nodes.len()];
    let mut peak_degree = vec![0; nodes.len()];
    for sample in 0..SAMPLES {
        let links = all_links(nodes)
            .await
            .expect("every node answers /connections");
        let degrees: Vec<usize> = links.iter().map(|l| l.peers.len()).collect();
        let settled: Vec<usize> = links.iter().map(|l| l.settled.len()).collect();
        let outbound: Vec<usize> = links.iter().map(|l| l.settled_outbound).collect();
        let edges = settled_edges(nodes, &links);
        eprintln!(
            "{when} sample {sample}: all {degrees:?}, settled {settled:?}, settled dialed \
             {outbound:?}, settled links {edges} of {}",
            NODES * (NODES - 1) / 2
        );
        for (i, l) in links.iter().enumerate() {
            peak_degree[i] = peak_degree[i].max(l.settled.len());
            let over = l.settled_outbound > TARGET + SLACK;
            assert!(
                !(over && over_outbound[i]),
                "{when}: {} kept {} dialed connections, above target {TARGET} + slack {SLACK}",
                nodes[i].spec.name,
                l.settled_outbound
            );
            over_outbound[i] = over;
            let full = l.settled.len() >= FULL_MESH_DEGREE && unbounded != Some(i);
            assert!(
                !(full && full_degree[i]),
                "{when}: {} stayed connected to every other node: {l:?}",
                nodes[i].spec.name
            );
            full_degree[i] = full;
        }
        assert!(
            edges < NODES * (NODES - 1) / 2,
            "{when}: the overlay is a full mesh"
        );
        tokio::time::sleep(SAMPLE_PAUSE).await;
    }
    peak_degree
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_nodes_keep_three_peers_each_and_still_converge() {
    let root = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(root.path(), "peer-set", 0)
        .await
        .unwrap();
    let starts = (0..NODES).map(|index| {
        let spec = network
            .node_spec(index)
            .arg("--target-peers")
            .arg(TARGET.to_string());
        SidecarNode::start(spec)
    });
    for node in futures::future::join_all(starts).await {
        network.nodes.push(node.unwrap());
    }
    let nodes = &network.nodes;

    // Every node reaches its target (the registry lists seven peers to each) and the overlay
    // is one piece.
    eventually(
        "every node at its target, the overlay connected",
        SETTLE_TIMEOUT,
        || async {
            let links = all_links(nodes).await.map_err(|e| e.to_string())?;
            let degrees: Vec<usize> = links.iter().map(|l| l.peers.len()).collect();
            if degrees.iter().all(|d| *d >= TARGET) && overlay_is_connected(nodes, &links) {
                Ok(())
            } else {
                Err(format!("degrees {degrees:?}"))
            }
        },
    )
    .await;
    // Let the first connections (and those of the DHT's first queries) pass the grace period.
    tokio::time::sleep(SETTLED_AFTER).await;
    check_bounds(nodes, "settled", None).await;

    // The writer is the node with the fewest settled peers, so most nodes learn of the store
    // only through relays (a DHT query may add young links to anyone for a while).
    let links = all_links(nodes).await.unwrap();
    let (writer, writer_links) = links
        .iter()
        .enumerate()
        .min_by_key(|(_, l)| l.settled.len())
        .unwrap();
    assert!(
        writer_links.settled.len() < FULL_MESH_DEGREE,
        "the writer is not linked to every node: {writer_links:?}"
    );
    let hash = write_store(&nodes[writer].spec.data_dir, "bounded", 200_000, 7).unwrap();
    let expected = BTreeMap::from([("bounded".to_string(), hash)]);
    let all: Vec<&SidecarNode> = nodes.iter().collect();
    let took = wait_synced(&all, &expected, SYNC_TIMEOUT).await.unwrap();
    eprintln!(
        "the store written on {} reached all {NODES} nodes in {took:?}",
        nodes[writer].spec.name
    );

    // The downloads' connections settle too, and the policy trims them where they are too many.
    tokio::time::sleep(SETTLED_AFTER).await;
    let peaks = check_bounds(nodes, "after the write", Some(writer)).await;
    eprintln!("peak settled peers per node after the write: {peaks:?}");
    for node in nodes {
        let connections = node.get_json("/connections").await.unwrap();
        assert_eq!(connections["targetPeers"], Value::from(TARGET));
        let metrics = node.metrics().await.unwrap();
        assert!(
            metrics.contains(&format!("dig_node_target_peers {TARGET}")),
            "{}: no target gauge",
            node.spec.name
        );
    }
}
