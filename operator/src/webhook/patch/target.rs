//! Which pods are injected, and for which network: the label, the excluded namespaces, the
//! operator's own pods and pods that already have the sidecar.

use dig_core::network_id::check_network_id;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::denial::Denial;
use super::settings::InjectorSettings;
use super::sidecar::SIDECAR_CONTAINER_NAME;
use crate::crd::labels::{INJECT_LABEL, MANAGED_BY_LABEL, MANAGER, NAME_LABEL};

/// Why a pod was admitted unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    NotLabelled,
    ExcludedNamespace,
    OperatorPod,
    AlreadyInjected,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotLabelled => "not_labelled",
            SkipReason::ExcludedNamespace => "excluded_namespace",
            SkipReason::OperatorPod => "operator_pod",
            SkipReason::AlreadyInjected => "already_injected",
        }
    }
}

/// What the server must do for a pod before patching: nothing, or look up this network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Skip(SkipReason),
    Network(String),
}

/// Decides whether a pod (being created in `namespace`) is a candidate, and for which network.
pub fn target(pod: &Pod, namespace: &str, settings: &InjectorSettings) -> Result<Target, Denial> {
    let labels = pod.metadata.labels.as_ref();
    let Some(network) = labels.and_then(|labels| labels.get(INJECT_LABEL)) else {
        return Ok(Target::Skip(SkipReason::NotLabelled));
    };
    if namespace == "kube-system"
        || settings
            .excluded_namespaces
            .iter()
            .any(|ns| ns == namespace)
    {
        return Ok(Target::Skip(SkipReason::ExcludedNamespace));
    }
    let label_is = |key: &str, value: &str| {
        labels
            .and_then(|labels| labels.get(key))
            .map(String::as_str)
            == Some(value)
    };
    if label_is(NAME_LABEL, MANAGER) || label_is(MANAGED_BY_LABEL, MANAGER) {
        return Ok(Target::Skip(SkipReason::OperatorPod));
    }
    if has_sidecar(pod) {
        return Ok(Target::Skip(SkipReason::AlreadyInjected));
    }
    if let Err(invalid) = check_network_id(network) {
        return Err(Denial::InvalidNetworkName {
            value: network.clone(),
            reason: invalid.reason,
        });
    }
    Ok(Target::Network(network.clone()))
}

/// True when the pod already carries the sidecar, as an init container or a regular one.
pub fn has_sidecar(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let named = |containers: &Option<Vec<Container>>| {
        containers
            .iter()
            .flatten()
            .any(|container| container.name == SIDECAR_CONTAINER_NAME)
    };
    named(&spec.init_containers)
        || spec
            .containers
            .iter()
            .any(|c| c.name == SIDECAR_CONTAINER_NAME)
}
