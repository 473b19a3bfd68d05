//! What every reconciliation shares: the client, defaults, metrics, events, API discovery and the
//! registry's `/stats`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

use super::{
    applied::AppliedChildren,
    dnsaddr::{PeerIds, http_peer_id_fetcher},
    validate::DefaultImages,
};
use crate::{crd::labels::MANAGER, metrics::Metrics, route53::DnsService};

/// Totals read from a bootstrap registry's `/stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryStats {
    pub peers: u64,
    pub stores: u64,
}

/// Fetches `/stats` from a registry base URL; the error is a message for the status.
pub type StatsFetcher =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<RegistryStats, String>> + Send + Sync>;

/// `/stats` through `dig_core::client::RegistryClient`, with short timeouts: an unreachable
/// registry must not hold a reconciliation up. One client (and connection pool) per registry URL
/// is kept, so reconciles reuse connections instead of building a TLS-capable client each time.
pub fn registry_stats_fetcher(timeout: Duration) -> StatsFetcher {
    let clients: Arc<Mutex<HashMap<String, dig_core::client::RegistryClient>>> = Arc::default();
    Arc::new(move |url: String| {
        let clients = clients.clone();
        Box::pin(async move {
            let cached = clients
                .lock()
                .expect("registry client cache lock")
                .get(&url)
                .cloned();
            let client = match cached {
                Some(client) => client,
                None => {
                    let client = dig_core::client::RegistryClient::builder(&url)
                        .connect_timeout(timeout)
                        .request_timeout(timeout)
                        .build()
                        .map_err(|e| format!("registry client for {url}: {e}"))?;
                    clients
                        .lock()
                        .expect("registry client cache lock")
                        .insert(url.clone(), client.clone());
                    client
                }
            };
            let stats = tokio::time::timeout(timeout, client.stats())
                .await
                .map_err(|_| format!("registry {url} did not answer /stats within {timeout:?}"))?
                .map_err(|e| format!("registry {url} /stats: {e}"))?;
            Ok(RegistryStats {
                peers: stats.total_peers,
                stores: stats.total_stores,
            })
        })
    })
}

/// Which optional APIs (ServiceMonitor, PodMonitor, DNSEndpoint) the API server serves, asked of
/// it and cached for a while: CRDs come and go while the operator runs. Kept per resource, not per
/// group: a cluster may have the ServiceMonitor CRD without the PodMonitor one.
pub struct Capabilities {
    client: Client,
    ttl: Duration,
    /// Resource names (plurals) served per group/version, with the time the answer expires.
    cache: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

impl Capabilities {
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Answers known in advance (tests): the resources each group/version serves (none: the
    /// group/version is absent). These never expire.
    pub fn with_known(self, known: &[(&str, &[&str])]) -> Self {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        {
            let mut cache = self.cache.lock().expect("capabilities cache lock");
            for (gv, resources) in known {
                let resources = resources.iter().map(|r| r.to_string()).collect();
                cache.insert(gv.to_string(), (far, resources));
            }
        }
        self
    }

    /// Whether the API server serves `group_version` (e.g. `monitoring.coreos.com/v1`) at all.
    pub async fn has(&self, group_version: &str) -> Result<bool, kube::Error> {
        Ok(!self.resources(group_version).await?.is_empty())
    }

    /// Whether the API server serves the resource `plural` (e.g. `podmonitors`) of
    /// `group_version`.
    pub async fn has_resource(
        &self,
        group_version: &str,
        plural: &str,
    ) -> Result<bool, kube::Error> {
        Ok(self
            .resources(group_version)
            .await?
            .iter()
            .any(|name| name == plural))
    }

    async fn resources(&self, group_version: &str) -> Result<Vec<String>, kube::Error> {
        if let Some((expires, resources)) = self
            .cache
            .lock()
            .expect("capabilities cache lock")
            .get(group_version)
            && *expires > Instant::now()
        {
            return Ok(resources.clone());
        }
        let resources: Vec<String> = match self.client.list_api_group_resources(group_version).await
        {
            // Subresources (`servicemonitors/status`) are not resources of their own.
            Ok(list) => list
                .resources
                .into_iter()
                .map(|r| r.name)
                .filter(|name| !name.contains('/'))
                .collect(),
            Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
            Err(e) => return Err(e),
        };
        self.cache.lock().expect("capabilities cache lock").insert(
            group_version.to_string(),
            (Instant::now() + self.ttl, resources.clone()),
        );
        Ok(resources)
    }
}

/// Shared state of the reconcilers.
pub struct Context {
    pub client: Client,
    pub images: DefaultImages,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub capabilities: Capabilities,
    pub registry_stats: StatsFetcher,
    /// Requeue interval of a healthy object (refreshes the registry's figures).
    pub resync: Duration,
    /// What was applied, so that unchanged children are not applied again.
    pub applied: AppliedChildren,
    /// Route53 and CloudWatch (`spec.dns.route53`, `spec.dns.healthCheck`); `None` in tests.
    pub dns: Option<Arc<DnsService>>,
    /// Peer ids of exposed nodes, for the `_dnsaddr` records.
    pub peer_ids: PeerIds,
}

impl Context {
    pub fn new(
        client: Client,
        images: DefaultImages,
        metrics: Metrics,
        identity: &str,
        registry_stats: StatsFetcher,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance: Some(identity.to_string()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            capabilities: Capabilities::new(client.clone(), Duration::from_secs(60)),
            client,
            images,
            metrics,
            registry_stats,
            resync: Duration::from_secs(60),
            // Re-applied at least every resync (60 s), like before: hand edits of metadata only
            // are put back within that.
            applied: AppliedChildren::new(Duration::from_secs(60)),
            dns: None,
            peer_ids: PeerIds::new(http_peer_id_fetcher(Duration::from_secs(2))),
        }
    }

    /// The same context asking pods for peer ids only in `networks` (`--peer-id-networks`).
    pub fn with_peer_id_networks(mut self, networks: Vec<ipnet::IpNet>) -> Self {
        self.peer_ids = std::mem::replace(
            &mut self.peer_ids,
            PeerIds::new(http_peer_id_fetcher(Duration::from_secs(2))),
        )
        .allowing(networks);
        self
    }

    /// The same context with the AWS side.
    pub fn with_dns(mut self, dns: DnsService) -> Self {
        self.dns = Some(Arc::new(dns));
        self
    }

    /// Publishes an event; a failure is logged, never fails the reconciliation.
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.event_related(regarding, None, type_, reason, action, note)
            .await;
    }

    /// An event about `regarding` that also names `related` (e.g. the pod a drain was about):
    /// events of one reason about different related objects are kept apart, where the recorder
    /// would count the second as a repeat of the first and keep the first note.
    pub async fn event_related(
        &self,
        regarding: &ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(bounded_note(note)),
            action: action.to_string(),
            secondary: related,
        };
        if let Err(err) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(error = %err, reason, object = ?regarding.name, "publishing an event failed");
        }
    }
}

/// The API server refuses an event whose note is longer than 1024 bytes: longer ones are cut.
fn bounded_note(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut end = MAX - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::reconcile::apis::{
        DNS_ENDPOINT_API, MONITORING_API, POD_MONITORS, SERVICE_MONITORS,
    };
    use crate::reconcile::mock_api::MockApi;

    #[test]
    fn event_notes_are_cut_to_what_the_api_server_accepts() {
        assert_eq!(bounded_note("short".into()), "short");
        let long = bounded_note("é".repeat(1000));
        assert!(
            long.len() <= 1024 && long.ends_with("..."),
            "{}",
            long.len()
        );
    }

    #[tokio::test]
    async fn resources_are_told_apart_within_a_group_and_the_answer_is_cached() {
        let (client, mut api) = MockApi::new();
        let capabilities = Arc::new(Capabilities::new(client, Duration::from_secs(60)));
        let asking = capabilities.clone();
        let asked = tokio::spawn(async move {
            (
                asking
                    .has_resource(MONITORING_API, SERVICE_MONITORS)
                    .await
                    .unwrap(),
                asking
                    .has_resource(MONITORING_API, POD_MONITORS)
                    .await
                    .unwrap(),
                asking.has(MONITORING_API).await.unwrap(),
            )
        });
        // One discovery request answers all three: the ServiceMonitor CRD without the PodMonitor one.
        api.expect(Method::GET, "/apis/monitoring.coreos.com/v1")
            .await
            .respond(
                200,
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": MONITORING_API,
                    "resources": [
                        {"name": "servicemonitors", "singularName": "servicemonitor", "namespaced": true, "kind": "ServiceMonitor", "verbs": ["get", "list"]},
                        {"name": "servicemonitors/status", "singularName": "", "namespaced": true, "kind": "ServiceMonitor", "verbs": ["get"]}
                    ]}),
            );
        // A second discovery request would go unanswered: bounded wait.
        let answers = tokio::time::timeout(Duration::from_secs(10), asked)
            .await
            .expect("the cached answer was asked of the API server again")
            .unwrap();
        assert_eq!(answers, (true, false, true));
    }

    #[tokio::test]
    async fn an_absent_group_has_no_resources() {
        let (client, mut api) = MockApi::new();
        let capabilities = Capabilities::new(client, Duration::from_secs(60));
        let asked = tokio::spawn(async move {
            (
                capabilities.has(DNS_ENDPOINT_API).await.unwrap(),
                capabilities
                    .has_resource(DNS_ENDPOINT_API, "dnsendpoints")
                    .await
                    .unwrap(),
            )
        });
        api.expect(Method::GET, "/apis/externaldns.k8s.io/v1alpha1")
            .await
            .not_found();
        let answers = tokio::time::timeout(Duration::from_secs(10), asked)
            .await
            .expect("the cached answer was asked of the API server again")
            .unwrap();
        assert_eq!(answers, (false, false));
    }
}
