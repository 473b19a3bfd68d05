//! DIG Network operator: CRD types, reconcilers and the sidecar-injection webhook.

pub mod cli;
pub mod controller;
pub mod crd;
pub mod crd_check;
pub mod crd_compat;
pub mod crdgen;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod quantity;
pub mod reconcile;
pub mod route53;
pub mod webhook;
