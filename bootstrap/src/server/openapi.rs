//! The OpenAPI 3 document of every route, generated from the handlers' annotations.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use super::routes;
use crate::api::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dig-bootstrap",
        description = "DIG Network peer registry: signed peer records over REST. Every error is a \
                       JSON {error, detail, field} body."
    ),
    paths(
        routes::page,
        routes::health,
        routes::ready,
        routes::stats,
        routes::register,
        routes::unregister,
        routes::peers,
        routes::peers_with_store,
        routes::topology,
        routes::records,
        routes::federation,
        routes::metrics,
        serve,
    )
)]
pub struct ApiDoc;

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
});

/// The document as JSON text, built once.
pub fn document_json() -> String {
    DOCUMENT.clone()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses(
        (status = 200, description = "OpenAPI 3 document", content_type = "application/json"),
        (status = 429, description = "Rate limited; see Retry-After", body = ErrorBody),
    ))]
pub async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route_with_its_method() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for (path, method) in routes::ROUTES {
            assert!(
                doc["paths"][path][method.to_lowercase()].is_object(),
                "{method} {path} missing from the OpenAPI document"
            );
        }
        let schemas = &doc["components"]["schemas"];
        for schema in [
            "SignedPeerRecord",
            "PeerRecord",
            "StoreEntry",
            "ErrorBody",
            "PeersResponse",
        ] {
            assert!(schemas[schema].is_object(), "schema {schema} missing");
        }
    }
}
