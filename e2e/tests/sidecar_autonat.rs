//! AutoNAT end to end: a node started without `--announce` learns its address from a peer
//! (identify's observed address), has that peer dial it back (AutoNAT v2), registers the confirmed
//! address, and a node that knows only the registry reaches it there.
//!
//! Each process runs in a network namespace of its own (as on separate machines), without
//! `--allow-loopback`, mDNS or the DHT: the registry is the only way nodes learn addresses, and
//! a node registers only `--announce` and confirmed addresses.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dig_e2e::bootstrap::metric_value;
use dig_e2e::netns::{NetnsError, PodNamespace, PodNetwork, sidecar_status_in};
use dig_e2e::process::{ProcessSpec, TestProcess, binary_path, wait_while_running};
use serde_json::Value;

const NETWORK_ID: &str = "autonat-e2e";
const P2P_PORT: u16 = 4001;
const WAIT: Duration = Duration::from_secs(90);

/// An HTTP GET run inside a namespace (the test's own namespace cannot reach the pod network);
/// `None` while nothing answers.
fn http_get_in(namespace: &str, url: &str) -> Option<String> {
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            namespace,
            "curl",
            "-sf",
            "--max-time",
            "5",
            url,
        ])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn start_node(
    name: &str,
    pod: &PodNamespace,
    root: &Path,
    registry_url: &str,
    announce: bool,
) -> anyhow::Result<TestProcess> {
    let data = root.join(name);
    std::fs::create_dir_all(&data)?;
    let mut spec = ProcessSpec::new("ip")
        .name(name)
        .args(["netns", "exec", pod.name.as_str()])
        .arg(binary_path("dig-sidecar")?.display().to_string())
        .args(["run", "--network", NETWORK_ID, "--bootstrap", registry_url])
        .args(["--data-dir", &data.display().to_string()])
        .args(["--listen", &format!("/ip4/0.0.0.0/tcp/{P2P_PORT}")])
        .args(["--api-listen", "127.0.0.1:8080", "--no-mdns", "--no-dht"])
        .env("RUST_LOG", "info,dig_sidecar=debug");
    if announce {
        spec = spec.args(["--announce", &tcp_address(pod)]);
    }
    Ok(spec.spawn()?)
}

fn tcp_address(pod: &PodNamespace) -> String {
    format!("/ip4/{}/tcp/{P2P_PORT}", pod.address)
}

fn strings(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The registry's record of `peer_id`: its addresses.
fn registered_addresses(registry: &PodNamespace, peer_id: &str) -> Option<BTreeSet<String>> {
    let body = http_get_in(
        &registry.name,
        &format!(
            "http://{}:3000/peers?network={NETWORK_ID}",
            registry.address
        ),
    )?;
    let peers: Value = serde_json::from_str(&body).ok()?;
    peers["peers"]
        .as_array()?
        .iter()
        .find(|peer| peer["peerId"] == peer_id)
        .map(|peer| strings(&peer["addresses"]))
}

fn metric_in(pod: &PodNamespace, name: &str, labels: &[&str]) -> f64 {
    http_get_in(&pod.name, "http://127.0.0.1:8080/metrics")
        .and_then(|text| metric_value(&text, name, labels))
        .unwrap_or(0.0)
}

#[test]
fn a_node_without_announce_is_confirmed_by_a_peer_and_reached_through_the_registry()
-> anyhow::Result<()> {
    let network = match PodNetwork::create("dig-autonat", 4, (231, 91)) {
        Ok(network) => network,
        Err(NetnsError::Unavailable(reason)) => {
            eprintln!("SKIPPED: {reason}");
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    let [registry, pod_a, pod_b, pod_c] = [0, 1, 2, 3].map(|i| network.pods[i].clone());
    let registry_url = format!("http://{}:3000", registry.address);
    let root = tempfile::tempdir()?;

    let mut processes = vec![
        ProcessSpec::new("ip")
            .name("registry")
            .args(["netns", "exec", registry.name.as_str()])
            .arg(binary_path("dig-bootstrap")?.display().to_string())
            .args(["--listen", "0.0.0.0:3000"])
            .spawn()?,
    ];
    processes.push(start_node(
        "node-a",
        &pod_a,
        root.path(),
        &registry_url,
        true,
    )?);
    processes.push(start_node(
        "node-b",
        &pod_b,
        root.path(),
        &registry_url,
        false,
    )?);

    let peer_id = |pod: &PodNamespace, processes: &mut [TestProcess]| -> String {
        wait_while_running(WAIT, "the node's API", processes, || {
            sidecar_status_in(&pod.name)?["health"]["peerId"]
                .as_str()
                .map(String::from)
        })
    };
    let id_a = peer_id(&pod_a, &mut processes);
    let id_b = peer_id(&pod_b, &mut processes);

    // B finds A in the registry, A's identify tells B the address it sees, A dials it back.
    let b_address = tcp_address(&pod_b);
    let b_connections = wait_while_running(
        WAIT,
        "node B's observed address confirmed by node A",
        &mut processes,
        || {
            let connections = sidecar_status_in(&pod_b.name)?["connections"].clone();
            // The probe is counted on the event after the confirmation: wait for both.
            let counted =
                connections["discovery"]["autonat"]["probesSucceeded"].as_u64() >= Some(1);
            (counted && strings(&connections["externalAddresses"]).contains(&b_address))
                .then_some(connections)
        },
    );
    assert_eq!(
        strings(&b_connections["announcedAddresses"]),
        BTreeSet::from([b_address.clone()]),
        "B registers exactly its confirmed address: {b_connections}"
    );
    let autonat = &b_connections["discovery"]["autonat"];
    assert_eq!(autonat["enabled"], true, "{autonat}");
    assert!(
        strings(&autonat["confirmedAddresses"]).contains(&b_address),
        "{autonat}"
    );
    assert!(autonat["probesSucceeded"].as_u64() >= Some(1), "{autonat}");
    wait_while_running(WAIT, "B's metrics count the probe", &mut processes, || {
        (metric_in(
            &pod_b,
            "dig_node_autonat_probes_total",
            &["role=\"client\"", "result=\"ok\""],
        ) >= 1.0)
            .then_some(())
    });
    wait_while_running(
        WAIT,
        "A's metrics count the dial-back it did",
        &mut processes,
        || {
            (metric_in(
                &pod_a,
                "dig_node_autonat_probes_total",
                &["role=\"server\"", "result=\"ok\""],
            ) >= 1.0)
                .then_some(())
        },
    );

    // A closes the dial-back connection once it is answered: one connection between A and B.
    wait_while_running(
        WAIT,
        "the dial-back connection closed",
        &mut processes,
        || {
            let connections = sidecar_status_in(&pod_b.name)?["connections"].clone();
            let to_a = connections["connectedPeers"]
                .as_array()?
                .iter()
                .find(|peer| peer["peerId"] == id_a.as_str())?
                .clone();
            (to_a["connections"] == 1).then_some(())
        },
    );

    // The registry carries it (B re-registers when its addresses change).
    wait_while_running(
        WAIT,
        "B's confirmed address in the registry",
        &mut processes,
        || {
            registered_addresses(&registry, &id_b)
                .filter(|addresses| *addresses == BTreeSet::from([b_address.clone()]))
        },
    );
    assert_eq!(
        registered_addresses(&registry, &id_a),
        Some(BTreeSet::from([tcp_address(&pod_a)])),
        "A registers its announce address"
    );

    // C knows only the registry (no DHT, no mDNS) and dials B at the confirmed address.
    processes.push(start_node(
        "node-c",
        &pod_c,
        root.path(),
        &registry_url,
        false,
    )?);
    let id_c = peer_id(&pod_c, &mut processes);
    let to_b = wait_while_running(WAIT, "node C connected to node B", &mut processes, || {
        let connections = sidecar_status_in(&pod_c.name)?["connections"].clone();
        connections["connectedPeers"]
            .as_array()?
            .iter()
            .find(|peer| peer["peerId"] == id_b.as_str())
            .cloned()
    });
    assert_eq!(to_b["direction"], "outbound", "C dialed B: {to_b}");
    assert!(
        strings(&to_b["addresses"]).contains(&format!("{b_address}/p2p/{id_b}")),
        "C reached B at its confirmed address: {to_b}"
    );
    let c_discovered =
        sidecar_status_in(&pod_c.name).expect("C's API")["connections"]["discoveredPeers"].clone();
    let b_entry = c_discovered
        .as_array()
        .and_then(|peers| peers.iter().find(|peer| peer["peerId"] == id_b.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        strings(&b_entry["sources"]),
        BTreeSet::from(["registry".to_string()]),
        "C learned B from the registry only: {b_entry}"
    );
    assert_ne!(id_c, id_b);

    for process in &mut processes {
        process.kill();
    }
    drop(network);
    Ok(())
}
