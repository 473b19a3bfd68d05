//! Recent conflicts: the local versions that lost to a newer one and were kept in
//! `<state>/conflicts/` (`<store>.<lamport>-<origin>.<UTC time>.dig`), newest first. The folder
//! is the durable record, so the list survives restarts.

use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::Serialize;

/// Most entries of the folder looked at, so a folder of millions of files costs a bounded scan.
const MAX_SCANNED: usize = 10_000;

/// One kept version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    /// File name in `conflicts/`.
    pub file: String,
    /// The store, when the file name has the usual form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Version the kept file had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lamport: Option<u64>,
    /// Its origin, as written in the file name (characters other than letters and digits are `_`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    pub size: u64,
    /// Unix milliseconds the file was kept (its modification time).
    pub kept_at_ms: u64,
}

/// The newest `limit` conflicts kept in `dir` (none when it does not exist).
pub fn recent(dir: &Path, limit: usize) -> Vec<Conflict> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut conflicts: Vec<Conflict> = entries
        .take(MAX_SCANNED)
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name().into_string().ok()?;
            let metadata = entry.metadata().ok()?;
            if !metadata.is_file() || !file.ends_with(".dig") {
                return None;
            }
            let kept_at_ms = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |elapsed| elapsed.as_millis() as u64);
            let parsed = parse_name(&file);
            Some(Conflict {
                store: parsed.as_ref().map(|p| p.0.clone()),
                lamport: parsed.as_ref().map(|p| p.1),
                origin: parsed.map(|p| p.2),
                file,
                size: metadata.len(),
                kept_at_ms,
            })
        })
        .collect();
    conflicts.sort_by(|a, b| {
        b.kept_at_ms
            .cmp(&a.kept_at_ms)
            .then_with(|| a.file.cmp(&b.file))
    });
    conflicts.truncate(limit);
    conflicts
}

/// `(store, lamport, origin)` of `<store>.<lamport>-<origin>.<YYYYMMDDTHHMMSS[.fraction]Z>.dig`.
/// The store name may hold dots, so the name is read from the right.
fn parse_name(file: &str) -> Option<(String, u64, String)> {
    let rest = file.strip_suffix(".dig")?;
    let stamp_start = rest.rfind('T')?.checked_sub(8)?;
    let stamp = rest.get(stamp_start..)?;
    let well_formed = stamp.ends_with('Z')
        && stamp[..8].bytes().all(|b| b.is_ascii_digit())
        && stamp[9..stamp.len() - 1]
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.');
    if !well_formed {
        return None;
    }
    let before = rest[..stamp_start].strip_suffix('.')?;
    let (store_and_lamport, origin) = before.rsplit_once('-')?;
    let (store, lamport) = store_and_lamport.rsplit_once('.')?;
    if store.is_empty() || origin.is_empty() {
        return None;
    }
    Some((store.to_string(), lamport.parse().ok()?, origin.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_the_right() {
        assert_eq!(
            parse_name("my.store-1.7-12D3KooWabc.20260101T120000.123456Z.dig"),
            Some(("my.store-1".into(), 7, "12D3KooWabc".into()))
        );
        assert_eq!(
            parse_name("s.3-origin_x.20260101T120000Z.dig"),
            Some(("s".into(), 3, "origin_x".into()))
        );
        for odd in [
            "notes.txt",
            "s.dig",
            "s.x-origin.20260101T120000Z.dig",
            "s.3-origin.2026T12Z.dig",
            ".3-o.20260101T120000Z.dig",
            "s.3-o.é0260101T120000Z.dig",
        ] {
            assert_eq!(parse_name(odd), None, "{odd}");
        }
    }

    #[test]
    fn the_newest_come_first_and_other_files_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("a.1-o.20260101T120000Z.dig");
        let new = dir.path().join("b.2-o.20260101T120001Z.dig");
        std::fs::write(&old, b"old").unwrap();
        std::fs::write(&new, b"newer").unwrap();
        std::fs::write(dir.path().join("a.dig.tmp"), b"partial copy").unwrap();
        std::fs::create_dir(dir.path().join("folder.dig")).unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(past)
            .unwrap();

        let conflicts = recent(dir.path(), 10);
        let files: Vec<&str> = conflicts.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(
            files,
            ["b.2-o.20260101T120001Z.dig", "a.1-o.20260101T120000Z.dig"]
        );
        assert_eq!(conflicts[0].store.as_deref(), Some("b"));
        assert_eq!(conflicts[0].size, 5);
        assert_eq!(recent(dir.path(), 1).len(), 1);
        assert!(recent(&dir.path().join("missing"), 10).is_empty());
    }
}
