//! Keeping an injected node's identity key and index out of the app's reach.
//!
//! The node keeps its state (identity key, index, `tmp/`, `conflicts/`) in `.dig-node/` on the
//! data volume, so it survives pod restarts exactly as the volume does (a new pod on the same
//! claim keeps its peer id, its ownership of the stores it created and its index). The app's
//! containers mount that volume too, so every one of their mounts of it gets an empty, read-only
//! volume mounted over `<mountPath>/.dig-node`: no app process, root included, can read or change
//! what is under it (removing a mount needs `CAP_SYS_ADMIN`, which containers do not get). The
//! node itself is not dumpable, so a shared process namespace cannot reach the files through
//! `/proc/<pid>/root` either.

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The empty volume mounted over the state folder in the app's containers.
pub const STATE_MASK_VOLUME_NAME: &str = "dig-sidecar-state-mask";
/// The state folder's name on the data volume (`reconcile::args::STATE_DIR` is `/data/.dig-node`).
pub const STATE_DIR_NAME: &str = ".dig-node";

/// A mount to add: the JSON pointer of the container's mount list, and the mount.
pub type MaskMount = (String, VolumeMount);

/// Why the state cannot be hidden from a container: `(container, reason)`.
pub type Unmaskable = (String, String);

/// The mask mounts for every app container that mounts the data volume `volume`.
pub fn mask_mounts(pod: &Pod, volume: &str) -> Result<Vec<MaskMount>, Unmaskable> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(Vec::new());
    };
    let lists = [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
        ("containers", spec.containers.as_slice()),
    ];
    let mut masks = Vec::new();
    for (list, containers) in lists {
        for (index, container) in containers.iter().enumerate() {
            let mounts = container.volume_mounts.as_deref().unwrap_or_default();
            for mount in mounts.iter().filter(|m| m.name == volume) {
                if mount.sub_path_expr.is_some() {
                    return Err((
                        container.name.clone(),
                        format!(
                            "it mounts volume {volume:?} with subPathExpr, which could expose the node's {STATE_DIR_NAME} folder; use subPath or mount the whole volume"
                        ),
                    ));
                }
                match sub_path(mount) {
                    Root => {}
                    Inside(path) if path == STATE_DIR_NAME || path.starts_with(".dig-node/") => {
                        return Err((
                            container.name.clone(),
                            format!(
                                "it mounts the node's private {STATE_DIR_NAME} folder of volume {volume:?} (subPath {path:?})"
                            ),
                        ));
                    }
                    // A subfolder of the volume: the state folder is not in it.
                    Inside(_) => continue,
                }
                let mask_path = format!(
                    "{}/{STATE_DIR_NAME}",
                    mount.mount_path.trim_end_matches('/')
                );
                if mounts
                    .iter()
                    .any(|m| m.mount_path.trim_end_matches('/') == mask_path)
                {
                    return Err((
                        container.name.clone(),
                        format!(
                            "it mounts something at {mask_path}, where the node's private folder must be hidden"
                        ),
                    ));
                }
                masks.push((
                    format!("/spec/{list}/{index}/volumeMounts/-"),
                    VolumeMount {
                        name: STATE_MASK_VOLUME_NAME.to_string(),
                        mount_path: mask_path,
                        read_only: Some(true),
                        ..Default::default()
                    },
                ));
            }
        }
    }
    Ok(masks)
}

enum SubPath {
    Root,
    Inside(String),
}
use SubPath::{Inside, Root};

fn sub_path(mount: &VolumeMount) -> SubPath {
    let mut path = mount.sub_path.as_deref().unwrap_or("").trim_matches('/');
    while let Some(rest) = path.strip_prefix("./") {
        path = rest.trim_start_matches('/');
    }
    if path.is_empty() || path == "." {
        Root
    } else {
        Inside(path.to_string())
    }
}

/// The empty volume itself (mounted read-only; nothing is ever written to it).
pub fn mask_volume() -> Volume {
    Volume {
        name: STATE_MASK_VOLUME_NAME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity("1Mi".to_string())),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value, init: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "app"},
            "spec": {"containers": containers, "initContainers": init}
        }))
        .unwrap()
    }

    #[test]
    fn every_mount_of_the_data_volume_gets_the_state_folder_hidden() {
        let pod = pod(
            json!([
                {"name": "app", "volumeMounts": [
                    {"name": "other", "mountPath": "/etc/x"},
                    {"name": "stores", "mountPath": "/stores/"},
                    {"name": "stores", "mountPath": "/again", "readOnly": true}
                ]},
                {"name": "unrelated"}
            ]),
            json!([{"name": "prepare", "volumeMounts": [{"name": "stores", "mountPath": "/s"}]}]),
        );
        let masks = mask_mounts(&pod, "stores").unwrap();
        let summary: Vec<(&str, &str)> = masks
            .iter()
            .map(|(pointer, mount)| (pointer.as_str(), mount.mount_path.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/spec/initContainers/0/volumeMounts/-", "/s/.dig-node"),
                ("/spec/containers/0/volumeMounts/-", "/stores/.dig-node"),
                ("/spec/containers/0/volumeMounts/-", "/again/.dig-node"),
            ]
        );
        assert!(
            masks
                .iter()
                .all(|(_, m)| m.read_only == Some(true) && m.name == STATE_MASK_VOLUME_NAME)
        );
    }

    #[test]
    fn a_sub_path_elsewhere_needs_no_mask_and_one_into_the_state_is_refused() {
        let elsewhere = pod(
            json!([{"name": "app", "volumeMounts": [{"name": "stores", "mountPath": "/s", "subPath": "public"}]}]),
            json!([]),
        );
        assert!(mask_mounts(&elsewhere, "stores").unwrap().is_empty());
        let root = pod(
            json!([{"name": "app", "volumeMounts": [{"name": "stores", "mountPath": "/s", "subPath": "./"}]}]),
            json!([]),
        );
        assert_eq!(mask_mounts(&root, "stores").unwrap().len(), 1);
        for sub_path in [".dig-node", "./.dig-node/identity.key", "/.dig-node"] {
            let sneaky = pod(
                json!([{"name": "app", "volumeMounts": [{"name": "stores", "mountPath": "/s", "subPath": sub_path}]}]),
                json!([]),
            );
            let (container, reason) = mask_mounts(&sneaky, "stores").unwrap_err();
            assert_eq!(container, "app");
            assert!(reason.contains(".dig-node"), "{reason}");
        }
        let expr = pod(
            json!([{"name": "app", "volumeMounts": [{"name": "stores", "mountPath": "/s", "subPathExpr": "$(X)"}]}]),
            json!([]),
        );
        assert!(
            mask_mounts(&expr, "stores")
                .unwrap_err()
                .1
                .contains("subPathExpr")
        );
    }

    #[test]
    fn a_mount_already_at_the_mask_path_is_refused() {
        let pod = pod(
            json!([{"name": "app", "volumeMounts": [
                {"name": "stores", "mountPath": "/s"},
                {"name": "other", "mountPath": "/s/.dig-node"}
            ]}]),
            json!([]),
        );
        assert!(
            mask_mounts(&pod, "stores")
                .unwrap_err()
                .1
                .contains("/s/.dig-node")
        );
    }
}
