//! A real Prometheus (Debian package `prometheus`) for the dashboard tests, and the scrape
//! configuration the Prometheus operator would make of ServiceMonitors and PodMonitors.
//!
//! Kubernetes service discovery cannot reach processes on loopback, so each process stands in for
//! a pod of the test cluster: a static target carries the `__meta_kubernetes_*` labels discovery
//! would give that pod (its namespace, name, labels and ports, and those of every Service selecting
//! it), and Prometheus itself applies the relabelling the Prometheus operator generates for each
//! monitor (selector and port `keep`s, `namespace`/`pod`/`service`/`container`/`endpoint`/`job`)
//! followed by the monitor's own `relabelings`. A pod that a monitor would not select is dropped
//! by the same rules, so a monitor selecting the wrong pods shows up as missing or doubled series.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::process::{ProcessSpec, TestProcess, free_loopback_addr};

/// A pod as Kubernetes service discovery sees it, and the loopback address of the process
/// standing in for it.
#[derive(Clone, Debug)]
pub struct PodTarget {
    pub address: SocketAddr,
    pub namespace: String,
    pub pod: String,
    pub labels: BTreeMap<String, String>,
    /// (container name, port name, port number) of each named container port.
    pub ports: Vec<(String, String, i64)>,
    /// Services of the namespace whose selector matches the pod: (name, labels, ports as
    /// (port name, target port)).
    pub services: Vec<ServiceOf>,
}

#[derive(Clone, Debug)]
pub struct ServiceOf {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// (port name, target port: a number or a container port name).
    pub ports: Vec<(String, Value)>,
}

impl PodTarget {
    /// The pod `pod` object and the Service objects of its namespace (`kubectl get -o json`
    /// items), with `address` standing in for it.
    pub fn from_objects(address: SocketAddr, pod: &Value, services: &[Value]) -> Self {
        let labels = string_map(&pod["metadata"]["labels"]);
        let mut ports = Vec::new();
        for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
            for port in container["ports"].as_array().into_iter().flatten() {
                if let Some(name) = port["name"].as_str() {
                    ports.push((
                        container["name"].as_str().unwrap_or_default().to_string(),
                        name.to_string(),
                        port["containerPort"].as_i64().unwrap_or(0),
                    ));
                }
            }
        }
        let selecting = services
            .iter()
            .filter(|service| {
                let selector = string_map(&service["spec"]["selector"]);
                !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .map(|service| ServiceOf {
                name: service["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                labels: string_map(&service["metadata"]["labels"]),
                ports: service["spec"]["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|port| {
                        (
                            port["name"].as_str().unwrap_or_default().to_string(),
                            port["targetPort"].clone(),
                        )
                    })
                    .collect(),
            })
            .collect();
        Self {
            address,
            namespace: pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            pod: pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            labels,
            ports,
            services: selecting,
        }
    }

    fn pod_meta(&self) -> BTreeMap<String, String> {
        let mut meta = BTreeMap::new();
        meta.insert("__meta_kubernetes_namespace".into(), self.namespace.clone());
        meta.insert("__meta_kubernetes_pod_name".into(), self.pod.clone());
        for (key, value) in &self.labels {
            let name = sanitize(key);
            meta.insert(format!("__meta_kubernetes_pod_label_{name}"), value.clone());
            meta.insert(
                format!("__meta_kubernetes_pod_labelpresent_{name}"),
                "true".into(),
            );
        }
        meta
    }

    /// The targets discovery gives for this pod: one per named container port (role `pod`) and
    /// one per port of each selecting Service that leads to one of them (role `endpoints`).
    pub fn discovered(&self) -> Vec<BTreeMap<String, String>> {
        let mut out = Vec::new();
        for (container, port_name, _) in &self.ports {
            let mut meta = self.pod_meta();
            meta.insert(
                "__meta_kubernetes_pod_container_name".into(),
                container.clone(),
            );
            meta.insert(
                "__meta_kubernetes_pod_container_port_name".into(),
                port_name.clone(),
            );
            meta.insert("__meta_kubernetes_role".into(), "pod".into());
            out.push(meta);
        }
        for service in &self.services {
            for (service_port, target) in &service.ports {
                let Some((container, _, _)) = self.ports.iter().find(|(_, name, number)| {
                    target.as_str() == Some(name.as_str()) || target.as_i64() == Some(*number)
                }) else {
                    continue;
                };
                let mut meta = self.pod_meta();
                meta.insert("__meta_kubernetes_role".into(), "endpoints".into());
                meta.insert(
                    "__meta_kubernetes_pod_container_name".into(),
                    container.clone(),
                );
                meta.insert(
                    "__meta_kubernetes_service_name".into(),
                    service.name.clone(),
                );
                for (key, value) in &service.labels {
                    let name = sanitize(key);
                    meta.insert(
                        format!("__meta_kubernetes_service_label_{name}"),
                        value.clone(),
                    );
                    meta.insert(
                        format!("__meta_kubernetes_service_labelpresent_{name}"),
                        "true".into(),
                    );
                }
                meta.insert(
                    "__meta_kubernetes_endpoint_port_name".into(),
                    service_port.clone(),
                );
                meta.insert(
                    "__meta_kubernetes_endpoint_address_target_kind".into(),
                    "Pod".into(),
                );
                meta.insert(
                    "__meta_kubernetes_endpoint_address_target_name".into(),
                    self.pod.clone(),
                );
                out.push(meta);
            }
        }
        out
    }
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Kubernetes discovery's label-name rule: anything but letters, digits and `_` becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn keep(source_labels: &[String], regex: &str) -> Value {
    json!({"action": "keep", "source_labels": source_labels, "regex": regex})
}

fn copy(source: &str, target: &str) -> Value {
    json!({"action": "replace", "source_labels": [source], "target_label": target})
}

/// A monitor's `relabelings` entry in Prometheus' own spelling.
fn translate_relabeling(relabeling: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (key, value) in relabeling.as_object().into_iter().flatten() {
        let key = match key.as_str() {
            "sourceLabels" => "source_labels",
            "targetLabel" => "target_label",
            other => other,
        };
        let value = match (key, value.as_str()) {
            ("action", Some(action)) => json!(action.to_lowercase()),
            _ => value.clone(),
        };
        out.insert(key.to_string(), value);
    }
    Value::Object(out)
}

/// The `keep`s of a label selector (`matchLabels` only) on discovery labels with `prefix`.
fn selector_keeps(monitor: &Value, prefix: &str) -> Vec<Value> {
    string_map(&monitor["spec"]["selector"]["matchLabels"])
        .iter()
        .map(|(key, value)| {
            let name = sanitize(key);
            keep(
                &[
                    format!("__meta_kubernetes_{prefix}_label_{name}"),
                    format!("__meta_kubernetes_{prefix}_labelpresent_{name}"),
                ],
                &format!("({});true", regex_escape(value)),
            )
        })
        .collect()
}

fn namespace_keep(monitor: &Value) -> Option<Value> {
    let names: Vec<String> = monitor["spec"]["namespaceSelector"]["matchNames"]
        .as_array()?
        .iter()
        .filter_map(|n| n.as_str().map(regex_escape))
        .collect();
    Some(keep(
        &["__meta_kubernetes_namespace".into()],
        &names.join("|"),
    ))
}

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The scrape jobs the Prometheus operator makes of a ServiceMonitor or PodMonitor object
/// (`kind` decides), one per endpoint, over `targets`, scraped every `interval`.
pub fn scrape_configs(monitor: &Value, targets: &[PodTarget], interval: &str) -> Vec<Value> {
    let kind = monitor["kind"].as_str().unwrap_or_default();
    let namespace = monitor["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let name = monitor["metadata"]["name"].as_str().unwrap_or_default();
    let (role, endpoints_key, prefix, port_label) = match kind {
        "ServiceMonitor" => (
            "endpoints",
            "endpoints",
            "service",
            "__meta_kubernetes_endpoint_port_name",
        ),
        "PodMonitor" => (
            "pod",
            "podMetricsEndpoints",
            "pod",
            "__meta_kubernetes_pod_container_port_name",
        ),
        other => panic!("not a monitor: {other}"),
    };
    let job_prefix = if kind == "ServiceMonitor" {
        "serviceMonitor"
    } else {
        "podMonitor"
    };
    let static_configs: Vec<Value> = targets
        .iter()
        .flat_map(|target| {
            target
                .discovered()
                .into_iter()
                .map(|meta| json!({"targets": [target.address.to_string()], "labels": meta}))
        })
        .collect();
    let mut jobs = Vec::new();
    for (index, endpoint) in monitor["spec"][endpoints_key]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let port = endpoint["port"].as_str().unwrap_or_default();
        let mut relabel = vec![keep(&["__meta_kubernetes_role".into()], role)];
        relabel.extend(namespace_keep(monitor));
        relabel.extend(selector_keeps(monitor, prefix));
        relabel.push(keep(&[port_label.into()], &regex_escape(port)));
        if kind == "ServiceMonitor" {
            relabel.push(json!({
                "action": "replace",
                "source_labels": ["__meta_kubernetes_endpoint_address_target_kind", "__meta_kubernetes_endpoint_address_target_name"],
                "separator": ";", "regex": "Pod;(.*)", "replacement": "${1}", "target_label": "pod"
            }));
        }
        relabel.push(copy("__meta_kubernetes_namespace", "namespace"));
        if kind == "ServiceMonitor" {
            relabel.push(copy("__meta_kubernetes_service_name", "service"));
        }
        relabel.push(copy("__meta_kubernetes_pod_name", "pod"));
        relabel.push(copy("__meta_kubernetes_pod_container_name", "container"));
        relabel.push(if kind == "ServiceMonitor" {
            // The job is the Service's name (no jobLabel).
            copy("__meta_kubernetes_service_name", "job")
        } else {
            json!({"action": "replace", "target_label": "job", "replacement": format!("{namespace}/{name}")})
        });
        relabel.push(json!({"action": "replace", "target_label": "endpoint", "replacement": port}));
        relabel.extend(
            endpoint["relabelings"]
                .as_array()
                .into_iter()
                .flatten()
                .map(translate_relabeling),
        );
        jobs.push(json!({
            "job_name": format!("{job_prefix}/{namespace}/{name}/{index}"),
            "honor_labels": endpoint["honorLabels"].as_bool().unwrap_or(false),
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "metrics_path": endpoint["path"].as_str().unwrap_or("/metrics"),
            "static_configs": static_configs,
            "relabel_configs": relabel,
        }));
    }
    jobs
}

/// A running Prometheus on loopback, killed by PID when dropped.
pub struct PrometheusServer {
    process: TestProcess,
    pub url: String,
    http: reqwest::Client,
}

/// One series of a range query.
#[derive(Clone, Debug)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub values: Vec<f64>,
}

impl PrometheusServer {
    /// The `prometheus` executable on the `PATH`.
    pub fn binary() -> Option<PathBuf> {
        crate::browser::find_program("prometheus")
    }

    /// Starts `binary` with `config` (the JSON form of prometheus.yml) and its data in `dir`,
    /// and waits until it is ready.
    pub async fn start(binary: &Path, dir: &Path, config: &Value) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let config_path = dir.join("prometheus.yml");
        // JSON is YAML: Prometheus reads it as it is.
        std::fs::write(&config_path, serde_json::to_vec_pretty(config)?)?;
        let listen = free_loopback_addr()?;
        let process = ProcessSpec::new(binary)
            .name("prometheus")
            .args([
                format!("--config.file={}", config_path.display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address={listen}"),
                "--storage.tsdb.retention.time=1h".into(),
                "--log.level=warn".into(),
            ])
            .spawn()?;
        let server = Self {
            process,
            url: format!("http://{listen}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = server
                .http
                .get(format!("{}/-/ready", server.url))
                .send()
                .await
                && response.status().is_success()
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "prometheus did not get ready within 60 s:\n{}",
                    server.process.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn output(&self) -> String {
        self.process.output()
    }

    async fn api(&self, path: &str, params: &[(&str, String)]) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.url);
        let response = self
            .http
            .get(&url)
            .query(params)
            .send()
            .await
            .with_context(|| format!("GET {url} {params:?}"))?;
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("GET {url}: not JSON"))?;
        if body["status"] != "success" {
            bail!("GET {url} {params:?}: {}", body);
        }
        Ok(body["data"].clone())
    }

    /// `/api/v1/targets`: the active targets with their labels and health.
    pub async fn active_targets(&self) -> anyhow::Result<Vec<Value>> {
        let data = self.api("/api/v1/targets", &[]).await?;
        Ok(data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// A range query over `[start, end]` (unix seconds) at `step` seconds, as a Grafana panel runs.
    pub async fn query_range(
        &self,
        expr: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> anyhow::Result<Vec<Series>> {
        let data = self
            .api(
                "/api/v1/query_range",
                &[
                    ("query", expr.to_string()),
                    ("start", format!("{start:.3}")),
                    ("end", format!("{end:.3}")),
                    ("step", format!("{step}")),
                ],
            )
            .await?;
        Ok(data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|series| Series {
                labels: string_map(&series["metric"]),
                values: series["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|pair| pair[1].as_str()?.parse().ok())
                    .collect(),
            })
            .collect())
    }

    /// `/api/v1/series`: the label sets of the series `selector` matches in `[start, end]`, as
    /// Grafana's `label_values(selector, label)` reads them.
    pub async fn series(
        &self,
        selector: &str,
        start: f64,
        end: f64,
    ) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
        let data = self
            .api(
                "/api/v1/series",
                &[
                    ("match[]", selector.to_string()),
                    ("start", format!("{start:.3}")),
                    ("end", format!("{end:.3}")),
                ],
            )
            .await?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .map(string_map)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "demo-node-0", "namespace": "dig",
                         "labels": {"app.kubernetes.io/instance": "demo", "app.kubernetes.io/component": "node"}},
            "spec": {"containers": [{"name": "dig-sidecar", "ports": [
                {"name": "api", "containerPort": 8080}, {"name": "p2p", "containerPort": 4001}]}]}
        })
    }

    fn service(name: &str, selector: Value) -> Value {
        json!({"metadata": {"name": name, "labels": {"app.kubernetes.io/component": "node"}},
               "spec": {"selector": selector, "ports": [{"name": "api", "targetPort": "api"}]}})
    }

    #[test]
    fn discovery_gives_a_target_per_named_port_and_per_selecting_service_port() {
        let address = "127.0.0.1:9".parse().unwrap();
        let target = PodTarget::from_objects(
            address,
            &pod(),
            &[
                service("demo-node", json!({"app.kubernetes.io/instance": "demo"})),
                service("other", json!({"app.kubernetes.io/instance": "other"})),
            ],
        );
        let discovered = target.discovered();
        assert_eq!(discovered.len(), 3, "{discovered:#?}");
        let endpoint = discovered
            .iter()
            .find(|meta| meta["__meta_kubernetes_role"] == "endpoints")
            .unwrap();
        assert_eq!(endpoint["__meta_kubernetes_service_name"], "demo-node");
        assert_eq!(
            endpoint["__meta_kubernetes_service_label_app_kubernetes_io_component"],
            "node"
        );
        assert_eq!(
            endpoint["__meta_kubernetes_pod_container_name"],
            "dig-sidecar"
        );
    }

    #[test]
    fn monitors_become_jobs_with_the_operator_rules_and_their_own_relabelings() {
        let monitor = json!({
            "kind": "PodMonitor", "metadata": {"name": "demo-dignodes", "namespace": "dig"},
            "spec": {"selector": {"matchLabels": {"dig.net/network-ref": "demo"}},
                     "namespaceSelector": {"matchNames": ["dig"]},
                     "podMetricsEndpoints": [{"port": "api", "path": "/metrics",
                        "relabelings": [{"action": "replace", "targetLabel": "job", "replacement": "demo-node"}]}]}
        });
        let jobs = scrape_configs(&monitor, &[], "1s");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0]["job_name"], "podMonitor/dig/demo-dignodes/0");
        let rules = jobs[0]["relabel_configs"].as_array().unwrap();
        assert!(rules.contains(&json!({"action": "keep",
            "source_labels": ["__meta_kubernetes_pod_label_dig_net_network_ref", "__meta_kubernetes_pod_labelpresent_dig_net_network_ref"],
            "regex": "(demo);true"})));
        assert_eq!(
            rules.last().unwrap(),
            &json!({"action": "replace", "target_label": "job", "replacement": "demo-node"}),
            "the monitor's own relabelings come last"
        );
    }
}
