//! The `dig-sidecar` command line as users meet it: `identity`, `status`, configuration errors,
//! write policies and peer targets refused at start-up.

use std::{os::unix::fs::PermissionsExt, process::Command};

use dig_e2e::{
    network::{NodeSpec, SidecarNode},
    process::binary_path,
};

fn sidecar(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<(i32, String, String)> {
    let mut command = Command::new(binary_path("dig-sidecar")?);
    command.args(args).env_remove("RUST_BACKTRACE");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output()?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[test]
fn open_writing_without_a_private_network_is_refused_at_start_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let common = [
        "run",
        "--data-dir",
        data,
        "--api-listen",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
    ];
    let (code, _, stderr) = sidecar(&[&common[..], &["--write-policy", "open"]].concat(), &[])?;
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("--write-policy open") && stderr.contains("--psk-file"),
        "{stderr}"
    );
    let (code, _, stderr) = sidecar(&common, &[("DIG_WRITE_POLICY", "writers")])?;
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("--writer"), "{stderr}");
    Ok(())
}

#[test]
fn a_target_peer_count_above_the_connection_cap_is_refused_at_start_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let (code, _, stderr) = sidecar(
        &[
            "run",
            "--data-dir",
            data.to_str().unwrap(),
            "--api-listen",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--max-connections",
            "20",
        ],
        &[("DIG_TARGET_PEERS", "50")],
    )?;
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("--target-peers 50 is above --max-connections 20"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn identity_is_created_once_with_mode_0600() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, first, _) = sidecar(&["identity", "--data-dir", data], &[])?;
    assert_eq!(code, 0);
    assert!(first.trim().starts_with("12D3KooW"), "{first}");
    let key = dir.path().join("data/.dig-node/identity.key");
    assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    let state = dir.path().join("data/.dig-node");
    let (_, second, _) = sidecar(&["identity", "--state-dir", state.to_str().unwrap()], &[])?;
    assert_eq!(first, second, "the same key is read back");
    Ok(())
}

#[test]
fn bad_configuration_is_an_error_naming_its_source() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (code, _, stderr) = sidecar(&["run", "--network", "no spaces"], &[])?;
    assert_eq!(code, 2);
    assert!(stderr.contains("--network"), "{stderr}");

    let (code, _, stderr) = sidecar(&["run"], &[("DIG_LISTEN", "not-a-multiaddr")])?;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("DIG_LISTEN") && stderr.contains("--listen"),
        "{stderr}"
    );

    let file = dir.path().join("node.yaml");
    std::fs::write(&file, "api-listen: 127.0.0.1:notaport\n")?;
    let (code, _, stderr) = sidecar(&["run", "--config", file.to_str().unwrap()], &[])?;
    assert_eq!(code, 2);
    assert!(
        stderr.contains(file.to_str().unwrap()) && stderr.contains("api-listen"),
        "{stderr}"
    );

    let (code, stdout, _) = sidecar(&["run", "--help"], &[])?;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("DIG_<OPTION>") && stdout.contains("--psk-file"),
        "{stdout}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_summarises_a_running_node() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // No discovery source: ready as soon as it listens.
    let spec = NodeSpec::loopback("solo", "e2e-cli", dir.path().join("solo"), &[]).arg("--no-dht");
    let node = SidecarNode::start(spec).await?;
    dig_e2e::process::wait_for_http_ok(&node.url("/ready"), std::time::Duration::from_secs(30))
        .await?;
    let api = node.url("");
    let (code, stdout, stderr) = sidecar(&["status", "--api", &api], &[])?;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&node.peer_id), "{stdout}");
    assert!(
        stdout.contains("network:     e2e-cli") && stdout.contains("ready:       yes"),
        "{stdout}"
    );
    let (code, stdout, _) = sidecar(&["status", "--api", &api, "--json"], &[])?;
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!(json["health"]["peerId"], node.peer_id.as_str());
    assert_eq!(json["connections"]["peerCount"], 0);

    let (code, _, stderr) = sidecar(&["status", "--api", "http://127.0.0.1:1"], &[])?;
    assert_ne!(code, 0);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    Ok(())
}
