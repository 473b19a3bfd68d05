//! Properties of every decoder of client input on the real routes, in process: the JSON bodies of
//! `/register` and `/unregister`, the query parameters of `/peers`, `/peers/store/{store}` and
//! `/records`, the store path segment, and `X-Forwarded-For`. Whatever the bytes, the answer is a
//! success or a JSON error naming a field, in bounded words, never a 5xx (but 507, the budget)
//! and never a panic. The committed corpus (`tests/corpus/`) is replayed the same way.
//!
//! proptest rather than cargo-fuzz: the suite runs on stable Rust, and a bounded number of
//! cases per property keeps it a few seconds; the generators mutate valid requests, so that
//! the cases reach past the JSON parser into validation and verification.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use clap::Parser;
use dig_bootstrap::config::Config;
use dig_bootstrap::server::{AppState, error::MAX_DETAIL_BYTES, router};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::Value;
use support::{json_mutation, signed_record_json, signed_removal_json};
use tower::ServiceExt;

/// One server state per case: a fresh registry, the rate limit on (so that the client address
/// is resolved) behind a trusted loopback proxy.
fn app() -> axum::Router {
    let config = Config::try_parse_from([
        "dig-bootstrap",
        "--rate-limit",
        "1000000",
        "--trusted-proxy",
        "127.0.0.0/8",
        "--max-state-bytes",
        "65536",
    ])
    .expect("test flags parse");
    router(AppState::new(&config))
}

/// Sends `request` from 127.0.0.1 and checks the answer is well formed; returns its status.
fn answer(request: Request<Body>) -> Result<StatusCode, TestCaseError> {
    support::runtime().block_on(async {
        let mut request = request;
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40_000))));
        let response = app().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("in-memory body")
            .to_bytes();
        prop_assert!(
            !status.is_server_error() || status == StatusCode::INSUFFICIENT_STORAGE,
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            TestCaseError::fail(format!("{status} answered non-JSON ({e}): {body:?}"))
        })?;
        if !status.is_success() {
            let error = json["error"].as_str().unwrap_or_default();
            let detail = json["detail"].as_str().unwrap_or_default();
            prop_assert!(!error.is_empty(), "{json}");
            prop_assert!(!detail.is_empty(), "{json}");
            prop_assert!(detail.len() <= MAX_DETAIL_BYTES, "{} bytes", detail.len());
            prop_assert!(
                json["field"].as_str().is_some_and(|f| !f.is_empty()),
                "{json}"
            );
        }
        Ok(status)
    })
}

fn post(path: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("a request")
}

fn get(uri: &str, forwarded_for: Option<&str>) -> Option<Request<Body>> {
    let mut builder = Request::get(uri);
    if let Some(value) = forwarded_for {
        builder = builder.header("x-forwarded-for", value);
    }
    builder.body(Body::empty()).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn mutated_registrations_are_answered_well(mutation in json_mutation()) {
        let body = mutation.apply(&signed_record_json());
        answer(post("/register", body))?;
    }

    #[test]
    fn mutated_removals_are_answered_well(mutation in json_mutation()) {
        let body = mutation.apply(&signed_removal_json());
        let status = answer(post("/unregister", body.clone()))?;
        if status.is_success() {
            // Only a removal that still verifies is applied.
            let removal: dig_bootstrap::SignedUnregister = serde_json::from_slice(&body).unwrap();
            prop_assert!(removal.validate_and_verify().is_ok());
        }
    }

    #[test]
    fn arbitrary_bodies_are_answered_well(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        answer(post("/register", body.clone()))?;
        answer(post("/unregister", body))?;
    }

    #[test]
    fn arbitrary_queries_and_store_names_are_answered_well(
        path in prop_oneof![
            Just("/peers".to_owned()),
            Just("/records".to_owned()),
            Just("/stats".to_owned()),
            "[A-Za-z0-9._%~-]{0,140}".prop_map(|s| format!("/peers/store/{s}")),
        ],
        query in prop_oneof![
            "[a-zA-Z=&%0-9._-]{0,120}",
            "(limit|after|network|includeStores)=[-0-9a-z%]{0,30}(&(limit|after|network|includeStores)=[-0-9a-z%]{0,30}){0,3}",
        ],
    ) {
        let uri = format!("{path}?{query}");
        prop_assume!(uri.parse::<axum::http::Uri>().is_ok());
        if let Some(request) = get(&uri, None) {
            answer(request)?;
        }
    }

    #[test]
    fn arbitrary_forwarded_for_headers_are_answered_well(
        hops in proptest::collection::vec(
            prop_oneof![
                "[0-9a-f:.\\[\\] ]{0,45}",
                any::<std::net::IpAddr>().prop_map(|ip| ip.to_string()),
            ],
            0..8,
        ),
    ) {
        let header = hops.join(",");
        if let Some(request) = get("/stats", Some(&header)) {
            answer(request)?;
        }
    }
}

/// Every file of `tests/corpus/<dir>`, sorted.
fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("reading {}: {e}", folder.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("a corpus file"))
        })
        .collect()
}

/// The corpus names the status each input gets in its file name: `400-deep-nesting.json`.
fn expected_status(name: &str) -> StatusCode {
    let code: u16 = name[..3].parse().expect("corpus files start with a status");
    StatusCode::from_u16(code).expect("a status")
}

#[test]
fn the_corpus_of_hostile_bodies_gets_the_expected_answers() {
    for (route, dir) in [("/register", "register"), ("/unregister", "unregister")] {
        for (name, body) in corpus(dir) {
            let status = answer(post(route, body)).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
            assert_eq!(status, expected_status(&name), "{dir}/{name}");
        }
    }
}

#[test]
fn the_corpus_of_hostile_queries_gets_the_expected_answers() {
    for (name, text) in corpus("query") {
        for line in String::from_utf8(text).expect("UTF-8").lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (status, uri) = line.split_once(' ').expect("STATUS URI");
            let request = get(uri, None).unwrap_or_else(|| panic!("{name}: {uri} is no URI"));
            let got = answer(request).unwrap_or_else(|e| panic!("{name}: {uri}: {e}"));
            assert_eq!(got.as_str(), status, "{name}: {uri}");
        }
    }
}
