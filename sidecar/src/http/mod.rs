//! The node's HTTP API: `/health`, `/ready`, `/connections`, `/peers`, `/stores`, `/transfers`,
//! `/overview`, `/events`, `/metrics`, and the page at `/`.

pub mod conflicts;
pub mod live;
pub mod overview;
pub mod page;
pub mod transfers;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::node::{NodeHandle, NodeSnapshot};

/// The store list of `/stores` (the replication engine's view).
pub type StoresSource = Arc<dyn Fn() -> Vec<Value> + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    pub node: NodeHandle,
    pub registry: Arc<Registry>,
    pub stores: StoresSource,
    pub started: Instant,
    /// The identity key was loaded or created (checked by `/ready`).
    pub identity_loaded: bool,
    /// The node's state folder (its `conflicts/` are listed by `/overview`).
    pub state_dir: PathBuf,
    /// Transfer rates and open event streams.
    pub live: Arc<live::LiveViews>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("binding the HTTP API to {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving the HTTP API on {address}: {source}")]
    Serve {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(page::page))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/connections", get(connections))
        .route("/peers", get(peers))
        .route("/stores", get(stores))
        .route("/transfers", get(transfers))
        .route("/overview", get(overview::overview))
        .route("/events", get(overview::events))
        .route("/metrics", get(metrics))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .with_state(state)
}

/// Binds the API; the returned future serves until `shutdown` completes.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, ApiError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ApiError::Bind { address, source })
}

pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let address = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ApiError::Serve { address, source })
}

fn stopped() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "stopped", "error": "the node's event loop has stopped"})),
    )
        .into_response()
}

async fn health(State(state): State<ApiState>) -> Response {
    let Ok(snapshot) = state.node.snapshot().await else {
        return stopped();
    };
    Json(json!({
        "status": "ok",
        "peerId": snapshot.peer_id.to_string(),
        "networkId": snapshot.network_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": state.started.elapsed().as_secs(),
        "peerCount": snapshot.connected.len(),
    }))
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

async fn ready(State(state): State<ApiState>) -> Response {
    let Ok(snapshot) = state.node.snapshot().await else {
        return stopped();
    };
    let (ready, body) = readiness(state.identity_loaded, &snapshot);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn connections(State(state): State<ApiState>) -> Response {
    let Ok(snapshot) = state.node.snapshot().await else {
        return stopped();
    };
    Json(json!({
        "peerId": snapshot.peer_id.to_string(),
        "networkId": snapshot.network_id,
        "listeningAddresses": snapshot.listen_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "announcedAddresses": snapshot.dialable_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "externalAddresses": snapshot.external_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "connectedPeers": snapshot.connected,
        "peerCount": snapshot.connected.len(),
        "discoveredPeers": snapshot.discovered,
        "discoveredPeerCount": snapshot.discovered.len(),
        "discovery": snapshot.discovery,
        "bannedPeers": snapshot.banned,
    }))
    .into_response()
}

async fn peers(State(state): State<ApiState>) -> Response {
    let Ok(snapshot) = state.node.snapshot().await else {
        return stopped();
    };
    Json(json!({
        "peers": snapshot.connected,
        "count": snapshot.connected.len(),
    }))
    .into_response()
}

async fn stores(State(state): State<ApiState>) -> Response {
    let stores = (state.stores)();
    Json(json!({ "count": stores.len(), "stores": stores })).into_response()
}

async fn transfers(State(state): State<ApiState>) -> Response {
    let transfers = state.live.transfers(&(state.stores)());
    Json(json!({ "count": transfers.len(), "transfers": transfers })).into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {error}"),
        )
            .into_response(),
    }
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
