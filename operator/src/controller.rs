//! Runs the DigNetwork and DigNode controllers: watches, error policy, metrics, shutdown.

use std::{
    collections::HashMap,
    fmt::Debug,
    future::Future,
    hash::Hash,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DynamicObject, PartialObjectMeta},
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config as ControllerConfig, Error as ControllerError},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use crate::{
    crd::{
        DigNetwork, DigNode,
        labels::{MANAGED_BY_LABEL, MANAGER},
    },
    reconcile::{
        apis::{
            DNS_ENDPOINT_API, MONITORING_API, dns_endpoint_resource, pod_monitor_resource,
            service_monitor_resource,
        },
        context::Context,
        error::Error,
        network, node,
    },
};

/// Exponential backoff per object for transient errors, reset by a success.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);

    /// Delay before retrying `key` after one more failure: 5 s, 10 s, 20 s ... up to 5 min.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let count = failures.entry(key.to_string()).or_insert(0);
        let delay = Self::FIRST
            .saturating_mul(1u32 << (*count).min(16))
            .min(Self::MAX);
        *count = count.saturating_add(1);
        delay
    }

    pub fn reset(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

/// What to do after a failed reconciliation.
pub fn error_action(error: &Error, backoff: &Backoff, key: &str, resync: Duration) -> Action {
    match error {
        Error::InvalidSpec { source, .. } if source.waits_for_another_object() => {
            Action::requeue(resync)
        }
        // Retrying an invalid spec gives the same answer: wait for the user to change it.
        Error::InvalidSpec { .. } => Action::await_change(),
        _ => Action::requeue(backoff.next(key)),
    }
}

struct Runtime {
    ctx: Arc<Context>,
    backoff: Backoff,
}

fn object_key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

async fn reconcile_network(object: Arc<DigNetwork>, rt: Arc<Runtime>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = network::reconcile(object.clone(), rt.ctx.clone()).await;
    rt.ctx.metrics.reconciled(network::KIND, started.elapsed());
    if result.is_ok() {
        rt.backoff.reset(&object_key(object.as_ref()));
    }
    result
}

async fn reconcile_node(object: Arc<DigNode>, rt: Arc<Runtime>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = node::reconcile(object.clone(), rt.ctx.clone()).await;
    rt.ctx.metrics.reconciled(node::KIND, started.elapsed());
    if result.is_ok() {
        rt.backoff.reset(&object_key(object.as_ref()));
    }
    result
}

fn error_policy<K: Resource>(
    kind: &'static str,
) -> impl Fn(Arc<K>, &Error, Arc<Runtime>) -> Action {
    move |object, error, rt| {
        rt.ctx.metrics.failed(kind, error.metric_label());
        let key = object_key(object.as_ref());
        match error {
            Error::InvalidSpec { .. } => {
                tracing::info!(object = %key, kind, %error, "spec is invalid")
            }
            _ => tracing::warn!(object = %key, kind, %error, "reconciliation failed"),
        }
        error_action(error, &rt.backoff, &key, rt.ctx.resync)
    }
}

fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Only the operator's own children are watched, not every Deployment of the cluster.
/// Every watch is ended by the server after this long and opened again. A watch left dangling by
/// an API server restart (it stays open but delivers nothing) would otherwise keep the cache stale,
/// and reconciles blind to spec changes, for the default 290 s.
const WATCH_TIMEOUT_SECONDS: u32 = 30;

fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS)
}

fn children_config() -> watcher::Config {
    watch_config().labels(&format!("{MANAGED_BY_LABEL}={MANAGER}"))
}

/// Pause of a controller's merged watch streams after a watch error. kube-runtime's default
/// (0.8 s doubling to 30 s, reset only after 120 s without errors) pauses all of a controller's
/// watches together: after an API server restart each watch reports its expired resource version
/// in turn, each report doubles the pause, and no event of any watch is delivered meanwhile, so a
/// spec change made then went unseen for minutes (what the e2e restart test caught, whatever the
/// concurrency). A short cap recovers within seconds and still bounds the retry rate.
#[derive(Clone, Debug)]
pub struct TriggerBackoff {
    next: Duration,
}

impl TriggerBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(2);
}

impl Default for TriggerBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for TriggerBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay)
    }
}

impl kube::runtime::utils::Backoff for TriggerBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Reconciles of one kind running at once. Unbounded, 200 new networks run 200 reconciles side by
/// side: each holds its children's bodies and a connection, and all finish late because they share
/// the API server. A bounded set finishes early and hands its children to the control plane
/// while the rest wait their turn.
const CONCURRENT_RECONCILES: u16 = 16;

/// Child status updates come in bursts (a Deployment's status changes several times while its
/// pods start); one reconcile after the burst instead of one per update.
const DEBOUNCE: Duration = Duration::from_millis(500);

fn controller_config() -> ControllerConfig {
    ControllerConfig::default()
        .concurrency(CONCURRENT_RECONCILES)
        .debounce(DEBOUNCE)
}

/// A metadata-only watch of the operator's children of kind `K`, its store handed to the record
/// of applied children (see `reconcile::applied`). Managed fields are dropped from the cache.
fn watch_children<K>(
    ctx: &Context,
    client: &Client,
    namespace: Option<&str>,
) -> impl Future<Output = ()> + Send + 'static
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let writer = reflector::store::Writer::default();
    ctx.applied.watch(writer.as_reader());
    watcher(api, children_config())
        .default_backoff()
        .modify(|child| child.managed_fields_mut().clear())
        .reflect(writer)
        .for_each(|event| {
            if let Err(error) = event {
                tracing::warn!(kind = K::kind(&()).as_ref(), %error, "watching children failed");
            }
            futures::future::ready(())
        })
}

async fn drain<K, S>(kind: &'static str, stream: S, store: Store<K>, ctx: Arc<Context>)
where
    K: Resource + Clone + Debug + 'static,
    K::DynamicType: Eq + Hash + Clone + Debug,
    S: futures::Stream<
            Item = Result<(ObjectRef<K>, Action), ControllerError<Error, watcher::Error>>,
        >,
{
    stream
        .for_each(|result| {
            ctx.metrics.set_managed(kind, store.state().len());
            match result {
                // Logged, counted and retried by the error policy.
                Err(ControllerError::ReconcilerFailed(..)) | Ok(_) => {}
                // Gone before its turn came: nothing to do.
                Err(ControllerError::ObjectNotFound(object)) => {
                    tracing::debug!(kind, %object, "object deleted before reconciliation")
                }
                // Watch failures (RBAC, API server down) are retried with backoff by the watcher.
                Err(error) => tracing::warn!(kind, %error, "watching failed"),
            }
            futures::future::ready(())
        })
        .await;
}

/// Runs both controllers for one namespace (`None`: all) until `shutdown` resolves.
async fn run_scope(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let rt = Arc::new(Runtime {
        ctx: ctx.clone(),
        backoff: Backoff::default(),
    });

    let mut networks = Controller::new(api_for::<DigNetwork>(&client, ns), watch_config())
        .with_config(controller_config())
        .trigger_backoff(TriggerBackoff::default())
        .owns(api_for::<Deployment>(&client, ns), children_config())
        .owns(api_for::<StatefulSet>(&client, ns), children_config())
        .owns(api_for::<Service>(&client, ns), children_config())
        .owns(api_for::<ConfigMap>(&client, ns), children_config())
        .owns(
            api_for::<PodDisruptionBudget>(&client, ns),
            children_config(),
        );
    // Optional children are watched when their API exists at start-up; otherwise (or when a CRD
    // is installed later) the periodic resync re-applies them.
    for (group_version, resource) in [
        (MONITORING_API, service_monitor_resource()),
        (MONITORING_API, pod_monitor_resource()),
        (DNS_ENDPOINT_API, dns_endpoint_resource()),
    ] {
        match ctx
            .capabilities
            .has_resource(group_version, &resource.plural)
            .await
        {
            Ok(true) => {
                let api: Api<DynamicObject> = match ns {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
                    None => Api::all_with(client.clone(), &resource),
                };
                networks = networks.owns_with(api, resource, children_config());
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%group_version, %error, "API discovery failed; its objects are not watched")
            }
        }
    }
    let networks = networks.graceful_shutdown_on(shutdown.clone());
    let network_store = networks.store();
    let network_stream = networks.run(
        reconcile_network,
        error_policy::<DigNetwork>(network::KIND),
        rt.clone(),
    );

    let nodes = Controller::new(api_for::<DigNode>(&client, ns), watch_config())
        .with_config(controller_config())
        .trigger_backoff(TriggerBackoff::default());
    let node_store = nodes.store();
    let lookup = node_store.clone();
    // A change to a DigNetwork (its image, ports, PSK...) reaches the DigNodes that join it.
    let nodes = nodes
        .owns(api_for::<StatefulSet>(&client, ns), children_config())
        .owns(api_for::<Service>(&client, ns), children_config())
        .owns(api_for::<ConfigMap>(&client, ns), children_config())
        .watches(
            api_for::<DigNetwork>(&client, ns),
            watch_config(),
            move |network: DigNetwork| {
                let namespace = network.namespace();
                let name = network.name_any();
                lookup
                    .state()
                    .into_iter()
                    .filter(|n| n.namespace() == namespace && n.spec.network_ref.name == name)
                    .map(|n| ObjectRef::from_obj(n.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown);
    let node_stream = nodes.run(reconcile_node, error_policy::<DigNode>(node::KIND), rt);

    let children = futures::future::join5(
        watch_children::<Deployment>(&ctx, &client, ns),
        watch_children::<StatefulSet>(&ctx, &client, ns),
        watch_children::<Service>(&ctx, &client, ns),
        watch_children::<ConfigMap>(&ctx, &client, ns),
        watch_children::<PodDisruptionBudget>(&ctx, &client, ns),
    );
    // The children's watches never end on their own: they stop with the controllers.
    tokio::select! {
        _ = async {
            tokio::join!(
                drain(network::KIND, network_stream, network_store, ctx.clone()),
                drain(node::KIND, node_stream, node_store, ctx.clone()),
            )
        } => {}
        _ = children => {}
    }
}

/// Runs the controllers over `namespaces` (empty: the whole cluster) until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    if namespaces.is_empty() {
        run_scope(ctx, None, shutdown).await;
    } else {
        futures::future::join_all(
            namespaces
                .into_iter()
                .map(|ns| run_scope(ctx.clone(), Some(ns), shutdown.clone())),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::validate::InvalidSpec;

    fn invalid(reason: &'static str) -> Error {
        Error::InvalidSpec {
            object: "DigNetwork ns/net".into(),
            source: InvalidSpec {
                reason,
                message: "m".into(),
            },
        }
    }

    #[test]
    fn invalid_spec_waits_for_a_change() {
        let backoff = Backoff::default();
        assert_eq!(
            error_action(
                &invalid("InvalidDns"),
                &backoff,
                "ns/net",
                Duration::from_secs(60)
            ),
            Action::await_change()
        );
    }

    #[test]
    fn missing_referenced_object_is_looked_at_again_slowly() {
        let backoff = Backoff::default();
        assert_eq!(
            error_action(
                &invalid("PskSecretNotFound"),
                &backoff,
                "ns/net",
                Duration::from_secs(60)
            ),
            Action::requeue(Duration::from_secs(60))
        );
    }

    #[test]
    fn watch_errors_pause_the_triggers_briefly() {
        use kube::runtime::utils::Backoff as _;
        let mut backoff = TriggerBackoff::default();
        let delays: Vec<_> = backoff.by_ref().take(6).collect();
        assert_eq!(delays[0], Duration::from_millis(250));
        assert_eq!(delays[1], Duration::from_millis(500));
        assert_eq!(delays[5], Duration::from_secs(2), "capped");
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn transient_errors_back_off_exponentially_and_reset() {
        let backoff = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| backoff.next("ns/net")).collect();
        assert_eq!(delays[0], Duration::from_secs(5));
        assert_eq!(delays[1], Duration::from_secs(10));
        assert_eq!(delays[2], Duration::from_secs(20));
        assert_eq!(delays[7], Duration::from_secs(300));
        assert_eq!(backoff.next("ns/other"), Duration::from_secs(5));
        backoff.reset("ns/net");
        assert_eq!(backoff.next("ns/net"), Duration::from_secs(5));
    }
}
