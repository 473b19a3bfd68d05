//! mDNS discovery with the registry off, between two network namespaces joined by a veth pair
//! that this test creates (multicast never touches the machine's own interfaces). Each node's API
//! is read with `dig-sidecar status --json` run inside its namespace.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use dig_e2e::{
    network::peer_ids,
    process::{ProcessSpec, TestProcess, binary_path},
};

/// Two namespaces and the veth pair between them; deleted on drop.
struct Namespaces {
    names: [String; 2],
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| format!("running ip {}: {error}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Namespaces {
    fn create() -> Result<Self, String> {
        let tag = std::process::id() % 100_000;
        let names = [format!("dig-mdns-{tag}-a"), format!("dig-mdns-{tag}-b")];
        let veths = [format!("dgm{tag}a"), format!("dgm{tag}b")];
        ip(&["netns", "add", &names[0]])?;
        let namespaces = Self { names };
        ip(&["netns", "add", &namespaces.names[1]])?;
        ip(&[
            "link", "add", &veths[0], "type", "veth", "peer", "name", &veths[1],
        ])?;
        for (index, (ns, veth)) in namespaces.names.iter().zip(&veths).enumerate() {
            ip(&["link", "set", veth, "netns", ns])?;
            let address = format!("10.231.77.{}/24", index + 1);
            ip(&["-n", ns, "addr", "add", &address, "dev", veth])?;
            ip(&["-n", ns, "link", "set", veth, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(namespaces)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn why_namespaces_are_unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the `ip` command (iproute2) is not installed".into());
    }
    None
}

fn status_in(namespace: &str) -> Option<serde_json::Value> {
    let sidecar = binary_path("dig-sidecar").ok()?;
    let output = Command::new("ip")
        .args(["netns", "exec", namespace])
        .arg(sidecar)
        .args(["status", "--json", "--api", "http://127.0.0.1:8080"])
        .output()
        .ok()?;
    serde_json::from_slice(&output.stdout).ok()
}

#[test]
fn nodes_in_two_namespaces_find_each_other_over_mdns() -> anyhow::Result<()> {
    if let Some(reason) = why_namespaces_are_unavailable() {
        eprintln!("SKIPPED: network namespaces unavailable: {reason}");
        return Ok(());
    }
    let namespaces = match Namespaces::create() {
        Ok(namespaces) => namespaces,
        Err(reason) => {
            eprintln!("SKIPPED: cannot create network namespaces: {reason}");
            return Ok(());
        }
    };
    let root = tempfile::tempdir()?;
    let sidecar = binary_path("dig-sidecar")?;
    let mut nodes: Vec<TestProcess> = Vec::new();
    for (index, namespace) in namespaces.names.iter().enumerate() {
        let data = root.path().join(format!("node-{index}"));
        nodes.push(
            ProcessSpec::new("ip")
                .name(format!("mdns-node-{index}"))
                .args(["netns", "exec", namespace.as_str()])
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
            namespaces.names.iter().map(|ns| status_in(ns)).collect();
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
            if sees_other(0) && sees_other(1) {
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
