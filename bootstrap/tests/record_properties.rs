//! Properties of signed records and removals: any change to a signed field or to the signature
//! makes verification fail, and no input bytes make the decoder or the verifier panic.

mod support;

use dig_bootstrap::record::{
    PeerRecord, RecordLimits, SignedPeerRecord, SignedUnregister, StoreEntry,
};
use libp2p_identity::Keypair;
use proptest::prelude::*;

use support::signed_record as signed;

/// One change to a signed record.
#[derive(Clone, Debug)]
enum Mutation {
    NetworkId(String),
    AddAddress(u16),
    DropAddress(usize),
    StoreName(usize, String),
    StoreSize(usize, u64),
    StoreHash(usize, usize, u8),
    StoreLamport(usize, u64),
    DropStore(usize),
    AgentVersion(String),
    Timestamp(u64),
    PeerId,
    SignatureBit(usize, u8),
    PublicKeyOfOther,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        "[a-z]{1,10}".prop_map(Mutation::NetworkId),
        any::<u16>().prop_map(Mutation::AddAddress),
        (0usize..2).prop_map(Mutation::DropAddress),
        (0usize..2, "[a-z]{1,10}").prop_map(|(i, n)| Mutation::StoreName(i, n)),
        (0usize..2, any::<u64>()).prop_map(|(i, s)| Mutation::StoreSize(i, s)),
        (0usize..2, 0usize..64, 1u8..16).prop_map(|(i, p, d)| Mutation::StoreHash(i, p, d)),
        (0usize..2, any::<u64>()).prop_map(|(i, l)| Mutation::StoreLamport(i, l)),
        (0usize..2).prop_map(Mutation::DropStore),
        ".{0,40}".prop_map(Mutation::AgentVersion),
        any::<u64>().prop_map(Mutation::Timestamp),
        Just(Mutation::PeerId),
        (0usize..64, 1u8..=255).prop_map(|(i, x)| Mutation::SignatureBit(i, x)),
        Just(Mutation::PublicKeyOfOther),
    ]
}

/// Applies `mutation`; false when it happened to change nothing (e.g. same value).
fn apply(signed: &mut SignedPeerRecord, mutation: &Mutation) -> bool {
    let before = signed.clone();
    let record = &mut signed.record;
    // Earlier mutations may have dropped entries: index modulo what is left.
    let stores = record.stores.len();
    let addresses = record.addresses.len();
    let touches_store = matches!(
        mutation,
        Mutation::StoreName(..)
            | Mutation::StoreSize(..)
            | Mutation::StoreHash(..)
            | Mutation::StoreLamport(..)
            | Mutation::DropStore(..)
    );
    if (touches_store && stores == 0)
        || (matches!(mutation, Mutation::DropAddress(_)) && addresses == 0)
    {
        return false;
    }
    let at = |i: &usize| i % stores.max(1);
    match mutation {
        Mutation::NetworkId(n) => record.network_id = n.clone(),
        Mutation::AddAddress(port) => record.addresses.push(format!("/ip4/10.0.0.1/tcp/{port}")),
        Mutation::DropAddress(i) => {
            record.addresses.remove(i % addresses);
        }
        Mutation::StoreName(i, n) => record.stores[at(i)].name = n.clone(),
        Mutation::StoreSize(i, s) => record.stores[at(i)].size = *s,
        Mutation::StoreHash(i, position, delta) => {
            let mut bytes = record.stores[at(i)].hash.clone().into_bytes();
            let digit = (bytes[*position] as char).to_digit(16).unwrap();
            let changed = (digit + u32::from(*delta)) % 16;
            bytes[*position] = std::char::from_digit(changed, 16).unwrap() as u8;
            record.stores[at(i)].hash = String::from_utf8(bytes).unwrap();
        }
        Mutation::StoreLamport(i, l) => record.stores[at(i)].lamport = *l,
        Mutation::DropStore(i) => {
            record.stores.remove(at(i));
        }
        Mutation::AgentVersion(v) => record.agent_version = v.clone(),
        Mutation::Timestamp(t) => record.timestamp_ms = *t,
        Mutation::PeerId => {
            record.peer_id = Keypair::generate_ed25519()
                .public()
                .to_peer_id()
                .to_base58()
        }
        Mutation::SignatureBit(i, x) => {
            use base64::Engine as _;
            let engine = base64::engine::general_purpose::STANDARD;
            let mut bytes = engine.decode(&signed.signature).unwrap();
            bytes[*i] ^= x;
            signed.signature = engine.encode(bytes);
        }
        Mutation::PublicKeyOfOther => {
            let other = signed_by_other();
            signed.public_key = other.public_key;
        }
    }
    *signed != before
}

fn signed_by_other() -> SignedPeerRecord {
    let other = Keypair::generate_ed25519();
    let mut record = signed().record;
    record.peer_id = other.public().to_peer_id().to_base58();
    record.sign(&other).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_mutation_of_a_signed_record_fails_verification(
        mutations in proptest::collection::vec(mutation(), 1..4)
    ) {
        let mut record = signed();
        prop_assert!(record.verify().is_ok());
        let mut changed = false;
        for m in &mutations {
            changed |= apply(&mut record, m);
        }
        prop_assume!(changed);
        prop_assert!(record.verify().is_err(), "mutated record verified: {mutations:?}");
        prop_assert!(record.validate_and_verify(&RecordLimits::default()).is_err());
        // And through the wire encoding too.
        let json = serde_json::to_vec(&record).unwrap();
        let decoded: SignedPeerRecord = serde_json::from_slice(&json).unwrap();
        prop_assert!(decoded.verify().is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(record) = serde_json::from_slice::<SignedPeerRecord>(&bytes) {
            let _ = record.validate_and_verify(&RecordLimits::default());
        }
        if let Ok(removal) = serde_json::from_slice::<SignedUnregister>(&bytes) {
            let _ = removal.validate_and_verify();
        }
    }

    #[test]
    fn arbitrary_field_values_never_panic_validation_or_verification(
        peer_id in ".{0,60}",
        network_id in ".{0,70}",
        addresses in proptest::collection::vec(".{0,80}", 0..4),
        names in proptest::collection::vec(".{0,20}", 0..4),
        hash in "[0-9a-fA-Fx]{0,70}",
        public_key in "[A-Za-z0-9+/=]{0,130}",
        signature in "[A-Za-z0-9+/=]{0,130}",
        timestamp_ms in any::<u64>(),
    ) {
        let record = SignedPeerRecord {
            record: PeerRecord {
                peer_id,
                network_id,
                addresses,
                stores: names
                    .into_iter()
                    .map(|name| StoreEntry { name, size: 1, hash: hash.clone(), lamport: 1 })
                    .collect(),
                agent_version: "x".into(),
                timestamp_ms,
            },
            public_key,
            signature,
        };
        prop_assert!(record.validate_and_verify(&RecordLimits::default()).is_err());
    }

    #[test]
    fn mutated_removals_never_verify_unless_unchanged(mutation in support::json_mutation()) {
        let original = support::signed_removal();
        let json = mutation.apply(&serde_json::to_vec(&original).unwrap());
        if let Ok(decoded) = serde_json::from_slice::<SignedUnregister>(&json)
            && decoded != original
        {
            prop_assert!(decoded.validate_and_verify().is_err());
        }
    }

    #[test]
    fn structurally_mutated_records_never_verify_unless_unchanged(
        mutation in support::json_mutation(),
    ) {
        let original = signed();
        let json = mutation.apply(&serde_json::to_vec(&original).unwrap());
        if let Ok(decoded) = serde_json::from_slice::<SignedPeerRecord>(&json)
            && decoded != original
        {
            prop_assert!(decoded.validate_and_verify(&RecordLimits::default()).is_err());
        }
    }

    #[test]
    fn mutated_json_text_of_a_signed_record_never_verifies_unless_unchanged(
        position in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let original = signed();
        let mut json = serde_json::to_vec(&original).unwrap();
        let i = position.index(json.len());
        prop_assume!(json[i] != replacement);
        json[i] = replacement;
        if let Ok(decoded) = serde_json::from_slice::<SignedPeerRecord>(&json)
            && decoded != original
        {
            prop_assert!(decoded.verify().is_err());
        }
    }
}
