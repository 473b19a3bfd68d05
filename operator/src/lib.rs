//! DIG Network operator: CRD types, reconcilers and the sidecar-injection webhook.

pub mod crd;
pub mod crdgen;
pub mod webhook;
pub mod reconcile;
pub mod error;
pub mod metrics;
