//! Free-space checks, so a download never fills the disk past the configured reserve.

use std::io;
use std::path::{Path, PathBuf};

/// A download refused because the disk would go below its reserve.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(
        "not enough disk space on {path}: need {needed} bytes plus a reserve of {reserve} bytes, {available} available"
    )]
    InsufficientSpace {
        path: PathBuf,
        needed: u64,
        reserve: u64,
        available: u64,
    },
    #[error("cannot read free space of {path}: {source}")]
    Statvfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Bytes available to unprivileged users on the file system holding `path`.
pub fn available_bytes(path: &Path) -> Result<u64, DiskError> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(|errno| DiskError::Statvfs {
        path: path.to_owned(),
        source: io::Error::from(errno),
    })?;
    Ok((stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64))
}

/// Checks that writing `needed` more bytes under `path` leaves at least `reserve` bytes free.
pub fn ensure_space(path: &Path, needed: u64, reserve: u64) -> Result<(), DiskError> {
    let available = available_bytes(path)?;
    if available < needed.saturating_add(reserve) {
        return Err(DiskError::InsufficientSpace {
            path: path.to_owned(),
            needed,
            reserve,
            available,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_free_space_and_refuses_beyond_the_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let available = available_bytes(dir.path()).unwrap();
        assert!(available > 0);
        ensure_space(dir.path(), 1, 0).unwrap();
        let err = ensure_space(dir.path(), 1, available).unwrap_err();
        assert!(matches!(err, DiskError::InsufficientSpace { .. }));
        assert!(err.to_string().contains("not enough disk space"), "{err}");
    }
}
