//! mDNS discovery with the registry off, between two network namespaces on a bridge
//! that this test creates (multicast never touches the machine's own interfaces). Each node's API
//! is read with `dig-sidecar status --json` run inside its namespace.

use std::time::{Duration, Instant};

use dig_e2e::{
    netns::{NetnsError, PodNetwork, sidecar_status_in},
    network::peer_ids,
    process::{ProcessSpec, TestProcess, binary_path},
};

#[test]
fn nodes_in_two_namespaces_find_each_other_over_mdns() -> anyhow::Result<()> {
    let namespaces = match PodNetwork::create("dig-mdns", 2, (231, 77)) {
        Ok(namespaces) => namespaces,
        Err(NetnsError::Unavailable(reason)) => {
            eprintln!("SKIPPED: {reason}");
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    let names: Vec<&str> = namespaces
        .pods
        .iter()
        .map(|pod| pod.name.as_str())
        .collect();
    let root = tempfile::tempdir()?;
    let sidecar = binary_path("dig-sidecar")?;
    let mut nodes: Vec<TestProcess> = Vec::new();
    for (index, namespace) in names.iter().enumerate() {
        let data = root.path().join(format!("node-{index}"));
        nodes.push(
            ProcessSpec::new("ip")
                .name(format!("mdns-node-{index}"))
                .args(["netns", "exec", namespace])
                .arg(sidecar.display().to_string())
                .args(["run", "--network", "e2e-mdns", "--data-dir"])
                .arg(data.display().to_string())
                .args([
                    "--listen",
                    "/ip4/0.0.0.0/tcp/4001",
                    "--listen",
                    "/ip4/0.0.0.0/udp/4001/quic-v1",
                ])
                .args(["--api-listen", "127.0.0.1:8080"])
                .spawn()?,
        );
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peer_of = [String::new(), String::new()];
    loop {
        let states: Vec<Option<serde_json::Value>> =
            names.iter().map(|ns| sidecar_status_in(ns)).collect();
        let mut done = true;
        for (index, state) in states.iter().enumerate() {
            match state {
                Some(state) => {
                    peer_of[index] = state["health"]["peerId"]
                        .as_str()
                        .unwrap_or_default()
                        .into();
                }
                None => done = false,
            }
        }
        if done {
            let states: Vec<&serde_json::Value> = states.iter().flatten().collect();
            let sees_other = |me: usize| {
                peer_ids(&states[me]["connections"]["connectedPeers"]).contains(&peer_of[1 - me])
            };
            // A node can be dialed by its peer before its own mDNS query is answered: both
            // must have answered.
            let answered =
                |me: usize| states[me]["connections"]["discovery"]["mdns"]["answered"] == true;
            if sees_other(0) && sees_other(1) && answered(0) && answered(1) {
                for state in &states {
                    let mdns = &state["connections"]["discovery"]["mdns"];
                    assert_eq!(mdns["enabled"], true);
                    assert_eq!(mdns["answered"], true);
                    assert_eq!(mdns["peers"], 1, "{mdns}");
                    assert_eq!(
                        state["connections"]["discovery"]["registry"]["enabled"],
                        false
                    );
                    assert_eq!(state["ready"]["ready"], true, "ready through mDNS alone");
                }
                break;
            }
        }
        for node in &mut nodes {
            assert!(
                node.is_running(),
                "{} exited:\n{}",
                node.name(),
                node.output()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the nodes did not find each other over mDNS within 60 s: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(nodes);
    drop(namespaces);
    Ok(())
}
