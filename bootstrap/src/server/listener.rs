//! The accept loop: admits connections within `--max-connections`, finishes TLS handshakes within
//! `--tls-handshake-timeout`, serves each connection in its own task, and on shutdown stops
//! accepting, lets the connections finish for the grace period and then closes them.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{self, Served, Shutdown};
use super::limits::ConnectionLimits;
use super::open_connections::{Admitted, OpenConnections};
use super::state::AppState;
use crate::metrics::CloseReason;

/// The rustls settings of `--tls-cert` and `--tls-key`, offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn tls_config(cert: &Path, key: &Path) -> std::io::Result<Arc<ServerConfig>> {
    let invalid = |what: &str, error: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what}: {error}"))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid("certificate PEM", &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate PEM", &e))?;
    if chain.is_empty() {
        return Err(invalid("certificate PEM", &"no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("private key PEM", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid("certificate and key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` until `shutdown` completes, then drains for `grace`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    app: Router,
    state: AppState,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let open = OpenConnections::new(
        limits.max_connections,
        state.metrics().open_connections.clone(),
    );
    let tls = tls.map(TlsAcceptor::from);
    let served = Served {
        app,
        builder: Arc::new(connection::http_builder(&limits)),
        limits,
        shutdown: Shutdown {
            graceful: CancellationToken::new(),
            now: CancellationToken::new(),
        },
        state: state.clone(),
    };
    let tasks = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or memory: back off rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some((connection, admitted)) = open.admit() else {
            state.metrics().count_close(CloseReason::Refused);
            continue;
        };
        if admitted == Admitted::Evicted {
            tracing::debug!(%peer, "closing the longest-idle connection to make room");
        }
        // Answers are small and written whole: do not wait to coalesce them.
        let _ = stream.set_nodelay(true);
        let (served, tls) = (served.clone(), tls.clone());
        tasks.spawn(async move {
            let Some(acceptor) = tls else {
                return connection::serve(stream, peer, connection, served).await;
            };
            let handshake =
                tokio::time::timeout(served.limits.tls_handshake_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "TLS handshake failed");
                        served.state.metrics().count_close(CloseReason::TlsHandshake);
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        served.state.metrics().count_close(CloseReason::TlsHandshake);
                        return;
                    }
                },
                () = served.shutdown.graceful.cancelled() => return,
            };
            connection::serve(stream, peer, connection, served).await
        });
    }
    drop(listener);
    served.shutdown.graceful.cancel();
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::info!(
            open = open.len(),
            "grace period over; closing the remaining connections"
        );
        served.shutdown.now.cancel();
        tasks.wait().await;
    }
}
