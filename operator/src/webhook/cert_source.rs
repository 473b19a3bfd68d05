//! Where the serving certificate comes from, and keeping it fresh:
//! - self-signed: the operator's own CA and certificate in a Secret, renewed before expiry, with
//!   the `caBundle` of the webhook configuration kept in step. Replicas coordinate through the
//!   Secret itself: writes carry the resourceVersion (or are creates), so when two replicas race,
//!   one write wins, the other gets a conflict, re-reads and serves the winner's certificate.
//! - external (cert-manager): `tls.crt` / `tls.key` files in a directory, re-read when they change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::{
    ByteString, api::admissionregistration::v1::MutatingWebhookConfiguration,
    api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api,
    api::PostParams,
    runtime::{WatchStreamExt, watcher},
};

use super::ca_bundle::{BundleSync, sync_ca_bundle};
use super::certs::{
    self, CertPolicy, Rotation, SECRET_CA_BUNDLE, SECRET_CA_CERT, SECRET_CA_KEY, SECRET_TLS_CERT,
    SECRET_TLS_KEY, SubjectNames, WebhookCerts,
};
use super::server::{ServingCert, WebhookMetrics};

/// How often certificates are checked when nothing else happens.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Retry delay while the Secret or the webhook configuration cannot be read or written.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How often the external certificate files are re-read.
const FILE_POLL_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CertSourceError {
    #[error("reading webhook Secret {namespace}/{name}: {source}")]
    ReadSecret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing webhook Secret {namespace}/{name}: {source}")]
    WriteSecret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("webhook Secret {namespace}/{name} kept changing under concurrent writers")]
    Contended { namespace: String, name: String },
    #[error(transparent)]
    Certificate(#[from] certs::CertError),
    #[error(transparent)]
    Serving(#[from] super::server::ServerError),
    #[error(transparent)]
    Bundle(#[from] super::ca_bundle::BundleSyncError),
    #[error("reading {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The certificates a Secret holds, if it holds all of them as UTF-8 PEM.
pub fn certs_from_secret(secret: &Secret) -> Option<WebhookCerts> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
    };
    Some(WebhookCerts {
        ca_cert_pem: text(SECRET_CA_CERT)?,
        ca_key_pem: text(SECRET_CA_KEY)?,
        ca_bundle_pem: text(SECRET_CA_BUNDLE).or_else(|| text(SECRET_CA_CERT))?,
        tls_cert_pem: text(SECRET_TLS_CERT)?,
        tls_key_pem: text(SECRET_TLS_KEY)?,
    })
}

/// The Secret holding `certs`; `resource_version` makes a replace conditional on it.
pub fn secret_for(
    name: &str,
    namespace: &str,
    certs: &WebhookCerts,
    resource_version: Option<String>,
) -> Secret {
    let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            resource_version,
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "dig-operator".to_string(),
                ),
                (
                    "app.kubernetes.io/component".to_string(),
                    "webhook".to_string(),
                ),
            ])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(BTreeMap::from([
            (SECRET_CA_CERT.to_string(), bytes(&certs.ca_cert_pem)),
            (SECRET_CA_KEY.to_string(), bytes(&certs.ca_key_pem)),
            (SECRET_CA_BUNDLE.to_string(), bytes(&certs.ca_bundle_pem)),
            (SECRET_TLS_CERT.to_string(), bytes(&certs.tls_cert_pem)),
            (SECRET_TLS_KEY.to_string(), bytes(&certs.tls_key_pem)),
        ])),
        ..Default::default()
    }
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// The operator's own CA and serving certificate.
pub struct SelfSignedCerts {
    pub secrets: Api<Secret>,
    pub webhook_configs: Api<MutatingWebhookConfiguration>,
    pub namespace: String,
    pub secret_name: String,
    pub config_name: String,
    pub names: SubjectNames,
    pub policy: CertPolicy,
    pub serving: Arc<ServingCert>,
    pub metrics: WebhookMetrics,
}

/// What one pass found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    pub rotated: Option<String>,
    pub bundle: BundleSync,
}

impl SelfSignedCerts {
    /// Ensures the Secret holds valid certificates for our names (renewing them when due), serves
    /// them, and writes the CA bundle into the webhook configuration.
    pub async fn reconcile_once(&self, now: i64) -> Result<Pass, CertSourceError> {
        let (certs, rotated) = self.ensure_secret(now).await?;
        if self.serving.load(&certs.tls_cert_pem, &certs.tls_key_pem)? {
            let expiry = certs::inspect("the serving certificate", &certs.tls_cert_pem)
                .map(|info| info.not_after)
                .unwrap_or_default();
            self.metrics.certificate_expiry.set(expiry);
            tracing::info!(
                secret = %self.secret_name,
                expires_unix = expiry,
                "serving the webhook certificate from the Secret"
            );
        }
        let bundle = sync_ca_bundle(
            &self.webhook_configs,
            &self.config_name,
            &certs.ca_bundle_pem,
        )
        .await?;
        match bundle {
            BundleSync::Patched(count) => tracing::info!(
                config = %self.config_name,
                webhooks = count,
                "wrote the CA bundle into the MutatingWebhookConfiguration"
            ),
            BundleSync::Missing => tracing::warn!(
                config = %self.config_name,
                "MutatingWebhookConfiguration not found; its caBundle is written once it exists"
            ),
            BundleSync::UpToDate => {}
        }
        Ok(Pass { rotated, bundle })
    }

    async fn ensure_secret(
        &self,
        now: i64,
    ) -> Result<(WebhookCerts, Option<String>), CertSourceError> {
        let read_error = |source| CertSourceError::ReadSecret {
            namespace: self.namespace.clone(),
            name: self.secret_name.clone(),
            source,
        };
        let write_error = |source| CertSourceError::WriteSecret {
            namespace: self.namespace.clone(),
            name: self.secret_name.clone(),
            source,
        };
        // A conflict means another replica wrote first: read its certificates and judge again.
        for _attempt in 0..3 {
            let existing = self
                .secrets
                .get_opt(&self.secret_name)
                .await
                .map_err(read_error)?;
            let current = existing.as_ref().and_then(certs_from_secret);
            let decision = certs::decide(current.as_ref(), &self.names, now, &self.policy);
            let reason = match &decision {
                Rotation::Keep => {
                    let current = current.expect("Keep is only decided for present certificates");
                    return Ok((current, None));
                }
                Rotation::NewServing(reason) | Rotation::NewCa(reason) => reason.clone(),
            };
            let renewed =
                certs::rotate(current.as_ref(), &decision, &self.names, now, &self.policy)?;
            let written = match &existing {
                Some(secret) => {
                    let replacement = secret_for(
                        &self.secret_name,
                        &self.namespace,
                        &renewed,
                        secret.metadata.resource_version.clone(),
                    );
                    self.secrets
                        .replace(&self.secret_name, &PostParams::default(), &replacement)
                        .await
                }
                None => {
                    let secret = secret_for(&self.secret_name, &self.namespace, &renewed, None);
                    self.secrets.create(&PostParams::default(), &secret).await
                }
            };
            match written {
                Ok(_) => {
                    self.metrics.certificate_rotations.inc();
                    tracing::info!(
                        secret = %self.secret_name,
                        %reason,
                        new_ca = matches!(decision, Rotation::NewCa(_)),
                        "wrote a new webhook certificate"
                    );
                    return Ok((renewed, Some(reason)));
                }
                Err(error) if is_conflict(&error) => {
                    tracing::debug!(secret = %self.secret_name, "another replica wrote the webhook Secret first");
                }
                Err(error) => return Err(write_error(error)),
            }
        }
        Err(CertSourceError::Contended {
            namespace: self.namespace.clone(),
            name: self.secret_name.clone(),
        })
    }

    /// Runs forever: a pass at start, then on every change of the Secret or of the webhook
    /// configuration (e.g. a `helm upgrade` that reset the caBundle), and at least every
    /// [`CHECK_INTERVAL`].
    pub async fn run(self) {
        // Watch errors (e.g. RBAC without list/watch) are not changes: the periodic pass covers.
        let secret_changes = watcher(
            self.secrets.clone(),
            watcher::Config::default().fields(&format!("metadata.name={}", self.secret_name)),
        )
        .default_backoff()
        .filter_map(|event| futures::future::ready(event.ok().map(|_| ())));
        let config_changes = watcher(
            self.webhook_configs.clone(),
            watcher::Config::default().fields(&format!("metadata.name={}", self.config_name)),
        )
        .default_backoff()
        .filter_map(|event| futures::future::ready(event.ok().map(|_| ())));
        let mut changes = futures::stream::select(secret_changes, config_changes).boxed();
        loop {
            let wait = match self.reconcile_once(unix_now()).await {
                Ok(Pass {
                    bundle: BundleSync::Missing,
                    ..
                }) => RETRY_INTERVAL,
                Ok(_) => CHECK_INTERVAL,
                Err(error) => {
                    tracing::warn!(%error, "webhook certificate pass failed; retrying");
                    RETRY_INTERVAL
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = changes.next() => {
                    // Coalesce a burst of events (our own write echoes back) into one pass.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Certificates from files (cert-manager's Secret mounted as a volume).
pub struct FileCerts {
    pub dir: PathBuf,
    pub serving: Arc<ServingCert>,
    pub metrics: WebhookMetrics,
}

impl FileCerts {
    /// Loads `tls.crt` and `tls.key` if they changed; returns whether a new certificate is served.
    pub fn load_once(&self) -> Result<bool, CertSourceError> {
        let read = |file: &str| {
            let path = self.dir.join(file);
            std::fs::read_to_string(&path).map_err(|source| CertSourceError::File { path, source })
        };
        let cert = read(SECRET_TLS_CERT)?;
        let key = read(SECRET_TLS_KEY)?;
        let changed = self.serving.load(&cert, &key)?;
        if changed {
            let expiry = certs::inspect("the serving certificate file", &cert)
                .map(|info| info.not_after)
                .unwrap_or_default();
            self.metrics.certificate_expiry.set(expiry);
            tracing::info!(dir = %self.dir.display(), expires_unix = expiry, "serving the webhook certificate from files");
        }
        Ok(changed)
    }

    /// Re-reads the files every few seconds (Secret volumes are updated by symlink swaps, which
    /// polling sees reliably).
    pub async fn run(self) {
        let mut reported = false;
        loop {
            match self.load_once() {
                Ok(_) => reported = false,
                Err(error) if !reported => {
                    tracing::warn!(%error, "cannot load the webhook certificate files; keeping the current one");
                    reported = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(FILE_POLL_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::mock_api::{MockApi, status};
    use prometheus_client::registry::Registry;

    fn certs() -> WebhookCerts {
        let names = SubjectNames::for_service("svc", "ns", &[]);
        let policy = CertPolicy::default();
        certs::rotate(
            None,
            &certs::decide(None, &names, 0, &policy),
            &names,
            unix_now(),
            &policy,
        )
        .unwrap()
    }

    const SECRET_PATH: &str = "/api/v1/namespaces/dig-system/secrets/hook-tls";
    const CONFIG_PATH: &str =
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/hook";

    fn self_signed(client: kube::Client, names: SubjectNames) -> (SelfSignedCerts, Registry) {
        let mut registry = Registry::default();
        let source = SelfSignedCerts {
            secrets: Api::namespaced(client.clone(), "dig-system"),
            webhook_configs: Api::all(client),
            namespace: "dig-system".to_string(),
            secret_name: "hook-tls".to_string(),
            config_name: "hook".to_string(),
            names,
            policy: CertPolicy::default(),
            serving: Arc::new(ServingCert::default()),
            metrics: WebhookMetrics::register(&mut registry),
        };
        (source, registry)
    }

    fn config_with_bundle(bundle: Option<&str>) -> serde_json::Value {
        use base64::Engine;
        let mut client_config = serde_json::json!({"url": "https://127.0.0.1:8443/mutate"});
        if let Some(bundle) = bundle {
            client_config["caBundle"] =
                serde_json::json!(base64::engine::general_purpose::STANDARD.encode(bundle));
        }
        serde_json::json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "hook", "resourceVersion": "9"},
            "webhooks": [{"name": "inject.dig.net", "clientConfig": client_config,
                "sideEffects": "None", "admissionReviewVersions": ["v1"]}]
        })
    }

    #[tokio::test]
    async fn a_replica_that_loses_the_create_race_serves_the_winners_certificate() {
        use http::Method;
        let names = SubjectNames::for_service("svc", "ns", &[]);
        let (client, mut api) = MockApi::new();
        let (source, _registry) = self_signed(client, names.clone());
        let winner = certs();
        let winner_secret = serde_json::to_value(secret_for(
            "hook-tls",
            "dig-system",
            &winner,
            Some("3".into()),
        ))
        .unwrap();
        let script = async {
            api.step(Method::GET, SECRET_PATH, 404, status(404, "NotFound"))
                .await;
            let created = api
                .step(
                    Method::POST,
                    "/api/v1/namespaces/dig-system/secrets",
                    409,
                    status(409, "AlreadyExists"),
                )
                .await;
            assert_eq!(created["metadata"]["name"], "hook-tls");
            assert!(created["metadata"].get("resourceVersion").is_none());
            api.step(Method::GET, SECRET_PATH, 200, winner_secret).await;
            api.step(
                Method::GET,
                CONFIG_PATH,
                200,
                config_with_bundle(Some(&winner.ca_bundle_pem)),
            )
            .await;
        };
        let (pass, ()) = tokio::join!(source.reconcile_once(unix_now()), script);
        let pass = pass.unwrap();
        assert_eq!(
            pass,
            Pass {
                rotated: None,
                bundle: BundleSync::UpToDate
            }
        );
        assert_eq!(source.metrics.certificate_rotations.get(), 0);
        // The winner's certificate is the one served: loading it again is not a change.
        assert!(
            !source
                .serving
                .load(&winner.tls_cert_pem, &winner.tls_key_pem)
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_due_certificate_is_replaced_under_the_resource_version_and_the_bundle_written() {
        use http::Method;
        let names = SubjectNames::for_service("svc", "ns", &[]);
        let (client, mut api) = MockApi::new();
        let (source, _registry) = self_signed(client, names.clone());
        let stored = certs();
        let serving = certs::inspect("serving", &stored.tls_cert_pem).unwrap();
        let due = serving.renew_at(CertPolicy::default().renew_after);
        let stored_secret = serde_json::to_value(secret_for(
            "hook-tls",
            "dig-system",
            &stored,
            Some("5".into()),
        ))
        .unwrap();
        let script = async {
            api.step(Method::GET, SECRET_PATH, 200, stored_secret).await;
            let replaced = api
                .step(Method::PUT, SECRET_PATH, 200, serde_json::json!({}))
                .await;
            api.step(Method::GET, CONFIG_PATH, 200, config_with_bundle(None))
                .await;
            let patch = api
                .step(Method::PATCH, CONFIG_PATH, 200, config_with_bundle(None))
                .await;
            (replaced, patch)
        };
        let (pass, (replaced, patch)) = tokio::join!(source.reconcile_once(due), script);
        let pass = pass.unwrap();
        assert!(pass.rotated.unwrap().contains("due for renewal"));
        assert_eq!(pass.bundle, BundleSync::Patched(1));
        assert_eq!(source.metrics.certificate_rotations.get(), 1);
        assert_eq!(replaced["metadata"]["resourceVersion"], "5");
        let renewed: Secret = serde_json::from_value(replaced).unwrap();
        let renewed = certs_from_secret(&renewed).unwrap();
        assert_eq!(renewed.ca_cert_pem, stored.ca_cert_pem, "same CA");
        assert_ne!(
            renewed.tls_cert_pem, stored.tls_cert_pem,
            "new serving certificate"
        );
        assert_eq!(
            patch[0],
            serde_json::json!({"op": "test", "path": "/metadata/resourceVersion", "value": "9"})
        );
        assert_eq!(patch[1]["path"], "/webhooks/0/clientConfig/caBundle");
        assert!(
            !source
                .serving
                .load(&renewed.tls_cert_pem, &renewed.tls_key_pem)
                .unwrap()
        );
    }

    /// The leaf certificate a fresh TLS connection to `port` is served (DER), trusting `ca_pem`.
    async fn served_certificate(port: u16, ca_pem: &str) -> Vec<u8> {
        dig_core::crypto::install_crypto_provider();
        // A new client each time: a pooled connection would keep the old handshake.
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .tls_info(true)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let response = client
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .expect("the webhook answers over TLS");
        assert_eq!(response.status(), 200);
        response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .expect("the peer certificate")
            .to_vec()
    }

    fn certificate_der(pem_text: &str) -> Vec<u8> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        CertificateDer::from_pem_slice(pem_text.as_bytes())
            .unwrap()
            .to_vec()
    }

    /// A short-lived serving certificate goes through its life on a running webhook: made and
    /// served, kept while young, replaced in the Secret once due but before it expires, and the
    /// replacement served to the next connection with no restart, under the same CA bundle.
    #[tokio::test]
    async fn a_short_lived_certificate_is_replaced_before_expiry_and_served_without_restart() {
        use crate::webhook::patch::{InjectorSettings, NetworkSidecarConfig};
        use crate::webhook::server::{AdmissionContext, NetworkSource};
        use http::Method;

        struct NoNetworks;
        impl NetworkSource for NoNetworks {
            fn network<'a>(
                &'a self,
                _namespace: &'a str,
                _name: &'a str,
            ) -> futures::future::BoxFuture<
                'a,
                Result<Option<NetworkSidecarConfig>, crate::webhook::server::NetworkProblem>,
            > {
                Box::pin(async { Ok(None) })
            }
        }

        let names = SubjectNames::for_service("svc", "ns", &["127.0.0.1".to_string()]);
        let (client, mut api) = MockApi::new();
        let (mut source, _registry) = self_signed(client, names);
        // Five minutes of life (plus the backdating), renewed after two thirds. The passes run at times in the recent
        // past, so that every certificate is valid for the real handshakes below.
        source.policy = CertPolicy {
            ca_validity: Duration::from_secs(3600),
            serving_validity: Duration::from_secs(300),
            renew_after: (2, 3),
        };
        let start = unix_now() - 250;

        // 1. No Secret yet: a CA and certificate are made, stored, served, and the bundle written.
        let script = async {
            api.step(Method::GET, SECRET_PATH, 404, status(404, "NotFound"))
                .await;
            let created = api
                .step(
                    Method::POST,
                    "/api/v1/namespaces/dig-system/secrets",
                    201,
                    serde_json::json!({}),
                )
                .await;
            api.step(Method::GET, CONFIG_PATH, 200, config_with_bundle(None))
                .await;
            api.step(Method::PATCH, CONFIG_PATH, 200, config_with_bundle(None))
                .await;
            created
        };
        let (pass, created) = tokio::join!(source.reconcile_once(start), script);
        assert!(pass.unwrap().rotated.is_some());
        let mut stored: Secret = serde_json::from_value(created).unwrap();
        stored.metadata.resource_version = Some("1".to_string());
        let first = certs_from_secret(&stored).unwrap();
        let first_info = certs::inspect("first", &first.tls_cert_pem).unwrap();
        assert_eq!(first_info.not_after, start + 300);

        let handle = axum_server::Handle::new();
        let context = Arc::new(AdmissionContext {
            settings: InjectorSettings::default(),
            networks: Arc::new(NoNetworks),
            metrics: source.metrics.clone(),
            serving: source.serving.clone(),
        });
        let server = tokio::spawn(crate::webhook::server::serve(
            "127.0.0.1:0".parse().unwrap(),
            context,
            handle.clone(),
        ));
        let port = handle.listening().await.expect("the server listens").port();
        assert_eq!(
            served_certificate(port, &first.ca_bundle_pem).await,
            certificate_der(&first.tls_cert_pem)
        );

        // 2. Not yet due (its life counts from the backdated notBefore): kept, nothing written.
        let renewal_time = first_info.renew_at(source.policy.renew_after);
        assert!(renewal_time > start + 50);
        let young = serde_json::to_value(&stored).unwrap();
        let script = async {
            api.step(Method::GET, SECRET_PATH, 200, young).await;
            api.step(
                Method::GET,
                CONFIG_PATH,
                200,
                config_with_bundle(Some(&first.ca_bundle_pem)),
            )
            .await;
        };
        let (pass, ()) = tokio::join!(source.reconcile_once(start + 50), script);
        assert_eq!(
            pass.unwrap(),
            Pass {
                rotated: None,
                bundle: BundleSync::UpToDate
            }
        );

        // 3. Due, minutes before it expires: replaced under the resourceVersion, same CA, so the
        // bundle already in the configuration stays.
        let due = serde_json::to_value(&stored).unwrap();
        let script = async {
            api.step(Method::GET, SECRET_PATH, 200, due).await;
            let replaced = api
                .step(Method::PUT, SECRET_PATH, 200, serde_json::json!({}))
                .await;
            api.step(
                Method::GET,
                CONFIG_PATH,
                200,
                config_with_bundle(Some(&first.ca_bundle_pem)),
            )
            .await;
            replaced
        };
        let (pass, replaced) = tokio::join!(source.reconcile_once(renewal_time), script);
        let pass = pass.unwrap();
        assert!(
            pass.rotated.as_deref().unwrap().contains("due for renewal"),
            "{pass:?}"
        );
        assert_eq!(pass.bundle, BundleSync::UpToDate);
        assert!(renewal_time < first_info.not_after, "renewed before expiry");
        assert_eq!(replaced["metadata"]["resourceVersion"], "1");
        let second = certs_from_secret(&serde_json::from_value(replaced).unwrap()).unwrap();
        assert_eq!(second.ca_cert_pem, first.ca_cert_pem);
        let second_info = certs::inspect("second", &second.tls_cert_pem).unwrap();
        assert_eq!(second_info.not_after, renewal_time + 300);
        assert_eq!(
            source.metrics.certificate_expiry.get(),
            second_info.not_after
        );
        assert_eq!(source.metrics.certificate_rotations.get(), 2);
        // The running server hands the new certificate to the next connection.
        assert_eq!(
            served_certificate(port, &first.ca_bundle_pem).await,
            certificate_der(&second.tls_cert_pem)
        );

        handle.graceful_shutdown(Some(Duration::from_secs(1)));
        server.await.unwrap().unwrap();
    }

    #[test]
    fn secret_round_trip() {
        let certs = certs();
        let secret = secret_for("hook-tls", "ns", &certs, Some("7".to_string()));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(secret.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(certs_from_secret(&secret), Some(certs.clone()));
        let mut partial = secret.clone();
        partial.data.as_mut().unwrap().remove(SECRET_TLS_KEY);
        assert_eq!(certs_from_secret(&partial), None);
    }

    #[test]
    fn files_are_loaded_and_reloaded_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::default();
        let source = FileCerts {
            dir: dir.path().to_path_buf(),
            serving: Arc::new(ServingCert::default()),
            metrics: WebhookMetrics::register(&mut registry),
        };
        let missing = source.load_once().unwrap_err().to_string();
        assert!(missing.contains("tls.crt"), "{missing}");
        let first = certs();
        std::fs::write(dir.path().join("tls.crt"), &first.tls_cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &first.tls_key_pem).unwrap();
        assert!(source.load_once().unwrap());
        assert!(!source.load_once().unwrap());
        let second = certs();
        std::fs::write(dir.path().join("tls.crt"), &second.tls_cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), &second.tls_key_pem).unwrap();
        assert!(source.load_once().unwrap());
        // A half-written pair (certificate without its key) is refused and the old one kept.
        std::fs::write(dir.path().join("tls.crt"), &first.tls_cert_pem).unwrap();
        assert!(source.load_once().is_err());
        assert!(source.serving.is_loaded());
    }
}
