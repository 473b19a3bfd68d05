//! Store names: `<name>.dig` directly in the data folder, with `name` matching the pattern of
//! docs/DESIGN.md §4, `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`. Every name that comes from the wire or the folder goes
//! through here before it becomes part of a path.

use std::path::{Path, PathBuf};

/// The file extension of a store archive.
pub const STORE_EXTENSION: &str = ".dig";

/// Longest valid store name (1 leading character + 127 more).
pub const MAX_STORE_NAME_LEN: usize = 128;

/// True when `name` matches `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` (the registry's own check, so
/// the node and the registry agree). A valid name never contains a path separator and never is
/// `.` or `..`, so joining it to a folder cannot leave that folder.
pub fn is_valid_store_name(name: &str) -> bool {
    name.len() <= MAX_STORE_NAME_LEN && dig_core::record::is_valid_store_name(name)
}

/// The store name of a folder entry, or `None` when the entry is not a store file
/// (wrong extension, invalid name, hidden file).
pub fn store_name_from_file_name(file_name: &str) -> Option<&str> {
    let name = file_name.strip_suffix(STORE_EXTENSION)?;
    is_valid_store_name(name).then_some(name)
}

/// `<name>.dig` for a valid name; `None` for anything else.
pub fn store_file_name(name: &str) -> Option<String> {
    is_valid_store_name(name).then(|| format!("{name}{STORE_EXTENSION}"))
}

/// The path of a store's file inside `data_dir`; `None` when the name is not valid, so a hostile
/// name can never produce a path outside the data folder.
pub fn store_path(data_dir: &Path, name: &str) -> Option<PathBuf> {
    store_file_name(name).map(|file| data_dir.join(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_matching_the_design_pattern() {
        for name in ["a", "A9", "store-1", "my_store.v2", "0", &"x".repeat(128)] {
            assert!(is_valid_store_name(name), "{name} should be valid");
        }
    }

    #[test]
    fn rejects_hostile_and_malformed_names() {
        let too_long = "x".repeat(129);
        for name in [
            "",
            ".",
            "..",
            ".hidden",
            "-dash",
            "_under",
            "a/b",
            "../etc/passwd",
            "a\\b",
            "/abs",
            "a b",
            "a\0b",
            "ä",
            "name\n",
            too_long.as_str(),
        ] {
            assert!(!is_valid_store_name(name), "{name:?} should be rejected");
        }
    }

    #[test]
    fn store_file_names_round_trip_and_ignore_other_files() {
        assert_eq!(store_name_from_file_name("abc.dig"), Some("abc"));
        assert_eq!(store_name_from_file_name("a.b.dig"), Some("a.b"));
        assert_eq!(store_name_from_file_name("abc.txt"), None);
        assert_eq!(store_name_from_file_name(".dig"), None);
        assert_eq!(store_name_from_file_name(".x.dig"), None);
        assert_eq!(store_name_from_file_name("abc.dig.part"), None);
        assert_eq!(store_file_name("abc").as_deref(), Some("abc.dig"));
        assert_eq!(store_file_name("../x"), None);
    }

    #[test]
    fn paths_built_from_names_stay_inside_the_data_folder() {
        let data = Path::new("/data");
        assert_eq!(store_path(data, "s1"), Some(PathBuf::from("/data/s1.dig")));
        for hostile in ["../x", "..", "/etc/passwd", "a/../../b", ""] {
            assert_eq!(store_path(data, hostile), None, "{hostile:?}");
        }
    }
}
