//! What a secure libp2p transport costs per GiB of bulk data, on loopback: the transports a
//! dig-sidecar could negotiate (TCP with Noise or with TLS 1.3, then yamux), side by side with
//! plain TCP (the floor: no encryption, no multiplexing). Noise and TLS each run twice: as libp2p
//! ships them (libp2p's yamux with 16 KiB data frames; libp2p-tls, which picks ChaCha20-Poly1305)
//! and as the node runs them (`dig_sidecar::node::YamuxConfig` with larger frames;
//! `dig_sidecar::node::TlsConfig`, AES-GCM first), so the table shows what each change saves.
//! Two swarms in this process open one libp2p-stream stream and move `--mib` MiB in 1 MiB writes;
//! the figures are the wall time and the CPU time of the whole process (both ends), the best of
//! `--runs` alternating runs.
//!
//! `cargo run --release -p dig-e2e --bin bench-transport`

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use dig_e2e::network::{clock_ticks_per_second, cpu_ticks};
use dig_sidecar::node::{TlsConfig, YAMUX_SPLIT_SEND_SIZE, YamuxConfig};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, tls, yamux};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/dig-bench/transfer/1");
const WRITE: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Transport {
    /// TCP, no encryption, no multiplexing.
    Tcp,
    /// TCP + Noise (ChaCha20-Poly1305) + libp2p's yamux (16 KiB frames).
    Noise,
    /// TCP + Noise + dig-sidecar's yamux adapter: what nodes fall back to with older peers.
    NoiseSidecar,
    /// TCP + TLS 1.3 (libp2p-tls, rustls with ring) + libp2p's yamux.
    Tls,
    /// TCP + dig-sidecar's TLS 1.3 (AES-GCM first) + its yamux adapter: what nodes use.
    TlsSidecar,
}

impl Transport {
    fn label(self) -> String {
        match self {
            Self::Tcp => "plain TCP (no encryption, no multiplexing)".to_owned(),
            Self::Noise => "TCP + Noise + yamux, 16 KiB frames (libp2p default)".to_owned(),
            Self::NoiseSidecar => format!(
                "TCP + Noise + yamux, {} KiB frames (dig-sidecar)",
                YAMUX_SPLIT_SEND_SIZE / 1024
            ),
            Self::Tls => {
                "TCP + TLS 1.3 (libp2p-tls, ChaCha20) + yamux, 16 KiB frames (libp2p default)"
                    .to_owned()
            }
            Self::TlsSidecar => format!(
                "TCP + TLS 1.3, AES-GCM first + yamux, {} KiB frames (dig-sidecar)",
                YAMUX_SPLIT_SEND_SIZE / 1024
            ),
        }
    }
}

#[derive(Parser)]
#[command(about = "CPU per GiB of libp2p's secure transports on loopback, beside plain TCP")]
struct Args {
    /// MiB moved per run.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// Runs of each transport (alternating); the best is printed with the range.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, value_delimiter = ',', default_values = ["tcp", "noise", "noise-sidecar", "tls", "tls-sidecar"])]
    transports: Vec<Transport>,
}

#[derive(Clone, Copy)]
struct Run {
    seconds: f64,
    cpu_seconds: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runs: Vec<(Transport, Vec<Run>)> =
        args.transports.iter().map(|&t| (t, Vec::new())).collect();
    for _ in 0..args.runs {
        for (transport, results) in &mut runs {
            let run = tokio::time::timeout(TIMEOUT, measure(*transport, args.mib))
                .await
                .with_context(|| {
                    format!("{transport:?}: {} MiB took over {TIMEOUT:?}", args.mib)
                })??;
            results.push(run);
        }
    }
    let gib = args.mib as f64 / 1024.0;
    println!(
        "{} MiB over loopback, one stream, both ends in this process; best of {} runs (range)",
        args.mib, args.runs
    );
    println!("| transport | time | throughput | CPU-seconds per GiB (both ends) |");
    println!("|---|---|---|---|");
    for (transport, results) in &runs {
        let best = |f: fn(&Run) -> f64| {
            let values: Vec<f64> = results.iter().map(f).collect();
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(0.0, f64::max);
            (min, max)
        };
        let (time, time_max) = best(|r| r.seconds);
        let (cpu, cpu_max) = best(|r| r.cpu_seconds);
        println!(
            "| {} | {time:.2} s ({time:.2} to {time_max:.2}) | {:.0} MiB/s | {:.2} ({:.2} to {:.2}) |",
            transport.label(),
            args.mib as f64 / time,
            cpu / gib,
            cpu / gib,
            cpu_max / gib,
        );
    }
    Ok(())
}

async fn measure(transport: Transport, mib: usize) -> anyhow::Result<Run> {
    let ticks = clock_ticks_per_second() as f64;
    let pid = std::process::id();
    let cpu_before = cpu_ticks(pid)?;
    let started = Instant::now();
    let received = match transport {
        Transport::Tcp => over_tcp(mib).await?,
        Transport::Noise | Transport::NoiseSidecar | Transport::Tls | Transport::TlsSidecar => {
            over_libp2p(transport, mib).await?
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = (cpu_ticks(pid)? - cpu_before) as f64 / ticks;
    if received != (mib * WRITE) as u64 {
        bail!(
            "{transport:?}: received {received} bytes of {}",
            mib * WRITE
        );
    }
    Ok(Run {
        seconds,
        cpu_seconds,
    })
}

async fn over_tcp(mib: usize) -> anyhow::Result<u64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let receiver = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut buffer = vec![0u8; WRITE];
        let mut total = 0u64;
        loop {
            let n = socket.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(total);
            }
            total += n as u64;
        }
    });
    let mut socket = tokio::net::TcpStream::connect(address).await?;
    socket.set_nodelay(true)?;
    let block = vec![7u8; WRITE];
    for _ in 0..mib {
        socket.write_all(&block).await?;
    }
    socket.shutdown().await?;
    Ok(receiver.await??)
}

async fn over_libp2p(transport: Transport, mib: usize) -> anyhow::Result<u64> {
    let mut receiver = swarm(transport)?;
    receiver.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let address = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = receiver.select_next_some().await {
            break address;
        }
    };
    let receiver_peer = *receiver.local_peer_id();
    let mut incoming = receiver.behaviour().new_control().accept(PROTOCOL)?;
    let receiver_task = tokio::spawn(drive(receiver));

    let sender = connected(transport, receiver_peer, address).await?;
    let mut control = sender.behaviour().new_control();
    let sender_task = tokio::spawn(drive(sender));

    let reading = tokio::spawn(async move {
        let (_, mut stream) = incoming.next().await.context("no incoming stream")?;
        let mut buffer = vec![0u8; WRITE];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                return anyhow::Ok(total);
            }
            total += n as u64;
        }
    });
    let mut stream = control
        .open_stream(receiver_peer, PROTOCOL)
        .await
        .map_err(|e| anyhow::anyhow!("opening a stream to {receiver_peer}: {e}"))?;
    let block = vec![7u8; WRITE];
    for _ in 0..mib {
        stream.write_all(&block).await?;
    }
    stream.close().await?;
    let received = reading.await??;
    receiver_task.abort();
    sender_task.abort();
    Ok(received)
}

/// A swarm dialing `peer` at `address`, once connected.
async fn connected(
    transport: Transport,
    peer: PeerId,
    address: Multiaddr,
) -> anyhow::Result<Swarm<libp2p_stream::Behaviour>> {
    let mut sender = swarm(transport)?;
    sender.dial(address.clone())?;
    loop {
        match sender.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => {
                return Ok(sender);
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                bail!("{transport:?}: dialing {address}: {error}")
            }
            _ => {}
        }
    }
}

async fn drive(mut swarm: Swarm<libp2p_stream::Behaviour>) {
    loop {
        swarm.select_next_some().await;
    }
}

/// A swarm with the sidecar's TCP settings and the given security and yamux upgrades.
fn swarm(transport: Transport) -> anyhow::Result<Swarm<libp2p_stream::Behaviour>> {
    let tcp = tcp::Config::default().nodelay(true);
    let builder = libp2p::SwarmBuilder::with_new_identity().with_tokio();
    let swarm = match transport {
        Transport::Noise => builder
            .with_tcp(tcp, noise::Config::new, yamux::Config::default)?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())?
            .with_swarm_config(|c| c.with_idle_connection_timeout(TIMEOUT))
            .build(),
        Transport::NoiseSidecar => builder
            .with_tcp(tcp, noise::Config::new, YamuxConfig::default)?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())?
            .with_swarm_config(|c| c.with_idle_connection_timeout(TIMEOUT))
            .build(),
        Transport::Tls => builder
            .with_tcp(tcp, tls::Config::new, yamux::Config::default)?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())?
            .with_swarm_config(|c| c.with_idle_connection_timeout(TIMEOUT))
            .build(),
        Transport::TlsSidecar => builder
            .with_tcp(tcp, TlsConfig::new, YamuxConfig::default)?
            .with_behaviour(|_| libp2p_stream::Behaviour::new())?
            .with_swarm_config(|c| c.with_idle_connection_timeout(TIMEOUT))
            .build(),
        Transport::Tcp => bail!("plain TCP needs no swarm"),
    };
    Ok(swarm)
}
