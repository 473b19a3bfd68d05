//! The `conflicts/` folder: local bytes that were replaced (a local version that lost, or a local
//! change this node may not write) are kept here before anything replaces them, and old ones are
//! pruned by age and count.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::version::Version;

/// What a kept file was.
#[derive(Clone, Copy, Debug)]
pub enum KeptAs<'a> {
    /// A version made here that lost to one made without seeing it.
    Lost(&'a Version),
    /// Local bytes that never became a version (a refused change, or a change not yet hashed).
    Local,
}

/// The file name a kept file gets: `<store>.<lamport>-<origin>.<UTC time>.dig` for a lost
/// version, `<store>.local.<UTC time>.dig` for other local bytes.
pub fn conflict_file_name(name: &str, kept: KeptAs<'_>, now: jiff::Timestamp) -> String {
    let stamp = now.strftime("%Y%m%dT%H%M%S%.fZ");
    match kept {
        KeptAs::Lost(version) => format!(
            "{name}.{}-{}.{stamp}.dig",
            version.lamport,
            sanitize(&version.origin)
        ),
        KeptAs::Local => format!("{name}.local.{stamp}.dig"),
    }
}

fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Keeps the current file of a store in `conflicts_dir` under a name that says which store and
/// version it was, durably (a hard link, or a fsynced copy across file systems, and a fsync of
/// the folder). The data folder is not changed. Only when this returns `Ok` may the file be
/// replaced.
pub fn preserve_conflict(
    conflicts_dir: &Path,
    current: &Path,
    name: &str,
    kept: KeptAs<'_>,
) -> io::Result<PathBuf> {
    fs::create_dir_all(conflicts_dir)?;
    let target = conflicts_dir.join(conflict_file_name(name, kept, jiff::Timestamp::now()));
    if fs::hard_link(current, &target).is_err() {
        let tmp = target.with_extension("dig.tmp");
        fs::copy(current, &tmp)?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &target)?;
    }
    super::index::sync_dir(conflicts_dir)?;
    Ok(target)
}

/// Kept files with their age in ms (from the file's modification time).
pub fn list_conflicts(conflicts_dir: &Path, now: SystemTime) -> io::Result<Vec<(PathBuf, u64)>> {
    let listing = match fs::read_dir(conflicts_dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in listing {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let age = now
            .duration_since(modified)
            .map_or(0, |age| age.as_millis() as u64);
        files.push((entry.path(), age));
    }
    Ok(files)
}

/// Which kept files to delete: those older than `max_age_ms`, and the oldest beyond `max_count`.
pub fn prune_plan(
    mut files: Vec<(PathBuf, u64)>,
    max_age_ms: u64,
    max_count: usize,
) -> Vec<PathBuf> {
    // Newest first (smallest age), ties by name so the plan does not depend on listing order.
    files.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    files
        .into_iter()
        .enumerate()
        .filter(|(i, (_, age))| *i >= max_count || *age > max_age_ms)
        .map(|(_, (path, _))| path)
        .collect()
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
        let kept = preserve_conflict(
            &conflicts,
            &current,
            "s",
            KeptAs::Lost(&Version::new(7, "12D3Koo/x")),
        )
        .unwrap();
        assert_eq!(fs::read(&kept).unwrap(), b"mine");
        let kept_name = kept.file_name().unwrap().to_str().unwrap();
        assert!(kept_name.starts_with("s.7-12D3Koo_x."), "{kept_name}");
        assert!(kept_name.ends_with("Z.dig"), "{kept_name}");
        let local = preserve_conflict(&conflicts, &current, "s", KeptAs::Local).unwrap();
        let local_name = local.file_name().unwrap().to_str().unwrap();
        assert!(local_name.starts_with("s.local."), "{local_name}");
    }

    #[test]
    fn keeping_fails_loudly_when_the_file_cannot_be_kept() {
        let dir = tempfile::tempdir().unwrap();
        let error = preserve_conflict(
            &dir.path().join("conflicts"),
            &dir.path().join("missing.dig"),
            "missing",
            KeptAs::Local,
        );
        assert!(error.is_err());
    }

    #[test]
    fn pruning_drops_old_files_and_the_oldest_beyond_the_count() {
        let files = vec![
            (PathBuf::from("a"), 10),
            (PathBuf::from("b"), 5_000),
            (PathBuf::from("c"), 20),
            (PathBuf::from("d"), 30),
        ];
        assert_eq!(
            prune_plan(files.clone(), 1_000, 10),
            vec![PathBuf::from("b")]
        );
        assert_eq!(
            prune_plan(files, 100_000, 2),
            vec![PathBuf::from("d"), PathBuf::from("b")]
        );
    }

    #[test]
    fn listing_a_missing_folder_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            list_conflicts(&dir.path().join("none"), SystemTime::now())
                .unwrap()
                .is_empty()
        );
        fs::write(dir.path().join("x.dig"), b"1").unwrap();
        let listed = list_conflicts(dir.path(), SystemTime::now()).unwrap();
        assert_eq!(listed.len(), 1);
    }
}
