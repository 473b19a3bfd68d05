//! Pieces of pod specs shared by the bootstrap, the node StatefulSet and DigNodes: the hardened
//! security context, probes and scheduling.

use k8s_openapi::{
    api::core::v1::{
        Capabilities, Container, ContainerPort, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
        EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec,
        Probe, SeccompProfile, SecurityContext, Volume, VolumeMount,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use super::args::{ANNOTATIONS_FILE, POD_INFO_DIR};
use crate::crd::Scheduling;

/// Name of the node's downward-API volume.
pub const POD_INFO_VOLUME: &str = "podinfo";

/// Uid and gid the containers run as (the distroless images' `nonroot` user); the volume is group-writable.
pub const RUN_AS_USER: i64 = 65532;

/// Pod security: non-root, seccomp RuntimeDefault, volumes owned by our group.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        fs_group: Some(RUN_AS_USER),
        fs_group_change_policy: Some("OnRootMismatch".to_string()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Container security: read-only root, no capabilities, no privilege escalation.
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

fn http_probe(path: &str, port: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(port.to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(3),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

/// Liveness on `/health` (the process serves), readiness on `/ready` (it can do its job).
pub fn probes(port_name: &str) -> (Probe, Probe) {
    (
        http_probe("/health", port_name, 10, 6),
        http_probe("/ready", port_name, 5, 3),
    )
}

pub fn tcp_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..ContainerPort::default()
    }
}

pub fn udp_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("UDP".to_string()),
        ..ContainerPort::default()
    }
}

/// An environment variable set from a field of the pod (the downward API), so args can say
/// `$(NAME)`.
pub fn downward_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: field_path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// What a node's args refer to: `$(POD_IP)` in the pod-network announce address, `$(POD_NAME)`
/// in per-pod DNS names.
pub fn node_env() -> Vec<EnvVar> {
    vec![
        downward_env("POD_IP", "status.podIP"),
        downward_env("POD_NAME", "metadata.name"),
        downward_env("POD_NAMESPACE", "metadata.namespace"),
        // An environment variable rather than `--drain-annotations`: a node image older than the
        // operator (a pinned `image`) ignores it and starts, where it would refuse the flag.
        EnvVar {
            name: DRAIN_ANNOTATIONS_ENV.to_string(),
            value: Some(format!("{POD_INFO_DIR}/{ANNOTATIONS_FILE}")),
            ..EnvVar::default()
        },
    ]
}

/// The sidecar's environment variable for `--drain-annotations`.
pub const DRAIN_ANNOTATIONS_ENV: &str = "DIG_DRAIN_ANNOTATIONS";

/// The pod's annotations as a file (the kubelet updates it when they change): the operator starts
/// a node's drain by annotating its pod `dig.net/drain`.
pub fn pod_info_volume() -> (Volume, VolumeMount) {
    let volume = Volume {
        name: POD_INFO_VOLUME.to_string(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![DownwardAPIVolumeFile {
                path: ANNOTATIONS_FILE.to_string(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.annotations".to_string(),
                    ..ObjectFieldSelector::default()
                }),
                ..DownwardAPIVolumeFile::default()
            }]),
            ..DownwardAPIVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: POD_INFO_VOLUME.to_string(),
        mount_path: POD_INFO_DIR.to_string(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    (volume, mount)
}

/// A pod spec with the hardened defaults and the user's scheduling.
pub fn pod_spec(containers: Vec<Container>, scheduling: &Scheduling) -> PodSpec {
    PodSpec {
        containers,
        security_context: Some(pod_security_context()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(30),
        node_selector: (!scheduling.node_selector.is_empty())
            .then(|| scheduling.node_selector.clone()),
        tolerations: (!scheduling.tolerations.is_empty()).then(|| scheduling.tolerations.clone()),
        affinity: scheduling.affinity.clone(),
        priority_class_name: scheduling.priority_class_name.clone(),
        ..PodSpec::default()
    }
}
