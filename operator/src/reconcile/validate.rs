//! Checks a spec, together with what it refers to, before anything is built. The CRD's schema
//! rules catch most mistakes at `kubectl apply`; these checks also hold when the schema was
//! bypassed (an old CRD) and cover what the schema cannot see (a missing Secret or API).

use dig_core::network_id::check_network_id;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use super::{apis::MONITORING_API, dns::DnsTarget};
use crate::crd::{
    DigNetwork, DigNetworkSpec, DnsMode, Exposure, ExposureType, Storage, WritePolicy,
};

/// Images used when a spec names none (operator flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultImages {
    pub sidecar: String,
    pub bootstrap: String,
}

/// State of the pre-shared key Secret a private network refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PskSecret {
    NotFound,
    KeyMissing,
    /// The key exists; `hash` changes when its value does, and rolls the pods out.
    Present {
        hash: String,
    },
}

/// What the reconciler read before validating a DigNetwork.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkFacts {
    /// `None` when the network is not private.
    pub psk: Option<PskSecret>,
    /// The Prometheus operator's ServiceMonitor API (`monitoring.coreos.com/v1`) exists.
    pub service_monitor_api: bool,
    /// The Prometheus operator's PodMonitor API (`monitoring.coreos.com/v1`) exists.
    pub pod_monitor_api: bool,
    /// The `externaldns.k8s.io/v1alpha1` API exists.
    pub dns_endpoint_api: bool,
    /// Addresses of the bootstrap Service (load balancer ingress, else cluster IP).
    pub bootstrap_targets: Vec<DnsTarget>,
    /// `dnsaddr=` values of the exposed nodes whose peer ids are known.
    pub dnsaddr: Vec<String>,
    /// Id of the health check the operator made for the external-dns records, if any.
    pub external_dns_health_check: Option<String>,
}

/// Why a spec cannot be built. `reason` is the condition/event reason (PascalCase).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec {
    pub reason: &'static str,
    pub message: String,
}

impl InvalidSpec {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for InvalidSpec {}

impl InvalidSpec {
    /// The spec is fine but refers to something that does not exist yet (a Secret, a DigNetwork,
    /// an API). Those objects are not watched, so the reconciler looks again after a while.
    pub fn waits_for_another_object(&self) -> bool {
        matches!(
            self.reason,
            "PskSecretNotFound"
                | "PskSecretKeyMissing"
                | "DnsEndpointApiMissing"
                | "NetworkNotFound"
        )
    }
}

/// Something the user should know that does not stop the build: shown in the Ready condition's
/// message and published as a Warning event with `reason` (PascalCase).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecWarning {
    pub reason: &'static str,
    pub message: String,
}

/// A DigNetwork that passed validation, with everything the build step needs resolved.
#[derive(Clone, Debug)]
pub struct ValidNetwork<'a> {
    pub network: &'a DigNetwork,
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
    pub network_id: String,
    pub bootstrap_image: String,
    pub node_image: String,
    /// Hash of the PSK value, when the network is private.
    pub psk_hash: Option<String>,
    /// ServiceMonitors are wanted and the API exists.
    pub service_monitors: bool,
    /// PodMonitors (for injected and DigNode pods) are wanted and the API exists.
    pub pod_monitors: bool,
    pub facts: NetworkFacts,
    /// Things the user should know that do not stop the build.
    pub warnings: Vec<SpecWarning>,
}

/// Owner reference (controller) and identity of a custom resource.
pub fn identity<K: Resource<DynamicType = ()>>(
    object: &K,
) -> Result<(String, String, OwnerReference), InvalidSpec> {
    let name =
        object.meta().name.clone().ok_or_else(|| {
            InvalidSpec::new("MissingMetadata", "the object has no metadata.name")
        })?;
    let namespace = object.meta().namespace.clone().ok_or_else(|| {
        InvalidSpec::new(
            "MissingMetadata",
            format!("{name} has no metadata.namespace"),
        )
    })?;
    let owner = object.controller_owner_ref(&()).ok_or_else(|| {
        InvalidSpec::new(
            "MissingMetadata",
            format!("{namespace}/{name} has no metadata.uid yet"),
        )
    })?;
    Ok((name, namespace, owner))
}

/// A Kubernetes quantity such as `10Gi`, `500M` or `1e9`, greater than zero.
pub fn is_positive_quantity(value: &str) -> bool {
    let digits_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(digits_end);
    let number_ok = number.parse::<f64>().map(|n| n > 0.0).unwrap_or(false);
    let suffix_ok = matches!(
        suffix,
        "" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    ) || (suffix.starts_with(['e', 'E']) && suffix[1..].parse::<i32>().is_ok());
    number_ok && suffix_ok
}

pub fn validate_storage(storage: &Storage, field: &str) -> Result<(), InvalidSpec> {
    if !is_positive_quantity(&storage.size) {
        return Err(InvalidSpec::new(
            "InvalidStorageSize",
            format!(
                "{field}.size {:?} is not a positive quantity such as 10Gi",
                storage.size
            ),
        ));
    }
    Ok(())
}

pub fn validate_exposure(
    exposure: &Exposure,
    replicas: i32,
    field: &str,
) -> Result<(), InvalidSpec> {
    if let Some(base) = exposure.node_port_base {
        if exposure.type_ != ExposureType::NodePort {
            return Err(InvalidSpec::new(
                "InvalidExposure",
                format!("{field}.nodePortBase is only used with {field}.type NodePort"),
            ));
        }
        let last = base + replicas.max(1) - 1;
        if !(30000..=32767).contains(&base) || last > 32767 {
            return Err(InvalidSpec::new(
                "InvalidExposure",
                format!(
                    "{field}.nodePortBase {base} with {replicas} pods needs NodePorts up to {last}, outside 30000-32767"
                ),
            ));
        }
    }
    if exposure.type_ == ExposureType::NodePort && exposure.announce_domain.is_some() {
        // The announced port must be the pod's own NodePort, known only when it is fixed, and
        // the pods of a StatefulSet share one template, so only a single pod can announce it.
        if exposure.node_port_base.is_none() {
            return Err(InvalidSpec::new(
                "InvalidExposure",
                format!(
                    "{field}.announceDomain with type NodePort needs {field}.nodePortBase: the announced port must be known"
                ),
            ));
        }
        if replicas > 1 {
            return Err(InvalidSpec::new(
                "InvalidExposure",
                format!(
                    "{field}.announceDomain with type NodePort works for one pod only ({replicas} pods would each need their own announced port); use type LoadBalancer, or one DigNode per exposed node"
                ),
            ));
        }
    }
    Ok(())
}

/// The port a node announces: its NodePort when exposed through one, else the P2P port.
pub fn announced_port(exposure: &Exposure, p2p_port: i32) -> i32 {
    match (exposure.type_, exposure.node_port_base) {
        (ExposureType::NodePort, Some(base)) => base,
        _ => p2p_port,
    }
}

pub fn validate_url(url: &str, field: &str) -> Result<(), InvalidSpec> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(InvalidSpec::new(
            "InvalidBootstrapUrl",
            format!("{field} {url:?} is not an http:// or https:// URL"),
        )),
    }
}

fn check_range(value: i64, min: i64, max: i64, field: &str) -> Result<(), InvalidSpec> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(InvalidSpec::new(
            "OutOfRange",
            format!("{field} is {value}, allowed {min} to {max}"),
        ))
    }
}

/// Validates a DigNetwork with the facts read about it.
/// Who may write: writers are ed25519 peer ids, the writers policy has some, and open writing
/// needs a private network (the node refuses to start otherwise).
pub fn validate_replication(spec: &DigNetworkSpec) -> Result<(), InvalidSpec> {
    let replication = &spec.replication;
    for writer in &replication.writers {
        if !is_writer_peer_id(writer) {
            return Err(InvalidSpec::new(
                "InvalidWriter",
                format!(
                    "spec.replication.writers entry {writer:?} is not an ed25519 peer id (12D3KooW and 44 base58 characters; see dig-sidecar identity)"
                ),
            ));
        }
    }
    match replication.write_policy {
        WritePolicy::Writers if replication.writers.is_empty() => Err(InvalidSpec::new(
            "NoWriters",
            "spec.replication.writePolicy writers needs at least one spec.replication.writers entry",
        )),
        WritePolicy::Open if spec.private_network.is_none() => Err(InvalidSpec::new(
            "OpenWritesNeedPrivateNetwork",
            "spec.replication.writePolicy open lets any member change any store; it needs spec.privateNetwork",
        )),
        _ => Ok(()),
    }
}

/// [`crate::crd::WRITER_PATTERN`]: `12D3KooW` and 44 base58 characters.
fn is_writer_peer_id(text: &str) -> bool {
    const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    text.len() == 52 && text.starts_with("12D3KooW") && text.chars().all(|c| BASE58.contains(c))
}

pub fn validate_network<'a>(
    network: &'a DigNetwork,
    images: &DefaultImages,
    facts: NetworkFacts,
) -> Result<ValidNetwork<'a>, InvalidSpec> {
    let (name, namespace, owner) = identity(network)?;
    let spec = &network.spec;
    let network_id = spec.network_id.clone().unwrap_or_else(|| name.clone());
    if let Err(invalid) = check_network_id(&network_id) {
        return Err(InvalidSpec::new(
            "InvalidNetworkId",
            format!("{invalid} (spec.networkId, or the name when it is unset)"),
        ));
    }
    check_range(
        spec.bootstrap.replicas.into(),
        1,
        15,
        "spec.bootstrap.replicas",
    )?;
    check_range(spec.bootstrap.port.into(), 1, 65535, "spec.bootstrap.port")?;
    check_range(
        spec.bootstrap.peer_ttl_seconds,
        10,
        86400,
        "spec.bootstrap.peerTtlSeconds",
    )?;
    check_range(spec.nodes.replicas.into(), 0, 500, "spec.nodes.replicas")?;
    check_range(spec.nodes.p2p_port.into(), 1, 65535, "spec.nodes.p2pPort")?;
    check_range(spec.nodes.api_port.into(), 1, 65535, "spec.nodes.apiPort")?;
    if spec.nodes.p2p_port == spec.nodes.api_port {
        return Err(InvalidSpec::new(
            "PortConflict",
            format!(
                "spec.nodes.p2pPort and spec.nodes.apiPort are both {}",
                spec.nodes.p2p_port
            ),
        ));
    }
    validate_storage(&spec.nodes.storage, "spec.nodes.storage")?;
    super::drain::parse_timeout(&spec.nodes.drain_timeout)
        .map_err(|message| InvalidSpec::new("InvalidDrainTimeout", message))?;
    validate_exposure(
        &spec.nodes.exposure,
        spec.nodes.replicas,
        "spec.nodes.exposure",
    )?;
    for url in &spec.nodes.discovery.bootstrap_urls {
        validate_url(url, "spec.nodes.discovery.bootstrapUrls entry")?;
    }
    validate_replication(spec)?;
    let bootstrap_image = spec
        .bootstrap
        .image
        .clone()
        .unwrap_or_else(|| images.bootstrap.clone());
    let node_image = spec
        .nodes
        .image
        .clone()
        .unwrap_or_else(|| images.sidecar.clone());
    if bootstrap_image.trim().is_empty() || node_image.trim().is_empty() {
        return Err(InvalidSpec::new(
            "MissingImage",
            "no image: set spec.bootstrap.image / spec.nodes.image or the operator's --default-*-image",
        ));
    }
    if let Some(dns) = &spec.dns {
        if (dns.weight.is_some() || dns.failover.is_some()) && dns.set_identifier.is_none() {
            return Err(InvalidSpec::new(
                "InvalidDns",
                "spec.dns.weight and spec.dns.failover need spec.dns.setIdentifier",
            ));
        }
        if dns.weight.is_some() && dns.failover.is_some() {
            return Err(InvalidSpec::new(
                "InvalidDns",
                "spec.dns.weight and spec.dns.failover are different routing policies: set one",
            ));
        }
        if dns.mode == DnsMode::DnsEndpoint {
            if dns.hostnames.is_empty() {
                return Err(InvalidSpec::new(
                    "InvalidDns",
                    "spec.dns.mode dnsEndpoint needs at least one spec.dns.hostnames entry",
                ));
            }
            if !facts.dns_endpoint_api {
                return Err(InvalidSpec::new(
                    "DnsEndpointApiMissing",
                    "spec.dns.mode is dnsEndpoint but the DNSEndpoint API (externaldns.k8s.io/v1alpha1) is not installed; install external-dns's CRD or use mode annotations",
                ));
            }
        }
    }
    let psk_hash = match (&spec.private_network, &facts.psk) {
        (None, _) => None,
        (Some(_), Some(PskSecret::Present { hash })) => Some(hash.clone()),
        (Some(private), Some(PskSecret::KeyMissing)) => {
            let r = &private.psk_secret_ref;
            return Err(InvalidSpec::new(
                "PskSecretKeyMissing",
                format!(
                    "Secret {namespace}/{} has no key {:?} (spec.privateNetwork.pskSecretRef)",
                    r.name, r.key
                ),
            ));
        }
        (Some(private), _) => {
            let r = &private.psk_secret_ref;
            return Err(InvalidSpec::new(
                "PskSecretNotFound",
                format!(
                    "Secret {namespace}/{} not found (spec.privateNetwork.pskSecretRef)",
                    r.name
                ),
            ));
        }
    };
    let monitoring = spec.monitoring.service_monitor;
    let service_monitors = monitoring && facts.service_monitor_api;
    let pod_monitors = monitoring && facts.pod_monitor_api;
    let missing: Vec<&str> = [
        (!facts.service_monitor_api, "ServiceMonitor"),
        (!facts.pod_monitor_api, "PodMonitor"),
    ]
    .into_iter()
    .filter_map(|(missing, kind)| missing.then_some(kind))
    .collect();
    let mut warnings = Vec::new();
    if monitoring && !missing.is_empty() {
        let kinds = missing.join(" and ");
        let unscraped = if facts.pod_monitor_api {
            "the network's bootstrap and StatefulSet nodes are not scraped"
        } else if facts.service_monitor_api {
            "injected and DigNode pods are not scraped"
        } else {
            "nothing of the network is scraped"
        };
        warnings.push(SpecWarning {
            reason: "MonitoringApiMissing",
            message: format!(
                "spec.monitoring.serviceMonitor is set but the {kinds} API ({MONITORING_API}) is not installed: no {kinds} created, {unscraped}"
            ),
        });
    }
    Ok(ValidNetwork {
        network,
        name,
        namespace,
        owner,
        network_id,
        bootstrap_image,
        node_image,
        psk_hash,
        service_monitors,
        pod_monitors,
        facts,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_must_be_peer_ids_and_policies_need_what_they_need() {
        let mut spec: DigNetworkSpec = serde_json::from_value(serde_json::json!({})).unwrap();
        validate_replication(&spec).unwrap();
        spec.replication.writers =
            vec!["12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo".into()];
        validate_replication(&spec).unwrap();
        spec.replication.writers.push("nonsense".into());
        assert_eq!(
            validate_replication(&spec).unwrap_err().reason,
            "InvalidWriter"
        );
        spec.replication.writers.clear();
        spec.replication.write_policy = WritePolicy::Writers;
        assert_eq!(validate_replication(&spec).unwrap_err().reason, "NoWriters");
        spec.replication.write_policy = WritePolicy::Open;
        assert_eq!(
            validate_replication(&spec).unwrap_err().reason,
            "OpenWritesNeedPrivateNetwork"
        );
    }

    #[test]
    fn a_network_id_off_the_shared_rule_is_refused_with_its_reason() {
        use crate::reconcile::fixtures::{images, network};
        for (spec, reason) in [
            ("networkId: Main_Net", "uppercase 'M' at byte 0"),
            ("networkId: dig.test", "'.' at byte 3"),
        ] {
            let invalid =
                validate_network(&network(spec), &images(), NetworkFacts::default()).unwrap_err();
            assert_eq!(invalid.reason, "InvalidNetworkId");
            assert!(invalid.message.contains(reason), "{spec}: {invalid}");
        }
        validate_network(
            &network("networkId: dig-test-1"),
            &images(),
            NetworkFacts::default(),
        )
        .unwrap();
    }

    #[test]
    fn quantities() {
        for ok in ["10Gi", "500M", "1", "1.5Ti", "1e9"] {
            assert!(is_positive_quantity(ok), "{ok}");
        }
        for bad in ["", "0", "10GB", "ten", "-1Gi", "Gi"] {
            assert!(!is_positive_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert!(validate_url("https://bootstrap.example.com", "x").is_ok());
        assert!(validate_url("ftp://x", "x").is_err());
        assert!(validate_url("http://", "x").is_err());
    }

    #[test]
    fn node_port_range() {
        let mut exposure = Exposure {
            type_: ExposureType::NodePort,
            node_port_base: Some(32760),
            ..Exposure::default()
        };
        assert!(validate_exposure(&exposure, 8, "e").is_ok());
        let err = validate_exposure(&exposure, 9, "e").unwrap_err();
        assert!(err.message.contains("32768"), "{err}");
        assert_eq!(announced_port(&exposure, 4001), 32760);
        exposure.announce_domain = Some("nodes.example.com".into());
        assert!(validate_exposure(&exposure, 1, "e").is_ok());
        let err = validate_exposure(&exposure, 2, "e").unwrap_err();
        assert!(err.message.contains("LoadBalancer"), "{err}");
        exposure.node_port_base = None;
        let err = validate_exposure(&exposure, 1, "e").unwrap_err();
        assert!(err.message.contains("nodePortBase"), "{err}");
    }
}
