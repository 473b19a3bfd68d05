//! Every label and annotation the operator writes or reads, in one place: users select and set
//! them, the chart's monitors and the webhook's `objectSelector` name them.

/// Field manager of every server-side apply, and the value of the `managed-by` label.
pub const MANAGER: &str = "dig-operator";

/// `app.kubernetes.io/name`: the program a pod runs.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the DigNetwork or DigNode an object belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: bootstrap, node, ...
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`: [`MANAGER`] on everything the operator makes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Label carrying the network id on every child.
pub const NETWORK_LABEL: &str = "dig.net/network";
/// Label on every child of a DigNode naming the DigNetwork it joins (`spec.networkRef.name`):
/// the network's PodMonitor selects the DigNode pods by it. The network id is not enough, two
/// DigNetworks of a namespace may share one.
pub const NETWORK_REF_LABEL: &str = "dig.net/network-ref";
/// Annotation on pod templates whose change rolls the pods out.
pub const CONFIG_HASH_ANNOTATION: &str = "dig.net/config-hash";
/// On a node pod: it drains before a scale-down stops it (the value: when the drain began).
pub const DRAIN_ANNOTATION: &str = "dig.net/drain";

/// Label that asks for sidecar injection; its value names the DigNetwork (in the pod's namespace)
/// to join. The network's PodMonitor selects injected pods by it too.
pub const INJECT_LABEL: &str = "dig.net/inject";
/// Annotation naming the pod volume whose files the injected node replicates.
pub const VOLUME_ANNOTATION: &str = "dig.net/volume";
/// Per-pod overrides of an injected sidecar.
pub const IMAGE_ANNOTATION: &str = "dig.net/image";
pub const CPU_REQUEST_ANNOTATION: &str = "dig.net/cpu-request";
pub const MEMORY_REQUEST_ANNOTATION: &str = "dig.net/memory-request";
pub const CPU_LIMIT_ANNOTATION: &str = "dig.net/cpu-limit";
pub const MEMORY_LIMIT_ANNOTATION: &str = "dig.net/memory-limit";
pub const P2P_PORT_ANNOTATION: &str = "dig.net/p2p-port";
pub const API_PORT_ANNOTATION: &str = "dig.net/api-port";
/// Set on every injected pod (value: the network), so users and tools can see what happened.
pub const INJECTED_ANNOTATION: &str = "dig.net/injected";
