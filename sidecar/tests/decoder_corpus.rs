//! Replays the committed corpus of hostile and odd inputs (`tests/corpus/`) through the node's
//! decoders of untrusted bytes: gossip announcements, sync stream headers and the saved index.
//! Each file's name starts with the outcome it must have; the property tests beside each decoder
//! generate inputs at random, this corpus keeps the ones worth keeping.

use std::path::PathBuf;

use dig_sidecar::store::StoreIndex;
use dig_sidecar::store::record::KeyCache;
use dig_sidecar::sync::announce::{Announcement, decode_entries, verify_records};
use dig_sidecar::sync::protocol::{Request, read_header};

/// Every file of `tests/corpus/<dir>` with the outcome its name starts with, sorted.
fn corpus(dir: &str) -> Vec<(String, String, Vec<u8>)> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("reading {}: {e}", folder.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{} holds only {files:?}",
        folder.display()
    );
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let outcome = name.split('-').next().unwrap().to_string();
            let bytes = std::fs::read(&path).unwrap();
            (name, outcome, bytes)
        })
        .collect()
}

#[test]
fn hostile_announcements_are_dropped_with_the_reason_their_name_gives() {
    for (name, outcome, bytes) in corpus("announcements") {
        let entries = Announcement::decode(&bytes);
        if outcome == "undecodable" {
            assert!(entries.is_err(), "{name}: decoded as {entries:?}");
            continue;
        }
        let entries = entries.unwrap_or_else(|e| panic!("{name}: {e}"));
        let decoded = decode_entries(&entries);
        let mut rejected = decoded.rejected;
        let verified = verify_records(decoded.records, &mut KeyCache::default(), &mut rejected);
        assert!(verified.is_empty(), "{name}: a version was accepted");
        let reasons: Vec<_> = rejected.iter().map(|(r, n)| (r.label(), *n)).collect();
        assert_eq!(
            reasons,
            vec![(outcome.as_str(), entries.len() as u32)],
            "{name}"
        );
    }
}

#[test]
fn hostile_stream_headers_are_refused_before_anything_is_allocated_for_them() {
    for (name, outcome, bytes) in corpus("headers") {
        let mut stream = bytes.as_slice();
        let read = futures::executor::block_on(read_header::<_, Request>(&mut stream));
        match outcome.as_str() {
            "refused" => assert!(read.is_err(), "{name}: read {read:?}"),
            "end" => assert!(matches!(read, Ok(None)), "{name}: read {read:?}"),
            "accepted" => assert!(matches!(read, Ok(Some(_))), "{name}: read {read:?}"),
            other => panic!("{name}: unknown outcome {other}"),
        }
    }
}

#[test]
fn a_damaged_or_tampered_index_file_loads_only_what_is_valid() {
    let folder = tempfile::tempdir().unwrap();
    for (name, outcome, bytes) in corpus("index") {
        let path = folder.path().join(&name);
        std::fs::write(&path, &bytes).unwrap();
        let loaded = StoreIndex::load(&path);
        match outcome.as_str() {
            "undecodable" | "refused" => {
                let error = loaded.err().unwrap_or_else(|| panic!("{name}: loaded"));
                assert!(
                    error.to_string().contains(&name),
                    "{name}: the error names the file: {error}"
                );
            }
            "dropped" => {
                let index = loaded.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(index.is_empty(), "{name}: kept an invalid entry");
            }
            other => panic!("{name}: unknown outcome {other}"),
        }
    }
}
