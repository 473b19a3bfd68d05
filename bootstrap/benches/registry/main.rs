//! Registry benchmark: starts the real `dig-bootstrap` (release build) on loopback, registers
//! 100,000 signed peers of 10 stores each, then measures lookups, over plain HTTP and over TLS.
//! In the same run and with the same load generator it measures Syncthing's discovery server
//! (`stdiscosrv`) with as many devices, over `-http` and over TLS, and prints one comparison
//! table. Prints figures; asserts nothing about them.
//!
//!     cargo bench -p dig-bootstrap
//!
//! Environment: DIG_BENCH_PEERS (default 100000), DIG_BENCH_CONNECTIONS (default 32),
//! DIG_BENCH_SECONDS (each lookup phase, default 5), DIG_BOOTSTRAP_BIN (server binary to use
//! instead of building `target/release/dig-bootstrap`), DIG_BENCH_STDISCOSRV (the `stdiscosrv`
//! binary; default: on the PATH, from `apt-get install syncthing-discosrv`; the comparison is
//! skipped when there is none), DIG_BENCH_DISCO_DEVICES (devices announced to stdiscosrv,
//! default DIG_BENCH_PEERS), DIG_BENCH_DISCO_TLS_ANNOUNCES (announcements over TLS, one client
//! certificate and connection each, default 1000).

mod dig;
mod load;
mod process;
mod stdiscosrv;
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dig_core::clock::now_ms;
use libp2p_identity::Keypair;
use tokio::runtime::Runtime;

use dig::STORES_PER_PEER;
use load::{Connections, Rate, Target};
use process::ServerProcess;
use tls::{Certificate, PemFiles};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A phase's rate and the server CPU time (user + system) it took per request.
#[derive(Clone, Copy)]
struct Measured {
    rate: Rate,
    cpu_us: f64,
}

impl Measured {
    /// Runs `phase` against `server`.
    fn run(server: &ServerProcess, phase: impl FnOnce() -> Rate) -> Self {
        let before = server.cpu_seconds();
        let rate = phase();
        let used = server.cpu_seconds() - before;
        Self {
            rate,
            cpu_us: used * 1e6 / rate.count.max(1) as f64,
        }
    }

    fn server_cpu(&self) -> String {
        format!("server CPU {:.0} us per request", self.cpu_us)
    }
}

/// The `/register` bodies of every peer: first registrations, then heartbeats (newer timestamp
/// and versions: the refresh path). A fresh server accepts both again.
struct SignedRecords {
    first: Arc<Vec<Bytes>>,
    heartbeats: Arc<Vec<Bytes>>,
}

struct Settings {
    peers: usize,
    connections: usize,
    seconds: u64,
}

/// One line of the comparison table.
struct Row {
    server: &'static str,
    transport: &'static str,
    records: String,
    lookup: &'static str,
    lookups: Measured,
    write: &'static str,
    writes: Measured,
    resident_mib: f64,
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special: run either way.
    let settings = Settings {
        peers: env_usize("DIG_BENCH_PEERS", 100_000),
        connections: env_usize("DIG_BENCH_CONNECTIONS", 32),
        seconds: env_usize("DIG_BENCH_SECONDS", 5) as u64,
    };
    dig_core::crypto::install_crypto_provider();
    let binary = dig::server_binary();
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
    let peers = settings.peers;
    let signing = Instant::now();
    let keypairs: Vec<Keypair> = (0..peers).map(|_| Keypair::generate_ed25519()).collect();
    let now = now_ms();
    let first = Arc::new(dig::signed_bodies(&keypairs, now, 1));
    // Heartbeats: the same peers again, newer timestamp and versions (the refresh path).
    let heartbeats = Arc::new(dig::signed_bodies(&keypairs, now + 1_000, 2));
    println!(
        "  pre-signed 2 x {peers} records of {STORES_PER_PEER} stores each in {:.1} s (not timed below)",
        signing.elapsed().as_secs_f64()
    );

    let folder = tempfile::tempdir().expect("a temporary folder");
    let server_certificate = Certificate::for_servers();
    let pem = server_certificate.write_pem(folder.path());
    let records = SignedRecords { first, heartbeats };
    let mut rows = vec![
        bench_dig(&runtime, &settings, &binary, &records, None),
        bench_dig(
            &runtime,
            &settings,
            &binary,
            &records,
            Some((&server_certificate, &pem)),
        ),
    ];
    match stdiscosrv::find_binary() {
        Some(discosrv) => rows.extend(bench_stdiscosrv(
            &runtime,
            &settings,
            &discosrv,
            folder.path(),
            &server_certificate,
            &pem,
        )),
        None => println!(
            "  stdiscosrv not found: the comparison with Syncthing's discovery server is skipped. \
             Install it with `apt-get install syncthing-discosrv` (Debian), or set \
             DIG_BENCH_STDISCOSRV to its path."
        ),
    }
    print_table(&settings, &rows);
}

/// dig-bootstrap over plain HTTP, or over TLS with `tls` (the certificate and its PEM files):
/// registrations, refreshes, memory, then lookups.
fn bench_dig(
    runtime: &Runtime,
    settings: &Settings,
    binary: &std::path::Path,
    records: &SignedRecords,
    tls: Option<(&Certificate, &PemFiles)>,
) -> Row {
    let Settings {
        peers,
        connections,
        seconds,
    } = *settings;
    let (transport, keep_alive) = match tls {
        None => ("http", "keep-alive"),
        Some(_) => ("https", "keep-alive TLS"),
    };
    println!("dig-bootstrap, {transport}:");
    let server = dig::start_server(binary, peers, tls.map(|(_, pem)| pem));
    let target = Target {
        address: server.address,
        tls: tls.map(|(certificate, _)| tls::client_config(&certificate.der, None)),
    };
    let writers = Connections::KeepAlive(target.clone());
    runtime.block_on(load::wait_ready(server.address));
    let idle_mib = server.resident_mib();

    let mut registered = None;
    for (what, bodies) in [
        ("registrations", &records.first),
        (
            "refreshes (heartbeats of registered peers)",
            &records.heartbeats,
        ),
    ] {
        let measured = Measured::run(&server, || {
            runtime.block_on(load::send_all(
                &writers,
                peers,
                dig::registrations(bodies.clone()),
                connections,
                200,
            ))
        });
        println!(
            "  {what}: {peers} signed records in {:.2} s = {:.0}/s{}; {}",
            measured.rate.elapsed.as_secs_f64(),
            measured.rate.per_second(),
            if registered.is_none() {
                " (target >= 10000)"
            } else {
                ""
            },
            measured.server_cpu()
        );
        registered.get_or_insert(measured);
    }
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "  resident memory: {idle_mib:.1} MB idle, {:.1} MB with {peers} live peers of {STORES_PER_PEER} stores (target < 150 MB)",
        server.resident_mib()
    );

    let mut peers_rate = None;
    for path in [
        "/peers?limit=50",
        "/peers/store/store-0001?limit=50",
        "/stats",
    ] {
        let measured = Measured::run(&server, || {
            runtime.block_on(load::lookups(
                &target,
                Arc::new(vec![path.to_owned()]),
                connections,
                seconds,
            ))
        });
        println!(
            "  GET {path}: {} requests in {:.1} s = {:.0} requests/s over {connections} {keep_alive} connections{}; {}",
            measured.rate.count,
            measured.rate.elapsed.as_secs_f64(),
            measured.rate.per_second(),
            if path == "/peers?limit=50" {
                " (target >= 50000)"
            } else {
                ""
            },
            measured.server_cpu()
        );
        peers_rate.get_or_insert(measured);
    }
    let resident = server.resident_mib();
    println!(
        "  resident memory after lookups: {resident:.1} MB (peak {:.1} MB)",
        server.peak_resident_mib()
    );
    Row {
        server: "dig-bootstrap",
        transport,
        records: format!("{peers} peers x {STORES_PER_PEER} stores"),
        lookup: "GET /peers?limit=50",
        lookups: peers_rate.expect("the /peers phase ran"),
        write: "signed registrations",
        writes: registered.expect("the registration phase ran"),
        resident_mib: resident,
    }
}

/// Announces the devices to an `-http` instance and measures its lookups, then serves the same
/// database over TLS and measures those, and announcements over TLS with a certificate each.
fn bench_stdiscosrv(
    runtime: &Runtime,
    settings: &Settings,
    binary: &std::path::Path,
    folder: &std::path::Path,
    server_certificate: &Certificate,
    pem: &PemFiles,
) -> Vec<Row> {
    let Settings {
        connections,
        seconds,
        ..
    } = *settings;
    let count = env_usize("DIG_BENCH_DISCO_DEVICES", settings.peers).max(1);
    let tls_announces = env_usize("DIG_BENCH_DISCO_TLS_ANNOUNCES", 1_000).min(count);
    let version = std::process::Command::new(binary)
        .arg("-version")
        .output()
        .map(|output| {
            // Go's log package writes to stderr; look at both.
            let text = [output.stdout, output.stderr].concat();
            String::from_utf8_lossy(&text).trim().to_owned()
        })
        .unwrap_or_default();
    println!("stdiscosrv ({}; {version}):", binary.display());
    let making = Instant::now();
    let devices = Arc::new(stdiscosrv::devices(count));
    println!(
        "  made {count} device certificates in {:.1} s (not timed below)",
        making.elapsed().as_secs_f64()
    );
    let paths = Arc::new(stdiscosrv::lookup_paths(&devices));
    let database = folder.join("stdiscosrv.db");
    let records = format!("{count} devices x 2 addresses");
    let mut rows = Vec::new();

    let server = stdiscosrv::start(binary, &database, &pem.cert, &pem.key, false);
    let target = Target {
        address: server.address,
        tls: None,
    };
    runtime.block_on(load::wait_ready(server.address));
    let announced = Measured::run(&server, || {
        runtime.block_on(load::send_all(
            &Connections::KeepAlive(target.clone()),
            count,
            stdiscosrv::announce_with_header(devices.clone()),
            connections,
            204,
        ))
    });
    println!(
        "  -http: announcements (certificate in X-Tls-Client-Cert-Der-Base64): {count} in {:.2} s = {:.0} announcements/s; {}",
        announced.rate.elapsed.as_secs_f64(),
        announced.rate.per_second(),
        announced.server_cpu()
    );
    println!(
        "  -http: resident memory with {count} devices: {:.1} MB",
        server.resident_mib()
    );
    let lookups = Measured::run(&server, || {
        runtime.block_on(load::lookups(&target, paths.clone(), connections, seconds))
    });
    println!(
        "  -http: GET /?device=ID of {count} announced devices in turn: {} requests in {:.1} s = {:.0} requests/s over {connections} keep-alive connections; {}",
        lookups.rate.count,
        lookups.rate.elapsed.as_secs_f64(),
        lookups.rate.per_second(),
        lookups.server_cpu()
    );
    let resident = server.resident_mib();
    println!("  -http: resident memory after lookups: {resident:.1} MB");
    rows.push(Row {
        server: "stdiscosrv",
        transport: "http",
        records: records.clone(),
        lookup: "GET /?device=ID",
        lookups,
        write: "announcements",
        writes: announced,
        resident_mib: resident,
    });
    drop(server);

    // Its normal mode: TLS, serving the database the -http instance filled.
    let server = stdiscosrv::start(binary, &database, &pem.cert, &pem.key, true);
    let target = Target {
        address: server.address,
        tls: Some(tls::client_config(&server_certificate.der, None)),
    };
    runtime.block_on(load::wait_ready(server.address));
    let lookups = Measured::run(&server, || {
        runtime.block_on(load::lookups(&target, paths, connections, seconds))
    });
    println!(
        "  TLS: GET /?device=ID of {count} announced devices in turn: {} requests in {:.1} s = {:.0} requests/s over {connections} keep-alive TLS connections; {}",
        lookups.rate.count,
        lookups.rate.elapsed.as_secs_f64(),
        lookups.rate.per_second(),
        lookups.server_cpu()
    );
    let resident = server.resident_mib();
    println!("  TLS: resident memory after lookups: {resident:.1} MB");
    let tls_devices = devices.clone();
    let trusted = server_certificate.der.clone();
    let each_device = Connections::NewPerRequest {
        address: server.address,
        tls: Arc::new(move |index| {
            tls::client_config(&trusted, Some(&tls_devices[index].certificate))
        }),
    };
    let announced = Measured::run(&server, || {
        runtime.block_on(load::send_all(
            &each_device,
            tls_announces,
            stdiscosrv::announce_over_tls(),
            connections,
            204,
        ))
    });
    println!(
        "  TLS: announcements with the device's client certificate, a new connection each (as devices do): {tls_announces} in {:.2} s = {:.0} announcements/s; {}",
        announced.rate.elapsed.as_secs_f64(),
        announced.rate.per_second(),
        announced.server_cpu()
    );
    rows.push(Row {
        server: "stdiscosrv",
        transport: "https",
        records,
        lookup: "GET /?device=ID",
        lookups,
        write: "announcements, new TLS conn each",
        writes: announced,
        resident_mib: resident,
    });
    rows
}

fn print_table(settings: &Settings, rows: &[Row]) {
    println!(
        "comparison (same run, same load generator: {} keep-alive connections, {} s per lookup phase; writes over as many connections; CPU: the server process's user + system time per request, which the load generator and other work on the machine do not inflate):",
        settings.connections, settings.seconds
    );
    println!(
        "  {:<14} {:<6} {:<28} {:<20} {:>9} {:>6}  {:>8} {:>6}  {:<32} {:>6}",
        "server",
        "proto",
        "records",
        "lookup",
        "lookups/s",
        "CPU us",
        "writes/s",
        "CPU us",
        "writes",
        "RSS MB"
    );
    for row in rows {
        println!(
            "  {:<14} {:<6} {:<28} {:<20} {:>9.0} {:>6.0}  {:>8.0} {:>6.0}  {:<32} {:>6.1}",
            row.server,
            row.transport,
            row.records,
            row.lookup,
            row.lookups.rate.per_second(),
            row.lookups.cpu_us,
            row.writes.rate.per_second(),
            row.writes.cpu_us,
            row.write,
            row.resident_mib
        );
    }
    if rows.iter().any(|row| row.server == "stdiscosrv") {
        println!(
            "  notes: a dig-bootstrap lookup answers 50 peers with their addresses, a stdiscosrv \
             lookup one device's addresses; stdiscosrv keeps its records in LevelDB on disk (the \
             page cache is not in its RSS), dig-bootstrap in memory."
        );
    }
}
