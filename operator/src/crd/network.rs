//! The `DigNetwork` custom resource: a whole DIG Network (bootstrap registry and nodes) in one
//! namespace.

// Each `printcolumn(...)` repeats the same keys, which this lint mistakes for duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ClaimRetentionPolicy, Exposure, Scheduling, SecretKeyRef, Storage};
use super::route53::{HealthCheckSpec, Route53Spec};
use super::status::DigNetworkStatus;

/// Pattern of a network id: the one rule of `dig_core::network_id` (docs/DESIGN.md §9).
pub use dig_core::network_id::NETWORK_ID_PATTERN;

/// A DIG Network: the bootstrap registry, a StatefulSet of nodes that replicate `.dig` stores, and
/// the Services, DNS records and monitoring around them.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "dig.net",
    version = "v1alpha1",
    kind = "DigNetwork",
    namespaced,
    status = "DigNetworkStatus",
    scale(
        spec_replicas_path = ".spec.nodes.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    shortname = "dignet",
    category = "dig",
    doc = "A DIG Network: bootstrap registry, nodes, Services, DNS and monitoring in one namespace.",
    validation = Rule::new("has(self.spec.networkId) || self.metadata.name.matches('^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$')").message("without spec.networkId the name is the network id: 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit; rename the DigNetwork or set spec.networkId"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the network is ready"
    ),
    printcolumn(
        name = "Nodes",
        type_ = "integer",
        json_path = ".status.readyNodes",
        description = "Nodes whose pod is ready"
    ),
    printcolumn(
        name = "Peers",
        type_ = "integer",
        json_path = ".status.peers",
        description = "Peers registered with the bootstrap registry"
    ),
    printcolumn(
        name = "Stores",
        type_ = "integer",
        json_path = ".status.stores",
        description = "Stores known to the bootstrap registry"
    ),
    printcolumn(
        name = "Hostname",
        type_ = "string",
        json_path = ".status.bootstrapEndpoint.hostname",
        description = "Public hostname of the bootstrap registry"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.networkId) == has(oldSelf.networkId) && (!has(self.networkId) || self.networkId == oldSelf.networkId)").message("networkId is immutable: nodes of different network ids cannot talk to each other").field_path(".networkId"),
    validation = Rule::new("!has(self.replication) || !has(self.replication.writePolicy) || self.replication.writePolicy != 'open' || has(self.privateNetwork)").message("replication.writePolicy open (any member may change any store) needs privateNetwork").field_path(".replication.writePolicy")
)]
pub struct DigNetworkSpec {
    /// Id of the network, part of every P2P protocol id; nodes of another network id are refused.
    /// Immutable. Defaults to the name of the DigNetwork.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(NETWORK_ID_PATTERN))]
    pub network_id: Option<String>,
    /// The bootstrap registry (dig-bootstrap) that nodes register with and discover peers from.
    #[serde(default)]
    pub bootstrap: BootstrapSpec,
    /// The nodes (dig-sidecar) that hold and replicate the `.dig` stores.
    #[serde(default)]
    pub nodes: NodesSpec,
    /// Makes the network a libp2p private network: only peers with the same pre-shared key connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_network: Option<PrivateNetwork>,
    /// How changes replicate between nodes.
    #[serde(default)]
    pub replication: Replication,
    /// Prometheus monitoring of the bootstrap registry and the nodes.
    #[serde(default)]
    pub monitoring: Monitoring,
    /// Public DNS names of the bootstrap registry, published by external-dns or written into
    /// Route53 by the operator, and the Route53 health checks and CloudWatch alarms on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSpec>,
}

/// The bootstrap registry Deployment and its Service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    /// Number of registry replicas; they federate with each other through a headless Service.
    #[serde(default = "default_bootstrap_replicas")]
    #[schemars(range(min = 1, max = 15))]
    pub replicas: i32,
    /// Container image of dig-bootstrap; the operator's `--default-bootstrap-image` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// HTTP port of the registry.
    #[serde(default = "default_bootstrap_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Seconds a peer record lives without a heartbeat (`--peer-ttl`).
    #[serde(default = "default_peer_ttl")]
    #[schemars(range(min = 10, max = 86400))]
    pub peer_ttl_seconds: i64,
    /// Compute resources of the registry container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The Service in front of the registry.
    #[serde(default)]
    pub service: BootstrapService,
    /// Where the registry pods may run.
    #[serde(default, flatten)]
    pub scheduling: Scheduling,
}

impl Default for BootstrapSpec {
    fn default() -> Self {
        Self {
            replicas: default_bootstrap_replicas(),
            image: None,
            port: default_bootstrap_port(),
            peer_ttl_seconds: default_peer_ttl(),
            resources: None,
            service: BootstrapService::default(),
            scheduling: Scheduling::default(),
        }
    }
}

fn default_bootstrap_replicas() -> i32 {
    2
}
fn default_bootstrap_port() -> i32 {
    3000
}
fn default_peer_ttl() -> i64 {
    180
}

/// Type of the bootstrap Service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// A cloud load balancer (and, with `dns`, a public hostname).
    LoadBalancer,
    /// A port on every node.
    NodePort,
}

impl ServiceType {
    /// The Kubernetes `Service.spec.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::LoadBalancer => "LoadBalancer",
            Self::NodePort => "NodePort",
        }
    }
}

/// The Service in front of the bootstrap registry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapService {
    /// `ClusterIP` (default), `LoadBalancer` or `NodePort`.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Extra annotations of the Service (e.g. cloud load balancer settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The node StatefulSet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodesSpec {
    /// Number of nodes; every node holds every store. Also set through the scale subresource
    /// (`kubectl scale dignetwork NAME --replicas N`, or a HorizontalPodAutoscaler).
    #[serde(default = "default_node_replicas")]
    #[schemars(range(min = 0, max = 500))]
    pub replicas: i32,
    /// Container image of dig-sidecar; the operator's `--default-sidecar-image` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// libp2p port (TCP and QUIC/UDP).
    #[serde(default = "default_p2p_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub p2p_port: i32,
    /// HTTP API port (`/health`, `/ready`, `/metrics`).
    #[serde(default = "default_api_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub api_port: i32,
    /// The volume of each node (a PVC per pod).
    #[serde(default)]
    pub storage: Storage,
    /// Whether the nodes' claims are kept (`Retain`, default) or deleted (`Delete`) when the
    /// network is deleted (`whenDeleted`) or scaled down (`whenScaled`).
    #[serde(default)]
    pub persistent_volume_claim_retention_policy: ClaimRetentionPolicy,
    /// How long a scale-down waits for a leaving node to drain (every store it holds listed by
    /// another live node) before it stops the node anyway, e.g. `10m`, `1h30m`, `90s` (0s to 24h).
    /// Nodes leave one at a time, highest ordinal first.
    #[serde(default = "default_drain_timeout")]
    #[schemars(pattern(r"^([0-9]+(h|m|s))+$"))]
    pub drain_timeout: String,
    /// How nodes find each other.
    #[serde(default)]
    pub discovery: Discovery,
    /// Per-pod Services for peers outside the cluster.
    #[serde(default)]
    pub exposure: Exposure,
    /// Compute resources of the node container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where the node pods may run.
    #[serde(default, flatten)]
    pub scheduling: Scheduling,
}

impl Default for NodesSpec {
    fn default() -> Self {
        Self {
            replicas: default_node_replicas(),
            image: None,
            p2p_port: default_p2p_port(),
            api_port: default_api_port(),
            storage: Storage::default(),
            persistent_volume_claim_retention_policy: ClaimRetentionPolicy::default(),
            drain_timeout: default_drain_timeout(),
            discovery: Discovery::default(),
            exposure: Exposure::default(),
            resources: None,
            scheduling: Scheduling::default(),
        }
    }
}

fn default_drain_timeout() -> String {
    "10m".to_string()
}

fn default_node_replicas() -> i32 {
    3
}
/// Default libp2p port of a node.
pub fn default_p2p_port() -> i32 {
    4001
}
/// Default HTTP API port of a node.
pub fn default_api_port() -> i32 {
    8080
}

/// Discovery sources of the nodes. The network's own bootstrap registry is always used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    /// mDNS on the pod network (off by default: most pod networks drop multicast).
    #[serde(default)]
    pub mdns: bool,
    /// Kademlia DHT between the nodes.
    #[serde(default = "default_true")]
    pub dht: bool,
    /// Extra bootstrap registries (e.g. the registry of another region), `http://` or `https://`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_urls: Vec<String>,
    /// Connections each node keeps (`dig-sidecar --target-peers`; the node's default, 24, when
    /// unset): half random, half lowest round-trip time, rotated slowly. Announcements reach every
    /// node through the gossip mesh, so no node needs a connection to every other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub target_peers: Option<u32>,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            mdns: false,
            dht: true,
            bootstrap_urls: Vec::new(),
            target_peers: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// A libp2p private network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivateNetwork {
    /// Secret key holding the pre-shared key file (libp2p `swarm.key` format).
    pub psk_secret_ref: SecretKeyRef,
}

/// Pattern of a writer: an ed25519 libp2p peer id in base58 (`12D3KooW` and 44 more characters).
pub const WRITER_PATTERN: &str = r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$";

/// Replication rules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.writePolicy) || self.writePolicy != 'writers' || (has(self.writers) && size(self.writers) > 0)").message("replication.writePolicy writers needs at least one writer").field_path(".writers")
)]
pub struct Replication {
    /// A store deleted on one node is deleted everywhere (a tombstone). Off: a deleted store is
    /// fetched again, every node mirrors the network.
    #[serde(default)]
    pub propagate_deletes: bool,
    /// Who may write stores. `owner` (default): any node may create a store; the node that
    /// created it (its owner) and the nodes in `writers` may change or delete it. `writers`: only
    /// the nodes in `writers` create, change or delete stores. `open`: any member changes any
    /// store (needs privateNetwork). Every version is signed by the node that made it; nodes
    /// drop versions this policy does not allow.
    #[serde(default)]
    pub write_policy: WritePolicy,
    /// Peer ids (`12D3KooW...`, see `dig-sidecar identity`) of nodes that may change or delete
    /// any store, such as a publisher's node. Passed to every node as `--writer`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 256),
        inner(length(max = 52), pattern(r"^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$"))
    )]
    pub writers: Vec<String>,
}

/// Who may write stores (`dig-sidecar run --write-policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WritePolicy {
    /// Anyone creates; the owner and the writers change.
    #[default]
    Owner,
    /// Only the writers create, change or delete.
    Writers,
    /// Any member changes any store (private networks only).
    Open,
}

impl WritePolicy {
    /// The `--write-policy` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Writers => "writers",
            Self::Open => "open",
        }
    }
}

/// Prometheus monitoring.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Monitoring {
    /// Scrape the network with the Prometheus operator: ServiceMonitors `N-bootstrap` (the
    /// registry) and `N-node` (the StatefulSet nodes), PodMonitors `N-injected` (pods with an
    /// injected sidecar) and `N-dignodes` (the DigNodes' pods), every node under job `N-node`.
    /// Each is created when the cluster serves its `monitoring.coreos.com/v1` kind; a missing one
    /// is a Warning event, never a failure.
    #[serde(default)]
    pub service_monitor: bool,
    /// Extra labels of the ServiceMonitors and PodMonitors (e.g. `release: <prometheus release>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// How DNS records are requested from external-dns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DnsMode {
    /// Annotations on the bootstrap Service.
    #[default]
    Annotations,
    /// A `DNSEndpoint` object (externaldns.k8s.io/v1alpha1), with a TXT `_dnsaddr` record.
    DnsEndpoint,
}

/// Route53 failover role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Failover {
    /// Serves while healthy.
    Primary,
    /// Serves when the primary is unhealthy.
    Secondary,
}

impl Failover {
    /// The external-dns annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "PRIMARY",
            Self::Secondary => "SECONDARY",
        }
    }
}

/// Public DNS names of the bootstrap registry: through external-dns (`hostnames`), or written
/// into Route53 by the operator (`route53`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.weight) || has(self.setIdentifier)").message("dns.weight needs dns.setIdentifier").field_path(".weight"),
    validation = Rule::new("!has(self.failover) || has(self.setIdentifier)").message("dns.failover needs dns.setIdentifier").field_path(".failover"),
    validation = Rule::new("!(has(self.weight) && has(self.failover))").message("dns.weight and dns.failover are different routing policies: set one"),
    validation = Rule::new("self.mode != 'dnsEndpoint' || size(self.hostnames) > 0").message("dns.mode dnsEndpoint needs at least one hostname").field_path(".hostnames"),
    validation = Rule::new("!has(self.route53) || self.route53.hostnames.all(h, !(h in self.hostnames))").message("a hostname is either in dns.hostnames (external-dns) or in dns.route53.hostnames, not both").field_path(".route53.hostnames"),
    validation = Rule::new("!has(self.healthCheckId) || (!has(self.healthCheck) && !has(self.route53))").message("dns.healthCheckId names a health check made by hand: it cannot go with dns.healthCheck or dns.route53, whose health checks the operator makes").field_path(".healthCheckId")
)]
pub struct DnsSpec {
    /// Hostnames of the bootstrap registry (e.g. `bootstrap.dig.example.com`).
    #[serde(default)]
    #[schemars(
        length(max = 16),
        inner(pattern(
            r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$"
        ))
    )]
    pub hostnames: Vec<String>,
    /// TTL of the records, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub ttl: Option<i64>,
    /// Route53 set identifier, needed by weighted and failover records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub set_identifier: Option<String>,
    /// Route53 weight of this record set (needs `setIdentifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 255))]
    pub weight: Option<i64>,
    /// Route53 failover role, `PRIMARY` or `SECONDARY` (needs `setIdentifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// Id of a Route53 health check made by hand, attached to the external-dns records (see
    /// `healthCheck` for one the operator makes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
    /// Annotation prefix external-dns reads. Unset: both `external-dns.alpha.kubernetes.io/` and
    /// `external-dns.kubernetes.io/` (external-dns 0.22 changed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/$"))]
    pub annotation_prefix: Option<String>,
    /// `annotations` (default) or `dnsEndpoint`: how `hostnames` are handed to external-dns.
    #[serde(default)]
    pub mode: DnsMode,
    /// Hostnames the operator writes into Route53 itself, with the AWS SDK (`route53` mode).
    /// They use `ttl`, `setIdentifier`, `weight` and `failover` like the external-dns ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53: Option<Route53Spec>,
    /// Route53 health checks (and CloudWatch alarms) made by the operator: always for
    /// `route53.hostnames`, and, when set, for the external-dns hostnames too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
}
