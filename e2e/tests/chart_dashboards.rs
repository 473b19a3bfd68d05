//! The chart's three Grafana dashboards show data: a real Prometheus scrapes a real DIG network on
//! loopback (dig-bootstrap and three dig-sidecar nodes) and the real operator (run against the
//! test control plane, with its webhook), with the relabelling the Prometheus operator makes of
//! the monitors the operator created for the network and of the chart's own ServiceMonitor (see
//! `dig_e2e::prometheus`). Then every variable is filled in from Prometheus as Grafana would
//! (`label_values`, with its regex), and every panel's queries run over the test's time range as
//! Grafana's range queries: each panel must return a series with a number (not only NaN) for
//! every value of its variables, each query must return one for some value, and every label a
//! legend names must be on the series. A panel that would be empty fails the test.
//!
//! The scrape interval is 1 s (the monitors say 30 s) and `$__rate_interval` is 10 s, so the test
//! needs a minute of data rather than an hour.

mod chart_support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use chart_support::{Helm, NAMESPACE, Rendered, chart_dir};
use dig_e2e::{
    cluster::{TestCluster, cluster_required},
    network::{LocalNetwork, SidecarNode},
    operator::{dig_manifest, install_crds, install_prometheus_operator_crd},
    process::{ProcessSpec, free_loopback_addr, target_dir, wait_for_http_ok},
    prometheus::{PodTarget, PrometheusServer, scrape_configs},
    wait::eventually,
};
use serde_json::{Value, json};

const TEST: &str = "every_dashboard_panel_shows_data_from_a_real_network";
/// Namespace of the network in the test cluster.
const NETWORK_NAMESPACE: &str = "dig";
const NETWORK: &str = "demo";
const RATE_INTERVAL: &str = "10s";
const STEP_SECONDS: f64 = 2.0;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn kubectl_json(cluster: &TestCluster, args: &[&str]) -> Value {
    let output = cluster
        .kubectl(args.iter().copied().chain(["-o", "json"]))
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"));
    serde_json::from_str(&output).unwrap_or_else(|e| panic!("kubectl {args:?} JSON: {e}"))
}

fn apply(cluster: &TestCluster, manifest: &Value) {
    cluster
        .kubectl_with_stdin(["apply", "-f", "-"], &manifest.to_string())
        .unwrap_or_else(|e| panic!("applying {manifest}: {e}"));
}

/// A store file of `size` bytes of `seed`-dependent content.
fn write_store(node: &SidecarNode, name: &str, size: usize, seed: u8) {
    let data: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32) as u8)
        .collect();
    std::fs::write(node.spec.data_dir.join(format!("{name}.dig")), data).expect("writing a store");
}

/// `label_values(selector, label)` of a variable definition.
fn label_values_query(definition: &str) -> Option<(String, String)> {
    let args = definition
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = args.rsplit_once(',')?;
    Some((selector.trim().to_string(), label.trim().to_string()))
}

/// Grafana's variable regex: `/^(.+)-node$/` keeps the first capture group (or the whole match).
fn apply_variable_regex(regex: &str, value: &str) -> Option<String> {
    let Some(pattern) = regex.strip_prefix('/').and_then(|r| r.strip_suffix('/')) else {
        return Some(value.to_string());
    };
    // The dashboards use one form: a prefix group followed by a literal suffix.
    let inner = pattern
        .strip_prefix("^(.+)")
        .and_then(|rest| rest.strip_suffix('$'))
        .unwrap_or_else(|| panic!("variable regex {regex} is not of the form /^(.+)suffix$/"));
    value
        .strip_suffix(inner)
        .filter(|head| !head.is_empty())
        .map(str::to_string)
}

fn substitute(expr: &str, variables: &BTreeMap<String, String>) -> String {
    let mut out = expr.replace("$__rate_interval", RATE_INTERVAL);
    // Longest names first, so `$pod` never eats into a longer name.
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    for name in names {
        out = out.replace(&format!("${name}"), &variables[name]);
    }
    out
}

/// The label names a legend format uses (`{{pod}} {{direction}}`).
fn legend_labels(format: &str) -> Vec<String> {
    format
        .split("{{")
        .skip(1)
        .filter_map(|rest| {
            rest.split_once("}}")
                .map(|(name, _)| name.trim().to_string())
        })
        .collect()
}

/// The operator process of the test, as the chart runs it: the pod template of the chart's
/// Deployment is the pod the process stands for.
fn operator_pod(rendered: &Rendered) -> Value {
    let deployment = rendered.get("Deployment", "dig-operator");
    json!({
        "metadata": {"name": "dig-operator-local", "namespace": NAMESPACE,
                     "labels": deployment["spec"]["template"]["metadata"]["labels"]},
        "spec": deployment["spec"]["template"]["spec"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_shows_data_from_a_real_network() {
    let Some(prometheus_binary) = PrometheusServer::binary().or_else(|| {
        let reason = "prometheus is not installed (Debian package prometheus)";
        assert!(
            !cluster_required(),
            "{TEST}: DIG_E2E_REQUIRE_CLUSTER=1 but {reason}"
        );
        eprintln!("SKIPPED {TEST}: {reason}");
        None
    }) else {
        return;
    };
    let Some(helm) = Helm::or_skip(TEST) else {
        return;
    };
    let Some(cluster) = TestCluster::start_or_skip("dashboards") else {
        return;
    };
    install_crds(&cluster).expect("install the CRDs");
    for (plural, kind) in [
        ("servicemonitors", "ServiceMonitor"),
        ("podmonitors", "PodMonitor"),
    ] {
        install_prometheus_operator_crd(&cluster, plural, kind).expect("monitoring CRD");
    }
    for namespace in [NETWORK_NAMESPACE, NAMESPACE] {
        cluster
            .kubectl(["create", "namespace", namespace])
            .expect("create namespace");
    }

    // The operator, with leader election and its webhook, as the chart runs it.
    let metrics = free_loopback_addr().expect("port");
    let webhook = free_loopback_addr().expect("port");
    let _operator = ProcessSpec::workspace_binary("dig-operator")
        .expect("dig-operator is built (cargo build --workspace --bins)")
        .name("dig-operator")
        .env("KUBECONFIG", cluster.kubeconfig_path().to_string_lossy())
        .env("RUST_LOG", "info,kube=warn")
        .args([
            format!("--namespace={NETWORK_NAMESPACE}"),
            format!("--metrics-listen={metrics}"),
            format!("--webhook-listen={webhook}"),
            format!("--webhook-namespace={NAMESPACE}"),
            "--webhook-extra-san=127.0.0.1".to_string(),
            "--leader-election".to_string(),
            format!("--lease-namespace={NAMESPACE}"),
            "--identity=dig-operator-local".to_string(),
        ])
        .spawn()
        .expect("start dig-operator");
    wait_for_http_ok(
        &format!("http://{metrics}/healthz"),
        Duration::from_secs(60),
    )
    .await
    .expect("the operator serves /healthz");

    apply(
        &cluster,
        &dig_manifest(
            "DigNetwork",
            NETWORK_NAMESPACE,
            NETWORK,
            json!({"bootstrap": {"replicas": 1}, "nodes": {"replicas": 2},
                   "monitoring": {"serviceMonitor": true}}),
        ),
    );
    apply(
        &cluster,
        &dig_manifest(
            "DigNode",
            NETWORK_NAMESPACE,
            "edge",
            json!({"networkRef": {"name": NETWORK}, "storage": {"size": "1Gi"}}),
        ),
    );

    // The pods the local processes stand for, and the monitors the operator made.
    let pods = eventually("the network's pods exist", Duration::from_secs(120), || {
        let pods = kubectl_json(&cluster, &["get", "pods", "-n", NETWORK_NAMESPACE]);
        async move {
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let named = |name: &str| {
                items
                    .iter()
                    .find(|p| p["metadata"]["name"] == name)
                    .cloned()
            };
            let bootstrap = items
                .iter()
                .find(|p| {
                    p["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("demo-bootstrap-"))
                })
                .cloned();
            match (
                bootstrap,
                named("demo-node-0"),
                named("demo-node-1"),
                named("dignode-edge-0"),
            ) {
                (Some(b), Some(n0), Some(n1), Some(e)) => Ok([b, n0, n1, e]),
                _ => Err(format!("{} pods so far", items.len())),
            }
        }
    })
    .await;
    let monitors = eventually(
        "the operator creates the monitors",
        Duration::from_secs(60),
        || {
            let list = kubectl_json(
                &cluster,
                &[
                    "get",
                    "servicemonitors,podmonitors",
                    "-n",
                    NETWORK_NAMESPACE,
                ],
            );
            async move {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                if items.len() == 4 {
                    Ok(items)
                } else {
                    Err(format!("{} monitors", items.len()))
                }
            }
        },
    )
    .await;
    let services = kubectl_json(&cluster, &["get", "services", "-n", NETWORK_NAMESPACE]);
    let services = services["items"].as_array().cloned().unwrap_or_default();

    // The data plane: node-2 refuses stores above 64 KiB, so downloads fail on it.
    let root = target_dir().join(format!("chart-dashboards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut network = LocalNetwork::start(&root, NETWORK, 0)
        .await
        .expect("start dig-bootstrap");
    for index in 0..3 {
        let mut spec = network.node_spec(index);
        if index == 2 {
            spec = spec.arg("--max-store-size").arg("64KiB");
        }
        network
            .nodes
            .push(SidecarNode::start(spec).await.expect("start a node"));
    }
    network
        .wait_fully_connected(Duration::from_secs(90))
        .await
        .expect("the three nodes connect");

    let rendered = helm.template(&["--api-versions", "monitoring.coreos.com/v1"]);
    let operator_services: Vec<Value> = rendered.of_kind("Service").into_iter().cloned().collect();
    let [bootstrap_pod, node0_pod, node1_pod, edge_pod] = &pods;
    let targets_network = vec![
        PodTarget::from_objects(network.bootstrap.address, bootstrap_pod, &services),
        PodTarget::from_objects(network.nodes[0].api, node0_pod, &services),
        PodTarget::from_objects(network.nodes[1].api, node1_pod, &services),
        PodTarget::from_objects(network.nodes[2].api, edge_pod, &services),
    ];
    let targets_operator = vec![PodTarget::from_objects(
        metrics,
        &operator_pod(&rendered),
        &operator_services,
    )];
    let mut jobs = Vec::new();
    for monitor in &monitors {
        jobs.extend(scrape_configs(monitor, &targets_network, "1s"));
    }
    let chart_monitor = rendered.get("ServiceMonitor", "dig-operator");
    jobs.extend(scrape_configs(chart_monitor, &targets_operator, "1s"));
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": jobs,
    });
    let prometheus = PrometheusServer::start(&prometheus_binary, &root.join("prometheus"), &config)
        .await
        .expect("start prometheus");

    // Every process is scraped once, under the job the dashboards select, and answers.
    let expected_jobs: BTreeMap<String, String> = [
        (network.bootstrap.address.to_string(), "demo-bootstrap"),
        (network.nodes[0].api.to_string(), "demo-node"),
        (network.nodes[1].api.to_string(), "demo-node"),
        (network.nodes[2].api.to_string(), "demo-node"),
        (metrics.to_string(), "dig-operator-metrics"),
    ]
    .into_iter()
    .map(|(address, job)| (address, job.to_string()))
    .collect();
    let expected_count = expected_jobs.len();
    let targets = eventually("every target is up", Duration::from_secs(60), || {
        let prometheus = &prometheus;
        async move {
            let active = prometheus
                .active_targets()
                .await
                .map_err(|e| e.to_string())?;
            let summary: Vec<String> = active
                .iter()
                .map(|t| {
                    format!(
                        "{} {} {}",
                        t["labels"]["instance"], t["labels"]["job"], t["health"]
                    )
                })
                .collect();
            if active.len() == expected_count && active.iter().all(|t| t["health"] == "up") {
                Ok(active)
            } else {
                Err(summary.join("; "))
            }
        }
    })
    .await;
    let mut scraped = BTreeMap::new();
    for target in &targets {
        let labels = &target["labels"];
        let instance = labels["instance"].as_str().unwrap_or_default().to_string();
        assert!(
            scraped
                .insert(
                    instance.clone(),
                    labels["job"].as_str().unwrap_or_default().to_string()
                )
                .is_none(),
            "{instance} is scraped twice: {targets:#?}"
        );
        assert!(
            labels["pod"].is_string() && labels["namespace"].is_string(),
            "{labels}"
        );
    }
    assert_eq!(scraped, expected_jobs, "targets by job");
    let start = unix_now();

    // What happens while Prometheus watches: stores written on every node (transfers, and failed
    // downloads on node-2), admission reviews, reconciles and a reconcile error.
    write_store(&network.nodes[0], "from-node-0", 8 * 1024, 0);
    write_store(&network.nodes[0], "large-from-node-0", 256 * 1024, 1);
    write_store(&network.nodes[1], "from-node-1", 8 * 1024, 2);
    write_store(&network.nodes[2], "from-node-2", 8 * 1024, 3);
    let https = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "7d3c1b52-0000-4000-8000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NETWORK_NAMESPACE, "operation": "CREATE",
            "userInfo": {"username": "dashboards-test"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "app", "namespace": NETWORK_NAMESPACE,
                             "labels": {"dig.net/inject": NETWORK}, "annotations": {"dig.net/volume": "data"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}],
                         "volumes": [{"name": "data", "emptyDir": {}}]}}
        }
    });
    eventually(
        "the webhook answers a review",
        Duration::from_secs(60),
        || {
            let https = https.clone();
            let review = review.clone();
            async move {
                let answer: Value = https
                    .post(format!("https://127.0.0.1:{}/mutate", webhook.port()))
                    .json(&review)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                if answer["response"]["allowed"] == true {
                    Ok(())
                } else {
                    Err(answer.to_string())
                }
            }
        },
    )
    .await;
    apply(
        &cluster,
        &dig_manifest(
            "DigNetwork",
            NETWORK_NAMESPACE,
            "broken",
            json!({"privateNetwork": {"pskSecretRef": {"name": "missing-psk"}}}),
        ),
    );
    cluster
        .kubectl([
            "annotate",
            "dignetwork",
            NETWORK,
            "-n",
            NETWORK_NAMESPACE,
            "test/touch=1",
        ])
        .expect("touch the DigNetwork");

    // node-0 and node-1 receive every store; node-2 all but the one above its limit.
    let deadline = Instant::now() + Duration::from_secs(90);
    for (index, node) in network.nodes.iter().enumerate() {
        for name in [
            "from-node-0",
            "large-from-node-0",
            "from-node-1",
            "from-node-2",
        ] {
            if index == 2 && name.starts_with("large") {
                continue;
            }
            while !node.spec.data_dir.join(format!("{name}.dig")).exists() {
                assert!(
                    Instant::now() < deadline,
                    "{name} did not reach {}",
                    node.spec.name
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // A few rate windows of data after the events.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let end = unix_now();

    let mut failures = Vec::new();
    let mut report = Vec::new();
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("dashboards"))
        .expect("dashboards")
        .flatten()
        .map(|entry| entry.path())
        .collect();
    dashboards.sort();
    let expected_values: BTreeMap<&str, BTreeSet<String>> = [
        ("namespace", vec![NETWORK_NAMESPACE.to_string()]),
        ("network", vec![NETWORK.to_string()]),
        (
            "pod",
            pods[1..]
                .iter()
                .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
                .collect(),
        ),
        ("job", vec!["dig-operator-metrics".to_string()]),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.into_iter().collect()))
    .collect();
    for path in dashboards {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("dashboard JSON");
        // Fill the variables in order; a variable with several values multiplies the cases.
        let mut cases: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
        for variable in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = variable["name"].as_str().unwrap_or_default().to_string();
            let Some((selector, label)) =
                variable["definition"].as_str().and_then(label_values_query)
            else {
                continue;
            };
            let mut next = Vec::new();
            for case in &cases {
                let selector = substitute(&selector, case);
                let series = prometheus
                    .series(&selector, start, end)
                    .await
                    .expect("series");
                let values: BTreeSet<String> = series
                    .iter()
                    .filter_map(|labels| labels.get(&label))
                    .filter_map(|value| {
                        apply_variable_regex(variable["regex"].as_str().unwrap_or(""), value)
                    })
                    .collect();
                let expected = &expected_values[name.as_str()];
                if &values != expected {
                    failures.push(format!(
                        "{file}: variable ${name} = label_values({selector}, {label}) gives {values:?}, expected {expected:?}"
                    ));
                }
                for value in values {
                    let mut case = case.clone();
                    case.insert(name.clone(), value);
                    next.push(case);
                }
            }
            cases = next;
        }
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                continue;
            }
            let title = panel["title"].as_str().unwrap_or_default();
            let mut target_ever_filled = vec![false; targets.len()];
            for case in &cases {
                let mut panel_filled = false;
                let mut shown = Vec::new();
                for (index, target) in targets.iter().enumerate() {
                    let expr = substitute(target["expr"].as_str().unwrap_or_default(), case);
                    let series = match prometheus
                        .query_range(&expr, start, end, STEP_SECONDS)
                        .await
                    {
                        Ok(series) => series,
                        Err(error) => {
                            failures.push(format!("{file} \"{title}\": {expr}: {error:#}"));
                            continue;
                        }
                    };
                    let with_numbers: Vec<_> = series
                        .iter()
                        .filter(|s| s.values.iter().any(|v| v.is_finite()))
                        .collect();
                    if !with_numbers.is_empty() {
                        panel_filled = true;
                        target_ever_filled[index] = true;
                    }
                    let legend = target["legendFormat"].as_str().unwrap_or_default();
                    for label in legend_labels(legend) {
                        if let Some(missing) =
                            series.iter().find(|s| !s.labels.contains_key(&label))
                        {
                            failures.push(format!(
                                "{file} \"{title}\": legend {legend:?} names {label}, absent from {:?} ({expr})",
                                missing.labels
                            ));
                        }
                    }
                    for s in &with_numbers {
                        let last = s
                            .values
                            .iter()
                            .rev()
                            .find(|v| v.is_finite())
                            .copied()
                            .unwrap_or(f64::NAN);
                        shown.push(format!("{:?}={last}", s.labels));
                    }
                }
                if !panel_filled {
                    failures.push(format!(
                        "{file} \"{title}\" is empty for {case:?}: {:?}",
                        targets
                            .iter()
                            .map(|t| substitute(t["expr"].as_str().unwrap_or(""), case))
                            .collect::<Vec<_>>()
                    ));
                }
                report.push(format!(
                    "{file} | {title} | {case:?} | {}",
                    shown.join(", ")
                ));
            }
            for (index, filled) in target_ever_filled.iter().enumerate() {
                if !filled {
                    failures.push(format!(
                        "{file} \"{title}\": query {} returns no number for any variable value",
                        targets[index]["expr"]
                    ));
                }
            }
        }
    }
    let artifact = target_dir().join("observe/dashboards-data.txt");
    std::fs::create_dir_all(artifact.parent().unwrap()).unwrap();
    std::fs::write(&artifact, report.join("\n")).expect("writing the panel report");
    eprintln!("panel data: {}", artifact.display());
    assert!(
        failures.is_empty(),
        "{} dashboard problems:\n{}\nprometheus output:\n{}",
        failures.len(),
        failures.join("\n"),
        prometheus.output()
    );
    drop(prometheus);
    drop(network);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn variable_regexes_keep_the_network_name() {
    assert_eq!(
        apply_variable_regex("/^(.+)-node$/", "demo-node").as_deref(),
        Some("demo")
    );
    assert_eq!(
        apply_variable_regex("/^(.+)-node$/", "demo-bootstrap"),
        None
    );
    assert_eq!(apply_variable_regex("", "dig").as_deref(), Some("dig"));
    assert_eq!(
        label_values_query("label_values(dig_sync_stores{namespace=\"$namespace\"}, job)"),
        Some((
            "dig_sync_stores{namespace=\"$namespace\"}".into(),
            "job".into()
        ))
    );
    assert_eq!(
        legend_labels("p50 {{kind}} {{ reason }}"),
        ["kind", "reason"]
    );
    let variables = BTreeMap::from([("pod".to_string(), "demo-node-0".to_string())]);
    assert_eq!(
        substitute("rate(x{pod=\"$pod\"}[$__rate_interval])", &variables),
        "rate(x{pod=\"demo-node-0\"}[10s])"
    );
}
