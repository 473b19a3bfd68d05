//! What every handler of the node's HTTP API shares: the state, the readiness rule and the
//! answer when the node's event loop has stopped.

use std::{path::PathBuf, sync::Arc, time::Instant};

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use super::live::LiveViews;
use crate::node::{NodeHandle, NodeSnapshot};

/// The store list of `/stores` (the replication engine's view).
pub type StoresSource = Arc<dyn Fn() -> Vec<Value> + Send + Sync>;

/// The drain report of `/drain` (the replication engine's coverage while draining).
pub type DrainSource = Arc<dyn Fn() -> Value + Send + Sync>;

/// True while the replication task runs (`/health` fails once it stopped).
pub type RunningCheck = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    pub node: NodeHandle,
    pub registry: Arc<Registry>,
    pub stores: StoresSource,
    pub drain: DrainSource,
    pub replication_running: RunningCheck,
    pub started: Instant,
    /// The identity key was loaded or created (checked by `/ready`).
    pub identity_loaded: bool,
    /// The node's state folder (its `conflicts/` are listed by `/overview`).
    pub state_dir: PathBuf,
    /// Transfer rates and open event streams.
    pub live: Arc<LiveViews>,
}

pub fn stopped() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "stopped", "error": "the node's event loop has stopped"})),
    )
        .into_response()
}

/// The readiness rule: identity loaded, listening, and either no discovery source configured or
/// at least one that answered.
pub fn readiness(identity_loaded: bool, snapshot: &NodeSnapshot) -> (bool, Value) {
    let listening = snapshot.is_listening();
    let discovery_ok = !snapshot.discovery.any_enabled() || snapshot.discovery.any_answered();
    let ready = identity_loaded && listening && discovery_ok;
    let mut reasons = Vec::new();
    if !identity_loaded {
        reasons.push("identity not loaded");
    }
    if !listening {
        reasons.push("not listening on any P2P address yet");
    }
    if !discovery_ok {
        reasons.push("no discovery source has answered yet");
    }
    (
        ready,
        json!({
            "ready": ready,
            "status": if ready { "ready" } else { "not ready" },
            "checks": {
                "identity": identity_loaded,
                "listening": listening,
                "discovery": discovery_ok,
            },
            "reasons": reasons,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::DiscoveryStats;

    fn snapshot(listening: bool, discovery: DiscoveryStats) -> NodeSnapshot {
        NodeSnapshot {
            peer_id: libp2p::PeerId::random(),
            network_id: "test".into(),
            listen_addresses: if listening {
                vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()]
            } else {
                Vec::new()
            },
            external_addresses: Vec::new(),
            dialable_addresses: Vec::new(),
            connected: Vec::new(),
            discovered: Vec::new(),
            discovery,
            banned: Vec::new(),
            target_peers: 24,
        }
    }

    #[test]
    fn ready_without_discovery_once_listening() {
        let (ready, body) = readiness(true, &snapshot(true, DiscoveryStats::default()));
        assert!(ready, "{body}");
        let (ready, body) = readiness(true, &snapshot(false, DiscoveryStats::default()));
        assert!(!ready);
        assert_eq!(body["checks"]["listening"], false);
        assert!(!readiness(false, &snapshot(true, DiscoveryStats::default())).0);
    }

    #[test]
    fn ready_with_discovery_only_after_a_source_answered() {
        let mut discovery = DiscoveryStats::default();
        discovery.registry.enabled = true;
        discovery.dht.enabled = true;
        let (ready, body) = readiness(true, &snapshot(true, discovery.clone()));
        assert!(!ready);
        assert_eq!(body["checks"]["discovery"], false);
        assert_eq!(body["reasons"][0], "no discovery source has answered yet");
        // A disabled source that answered does not count.
        discovery.mdns.answered = true;
        assert!(!readiness(true, &snapshot(true, discovery.clone())).0);
        discovery.registry.answered = true;
        assert!(readiness(true, &snapshot(true, discovery)).0);
    }
}
