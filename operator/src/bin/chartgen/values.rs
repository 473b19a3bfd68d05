//! The chart's values as Rust types. `values.schema.json` is generated from them, and a test
//! parses the chart's `values.yaml` into them, so the schema, the defaults and the documentation
//! cannot drift apart. Doc comments become the schema's descriptions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Values of the dig-operator Helm chart.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "dig-operator chart values")]
pub struct ChartValues {
    /// Overrides the chart name in object names.
    pub name_override: String,
    /// Overrides the full name (`<release>-dig-operator`) of every object.
    pub fullname_override: String,
    /// The DigNetwork and DigNode CRDs.
    pub crds: Crds,
    /// Number of operator replicas. One is active at a time (a coordination.k8s.io Lease); the
    /// others take over when it stops.
    #[schemars(range(min = 0, max = 10))]
    pub replica_count: u32,
    /// The operator image.
    pub image: Image,
    /// Images the operator gives DigNetworks and DigNodes that name none, and the sidecar it
    /// injects.
    pub data_plane_images: DataPlaneImages,
    /// Names of `kubernetes.io/dockerconfigjson` Secrets used to pull the images.
    pub image_pull_secrets: Vec<String>,
    /// Namespaces the operator watches. Empty: every namespace, with a ClusterRole. Set: only
    /// these namespaces, with a Role and RoleBinding in each.
    pub watch_namespaces: Vec<KubernetesName>,
    /// Names of the pre-shared key Secrets (`privateNetwork.pskSecretRef.name`) the operator may
    /// read. Empty: any Secret of the watched namespaces, by name only (`get`; the operator can
    /// never list or watch Secrets). Set: only Secrets of these names.
    pub psk_secret_names: Vec<SecretName>,
    /// How the operator runs.
    pub operator: OperatorSettings,
    /// The operator's ServiceAccount.
    pub service_account: ServiceAccount,
    /// Annotations added to the operator pods.
    pub pod_annotations: BTreeMap<String, String>,
    /// Labels added to the operator pods.
    pub pod_labels: BTreeMap<String, String>,
    /// Security context of the operator pods.
    pub pod_security_context: PodSecurityContext,
    /// Security context of the operator container.
    pub security_context: SecurityContext,
    /// Resources of the operator container.
    pub resources: ResourceRequirements,
    /// Node labels the operator pods must run on.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the operator pods.
    pub tolerations: Vec<Toleration>,
    /// Affinity of the operator pods; empty spreads the replicas over nodes (preferred).
    pub affinity: Affinity,
    /// Topology spread constraints of the operator pods.
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// PriorityClass of the operator pods.
    pub priority_class_name: String,
    /// PodDisruptionBudget of the operator (only with more than one replica).
    pub pod_disruption_budget: PodDisruptionBudget,
    /// The operator's HTTP server (`/metrics`, `/healthz`, `/readyz`) and its Service.
    pub metrics: Metrics,
    /// The sidecar-injection webhook.
    pub webhook: Webhook,
    /// ServiceMonitor of the operator (only when the monitoring.coreos.com/v1 API exists).
    pub service_monitor: ServiceMonitor,
    /// PrometheusRule with the DIG alerts (only when the monitoring.coreos.com/v1 API exists).
    pub prometheus_rule: PrometheusRule,
    /// Grafana dashboards as ConfigMaps for the Grafana sidecar.
    pub dashboards: Dashboards,
    /// The `helm test` pod.
    pub test: TestPod,
    /// Values a parent chart shares with its subcharts; unused here, accepted so the chart can
    /// be a dependency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<serde_json::Value>,
}

/// A Kubernetes object name (RFC 1123 label).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct KubernetesName(
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))] pub String,
);

/// A Secret name (RFC 1123 subdomain).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SecretName(
    #[schemars(
        pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"),
        length(max = 253)
    )]
    pub String,
);

/// A Prometheus duration such as `30s` or `1m30s`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct PrometheusDuration(#[schemars(pattern(r"^([0-9]+(ms|s|m|h|d|w|y))+$"))] pub String);

/// A Go duration such as `2160h` or `15m`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct GoDuration(
    #[schemars(pattern(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))] pub String,
);

/// A TCP port.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Port(#[schemars(range(min = 1))] pub u16);

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Crds {
    /// Install and upgrade the DigNetwork and DigNode CRDs with the chart. They carry
    /// `helm.sh/resource-policy: keep`, so `helm uninstall` never deletes users' networks.
    pub install: bool,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    /// Operator image repository.
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Image tag; the chart's appVersion when empty.
    pub tag: String,
    /// Image digest (`sha256:...`); wins over the tag when set.
    #[schemars(pattern(r"^(sha256:[0-9a-f]{64})?$"))]
    pub digest: String,
    /// Image pull policy.
    pub pull_policy: PullPolicy,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataPlaneImages {
    /// The dig-bootstrap image (`spec.bootstrap.image` of networks that set none).
    pub bootstrap: RepositoryAndTag,
    /// The dig-sidecar image (StatefulSet nodes, DigNodes and injected sidecars that set none).
    pub sidecar: RepositoryAndTag,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositoryAndTag {
    /// Image repository.
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Image tag; the chart's appVersion when empty.
    pub tag: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorSettings {
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `info,dig_operator=debug`.
    #[schemars(length(min = 1))]
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Extra command-line arguments for the operator.
    pub extra_args: Vec<String>,
    /// Extra environment variables for the operator container.
    pub extra_env: Vec<EnvVar>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccount {
    /// Create the operator's ServiceAccount.
    pub create: bool,
    /// Name of the ServiceAccount; the full name when empty.
    pub name: String,
    /// Annotations of the ServiceAccount (e.g. `eks.amazonaws.com/role-arn` for IRSA).
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDisruptionBudget {
    /// Create a PodDisruptionBudget for the operator (only with more than one replica).
    pub enabled: bool,
    /// How many operator pods a voluntary disruption may take down at once (a number or a
    /// percentage).
    pub max_unavailable: IntOrString,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    /// Port of the operator's HTTP server (`/metrics`, `/healthz`, `/readyz`).
    pub port: Port,
    /// The metrics Service.
    pub service: MetricsService,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsService {
    /// Type of the metrics Service.
    #[serde(rename = "type")]
    pub type_: ServiceType,
    /// Port of the metrics Service.
    pub port: Port,
    /// Annotations of the metrics Service.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Webhook {
    /// Run the sidecar-injection webhook (pods labelled `dig.net/inject: <network>`).
    pub enabled: bool,
    /// Port the webhook server listens on inside the pod.
    pub port: Port,
    /// What the API server does when the webhook cannot be reached.
    pub failure_policy: FailurePolicy,
    /// Seconds the API server waits for the webhook. At least 6: the webhook gives the API server
    /// 5 s to look up the pod's DigNetwork, and a shorter wait would hide its answer.
    #[schemars(range(min = 6, max = 30))]
    pub timeout_seconds: u32,
    /// The webhook Service.
    pub service: WebhookService,
    /// Extra namespaces where pods are never injected (kube-system and the release namespace
    /// always are).
    pub exclude_namespaces: Vec<KubernetesName>,
    /// Certificates from cert-manager instead of the operator's own.
    pub cert_manager: CertManager,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookService {
    /// Port of the webhook Service.
    pub port: Port,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertManager {
    /// Let cert-manager issue the webhook certificate (a Certificate plus
    /// `cert-manager.io/inject-ca-from`) instead of the operator making, rotating and patching
    /// its own.
    pub enabled: bool,
    /// Issuer of the certificate; empty creates a self-signed Issuer in the release namespace.
    pub issuer_ref: IssuerRef,
    /// Lifetime of the certificate.
    pub duration: GoDuration,
    /// How long before expiry cert-manager renews it.
    pub renew_before: GoDuration,
}

/// A cert-manager issuer reference.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerRef {
    /// Name of the Issuer or ClusterIssuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Issuer` (default) or `ClusterIssuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<IssuerKind>,
    /// API group of the issuer (`cert-manager.io` unless it is an external issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub enum IssuerKind {
    Issuer,
    ClusterIssuer,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMonitor {
    /// Create a ServiceMonitor for the operator.
    pub enabled: bool,
    /// Extra labels, e.g. `release: <prometheus release>` so the Prometheus selects it.
    pub labels: BTreeMap<String, String>,
    /// Scrape interval.
    pub interval: PrometheusDuration,
    /// Scrape timeout.
    pub scrape_timeout: PrometheusDuration,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusRule {
    /// Create the PrometheusRule with the DIG alerts.
    pub enabled: bool,
    /// Extra labels, e.g. `release: <prometheus release>` so the Prometheus selects it.
    pub labels: BTreeMap<String, String>,
    /// Base of every alert's `runbook_url`; `#<alert name in lower case>` is appended.
    #[schemars(length(min = 1))]
    pub runbook_base_url: String,
    /// Extra labels added to every alert (e.g. `team: storage`).
    pub additional_alert_labels: BTreeMap<String, String>,
    /// Minutes a node may have no connected peer before `DigNodeWithoutPeers` fires.
    #[schemars(range(min = 1))]
    pub node_without_peers_minutes: u32,
    /// Pending transfers a node may carry before `DigReplicationLagging` considers it lagging.
    #[schemars(range(min = 1))]
    pub replication_pending_threshold: u32,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dashboards {
    /// Create the Grafana dashboards as ConfigMaps (network overview, node detail, operator).
    pub enabled: bool,
    /// Label the Grafana sidecar looks for (kube-prometheus-stack: `grafana_dashboard`).
    #[schemars(length(min = 1))]
    pub label: String,
    /// Value of that label.
    pub label_value: String,
    /// Namespace of the ConfigMaps; the release namespace when empty.
    pub namespace: String,
    /// Extra labels of the ConfigMaps.
    pub labels: BTreeMap<String, String>,
    /// Annotations of the ConfigMaps (e.g. `grafana_folder: DIG` with the sidecar's
    /// folderAnnotation).
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestPod {
    /// Image of the `helm test` pod (needs `sh` and `wget`).
    #[schemars(length(min = 1))]
    pub image: String,
}
