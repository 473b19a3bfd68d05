//! Properties of the federation feed as a sibling's answer is decoded and merged: whatever the
//! bytes, decoding fails cleanly or the merge keeps only entries that verify on their own, and
//! every entry is counted once. The committed corpus (`tests/corpus/records_page/`) is replayed
//! the same way; a file's name says how its entries are counted (`stale-2-rejected-1-...`).

mod support;

use std::path::Path;

use clap::Parser;
use dig_bootstrap::api::RecordsResponse;
use dig_bootstrap::config::Config;
use dig_bootstrap::record::{PeerRecord, RecordLimits, StoreEntry, UnregisterRequest};
use dig_bootstrap::server::AppState;
use dig_bootstrap::server::federation::merge_page;
use dig_bootstrap::server::federation_status::PullSummary;
use dig_core::clock::now_ms;
use libp2p_identity::Keypair;
use proptest::prelude::*;
use support::json_mutation;

fn state() -> AppState {
    let config = Config::try_parse_from(["dig-bootstrap", "--max-state-bytes", "65536"])
        .expect("test flags parse");
    AppState::new(&config)
}

/// A page of three fresh records and a removal of a fourth peer.
fn page_json() -> Vec<u8> {
    let now = now_ms();
    let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate_ed25519()).collect();
    let records = keys[..3]
        .iter()
        .enumerate()
        .map(|(i, keypair)| {
            PeerRecord {
                peer_id: keypair.public().to_peer_id().to_base58(),
                network_id: "testnet".into(),
                addresses: vec![format!("/ip4/10.0.0.{i}/tcp/4001")],
                stores: vec![StoreEntry {
                    name: format!("store-{i}"),
                    size: i as u64,
                    hash: format!("{i:064x}"),
                    lamport: 1,
                }],
                agent_version: "dig-sidecar/0.1.0".into(),
                timestamp_ms: now - 1_000,
            }
            .sign(keypair)
            .expect("signing")
        })
        .collect();
    let removal = UnregisterRequest {
        peer_id: keys[3].public().to_peer_id().to_base58(),
        network_id: "testnet".into(),
        timestamp_ms: now - 1_000,
    }
    .sign(&keys[3])
    .expect("signing");
    serde_json::to_vec(&RecordsResponse {
        epoch: "0123456789abcdef".into(),
        records,
        removals: vec![removal],
        next_cursor: 4,
        more: false,
    })
    .expect("pages encode")
}

/// Decodes `bytes` as the client does and merges what decodes; checks what the state holds.
fn decode_and_merge(bytes: &[u8]) -> Result<Option<PullSummary>, TestCaseError> {
    let Ok(page) = serde_json::from_slice::<RecordsResponse>(bytes) else {
        return Ok(None);
    };
    let entries = (page.records.len() + page.removals.len()) as u64;
    let state = state();
    let mut summary = PullSummary::default();
    merge_page(&state, "http://sibling.test", page, &mut summary);
    let PullSummary {
        accepted,
        unchanged,
        stale,
        full,
        rejected,
    } = summary;
    prop_assert_eq!(accepted + unchanged + stale + full + rejected, entries);
    let held = state
        .registry()
        .read()
        .records_page(0, 5_000, now_ms(), "here");
    for record in &held.records {
        prop_assert!(record.validate_and_verify(&RecordLimits::default()).is_ok());
    }
    for removal in &held.removals {
        prop_assert!(removal.validate_and_verify().is_ok());
    }
    prop_assert!((held.records.len() + held.removals.len()) as u64 <= accepted);
    Ok(Some(summary))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn mutated_pages_merge_only_what_verifies(mutation in json_mutation()) {
        decode_and_merge(&mutation.apply(&page_json()))?;
    }

    #[test]
    fn arbitrary_bytes_never_break_the_merge(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        decode_and_merge(&bytes)?;
    }
}

#[test]
fn an_untouched_page_merges_whole() {
    let summary = decode_and_merge(&page_json()).unwrap().expect("a page");
    assert_eq!(summary.accepted, 4);
}

#[test]
fn the_corpus_of_hostile_pages_is_counted_as_named() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/records_page");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("the records_page corpus")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).expect("a corpus file");
        let summary = decode_and_merge(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let counted = |label: &str| {
            name.split('-')
                .collect::<Vec<_>>()
                .windows(2)
                .find(|w| w[0] == label)
                .map_or(0, |w| w[1].parse::<u64>().expect("a count after the label"))
        };
        match summary {
            None => assert!(name.starts_with("undecodable-"), "{name} did not decode"),
            Some(summary) => {
                assert_eq!(summary.stale, counted("stale"), "{name}: {summary:?}");
                assert_eq!(summary.rejected, counted("rejected"), "{name}: {summary:?}");
                assert_eq!(summary.accepted, 0, "{name}: {summary:?}");
            }
        }
    }
}
