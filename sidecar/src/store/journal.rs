//! The index journal: the entries changed since the last snapshot (`index.json`), appended to
//! `index.journal` one JSON line per store and fsynced, so saving a burst of changes costs what
//! changed rather than the whole index. Each line carries the epoch of the snapshot it follows;
//! a new snapshot takes the next epoch, so after a crash between writing a snapshot and removing
//! the old journal, the lines the snapshot already includes are skipped, never replayed over it.
//!
//! A crash in the middle of an append leaves a torn last line. That append was never reported
//! durable, so reading stops at the first line that does not parse; the next snapshot (the first
//! save of every process) removes the journal. Generic over the entry type, so the index
//! (`index.rs`) uses the journal and not the other way round.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The longest journal line read back: an entry is a few hundred bytes plus its chunk manifest
/// (64 hex characters per 1 MiB chunk of a store of up to a few TiB).
const MAX_LINE_BYTES: u64 = 512 << 20;

#[derive(Serialize, Deserialize)]
struct Line<T> {
    epoch: u64,
    name: String,
    /// `None`: the store left the index.
    entry: Option<T>,
}

/// The journal that goes with the snapshot at `index_path`.
pub fn path_for(index_path: &Path) -> PathBuf {
    index_path.with_extension("journal")
}

/// Appends `changes` under `epoch` and fsyncs the journal (and, when the append created it, the
/// folder).
pub fn append<T: Serialize>(
    index_path: &Path,
    epoch: u64,
    changes: &[(String, Option<T>)],
) -> io::Result<()> {
    let path = path_for(index_path);
    let created = !path.exists();
    let mut bytes = Vec::new();
    for (name, entry) in changes {
        let line = Line {
            epoch,
            name: name.clone(),
            entry: entry.as_ref(),
        };
        serde_json::to_writer(&mut bytes, &line).map_err(io::Error::other)?;
        bytes.push(b'\n');
    }
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    file.write_all(&bytes)?;
    file.sync_data()?;
    if created {
        File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
    }
    Ok(())
}

/// The changes the journal at `path` holds for `epoch`, in order (none without a journal).
pub fn read<T: DeserializeOwned>(path: &Path, epoch: u64) -> io::Result<Vec<(String, Option<T>)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut changes = Vec::new();
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let read = Read::take(&mut reader, MAX_LINE_BYTES).read_until(b'\n', &mut buffer)?;
        if read == 0 || buffer.last() != Some(&b'\n') {
            // The end, or a torn (or oversized) last line: its append never completed.
            break;
        }
        let Ok(line) = serde_json::from_slice::<Line<T>>(&buffer) else {
            tracing::warn!(path = %path.display(), read = changes.len(), "store index journal ends in a line that does not parse; the lines after it are ignored");
            break;
        };
        if line.epoch == epoch {
            changes.push((line.name, line.entry));
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(items: &[(&str, Option<u32>)]) -> Vec<(String, Option<u32>)> {
        items.iter().map(|(n, e)| (n.to_string(), *e)).collect()
    }

    #[test]
    fn lines_of_the_epoch_come_back_in_order_and_others_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index.json");
        append(&index, 1, &changes(&[("a", Some(1)), ("b", None)])).unwrap();
        append(&index, 2, &changes(&[("a", Some(2))])).unwrap();
        append(&index, 1, &changes(&[("a", Some(3))])).unwrap();
        assert_eq!(
            read::<u32>(&path_for(&index), 1).unwrap(),
            changes(&[("a", Some(1)), ("b", None), ("a", Some(3))])
        );
        assert_eq!(
            read::<u32>(&path_for(&index), 2).unwrap(),
            changes(&[("a", Some(2))])
        );
        assert!(
            read::<u32>(&dir.path().join("none.journal"), 1)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_torn_last_line_or_garbage_ends_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("index.json");
        append(&index, 1, &changes(&[("a", Some(1))])).unwrap();
        let mut journal = OpenOptions::new()
            .append(true)
            .open(path_for(&index))
            .unwrap();
        journal.write_all(br#"{"epoch":1,"name":"b","en"#).unwrap();
        assert_eq!(
            read::<u32>(&path_for(&index), 1).unwrap(),
            changes(&[("a", Some(1))])
        );
        journal.write_all(b"\n").unwrap();
        journal.write_all(&[0u8; 16]).unwrap();
        journal.write_all(b"\n").unwrap();
        append(&index, 1, &changes(&[("c", Some(3))])).unwrap();
        assert_eq!(
            read::<u32>(&path_for(&index), 1).unwrap(),
            changes(&[("a", Some(1))]),
            "nothing after a bad line is trusted"
        );
    }
}
