//! The sidecar container and the volumes it needs: the same node, command line and probes as the
//! operator's own nodes.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, KeyToPath, Probe, ResourceRequirements,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::reconcile::args::{
    NodeConfig, NodeConfigInputs, PSK_DIR as PSK_MOUNT_PATH, pod_ip_addresses,
};
use crate::reconcile::pod::{container_security_context, node_env, probes};

/// Name of the injected container; a pod that already has one is left alone.
pub const SIDECAR_CONTAINER_NAME: &str = "dig-sidecar";
/// Where the named volume is mounted in the sidecar (its `--data-dir`), and the node's state
/// folder on it: the same layout as the operator's own nodes. The state (identity key, index,
/// tmp/, conflicts/) lives on the data volume, so the peer id and the index survive restarts
/// whenever that volume is persistent.
pub use crate::reconcile::args::{DATA_DIR as DATA_MOUNT_PATH, STATE_DIR};
pub const TMP_VOLUME_NAME: &str = "dig-sidecar-tmp";
pub const PSK_VOLUME_NAME: &str = "dig-sidecar-psk";
/// Names of the sidecar's ports; prefixed so they do not clash with the app's port names.
pub const P2P_PORT_NAME: &str = "dig-p2p";
pub const P2P_QUIC_PORT_NAME: &str = "dig-p2p-quic";
pub const API_PORT_NAME: &str = "dig-api";

/// Everything the sidecar needs from the DigNetwork the pod joins.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSidecarConfig {
    /// The DigNetwork object's name (what the label names).
    pub name: String,
    /// `spec.networkId`: isolates the protocols of this network.
    pub network_id: String,
    /// The in-cluster bootstrap Service URL first, then any extra bootstrap URLs.
    pub bootstrap_urls: Vec<String>,
    pub image: String,
    pub p2p_port: u16,
    pub api_port: u16,
    /// Secret (in the pod's namespace) holding the pre-shared key of a private network.
    pub psk_secret: Option<SecretKeySelector>,
    pub propagate_deletes: bool,
    /// `spec.replication.writePolicy` and `writers`: who may write stores.
    pub write_policy: crate::crd::WritePolicy,
    pub writers: Vec<String>,
    pub mdns: bool,
    pub dht: bool,
    /// `spec.nodes.discovery.targetPeers`.
    pub target_peers: Option<u32>,
    /// The network's node resources; annotations override single entries.
    pub resources: Option<ResourceRequirements>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKeySelector {
    pub name: String,
    pub key: String,
}

pub struct SidecarSpec<'a> {
    pub network: &'a NetworkSidecarConfig,
    pub image: &'a str,
    pub volume_name: &'a str,
    pub p2p_port: u16,
    pub api_port: u16,
    pub resources: ResourceRequirements,
    pub run_as_user: Option<i64>,
    /// The pod sets `fsGroup`, so its volumes are group-accessible to every container.
    pub pod_fs_group: bool,
}

impl SidecarSpec<'_> {
    /// The `dig-sidecar run` command line (docs/DESIGN.md §4a). The node configuration is the one the
    /// operator writes for the network's own nodes (the same [`NodeConfig`]), as flags: the pod
    /// cannot mount the network's ConfigMap (it may not exist yet, and per-pod port overrides
    /// would contradict it).
    pub fn args(&self) -> Vec<String> {
        let network = self.network;
        let config = NodeConfig::new(NodeConfigInputs {
            network_id: &network.network_id,
            bootstrap_urls: network.bootstrap_urls.clone(),
            p2p_port: i32::from(self.p2p_port),
            api_port: i32::from(self.api_port),
            mdns: network.mdns,
            dht: network.dht,
            target_peers: network.target_peers,
            psk_key: network.psk_secret.as_ref().map(|psk| psk.key.as_str()),
            propagate_deletes: network.propagate_deletes,
            write_policy: network.write_policy,
            writers: &network.writers,
        });
        let mut args = vec![
            "run".to_string(),
            "--data-dir".to_string(),
            DATA_MOUNT_PATH.to_string(),
            "--state-dir".to_string(),
            STATE_DIR.to_string(),
        ];
        args.extend(config.to_flags());
        // Peers dial the pod's own address, as they do the network's StatefulSet nodes.
        let private = network.psk_secret.is_some();
        for address in pod_ip_addresses(i32::from(self.p2p_port), private) {
            args.extend(["--announce".to_string(), address]);
        }
        args
    }

    pub fn container(&self) -> Container {
        // The same liveness and readiness probes as the operator's own nodes.
        let (liveness, readiness) = probes(API_PORT_NAME);
        // A native sidecar's startup probe gates the app containers: they start once the node
        // serves its API (up to two minutes, e.g. for a start-up scan of a large folder).
        let startup = Probe {
            period_seconds: Some(2),
            failure_threshold: Some(60),
            ..liveness.clone()
        };
        let port = |name: &str, number: u16, protocol: &str| ContainerPort {
            name: Some(name.to_string()),
            container_port: i32::from(number),
            protocol: Some(protocol.to_string()),
            ..Default::default()
        };
        let mut ports = vec![port(P2P_PORT_NAME, self.p2p_port, "TCP")];
        if self.network.psk_secret.is_none() {
            ports.push(port(P2P_QUIC_PORT_NAME, self.p2p_port, "UDP"));
        }
        ports.push(port(API_PORT_NAME, self.api_port, "TCP"));
        let mut mounts = vec![
            VolumeMount {
                name: self.volume_name.to_string(),
                mount_path: DATA_MOUNT_PATH.to_string(),
                ..Default::default()
            },
            VolumeMount {
                name: TMP_VOLUME_NAME.to_string(),
                mount_path: "/tmp".to_string(),
                ..Default::default()
            },
        ];
        if self.network.psk_secret.is_some() {
            mounts.push(VolumeMount {
                name: PSK_VOLUME_NAME.to_string(),
                mount_path: PSK_MOUNT_PATH.to_string(),
                read_only: Some(true),
                ..Default::default()
            });
        }
        Container {
            name: SIDECAR_CONTAINER_NAME.to_string(),
            image: Some(self.image.to_string()),
            args: Some(self.args()),
            env: Some(node_env()),
            ports: Some(ports),
            // A native sidecar: started before the app containers, kept running, stopped after them.
            restart_policy: Some("Always".to_string()),
            // The kubelet starts the app containers only once this has passed.
            startup_probe: Some(startup),
            liveness_probe: Some(liveness),
            readiness_probe: Some(readiness),
            resources: Some(self.resources.clone()),
            security_context: Some(SecurityContext {
                run_as_user: self.run_as_user,
                run_as_group: self.run_as_user,
                ..container_security_context()
            }),
            termination_message_policy: Some("FallbackToLogsOnError".to_string()),
            volume_mounts: Some(mounts),
            ..Default::default()
        }
    }

    pub fn volumes(&self) -> Vec<Volume> {
        let mut volumes = vec![Volume {
            name: TMP_VOLUME_NAME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".to_string())),
                ..Default::default()
            }),
            ..Default::default()
        }];
        if let Some(psk) = &self.network.psk_secret {
            volumes.push(Volume {
                name: PSK_VOLUME_NAME.to_string(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(psk.name.clone()),
                    // The file is named after the key, as in the operator's own nodes.
                    items: Some(vec![KeyToPath {
                        key: psk.key.clone(),
                        path: psk.key.clone(),
                        ..Default::default()
                    }]),
                    // Group-readable through the pod's fsGroup; without one the file stays
                    // root-owned, and only a world-readable mode lets a non-root sidecar read it
                    // (no other container mounts this volume: its name is reserved).
                    default_mode: Some(if self.pod_fs_group { 0o440 } else { 0o444 }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        volumes
    }
}
