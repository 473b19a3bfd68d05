//! The `dig-operator` binary against a [`TestCluster`]: started with the cluster's kubeconfig and
//! its metrics server on a free loopback port, killed by PID when dropped; its Prometheus metrics
//! read and parsed; the repository's CRDs applied; bounded polling for the tests and the bench.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{ClusterError, TestCluster};
use crate::process::{
    ProcessError, ProcessSpec, TestProcess, free_loopback_addr, wait_for_http_ok, workspace_root,
};

/// Kind label of the DigNetwork controller's metrics.
pub const NETWORK_KIND: &str = "DigNetwork";
/// Kind label of the DigNode controller's metrics.
pub const NODE_KIND: &str = "DigNode";

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("reading {url}: {source}")]
    Metrics {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("dig-operator {name} did not serve {url} within {timeout:?}: {reason}")]
    NotHealthy {
        name: String,
        url: String,
        timeout: Duration,
        reason: String,
    },
    #[error("`kubectl get {kind} {name}` printed no JSON: {source}")]
    Json {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading {path}: {source}")]
    ProcStatus {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How one `dig-operator` process runs.
#[derive(Clone, Debug, Default)]
pub struct OperatorOptions {
    /// Label in errors and output dumps, and the Lease holder identity.
    pub name: String,
    /// `--namespace` values; every namespace when empty.
    pub namespaces: Vec<String>,
    /// `--leader-election` with the Lease in this namespace.
    pub lease_namespace: Option<String>,
    /// Further flags, e.g. `--default-sidecar-image=...`.
    pub extra_args: Vec<String>,
    /// Further environment variables, e.g. AWS credentials.
    pub envs: Vec<(String, String)>,
}

impl OperatorOptions {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ..Self::default()
        }
    }
}

/// A running `dig-operator` (webhook off), killed (SIGKILL, by PID) when dropped.
pub struct OperatorProcess {
    process: TestProcess,
    metrics_addr: SocketAddr,
    kubeconfig: PathBuf,
    options: OperatorOptions,
    http: reqwest::Client,
}

impl OperatorProcess {
    /// Starts `target/<profile>/dig-operator` against the cluster of `kubeconfig` and waits until
    /// its `/healthz` answers (the CRD check passed and the controllers or the elector started).
    pub async fn start(
        kubeconfig: &Path,
        options: OperatorOptions,
    ) -> Result<OperatorProcess, OperatorError> {
        let (process, metrics_addr) = spawn(kubeconfig, &options)?;
        dig_core::crypto::install_crypto_provider();
        let operator = OperatorProcess {
            process,
            metrics_addr,
            kubeconfig: kubeconfig.to_owned(),
            options,
            http: reqwest::Client::new(),
        };
        operator.wait_healthy(Duration::from_secs(60)).await?;
        Ok(operator)
    }

    /// [`OperatorProcess::start`] with the kubeconfig of `cluster`.
    pub async fn start_for(
        cluster: &TestCluster,
        options: OperatorOptions,
    ) -> Result<OperatorProcess, OperatorError> {
        Self::start(cluster.kubeconfig_path(), options).await
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Everything the process logged so far.
    pub fn output(&self) -> String {
        self.process.output()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGKILL: no graceful shutdown, the Lease (if held) is not released.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Kills the process (SIGKILL) and starts it again with the same options (metrics on a new
    /// port); waits for `/healthz`.
    pub async fn kill_and_restart(&mut self) -> Result<(), OperatorError> {
        self.process.kill();
        let (process, metrics_addr) = spawn(&self.kubeconfig, &self.options)?;
        // Replacing drops the old handle, which reaps the killed process and joins its readers.
        self.process = process;
        self.metrics_addr = metrics_addr;
        self.wait_healthy(Duration::from_secs(60)).await
    }

    async fn wait_healthy(&self, timeout: Duration) -> Result<(), OperatorError> {
        let url = format!("http://{}/healthz", self.metrics_addr);
        wait_for_http_ok(&url, timeout)
            .await
            .map_err(|error| OperatorError::NotHealthy {
                name: self.options.name.clone(),
                url,
                timeout,
                reason: format!("{error:#}\n--- output ---\n{}", self.output()),
            })
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> Result<Metrics, OperatorError> {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let text = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|source| OperatorError::Metrics {
                url: url.clone(),
                source,
            })?
            .text()
            .await
            .map_err(|source| OperatorError::Metrics { url, source })?;
        Ok(Metrics::parse(&text))
    }

    /// Resident memory of the process now and at its peak.
    pub fn memory(&self) -> Result<Memory, OperatorError> {
        Memory::of_pid(self.pid())
    }
}

fn spawn(
    kubeconfig: &Path,
    options: &OperatorOptions,
) -> Result<(TestProcess, SocketAddr), OperatorError> {
    let metrics_addr = free_loopback_addr()?;
    let mut args = vec![
        "--no-webhook".to_string(),
        format!("--metrics-listen={metrics_addr}"),
        format!("--identity={}", options.name),
        // kwok's pods have made-up IPs: the operator must never dial them.
        "--peer-id-networks=127.0.0.0/8".to_string(),
    ];
    if !options.namespaces.is_empty() {
        args.push(format!("--namespace={}", options.namespaces.join(",")));
    }
    if let Some(namespace) = &options.lease_namespace {
        args.push("--leader-election".to_string());
        args.push(format!("--lease-namespace={namespace}"));
    }
    args.extend(options.extra_args.iter().cloned());
    let mut spec = ProcessSpec::workspace_binary("dig-operator")?
        .name(options.name.clone())
        .env("KUBECONFIG", kubeconfig.to_string_lossy())
        .env("RUST_LOG", "info,kube=warn")
        .args(args);
    for (key, value) in &options.envs {
        spec = spec.env(key, value);
    }
    let process = spec.spawn()?;
    Ok((process, metrics_addr))
}

/// Samples of a Prometheus text exposition, by series name and label set.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
    text: String,
}

impl Metrics {
    /// Parses the text format (`name{label="value",...} number`); comments are skipped.
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(parse_sample)
            .collect();
        Metrics {
            samples,
            text: text.to_string(),
        }
    }

    /// The exposition as served.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value of the series `name` whose labels include every one of `labels`, summed over
    /// the matching series; `None` when no series matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matched = self
            .samples
            .iter()
            .filter(|(series, set, _)| {
                series == name
                    && labels
                        .iter()
                        .all(|(key, value)| set.get(*key).map(String::as_str) == Some(*value))
            })
            .map(|(_, _, value)| *value)
            .peekable();
        matched.peek()?;
        Some(matched.sum())
    }

    /// `dig_operator_reconciles_total{kind}`; 0 before the first reconcile.
    pub fn reconciles(&self, kind: &str) -> f64 {
        self.value("dig_operator_reconciles_total", &[("kind", kind)])
            .unwrap_or(0.0)
    }

    /// `dig_operator_reconcile_errors_total{kind}` over every reason; 0 before the first error.
    pub fn reconcile_errors(&self, kind: &str, reason: Option<&str>) -> f64 {
        let mut labels = vec![("kind", kind)];
        if let Some(reason) = reason {
            labels.push(("reason", reason));
        }
        self.value("dig_operator_reconcile_errors_total", &labels)
            .unwrap_or(0.0)
    }

    /// Count and sum of `dig_operator_reconcile_duration_seconds{kind}`.
    pub fn reconcile_duration(&self, kind: &str) -> (f64, f64) {
        let labels = [("kind", kind)];
        (
            self.value("dig_operator_reconcile_duration_seconds_count", &labels)
                .unwrap_or(0.0),
            self.value("dig_operator_reconcile_duration_seconds_sum", &labels)
                .unwrap_or(0.0),
        )
    }

    /// The `quantile` (0..1) of the reconcile duration histogram, as the upper bound of the first
    /// bucket that holds it (what `histogram_quantile` would interpolate within).
    pub fn reconcile_duration_bucket_bound(&self, kind: &str, quantile: f64) -> Option<f64> {
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|(series, set, _)| {
                series == "dig_operator_reconcile_duration_seconds_bucket"
                    && set.get("kind").map(String::as_str) == Some(kind)
            })
            .filter_map(|(_, set, count)| {
                let bound = set.get("le")?;
                let bound = if bound == "+Inf" {
                    f64::INFINITY
                } else {
                    bound.parse().ok()?
                };
                Some((bound, *count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last()?.1;
        buckets
            .iter()
            .find(|(_, count)| *count >= quantile * total)
            .map(|(bound, _)| *bound)
    }
}

fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let mut set = BTreeMap::new();
    let mut rest = labels;
    while let Some((key, after)) = rest.split_once("=\"") {
        // Label values here never hold quotes (kinds, reasons, bucket bounds).
        let (value, after) = after.split_once('"')?;
        set.insert(
            key.trim_start_matches(',').trim().to_string(),
            value.to_string(),
        );
        rest = after;
    }
    Some((name.trim().to_string(), set, value))
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS, in KiB.
    pub resident_kib: u64,
    /// VmHWM (peak resident), in KiB.
    pub peak_resident_kib: u64,
}

impl Memory {
    pub fn of_pid(pid: u32) -> Result<Memory, OperatorError> {
        let path = PathBuf::from(format!("/proc/{pid}/status"));
        let status =
            std::fs::read_to_string(&path).map_err(|source| OperatorError::ProcStatus {
                path: path.clone(),
                source,
            })?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Ok(Memory {
            resident_kib: field("VmRSS:"),
            peak_resident_kib: field("VmHWM:"),
        })
    }
}

/// The repository's `crds/` folder.
pub fn crds_dir() -> PathBuf {
    workspace_root().join("crds")
}

/// Applies `crds/` to the cluster and waits until both CRDs are Established.
pub fn install_crds(cluster: &TestCluster) -> Result<(), ClusterError> {
    let crds = crds_dir();
    cluster.kubectl(["apply", "--server-side", "-f", &crds.to_string_lossy()])?;
    cluster.kubectl([
        "wait",
        "--for=condition=Established",
        "crd/dignetworks.dig.net",
        "crd/dignodes.dig.net",
        "--timeout=60s",
    ])?;
    Ok(())
}

/// Installs the Prometheus operator's CRD of `kind` (e.g. `PodMonitor`, plural `podmonitors`),
/// reduced to what the API server needs to serve it (any content accepted), and waits until it is
/// Established: enough for the operator to discover the API and apply its objects.
pub fn install_prometheus_operator_crd(
    cluster: &TestCluster,
    plural: &str,
    kind: &str,
) -> Result<(), ClusterError> {
    let singular = kind.to_lowercase();
    let crd = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": singular, "kind": kind, "listKind": format!("{kind}List")},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    });
    cluster.kubectl_with_stdin(["apply", "-f", "-"], &crd.to_string())?;
    cluster.kubectl([
        "wait",
        "--for=condition=Established",
        &format!("crd/{plural}.monitoring.coreos.com"),
        "--timeout=60s",
    ])?;
    Ok(())
}

/// The manifest of a custom resource of `dig.net/v1alpha1` (`kind` DigNetwork or DigNode).
pub fn dig_manifest(kind: &str, namespace: &str, name: &str, spec: Value) -> Value {
    serde_json::json!({
        "apiVersion": "dig.net/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec
    })
}

/// The object `kind`/`name` of `namespace` as JSON (`kubectl get -o json`, managedFields
/// included); `None` when it does not exist.
pub fn get_object(
    cluster: &TestCluster,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Option<Value>, OperatorError> {
    let output = cluster.kubectl([
        "get",
        kind,
        name,
        "-n",
        namespace,
        "-o",
        "json",
        "--ignore-not-found",
        "--show-managed-fields",
    ])?;
    if output.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&output)
        .map(Some)
        .map_err(|source| OperatorError::Json {
            kind: kind.to_string(),
            name: name.to_string(),
            source,
        })
}

/// The notes of the events of `namespace` with `reason` (an `events.k8s.io` note, else the core
/// message).
pub fn event_notes(
    cluster: &TestCluster,
    namespace: &str,
    reason: &str,
) -> Result<Vec<String>, OperatorError> {
    let selector = format!("reason={reason}");
    let output = cluster.kubectl([
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        &selector,
        "-o",
        "json",
    ])?;
    let list: Value = serde_json::from_str(&output).map_err(|source| OperatorError::Json {
        kind: "events".to_string(),
        name: selector.clone(),
        source,
    })?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            e["note"]
                .as_str()
                .or(e["message"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect())
}

/// The condition `type_` of an object's `status.conditions`.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == type_)
}

/// Whether a DigNetwork or DigNode is Ready for its current generation.
pub fn is_ready(object: &Value) -> bool {
    condition(object, "Ready").is_some_and(|ready| ready["status"] == "True")
        && object["status"]["observedGeneration"] == object["metadata"]["generation"]
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "# HELP dig_operator_reconciles Reconciliations run\n\
        # TYPE dig_operator_reconciles counter\n\
        dig_operator_reconciles_total{kind=\"DigNetwork\"} 7\n\
        dig_operator_reconciles_total{kind=\"DigNode\"} 2\n\
        dig_operator_reconcile_errors_total{kind=\"DigNetwork\",reason=\"apply\"} 1\n\
        dig_operator_reconcile_errors_total{kind=\"DigNetwork\",reason=\"read\"} 2\n\
        dig_operator_reconcile_duration_seconds_sum{kind=\"DigNetwork\"} 0.7\n\
        dig_operator_reconcile_duration_seconds_count{kind=\"DigNetwork\"} 7\n\
        dig_operator_reconcile_duration_seconds_bucket{le=\"0.05\",kind=\"DigNetwork\"} 3\n\
        dig_operator_reconcile_duration_seconds_bucket{le=\"0.1\",kind=\"DigNetwork\"} 6\n\
        dig_operator_reconcile_duration_seconds_bucket{le=\"+Inf\",kind=\"DigNetwork\"} 7\n\
        dig_operator_leader 1\n";

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let metrics = Metrics::parse(EXPOSITION);
        assert_eq!(metrics.reconciles(NETWORK_KIND), 7.0);
        assert_eq!(metrics.reconciles(NODE_KIND), 2.0);
        assert_eq!(metrics.reconciles("Other"), 0.0);
        assert_eq!(metrics.reconcile_errors(NETWORK_KIND, None), 3.0);
        assert_eq!(metrics.reconcile_errors(NETWORK_KIND, Some("read")), 2.0);
        assert_eq!(metrics.reconcile_duration(NETWORK_KIND), (7.0, 0.7));
        assert_eq!(metrics.value("dig_operator_leader", &[]), Some(1.0));
        assert_eq!(metrics.value("dig_operator_missing", &[]), None);
    }

    #[test]
    fn histogram_quantiles_are_bucket_bounds() {
        let metrics = Metrics::parse(EXPOSITION);
        assert_eq!(
            metrics.reconcile_duration_bucket_bound(NETWORK_KIND, 0.4),
            Some(0.05)
        );
        assert_eq!(
            metrics.reconcile_duration_bucket_bound(NETWORK_KIND, 0.5),
            Some(0.1)
        );
        assert_eq!(
            metrics.reconcile_duration_bucket_bound(NETWORK_KIND, 0.99),
            Some(f64::INFINITY)
        );
    }

    #[test]
    fn memory_of_this_process_is_read() {
        let memory = Memory::of_pid(std::process::id()).expect("own /proc status");
        assert!(memory.resident_kib > 0);
        assert!(memory.peak_resident_kib >= memory.resident_kib);
    }
}
