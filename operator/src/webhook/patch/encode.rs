//! JSON-patch encoding: the operations that add the sidecar, its volumes and the annotation.

use serde_json::{Value, json};

pub fn add(path: &str, value: Value) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

pub fn to_value<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("Kubernetes API objects serialize to JSON")
}

/// RFC 6901 escaping of one JSON pointer segment.
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}
