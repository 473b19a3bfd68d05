//! The volume step of a reconcile, before the apply: reads the node StatefulSet and, when its
//! claim template is smaller than `storage.size` or a resize is unfinished, its claims and their
//! StorageClasses; then grows the claims and re-creates the StatefulSet as `volumes::plan` says.

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    apps::v1::StatefulSet, core::v1::PersistentVolumeClaim, storage::v1::StorageClass,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions, PropagationPolicy},
    runtime::events::EventType,
};
use serde_json::json;

use super::{
    build::DATA_VOLUME,
    context::Context,
    error::{Error, Result},
    volumes::{self, Claim, VolumeFacts, VolumePlan},
};

/// A StatefulSet deleted with its pods orphaned is gone once the garbage collector has released
/// them, usually within a second.
const RECREATE_WAIT: Duration = Duration::from_secs(30);

/// The node StatefulSet of one owner and where its claims are (made from the claim template
/// [`DATA_VOLUME`]).
pub struct NodeVolumes<'a> {
    pub namespace: &'a str,
    pub statefulset: &'a str,
    /// Label selector (a string) of the StatefulSet's pods, which its claims carry too.
    pub selector: &'a str,
    /// `storage.size` of the spec.
    pub size: &'a str,
    /// The owner's current status conditions; the last `VolumesResized` among them says whether a
    /// resize is unfinished and which warning was already published.
    pub conditions: &'a [Condition],
}

impl NodeVolumes<'_> {
    fn last_resize(&self) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| c.type_ == volumes::VOLUMES_RESIZED)
    }
}

/// Reads, plans and acts on the volumes of `volumes`, publishing events on `reference`. Returns
/// the plan carried out; a re-created StatefulSet is gone when it returns, for the apply to make.
pub async fn grow_volumes(
    ctx: &Context,
    volumes: &NodeVolumes<'_>,
    object: &str,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) -> Result<VolumePlan> {
    let ns = volumes.namespace;
    let last_resize = volumes.last_resize();
    let last = last_resize.map(|c| c.status == "True");
    let last_reason = last_resize.map(|c| c.reason.as_str());
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let current = statefulsets
        .get_opt(volumes.statefulset)
        .await
        .map_err(Error::reading(
            format!("StatefulSet {ns}/{}", volumes.statefulset),
            object,
        ))?;
    if let Some(current) = current
        .as_ref()
        .filter(|s| s.metadata.deletion_timestamp.is_some())
    {
        // Re-created by an earlier reconcile whose wait ran out.
        wait_gone(&statefulsets, current, object).await?;
        return Ok(VolumePlan::default());
    }
    let template_size = current
        .as_ref()
        .and_then(|s| volumes::template_size(s, DATA_VOLUME));
    if !volumes::needs_claims(volumes.size, template_size.as_deref(), last) {
        return Ok(VolumePlan::default());
    }
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let claims: Vec<Claim> = claims_api
        .list(&ListParams::default().labels(volumes.selector))
        .await
        .map_err(Error::reading(
            format!("PersistentVolumeClaims {ns} ({})", volumes.selector),
            object,
        ))?
        .items
        .iter()
        .filter(|c| volumes::is_claim_of(&c.name_any(), DATA_VOLUME, volumes.statefulset))
        .map(Claim::of)
        .collect();
    let classes: Api<StorageClass> = Api::all(ctx.client.clone());
    let mut expandable = std::collections::BTreeMap::new();
    for class in claims.iter().filter_map(|c| c.storage_class.clone()) {
        if expandable.contains_key(&class) {
            continue;
        }
        let found = classes
            .get_opt(&class)
            .await
            .map_err(Error::reading(format!("StorageClass {class}"), object))?;
        if let Some(found) = found {
            expandable.insert(class, found.allow_volume_expansion == Some(true));
        }
    }
    let facts = VolumeFacts {
        template_size,
        claims,
        expandable,
    };
    let plan = volumes::plan(volumes.size, &facts, last);

    for claim in &plan.grow {
        let body = json!({"spec": {"resources": {"requests": {"storage": volumes.size}}}});
        claims_api
            .patch(claim, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map_err(|source| Error::Resize {
                claim: format!("{ns}/{claim}"),
                size: volumes.size.to_string(),
                object: object.to_string(),
                source: Box::new(source),
            })?;
    }
    if !plan.grow.is_empty() {
        let note = format!(
            "growing claims {} to {}",
            plan.grow.join(", "),
            volumes.size
        );
        ctx.event(
            reference,
            EventType::Normal,
            "GrowingVolumes",
            "Resize",
            note,
        )
        .await;
    }
    if let Some(condition) = plan
        .condition
        .as_ref()
        .filter(|c| c.reason == volumes::CLASS_DISALLOWS_EXPANSION)
        .filter(|c| last_reason != Some(c.reason.as_str()))
    {
        ctx.event(
            reference,
            EventType::Warning,
            volumes::CLASS_DISALLOWS_EXPANSION,
            "Resize",
            condition.message.clone(),
        )
        .await;
    }
    if let Some(current) = current.filter(|_| plan.recreate_statefulset) {
        // Orphan: the pods keep running and the new StatefulSet adopts them, unrestarted.
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            preconditions: Some(Preconditions {
                uid: current.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match statefulsets.delete(volumes.statefulset, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Recreate {
                    name: format!("{ns}/{}", volumes.statefulset),
                    object: object.to_string(),
                    source: Box::new(source),
                });
            }
        }
        wait_gone(&statefulsets, &current, object).await?;
        let note = format!(
            "re-creating StatefulSet {} with claims of {} (claim templates cannot change); its pods keep running",
            volumes.statefulset, volumes.size
        );
        ctx.event(
            reference,
            EventType::Normal,
            "RecreatingStatefulSet",
            "Resize",
            note,
        )
        .await;
    }
    Ok(plan)
}

/// Waits until the StatefulSet `current` (that uid) is gone.
async fn wait_gone(api: &Api<StatefulSet>, current: &StatefulSet, object: &str) -> Result<()> {
    let name = current.name_any();
    let started = Instant::now();
    loop {
        let now = api.get_opt(&name).await.map_err(|source| Error::Read {
            what: format!("StatefulSet {name} being re-created"),
            object: object.to_string(),
            source: Box::new(source),
        })?;
        match now {
            Some(now) if now.metadata.uid == current.metadata.uid => {}
            _ => return Ok(()),
        }
        if started.elapsed() > RECREATE_WAIT {
            return Err(Error::RecreateTimeout {
                name,
                object: object.to_string(),
                waited: RECREATE_WAIT,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
