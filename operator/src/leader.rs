//! Leader election with a `coordination.k8s.io/v1` Lease, so that only one replica reconciles.
//!
//! kube-runtime has no elector; this one follows client-go's rules: the holder renews the Lease
//! every few seconds; another candidate takes it over once `renewTime + leaseDurationSeconds` has
//! passed; every write carries the `resourceVersion` it read, so two candidates racing for an
//! expired Lease cannot both win (the loser gets a 409 Conflict). A leader that cannot renew for a
//! whole lease duration stops leading.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::sync::watch;

/// Settings of the elector.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Who we are (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_interval: Duration,
}

impl LeaseConfig {
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        Self {
            name: name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
        }
    }
}

/// What to do with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or the holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds it and renews it.
    Follow { holder: String },
}

/// Decides from a Lease what a candidate does. Pure.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(0).into());
    let renewed = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
    match renewed {
        Some(renewed) if renewed + duration > now => Decision::Follow { holder },
        _ => Decision::TakeOver,
    }
}

/// The Lease after `decision` by `identity` (`None` for [`Decision::Follow`]).
pub fn next_lease(
    current: Option<&Lease>,
    decision: &Decision,
    config: &LeaseConfig,
    now: Timestamp,
) -> Option<Lease> {
    let mut lease = current.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let mut spec = lease.spec.take().unwrap_or_default();
    let seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    match decision {
        Decision::Follow { .. } => return None,
        Decision::Renew => {
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(seconds);
        }
        Decision::Create | Decision::TakeOver => {
            let transitions = spec.lease_transitions.unwrap_or(0);
            spec = LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_duration_seconds: Some(seconds),
                lease_transitions: Some(if *decision == Decision::Create {
                    0
                } else {
                    transitions + 1
                }),
                ..LeaseSpec::default()
            };
        }
    }
    lease.spec = Some(spec);
    Some(lease)
}

/// Errors of one election round.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("reading Lease {namespace}/{name} failed: {source}")]
    Read {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("writing Lease {namespace}/{name} failed: {source}")]
    Write {
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Runs the election against the API server.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    fn read_error(&self, source: kube::Error) -> LeaseError {
        LeaseError::Read {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    fn write_error(&self, source: kube::Error) -> LeaseError {
        LeaseError::Write {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    /// One round: read, decide, write. `Ok(true)` while we hold the Lease. A lost race (409) or
    /// a Lease created by someone else at the same time is `Ok(false)`, not an error.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaseError> {
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.read_error(e))?;
        let now = Timestamp::now();
        let decision = decide(current.as_ref(), &self.config.identity, now);
        let Some(lease) = next_lease(current.as_ref(), &decision, &self.config, now) else {
            return Ok(false);
        };
        let written = match decision {
            Decision::Create => self.api.create(&PostParams::default(), &lease).await,
            // `replace` sends the resourceVersion we read: a concurrent writer makes it fail.
            _ => {
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(e) => Err(self.write_error(e)),
        }
    }

    /// Gives the Lease up (on shutdown), so another replica takes over at once.
    pub async fn release(&self) -> Result<(), LeaseError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.read_error(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(self.write_error(e)),
        }
    }

    /// Campaigns until `shutdown` resolves, publishing whether we lead on `leading`. Leadership
    /// ends when a round finds another holder, or when no renewal succeeded for a lease duration.
    /// Releases the Lease on shutdown.
    pub async fn run(self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            let holds = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewal = Some(tokio::time::Instant::now());
                    true
                }
                Ok(false) => {
                    last_renewal = None;
                    false
                }
                Err(err) => {
                    tracing::warn!(error = %err, "leader election round failed");
                    last_renewal.is_some_and(|t| t.elapsed() < self.config.lease_duration)
                }
            };
            if *leading.borrow() != holds {
                tracing::info!(identity = %self.config.identity, lease = %self.config.name, leading = holds, "leadership changed");
            }
            leading.send_replace(holds);
            tokio::select! {
                _ = tokio::time::sleep(self.config.renew_interval) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        if *leading.borrow() {
            leading.send_replace(false);
            if let Err(err) = self.release().await {
                tracing::warn!(error = %err, "releasing the leader Lease failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: i64, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("dig-operator".into()),
                namespace: Some("ops".into()),
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: Some(MicroTime(t(renewed))),
                acquire_time: Some(MicroTime(t(0))),
                lease_duration_seconds: Some(duration),
                lease_transitions: Some(2),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "a", t(0)), Decision::Create);
    }

    #[test]
    fn own_lease_is_renewed() {
        assert_eq!(
            decide(Some(&lease(Some("a"), 0, 15)), "a", t(100)),
            Decision::Renew
        );
    }

    #[test]
    fn live_lease_of_another_is_followed() {
        assert_eq!(
            decide(Some(&lease(Some("b"), 0, 15)), "a", t(14)),
            Decision::Follow { holder: "b".into() }
        );
    }

    #[test]
    fn expired_or_released_lease_is_taken_over() {
        assert_eq!(
            decide(Some(&lease(Some("b"), 0, 15)), "a", t(15)),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease(None, 0, 15)), "a", t(1)),
            Decision::TakeOver
        );
    }

    #[test]
    fn take_over_counts_a_transition_and_keeps_the_resource_version() {
        let config = LeaseConfig::new("dig-operator", "ops", "a");
        let current = lease(Some("b"), 0, 15);
        let next = next_lease(Some(&current), &Decision::TakeOver, &config, t(20)).unwrap();
        let spec = next.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.acquire_time, Some(MicroTime(t(20))));
        assert_eq!(next.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn renew_moves_only_the_renew_time() {
        let config = LeaseConfig::new("dig-operator", "ops", "a");
        let next = next_lease(
            Some(&lease(Some("a"), 0, 15)),
            &Decision::Renew,
            &config,
            t(5),
        )
        .unwrap();
        let spec = next.spec.unwrap();
        assert_eq!(spec.renew_time, Some(MicroTime(t(5))));
        assert_eq!(spec.acquire_time, Some(MicroTime(t(0))));
        assert_eq!(spec.lease_transitions, Some(2));
    }

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    fn elector() -> (LeaderElector, Handle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        (
            LeaderElector::new(client, LeaseConfig::new("dig-operator", "ops", "a")),
            handle,
        )
    }

    fn json_response(code: u16, body: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    fn not_found() -> Response<Body> {
        json_response(
            404,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        )
    }

    fn conflict() -> Response<Body> {
        json_response(
            409,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
        )
    }

    const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/dig-operator";

    async fn body_json(request: Request<Body>) -> serde_json::Value {
        let bytes = request.into_body().collect_bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn creates_a_missing_lease() {
        let (elector, mut handle) = elector();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(
                (request.method(), request.uri().path()),
                (&Method::GET, LEASE_PATH)
            );
            send.send_response(not_found());
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::POST);
            assert_eq!(
                request.uri().path(),
                "/apis/coordination.k8s.io/v1/namespaces/ops/leases"
            );
            let body = body_json(request).await;
            assert_eq!(body["spec"]["holderIdentity"], "a");
            assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
            send.send_response(json_response(201, body));
        });
        assert!(elector.try_acquire_or_renew().await.unwrap());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_lost_race_is_not_leadership() {
        let (elector, mut handle) = elector();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            let expired = lease(Some("b"), -100, 15);
            send.send_response(json_response(200, serde_json::to_value(&expired).unwrap()));
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(
                (request.method(), request.uri().path()),
                (&Method::PUT, LEASE_PATH)
            );
            let body = body_json(request).await;
            assert_eq!(
                body["metadata"]["resourceVersion"], "7",
                "the write is conditional on what was read"
            );
            assert_eq!(body["spec"]["holderIdentity"], "a");
            send.send_response(conflict());
        });
        assert!(!elector.try_acquire_or_renew().await.unwrap());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_live_lease_of_another_is_not_written() {
        let (elector, mut handle) = elector();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            let mut live = lease(Some("b"), 0, 15);
            live.spec.as_mut().unwrap().renew_time = Some(MicroTime(Timestamp::now()));
            send.send_response(json_response(200, serde_json::to_value(&live).unwrap()));
        });
        assert!(!elector.try_acquire_or_renew().await.unwrap());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn release_clears_the_holder() {
        let (elector, mut handle) = elector();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(json_response(
                200,
                serde_json::to_value(lease(Some("a"), 0, 15)).unwrap(),
            ));
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::PUT);
            let body = body_json(request).await;
            assert!(body["spec"].get("holderIdentity").is_none(), "{body}");
            assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
            send.send_response(json_response(200, body));
        });
        elector.release().await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn run_leads_then_releases_on_shutdown() {
        let (elector, mut handle) = elector();
        let (leading_tx, mut leading_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(not_found());
            let (request, send) = handle.next_request().await.unwrap();
            let body = body_json(request).await;
            send.send_response(json_response(201, body.clone()));
            // After shutdown: read, then release.
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(json_response(200, body));
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::PUT);
            let released = body_json(request).await;
            assert!(released["spec"].get("holderIdentity").is_none());
            send.send_response(json_response(200, released));
        });
        let run = tokio::spawn(elector.run(leading_tx, stop_rx));
        tokio::time::timeout(Duration::from_secs(5), leading_rx.wait_for(|l| *l))
            .await
            .unwrap()
            .unwrap();
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .unwrap()
            .unwrap();
        assert!(!*leading_rx.borrow());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
