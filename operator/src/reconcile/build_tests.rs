//! Fixtures for the build step: one test per feature of the spec.

use k8s_openapi::api::core::v1::{PodSpec, Service};

use super::*;
use crate::{
    crd::DigNetwork,
    reconcile::{
        build_node::validate_node,
        fixtures::{
            bootstrap_container, build_edge_node, build_with, claim_template, dig_node, images,
            network, node_config_hash, node_container, statefulset_container, template,
        },
        validate::{NetworkFacts, PskSecret, validate_network},
    },
};

fn build(spec_yaml: &str) -> NetworkChildren {
    build_with(&network(spec_yaml), NetworkFacts::default())
}

fn pod_spec(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> &PodSpec {
    template.spec.as_ref().unwrap()
}

fn annotations(service: &Service) -> std::collections::BTreeMap<String, String> {
    service.metadata.annotations.clone().unwrap_or_default()
}

fn has_pair(args: &[String], flag: &str, value: &str) -> bool {
    args.windows(2).any(|w| w[0] == flag && w[1] == value)
}

fn node_config(children: &NetworkChildren) -> String {
    children.node_config.data.as_ref().unwrap()[CONFIG_KEY].clone()
}

#[test]
fn defaults() {
    let c = build("{}");
    assert_eq!(
        c.bootstrap_deployment.metadata.name.as_deref(),
        Some("net-bootstrap")
    );
    assert_eq!(
        c.bootstrap_deployment.spec.as_ref().unwrap().replicas,
        Some(2)
    );
    assert_eq!(
        c.node_statefulset.metadata.name.as_deref(),
        Some("net-node")
    );
    assert_eq!(c.node_statefulset.spec.as_ref().unwrap().replicas, Some(3));
    assert_eq!(
        bootstrap_container(&c).image.as_deref(),
        Some("ghcr.io/dig/bootstrap:1")
    );
    assert_eq!(
        node_container(&c).image.as_deref(),
        Some("ghcr.io/dig/sidecar:1")
    );
    assert_eq!(
        c.bootstrap_service.spec.as_ref().unwrap().type_.as_deref(),
        Some("ClusterIP")
    );
    assert!(c.bootstrap_service.metadata.annotations.is_none());
    let config = node_config(&c);
    assert!(
        config.contains("network: net\n"),
        "network id defaults to the name: {config}"
    );
    assert!(
        config.contains("- http://net-bootstrap.ns.svc:3000"),
        "{config}"
    );
    assert!(config.contains("no-mdns: true"), "{config}");
    assert!(!config.contains("psk-file"), "{config}");
    assert!(!config.contains("propagate-deletes"), "{config}");
    let claim = claim_template(&c.node_statefulset);
    let size = &claim
        .spec
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["storage"];
    assert_eq!(size.0, "10Gi");
    let retention = c
        .node_statefulset
        .spec
        .as_ref()
        .unwrap()
        .persistent_volume_claim_retention_policy
        .clone()
        .unwrap();
    assert_eq!(
        (
            retention.when_deleted.as_deref(),
            retention.when_scaled.as_deref()
        ),
        (Some("Retain"), Some("Retain")),
        "claims outlive their pods by default"
    );
    assert!(c.exposure_services.is_empty());
    assert!(c.dns_endpoint.is_none());
    assert!(c.service_monitors.is_empty());
    assert!(c.pod_monitors.is_empty());
    assert_eq!(c.disruption_budgets.len(), 2);
    let names: Vec<_> = c
        .to_apply()
        .iter()
        .map(|o| format!("{}/{}", o.resource.kind, o.name))
        .collect();
    assert_eq!(
        names,
        [
            "ConfigMap/net-node",
            "Service/net-bootstrap",
            "Service/net-bootstrap-peers",
            "Service/net-node",
            "Deployment/net-bootstrap",
            "StatefulSet/net-node",
            "PodDisruptionBudget/net-bootstrap",
            "PodDisruptionBudget/net-node"
        ]
    );
}

#[test]
fn bootstrap_args_and_federation() {
    let c =
        build("networkId: testnet\nbootstrap:\n  replicas: 3\n  port: 3100\n  peerTtlSeconds: 120");
    let args = bootstrap_container(&c).args.clone().unwrap();
    assert!(has_pair(&args, "--listen", "0.0.0.0:3100"), "{args:?}");
    assert!(has_pair(&args, "--peer-ttl", "120"), "{args:?}");
    assert!(
        has_pair(
            &args,
            "--peer-bootstrap",
            "http://net-bootstrap-peers.ns.svc:3100"
        ),
        "{args:?}"
    );
    let peers = c.bootstrap_peers_service.spec.as_ref().unwrap();
    assert_eq!(peers.cluster_ip.as_deref(), Some("None"));
    assert!(node_config(&c).contains("network: testnet\n"));
    // One replica has nobody to federate with.
    let single = build("bootstrap:\n  replicas: 1");
    assert!(
        !bootstrap_container(&single)
            .args
            .clone()
            .unwrap()
            .contains(&"--peer-bootstrap".to_string())
    );
}

#[test]
fn dns_annotations_under_both_prefixes_by_default() {
    let c = build(
        "dns:\n  hostnames: [bootstrap.dig.example.com, b.example.com]\n  ttl: 60\n  setIdentifier: eu-west-1\n  weight: 10\n  healthCheckId: hc-1",
    );
    let a = annotations(&c.bootstrap_service);
    for prefix in [
        "external-dns.alpha.kubernetes.io/",
        "external-dns.kubernetes.io/",
    ] {
        assert_eq!(
            a[&format!("{prefix}hostname")],
            "bootstrap.dig.example.com,b.example.com"
        );
        assert_eq!(a[&format!("{prefix}ttl")], "60");
        assert_eq!(a[&format!("{prefix}set-identifier")], "eu-west-1");
        assert_eq!(a[&format!("{prefix}aws-weight")], "10");
        assert_eq!(a[&format!("{prefix}aws-health-check-id")], "hc-1");
    }
    assert!(c.dns_endpoint.is_none());
}

#[test]
fn dns_annotations_under_one_chosen_prefix() {
    let c = build(
        "dns:\n  hostnames: [bootstrap.example.com]\n  setIdentifier: primary\n  failover: PRIMARY\n  annotationPrefix: external-dns.kubernetes.io/",
    );
    let a = annotations(&c.bootstrap_service);
    assert_eq!(a["external-dns.kubernetes.io/aws-failover"], "PRIMARY");
    assert!(
        a.keys()
            .all(|k| !k.starts_with("external-dns.alpha.kubernetes.io/")),
        "{a:?}"
    );
}

#[test]
fn dns_endpoint_mode_with_txt_record() {
    let net = network(
        "dns:\n  hostnames: [bootstrap.example.com]\n  mode: dnsEndpoint\n  ttl: 30\n  setIdentifier: a\n  weight: 5",
    );
    let facts = NetworkFacts {
        dns_endpoint_api: true,
        bootstrap_targets: vec![dns::DnsTarget::Ip("203.0.113.7".into())],
        dnsaddr: vec![format!(
            "dnsaddr=/dns4/net-node-0.nodes.example.com/tcp/4001/p2p/{PEER}"
        )],
        ..NetworkFacts::default()
    };
    let c = build_with(&net, facts);
    assert!(
        annotations(&c.bootstrap_service)
            .keys()
            .all(|k| !k.contains("external-dns"))
    );
    let endpoint = c
        .dns_endpoint
        .clone()
        .expect("a DNSEndpoint in dnsEndpoint mode");
    let endpoints = endpoint.data["spec"]["endpoints"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(endpoints[0]["dnsName"], "bootstrap.example.com");
    assert_eq!(endpoints[0]["recordType"], "A");
    assert_eq!(endpoints[0]["targets"][0], "203.0.113.7");
    assert_eq!(endpoints[0]["recordTTL"], 30);
    assert_eq!(endpoints[0]["setIdentifier"], "a");
    assert_eq!(endpoints[0]["providerSpecific"][0]["name"], "aws/weight");
    assert_eq!(endpoints[1]["dnsName"], "_dnsaddr.bootstrap.example.com");
    assert_eq!(endpoints[1]["recordType"], "TXT");
    assert_eq!(
        endpoints[1]["targets"][0],
        format!("dnsaddr=/dns4/net-node-0.nodes.example.com/tcp/4001/p2p/{PEER}"),
        "the exposed nodes with their peer ids, not the registry's HTTP port"
    );
    let child = c
        .to_apply()
        .into_iter()
        .find(|o| o.resource.kind == "DNSEndpoint")
        .unwrap();
    assert_eq!(child.body["apiVersion"], "externaldns.k8s.io/v1alpha1");
    assert_eq!(
        child.body["metadata"]["ownerReferences"][0]["controller"],
        true
    );
}

const PEER: &str = "12D3KooWGzBSTgZGMhRyDNkD1NFMXqcBMsZmzhzEjGi1bP8zjcqQ";

#[test]
fn dns_endpoint_mode_without_exposed_nodes_has_no_dnsaddr_record() {
    let net = network("dns:\n  hostnames: [bootstrap.example.com]\n  mode: dnsEndpoint");
    let facts = NetworkFacts {
        dns_endpoint_api: true,
        bootstrap_targets: vec![dns::DnsTarget::Ip("203.0.113.7".into())],
        ..NetworkFacts::default()
    };
    let endpoint = build_with(&net, facts).dns_endpoint.unwrap();
    let endpoints = endpoint.data["spec"]["endpoints"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!(endpoints[0]["recordType"], "A");
}

#[test]
fn an_operator_made_health_check_goes_into_the_annotations() {
    let net = network(
        "dns:\n  hostnames: [bootstrap.example.com]\n  setIdentifier: a\n  failover: PRIMARY\n  healthCheck: {}",
    );
    let facts = NetworkFacts {
        external_dns_health_check: Some("hc-made".into()),
        ..NetworkFacts::default()
    };
    let c = build_with(&net, facts);
    assert_eq!(
        annotations(&c.bootstrap_service)["external-dns.kubernetes.io/aws-health-check-id"],
        "hc-made"
    );
}

#[test]
fn dns_endpoint_mode_without_the_api_is_invalid() {
    let net = network("dns:\n  hostnames: [bootstrap.example.com]\n  mode: dnsEndpoint");
    let err = validate_network(&net, &images(), NetworkFacts::default()).unwrap_err();
    assert_eq!(err.reason, "DnsEndpointApiMissing");
    assert!(err.message.contains("externaldns.k8s.io"), "{err}");
}

#[test]
fn dns_weight_without_set_identifier_is_invalid() {
    let net = network("dns:\n  hostnames: [bootstrap.example.com]\n  weight: 10");
    let err = validate_network(&net, &images(), NetworkFacts::default()).unwrap_err();
    assert_eq!(err.reason, "InvalidDns");
}

#[test]
fn load_balancer_bootstrap_service() {
    let c = build(
        "bootstrap:\n  service:\n    type: LoadBalancer\n    annotations:\n      service.beta.kubernetes.io/aws-load-balancer-type: nlb",
    );
    assert_eq!(
        c.bootstrap_service.spec.as_ref().unwrap().type_.as_deref(),
        Some("LoadBalancer")
    );
    assert_eq!(
        annotations(&c.bootstrap_service)["service.beta.kubernetes.io/aws-load-balancer-type"],
        "nlb"
    );
}

#[test]
fn exposure_per_pod_services_and_announce_args() {
    let c = build(
        "nodes:\n  replicas: 2\n  exposure:\n    type: LoadBalancer\n    announceDomain: nodes.example.com\n    announce: [/ip4/198.51.100.1/tcp/4001]",
    );
    assert_eq!(c.exposure_services.len(), 2);
    let second = &c.exposure_services[1];
    assert_eq!(second.metadata.name.as_deref(), Some("net-node-1"));
    let spec = second.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        spec.selector.as_ref().unwrap()["statefulset.kubernetes.io/pod-name"],
        "net-node-1"
    );
    assert_eq!(
        annotations(second)["external-dns.kubernetes.io/hostname"],
        "net-node-1.nodes.example.com"
    );
    let container = node_container(&c);
    let args = container.args.clone().unwrap();
    assert!(
        has_pair(
            &args,
            "--announce",
            "/dns4/$(POD_NAME).nodes.example.com/tcp/4001"
        ),
        "{args:?}"
    );
    assert!(
        has_pair(
            &args,
            "--announce",
            "/dns4/$(POD_NAME).nodes.example.com/udp/4001/quic-v1"
        ),
        "{args:?}"
    );
    assert!(
        has_pair(&args, "--announce", "/ip4/198.51.100.1/tcp/4001"),
        "{args:?}"
    );
    // `$(POD_NAME)` is only expanded when the variable is defined in the container.
    assert!(
        container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "POD_NAME")
    );
}

#[test]
fn node_port_exposure_uses_fixed_ports_per_pod() {
    let c =
        build("nodes:\n  replicas: 2\n  exposure:\n    type: NodePort\n    nodePortBase: 31000");
    let ports = |i: usize| {
        c.exposure_services[i]
            .spec
            .as_ref()
            .unwrap()
            .ports
            .clone()
            .unwrap()
    };
    assert_eq!(
        c.exposure_services[0]
            .spec
            .as_ref()
            .unwrap()
            .type_
            .as_deref(),
        Some("NodePort")
    );
    assert!(ports(0).iter().all(|p| p.node_port == Some(31000)));
    assert!(ports(1).iter().all(|p| p.node_port == Some(31001)));
    // Several pods cannot announce their own NodePort from one template.
    let net = network(
        "nodes:\n  replicas: 2\n  exposure:\n    type: NodePort\n    nodePortBase: 31000\n    announceDomain: nodes.example.com",
    );
    assert_eq!(
        validate_network(&net, &images(), NetworkFacts::default())
            .unwrap_err()
            .reason,
        "InvalidExposure"
    );
}

#[test]
fn load_balancer_exposure() {
    let c = build("nodes:\n  replicas: 1\n  exposure:\n    type: LoadBalancer");
    let spec = c.exposure_services[0].spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert!(
        spec.ports
            .as_ref()
            .unwrap()
            .iter()
            .all(|p| p.node_port.is_none())
    );
}

#[test]
fn psk_secret_mount_and_config() {
    let net = network("privateNetwork:\n  pskSecretRef:\n    name: dig-psk\n    key: swarm.key");
    let facts = NetworkFacts {
        psk: Some(PskSecret::Present { hash: "abc".into() }),
        ..NetworkFacts::default()
    };
    let c = build_with(&net, facts);
    let config = node_config(&c);
    assert!(
        config.contains("psk-file: /etc/dig/psk/swarm.key"),
        "{config}"
    );
    assert!(!config.contains("quic"), "pnet is TCP only: {config}");
    let pod = pod_spec(template(&c.node_statefulset));
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "psk")
        .unwrap();
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("dig-psk")
    );
    assert!(
        pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.mount_path == "/etc/dig/psk")
    );
    // A new key rolls the pods out.
    let rotated = build_with(
        &net,
        NetworkFacts {
            psk: Some(PskSecret::Present { hash: "def".into() }),
            ..NetworkFacts::default()
        },
    );
    assert_ne!(node_config_hash(&c), node_config_hash(&rotated));
}

#[test]
fn missing_psk_secret_is_invalid() {
    let net = network("privateNetwork:\n  pskSecretRef:\n    name: dig-psk");
    let err = validate_network(
        &net,
        &images(),
        NetworkFacts {
            psk: Some(PskSecret::NotFound),
            ..NetworkFacts::default()
        },
    )
    .unwrap_err();
    assert_eq!(err.reason, "PskSecretNotFound");
    assert!(err.message.contains("ns/dig-psk"), "{err}");
}

#[test]
fn propagate_deletes_in_config() {
    let c = build("replication:\n  propagateDeletes: true");
    assert!(node_config(&c).contains("propagate-deletes: true"));
}

#[test]
fn config_change_changes_the_pod_template_hash() {
    assert_eq!(
        node_config_hash(&build("{}")),
        node_config_hash(&build("{}"))
    );
    assert_ne!(
        node_config_hash(&build("{}")),
        node_config_hash(&build("replication:\n  propagateDeletes: true"))
    );
}

/// Facts of a cluster with the Prometheus operator's ServiceMonitor and PodMonitor APIs.
fn monitoring_facts() -> NetworkFacts {
    NetworkFacts {
        service_monitor_api: true,
        pod_monitor_api: true,
        ..NetworkFacts::default()
    }
}

fn match_labels(monitor: &DynamicObject) -> std::collections::BTreeMap<String, String> {
    serde_json::from_value(monitor.data["spec"]["selector"]["matchLabels"].clone()).unwrap()
}

/// Whether a label selector's `matchLabels` all hold on `labels`.
fn selects(
    selector: &std::collections::BTreeMap<String, String>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn template_labels(
    statefulset: &k8s_openapi::api::apps::v1::StatefulSet,
) -> std::collections::BTreeMap<String, String> {
    template(statefulset)
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap()
}

fn container_port_names(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> Vec<String> {
    pod_spec(template)
        .containers
        .iter()
        .chain(pod_spec(template).init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| p.name.clone())
        .collect()
}

#[test]
fn monitoring_with_the_api() {
    let net = network("monitoring:\n  serviceMonitor: true\n  labels:\n    release: prom");
    let c = build_with(&net, monitoring_facts());
    assert_eq!(c.service_monitors.len(), 2);
    let monitor = &c.service_monitors[1];
    assert_eq!(monitor.metadata.name.as_deref(), Some("net-node"));
    assert_eq!(monitor.metadata.labels.as_ref().unwrap()["release"], "prom");
    assert_eq!(monitor.data["spec"]["endpoints"][0]["port"], "api");
    assert_eq!(match_labels(monitor)["app.kubernetes.io/component"], "node");
    assert_eq!(
        match_labels(&c.service_monitors[0])["app.kubernetes.io/component"],
        "bootstrap"
    );
    let kinds: Vec<_> = c
        .to_apply()
        .into_iter()
        .filter(|o| o.resource.group == "monitoring.coreos.com")
        .map(|o| (o.body["apiVersion"].clone(), o.resource.kind, o.name))
        .collect();
    let v1 = serde_json::json!("monitoring.coreos.com/v1");
    assert_eq!(
        kinds,
        [
            (
                v1.clone(),
                "ServiceMonitor".to_string(),
                "net-bootstrap".to_string()
            ),
            (
                v1.clone(),
                "ServiceMonitor".to_string(),
                "net-node".to_string()
            ),
            (
                v1.clone(),
                "PodMonitor".to_string(),
                "net-injected".to_string()
            ),
            (v1, "PodMonitor".to_string(), "net-dignodes".to_string()),
        ]
    );
}

#[test]
fn pod_monitors_scrape_injected_and_dignode_pods_as_the_network_nodes_job() {
    let net = network("monitoring:\n  serviceMonitor: true\n  labels:\n    release: prom");
    let c = build_with(&net, monitoring_facts());
    assert_eq!(c.pod_monitors.len(), 2);
    for monitor in &c.pod_monitors {
        let name = monitor.metadata.name.clone().unwrap();
        let labels = monitor.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["release"], "prom", "{name}");
        assert_eq!(
            labels["app.kubernetes.io/instance"], "net",
            "{name}: pruned with the network's children"
        );
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "dig-operator",
            "{name}"
        );
        assert_eq!(
            monitor.metadata.owner_references.as_ref().unwrap()[0].uid,
            "1234",
            "{name}"
        );
        let spec = &monitor.data["spec"];
        assert_eq!(
            spec["namespaceSelector"]["matchNames"],
            serde_json::json!(["ns"]),
            "{name}"
        );
        let endpoints = spec["podMetricsEndpoints"].as_array().unwrap();
        assert_eq!(endpoints.len(), 1, "{name}");
        assert_eq!(endpoints[0]["path"], "/metrics", "{name}");
        // The job the dashboards and alerts select: the StatefulSet nodes' one.
        assert_eq!(
            endpoints[0]["relabelings"],
            serde_json::json!([{"action": "replace", "targetLabel": "job", "replacement": "net-node"}]),
            "{name}"
        );
    }
    let injected = &c.pod_monitors[0];
    assert_eq!(injected.metadata.name.as_deref(), Some("net-injected"));
    assert_eq!(
        match_labels(injected),
        std::collections::BTreeMap::from([("dig.net/inject".to_string(), "net".to_string())])
    );
    assert_eq!(
        injected.data["spec"]["podMetricsEndpoints"][0]["port"],
        "dig-api"
    );
    let dignodes = &c.pod_monitors[1];
    assert_eq!(dignodes.metadata.name.as_deref(), Some("net-dignodes"));
    assert_eq!(match_labels(dignodes)["dig.net/network-ref"], "net");
    assert_eq!(
        dignodes.data["spec"]["podMetricsEndpoints"][0]["port"],
        "api"
    );

    // A StatefulSet node is scraped once, through the Service: neither PodMonitor selects it.
    let node_labels = template_labels(&c.node_statefulset);
    for monitor in &c.pod_monitors {
        assert!(
            !selects(&match_labels(monitor), &node_labels),
            "{:?} selects {node_labels:?}",
            monitor.metadata.name
        );
    }
}

#[test]
fn the_dignode_pod_monitor_selects_the_pods_of_the_networks_dignodes_only() {
    let net = network("monitoring:\n  serviceMonitor: true");
    let c = build_with(&net, monitoring_facts());
    let selector = match_labels(&c.pod_monitors[1]);
    let node_of = |network: &DigNetwork| {
        let network_name = network.metadata.name.as_deref().unwrap();
        build_edge_node(network, &format!("networkRef:\n  name: {network_name}"))
    };
    let solo = node_of(&net);
    assert!(
        selects(&selector, &template_labels(&solo.statefulset)),
        "{selector:?}"
    );
    assert!(container_port_names(template(&solo.statefulset)).contains(&"api".to_string()));
    // Another DigNetwork with the same network id: its DigNodes are not this network's.
    let mut other = network("networkId: net");
    other.metadata.name = Some("other".into());
    let stranger = node_of(&other);
    assert!(!selects(&selector, &template_labels(&stranger.statefulset)));
    // The claim template keeps its labels: a StatefulSet's claim templates are immutable.
    let claim = claim_template(&solo.statefulset);
    assert!(
        !claim
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key("dig.net/network-ref")
    );
}

#[test]
fn the_injected_pod_monitor_matches_what_the_webhook_injects() {
    use crate::webhook::{network::sidecar_config, patch};
    let net = network("monitoring:\n  serviceMonitor: true");
    let monitor = &build_with(&net, monitoring_facts()).pod_monitors[0];
    let pod_json = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": "ns",
            "labels": {"dig.net/inject": "net"}, "annotations": {"dig.net/volume": "stores"}},
        "spec": {"containers": [{"name": "app", "image": "busybox"}],
            "volumes": [{"name": "stores", "emptyDir": {}}]}
    });
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod_json.clone()).unwrap();
    let config = sidecar_config(&net, "ns", Some("sidecar:1")).unwrap();
    let injection = patch::build_patch(
        &pod,
        "ns",
        Some(&config),
        &patch::InjectorSettings::default(),
    )
    .unwrap();
    let mut document = pod_json;
    json_patch::patch(
        &mut document,
        &injection.into_patch().expect("the pod is injected"),
    )
    .unwrap();
    let injected: k8s_openapi::api::core::v1::Pod = serde_json::from_value(document).unwrap();
    let labels = injected.metadata.labels.clone().unwrap();
    assert!(selects(&match_labels(monitor), &labels), "{labels:?}");
    let injected_template = k8s_openapi::api::core::v1::PodTemplateSpec {
        metadata: None,
        spec: injected.spec,
    };
    let port = monitor.data["spec"]["podMetricsEndpoints"][0]["port"]
        .as_str()
        .unwrap();
    assert!(
        container_port_names(&injected_template).contains(&port.to_string()),
        "no port {port}"
    );
}

#[test]
fn monitoring_without_the_api_is_skipped_with_a_warning() {
    let net = network("monitoring:\n  serviceMonitor: true");
    let valid = validate_network(&net, &images(), NetworkFacts::default()).unwrap();
    let c = build_network(&valid);
    assert!(c.service_monitors.is_empty() && c.pod_monitors.is_empty());
    assert_eq!(valid.warnings.len(), 1);
    assert_eq!(valid.warnings[0].reason, "MonitoringApiMissing");
    let message = &valid.warnings[0].message;
    assert!(message.contains("monitoring.coreos.com/v1"), "{message}");
    assert!(
        message.contains("ServiceMonitor and PodMonitor"),
        "{message}"
    );
}

#[test]
fn monitoring_without_the_pod_monitor_api_keeps_the_service_monitors() {
    let net = network("monitoring:\n  serviceMonitor: true");
    let facts = NetworkFacts {
        service_monitor_api: true,
        ..NetworkFacts::default()
    };
    let valid = validate_network(&net, &images(), facts).unwrap();
    let c = build_network(&valid);
    assert_eq!(c.service_monitors.len(), 2);
    assert!(c.pod_monitors.is_empty());
    let message = &valid.warnings[0].message;
    assert!(
        message.contains("no PodMonitor created")
            && message.contains("injected and DigNode pods are not scraped"),
        "{message}"
    );
}

#[test]
fn monitoring_off() {
    let net = network("{}");
    let valid = validate_network(&net, &images(), monitoring_facts()).unwrap();
    let c = build_network(&valid);
    assert!(c.service_monitors.is_empty());
    assert!(c.pod_monitors.is_empty());
    assert!(valid.warnings.is_empty());
}

#[test]
fn resources() {
    let c = build(
        "nodes:\n  resources:\n    requests:\n      cpu: 250m\n      memory: 256Mi\n    limits:\n      memory: 1Gi\nbootstrap:\n  resources:\n    limits:\n      memory: 128Mi",
    );
    let node = node_container(&c).resources.clone().unwrap();
    assert_eq!(node.requests.unwrap()["cpu"].0, "250m");
    assert_eq!(node.limits.unwrap()["memory"].0, "1Gi");
    assert_eq!(
        bootstrap_container(&c)
            .resources
            .clone()
            .unwrap()
            .limits
            .unwrap()["memory"]
            .0,
        "128Mi"
    );
}

#[test]
fn scheduling() {
    let c = build(
        "nodes:\n  nodeSelector:\n    disk: ssd\n  tolerations:\n  - key: dedicated\n    operator: Equal\n    value: dig\n    effect: NoSchedule\n  priorityClassName: high\nbootstrap:\n  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions:\n          - key: zone\n            operator: In\n            values: [a]",
    );
    let node = pod_spec(template(&c.node_statefulset));
    assert_eq!(node.node_selector.as_ref().unwrap()["disk"], "ssd");
    assert_eq!(
        node.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    assert_eq!(node.priority_class_name.as_deref(), Some("high"));
    let bootstrap = pod_spec(&c.bootstrap_deployment.spec.as_ref().unwrap().template);
    assert!(bootstrap.affinity.as_ref().unwrap().node_affinity.is_some());
    assert!(bootstrap.node_selector.is_none());
}

#[test]
fn security_context() {
    let c = build("{}");
    for template in [
        &c.node_statefulset.spec.as_ref().unwrap().template,
        &c.bootstrap_deployment.spec.as_ref().unwrap().template,
    ] {
        let pod = pod_spec(template);
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let sc = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    }
}

#[test]
fn probes() {
    let c = build("nodes:\n  apiPort: 9090");
    let node = node_container(&c);
    let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|get| get.path.clone())
    };
    assert_eq!(probe_path(&node.liveness_probe).as_deref(), Some("/health"));
    assert_eq!(probe_path(&node.readiness_probe).as_deref(), Some("/ready"));
    let api = node
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("api"))
        .unwrap();
    assert_eq!(api.container_port, 9090);
    assert!(node_config(&c).contains("api-listen: 0.0.0.0:9090"));
    let bootstrap = bootstrap_container(&c);
    assert_eq!(
        probe_path(&bootstrap.readiness_probe).as_deref(),
        Some("/ready")
    );
}

#[test]
fn owner_references_on_every_child() {
    let c = build("nodes:\n  exposure:\n    type: LoadBalancer");
    for child in c.to_apply() {
        let owners = &child.body["metadata"]["ownerReferences"];
        assert_eq!(owners[0]["kind"], "DigNetwork", "{}", child.name);
        assert_eq!(owners[0]["name"], "net");
        assert_eq!(owners[0]["uid"], "1234");
        assert_eq!(owners[0]["controller"], true);
        assert_eq!(child.body["metadata"]["namespace"], "ns");
    }
}

#[test]
fn labels_on_every_child_and_pod() {
    let c = build("networkId: testnet");
    for child in c.to_apply() {
        let labels = &child.body["metadata"]["labels"];
        assert_eq!(
            labels["app.kubernetes.io/instance"], "net",
            "{}",
            child.name
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "dig-operator");
        assert_eq!(labels["dig.net/network"], "testnet");
        assert!(
            labels["app.kubernetes.io/name"]
                .as_str()
                .unwrap()
                .starts_with("dig-")
        );
        assert!(labels["app.kubernetes.io/component"].is_string());
    }
    let pod_labels = c
        .node_statefulset
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let selector = c
        .node_statefulset
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
}

#[test]
fn zero_nodes_has_no_node_budget() {
    let c = build("nodes:\n  replicas: 0");
    assert_eq!(c.disruption_budgets.len(), 1);
    assert_eq!(
        c.disruption_budgets[0]
            .spec
            .as_ref()
            .unwrap()
            .max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
}

#[test]
fn dig_node_with_its_own_volume() {
    let net = network(
        "networkId: testnet\nnodes:\n  image: custom/sidecar:2\n  resources:\n    limits:\n      memory: 512Mi",
    );
    let c = build_edge_node(
        &net,
        "networkRef:\n  name: net\nstorage:\n  size: 50Gi\n  storageClassName: fast",
    );
    let sts = c.statefulset.spec.as_ref().unwrap();
    assert_eq!(c.statefulset.metadata.name.as_deref(), Some("dignode-edge"));
    assert_eq!(sts.replicas, Some(1));
    let claim = claim_template(&c.statefulset);
    assert_eq!(
        claim.spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("fast")
    );
    let container = &sts.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("custom/sidecar:2"),
        "the network's node image"
    );
    assert_eq!(
        container.resources.clone().unwrap().limits.unwrap()["memory"].0,
        "512Mi"
    );
    let config = &c.config.data.as_ref().unwrap()[CONFIG_KEY];
    assert!(config.contains("network: testnet"), "{config}");
    assert!(
        config.contains("http://net-bootstrap.ns.svc:3000"),
        "{config}"
    );
    assert_eq!(
        c.statefulset.metadata.owner_references.as_ref().unwrap()[0].kind,
        "DigNode"
    );
    assert!(c.exposure_service.is_none());
}

#[test]
fn claim_retention_policy_reaches_the_statefulsets() {
    let c = build(
        "nodes:\n  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n    whenScaled: Retain",
    );
    let retention = c
        .node_statefulset
        .spec
        .unwrap()
        .persistent_volume_claim_retention_policy
        .unwrap();
    assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));

    let net = network("{}");
    let edge = build_edge_node(
        &net,
        "networkRef:\n  name: net\npersistentVolumeClaimRetentionPolicy:\n  whenDeleted: Delete",
    );
    let retention = edge
        .statefulset
        .spec
        .unwrap()
        .persistent_volume_claim_retention_policy
        .unwrap();
    assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
    assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
    // An existing claim is not the StatefulSet's: no policy.
    let restored = build_edge_node(&net, "networkRef:\n  name: net\nexistingClaim: restored");
    assert!(
        restored
            .statefulset
            .spec
            .unwrap()
            .persistent_volume_claim_retention_policy
            .is_none()
    );
}

#[test]
fn dig_node_with_an_existing_claim_and_exposure() {
    let net = network("{}");
    let c = build_edge_node(
        &net,
        "networkRef:\n  name: net\nexistingClaim: restored-data\nimage: mine:1\nexposure:\n  type: LoadBalancer\n  announceDomain: edge.example.com",
    );
    let sts = c.statefulset.spec.as_ref().unwrap();
    assert!(sts.volume_claim_templates.is_none());
    let pod = sts.template.spec.as_ref().unwrap();
    let data = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == DATA_VOLUME)
        .unwrap();
    assert_eq!(
        data.persistent_volume_claim.as_ref().unwrap().claim_name,
        "restored-data"
    );
    assert_eq!(pod.containers[0].image.as_deref(), Some("mine:1"));
    let service = c.exposure_service.as_ref().unwrap();
    assert_eq!(
        service.spec.as_ref().unwrap().selector.as_ref().unwrap()["statefulset.kubernetes.io/pod-name"],
        "dignode-edge-0"
    );
    assert!(has_pair(
        pod.containers[0].args.as_ref().unwrap(),
        "--announce",
        "/dns4/$(POD_NAME).edge.example.com/tcp/4001"
    ));
}

#[test]
fn dig_node_announces_its_node_port() {
    let net = network("{}");
    let c = build_edge_node(
        &net,
        "networkRef:\n  name: net\nexposure:\n  type: NodePort\n  nodePortBase: 31400\n  announceDomain: edge.example.com",
    );
    let args = statefulset_container(&c.statefulset).args.clone().unwrap();
    assert!(
        has_pair(
            &args,
            "--announce",
            "/dns4/$(POD_NAME).edge.example.com/tcp/31400"
        ),
        "{args:?}"
    );
    let service = c.exposure_service.as_ref().unwrap().spec.as_ref().unwrap();
    assert!(
        service
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .all(|p| p.node_port == Some(31400))
    );
}

#[test]
fn dig_node_without_its_network_is_invalid() {
    let node = dig_node("edge", "networkRef:\n  name: missing");
    let err = validate_node(&node, None, &images(), None).unwrap_err();
    assert_eq!(err.reason, "NetworkNotFound");
    assert!(err.message.contains("ns/missing"), "{err}");
}

#[test]
fn nodes_read_their_annotations_to_know_when_to_drain() {
    let c = build("{}");
    let container = node_container(&c);
    let env = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "DIG_DRAIN_ANNOTATIONS")
        .expect("the drain annotations variable");
    assert_eq!(env.value.as_deref(), Some("/etc/podinfo/annotations"));
    assert!(
        !container
            .args
            .as_ref()
            .unwrap()
            .iter()
            .any(|a| a == "--drain-annotations"),
        "a flag would stop an older node image from starting: {:?}",
        container.args
    );
    let mount = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "podinfo")
        .expect("the podinfo mount");
    assert_eq!(
        (mount.mount_path.as_str(), mount.read_only),
        ("/etc/podinfo", Some(true))
    );
    let statefulset = c.node_statefulset.spec.as_ref().unwrap();
    let volume = pod_spec(&statefulset.template)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "podinfo")
        .expect("the podinfo volume");
    let item = &volume
        .downward_api
        .as_ref()
        .unwrap()
        .items
        .as_ref()
        .unwrap()[0];
    assert_eq!(item.path, "annotations");
    assert_eq!(
        item.field_ref.as_ref().unwrap().field_path,
        "metadata.annotations"
    );
}
