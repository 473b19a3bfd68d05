//! Sidecar injection as a pure function: a pod, the DigNetwork its label names and the operator's
//! settings in; a JSON patch (or the reason the pod is left alone, or a denial) out. No API calls
//! here: the server looks the network up and hands the result in.
//!
//! [`build_patch`] is the decision, one job per module: [`target`] (is the pod a candidate, for
//! which network), [`checks`] (the data volume, the ports, an image reference), [`overrides`] (the
//! pod's annotations), [`security`] (the user the sidecar runs as), [`sidecar`] (the container and
//! its volumes), [`encode`] (the JSON patch); [`warnings`] says what does not stop an injection
//! and [`denial`] why one is refused.

pub mod checks;
pub mod denial;
pub mod encode;
pub mod overrides;
pub mod security;
pub mod settings;
pub mod sidecar;
pub mod target;
#[cfg(test)]
mod tests;
pub mod warnings;

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

pub use denial::Denial;
pub use settings::InjectorSettings;
pub use sidecar::{NetworkSidecarConfig, SIDECAR_CONTAINER_NAME, SecretKeySelector};
pub use target::{SkipReason, Target, target};
pub use warnings::injection_warnings;

use crate::crd::labels::{
    API_PORT_ANNOTATION, INJECTED_ANNOTATION, P2P_PORT_ANNOTATION, VOLUME_ANNOTATION,
};
use checks::{check_port_free, read_only_kind};
use encode::{add, escape_pointer, to_value};
use overrides::{Overrides, resources};
use security::{inherited_user, pod_security};
use sidecar::{PSK_VOLUME_NAME, SidecarSpec, TMP_VOLUME_NAME};

/// The admitted outcome: a patch to apply, or a reason to leave the pod as it is.
#[derive(Clone, Debug, PartialEq)]
pub enum Injection {
    Skipped(SkipReason),
    Patched(Patch),
}

impl Injection {
    pub fn into_patch(self) -> Option<Patch> {
        match self {
            Injection::Skipped(_) => None,
            Injection::Patched(patch) => Some(patch),
        }
    }
}

/// The whole decision: `network` is the looked-up DigNetwork named by the label (`None` when it
/// does not exist).
pub fn build_patch(
    pod: &Pod,
    namespace: &str,
    network: Option<&NetworkSidecarConfig>,
    settings: &InjectorSettings,
) -> Result<Injection, Denial> {
    let network_name = match target(pod, namespace, settings)? {
        Target::Skip(reason) => return Ok(Injection::Skipped(reason)),
        Target::Network(name) => name,
    };
    let Some(network) = network else {
        return Err(Denial::UnknownNetwork {
            network: network_name,
            namespace: namespace.to_string(),
        });
    };
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let volumes = spec.volumes.clone().unwrap_or_default();

    let volume_name =
        annotations
            .get(VOLUME_ANNOTATION)
            .ok_or_else(|| Denial::MissingVolumeAnnotation {
                network: network_name.clone(),
            })?;
    let volume = volumes
        .iter()
        .find(|volume| &volume.name == volume_name)
        .ok_or_else(|| Denial::UnknownVolume {
            volume: volume_name.clone(),
            available: if volumes.is_empty() {
                "none".to_string()
            } else {
                volumes
                    .iter()
                    .map(|volume| volume.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })?;
    if let Some(kind) = read_only_kind(volume) {
        return Err(Denial::ReadOnlyVolume {
            volume: volume_name.clone(),
            kind,
        });
    }
    for reserved in [TMP_VOLUME_NAME, PSK_VOLUME_NAME] {
        if volumes.iter().any(|volume| volume.name == reserved) {
            return Err(Denial::ReservedVolumeName {
                volume: reserved.to_string(),
            });
        }
    }

    let overrides = Overrides::parse(&annotations)?;
    let p2p_port = overrides.p2p_port.unwrap_or(network.p2p_port);
    let api_port = overrides.api_port.unwrap_or(network.api_port);
    if p2p_port == api_port {
        return Err(Denial::InvalidAnnotation {
            annotation: if overrides.api_port.is_some() {
                API_PORT_ANNOTATION
            } else {
                P2P_PORT_ANNOTATION
            },
            value: p2p_port.to_string(),
            reason: "the P2P port and the API port must differ".to_string(),
        });
    }
    check_port_free(pod, p2p_port, "P2P", P2P_PORT_ANNOTATION)?;
    check_port_free(pod, api_port, "API", API_PORT_ANNOTATION)?;
    let resources = resources(
        network
            .resources
            .as_ref()
            .unwrap_or(&settings.default_resources),
        &overrides,
    )?;

    let sidecar = SidecarSpec {
        network,
        image: overrides.image.as_deref().unwrap_or(&network.image),
        volume_name,
        p2p_port,
        api_port,
        resources,
        run_as_user: inherited_user(pod),
        pod_fs_group: pod_security(pod)
            .and_then(|context| context.fs_group)
            .is_some(),
    };
    let mut operations = Vec::new();
    let container = to_value(&sidecar.container());
    match spec.init_containers.as_ref() {
        Some(init) if !init.is_empty() => {
            // Appended: the pod's own init containers (e.g. one that prepares the volume) run first.
            operations.push(add("/spec/initContainers/-", container));
        }
        _ => operations.push(add("/spec/initContainers", json!([container]))),
    }
    for volume in sidecar.volumes() {
        operations.push(add("/spec/volumes/-", to_value(&volume)));
    }
    if pod.metadata.annotations.is_none() {
        operations.push(add("/metadata/annotations", json!({})));
    }
    operations.push(add(
        &format!(
            "/metadata/annotations/{}",
            escape_pointer(INJECTED_ANNOTATION)
        ),
        Value::String(network.name.clone()),
    ));
    let patch: Patch = serde_json::from_value(Value::Array(operations))
        .expect("operations built above are valid JSON patch operations");
    Ok(Injection::Patched(patch))
}
