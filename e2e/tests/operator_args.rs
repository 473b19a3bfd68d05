//! The container arguments the operator generates, parsed by the binaries' own parsers: the node
//! pods' `dig-sidecar run` command line together with the node ConfigMap (the `--config` file),
//! and the bootstrap registry's `dig-bootstrap` command line. A flag renamed on either side fails
//! here rather than in a crash-looping pod.

use std::ffi::OsString;

use dig_operator::reconcile::{
    args::{CONFIG_DIR, CONFIG_FILE},
    build::CONFIG_KEY,
    fixtures::{
        bootstrap_container, build_edge_node, build_with, kubelet_expanded, network,
        node_container, statefulset_container,
    },
    validate::{NetworkFacts, PskSecret},
};
use dig_sidecar::config::{Command, resolve};
use k8s_openapi::api::core::v1::{ConfigMap, Container};

/// The pod IP the tests pretend Kubernetes gave every pod.
const POD_IP: &str = "10.42.0.7";

/// Parses a node container's args with `dig-sidecar`'s resolver, the ConfigMap written where the
/// pod mounts it (here: a temporary folder).
fn parse_node(
    container: &Container,
    config: &ConfigMap,
    pod: &str,
) -> dig_sidecar::config::RunArgs {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(CONFIG_FILE);
    std::fs::write(&file, &config.data.as_ref().unwrap()[CONFIG_KEY]).unwrap();
    let mounted = format!("{CONFIG_DIR}/{CONFIG_FILE}");
    let args = kubelet_expanded(container.args.as_ref().unwrap(), pod, POD_IP);
    assert!(
        args.contains(&mounted),
        "the pod reads the mounted ConfigMap: {args:?}"
    );
    let mut argv: Vec<OsString> = vec!["dig-sidecar".into()];
    argv.extend(args.iter().map(|a| {
        if *a == mounted {
            file.clone().into_os_string()
        } else {
            a.into()
        }
    }));
    match resolve(argv.clone(), &|_| None)
        .unwrap_or_else(|e| panic!("dig-sidecar rejects {argv:?}: {e}"))
        .command
    {
        Command::Run(run) => *run,
        other => panic!("not a run command: {other:?}"),
    }
}

fn parse_bootstrap(container: &Container) -> dig_bootstrap::config::Config {
    let mut argv = vec!["dig-bootstrap".to_string()];
    argv.extend(container.args.clone().unwrap());
    <dig_bootstrap::config::Config as clap::Parser>::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("dig-bootstrap rejects {argv:?}: {e}"))
}

#[test]
fn default_network_args_parse() {
    let net = network("networkId: testnet");
    let children = build_with(&net, NetworkFacts::default());
    let run = parse_node(
        node_container(&children),
        &children.node_config,
        "net-node-0",
    );
    assert_eq!(run.network, "testnet");
    assert_eq!(run.bootstrap, ["http://net-bootstrap.ns.svc:3000"]);
    assert_eq!(run.data_dir(), std::path::PathBuf::from("/data"));
    assert_eq!(run.state_dir(), std::path::PathBuf::from("/data/.dig-node"));
    assert_eq!(run.api_listen.port(), 8080);
    assert!(run.no_mdns);
    assert!(!run.no_dht);
    assert!(!run.propagate_deletes);
    assert!(run.psk_file.is_none());
    let listen: Vec<String> = run.listen.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        listen,
        ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
    );
    let announce: Vec<String> = run.announce.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        announce,
        ["/ip4/10.42.0.7/tcp/4001", "/ip4/10.42.0.7/udp/4001/quic-v1"],
        "without exposure a node still registers the address its peers in the cluster dial"
    );

    let config = parse_bootstrap(bootstrap_container(&children));
    assert_eq!(config.listen.port(), 3000);
    assert_eq!(config.peer_ttl, 180);
    assert_eq!(
        config
            .peer_bootstrap
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>(),
        ["http://net-bootstrap-peers.ns.svc:3000/"]
    );
}

#[test]
fn every_feature_of_the_spec_parses() {
    let net = network(
        "networkId: prod\nbootstrap:\n  replicas: 1\n  port: 3100\n  peerTtlSeconds: 90\nnodes:\n  replicas: 2\n  p2pPort: 4101\n  apiPort: 8181\n  discovery:\n    mdns: true\n    dht: false\n    bootstrapUrls: [https://bootstrap-us.example.com]\n    targetPeers: 40\n  exposure:\n    type: LoadBalancer\n    announceDomain: nodes.example.com\n    announce: [/ip4/198.51.100.7/tcp/4101]\nprivateNetwork:\n  pskSecretRef:\n    name: psk\n    key: swarm.key\nreplication:\n  propagateDeletes: true",
    );
    let facts = NetworkFacts {
        psk: Some(PskSecret::Present { hash: "h".into() }),
        ..NetworkFacts::default()
    };
    let children = build_with(&net, facts);
    let run = parse_node(
        node_container(&children),
        &children.node_config,
        "net-node-1",
    );
    assert_eq!(run.network, "prod");
    assert_eq!(
        run.bootstrap,
        [
            "http://net-bootstrap.ns.svc:3100",
            "https://bootstrap-us.example.com"
        ]
    );
    assert!(!run.no_mdns);
    assert!(run.no_dht);
    assert_eq!(run.target_peers, 40);
    assert!(run.propagate_deletes);
    assert_eq!(
        run.psk_file.as_deref(),
        Some(std::path::Path::new("/etc/dig/psk/swarm.key"))
    );
    assert_eq!(run.api_listen.port(), 8181);
    let announce: Vec<String> = run.announce.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        announce,
        [
            "/ip4/10.42.0.7/tcp/4101",
            "/dns4/net-node-1.nodes.example.com/tcp/4101",
            "/ip4/198.51.100.7/tcp/4101"
        ]
    );
    let config = parse_bootstrap(bootstrap_container(&children));
    assert_eq!((config.listen.port(), config.peer_ttl), (3100, 90));
    assert!(
        config.peer_bootstrap.is_empty(),
        "one replica has nobody to federate with"
    );
}

#[test]
fn dig_node_args_parse() {
    let net = network("networkId: testnet");
    let children = build_edge_node(
        &net,
        "networkRef:\n  name: net\nexposure:\n  type: NodePort\n  nodePortBase: 31400\n  announceDomain: edge.example.com",
    );
    let run = parse_node(
        statefulset_container(&children.statefulset),
        &children.config,
        "dignode-edge-0",
    );
    assert_eq!(run.network, "testnet");
    let announce: Vec<String> = run.announce.iter().map(|a| a.to_string()).collect();
    assert_eq!(
        announce,
        [
            "/ip4/10.42.0.7/tcp/4001",
            "/ip4/10.42.0.7/udp/4001/quic-v1",
            "/dns4/dignode-edge-0.edge.example.com/tcp/31400",
            "/dns4/dignode-edge-0.edge.example.com/udp/31400/quic-v1"
        ]
    );
}

/// The bootstrap Deployment's probes against a real `dig-bootstrap` started with the Deployment's
/// own arguments: each probe names the container's `http` port and its path answers 200, so the
/// registry's pods become Ready and its Service gets endpoints. (One replica: with two, `/ready`
/// first waits to pull the other, which `kubernetes_walkthrough` checks on a real node.)
#[tokio::test]
async fn bootstrap_probes_are_answered_by_dig_bootstrap() {
    let net = network("networkId: testnet\nbootstrap:\n  replicas: 1");
    let children = build_with(&net, NetworkFacts::default());
    let container = bootstrap_container(&children);
    let config = parse_bootstrap(container);
    let port = &container.ports.as_ref().expect("the container's ports")[0];
    assert_eq!(port.name.as_deref(), Some("http"));
    assert_eq!(
        i64::from(port.container_port),
        i64::from(config.listen.port())
    );

    // The Deployment's arguments, on a loopback port of the test's choosing.
    let args = container.args.clone().unwrap();
    let listen = args.iter().position(|a| a == "--listen").unwrap();
    let args: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != listen && *i != listen + 1)
        .map(|(_, a)| a.as_str())
        .collect();
    let server = dig_e2e::bootstrap::BootstrapServer::start(&args)
        .await
        .expect("dig-bootstrap starts with the Deployment's arguments");
    let http = server.http().unwrap();
    for (kind, probe) in [
        ("liveness", container.liveness_probe.as_ref()),
        ("readiness", container.readiness_probe.as_ref()),
    ] {
        let get = probe
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("the {kind} probe is an HTTP GET"));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()),
            "the {kind} probe targets the http port"
        );
        let path = get.path.as_deref().expect("a probe path");
        let response = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "dig-bootstrap answers the {kind} probe's GET {path} with {}",
            response.status()
        );
    }
}
