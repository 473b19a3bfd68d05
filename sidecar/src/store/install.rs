//! Putting verified downloads into the data folder and keeping losing versions.
//!
//! A download lives in the temporary folder until it is complete, fsynced and verified; then one
//! `rename` makes it visible, so the data folder never shows a partial file. A local version that
//! loses to a newer one is first linked (or copied) into `conflicts/`, so it is never destroyed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::version::Version;

/// The file name a losing version gets in `conflicts/`:
/// `<store>.<lamport>-<origin>.<UTC timestamp>.dig`.
pub fn conflict_file_name(name: &str, version: &Version, now: jiff::Timestamp) -> String {
    let stamp = now.strftime("%Y%m%dT%H%M%S%.fZ");
    format!(
        "{name}.{}-{}.{stamp}.dig",
        version.lamport,
        sanitize(&version.origin)
    )
}

fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Keeps the current file of a store in `conflicts_dir` under a name that says which store and
/// version it was. The data folder is not changed (a hard link; a copy across file systems).
pub fn preserve_conflict(
    conflicts_dir: &Path,
    current: &Path,
    name: &str,
    version: &Version,
) -> io::Result<PathBuf> {
    fs::create_dir_all(conflicts_dir)?;
    let target = conflicts_dir.join(conflict_file_name(name, version, jiff::Timestamp::now()));
    if fs::hard_link(current, &target).is_err() {
        let tmp = target.with_extension("dig.tmp");
        fs::copy(current, &tmp)?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &target)?;
    }
    super::index::sync_dir(conflicts_dir)?;
    Ok(target)
}

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
    fn a_conflict_keeps_the_old_bytes_under_a_descriptive_name() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let conflicts = dir.path().join("state/conflicts");
        fs::create_dir_all(&data).unwrap();
        let current = data.join("s.dig");
        fs::write(&current, b"mine").unwrap();
        let tmp = dir.path().join("new.part");
        fs::write(&tmp, b"theirs").unwrap();

        let kept =
            preserve_conflict(&conflicts, &current, "s", &Version::new(7, "12D3Koo/x")).unwrap();
        install(&tmp, &current).unwrap();

        assert_eq!(fs::read(&current).unwrap(), b"theirs");
        assert_eq!(fs::read(&kept).unwrap(), b"mine");
        let kept_name = kept.file_name().unwrap().to_str().unwrap();
        assert!(kept_name.starts_with("s.7-12D3Koo_x."), "{kept_name}");
        assert!(kept_name.ends_with("Z.dig"), "{kept_name}");
        assert!(!tmp.exists());
    }

    #[test]
    fn removing_a_missing_store_file_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        remove_store_file(&dir.path().join("nothing.dig")).unwrap();
    }
}
