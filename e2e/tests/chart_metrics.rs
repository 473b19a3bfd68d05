//! Every series the chart's Grafana dashboards and alerts query is one the binaries really
//! export: a real dig-bootstrap and real dig-sidecar nodes are started on loopback and their
//! `/metrics` read. The operator's series are checked against the real operator in
//! `chart_cluster.rs` (it needs an API server).

mod chart_support;

use std::collections::BTreeSet;
use std::time::Duration;

use chart_support::{
    Helm, SeriesCheck, alert_expressions, check_series, dashboard_expressions,
    exposed_series_names, promql_series_names,
};
use dig_e2e::network::LocalNetwork;

/// Series Prometheus makes itself for every target, not exported by any binary.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

#[test]
fn promql_names_are_series_not_functions_labels_or_durations() {
    let names = promql_series_names(
        r#"histogram_quantile(0.95, sum by (le, route) (rate(dig_bootstrap_http_request_duration_seconds_bucket{namespace="$namespace", job=~".+-bootstrap"}[$__rate_interval])))
           and on (namespace) count(dig_sync_stores < scalar(max(dig_sync_stores))) or vector(0) > 1e3 unless absent(up{job="x"} == 1)"#,
    );
    let expected: BTreeSet<String> = [
        "dig_bootstrap_http_request_duration_seconds_bucket",
        "dig_sync_stores",
        "up",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(names, expected);
}

#[test]
fn exposed_names_follow_prometheus_client_suffixes() {
    let text = "# HELP a Things.\n# TYPE a counter\n# TYPE h histogram\n# TYPE g gauge\nb_total{x=\"1\"} 2\n# EOF\n";
    let names = exposed_series_names(text);
    for name in ["a_total", "h_bucket", "h_sum", "h_count", "g", "b_total"] {
        assert!(names.contains(name), "{name} in {names:?}");
    }
    assert!(!names.contains("a"), "a counter's samples end in _total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_query_series_the_data_plane_exports() {
    let root = std::env::temp_dir().join(format!("dig-chart-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let network = LocalNetwork::start(&root, "chart-metrics", 2)
        .await
        .expect("starting dig-bootstrap and two dig-sidecar nodes");
    // prometheus-client writes a labelled family only once it has a child: make the nodes
    // connect and replicate one store, so the transfer families are filled in.
    network
        .wait_fully_connected(Duration::from_secs(60))
        .await
        .expect("the two nodes connect");
    let store: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(
        network.nodes[0].spec.data_dir.join("chart-metrics.dig"),
        &store,
    )
    .expect("writing a store into node-0");
    let replica = network.nodes[1].spec.data_dir.join("chart-metrics.dig");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read(&replica).ok().as_deref() != Some(&store[..]) {
        assert!(
            std::time::Instant::now() < deadline,
            "node-1 did not receive the store within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let http = network.bootstrap.http().expect("bootstrap client");
    let bootstrap_text = http
        .get(network.bootstrap.url("/metrics"))
        .send()
        .await
        .expect("GET bootstrap /metrics")
        .text()
        .await
        .expect("bootstrap /metrics body");
    let mut exported = exposed_series_names(&bootstrap_text);
    let mut node_texts = String::new();
    for node in &network.nodes {
        let text = node.metrics().await.expect("node /metrics");
        exported.extend(exposed_series_names(&text));
        node_texts.push_str(&text);
    }
    // The dashboards filter on these label values.
    for label in [r#"direction="Received""#, r#"direction="Sent""#] {
        assert!(
            node_texts.contains(label),
            "no {label} in the nodes' /metrics"
        );
    }
    assert!(exported.contains("dig_bootstrap_peers"), "{bootstrap_text}");
    assert!(
        exported.contains("dig_sync_transfer_bytes_total"),
        "{exported:?}"
    );

    let mut queries = dashboard_expressions();
    assert!(queries.len() > 30, "the dashboards hold their queries");
    match Helm::or_skip("dashboards_and_alerts_query_series_the_data_plane_exports (alerts)") {
        Some(helm) => queries.extend(alert_expressions(&helm)),
        None => eprintln!("alert expressions not checked: helm is not built"),
    }

    // The operator's series: chart_cluster.rs.
    let SeriesCheck {
        checked,
        unobserved,
        missing,
    } = check_series(&queries, &exported, |name| {
        !name.starts_with("dig_operator_") && !PROMETHEUS_SERIES.contains(&name)
    });
    assert!(
        missing.is_empty(),
        "series queried by the chart but exported by neither dig-bootstrap nor dig-sidecar:\n{}\nexported: {exported:?}",
        missing.join("\n")
    );
    eprintln!(
        "{} data-plane series seen on /metrics: {checked:?}; registered but not observed in this run: {unobserved:?}",
        checked.len()
    );
    drop(network);
    let _ = std::fs::remove_dir_all(&root);
}
