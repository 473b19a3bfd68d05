//! What the operator itself makes in AWS for a DigNetwork's DNS: Route53 records written without
//! external-dns, Route53 health checks and the CloudWatch alarms on them.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Hostnames the operator writes into Route53 itself (`route53` mode), instead of asking
/// external-dns for them. Each hostname gets: a record per exposed address of the bootstrap
/// Service (A, AAAA, or CNAME for a load balancer's hostname), tied to that address's health
/// check; the TXT record `_dnsaddr.<hostname>` listing the exposed nodes; and the TXT record
/// `_dig-owner.<hostname>` recording that this DigNetwork owns them. Records the operator did
/// not make are never changed or deleted: a name already taken is reported in the `DnsSynced`
/// condition. Deleting the DigNetwork (or removing this block) deletes what it made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Route53Spec {
    /// Hostnames written into Route53 by the operator. A hostname is either here or in
    /// `dns.hostnames` (external-dns), not both.
    #[schemars(
        length(min = 1, max = 16),
        inner(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$"))
    )]
    pub hostnames: Vec<String>,
    /// Id of the hosted zone (e.g. `Z0123456789ABCDEFGHIJ`). Unset: the hosted zone whose name is
    /// the longest suffix of each hostname (two zones of that name, such as a public and a
    /// private one, need the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^(/hostedzone/)?[A-Z0-9]{1,32}$"))]
    pub hosted_zone_id: Option<String>,
}

/// Route53 health checks on `/health` of every exposed address of the bootstrap Service, made and
/// kept by the operator. Always on for `route53` hostnames; for external-dns hostnames set this
/// block to have the operator make the health check of the first address and write its id into
/// the `aws-health-check-id` annotation (instead of `healthCheckId`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.regions) || size(self.regions) == 0 || size(self.regions) >= 3").message("dns.healthCheck.regions needs at least 3 regions (Route53's minimum), or none for Route53's default"),
)]
pub struct HealthCheckSpec {
    /// `HTTP` (default) or `HTTPS` (the certificate is not verified by Route53).
    #[serde(default)]
    pub protocol: HealthCheckProtocol,
    /// Port checked; the bootstrap port (`bootstrap.port`) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Path requested.
    #[serde(default = "default_health_path")]
    #[schemars(length(min = 1, max = 255), pattern(r"^/"))]
    pub path: String,
    /// Seconds between two checks of one Route53 checker: 10 or 30. Route53 cannot change it on
    /// an existing health check, so a change replaces the health check.
    #[serde(default = "default_request_interval")]
    #[schemars(range(min = 10, max = 30))]
    #[x_kube(validation = Rule::new("self == 10 || self == 30").message("requestInterval is 10 or 30"))]
    pub request_interval: i32,
    /// Consecutive failures (or successes) that flip the status.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 10))]
    pub failure_threshold: i32,
    /// Route53 checker regions (e.g. `us-east-1`); Route53's default set when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub regions: Vec<String>,
    /// The CloudWatch alarm on each health check's status.
    #[serde(default)]
    pub alarm: AlarmSpec,
}

impl Default for HealthCheckSpec {
    fn default() -> Self {
        Self {
            protocol: HealthCheckProtocol::default(),
            port: None,
            path: default_health_path(),
            request_interval: default_request_interval(),
            failure_threshold: default_failure_threshold(),
            regions: Vec::new(),
            alarm: AlarmSpec::default(),
        }
    }
}

fn default_health_path() -> String {
    "/health".to_string()
}
fn default_request_interval() -> i32 {
    30
}
fn default_failure_threshold() -> i32 {
    3
}

/// Protocol of a Route53 health check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HealthCheckProtocol {
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

impl HealthCheckProtocol {
    /// The Route53 `Type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
        }
    }
}

/// A CloudWatch alarm per health check (metric `AWS/Route53` `HealthCheckStatus`, in the
/// CloudWatch region of the operator, `us-east-1` by default, where Route53 publishes it),
/// in state ALARM while the health check reports unhealthy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlarmSpec {
    /// Make the alarms.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// SNS topic told when an alarm fires and when it is back to OK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(
        r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
    ))]
    pub sns_topic_arn: Option<String>,
    /// Minutes the health check must be unhealthy before the alarm fires.
    #[serde(default = "default_evaluation_periods")]
    #[schemars(range(min = 1, max = 60))]
    pub evaluation_periods: i32,
}

impl Default for AlarmSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            sns_topic_arn: None,
            evaluation_periods: default_evaluation_periods(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_evaluation_periods() -> i32 {
    1
}
