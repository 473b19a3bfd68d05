//! An inventory exchange as the sidecar runs it since range-based reconciliation: the asker's
//! real [`Reconciler`] against the answering node's real [`answer`], run to the end on the two
//! indexes as they are when the request arrives. Returns what the asker learns, the bytes each
//! way and the round trips, which the world turns into traffic and delay.

use dig_sidecar::store::StoreIndex;
use dig_sidecar::store::record::SignedVersion;
use dig_sidecar::sync::announce::decode_entries;
use dig_sidecar::sync::engine::Engine;
use dig_sidecar::sync::reconcile::{Reconciler, answer};

/// One reconciliation, counted.
pub struct Reconciled {
    /// The answering node's versions the asker was sent (signatures not yet checked).
    pub records: Vec<SignedVersion>,
    /// Bytes of the asker's requests (JSON ranges, with framing).
    pub asked_bytes: u64,
    /// Bytes of the answers (JSON, with framing).
    pub answered_bytes: u64,
    pub round_trips: u64,
}

/// Framing of one request or response (length prefix and header).
pub(crate) const FRAME_BYTES: u64 = 40;

pub fn reconcile(asker: &Engine, answerer: &StoreIndex) -> Reconciled {
    let known = |lower: &str, upper: Option<&str>| asker.known_fingerprint(lower, upper);
    let mut reconciler = Reconciler::new(&known);
    let mut outcome = Reconciled {
        records: Vec::new(),
        asked_bytes: 0,
        answered_bytes: 0,
        round_trips: 0,
    };
    // A well-behaved peer: the reconciler's own checks refuse nothing, and its request cap
    // ends the loop whatever happens.
    while let Ok(Some(asks)) = reconciler.next_asks() {
        let answers = answer(answerer, &asks);
        outcome.round_trips += 1;
        outcome.asked_bytes += FRAME_BYTES + json_len(&asks);
        outcome.answered_bytes += FRAME_BYTES + json_len(&answers);
        let Ok(entries) = reconciler.take(&known, asks, answers) else {
            break;
        };
        outcome.records.extend(decode_entries(&entries).records);
    }
    outcome
}

pub(crate) fn json_len<T: serde::Serialize>(value: &T) -> u64 {
    serde_json::to_vec(value).map_or(0, |bytes| bytes.len() as u64)
}
