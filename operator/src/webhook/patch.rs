//! Sidecar injection as a pure function: a pod, the DigNetwork its label names and the operator's
//! settings in; a JSON patch (or the reason the pod is left alone, or a denial) out. No API calls
//! here: the server looks the network up and hands the result in.

use std::collections::BTreeMap;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, KeyToPath, Pod, PodSecurityContext, Probe,
    ResourceRequirements, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{Value, json};

use crate::reconcile::args::{
    NodeConfig, NodeConfigInputs, PSK_DIR as PSK_MOUNT_PATH, pod_ip_addresses,
};
use crate::reconcile::pod::{RUN_AS_USER, container_security_context, node_env, probes};

/// Label that asks for injection; its value names the DigNetwork (in the pod's namespace) to join.
pub const INJECT_LABEL: &str = "dig.net/inject";
/// Annotation naming the pod volume whose files the node replicates.
pub const VOLUME_ANNOTATION: &str = "dig.net/volume";
pub const IMAGE_ANNOTATION: &str = "dig.net/image";
pub const CPU_REQUEST_ANNOTATION: &str = "dig.net/cpu-request";
pub const MEMORY_REQUEST_ANNOTATION: &str = "dig.net/memory-request";
pub const CPU_LIMIT_ANNOTATION: &str = "dig.net/cpu-limit";
pub const MEMORY_LIMIT_ANNOTATION: &str = "dig.net/memory-limit";
pub const P2P_PORT_ANNOTATION: &str = "dig.net/p2p-port";
pub const API_PORT_ANNOTATION: &str = "dig.net/api-port";
/// Set on every injected pod (value: the network), so users and tools can see what happened.
pub const INJECTED_ANNOTATION: &str = "dig.net/injected";

/// Name of the injected container; a pod that already has one is left alone.
pub const SIDECAR_CONTAINER_NAME: &str = "dig-sidecar";
/// Where the named volume is mounted in the sidecar (its `--data-dir`), and the node's state
/// folder on it: the same layout as the operator's own nodes. The state (identity key, index,
/// tmp/, conflicts/) lives on the data volume, so the peer id and the index survive restarts
/// whenever that volume is persistent.
pub use crate::reconcile::args::{DATA_DIR as DATA_MOUNT_PATH, STATE_DIR};
pub const TMP_VOLUME_NAME: &str = "dig-sidecar-tmp";
pub const PSK_VOLUME_NAME: &str = "dig-sidecar-psk";
/// Names of the sidecar's ports; prefixed so they do not clash with the app's port names.
pub const P2P_PORT_NAME: &str = "dig-p2p";
pub const P2P_QUIC_PORT_NAME: &str = "dig-p2p-quic";
pub const API_PORT_NAME: &str = "dig-api";
/// Used when the pod sets no (or a root) user: the sidecar must run as non-root (the same user as
/// the operator's own nodes).
pub const DEFAULT_RUN_AS_USER: i64 = RUN_AS_USER;

const CORE_OPERATOR_NAME: &str = "dig-operator";
const NAME_LABEL: &str = "app.kubernetes.io/name";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Everything the sidecar needs from the DigNetwork the pod joins.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSidecarConfig {
    /// The DigNetwork object's name (what the label names).
    pub name: String,
    /// `spec.networkId`: isolates the protocols of this network.
    pub network_id: String,
    /// The in-cluster bootstrap Service URL first, then any extra bootstrap URLs.
    pub bootstrap_urls: Vec<String>,
    pub image: String,
    pub p2p_port: u16,
    pub api_port: u16,
    /// Secret (in the pod's namespace) holding the pre-shared key of a private network.
    pub psk_secret: Option<SecretKeySelector>,
    pub propagate_deletes: bool,
    pub mdns: bool,
    pub dht: bool,
    /// The network's node resources; annotations override single entries.
    pub resources: Option<ResourceRequirements>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretKeySelector {
    pub name: String,
    pub key: String,
}

/// Operator-wide injection settings.
#[derive(Clone, Debug)]
pub struct InjectorSettings {
    /// Namespaces never injected; `kube-system` is always among them.
    pub excluded_namespaces: Vec<String>,
    /// Resources used when neither the network nor an annotation says otherwise.
    pub default_resources: ResourceRequirements,
}

impl Default for InjectorSettings {
    fn default() -> Self {
        let quantities = |cpu: &str, memory: &str| {
            BTreeMap::from([
                ("cpu".to_string(), Quantity(cpu.to_string())),
                ("memory".to_string(), Quantity(memory.to_string())),
            ])
        };
        Self {
            excluded_namespaces: vec!["kube-system".to_string()],
            default_resources: ResourceRequirements {
                requests: Some(quantities("50m", "64Mi")),
                limits: Some(BTreeMap::from([(
                    "memory".to_string(),
                    Quantity("512Mi".to_string()),
                )])),
                ..Default::default()
            },
        }
    }
}

/// Why a pod was admitted unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    NotLabelled,
    ExcludedNamespace,
    OperatorPod,
    AlreadyInjected,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotLabelled => "not_labelled",
            SkipReason::ExcludedNamespace => "excluded_namespace",
            SkipReason::OperatorPod => "operator_pod",
            SkipReason::AlreadyInjected => "already_injected",
        }
    }
}

/// The admitted outcome: a patch to apply, or a reason to leave the pod as it is.
#[derive(Clone, Debug, PartialEq)]
pub enum Injection {
    Skipped(SkipReason),
    Patched(Patch),
}

impl Injection {
    pub fn into_patch(self) -> Option<Patch> {
        match self {
            Injection::Skipped(_) => None,
            Injection::Patched(patch) => Some(patch),
        }
    }
}

/// Why a pod is refused. The message is what `kubectl` prints, so it says which and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error(
        "label {INJECT_LABEL}={value:?} is not a DigNetwork name (lowercase letters, digits and '-', at most 63 characters)"
    )]
    InvalidNetworkName { value: String },
    #[error(
        "label {INJECT_LABEL}={network:?} names a DigNetwork that does not exist in namespace {namespace:?}; create it first or fix the label"
    )]
    UnknownNetwork { network: String, namespace: String },
    #[error(
        "could not read DigNetwork {network:?} in namespace {namespace:?} to configure the sidecar: {detail}"
    )]
    NetworkLookupFailed {
        network: String,
        namespace: String,
        detail: String,
    },
    #[error(
        "DigNetwork {network:?} in namespace {namespace:?} cannot configure a sidecar: {reason}"
    )]
    NetworkUnusable {
        network: String,
        namespace: String,
        reason: String,
    },
    #[error(
        "pod is labelled {INJECT_LABEL}={network:?} but has no annotation {VOLUME_ANNOTATION}; it must name the pod volume whose .dig files the sidecar replicates"
    )]
    MissingVolumeAnnotation { network: String },
    #[error(
        "annotation {VOLUME_ANNOTATION}={volume:?} names a volume the pod does not have (pod volumes: {available}); the sidecar needs it as its data folder"
    )]
    UnknownVolume { volume: String, available: String },
    #[error(
        "annotation {VOLUME_ANNOTATION}={volume:?} names a read-only volume ({kind}); the sidecar writes the stores it replicates into it"
    )]
    ReadOnlyVolume { volume: String, kind: &'static str },
    #[error("annotation {annotation}={value:?} is invalid: {reason}")]
    InvalidAnnotation {
        annotation: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "the sidecar's {what} port {port} is already used by container {container:?}; choose another with annotation {annotation}"
    )]
    PortConflict {
        what: &'static str,
        port: u16,
        container: String,
        annotation: &'static str,
    },
    #[error("the pod already has a volume named {volume:?}, which the sidecar injection reserves")]
    ReservedVolumeName { volume: String },
}

impl Denial {
    /// A short, stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::InvalidNetworkName { .. } => "invalid_network_name",
            Denial::UnknownNetwork { .. } => "unknown_network",
            Denial::NetworkLookupFailed { .. } => "network_lookup_failed",
            Denial::NetworkUnusable { .. } => "network_unusable",
            Denial::MissingVolumeAnnotation { .. } => "missing_volume_annotation",
            Denial::UnknownVolume { .. } => "unknown_volume",
            Denial::ReadOnlyVolume { .. } => "read_only_volume",
            Denial::InvalidAnnotation { .. } => "invalid_annotation",
            Denial::PortConflict { .. } => "port_conflict",
            Denial::ReservedVolumeName { .. } => "reserved_volume_name",
        }
    }
}

/// What the server must do for a pod before patching: nothing, or look up this network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Skip(SkipReason),
    Network(String),
}

/// Decides whether a pod (being created in `namespace`) is a candidate, and for which network.
pub fn target(pod: &Pod, namespace: &str, settings: &InjectorSettings) -> Result<Target, Denial> {
    let labels = pod.metadata.labels.as_ref();
    let Some(network) = labels.and_then(|labels| labels.get(INJECT_LABEL)) else {
        return Ok(Target::Skip(SkipReason::NotLabelled));
    };
    if namespace == "kube-system"
        || settings
            .excluded_namespaces
            .iter()
            .any(|ns| ns == namespace)
    {
        return Ok(Target::Skip(SkipReason::ExcludedNamespace));
    }
    let label_is = |key: &str, value: &str| {
        labels
            .and_then(|labels| labels.get(key))
            .map(String::as_str)
            == Some(value)
    };
    if label_is(NAME_LABEL, CORE_OPERATOR_NAME) || label_is(MANAGED_BY_LABEL, CORE_OPERATOR_NAME) {
        return Ok(Target::Skip(SkipReason::OperatorPod));
    }
    if has_sidecar(pod) {
        return Ok(Target::Skip(SkipReason::AlreadyInjected));
    }
    if !is_dns_label(network) {
        return Err(Denial::InvalidNetworkName {
            value: network.clone(),
        });
    }
    Ok(Target::Network(network.clone()))
}

/// The whole decision: `network` is the looked-up DigNetwork named by the label (`None` when it
/// does not exist).
pub fn build_patch(
    pod: &Pod,
    namespace: &str,
    network: Option<&NetworkSidecarConfig>,
    settings: &InjectorSettings,
) -> Result<Injection, Denial> {
    let network_name = match target(pod, namespace, settings)? {
        Target::Skip(reason) => return Ok(Injection::Skipped(reason)),
        Target::Network(name) => name,
    };
    let Some(network) = network else {
        return Err(Denial::UnknownNetwork {
            network: network_name,
            namespace: namespace.to_string(),
        });
    };
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let volumes = spec.volumes.clone().unwrap_or_default();

    let volume_name =
        annotations
            .get(VOLUME_ANNOTATION)
            .ok_or_else(|| Denial::MissingVolumeAnnotation {
                network: network_name.clone(),
            })?;
    let volume = volumes
        .iter()
        .find(|volume| &volume.name == volume_name)
        .ok_or_else(|| Denial::UnknownVolume {
            volume: volume_name.clone(),
            available: if volumes.is_empty() {
                "none".to_string()
            } else {
                volumes
                    .iter()
                    .map(|volume| volume.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })?;
    if let Some(kind) = read_only_kind(volume) {
        return Err(Denial::ReadOnlyVolume {
            volume: volume_name.clone(),
            kind,
        });
    }
    for reserved in [TMP_VOLUME_NAME, PSK_VOLUME_NAME] {
        if volumes.iter().any(|volume| volume.name == reserved) {
            return Err(Denial::ReservedVolumeName {
                volume: reserved.to_string(),
            });
        }
    }

    let overrides = Overrides::parse(&annotations)?;
    let p2p_port = overrides.p2p_port.unwrap_or(network.p2p_port);
    let api_port = overrides.api_port.unwrap_or(network.api_port);
    if p2p_port == api_port {
        return Err(Denial::InvalidAnnotation {
            annotation: if overrides.api_port.is_some() {
                API_PORT_ANNOTATION
            } else {
                P2P_PORT_ANNOTATION
            },
            value: p2p_port.to_string(),
            reason: "the P2P port and the API port must differ".to_string(),
        });
    }
    check_port_free(pod, p2p_port, "P2P", P2P_PORT_ANNOTATION)?;
    check_port_free(pod, api_port, "API", API_PORT_ANNOTATION)?;
    let resources = resources(
        network
            .resources
            .as_ref()
            .unwrap_or(&settings.default_resources),
        &overrides,
    )?;

    let sidecar = SidecarSpec {
        network,
        image: overrides.image.as_deref().unwrap_or(&network.image),
        volume_name,
        p2p_port,
        api_port,
        resources,
        run_as_user: inherited_user(pod),
        pod_fs_group: pod_security(pod)
            .and_then(|context| context.fs_group)
            .is_some(),
    };
    let mut operations = Vec::new();
    let container = to_value(&sidecar.container());
    match spec.init_containers.as_ref() {
        Some(init) if !init.is_empty() => {
            // Appended: the pod's own init containers (e.g. one that prepares the volume) run first.
            operations.push(add("/spec/initContainers/-", container));
        }
        _ => operations.push(add("/spec/initContainers", json!([container]))),
    }
    for volume in sidecar.volumes() {
        operations.push(add("/spec/volumes/-", to_value(&volume)));
    }
    if pod.metadata.annotations.is_none() {
        operations.push(add("/metadata/annotations", json!({})));
    }
    operations.push(add(
        &format!(
            "/metadata/annotations/{}",
            escape_pointer(INJECTED_ANNOTATION)
        ),
        Value::String(network.name.clone()),
    ));
    let patch: Patch = serde_json::from_value(Value::Array(operations))
        .expect("operations built above are valid JSON patch operations");
    Ok(Injection::Patched(patch))
}

/// What the pod's creator should know about an injected pod that does not stop it (the API
/// server shows these as `Warning:` lines in kubectl).
pub fn injection_warnings(pod: &Pod) -> Vec<String> {
    let mut warnings = Vec::new();
    let volume_name = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(VOLUME_ANNOTATION));
    let volume = pod.spec.as_ref().and_then(|spec| {
        spec.volumes
            .iter()
            .flatten()
            .find(|volume| Some(&volume.name) == volume_name)
    });
    let has_fs_group = pod_security(pod)
        .and_then(|context| context.fs_group)
        .is_some();
    if let (Some(volume), Some(user)) = (volume, inherited_user(pod))
        && volume.empty_dir.is_none()
        && !has_fs_group
    {
        // emptyDir is world-writable; any other volume keeps the owner its storage gave it.
        warnings.push(format!(
            "the dig-sidecar runs as uid {user} and the pod sets no spec.securityContext.fsGroup: \
             volume {:?} must be writable by that user, or the node cannot keep its identity and \
             the stores it replicates; set fsGroup (e.g. {user}) or a non-root runAsUser shared \
             with the app",
            volume.name
        ));
    }
    // Controllers that stamp many pods from one template give them all the same claim (unlike a
    // StatefulSet's volumeClaimTemplates): their nodes would share one identity and one folder.
    let shared_by = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| {
            owner.controller == Some(true)
                && ["ReplicaSet", "ReplicationController", "DaemonSet", "Job"]
                    .contains(&owner.kind.as_str())
        });
    if let (Some(owner), Some(volume)) = (shared_by, volume)
        && volume.persistent_volume_claim.is_some()
    {
        warnings.push(format!(
            "volume {:?} is a claim named in the pod template of {} {:?}: every pod it makes \
             mounts the same claim, so their dig-sidecars would share one identity and one \
             folder; give each pod its own volume (a StatefulSet's volumeClaimTemplates, or an \
             ephemeral volume)",
            volume.name, owner.kind, owner.name
        ));
    }
    if pod.spec.as_ref().and_then(|spec| spec.host_network) == Some(true) {
        warnings.push(format!(
            "the pod uses the host network: the dig-sidecar's P2P and API ports are opened on the \
             node itself, so two such pods on one node collide; choose free ones with \
             {P2P_PORT_ANNOTATION} and {API_PORT_ANNOTATION}"
        ));
    }
    warnings
}

/// True when the pod already carries the sidecar, as an init container or a regular one.
pub fn has_sidecar(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let named = |containers: &Option<Vec<Container>>| {
        containers
            .iter()
            .flatten()
            .any(|container| container.name == SIDECAR_CONTAINER_NAME)
    };
    named(&spec.init_containers)
        || spec
            .containers
            .iter()
            .any(|c| c.name == SIDECAR_CONTAINER_NAME)
}

/// Per-pod overrides read from annotations, each validated.
#[derive(Debug, Default, PartialEq)]
struct Overrides {
    image: Option<String>,
    cpu_request: Option<Quantity>,
    memory_request: Option<Quantity>,
    cpu_limit: Option<Quantity>,
    memory_limit: Option<Quantity>,
    p2p_port: Option<u16>,
    api_port: Option<u16>,
}

impl Overrides {
    fn parse(annotations: &BTreeMap<String, String>) -> Result<Self, Denial> {
        let quantity = |annotation: &'static str| -> Result<Option<Quantity>, Denial> {
            annotations
                .get(annotation)
                .map(|value| {
                    parse_quantity(value)
                        .map(|_| Quantity(value.trim().to_string()))
                        .map_err(|reason| Denial::InvalidAnnotation {
                            annotation,
                            value: value.clone(),
                            reason,
                        })
                })
                .transpose()
        };
        let port = |annotation: &'static str| -> Result<Option<u16>, Denial> {
            annotations
                .get(annotation)
                .map(|value| match value.trim().parse::<u16>() {
                    Ok(port) if port > 0 => Ok(port),
                    _ => Err(Denial::InvalidAnnotation {
                        annotation,
                        value: value.clone(),
                        reason: "must be a port number from 1 to 65535".to_string(),
                    }),
                })
                .transpose()
        };
        let image = annotations
            .get(IMAGE_ANNOTATION)
            .map(|value| {
                validate_image(value)
                    .map(|()| value.clone())
                    .map_err(|reason| Denial::InvalidAnnotation {
                        annotation: IMAGE_ANNOTATION,
                        value: value.clone(),
                        reason,
                    })
            })
            .transpose()?;
        Ok(Self {
            image,
            cpu_request: quantity(CPU_REQUEST_ANNOTATION)?,
            memory_request: quantity(MEMORY_REQUEST_ANNOTATION)?,
            cpu_limit: quantity(CPU_LIMIT_ANNOTATION)?,
            memory_limit: quantity(MEMORY_LIMIT_ANNOTATION)?,
            p2p_port: port(P2P_PORT_ANNOTATION)?,
            api_port: port(API_PORT_ANNOTATION)?,
        })
    }
}

/// Base resources with the annotation overrides applied; a request above its limit is denied here
/// with the annotation's name rather than later by the API server.
fn resources(
    base: &ResourceRequirements,
    overrides: &Overrides,
) -> Result<ResourceRequirements, Denial> {
    let mut requests = base.requests.clone().unwrap_or_default();
    let mut limits = base.limits.clone().unwrap_or_default();
    for (resource, request, limit) in [
        ("cpu", &overrides.cpu_request, &overrides.cpu_limit),
        ("memory", &overrides.memory_request, &overrides.memory_limit),
    ] {
        if let Some(request) = request {
            requests.insert(resource.to_string(), request.clone());
        }
        if let Some(limit) = limit {
            limits.insert(resource.to_string(), limit.clone());
        }
    }
    for (resource, request_annotation, limit_annotation) in [
        ("cpu", CPU_REQUEST_ANNOTATION, CPU_LIMIT_ANNOTATION),
        ("memory", MEMORY_REQUEST_ANNOTATION, MEMORY_LIMIT_ANNOTATION),
    ] {
        let (Some(request), Some(limit)) = (requests.get(resource), limits.get(resource)) else {
            continue;
        };
        let (Ok(request_value), Ok(limit_value)) =
            (parse_quantity(&request.0), parse_quantity(&limit.0))
        else {
            continue;
        };
        if request_value > limit_value {
            // Blame the annotation the user set; if both came from the network, blame the request.
            let request_overridden = match resource {
                "cpu" => overrides.cpu_request.is_some(),
                _ => overrides.memory_request.is_some(),
            };
            let limit_overridden = match resource {
                "cpu" => overrides.cpu_limit.is_some(),
                _ => overrides.memory_limit.is_some(),
            };
            let (annotation, value) = if limit_overridden && !request_overridden {
                (limit_annotation, limit.0.clone())
            } else {
                (request_annotation, request.0.clone())
            };
            return Err(Denial::InvalidAnnotation {
                annotation,
                value,
                reason: format!(
                    "the {resource} request {} is above the {resource} limit {}",
                    request.0, limit.0
                ),
            });
        }
    }
    Ok(ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..base.clone()
    })
}

/// Parses a Kubernetes quantity (`250m`, `1.5`, `64Mi`, `1e3`) to its value; rejects negatives.
pub fn parse_quantity(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let number_end = text
        .char_indices()
        .find(|(index, c)| !(c.is_ascii_digit() || *c == '.' || (*index == 0 && *c == '+')))
        .map_or(text.len(), |(index, _)| index);
    let (number, suffix) = text.split_at(number_end);
    let number = number.strip_prefix('+').unwrap_or(number);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(
            "must be a Kubernetes quantity such as 250m, 1, 64Mi or 1Gi (non-negative)".to_string(),
        );
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{number:?} is not a number"))?;
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| {
                format!(
                    "unknown suffix {suffix:?} (use m, k, M, G, T, Ki, Mi, Gi, Ti or an exponent)"
                )
            })?;
            10f64.powi(power)
        }
        _ => {
            return Err(format!(
                "unknown suffix {suffix:?} (use m, k, M, G, T, Ki, Mi, Gi, Ti or an exponent)"
            ));
        }
    };
    let quantity = value * multiplier;
    // `1e999` is a quantity by the grammar but no number: it would compare above every limit.
    if !quantity.is_finite() {
        return Err(format!("{text:?} is too large to be a resource quantity"));
    }
    Ok(quantity)
}

fn validate_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        return Err("must not be empty".to_string());
    }
    if image.len() > 512 {
        return Err("is longer than 512 characters".to_string());
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace".to_string());
    }
    if image.starts_with(['/', ':', '@', '.', '-']) || image.ends_with([':', '@', '/']) {
        return Err("is not an image reference such as registry/repository:tag".to_string());
    }
    Ok(())
}

/// RFC 1123 label: what a DigNetwork (and any label value used as a name) may be called.
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The kind of a volume the sidecar cannot write to, if it is one.
fn read_only_kind(volume: &Volume) -> Option<&'static str> {
    if volume.config_map.is_some() {
        Some("configMap")
    } else if volume.secret.is_some() {
        Some("secret")
    } else if volume.downward_api.is_some() {
        Some("downwardAPI")
    } else if volume.projected.is_some() {
        Some("projected")
    } else if volume.image.is_some() {
        Some("image")
    } else if volume
        .persistent_volume_claim
        .as_ref()
        .is_some_and(|pvc| pvc.read_only == Some(true))
    {
        Some("persistentVolumeClaim with readOnly: true")
    } else if volume
        .csi
        .as_ref()
        .is_some_and(|csi| csi.read_only == Some(true))
    {
        Some("csi with readOnly: true")
    } else {
        None
    }
}

/// Containers of a pod share one network namespace: a port another container declares is taken.
fn check_port_free(
    pod: &Pod,
    port: u16,
    what: &'static str,
    annotation: &'static str,
) -> Result<(), Denial> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for container in containers {
        let taken = container
            .ports
            .iter()
            .flatten()
            .any(|declared| declared.container_port == i32::from(port));
        if taken {
            return Err(Denial::PortConflict {
                what,
                port,
                container: container.name.clone(),
                annotation,
            });
        }
    }
    Ok(())
}

fn pod_security(pod: &Pod) -> Option<&PodSecurityContext> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.security_context.as_ref())
}

/// The pod's own user when it is a non-root one (so the sidecar can write what the app writes),
/// otherwise a fixed non-root user.
fn inherited_user(pod: &Pod) -> Option<i64> {
    let pod_user = pod_security(pod).and_then(|context| context.run_as_user);
    match pod_user {
        Some(user) if user != 0 => None,
        _ => Some(DEFAULT_RUN_AS_USER),
    }
}

struct SidecarSpec<'a> {
    network: &'a NetworkSidecarConfig,
    image: &'a str,
    volume_name: &'a str,
    p2p_port: u16,
    api_port: u16,
    resources: ResourceRequirements,
    run_as_user: Option<i64>,
    /// The pod sets `fsGroup`, so its volumes are group-accessible to every container.
    pod_fs_group: bool,
}

impl SidecarSpec<'_> {
    /// The `dig-sidecar run` command line (DESIGN 4a). The node configuration is the one the
    /// operator writes for the network's own nodes (the same [`NodeConfig`]), as flags: the pod
    /// cannot mount the network's ConfigMap (it may not exist yet, and per-pod port overrides
    /// would contradict it).
    fn args(&self) -> Vec<String> {
        let network = self.network;
        let config = NodeConfig::new(NodeConfigInputs {
            network_id: &network.network_id,
            bootstrap_urls: network.bootstrap_urls.clone(),
            p2p_port: i32::from(self.p2p_port),
            api_port: i32::from(self.api_port),
            mdns: network.mdns,
            dht: network.dht,
            psk_key: network.psk_secret.as_ref().map(|psk| psk.key.as_str()),
            propagate_deletes: network.propagate_deletes,
        });
        let mut args = vec![
            "run".to_string(),
            "--data-dir".to_string(),
            DATA_MOUNT_PATH.to_string(),
            "--state-dir".to_string(),
            STATE_DIR.to_string(),
        ];
        args.extend(config.to_flags());
        // Peers dial the pod's own address, as they do the network's StatefulSet nodes.
        let private = network.psk_secret.is_some();
        for address in pod_ip_addresses(i32::from(self.p2p_port), private) {
            args.extend(["--announce".to_string(), address]);
        }
        args
    }

    fn container(&self) -> Container {
        // The same liveness and readiness probes as the operator's own nodes.
        let (liveness, readiness) = probes(API_PORT_NAME);
        // A native sidecar's startup probe gates the app containers: they start once the node
        // serves its API (up to two minutes, e.g. for a start-up scan of a large folder).
        let startup = Probe {
            period_seconds: Some(2),
            failure_threshold: Some(60),
            ..liveness.clone()
        };
        let port = |name: &str, number: u16, protocol: &str| ContainerPort {
            name: Some(name.to_string()),
            container_port: i32::from(number),
            protocol: Some(protocol.to_string()),
            ..Default::default()
        };
        let mut ports = vec![port(P2P_PORT_NAME, self.p2p_port, "TCP")];
        if self.network.psk_secret.is_none() {
            ports.push(port(P2P_QUIC_PORT_NAME, self.p2p_port, "UDP"));
        }
        ports.push(port(API_PORT_NAME, self.api_port, "TCP"));
        let mut mounts = vec![
            VolumeMount {
                name: self.volume_name.to_string(),
                mount_path: DATA_MOUNT_PATH.to_string(),
                ..Default::default()
            },
            VolumeMount {
                name: TMP_VOLUME_NAME.to_string(),
                mount_path: "/tmp".to_string(),
                ..Default::default()
            },
        ];
        if self.network.psk_secret.is_some() {
            mounts.push(VolumeMount {
                name: PSK_VOLUME_NAME.to_string(),
                mount_path: PSK_MOUNT_PATH.to_string(),
                read_only: Some(true),
                ..Default::default()
            });
        }
        Container {
            name: SIDECAR_CONTAINER_NAME.to_string(),
            image: Some(self.image.to_string()),
            args: Some(self.args()),
            env: Some(node_env()),
            ports: Some(ports),
            // A native sidecar: started before the app containers, kept running, stopped after them.
            restart_policy: Some("Always".to_string()),
            // The kubelet starts the app containers only once this has passed.
            startup_probe: Some(startup),
            liveness_probe: Some(liveness),
            readiness_probe: Some(readiness),
            resources: Some(self.resources.clone()),
            security_context: Some(SecurityContext {
                run_as_user: self.run_as_user,
                run_as_group: self.run_as_user,
                ..container_security_context()
            }),
            termination_message_policy: Some("FallbackToLogsOnError".to_string()),
            volume_mounts: Some(mounts),
            ..Default::default()
        }
    }

    fn volumes(&self) -> Vec<Volume> {
        let mut volumes = vec![Volume {
            name: TMP_VOLUME_NAME.to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".to_string())),
                ..Default::default()
            }),
            ..Default::default()
        }];
        if let Some(psk) = &self.network.psk_secret {
            volumes.push(Volume {
                name: PSK_VOLUME_NAME.to_string(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(psk.name.clone()),
                    // The file is named after the key, as in the operator's own nodes.
                    items: Some(vec![KeyToPath {
                        key: psk.key.clone(),
                        path: psk.key.clone(),
                        ..Default::default()
                    }]),
                    // Group-readable through the pod's fsGroup; without one the file stays
                    // root-owned, and only a world-readable mode lets a non-root sidecar read it
                    // (no other container mounts this volume: its name is reserved).
                    default_mode: Some(if self.pod_fs_group { 0o440 } else { 0o444 }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        volumes
    }
}

fn add(path: &str, value: Value) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

fn to_value<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("Kubernetes API objects serialize to JSON")
}

/// RFC 6901 escaping of one JSON pointer segment.
fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> NetworkSidecarConfig {
        NetworkSidecarConfig {
            name: "prod".to_string(),
            network_id: "prod-net".to_string(),
            bootstrap_urls: vec!["http://prod-bootstrap.apps.svc:3000".to_string()],
            image: "ghcr.io/dig-network/dig-sidecar:0.1.0".to_string(),
            p2p_port: 4001,
            api_port: 8080,
            psk_secret: None,
            propagate_deletes: false,
            mdns: false,
            dht: true,
            resources: None,
        }
    }

    fn pod(labels: Value, annotations: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "app", "namespace": "apps", "labels": labels, "annotations": annotations},
            "spec": {
                "containers": [{"name": "app", "image": "busybox", "ports": [{"containerPort": 80}],
                    "volumeMounts": [{"name": "stores", "mountPath": "/stores"}]}],
                "volumes": [
                    {"name": "stores", "persistentVolumeClaim": {"claimName": "stores"}},
                    {"name": "settings", "configMap": {"name": "settings"}}
                ]
            }
        })
    }

    fn labelled_pod() -> Value {
        pod(
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "stores"}),
        )
    }

    fn decide(pod_json: &Value, namespace: &str) -> Result<Injection, Denial> {
        let pod: Pod = serde_json::from_value(pod_json.clone()).unwrap();
        build_patch(
            &pod,
            namespace,
            Some(&network()),
            &InjectorSettings::default(),
        )
    }

    /// Applies the patch the way the API server would and returns the resulting pod.
    fn patched(pod_json: &Value, namespace: &str) -> Value {
        let Injection::Patched(patch) = decide(pod_json, namespace).unwrap() else {
            panic!("expected a patch");
        };
        let mut document = pod_json.clone();
        json_patch::patch(&mut document, &patch).unwrap();
        // The result must still be a valid Pod.
        let _: Pod = serde_json::from_value(document.clone()).unwrap();
        document
    }

    fn sidecar(document: &Value) -> &Value {
        document["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == SIDECAR_CONTAINER_NAME)
            .expect("the sidecar is an init container")
    }

    fn args(document: &Value) -> Vec<String> {
        sidecar(document)["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|arg| arg.as_str().unwrap().to_string())
            .collect()
    }

    /// The values given to `name` in a command line of `--flag value` pairs.
    fn flag(args: &[String], name: &str) -> Vec<String> {
        args.windows(2)
            .filter(|pair| pair[0] == name)
            .map(|pair| pair[1].clone())
            .collect()
    }

    #[test]
    fn plain_pod_gets_a_native_sidecar_on_the_named_volume() {
        let document = patched(&labelled_pod(), "apps");
        let container = sidecar(&document);
        assert_eq!(container["restartPolicy"], "Always");
        assert_eq!(container["image"], "ghcr.io/dig-network/dig-sidecar:0.1.0");
        let mounts = container["volumeMounts"].as_array().unwrap();
        assert!(mounts.contains(&json!({"name": "stores", "mountPath": "/data"})));
        assert!(mounts.contains(&json!({"name": TMP_VOLUME_NAME, "mountPath": "/tmp"})));
        assert_eq!(
            args(&document),
            [
                "run",
                "--data-dir",
                "/data",
                "--state-dir",
                "/data/.dig-node",
                "--network",
                "prod-net",
                "--bootstrap",
                "http://prod-bootstrap.apps.svc:3000",
                "--listen",
                "/ip4/0.0.0.0/tcp/4001",
                "--listen",
                "/ip4/0.0.0.0/udp/4001/quic-v1",
                "--api-listen",
                "0.0.0.0:8080",
                "--no-mdns",
                "--log-format",
                "json",
                "--announce",
                "/ip4/$(POD_IP)/tcp/4001",
                "--announce",
                "/ip4/$(POD_IP)/udp/4001/quic-v1",
            ]
        );
        assert_eq!(container["env"][0]["name"], "POD_IP");
        assert_eq!(
            container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
            "status.podIP"
        );
        assert_eq!(container["startupProbe"]["httpGet"]["path"], "/health");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
        assert_eq!(
            container["readinessProbe"]["httpGet"]["port"],
            API_PORT_NAME
        );
        assert_eq!(container["startupProbe"]["failureThreshold"], 60);
        let security = &container["securityContext"];
        assert_eq!(security["runAsNonRoot"], true);
        assert_eq!(security["runAsUser"], DEFAULT_RUN_AS_USER);
        assert_eq!(security["readOnlyRootFilesystem"], true);
        assert_eq!(security["allowPrivilegeEscalation"], false);
        assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(container["resources"]["requests"]["cpu"], "50m");
        let volumes = document["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 3);
        assert_eq!(volumes[2]["name"], TMP_VOLUME_NAME);
        assert_eq!(
            document["metadata"]["annotations"][INJECTED_ANNOTATION],
            "prod"
        );
        // The app container is untouched.
        assert_eq!(
            document["spec"]["containers"],
            labelled_pod()["spec"]["containers"]
        );
    }

    /// The injected command line, after the kubelet expands `$(POD_IP)`, parsed by `dig-sidecar`'s
    /// own clap parser: every flag exists and every value is accepted.
    fn parsed_run_args(document: &Value) -> dig_sidecar::config::RunArgs {
        use clap::Parser;
        let expanded =
            crate::reconcile::fixtures::kubelet_expanded(&args(document), "pod", "10.1.2.3");
        let cli = dig_sidecar::config::Cli::try_parse_from(
            std::iter::once("dig-sidecar".to_string()).chain(expanded),
        )
        .unwrap_or_else(|error| panic!("dig-sidecar rejects the injected args: {error}"));
        match cli.command {
            dig_sidecar::config::Command::Run(run) => *run,
            other => panic!("expected the run command, got {other:?}"),
        }
    }

    #[test]
    fn injected_args_are_accepted_by_the_sidecars_parser() {
        let run = parsed_run_args(&patched(&labelled_pod(), "apps"));
        assert_eq!(run.data_dir, std::path::PathBuf::from(DATA_MOUNT_PATH));
        assert_eq!(run.state_dir(), std::path::PathBuf::from(STATE_DIR));
        assert_eq!(run.network, "prod-net");
        assert_eq!(run.bootstrap, ["http://prod-bootstrap.apps.svc:3000"]);
        let listen: Vec<String> = run.listen.iter().map(ToString::to_string).collect();
        assert_eq!(
            listen,
            ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
        );
        let announce: Vec<String> = run.announce.iter().map(ToString::to_string).collect();
        assert_eq!(
            announce,
            ["/ip4/10.1.2.3/tcp/4001", "/ip4/10.1.2.3/udp/4001/quic-v1"]
        );
        assert_eq!(run.api_listen, "0.0.0.0:8080".parse().unwrap());
        assert!(run.no_mdns && !run.no_dht && !run.propagate_deletes && run.psk_file.is_none());
        assert_eq!(run.log_format, dig_sidecar::config::LogFormat::Json);

        let mut private = network();
        private.psk_secret = Some(SecretKeySelector {
            name: "psk".to_string(),
            key: "psk".to_string(),
        });
        private.propagate_deletes = true;
        private.mdns = true;
        private.dht = false;
        let pod: Pod = serde_json::from_value(labelled_pod()).unwrap();
        let patch = build_patch(&pod, "apps", Some(&private), &InjectorSettings::default())
            .unwrap()
            .into_patch()
            .unwrap();
        let mut document = labelled_pod();
        json_patch::patch(&mut document, &patch).unwrap();
        let run = parsed_run_args(&document);
        assert_eq!(
            run.psk_file,
            Some(std::path::PathBuf::from("/etc/dig/psk/psk"))
        );
        assert!(run.propagate_deletes && !run.no_mdns && run.no_dht);
        assert_eq!(run.listen.len(), 1);
    }

    #[test]
    fn existing_init_containers_run_before_the_sidecar() {
        let mut pod_json = labelled_pod();
        pod_json["spec"]["initContainers"] = json!([{"name": "prepare", "image": "busybox"}]);
        let document = patched(&pod_json, "apps");
        let init = document["spec"]["initContainers"].as_array().unwrap();
        assert_eq!(init.len(), 2);
        assert_eq!(init[0]["name"], "prepare");
        assert_eq!(init[1]["name"], SIDECAR_CONTAINER_NAME);
    }

    #[test]
    fn private_network_mounts_the_psk_and_uses_tcp_only() {
        let mut network = network();
        network.psk_secret = Some(SecretKeySelector {
            name: "prod-psk".to_string(),
            key: "swarm.key".to_string(),
        });
        network.propagate_deletes = true;
        let pod: Pod = serde_json::from_value(labelled_pod()).unwrap();
        let patch = build_patch(&pod, "apps", Some(&network), &InjectorSettings::default())
            .unwrap()
            .into_patch()
            .unwrap();
        let mut document = labelled_pod();
        json_patch::patch(&mut document, &patch).unwrap();
        let args = args(&document);
        assert_eq!(flag(&args, "--psk-file"), ["/etc/dig/psk/swarm.key"]);
        assert!(args.contains(&"--propagate-deletes".to_string()));
        assert!(!args.iter().any(|arg| arg.contains("quic")));
        let psk_volume = document["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == PSK_VOLUME_NAME)
            .unwrap();
        assert_eq!(psk_volume["secret"]["secretName"], "prod-psk");
        assert_eq!(psk_volume["secret"]["items"][0]["key"], "swarm.key");
        assert_eq!(psk_volume["secret"]["items"][0]["path"], "swarm.key");
        // No fsGroup: the file must be readable by the sidecar's non-root user.
        assert_eq!(psk_volume["secret"]["defaultMode"], 0o444);
        let mounts = sidecar(&document)["volumeMounts"].as_array().unwrap();
        assert!(mounts.contains(
            &json!({"name": PSK_VOLUME_NAME, "mountPath": "/etc/dig/psk", "readOnly": true})
        ));
    }

    #[test]
    fn pod_that_already_has_the_sidecar_is_left_alone() {
        let mut in_init = labelled_pod();
        in_init["spec"]["initContainers"] = json!([{"name": SIDECAR_CONTAINER_NAME, "image": "x"}]);
        assert_eq!(
            decide(&in_init, "apps").unwrap(),
            Injection::Skipped(SkipReason::AlreadyInjected)
        );
        let mut in_containers = labelled_pod();
        in_containers["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": SIDECAR_CONTAINER_NAME, "image": "x"}));
        assert_eq!(
            decide(&in_containers, "apps").unwrap(),
            Injection::Skipped(SkipReason::AlreadyInjected)
        );
        // Injecting the patched pod again changes nothing.
        let once = patched(&labelled_pod(), "apps");
        assert_eq!(
            decide(&once, "apps").unwrap(),
            Injection::Skipped(SkipReason::AlreadyInjected)
        );
    }

    #[test]
    fn pod_without_the_label_is_never_touched() {
        let unlabelled = pod(json!({"app": "web"}), json!({"dig.net/volume": "stores"}));
        assert_eq!(
            decide(&unlabelled, "apps").unwrap(),
            Injection::Skipped(SkipReason::NotLabelled)
        );
        let mut no_metadata = labelled_pod();
        no_metadata["metadata"] = json!({"name": "bare"});
        assert_eq!(
            decide(&no_metadata, "apps").unwrap(),
            Injection::Skipped(SkipReason::NotLabelled)
        );
    }

    #[test]
    fn kube_system_excluded_namespaces_and_operator_pods_are_skipped() {
        assert_eq!(
            decide(&labelled_pod(), "kube-system").unwrap(),
            Injection::Skipped(SkipReason::ExcludedNamespace)
        );
        let settings = InjectorSettings {
            excluded_namespaces: vec!["dig-system".to_string()],
            ..Default::default()
        };
        let pod: Pod = serde_json::from_value(labelled_pod()).unwrap();
        assert_eq!(
            build_patch(&pod, "dig-system", Some(&network()), &settings).unwrap(),
            Injection::Skipped(SkipReason::ExcludedNamespace)
        );
        // kube-system stays excluded even when the list does not name it.
        assert_eq!(
            build_patch(&pod, "kube-system", Some(&network()), &settings).unwrap(),
            Injection::Skipped(SkipReason::ExcludedNamespace)
        );
        for label in [NAME_LABEL, MANAGED_BY_LABEL] {
            let operator_pod =
                pod_with_labels(json!({"dig.net/inject": "prod", label: "dig-operator"}));
            assert_eq!(
                decide(&operator_pod, "apps").unwrap(),
                Injection::Skipped(SkipReason::OperatorPod)
            );
        }
    }

    fn pod_with_labels(labels: Value) -> Value {
        pod(labels, json!({"dig.net/volume": "stores"}))
    }

    #[test]
    fn unknown_network_is_denied_with_its_name_and_namespace() {
        let pod: Pod = serde_json::from_value(labelled_pod()).unwrap();
        let denial = build_patch(&pod, "apps", None, &InjectorSettings::default()).unwrap_err();
        assert_eq!(denial.reason(), "unknown_network");
        let message = denial.to_string();
        assert!(message.contains("\"prod\""), "{message}");
        assert!(
            message.contains("does not exist in namespace \"apps\""),
            "{message}"
        );
    }

    #[test]
    fn invalid_network_label_is_denied() {
        let bad = pod_with_labels(json!({"dig.net/inject": "Prod_Net"}));
        let denial = decide(&bad, "apps").unwrap_err();
        assert_eq!(denial.reason(), "invalid_network_name");
        assert!(denial.to_string().contains("Prod_Net"));
    }

    #[test]
    fn missing_volume_annotation_or_volume_is_denied_with_which_and_why() {
        let no_annotation = pod(json!({"dig.net/inject": "prod"}), json!({}));
        let denial = decide(&no_annotation, "apps").unwrap_err();
        assert_eq!(denial.reason(), "missing_volume_annotation");
        assert!(denial.to_string().contains("dig.net/volume"));

        let wrong_volume = pod(
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "dig-data"}),
        );
        let message = decide(&wrong_volume, "apps").unwrap_err().to_string();
        assert!(message.contains("dig.net/volume=\"dig-data\""), "{message}");
        assert!(
            message.contains("does not have (pod volumes: stores, settings)"),
            "{message}"
        );

        let mut no_volumes = labelled_pod();
        no_volumes["spec"]
            .as_object_mut()
            .unwrap()
            .remove("volumes");
        let message = decide(&no_volumes, "apps").unwrap_err().to_string();
        assert!(message.contains("pod volumes: none"), "{message}");
    }

    #[test]
    fn read_only_volume_is_denied() {
        let config_volume = pod(
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "settings"}),
        );
        let denial = decide(&config_volume, "apps").unwrap_err();
        assert_eq!(denial.reason(), "read_only_volume");
        assert!(denial.to_string().contains("configMap"));
        let mut read_only_claim = labelled_pod();
        read_only_claim["spec"]["volumes"][0]["persistentVolumeClaim"]["readOnly"] = json!(true);
        assert_eq!(
            decide(&read_only_claim, "apps").unwrap_err().reason(),
            "read_only_volume"
        );
    }

    #[test]
    fn good_overrides_are_applied() {
        let overridden = pod(
            json!({"dig.net/inject": "prod"}),
            json!({
                "dig.net/volume": "stores",
                "dig.net/image": "registry.local:5000/dig/sidecar@sha256:abc",
                "dig.net/cpu-request": "100m",
                "dig.net/memory-request": "128Mi",
                "dig.net/cpu-limit": "2",
                "dig.net/memory-limit": "1Gi",
                "dig.net/p2p-port": "4101",
                "dig.net/api-port": "8181"
            }),
        );
        let document = patched(&overridden, "apps");
        let container = sidecar(&document);
        assert_eq!(
            container["image"],
            "registry.local:5000/dig/sidecar@sha256:abc"
        );
        assert_eq!(
            container["resources"],
            json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
        );
        let args = args(&document);
        assert_eq!(
            flag(&args, "--listen"),
            ["/ip4/0.0.0.0/tcp/4101", "/ip4/0.0.0.0/udp/4101/quic-v1"]
        );
        assert_eq!(
            flag(&args, "--announce"),
            ["/ip4/$(POD_IP)/tcp/4101", "/ip4/$(POD_IP)/udp/4101/quic-v1"]
        );
        assert_eq!(flag(&args, "--api-listen"), ["0.0.0.0:8181"]);
        // The probes follow the API port through its name.
        assert_eq!(container["livenessProbe"]["httpGet"]["port"], API_PORT_NAME);
        let ports: Vec<i64> = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["containerPort"].as_i64().unwrap())
            .collect();
        assert_eq!(ports, [4101, 4101, 8181]);
    }

    #[test]
    fn bad_overrides_are_denied_naming_annotation_and_value() {
        let cases = [
            (CPU_REQUEST_ANNOTATION, "lots"),
            (MEMORY_REQUEST_ANNOTATION, "-5Mi"),
            (CPU_LIMIT_ANNOTATION, "1.2.3"),
            (MEMORY_LIMIT_ANNOTATION, "64MB"),
            (P2P_PORT_ANNOTATION, "0"),
            (API_PORT_ANNOTATION, "70000"),
            (P2P_PORT_ANNOTATION, "http"),
            (IMAGE_ANNOTATION, "dig sidecar"),
            (IMAGE_ANNOTATION, ""),
        ];
        for (annotation, value) in cases {
            let bad = pod(
                json!({"dig.net/inject": "prod"}),
                json!({"dig.net/volume": "stores", annotation: value}),
            );
            let denial = decide(&bad, "apps").unwrap_err();
            assert_eq!(
                denial.reason(),
                "invalid_annotation",
                "{annotation}={value}"
            );
            let message = denial.to_string();
            assert!(
                message.contains(&format!("{annotation}={value:?}")),
                "{annotation}={value}: {message}"
            );
        }
    }

    #[test]
    fn request_above_limit_and_port_clashes_are_denied() {
        let over = pod(
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "stores", "dig.net/memory-request": "1Gi"}),
        );
        let message = decide(&over, "apps").unwrap_err().to_string();
        assert!(
            message.contains("dig.net/memory-request=\"1Gi\""),
            "{message}"
        );
        assert!(
            message.contains("above the memory limit 512Mi"),
            "{message}"
        );

        let same_ports = pod(
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "stores", "dig.net/api-port": "4001"}),
        );
        assert!(
            decide(&same_ports, "apps")
                .unwrap_err()
                .to_string()
                .contains("must differ")
        );

        let clash = pod(
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "stores", "dig.net/api-port": "80"}),
        );
        let denial = decide(&clash, "apps").unwrap_err();
        assert_eq!(denial.reason(), "port_conflict");
        let message = denial.to_string();
        assert!(
            message.contains("port 80 is already used by container \"app\""),
            "{message}"
        );
        assert!(message.contains(API_PORT_ANNOTATION), "{message}");
    }

    #[test]
    fn non_root_pod_user_is_inherited_and_root_is_replaced() {
        let mut as_app_user = labelled_pod();
        as_app_user["spec"]["securityContext"] = json!({"runAsUser": 1000, "fsGroup": 1000});
        let document = patched(&as_app_user, "apps");
        assert!(
            sidecar(&document)["securityContext"]
                .get("runAsUser")
                .is_none()
        );
        let mut as_root = labelled_pod();
        as_root["spec"]["securityContext"] = json!({"runAsUser": 0});
        let document = patched(&as_root, "apps");
        assert_eq!(
            sidecar(&document)["securityContext"]["runAsUser"],
            DEFAULT_RUN_AS_USER
        );
    }

    #[test]
    fn a_volume_the_non_root_sidecar_may_not_write_gets_a_warning() {
        let warnings = |security: Value, volume: Value| {
            let mut pod_json = labelled_pod();
            pod_json["spec"]["securityContext"] = security;
            pod_json["spec"]["volumes"][0] = volume;
            let pod: Pod = serde_json::from_value(pod_json).unwrap();
            injection_warnings(&pod)
        };
        let claim = json!({"name": "stores", "persistentVolumeClaim": {"claimName": "stores"}});
        let found = warnings(json!({}), claim.clone());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("uid 65532"), "{}", found[0]);
        assert!(found[0].contains("volume \"stores\""), "{}", found[0]);
        // fsGroup makes the volume group-writable; a shared non-root user writes like the app.
        assert!(warnings(json!({"fsGroup": 2000}), claim.clone()).is_empty());
        assert!(warnings(json!({"runAsUser": 1000}), claim.clone()).is_empty());
        // Root app, no fsGroup: the sidecar is not root, so the warning stands.
        assert_eq!(warnings(json!({"runAsUser": 0}), claim).len(), 1);
        // emptyDir is writable by every user.
        assert!(warnings(json!({}), json!({"name": "stores", "emptyDir": {}})).is_empty());

        // A claim in a ReplicaSet's template is shared by all its pods.
        let mut replica = labelled_pod();
        replica["spec"]["securityContext"] = json!({"fsGroup": 2000});
        replica["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "web-6d4f", "uid": "1", "controller": true}]);
        let found = injection_warnings(&serde_json::from_value(replica.clone()).unwrap());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("ReplicaSet \"web-6d4f\""), "{}", found[0]);
        // A StatefulSet's pods each get their own claim.
        replica["metadata"]["ownerReferences"][0]["kind"] = json!("StatefulSet");
        assert!(injection_warnings(&serde_json::from_value(replica).unwrap()).is_empty());

        let mut on_host = labelled_pod();
        on_host["spec"]["hostNetwork"] = json!(true);
        on_host["spec"]["volumes"][0] = json!({"name": "stores", "emptyDir": {}});
        let found = injection_warnings(&serde_json::from_value(on_host).unwrap());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("host network"), "{}", found[0]);
        assert!(found[0].contains(P2P_PORT_ANNOTATION), "{}", found[0]);
    }

    #[test]
    fn the_psk_file_is_group_readable_with_an_fs_group() {
        let mut private = network();
        private.psk_secret = Some(SecretKeySelector {
            name: "prod-psk".to_string(),
            key: "swarm.key".to_string(),
        });
        let mut pod_json = labelled_pod();
        pod_json["spec"]["securityContext"] = json!({"fsGroup": 2000});
        let pod: Pod = serde_json::from_value(pod_json.clone()).unwrap();
        let patch = build_patch(&pod, "apps", Some(&private), &InjectorSettings::default())
            .unwrap()
            .into_patch()
            .unwrap();
        json_patch::patch(&mut pod_json, &patch).unwrap();
        let psk_volume = pod_json["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == PSK_VOLUME_NAME)
            .unwrap();
        assert_eq!(psk_volume["secret"]["defaultMode"], 0o440);
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("250m").unwrap(), 0.25);
        assert_eq!(parse_quantity("2").unwrap(), 2.0);
        assert_eq!(parse_quantity("64Mi").unwrap(), 64.0 * 1024.0 * 1024.0);
        assert_eq!(parse_quantity("1e3").unwrap(), 1000.0);
        assert_eq!(parse_quantity(".5").unwrap(), 0.5);
        for bad in ["", "m", "-1", "1.2.3", "12MB", "1 Gi", "1e999", "9e308Ei"] {
            assert!(parse_quantity(bad).is_err(), "{bad:?}");
        }
    }
}
