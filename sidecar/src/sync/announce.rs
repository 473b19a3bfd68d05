//! What nodes tell each other about stores: gossip announcements and inventory lists share one
//! compact JSON entry, a signed version record. Every field is checked before anything in it is
//! used, and the signature before the engine sees it.
//!
//! Wire version 2 (gossip topic `dig/<net>/stores/2`, sync protocol `/dig/<net>/sync/2`): every
//! entry carries the owner (when it is not the origin) and the origin's signature; an
//! announcement no longer names a holder in its payload (the holder is gossipsub's signed
//! source).

use serde::{Deserialize, Serialize};

use super::engine::{Reject, VerifiedVersion};
use crate::store::hash::{self, Hash32};
use crate::store::record::{
    CanonicalIds, ContentId, KeyCache, RecordError, SignedVersion, VersionRecord, decode_signature,
    encode_signature,
};
use crate::store::{Version, is_valid_store_name};

/// Most entries accepted in one announcement.
pub const MAX_ANNOUNCEMENT_ENTRIES: usize = 4096;
/// Gossip messages are kept below this size (gossipsub's limit here is 256 KiB).
pub const MAX_ANNOUNCEMENT_BYTES: usize = 60 * 1024;

/// One signed version as it travels. No hash means a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "l")]
    pub lamport: u64,
    #[serde(rename = "o")]
    pub origin: String,
    /// The owner, when it is not the origin (a writer's version of someone else's store).
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(rename = "s", default)]
    pub size: u64,
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The version this one replaced on its origin (lamport, origin).
    #[serde(rename = "pl", default, skip_serializing_if = "Option::is_none")]
    pub previous_lamport: Option<u64>,
    #[serde(rename = "po", default, skip_serializing_if = "Option::is_none")]
    pub previous_origin: Option<String>,
    /// The origin's ed25519 signature over the record, base64.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A gossip message: its publisher (gossipsub's signed source) holds these versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    #[serde(rename = "e")]
    pub entries: Vec<WireEntry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnounceError {
    #[error("undecodable announcement: {0}")]
    Decode(String),
    #[error("announcement with {0} entries, more than {MAX_ANNOUNCEMENT_ENTRIES}")]
    TooMany(usize),
}

impl WireEntry {
    /// The wire form of a signed record.
    pub fn from_signed(signed: &SignedVersion) -> Self {
        let record = &signed.record;
        Self {
            name: record.name.clone(),
            lamport: record.version.lamport,
            origin: record.version.origin.clone(),
            owner: (record.owner != record.version.origin).then(|| record.owner.clone()),
            size: record.content.map_or(0, |c| c.size),
            hash: record.content.map(|c| hash::to_hex(&c.hash)),
            previous_lamport: record.replaces.as_ref().map(|v| v.lamport),
            previous_origin: record.replaces.as_ref().map(|v| v.origin.clone()),
            signature: Some(encode_signature(&signed.signature)),
        }
    }

    /// The signed record this entry carries (fields checked, signature not yet verified).
    pub fn decode(&self) -> Result<SignedVersion, Reject> {
        self.decode_with(&mut CanonicalIds::default())
    }

    /// [`Self::decode`], with the peer ids already found canonical in this batch.
    fn decode_with(&self, checked: &mut CanonicalIds) -> Result<SignedVersion, Reject> {
        if !is_valid_store_name(&self.name) {
            return Err(Reject::Malformed);
        }
        let content = match &self.hash {
            Some(text) => Some(ContentId {
                size: self.size,
                hash: parse_hash(text).ok_or(Reject::Malformed)?,
            }),
            None if self.size != 0 => return Err(Reject::Malformed),
            None => None,
        };
        let replaces = match (self.previous_lamport, &self.previous_origin) {
            (Some(lamport), Some(origin)) => Some(Version::new(lamport, origin.clone())),
            (None, None) => None,
            _ => return Err(Reject::Malformed),
        };
        let record = VersionRecord {
            name: self.name.clone(),
            version: Version::new(self.lamport, self.origin.clone()),
            owner: self.owner.clone().unwrap_or_else(|| self.origin.clone()),
            content,
            replaces,
        };
        record
            .validate_with(checked)
            .map_err(|_| Reject::Malformed)?;
        let signature = self.signature.as_deref().ok_or(Reject::Unsigned)?;
        let signature = decode_signature(signature).ok_or(Reject::BadSignature)?;
        Ok(SignedVersion { record, signature })
    }
}

fn parse_hash(text: &str) -> Option<Hash32> {
    (text.len() == 64).then(|| hash::from_hex(text)).flatten()
}

impl Announcement {
    /// Decodes a gossip message (entries are checked by [`check_entries`]).
    pub fn decode(data: &[u8]) -> Result<Vec<WireEntry>, AnnounceError> {
        if data.len() > crate::node::MAX_GOSSIP_MESSAGE_BYTES {
            return Err(AnnounceError::Decode(format!("{} bytes", data.len())));
        }
        let message: Announcement =
            serde_json::from_slice(data).map_err(|e| AnnounceError::Decode(e.to_string()))?;
        if message.entries.len() > MAX_ANNOUNCEMENT_ENTRIES {
            return Err(AnnounceError::TooMany(message.entries.len()));
        }
        Ok(message.entries)
    }

    /// Splits records into messages that each stay under the gossip size limit.
    pub fn encode_batches(records: &[SignedVersion]) -> Vec<Vec<u8>> {
        let mut messages = Vec::new();
        let mut batch: Vec<WireEntry> = Vec::new();
        let mut batch_bytes = 0;
        for record in records {
            let entry = WireEntry::from_signed(record);
            // Every entry is well below the limit: names are at most 128 bytes.
            let entry_bytes = serde_json::to_vec(&entry).map_or(1024, |b| b.len() + 1);
            if !batch.is_empty()
                && (batch_bytes + entry_bytes > MAX_ANNOUNCEMENT_BYTES - 64
                    || batch.len() >= MAX_ANNOUNCEMENT_ENTRIES)
            {
                messages.push(Self::encode(std::mem::take(&mut batch)));
                batch_bytes = 0;
            }
            batch_bytes += entry_bytes;
            batch.push(entry);
        }
        if !batch.is_empty() {
            messages.push(Self::encode(batch));
        }
        messages
    }

    fn encode(entries: Vec<WireEntry>) -> Vec<u8> {
        serde_json::to_vec(&Announcement { entries }).expect("announcements always serialize")
    }
}

/// Decodes an inventory body (a JSON list of entries; entries are checked by [`decode_entries`]).
pub fn decode_inventory(body: &[u8]) -> Result<Vec<WireEntry>, AnnounceError> {
    serde_json::from_slice(body).map_err(|e| AnnounceError::Decode(e.to_string()))
}

/// Entries sorted out: decoded records (signature not yet verified) and the count of each reason
/// the others were dropped for.
#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<SignedVersion>,
    pub rejected: Vec<(Reject, u32)>,
}

/// Decodes wire entries; malformed and unsigned ones are counted, not kept.
pub fn decode_entries(entries: &[WireEntry]) -> Decoded {
    let mut decoded = Decoded::default();
    let mut checked = CanonicalIds::default();
    for entry in entries {
        match entry.decode_with(&mut checked) {
            Ok(signed) => decoded.records.push(signed),
            Err(reason) => count(&mut decoded.rejected, reason),
        }
    }
    decoded
}

/// Verifies signatures; returns the verified records and adds the failures to `rejected`.
pub fn verify_records(
    records: Vec<SignedVersion>,
    keys: &mut KeyCache,
    rejected: &mut Vec<(Reject, u32)>,
) -> Vec<VerifiedVersion> {
    let (keyed, mut failed) = keys.checked_keys(records);
    let verified = VerifiedVersion::check_signatures(keyed, &mut failed);
    count_failures(rejected, &failed);
    verified
}

/// Adds records that failed verification to `rejected`, by reason.
pub fn count_failures(rejected: &mut Vec<(Reject, u32)>, failed: &[RecordError]) {
    for error in failed {
        match error {
            RecordError::BadSignature { .. } | RecordError::NoPublicKey { .. } => {
                count(rejected, Reject::BadSignature)
            }
            _ => count(rejected, Reject::Malformed),
        }
    }
}

fn count(rejected: &mut Vec<(Reject, u32)>, reason: Reject) {
    match rejected.iter_mut().find(|(r, _)| *r == reason) {
        Some((_, n)) => *n += 1,
        None => rejected.push((reason, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::tests::record;
    use libp2p::identity::Keypair;
    use proptest::prelude::*;

    fn signed(key: &Keypair, name: &str) -> SignedVersion {
        record(key, name, 3).sign(key).unwrap()
    }

    #[test]
    fn announcements_round_trip_in_batches_under_the_size_limit() {
        let key = Keypair::generate_ed25519();
        // About 170 signed entries fit in one message.
        let records: Vec<_> = (0..400)
            .map(|i| signed(&key, &format!("store-{i}")))
            .collect();
        let messages = Announcement::encode_batches(&records);
        assert!(messages.len() > 1);
        let mut decoded = Vec::new();
        for message in &messages {
            assert!(message.len() <= MAX_ANNOUNCEMENT_BYTES, "{}", message.len());
            let entries = Announcement::decode(message).unwrap();
            let mut sorted = decode_entries(&entries);
            assert!(sorted.rejected.is_empty());
            decoded.extend(verify_records(
                std::mem::take(&mut sorted.records),
                &mut KeyCache::default(),
                &mut sorted.rejected,
            ));
            assert!(sorted.rejected.is_empty());
        }
        assert_eq!(decoded.len(), 400);
        assert_eq!(decoded[7].signed(), &records[7]);
    }

    #[test]
    fn a_writers_version_carries_the_owner_and_a_tombstone_no_hash() {
        let writer = Keypair::generate_ed25519();
        let owner = Keypair::generate_ed25519()
            .public()
            .to_peer_id()
            .to_base58();
        let mut r = record(&writer, "s", 5);
        r.owner = owner.clone();
        r.content = None;
        r.replaces = Some(Version::new(4, owner.clone()));
        let signed = r.sign(&writer).unwrap();
        let entry = WireEntry::from_signed(&signed);
        assert_eq!(entry.owner.as_deref(), Some(owner.as_str()));
        assert_eq!(entry.hash, None);
        assert_eq!(entry.decode().unwrap(), signed);
    }

    #[test]
    fn one_forged_record_in_a_large_batch_is_the_only_one_refused() {
        let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate_ed25519()).collect();
        let mut records: Vec<SignedVersion> = (0..200)
            .map(|i| signed(&keys[i % 4], &format!("store-{i}")))
            .collect();
        records[137].record.content.as_mut().unwrap().size += 1;
        let mut rejected = Vec::new();
        let verified = verify_records(records.clone(), &mut KeyCache::default(), &mut rejected);
        assert_eq!(rejected, vec![(Reject::BadSignature, 1)]);
        assert_eq!(verified.len(), 199);
        assert!(verified.iter().all(|v| v.signed() != &records[137]));
    }

    #[test]
    fn forged_unsigned_and_malformed_entries_are_counted_by_reason() {
        let key = Keypair::generate_ed25519();
        let honest = signed(&key, "s");
        let mut forged = WireEntry::from_signed(&honest);
        forged.size += 1;
        let mut unsigned = WireEntry::from_signed(&honest);
        unsigned.signature = None;
        let mut bad_name = WireEntry::from_signed(&honest);
        bad_name.name = "../../etc/passwd".into();
        let mut bad_hash = WireEntry::from_signed(&honest);
        bad_hash.hash = Some("zz".repeat(32));
        let mut tombstone_with_size = WireEntry::from_signed(&honest);
        tombstone_with_size.hash = None;
        let mut half_previous = WireEntry::from_signed(&honest);
        half_previous.previous_lamport = Some(1);
        let mut short_signature = WireEntry::from_signed(&honest);
        short_signature.signature = Some("AAAA".into());
        let entries = vec![
            WireEntry::from_signed(&honest),
            forged,
            unsigned,
            bad_name,
            bad_hash,
            tombstone_with_size,
            half_previous,
            short_signature,
        ];
        let mut decoded = decode_entries(&entries);
        let verified = verify_records(
            std::mem::take(&mut decoded.records),
            &mut KeyCache::default(),
            &mut decoded.rejected,
        );
        assert_eq!(verified.len(), 1);
        decoded.rejected.sort();
        assert_eq!(
            decoded.rejected,
            vec![
                (Reject::Malformed, 4),
                (Reject::Unsigned, 1),
                (Reject::BadSignature, 2)
            ]
        );
    }

    #[test]
    fn oversized_and_garbage_messages_are_refused() {
        assert!(Announcement::decode(b"garbage").is_err());
        assert!(Announcement::decode(b"{\"e\":[]}").unwrap().is_empty());
        let too_many = format!(
            "{{\"e\":[{}]}}",
            vec!["{\"n\":\"a\",\"l\":1,\"o\":\"x\"}"; MAX_ANNOUNCEMENT_ENTRIES + 1].join(",")
        );
        assert!(matches!(
            Announcement::decode(too_many.as_bytes()),
            Err(AnnounceError::TooMany(_)) | Err(AnnounceError::Decode(_))
        ));
    }

    fn arbitrary_entry() -> impl Strategy<Value = WireEntry> {
        (
            "[ -~]{0,140}",
            any::<u64>(),
            "[1-9A-HJ-NP-Za-km-z]{0,60}",
            proptest::option::of("[1-9A-HJ-NP-Za-km-z]{0,60}"),
            any::<u64>(),
            proptest::option::of("[0-9a-fA-F]{0,70}"),
            proptest::option::of(any::<u64>()),
            proptest::option::of("[1-9A-HJ-NP-Za-km-z]{0,60}"),
            proptest::option::of("[A-Za-z0-9+/=]{0,100}"),
        )
            .prop_map(
                |(name, lamport, origin, owner, size, hash, pl, po, signature)| WireEntry {
                    name,
                    lamport,
                    origin,
                    owner,
                    size,
                    hash,
                    previous_lamport: pl,
                    previous_origin: po,
                    signature,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes: entries or an error, never a panic.
        #[test]
        fn decoding_arbitrary_gossip_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            if let Ok(entries) = Announcement::decode(&bytes) {
                let _ = decode_entries(&entries);
            }
        }

        /// Any inventory body: entries or an error, never a panic; what decodes is checked.
        #[test]
        fn decoding_arbitrary_inventory_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            if let Ok(entries) = decode_inventory(&bytes) {
                for record in decode_entries(&entries).records {
                    prop_assert!(is_valid_store_name(&record.record.name));
                }
            }
        }

        /// An inventory of arbitrary entries round-trips through its JSON form.
        #[test]
        fn inventories_round_trip(entries in proptest::collection::vec(arbitrary_entry(), 0..16)) {
            let body = serde_json::to_vec(&entries).unwrap();
            prop_assert_eq!(decode_inventory(&body).unwrap(), entries);
        }

        /// Arbitrary field values: a checked record or a reason, and never a verified forgery.
        #[test]
        fn arbitrary_entries_never_verify(entry in arbitrary_entry()) {
            let mut decoded = decode_entries(std::slice::from_ref(&entry));
            if let Some(record) = decoded.records.first() {
                prop_assert!(is_valid_store_name(&record.record.name));
            }
            let verified = verify_records(
                std::mem::take(&mut decoded.records),
                &mut KeyCache::default(),
                &mut decoded.rejected,
            );
            prop_assert!(verified.is_empty());
            let counted: u32 = decoded.rejected.iter().map(|(_, n)| n).sum();
            prop_assert_eq!(counted, 1);
        }

    }

    proptest! {
        // Each case signs and verifies: fewer of them keep the (unoptimised) test build quick.
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A signed entry survives the wire; any change to a signed field is caught.
        #[test]
        fn signed_entries_round_trip_and_tampering_is_caught(lamport in any::<u64>(), size in any::<u64>(), flip in 0usize..4) {
            let key = Keypair::generate_ed25519();
            let mut r = record(&key, "s", lamport);
            r.content = Some(ContentId { size, hash: [7; 32] });
            let signed = r.sign(&key).unwrap();
            let bytes = Announcement::encode_batches(std::slice::from_ref(&signed)).remove(0);
            let entries = Announcement::decode(&bytes).unwrap();
            prop_assert_eq!(entries[0].decode().unwrap(), signed.clone());
            let mut tampered = entries[0].clone();
            match flip {
                0 => tampered.lamport = tampered.lamport.wrapping_add(1),
                1 => tampered.size = tampered.size.wrapping_add(1),
                2 => tampered.name = "t".into(),
                _ => tampered.hash = Some("8".repeat(64)),
            }
            let mut decoded = decode_entries(&[tampered]);
            let verified = verify_records(std::mem::take(&mut decoded.records), &mut KeyCache::default(), &mut decoded.rejected);
            prop_assert!(verified.is_empty());
        }
    }
}
