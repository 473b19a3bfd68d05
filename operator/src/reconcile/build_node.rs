//! The build step for a DigNode: one node (a StatefulSet of one pod) joined to its network.
//!
//! A StatefulSet of one rather than a Deployment: it never runs two pods on the same volume (a
//! Deployment's rolling update would start the new pod before the old one stops, and two nodes
//! would share one identity and one folder), it gives the pod a stable name for exposure and
//! announce addresses, and it creates the PVC from a template.

use std::collections::BTreeMap;

use dig_core::network_id::check_network_id;
use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{ConfigMap, PersistentVolumeClaimVolumeSource, Service, Volume},
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};

use super::{
    args::{self, NodeConfig, NodeConfigInputs},
    build::{self, CONFIG_KEY, ChildObject, DATA_VOLUME, NodePodInputs},
    dns,
    meta::{self, Component, names},
    validate::{self, DefaultImages, InvalidSpec, PskSecret},
};
use crate::crd::{DigNetwork, DigNode, ExposureType, labels::NETWORK_REF_LABEL};

/// Everything a DigNode owns.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeChildren {
    pub config: ConfigMap,
    pub service: Service,
    pub statefulset: StatefulSet,
    pub exposure_service: Option<Service>,
}

impl NodeChildren {
    pub fn to_apply(&self) -> Vec<ChildObject> {
        let mut out = vec![
            ChildObject::typed(&self.config),
            ChildObject::typed(&self.service),
        ];
        out.extend(self.exposure_service.iter().map(ChildObject::typed));
        out.push(ChildObject::typed(&self.statefulset));
        out
    }
}

/// A DigNode that passed validation, with its network resolved.
#[derive(Clone, Debug)]
pub struct ValidNode<'a> {
    pub node: &'a DigNode,
    pub network: &'a DigNetwork,
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
    pub network_id: String,
    pub image: String,
    pub psk_hash: Option<String>,
}

/// Validates a DigNode against its network (`None`: the DigNetwork does not exist).
pub fn validate_node<'a>(
    node: &'a DigNode,
    network: Option<&'a DigNetwork>,
    images: &DefaultImages,
    psk: Option<PskSecret>,
) -> Result<ValidNode<'a>, InvalidSpec> {
    let (name, namespace, owner) = validate::identity(node)?;
    let network_name = &node.spec.network_ref.name;
    let network = network.ok_or_else(|| InvalidSpec {
        reason: "NetworkNotFound",
        message: format!("DigNetwork {namespace}/{network_name} (spec.networkRef.name) not found"),
    })?;
    if node.spec.storage.is_some() && node.spec.existing_claim.is_some() {
        return Err(InvalidSpec {
            reason: "InvalidStorage",
            message: "set either spec.storage or spec.existingClaim, not both".to_string(),
        });
    }
    if let Some(storage) = &node.spec.storage {
        validate::validate_storage(storage, "spec.storage")?;
    }
    validate::validate_exposure(&node.spec.exposure, 1, "spec.exposure")?;
    let network_id = network
        .spec
        .network_id
        .clone()
        .unwrap_or_else(|| network_name.clone());
    if let Err(invalid) = check_network_id(&network_id) {
        return Err(InvalidSpec {
            reason: "InvalidNetworkId",
            message: format!("DigNetwork {network_name}: {invalid}"),
        });
    }
    let image = node
        .spec
        .image
        .clone()
        .or_else(|| network.spec.nodes.image.clone())
        .unwrap_or_else(|| images.sidecar.clone());
    if image.trim().is_empty() {
        return Err(InvalidSpec { reason: "MissingImage", message: "no image: set spec.image, the network's spec.nodes.image or --default-sidecar-image".to_string() });
    }
    let psk_hash = match (&network.spec.private_network, psk) {
        (None, _) => None,
        (Some(_), Some(PskSecret::Present { hash })) => Some(hash),
        (Some(private), other) => {
            let r = &private.psk_secret_ref;
            let what = if other == Some(PskSecret::KeyMissing) {
                format!("has no key {:?}", r.key)
            } else {
                "not found".to_string()
            };
            return Err(InvalidSpec {
                reason: "PskSecretNotFound",
                message: format!(
                    "Secret {namespace}/{} of DigNetwork {network_name} {what}",
                    r.name
                ),
            });
        }
    };
    Ok(ValidNode {
        node,
        network,
        name,
        namespace,
        owner,
        network_id,
        image,
        psk_hash,
    })
}

/// Builds every child of a validated DigNode.
pub fn build_node(valid: &ValidNode<'_>) -> NodeChildren {
    let spec = &valid.node.spec;
    let net = &valid.network.spec;
    let child = names::dignode(&valid.name);
    let network_name = valid.network.metadata.name.clone().unwrap_or_default();
    // The claim template keeps the labels it was created with: a StatefulSet's claim templates
    // cannot change.
    let claim_labels = meta::labels(&child, Component::StandaloneNode, &valid.network_id);
    let with_network_ref = |mut labels: BTreeMap<String, String>| {
        labels.insert(NETWORK_REF_LABEL.to_string(), network_name.clone());
        labels
    };
    let labels = with_network_ref(claim_labels.clone());
    let meta_of = |name: &str, labels: BTreeMap<String, String>| {
        meta::child_meta(name, &valid.namespace, labels, &valid.owner)
    };
    let mut bootstrap_urls = vec![build::bootstrap_url(
        &network_name,
        &valid.namespace,
        net.bootstrap.port,
    )];
    bootstrap_urls.extend(net.nodes.discovery.bootstrap_urls.iter().cloned());
    let psk_ref = net.private_network.as_ref().map(|p| &p.psk_secret_ref);
    let config = NodeConfig::new(NodeConfigInputs {
        network_id: &valid.network_id,
        bootstrap_urls,
        p2p_port: net.nodes.p2p_port,
        api_port: net.nodes.api_port,
        mdns: net.nodes.discovery.mdns,
        dht: net.nodes.discovery.dht,
        target_peers: net.nodes.discovery.target_peers,
        psk_key: psk_ref.map(|r| r.key.as_str()),
        propagate_deletes: net.replication.propagate_deletes,
        write_policy: net.replication.write_policy,
        writers: &net.replication.writers,
    })
    .to_yaml();
    let config_hash = build::config_hash(&[&config, valid.psk_hash.as_deref().unwrap_or("")]);
    let private = valid.psk_hash.is_some();
    let pod_name = format!("{child}-0");
    let exposed = spec.exposure.type_ != ExposureType::None;
    let announce_domain = exposed
        .then_some(spec.exposure.announce_domain.as_deref())
        .flatten();
    let data_volume = spec.existing_claim.as_ref().map(|claim| Volume {
        name: DATA_VOLUME.to_string(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.clone(),
            read_only: Some(false),
        }),
        ..Volume::default()
    });
    let claim_templates = match (&spec.existing_claim, &spec.storage) {
        (Some(_), _) => Vec::new(),
        (None, storage) => vec![build::data_claim_template(
            &storage.clone().unwrap_or_default(),
            claim_labels,
        )],
    };
    let template = build::node_pod_template(NodePodInputs {
        image: &valid.image,
        config_map: &child,
        psk_secret: psk_ref.map(|r| (r.name.as_str(), r.key.as_str())),
        p2p_port: net.nodes.p2p_port,
        api_port: net.nodes.api_port,
        announce: args::announce_addresses(
            net.nodes.p2p_port,
            announce_domain,
            validate::announced_port(&spec.exposure, net.nodes.p2p_port),
            private,
            &spec.exposure.announce,
        ),
        resources: spec
            .resources
            .clone()
            .or_else(|| net.nodes.resources.clone()),
        scheduling: &spec.scheduling,
        data_volume,
        labels: labels.clone(),
        config_hash,
    });
    let selector = meta::selector_labels(&child, Component::StandaloneNode);
    let mut service_ports = vec![];
    for (name, port, protocol) in [
        ("p2p", net.nodes.p2p_port, "TCP"),
        ("p2p-quic", net.nodes.p2p_port, "UDP"),
        ("api", net.nodes.api_port, "TCP"),
    ] {
        if private && name == "p2p-quic" {
            continue;
        }
        service_ports.push(k8s_openapi::api::core::v1::ServicePort {
            name: Some(name.to_string()),
            port,
            protocol: Some(protocol.to_string()),
            target_port: Some(
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name.to_string()),
            ),
            ..Default::default()
        });
    }
    let service = Service {
        metadata: meta_of(&child, labels.clone()),
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector.clone()),
            ports: Some(service_ports),
            ..Default::default()
        }),
        status: None,
    };
    let exposure_service = exposed.then(|| {
        let dns_annotations = match (&spec.exposure.announce_domain, &net.dns) {
            (Some(domain), Some(dns_spec)) => {
                dns::annotations(dns_spec, &[format!("{pod_name}.{domain}")])
            }
            (Some(domain), None) => {
                dns::annotations(&Default::default(), &[format!("{pod_name}.{domain}")])
            }
            (None, _) => BTreeMap::new(),
        };
        build::exposure_service(
            meta_of(
                &pod_name,
                with_network_ref(meta::labels(
                    &child,
                    Component::NodeExposure,
                    &valid.network_id,
                )),
            ),
            &pod_name,
            &spec.exposure,
            0,
            net.nodes.p2p_port,
            private,
            dns_annotations,
        )
    });
    NodeChildren {
        config: ConfigMap {
            metadata: meta_of(&child, labels.clone()),
            data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), config)])),
            ..ConfigMap::default()
        },
        statefulset: build::node_statefulset_object(
            meta_of(&child, labels.clone()),
            &child,
            1,
            selector,
            template,
            claim_templates,
            &spec.persistent_volume_claim_retention_policy,
        ),
        service,
        exposure_service,
    }
}

/// Metadata of the child objects of a DigNode (for tests and status).
pub fn child_name(node: &DigNode) -> String {
    names::dignode(node.metadata.name.as_deref().unwrap_or_default())
}
