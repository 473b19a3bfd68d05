//! Upgrades without a gap, on a control plane with one real node and the operator installed by its
//! chart, for the README's network (two registry replicas, three nodes):
//!
//! 1. The operator upgraded (`helm upgrade` to a new operator image, the same data-plane images):
//!    the new pods start with an empty record of what was applied, apply every child again, and
//!    the API server changes nothing: no workload's `generation`, no other child's
//!    `resourceVersion`, no pod's uid.
//! 2. Both data-plane images rolled (the DigNetwork's `bootstrap.image` and `nodes.image` set to a
//!    second tag of the same builds) while a writer adds a store to one node's volume every 0.5 s
//!    and a reader asks the registry's Service for `/peers` every 0.2 s. Counted, and asserted to
//!    be zero: failed reads; lost registrations; moments with two node pods unready or fewer
//!    ready registry replicas than the spec asks. At the end every node holds every store
//!    written, with its identity (peer id); the PodDisruptionBudgets have the operator's values
//!    and hold (a second node's eviction is refused while an evicted one is away).
//!
//! A lost registration: an answer that misses a node while the node runs. A node that stops
//! unregisters (its pod address dies with it) and registers again when back, at one replica;
//! the other replicas list it again after their next pull of that one. So an answer may miss a
//! node only from its pod's SIGTERM until one federation interval (plus 2 s of slack) after the
//! pod is Ready again; any other miss, and any miss longer than the TTL, is a lost registration.
//!
//! Skipped with a message without the tools or root, unless DIG_E2E_REQUIRE_CLUSTER=1.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dig_e2e::cluster::TestCluster;
use dig_e2e::images::repository_and_tag;
use dig_e2e::replication::{folder_hashes, write_store};
use dig_e2e::walkthrough::{
    NETWORK, NETWORK_NAMESPACE, OPERATOR_NAMESPACE, RELEASE, STEP_TIMEOUT, Walkthrough,
    real_node_with_images, wait_until,
};
use dig_operator::reconcile::args::BOOTSTRAP_FEDERATION_INTERVAL_SECONDS;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, PostParams};
use parking_lot::Mutex;
use serde_json::{Value, json};

const TEST: &str = "operator_upgrade";
const WRITE_EVERY: Duration = Duration::from_millis(500);
const READ_EVERY: Duration = Duration::from_millis(200);
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// A read that takes longer than this counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const STORE_BYTES: u64 = 16 << 10;
const REGISTRY_REPLICAS: usize = 2;
const NODES: usize = 3;
/// How long after a restarted node is Ready every replica lists it again: the operator's pull
/// period of the replicas, and slack for the pull itself and this test's polling.
const RELISTED_WITHIN: f64 = BOOTSTRAP_FEDERATION_INTERVAL_SECONDS as f64 + 2.0;
/// The README network's record TTL (the CRD's default `peerTtlSeconds`).
const PEER_TTL_SECONDS: f64 = 180.0;
/// Bounds a rollout of both images: the registry's two replicas one after the other, then (or
/// meanwhile) three nodes one after the other, each waiting for readiness.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);

fn registry_service() -> String {
    format!("{NETWORK}-bootstrap")
}

fn node_statefulset() -> String {
    format!("{NETWORK}-node")
}

/// `repo:tag` -> `repo:tag-next`: the same build under the name of a new release.
fn next_tag(image: &str) -> String {
    let (repository, tag) = repository_and_tag(image);
    format!("{repository}:{tag}-next")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_component(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get("app.kubernetes.io/component")
        .map(String::as_str)
}

fn pod_image(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.containers.first()?.image.as_deref()
}

/// The `generation` (workloads, budgets) or else the `resourceVersion` of every child the
/// operator applies, by `kind/name`: what changes when the API server changed an object's spec.
fn child_versions(cluster: &TestCluster) -> anyhow::Result<BTreeMap<String, String>> {
    let list: Value = serde_json::from_str(&cluster.kubectl([
        "get",
        "configmap,service,deployment,statefulset,poddisruptionbudget",
        "-n",
        NETWORK_NAMESPACE,
        "-l",
        &format!("app.kubernetes.io/instance={NETWORK}"),
        "-o",
        "json",
    ])?)?;
    let mut versions = BTreeMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let key = format!(
            "{}/{}",
            item["kind"].as_str().unwrap_or_default(),
            item["metadata"]["name"].as_str().unwrap_or_default()
        );
        let version = match item["metadata"]["generation"].as_i64() {
            Some(generation) => format!("generation {generation}"),
            None => format!(
                "resourceVersion {}",
                item["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            ),
        };
        versions.insert(key, version);
    }
    Ok(versions)
}

/// Pod name -> uid of the network's pods.
async fn pod_uids(pods: &Api<Pod>) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|pod| pod_component(pod).is_some())
        .map(|pod| {
            (
                pod.metadata.name.clone().unwrap_or_default(),
                pod.metadata.uid.clone().unwrap_or_default(),
            )
        })
        .collect())
}

/// `dig_operator_*` metrics of one operator pod, through the API server's pod proxy.
async fn operator_metrics(client: &kube::Client, pod: &str) -> anyhow::Result<String> {
    let request = http::Request::get(format!(
        "/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{pod}:8080/proxy/metrics"
    ))
    .body(Vec::new())?;
    Ok(client.request_text(request).await?)
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .and_then(|rest| rest.trim().parse().ok())
}

/// The operator pod that leads, once it has reconciled the network at least `reconciles` times.
async fn leader_reconciled(client: &kube::Client, reconciles: f64) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let mut seen = Vec::new();
    for pod in pods.list(&ListParams::default()).await?.items {
        if !pod_ready(&pod) {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let text = operator_metrics(client, &name).await?;
        let leader = metric(&text, "dig_operator_leader ");
        let done = metric(&text, "dig_operator_reconciles_total{kind=\"DigNetwork\"} ");
        if leader == Some(1.0) && done.is_some_and(|done| done >= reconciles) {
            return Ok(name);
        }
        seen.push(format!("{name}: leader {leader:?}, reconciles {done:?}"));
    }
    bail!("no leading operator pod has reconciled the network {reconciles} times: {seen:?}")
}

/// What the reader saw of `/peers` through the registry's Service.
#[derive(Default)]
struct Reads {
    /// Each answer: (seconds since the start, the nodes' peer ids it missed).
    answers: Vec<(f64, BTreeSet<String>)>,
    /// Failed requests: (seconds since the start, what failed).
    failed: Vec<(f64, String)>,
}

impl Reads {
    fn missing(&self) -> impl Iterator<Item = &(f64, BTreeSet<String>)> {
        self.answers.iter().filter(|(_, missed)| !missed.is_empty())
    }

    /// The longest time `peer` was missing from consecutive answers, in seconds: from the first
    /// answer that missed it to the next that listed it (or the last answer).
    fn longest_gap(&self, peer: &str) -> f64 {
        let mut longest: f64 = 0.0;
        let mut since = None;
        for (at, missed) in &self.answers {
            match (missed.contains(peer), since) {
                (true, None) => since = Some(*at),
                (false, Some(start)) => {
                    longest = longest.max(at - start);
                    since = None;
                }
                _ => {}
            }
        }
        if let (Some(start), Some((last, _))) = (since, self.answers.last()) {
            longest = longest.max(last - start);
        }
        longest
    }
}

/// Asks the registry's Service (through the API server's service proxy, which picks a ready
/// endpoint as kube-proxy does) for `/peers` every [`READ_EVERY`] until `stop`.
async fn read_peers(
    client: kube::Client,
    nodes: BTreeSet<String>,
    started: Instant,
    stop: Arc<AtomicBool>,
    reads: Arc<Mutex<Reads>>,
) {
    let path = format!(
        "/api/v1/namespaces/{NETWORK_NAMESPACE}/services/{}:http/proxy/peers?limit=1000",
        registry_service()
    );
    while !stop.load(Ordering::SeqCst) {
        let at = started.elapsed().as_secs_f64();
        let request = http::Request::get(&path)
            .body(Vec::new())
            .expect("a GET request");
        let outcome = match tokio::time::timeout(READ_TIMEOUT, client.request_text(request)).await {
            Err(_) => Err(format!("no answer within {READ_TIMEOUT:?}")),
            Ok(Err(error)) => Err(error.to_string()),
            Ok(Ok(body)) => serde_json::from_str::<Value>(&body)
                .map_err(|e| format!("not JSON ({e}): {body}"))
                .and_then(|peers| {
                    peers["peers"]
                        .as_array()
                        .map(|list| {
                            list.iter()
                                .filter_map(|p| p["peerId"].as_str().map(str::to_owned))
                                .collect::<BTreeSet<String>>()
                        })
                        .ok_or_else(|| format!("no `peers` list: {peers}"))
                }),
        };
        {
            let mut reads = reads.lock();
            match outcome {
                Ok(listed) => {
                    let missed = nodes.difference(&listed).cloned().collect();
                    reads.answers.push((at, missed));
                }
                Err(error) => reads.failed.push((at, error)),
            }
        }
        tokio::time::sleep(READ_EVERY).await;
    }
}

/// Adds a store to `volume` every [`WRITE_EVERY`] until `stop`: name -> hash.
async fn write_stores(
    volume: PathBuf,
    stop: Arc<AtomicBool>,
    written: Arc<Mutex<BTreeMap<String, String>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let mut index = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let name = format!("upgrade-{index:04}");
        match write_store(&volume, &name, STORE_BYTES, 1000 + index) {
            Ok(hash) => {
                written.lock().insert(name, hash);
            }
            Err(error) => errors
                .lock()
                .push(format!("writing {name} into {volume:?}: {error}")),
        }
        index += 1;
        tokio::time::sleep(WRITE_EVERY).await;
    }
}

/// What the pod watcher saw during the rollout.
#[derive(Default)]
struct PodWatch {
    polls: usize,
    /// Most node pods not ready (or missing) at one poll, and when.
    max_nodes_unready: (usize, f64),
    /// Fewest ready registry replicas at one poll, and when.
    min_registries_ready: (usize, f64),
    /// Every uid each node pod name had, in order.
    node_uids: BTreeMap<String, Vec<String>>,
    /// When each node pod name was not ready (or absent): (from, to) in seconds since the start.
    node_down: BTreeMap<String, Vec<(f64, f64)>>,
    /// Node pod names not ready since (seconds since the start).
    node_down_since: BTreeMap<String, f64>,
}

impl PodWatch {
    /// Whether a node pod `pod` down or back within `after` seconds explains a miss at `at`
    /// (with 1 s before, for a SIGTERM this watcher had not yet seen).
    fn restarting(&self, pod: &str, at: f64, after: f64) -> bool {
        let open = self
            .node_down_since
            .get(pod)
            .map(|since| (*since, f64::MAX));
        self.node_down
            .get(pod)
            .into_iter()
            .flatten()
            .copied()
            .chain(open)
            .any(|(from, to)| at >= from - 1.0 && at <= to + after)
    }
}

async fn watch_pods(
    pods: Api<Pod>,
    started: Instant,
    stop: Arc<AtomicBool>,
    watch: Arc<Mutex<PodWatch>>,
) {
    while !stop.load(Ordering::SeqCst) {
        if let Ok(list) = pods.list(&ListParams::default()).await {
            let at = started.elapsed().as_secs_f64();
            let ready = |component: &str| {
                list.items
                    .iter()
                    .filter(|p| pod_component(p) == Some(component) && pod_ready(p))
                    .count()
            };
            let nodes_unready = NODES.saturating_sub(ready("node"));
            let registries_ready = ready("bootstrap");
            let mut watch = watch.lock();
            watch.polls += 1;
            if nodes_unready > watch.max_nodes_unready.0 {
                watch.max_nodes_unready = (nodes_unready, at);
            }
            if registries_ready < watch.min_registries_ready.0 {
                watch.min_registries_ready = (registries_ready, at);
            }
            for ordinal in 0..NODES {
                let name = format!("{}-{ordinal}", node_statefulset());
                let up = list
                    .items
                    .iter()
                    .any(|p| p.metadata.name.as_deref() == Some(name.as_str()) && pod_ready(p));
                match (up, watch.node_down_since.get(&name).copied()) {
                    (false, None) => {
                        watch.node_down_since.insert(name, at);
                    }
                    (true, Some(since)) => {
                        watch.node_down_since.remove(&name);
                        watch.node_down.entry(name).or_default().push((since, at));
                    }
                    _ => {}
                }
            }
            for pod in list
                .items
                .iter()
                .filter(|p| pod_component(p) == Some("node"))
            {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let uids = watch
                    .node_uids
                    .entry(pod.metadata.name.clone().unwrap_or_default())
                    .or_default();
                if uids.last() != Some(&uid) {
                    uids.push(uid);
                }
            }
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// Both rollouts done: exactly the spec's pods, all ready and all running `registry` or `node`.
async fn rolled_out(pods: &Api<Pod>, registry: &str, node: &str) -> anyhow::Result<()> {
    let list = pods.list(&ListParams::default()).await?.items;
    for (component, image, count) in [
        ("bootstrap", registry, REGISTRY_REPLICAS),
        ("node", node, NODES),
    ] {
        let of: Vec<&Pod> = list
            .iter()
            .filter(|p| pod_component(p) == Some(component))
            .collect();
        let done = of
            .iter()
            .filter(|p| pod_ready(p) && pod_image(p) == Some(image))
            .count();
        if of.len() != count || done != count {
            bail!(
                "{component}: {done} of {} pods ready on {image} (want {count})",
                of.len()
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_and_image_upgrades_lose_nothing_on_a_real_node() {
    let Some((cluster, images)) = real_node_with_images(TEST) else {
        return;
    };
    let test_started = Instant::now();
    let walk = Walkthrough::new(&cluster, images.clone()).expect("the real node");
    walk.install_operator().expect("helm install and rollout");
    walk.apply_network()
        .expect("the README's DigNetwork becomes Ready");
    // Without retries: each read of /peers and each eviction counts as the server answered it.
    let client = cluster
        .client_without_retries()
        .await
        .expect("a client of the cluster");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NETWORK_NAMESPACE);

    // The starting point: every pod ready, the three nodes registered with both replicas.
    wait_until("every pod of the network Ready", STEP_TIMEOUT, || async {
        rolled_out(&pods, &images.bootstrap, &images.sidecar).await
    })
    .await
    .unwrap();
    let nodes = walk.network_pods("node").unwrap();
    let mut peer_ids = BTreeMap::new();
    for node in &nodes {
        peer_ids.insert(node.name.clone(), walk.node_peer_id(node).await.unwrap());
    }
    let node_ids: BTreeSet<String> = peer_ids.values().cloned().collect();
    wait_until(
        "both registry replicas list the three nodes",
        STEP_TIMEOUT,
        || async {
            let views = walk.registry_views().await?;
            if views.len() == REGISTRY_REPLICAS && views.values().all(|ids| *ids == node_ids) {
                Ok(())
            } else {
                bail!("views {views:?}, nodes {node_ids:?}")
            }
        },
    )
    .await
    .unwrap();

    // 1. The operator upgraded: new pods, an empty record of what was applied, the same desired
    //    state. Every child is applied again and nothing changes.
    let versions_before = child_versions(&cluster).unwrap();
    let uids_before = pod_uids(&pods).await.unwrap();
    let next_operator = next_tag(&images.operator);
    cluster
        .tag_image(&images.operator, &next_operator)
        .expect("a second tag of the operator image");
    let (_, next_operator_tag) = repository_and_tag(&next_operator);
    cluster
        .helm([
            "upgrade",
            RELEASE,
            &dig_e2e::process::workspace_root()
                .join("charts/dig-operator")
                .display()
                .to_string(),
            "-n",
            OPERATOR_NAMESPACE,
            "--reuse-values",
            "--set",
            &format!("image.tag={next_operator_tag}"),
        ])
        .expect("helm upgrade to the new operator image");
    walk.wait_operator_rollout()
        .expect("the new operator pods roll out");
    // A new process reconciles each network once at start (and again on each child event), with
    // nothing recorded as applied: two reconciles prove at least one full apply ran.
    let leader = wait_until(
        "the upgraded operator's leader reconciling the network twice",
        STEP_TIMEOUT,
        || leader_reconciled(&client, 2.0),
    )
    .await
    .unwrap();
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let leader_image = operator_pods
        .get(&leader)
        .await
        .ok()
        .and_then(|pod| pod_image(&pod).map(str::to_owned));
    assert_eq!(
        leader_image.as_deref(),
        Some(next_operator.as_str()),
        "the leader {leader} runs the upgraded operator"
    );
    assert_eq!(
        child_versions(&cluster).unwrap(),
        versions_before,
        "the upgraded operator changed no child (generation, or resourceVersion where there is none)"
    );
    assert_eq!(
        pod_uids(&pods).await.unwrap(),
        uids_before,
        "the upgraded operator restarted no pod"
    );
    eprintln!("operator upgraded to {next_operator}: {leader} leads, no child changed");

    // 2. Both images rolled while a writer adds stores and a reader polls /peers.
    let next_bootstrap = next_tag(&images.bootstrap);
    let next_sidecar = next_tag(&images.sidecar);
    cluster
        .tag_image(&images.bootstrap, &next_bootstrap)
        .unwrap();
    cluster.tag_image(&images.sidecar, &next_sidecar).unwrap();
    let volumes: Vec<PathBuf> = nodes
        .iter()
        .map(|node| walk.node_volume(&node.name).unwrap())
        .collect();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Mutex::new(Reads::default()));
    let written = Arc::new(Mutex::new(BTreeMap::new()));
    let write_errors = Arc::new(Mutex::new(Vec::new()));
    let watch = Arc::new(Mutex::new(PodWatch {
        min_registries_ready: (REGISTRY_REPLICAS, 0.0),
        ..PodWatch::default()
    }));
    let tasks = [
        tokio::spawn(read_peers(
            client.clone(),
            node_ids.clone(),
            started,
            stop.clone(),
            reads.clone(),
        )),
        tokio::spawn(write_stores(
            volumes[0].clone(),
            stop.clone(),
            written.clone(),
            write_errors.clone(),
        )),
        tokio::spawn(watch_pods(
            pods.clone(),
            started,
            stop.clone(),
            watch.clone(),
        )),
    ];
    // A few seconds of the steady state first: a failure there is no upgrade's.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let patch = json!({"spec": {
        "bootstrap": {"image": next_bootstrap},
        "nodes": {"image": next_sidecar},
    }})
    .to_string();
    cluster
        .kubectl([
            "patch",
            "dignetwork",
            NETWORK,
            "-n",
            NETWORK_NAMESPACE,
            "--type",
            "merge",
            "-p",
            &patch,
        ])
        .unwrap();
    let roll_started = Instant::now();
    let rolled = wait_until(
        "every registry and node pod ready on the new images",
        ROLLOUT_TIMEOUT,
        || rolled_out(&pods, &next_bootstrap, &next_sidecar),
    )
    .await;
    let roll_took = roll_started.elapsed();
    // A few seconds of the new steady state, then everything this test started stops.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("a test task panicked");
    }
    rolled.unwrap();

    let reads = std::mem::take(&mut *reads.lock());
    let watch = std::mem::take(&mut *watch.lock());
    let written = std::mem::take(&mut *written.lock());
    let pod_of: BTreeMap<&String, &String> = peer_ids.iter().map(|(pod, id)| (id, pod)).collect();
    let (restarting, lost): (Vec<_>, Vec<_>) = reads
        .missing()
        .flat_map(|(at, missed)| missed.iter().map(move |peer| (*at, peer)))
        .partition(|(at, peer)| watch.restarting(pod_of[peer], *at, RELISTED_WITHIN));
    let gaps: BTreeMap<&String, String> = peer_ids
        .iter()
        .map(|(pod, peer)| (pod, format!("{:.1} s", reads.longest_gap(peer))))
        .collect();
    eprintln!(
        "rollout of both images: {roll_took:.1?}; {} answers of /peers, {} failed reads, {} \
         answers missing a node ({} misses of a restarting node, {} lost registrations); \
         longest miss per node {gaps:?}; node pods down {:?}; {} stores written; {} pod polls, \
         at most {} node pods unready (at {:.1} s), at least {} registry replicas ready (at \
         {:.1} s); node pod uids {:?}",
        reads.answers.len(),
        reads.failed.len(),
        reads.missing().count(),
        restarting.len(),
        lost.len(),
        watch.node_down,
        written.len(),
        watch.polls,
        watch.max_nodes_unready.0,
        watch.max_nodes_unready.1,
        watch.min_registries_ready.0,
        watch.min_registries_ready.1,
        watch.node_uids,
    );
    assert!(
        reads.failed.is_empty(),
        "{} of {} reads of /peers failed: {:?}",
        reads.failed.len(),
        reads.answers.len() + reads.failed.len(),
        reads.failed
    );
    assert!(
        lost.is_empty(),
        "{} misses of a running node in /peers, neither while it restarted nor within \
         {RELISTED_WITHIN} s after (seconds since the start, peer id): {lost:?}",
        lost.len()
    );
    for (pod, peer) in &peer_ids {
        assert!(
            reads.longest_gap(peer) < PEER_TTL_SECONDS,
            "{pod} was missing from /peers for longer than the TTL: {gaps:?}"
        );
    }
    assert!(
        reads.answers.len() > 50,
        "the reader read throughout the rollout: {} answers",
        reads.answers.len()
    );
    assert!(write_errors.lock().is_empty(), "{:?}", write_errors.lock());
    assert!(
        written.len() > 20,
        "the writer wrote throughout: {written:?}"
    );
    assert_eq!(
        watch.max_nodes_unready.0, 1,
        "node pods restart one by one: at most one unready at a time (and one was)"
    );
    assert_eq!(
        watch.min_registries_ready.0, REGISTRY_REPLICAS,
        "a registry replica is taken down only once its replacement is ready"
    );
    for (pod, uids) in &watch.node_uids {
        assert_eq!(uids.len(), 2, "{pod} restarted exactly once: {uids:?}");
    }

    // Identity: every node pod came back with its peer id (its volume).
    for node in walk.network_pods("node").unwrap() {
        assert_eq!(
            walk.node_peer_id(&node).await.unwrap(),
            peer_ids[&node.name],
            "{} keeps its identity across the image upgrade",
            node.name
        );
    }

    // No failed sync: every store written during the rollout reaches every node.
    let synced = wait_until(
        "every store written during the rollout on every node",
        STEP_TIMEOUT,
        || async {
            for volume in &volumes {
                let held = folder_hashes(volume).with_context(|| format!("reading {volume:?}"))?;
                let lacking: Vec<&String> = written
                    .iter()
                    .filter(|(name, hash)| held.get(*name) != Some(*hash))
                    .map(|(name, _)| name)
                    .collect();
                if !lacking.is_empty() {
                    bail!(
                        "{volume:?} lacks {} stores, e.g. {:?}",
                        lacking.len(),
                        &lacking[..lacking.len().min(5)]
                    );
                }
            }
            Ok(started.elapsed())
        },
    )
    .await
    .unwrap();
    eprintln!(
        "{} stores on all {NODES} nodes {synced:.1?} after the writer started",
        written.len()
    );

    // The PodDisruptionBudgets the operator sets, in place after the rollout.
    for (name, component) in [
        (registry_service(), "bootstrap"),
        (node_statefulset(), "node"),
    ] {
        let pdb: Value = serde_json::from_str(
            &cluster
                .kubectl([
                    "get",
                    "poddisruptionbudget",
                    &name,
                    "-n",
                    NETWORK_NAMESPACE,
                    "-o",
                    "json",
                ])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(pdb["spec"]["maxUnavailable"], 1, "{name}: {}", pdb["spec"]);
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"], component,
            "{name}: {}",
            pdb["spec"]
        );
        assert_eq!(
            pdb["status"]["disruptionsAllowed"], 1,
            "{name}: every pod healthy again, one may go: {}",
            pdb["status"]
        );
    }

    // ... and they hold: while an evicted node is away (a drain), a second node's eviction is
    // refused. Asked as a dry run, so nothing else restarts.
    let first = format!("{}-0", node_statefulset());
    let second = format!("{}-1", node_statefulset());
    let first_uid = pods.get(&first).await.unwrap().metadata.uid;
    pods.evict(&first, &EvictParams::default())
        .await
        .expect("the first eviction is allowed");
    let dry_run = EvictParams {
        delete_options: Some(DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        }),
        post_options: PostParams {
            dry_run: true,
            ..PostParams::default()
        },
    };
    let away = pods.get(&first).await.unwrap();
    let first_away = away.metadata.uid != first_uid || !pod_ready(&away);
    let refused = pods.evict(&second, &dry_run).await;
    let budget = cluster
        .kubectl([
            "get",
            "poddisruptionbudget",
            &node_statefulset(),
            "-n",
            NETWORK_NAMESPACE,
            "-o",
            "jsonpath={.status}",
        ])
        .unwrap();
    assert!(first_away, "{first} was evicted: {:?}", away.metadata);
    match refused {
        Err(kube::Error::Api(status)) if status.code == 429 => {}
        other => panic!(
            "evicting {second} while {first} is away: want 429, got {other:?}; budget now {budget}"
        ),
    }
    wait_until(
        "the evicted node pod back and Ready",
        STEP_TIMEOUT,
        || async {
            let pod = pods.get(&first).await?;
            if pod.metadata.uid != first_uid && pod_ready(&pod) {
                Ok(())
            } else {
                bail!("{first} not back yet")
            }
        },
    )
    .await
    .unwrap();
    eprintln!("{first} evicted and back; {second}'s eviction meanwhile refused (budget {budget})");

    eprintln!("{TEST}: {:.1?} in all", test_started.elapsed());
}
