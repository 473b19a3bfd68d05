//! The three images built here the way users build them: `cluster.sh images` runs the
//! Dockerfile's final stages with buildah on prebuilt binaries (see e2e/cluster/images.sh) and
//! writes docker archives that [`crate::cluster::TestCluster::load_images`] imports into a real
//! node. Cached by content: the same binaries give the same set without a rebuild.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cluster::{ClusterError, SCRIPT_TIME_LIMIT, cluster_script, output_within};

/// One set of images: the archives' directory and each image's name.
#[derive(Clone, Debug)]
pub struct Images {
    pub dir: PathBuf,
    pub bootstrap: String,
    pub sidecar: String,
    pub operator: String,
}

impl Images {
    /// Builds (or finds cached) the images of the binaries in `binaries` (the debug or release
    /// `target` folder of `dig-bootstrap`, `dig-sidecar` and `dig-operator`).
    pub fn build(binaries: &Path) -> Result<Images, ClusterError> {
        let mut command = Command::new(cluster_script());
        command.arg("images").arg("--binaries").arg(binaries);
        let shown = format!("cluster.sh images --binaries {}", binaries.display());
        let output = output_within(command, &shown, "", SCRIPT_TIME_LIMIT)?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.code() == Some(crate::cluster::TOOLS_MISSING_EXIT) {
            return Err(ClusterError::ToolsMissing { reason: stderr });
        }
        if !output.status.success() {
            return Err(ClusterError::Script {
                command: shown,
                run_dir: PathBuf::new(),
                status: output.status.to_string(),
                stderr,
            });
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let env_file = dir.join("images.env");
        let env = std::fs::read_to_string(&env_file).map_err(|source| ClusterError::RunDir {
            path: env_file.clone(),
            source,
        })?;
        let image = |key: &str| {
            env.lines()
                .find_map(|line| line.strip_prefix(&format!("{key}=")))
                .map(str::to_owned)
                .ok_or_else(|| ClusterError::Script {
                    command: shown.clone(),
                    run_dir: PathBuf::new(),
                    status: format!("{} names no {key}", env_file.display()),
                    stderr: stderr.clone(),
                })
        };
        Ok(Images {
            bootstrap: image("BOOTSTRAP_IMAGE")?,
            sidecar: image("SIDECAR_IMAGE")?,
            operator: image("OPERATOR_IMAGE")?,
            dir,
        })
    }
}

/// `registry/name:tag` split into the repository and the tag, as Helm values take them.
pub fn repository_and_tag(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (image, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_tag_but_not_a_registry_port() {
        assert_eq!(
            repository_and_tag("dig-e2e.local/dig-operator:0.1.0-abc"),
            ("dig-e2e.local/dig-operator", "0.1.0-abc")
        );
        assert_eq!(
            repository_and_tag("localhost:5000/dig-operator"),
            ("localhost:5000/dig-operator", "latest")
        );
    }
}
