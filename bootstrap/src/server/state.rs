//! What every request handler and background task shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use parking_lot::Mutex;

use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::RwLock;

use super::client_ip::ClientAddress;
use super::federation_status::FederationStatus;
use super::readiness::Readiness;
use crate::config::Config;
use crate::metrics::Metrics;
use dig_core::clock::now_ms;

use crate::record::{SignedPeerRecord, SignedUnregister};
use crate::registry::{Registry, RegistryConfig, RegistryError, Removed, Source, Upserted};

/// Shared state of a running server. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    registry: RwLock<Registry>,
    metrics: Metrics,
    started: Instant,
    epoch: String,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    client_address: ClientAddress,
    max_body_bytes: u64,
    views: Mutex<RenderedViews>,
    federation: FederationStatus,
    readiness: Readiness,
}

#[derive(Default)]
struct RenderedViews {
    by_key: HashMap<String, RenderedView>,
    bytes: usize,
}

/// A rendered response body, valid while the registry generation is unchanged.
struct RenderedView {
    generation: u64,
    rendered_at: Instant,
    body: Bytes,
}

/// A rendered view is reused for at most this long even without changes, because records
/// still leave views when their TTL runs out.
const VIEW_MAX_AGE: Duration = Duration::from_secs(1);
/// Most distinct views and bytes kept (the keys come from client queries, so both are bounded).
const MAX_VIEWS: usize = 1024;
const MAX_VIEW_BYTES: usize = 16 * 1024 * 1024;

impl AppState {
    pub fn new(config: &Config) -> Self {
        let limiter = config.rate_limit_quota().map(|(per_second, burst)| {
            let quota = Quota::per_second(per_second.try_into().expect("rate limit > 0"))
                .allow_burst(burst.try_into().expect("burst > 0"));
            DefaultKeyedRateLimiter::dashmap(quota)
        });
        let mut state = Self::with_parts(
            config.registry_config(),
            limiter,
            ClientAddress::new(config.trusted_proxy.clone()),
            config.max_body_bytes,
        );
        if !config.peer_bootstrap.is_empty() {
            let readiness = Readiness::waiting_for(
                config
                    .peer_bootstrap
                    .iter()
                    .map(super::federation_status::sibling_label),
                Instant::now() + config.federation_sync_deadline(),
            );
            Arc::get_mut(&mut state.inner)
                .expect("a new state is not shared yet")
                .readiness = readiness;
        }
        state
    }

    pub fn with_parts(
        registry: RegistryConfig,
        limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
        client_address: ClientAddress,
        max_body_bytes: u64,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry: RwLock::new(Registry::new(registry)),
                metrics: Metrics::new(),
                started: Instant::now(),
                // Identifies this process in the federation feed, so siblings restart their cursor.
                epoch: format!("{:016x}", rand::random::<u64>()),
                limiter,
                client_address,
                max_body_bytes,
                views: Mutex::new(RenderedViews::default()),
                federation: FederationStatus::default(),
                readiness: Readiness::ready(),
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn registry(&self) -> &RwLock<Registry> {
        &self.inner.registry
    }

    pub fn limiter(&self) -> Option<&DefaultKeyedRateLimiter<IpAddr>> {
        self.inner.limiter.as_ref()
    }

    pub fn client_address(&self) -> &ClientAddress {
        &self.inner.client_address
    }

    pub fn uptime_seconds(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    /// How the pulls of each `--peer-bootstrap` sibling went.
    pub fn federation(&self) -> &FederationStatus {
        &self.inner.federation
    }

    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    pub fn max_body_bytes(&self) -> u64 {
        self.inner.max_body_bytes
    }

    /// The JSON body of a read-only view, rendered by `render` under the read lock, or reused
    /// when the same view was rendered since the last change (and within [`VIEW_MAX_AGE`]).
    pub fn rendered_view<T: serde::Serialize>(
        &self,
        key: String,
        render: impl FnOnce(&Registry) -> T,
    ) -> Bytes {
        let registry = self.inner.registry.read();
        let generation = registry.generation();
        if let Some(view) = self.inner.views.lock().by_key.get(&key)
            && view.generation == generation
            && view.rendered_at.elapsed() < VIEW_MAX_AGE
        {
            return view.body.clone();
        }
        let value = render(&registry);
        drop(registry);
        let body = Bytes::from(serde_json::to_vec(&value).expect("API types serialise"));
        let mut views = self.inner.views.lock();
        if views.by_key.len() >= MAX_VIEWS || views.bytes + body.len() > MAX_VIEW_BYTES {
            views.by_key.clear();
            views.bytes = 0;
        }
        if body.len() <= MAX_VIEW_BYTES {
            views.bytes += body.len();
            let view = RenderedView {
                generation,
                rendered_at: Instant::now(),
                body: body.clone(),
            };
            if let Some(old) = views.by_key.insert(key, view) {
                views.bytes -= old.body.len();
            }
        }
        body
    }

    fn update_gauges(&self, registry: &Registry) {
        self.inner.metrics.peers.set(registry.len() as i64);
        self.inner.metrics.stores.set(registry.store_count() as i64);
    }

    /// Validates, verifies and stores a record; the same rules for /register and federation.
    pub fn accept_record(
        &self,
        signed: &SignedPeerRecord,
        source: Source,
    ) -> Result<Upserted, RegistryError> {
        let limits = self.inner.registry.read().config().limits;
        // Signature checks run outside the lock: they are the expensive part.
        let key = signed.validate_and_verify(&limits)?;
        let mut registry = self.inner.registry.write();
        let outcome = registry.upsert(signed, &key, source, now_ms())?;
        self.update_gauges(&registry);
        Ok(outcome)
    }

    /// Validates, verifies and applies a removal.
    pub fn accept_removal(
        &self,
        signed: &SignedUnregister,
        source: Source,
    ) -> Result<Removed, RegistryError> {
        let key = signed.validate_and_verify()?;
        let mut registry = self.inner.registry.write();
        let outcome = registry.unregister(signed, &key, source, now_ms())?;
        self.update_gauges(&registry);
        Ok(outcome)
    }

    /// Removes expired records and forgets idle rate-limit clients.
    pub fn sweep(&self) -> usize {
        let expired = {
            let mut registry = self.inner.registry.write();
            let expired = registry.sweep(now_ms());
            self.update_gauges(&registry);
            expired
        };
        self.inner.metrics.expirations.inc_by(expired as u64);
        if let Some(limiter) = &self.inner.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        expired
    }
}
