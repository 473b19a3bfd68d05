//! The index journal: the entries changed since the last snapshot (`index.json`), appended to
//! `index.journal` one JSON line per store and fsynced, so saving a burst of changes costs what
//! changed rather than the whole index. Each line carries the epoch of the snapshot it follows;
//! a new snapshot takes the next epoch, so after a crash between writing a snapshot and removing
//! the old journal, the lines the snapshot already includes are skipped, never replayed over it.
//!
//! A crash in the middle of an append leaves a torn last line. That append was never reported
//! durable, so loading stops at the first line that does not parse; the next snapshot (the first
//! save of every process) removes the journal.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::index::{IndexEntry, StoreIndex};

/// The longest journal line read back: an entry is a few hundred bytes plus its chunk manifest
/// (64 hex characters per 1 MiB chunk of a store of up to a few TiB).
const MAX_LINE_BYTES: u64 = 512 << 20;

#[derive(Serialize, Deserialize)]
struct Line {
    epoch: u64,
    name: String,
    /// `None`: the store left the index.
    entry: Option<IndexEntry>,
}

/// The journal that goes with the snapshot at `index_path`.
pub fn path_for(index_path: &Path) -> PathBuf {
    index_path.with_extension("journal")
}

/// Appends `changes` under `epoch` and fsyncs the journal (and, when the append created it, the
/// folder).
pub fn append(
    index_path: &Path,
    epoch: u64,
    changes: &[(String, Option<IndexEntry>)],
) -> io::Result<()> {
    let path = path_for(index_path);
    let created = !path.exists();
    let mut bytes = Vec::new();
    for (name, entry) in changes {
        let line = Line {
            epoch,
            name: name.clone(),
            entry: entry.clone(),
        };
        serde_json::to_writer(&mut bytes, &line).map_err(io::Error::other)?;
        bytes.push(b'\n');
    }
    let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
    file.write_all(&bytes)?;
    file.sync_data()?;
    if created {
        super::index::sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Applies the journal's lines of `index`'s epoch to it, in order; returns how many were applied.
/// A missing journal applies nothing.
pub fn replay(path: &Path, index: &mut StoreIndex) -> io::Result<usize> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut applied = 0;
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let read = Read::take(&mut reader, MAX_LINE_BYTES).read_until(b'\n', &mut buffer)?;
        if read == 0 || buffer.last() != Some(&b'\n') {
            // The end, or a torn (or oversized) last line: its append never completed.
            break;
        }
        let Ok(line) = serde_json::from_slice::<Line>(&buffer) else {
            tracing::warn!(path = %path.display(), applied, "store index journal ends in a line that does not parse; the lines after it are ignored");
            break;
        };
        if line.epoch != index.epoch() {
            continue;
        }
        match line.entry {
            Some(entry) => {
                index.insert_checked(line.name, entry);
            }
            None => {
                index.remove(&line.name);
            }
        }
        applied += 1;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;
    use crate::store::record::{ContentId, VersionRecord};
    use crate::store::version::Version;

    fn entry(key: &Keypair, name: &str, lamport: u64) -> IndexEntry {
        let signed = VersionRecord {
            name: name.to_owned(),
            version: Version::new(lamport, key.public().to_peer_id().to_base58()),
            owner: key.public().to_peer_id().to_base58(),
            content: Some(ContentId {
                size: 1,
                hash: [lamport as u8; 32],
            }),
            replaces: None,
        }
        .sign(key)
        .unwrap();
        IndexEntry::from_signed(&signed, signed.record.owner.clone(), 0)
    }

    /// An index with `a` and `b`, saved as a snapshot; the index in memory afterwards.
    fn saved(path: &Path, key: &Keypair) -> StoreIndex {
        let mut index = StoreIndex::new();
        index.insert("a".into(), entry(key, "a", 1));
        index.insert("b".into(), entry(key, "b", 1));
        index.begin_snapshot();
        index.save(path).unwrap();
        index
    }

    #[test]
    fn changes_appended_after_a_snapshot_are_there_after_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let key = Keypair::generate_ed25519();
        let mut index = saved(&path, &key);
        index.insert("a".into(), entry(&key, "a", 2));
        index.remove("b");
        index.insert("c".into(), entry(&key, "c", 3));
        let changes = index.take_changes();
        assert_eq!(changes.len(), 3, "{changes:?}");
        append(&path, index.epoch(), &changes).unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert_eq!(loaded, index);
        assert_eq!(loaded.holdings_digest(), index.holdings_digest());
        assert_eq!(loaded.changes_pending(), 0);
    }

    #[test]
    fn a_new_snapshot_drops_the_journal_and_stale_lines_are_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let key = Keypair::generate_ed25519();
        let mut index = saved(&path, &key);
        index.insert("a".into(), entry(&key, "a", 2));
        let old_epoch = index.epoch();
        let changes = index.take_changes();
        append(&path, old_epoch, &changes).unwrap();
        index.insert("a".into(), entry(&key, "a", 3));
        index.begin_snapshot();
        index.save(&path).unwrap();
        assert!(!path_for(&path).exists());
        // A crash between the snapshot's rename and the journal's removal: the old line is
        // still there, and must not bring lamport 2 back over 3.
        append(&path, old_epoch, &changes).unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert_eq!(loaded.get("a").unwrap().version.lamport, 3);
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_the_lines_before_it_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let key = Keypair::generate_ed25519();
        let mut index = saved(&path, &key);
        index.insert("c".into(), entry(&key, "c", 3));
        append(&path, index.epoch(), &index.take_changes()).unwrap();
        let mut journal = OpenOptions::new()
            .append(true)
            .open(path_for(&path))
            .unwrap();
        journal
            .write_all(br#"{"epoch":1,"name":"d","entry":{"vers"#)
            .unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert!(loaded.contains("c"));
        assert!(!loaded.contains("d"));
        assert_eq!(loaded.len(), 3);
    }

    #[test]
    fn garbage_in_the_journal_stops_the_replay_and_bad_names_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        let key = Keypair::generate_ed25519();
        let mut index = saved(&path, &key);
        index.insert("c".into(), entry(&key, "c", 3));
        let mut changes = index.take_changes();
        changes.push(("../escape".into(), Some(entry(&key, "x", 4))));
        append(&path, index.epoch(), &changes).unwrap();
        let mut journal = OpenOptions::new()
            .append(true)
            .open(path_for(&path))
            .unwrap();
        journal.write_all(&[0u8; 64]).unwrap();
        journal.write_all(b"\n").unwrap();
        append(
            &path,
            index.epoch(),
            &[("e".into(), Some(entry(&key, "e", 5)))],
        )
        .unwrap();
        let loaded = StoreIndex::load(&path).unwrap();
        assert!(loaded.contains("c"));
        assert!(!loaded.contains("../escape"), "invalid names never load");
        assert!(!loaded.contains("e"), "nothing after a bad line is trusted");
    }
}
