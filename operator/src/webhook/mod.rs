//! The sidecar-injection admission webhook: pods labelled `dig.net/inject: <network>` get the
//! node as a native sidecar on the volume named by `dig.net/volume`.
//!
//! - [`patch`]: the pure decision (pod + network in, JSON patch or denial out)
//! - [`certs`]: the webhook's own CA and serving certificate, and when to renew them
//! - [`cert_source`]: the certificate's home (operator Secret, or cert-manager files) and renewal
//! - [`ca_bundle`]: the `caBundle` of the MutatingWebhookConfiguration
//! - [`network`]: the DigNetwork a pod names, as sidecar configuration
//! - [`server`]: HTTPS, `/mutate`, `/healthz`, metrics

pub mod ca_bundle;
pub mod cert_source;
pub mod certs;
pub mod network;
pub mod patch;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use kube::{Api, Client};

use cert_source::{FileCerts, SelfSignedCerts};
use certs::{CertPolicy, SubjectNames};
use network::KubeNetworks;
use patch::InjectorSettings;
use server::{AdmissionContext, ServingCert, WebhookMetrics};

/// Where the webhook's serving certificate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CertMode {
    /// The operator makes its own CA and certificate, keeps them in a Secret, renews them and
    /// writes the CA into the MutatingWebhookConfiguration.
    SelfSigned,
    /// `tls.crt` and `tls.key` in `--webhook-cert-dir` (e.g. cert-manager's Secret mounted there;
    /// cert-manager's CA injector then fills the caBundle).
    External,
}

/// Command-line flags of the webhook (flattened into the operator's).
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// Do not run the sidecar-injection webhook.
    #[arg(long, env = "DIG_OPERATOR_NO_WEBHOOK")]
    pub no_webhook: bool,
    /// Address of the webhook's HTTPS server.
    #[arg(
        long,
        env = "DIG_OPERATOR_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub webhook_listen: SocketAddr,
    /// Name of the Service in front of the webhook: its DNS names go into the certificate.
    #[arg(
        long,
        alias = "webhook-service",
        env = "DIG_OPERATOR_WEBHOOK_SERVICE_NAME",
        default_value = "dig-operator-webhook"
    )]
    pub webhook_service_name: String,
    /// Namespace of that Service and of the certificate Secret; the operator's own namespace
    /// (service account or kubeconfig) when unset.
    #[arg(long, env = "DIG_OPERATOR_WEBHOOK_NAMESPACE")]
    pub webhook_namespace: Option<String>,
    /// Secret holding the operator's webhook CA and certificate (self-signed mode).
    #[arg(
        long,
        env = "DIG_OPERATOR_WEBHOOK_SECRET_NAME",
        default_value = "dig-operator-webhook-tls"
    )]
    pub webhook_secret_name: String,
    /// MutatingWebhookConfiguration whose caBundle the operator keeps (self-signed mode).
    #[arg(
        long,
        env = "DIG_OPERATOR_WEBHOOK_CONFIG_NAME",
        default_value = "dig-operator-sidecar-injector"
    )]
    pub webhook_config_name: String,
    /// `self-signed` (the operator's own CA) or `external` (files from cert-manager). Default:
    /// `external` when `--webhook-cert-dir` is given, else `self-signed`.
    #[arg(long, env = "DIG_OPERATOR_WEBHOOK_CERT_MODE", value_enum)]
    pub webhook_cert_mode: Option<CertMode>,
    /// Directory with `tls.crt` and `tls.key` (external mode; default `/certs`); re-read when
    /// they change.
    #[arg(long, env = "DIG_OPERATOR_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<PathBuf>,
    /// Extra DNS names or IP addresses for the self-signed certificate (repeatable or
    /// comma-separated), e.g. `127.0.0.1` for a webhook reached by URL.
    #[arg(
        long = "webhook-extra-san",
        env = "DIG_OPERATOR_WEBHOOK_EXTRA_SANS",
        value_delimiter = ','
    )]
    pub webhook_extra_sans: Vec<String>,
    /// Namespaces whose pods are never injected (repeatable or comma-separated); `kube-system`
    /// always is.
    #[arg(
        long = "webhook-excluded-namespace",
        env = "DIG_OPERATOR_WEBHOOK_EXCLUDED_NAMESPACES",
        value_delimiter = ','
    )]
    pub webhook_excluded_namespaces: Vec<String>,
}

impl WebhookArgs {
    /// The certificate mode in effect (see `--webhook-cert-mode`).
    pub fn cert_mode(&self) -> CertMode {
        match (self.webhook_cert_mode, &self.webhook_cert_dir) {
            (Some(mode), _) => mode,
            (None, Some(_)) => CertMode::External,
            (None, None) => CertMode::SelfSigned,
        }
    }

    /// The directory of the external certificate files.
    pub fn cert_dir(&self) -> PathBuf {
        self.webhook_cert_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/certs"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Server(#[from] server::ServerError),
}

/// Runs the webhook (certificate upkeep and the HTTPS server) until `shutdown` completes; then
/// lets in-flight reviews finish. Returns early only when the server cannot run (port taken).
/// `serving` is the certificate slot it fills (shared so readiness can look at it).
pub async fn run(
    args: &WebhookArgs,
    client: Client,
    default_sidecar_image: Option<String>,
    metrics: WebhookMetrics,
    serving: Arc<ServingCert>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WebhookError> {
    let namespace = args
        .webhook_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let mut excluded_namespaces = args.webhook_excluded_namespaces.clone();
    excluded_namespaces.push("kube-system".to_string());
    let context = Arc::new(AdmissionContext {
        settings: InjectorSettings {
            excluded_namespaces,
            ..InjectorSettings::default()
        },
        networks: Arc::new(KubeNetworks {
            client: client.clone(),
            default_image: default_sidecar_image,
        }),
        metrics: metrics.clone(),
        serving: serving.clone(),
    });
    let certificates: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = match args.cert_mode() {
        CertMode::SelfSigned => Box::pin(
            SelfSignedCerts {
                secrets: Api::namespaced(client.clone(), &namespace),
                webhook_configs: Api::all(client.clone()),
                namespace: namespace.clone(),
                secret_name: args.webhook_secret_name.clone(),
                config_name: args.webhook_config_name.clone(),
                names: SubjectNames::for_service(
                    &args.webhook_service_name,
                    &namespace,
                    &args.webhook_extra_sans,
                ),
                policy: CertPolicy::default(),
                serving: serving.clone(),
                metrics,
            }
            .run(),
        ),
        CertMode::External => Box::pin(
            FileCerts {
                dir: args.cert_dir(),
                serving: serving.clone(),
                metrics,
            }
            .run(),
        ),
    };
    tracing::info!(
        listen = %args.webhook_listen,
        mode = ?args.cert_mode(),
        %namespace,
        "starting the sidecar-injection webhook"
    );
    let handle = axum_server::Handle::new();
    let server = server::serve(args.webhook_listen, context, handle.clone());
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        () = certificates => {}
        () = shutdown => {
            handle.graceful_shutdown(Some(server::SHUTDOWN_GRACE));
            server.await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        webhook: WebhookArgs,
    }

    fn parse(args: &[&str]) -> WebhookArgs {
        Flags::try_parse_from(std::iter::once("dig-operator").chain(args.iter().copied()))
            .unwrap()
            .webhook
    }

    #[test]
    fn defaults_and_the_cert_mode_rule() {
        let defaults = parse(&[]);
        assert_eq!(defaults.webhook_listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(defaults.cert_mode(), CertMode::SelfSigned);
        assert!(!defaults.no_webhook);
        let files = parse(&["--webhook-cert-dir", "/etc/tls"]);
        assert_eq!(files.cert_mode(), CertMode::External);
        assert_eq!(files.cert_dir(), PathBuf::from("/etc/tls"));
        let external = parse(&["--webhook-cert-mode", "external"]);
        assert_eq!(external.cert_dir(), PathBuf::from("/certs"));
        let explicit = parse(&[
            "--webhook-cert-mode",
            "self-signed",
            "--webhook-cert-dir",
            "/x",
        ]);
        assert_eq!(explicit.cert_mode(), CertMode::SelfSigned);
    }

    #[test]
    fn the_charts_flag_spellings_are_accepted() {
        let args = parse(&[
            "--webhook-service=hook",
            "--webhook-namespace=dig-system",
            "--webhook-extra-san=127.0.0.1,hook.example",
            "--webhook-excluded-namespace=a",
            "--webhook-excluded-namespace=b",
        ]);
        assert_eq!(args.webhook_service_name, "hook");
        assert_eq!(args.webhook_namespace.as_deref(), Some("dig-system"));
        assert_eq!(args.webhook_extra_sans, ["127.0.0.1", "hook.example"]);
        assert_eq!(args.webhook_excluded_namespaces, ["a", "b"]);
    }
}
