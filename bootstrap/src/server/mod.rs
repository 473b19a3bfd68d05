//! The HTTP(S) server: routes, layers, background tasks (expiry sweep, federation pulls), TLS and
//! graceful shutdown.

pub mod client_ip;
pub mod connection;
pub mod error;
pub mod extract;
pub mod federation;
pub mod federation_status;
pub mod limits;
pub mod listener;
pub mod middleware;
pub mod open_connections;
pub mod openapi;
pub mod page;
pub mod readiness;
pub mod routes;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use routes::ROUTES;
pub use state::AppState;

use crate::config::Config;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("loading TLS certificate {cert} and key {key}: {source}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving on {listen}: {source}")]
    Serve {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("sibling bootstrap client for {url}: {source}")]
    Sibling {
        url: String,
        #[source]
        source: crate::client::ClientError,
    },
    #[error("reading --peer-bootstrap-ca {path}: {source}")]
    SiblingCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The application: every route and layer, over `state`.
pub fn router(state: AppState) -> Router {
    let max_body = usize::try_from(state.max_body_bytes()).unwrap_or(usize::MAX);
    Router::new()
        .route("/", get(routes::page))
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/stats", get(routes::stats))
        .route("/register", post(routes::register))
        .route("/unregister", post(routes::unregister))
        .route("/peers", get(routes::peers))
        .route("/peers/store/{store}", get(routes::peers_with_store))
        .route("/topology", get(routes::topology))
        .route("/records", get(routes::records))
        .route("/federation", get(routes::federation))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi::serve))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::rate_limit,
        ))
        .route_layer(axum::middleware::from_fn(middleware::tag_route))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::record_metrics,
        ))
        .with_state(state)
}

/// Runs the server until `shutdown` completes, then drains connections for the grace period.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    dig_core::crypto::install_crypto_provider();
    let state = AppState::new(&config);
    let app = router(state.clone());

    let mut tasks = tokio::task::JoinSet::new();
    let sweep_state = state.clone();
    let sweep_interval = config.sweep_interval();
    tasks.spawn(async move {
        let mut ticker = tokio::time::interval(sweep_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let expired = sweep_state.sweep();
            if expired > 0 {
                tracing::debug!(expired, "expired peer records removed");
            }
        }
    });
    let ca_pem = match &config.peer_bootstrap_ca {
        Some(path) => Some(
            std::fs::read(path).map_err(|source| ServerError::SiblingCa {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    for url in &config.peer_bootstrap {
        let sibling =
            federation::SiblingSet::new(url, ca_pem.as_deref(), config.peer_bootstrap_max_bytes)
                .map_err(|source| ServerError::Sibling {
                    url: url.to_string(),
                    source,
                })?;
        tasks.spawn(federation::pull_forever(
            state.clone(),
            sibling,
            config.federation_interval(),
        ));
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Serve {
            listen: config.listen,
            source,
        })?;
    let delay = config.shutdown_delay();
    let draining_state = state.clone();
    // Not ready first, so load balancers stop sending; then `delay` more of serving before the
    // listener closes.
    let draining = async move {
        shutdown.await;
        draining_state.readiness().start_draining();
        if !delay.is_zero() {
            tracing::info!("not ready; serving {delay:?} more before closing the listener");
            tokio::time::sleep(delay).await;
        }
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            Some(
                listener::tls_config(cert, key).map_err(|source| ServerError::Tls {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?,
            )
        }
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Ok(address) = listener.local_addr() {
        tracing::info!("dig-bootstrap listening on {scheme}://{address}");
    }
    listener::serve(
        listener,
        tls,
        app,
        state,
        limits::ConnectionLimits::from_config(&config),
        draining,
        config.shutdown_grace(),
    )
    .await;
    tasks.shutdown().await;
    tracing::info!("dig-bootstrap stopped");
    Ok(())
}
