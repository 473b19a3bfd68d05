//! Registry benchmark: starts the real `dig-bootstrap` (release build) on loopback, registers
//! 100,000 signed peers of 10 stores each, then measures lookups. Prints figures; asserts nothing.
//!
//!     cargo bench -p dig-bootstrap
//!
//! Environment: DIG_BENCH_PEERS (default 100000), DIG_BENCH_CONNECTIONS (default 32),
//! DIG_BENCH_SECONDS (lookup phase length, default 5), DIG_BOOTSTRAP_BIN (server binary to use
//! instead of building `target/release/dig-bootstrap`).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dig_bootstrap::record::{PeerRecord, StoreEntry, now_ms};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use libp2p_identity::Keypair;

const STORES_PER_PEER: usize = 10;
const STORE_NAME_POOL: usize = 1_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server process; killed by PID when dropped.
struct ServerProcess {
    child: Child,
    address: SocketAddr,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bootstrap/ has a parent")
        .to_path_buf()
}

fn server_binary() -> PathBuf {
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

fn start_server(binary: &PathBuf, peers: usize) -> ServerProcess {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free loopback port")
        .port();
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new(binary)
        .args(["--listen", &address.to_string()])
        .args([
            "--rate-limit",
            "0",
            "--peer-ttl",
            "3600",
            "--max-clock-skew",
            "3600",
        ])
        .args(["--max-peers", &(peers * 2).to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    ServerProcess { child, address }
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(address: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the server");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    sender
}

async fn send(sender: &mut Sender, request: Request<Full<Bytes>>) -> (u16, Bytes) {
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("request sent");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("response body")
        .to_bytes();
    (status, body)
}

async fn wait_ready(address: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server on {address} did not start within 30 s");
}

/// One signed `/register` body per keypair, stamped `now`, with lamport versions from `version`.
fn signed_bodies(keypairs: &[Keypair], now: u64, version: u64) -> Vec<Bytes> {
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
            let record = PeerRecord {
                peer_id: keypair.public().to_peer_id().to_base58(),
                network_id: "bench".to_owned(),
                addresses: vec![
                    format!(
                        "/ip4/10.{}.{}.{}/tcp/4001",
                        i >> 16 & 255,
                        i >> 8 & 255,
                        i & 255
                    ),
                    format!(
                        "/ip4/10.{}.{}.{}/udp/4001/quic-v1",
                        i >> 16 & 255,
                        i >> 8 & 255,
                        i & 255
                    ),
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

async fn register_all(address: SocketAddr, bodies: Vec<Bytes>, connections: usize) -> Duration {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let bodies = bodies.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(address).await;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let request = Request::post("/register")
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .expect("request");
                let (status, response) = send(&mut sender, request).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
            }
        }));
    }
    for task in tasks {
        task.await.expect("registration task");
    }
    started.elapsed()
}

async fn lookups(
    address: SocketAddr,
    path: &str,
    connections: usize,
    seconds: u64,
) -> (u64, Duration) {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let done = done.clone();
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(address).await;
            while Instant::now() < deadline {
                let request = Request::get(path.as_str())
                    .header("host", "bench")
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let (status, body) = send(&mut sender, request).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.expect("lookup task");
    }
    (done.load(Ordering::Relaxed), started.elapsed())
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special: run either way.
    let peers = env_usize("DIG_BENCH_PEERS", 100_000);
    let connections = env_usize("DIG_BENCH_CONNECTIONS", 32);
    let seconds = env_usize("DIG_BENCH_SECONDS", 5) as u64;
    let binary = server_binary();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("dig-bootstrap registry benchmark ({})", binary.display());
    println!(
        "  machine: {} CPUs, shared with the load generator (and any other work)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let signing = Instant::now();
    let keypairs: Vec<Keypair> = (0..peers).map(|_| Keypair::generate_ed25519()).collect();
    let now = now_ms();
    let bodies = signed_bodies(&keypairs, now, 1);
    // Heartbeats: the same peers again, newer timestamp and versions (the refresh path).
    let heartbeats = signed_bodies(&keypairs, now + 1_000, 2);
    println!(
        "  pre-signed 2 x {peers} records of {STORES_PER_PEER} stores each in {:.1} s (not timed below)",
        signing.elapsed().as_secs_f64()
    );

    let server = start_server(&binary, peers);
    let pid = server.child.id();
    runtime.block_on(wait_ready(server.address));
    let idle_kib = resident_kib(pid);

    let elapsed = runtime.block_on(register_all(server.address, bodies, connections));
    println!(
        "  registrations: {peers} signed records in {:.2} s = {:.0} registrations/s (target >= 10000)",
        elapsed.as_secs_f64(),
        peers as f64 / elapsed.as_secs_f64()
    );
    let elapsed = runtime.block_on(register_all(server.address, heartbeats, connections));
    println!(
        "  refreshes (heartbeats of registered peers): {peers} in {:.2} s = {:.0} refreshes/s",
        elapsed.as_secs_f64(),
        peers as f64 / elapsed.as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(500));
    let loaded_kib = resident_kib(pid);
    println!(
        "  resident memory: {:.1} MB idle, {:.1} MB with {peers} live peers of {STORES_PER_PEER} stores (target < 150 MB)",
        idle_kib as f64 / 1024.0,
        loaded_kib as f64 / 1024.0
    );

    for path in [
        "/peers?limit=50",
        "/peers/store/store-0001?limit=50",
        "/stats",
    ] {
        let (count, elapsed) =
            runtime.block_on(lookups(server.address, path, connections, seconds));
        println!(
            "  GET {path}: {count} requests in {:.1} s = {:.0} requests/s over {connections} keep-alive connections{}",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64(),
            if path == "/peers?limit=50" {
                " (target >= 50000)"
            } else {
                ""
            }
        );
    }
    println!(
        "  resident memory after lookups: {:.1} MB",
        resident_kib(pid) as f64 / 1024.0
    );
    drop(server);
}
