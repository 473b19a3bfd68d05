//! What the node knows about itself and its peers at one moment: the HTTP API's `/connections` and
//! `/peers`, readiness, and the addresses the registry client registers are all read from here.

use std::fmt;

use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

/// Where a peer's addresses came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DiscoverySource {
    Registry,
    Dht,
    Mdns,
    /// A `/dnsaddr` bootstrap's TXT records.
    Dns,
    /// The peer connected to us, or an operator dialed it; its identify addresses are kept.
    Direct,
}

impl DiscoverySource {
    pub fn label(self) -> &'static str {
        match self {
            DiscoverySource::Registry => "registry",
            DiscoverySource::Dht => "dht",
            DiscoverySource::Mdns => "mdns",
            DiscoverySource::Dns => "dns",
            DiscoverySource::Direct => "direct",
        }
    }
}

impl fmt::Display for DiscoverySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One exchange of the registry client with a bootstrap server.
#[derive(Clone, Debug)]
pub enum RegistryOutcome {
    Registered { server: String },
    RegisterFailed { server: String, error: String },
    Polled { server: String, peers: usize },
    PollFailed { server: String, error: String },
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedPeer {
    pub peer_id: String,
    /// The remote addresses of the open connections.
    pub addresses: Vec<String>,
    /// The addresses the peer says it listens on (identify).
    pub listen_addresses: Vec<String>,
    pub agent_version: Option<String>,
    pub protocol_version: Option<String>,
    pub direction: &'static str,
    pub connections: usize,
    /// Unix milliseconds of the first open connection.
    pub connected_since_ms: u64,
    pub latency_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredPeer {
    pub peer_id: String,
    pub addresses: Vec<String>,
    pub sources: Vec<DiscoverySource>,
    pub connected: bool,
    /// Failed dials since the last successful connection.
    pub failed_dials: u32,
}

/// A peer this node refuses (no connection, no dial) until `untilMs`, for example for serving
/// data that failed verification.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BannedPeer {
    pub peer_id: String,
    pub reason: String,
    /// Unix milliseconds of the ban.
    pub since_ms: u64,
    /// Unix milliseconds when the ban ends.
    pub until_ms: u64,
}

/// Per-source discovery figures for `/connections` and readiness.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStats {
    pub enabled: bool,
    /// The source has produced an answer at least once (a registry reply, a DHT routing entry,
    /// an mDNS response).
    pub answered: bool,
    /// Peers this source currently lists.
    pub peers: usize,
    pub successes: u64,
    pub failures: u64,
    pub last_success_ms: Option<u64>,
    pub last_error: Option<String>,
    /// Registry only: successful and failed registrations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registrations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_failures: Option<u64>,
}

/// AutoNAT figures for `/connections`: how this node's candidate addresses fared when peers dialed
/// them back (client), and how many dial-backs it did for peers (server).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutonatStats {
    pub enabled: bool,
    /// Addresses confirmed by a peer's dial-back and still held as external addresses.
    pub confirmed_addresses: Vec<String>,
    pub probes_succeeded: u64,
    pub probes_failed: u64,
    pub dial_backs_succeeded: u64,
    pub dial_backs_failed: u64,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryStats {
    pub registry: SourceStats,
    pub dht: SourceStats,
    pub mdns: SourceStats,
    /// `/dnsaddr` bootstraps (`--bootstrap /dnsaddr/<host>`).
    pub dns: SourceStats,
    /// Not a source of peers but of this node's own dialable addresses; not part of readiness.
    pub autonat: AutonatStats,
}

impl DiscoveryStats {
    pub fn any_enabled(&self) -> bool {
        self.registry.enabled || self.dht.enabled || self.mdns.enabled || self.dns.enabled
    }

    pub fn any_answered(&self) -> bool {
        [&self.registry, &self.dht, &self.mdns, &self.dns]
            .iter()
            .any(|source| source.enabled && source.answered)
    }
}

#[derive(Clone, Debug)]
pub struct NodeSnapshot {
    pub peer_id: PeerId,
    pub network_id: String,
    /// Concrete listen addresses (real bound ports).
    pub listen_addresses: Vec<Multiaddr>,
    /// Confirmed external addresses (includes `--announce`).
    pub external_addresses: Vec<Multiaddr>,
    /// What others can dial: what the registry record carries.
    pub dialable_addresses: Vec<Multiaddr>,
    pub connected: Vec<ConnectedPeer>,
    pub discovered: Vec<DiscoveredPeer>,
    pub discovery: DiscoveryStats,
    /// Peers banned now, most recent first.
    pub banned: Vec<BannedPeer>,
    /// `--target-peers`: the connections the node keeps by dialing (peers dialing it may add more).
    pub target_peers: usize,
}

impl NodeSnapshot {
    pub fn is_listening(&self) -> bool {
        !self.listen_addresses.is_empty()
    }
}
