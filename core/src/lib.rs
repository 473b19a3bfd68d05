//! What every part of a DIG Network shares: the registry (dig-bootstrap), the node (dig-sidecar),
//! the operator and the tests all depend on this crate, and none of them on another's.
//!
//! - [`record`]: the signed peer record: wire types, canonical bytes, signing, verification, bounds.
//! - [`api`]: request and response types of the registry's REST API.
//! - [`client`]: [`client::RegistryClient`], the registry's HTTP client.
//! - [`network_id`]: the one rule for a network id.
//! - [`clock`], [`crypto`], [`shutdown`], [`logging`]: what each binary sets up at start.
//! - `html` (feature `html`): serving the registry's and the node's self-contained `GET /` page.
//!
//! The feature `openapi` derives the API types' OpenAPI schemas (utoipa); only the registry
//! server, which serves `/openapi.json`, turns it on. The feature `html` is for the two servers
//! with a page, so the operator does not link it.

pub mod api;
pub mod client;
pub mod clock;
pub mod crypto;
#[cfg(feature = "html")]
pub mod html;
pub mod logging;
pub mod network_id;
pub mod record;
pub mod shutdown;
