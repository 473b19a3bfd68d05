//! Request parsing that answers every malformed input with an [`ApiError`] naming the field,
//! instead of axum's plain-text extractor rejections.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::api::MAX_PEERS_LIMIT;
use dig_core::network_id::check_network_id;

/// Maps a body read failure (most often the body limit) to JSON.
pub fn body_rejection(rejection: BytesRejection, max_body_bytes: u64) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "request body is larger than the limit of {max_body_bytes} bytes (--max-body-bytes)"
            ),
        )
        .with_field("body")
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            format!("request body could not be read: {rejection}"),
        )
        .with_field("body")
    }
}

/// Parses a JSON body, naming the JSON path of the first bad field.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Fast path; the path-tracking parse below only runs to explain a failure.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path.is_empty() || path == "." || path == "?" {
            "body".to_owned()
        } else {
            path
        };
        let (code, what) = if inner.is_data() {
            ("invalid_field", "wrong type, unknown or missing field")
        } else {
            ("malformed_json", "not valid JSON")
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("{field}: {what}: {inner}"),
        )
        .with_field(field)
    })?;
    deserializer.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("body: trailing characters after the JSON value: {e}"),
        )
        .with_field("body")
    })?;
    Ok(value)
}

/// Query parameters as (name, value) pairs, refusing unknown and repeated names.
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(query: Option<&str>, known: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if name.is_empty() {
                return Err(ApiError::bad_parameter(
                    "query",
                    format!("a query parameter has no name; known: {}", known.join(", ")),
                ));
            }
            if !known.contains(&name.as_ref()) {
                let shown: String = name.chars().take(64).collect();
                return Err(ApiError::bad_parameter(
                    &shown,
                    format!(
                        "unknown query parameter {shown:?}; known: {}",
                        known.join(", ")
                    ),
                ));
            }
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::bad_parameter(
                    &name,
                    format!("query parameter {name:?} is given more than once"),
                ));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A non-negative integer, capped at `cap`.
    pub fn limit(&self, name: &str, default: usize, cap: usize) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text.parse::<usize>().map(|n| n.min(cap)).map_err(|_| {
                ApiError::bad_parameter(
                    name,
                    format!("{name}={text:?} is not a non-negative integer"),
                )
            }),
        }
    }

    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|text| {
                text.parse::<u64>().map_err(|_| {
                    ApiError::bad_parameter(
                        name,
                        format!("{name}={text:?} is not a non-negative integer"),
                    )
                })
            })
            .transpose()
    }

    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(text) => Err(ApiError::bad_parameter(
                name,
                format!("{name}={text:?} is not a boolean (true, false, 1 or 0)"),
            )),
        }
    }

    pub fn network(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => match check_network_id(text) {
                Ok(()) => Ok(Some(text)),
                Err(invalid) => Err(ApiError::bad_parameter(name, format!("{name}: {invalid}"))),
            },
        }
    }
}

pub const PEERS_LIMIT_CAP: usize = MAX_PEERS_LIMIT;

/// Reads a body that may have been refused by the body limit.
pub fn body_bytes(
    body: Result<Bytes, BytesRejection>,
    max_body_bytes: u64,
) -> Result<Bytes, ApiError> {
    body.map_err(|r| body_rejection(r, max_body_bytes))
}
