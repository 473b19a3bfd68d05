//! A local DIG network of real processes: one `dig-bootstrap` and N `dig-sidecar` nodes on
//! loopback, each with its own data folder, plus the helpers to read their HTTP APIs, kill and
//! restart them, and wait (bounded) until they have found each other. Used by the
//! `sidecar_*` tests, `dig-local-network` and `bench-connect`.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{
    bootstrap::BootstrapServer,
    process::{ProcessSpec, TestProcess, binary_path, free_loopback_addr},
};

/// How long a starting node gets to answer `/health`.
const NODE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How one node is started.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub network_id: String,
    pub data_dir: PathBuf,
    /// Registry URLs (`--bootstrap`); empty turns the registry off.
    pub bootstrap: Vec<String>,
    /// Further `dig-sidecar run` arguments (e.g. `--psk-file`, `--no-dht`).
    pub extra_args: Vec<String>,
    /// `RUST_LOG` of the node.
    pub log: String,
    /// The `dig-sidecar` executable; `None` is the workspace build (`target/release` or `debug`).
    pub binary: Option<PathBuf>,
}

impl NodeSpec {
    /// A loopback node: P2P on 127.0.0.1 (TCP and QUIC, ports chosen by the OS), mDNS off,
    /// loopback addresses allowed.
    pub fn loopback(name: &str, network_id: &str, data_dir: PathBuf, bootstrap: &[String]) -> Self {
        Self {
            name: name.to_string(),
            network_id: network_id.to_string(),
            data_dir,
            bootstrap: bootstrap.to_vec(),
            extra_args: Vec::new(),
            log: "info".into(),
            binary: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    fn command_args(&self, api: SocketAddr) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--network".into(),
            self.network_id.clone(),
            "--listen".into(),
            "/ip4/127.0.0.1/tcp/0".into(),
            "--listen".into(),
            "/ip4/127.0.0.1/udp/0/quic-v1".into(),
            "--api-listen".into(),
            api.to_string(),
            "--allow-loopback".into(),
            "--no-mdns".into(),
        ];
        for url in &self.bootstrap {
            args.push("--bootstrap".into());
            args.push(url.clone());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// A running `dig-sidecar`, killed (by PID) when dropped.
pub struct SidecarNode {
    pub spec: NodeSpec,
    pub process: TestProcess,
    pub api: SocketAddr,
    pub peer_id: String,
    http: reqwest::Client,
}

impl SidecarNode {
    /// Starts the node on a free API port and waits until `/health` answers.
    pub async fn start(spec: NodeSpec) -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..3 {
            let api = free_loopback_addr()?;
            match Self::start_on(spec.clone(), api).await {
                Ok(node) => return Ok(node),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("{} did not start", spec.name)))
    }

    /// Starts the node with its API on `api`.
    pub async fn start_on(spec: NodeSpec, api: SocketAddr) -> anyhow::Result<Self> {
        // reqwest is built without a default TLS crypto back end; tests talk plain HTTP but the
        // client still needs one installed.
        dig_core::crypto::install_crypto_provider();
        std::fs::create_dir_all(&spec.data_dir)
            .with_context(|| format!("creating {}", spec.data_dir.display()))?;
        let binary = match &spec.binary {
            Some(path) => path.clone(),
            None => binary_path("dig-sidecar")?,
        };
        let process = ProcessSpec::new(binary)
            .name(spec.name.clone())
            .args(spec.command_args(api))
            .env("RUST_LOG", spec.log.clone())
            .spawn()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut node = Self {
            spec,
            process,
            api,
            peer_id: String::new(),
            http,
        };
        let deadline = Instant::now() + NODE_START_TIMEOUT;
        loop {
            if let Ok(health) = node.get_json("/health").await
                && let Some(peer_id) = health["peerId"].as_str()
            {
                node.peer_id = peer_id.to_string();
                return Ok(node);
            }
            if !node.process.is_running() {
                bail!(
                    "{} exited during start-up; output:\n{}",
                    node.spec.name,
                    node.process.output()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not answer /health within {NODE_START_TIMEOUT:?}; output:\n{}",
                    node.spec.name,
                    node.process.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let url = self.url(path);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        response
            .json()
            .await
            .with_context(|| format!("GET {url}: body is not JSON"))
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        let url = self.url("/metrics");
        Ok(self.http.get(&url).send().await?.text().await?)
    }

    /// The peer ids `/connections` lists as connected.
    pub async fn connected_peer_ids(&self) -> anyhow::Result<BTreeSet<String>> {
        let connections = self.get_json("/connections").await?;
        Ok(peer_ids(&connections["connectedPeers"]))
    }

    /// Waits until `/connections` lists every one of `peers` as connected.
    pub async fn wait_connected_to(&self, peers: &[&str], timeout: Duration) {
        crate::wait::eventually(
            &format!("{} connected to {peers:?}", self.spec.name),
            timeout,
            || async {
                let connected = self.connected_peer_ids().await.map_err(|e| e.to_string())?;
                if peers.iter().all(|p| connected.contains(*p)) {
                    Ok(())
                } else {
                    Err(format!("{connected:?}"))
                }
            },
        )
        .await
    }

    /// SIGKILL, by PID.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the node again with the same arguments, data folder and API port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        let restarted = Self::start_on(self.spec.clone(), self.api).await?;
        *self = restarted;
        Ok(())
    }
}

/// The `peerId` of every object in a JSON array.
pub fn peer_ids(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["peerId"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One bootstrap server and N nodes of one network on loopback.
pub struct LocalNetwork {
    pub root: PathBuf,
    pub network_id: String,
    pub bootstrap: BootstrapServer,
    pub nodes: Vec<SidecarNode>,
    /// The `dig-sidecar` executable of every node; `None` is the workspace build.
    pub sidecar_binary: Option<PathBuf>,
}

impl LocalNetwork {
    /// Starts a bootstrap server and `count` nodes (data folders `<root>/node-<i>`).
    pub async fn start(root: &Path, network_id: &str, count: usize) -> anyhow::Result<Self> {
        Self::start_with_binary(root, network_id, count, None).await
    }

    /// Like [`LocalNetwork::start`], and waits (up to 60 s) until every node is connected to
    /// every other.
    pub async fn start_connected(
        root: &Path,
        network_id: &str,
        count: usize,
    ) -> anyhow::Result<Self> {
        let network = Self::start(root, network_id, count).await?;
        network
            .wait_fully_connected(Duration::from_secs(60))
            .await?;
        Ok(network)
    }

    /// Like [`LocalNetwork::start`], with the nodes running `sidecar_binary` (e.g. a build of
    /// another cargo profile) instead of the workspace build.
    pub async fn start_with_binary(
        root: &Path,
        network_id: &str,
        count: usize,
        sidecar_binary: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let bootstrap = BootstrapServer::start(&[]).await?;
        let mut network = Self {
            root: root.to_path_buf(),
            network_id: network_id.to_string(),
            bootstrap,
            nodes: Vec::new(),
            sidecar_binary,
        };
        network.add_nodes(count).await?;
        Ok(network)
    }

    /// The spec of node `index` of this network (not started).
    pub fn node_spec(&self, index: usize) -> NodeSpec {
        let mut spec = NodeSpec::loopback(
            &format!("node-{index}"),
            &self.network_id,
            self.root.join(format!("node-{index}")),
            std::slice::from_ref(&self.bootstrap.base_url),
        );
        spec.binary = self.sidecar_binary.clone();
        spec
    }

    /// Starts `count` more nodes, all at once.
    pub async fn add_nodes(&mut self, count: usize) -> anyhow::Result<()> {
        let first = self.nodes.len();
        let starts = (first..first + count).map(|index| SidecarNode::start(self.node_spec(index)));
        for node in futures::future::join_all(starts).await {
            self.nodes.push(node?);
        }
        Ok(())
    }

    /// Waits until every node lists every other node as connected; returns how long it took.
    pub async fn wait_fully_connected(&self, timeout: Duration) -> anyhow::Result<Duration> {
        wait_fully_connected(&self.nodes, timeout).await
    }
}

/// Waits until each node in `nodes` has all the others connected (bounded by `timeout`).
pub async fn wait_fully_connected(
    nodes: &[SidecarNode],
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let all: BTreeSet<String> = nodes.iter().map(|node| node.peer_id.clone()).collect();
    loop {
        let mut missing = Vec::new();
        for node in nodes {
            let expected: BTreeSet<String> = all
                .iter()
                .filter(|id| **id != node.peer_id)
                .cloned()
                .collect();
            match node.connected_peer_ids().await {
                Ok(connected) if connected.is_superset(&expected) => {}
                Ok(connected) => missing.push(format!(
                    "{} sees {} of {}",
                    node.spec.name,
                    connected.intersection(&expected).count(),
                    expected.len()
                )),
                Err(error) => missing.push(format!("{}: {error:#}", node.spec.name)),
            }
        }
        if missing.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() >= timeout {
            bail!(
                "not fully connected after {timeout:?}: {}",
                missing.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh libp2p pre-shared key file (`/key/swarm/psk/1.0.0/` format) at `path`.
pub fn write_psk_file(path: &Path) -> anyhow::Result<()> {
    let mut key = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
    let hex: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
    std::fs::write(path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n"))
        .with_context(|| format!("writing {}", path.display()))
}

/// Resident memory (VmRSS, bytes) of a process, from `/proc/<pid>/status`.
pub fn resident_memory_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS without a value")?
        .parse()?;
    Ok(kib * 1024)
}

/// Anonymous (private heap and stack) and file-backed (mapped binary code) parts of VmRSS, in
/// bytes, from `/proc/<pid>/status`.
pub fn resident_memory_split(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|line| line.starts_with(name))
            .with_context(|| format!("no {name} line"))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .with_context(|| format!("{name} without a value"))?
            .parse()?;
        Ok(kib * 1024)
    };
    Ok((field("RssAnon:")?, field("RssFile:")?))
}

/// CPU time (user + system, in clock ticks) of a process, from `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux when that is unavailable).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}
