//! Route handlers. Each parses its input with [`super::extract`], so every bad input is a JSON 4xx.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use dig_core::clock::now_ms;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::error::ApiError;
use super::extract::{PEERS_LIMIT_CAP, QueryParams, body_bytes, json_body};
use super::readiness::ReadyState;
use super::state::{AppState, Reuse};
use crate::api::{
    DEFAULT_PEERS_LIMIT, DEFAULT_RECORDS_LIMIT, ErrorBody, HealthResponse, MAX_RECORDS_LIMIT,
    PeersQuery, PeersResponse, ReadyResponse, RecordsQuery, RecordsResponse, RegisterResponse,
    StatsResponse, StorePeersQuery, TopologyResponse, UnregisterResponse,
};
use crate::metrics::{Metrics, RegisterResult, ResultLabel, ResultLabels, UnregisterResult};
use crate::record::{STORE_NAME_PATTERN, SignedPeerRecord, SignedUnregister, is_valid_store_name};
use crate::registry::{Removed, Source, Upserted};

/// Every route served, as (path template, method). The OpenAPI test checks each is documented.
pub const ROUTES: &[(&str, &str)] = &[
    ("/", "GET"),
    ("/health", "GET"),
    ("/ready", "GET"),
    ("/stats", "GET"),
    ("/register", "POST"),
    ("/unregister", "POST"),
    ("/peers", "GET"),
    ("/peers/store/{store}", "GET"),
    ("/topology", "GET"),
    ("/records", "GET"),
    ("/federation", "GET"),
    ("/metrics", "GET"),
    ("/openapi.json", "GET"),
];

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Liveness and a summary.
#[utoipa::path(get, path = "/health", tag = "registry",
    responses((status = 200, description = "Serving", body = HealthResponse)))]
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    let peers = state.registry().read().len() as u64;
    Json(HealthResponse {
        status: "ok".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        peers,
        uptime_seconds: state.uptime_seconds(),
    })
}

/// Whether to send this server traffic: 503 while it drains after SIGTERM, or before it pulled
/// each sibling once (at most two federation intervals after start).
#[utoipa::path(get, path = "/ready", tag = "registry",
    responses(
        (status = 200, description = "Ready for traffic", body = ReadyResponse),
        (status = 503, description = "Draining, or siblings not pulled yet", body = ReadyResponse),
    ))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let (code, body) = match state.readiness().state(std::time::Instant::now()) {
        ReadyState::Ready => (
            StatusCode::OK,
            ReadyResponse {
                status: "ready".to_owned(),
                siblings: Vec::new(),
            },
        ),
        ReadyState::Draining => (
            StatusCode::SERVICE_UNAVAILABLE,
            ReadyResponse {
                status: "draining".to_owned(),
                siblings: Vec::new(),
            },
        ),
        ReadyState::Syncing { siblings } => (
            StatusCode::SERVICE_UNAVAILABLE,
            ReadyResponse {
                status: "syncing".to_owned(),
                siblings,
            },
        ),
    };
    (code, Json(body)).into_response()
}

/// Totals: peers, active peers, stores, registrations, uptime.
#[utoipa::path(get, path = "/stats", tag = "registry",
    responses(
        (status = 200, description = "Totals", body = StatsResponse),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
    ))]
pub async fn stats(State(state): State<AppState>) -> Response {
    // Counting live and active peers walks the records: render once per change (at most 1 s old).
    let uptime_seconds = state.uptime_seconds();
    let body = state.rendered_view("stats".to_owned(), |registry| {
        registry.stats(now_ms(), uptime_seconds)
    });
    json_response(body)
}

/// Registers or refreshes a signed peer record (also the heartbeat).
#[utoipa::path(post, path = "/register", tag = "registry", request_body = SignedPeerRecord,
    responses(
        (status = 200, description = "Accepted", body = RegisterResponse),
        (status = 400, description = "Malformed JSON, a field out of bounds, or a stale/future timestamp", body = ErrorBody),
        (status = 401, description = "Signature does not verify", body = ErrorBody),
        (status = 403, description = "Key does not match peerId, or network not served", body = ErrorBody),
        (status = 409, description = "Timestamp not newer than the record held (replay)", body = ErrorBody),
        (status = 413, description = "Body larger than --max-body-bytes", body = ErrorBody),
        (status = 408, description = "Body not received within --request-timeout", body = ErrorBody),
        (status = 429, description = "Rate limited or registry full (--max-peers); see Retry-After", body = ErrorBody),
        (status = 507, description = "No memory left for the record (--max-state-bytes); see Retry-After", body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<RegisterResponse> {
    counted(
        &state.metrics().registrations,
        RegisterResult::Rejected,
        register_signed(&state, body),
    )
}

fn register_signed(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<(RegisterResponse, RegisterResult), ApiError> {
    let signed: SignedPeerRecord = json_body(&body_bytes(body, state.max_body_bytes())?)?;
    let outcome = state.accept_record(&signed, Source::Direct)?;
    let result = match outcome {
        Upserted::Created { .. } => RegisterResult::Registered,
        Upserted::Refreshed { .. } => RegisterResult::Refreshed,
    };
    let ttl_ms = state.registry().read().config().ttl_ms;
    let response = RegisterResponse {
        status: result.as_str().to_owned(),
        peer_id: signed.record.peer_id,
        ttl_seconds: ttl_ms / 1000,
        expires_at: outcome.expires_at_ms(),
    };
    Ok((response, result))
}

/// Removes the signer's own record.
#[utoipa::path(post, path = "/unregister", tag = "registry", request_body = SignedUnregister,
    responses(
        (status = 200, description = "Removed, or no record was held", body = UnregisterResponse),
        (status = 400, description = "Malformed request or stale timestamp", body = ErrorBody),
        (status = 401, description = "Signature does not verify", body = ErrorBody),
        (status = 403, description = "Key does not match peerId", body = ErrorBody),
        (status = 408, description = "Body not received within --request-timeout", body = ErrorBody),
        (status = 409, description = "Not newer than the record held", body = ErrorBody),
        (status = 413, description = "Body larger than --max-body-bytes", body = ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
    ))]
pub async fn unregister(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<UnregisterResponse> {
    counted(
        &state.metrics().unregistrations,
        UnregisterResult::Rejected,
        unregister_signed(&state, body),
    )
}

fn unregister_signed(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<(UnregisterResponse, UnregisterResult), ApiError> {
    let signed: SignedUnregister = json_body(&body_bytes(body, state.max_body_bytes())?)?;
    let result = match state.accept_removal(&signed, Source::Direct)? {
        Removed::Removed => UnregisterResult::Unregistered,
        Removed::NotFound => UnregisterResult::NotFound,
    };
    let response = UnregisterResponse {
        status: result.as_str().to_owned(),
        peer_id: signed.request.peer_id,
    };
    Ok((response, result))
}

/// Counts the result of a signed request, or the refusal's error code, in `family`.
fn counted<T, R: ResultLabel>(
    family: &Family<ResultLabels<R>, Counter>,
    rejected: fn(&'static str) -> R,
    outcome: Result<(T, R), ApiError>,
) -> ApiResult<T> {
    match outcome {
        Ok((response, result)) => {
            Metrics::count_result(family, result);
            Ok(Json(response))
        }
        Err(error) => {
            Metrics::count_result(family, rejected(error.error));
            Err(error)
        }
    }
}

/// Live peers, newest first.
#[utoipa::path(get, path = "/peers", tag = "registry", params(PeersQuery),
    responses(
        (status = 200, description = "Live peers", body = PeersResponse),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
    ))]
pub async fn peers(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["limit", "network", "includeStores"])?;
    let limit = params.limit("limit", DEFAULT_PEERS_LIMIT, PEERS_LIMIT_CAP)?;
    let network = params.network("network")?;
    let include_stores = params.flag("includeStores")?;
    let key = format!("peers|{network:?}|{limit}|{include_stores}");
    let body = state.rendered_view(key, |registry| {
        registry.peers(network, limit, include_stores, now_ms())
    });
    Ok(json_response(body))
}

/// Live peers holding a store, newest first, each with its entry of that store.
#[utoipa::path(get, path = "/peers/store/{store}", tag = "registry",
    params(("store" = String, Path, description = "Store name"), StorePeersQuery),
    responses(
        (status = 200, description = "Peers holding the store", body = PeersResponse),
        (status = 400, description = "Invalid store name or query parameter", body = ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
    ))]
pub async fn peers_with_store(
    State(state): State<AppState>,
    store: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let Path(store) = store.map_err(|e| {
        ApiError::bad_parameter("store", format!("store path segment is invalid: {e}"))
    })?;
    if !is_valid_store_name(&store) {
        let shown: String = store.chars().take(140).collect();
        return Err(ApiError::bad_parameter(
            "store",
            format!("store {shown:?} does not match {STORE_NAME_PATTERN}"),
        ));
    }
    let params = QueryParams::parse(query.as_deref(), &["limit", "network"])?;
    let limit = params.limit("limit", DEFAULT_PEERS_LIMIT, PEERS_LIMIT_CAP)?;
    let network = params.network("network")?;
    let key = format!("store|{store}|{network:?}|{limit}");
    let body = state.rendered_view(key, |registry| {
        registry.peers_with_store(&store, network, limit, now_ms())
    });
    Ok(json_response(body))
}

/// Replication per store and peers per agent version.
#[utoipa::path(get, path = "/topology", tag = "registry",
    responses(
        (status = 200, description = "Replication view", body = TopologyResponse),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
    ))]
pub async fn topology(State(state): State<AppState>) -> Response {
    let body = state.rendered_view("topology".to_owned(), |registry| {
        registry.topology(now_ms())
    });
    json_response(body)
}

/// The siblings this server pulls records from (`--peer-bootstrap`) and how their pulls went.
#[utoipa::path(get, path = "/federation", tag = "federation",
    responses(
        (status = 200, description = "Federation state, one entry per sibling", body = super::federation_status::FederationResponse),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
    ))]
pub async fn federation(
    State(state): State<AppState>,
) -> Json<super::federation_status::FederationResponse> {
    Json(state.federation().response())
}

/// The network page: networks, peers, replicas per store, under-replicated stores, federation.
#[utoipa::path(get, path = "/", tag = "operations",
    responses(
        (status = 200, description = "HTML page that reads /stats, /topology, /peers and /federation", content_type = "text/html"),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
    ))]
pub async fn page() -> Response {
    super::page::page()
}

/// Federation feed: signed records and removals in acceptance order, for sibling servers. A page
/// holds at most `limit` entries and about 1 MiB (always at least one entry), and may be up to a
/// second old.
#[utoipa::path(get, path = "/records", tag = "federation", params(RecordsQuery),
    responses(
        (status = 200, description = "One page of changes", body = RecordsResponse),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
    ))]
pub async fn records(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query.as_deref(), &["after", "limit"])?;
    let after = params.u64("after")?.unwrap_or(0);
    let limit = params
        .limit("limit", DEFAULT_RECORDS_LIMIT, MAX_RECORDS_LIMIT)?
        .max(1);
    // A cursor between two changes gives the page of the change before it: one rendering
    // serves every cursor in between, and is reused for a second whatever changes meanwhile.
    let body = state.cached_view(
        |registry| {
            let from = registry.settled_cursor(after);
            (format!("records|{from}|{limit}"), from)
        },
        |registry, from| registry.records_page(from, limit, now_ms(), state.epoch()),
        Reuse::For(RECORDS_REUSE),
    );
    Ok(json_response(body))
}

/// How long a rendered `/records` page is served again.
const RECORDS_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// Prometheus / OpenMetrics text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().encode(),
    )
        .into_response()
}

fn json_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

pub async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; see /openapi.json",
            uri.path()
        ),
    )
    .with_field("method")
}
