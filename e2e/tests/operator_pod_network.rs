//! A default DigNetwork's nodes, run as real processes with the exact command lines and node
//! config file the operator generates, each in a network namespace of its own as pods are on a pod
//! network, with the registry in a third. Without `--allow-loopback` and without mDNS (both off in
//! a cluster), the nodes can only meet through the registry, at the addresses they register: the
//! pod address Kubernetes hands them as `$(POD_IP)`. They connect and replicate a file.
//!
//! No cluster DNS exists here, so the Service names in the generated configuration are replaced
//! by the registry pod's address.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dig_e2e::netns::{NetnsError, PodNetwork, sidecar_status_in};
use dig_e2e::network::peer_ids;
use dig_e2e::process::{ProcessSpec, binary_path, wait_while_running};
use dig_operator::reconcile::{
    args::{CONFIG_DIR, CONFIG_FILE, DATA_DIR, STATE_DIR},
    build::CONFIG_KEY,
    fixtures::{bootstrap_container, build_with, kubelet_expanded, network, node_container},
    validate::NetworkFacts,
};

const REGISTRY_SERVICE_URL: &str = "http://net-bootstrap.ns.svc:3000";

/// The node container's args as the kubelet would run them in pod `pod` at `pod_ip`, with the
/// mounted folders mapped to `root`.
fn node_command_line(args: &[String], pod: &str, pod_ip: &str, root: &Path) -> Vec<String> {
    let config = format!("{CONFIG_DIR}/{CONFIG_FILE}");
    kubelet_expanded(args, pod, pod_ip)
        .into_iter()
        .map(|arg| {
            if arg == config {
                root.join(CONFIG_FILE).display().to_string()
            } else if arg == STATE_DIR {
                root.join("data/.dig-node").display().to_string()
            } else if arg == DATA_DIR {
                root.join("data").display().to_string()
            } else {
                arg
            }
        })
        .collect()
}

#[test]
fn nodes_on_a_pod_network_meet_through_the_registry_at_their_pod_addresses() -> anyhow::Result<()> {
    let pods = match PodNetwork::create("dig-pods", 3, (231, 78)) {
        Ok(pods) => pods,
        Err(NetnsError::Unavailable(reason)) => {
            eprintln!("SKIPPED: {reason}");
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    let children = build_with(&network("networkId: podnet"), NetworkFacts::default());
    let registry_pod = &pods.pods[0];
    let registry_url = format!("http://{}:3000", registry_pod.address);

    // The registry with the generated args, less the federation URL (a Service name).
    let mut registry_args = bootstrap_container(&children)
        .args
        .clone()
        .unwrap_or_default();
    if let Some(at) = registry_args.iter().position(|a| a == "--peer-bootstrap") {
        registry_args.drain(at..at + 2);
    }
    let mut processes = vec![
        ProcessSpec::new("ip")
            .name("registry")
            .args(["netns", "exec", registry_pod.name.as_str()])
            .arg(binary_path("dig-bootstrap")?.display().to_string())
            .args(registry_args)
            .spawn()?,
    ];

    let node_config = children.node_config.data.as_ref().unwrap()[CONFIG_KEY].clone();
    assert!(node_config.contains(REGISTRY_SERVICE_URL), "{node_config}");
    let node_args = node_container(&children).args.clone().unwrap_or_default();
    let root = tempfile::tempdir()?;
    let mut data_dirs: Vec<PathBuf> = Vec::new();
    for (index, pod) in pods.pods[1..].iter().enumerate() {
        let pod_root = root.path().join(format!("net-node-{index}"));
        std::fs::create_dir_all(pod_root.join("data"))?;
        std::fs::write(
            pod_root.join(CONFIG_FILE),
            node_config.replace(REGISTRY_SERVICE_URL, &registry_url),
        )?;
        let args = node_command_line(
            &node_args,
            &format!("net-node-{index}"),
            &pod.address.to_string(),
            &pod_root,
        );
        assert!(
            !args.iter().any(|a| a == "--allow-loopback"),
            "pods need no loopback: {args:?}"
        );
        processes.push(
            ProcessSpec::new("ip")
                .name(format!("net-node-{index}"))
                .args(["netns", "exec", pod.name.as_str()])
                .arg(binary_path("dig-sidecar")?.display().to_string())
                .args(args)
                .spawn()?,
        );
        data_dirs.push(pod_root.join("data"));
    }

    let node_pods = &pods.pods[1..];
    let states = wait_while_running(
        Duration::from_secs(60),
        "both nodes connected to each other",
        &mut processes,
        || {
            let states: Vec<serde_json::Value> = node_pods
                .iter()
                .map(|pod| sidecar_status_in(&pod.name))
                .collect::<Option<_>>()?;
            let peer = |index: usize| states[index]["health"]["peerId"].as_str().map(String::from);
            let (first, second) = (peer(0)?, peer(1)?);
            let connected =
                |index: usize| peer_ids(&states[index]["connections"]["connectedPeers"]);
            (connected(0).contains(&second) && connected(1).contains(&first)).then_some(states)
        },
    );
    for (state, pod) in states.iter().zip(node_pods) {
        let connections = &state["connections"];
        // In any order: libp2p lists the most recently confirmed external address first.
        let announced: BTreeSet<&str> = connections["announcedAddresses"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        let tcp = format!("/ip4/{}/tcp/4001", pod.address);
        let quic = format!("/ip4/{}/udp/4001/quic-v1", pod.address);
        assert_eq!(
            announced,
            BTreeSet::from([tcp.as_str(), quic.as_str()]),
            "a node registers its pod address"
        );
        assert_eq!(
            connections["discovery"]["mdns"]["enabled"], false,
            "mDNS is off in a cluster, so the registry did this"
        );
        let remote = connections["connectedPeers"][0]["addresses"].to_string();
        assert!(
            node_pods
                .iter()
                .any(|other| other.address != pod.address
                    && remote.contains(&other.address.to_string())),
            "connected over the pod network: {remote}"
        );
    }

    // A store written on one node reaches the other, byte for byte.
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let staging = root.path().join("staging.dig");
    std::fs::write(&staging, &content)?;
    std::fs::rename(&staging, data_dirs[0].join("podstore.dig"))?;
    let replica = data_dirs[1].join("podstore.dig");
    wait_while_running(
        Duration::from_secs(60),
        "the store replicated to the other node",
        &mut processes,
        || {
            std::fs::read(&replica)
                .ok()
                .filter(|bytes| *bytes == content)
        },
    );

    for process in &mut processes {
        process.kill();
    }
    drop(pods);
    Ok(())
}
