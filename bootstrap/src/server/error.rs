//! Every rejection as a 4xx with a JSON `{error, detail, field}` body.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::ErrorBody;
use crate::record::RecordError;
use crate::registry::RegistryError;

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
    pub field: Option<String>,
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
            field: None,
            retry_after_seconds: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds.max(1));
        self
    }

    /// A bad query or path parameter.
    pub fn bad_parameter(field: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", detail).with_field(field)
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for path {path:?}; see /openapi.json"),
        )
        .with_field("path")
    }
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        let status = match e {
            RecordError::InvalidField { .. } | RecordError::PublicKey { .. } => {
                StatusCode::BAD_REQUEST
            }
            RecordError::Signature { .. } => StatusCode::UNAUTHORIZED,
            RecordError::KeyMismatch { .. } => StatusCode::FORBIDDEN,
            // Servers never sign; a client-side signing failure is never answered.
            RecordError::Signing { .. } => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.code(), e.to_string()).with_field(e.field())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let field = e.field().to_owned();
        match e {
            RegistryError::Record(inner) => inner.into(),
            RegistryError::StaleTimestamp { .. } | RegistryError::FutureTimestamp { .. } => {
                Self::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()).with_field(field)
            }
            RegistryError::NotNewer { .. } => {
                Self::new(StatusCode::CONFLICT, e.code(), e.to_string()).with_field(field)
            }
            RegistryError::WrongNetwork { .. } => {
                Self::new(StatusCode::FORBIDDEN, e.code(), e.to_string()).with_field(field)
            }
            // Out of memory for more state: retryable once records expire.
            RegistryError::MemoryFull { .. } => {
                Self::new(StatusCode::INSUFFICIENT_STORAGE, e.code(), e.to_string())
                    .with_field(field)
                    .retry_after(30)
            }
            // A capacity refusal: retryable, like a rate limit (and never a 5xx).
            RegistryError::Full { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, e.code(), e.to_string())
                    .with_field(field)
                    .retry_after(30)
            }
        }
    }
}

/// Longest `detail` and `field` answered, in bytes: both may quote the client's input (an
/// unknown member name, a value of the wrong type), which must not come back at any length.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// `text` cut to at most `max` bytes at a character boundary, marked with an ellipsis when cut.
fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error.to_owned(),
            detail: bounded(self.detail, MAX_DETAIL_BYTES),
            field: self.field.map(|field| bounded(field, MAX_DETAIL_BYTES / 4)),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("short".into(), 10), "short");
        let cut = bounded("é".repeat(1000), MAX_DETAIL_BYTES);
        assert!(
            cut.len() <= MAX_DETAIL_BYTES && cut.ends_with('…'),
            "{}",
            cut.len()
        );
        assert_eq!(bounded("abcdef".into(), 4), "a…");
    }
}
