//! The operator's plain HTTP server: `/healthz`, `/readyz` and `/metrics`.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router, extract::State, http::StatusCode, http::header, response::IntoResponse, routing::get,
};
use prometheus_client::registry::Registry;

/// What the probes report.
#[derive(Default)]
pub struct Health {
    /// Start-up checks passed (API server reachable, CRDs installed).
    pub started: AtomicBool,
    /// This replica holds the Lease (or leader election is off).
    pub leading: AtomicBool,
    /// The webhook's serving certificate, when the webhook runs: until one is loaded the replica
    /// is not ready, so the webhook Service sends it no admission reviews.
    pub webhook: std::sync::OnceLock<Arc<crate::webhook::server::ServingCert>>,
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

/// The routes. A standby replica is ready too: it serves metrics and takes over when the leader
/// goes, and the webhook (served by every replica) must not wait for leadership.
pub fn router(registry: Arc<Registry>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState { registry, health })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if !state.health.started.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting".to_string());
    }
    if state
        .health
        .webhook
        .get()
        .is_some_and(|serving| !serving.is_loaded())
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook certificate not loaded yet".to_string(),
        );
    }
    let role = if state.health.leading.load(Ordering::Relaxed) {
        "leader"
    } else {
        "standby"
    };
    (StatusCode::OK, format!("ready ({role})"))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        ),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics failed: {err}"),
        ),
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listen: SocketAddr,
    registry: Arc<Registry>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("binding the metrics server to {listen}: {e}"),
        )
    })?;
    tracing::info!(%listen, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, router(registry, health))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get_path(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn test_certificate() -> (String, String) {
        use crate::webhook::certs::{CertPolicy, SubjectNames, decide, rotate};
        let names = SubjectNames::for_service("svc", "ns", &[]);
        let policy = CertPolicy::default();
        let now = 1_800_000_000;
        let certs = rotate(
            None,
            &decide(None, &names, now, &policy),
            &names,
            now,
            &policy,
        )
        .unwrap();
        (certs.tls_cert_pem, certs.tls_key_pem)
    }

    #[tokio::test]
    async fn probes_and_metrics() {
        let mut registry = Registry::default();
        let metrics = crate::metrics::Metrics::register(&mut registry);
        metrics.set_managed("DigNetwork", 3);
        let health = Arc::new(Health::default());
        let router = router(Arc::new(registry), health.clone());
        assert_eq!(get_path(router.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(
            get_path(router.clone(), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.started.store(true, Ordering::Relaxed);
        assert_eq!(
            get_path(router.clone(), "/readyz").await,
            (StatusCode::OK, "ready (standby)".to_string())
        );
        // With the webhook on, ready only once it has a certificate to serve.
        let serving = Arc::new(crate::webhook::server::ServingCert::default());
        health.webhook.set(serving.clone()).unwrap();
        assert_eq!(
            get_path(router.clone(), "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "webhook certificate not loaded yet".to_string()
            )
        );
        let (cert, key) = test_certificate();
        serving.load(&cert, &key).unwrap();
        assert_eq!(get_path(router.clone(), "/readyz").await.0, StatusCode::OK);
        let (status, text) = get_path(router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains(r#"dig_operator_managed_resources{kind="DigNetwork"} 3"#),
            "{text}"
        );
    }
}
