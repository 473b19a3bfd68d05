//! The thin edge to AWS: Route53 and CloudWatch calls with the official SDK, turned into the
//! planner's plain values. Every call names its IAM action ([`Action`]); the chart's IAM policy is
//! checked against that list, so the policy grants exactly what the code calls.

use std::{collections::BTreeMap, fmt, time::Duration};

use aws_config::{
    BehaviorVersion, Region, environment::region::EnvironmentVariableRegionProvider,
    meta::region::RegionProviderChain, profile::ProfileFileRegionProvider, retry::RetryConfig,
    timeout::TimeoutConfig,
};
use aws_sdk_cloudwatch::types::{
    AlarmType, ComparisonOperator, Dimension, Statistic as CwStatistic,
};
use aws_sdk_route53::{
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    types::{
        Change as SdkChange, ChangeAction, ChangeBatch, HealthCheckRegion, HealthCheckType,
        ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover, RrType, Tag, TagResourceType,
    },
};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use super::model::{
    Alarm, FailoverRole, HealthCheck, HealthCheckConfig, HostedZone, RecordKey, RecordSet,
    RecordType, Routing, Target, normalize_name,
};
use super::plan::Change;

/// Every AWS API call the operator makes, named as IAM names its action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    ListHostedZonesByName,
    GetHostedZone,
    ListResourceRecordSets,
    ChangeResourceRecordSets,
    ListHealthChecks,
    CreateHealthCheck,
    UpdateHealthCheck,
    DeleteHealthCheck,
    ChangeTagsForResource,
    DescribeAlarms,
    PutMetricAlarm,
    DeleteAlarms,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Self::ListHostedZonesByName,
        Self::GetHostedZone,
        Self::ListResourceRecordSets,
        Self::ChangeResourceRecordSets,
        Self::ListHealthChecks,
        Self::CreateHealthCheck,
        Self::UpdateHealthCheck,
        Self::DeleteHealthCheck,
        Self::ChangeTagsForResource,
        Self::DescribeAlarms,
        Self::PutMetricAlarm,
        Self::DeleteAlarms,
    ];

    /// The IAM action, e.g. `route53:ChangeResourceRecordSets`.
    pub fn iam(self) -> String {
        let service = match self {
            Self::DescribeAlarms | Self::PutMetricAlarm | Self::DeleteAlarms => "cloudwatch",
            _ => "route53",
        };
        format!("{service}:{self:?}")
    }
}

/// What kind of failure an AWS error is: the reason of the `DnsSynced` condition and the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AwsErrorKind {
    /// Rate exceeded even after the SDK's own retries.
    Throttled,
    /// No credentials found, or AWS refused them.
    InvalidCredentials,
    /// The credentials are good but the IAM policy does not allow the call.
    AccessDenied,
    HostedZoneNotFound,
    /// Route53 refused a change batch (e.g. a CNAME beside other records).
    InvalidChange,
    /// AWS could not be reached (DNS, connection, time-out).
    Unreachable,
    Other,
}

impl AwsErrorKind {
    /// Condition and event reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Throttled => "AwsThrottled",
            Self::InvalidCredentials => "AwsInvalidCredentials",
            Self::AccessDenied => "AwsAccessDenied",
            Self::HostedZoneNotFound => "HostedZoneNotFound",
            Self::InvalidChange => "Route53ChangeRejected",
            Self::Unreachable => "AwsUnreachable",
            Self::Other => "AwsError",
        }
    }
}

/// A failed AWS call: which action, on what, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} on {subject} failed: {message}", action.iam())]
pub struct AwsError {
    pub action: Action,
    pub subject: String,
    pub kind: AwsErrorKind,
    pub message: String,
}

fn classify<E, R>(error: &SdkError<E, R>) -> AwsErrorKind
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => match service.err().code().unwrap_or_default() {
            "Throttling"
            | "ThrottlingException"
            | "PriorRequestNotComplete"
            | "RequestLimitExceeded"
            | "TooManyRequestsException" => AwsErrorKind::Throttled,
            "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "UnrecognizedClientException"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
            | "InvalidSignatureException" => AwsErrorKind::InvalidCredentials,
            "AccessDenied" | "AccessDeniedException" => AwsErrorKind::AccessDenied,
            "NoSuchHostedZone" => AwsErrorKind::HostedZoneNotFound,
            "InvalidChangeBatch" | "InvalidInput" => AwsErrorKind::InvalidChange,
            _ => AwsErrorKind::Other,
        },
        // No credentials at all fails before anything is sent, in whatever variant the SDK uses.
        other
            if DisplayErrorContext(other)
                .to_string()
                .contains("credential") =>
        {
            AwsErrorKind::InvalidCredentials
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => AwsErrorKind::Unreachable,
        _ => AwsErrorKind::Other,
    }
}

/// AWS's code and message for an answer AWS gave (`Throttling: Rate exceeded`), the whole chain
/// of causes otherwise (no answer, no credentials).
fn describe_error<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => {
            let meta = service.err();
            format!(
                "{}: {}",
                meta.code().unwrap_or("an error without a code"),
                meta.message().unwrap_or("no message")
            )
        }
        other => DisplayErrorContext(other).to_string(),
    }
}

/// Where and how the operator talks to AWS (operator flags).
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    /// Region of the Route53 client (Route53 is global; this is where requests are signed).
    pub region: Option<String>,
    /// Region of the CloudWatch alarms: `us-east-1`, where Route53 publishes health check metrics.
    pub cloudwatch_region: String,
    /// An endpoint for both services instead of AWS's (a test stand-in, a VPC endpoint).
    pub endpoint_url: Option<String>,
    /// Attempts of one call (the SDK's standard retry mode, exponential backoff with jitter).
    pub max_attempts: u32,
    /// An access key id and secret instead of the credential chain (tests: the chain would ask
    /// the instance metadata service).
    pub static_credentials: Option<(String, String)>,
}

/// Route53 and CloudWatch clients, with the standard credential chain (environment, web
/// identity token for IRSA, EKS pod identity and ECS container credentials, profiles, IMDS).
#[derive(Clone, Debug)]
pub struct AwsClient {
    route53: aws_sdk_route53::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
}

impl AwsClient {
    /// Loads the configuration; credentials are resolved at the first call, not here.
    pub async fn new(settings: &AwsSettings) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            );
        // Route53 is global: without a region set, the environment or a profile may name one,
        // else us-east-1. The instance metadata service is not asked: on a cluster that is not
        // on AWS it answers with a warning at every start, and its region means nothing here.
        loader = match &settings.region {
            Some(region) => loader.region(Region::new(region.clone())),
            None => loader.region(
                RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                    .or_else(ProfileFileRegionProvider::new())
                    .or_else(Region::new("us-east-1")),
            ),
        };
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some((key, secret)) = &settings.static_credentials {
            loader = loader.credentials_provider(aws_sdk_route53::config::Credentials::new(
                key, secret, None, None, "static",
            ));
        }
        let shared = loader.load().await;
        let route53_config = aws_sdk_route53::config::Builder::from(&shared)
            .region(
                shared
                    .region()
                    .cloned()
                    .unwrap_or_else(|| Region::new("us-east-1")),
            )
            .build();
        let cloudwatch_config = aws_sdk_cloudwatch::config::Builder::from(&shared)
            .region(Region::new(settings.cloudwatch_region.clone()))
            .build();
        Self {
            route53: aws_sdk_route53::Client::from_conf(route53_config),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cloudwatch_config),
        }
    }

    /// Awaits one SDK call, naming its IAM action and subject in the error.
    async fn call<T, E, R>(
        &self,
        action: Action,
        subject: &str,
        request: impl std::future::Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        request.await.map_err(|error| AwsError {
            action,
            subject: subject.to_string(),
            kind: classify(&error),
            message: describe_error(&error),
        })
    }

    /// The hosted zone of `id`.
    pub async fn hosted_zone(&self, id: &str) -> Result<HostedZone, AwsError> {
        let subject = format!("hosted zone {id}");
        let out = self
            .call(
                Action::GetHostedZone,
                &subject,
                self.route53.get_hosted_zone().id(id).send(),
            )
            .await?;
        let zone = out.hosted_zone().ok_or_else(|| AwsError {
            action: Action::GetHostedZone,
            subject,
            kind: AwsErrorKind::HostedZoneNotFound,
            message: "the answer has no hosted zone".into(),
        })?;
        Ok(HostedZone {
            id: zone.id().trim_start_matches("/hostedzone/").to_string(),
            name: normalize_name(zone.name()),
        })
    }

    /// The hosted zones named exactly `name` (a public and a private one may share it).
    pub async fn hosted_zones_named(&self, name: &str) -> Result<Vec<HostedZone>, AwsError> {
        let out = self
            .call(
                Action::ListHostedZonesByName,
                &format!("zone name {name}"),
                self.route53
                    .list_hosted_zones_by_name()
                    .dns_name(name)
                    .max_items(10)
                    .send(),
            )
            .await?;
        Ok(out
            .hosted_zones()
            .iter()
            .map(|z| HostedZone {
                id: z.id().trim_start_matches("/hostedzone/").to_string(),
                name: normalize_name(z.name()),
            })
            .filter(|z| z.name == normalize_name(name))
            .collect())
    }

    /// Record sets named exactly `name` (every type), read page by page from that name on.
    pub async fn record_sets_named(
        &self,
        zone: &HostedZone,
        name: &str,
    ) -> Result<Vec<RecordSet>, AwsError> {
        let wanted = normalize_name(name);
        let subject = format!("{name} in hosted zone {} ({})", zone.id, zone.name);
        let mut out = Vec::new();
        let mut start: Option<(String, Option<RrType>, Option<String>)> =
            Some((wanted.clone(), None, None));
        // Bounded: a name holds few record sets; 20 pages of 300 is far beyond any real zone.
        for _ in 0..20 {
            let Some((start_name, start_type, start_id)) = start.take() else {
                break;
            };
            let page = self
                .call(
                    Action::ListResourceRecordSets,
                    &subject,
                    self.route53
                        .list_resource_record_sets()
                        .hosted_zone_id(&zone.id)
                        .start_record_name(start_name)
                        .set_start_record_type(start_type)
                        .set_start_record_identifier(start_id)
                        .max_items(300)
                        .send(),
                )
                .await?;
            let mut past_name = false;
            for record in page.resource_record_sets() {
                if normalize_name(record.name()) != wanted {
                    past_name = true;
                    break;
                }
                if let Some(parsed) = record_set(record) {
                    out.push(parsed);
                }
            }
            if page.is_truncated() && !past_name {
                start = page.next_record_name().map(|n| {
                    (
                        n.to_string(),
                        page.next_record_type().cloned(),
                        page.next_record_identifier().map(str::to_string),
                    )
                });
            }
        }
        Ok(out)
    }

    /// Applies one change batch (atomic: all or nothing).
    pub async fn change_record_sets(
        &self,
        zone: &HostedZone,
        changes: &[Change],
        comment: &str,
    ) -> Result<(), AwsError> {
        let subject = format!(
            "hosted zone {} ({}): {}",
            zone.id,
            zone.name,
            changes
                .iter()
                .map(describe_change)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let sdk_changes = changes
            .iter()
            .map(|change| {
                let (action, record) = match change {
                    Change::Create(r) => (ChangeAction::Create, r),
                    Change::Upsert(r) => (ChangeAction::Upsert, r),
                    Change::Delete(r) => (ChangeAction::Delete, r),
                };
                SdkChange::builder()
                    .action(action)
                    .resource_record_set(sdk_record_set(record))
                    .build()
                    .expect("a change has its action and record set")
            })
            .collect();
        let batch = ChangeBatch::builder()
            .comment(comment)
            .set_changes(Some(sdk_changes))
            .build()
            .expect("a change batch has its changes");
        self.call(
            Action::ChangeResourceRecordSets,
            &subject,
            self.route53
                .change_resource_record_sets()
                .hosted_zone_id(&zone.id)
                .change_batch(batch)
                .send(),
        )
        .await?;
        Ok(())
    }

    /// The health checks whose caller reference starts with `prefix` (the operator's own).
    pub async fn health_checks(&self, prefix: &str) -> Result<Vec<HealthCheck>, AwsError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        // Route53 allows 200 health checks per account by default (up to a few thousand on
        // request): 10 pages of 1000 is more than any account holds.
        for _ in 0..10 {
            let page = self
                .call(
                    Action::ListHealthChecks,
                    "the account's health checks",
                    self.route53
                        .list_health_checks()
                        .set_marker(marker.take())
                        .max_items(1000)
                        .send(),
                )
                .await?;
            out.extend(
                page.health_checks()
                    .iter()
                    .filter(|h| h.caller_reference().starts_with(prefix))
                    .filter_map(health_check),
            );
            match page.next_marker().filter(|_| page.is_truncated()) {
                Some(next) => marker = Some(next.to_string()),
                None => break,
            }
        }
        Ok(out)
    }

    /// Makes a health check and names it (`Name` tag) for the console. Returns its id.
    pub async fn create_health_check(
        &self,
        config: &HealthCheckConfig,
        caller_reference: &str,
        name_tag: &str,
    ) -> Result<String, AwsError> {
        let subject = format!("{} {}", config.protocol, config.target);
        let mut builder = aws_sdk_route53::types::HealthCheckConfig::builder()
            .r#type(HealthCheckType::from(config.protocol))
            .port(config.port)
            .resource_path(&config.path)
            .request_interval(config.request_interval)
            .failure_threshold(config.failure_threshold)
            .set_regions(regions(&config.regions));
        builder = match &config.target {
            Target::Ip(ip) => builder.ip_address(ip),
            Target::Hostname(host) => builder
                .fully_qualified_domain_name(host)
                .enable_sni(config.protocol == "HTTPS"),
        };
        let sdk_config = builder.build().expect("a health check config has its type");
        let out = self
            .call(
                Action::CreateHealthCheck,
                &subject,
                self.route53
                    .create_health_check()
                    .caller_reference(caller_reference)
                    .health_check_config(sdk_config)
                    .send(),
            )
            .await?;
        let id = out
            .health_check()
            .map(|h| h.id().to_string())
            .unwrap_or_default();
        let tag = Tag::builder().key("Name").value(name_tag).build();
        self.call(
            Action::ChangeTagsForResource,
            &format!("health check {id}"),
            self.route53
                .change_tags_for_resource()
                .resource_type(TagResourceType::Healthcheck)
                .resource_id(&id)
                .add_tags(tag)
                .send(),
        )
        .await?;
        Ok(id)
    }

    /// Changes what Route53 allows to change on a health check.
    pub async fn update_health_check(
        &self,
        id: &str,
        version: i64,
        config: &HealthCheckConfig,
    ) -> Result<(), AwsError> {
        let mut request = self
            .route53
            .update_health_check()
            .health_check_id(id)
            .health_check_version(version)
            .port(config.port)
            .resource_path(&config.path)
            .failure_threshold(config.failure_threshold)
            .set_regions(regions(&config.regions));
        request = match &config.target {
            Target::Ip(ip) => request.ip_address(ip),
            Target::Hostname(host) => request.fully_qualified_domain_name(host),
        };
        self.call(
            Action::UpdateHealthCheck,
            &format!("health check {id}"),
            request.send(),
        )
        .await?;
        Ok(())
    }

    pub async fn delete_health_check(&self, id: &str) -> Result<(), AwsError> {
        let result = self
            .call(
                Action::DeleteHealthCheck,
                &format!("health check {id}"),
                self.route53
                    .delete_health_check()
                    .health_check_id(id)
                    .send(),
            )
            .await;
        match result {
            // Already gone: what deleting wanted.
            Err(error) if error.message.contains("NoSuchHealthCheck") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The metric alarms whose name starts with `prefix` (the operator's own).
    pub async fn alarms(&self, prefix: &str) -> Result<Vec<Alarm>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..20 {
            let page = self
                .call(
                    Action::DescribeAlarms,
                    &format!("alarms named {prefix}*"),
                    self.cloudwatch
                        .describe_alarms()
                        .alarm_name_prefix(prefix)
                        .alarm_types(AlarmType::MetricAlarm)
                        .set_next_token(token.take())
                        .max_records(100)
                        .send(),
                )
                .await?;
            out.extend(page.metric_alarms().iter().filter_map(|a| {
                Some(Alarm {
                    name: a.alarm_name()?.to_string(),
                    description: a.alarm_description().unwrap_or_default().to_string(),
                    health_check_id: a
                        .dimensions()
                        .iter()
                        .find(|d| d.name() == Some("HealthCheckId"))
                        .and_then(|d| d.value())
                        .unwrap_or_default()
                        .to_string(),
                    evaluation_periods: a.evaluation_periods().unwrap_or_default(),
                    actions: a.alarm_actions().to_vec(),
                })
            }));
            match page.next_token() {
                Some(next) => token = Some(next.to_string()),
                None => break,
            }
        }
        Ok(out)
    }

    /// Creates or overwrites an alarm: ALARM while the health check's minimum status over a
    /// minute is below 1 (unhealthy) for `evaluation_periods` minutes.
    pub async fn put_alarm(&self, alarm: &Alarm) -> Result<(), AwsError> {
        let actions = (!alarm.actions.is_empty()).then(|| alarm.actions.clone());
        self.call(
            Action::PutMetricAlarm,
            &format!("alarm {}", alarm.name),
            self.cloudwatch
                .put_metric_alarm()
                .alarm_name(&alarm.name)
                .alarm_description(&alarm.description)
                .namespace("AWS/Route53")
                .metric_name("HealthCheckStatus")
                .dimensions(
                    Dimension::builder()
                        .name("HealthCheckId")
                        .value(&alarm.health_check_id)
                        .build(),
                )
                .statistic(CwStatistic::Minimum)
                .period(60)
                .evaluation_periods(alarm.evaluation_periods)
                .threshold(1.0)
                .comparison_operator(ComparisonOperator::LessThanThreshold)
                .set_alarm_actions(actions.clone())
                .set_ok_actions(actions)
                .send(),
        )
        .await?;
        Ok(())
    }

    pub async fn delete_alarms(&self, names: &[String]) -> Result<(), AwsError> {
        // DeleteAlarms takes at most 100 names.
        for chunk in names.chunks(100) {
            self.call(
                Action::DeleteAlarms,
                &format!("alarms {}", chunk.join(", ")),
                self.cloudwatch
                    .delete_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .send(),
            )
            .await?;
        }
        Ok(())
    }
}

fn regions(regions: &[String]) -> Option<Vec<HealthCheckRegion>> {
    (!regions.is_empty()).then(|| {
        regions
            .iter()
            .map(|r| HealthCheckRegion::from(r.as_str()))
            .collect()
    })
}

fn describe_change(change: &Change) -> String {
    let verb = match change {
        Change::Create(_) => "CREATE",
        Change::Upsert(_) => "UPSERT",
        Change::Delete(_) => "DELETE",
    };
    format!("{verb} {}", change.record().key)
}

fn health_check(sdk: &aws_sdk_route53::types::HealthCheck) -> Option<HealthCheck> {
    let config = sdk.health_check_config()?;
    let protocol = match config.r#type().as_str() {
        "HTTP" => "HTTP",
        "HTTPS" => "HTTPS",
        // Another kind (TCP, CALCULATED...) with our caller reference: never made by us as such;
        // the planner treats it as an address it does not know and replaces it.
        _ => "OTHER",
    };
    let target = match (config.ip_address(), config.fully_qualified_domain_name()) {
        (Some(ip), _) => Target::Ip(ip.to_string()),
        (None, Some(host)) => Target::Hostname(normalize_name(host)),
        (None, None) => return None,
    };
    let mut regions: Vec<String> = config
        .regions()
        .iter()
        .map(|r| r.as_str().to_string())
        .collect();
    regions.sort();
    Some(HealthCheck {
        id: sdk.id().to_string(),
        caller_reference: sdk.caller_reference().to_string(),
        version: sdk.health_check_version(),
        config: HealthCheckConfig {
            target,
            protocol,
            port: config.port().unwrap_or(80),
            path: config.resource_path().unwrap_or("/").to_string(),
            request_interval: config.request_interval().unwrap_or(30),
            failure_threshold: config.failure_threshold().unwrap_or(3),
            regions,
        },
    })
}

fn record_set(sdk: &ResourceRecordSet) -> Option<RecordSet> {
    let type_ = RecordType::parse(sdk.r#type().as_str())?;
    let routing = match (sdk.weight(), sdk.failover(), sdk.multi_value_answer()) {
        (Some(weight), _, _) => Routing::Weighted(weight),
        (None, Some(ResourceRecordSetFailover::Primary), _) => {
            Routing::Failover(FailoverRole::Primary)
        }
        (None, Some(ResourceRecordSetFailover::Secondary), _) => {
            Routing::Failover(FailoverRole::Secondary)
        }
        (None, _, Some(true)) => Routing::MultiValue,
        _ => Routing::Simple,
    };
    Some(RecordSet {
        key: RecordKey {
            name: normalize_name(sdk.name()),
            type_,
            set_identifier: sdk.set_identifier().map(str::to_string),
        },
        ttl: sdk.ttl().unwrap_or_default(),
        values: sdk
            .resource_records()
            .iter()
            .map(|r| match type_ {
                RecordType::Cname => normalize_name(r.value()),
                _ => r.value().to_string(),
            })
            .collect(),
        routing,
        health_check_id: sdk.health_check_id().map(str::to_string),
    })
}

fn sdk_record_set(record: &RecordSet) -> ResourceRecordSet {
    let mut builder = ResourceRecordSet::builder()
        .name(&record.key.name)
        .r#type(RrType::from(record.key.type_.as_str()))
        .ttl(record.ttl)
        .set_set_identifier(record.key.set_identifier.clone())
        .set_health_check_id(record.health_check_id.clone())
        .set_resource_records(Some(
            record
                .values
                .iter()
                .map(|v| {
                    ResourceRecord::builder()
                        .value(v)
                        .build()
                        .expect("a resource record has its value")
                })
                .collect(),
        ));
    builder = match record.routing {
        Routing::Weighted(weight) => builder.weight(weight),
        Routing::Failover(FailoverRole::Primary) => {
            builder.failover(ResourceRecordSetFailover::Primary)
        }
        Routing::Failover(FailoverRole::Secondary) => {
            builder.failover(ResourceRecordSetFailover::Secondary)
        }
        Routing::MultiValue => builder.multi_value_answer(true),
        Routing::Simple => builder,
    };
    builder.build().expect("a record set has its name and type")
}

/// Health check ids by address, for the status.
pub fn by_target(health_checks: &BTreeMap<Target, String>) -> Vec<(String, String)> {
    health_checks
        .iter()
        .map(|(target, id)| (target.to_string(), id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart's IAM policy grants exactly the actions the client calls.
    #[test]
    fn the_iam_policy_grants_exactly_what_the_client_calls() {
        let policy: serde_json::Value =
            serde_json::from_str(include_str!("../../../charts/dig-operator/iam-policy.json"))
                .expect("the IAM policy is JSON");
        let mut granted: Vec<String> = policy["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .inspect(|s| assert_eq!(s["Effect"], "Allow", "{s}"))
            .flat_map(|s| match &s["Action"] {
                serde_json::Value::String(one) => vec![one.clone()],
                many => many
                    .as_array()
                    .expect("Action is a string or a list")
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
            })
            .collect();
        granted.sort();
        let dedup_len = {
            let mut d = granted.clone();
            d.dedup();
            d.len()
        };
        assert_eq!(dedup_len, granted.len(), "an action is granted twice");
        let mut called: Vec<String> = Action::ALL.iter().map(|a| a.iam()).collect();
        called.sort();
        assert_eq!(granted, called);
    }

    /// Every SDK call goes through `call` with its action, and every declared action is used.
    #[test]
    fn every_sdk_call_names_its_action() {
        let source = include_str!("client.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        let sends = code.matches(".send()").count();
        let calls = code.matches(".call(").count();
        assert!(code.contains("async fn call<"));
        assert!(sends > 0);
        assert_eq!(sends, calls, "an SDK call bypasses `call` (and its action)");
        for action in Action::ALL {
            assert!(
                code.contains(&format!("Action::{action:?},")),
                "Action::{action:?} is declared but never called"
            );
        }
    }

    #[test]
    fn records_round_trip_through_the_sdk_types() {
        let record = RecordSet {
            key: RecordKey {
                name: "bootstrap.example.com".into(),
                type_: RecordType::A,
                set_identifier: Some("eu/203.0.113.7".into()),
            },
            ttl: 60,
            values: vec!["203.0.113.7".into()],
            routing: Routing::Weighted(10),
            health_check_id: Some("hc-1".into()),
        };
        assert_eq!(record_set(&sdk_record_set(&record)), Some(record.clone()));
        let failover = RecordSet {
            routing: Routing::Failover(FailoverRole::Secondary),
            ..record.clone()
        };
        assert_eq!(record_set(&sdk_record_set(&failover)), Some(failover));
        let multi = RecordSet {
            routing: Routing::MultiValue,
            health_check_id: None,
            ..record
        };
        assert_eq!(record_set(&sdk_record_set(&multi)), Some(multi));
    }

    #[test]
    fn errors_are_classified_by_their_code() {
        use aws_sdk_route53::operation::list_health_checks::ListHealthChecksError;
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::{body::SdkBody, error::ErrorMetadata};
        let error = |code: &str| {
            SdkError::service_error(
                ListHealthChecksError::generic(ErrorMetadata::builder().code(code).build()),
                Response::new(StatusCode::try_from(400).unwrap(), SdkBody::empty()),
            )
        };
        assert_eq!(classify(&error("Throttling")), AwsErrorKind::Throttled);
        assert_eq!(
            classify(&error("InvalidClientTokenId")),
            AwsErrorKind::InvalidCredentials
        );
        assert_eq!(classify(&error("AccessDenied")), AwsErrorKind::AccessDenied);
        assert_eq!(
            classify(&error("NoSuchHostedZone")),
            AwsErrorKind::HostedZoneNotFound
        );
        assert_eq!(classify(&error("Whatever")), AwsErrorKind::Other);
    }
}
