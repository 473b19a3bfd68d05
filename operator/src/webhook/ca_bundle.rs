//! Keeps `webhooks[*].clientConfig.caBundle` of the MutatingWebhookConfiguration equal to the CA
//! bundle the operator trusts. The patch is computed purely; one JSON patch applies it, guarded by
//! the object's resourceVersion so a concurrent edit (a `helm upgrade`) is never overwritten blindly.

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// The JSON patch that sets every webhook's `caBundle` to `bundle_pem`, or `None` when all
/// already carry it (or the configuration has no webhooks).
pub fn ca_bundle_patch(
    config: &MutatingWebhookConfiguration,
    bundle_pem: &str,
) -> Option<json_patch::Patch> {
    let webhooks = config.webhooks.as_deref().unwrap_or_default();
    let stale: Vec<usize> = webhooks
        .iter()
        .enumerate()
        .filter(|(_, webhook)| {
            webhook
                .client_config
                .ca_bundle
                .as_ref()
                .map(|bundle| bundle.0.as_slice())
                != Some(bundle_pem.as_bytes())
        })
        .map(|(index, _)| index)
        .collect();
    if stale.is_empty() {
        return None;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle_pem.as_bytes());
    let mut operations = Vec::new();
    if let Some(version) = &config.metadata.resource_version {
        operations
            .push(json!({"op": "test", "path": "/metadata/resourceVersion", "value": version}));
    }
    for index in stale {
        // `add` replaces an existing member and creates a missing one.
        operations.push(json!({
            "op": "add",
            "path": format!("/webhooks/{index}/clientConfig/caBundle"),
            "value": encoded,
        }));
    }
    Some(
        serde_json::from_value(Value::Array(operations))
            .expect("operations built above are valid JSON patch operations"),
    )
}

/// What a sync found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleSync {
    /// Every webhook already trusted the bundle.
    UpToDate,
    /// The bundle was written into this many webhooks.
    Patched(usize),
    /// No MutatingWebhookConfiguration of that name (yet): the chart or the user creates it.
    Missing,
}

#[derive(Debug, thiserror::Error)]
#[error("updating the caBundle of MutatingWebhookConfiguration {name:?}: {source}")]
pub struct BundleSyncError {
    pub name: String,
    #[source]
    pub source: kube::Error,
}

/// Reads the configuration and patches its `caBundle` where it differs.
pub async fn sync_ca_bundle(
    api: &Api<MutatingWebhookConfiguration>,
    name: &str,
    bundle_pem: &str,
) -> Result<BundleSync, BundleSyncError> {
    let error = |source| BundleSyncError {
        name: name.to_string(),
        source,
    };
    let Some(config) = api.get_opt(name).await.map_err(error)? else {
        return Ok(BundleSync::Missing);
    };
    let Some(patch) = ca_bundle_patch(&config, bundle_pem) else {
        return Ok(BundleSync::UpToDate);
    };
    let count = patch.0.len() - usize::from(config.metadata.resource_version.is_some());
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .map_err(error)?;
    Ok(BundleSync::Patched(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bundles: &[Option<&str>]) -> Value {
        let webhooks: Vec<Value> = bundles
            .iter()
            .enumerate()
            .map(|(index, bundle)| {
                let mut client_config =
                    json!({"service": {"name": "svc", "namespace": "ns", "path": "/mutate"}});
                if let Some(bundle) = bundle {
                    client_config["caBundle"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(bundle.as_bytes()));
                }
                json!({
                    "name": format!("hook{index}.dig.net"),
                    "clientConfig": client_config,
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"]
                })
            })
            .collect();
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "dig", "resourceVersion": "42"},
            "webhooks": webhooks
        })
    }

    fn apply(document: &Value, bundle: &str) -> Option<Value> {
        let typed: MutatingWebhookConfiguration = serde_json::from_value(document.clone()).unwrap();
        let patch = ca_bundle_patch(&typed, bundle)?;
        let mut patched = document.clone();
        json_patch::patch(&mut patched, &patch).unwrap();
        Some(patched)
    }

    #[test]
    fn missing_and_stale_bundles_are_set_and_current_ones_left() {
        let document = config(&[None, Some("old"), Some("new")]);
        let patched = apply(&document, "new").unwrap();
        let typed: MutatingWebhookConfiguration = serde_json::from_value(patched.clone()).unwrap();
        for webhook in typed.webhooks.unwrap() {
            assert_eq!(webhook.client_config.ca_bundle.unwrap().0, b"new");
        }
        assert!(
            apply(&patched, "new").is_none(),
            "an up-to-date configuration is not patched"
        );
    }

    #[test]
    fn the_patch_is_guarded_by_the_resource_version() {
        let document = config(&[None]);
        let typed: MutatingWebhookConfiguration = serde_json::from_value(document.clone()).unwrap();
        let patch = ca_bundle_patch(&typed, "ca").unwrap();
        let mut concurrently_changed = document.clone();
        concurrently_changed["metadata"]["resourceVersion"] = json!("43");
        assert!(json_patch::patch(&mut concurrently_changed, &patch).is_err());
    }

    #[test]
    fn a_configuration_without_webhooks_needs_nothing() {
        let document = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "dig"}});
        assert!(apply(&document, "ca").is_none());
    }
}
