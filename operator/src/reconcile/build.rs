//! The build step for a DigNetwork: a validated spec in, the child objects out. Pure: no IO.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{
            Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
            StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
        },
        core::v1::{
            ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource,
            PersistentVolumeClaim, PersistentVolumeClaimSpec, PodTemplateSpec, SecretVolumeSource,
            Service, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::api::{ApiResource, DynamicObject};
use serde_json::json;

use super::{
    apis,
    args::{self, CONFIG_DIR, CONFIG_FILE, DATA_DIR, NodeConfig, NodeConfigInputs, PSK_DIR},
    dns,
    meta::{self, Component, names},
    monitors, pod,
    validate::ValidNetwork,
};
use crate::crd::{
    ClaimRetentionPolicy, DnsMode, ExposureType, Scheduling, Storage,
    labels::CONFIG_HASH_ANNOTATION,
};

/// Name of the volume (and PVC template) holding a node's `.dig` folder.
pub const DATA_VOLUME: &str = "dig-data";
/// Key of the node ConfigMap.
pub const CONFIG_KEY: &str = CONFIG_FILE;

/// An object to apply, in a form the apply step handles for any kind.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildObject {
    pub resource: ApiResource,
    pub name: String,
    pub body: serde_json::Value,
}

impl ChildObject {
    /// A typed Kubernetes object (its `apiVersion`/`kind` filled in).
    pub fn typed<K>(object: &K) -> Self
    where
        K: kube::Resource<DynamicType = ()> + serde::Serialize,
    {
        let resource = ApiResource::erase::<K>(&());
        let mut body = serde_json::to_value(object).expect("Kubernetes objects serialise to JSON");
        body["apiVersion"] = json!(resource.api_version);
        body["kind"] = json!(resource.kind);
        Self {
            resource,
            name: object.meta().name.clone().unwrap_or_default(),
            body,
        }
    }

    pub fn dynamic(object: &DynamicObject, resource: ApiResource) -> Self {
        let mut body = serde_json::to_value(object).expect("dynamic objects serialise to JSON");
        body["apiVersion"] = json!(resource.api_version);
        body["kind"] = json!(resource.kind);
        Self {
            name: object.metadata.name.clone().unwrap_or_default(),
            resource,
            body,
        }
    }
}

/// Everything a DigNetwork owns.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkChildren {
    pub bootstrap_deployment: Deployment,
    pub bootstrap_service: Service,
    pub bootstrap_peers_service: Service,
    pub node_config: ConfigMap,
    pub node_statefulset: StatefulSet,
    pub node_service: Service,
    pub exposure_services: Vec<Service>,
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    pub dns_endpoint: Option<DynamicObject>,
    pub service_monitors: Vec<DynamicObject>,
    pub pod_monitors: Vec<DynamicObject>,
}

impl NetworkChildren {
    /// In apply order: configuration first, then Services, then the workloads.
    pub fn to_apply(&self) -> Vec<ChildObject> {
        let mut out = vec![ChildObject::typed(&self.node_config)];
        for service in [
            &self.bootstrap_service,
            &self.bootstrap_peers_service,
            &self.node_service,
        ]
        .into_iter()
        .chain(&self.exposure_services)
        {
            out.push(ChildObject::typed(service));
        }
        out.push(ChildObject::typed(&self.bootstrap_deployment));
        out.push(ChildObject::typed(&self.node_statefulset));
        out.extend(self.disruption_budgets.iter().map(ChildObject::typed));
        if let Some(endpoint) = &self.dns_endpoint {
            out.push(ChildObject::dynamic(
                endpoint,
                apis::dns_endpoint_resource(),
            ));
        }
        out.extend(
            self.service_monitors
                .iter()
                .map(|m| ChildObject::dynamic(m, service_monitor_resource())),
        );
        out.extend(
            self.pod_monitors
                .iter()
                .map(|m| ChildObject::dynamic(m, apis::pod_monitor_resource())),
        );
        out
    }
}

// Where the controller finds it.
pub use super::apis::service_monitor_resource;

/// In-cluster URL of the registry Service.
pub fn bootstrap_url(network: &str, namespace: &str, port: i32) -> String {
    format!(
        "http://{}.{namespace}.svc:{port}",
        names::bootstrap(network)
    )
}

/// A short, stable hash for the config annotation.
pub fn config_hash(parts: &[&str]) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_hex()[..16].to_string()
}

/// Builds every child of a validated DigNetwork.
pub fn build_network(valid: &ValidNetwork<'_>) -> NetworkChildren {
    let spec = &valid.network.spec;
    let node_config = node_config_map(valid);
    let config_yaml = node_config
        .data
        .as_ref()
        .and_then(|d| d.get(CONFIG_KEY))
        .cloned()
        .unwrap_or_default();
    let node_hash = config_hash(&[&config_yaml, valid.psk_hash.as_deref().unwrap_or("")]);
    let mut disruption_budgets = vec![disruption_budget(
        valid,
        Component::Bootstrap,
        &names::bootstrap(&valid.name),
    )];
    if spec.nodes.replicas > 0 {
        disruption_budgets.push(disruption_budget(
            valid,
            Component::Node,
            &names::node(&valid.name),
        ));
    }
    let dns_endpoint = spec
        .dns
        .as_ref()
        .filter(|d| d.mode == DnsMode::DnsEndpoint && !d.hostnames.is_empty())
        .map(|dns_spec| {
            let meta = meta::child_meta(
                &names::bootstrap(&valid.name),
                &valid.namespace,
                labels(valid, Component::Bootstrap),
                &valid.owner,
            );
            dns::dns_endpoint(
                &dns_spec_with_facts(dns_spec, valid),
                meta,
                &valid.facts.bootstrap_targets,
                &valid.facts.dnsaddr,
            )
        });
    NetworkChildren {
        bootstrap_deployment: bootstrap_deployment(valid),
        bootstrap_service: bootstrap_service(valid),
        bootstrap_peers_service: bootstrap_peers_service(valid),
        node_statefulset: node_statefulset(valid, &node_hash),
        node_config,
        node_service: node_headless_service(valid),
        exposure_services: exposure_services(valid),
        disruption_budgets,
        dns_endpoint,
        service_monitors: if valid.service_monitors {
            monitors::service_monitors(valid)
        } else {
            Vec::new()
        },
        pod_monitors: if valid.pod_monitors {
            monitors::pod_monitors(valid)
        } else {
            Vec::new()
        },
    }
}

/// The DNS spec with the health check the operator made for the external-dns records.
fn dns_spec_with_facts(
    dns_spec: &crate::crd::DnsSpec,
    valid: &ValidNetwork<'_>,
) -> crate::crd::DnsSpec {
    let mut dns_spec = dns_spec.clone();
    if let Some(id) = &valid.facts.external_dns_health_check {
        dns_spec.health_check_id = Some(id.clone());
    }
    dns_spec
}

fn labels(valid: &ValidNetwork<'_>, component: Component) -> BTreeMap<String, String> {
    meta::labels(&valid.name, component, &valid.network_id)
}

fn meta_for(valid: &ValidNetwork<'_>, name: &str, component: Component) -> ObjectMeta {
    meta::child_meta(
        name,
        &valid.namespace,
        labels(valid, component),
        &valid.owner,
    )
}

fn federation_url(valid: &ValidNetwork<'_>) -> Option<String> {
    let bootstrap = &valid.network.spec.bootstrap;
    (bootstrap.replicas > 1).then(|| {
        format!(
            "http://{}.{}.svc:{}",
            names::bootstrap_peers(&valid.name),
            valid.namespace,
            bootstrap.port
        )
    })
}

fn bootstrap_deployment(valid: &ValidNetwork<'_>) -> Deployment {
    let spec = &valid.network.spec.bootstrap;
    let (liveness, readiness) = pod::probes("http");
    let container = Container {
        name: "bootstrap".to_string(),
        image: Some(valid.bootstrap_image.clone()),
        args: Some(args::bootstrap_args(
            spec.port,
            spec.peer_ttl_seconds,
            federation_url(valid).as_deref(),
        )),
        ports: Some(vec![pod::tcp_port("http", spec.port)]),
        liveness_probe: Some(liveness),
        readiness_probe: Some(readiness),
        resources: spec.resources.clone(),
        security_context: Some(pod::container_security_context()),
        volume_mounts: Some(vec![tmp_mount()]),
        ..Container::default()
    };
    let mut pod_spec = pod::pod_spec(vec![container], &spec.scheduling);
    pod_spec.volumes = Some(vec![tmp_volume()]);
    let selector = meta::selector_labels(&valid.name, Component::Bootstrap);
    Deployment {
        metadata: meta_for(valid, &names::bootstrap(&valid.name), Component::Bootstrap),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(valid, Component::Bootstrap)),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn tmp_volume() -> Volume {
    Volume {
        name: "tmp".to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn tmp_mount() -> VolumeMount {
    VolumeMount {
        name: "tmp".to_string(),
        mount_path: "/tmp".to_string(),
        ..VolumeMount::default()
    }
}

fn service_port(name: &str, port: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some(protocol.to_string()),
        ..ServicePort::default()
    }
}

fn bootstrap_service(valid: &ValidNetwork<'_>) -> Service {
    let spec = &valid.network.spec;
    let mut metadata = meta_for(valid, &names::bootstrap(&valid.name), Component::Bootstrap);
    let mut annotations = spec.bootstrap.service.annotations.clone();
    if let Some(dns_spec) = spec.dns.as_ref().filter(|d| d.mode == DnsMode::Annotations) {
        let dns_spec = dns_spec_with_facts(dns_spec, valid);
        annotations.extend(dns::annotations(&dns_spec, &dns_spec.hostnames));
    }
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(spec.bootstrap.service.type_.as_str().to_string()),
            selector: Some(meta::selector_labels(&valid.name, Component::Bootstrap)),
            ports: Some(vec![service_port("http", spec.bootstrap.port, "TCP")]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn headless(
    metadata: ObjectMeta,
    selector: BTreeMap<String, String>,
    ports: Vec<ServicePort>,
) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            // Peers must find each other before they are ready: readiness needs a discovery source.
            publish_not_ready_addresses: Some(true),
            selector: Some(selector),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn bootstrap_peers_service(valid: &ValidNetwork<'_>) -> Service {
    let port = valid.network.spec.bootstrap.port;
    headless(
        meta_for(
            valid,
            &names::bootstrap_peers(&valid.name),
            Component::BootstrapFederation,
        ),
        meta::selector_labels(&valid.name, Component::Bootstrap),
        vec![service_port("http", port, "TCP")],
    )
}

fn p2p_ports(p2p_port: i32, private: bool) -> Vec<ServicePort> {
    let mut ports = vec![service_port("p2p", p2p_port, "TCP")];
    if !private {
        ports.push(service_port("p2p-quic", p2p_port, "UDP"));
    }
    ports
}

fn node_headless_service(valid: &ValidNetwork<'_>) -> Service {
    let nodes = &valid.network.spec.nodes;
    let mut ports = p2p_ports(nodes.p2p_port, valid.psk_hash.is_some());
    ports.push(service_port("api", nodes.api_port, "TCP"));
    headless(
        meta_for(valid, &names::node(&valid.name), Component::Node),
        meta::selector_labels(&valid.name, Component::Node),
        ports,
    )
}

fn node_config_map(valid: &ValidNetwork<'_>) -> ConfigMap {
    let spec = &valid.network.spec;
    let mut bootstrap_urls = vec![bootstrap_url(
        &valid.name,
        &valid.namespace,
        spec.bootstrap.port,
    )];
    bootstrap_urls.extend(spec.nodes.discovery.bootstrap_urls.iter().cloned());
    let config = NodeConfig::new(NodeConfigInputs {
        network_id: &valid.network_id,
        bootstrap_urls,
        p2p_port: spec.nodes.p2p_port,
        api_port: spec.nodes.api_port,
        mdns: spec.nodes.discovery.mdns,
        dht: spec.nodes.discovery.dht,
        target_peers: spec.nodes.discovery.target_peers,
        psk_key: spec
            .private_network
            .as_ref()
            .map(|p| p.psk_secret_ref.key.as_str()),
        propagate_deletes: spec.replication.propagate_deletes,
        write_policy: spec.replication.write_policy,
        writers: &spec.replication.writers,
    });
    ConfigMap {
        metadata: meta_for(valid, &names::node(&valid.name), Component::Node),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_string(), config.to_yaml())])),
        ..ConfigMap::default()
    }
}

/// Everything a node pod needs, shared by the network's StatefulSet and DigNodes.
pub struct NodePodInputs<'a> {
    pub image: &'a str,
    pub config_map: &'a str,
    pub psk_secret: Option<(&'a str, &'a str)>,
    pub p2p_port: i32,
    pub api_port: i32,
    pub announce: Vec<String>,
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    pub scheduling: &'a Scheduling,
    /// A volume named [`DATA_VOLUME`] to add to the pod (an existing claim); `None` when a PVC
    /// template provides it.
    pub data_volume: Option<Volume>,
    pub labels: BTreeMap<String, String>,
    pub config_hash: String,
}

/// The pod template of a node.
pub fn node_pod_template(inputs: NodePodInputs<'_>) -> PodTemplateSpec {
    let private = inputs.psk_secret.is_some();
    let (liveness, readiness) = pod::probes("api");
    let mut ports = vec![pod::tcp_port("p2p", inputs.p2p_port)];
    if !private {
        ports.push(pod::udp_port("p2p-quic", inputs.p2p_port));
    }
    ports.push(pod::tcp_port("api", inputs.api_port));
    let mut mounts = vec![
        VolumeMount {
            name: DATA_VOLUME.to_string(),
            mount_path: DATA_DIR.to_string(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "config".to_string(),
            mount_path: CONFIG_DIR.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        tmp_mount(),
    ];
    let mut volumes = vec![
        Volume {
            name: "config".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: inputs.config_map.to_string(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        tmp_volume(),
    ];
    let (pod_info, pod_info_mount) = pod::pod_info_volume();
    volumes.push(pod_info);
    mounts.push(pod_info_mount);
    if let Some((secret, _key)) = inputs.psk_secret {
        mounts.push(VolumeMount {
            name: "psk".to_string(),
            mount_path: PSK_DIR.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "psk".to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_string()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    volumes.extend(inputs.data_volume);
    let container = Container {
        name: "node".to_string(),
        image: Some(inputs.image.to_string()),
        args: Some(args::node_args(&inputs.announce)),
        env: Some(pod::node_env()),
        ports: Some(ports),
        liveness_probe: Some(liveness),
        readiness_probe: Some(readiness),
        resources: inputs.resources,
        security_context: Some(pod::container_security_context()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let mut spec = pod::pod_spec(vec![container], inputs.scheduling);
    spec.volumes = Some(volumes);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(inputs.labels),
            annotations: Some(BTreeMap::from([(
                CONFIG_HASH_ANNOTATION.to_string(),
                inputs.config_hash,
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(spec),
    }
}

/// The PVC template of a node's volume.
pub fn data_claim_template(
    storage: &Storage,
    labels: BTreeMap<String, String>,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// A StatefulSet of nodes (the network's, or a DigNode's single one).
pub fn node_statefulset_object(
    metadata: ObjectMeta,
    service_name: &str,
    replicas: i32,
    selector: BTreeMap<String, String>,
    template: PodTemplateSpec,
    claim_templates: Vec<PersistentVolumeClaim>,
    retention: &ClaimRetentionPolicy,
) -> StatefulSet {
    // Without claim templates (a DigNode's existing claim) there is nothing to retain.
    let retention =
        (!claim_templates.is_empty()).then(|| StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some(retention.when_deleted.as_str().to_string()),
            when_scaled: Some(retention.when_scaled.as_str().to_string()),
        });
    StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(service_name.to_string()),
            // Nodes do not depend on each other's order: start and replace them all at once.
            pod_management_policy: Some("Parallel".to_string()),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template,
            volume_claim_templates: (!claim_templates.is_empty()).then_some(claim_templates),
            persistent_volume_claim_retention_policy: retention,
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

fn node_statefulset(valid: &ValidNetwork<'_>, config_hash: &str) -> StatefulSet {
    let spec = &valid.network.spec;
    let nodes = &spec.nodes;
    let private = valid.psk_hash.is_some();
    let announce_domain = (nodes.exposure.type_ != ExposureType::None)
        .then_some(nodes.exposure.announce_domain.as_deref())
        .flatten();
    let template = node_pod_template(NodePodInputs {
        image: &valid.node_image,
        config_map: &names::node(&valid.name),
        psk_secret: spec.private_network.as_ref().map(|p| {
            (
                p.psk_secret_ref.name.as_str(),
                p.psk_secret_ref.key.as_str(),
            )
        }),
        p2p_port: nodes.p2p_port,
        api_port: nodes.api_port,
        announce: args::announce_addresses(
            nodes.p2p_port,
            announce_domain,
            super::validate::announced_port(&nodes.exposure, nodes.p2p_port),
            private,
            &nodes.exposure.announce,
        ),
        resources: nodes.resources.clone(),
        scheduling: &nodes.scheduling,
        data_volume: None,
        labels: labels(valid, Component::Node),
        config_hash: config_hash.to_string(),
    });
    node_statefulset_object(
        meta_for(valid, &names::node(&valid.name), Component::Node),
        &names::node(&valid.name),
        nodes.replicas,
        meta::selector_labels(&valid.name, Component::Node),
        template,
        vec![data_claim_template(
            &nodes.storage,
            labels(valid, Component::Node),
        )],
        &nodes.persistent_volume_claim_retention_policy,
    )
}

/// A Service of type NodePort or LoadBalancer in front of one pod.
pub fn exposure_service(
    mut metadata: ObjectMeta,
    pod_name: &str,
    exposure: &crate::crd::Exposure,
    ordinal: i32,
    p2p_port: i32,
    private: bool,
    dns_annotations: BTreeMap<String, String>,
) -> Service {
    let mut annotations = exposure.annotations.clone();
    annotations.extend(dns_annotations);
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    let mut ports = p2p_ports(p2p_port, private);
    if let Some(base) = exposure.node_port_base {
        for port in &mut ports {
            port.node_port = Some(base + ordinal);
        }
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(match exposure.type_ {
                ExposureType::LoadBalancer => "LoadBalancer".to_string(),
                _ => "NodePort".to_string(),
            }),
            // Keep the client's address: the node sees who dials it.
            external_traffic_policy: Some("Local".to_string()),
            selector: Some(BTreeMap::from([(
                "statefulset.kubernetes.io/pod-name".to_string(),
                pod_name.to_string(),
            )])),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn exposure_services(valid: &ValidNetwork<'_>) -> Vec<Service> {
    let spec = &valid.network.spec;
    let exposure = &spec.nodes.exposure;
    if exposure.type_ == ExposureType::None {
        return Vec::new();
    }
    (0..spec.nodes.replicas)
        .map(|ordinal| {
            let pod_name = names::node_pod(&valid.name, ordinal);
            let dns_annotations = match (&exposure.announce_domain, &spec.dns) {
                (Some(domain), Some(dns_spec)) => {
                    dns::annotations(dns_spec, &[format!("{pod_name}.{domain}")])
                }
                (Some(domain), None) => dns::annotations(
                    &crate::crd::DnsSpec::default(),
                    &[format!("{pod_name}.{domain}")],
                ),
                (None, _) => BTreeMap::new(),
            };
            exposure_service(
                meta_for(valid, &pod_name, Component::NodeExposure),
                &pod_name,
                exposure,
                ordinal,
                spec.nodes.p2p_port,
                valid.psk_hash.is_some(),
                dns_annotations,
            )
        })
        .collect()
}

fn disruption_budget(
    valid: &ValidNetwork<'_>,
    component: Component,
    name: &str,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta_for(valid, name, component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(meta::selector_labels(&valid.name, component)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
