//! What the pod's creator should know about an injected pod that does not stop it.

use k8s_openapi::api::core::v1::Pod;

use super::security::{inherited_user, pod_security};
use crate::crd::labels::{API_PORT_ANNOTATION, P2P_PORT_ANNOTATION, VOLUME_ANNOTATION};

/// What the pod's creator should know about an injected pod that does not stop it (the API
/// server shows these as `Warning:` lines in kubectl).
pub fn injection_warnings(pod: &Pod) -> Vec<String> {
    let mut warnings = Vec::new();
    let volume_name = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(VOLUME_ANNOTATION));
    let volume = pod.spec.as_ref().and_then(|spec| {
        spec.volumes
            .iter()
            .flatten()
            .find(|volume| Some(&volume.name) == volume_name)
    });
    let has_fs_group = pod_security(pod)
        .and_then(|context| context.fs_group)
        .is_some();
    if let (Some(volume), Some(user)) = (volume, inherited_user(pod))
        && volume.empty_dir.is_none()
        && !has_fs_group
    {
        // emptyDir is world-writable; any other volume keeps the owner its storage gave it.
        warnings.push(format!(
            "the dig-sidecar runs as uid {user} and the pod sets no spec.securityContext.fsGroup: \
             volume {:?} must be writable by that user, or the node cannot keep its identity and \
             the stores it replicates; set fsGroup (e.g. {user}) or a non-root runAsUser shared \
             with the app",
            volume.name
        ));
    }
    // Controllers that stamp many pods from one template give them all the same claim (unlike a
    // StatefulSet's volumeClaimTemplates): their nodes would share one identity and one folder.
    let shared_by = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| {
            owner.controller == Some(true)
                && ["ReplicaSet", "ReplicationController", "DaemonSet", "Job"]
                    .contains(&owner.kind.as_str())
        });
    if let (Some(owner), Some(volume)) = (shared_by, volume)
        && volume.persistent_volume_claim.is_some()
    {
        warnings.push(format!(
            "volume {:?} is a claim named in the pod template of {} {:?}: every pod it makes \
             mounts the same claim, so their dig-sidecars would share one identity and one \
             folder; give each pod its own volume (a StatefulSet's volumeClaimTemplates, or an \
             ephemeral volume)",
            volume.name, owner.kind, owner.name
        ));
    }
    if pod.spec.as_ref().and_then(|spec| spec.host_network) == Some(true) {
        warnings.push(format!(
            "the pod uses the host network: the dig-sidecar's P2P and API ports are opened on the \
             node itself, so two such pods on one node collide; choose free ones with \
             {P2P_PORT_ANNOTATION} and {API_PORT_ANNOTATION}"
        ));
    }
    warnings
}
