//! Why a pod is refused admission.

use dig_core::network_id::NETWORK_ID_RULE;

use crate::crd::labels::{INJECT_LABEL, VOLUME_ANNOTATION};

/// Why a pod is refused. The message is what `kubectl` prints, so it says which and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error(
        "label {INJECT_LABEL}={value:?} is not a DigNetwork that pods can join: {reason} (a DigNetwork that pods join is named like a network id: {NETWORK_ID_RULE})"
    )]
    InvalidNetworkName { value: String, reason: String },
    #[error(
        "label {INJECT_LABEL}={network:?} names a DigNetwork that does not exist in namespace {namespace:?}; create it first or fix the label"
    )]
    UnknownNetwork { network: String, namespace: String },
    #[error(
        "could not read DigNetwork {network:?} in namespace {namespace:?} to configure the sidecar: {detail}"
    )]
    NetworkLookupFailed {
        network: String,
        namespace: String,
        detail: String,
    },
    #[error(
        "DigNetwork {network:?} in namespace {namespace:?} cannot configure a sidecar: {reason}"
    )]
    NetworkUnusable {
        network: String,
        namespace: String,
        reason: String,
    },
    #[error(
        "pod is labelled {INJECT_LABEL}={network:?} but has no annotation {VOLUME_ANNOTATION}; it must name the pod volume whose .dig files the sidecar replicates"
    )]
    MissingVolumeAnnotation { network: String },
    #[error(
        "annotation {VOLUME_ANNOTATION}={volume:?} names a volume the pod does not have (pod volumes: {available}); the sidecar needs it as its data folder"
    )]
    UnknownVolume { volume: String, available: String },
    #[error(
        "annotation {VOLUME_ANNOTATION}={volume:?} names a read-only volume ({kind}); the sidecar writes the stores it replicates into it"
    )]
    ReadOnlyVolume { volume: String, kind: &'static str },
    #[error("annotation {annotation}={value:?} is invalid: {reason}")]
    InvalidAnnotation {
        annotation: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "the sidecar's {what} port {port} is already used by container {container:?}; choose another with annotation {annotation}"
    )]
    PortConflict {
        what: &'static str,
        port: u16,
        container: String,
        annotation: &'static str,
    },
    #[error("the pod already has a volume named {volume:?}, which the sidecar injection reserves")]
    ReservedVolumeName { volume: String },
}

impl Denial {
    /// A short, stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::InvalidNetworkName { .. } => "invalid_network_name",
            Denial::UnknownNetwork { .. } => "unknown_network",
            Denial::NetworkLookupFailed { .. } => "network_lookup_failed",
            Denial::NetworkUnusable { .. } => "network_unusable",
            Denial::MissingVolumeAnnotation { .. } => "missing_volume_annotation",
            Denial::UnknownVolume { .. } => "unknown_volume",
            Denial::ReadOnlyVolume { .. } => "read_only_volume",
            Denial::InvalidAnnotation { .. } => "invalid_annotation",
            Denial::PortConflict { .. } => "port_conflict",
            Denial::ReservedVolumeName { .. } => "reserved_volume_name",
        }
    }
}
