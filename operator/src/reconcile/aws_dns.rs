//! The DigNetwork reconciler's AWS step: keeps the finalizer of a network that makes AWS
//! objects, syncs them (`crate::route53`), and turns the outcome into the `DnsSynced` condition,
//! events and `status.dns`. It never fails the reconcile: an AWS error is a condition, an event
//! and an earlier requeue, and the network's Kubernetes children are applied all the same.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;

use super::{
    conditions::Desired,
    context::Context,
    error::{Error, Result},
    status::describe,
};
use crate::{
    crd::{DigNetwork, DnsStatus},
    route53::{self, DesiredDns, DnsFacts, DnsOutcome, DnsService, Owner},
};

/// Held by a DigNetwork while AWS objects it made may exist.
pub const FINALIZER: &str = "dig.net/aws-dns";
/// Condition type: whether Route53 and CloudWatch hold what `spec.dns` asks for.
pub const DNS_SYNCED: &str = "DnsSynced";

/// What the AWS step adds to the status.
#[derive(Clone, Debug, Default)]
pub struct DnsStep {
    pub status: Option<DnsStatus>,
    pub condition: Option<Desired>,
    /// Reconcile again this soon (a failed sync's backoff).
    pub requeue: Option<Duration>,
    /// Health check id for the external-dns annotations, when the operator made it.
    pub external_dns_health_check: Option<String>,
}

/// The AWS identity of a network's objects.
pub fn owner(ctx: &Context, network: &DigNetwork) -> Owner {
    Owner {
        namespace: network.namespace().unwrap_or_default(),
        name: network.name_any(),
        uid: network.uid().unwrap_or_default(),
        owner_id: ctx
            .dns
            .as_ref()
            .map(|d| d.owner_id.clone())
            .unwrap_or_default(),
    }
}

fn has_finalizer(network: &DigNetwork) -> bool {
    network.finalizers().iter().any(|f| f == FINALIZER)
}

/// Hostnames that earlier syncs wrote: the status's records (so a hostname taken out of the spec
/// is cleaned up) and the spec's.
fn previous_hostnames(network: &DigNetwork) -> Vec<String> {
    let mut names: Vec<String> = network
        .status
        .as_ref()
        .and_then(|s| s.dns.as_ref())
        .map(|d| {
            d.records
                .iter()
                .filter(|r| r.type_ != "TXT")
                .map(|r| r.name.clone())
                .collect()
        })
        .unwrap_or_default();
    names.extend(
        network
            .spec
            .dns
            .as_ref()
            .and_then(|d| d.route53.as_ref())
            .map(|r| r.hostnames.clone())
            .unwrap_or_default(),
    );
    names.sort();
    names.dedup();
    names
}

async fn patch_finalizers(
    ctx: &Context,
    network: &DigNetwork,
    patch: serde_json::Value,
) -> Result<()> {
    let api: Api<DigNetwork> =
        Api::namespaced(ctx.client.clone(), &network.namespace().unwrap_or_default());
    let patch: json_patch::Patch =
        serde_json::from_value(patch).expect("finalizer patches are valid JSON patches");
    api.patch(
        &network.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await
    .map_err(|source| Error::Apply {
        kind: "DigNetwork".into(),
        name: format!("{} (finalizer {FINALIZER})", network.name_any()),
        object: describe(network),
        source: Box::new(source),
    })?;
    Ok(())
}

/// Adds the finalizer before the first AWS object is made; guarded by the resource version, so
/// a concurrent change of the finalizers fails the patch instead of being overwritten.
async fn add_finalizer(ctx: &Context, network: &DigNetwork) -> Result<()> {
    let version = network.resource_version().unwrap_or_default();
    let patch = if network.finalizers().is_empty() {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
        ])
    } else {
        json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}
        ])
    };
    patch_finalizers(ctx, network, patch).await
}

async fn remove_finalizer(ctx: &Context, network: &DigNetwork) -> Result<()> {
    let Some(index) = network.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    patch_finalizers(
        ctx,
        network,
        json!([
            {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
            {"op": "remove", "path": format!("/metadata/finalizers/{index}")}
        ]),
    )
    .await
}

fn previous_condition(network: &DigNetwork) -> Option<&Condition> {
    network
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == DNS_SYNCED)
}

fn kept_condition(network: &DigNetwork) -> Option<Desired> {
    previous_condition(network).map(|c| {
        Desired::new(
            DNS_SYNCED,
            c.status == "True",
            c.reason.clone(),
            c.message.clone(),
        )
    })
}

fn summary(status: &DnsStatus) -> String {
    format!(
        "{} health check(s), {} record set(s), {} alarm(s) in sync",
        status.health_checks.len(),
        status.records.len(),
        status.alarms.len()
    )
}

/// Publishes a Warning event when the condition's message changed (not at every retry).
async fn warn_once(ctx: &Context, network: &DigNetwork, reason: &str, message: &str) {
    if previous_condition(network).is_some_and(|c| c.message == message) {
        return;
    }
    ctx.event(
        &network.object_ref(&()),
        EventType::Warning,
        reason,
        "SyncDns",
        message.to_string(),
    )
    .await;
}

/// Syncs a live network's AWS objects. Runs after its children were applied.
pub async fn sync_network(ctx: &Context, network: &DigNetwork, facts: &DnsFacts) -> DnsStep {
    let dns_spec = network.spec.dns.as_ref();
    let uses_aws = route53::uses_aws(dns_spec);
    if !uses_aws && !has_finalizer(network) {
        return DnsStep::default();
    }
    let previous_status = network.status.as_ref().and_then(|s| s.dns.clone());
    let Some(service) = ctx.dns.as_ref() else {
        let message = "spec.dns.route53 / spec.dns.healthCheck need the operator's AWS client, which this operator runs without".to_string();
        return DnsStep {
            status: previous_status,
            condition: Some(Desired::new(DNS_SYNCED, false, "AwsNotConfigured", message)),
            ..DnsStep::default()
        };
    };
    if uses_aws
        && !has_finalizer(network)
        && let Err(error) = add_finalizer(ctx, network).await
    {
        // The next reconcile (the patch changed the object, or this one is retried) tries again;
        // nothing is made in AWS without the finalizer.
        let message = format!("adding the finalizer {FINALIZER} failed: {error}");
        return DnsStep {
            status: previous_status,
            condition: Some(Desired::new(DNS_SYNCED, false, "FinalizerFailed", message)),
            requeue: Some(Duration::from_secs(5)),
            ..DnsStep::default()
        };
    }
    let owner = owner(ctx, network);
    let desired = route53::desired(dns_spec, &owner, facts, network.spec.bootstrap.port);
    let outcome = service
        .reconcile(&owner, &desired, &previous_hostnames(network), false)
        .await;
    let synced = matches!(outcome, DnsOutcome::Synced(_));
    let mut step = outcome_step(ctx, network, &desired, outcome, previous_status).await;
    if synced
        && !desired.hostnames.is_empty()
        && let Some(status) = step.status.as_mut()
    {
        status.dnsaddr = facts.dnsaddr.clone();
    }
    if !uses_aws
        && matches!(&step.condition, Some(c) if c.status)
        && let Err(error) = remove_finalizer(ctx, network).await
    {
        tracing::warn!(object = %describe(network), %error, "removing the finalizer failed");
    }
    step
}

async fn outcome_step(
    ctx: &Context,
    network: &DigNetwork,
    desired: &DesiredDns,
    outcome: DnsOutcome,
    previous_status: Option<DnsStatus>,
) -> DnsStep {
    let external_id = |status: &Option<DnsStatus>| {
        let target = desired.external_dns_health_check.as_ref()?;
        status
            .as_ref()?
            .health_checks
            .iter()
            .find(|h| h.address == target.as_str())
            .map(|h| h.id.clone())
    };
    match outcome {
        DnsOutcome::Unchanged | DnsOutcome::Waiting { .. } => {
            let requeue = match outcome {
                DnsOutcome::Waiting { retry_in } => Some(retry_in),
                _ => None,
            };
            DnsStep {
                external_dns_health_check: external_id(&previous_status),
                status: previous_status,
                condition: kept_condition(network),
                requeue,
            }
        }
        DnsOutcome::Synced(report) => {
            if !report.changes.is_empty() {
                ctx.event(
                    &network.object_ref(&()),
                    EventType::Normal,
                    DNS_SYNCED,
                    "SyncDns",
                    report.changes.join("; "),
                )
                .await;
            }
            let status = Some(report.status.clone());
            let condition = if report.problems.is_empty() {
                Desired::new(DNS_SYNCED, true, "Synced", summary(&report.status))
            } else {
                let message = report.problems_message();
                let reason = report.problems[0].reason;
                warn_once(ctx, network, reason, &message).await;
                Desired::new(DNS_SYNCED, false, reason, message)
            };
            DnsStep {
                external_dns_health_check: external_id(&status),
                status,
                condition: Some(condition),
                requeue: None,
            }
        }
        DnsOutcome::Failed { error, retry_in } => {
            let reason = error.kind.reason();
            let message = format!("{error}; retrying in {}s", retry_in.as_secs());
            warn_once(ctx, network, reason, &error.to_string()).await;
            DnsStep {
                external_dns_health_check: external_id(&previous_status),
                status: previous_status,
                condition: Some(Desired::new(DNS_SYNCED, false, reason, message)),
                requeue: Some(retry_in),
            }
        }
    }
}

/// A DigNetwork being deleted: deletes what it made in AWS, then lets it go. Until AWS agrees,
/// the network stays (Terminating) with the reason in its status and events.
pub async fn finalize(ctx: &Context, network: &DigNetwork) -> Result<Action> {
    if !has_finalizer(network) {
        // Owner references let the garbage collector remove every child.
        return Ok(Action::await_change());
    }
    let Some(service) = ctx.dns.as_ref() else {
        tracing::warn!(object = %describe(network), "cannot delete AWS objects without the AWS client; remove the finalizer by hand to leave them");
        return Ok(Action::requeue(Duration::from_secs(60)));
    };
    let owner = owner(ctx, network);
    let outcome = service
        .reconcile(
            &owner,
            &DesiredDns::default(),
            &previous_hostnames(network),
            true,
        )
        .await;
    let done = match &outcome {
        // A hosted zone that is gone took its records with it.
        DnsOutcome::Synced(report) => report
            .problems
            .iter()
            .all(|p| p.reason == route53::AwsErrorKind::HostedZoneNotFound.reason()),
        _ => false,
    };
    if done {
        remove_finalizer(ctx, network).await?;
        service.forget(&owner);
        ctx.event(
            &network.object_ref(&()),
            EventType::Normal,
            "DnsDeleted",
            "Finalize",
            format!(
                "deleted the Route53 records, health checks and alarms of {}",
                describe(network)
            ),
        )
        .await;
        return Ok(Action::await_change());
    }
    let retry_in = match &outcome {
        DnsOutcome::Failed { error, retry_in } => {
            warn_once(ctx, network, error.kind.reason(), &error.to_string()).await;
            *retry_in
        }
        DnsOutcome::Waiting { retry_in } => *retry_in,
        DnsOutcome::Synced(report) => {
            let message = report.problems_message();
            warn_once(ctx, network, report.problems[0].reason, &message).await;
            service.resync()
        }
        DnsOutcome::Unchanged => DnsService::FIRST_BACKOFF,
    };
    Ok(Action::requeue(retry_in))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::Method;
    use prometheus_client::registry::Registry;
    use serde_json::json;

    use super::*;
    use crate::{
        metrics::Metrics,
        reconcile::{fixtures::images, mock_api::MockApi},
        route53::{AwsClient, AwsSettings},
    };

    /// A context whose AWS endpoint refuses every connection.
    async fn context(client: kube::Client) -> Arc<Context> {
        let aws = AwsClient::new(&AwsSettings {
            region: Some("us-east-1".into()),
            cloudwatch_region: "us-east-1".into(),
            endpoint_url: Some("http://127.0.0.1:9".into()),
            max_attempts: 1,
            static_credentials: Some(("test".into(), "test".into())),
        })
        .await;
        let fetch: crate::reconcile::context::StatsFetcher =
            Arc::new(|_| Box::pin(async { Err("unused".to_string()) }));
        let ctx = Context::new(
            client,
            images(),
            Metrics::register(&mut Registry::default()),
            "test-operator",
            fetch,
        )
        .with_dns(DnsService::new(
            aws,
            "test".into(),
            Duration::from_secs(600),
        ));
        Arc::new(ctx)
    }

    fn route53_network() -> DigNetwork {
        let mut network = crate::reconcile::fixtures::network(
            "dns:\n  route53:\n    hostnames: [bootstrap.example.com]",
        );
        network.metadata.resource_version = Some("7".into());
        network
    }

    #[tokio::test]
    async fn the_finalizer_comes_first_and_an_aws_failure_is_a_condition_not_an_error() {
        let (client, mut api) = MockApi::new();
        let ctx = context(client).await;
        let network = route53_network();
        let facts = DnsFacts::default();
        let step = tokio::spawn({
            let ctx = ctx.clone();
            let network = network.clone();
            async move { sync_network(&ctx, &network, &facts).await }
        });
        let patch = api
            .expect(
                Method::PATCH,
                "/apis/dig.net/v1alpha1/namespaces/ns/dignetworks/net",
            )
            .await;
        assert_eq!(patch.content_type, "application/json-patch+json");
        assert_eq!(
            patch.body,
            json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
                {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
            ]),
            "guarded by the resource version, so no concurrent change is lost"
        );
        patch.respond(200, serde_json::to_value(&network).unwrap());
        let event = api.expect_event("ns", "AwsUnreachable", "Warning").await;
        assert!(
            event["note"].as_str().unwrap().contains("route53:"),
            "names the AWS action: {event}"
        );
        let step = tokio::time::timeout(Duration::from_secs(60), step)
            .await
            .unwrap()
            .unwrap();
        let condition = step.condition.unwrap();
        assert_eq!(condition.type_, DNS_SYNCED);
        assert!(!condition.status);
        assert_eq!(condition.reason, "AwsUnreachable");
        assert_eq!(step.requeue, Some(DnsService::FIRST_BACKOFF));
    }

    #[tokio::test]
    async fn a_network_without_aws_objects_is_left_alone() {
        let (client, _api) = MockApi::new();
        let ctx = context(client).await;
        let network = crate::reconcile::fixtures::network("dns:\n  hostnames: [b.example.com]");
        // No request may be made: the mock server never answers.
        let step = tokio::time::timeout(
            Duration::from_secs(5),
            sync_network(&ctx, &network, &DnsFacts::default()),
        )
        .await
        .unwrap();
        assert!(step.condition.is_none() && step.status.is_none());
    }
}
