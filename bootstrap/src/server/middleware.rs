//! Cross-cutting request handling: route tagging, metrics, per-client rate limiting, and the
//! request deadline.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};

use super::error::ApiError;
use super::state::AppState;
use crate::metrics::{RequestLabels, RouteLabels};

/// The matched route template, carried from the routing layer to the metrics layer. Static, so
/// labelling a request allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct RouteTemplate(pub &'static str);

fn static_route(matched: &str) -> &'static str {
    super::routes::ROUTES
        .iter()
        .map(|(path, _)| *path)
        .find(|path| *path == matched)
        .unwrap_or("unmatched")
}

fn static_method(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Runs inside routing (a route layer), where the matched path is known, and tags the response.
pub async fn tag_route(request: Request, next: Next) -> Response {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| static_route(p.as_str()));
    let mut response = next.run(request).await;
    if let Some(template) = template {
        response.extensions_mut().insert(RouteTemplate(template));
    }
    response
}

/// Outermost layer: counts every request by route template and status, and times it.
pub async fn record_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = static_method(request.method());
    let response = next.run(request).await;
    let route = response
        .extensions()
        .get::<RouteTemplate>()
        .map(|t| t.0)
        .unwrap_or("unmatched");
    let metrics = state.metrics();
    metrics
        .http_duration
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Routes that probes and scrapers call; never rate limited.
const UNLIMITED_ROUTES: &[&str] = &["/health", "/ready", "/metrics"];

/// Per-client-IP rate limit: 429 with `Retry-After` beyond the quota.
pub async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limiter) = state.limiter() else {
        return next.run(request).await;
    };
    let exempt = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| UNLIMITED_ROUTES.contains(&p.as_str()));
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| state.client_address().resolve(c.0.ip(), request.headers()));
    if let (false, Some(ip)) = (exempt, client)
        && let Err(not_until) = limiter.check_key(&state.client_prefix().key(ip))
    {
        state.metrics().rate_limited.inc();
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "client {ip} sent more requests than --rate-limit allows; retry after {seconds} s"
            ),
        )
        .with_field("client")
        .retry_after(seconds)
        .into_response();
    }
    next.run(request).await
}

/// Answers 408 (and closes the connection) when a request is not read and answered within
/// `--request-timeout`: a client that sends its body slowly holds nothing for longer.
pub async fn request_deadline(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    // Only a body can arrive slowly (the headers have their own time-out); the other requests
    // are answered without waiting on the client and need no timer.
    if axum::body::HttpBody::is_end_stream(request.body()) {
        return next.run(request).await;
    }
    let limit = state.request_timeout();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request was not received and answered within {} s (--request-timeout)",
                    limit.as_secs()
                ),
            )
            .with_field("body")
            .into_response();
            // Its body is left half read: the connection cannot carry another request.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}
