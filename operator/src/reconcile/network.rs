//! Reconciliation of a DigNetwork: dereference -> validate -> build -> apply -> status.

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{Secret, Service},
    },
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::ApiResource,
    runtime::{controller::Action, events::EventType},
};

use super::{
    apis::{
        self, DNS_ENDPOINT_API, MONITORING_API, POD_MONITORS, SERVICE_MONITORS,
        pod_monitor_resource, service_monitor_resource,
    },
    context::{Context, RegistryStats},
    error::{Error, Result},
};
use super::{
    apply, aws_dns,
    build::{self, ChildObject, build_network},
    conditions::{self, Desired},
    dns::DnsTarget,
    dnsaddr, drain,
    meta::{self, Component, names},
    resize::{self, NodeVolumes},
    scale_down::{self, NodeScale},
    status::{self, describe},
    validate::{NetworkFacts, PskSecret, validate_network},
    volumes,
};
use crate::{
    crd::{BootstrapEndpoint, DigNetwork, DigNetworkStatus, DnsMode, network::PrivateNetwork},
    route53,
};

/// Kind label of metrics and logs.
pub const KIND: &str = "DigNetwork";

/// Reads the PSK Secret a network refers to (`None`: the network is not private). A hash of its
/// value goes into the pod template, so a rotated key rolls the nodes out.
pub async fn read_psk(
    ctx: &Context,
    namespace: &str,
    private: Option<&PrivateNetwork>,
    object: &str,
) -> Result<Option<PskSecret>> {
    let Some(private) = private else {
        return Ok(None);
    };
    let (name, key) = (
        private.psk_secret_ref.name.as_str(),
        private.psk_secret_ref.key.as_str(),
    );
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = secrets.get_opt(name).await.map_err(|source| Error::Read {
        what: format!("Secret {namespace}/{name}"),
        object: object.to_string(),
        source: Box::new(source),
    })?;
    Ok(Some(match secret {
        None => PskSecret::NotFound,
        Some(secret) => match secret.data.as_ref().and_then(|d| d.get(key)) {
            Some(value) => PskSecret::Present {
                hash: blake3::hash(&value.0).to_hex()[..16].to_string(),
            },
            None => match secret.string_data.as_ref().and_then(|d| d.get(key)) {
                Some(value) => PskSecret::Present {
                    hash: blake3::hash(value.as_bytes()).to_hex()[..16].to_string(),
                },
                None => PskSecret::KeyMissing,
            },
        },
    }))
}

/// Whether the API server serves `plural` of `group_version` (any resource of it: `None`).
async fn has_api(
    ctx: &Context,
    group_version: &str,
    plural: Option<&str>,
    object: &str,
) -> Result<bool> {
    let answer = match plural {
        Some(plural) => ctx.capabilities.has_resource(group_version, plural).await,
        None => ctx.capabilities.has(group_version).await,
    };
    answer.map_err(|source| Error::Read {
        what: format!("API discovery of {group_version}"),
        object: object.to_string(),
        source: Box::new(source),
    })
}

/// Reads everything the spec refers to.
async fn dereference(network: &DigNetwork, ctx: &Context) -> Result<NetworkFacts> {
    let object = describe(network);
    let namespace = network.namespace().unwrap_or_default();
    let spec = &network.spec;
    let psk = read_psk(ctx, &namespace, spec.private_network.as_ref(), &object).await?;
    let service_monitor_api = has_api(ctx, MONITORING_API, Some(SERVICE_MONITORS), &object).await?;
    let pod_monitor_api = has_api(ctx, MONITORING_API, Some(POD_MONITORS), &object).await?;
    let dns_endpoint_api = has_api(ctx, DNS_ENDPOINT_API, None, &object).await?;
    let mut bootstrap_targets = Vec::new();
    let dns_endpoint = spec
        .dns
        .as_ref()
        .is_some_and(|d| d.mode == DnsMode::DnsEndpoint && !d.hostnames.is_empty());
    let route53 = spec.dns.as_ref().is_some_and(|d| d.route53.is_some());
    if dns_endpoint || route53::uses_aws(spec.dns.as_ref()) {
        let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
        let name = names::bootstrap(&network.name_any());
        let service = services
            .get_opt(&name)
            .await
            .map_err(|source| Error::Read {
                what: format!("Service {namespace}/{name}"),
                object: object.clone(),
                source: Box::new(source),
            })?;
        bootstrap_targets = service.map(|s| service_targets(&s)).unwrap_or_default();
    }
    let mut dnsaddr = Vec::new();
    if dns_endpoint || route53 {
        let nodes = dnsaddr::exposed_nodes(network, &network.name_any());
        let (known, problems) = ctx
            .peer_ids
            .of(
                &ctx.client,
                &namespace,
                &network.name_any(),
                &nodes,
                spec.nodes.api_port,
            )
            .await;
        for problem in problems {
            tracing::info!(object, %problem, "an exposed node is not in the _dnsaddr records yet");
        }
        dnsaddr = dnsaddr::dnsaddr_values(&known, spec.private_network.is_none());
    }
    let external_dns_health_check = external_dns_health_check(network, &bootstrap_targets);
    Ok(NetworkFacts {
        psk,
        service_monitor_api,
        pod_monitor_api,
        dns_endpoint_api,
        bootstrap_targets,
        dnsaddr,
        external_dns_health_check,
    })
}

/// The AWS view of the bootstrap Service's addresses.
fn aws_targets(targets: &[DnsTarget]) -> Vec<route53::model::Target> {
    targets
        .iter()
        .map(|t| match t {
            DnsTarget::Ip(ip) => route53::model::Target::Ip(ip.clone()),
            DnsTarget::Hostname(h) => route53::model::Target::Hostname(h.clone()),
        })
        .collect()
}

/// The id of the health check the operator made for the external-dns records, as the last sync
/// recorded it.
fn external_dns_health_check(network: &DigNetwork, targets: &[DnsTarget]) -> Option<String> {
    let facts = route53::DnsFacts {
        targets: aws_targets(targets),
        dnsaddr: Vec::new(),
    };
    let owner = route53::Owner {
        namespace: String::new(),
        name: String::new(),
        uid: String::new(),
        owner_id: String::new(),
    };
    let target =
        route53::desired(network.spec.dns.as_ref(), &owner, &facts, 0).external_dns_health_check?;
    network
        .status
        .as_ref()?
        .dns
        .as_ref()?
        .health_checks
        .iter()
        .find(|h| h.address == target.as_str())
        .map(|h| h.id.clone())
}

/// Addresses of a Service for DNS: its load balancer ingress, else its cluster IP.
pub fn service_targets(service: &Service) -> Vec<DnsTarget> {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let mut targets: Vec<DnsTarget> = ingress
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.ip.clone()
                .map(DnsTarget::Ip)
                .or_else(|| i.hostname.clone().map(DnsTarget::Hostname))
        })
        .collect();
    if targets.is_empty() {
        let cluster_ip = service
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.clone())
            .filter(|ip| !ip.is_empty() && ip != "None");
        targets.extend(cluster_ip.map(DnsTarget::Ip));
    }
    targets
}

fn previous_status(network: &DigNetwork) -> DigNetworkStatus {
    network.status.clone().unwrap_or_default()
}

/// Reconciles one DigNetwork.
pub async fn reconcile(network: Arc<DigNetwork>, ctx: Arc<Context>) -> Result<Action> {
    if network.meta().deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove every child; what the network made
        // in AWS is deleted first, under a finalizer.
        return aws_dns::finalize(&ctx, &network).await;
    }
    let object = describe(network.as_ref());
    let reference = network.object_ref(&());
    let facts = dereference(&network, &ctx).await?;
    let previous = previous_status(&network);
    let valid = match validate_network(&network, &ctx.images, facts) {
        Ok(valid) => valid,
        Err(invalid) => {
            return Err(status::reject_invalid(&ctx, network.as_ref(), &previous, invalid).await);
        }
    };
    // Before the apply: a grown claim template cannot be applied to the StatefulSet there.
    let node_statefulset = names::node(&valid.name);
    let node_selector = meta::selector_string(&valid.name, Component::Node);
    let volume_plan = resize::grow_volumes(
        &ctx,
        &NodeVolumes {
            namespace: &valid.namespace,
            statefulset: &node_statefulset,
            selector: &node_selector,
            size: &network.spec.nodes.storage.size,
            conditions: &previous.conditions,
        },
        &object,
        &reference,
    )
    .await?;
    // A scale-down keeps the leaving node until it drained (docs/DESIGN.md §5).
    let drain_plan = scale_down::step(
        &ctx,
        &NodeScale {
            namespace: &valid.namespace,
            statefulset: &node_statefulset,
            wanted: network.spec.nodes.replicas,
            status_replicas: previous.replicas,
            previous: previous.drain.as_ref(),
            api_port: network.spec.nodes.api_port,
            timeout: drain::parse_timeout(&network.spec.nodes.drain_timeout)
                .unwrap_or(drain::DEFAULT_TIMEOUT),
        },
        &object,
        &reference,
    )
    .await?;
    let children = build_network(&valid);
    let mut to_apply = children.to_apply();
    if let Some(plan) = &drain_plan {
        scale_down::hold_replicas(&mut to_apply, plan.replicas);
    }
    let applied = apply::apply_all(
        &ctx.client,
        &ctx.applied,
        &valid.namespace,
        &object,
        &to_apply,
    )
    .await?;
    // Children become unwanted only through a spec change: pruning (a list per prunable kind)
    // waits for a generation not yet observed. A failed prune fails the reconcile before the
    // status records the generation, so it is tried again.
    if previous.observed_generation != network.metadata.generation {
        prune_unwanted(&ctx, &valid, &to_apply, &object).await?;
    }

    let find = |kind: &str| {
        applied
            .iter()
            .zip(&to_apply)
            .find(|(_, c)| c.resource.kind == kind)
            .and_then(|(a, _)| a.as_ref())
    };
    let deployment: Deployment = apply::decode(
        find("Deployment").expect("a Deployment is always applied"),
        "Deployment",
    )?;
    let statefulset: StatefulSet = apply::decode(
        find("StatefulSet").expect("a StatefulSet is always applied"),
        "StatefulSet",
    )?;
    let bootstrap_rollout = conditions::deployment_rollout(&deployment);
    let node_rollout = conditions::statefulset_rollout(&statefulset);

    let url = build::bootstrap_url(&valid.name, &valid.namespace, network.spec.bootstrap.port);
    let mut notes: Vec<String> = valid.warnings.iter().map(|w| w.message.clone()).collect();
    let stats = if bootstrap_rollout.ready > 0 {
        match (ctx.registry_stats)(url.clone()).await {
            Ok(stats) => Some(stats),
            Err(message) => {
                notes.push(format!("registry figures unavailable: {message}"));
                None
            }
        }
    } else {
        None
    };
    let mut desired: Vec<Desired> = conditions::applied(
        &[("bootstrap", bootstrap_rollout), ("nodes", node_rollout)],
        &notes,
    );
    desired.extend(volume_plan.condition.clone());
    desired.extend(drain_plan.as_ref().and_then(|p| p.condition.clone()));
    // After the children: an AWS outage never holds the network's own objects back.
    let dns_facts = route53::DnsFacts {
        targets: aws_targets(&valid.facts.bootstrap_targets),
        dnsaddr: valid.facts.dnsaddr.clone(),
    };
    let dns = aws_dns::sync_network(&ctx, &network, &dns_facts).await;
    let mut previous_conditions = previous.conditions.clone();
    match dns.condition.clone() {
        Some(condition) => desired.push(condition),
        None => previous_conditions.retain(|c| c.type_ != aws_dns::DNS_SYNCED),
    }
    // A health check made just now reaches the external-dns annotations at the next reconcile.
    let dns_requeue = if dns.external_dns_health_check != valid.facts.external_dns_health_check {
        Some(std::time::Duration::from_secs(1))
    } else {
        dns.requeue
    };
    // Claims are not watched: look again soon while they grow.
    let resize_requeue = volume_plan.waiting().then_some(volumes::RESIZE_POLL);
    let drain_requeue = drain_plan.as_ref().and_then(|p| p.requeue);
    let requeue = dns_requeue
        .into_iter()
        .chain(resize_requeue)
        .chain(drain_requeue)
        .min();
    let status = DigNetworkStatus {
        observed_generation: network.metadata.generation,
        conditions: conditions::merge(
            &previous_conditions,
            &desired,
            network.metadata.generation,
            Timestamp::now(),
        ),
        network_id: Some(valid.network_id.clone()),
        bootstrap_ready_replicas: bootstrap_rollout.ready,
        ready_nodes: node_rollout.ready,
        nodes: network.spec.nodes.replicas,
        replicas: statefulset.status.as_ref().map_or(0, |s| s.replicas),
        selector: Some(node_selector),
        bootstrap_endpoint: Some(BootstrapEndpoint {
            url,
            hostname: network.spec.dns.as_ref().and_then(|d| {
                d.hostnames
                    .first()
                    .or(d.route53.as_ref().and_then(|r| r.hostnames.first()))
                    .cloned()
            }),
        }),
        peers: stats.map(|s: RegistryStats| s.peers),
        stores: stats.map(|s| s.stores),
        dns: dns.status,
        drain: drain_plan.and_then(|p| p.status),
    };
    if status != previous {
        status::patch_status(&ctx, network.as_ref(), &status).await?;
    }
    if previous.observed_generation != network.metadata.generation {
        let note = format!(
            "applied generation {} ({} objects)",
            network.metadata.generation.unwrap_or(0),
            to_apply.len()
        );
        ctx.event(&reference, EventType::Normal, "Applied", "Apply", note)
            .await;
        // Once per spec change: the Ready condition's message keeps them visible meanwhile.
        for warning in &valid.warnings {
            ctx.event(
                &reference,
                EventType::Warning,
                warning.reason,
                "Apply",
                warning.message.clone(),
            )
            .await;
        }
    }
    let ready = status::is_ready(&status.conditions);
    let resync = if ready { ctx.resync } else { ctx.resync / 4 };
    if ready && !status::is_ready(&previous.conditions) {
        ctx.event(
            &reference,
            EventType::Normal,
            "Ready",
            "Reconcile",
            "bootstrap registry and all nodes are ready".to_string(),
        )
        .await;
    }
    Ok(Action::requeue(requeue.map_or(resync, |d| d.min(resync))))
}

/// Removes children a spec no longer wants: per-pod Services after a scale-down or when exposure
/// is turned off, the DNSEndpoint or the Service/PodMonitors when they are turned off.
async fn prune_unwanted(
    ctx: &Context,
    valid: &super::validate::ValidNetwork<'_>,
    applied: &[ChildObject],
    object: &str,
) -> Result<()> {
    let uid = valid.owner.uid.as_str();
    let wanted = |resource: &ApiResource| -> BTreeSet<String> {
        applied
            .iter()
            .filter(|c| c.resource.kind == resource.kind)
            .map(|c| c.name.clone())
            .collect()
    };
    let mut prunable = vec![ApiResource::erase::<Service>(&())];
    if valid.facts.dns_endpoint_api {
        prunable.push(apis::dns_endpoint_resource());
    }
    if valid.facts.service_monitor_api {
        prunable.push(service_monitor_resource());
    }
    if valid.facts.pod_monitor_api {
        prunable.push(pod_monitor_resource());
    }
    for resource in prunable {
        let deleted = apply::prune(
            &ctx.client,
            &valid.namespace,
            &valid.name,
            uid,
            object,
            &resource,
            &wanted(&resource),
        )
        .await?;
        for name in deleted {
            tracing::info!(object, kind = %resource.kind, name, "deleted a child no longer wanted");
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
