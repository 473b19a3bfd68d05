//! Server-side apply of the children, and removal of children a spec no longer wants.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use kube::{
    Client,
    api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams},
};

use super::error::{Error, Result};
use super::{applied::AppliedChildren, build::ChildObject, meta};
use crate::crd::labels::MANAGER;

fn dynamic_api(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// Children of one owner applied at the same time: a reconcile takes a few round trips instead
/// of one per child, while the requests in flight stay bounded.
const PARALLEL_APPLIES: usize = 4;

/// Kinds whose state the reconcilers read from the apply's answer: read back when their apply is
/// skipped.
const READ_BACK: [&str; 2] = ["Deployment", "StatefulSet"];

/// Applies each child with field manager `dig-operator`, forcing ownership of conflicting fields
/// (the operator is the only writer of its children), unless `applied` knows it unchanged since
/// this process applied it. Returns, in the order of `children`, the objects as the server has
/// them: `None` for a skipped child, never for the [`READ_BACK`] kinds.
pub async fn apply_all(
    client: &Client,
    applied: &AppliedChildren,
    namespace: &str,
    owner: &str,
    children: &[ChildObject],
) -> Result<Vec<Option<DynamicObject>>> {
    let params = PatchParams::apply(MANAGER).force();
    let applies: Vec<_> = children
        .iter()
        .map(|child| apply_one(client, applied, namespace, owner, &params, child))
        .collect();
    futures::stream::iter(applies)
        .buffered(PARALLEL_APPLIES)
        .try_collect()
        .await
}

async fn apply_one(
    client: &Client,
    applied: &AppliedChildren,
    namespace: &str,
    owner: &str,
    params: &PatchParams,
    child: &ChildObject,
) -> Result<Option<DynamicObject>> {
    let api = dynamic_api(client, namespace, &child.resource);
    if applied.is_current(namespace, child) {
        if !READ_BACK.contains(&child.resource.kind.as_str()) {
            return Ok(None);
        }
        let current = api
            .get_opt(&child.name)
            .await
            .map_err(|source| Error::Read {
                what: format!("{} {namespace}/{}", child.resource.kind, child.name),
                object: owner.to_string(),
                source: Box::new(source),
            })?;
        // Gone since the watch saw it: applied again below.
        if current.is_some() {
            return Ok(current);
        }
    }
    let object = api
        .patch(&child.name, params, &Patch::Apply(&child.body))
        .await
        .map_err(|source| Error::Apply {
            kind: child.resource.kind.clone(),
            name: child.name.clone(),
            object: owner.to_string(),
            source: Box::new(source),
        })?;
    applied.record(namespace, child, &object);
    Ok(Some(object))
}

/// Deletes the objects of `resource` that carry the owner's labels and owner reference but are no
/// longer among `wanted` (e.g. per-pod Services after a scale-down, a DNSEndpoint after switching
/// to annotations).
pub async fn prune(
    client: &Client,
    namespace: &str,
    instance: &str,
    owner_uid: &str,
    owner: &str,
    resource: &ApiResource,
    wanted: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let api = dynamic_api(client, namespace, resource);
    let list = api
        .list(&ListParams::default().labels(&meta::owned_selector(instance)))
        .await
        .map_err(|source| Error::Read {
            what: format!("{} list", resource.kind),
            object: owner.to_string(),
            source: Box::new(source),
        })?;
    let mut deleted = Vec::new();
    for object in list.items {
        let name = object.metadata.name.clone().unwrap_or_default();
        let owned = object
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == owner_uid && r.controller == Some(true));
        if !owned || wanted.contains(&name) {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(name),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => {
                return Err(Error::Prune {
                    kind: resource.kind.clone(),
                    name,
                    object: owner.to_string(),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(deleted)
}

/// Decodes an applied object into its typed form.
pub fn decode<K: serde::de::DeserializeOwned>(object: &DynamicObject, kind: &str) -> Result<K> {
    let value = serde_json::to_value(object).map_err(|source| Error::Decode {
        kind: kind.to_string(),
        name: object.metadata.name.clone().unwrap_or_default(),
        source,
    })?;
    serde_json::from_value(value).map_err(|source| Error::Decode {
        kind: kind.to_string(),
        name: object.metadata.name.clone().unwrap_or_default(),
        source,
    })
}
