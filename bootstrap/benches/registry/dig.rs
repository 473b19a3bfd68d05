//! The `dig-bootstrap` under test: its release binary, a process on loopback, and pre-signed
//! `/register` bodies.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use dig_bootstrap::record::{PeerRecord, StoreEntry};
use http_body_util::Full;
use hyper::Request;
use libp2p_identity::Keypair;

use crate::load::{MakeRequest, TLS_HOST};
use crate::process::ServerProcess;
use crate::tls::PemFiles;

pub const STORES_PER_PEER: usize = 10;
const STORE_NAME_POOL: usize = 1_000;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bootstrap/ has a parent")
        .to_path_buf()
}

/// `$DIG_BOOTSTRAP_BIN`, else `target/release/dig-bootstrap` after building it.
pub fn server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("DIG_BOOTSTRAP_BIN") {
        return PathBuf::from(path);
    }
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "dig-bootstrap",
            "--bin",
            "dig-bootstrap",
        ])
        .status()
        .expect("running cargo build --release");
    assert!(
        status.success(),
        "cargo build --release of dig-bootstrap failed"
    );
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    target.join("release").join("dig-bootstrap")
}

/// Starts the server on a free loopback port with room for `peers`, no rate limit and a TTL
/// longer than the run; over TLS when `tls` is given.
pub fn start_server(binary: &Path, peers: usize, tls: Option<&PemFiles>) -> ServerProcess {
    ServerProcess::spawn(|address| {
        let mut command = Command::new(binary);
        command
            .args(["--listen", &address.to_string()])
            .args([
                "--rate-limit",
                "0",
                "--peer-ttl",
                "3600",
                "--max-clock-skew",
                "3600",
            ])
            .args(["--max-peers", &(peers * 2).to_string()]);
        if let Some(files) = tls {
            command
                .arg("--tls-cert")
                .arg(&files.cert)
                .arg("--tls-key")
                .arg(&files.key);
        }
        command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command
    })
}

/// One signed `/register` body per keypair, stamped `now`, with lamport versions from `version`.
pub fn signed_bodies(keypairs: &[Keypair], now: u64, version: u64) -> Vec<Bytes> {
    let pool: Vec<String> = (0..STORE_NAME_POOL)
        .map(|i| format!("store-{i:04}"))
        .collect();
    keypairs
        .iter()
        .enumerate()
        .map(|(i, keypair)| {
            let stores = (0..STORES_PER_PEER)
                .map(|j| {
                    let name = &pool[(i * 7 + j * 101) % STORE_NAME_POOL];
                    StoreEntry {
                        name: name.clone(),
                        size: 1_000_000 + j as u64,
                        hash: blake3::hash(name.as_bytes()).to_hex().to_string(),
                        lamport: version + (i % 5) as u64,
                    }
                })
                .collect();
            let host = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
            let record = PeerRecord {
                peer_id: keypair.public().to_peer_id().to_base58(),
                network_id: "bench".to_owned(),
                addresses: vec![
                    format!("/ip4/{host}/tcp/4001"),
                    format!("/ip4/{host}/udp/4001/quic-v1"),
                ],
                stores,
                agent_version: "dig-sidecar/0.1.0".to_owned(),
                timestamp_ms: now,
            };
            let signed = record.sign(keypair).expect("signing");
            Bytes::from(serde_json::to_vec(&signed).expect("encoding"))
        })
        .collect()
}

/// `POST /register` of each body.
pub fn registrations(bodies: Arc<Vec<Bytes>>) -> MakeRequest {
    Arc::new(move |index| {
        Request::post("/register")
            .header("host", TLS_HOST)
            .header("content-type", "application/json")
            .body(Full::new(bodies[index].clone()))
            .expect("registration request")
    })
}
