//! The node's HTTP API: `/health`, `/ready`, `/connections`, `/peers`, `/stores`, `/transfers`,
//! `/overview`, `/events`, `/metrics`, and the page at `/`.

pub mod conflicts;
pub mod live;
pub mod overview;
pub mod page;
pub mod state;
pub mod transfers;

use std::{net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use tokio::net::TcpListener;

pub use state::{ApiState, RunningCheck, StoresSource};
use state::{readiness, stopped};

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
        .route("/drain", get(drain))
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

async fn health(State(state): State<ApiState>) -> Response {
    let Ok(snapshot) = state.node.snapshot().await else {
        return stopped();
    };
    if !(state.replication_running)() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "stopped", "error": "the replication task has stopped"})),
        )
            .into_response();
    }
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
        "targetPeers": snapshot.target_peers,
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

async fn drain(State(state): State<ApiState>) -> Response {
    Json((state.drain)()).into_response()
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
    use std::{sync::Arc, time::Instant};

    use prometheus_client::registry::Registry;

    use super::*;

    #[tokio::test]
    async fn health_fails_once_the_replication_task_stopped() {
        use axum::body::Body;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tower::ServiceExt;

        let mut registry = Registry::default();
        let (node, _task) = crate::node::start(
            crate::node::NodeConfig::loopback(
                libp2p::identity::Keypair::generate_ed25519(),
                "health",
            ),
            &mut registry,
        )
        .unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let check = running.clone();
        let app = router(ApiState {
            node,
            registry: Arc::new(registry),
            stores: Arc::new(Vec::new),
            drain: Arc::new(|| serde_json::Value::Null),
            replication_running: Arc::new(move || check.load(Ordering::Relaxed)),
            started: Instant::now(),
            identity_loaded: true,
            state_dir: std::env::temp_dir(),
            live: Arc::default(),
        });
        let get = || {
            axum::http::Request::get("/health")
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            app.clone().oneshot(get()).await.unwrap().status(),
            StatusCode::OK
        );
        running.store(false, Ordering::Relaxed);
        let response = app.oneshot(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("replication task"));
    }
}
