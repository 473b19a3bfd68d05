//! The signed peer record: its wire types, the canonical bytes a signature covers, signing,
//! verification and the bounds every field must respect.
//!
//! A signature covers `DOMAIN || serde_json::to_vec(&record)`. The record is a fixed struct, so the
//! server can keep the parsed fields only (not the request body) and re-encode the same bytes later,
//! which is what lets records be relayed between bootstrap servers and still verify.

use std::str::FromStr;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use libp2p_identity::{Keypair, PeerId, PublicKey};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::network_id::check_network_id;

/// Pattern of a store name (a file `<name>.dig` in the data folder).
pub const STORE_NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";

/// Domain-separation prefix of a peer record signature.
pub const PEER_RECORD_DOMAIN: &[u8] = b"dig-bootstrap/peer-record/v1\n";
/// Domain-separation prefix of an unregister request signature.
pub const UNREGISTER_DOMAIN: &[u8] = b"dig-bootstrap/unregister/v1\n";

/// Longest accepted multiaddr text.
pub const MAX_ADDRESS_LEN: usize = 256;
/// Longest accepted agent version.
pub const MAX_AGENT_VERSION_LEN: usize = 128;
/// Longest accepted base64 public key or signature (an ed25519 key is 48 chars, a signature 88).
pub const MAX_ENCODED_KEY_LEN: usize = 128;

static STORE_NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(STORE_NAME_PATTERN).expect("STORE_NAME_PATTERN compiles"));

/// True when `name` is a valid store name ([`STORE_NAME_PATTERN`]).
pub fn is_valid_store_name(name: &str) -> bool {
    STORE_NAME_RE.is_match(name)
}

/// One store a peer holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreEntry {
    /// Store name ([`STORE_NAME_PATTERN`]).
    pub name: String,
    /// Size of `<name>.dig` in bytes.
    pub size: u64,
    /// BLAKE3 hash of the file, 64 lowercase hex digits.
    pub hash: String,
    /// Lamport clock of this version.
    pub lamport: u64,
}

/// What a node says about itself. Signed as a whole by the node's identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerRecord {
    /// libp2p PeerId, base58.
    pub peer_id: String,
    /// Network id ([`crate::network_id`]).
    pub network_id: String,
    /// Dialable multiaddrs WITHOUT the `/p2p/<id>` suffix.
    pub addresses: Vec<String>,
    /// Stores held.
    pub stores: Vec<StoreEntry>,
    /// Software name and version, e.g. `dig-sidecar/0.1.0`.
    pub agent_version: String,
    /// Unix time in milliseconds when the record was signed.
    pub timestamp_ms: u64,
}

/// A peer record with the key and signature that prove who wrote it. The body of `POST /register`,
/// and what `GET /records` relays between servers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedPeerRecord {
    pub record: PeerRecord,
    /// Protobuf-encoded libp2p public key, base64 (standard alphabet, padded).
    pub public_key: String,
    /// Signature over [`PEER_RECORD_DOMAIN`] || canonical record bytes, base64.
    pub signature: String,
}

/// A request to remove a peer's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnregisterRequest {
    pub peer_id: String,
    pub network_id: String,
    /// Unix ms; must be fresh and newer than the record it removes.
    pub timestamp_ms: u64,
}

/// An unregister request signed by the peer's identity key. The body of `POST /unregister`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedUnregister {
    pub request: UnregisterRequest,
    pub public_key: String,
    /// Signature over [`UNREGISTER_DOMAIN`] || canonical request bytes, base64.
    pub signature: String,
}

/// Bounds on a record's fields. The server takes them from its flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLimits {
    pub max_stores: usize,
    pub max_addresses: usize,
}

impl Default for RecordLimits {
    fn default() -> Self {
        Self {
            max_stores: 1024,
            max_addresses: 16,
        }
    }
}

/// Why a record or request was refused. Each variant names the offending field.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RecordError {
    #[error("{field}: {detail}")]
    InvalidField { field: String, detail: String },
    #[error("publicKey: {detail}")]
    PublicKey { detail: String },
    #[error("publicKey: the key belongs to peer {key_peer_id}, not to {field} {peer_id}")]
    KeyMismatch {
        field: &'static str,
        peer_id: String,
        key_peer_id: String,
    },
    #[error("signature: {detail}")]
    Signature { detail: String },
    #[error("signing the record for peer {peer_id} failed: {detail}")]
    Signing { peer_id: String, detail: String },
}

impl RecordError {
    fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// The JSON path of the field at fault, e.g. `record.stores[2].name`.
    pub fn field(&self) -> &str {
        match self {
            Self::InvalidField { field, .. } => field,
            Self::PublicKey { .. } | Self::KeyMismatch { .. } => "publicKey",
            Self::Signature { .. } => "signature",
            Self::Signing { .. } => "record",
        }
    }

    /// A short machine-readable code, used as the `error` member of API errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidField { .. } => "invalid_field",
            Self::PublicKey { .. } => "invalid_public_key",
            Self::KeyMismatch { .. } => "key_mismatch",
            Self::Signature { .. } => "invalid_signature",
            Self::Signing { .. } => "signing_failed",
        }
    }
}

fn canonical_bytes<T: Serialize>(domain: &[u8], value: &T) -> Vec<u8> {
    let mut bytes = domain.to_vec();
    // Serialising a struct of strings and integers to a Vec cannot fail.
    serde_json::to_writer(&mut bytes, value).expect("record types always serialise");
    bytes
}

fn sign_bytes(keypair: &Keypair, peer_id: &str, message: &[u8]) -> Result<String, RecordError> {
    let signature = keypair.sign(message).map_err(|e| RecordError::Signing {
        peer_id: peer_id.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(BASE64.encode(signature))
}

/// Decodes a base64 protobuf public key. Only ed25519 identities are accepted.
pub fn decode_public_key(encoded: &str) -> Result<PublicKey, RecordError> {
    if encoded.len() > MAX_ENCODED_KEY_LEN {
        return Err(RecordError::PublicKey {
            detail: format!(
                "{} characters, longer than the limit of {MAX_ENCODED_KEY_LEN}",
                encoded.len()
            ),
        });
    }
    let bytes = BASE64.decode(encoded).map_err(|e| RecordError::PublicKey {
        detail: format!("not base64: {e}"),
    })?;
    let key = PublicKey::try_decode_protobuf(&bytes).map_err(|e| RecordError::PublicKey {
        detail: format!("not a protobuf-encoded ed25519 libp2p public key: {e}"),
    })?;
    Ok(key)
}

fn decode_signature(encoded: &str) -> Result<Vec<u8>, RecordError> {
    if encoded.len() > MAX_ENCODED_KEY_LEN {
        return Err(RecordError::Signature {
            detail: format!(
                "{} characters, longer than the limit of {MAX_ENCODED_KEY_LEN}",
                encoded.len()
            ),
        });
    }
    let bytes = BASE64.decode(encoded).map_err(|e| RecordError::Signature {
        detail: format!("not base64: {e}"),
    })?;
    if bytes.len() != 64 {
        return Err(RecordError::Signature {
            detail: format!("{} bytes; an ed25519 signature has 64", bytes.len()),
        });
    }
    Ok(bytes)
}

/// Checks `key` belongs to `peer_id` and signs `message` with `signature`.
fn verify_signed(
    field: &'static str,
    peer_id: &str,
    public_key: &str,
    signature: &str,
    message: &[u8],
) -> Result<PublicKey, RecordError> {
    let key = decode_public_key(public_key)?;
    let key_peer_id = key.to_peer_id().to_base58();
    if key_peer_id != peer_id {
        return Err(RecordError::KeyMismatch {
            field,
            peer_id: peer_id.to_owned(),
            key_peer_id,
        });
    }
    let signature = decode_signature(signature)?;
    if !key.verify(message, &signature) {
        return Err(RecordError::Signature {
            detail: "does not verify over the record with the given public key \
                     (tampered record or signature)"
                .to_owned(),
        });
    }
    Ok(key)
}

/// Checks `peer_id` is a canonical base58 PeerId and returns it parsed.
pub fn parse_peer_id(field: &str, peer_id: &str) -> Result<PeerId, RecordError> {
    if peer_id.is_empty() || peer_id.len() > 128 {
        return Err(RecordError::invalid(
            field,
            format!("{} characters; a PeerId has 1 to 128", peer_id.len()),
        ));
    }
    let parsed = PeerId::from_str(peer_id)
        .map_err(|e| RecordError::invalid(field, format!("{peer_id:?} is not a PeerId: {e}")))?;
    if parsed.to_base58() != peer_id {
        return Err(RecordError::invalid(
            field,
            format!("{peer_id:?} is not in canonical base58 form"),
        ));
    }
    Ok(parsed)
}

fn validate_network_id(field: &str, network_id: &str) -> Result<(), RecordError> {
    check_network_id(network_id).map_err(|invalid| RecordError::invalid(field, invalid.to_string()))
}

fn validate_timestamp(field: &str, timestamp_ms: u64) -> Result<(), RecordError> {
    // Year 2100 in unix ms: anything beyond is a unit mistake (seconds vs ms vs ns).
    const MAX_SANE_MS: u64 = 4_102_444_800_000;
    if timestamp_ms == 0 || timestamp_ms > MAX_SANE_MS {
        return Err(RecordError::invalid(
            field,
            format!("{timestamp_ms} is not a unix time in milliseconds"),
        ));
    }
    Ok(())
}

/// Checks a BLAKE3 hash text and returns its bytes.
pub fn parse_hash(field: &str, hash: &str) -> Result<[u8; 32], RecordError> {
    let valid = hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !valid {
        return Err(RecordError::invalid(
            field,
            "must be a BLAKE3 hash: 64 lowercase hex digits",
        ));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hash, &mut bytes)
        .map_err(|e| RecordError::invalid(field, format!("not hex: {e}")))?;
    Ok(bytes)
}

/// Checks one multiaddr text: length, syntax, and no `/p2p` component.
pub fn validate_address(field: &str, address: &str) -> Result<(), RecordError> {
    if address.len() > MAX_ADDRESS_LEN {
        return Err(RecordError::invalid(
            field,
            format!(
                "{} characters, longer than the limit of {MAX_ADDRESS_LEN}",
                address.len()
            ),
        ));
    }
    if address.chars().any(char::is_control) {
        return Err(RecordError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    let parsed = multiaddr::Multiaddr::from_str(address)
        .map_err(|e| RecordError::invalid(field, format!("{address:?} is not a multiaddr: {e}")))?;
    if parsed.is_empty() {
        return Err(RecordError::invalid(field, "empty multiaddr"));
    }
    if parsed
        .iter()
        .any(|p| matches!(p, multiaddr::Protocol::P2p(_)))
    {
        return Err(RecordError::invalid(
            field,
            format!(
                "{address:?} must not carry a /p2p component; the peer id is added when dialing"
            ),
        ));
    }
    if parsed.to_string() != address {
        return Err(RecordError::invalid(
            field,
            format!("{address:?} is not in canonical form (expected {parsed})"),
        ));
    }
    Ok(())
}

impl PeerRecord {
    /// The bytes a signature covers: [`PEER_RECORD_DOMAIN`] followed by the record's JSON.
    pub fn signing_bytes(&self) -> Vec<u8> {
        canonical_bytes(PEER_RECORD_DOMAIN, self)
    }

    /// Signs the record with the node's identity key.
    pub fn sign(&self, keypair: &Keypair) -> Result<SignedPeerRecord, RecordError> {
        let signature = sign_bytes(keypair, &self.peer_id, &self.signing_bytes())?;
        Ok(SignedPeerRecord {
            record: self.clone(),
            public_key: BASE64.encode(keypair.public().encode_protobuf()),
            signature,
        })
    }

    /// Checks every field's bounds and syntax (not the timestamp's freshness: that needs the
    /// server's clock and stored state).
    pub fn validate(&self, limits: &RecordLimits) -> Result<(), RecordError> {
        parse_peer_id("record.peerId", &self.peer_id)?;
        validate_network_id("record.networkId", &self.network_id)?;
        if self.addresses.len() > limits.max_addresses {
            return Err(RecordError::invalid(
                "record.addresses",
                format!(
                    "{} addresses, more than the limit of {}",
                    self.addresses.len(),
                    limits.max_addresses
                ),
            ));
        }
        for (i, address) in self.addresses.iter().enumerate() {
            let field = format!("record.addresses[{i}]");
            validate_address(&field, address)?;
            if self.addresses[..i].contains(address) {
                return Err(RecordError::invalid(
                    field,
                    format!("{address:?} is listed twice"),
                ));
            }
        }
        if self.stores.len() > limits.max_stores {
            return Err(RecordError::invalid(
                "record.stores",
                format!(
                    "{} stores, more than the limit of {}",
                    self.stores.len(),
                    limits.max_stores
                ),
            ));
        }
        let mut names: Vec<&str> = Vec::with_capacity(self.stores.len());
        for (i, store) in self.stores.iter().enumerate() {
            if !is_valid_store_name(&store.name) {
                let shown: String = store.name.chars().take(140).collect();
                return Err(RecordError::invalid(
                    format!("record.stores[{i}].name"),
                    format!("{shown:?} does not match {STORE_NAME_PATTERN}"),
                ));
            }
            parse_hash(&format!("record.stores[{i}].hash"), &store.hash)?;
            names.push(&store.name);
        }
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
            let index = self
                .stores
                .iter()
                .rposition(|s| s.name == pair[0])
                .unwrap_or(0);
            return Err(RecordError::invalid(
                format!("record.stores[{index}].name"),
                format!("store {:?} is listed twice", pair[0]),
            ));
        }
        if self.agent_version.len() > MAX_AGENT_VERSION_LEN {
            return Err(RecordError::invalid(
                "record.agentVersion",
                format!(
                    "{} bytes, longer than the limit of {MAX_AGENT_VERSION_LEN}",
                    self.agent_version.len()
                ),
            ));
        }
        if self.agent_version.chars().any(char::is_control) {
            return Err(RecordError::invalid(
                "record.agentVersion",
                "must not contain control characters",
            ));
        }
        validate_timestamp("record.timestampMs", self.timestamp_ms)
    }
}

impl SignedPeerRecord {
    /// Checks that the key matches `record.peerId` and that the signature covers
    /// [`PEER_RECORD_DOMAIN`] || canonical bytes of `record`. Returns the decoded key.
    pub fn verify(&self) -> Result<PublicKey, RecordError> {
        verify_signed(
            "record.peerId",
            &self.record.peer_id,
            &self.public_key,
            &self.signature,
            &self.record.signing_bytes(),
        )
    }

    /// Bounds first (cheap), then the signature.
    pub fn validate_and_verify(&self, limits: &RecordLimits) -> Result<PublicKey, RecordError> {
        self.record.validate(limits)?;
        self.verify()
    }
}

impl UnregisterRequest {
    /// The bytes a signature covers: [`UNREGISTER_DOMAIN`] followed by the request's JSON.
    pub fn signing_bytes(&self) -> Vec<u8> {
        canonical_bytes(UNREGISTER_DOMAIN, self)
    }

    /// Builds and signs a removal request for the keypair's own peer id, stamped now.
    pub fn new_signed(
        keypair: &Keypair,
        network_id: &str,
    ) -> Result<SignedUnregister, RecordError> {
        Self {
            peer_id: keypair.public().to_peer_id().to_base58(),
            network_id: network_id.to_owned(),
            timestamp_ms: now_ms(),
        }
        .sign(keypair)
    }

    pub fn sign(&self, keypair: &Keypair) -> Result<SignedUnregister, RecordError> {
        let signature = sign_bytes(keypair, &self.peer_id, &self.signing_bytes())?;
        Ok(SignedUnregister {
            request: self.clone(),
            public_key: BASE64.encode(keypair.public().encode_protobuf()),
            signature,
        })
    }

    pub fn validate(&self) -> Result<(), RecordError> {
        parse_peer_id("request.peerId", &self.peer_id)?;
        validate_network_id("request.networkId", &self.network_id)?;
        validate_timestamp("request.timestampMs", self.timestamp_ms)
    }
}

impl SignedUnregister {
    /// Checks the key matches `request.peerId` and the signature. Returns the decoded key.
    pub fn verify(&self) -> Result<PublicKey, RecordError> {
        verify_signed(
            "request.peerId",
            &self.request.peer_id,
            &self.public_key,
            &self.signature,
            &self.request.signing_bytes(),
        )
    }

    pub fn validate_and_verify(&self) -> Result<PublicKey, RecordError> {
        self.request.validate()?;
        self.verify()
    }
}

/// Encodes bytes with the base64 alphabet used for keys and signatures.
pub fn encode_base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Decodes a signature text to its 64 bytes.
pub fn decode_signature_bytes(encoded: &str) -> Result<[u8; 64], RecordError> {
    let bytes = decode_signature(encoded)?;
    let mut out = [0u8; 64];
    out.copy_from_slice(&bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_record(keypair: &Keypair) -> PeerRecord {
        PeerRecord {
            peer_id: keypair.public().to_peer_id().to_base58(),
            network_id: "testnet".into(),
            addresses: vec![
                "/ip4/127.0.0.1/tcp/4001".into(),
                "/ip4/127.0.0.1/udp/4001/quic-v1".into(),
            ],
            stores: vec![StoreEntry {
                name: "alpha".into(),
                size: 10,
                hash: "ab".repeat(32),
                lamport: 3,
            }],
            agent_version: "dig-sidecar/0.1.0".into(),
            timestamp_ms: now_ms(),
        }
    }

    #[test]
    fn signed_record_verifies_and_round_trips_through_json() {
        let keypair = Keypair::generate_ed25519();
        let signed = sample_record(&keypair).sign(&keypair).unwrap();
        signed
            .validate_and_verify(&RecordLimits::default())
            .unwrap();
        let json = serde_json::to_string(&signed).unwrap();
        assert!(json.contains("\"peerId\"") && json.contains("\"publicKey\""));
        let back: SignedPeerRecord = serde_json::from_str(&json).unwrap();
        back.verify().unwrap();
    }

    #[test]
    fn tampered_field_fails_verification() {
        let keypair = Keypair::generate_ed25519();
        let mut signed = sample_record(&keypair).sign(&keypair).unwrap();
        signed.record.stores[0].lamport += 1;
        let err = signed.verify().unwrap_err();
        assert_eq!(err.field(), "signature");
    }

    #[test]
    fn key_of_another_peer_is_refused() {
        let keypair = Keypair::generate_ed25519();
        let other = Keypair::generate_ed25519();
        let mut record = sample_record(&keypair);
        record.peer_id = other.public().to_peer_id().to_base58();
        let signed = record.sign(&keypair).unwrap();
        let err = signed.verify().unwrap_err();
        assert!(matches!(err, RecordError::KeyMismatch { .. }), "{err}");
        assert_eq!(err.field(), "publicKey");
    }

    #[test]
    fn signature_with_other_domain_does_not_verify() {
        let keypair = Keypair::generate_ed25519();
        let record = sample_record(&keypair);
        let mut signed = record.sign(&keypair).unwrap();
        let raw = serde_json::to_vec(&record).unwrap();
        signed.signature = BASE64.encode(keypair.sign(&raw).unwrap());
        assert_eq!(signed.verify().unwrap_err().field(), "signature");
    }

    #[test]
    fn unregister_verifies_and_rejects_tampering() {
        let keypair = Keypair::generate_ed25519();
        let mut signed = UnregisterRequest::new_signed(&keypair, "testnet").unwrap();
        signed.validate_and_verify().unwrap();
        signed.request.network_id = "other".into();
        assert_eq!(signed.verify().unwrap_err().field(), "signature");
    }

    fn field_of(record: &PeerRecord, limits: &RecordLimits) -> String {
        record.validate(limits).unwrap_err().field().to_owned()
    }

    #[test]
    fn validation_names_each_bad_field() {
        let keypair = Keypair::generate_ed25519();
        let base = sample_record(&keypair);
        let limits = RecordLimits {
            max_stores: 2,
            max_addresses: 2,
        };
        base.validate(&limits).unwrap();

        let mut r = base.clone();
        r.peer_id = "not-a-peer".into();
        assert_eq!(field_of(&r, &limits), "record.peerId");

        let mut r = base.clone();
        r.network_id = "a/b".into();
        assert_eq!(field_of(&r, &limits), "record.networkId");

        let mut r = base.clone();
        r.addresses.push("/ip4/10.0.0.1/tcp/1".into());
        assert_eq!(field_of(&r, &limits), "record.addresses");

        let mut r = base.clone();
        r.addresses[1] = "not a multiaddr".into();
        assert_eq!(field_of(&r, &limits), "record.addresses[1]");

        let mut r = base.clone();
        r.addresses[0] = format!("/ip4/1.2.3.4/tcp/1/p2p/{}", base.peer_id);
        assert_eq!(field_of(&r, &limits), "record.addresses[0]");

        let mut r = base.clone();
        r.addresses[1] = r.addresses[0].clone();
        assert_eq!(field_of(&r, &limits), "record.addresses[1]");

        let mut r = base.clone();
        r.addresses[0] = format!("/dns4/{}/tcp/1", "a".repeat(300));
        assert_eq!(field_of(&r, &limits), "record.addresses[0]");

        for bad in ["../x", "", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            let mut r = base.clone();
            r.stores[0].name = bad.into();
            assert_eq!(field_of(&r, &limits), "record.stores[0].name", "{bad:?}");
        }

        let mut r = base.clone();
        r.stores.push(r.stores[0].clone());
        assert_eq!(field_of(&r, &limits), "record.stores[1].name");

        let mut r = base.clone();
        r.stores = vec![r.stores[0].clone(); 3];
        assert_eq!(field_of(&r, &limits), "record.stores");

        for bad in ["AB".repeat(32), "ab".repeat(31), "zz".repeat(32)] {
            let mut r = base.clone();
            r.stores[0].hash = bad;
            assert_eq!(field_of(&r, &limits), "record.stores[0].hash");
        }

        let mut r = base.clone();
        r.agent_version = "v".repeat(MAX_AGENT_VERSION_LEN + 1);
        assert_eq!(field_of(&r, &limits), "record.agentVersion");

        let mut r = base.clone();
        r.agent_version = "bad\nversion".into();
        assert_eq!(field_of(&r, &limits), "record.agentVersion");

        let mut r = base.clone();
        r.timestamp_ms = 0;
        assert_eq!(field_of(&r, &limits), "record.timestampMs");
    }

    #[test]
    fn store_name_pattern_matches_design() {
        assert!(is_valid_store_name("alpha"));
        assert!(is_valid_store_name("A1.b_c-d"));
        assert!(is_valid_store_name(&"x".repeat(128)));
        assert!(!is_valid_store_name(&"x".repeat(129)));
        assert!(!is_valid_store_name("-x"));
        assert!(!is_valid_store_name("x\n"));
    }

    #[test]
    fn bad_key_and_signature_texts_are_named() {
        let keypair = Keypair::generate_ed25519();
        let mut signed = sample_record(&keypair).sign(&keypair).unwrap();
        let good_key = signed.public_key.clone();
        signed.public_key = "!!!".into();
        assert_eq!(signed.verify().unwrap_err().code(), "invalid_public_key");
        signed.public_key = BASE64.encode([1u8, 2, 3]);
        assert_eq!(signed.verify().unwrap_err().code(), "invalid_public_key");
        signed.public_key = good_key;
        signed.signature = BASE64.encode([0u8; 10]);
        assert_eq!(signed.verify().unwrap_err().code(), "invalid_signature");
    }
}
