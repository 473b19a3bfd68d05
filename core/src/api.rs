//! Request and response types of the REST API: what `curl` users and the client see.
//! JSON names are camelCase, as in the original design.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{SignedPeerRecord, SignedUnregister, StoreEntry};

/// Default number of peers `/peers` returns when `limit` is not given.
pub const DEFAULT_PEERS_LIMIT: usize = 100;
/// Largest `limit` `/peers` and `/peers/store/{store}` accept; larger values are capped.
pub const MAX_PEERS_LIMIT: usize = 1000;
/// Default and largest page of `/records`.
pub const DEFAULT_RECORDS_LIMIT: usize = 1000;
pub const MAX_RECORDS_LIMIT: usize = 5000;

/// Query of `GET /peers`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(rename_all = "camelCase")]
pub struct PeersQuery {
    /// Most peers to return (default 100, capped at 1000).
    pub limit: Option<usize>,
    /// Only peers of this network id.
    pub network: Option<String>,
    /// Include each peer's stores (default false).
    #[serde(default)]
    pub include_stores: bool,
}

impl PeersQuery {
    /// The query string pairs, as the server parses them.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        if let Some(network) = &self.network {
            pairs.push(("network", network.clone()));
        }
        if self.include_stores {
            pairs.push(("includeStores", "true".to_owned()));
        }
        pairs
    }
}

/// Query of `GET /peers/store/{store}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(rename_all = "camelCase")]
pub struct StorePeersQuery {
    /// Most peers to return (default 100, capped at 1000).
    pub limit: Option<usize>,
    /// Only peers of this network id.
    pub network: Option<String>,
}

/// One live peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    pub peer_id: String,
    pub network_id: String,
    /// Dialable multiaddrs without `/p2p`; append `/p2p/<peerId>` to dial.
    pub addresses: Vec<String>,
    pub agent_version: String,
    /// Unix ms when this server last accepted the peer's record.
    pub last_seen: u64,
    /// Unix ms the peer signed its record.
    pub timestamp_ms: u64,
    /// Unix ms when the record expires unless refreshed.
    pub expires_at: u64,
    pub store_count: usize,
    /// The peer's stores: with `includeStores=true` on `/peers`; on `/peers/store/{store}` the
    /// entry of that store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stores: Option<Vec<StoreEntry>>,
}

/// Answer of `GET /peers` and `GET /peers/store/{store}`: live peers, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PeersResponse {
    pub peers: Vec<PeerInfo>,
    /// Number of peers in `peers`.
    pub count: usize,
    /// Number of live peers matching the filter (may exceed `count` when limited).
    pub total: usize,
    /// The store asked for, on `/peers/store/{store}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// Answer of `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthResponse {
    /// `ok` while serving.
    pub status: String,
    pub version: String,
    /// Live peers.
    pub peers: u64,
    pub uptime_seconds: u64,
}

/// Answer of `GET /ready`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReadyResponse {
    /// `ready` (200), `draining` (503: shutting down) or `syncing` (503: siblings not pulled yet).
    pub status: String,
    /// Sibling URLs (`--peer-bootstrap`) not pulled in full yet, while `syncing`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub siblings: Vec<String>,
}

/// Answer of `GET /stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatsResponse {
    /// Live (unexpired) peers.
    pub total_peers: u64,
    /// Peers that refreshed their record within the active window (`--active-window`).
    pub active_peers: u64,
    /// Distinct store names held by live peers.
    pub total_stores: u64,
    pub average_stores_per_peer: f64,
    /// Accepted registrations (first registrations and refreshes) since start.
    pub total_registrations: u64,
    pub uptime_seconds: u64,
    /// Live peers per network id.
    pub networks: BTreeMap<String, u64>,
    pub peer_ttl_seconds: u64,
    pub max_peers: u64,
}

/// Answer of `POST /register`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// `registered` for a new peer, `refreshed` for a heartbeat.
    pub status: String,
    pub peer_id: String,
    /// Seconds until the record expires unless refreshed.
    pub ttl_seconds: u64,
    /// Unix ms when the record expires.
    pub expires_at: u64,
}

/// Answer of `POST /unregister`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UnregisterResponse {
    /// `unregistered`, or `notFound` when no record was held (the removal is still remembered).
    pub status: String,
    pub peer_id: String,
}

/// Replication of one store within a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StoreReplication {
    pub name: String,
    /// Live peers holding any version.
    pub replicas: u64,
    /// Highest lamport seen for the store.
    pub latest_lamport: u64,
    /// Peers holding the highest lamport.
    pub replicas_at_latest: u64,
    /// Distinct hashes announced at the highest lamport (more than 1 means a conflict in flight).
    pub hashes_at_latest: u64,
    /// Size of the latest version (of the first peer seen holding it).
    pub latest_size: u64,
}

/// Replication within one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NetworkTopology {
    pub network_id: String,
    pub peers: u64,
    /// Every store, by name.
    pub stores: Vec<StoreReplication>,
    /// Stores whose latest version is held by fewer than all live peers of the network.
    pub under_replicated: Vec<String>,
}

/// Answer of `GET /topology`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TopologyResponse {
    pub total_peers: u64,
    pub networks: Vec<NetworkTopology>,
    /// Live peers per agent version.
    pub peers_by_version: BTreeMap<String, u64>,
}

/// Query of `GET /records` (federation feed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(rename_all = "camelCase")]
pub struct RecordsQuery {
    /// Return changes after this cursor (the `nextCursor` of the previous page). 0 or absent: all.
    pub after: Option<u64>,
    /// Page size (default 1000, capped at 5000).
    pub limit: Option<usize>,
}

/// Answer of `GET /records`: signed records and removals, in the order this server accepted
/// them, so a sibling can pull only what changed. Each entry verifies on its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RecordsResponse {
    /// Identifies this server process; when it changes, cursors restart from 0.
    pub epoch: String,
    pub records: Vec<SignedPeerRecord>,
    pub removals: Vec<SignedUnregister>,
    /// Cursor for the next page.
    pub next_cursor: u64,
    /// True when more changes follow `nextCursor`.
    pub more: bool,
}

/// Body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_field`, `stale_timestamp`, `rate_limited`.
    pub error: String,
    /// Human-readable explanation naming the field and the value at fault.
    pub detail: String,
    /// JSON path or parameter name at fault, e.g. `record.stores[0].name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
