//! Writing a custom resource's status, shared by the DigNetwork and DigNode reconcilers: the
//! server-side apply of `.status`, and the `Degraded` status of an invalid spec.

use std::fmt::Debug;

use k8s_openapi::{
    NamespaceResourceScope, apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::events::EventType,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

use super::{
    conditions,
    context::Context,
    error::{Error, Result},
    validate::InvalidSpec,
};
use crate::crd::{DigNetworkStatus, DigNodeStatus, labels::MANAGER};

/// The parts of a status every reconciler writes the same way.
pub trait ObservedStatus: Clone + PartialEq + Serialize {
    fn conditions(&self) -> &[Condition];
    /// The same status, describing `generation` with `conditions`.
    fn observing(&self, generation: Option<i64>, conditions: Vec<Condition>) -> Self;
}

impl ObservedStatus for DigNetworkStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
    fn observing(&self, generation: Option<i64>, conditions: Vec<Condition>) -> Self {
        Self {
            observed_generation: generation,
            conditions,
            ..self.clone()
        }
    }
}

impl ObservedStatus for DigNodeStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
    fn observing(&self, generation: Option<i64>, conditions: Vec<Condition>) -> Self {
        Self {
            observed_generation: generation,
            conditions,
            ..self.clone()
        }
    }
}

/// `Kind namespace/name`, how logs, events and errors name an object.
pub fn describe<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{} {}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// Writes `status` with server-side apply (field manager `dig-operator`).
pub async fn patch_status<K, S>(ctx: &Context, object: &K, status: &S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::Status {
        object: describe(object),
        source: Box::new(source),
    })?;
    Ok(())
}

/// Reports an invalid spec: `Degraded` with the reason in the status and a Warning event, both
/// only when the status changes (the same invalid spec seen again is not announced again).
/// Returns the error the reconciler ends with, so the error policy waits for a change.
pub async fn reject_invalid<K, S>(
    ctx: &Context,
    object: &K,
    previous: &S,
    invalid: InvalidSpec,
) -> Error
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned,
    S: ObservedStatus,
{
    let generation = object.meta().generation;
    let status = previous.observing(
        generation,
        conditions::merge(
            previous.conditions(),
            &conditions::degraded(invalid.reason, &invalid.message),
            generation,
            Timestamp::now(),
        ),
    );
    if status != *previous {
        if let Err(error) = patch_status(ctx, object, &status).await {
            return error;
        }
        ctx.event(
            &object.object_ref(&()),
            EventType::Warning,
            invalid.reason,
            "Validate",
            invalid.message.clone(),
        )
        .await;
    }
    Error::InvalidSpec {
        object: describe(object),
        source: invalid,
    }
}

/// Whether a condition list says `Ready=True`.
pub fn is_ready(conditions: &[Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == conditions::READY && c.status == "True")
}
