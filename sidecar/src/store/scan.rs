//! The start-up scan: which store files are in the data folder, and what else is there (ignored).

use std::fs;
use std::io;
use std::path::Path;

use super::index::LocalMeta;
use super::name::store_name_from_file_name;

/// What a scan of the data folder found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Store files: name and metadata.
    pub stores: Vec<(String, LocalMeta)>,
    /// Entries that are not stores (bad names, folders, links), by file name. Dot-entries such as
    /// the state folder are not listed: nothing under a dot-folder is replicated, silently.
    pub ignored: Vec<String>,
}

/// Lists the data folder (not recursive).
pub fn scan_data_dir(data_dir: &Path) -> io::Result<ScanResult> {
    let mut result = ScanResult::default();
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') {
            continue;
        }
        let file_type = entry.file_type()?;
        match store_name_from_file_name(&file_name) {
            Some(name) if file_type.is_file() => {
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    // Removed between listing and stat: not there.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                result
                    .stores
                    .push((name.to_owned(), LocalMeta::from_metadata(&meta)));
            }
            _ => result.ignored.push(file_name),
        }
    }
    result.stores.sort_by(|a, b| a.0.cmp(&b.0));
    result.ignored.sort();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_store_files_and_lists_everything_else_as_ignored() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.dig"), b"one").unwrap();
        fs::write(dir.path().join("b.v2.dig"), b"two!").unwrap();
        fs::write(dir.path().join("-bad.dig"), b"x").unwrap();
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        fs::create_dir(dir.path().join("folder.dig")).unwrap();
        fs::create_dir(dir.path().join(".dig-node")).unwrap();
        fs::write(dir.path().join(".hidden.dig"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.dig")).unwrap();
        let scan = scan_data_dir(dir.path()).unwrap();
        let names: Vec<_> = scan
            .stores
            .iter()
            .map(|(n, m)| (n.as_str(), m.size))
            .collect();
        assert_eq!(names, vec![("a", 3), ("b.v2", 4)]);
        assert_eq!(
            scan.ignored,
            vec!["-bad.dig", "folder.dig", "link.dig", "notes.txt"]
        );
    }

    #[test]
    fn a_rewritten_file_has_different_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.dig");
        fs::write(&path, b"one").unwrap();
        let before = LocalMeta::of_path(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(&path, b"two").unwrap();
        let after = LocalMeta::of_path(&path).unwrap();
        assert_ne!(before, after);
        assert_eq!(before.size, after.size);
    }
}
