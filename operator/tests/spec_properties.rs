//! Properties of the reconciler's pure steps on DigNetwork specs as anyone allowed to write one
//! may write them: whatever the mutation of a rich spec, it either fails to decode, or is refused
//! by validation with a reason, or builds children that encode. Never a panic (an overflow, an
//! index out of range) in the operator that every network of the cluster depends on.

#[path = "../../bootstrap/tests/support/json_mutation.rs"]
mod json_mutation;

use dig_operator::crd::DigNetwork;
use dig_operator::reconcile::build::build_network;
use dig_operator::reconcile::fixtures::{images, network};
use dig_operator::reconcile::validate::{NetworkFacts, PskSecret, validate_network};
use json_mutation::json_mutation;
use proptest::prelude::*;

const RICH_SPEC: &str = "\
networkId: prod
bootstrap:
  replicas: 2
nodes:
  replicas: 3
privateNetwork:
  pskSecretRef:
    name: dig-psk
    key: swarm.key
monitoring:
  serviceMonitor: true
  labels:
    release: prom
";

fn facts() -> NetworkFacts {
    NetworkFacts {
        psk: Some(PskSecret::Present {
            hash: "0123456789abcdef".into(),
        }),
        service_monitor_api: true,
        pod_monitor_api: true,
        dns_endpoint_api: true,
        ..NetworkFacts::default()
    }
}

fn rich_network_json() -> Vec<u8> {
    serde_json::to_vec(&network(RICH_SPEC)).expect("networks encode")
}

/// Decodes, validates and builds; checks what is built encodes.
fn reconcile_pure(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(network) = serde_json::from_slice::<DigNetwork>(bytes) else {
        return Ok(());
    };
    match validate_network(&network, &images(), facts()) {
        Err(invalid) => {
            prop_assert!(!invalid.reason.is_empty() && !invalid.message.is_empty());
        }
        Ok(valid) => {
            for child in build_network(&valid).to_apply() {
                prop_assert!(serde_json::to_vec(&child.body).is_ok());
                prop_assert!(!child.name.is_empty());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn mutated_specs_are_refused_or_built(mutation in json_mutation()) {
        reconcile_pure(&mutation.apply(&rich_network_json()))?;
    }
}

#[test]
fn the_rich_spec_builds() {
    let network = network(RICH_SPEC);
    let valid = validate_network(&network, &images(), facts()).expect("a valid spec");
    assert!(build_network(&valid).to_apply().len() >= 6);
}
