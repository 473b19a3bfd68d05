//! The security context the sidecar inherits from its pod: the pod's non-root user, else a fixed
//! non-root one.

use k8s_openapi::api::core::v1::{Pod, PodSecurityContext};

use crate::reconcile::pod::RUN_AS_USER;

/// Used when the pod sets no (or a root) user: the sidecar must run as non-root (the same user as
/// the operator's own nodes).
pub const DEFAULT_RUN_AS_USER: i64 = RUN_AS_USER;

pub fn pod_security(pod: &Pod) -> Option<&PodSecurityContext> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.security_context.as_ref())
}

/// The pod's own user when it is a non-root one (so the sidecar can write what the app writes),
/// otherwise a fixed non-root user.
pub fn inherited_user(pod: &Pod) -> Option<i64> {
    let pod_user = pod_security(pod).and_then(|context| context.run_as_user);
    match pod_user {
        Some(user) if user != 0 => None,
        _ => Some(DEFAULT_RUN_AS_USER),
    }
}
