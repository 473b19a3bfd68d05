//! Checks of what the pod brings: the data volume must be writable, the sidecar's ports free, an
//! image override an image reference.

use k8s_openapi::api::core::v1::{Pod, Volume};

use super::denial::Denial;

pub fn validate_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("must not be empty".to_string());
    }
    if image.len() > 512 {
        return Err("is longer than 512 characters".to_string());
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace".to_string());
    }
    if image.starts_with(['/', ':', '@', '.', '-']) || image.ends_with([':', '@', '/']) {
        return Err("is not an image reference such as registry/repository:tag".to_string());
    }
    Ok(())
}

/// The kind of a volume the sidecar cannot write to, if it is one.
pub fn read_only_kind(volume: &Volume) -> Option<&'static str> {
    if volume.config_map.is_some() {
        Some("configMap")
    } else if volume.secret.is_some() {
        Some("secret")
    } else if volume.downward_api.is_some() {
        Some("downwardAPI")
    } else if volume.projected.is_some() {
        Some("projected")
    } else if volume.image.is_some() {
        Some("image")
    } else if volume
        .persistent_volume_claim
        .as_ref()
        .is_some_and(|pvc| pvc.read_only == Some(true))
    {
        Some("persistentVolumeClaim with readOnly: true")
    } else if volume
        .csi
        .as_ref()
        .is_some_and(|csi| csi.read_only == Some(true))
    {
        Some("csi with readOnly: true")
    } else {
        None
    }
}

/// Containers of a pod share one network namespace: a port another container declares is taken.
pub fn check_port_free(
    pod: &Pod,
    port: u16,
    what: &'static str,
    annotation: &'static str,
) -> Result<(), Denial> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for container in containers {
        let taken = container
            .ports
            .iter()
            .flatten()
            .any(|declared| declared.container_port == i32::from(port));
        if taken {
            return Err(Denial::PortConflict {
                what,
                port,
                container: container.name.clone(),
                annotation,
            });
        }
    }
    Ok(())
}
