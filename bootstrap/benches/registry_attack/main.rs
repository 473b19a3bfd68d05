//! The registry under hostile clients (bench): the release `dig-bootstrap` in a network namespace
//! of the bench's own, holding 10,000 peers, while honest clients look peers up
//! (`GET /peers?limit=50`), each from an address of its own:
//!
//! 1. 1,000 slow-body connections, from 1,000 IPv4 addresses (POST /register announcing 100 KB,
//!    then one byte per second);
//! 2. a flood of lookups from 256 addresses of one IPv6 /64, with rate-limit quotas per /64 (the
//!    default) and per address (`--rate-limit-ipv6-prefix 128`, as before quotas had a prefix);
//! 3. a flood of new registrations from 1,000 addresses into a 32 MiB `--max-state-bytes`.
//!
//! For each it prints the honest lookups/s and their p99 beside the same figures without an
//! attack, what the attackers got, and the server's resident and peak memory. Prints figures;
//! asserts nothing about them.
//!
//!     cargo bench -p dig-bootstrap --bench registry-attack
//!
//! It needs root, `unshare` and `ip` (util-linux, iproute2) for its namespace; without them it
//! says why and stops. Environment: DIG_BENCH_SECONDS (each phase, default 15),
//! DIG_BENCH_HONEST_CLIENTS (default 64), DIG_BENCH_HONEST_RATE (lookups/s of each, default 50;
//! the quota per address is 100/s), DIG_BOOTSTRAP_BIN (server binary to use instead of building
//! `target/release/dig-bootstrap`).

#[allow(dead_code)]
#[path = "../registry/dig.rs"]
mod dig;
#[allow(dead_code)]
#[path = "../registry/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../registry/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../registry/tls.rs"]
mod tls;

mod attackers;
mod namespace;

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dig_core::clock::now_ms;
use libp2p_identity::Keypair;

use attackers::{Flood, Honest, LOOKUP, SlowBodies};
use process::ServerProcess;

/// Peers held while the attacks run.
const PEERS: usize = 10_000;
/// Registrations the flood offers into the state budget.
const FLOOD_RECORDS: usize = 60_000;
const STATE_BUDGET: &str = "33554432";
/// Per-address quota of every server here: honest clients never reach it.
const RATE_LIMIT: [&str; 4] = ["--rate-limit", "100", "--rate-limit-burst", "200"];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Settings {
    seconds: u64,
    honest: Vec<IpAddr>,
    /// Lookups per second each honest client asks for (below the per-address quota).
    honest_rate: u32,
}

fn main() {
    dig_core::crypto::install_crypto_provider();
    if !namespace::inside() {
        if let Some(why) = namespace::why_unavailable() {
            println!("registry attack bench skipped: it needs its own network namespace ({why}).");
            return;
        }
        // Built here: inside the namespace there is no network for cargo.
        let binary = dig::server_binary();
        let status = namespace::run_inside(&[("DIG_BOOTSTRAP_BIN", binary.display().to_string())])
            .expect("running the bench in a new network namespace");
        std::process::exit(status.code().unwrap_or(1));
    }
    namespace::set_up_loopback();
    let settings = Settings {
        seconds: env_usize("DIG_BENCH_SECONDS", 15) as u64,
        honest: namespace::ipv4_hosts(2, env_usize("DIG_BENCH_HONEST_CLIENTS", 64)),
        honest_rate: env_usize("DIG_BENCH_HONEST_RATE", 50) as u32,
    };
    let binary = dig::server_binary();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "dig-bootstrap under attack ({}), in a network namespace of its own",
        binary.display()
    );
    println!(
        "  machine: {} CPUs shared by the server, the attackers and the honest clients; load average before: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load_average()
    );
    println!(
        "  honest clients: {} connections from as many addresses, each asking GET {LOOKUP} {} times a second; every server: {PEERS} peers of {} stores, {}",
        settings.honest.len(),
        settings.honest_rate,
        dig::STORES_PER_PEER,
        RATE_LIMIT.join(" ")
    );
    let signing = Instant::now();
    let peers = Arc::new(signed_bodies(PEERS, now_ms()));
    let flood = Arc::new(signed_bodies(FLOOD_RECORDS, now_ms()));
    println!(
        "  pre-signed {PEERS} + {FLOOD_RECORDS} records in {:.1} s (not timed below)",
        signing.elapsed().as_secs_f64()
    );

    // 1 and 2: slow bodies, then the /64 flood, on a server with the default limits.
    let server = start(&binary, &[]);
    runtime.block_on(register_all(&server, &peers));
    let cpu = server.cpu_seconds();
    let baseline = runtime.block_on(honest_alone(&server, &settings));
    print_honest("no attack (baseline)", &baseline, None);
    print_server(&server, cpu);
    let cpu = server.cpu_seconds();
    let (honest, slow) = runtime.block_on(slow_body_attack(&server, &settings));
    print_honest(
        "1,000 slow-body connections from 1,000 addresses",
        &honest,
        Some(&baseline),
    );
    println!(
        "    attackers: {} connections opened, at most {} open at once; {} answered 408 (--request-timeout 10 s), {} closed or refused otherwise",
        slow.opened.load(Ordering::Relaxed),
        slow.peak_open.load(Ordering::Relaxed),
        slow.timed_out.load(Ordering::Relaxed),
        slow.dropped.load(Ordering::Relaxed)
    );
    print_server(&server, cpu);
    let cpu = server.cpu_seconds();
    let (honest, flooded) = runtime.block_on(prefix_flood(&server, &settings));
    print_honest(
        "lookup flood from 256 addresses of one IPv6 /64 (quota per /64, the default)",
        &honest,
        Some(&baseline),
    );
    print_flood(&flooded);
    print_server(&server, cpu);
    drop(server);

    let server = start(&binary, &["--rate-limit-ipv6-prefix", "128"]);
    runtime.block_on(register_all(&server, &peers));
    let cpu = server.cpu_seconds();
    let (honest, flooded) = runtime.block_on(prefix_flood(&server, &settings));
    print_honest(
        "the same flood with a quota per address (--rate-limit-ipv6-prefix 128, the old keying)",
        &honest,
        Some(&baseline),
    );
    print_flood(&flooded);
    print_server(&server, cpu);
    drop(server);

    // 3: a registration flood into a state budget.
    let server = start(&binary, &["--max-state-bytes", STATE_BUDGET]);
    runtime.block_on(register_all(&server, &peers));
    let cpu = server.cpu_seconds();
    let (honest, flooded) = runtime.block_on(registration_flood(&server, &settings, &flood));
    print_honest(
        &format!(
            "registration flood: {FLOOD_RECORDS} new peers from 1,000 addresses into --max-state-bytes {STATE_BUDGET} (32 MiB)"
        ),
        &honest,
        Some(&baseline),
    );
    println!(
        "    attackers: {} registered, {} refused 507 (registry_memory_full), {} rate limited, {} other, {} failed",
        flooded.ok.load(Ordering::Relaxed),
        flooded.full.load(Ordering::Relaxed),
        flooded.limited.load(Ordering::Relaxed),
        flooded.other.load(Ordering::Relaxed),
        flooded.failed.load(Ordering::Relaxed)
    );
    let metrics = runtime.block_on(metrics(&server, &settings));
    println!(
        "    server state: {} bytes estimated (budget {STATE_BUDGET}), {} peers held",
        metric(&metrics, "dig_bootstrap_state_bytes"),
        metric(&metrics, "dig_bootstrap_peers")
    );
    print_server(&server, cpu);
    println!("  load average after: {}", load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The release server listening on every address of the namespace, with `extra` flags.
fn start(binary: &std::path::Path, extra: &[&str]) -> ServerProcess {
    let server = ServerProcess::spawn(|address| {
        let mut command = Command::new(binary);
        command
            .args(["--listen", &format!("[::]:{}", address.port())])
            .args(["--peer-ttl", "3600", "--max-clock-skew", "3600"])
            .args(["--max-peers", "1000000"])
            .args(RATE_LIMIT)
            .args(extra)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command
    });
    let address = server.address;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(load::wait_ready(address));
    println!(
        "server{}{}: {:.1} MB resident at start",
        if extra.is_empty() { "" } else { " with " },
        extra.join(" "),
        server.resident_mib()
    );
    server
}

/// `count` signed registrations of fresh peers.
fn signed_bodies(count: usize, now: u64) -> Vec<Bytes> {
    let keypairs: Vec<Keypair> = (0..count).map(|_| Keypair::generate_ed25519()).collect();
    dig::signed_bodies(&keypairs, now, 1)
}

/// Registers `bodies` from 1,000 addresses (as many peers would).
async fn register_all(server: &ServerProcess, bodies: &Arc<Vec<Bytes>>) {
    let sources = namespace::ipv4_hosts(4, 1_000);
    let registered = attackers::flood(
        server.address,
        &sources,
        1,
        dig::registrations(bodies.clone()),
        bodies.len(),
        Instant::now() + Duration::from_secs(120),
    )
    .await;
    let ok = registered.ok.load(Ordering::Relaxed);
    assert_eq!(
        ok as usize,
        bodies.len(),
        "every setup registration is accepted"
    );
}

fn deadline(settings: &Settings) -> Instant {
    Instant::now() + Duration::from_secs(settings.seconds)
}

async fn honest_alone(server: &ServerProcess, settings: &Settings) -> Honest {
    attackers::honest_lookups(
        server.address,
        &settings.honest,
        settings.honest_rate,
        deadline(settings),
    )
    .await
}

async fn slow_body_attack(server: &ServerProcess, settings: &Settings) -> (Honest, SlowBodies) {
    let until = deadline(settings);
    let sources = namespace::ipv4_hosts(1, 1_000);
    let attack = attackers::slow_bodies(server.address, &sources, until);
    // The attackers connect first, so the honest clients measure under the full attack.
    let honest = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        attackers::honest_lookups(
            server.address,
            &settings.honest,
            settings.honest_rate,
            until,
        )
        .await
    };
    let (slow, honest) = tokio::join!(attack, honest);
    (honest, slow)
}

async fn prefix_flood(server: &ServerProcess, settings: &Settings) -> (Honest, Flood) {
    let until = deadline(settings);
    let ipv6 = SocketAddr::new("::1".parse().expect("::1"), server.address.port());
    let attacker = namespace::attacker_ipv6();
    let attack = attackers::flood(
        ipv6,
        &attacker,
        4,
        attackers::gets(LOOKUP),
        usize::MAX,
        until,
    );
    let honest = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut sources = settings.honest.clone();
        sources.push(namespace::honest_ipv6());
        // The IPv6 honest client asks over IPv6, the others over IPv4.
        let (v6, v4): (Vec<IpAddr>, Vec<IpAddr>) = sources.into_iter().partition(IpAddr::is_ipv6);
        let (a, b) = tokio::join!(
            attackers::honest_lookups(server.address, &v4, settings.honest_rate, until),
            attackers::honest_lookups(ipv6, &v6, settings.honest_rate, until)
        );
        Honest {
            rate: load::Rate {
                count: a.rate.count + b.rate.count,
                elapsed: a.rate.elapsed.max(b.rate.elapsed),
            },
            p99: a.p99.max(b.p99),
            refused: a.refused + b.refused,
        }
    };
    let (flooded, honest) = tokio::join!(attack, honest);
    (honest, flooded)
}

async fn registration_flood(
    server: &ServerProcess,
    settings: &Settings,
    bodies: &Arc<Vec<Bytes>>,
) -> (Honest, Flood) {
    let until = deadline(settings);
    let sources = namespace::ipv4_hosts(3, 1_000);
    let attack = attackers::flood(
        server.address,
        &sources,
        1,
        dig::registrations(bodies.clone()),
        bodies.len(),
        until,
    );
    let honest = attackers::honest_lookups(
        server.address,
        &settings.honest,
        settings.honest_rate,
        until,
    );
    let (flooded, honest) = tokio::join!(attack, honest);
    (honest, flooded)
}

async fn metrics(server: &ServerProcess, settings: &Settings) -> String {
    use http_body_util::BodyExt;
    let mut sender = attackers::http_from(settings.honest[0], server.address)
        .await
        .expect("a connection for /metrics");
    let request = hyper::Request::get("/metrics")
        .header("host", load::TLS_HOST)
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("a request");
    sender.ready().await.expect("ready");
    let response = sender.send_request(request).await.expect("/metrics");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn metric(text: &str, name: &str) -> String {
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .unwrap_or("?")
        .to_owned()
}

fn print_honest(phase: &str, honest: &Honest, baseline: Option<&Honest>) {
    println!("  {phase}:");
    let compared = baseline.map_or(String::new(), |b| {
        format!(
            " ({:.0}% of the baseline {:.0}/s, p99 {:.2} ms)",
            100.0 * honest.rate.per_second() / b.rate.per_second().max(1.0),
            b.rate.per_second(),
            b.p99.as_secs_f64() * 1e3
        )
    });
    println!(
        "    honest GET {LOOKUP}: {:.0} lookups/s, p99 {:.2} ms, {} not answered 200{compared}",
        honest.rate.per_second(),
        honest.p99.as_secs_f64() * 1e3,
        honest.refused
    );
}

fn print_flood(flooded: &Flood) {
    let total = flooded.total().max(1) as f64;
    println!(
        "    attackers: {} requests, {} answered 200 ({:.1}%), {} refused 429 by the rate limit, {} failed",
        flooded.total(),
        flooded.ok.load(Ordering::Relaxed),
        100.0 * flooded.ok.load(Ordering::Relaxed) as f64 / total,
        flooded.limited.load(Ordering::Relaxed),
        flooded.failed.load(Ordering::Relaxed)
    );
}

/// The server's memory now and at its peak, and the CPU it used since `cpu_before` (seconds).
fn print_server(server: &ServerProcess, cpu_before: f64) {
    println!(
        "    server: {:.1} MB resident now, {:.1} MB at its peak (VmHWM); {:.1} s of CPU in this phase",
        server.resident_mib(),
        server.peak_resident_mib(),
        server.cpu_seconds() - cpu_before
    );
}
