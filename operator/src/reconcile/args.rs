//! Command lines of the containers (docs/DESIGN.md §4a) and the node's `--config` YAML file.

use serde::Serialize;

use crate::crd::WritePolicy;

/// Where the node's volume is mounted.
pub const DATA_DIR: &str = "/data";
/// Where the node keeps its identity key and index: on the volume, so the peer id survives.
pub const STATE_DIR: &str = "/data/.dig-node";
/// Folder of the node ConfigMap's mount.
pub const CONFIG_DIR: &str = "/etc/dig";
/// Key of the node ConfigMap, and the file name under [`CONFIG_DIR`].
pub const CONFIG_FILE: &str = "node.yaml";
/// Folder of the downward-API volume with the pod's annotations (outside [`CONFIG_DIR`], a
/// read-only ConfigMap mount that cannot hold another mount point).
pub const POD_INFO_DIR: &str = "/etc/podinfo";
/// The annotations file in [`POD_INFO_DIR`]: the node drains while it holds `dig.net/drain`.
pub const ANNOTATIONS_FILE: &str = "annotations";
/// Folder of the pre-shared key Secret's mount.
pub const PSK_DIR: &str = "/etc/dig/psk";

/// The node configuration shared by every node of a network, written as the `--config` YAML.
/// Keys are the long flag names of `dig-sidecar run`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NodeConfig {
    pub network: String,
    pub bootstrap: Vec<String>,
    pub listen: Vec<String>,
    pub api_listen: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_mdns: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_dht: bool,
    /// The node's default (24) is not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_peers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psk_file: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub propagate_deletes: bool,
    /// `owner` is the node's default and is not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_policy: Option<String>,
    /// Peer ids of the network's writers (`--writer`, repeatable).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub writer: Vec<String>,
    pub log_format: String,
}

/// Inputs of a node configuration.
pub struct NodeConfigInputs<'a> {
    pub network_id: &'a str,
    pub bootstrap_urls: Vec<String>,
    pub p2p_port: i32,
    pub api_port: i32,
    pub mdns: bool,
    pub dht: bool,
    /// `spec.nodes.discovery.targetPeers`.
    pub target_peers: Option<u32>,
    /// File name of the PSK inside [`PSK_DIR`], when the network is private.
    pub psk_key: Option<&'a str>,
    pub propagate_deletes: bool,
    pub write_policy: WritePolicy,
    pub writers: &'a [String],
}

impl NodeConfig {
    pub fn new(inputs: NodeConfigInputs<'_>) -> Self {
        let private = inputs.psk_key.is_some();
        let mut listen = vec![format!("/ip4/0.0.0.0/tcp/{}", inputs.p2p_port)];
        // libp2p private networks (pnet) only work over TCP.
        if !private {
            listen.push(format!("/ip4/0.0.0.0/udp/{}/quic-v1", inputs.p2p_port));
        }
        Self {
            network: inputs.network_id.to_string(),
            bootstrap: inputs.bootstrap_urls,
            listen,
            api_listen: format!("0.0.0.0:{}", inputs.api_port),
            no_mdns: !inputs.mdns,
            no_dht: !inputs.dht,
            target_peers: inputs.target_peers,
            psk_file: inputs.psk_key.map(|key| format!("{PSK_DIR}/{key}")),
            propagate_deletes: inputs.propagate_deletes,
            write_policy: (inputs.write_policy != WritePolicy::Owner)
                .then(|| inputs.write_policy.as_str().to_string()),
            writer: inputs.writers.to_vec(),
            log_format: "json".to_string(),
        }
    }

    pub fn to_yaml(&self) -> String {
        yaml_serde::to_string(self)
            .expect("a NodeConfig of strings, lists and booleans always serialises")
    }

    /// The same configuration as `dig-sidecar run` flags, for tools that cannot read the file.
    pub fn to_flags(&self) -> Vec<String> {
        let mut args = vec!["--network".to_string(), self.network.clone()];
        for url in &self.bootstrap {
            args.extend(["--bootstrap".to_string(), url.clone()]);
        }
        for addr in &self.listen {
            args.extend(["--listen".to_string(), addr.clone()]);
        }
        args.extend(["--api-listen".to_string(), self.api_listen.clone()]);
        if self.no_mdns {
            args.push("--no-mdns".to_string());
        }
        if self.no_dht {
            args.push("--no-dht".to_string());
        }
        if let Some(target) = self.target_peers {
            args.extend(["--target-peers".to_string(), target.to_string()]);
        }
        if let Some(psk) = &self.psk_file {
            args.extend(["--psk-file".to_string(), psk.clone()]);
        }
        if self.propagate_deletes {
            args.push("--propagate-deletes".to_string());
        }
        if let Some(policy) = &self.write_policy {
            args.extend(["--write-policy".to_string(), policy.clone()]);
        }
        for writer in &self.writer {
            args.extend(["--writer".to_string(), writer.clone()]);
        }
        args.extend(["--log-format".to_string(), self.log_format.clone()]);
        args
    }
}

/// Args of a node container: `run`, the config file, the per-pod folders and announce addresses.
/// (`$(POD_NAME)` in an announce address is expanded by Kubernetes.)
pub fn node_args(announce: &[String]) -> Vec<String> {
    let mut args = vec![
        "run".to_string(),
        "--config".to_string(),
        format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        "--data-dir".to_string(),
        DATA_DIR.to_string(),
        "--state-dir".to_string(),
        STATE_DIR.to_string(),
    ];
    for addr in announce {
        args.extend(["--announce".to_string(), addr.clone()]);
    }
    args
}

/// Args of the bootstrap registry container.
/// Seconds a terminating registry keeps serving with `/ready` at 503, so the endpoint controller
/// and kube-proxy take it out of the Service before its connections close.
pub const BOOTSTRAP_SHUTDOWN_DELAY_SECONDS: u32 = 5;

/// Seconds between a registry replica's pulls of each sibling. A restarting node unregisters at
/// the replica its SIGTERM request reaches and registers again at one replica; the others list it
/// again only after their next pull, so this bounds how long `/peers` through the Service misses
/// a node that restarts (with the registry's default of 15 s, e2e/tests/operator_upgrade.rs saw
/// half the answers miss one for 14 s during an image upgrade).
pub const BOOTSTRAP_FEDERATION_INTERVAL_SECONDS: u32 = 5;

pub fn bootstrap_args(
    port: i32,
    peer_ttl_seconds: i64,
    federation_url: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
        "--listen".to_string(),
        format!("0.0.0.0:{port}"),
        "--peer-ttl".to_string(),
        peer_ttl_seconds.to_string(),
    ];
    if let Some(url) = federation_url {
        args.extend([
            "--peer-bootstrap".to_string(),
            url.to_string(),
            "--federation-interval".to_string(),
            BOOTSTRAP_FEDERATION_INTERVAL_SECONDS.to_string(),
        ]);
    }
    args.extend([
        "--shutdown-delay".to_string(),
        BOOTSTRAP_SHUTDOWN_DELAY_SECONDS.to_string(),
        "--log-format".to_string(),
        "json".to_string(),
    ]);
    args
}

/// The pod's own address, which every peer in the cluster can dial: `$(POD_IP)` is expanded by
/// Kubernetes from the downward API. Without it a node would register no address at all (it only
/// registers announced or confirmed addresses), and its peers could not dial it.
pub fn pod_ip_addresses(p2p_port: i32, private: bool) -> Vec<String> {
    let mut addrs = vec![format!("/ip4/$(POD_IP)/tcp/{p2p_port}")];
    if !private {
        // A private network (pnet) works over TCP only.
        addrs.push(format!("/ip4/$(POD_IP)/udp/{p2p_port}/quic-v1"));
    }
    addrs
}

/// Announce addresses of a node: the pod's own address on the pod network, then
/// `/dns4/$(POD_NAME).<domain>/<port>` for an announce domain (at the port peers outside reach,
/// which differs for NodePorts), then the user's own.
pub fn announce_addresses(
    p2p_port: i32,
    announce_domain: Option<&str>,
    exposed_port: i32,
    private: bool,
    extra: &[String],
) -> Vec<String> {
    let mut addrs = pod_ip_addresses(p2p_port, private);
    if let Some(domain) = announce_domain {
        addrs.push(format!("/dns4/$(POD_NAME).{domain}/tcp/{exposed_port}"));
        if !private {
            addrs.push(format!(
                "/dns4/$(POD_NAME).{domain}/udp/{exposed_port}/quic-v1"
            ));
        }
    }
    addrs.extend(extra.iter().cloned());
    addrs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> NodeConfigInputs<'static> {
        NodeConfigInputs {
            network_id: "testnet",
            bootstrap_urls: vec!["http://n-bootstrap.ns.svc:3000".to_string()],
            p2p_port: 4001,
            api_port: 8080,
            mdns: false,
            dht: true,
            target_peers: None,
            psk_key: None,
            propagate_deletes: false,
            write_policy: WritePolicy::Owner,
            writers: &[],
        }
    }

    #[test]
    fn config_yaml_uses_the_flag_names() {
        let yaml = NodeConfig::new(inputs()).to_yaml();
        assert!(yaml.contains("network: testnet"), "{yaml}");
        assert!(yaml.contains("api-listen: 0.0.0.0:8080"), "{yaml}");
        assert!(yaml.contains("no-mdns: true"), "{yaml}");
        assert!(!yaml.contains("no-dht"), "{yaml}");
        assert!(!yaml.contains("target-peers"), "{yaml}");
        assert!(yaml.contains("/ip4/0.0.0.0/udp/4001/quic-v1"), "{yaml}");
    }

    #[test]
    fn a_target_peer_count_reaches_the_file_and_the_flags() {
        let config = NodeConfig::new(NodeConfigInputs {
            target_peers: Some(40),
            ..inputs()
        });
        assert!(config.to_yaml().contains("target-peers: 40"));
        assert!(
            config
                .to_flags()
                .windows(2)
                .any(|w| w == ["--target-peers", "40"])
        );
    }

    #[test]
    fn writers_and_a_write_policy_reach_the_file_and_the_flags() {
        let writers = vec!["12D3KooWAbc".to_string(), "12D3KooWDef".to_string()];
        let config = NodeConfig::new(NodeConfigInputs {
            write_policy: WritePolicy::Writers,
            writers: &writers,
            ..inputs()
        });
        let yaml = config.to_yaml();
        assert!(yaml.contains("write-policy: writers"), "{yaml}");
        assert!(
            yaml.contains("writer:\n- 12D3KooWAbc\n- 12D3KooWDef"),
            "{yaml}"
        );
        let flags = config.to_flags();
        assert!(flags.windows(2).any(|w| w == ["--write-policy", "writers"]));
        assert_eq!(flags.iter().filter(|f| *f == "--writer").count(), 2);
        let default = NodeConfig::new(inputs()).to_yaml();
        assert!(
            !default.contains("write-policy") && !default.contains("writer"),
            "{default}"
        );
    }

    #[test]
    fn private_network_listens_on_tcp_only_and_names_the_psk_file() {
        let config = NodeConfig::new(NodeConfigInputs {
            psk_key: Some("swarm.key"),
            ..inputs()
        });
        assert_eq!(config.listen, vec!["/ip4/0.0.0.0/tcp/4001"]);
        assert_eq!(config.psk_file.as_deref(), Some("/etc/dig/psk/swarm.key"));
        let flags = config.to_flags();
        assert!(
            flags
                .windows(2)
                .any(|w| w == ["--psk-file", "/etc/dig/psk/swarm.key"])
        );
    }

    #[test]
    fn announce_domain_gives_per_pod_dns_addresses() {
        let addrs = announce_addresses(
            4001,
            Some("nodes.example.com"),
            30401,
            true,
            &["/ip4/1.2.3.4/tcp/4001".to_string()],
        );
        assert_eq!(
            addrs,
            vec![
                "/ip4/$(POD_IP)/tcp/4001",
                "/dns4/$(POD_NAME).nodes.example.com/tcp/30401",
                "/ip4/1.2.3.4/tcp/4001"
            ]
        );
    }

    #[test]
    fn every_node_announces_its_pod_address() {
        assert_eq!(
            announce_addresses(4001, None, 4001, false, &[]),
            vec!["/ip4/$(POD_IP)/tcp/4001", "/ip4/$(POD_IP)/udp/4001/quic-v1"]
        );
        assert_eq!(
            announce_addresses(4001, None, 4001, true, &[]),
            vec!["/ip4/$(POD_IP)/tcp/4001"],
            "a private network announces no QUIC address"
        );
    }

    #[test]
    fn bootstrap_args_federate_only_when_asked() {
        assert_eq!(
            bootstrap_args(3000, 180, None),
            vec![
                "--listen",
                "0.0.0.0:3000",
                "--peer-ttl",
                "180",
                "--shutdown-delay",
                "5",
                "--log-format",
                "json"
            ]
        );
        let args = bootstrap_args(3000, 180, Some("http://n-bootstrap-peers.ns.svc:3000"));
        assert!(
            args.windows(2)
                .any(|w| w == ["--peer-bootstrap", "http://n-bootstrap-peers.ns.svc:3000"])
        );
        // Replicas pull each other every 5 s, not the registry's default 15 s: a restarted
        // node's new record reaches every replica that soon.
        assert!(
            args.windows(2).any(|w| w == ["--federation-interval", "5"]),
            "{args:?}"
        );
    }
}
