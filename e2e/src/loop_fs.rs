//! A loop-mounted XFS with reflinks, so that a benchmark can compare file systems where copying
//! the unchanged part of a file costs nothing (XFS shares the extents) with ones where it costs a
//! full copy (ext4). Needs root, `mkfs.xfs` and `losetup`; everything is undone on drop.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, bail};

/// A mounted XFS on a sparse image file. Dropping it unmounts, detaches the loop device and
/// deletes the image and the mount point.
pub struct LoopXfs {
    image: PathBuf,
    device: Option<String>,
    mount_point: PathBuf,
    mounted: bool,
}

impl LoopXfs {
    /// True when this process may mount (root) and the tools are installed.
    pub fn available() -> bool {
        // /proc/self belongs to the effective user of the process reading it.
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
            && crate::browser::find_program("mkfs.xfs").is_some()
            && crate::browser::find_program("losetup").is_some()
    }

    /// Creates a sparse image of `size` bytes at `image`, formats it as XFS with reflinks and
    /// mounts it at `mount_point`.
    pub fn mount(image: &Path, mount_point: &Path, size: u64) -> anyhow::Result<Self> {
        let mut fs = Self {
            image: image.to_path_buf(),
            device: None,
            mount_point: mount_point.to_path_buf(),
            mounted: false,
        };
        let file = std::fs::File::create(image)
            .with_context(|| format!("creating the image {}", image.display()))?;
        file.set_len(size)
            .with_context(|| format!("sizing the image {} to {size} bytes", image.display()))?;
        drop(file);
        let device = run(
            "losetup",
            &["--find", "--show", &image.display().to_string()],
        )?;
        let device = device.trim().to_string();
        fs.device = Some(device.clone());
        run("mkfs.xfs", &["-q", "-f", "-m", "reflink=1", &device])?;
        std::fs::create_dir_all(mount_point)
            .with_context(|| format!("creating {}", mount_point.display()))?;
        run("mount", &[&device, &mount_point.display().to_string()])?;
        fs.mounted = true;
        Ok(fs)
    }

    pub fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for LoopXfs {
    fn drop(&mut self) {
        if self.mounted {
            let point = self.mount_point.display().to_string();
            // Processes killed a moment ago may still be closing their files: retry a while,
            // then detach lazily rather than leave the mount behind.
            let mut result = run("umount", &[&point]);
            for _ in 0..20 {
                if result.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
                result = run("umount", &[&point]);
            }
            if let Err(error) = result {
                eprintln!("{error:#}; unmounting lazily");
                let _ = run("umount", &["-l", &point]);
            }
        }
        if let Some(device) = &self.device
            && let Err(error) = run("losetup", &["-d", device])
        {
            eprintln!("{error:#}");
        }
        let _ = std::fs::remove_dir(&self.mount_point);
        let _ = std::fs::remove_file(&self.image);
    }
}

/// Runs a system tool; its stdout, or an error naming the command and its output.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The type of the file system holding `path` (`ext4`, `xfs`, `tmpfs`, ...), from the longest
/// mount point in `/proc/self/mounts` that contains it.
pub fn file_system_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mount_type(&mounts, &path)
}

fn mount_type(mounts: &str, path: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let point = fields.nth(1)?.replace("\\040", " ");
            let kind = fields.next()?;
            path.starts_with(&point)
                .then(|| (point.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_mount_point_names_the_file_system() {
        let mounts = "/dev/vda / ext4 rw 0 0\n/dev/loop0 /work/x\\040y xfs rw 0 0\ntmpfs /work/xy tmpfs rw 0 0\n";
        assert_eq!(
            mount_type(mounts, Path::new("/work/x y/a")).as_deref(),
            Some("xfs")
        );
        assert_eq!(
            mount_type(mounts, Path::new("/work/xyz")).as_deref(),
            Some("ext4")
        );
        assert_eq!(
            mount_type(mounts, Path::new("/work/xy")).as_deref(),
            Some("tmpfs")
        );
    }
}
