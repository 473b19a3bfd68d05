//! Connectivity benchmark: time from start until N nodes on loopback are fully connected
//! (N = 5 and 20 by default), and the idle footprint (VmRSS, CPU over a window) of one node.
//!
//! `cargo build --release --bins && cargo run --release -p dig-e2e --bin bench-connect`
//!
//! The container image ships the `dist` profile (fat LTO); to measure that build:
//! `cargo build --profile dist -p dig-sidecar --bin dig-sidecar && cargo run --release -p dig-e2e
//! --bin bench-connect -- --sidecar target/dist/dig-sidecar`

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use clap::Parser;
use dig_e2e::network::{
    LocalNetwork, clock_ticks_per_second, cpu_ticks, resident_memory_bytes, resident_memory_split,
};

#[derive(Debug, Parser)]
#[command(
    about = "Time until N dig-sidecar nodes are fully connected, and one idle node's footprint"
)]
struct Args {
    /// Network sizes to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [5usize, 20])]
    sizes: Vec<usize>,
    /// Rounds per size.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Length of the idle CPU window in seconds.
    #[arg(long, default_value_t = 10)]
    idle_seconds: u64,
    /// Nodes of the network whose first node is measured idle.
    #[arg(long, default_value_t = 5)]
    idle_nodes: usize,
    /// The dig-sidecar executable to run (default: the workspace's release or debug build).
    #[arg(long, value_name = "PATH")]
    sidecar: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sidecar = match &args.sidecar {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => anyhow::bail!("--sidecar {}: no such file", path.display()),
        None => dig_e2e::process::binary_path("dig-sidecar")?,
    };
    let binary_bytes = std::fs::metadata(&sidecar)?.len();
    println!(
        "binary: {} ({:.1} MB)",
        sidecar.display(),
        binary_bytes as f64 / 1e6
    );
    if cfg!(debug_assertions) {
        println!("note: a debug build of the bench; run with --release for real figures");
    }
    for &size in &args.sizes {
        let mut figures = Vec::new();
        for round in 0..args.rounds {
            let root = std::env::temp_dir().join(format!(
                "bench-connect-{}-{size}-{round}",
                std::process::id()
            ));
            let started = Instant::now();
            let network =
                LocalNetwork::start_with_binary(&root, "bench", size, Some(sidecar.clone()))
                    .await?;
            let apis_up = started.elapsed();
            network
                .wait_fully_connected(Duration::from_secs(120))
                .await?;
            let total = started.elapsed();
            println!(
                "N={size:<3} round {round}: fully connected {:>6.0} ms after start ({:>6.0} ms after the last API answered)",
                total.as_secs_f64() * 1000.0,
                (total - apis_up).as_secs_f64() * 1000.0
            );
            figures.push(total);
            drop(network);
            let _ = std::fs::remove_dir_all(&root);
        }
        figures.sort();
        println!(
            "N={size:<3} fully connected: median {:.0} ms, best {:.0} ms, worst {:.0} ms (target for 20 nodes: < 5000 ms)\n",
            figures[figures.len() / 2].as_secs_f64() * 1000.0,
            figures[0].as_secs_f64() * 1000.0,
            figures[figures.len() - 1].as_secs_f64() * 1000.0,
        );
    }

    let root = std::env::temp_dir().join(format!("bench-connect-{}-idle", std::process::id()));
    let network = LocalNetwork::start_with_binary(
        &root,
        "bench-idle",
        args.idle_nodes,
        Some(sidecar.clone()),
    )
    .await?;
    network
        .wait_fully_connected(Duration::from_secs(120))
        .await?;
    // Let start-up work (registry polling at the start-up rate, DHT bootstrap) settle.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let pid = network.nodes[0].process.pid();
    let ticks_before = cpu_ticks(pid)?;
    let window_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let ticks = cpu_ticks(pid)? - ticks_before;
    let window = window_start.elapsed().as_secs_f64();
    let cpu_percent = ticks as f64 / clock_ticks_per_second() as f64 / window * 100.0;
    let rss = resident_memory_bytes(pid)?;
    let (anonymous, file) = resident_memory_split(pid)?;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!(
        "idle node (1 of {}, connected to {} peers): VmRSS {:.1} MiB ({:.1} MiB anonymous, {:.1} MiB mapped binary/libraries), CPU {:.2} % of one core over {:.0} s (targets: < 20 MB, < 1 %)",
        args.idle_nodes,
        args.idle_nodes - 1,
        mib(rss),
        mib(anonymous),
        mib(file),
        cpu_percent,
        window
    );
    drop(network);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
