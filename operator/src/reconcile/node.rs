//! Reconciliation of a DigNode: dereference (its DigNetwork, the network's PSK) -> validate ->
//! build -> apply -> status.

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::{
    api::{apps::v1::StatefulSet, core::v1::Service},
    jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::ApiResource,
    runtime::{controller::Action, events::EventType},
};

use super::{
    apply,
    build_node::{build_node, validate_node},
    conditions,
    meta::{self, Component, names},
    network::read_psk,
    resize::{self, NodeVolumes},
    status::{self, describe},
    volumes::{self, VolumePlan},
};
use super::{
    context::Context,
    error::{Error, Result},
};
use crate::crd::{DigNetwork, DigNode, DigNodeStatus};

/// Kind label of metrics and logs.
pub const KIND: &str = "DigNode";

/// Reconciles one DigNode.
pub async fn reconcile(node: Arc<DigNode>, ctx: Arc<Context>) -> Result<Action> {
    if node.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let object = describe(node.as_ref());
    let reference = node.object_ref(&());
    let namespace = node.namespace().unwrap_or_default();
    let network_name = &node.spec.network_ref.name;
    let networks: Api<DigNetwork> = Api::namespaced(ctx.client.clone(), &namespace);
    let network = networks
        .get_opt(network_name)
        .await
        .map_err(|source| Error::Read {
            what: format!("DigNetwork {namespace}/{network_name}"),
            object: object.clone(),
            source: Box::new(source),
        })?;
    let private = network
        .as_ref()
        .and_then(|n| n.spec.private_network.as_ref());
    let psk = read_psk(&ctx, &namespace, private, &object).await?;
    let previous = node.status.clone().unwrap_or_default();
    let valid = match validate_node(&node, network.as_ref(), &ctx.images, psk) {
        Ok(valid) => valid,
        Err(invalid) => {
            return Err(status::reject_invalid(&ctx, node.as_ref(), &previous, invalid).await);
        }
    };
    // Before the apply, as for a DigNetwork: a grown claim template cannot be applied.
    let child = names::dignode(&valid.name);
    let volume_plan = match (&node.spec.existing_claim, &node.spec.storage) {
        (Some(_), _) => VolumePlan::default(),
        (None, storage) => {
            let size = storage.clone().unwrap_or_default().size;
            let selector = meta::selector_string(&child, Component::StandaloneNode);
            resize::grow_volumes(
                &ctx,
                &NodeVolumes {
                    namespace: &namespace,
                    statefulset: &child,
                    selector: &selector,
                    size: &size,
                    conditions: &previous.conditions,
                },
                &object,
                &reference,
            )
            .await?
        }
    };
    let children = build_node(&valid);
    let to_apply = children.to_apply();
    let applied =
        apply::apply_all(&ctx.client, &ctx.applied, &namespace, &object, &to_apply).await?;
    // Unwanted only after a spec change (see the DigNetwork reconciler).
    if previous.observed_generation != node.metadata.generation {
        let service = ApiResource::erase::<Service>(&());
        let wanted: BTreeSet<String> = to_apply
            .iter()
            .filter(|c| c.resource.kind == "Service")
            .map(|c| c.name.clone())
            .collect();
        apply::prune(
            &ctx.client,
            &namespace,
            &names::dignode(&valid.name),
            &valid.owner.uid,
            &object,
            &service,
            &wanted,
        )
        .await?;
    }

    let statefulset_object = applied
        .iter()
        .zip(&to_apply)
        .find(|(_, c)| c.resource.kind == "StatefulSet")
        .and_then(|(a, _)| a.as_ref())
        .expect("a StatefulSet is always applied");
    let statefulset: StatefulSet = apply::decode(statefulset_object, "StatefulSet")?;
    let rollout = conditions::statefulset_rollout(&statefulset);
    let mut desired = conditions::applied(&[("node", rollout)], &[]);
    desired.extend(volume_plan.condition.clone());
    let status = DigNodeStatus {
        observed_generation: node.metadata.generation,
        conditions: conditions::merge(
            &previous.conditions,
            &desired,
            node.metadata.generation,
            Timestamp::now(),
        ),
        network_id: Some(valid.network_id.clone()),
        ready: rollout.done(),
        pod_name: Some(format!("{}-0", names::dignode(&valid.name))),
    };
    if status != previous {
        status::patch_status(&ctx, node.as_ref(), &status).await?;
    }
    if status::is_ready(&status.conditions) && !status::is_ready(&previous.conditions) {
        ctx.event(
            &reference,
            EventType::Normal,
            "Ready",
            "Reconcile",
            "the node is ready".to_string(),
        )
        .await;
    }
    // Claims are not watched: look again soon while they grow.
    if volume_plan.waiting() {
        return Ok(Action::requeue(ctx.resync.min(volumes::RESIZE_POLL)));
    }
    Ok(Action::requeue(ctx.resync))
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
