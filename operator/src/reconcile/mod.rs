//! Reconciliation: dereference -> validate -> build (pure) -> apply -> status.

pub mod args;
pub mod build;
pub mod conditions;
pub mod dns;
pub mod meta;
pub mod pod;
pub mod validate;
