//! DIG Network operator: CRD types, reconcilers and the sidecar-injection webhook.

pub mod webhook;
