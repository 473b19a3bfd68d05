//! Signed version records: every version and tombstone of a store is a record signed by the key of
//! the node that made it, so any node can check any version it is given without trusting the peer
//! that relayed it.
//!
//! A signature covers [`VERSION_RECORD_DOMAIN`] followed by the record's canonical bytes: every
//! field in a fixed order, strings with a length byte, integers big-endian, optional parts behind
//! a tag byte. The encoding is unambiguous (no two records share bytes), independent of any JSON
//! formatting, and cheap to rebuild from the fields kept in the index.

use std::collections::{HashMap, HashSet};
use std::fmt;

use ed25519_dalek::VerifyingKey;
use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};

use super::hash::Hash32;
use super::name::is_valid_store_name;
use super::version::Version;

/// Domain-separation prefix of a version record signature (the registry's records use their own
/// prefixes, so a signature of one kind can never pass for another).
pub const VERSION_RECORD_DOMAIN: &[u8] = b"dig-sidecar/store-version/v1\n";

/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Multihash code of an identity multihash: an ed25519 peer id carries its public key inline.
const IDENTITY_MULTIHASH: u64 = 0;

pub type Signature = [u8; SIGNATURE_LEN];

/// Size and BLAKE3 hash of a version's bytes (the hash commits to the chunk manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContentId {
    pub size: u64,
    pub hash: Hash32,
}

/// What a version says about a store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VersionRecord {
    pub name: String,
    /// `(lamport, origin)`: the origin is the node that made (and signed) this version.
    pub version: Version,
    /// The store's owner as the maker knew it (the origin itself for a new store or the owner's
    /// own update; the owner's key when a listed writer changes someone else's store).
    pub owner: String,
    /// `None` is a tombstone: the store was deleted at this version.
    pub content: Option<ContentId>,
    /// The version this one replaced on its origin, if it knew one.
    pub replaces: Option<Version>,
}

/// A record and the origin's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SignedVersion {
    pub record: VersionRecord,
    pub signature: Signature,
}

/// Why a record was not accepted as validly signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("invalid store name {0:?}")]
    Name(String),
    #[error("{field} {value:?} of store {name} is not a canonical base58 peer id")]
    PeerId {
        name: String,
        field: &'static str,
        value: String,
    },
    #[error(
        "origin {origin} of store {name} is not an ed25519 peer id carrying a usable public key, so its signature cannot be checked"
    )]
    NoPublicKey { name: String, origin: String },
    #[error("signature of version {version} of store {name} does not verify with its origin's key")]
    BadSignature { name: String, version: Version },
    #[error("signing version {version} of store {name} failed: {detail}")]
    Signing {
        name: String,
        version: Version,
        detail: String,
    },
}

impl VersionRecord {
    /// True for a tombstone (a deletion).
    pub fn is_tombstone(&self) -> bool {
        self.content.is_none()
    }

    /// True for the first version of a store (it replaced nothing).
    pub fn is_creation(&self) -> bool {
        self.replaces.is_none()
    }

    /// The bytes a signature covers: [`VERSION_RECORD_DOMAIN`] and the canonical encoding.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(VERSION_RECORD_DOMAIN.len() + 400);
        bytes.extend_from_slice(VERSION_RECORD_DOMAIN);
        push_text(&mut bytes, &self.name);
        bytes.extend_from_slice(&self.version.lamport.to_be_bytes());
        push_text(&mut bytes, &self.version.origin);
        push_text(&mut bytes, &self.owner);
        match &self.content {
            None => bytes.push(0),
            Some(content) => {
                bytes.push(1);
                bytes.extend_from_slice(&content.size.to_be_bytes());
                bytes.extend_from_slice(&content.hash);
            }
        }
        match &self.replaces {
            None => bytes.push(0),
            Some(previous) => {
                bytes.push(1);
                bytes.extend_from_slice(&previous.lamport.to_be_bytes());
                push_text(&mut bytes, &previous.origin);
            }
        }
        bytes
    }

    /// Checks the fields a peer controls: the name and every peer id. A valid record still has to
    /// carry a good signature ([`SignedVersion::verify`]) and be authorised.
    pub fn validate(&self) -> Result<(), RecordError> {
        self.validate_with(&mut CanonicalIds::default())
    }

    /// [`Self::validate`], skipping the peer ids `checked` already holds (the records of one
    /// message mostly share their origin and owner, and parsing an id is the costly part).
    pub fn validate_with(&self, checked: &mut CanonicalIds) -> Result<(), RecordError> {
        if !is_valid_store_name(&self.name) {
            return Err(RecordError::Name(self.name.clone()));
        }
        checked.check(self, "origin", &self.version.origin)?;
        checked.check(self, "owner", &self.owner)?;
        if let Some(previous) = &self.replaces {
            checked.check(self, "replaced origin", &previous.origin)?;
        }
        Ok(())
    }

    fn check_peer_id(&self, field: &'static str, value: &str) -> Result<PeerId, RecordError> {
        parse_canonical_peer_id(value).ok_or_else(|| RecordError::PeerId {
            name: self.name.clone(),
            field,
            value: value.chars().take(80).collect(),
        })
    }

    /// Signs the record with `keypair`, which must be the origin's.
    pub fn sign(self, keypair: &Keypair) -> Result<SignedVersion, RecordError> {
        let signature = keypair
            .sign(&self.signing_bytes())
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                Signature::try_from(bytes.as_slice())
                    .map_err(|_| format!("a signature of {} bytes, not 64", bytes.len()))
            })
            .map_err(|detail| RecordError::Signing {
                name: self.name.clone(),
                version: self.version.clone(),
                detail,
            })?;
        Ok(SignedVersion {
            record: self,
            signature,
        })
    }
}

impl SignedVersion {
    /// Checks the fields and that the signature was made by the origin's key.
    pub fn verify(&self, keys: &mut KeyCache) -> Result<(), RecordError> {
        let key = keys.checked_key(self)?;
        if self.signature_holds(&key) {
            Ok(())
        } else {
            Err(self.bad_signature())
        }
    }

    /// True when the signature was made over this record by `key` (the origin's, from
    /// [`KeyCache::checked_key`]).
    pub fn signature_holds(&self, key: &VerifyingKey) -> bool {
        use ed25519_dalek::Verifier as _;
        key.verify(
            &self.record.signing_bytes(),
            &ed25519_dalek::Signature::from_bytes(&self.signature),
        )
        .is_ok()
    }

    pub fn bad_signature(&self) -> RecordError {
        RecordError::BadSignature {
            name: self.record.name.clone(),
            version: self.record.version.clone(),
        }
    }
}

/// True when every record's signature was made by its key, checked in one batch (about half the
/// work of checking them one by one). `false` says that at least one fails, not which one.
///
/// The batch equation accepts every signature the single check accepts; it can differ from it
/// only on signatures built with small-order components, which only the holder of the origin's
/// key can make (weak keys are refused by [`KeyCache`]) and which therefore affect only that
/// origin's own stores.
pub fn signatures_hold(records: &[(SignedVersion, VerifyingKey)]) -> bool {
    let messages: Vec<Vec<u8>> = records
        .iter()
        .map(|(s, _)| s.record.signing_bytes())
        .collect();
    let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<ed25519_dalek::Signature> = records
        .iter()
        .map(|(s, _)| ed25519_dalek::Signature::from_bytes(&s.signature))
        .collect();
    let keys: Vec<VerifyingKey> = records.iter().map(|(_, key)| *key).collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

impl fmt::Display for VersionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.content {
            Some(_) => write!(f, "{} version {}", self.name, self.version),
            None => write!(f, "{} tombstone {}", self.name, self.version),
        }
    }
}

fn push_text(bytes: &mut Vec<u8>, text: &str) {
    // Names are at most 128 bytes and base58 peer ids about 52: a length byte is enough, and a
    // longer text (which validation refuses) is cut rather than made ambiguous.
    let text = &text.as_bytes()[..text.len().min(255)];
    bytes.push(text.len() as u8);
    bytes.extend_from_slice(text);
}

/// The 64 signature bytes of their base64 text; `None` for anything else.
pub fn decode_signature(text: &str) -> Option<Signature> {
    use base64::Engine as _;
    if text.len() > 100 {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Signature::try_from(bytes.as_slice()).ok()
}

/// The base64 text of a signature (wire and index form).
pub fn encode_signature(signature: &Signature) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(signature)
}

/// A peer id in its one canonical text form (so a signature over the text cannot be replayed
/// under another spelling of the same id).
pub fn parse_canonical_peer_id(text: &str) -> Option<PeerId> {
    if text.len() > 128 {
        return None;
    }
    let peer: PeerId = text.parse().ok()?;
    (peer.to_base58() == text).then_some(peer)
}

/// Peer id texts found canonical while checking one batch of records; bounded, since a batch may
/// name many origins.
#[derive(Debug, Default)]
pub struct CanonicalIds(HashSet<String>);

impl CanonicalIds {
    const LIMIT: usize = 64;

    fn check(
        &mut self,
        record: &VersionRecord,
        field: &'static str,
        value: &str,
    ) -> Result<(), RecordError> {
        if self.0.contains(value) {
            return Ok(());
        }
        record.check_peer_id(field, value)?;
        if self.0.len() < Self::LIMIT {
            self.0.insert(value.to_owned());
        }
        Ok(())
    }
}

/// The public key an ed25519 peer id carries inline.
pub fn public_key_of(peer: &PeerId) -> Option<PublicKey> {
    // Multihash bytes: the code and the digest length (varints, one byte each here), the digest.
    let bytes = peer.to_bytes();
    match bytes.as_slice() {
        [code, len, digest @ ..]
            if u64::from(*code) == IDENTITY_MULTIHASH && usize::from(*len) == digest.len() =>
        {
            PublicKey::try_decode_protobuf(digest).ok()
        }
        _ => None,
    }
}

/// Decoded origin keys and peer ids already found canonical, so a burst of records from one
/// origin decodes its key (a curve point decompression) and re-encodes its ids once. Bounded:
/// each map is cleared when full.
#[derive(Default)]
pub struct KeyCache {
    keys: HashMap<String, VerifyingKey>,
    canonical: HashSet<String>,
}

const KEY_CACHE_LIMIT: usize = 4096;

impl KeyCache {
    /// Splits records into those whose fields check out, each with its origin's key, and the
    /// errors of the others.
    pub fn checked_keys(
        &mut self,
        records: Vec<SignedVersion>,
    ) -> (Vec<(SignedVersion, VerifyingKey)>, Vec<RecordError>) {
        let mut keyed = Vec::with_capacity(records.len());
        let mut failed = Vec::new();
        for signed in records {
            match self.checked_key(&signed) {
                Ok(key) => keyed.push((signed, key)),
                Err(error) => failed.push(error),
            }
        }
        (keyed, failed)
    }

    /// Checks the fields a peer controls ([`VersionRecord::validate`]) and returns the origin's
    /// key, which a good signature must have been made with.
    pub fn checked_key(&mut self, signed: &SignedVersion) -> Result<VerifyingKey, RecordError> {
        let record = &signed.record;
        if !is_valid_store_name(&record.name) {
            return Err(RecordError::Name(record.name.clone()));
        }
        let key = self.key_of(&record.name, &record.version.origin)?;
        self.check_canonical(record, "owner", &record.owner)?;
        if let Some(previous) = &record.replaces {
            self.check_canonical(record, "replaced origin", &previous.origin)?;
        }
        Ok(key)
    }

    fn check_canonical(
        &mut self,
        record: &VersionRecord,
        field: &'static str,
        value: &str,
    ) -> Result<(), RecordError> {
        if self.keys.contains_key(value) || self.canonical.contains(value) {
            return Ok(());
        }
        record.check_peer_id(field, value)?;
        if self.canonical.len() >= KEY_CACHE_LIMIT {
            self.canonical.clear();
        }
        self.canonical.insert(value.to_owned());
        Ok(())
    }

    fn key_of(&mut self, name: &str, origin: &str) -> Result<VerifyingKey, RecordError> {
        if let Some(key) = self.keys.get(origin) {
            return Ok(*key);
        }
        let peer = parse_canonical_peer_id(origin).ok_or_else(|| RecordError::PeerId {
            name: name.to_owned(),
            field: "origin",
            value: origin.chars().take(80).collect(),
        })?;
        let key = public_key_of(&peer)
            .and_then(|key| key.try_into_ed25519().ok())
            .and_then(|key| VerifyingKey::from_bytes(&key.to_bytes()).ok())
            // A small-order key proves nothing: signatures "by" it can be made without a secret.
            .filter(|key| !key.is_weak())
            .ok_or_else(|| RecordError::NoPublicKey {
                name: name.to_owned(),
                origin: origin.to_owned(),
            })?;
        if self.keys.len() >= KEY_CACHE_LIMIT {
            self.keys.clear();
        }
        self.keys.insert(origin.to_owned(), key);
        Ok(key)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn record(keypair: &Keypair, name: &str, lamport: u64) -> VersionRecord {
        let origin = keypair.public().to_peer_id().to_base58();
        VersionRecord {
            name: name.to_owned(),
            version: Version::new(lamport, origin.clone()),
            owner: origin,
            content: Some(ContentId {
                size: 5,
                hash: *blake3::hash(b"hello").as_bytes(),
            }),
            replaces: None,
        }
    }

    #[test]
    fn a_signed_record_verifies_and_any_changed_field_does_not() {
        let key = Keypair::generate_ed25519();
        let signed = record(&key, "s", 7).sign(&key).unwrap();
        let mut keys = KeyCache::default();
        signed.verify(&mut keys).unwrap();

        let other = Keypair::generate_ed25519()
            .public()
            .to_peer_id()
            .to_base58();
        type Mutation = Box<dyn Fn(&mut VersionRecord)>;
        let mutations: Vec<Mutation> = vec![
            Box::new(|r| r.name = "t".into()),
            Box::new(|r| r.version.lamport += 1),
            Box::new(|r| r.content.as_mut().unwrap().size += 1),
            Box::new(|r| r.content.as_mut().unwrap().hash[0] ^= 1),
            Box::new(|r| r.content = None),
            Box::new(move |r| r.owner = other.clone()),
            Box::new(|r| r.replaces = Some(Version::new(1, r.owner.clone()))),
        ];
        for mutate in mutations {
            let mut tampered = signed.clone();
            mutate(&mut tampered.record);
            assert!(
                matches!(
                    tampered.verify(&mut keys),
                    Err(RecordError::BadSignature { .. })
                ),
                "{:?}",
                tampered.record
            );
        }
    }

    #[test]
    fn a_record_signed_by_another_key_than_its_origin_is_refused() {
        let owner = Keypair::generate_ed25519();
        let forger = Keypair::generate_ed25519();
        let forged = record(&owner, "s", 3).sign(&forger).unwrap();
        assert!(matches!(
            forged.verify(&mut KeyCache::default()),
            Err(RecordError::BadSignature { .. })
        ));
    }

    #[test]
    fn a_record_of_a_peer_id_without_an_inline_key_cannot_verify() {
        let key = Keypair::generate_ed25519();
        let mut unverifiable = record(&key, "s", 1);
        // A random identity multihash is a valid peer id but carries no decodable key.
        unverifiable.version.origin = PeerId::random().to_base58();
        let signed = unverifiable.sign(&key).unwrap();
        assert!(matches!(
            signed.verify(&mut KeyCache::default()),
            Err(RecordError::NoPublicKey { .. })
        ));
    }

    #[test]
    fn an_origin_with_a_small_order_key_cannot_sign() {
        // The identity point: any signature "by" it can be made without a secret key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = libp2p::identity::ed25519::PublicKey::try_from_bytes(&identity).unwrap();
        let origin = PeerId::from_public_key(&PublicKey::from(weak)).to_base58();
        let key = Keypair::generate_ed25519();
        let mut record = record(&key, "s", 1);
        record.version.origin = origin.clone();
        record.owner = origin;
        let signed = record.sign(&key).unwrap();
        assert!(matches!(
            signed.verify(&mut KeyCache::default()),
            Err(RecordError::NoPublicKey { .. })
        ));
    }

    #[test]
    fn a_batch_holds_only_when_every_signature_does() {
        let origins: Vec<Keypair> = (0..3).map(|_| Keypair::generate_ed25519()).collect();
        let records: Vec<SignedVersion> = (0..60)
            .map(|i| {
                let key = &origins[i % 3];
                record(key, &format!("s{i}"), i as u64 + 1)
                    .sign(key)
                    .unwrap()
            })
            .collect();
        let mut keys = KeyCache::default();
        let (mut keyed, failed) = keys.checked_keys(records);
        assert!(failed.is_empty());
        assert!(signatures_hold(&keyed));
        keyed[41].0.record.version.lamport += 1;
        assert!(!signatures_hold(&keyed));
        let bad: Vec<usize> = (0..keyed.len())
            .filter(|&i| !keyed[i].0.signature_holds(&keyed[i].1))
            .collect();
        assert_eq!(bad, vec![41]);
    }

    #[test]
    fn the_domain_prefix_is_part_of_what_is_signed() {
        let key = Keypair::generate_ed25519();
        let signed = record(&key, "s", 1).sign(&key).unwrap();
        let without_domain = &signed.record.signing_bytes()[VERSION_RECORD_DOMAIN.len()..];
        assert!(
            !key.public().verify(without_domain, &signed.signature),
            "a signature must not verify without the domain prefix"
        );
    }

    #[test]
    fn bad_names_and_peer_ids_are_named_in_the_error() {
        let key = Keypair::generate_ed25519();
        let mut bad = record(&key, "../etc", 1);
        assert_eq!(bad.validate(), Err(RecordError::Name("../etc".into())));
        bad.name = "ok".into();
        bad.owner = "not-a-peer".into();
        let error = bad.validate().unwrap_err().to_string();
        assert!(
            error.contains("owner") && error.contains("not-a-peer"),
            "{error}"
        );
    }

    fn arbitrary_record() -> impl Strategy<Value = VersionRecord> {
        (
            "[ -~]{0,20}",
            any::<u64>(),
            "[a-z]{0,6}",
            "[a-z]{0,6}",
            proptest::option::of((any::<u64>(), any::<[u8; 32]>())),
            proptest::option::of((any::<u64>(), "[a-z]{0,6}")),
        )
            .prop_map(
                |(name, lamport, origin, owner, content, replaces)| VersionRecord {
                    name,
                    version: Version::new(lamport, origin),
                    owner,
                    content: content.map(|(size, hash)| ContentId { size, hash }),
                    replaces: replaces.map(|(lamport, origin)| Version::new(lamport, origin)),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The canonical bytes are unambiguous: two different records never share them, so a
        /// signature covers exactly one record.
        #[test]
        fn different_records_have_different_signing_bytes(a in arbitrary_record(), b in arbitrary_record()) {
            prop_assert_eq!(a == b, a.signing_bytes() == b.signing_bytes());
        }

        /// Arbitrary signature text decodes to 64 bytes or to nothing, never panics.
        #[test]
        fn signature_texts_decode_or_fail_cleanly(text in "[ -~]{0,120}") {
            if let Some(signature) = decode_signature(&text) {
                prop_assert_eq!(decode_signature(&encode_signature(&signature)), Some(signature));
            }
        }
    }

    #[test]
    fn canonical_peer_ids_only() {
        let peer = Keypair::generate_ed25519().public().to_peer_id();
        assert_eq!(parse_canonical_peer_id(&peer.to_base58()), Some(peer));
        assert_eq!(parse_canonical_peer_id(&"1".repeat(200)), None);
        assert_eq!(parse_canonical_peer_id(""), None);
    }
}
