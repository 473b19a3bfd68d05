//! Scale-down with a drain on a control plane with one real node, the operator installed by its
//! chart: three nodes, a store written into node 2's volume while node 2 is cut off from nodes 0
//! and 1 (iptables in node 2's pod network namespace), `kubectl scale --replicas 1`. Node 2 waits
//! (the DigNetwork's `Draining` condition and `status.drain` name it and the store, the
//! StatefulSet keeps 3 replicas); once the cut is lifted node 0 fetches the store, node 2 leaves,
//! node 1 drains and leaves, and node 0 holds the store with the same bytes.
//!
//! Skipped with a message without the tools or root, unless DIG_E2E_REQUIRE_CLUSTER=1.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dig_e2e::cluster::{REAL_NODE_STORAGE_CLASS, TestCluster};
use dig_e2e::operator::{NETWORK_KIND, condition, dig_manifest, event_notes, get_object};
use dig_e2e::replication::file_hash;
use dig_e2e::walkthrough::{
    PodInfo, STEP_TIMEOUT, Walkthrough, network_node_pods, real_node_with_images, wait_until,
};
use serde_json::{Value, json};

const TEST: &str = "operator_drain";
const NS: &str = "drain-e2e";
const NAME: &str = "drainnet";
const STORE: &str = "only-on-node-2";

fn kubectl(cluster: &TestCluster, args: &[&str]) -> anyhow::Result<String> {
    Ok(cluster.kubectl(args)?)
}

fn network(cluster: &TestCluster) -> anyhow::Result<Value> {
    get_object(cluster, NS, "dignetwork", NAME)?.context("no DigNetwork")
}

fn statefulset_replicas(cluster: &TestCluster) -> anyhow::Result<i64> {
    let sts = get_object(cluster, NS, "statefulset", &format!("{NAME}-node"))?
        .context("no StatefulSet")?;
    sts["spec"]["replicas"].as_i64().context("no spec.replicas")
}

/// The network's node pods, by name.
fn node_pods(cluster: &TestCluster) -> anyhow::Result<Vec<(PodInfo, Value)>> {
    network_node_pods(cluster, NS, NAME)
}

fn pod_ip(pods: &[(PodInfo, Value)], ordinal: usize) -> Ipv4Addr {
    let name = format!("{NAME}-node-{ordinal}");
    pods.iter()
        .find(|(p, _)| p.name == name)
        .and_then(|(p, _)| p.ip)
        .unwrap_or_else(|| panic!("{name} has no IP"))
}

/// Peer ids `ip`'s node is connected to.
async fn connected(walk: &Walkthrough<'_>, ip: Ipv4Addr) -> anyhow::Result<Vec<String>> {
    let peers = walk.get_json(&format!("http://{ip}:8080/peers")).await?;
    Ok(peers["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["peerId"].as_str().map(str::to_owned))
        .collect())
}

/// iptables rules that cut one pod off from some pod IPs, in the pod's own network namespace
/// (reached through a process of the pod, found by the pod uid in its cgroup path). TCP is
/// refused with resets (the peers' side of a connection ends at its next packet) and the pod's
/// own established sockets to them are destroyed (`ss -K`: a socket whose packets are refused
/// locally would retransmit for 15 minutes); the rest (QUIC) is dropped and times out. Removed
/// when dropped.
struct Cut {
    netns: PathBuf,
    rules: Vec<Vec<String>>,
}

impl Cut {
    fn new(pod_uid: &str, pod_ip: Ipv4Addr, from: &[Ipv4Addr]) -> anyhow::Result<Self> {
        let netns = pod_netns(pod_uid)?;
        let addresses = nsenter(&netns, &["ip", "-o", "-4", "addr"])?;
        if !addresses.contains(&format!("{pod_ip}/")) {
            bail!("{netns:?} is not the pod's network namespace: {addresses}");
        }
        let mut cut = Self {
            netns,
            rules: Vec::new(),
        };
        let rule = |words: &str| words.split(' ').map(str::to_owned).collect::<Vec<_>>();
        for ip in from {
            // Appended in this order: resets (ours, answering theirs) pass, other TCP is refused
            // with a reset, anything else is dropped.
            for words in [
                format!("OUTPUT -d {ip} -p tcp --tcp-flags RST RST -j ACCEPT"),
                format!("OUTPUT -d {ip} -p tcp -j REJECT --reject-with tcp-reset"),
                format!("OUTPUT -d {ip} -j DROP"),
                format!("INPUT -s {ip} -p tcp -j REJECT --reject-with tcp-reset"),
                format!("INPUT -s {ip} -j DROP"),
            ] {
                let rule = rule(&words);
                cut.iptables("-A", &rule)?;
                cut.rules.push(rule);
            }
            let destination = ip.to_string();
            nsenter(&cut.netns, &["ss", "-K", "-tn", "dst", &destination])?;
        }
        Ok(cut)
    }

    fn iptables(&self, op: &str, rule: &[String]) -> anyhow::Result<()> {
        let mut args = vec!["iptables", "-w", op];
        args.extend(rule.iter().map(String::as_str));
        nsenter(&self.netns, &args).map(|_| ())
    }

    fn lift(&mut self) -> anyhow::Result<()> {
        while let Some(rule) = self.rules.pop() {
            self.iptables("-D", &rule)?;
        }
        Ok(())
    }
}

/// Runs `command` in the network namespace `netns`; its output.
fn nsenter(netns: &std::path::Path, command: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("--")
        .args(command)
        .output()
        .context("running nsenter")?;
    if !out.status.success() {
        bail!(
            "nsenter {netns:?} {command:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Drop for Cut {
    fn drop(&mut self) {
        if let Err(error) = self.lift() {
            eprintln!("{TEST}: removing the iptables cut: {error:#}");
        }
    }
}

/// The network namespace of the pod with uid `uid`: that of a process whose cgroup path names
/// the pod (`pod<uid>`, with `_` for `-` under the systemd driver).
fn pod_netns(uid: &str) -> anyhow::Result<PathBuf> {
    let marks = [format!("pod{uid}"), format!("pod{}", uid.replace('-', "_"))];
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(cgroups) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            continue;
        };
        if marks.iter().any(|m| cgroups.contains(m.as_str())) {
            let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
            if std::fs::metadata(&netns).is_ok() {
                return Ok(netns);
            }
        }
    }
    bail!("no process of pod {uid} found in /proc")
}

fn events(cluster: &TestCluster, reason: &str) -> anyhow::Result<Vec<String>> {
    Ok(event_notes(cluster, NS, reason)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_only_on_the_leaving_node_survives_a_scale_down_on_a_real_node() {
    let Some((cluster, images)) = real_node_with_images(TEST) else {
        return;
    };
    let started = Instant::now();
    let walk = Walkthrough::new(&cluster, images).expect("the real node");
    walk.install_operator().expect("helm install and rollout");
    kubectl(&cluster, &["create", "namespace", NS]).unwrap();
    let spec = json!({
        "bootstrap": {"replicas": 1},
        "nodes": {
            "replicas": 3,
            "drainTimeout": "10m",
            "storage": {"size": "64Mi", "storageClassName": REAL_NODE_STORAGE_CLASS},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"},
        },
    });
    let manifest = dig_manifest(NETWORK_KIND, NS, NAME, spec);
    cluster
        .kubectl_with_stdin(["apply", "-f", "-"], &manifest.to_string())
        .unwrap();
    let pods = wait_until("3 node pods Ready", STEP_TIMEOUT, || async {
        let pods = node_pods(&cluster)?;
        if pods.len() == 3 && pods.iter().all(|(p, _)| p.ready && p.ip.is_some()) {
            Ok(pods)
        } else {
            bail!(
                "{:?}",
                pods.iter()
                    .map(|(p, _)| (&p.name, p.ready))
                    .collect::<Vec<_>>()
            )
        }
    })
    .await
    .unwrap();
    let env = pods[2].1["spec"]["containers"][0]["env"].to_string();
    assert!(
        env.contains("DIG_DRAIN_ANNOTATIONS") && env.contains("/etc/podinfo/annotations"),
        "{env}"
    );
    let (ip0, ip1, ip2) = (pod_ip(&pods, 0), pod_ip(&pods, 1), pod_ip(&pods, 2));
    let mut ids = Vec::new();
    for (pod, _) in &pods {
        ids.push(walk.node_peer_id(pod).await.unwrap());
    }
    eprintln!("{TEST}: nodes up after {:?}", started.elapsed());

    // Node 2 cut off from nodes 0 and 1, until neither side lists the other.
    let mut cut = Cut::new(&pods[2].0.uid, ip2, &[ip0, ip1]).expect("iptables in node 2's pod");
    wait_until(
        "node 2 disconnected from nodes 0 and 1",
        STEP_TIMEOUT,
        || async {
            let of2 = connected(&walk, ip2).await?;
            let of0 = connected(&walk, ip0).await?;
            let of1 = connected(&walk, ip1).await?;
            if of2.contains(&ids[0])
                || of2.contains(&ids[1])
                || of0.contains(&ids[2])
                || of1.contains(&ids[2])
            {
                bail!("node 2 sees {of2:?}; node 0 {of0:?}; node 1 {of1:?}")
            }
            Ok(())
        },
    )
    .await
    .unwrap();

    // The store, written into node 2's volume only.
    let claim = |i: usize| format!("dig-data-{NAME}-node-{i}");
    let dir2 = walk.claim_dir(NS, &claim(2)).unwrap();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let file = format!("{STORE}.dig");
    std::fs::write(dir2.join(&file), &bytes).unwrap();
    let hash = blake3::hash(&bytes).to_hex().to_string();
    wait_until("node 2 holds the store", STEP_TIMEOUT, || async {
        let stores = walk.get_json(&format!("http://{ip2}:8080/stores")).await?;
        let held = stores["stores"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == STORE);
        if held { Ok(()) } else { bail!("{stores}") }
    })
    .await
    .unwrap();
    let dir0 = walk.claim_dir(NS, &claim(0)).unwrap();
    assert_eq!(
        file_hash(&dir0.join(&file)).unwrap(),
        None,
        "node 0 is cut off"
    );

    // Scale to one: node 2 drains first and waits for a copy of the store.
    kubectl(
        &cluster,
        &["scale", "dignetwork", NAME, "-n", NS, "--replicas", "1"],
    )
    .unwrap();
    let drain_began = Instant::now();
    let waiting = wait_until(
        "the DigNetwork says node 2 waits for a copy of the store",
        STEP_TIMEOUT,
        || async {
            let net = network(&cluster)?;
            let draining = condition(&net, "Draining").cloned().unwrap_or_default();
            let message = draining["message"].as_str().unwrap_or_default();
            if draining["status"] == "True"
                && draining["reason"] == "WaitingForCopies"
                && message.contains(&format!("{NAME}-node-2"))
                && message.contains(STORE)
                && net["status"]["drain"]["pod"] == format!("{NAME}-node-2")
                && net["status"]["drain"]["uncovered"] == 1
            {
                Ok(net)
            } else {
                bail!(
                    "Draining {draining}, status.drain {}",
                    net["status"]["drain"]
                )
            }
        },
    )
    .await
    .unwrap();
    eprintln!("{TEST}: waiting: {}", waiting["status"]["drain"]);
    assert_eq!(
        statefulset_replicas(&cluster).unwrap(),
        3,
        "node 2 is kept while it drains"
    );
    let annotation = kubectl(
        &cluster,
        &[
            "get",
            "pod",
            &format!("{NAME}-node-2"),
            "-n",
            NS,
            "-o",
            "jsonpath={.metadata.annotations.dig\\.net/drain}",
        ],
    )
    .unwrap();
    assert!(
        !annotation.trim().is_empty(),
        "node 2 carries dig.net/drain"
    );
    let report = walk
        .get_json(&format!("http://{ip2}:8080/drain"))
        .await
        .unwrap();
    assert_eq!(report["draining"], true, "{report}");
    assert_eq!(report["uncovered"], json!([STORE]), "{report}");
    assert_eq!(report["drained"], false, "{report}");

    // The cut lifted: node 0 (or 1) fetches the store, node 2 leaves, then node 1.
    cut.lift().unwrap();
    wait_until("the StatefulSet down to one node", STEP_TIMEOUT, || async {
        let replicas = statefulset_replicas(&cluster)?;
        let names: Vec<String> = node_pods(&cluster)?
            .into_iter()
            .map(|(p, _)| p.name)
            .collect();
        if replicas == 1 && names == [format!("{NAME}-node-0")] {
            Ok(())
        } else {
            bail!("replicas {replicas}, pods {names:?}")
        }
    })
    .await
    .unwrap();
    eprintln!(
        "{TEST}: scale-down done {:?} after it began",
        drain_began.elapsed()
    );
    assert_eq!(
        file_hash(&dir0.join(&file)).unwrap().as_deref(),
        Some(hash.as_str()),
        "node 0 holds the store with the same bytes"
    );
    let drained = wait_until(
        "NodeDrained events for nodes 2 and 1",
        Duration::from_secs(60),
        || async {
            let notes = events(&cluster, "NodeDrained")?;
            let of = |i: usize| {
                notes
                    .iter()
                    .any(|n| n.starts_with(&format!("{NAME}-node-{i} left after")))
            };
            if of(2) && of(1) {
                Ok(notes)
            } else {
                bail!("{notes:?}")
            }
        },
    )
    .await
    .unwrap();
    assert!(
        drained
            .iter()
            .any(|n| n.starts_with(&format!("{NAME}-node-2")) && n.contains(STORE)),
        "node 2's event names the store it waited for: {drained:?}"
    );
    assert!(events(&cluster, "DrainTimedOut").unwrap().is_empty());
    let net = network(&cluster).unwrap();
    assert!(net["status"]["drain"].is_null(), "{}", net["status"]);
    assert_eq!(condition(&net, "Draining").unwrap()["status"], "False");
    eprintln!("{TEST}: done after {:?}", started.elapsed());
}
