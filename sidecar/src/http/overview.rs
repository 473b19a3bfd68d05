//! Everything the node's page and `status --watch` show, in one answer: `GET /overview` once,
//! `GET /events` as server-sent events every second.

use std::{convert::Infallible, time::Duration};

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::stream::{self, Stream};
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;

use super::{ApiState, conflicts, live::MAX_EVENT_STREAMS};
use crate::node::NodeError;

/// Stores listed in an overview (those not synced first); `/stores` lists them all.
pub const OVERVIEW_MAX_STORES: usize = 500;
/// Conflicts listed in an overview.
pub const OVERVIEW_MAX_CONFLICTS: usize = 20;
/// Period of the server-sent events.
const EVENT_PERIOD: Duration = Duration::from_secs(1);
/// Order of the stores in an overview: those that need attention first.
fn state_rank(store: &Value) -> u8 {
    match store["state"].as_str() {
        Some("downloading") => 0,
        Some("error") => 1,
        Some("conflict") => 2,
        Some("pending") => 3,
        Some("synced") => 4,
        _ => 5,
    }
}

/// The overview of the node now.
pub async fn build(state: &ApiState) -> Result<Value, NodeError> {
    let snapshot = state.node.snapshot().await?;
    let mut stores = (state.stores)();
    let transfers = state.live.transfers(&stores);
    let mut states = serde_json::Map::new();
    for store in &stores {
        let key = store["state"].as_str().unwrap_or("unknown").to_string();
        let count = states.get(&key).and_then(Value::as_u64).unwrap_or(0);
        states.insert(key, json!(count + 1));
    }
    let store_count = stores.len();
    stores.sort_by(|a, b| {
        state_rank(a)
            .cmp(&state_rank(b))
            .then_with(|| a["name"].as_str().cmp(&b["name"].as_str()))
    });
    stores.truncate(OVERVIEW_MAX_STORES);
    let conflicts_dir = state.state_dir.join("conflicts");
    let conflicts = tokio::task::spawn_blocking(move || {
        conflicts::recent(&conflicts_dir, OVERVIEW_MAX_CONFLICTS)
    })
    .await
    .unwrap_or_default();
    let (ready, readiness) = super::readiness(state.identity_loaded, &snapshot);
    let addresses = |list: &[libp2p::Multiaddr]| -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    };
    Ok(json!({
        "node": {
            "peerId": snapshot.peer_id.to_string(),
            "networkId": snapshot.network_id,
            "version": env!("CARGO_PKG_VERSION"),
            "uptimeSeconds": state.started.elapsed().as_secs(),
            "ready": ready,
            "readyReasons": readiness["reasons"],
            "listeningAddresses": addresses(&snapshot.listen_addresses),
            "announcedAddresses": addresses(&snapshot.dialable_addresses),
        },
        "peers": snapshot.connected,
        "peerCount": snapshot.connected.len(),
        "discoveredPeerCount": snapshot.discovered.len(),
        "discovery": snapshot.discovery,
        "stores": stores,
        "storeCount": store_count,
        "storeStates": states,
        "transfers": transfers,
        "conflicts": conflicts,
        "bannedPeers": snapshot.banned,
        "generatedMs": jiff::Timestamp::now().as_millisecond(),
    }))
}

pub async fn overview(State(state): State<ApiState>) -> Response {
    match build(&state).await {
        Ok(overview) => Json(overview).into_response(),
        Err(_) => super::stopped(),
    }
}

/// `GET /events`: an `overview` event at once and every second after, until the client goes
/// away or the node stops (a last `stopped` event).
pub async fn events(State(state): State<ApiState>) -> Response {
    let Ok(permit) = state.live.stream_permit() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": "too_many_streams",
                "detail": format!(
                    "{MAX_EVENT_STREAMS} live pages are open on this node already; close one, or poll /overview"
                ),
            })),
        )
            .into_response();
    };
    Sse::new(event_stream(state, permit))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn event_stream(
    state: ApiState,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut ticker = tokio::time::interval(EVENT_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The permit lives as long as the stream: dropping the stream (the client left) frees it.
    stream::unfold(Some((state, ticker, permit)), |current| async move {
        let (state, mut ticker, permit) = current?;
        ticker.tick().await;
        match build(&state).await {
            Ok(overview) => {
                let event = Event::default()
                    .event("overview")
                    .data(overview.to_string());
                Some((Ok(event), Some((state, ticker, permit))))
            }
            Err(error) => {
                let event = Event::default().event("stopped").data(error.to_string());
                Some((Ok(event), None))
            }
        }
    })
}
