//! What every request handler and background task shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use parking_lot::Mutex;

use governor::{DefaultKeyedRateLimiter, Quota};
use parking_lot::RwLock;

use super::client_ip::{ClientAddress, ClientPrefix};
use super::federation_status::FederationStatus;
use super::readiness::Readiness;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::record::{SignedPeerRecord, SignedUnregister};
use crate::registry::{Registry, RegistryError, Removed, Source, Upserted};
use dig_core::clock::now_ms;

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
    client_prefix: ClientPrefix,
    max_body_bytes: u64,
    request_timeout: Duration,
    peer_bootstrap_max_bytes: u64,
    views: Mutex<RenderedViews>,
    federation: FederationStatus,
    readiness: Readiness,
}

#[derive(Default)]
struct RenderedViews {
    by_key: HashMap<String, RenderedView>,
    bytes: usize,
}

impl RenderedViews {
    /// Drops the views too old to be served again by any rule, so that clients asking for many
    /// distinct views do not flush the ones still in use.
    fn forget_old(&mut self) {
        let mut freed = 0;
        self.by_key.retain(|_, view| {
            let keep = view.rendered_at.elapsed() < VIEW_MAX_AGE;
            if !keep {
                freed += view.body.len();
            }
            keep
        });
        self.bytes -= freed;
    }
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

/// How long a rendered view may be reused.
#[derive(Clone, Copy, Debug)]
pub enum Reuse {
    /// While the registry is unchanged, and at most [`VIEW_MAX_AGE`].
    UntilChanged,
    /// For this long, changed or not: for the federation feed, which siblings pull every few
    /// seconds and which is correct a second late, but not cheap to render after every change.
    For(Duration),
}

impl AppState {
    pub fn new(config: &Config) -> Self {
        let limiter = config.rate_limit_quota().map(|(per_second, burst)| {
            let quota = Quota::per_second(per_second.try_into().expect("rate limit > 0"))
                .allow_burst(burst.try_into().expect("burst > 0"));
            DefaultKeyedRateLimiter::dashmap(quota)
        });
        let readiness = if config.peer_bootstrap.is_empty() {
            Readiness::ready()
        } else {
            Readiness::waiting_for(
                config
                    .peer_bootstrap
                    .iter()
                    .map(super::federation_status::sibling_label),
                Instant::now() + config.federation_sync_deadline(),
            )
        };
        Self {
            inner: Arc::new(Inner {
                registry: RwLock::new(Registry::new(config.registry_config())),
                metrics: Metrics::new(),
                started: Instant::now(),
                // Identifies this process in the federation feed, so siblings restart their cursor.
                epoch: format!("{:016x}", rand::random::<u64>()),
                limiter,
                client_address: ClientAddress::new(config.trusted_proxy.clone()),
                client_prefix: ClientPrefix {
                    ipv4_bits: config.rate_limit_ipv4_prefix,
                    ipv6_bits: config.rate_limit_ipv6_prefix,
                },
                max_body_bytes: config.max_body_bytes,
                request_timeout: Duration::from_secs(config.request_timeout),
                peer_bootstrap_max_bytes: config.peer_bootstrap_max_bytes,
                views: Mutex::new(RenderedViews::default()),
                federation: FederationStatus::default(),
                readiness,
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

    /// Which client addresses share a rate-limit quota.
    pub fn client_prefix(&self) -> ClientPrefix {
        self.inner.client_prefix
    }

    /// How long a request may take, body included (`--request-timeout`).
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// Largest `/records` answer read from a sibling (`--peer-bootstrap-max-bytes`).
    pub fn peer_bootstrap_max_bytes(&self) -> u64 {
        self.inner.peer_bootstrap_max_bytes
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
        self.cached_view(
            |_| (key, ()),
            |registry, ()| render(registry),
            Reuse::UntilChanged,
        )
    }

    /// Like [`Self::rendered_view`], with the key (and what `render` needs besides) computed
    /// from the registry under the same read lock as the rendering, and reuse as `reuse` says.
    pub fn cached_view<A, T: serde::Serialize>(
        &self,
        key: impl FnOnce(&Registry) -> (String, A),
        render: impl FnOnce(&Registry, A) -> T,
        reuse: Reuse,
    ) -> Bytes {
        let registry = self.inner.registry.read();
        let generation = registry.generation();
        let (key, input) = key(&registry);
        if let Some(view) = self.inner.views.lock().by_key.get(&key) {
            let fresh = match reuse {
                Reuse::UntilChanged => {
                    view.generation == generation && view.rendered_at.elapsed() < VIEW_MAX_AGE
                }
                Reuse::For(age) => view.rendered_at.elapsed() < age,
            };
            if fresh {
                return view.body.clone();
            }
        }
        let value = render(&registry, input);
        drop(registry);
        let body = Bytes::from(serde_json::to_vec(&value).expect("API types serialise"));
        let mut views = self.inner.views.lock();
        if views.by_key.len() >= MAX_VIEWS || views.bytes + body.len() > MAX_VIEW_BYTES {
            views.forget_old();
        }
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
        let metrics = &self.inner.metrics;
        metrics.peers.set(registry.len() as i64);
        metrics.stores.set(registry.store_count() as i64);
        metrics.state_bytes.set(registry.state_bytes() as i64);
        metrics.removals.set(registry.removal_count() as i64);
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

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use clap::Parser;

    use super::*;

    fn state() -> AppState {
        AppState::new(&Config::try_parse_from(["dig-bootstrap"]).expect("defaults parse"))
    }

    /// Renders view `key` with `reuse`, counting renderings in `renders`.
    fn view(state: &AppState, key: &str, reuse: Reuse, renders: &Cell<u32>) -> Bytes {
        state.cached_view(
            |_| (key.to_owned(), ()),
            |_, ()| {
                renders.set(renders.get() + 1);
                renders.get()
            },
            reuse,
        )
    }

    #[test]
    fn a_view_is_rendered_again_after_a_change_unless_reused_for_a_while() {
        let state = state();
        let renders = Cell::new(0);
        let for_a_second = Reuse::For(Duration::from_secs(1));
        assert_eq!(view(&state, "a", Reuse::UntilChanged, &renders), "1");
        assert_eq!(view(&state, "a", Reuse::UntilChanged, &renders), "1");
        assert_eq!(view(&state, "b", for_a_second, &renders), "2");
        // A change: the view kept until changed is rendered again, the other is not.
        let keypair = libp2p_identity::Keypair::generate_ed25519();
        let record = crate::record::PeerRecord {
            peer_id: keypair.public().to_peer_id().to_base58(),
            network_id: "testnet".into(),
            addresses: Vec::new(),
            stores: Vec::new(),
            agent_version: "test".into(),
            timestamp_ms: now_ms(),
        }
        .sign(&keypair)
        .unwrap();
        state.accept_record(&record, Source::Direct).unwrap();
        assert_eq!(view(&state, "a", Reuse::UntilChanged, &renders), "3");
        assert_eq!(view(&state, "b", for_a_second, &renders), "2");
        assert_eq!(state.metrics().peers.get(), 1);
        assert!(state.metrics().state_bytes.get() > 0);
    }
}
