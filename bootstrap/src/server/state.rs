//! What every request handler and background task shares.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::RwLock;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::record::{SignedPeerRecord, SignedUnregister, now_ms};
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
    max_body_bytes: u64,
}

impl AppState {
    pub fn new(config: &Config) -> Self {
        let limiter = config.rate_limit_quota().map(|(per_second, burst)| {
            let quota = Quota::per_second(per_second.try_into().expect("rate limit > 0"))
                .allow_burst(burst.try_into().expect("burst > 0"));
            DefaultKeyedRateLimiter::dashmap(quota)
        });
        Self::with_parts(config.registry_config(), limiter, config.max_body_bytes)
    }

    pub fn with_parts(
        registry: RegistryConfig,
        limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
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
                max_body_bytes,
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

    pub fn uptime_seconds(&self) -> u64 {
        self.inner.started.elapsed().as_secs()
    }

    pub fn epoch(&self) -> &str {
        &self.inner.epoch
    }

    pub fn max_body_bytes(&self) -> u64 {
        self.inner.max_body_bytes
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
