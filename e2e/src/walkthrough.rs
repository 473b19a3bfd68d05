//! The README's Kubernetes walkthrough on a real node, one step per method: `helm install` of the
//! chart with the images built here, `helm test`, the README's DigNetwork applied and Ready, a
//! store written into one node's volume and replicated, pods' memory, and the clean-up. The
//! end-to-end test (tests/kubernetes_walkthrough.rs) asserts on each step; `bench-real-node`
//! prints their times.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cluster::{ClusterError, RealNode, TestCluster, skip_or_fail};
use crate::images::{Images, repository_and_tag};
use crate::process::{target_dir, workspace_root};

pub const OPERATOR_NAMESPACE: &str = "dig-system";
pub const RELEASE: &str = "dig-operator";
/// The README's network: `example` in namespace `dig`.
pub const NETWORK_NAMESPACE: &str = "dig";
pub const NETWORK: &str = "example";
/// Bounds every wait of a step (a loaded two-core machine pulls nothing, but starts slowly).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// A pod as the steps need it.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub name: String,
    pub ip: Option<Ipv4Addr>,
    pub ready: bool,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
}

/// The node pods of DigNetwork `network` in `namespace`, by name, each with its whole object.
pub fn network_node_pods(
    cluster: &TestCluster,
    namespace: &str,
    network: &str,
) -> anyhow::Result<Vec<(PodInfo, Value)>> {
    let selector = format!("app.kubernetes.io/instance={network},app.kubernetes.io/component=node");
    let list: Value = serde_json::from_str(&cluster.kubectl([
        "get", "pods", "-n", namespace, "-l", &selector, "-o", "json",
    ])?)?;
    let mut pods: Vec<(PodInfo, Value)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|pod| (PodInfo::from_json(pod), pod.clone()))
        .collect();
    pods.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(pods)
}

impl PodInfo {
    pub fn from_json(pod: &Value) -> PodInfo {
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        PodInfo {
            name: pod["metadata"]["name"].as_str().unwrap_or_default().into(),
            ip: pod["status"]["podIP"]
                .as_str()
                .and_then(|ip| ip.parse().ok()),
            ready,
            uid: pod["metadata"]["uid"].as_str().unwrap_or_default().into(),
            labels: serde_json::from_value(pod["metadata"]["labels"].clone()).unwrap_or_default(),
        }
    }

    pub fn component(&self) -> Option<&str> {
        self.labels
            .get("app.kubernetes.io/component")
            .map(String::as_str)
    }
}

/// One pod's containers' memory, as the kubelet reports it (`/stats/summary`).
#[derive(Clone, Debug)]
pub struct PodMemory {
    pub namespace: String,
    pub pod: String,
    /// What the kubelet counts against limits and evictions (usage less inactive file pages).
    pub working_set_bytes: u64,
    /// Resident anonymous memory.
    pub rss_bytes: u64,
}

pub struct Walkthrough<'a> {
    pub cluster: &'a TestCluster,
    pub images: Images,
    pub node: RealNode,
    http: reqwest::Client,
}

/// The DigNetwork manifest of the README's "Create a network" step, read from the README so the
/// test runs what users copy.
pub fn readme_network_manifest() -> anyhow::Result<String> {
    let path = workspace_root().join("README.md");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
    let start = text
        .find("cat <<'YAML' | kubectl apply -f -\n")
        .context("README.md has no `cat <<'YAML' | kubectl apply -f -` step")?;
    let body = &text[start..];
    let body = &body[body.find('\n').expect("a line") + 1..];
    let end = body
        .find("\nYAML\n")
        .context("the README's DigNetwork manifest does not end with YAML")?;
    Ok(body[..end + 1].to_string())
}

/// The workspace's images, built from the debug binaries, and a cluster whose real node runs
/// them; `None` when `test` is skipped (tools missing, DIG_E2E_REQUIRE_CLUSTER unset).
pub fn real_node_with_images(test: &str) -> Option<(TestCluster, Images)> {
    let binaries = target_dir().join("debug");
    let images = match Images::build(&binaries) {
        Ok(images) => images,
        Err(ClusterError::ToolsMissing { reason }) => {
            skip_or_fail(test, &reason);
            return None;
        }
        Err(error) => panic!("{test}: building the images from {binaries:?}: {error}"),
    };
    let cluster = TestCluster::start_real_node_or_skip(test, Some(&images.dir))?;
    Some((cluster, images))
}

impl<'a> Walkthrough<'a> {
    pub fn new(cluster: &'a TestCluster, images: Images) -> anyhow::Result<Self> {
        dig_core::crypto::install_crypto_provider();
        let node = cluster
            .real_node()
            .context("the cluster has no real node (start it with TestCluster::start_real_node)")?;
        Ok(Self {
            cluster,
            images,
            node,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        Ok(self.cluster.kubectl(args)?)
    }

    fn kubectl_json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.kubectl(&all)?;
        serde_json::from_str(&text).with_context(|| format!("kubectl {args:?} printed no JSON"))
    }

    /// `helm install` as the README's step 2, with this run's images (and the busybox image of
    /// the node for the chart's test pod); returns once the operator's Deployment is rolled out,
    /// its pods Ready by their real probes, and the time that took.
    pub fn install_operator(&self) -> anyhow::Result<Duration> {
        let (operator_repo, operator_tag) = repository_and_tag(&self.images.operator);
        let (bootstrap_repo, bootstrap_tag) = repository_and_tag(&self.images.bootstrap);
        let (sidecar_repo, sidecar_tag) = repository_and_tag(&self.images.sidecar);
        let busybox = self
            .cluster
            .node_image("BUSYBOX_IMAGE")
            .context("the node has no busybox image (cluster.sh build makes it)")?;
        let chart = workspace_root().join("charts/dig-operator");
        let sets = [
            format!("image.repository={operator_repo}"),
            format!("image.tag={operator_tag}"),
            format!("dataPlaneImages.bootstrap.repository={bootstrap_repo}"),
            format!("dataPlaneImages.bootstrap.tag={bootstrap_tag}"),
            format!("dataPlaneImages.sidecar.repository={sidecar_repo}"),
            format!("dataPlaneImages.sidecar.tag={sidecar_tag}"),
            format!("test.image={busybox}"),
        ];
        let mut args = vec![
            "install".to_string(),
            RELEASE.into(),
            chart.display().to_string(),
            "-n".into(),
            OPERATOR_NAMESPACE.into(),
            "--create-namespace".into(),
        ];
        for set in sets {
            args.extend(["--set".into(), set]);
        }
        let started = Instant::now();
        self.cluster.helm(&args)?;
        self.wait_operator_rollout()?;
        Ok(started.elapsed())
    }

    /// Waits (up to 300 s) until the operator's Deployment has rolled out.
    pub fn wait_operator_rollout(&self) -> anyhow::Result<()> {
        self.kubectl(&[
            "rollout",
            "status",
            "deployment/dig-operator",
            "-n",
            OPERATOR_NAMESPACE,
            "--timeout=300s",
        ])?;
        Ok(())
    }

    /// `helm test`: the chart's test pod runs on the node and checks the operator's Service. (The
    /// chart deletes a passed test pod at once, so there are no logs to ask for.)
    pub fn helm_test(&self) -> anyhow::Result<String> {
        Ok(self
            .cluster
            .helm(["test", RELEASE, "-n", OPERATOR_NAMESPACE, "--timeout", "5m"])?)
    }

    /// The README's step 3: the namespace, the DigNetwork, and `kubectl wait` for its Ready
    /// condition; returns the time from `kubectl apply` to Ready.
    pub fn apply_network(&self) -> anyhow::Result<Duration> {
        self.kubectl(&["create", "namespace", NETWORK_NAMESPACE])?;
        let manifest = readme_network_manifest()?;
        let started = Instant::now();
        self.cluster
            .kubectl_with_stdin(["apply", "-f", "-"], &manifest)?;
        self.kubectl(&[
            "wait",
            "--for=condition=Ready",
            &format!("dignetwork/{NETWORK}"),
            "-n",
            NETWORK_NAMESPACE,
            "--timeout=300s",
        ])?;
        Ok(started.elapsed())
    }

    pub fn pods(&self, namespace: &str) -> anyhow::Result<Vec<PodInfo>> {
        let list = self.kubectl_json(&["get", "pods", "-n", namespace])?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(PodInfo::from_json)
            .collect())
    }

    /// The pods of one component of the network (`bootstrap` or `node`).
    pub fn network_pods(&self, component: &str) -> anyhow::Result<Vec<PodInfo>> {
        let mut pods: Vec<_> = self
            .pods(NETWORK_NAMESPACE)?
            .into_iter()
            .filter(|pod| pod.component() == Some(component))
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(pods)
    }

    /// The directory on this machine behind the claim `claim` of the network's namespace.
    pub fn claim_dir(&self, namespace: &str, claim: &str) -> anyhow::Result<PathBuf> {
        let uid = self.kubectl(&[
            "get",
            "pvc",
            claim,
            "-n",
            namespace,
            "-o",
            "jsonpath={.metadata.uid}",
        ])?;
        let dir = self.node.volume_dir(uid.trim());
        if !dir.is_dir() {
            bail!("claim {namespace}/{claim} has no volume directory {dir:?} (not bound yet?)");
        }
        Ok(dir)
    }

    /// The volume of node pod `pod` (the StatefulSet's claim `data-<pod>`).
    pub fn node_volume(&self, pod: &str) -> anyhow::Result<PathBuf> {
        let claims = self.kubectl(&[
            "get",
            "pod",
            pod,
            "-n",
            NETWORK_NAMESPACE,
            "-o",
            "jsonpath={.spec.volumes[*].persistentVolumeClaim.claimName}",
        ])?;
        let claim = claims
            .split_whitespace()
            .next()
            .with_context(|| format!("pod {pod} mounts no claim"))?;
        self.claim_dir(NETWORK_NAMESPACE, claim)
    }

    pub async fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        let body = self.get_text(url).await?;
        serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON: {body}"))
    }

    /// The body of `GET url`; an error naming the URL for any status but 2xx.
    pub async fn get_text(&self, url: &str) -> anyhow::Result<String> {
        let response = self.http.get(url).send().await?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("GET {url}: HTTP {status}: {body}");
        }
        Ok(body)
    }

    /// The peer id a node pod reports on its API (`/health`).
    pub async fn node_peer_id(&self, pod: &PodInfo) -> anyhow::Result<String> {
        let ip = pod
            .ip
            .with_context(|| format!("pod {} has no IP", pod.name))?;
        let health = self.get_json(&format!("http://{ip}:8080/health")).await?;
        health["peerId"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("pod {}: /health has no peerId: {health}", pod.name))
    }

    /// Each registry replica's `/peers` (peer ids), asked at the replica's own pod address.
    pub async fn registry_views(&self) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
        let mut views = BTreeMap::new();
        for pod in self.network_pods("bootstrap")? {
            let ip = pod
                .ip
                .with_context(|| format!("registry pod {} has no IP", pod.name))?;
            let peers = self
                .get_json(&format!("http://{ip}:3000/peers?limit=1000"))
                .await?;
            let ids = peers["peers"]
                .as_array()
                .with_context(|| format!("{}: /peers has no peers: {peers}", pod.name))?
                .iter()
                .filter_map(|peer| peer["peerId"].as_str().map(str::to_owned))
                .collect();
            views.insert(pod.name, ids);
        }
        Ok(views)
    }

    /// Each pod's memory (working set), from the kubelet's summary.
    pub fn pod_memory(&self) -> anyhow::Result<Vec<PodMemory>> {
        let text = self.kubectl(&[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{}/proxy/stats/summary", self.node.name),
        ])?;
        let summary: Value =
            serde_json::from_str(&text).context("the kubelet's summary is not JSON")?;
        Ok(summary["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|pod| PodMemory {
                namespace: pod["podRef"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                pod: pod["podRef"]["name"].as_str().unwrap_or_default().into(),
                working_set_bytes: pod["memory"]["workingSetBytes"].as_u64().unwrap_or(0),
                rss_bytes: pod["memory"]["rssBytes"].as_u64().unwrap_or(0),
            })
            .collect())
    }

    /// [`Walkthrough::pod_memory`] once the kubelet reports every Running pod (its statistics
    /// lag a new pod by up to one collection period).
    pub async fn pod_memory_of_running_pods(&self) -> anyhow::Result<Vec<PodMemory>> {
        wait_until("memory of every running pod", STEP_TIMEOUT, || async {
            let running = self.kubectl(&[
                "get",
                "pods",
                "--all-namespaces",
                "--field-selector=status.phase=Running",
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}",
            ])?;
            let memory = self.pod_memory()?;
            let reported: BTreeSet<String> = memory
                .iter()
                .filter(|pod| pod.working_set_bytes > 0)
                .map(|pod| format!("{}/{}", pod.namespace, pod.pod))
                .collect();
            match running
                .split_whitespace()
                .find(|pod| !reported.contains(*pod))
            {
                Some(pod) => bail!("no memory reported for {pod} yet"),
                None => Ok(memory
                    .into_iter()
                    .filter(|pod| pod.working_set_bytes > 0)
                    .collect()),
            }
        })
        .await
    }
}

/// Polls `probe` every 500 ms until it returns `Ok`, for at most `timeout`; the error names
/// `what` and the last failure.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => {
                bail!("{what}: not reached within {timeout:?}; last: {last:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Waits until `name.dig` in each of `dirs` has the BLAKE3 hash `hash`; returns when the last did.
pub async fn wait_replicated(
    dirs: &[PathBuf],
    name: &str,
    hash: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    wait_until(
        &format!("{name}.dig replicated into {dirs:?}"),
        timeout,
        || async {
            for dir in dirs {
                let found = crate::replication::file_hash(&dir.join(format!("{name}.dig")))?;
                if found.as_deref() != Some(hash) {
                    bail!("{dir:?} has {found:?}");
                }
            }
            Ok(())
        },
    )
    .await?;
    Ok(started.elapsed())
}

/// `path`'s files that are not hidden (the sidecar's own state lives in `.dig-node`).
pub fn visible_files(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    names
}
