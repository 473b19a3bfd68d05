//! The sidecar-injection admission webhook.

pub mod patch;
