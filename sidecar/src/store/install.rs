//! Putting verified downloads into the data folder, and removing stores for tombstones.
//!
//! A download lives in the temporary folder until it is complete, fsynced and verified; then one
//! `rename` makes it visible, so the data folder never shows a partial file. Whatever is in the
//! way and must be kept goes to `conflicts/` first (see `conflicts`).

use std::fs;
use std::io;
use std::path::Path;

/// Atomically replaces (or creates) `target` with the complete, fsynced file `tmp`.
pub fn install(tmp: &Path, target: &Path) -> io::Result<()> {
    fs::rename(tmp, target)
}

/// Removes a store's file for a tombstone; a file already gone is fine.
pub fn remove_store_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_replaces_the_file_in_one_rename() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("s.dig");
        fs::write(&target, b"old").unwrap();
        let tmp = dir.path().join("new.part");
        fs::write(&tmp, b"new").unwrap();
        install(&tmp, &target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert!(!tmp.exists());
    }

    #[test]
    fn removing_a_missing_store_file_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        remove_store_file(&dir.path().join("nothing.dig")).unwrap();
    }
}
