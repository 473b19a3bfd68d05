//! The side-by-side mode: the same four workloads on 3 DIG nodes and on 3 Syncthing instances
//! (one source, two receivers, all on 127.0.0.1), timed the same way for both: from the moment
//! the new file is renamed into the source's folder until both receivers show it at its full
//! size, then checked by hash. Both systems install files by rename, so a full-size file is a
//! finished one.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use dig_e2e::{
    network::LocalNetwork,
    replication::{
        Edit, file_hash, metric_sum_labelled, peak_resident_bytes, rewrite_store,
        small_store_content, write_store,
    },
    syncthing,
};

use super::setup::{Args, TIMEOUT, start_network};

/// Bytes added by the append and insert cases.
const EDIT_BYTES: u64 = 1 << 20;

/// The store every large case works on.
const LARGE: &str = "large";

/// Three replicas of one folder, whichever system keeps them in step.
enum Replicas<'a> {
    Dig(&'a LocalNetwork),
    Syncthing(&'a syncthing::Cluster),
}

impl Replicas<'_> {
    /// The folders the users see: the source's first, then the receivers'.
    fn folders(&self) -> Vec<PathBuf> {
        match self {
            Self::Dig(network) => network
                .nodes
                .iter()
                .map(|n| n.spec.data_dir.clone())
                .collect(),
            Self::Syncthing(cluster) => {
                cluster.instances.iter().map(|i| i.folder.clone()).collect()
            }
        }
    }

    /// Where the source writes a file before renaming it in: the same file system, a place the
    /// system does not replicate (DIG skips hidden names; Syncthing sees only its folder).
    fn staging(&self) -> PathBuf {
        match self {
            Self::Dig(network) => network.nodes[0].spec.data_dir.join(".staging"),
            Self::Syncthing(cluster) => cluster.instances[0].home.join("staging"),
        }
    }

    fn pids(&self) -> Vec<u32> {
        match self {
            Self::Dig(network) => network.nodes.iter().map(|n| n.process.pid()).collect(),
            Self::Syncthing(cluster) => cluster.instances.iter().map(|i| i.process.pid()).collect(),
        }
    }

    /// Bytes the two receivers have taken off the wire so far. DIG counts verified chunk
    /// payload (`dig_sync_transfer_bytes_total{direction="Received"}`); Syncthing counts every
    /// byte of its connections (TLS and protocol messages included).
    async fn received_bytes(&self) -> anyhow::Result<u64> {
        match self {
            Self::Dig(network) => {
                let mut total = 0.0;
                for node in &network.nodes[1..] {
                    total += metric_sum_labelled(
                        &node.metrics().await?,
                        "dig_sync_transfer_bytes_total",
                        "direction=\"Received\"",
                    );
                }
                Ok(total as u64)
            }
            Self::Syncthing(cluster) => {
                let mut total = 0;
                for instance in &cluster.instances[1..] {
                    total += instance.wire_bytes().await?.0;
                }
                Ok(total)
            }
        }
    }

    /// The largest peak resident memory (VmHWM) of the three processes.
    fn peak_resident(&self) -> anyhow::Result<u64> {
        let mut max = 0;
        for pid in self.pids() {
            max = max.max(peak_resident_bytes(pid)?);
        }
        Ok(max)
    }
}

/// One workload on one system.
#[derive(Clone, Copy)]
struct Outcome {
    time: Duration,
    wire: u64,
    peak_resident: u64,
}

/// The results of the four workloads on one system, in table order.
struct Run {
    outcomes: Vec<Outcome>,
    /// `copy_file_range` + fsync of the unchanged part, for the append and insert cases.
    floors: [Duration; 2],
}

const CASES: [&str; 4] = [
    "new large store",
    "append 1 MiB",
    "insert 1 MiB at 0",
    "small stores",
];

/// Runs the comparison in `root` and prints its table under `heading`. `syncthing` is the
/// executable, or `None` to fill its column with dashes.
pub async fn run(
    args: &Args,
    syncthing: Option<&Path>,
    root: &Path,
    heading: &str,
) -> anyhow::Result<()> {
    let dig_root = root.join("dig");
    let st_root = root.join("syncthing");
    // A --work-dir may hold a failed run's folders; both systems must start empty.
    for dir in [&dig_root, &st_root] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    let dig = {
        let network = start_network(&dig_root, "bench-side-by-side", 3, args).await?;
        workloads(&Replicas::Dig(&network), args)
            .await
            .context("DIG side of the comparison")?
    };
    // Frees the disk for the second system (matters on a small loop-mounted file system).
    std::fs::remove_dir_all(&dig_root)
        .with_context(|| format!("removing {}", dig_root.display()))?;
    let syncthing = match syncthing {
        Some(binary) => {
            let cluster = syncthing::Cluster::start(binary, &st_root, 3).await?;
            cluster.wait_ready(Duration::from_secs(120)).await?;
            let run = workloads(&Replicas::Syncthing(&cluster), args)
                .await
                .context("Syncthing side of the comparison")?;
            std::fs::remove_dir_all(&st_root)
                .with_context(|| format!("removing {}", st_root.display()))?;
            Some(run)
        }
        None => None,
    };
    print_table(heading, args, &dig, syncthing.as_ref());
    Ok(())
}

async fn workloads(replicas: &Replicas<'_>, args: &Args) -> anyhow::Result<Run> {
    let folders = replicas.folders();
    let (source, receivers) = (&folders[0], &folders[1..]);
    let staging = replicas.staging();
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let size = args.large_mib << 20;
    let mut outcomes = Vec::new();

    let hash = write_store(&staging, LARGE, size, 1)?;
    let file = format!("{LARGE}.dig");
    let wire = replicas.received_bytes().await?;
    let started = Instant::now();
    std::fs::rename(staging.join(&file), source.join(&file))
        .with_context(|| format!("moving {file} into {}", source.display()))?;
    let time = wait_for_file(receivers, &file, size, &hash, started).await?;
    outcomes.push(outcome(replicas, time, wire).await?);

    let mut floors = [Duration::ZERO; 2];
    for (i, edit) in [Edit::Append(EDIT_BYTES), Edit::Prepend(EDIT_BYTES)]
        .into_iter()
        .enumerate()
    {
        let wire = replicas.received_bytes().await?;
        let rewritten = rewrite_store(&staging, source, LARGE, edit, 2 + i as u64)?;
        let started = Instant::now();
        floors[i] = rewritten.copy_and_fsync;
        let time =
            wait_for_file(receivers, &file, rewritten.size, &rewritten.hash, started).await?;
        outcomes.push(outcome(replicas, time, wire).await?);
    }

    let mut expected = BTreeMap::new();
    for i in 0..args.small_count {
        let content = small_store_content(i, args.small_bytes);
        let name = format!("small-{i:05}.dig");
        std::fs::write(staging.join(&name), &content)
            .with_context(|| format!("writing {name} in {}", staging.display()))?;
        expected.insert(name, blake3::hash(&content).to_hex().to_string());
    }
    let wire = replicas.received_bytes().await?;
    let started = Instant::now();
    for name in expected.keys() {
        std::fs::rename(staging.join(name), source.join(name))
            .with_context(|| format!("moving {name} into {}", source.display()))?;
    }
    let time = wait_for_files(receivers, &expected, started).await?;
    outcomes.push(outcome(replicas, time, wire).await?);
    Ok(Run { outcomes, floors })
}

async fn outcome(
    replicas: &Replicas<'_>,
    time: Duration,
    wire_before: u64,
) -> anyhow::Result<Outcome> {
    Ok(Outcome {
        time,
        wire: replicas.received_bytes().await?.saturating_sub(wire_before),
        peak_resident: replicas.peak_resident()?,
    })
}

/// Polls every 10 ms until `file` has `size` bytes in every receiver folder; returns when the
/// last one got there, after checking every copy's hash.
async fn wait_for_file(
    receivers: &[PathBuf],
    file: &str,
    size: u64,
    hash: &str,
    started: Instant,
) -> anyhow::Result<Duration> {
    let mut arrived: Vec<Option<Duration>> = vec![None; receivers.len()];
    while arrived.iter().any(Option::is_none) {
        for (i, folder) in receivers.iter().enumerate() {
            if arrived[i].is_none()
                && std::fs::metadata(folder.join(file)).is_ok_and(|m| m.len() == size)
            {
                arrived[i] = Some(started.elapsed());
            }
        }
        if started.elapsed() > TIMEOUT {
            bail!("{file} ({size} bytes) did not reach {receivers:?} within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for folder in receivers {
        let path = folder.join(file);
        let found = file_hash(&path).with_context(|| format!("hashing {}", path.display()))?;
        if found.as_deref() != Some(hash) {
            bail!(
                "{} has {size} bytes but hash {found:?}, expected {hash}",
                path.display()
            );
        }
    }
    Ok(arrived.into_iter().flatten().max().unwrap_or_default())
}

/// Polls every 20 ms until every receiver folder lists every expected file; returns when the
/// last one did, after checking every copy's hash.
async fn wait_for_files(
    receivers: &[PathBuf],
    expected: &BTreeMap<String, String>,
    started: Instant,
) -> anyhow::Result<Duration> {
    let mut arrived: Vec<Option<Duration>> = vec![None; receivers.len()];
    while arrived.iter().any(Option::is_none) {
        for (i, folder) in receivers.iter().enumerate() {
            if arrived[i].is_none() {
                let listed: BTreeSet<String> = std::fs::read_dir(folder)
                    .with_context(|| format!("listing {}", folder.display()))?
                    .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect();
                if expected.keys().all(|name| listed.contains(name)) {
                    arrived[i] = Some(started.elapsed());
                }
            }
        }
        if started.elapsed() > TIMEOUT {
            bail!(
                "{} small files did not reach {receivers:?} within {TIMEOUT:?}",
                expected.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for folder in receivers {
        for (name, hash) in expected {
            let path = folder.join(name);
            let found = file_hash(&path).with_context(|| format!("hashing {}", path.display()))?;
            if found.as_deref() != Some(hash.as_str()) {
                bail!("{} has hash {found:?}, expected {hash}", path.display());
            }
        }
    }
    Ok(arrived.into_iter().flatten().max().unwrap_or_default())
}

fn print_table(heading: &str, args: &Args, dig: &Run, syncthing: Option<&Run>) {
    let large = args.large_mib;
    let small = format!("{} x {} B", args.small_count, args.small_bytes);
    println!();
    println!("### {heading}");
    println!();
    println!(
        "| case | dig-sidecar | Syncthing | ratio (Syncthing / DIG) | DIG bytes on wire | Syncthing bytes on wire | disk floor (copy_file_range + fsync) | peak RSS DIG / Syncthing |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, case) in CASES.iter().enumerate() {
        let label = match i {
            0 => format!("{case} ({large} MiB)"),
            3 => format!("{case} ({small})"),
            _ => format!("{case} of {large} MiB"),
        };
        let d = dig.outcomes[i];
        let s = syncthing.map(|run| run.outcomes[i]);
        let floor = match i {
            1 | 2 => {
                let own = dig.floors[i - 1];
                let best = syncthing.map_or(own, |run| own.min(run.floors[i - 1]));
                format!("{:.2} s", best.as_secs_f64())
            }
            _ => "-".to_string(),
        };
        println!(
            "| {label} | {:.2} s | {} | {} | {} | {} | {floor} | {} / {} |",
            d.time.as_secs_f64(),
            s.map_or("-".into(), |s| format!("{:.2} s", s.time.as_secs_f64())),
            s.map_or("-".into(), |s| format!(
                "{:.2}",
                s.time.as_secs_f64() / d.time.as_secs_f64()
            )),
            mib(d.wire),
            s.map_or("-".into(), |s| mib(s.wire)),
            megabytes(d.peak_resident),
            s.map_or("-".into(), |s| megabytes(s.peak_resident)),
        );
    }
    println!();
    println!(
        "Time: from the rename into the source's folder until both receivers hold the file at full size (hash checked after). \
         Bytes on wire: received by the two receivers (DIG: chunk payload, dig_sync_transfer_bytes_total; Syncthing: \
         every connection byte, /rest/system/connections). Disk floor: the fastest of the two sources' kernel copies of \
         the unchanged part plus fsync. Peak RSS: the largest VmHWM of the three processes so far."
    );
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}
