//! Command-line flags of `dig-operator` (each also as a `DIG_OPERATOR_*` environment variable).

use std::net::SocketAddr;

use clap::Parser;
use dig_core::logging::LogFormat;

use crate::webhook::WebhookArgs;

/// Kubernetes operator for DIG Networks (DigNetwork and DigNode) and the sidecar-injection webhook.
///
/// Runs in a cluster (service account) or outside one with a kubeconfig (`KUBECONFIG`).
#[derive(Clone, Debug, Parser)]
#[command(name = "dig-operator", version)]
pub struct Args {
    /// Namespace to watch (repeatable or comma-separated); every namespace when not given.
    #[arg(
        long = "namespace",
        visible_alias = "watch-namespace",
        env = "DIG_OPERATOR_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Reconcile only while holding a coordination.k8s.io Lease, so several replicas can run.
    #[arg(long, env = "DIG_OPERATOR_LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the leader Lease.
    #[arg(
        long,
        env = "DIG_OPERATOR_LEASE_NAME",
        default_value = "dig-operator-leader"
    )]
    pub lease_name: String,

    /// Namespace of the leader Lease; `POD_NAMESPACE`, else the kubeconfig's namespace.
    #[arg(long, env = "DIG_OPERATOR_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Holder identity in the Lease and events; `POD_NAME`, else the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// dig-sidecar image of networks and nodes that name none.
    #[arg(long, env = "DIG_OPERATOR_DEFAULT_SIDECAR_IMAGE", default_value = concat!("ghcr.io/dig-network/dig-sidecar:", env!("CARGO_PKG_VERSION")))]
    pub default_sidecar_image: String,

    /// dig-bootstrap image of networks that name none.
    #[arg(long, env = "DIG_OPERATOR_DEFAULT_BOOTSTRAP_IMAGE", default_value = concat!("ghcr.io/dig-network/dig-bootstrap:", env!("CARGO_PKG_VERSION")))]
    pub default_bootstrap_image: String,

    /// Address of the HTTP server with `/healthz`, `/readyz` and `/metrics`.
    #[arg(
        long,
        visible_alias = "http-listen",
        env = "DIG_OPERATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_listen: SocketAddr,

    /// Seconds to wait for a bootstrap registry's `/stats` (peer and store counts in the status).
    #[arg(long, env = "DIG_OPERATOR_REGISTRY_TIMEOUT", default_value_t = 2)]
    pub registry_timeout_seconds: u64,

    /// `text` or `json` logs (filter with `RUST_LOG`).
    #[arg(
        long,
        env = "DIG_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub webhook: WebhookArgs,
}

impl Args {
    /// The Lease holder identity.
    pub fn identity(&self) -> String {
        self.identity
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| format!("dig-operator-{}", std::process::id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_outside_a_cluster_without_election() {
        let args = Args::try_parse_from(["dig-operator", "--no-webhook"]).unwrap();
        assert!(args.namespaces.is_empty());
        assert!(!args.leader_election);
        assert_eq!(args.metrics_listen.to_string(), "0.0.0.0:8080");
        assert_eq!(args.lease_name, "dig-operator-leader");
        assert!(
            args.default_sidecar_image
                .starts_with("ghcr.io/dig-network/dig-sidecar:")
        );
    }

    #[test]
    fn every_flag_parses() {
        let args = Args::try_parse_from([
            "dig-operator",
            "--namespace=a,b",
            "--watch-namespace=c",
            "--leader-election",
            "--lease-name=l",
            "--lease-namespace=ops",
            "--identity=pod-1",
            "--default-sidecar-image=s:1",
            "--default-bootstrap-image=b:1",
            "--metrics-listen=127.0.0.1:9000",
            "--registry-timeout-seconds=1",
            "--log-format=json",
        ])
        .unwrap();
        assert_eq!(args.namespaces, ["a", "b", "c"]);
        assert!(args.leader_election);
        assert_eq!(args.lease_namespace.as_deref(), Some("ops"));
        assert_eq!(args.identity(), "pod-1");
        assert_eq!(args.log_format, LogFormat::Json);
        let alias = Args::try_parse_from(["dig-operator", "--http-listen=127.0.0.1:1"]).unwrap();
        assert_eq!(alias.metrics_listen.port(), 1);
    }
}
