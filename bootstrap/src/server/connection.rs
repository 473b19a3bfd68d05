//! One client connection, HTTP/1 or HTTP/2 (plain or over TLS): served by hyper, watched so that
//! it is closed once idle for `--idle-timeout` (whatever the client sends that is not a request,
//! HTTP/2 PINGs included), when evicted to make room, or when the server shuts down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::limits::{CLOSE_GRACE, ConnectionLimits, MAX_CONCURRENT_STREAMS};
use super::open_connections::Connection;
use super::state::AppState;
use crate::metrics::CloseReason;

/// The HTTP/1 and HTTP/2 settings of every connection.
pub fn http_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS);
    builder
}

/// The server-wide signals a connection obeys.
#[derive(Clone)]
pub struct Shutdown {
    /// Finish the requests in flight, then close.
    pub graceful: CancellationToken,
    /// Close now (the grace period is over).
    pub now: CancellationToken,
}

/// What every connection is served with.
#[derive(Clone)]
pub struct Served {
    pub app: Router,
    pub builder: Arc<auto::Builder<TokioExecutor>>,
    pub limits: ConnectionLimits,
    pub shutdown: Shutdown,
    pub state: AppState,
}

/// Serves `io` from `peer` until the client closes it, it idles too long, it is evicted or the
/// server shuts down.
pub async fn serve<I>(io: I, peer: SocketAddr, connection: Connection, served: Served)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Served {
        app,
        builder,
        limits,
        shutdown,
        state,
    } = served;
    let metrics = state.metrics();
    let activity = connection.activity().clone();
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let in_flight = requests.request();
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(in_flight);
            Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
        }
    });
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    // Set once the connection was told to close: when it must be gone.
    let mut closing: Option<Instant> = None;
    loop {
        let wake = match (closing, activity.idle_for()) {
            (Some(deadline), _) => deadline,
            (None, Some(idle)) => Instant::now() + limits.idle_timeout.saturating_sub(idle),
            (None, None) => Instant::now() + limits.idle_timeout,
        };
        let reason = tokio::select! {
            // The connection first: every read and write wakes this select.
            biased;
            _ = served.as_mut() => return,
            () = shutdown.now.cancelled() => return,
            () = tokio::time::sleep_until(wake) => {
                if closing.is_some() {
                    // It did not finish in time (e.g. a client that stopped reading).
                    return;
                }
                match activity.idle_for() {
                    Some(idle) if idle >= limits.idle_timeout => Some(CloseReason::Idle),
                    _ => None,
                }
            }
            () = activity.evicted(), if closing.is_none() => Some(CloseReason::Evicted),
            () = shutdown.graceful.cancelled(), if closing.is_none() => Some(CloseReason::Shutdown),
        };
        if let Some(reason) = reason {
            metrics.count_close(reason);
            served.as_mut().graceful_shutdown();
            closing = Some(match reason {
                // The server's own grace period applies; `shutdown.now` ends it.
                CloseReason::Shutdown => Instant::now() + limits.request_timeout + CLOSE_GRACE,
                _ => Instant::now() + CLOSE_GRACE,
            });
        }
    }
}
