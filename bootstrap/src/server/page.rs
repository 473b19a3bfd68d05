//! `GET /`: the network page, one embedded HTML file (no external assets, works offline). It only
//! reads: it polls `/stats`, `/topology`, `/peers` and `/federation` and draws what they answer.

use axum::response::Response;

const PAGE: &str = include_str!("network.html");

pub fn page() -> Response {
    crate::html::page_response(PAGE)
}
