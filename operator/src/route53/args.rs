//! `dig-operator` flags of the AWS side (each also as an environment variable). Credentials come
//! from the standard AWS chain: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, a web identity token
//! (IRSA: `AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`), EKS pod identity, a profile, IMDS.

use std::time::Duration;

use clap::Args;

use super::client::AwsSettings;

#[derive(Clone, Debug, Args)]
pub struct AwsArgs {
    /// Region the Route53 client signs for (Route53 is global); `AWS_REGION`, else us-east-1.
    #[arg(long, env = "DIG_OPERATOR_AWS_REGION")]
    pub aws_region: Option<String>,

    /// Region of the CloudWatch alarms on health checks: Route53 publishes health check metrics
    /// in us-east-1 only.
    #[arg(
        long,
        env = "DIG_OPERATOR_CLOUDWATCH_REGION",
        default_value = "us-east-1"
    )]
    pub cloudwatch_region: String,

    /// Endpoint of both Route53 and CloudWatch instead of AWS's (a VPC endpoint, a test
    /// stand-in). `AWS_ENDPOINT_URL` works too.
    #[arg(long, env = "DIG_OPERATOR_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,

    /// Attempts of one AWS call, with exponential backoff (the SDK's standard retry mode).
    #[arg(long, env = "DIG_OPERATOR_AWS_MAX_ATTEMPTS", default_value_t = 3)]
    pub aws_max_attempts: u32,

    /// Written into every `_dig-owner` TXT record: the records of another cluster's operator
    /// (another owner id) are never touched. Set one per cluster sharing a hosted zone.
    #[arg(
        long,
        env = "DIG_OPERATOR_ROUTE53_OWNER_ID",
        default_value = "dig-operator"
    )]
    pub route53_owner_id: String,

    /// Seconds after which an unchanged network's AWS objects are read again (drift repair).
    /// Route53 allows five calls a second per account: keep it long.
    #[arg(long, env = "DIG_OPERATOR_AWS_RESYNC_SECONDS", default_value_t = 600)]
    pub aws_resync_seconds: u64,
}

impl AwsArgs {
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.aws_region.clone(),
            cloudwatch_region: self.cloudwatch_region.clone(),
            endpoint_url: self.aws_endpoint_url.clone(),
            max_attempts: self.aws_max_attempts,
            static_credentials: None,
        }
    }

    pub fn resync(&self) -> Duration {
        Duration::from_secs(self.aws_resync_seconds.max(10))
    }
}
