//! Helpers for the replication tests and the replication bench: deterministic store files written
//! the way users do (temporary file, then rename), their BLAKE3 hashes, and bounded waits on the
//! nodes' `/stores` and `/metrics`.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, Read, Write},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::network::{LocalNetwork, SidecarNode};

/// Writes `size` pseudo-random bytes (a function of `seed`) to `dir/<name>.dig` through a hidden
/// temporary file and a rename, 1 MiB at a time. Returns the BLAKE3 hash (hex).
pub fn write_store(dir: &Path, name: &str, size: u64, seed: u64) -> io::Result<String> {
    let tmp = dir.join(format!(".{name}.writing"));
    let mut file = File::create(&tmp)?;
    let mut hasher = blake3::Hasher::new();
    let mut state = seed_state(seed);
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let len = left.min(block.len() as u64) as usize;
        fill_pseudo_random(&mut state, &mut block[..len]);
        file.write_all(&block[..len])?;
        hasher.update(&block[..len]);
        left -= len as u64;
    }
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, dir.join(format!("{name}.dig")))?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn seed_state(seed: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1
}

/// xorshift64: fast, deterministic, incompressible enough for transfer tests.
fn fill_pseudo_random(state: &mut u64, block: &mut [u8]) {
    for word in block.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
}

/// The content of small store number `index`: its tag repeated to `bytes`.
pub fn small_store_content(index: usize, bytes: usize) -> Vec<u8> {
    let tag = format!("small store {index}\n");
    tag.bytes().cycle().take(bytes).collect()
}

/// A change to an existing store, written as a whole new file renamed over the old one.
#[derive(Clone, Copy, Debug)]
pub enum Edit {
    /// `n` new bytes after the old content.
    Append(u64),
    /// `n` new bytes before the old content (every old byte moves).
    Prepend(u64),
}

/// What [`rewrite_store`] wrote.
pub struct Rewritten {
    /// BLAKE3 (hex) of the new content.
    pub hash: String,
    pub size: u64,
    /// Time of the kernel-side copy of the unchanged bytes (`copy_file_range`, a reflink where
    /// the file system shares extents) plus `fsync`: the floor for any replica that rebuilds the
    /// file from its old copy.
    pub copy_and_fsync: Duration,
}

/// Applies `edit` to `dir/<name>.dig` the way DIG writes a store: a new file in `staging` (on the
/// same file system, somewhere the replicator ignores) holding the old bytes copied in the kernel
/// and `seed`'s new bytes, fsynced, then renamed over the old one.
pub fn rewrite_store(
    staging: &Path,
    dir: &Path,
    name: &str,
    edit: Edit,
    seed: u64,
) -> io::Result<Rewritten> {
    let path = dir.join(format!("{name}.dig"));
    let tmp = staging.join(format!(".{name}.rewriting"));
    let (Edit::Append(n) | Edit::Prepend(n)) = edit;
    let mut fresh = vec![0u8; n as usize];
    fill_pseudo_random(&mut seed_state(seed), &mut fresh);
    let mut new = File::create(&tmp)?;
    if let Edit::Prepend(_) = edit {
        new.write_all(&fresh)?;
    }
    let started = Instant::now();
    // std copies File to File with copy_file_range on Linux.
    io::copy(&mut File::open(&path)?, &mut new)?;
    new.sync_all()?;
    let copy_and_fsync = started.elapsed();
    if let Edit::Append(_) = edit {
        new.write_all(&fresh)?;
        new.sync_all()?;
    }
    let size = new.metadata()?.len();
    drop(new);
    // Hashed before the rename, so that the caller's clock starts when the file appears.
    let hash = file_hash(&tmp)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} vanished while written", tmp.display()),
        )
    })?;
    std::fs::rename(&tmp, &path)?;
    Ok(Rewritten {
        hash,
        size,
        copy_and_fsync,
    })
}

/// BLAKE3 (hex) of a file, read in 1 MiB pieces; `None` when it does not exist.
pub fn file_hash(path: &Path) -> io::Result<Option<String>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(Some(hasher.finalize().to_hex().to_string()))
}

/// Hashes of every `<name>.dig` file directly in `dir`, by store name.
pub fn folder_hashes(dir: &Path) -> io::Result<BTreeMap<String, String>> {
    let mut hashes = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_suffix(".dig")
            && !file.starts_with('.')
            && entry.file_type()?.is_file()
            && let Some(hash) = file_hash(&entry.path())?
        {
            hashes.insert(name.to_string(), hash);
        }
    }
    Ok(hashes)
}

/// `name -> (state, hash)` from a node's `/stores`.
pub async fn stores(
    node: &SidecarNode,
) -> anyhow::Result<BTreeMap<String, (String, Option<String>)>> {
    let body = node.get_json("/stores").await?;
    let list = body["stores"]
        .as_array()
        .with_context(|| format!("{}: /stores has no stores array: {body}", node.spec.name))?;
    Ok(list
        .iter()
        .filter_map(|s| {
            Some((
                s["name"].as_str()?.to_string(),
                (
                    s["state"].as_str().unwrap_or("").to_string(),
                    s["hash"].as_str().map(str::to_string),
                ),
            ))
        })
        .collect())
}

/// A node's `/stores` entry for `name` (`Null` when it lists no such store).
pub async fn store_status(node: &SidecarNode, name: &str) -> anyhow::Result<serde_json::Value> {
    let body = node.get_json("/stores").await?;
    Ok(body["stores"]
        .as_array()
        .with_context(|| format!("{}: /stores has no stores array: {body}", node.spec.name))?
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or(serde_json::Value::Null))
}

/// A registry and `count` nodes on loopback, each started with `args` besides the defaults,
/// fully connected.
pub async fn network_with_args(
    root: &Path,
    id: &str,
    count: usize,
    args: &[&str],
) -> anyhow::Result<LocalNetwork> {
    let mut network = LocalNetwork::start(root, id, 0).await?;
    for index in 0..count {
        let mut spec = network.node_spec(index);
        for arg in args {
            spec = spec.arg(*arg);
        }
        network.nodes.push(SidecarNode::start(spec).await?);
    }
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await?;
    Ok(network)
}

/// True when the node reports every expected store as synced with the expected hash.
pub async fn node_has(node: &SidecarNode, expected: &BTreeMap<String, String>) -> bool {
    let Ok(stores) = stores(node).await else {
        return false;
    };
    expected.iter().all(|(name, hash)| {
        stores
            .get(name)
            .is_some_and(|(state, h)| state == "synced" && h.as_deref() == Some(hash.as_str()))
    })
}

/// Waits (polling every 100 ms, bounded by `timeout`) until every node in `nodes` has every
/// expected store synced; returns the time it took.
pub async fn wait_synced(
    nodes: &[&SidecarNode],
    expected: &BTreeMap<String, String>,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let mut all = true;
        for node in nodes {
            if !node_has(node, expected).await {
                all = false;
                break;
            }
        }
        if all {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            let mut report = String::new();
            for node in nodes {
                let stores = stores(node).await.unwrap_or_default();
                let missing: Vec<_> = expected
                    .iter()
                    .filter(|(name, hash)| {
                        !stores.get(*name).is_some_and(|(state, h)| {
                            state == "synced" && h.as_deref() == Some(hash.as_str())
                        })
                    })
                    .map(|(name, _)| format!("{name}={:?}", stores.get(name)))
                    .take(5)
                    .collect();
                report.push_str(&format!("\n{}: missing {missing:?}", node.spec.name));
            }
            bail!("stores not synced within {timeout:?}:{report}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sum of every sample of metric `name` (all label sets) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sum of the samples of metric `name` whose labels include `label` (e.g. `direction="Received"`).
pub fn metric_sum_labelled(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let labels = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = labels.split_once("} ")?;
            labels.split(',').any(|l| l == label).then_some(value)
        })
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .sum()
}

/// Peak resident memory (`VmHWM`) of a process, in bytes.
pub fn peak_resident_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .with_context(|| format!("no VmHWM in /proc/{pid}/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("bad VmHWM line {line:?}"))?;
    Ok(kib * 1024)
}

/// Panics unless every node's data folder holds exactly `expected` (store name to BLAKE3 hex).
pub fn assert_folders_hold(nodes: &[SidecarNode], expected: &BTreeMap<String, String>) {
    for node in nodes {
        assert_eq!(
            &folder_hashes(&node.spec.data_dir).unwrap(),
            expected,
            "{} holds different bytes",
            node.spec.name
        );
    }
}

/// A one-node network whose node holds store `name` of `size` bytes (pseudo-random from `seed`),
/// indexed and ready to serve; returns the network and the store's hash (hex).
pub async fn one_node_holding(
    root: &Path,
    network_id: &str,
    name: &str,
    size: u64,
    seed: u64,
) -> anyhow::Result<(LocalNetwork, String)> {
    let network = LocalNetwork::start_connected(root, network_id, 1).await?;
    let node = &network.nodes[0];
    let hash = write_store(&node.spec.data_dir, name, size, seed)?;
    let expected = BTreeMap::from([(name.to_owned(), hash.clone())]);
    wait_synced(&[node], &expected, Duration::from_secs(120)).await?;
    Ok((network, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_stores_hash_like_blake3_and_are_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_store(dir.path(), "a", 3 << 20 | 5, 1).unwrap();
        let again = write_store(dir.path(), "b", 3 << 20 | 5, 1).unwrap();
        let other = write_store(dir.path(), "c", 3 << 20 | 5, 2).unwrap();
        assert_eq!(a, again);
        assert_ne!(a, other);
        let on_disk = folder_hashes(dir.path()).unwrap();
        assert_eq!(on_disk["a"], a);
        assert_eq!(on_disk.len(), 3);
        assert!(!dir.path().join(".a.writing").exists());
    }

    #[test]
    fn metric_sums_cover_every_label_set() {
        let text = "# HELP x y\nfoo_total{direction=\"sent\"} 3\nfoo_total{direction=\"received\"} 4\nfoo_total_other 9\n";
        assert_eq!(metric_sum(text, "foo_total"), 7.0);
        assert_eq!(metric_sum(text, "missing"), 0.0);
        assert_eq!(
            metric_sum_labelled(text, "foo_total", "direction=\"received\""),
            4.0
        );
    }

    #[test]
    fn rewrites_keep_the_old_bytes_around_the_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), "s", 3 << 20, 1).unwrap();
        let old = std::fs::read(dir.path().join("s.dig")).unwrap();
        let appended = rewrite_store(dir.path(), dir.path(), "s", Edit::Append(1000), 2).unwrap();
        let after = std::fs::read(dir.path().join("s.dig")).unwrap();
        assert_eq!(appended.size, old.len() as u64 + 1000);
        assert_eq!(&after[..old.len()], &old[..]);
        assert_eq!(appended.hash, blake3::hash(&after).to_hex().to_string());
        let prepended = rewrite_store(dir.path(), dir.path(), "s", Edit::Prepend(10), 3).unwrap();
        let last = std::fs::read(dir.path().join("s.dig")).unwrap();
        assert_eq!(prepended.size, after.len() as u64 + 10);
        assert_eq!(&last[10..], &after[..]);
        assert!(!dir.path().join(".s.rewriting").exists());
        assert_eq!(small_store_content(7, 20), b"small store 7\nsmall ");
    }
}
