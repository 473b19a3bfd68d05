//! The webhook's HTTPS server: `POST /mutate` (AdmissionReview in, AdmissionReview out) and
//! `GET /healthz`, over rustls with a serving certificate that can be swapped at run time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    routing::{get, post},
};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use super::patch::{
    Denial, Injection, InjectorSettings, NetworkSidecarConfig, Target, build_patch,
    injection_warnings, target,
};

/// AdmissionReviews of pods with many containers are large; the API server caps requests at 3 MiB.
const MAX_REVIEW_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("webhook serving certificate or key is invalid: {0}")]
    Certificate(String),
    #[error("webhook TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("webhook server on {listen}: {source}")]
    Serve {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Builds a rustls certified key from PEM texts (the first key of `key_pem`).
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, ServerError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Certificate(format!("certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(ServerError::Certificate(
            "no CERTIFICATE block in the certificate PEM".to_string(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ServerError::Certificate(format!("private key PEM: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| ServerError::Certificate(e.to_string()))?;
    Ok(certified)
}

/// The serving certificate, replaceable while connections are served (rotation without restart).
#[derive(Debug, Default)]
pub struct ServingCert {
    current: ArcSwapOption<CertifiedKey>,
    /// The PEM last loaded, so an unchanged Secret or file does not rebuild the key.
    loaded_pem: Mutex<Option<String>>,
}

impl ServingCert {
    /// Loads a certificate and key; returns whether it differed from the one served so far.
    pub fn load(&self, cert_pem: &str, key_pem: &str) -> Result<bool, ServerError> {
        let fingerprint = format!("{cert_pem}\n{key_pem}");
        let mut loaded = self.loaded_pem.lock().expect("serving cert lock poisoned");
        if loaded.as_deref() == Some(fingerprint.as_str()) {
            return Ok(false);
        }
        let certified = certified_key(cert_pem, key_pem)?;
        self.current.store(Some(Arc::new(certified)));
        *loaded = Some(fingerprint);
        Ok(true)
    }

    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load_full()
    }
}

/// Why the DigNetwork a pod names cannot configure its sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkProblem {
    /// The API server could not be asked (no answer in time, an error).
    LookupFailed(String),
    /// The network exists but cannot run a node (no image, its PSK Secret missing, ...).
    Unusable(String),
}

/// Looks up the DigNetwork a pod names; `Ok(None)` when it does not exist.
pub trait NetworkSource: Send + Sync + 'static {
    fn network<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkSidecarConfig>, NetworkProblem>>;
}

/// The values of the `result` label of `webhook_admissions_total`.
pub const ADMISSION_RESULTS: [&str; 3] = ["allowed_injected", "allowed_skipped", "denied"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `allowed_injected`, `allowed_skipped` or `denied`.
    pub result: &'static str,
}

/// Webhook metrics, registered in the operator's registry.
#[derive(Clone)]
pub struct WebhookMetrics {
    pub admissions: Family<AdmissionLabels, Counter>,
    pub duration: Histogram,
    pub certificate_expiry: Gauge,
    pub certificate_rotations: Counter,
}

impl WebhookMetrics {
    /// Registers under `<prefix>_webhook_*` of the given (sub-)registry.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            admissions: Family::default(),
            duration: Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            certificate_expiry: Gauge::default(),
            certificate_rotations: Counter::default(),
        };
        // Every result is exported from the start (at 0), so rates and alerts work before the
        // first admission of each kind.
        for result in ADMISSION_RESULTS {
            drop(
                metrics
                    .admissions
                    .get_or_create(&AdmissionLabels { result }),
            );
        }
        let registry = registry.sub_registry_with_prefix("webhook");
        registry.register(
            "admissions",
            "Pod admission reviews answered, by result (allowed_injected, allowed_skipped, denied)",
            metrics.admissions.clone(),
        );
        registry.register_with_unit(
            "admission_duration",
            "Time to answer one admission review, including the DigNetwork lookup",
            prometheus_client::registry::Unit::Seconds,
            metrics.duration.clone(),
        );
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the webhook's serving certificate expires (unix seconds)",
            metrics.certificate_expiry.clone(),
        );
        registry.register(
            "certificate_rotations",
            "Webhook certificates written (first creation and renewals)",
            metrics.certificate_rotations.clone(),
        );
        metrics
    }
}

/// Everything a review needs.
pub struct AdmissionContext {
    pub settings: InjectorSettings,
    pub networks: Arc<dyn NetworkSource>,
    pub metrics: WebhookMetrics,
    pub serving: Arc<ServingCert>,
}

/// The result of one review, for the metric and the log.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The patch, and warnings for the pod's creator.
    Injected(json_patch::Patch, Vec<String>),
    Skipped(&'static str),
    Denied(Denial),
}

impl Verdict {
    fn metric_label(&self) -> &'static str {
        match self {
            Verdict::Injected(..) => "allowed_injected",
            Verdict::Skipped(_) => "allowed_skipped",
            Verdict::Denied(_) => "denied",
        }
    }
}

/// Decides one pod admission request (IO only for the network lookup).
pub async fn review_pod(
    request: &AdmissionRequest<Pod>,
    settings: &InjectorSettings,
    networks: &dyn NetworkSource,
) -> Verdict {
    // Injection only makes sense when a pod is created: its containers are immutable after.
    if request.operation != Operation::Create {
        return Verdict::Skipped("not_a_create");
    }
    let Some(pod) = request.object.as_ref() else {
        return Verdict::Skipped("no_object");
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| pod.metadata.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let network_name = match target(pod, &namespace, settings) {
        Ok(Target::Skip(reason)) => return Verdict::Skipped(reason.as_str()),
        Ok(Target::Network(name)) => name,
        Err(denial) => return Verdict::Denied(denial),
    };
    let network = match networks.network(&namespace, &network_name).await {
        Ok(network) => network,
        Err(NetworkProblem::LookupFailed(detail)) => {
            return Verdict::Denied(Denial::NetworkLookupFailed {
                network: network_name,
                namespace,
                detail,
            });
        }
        Err(NetworkProblem::Unusable(reason)) => {
            return Verdict::Denied(Denial::NetworkUnusable {
                network: network_name,
                namespace,
                reason,
            });
        }
    };
    match build_patch(pod, &namespace, network.as_ref(), settings) {
        Ok(Injection::Patched(patch)) => Verdict::Injected(patch, injection_warnings(pod)),
        Ok(Injection::Skipped(reason)) => Verdict::Skipped(reason.as_str()),
        Err(denial) => Verdict::Denied(denial),
    }
}

/// The only review the webhook answers (the API server sends what the configuration asks for).
const ADMISSION_REVIEW_KIND: &str = "AdmissionReview";
const ADMISSION_REVIEW_API_VERSION: &str = "admission.k8s.io/v1";

async fn mutate(
    State(context): State<Arc<AdmissionContext>>,
    body: Bytes,
) -> Json<AdmissionReview<DynamicObject>> {
    let started = Instant::now();
    let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(error) => {
            tracing::warn!(%error, "webhook received a body that is not a pod AdmissionReview");
            return Json(
                AdmissionResponse::invalid(format!("not a pod AdmissionReview: {error}"))
                    .into_review(),
            );
        }
    };
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(request) => request,
        Err(_) => {
            return Json(
                AdmissionResponse::invalid("the AdmissionReview has no request").into_review(),
            );
        }
    };
    // The answer echoes the request's kind and version: only the one the webhook is registered
    // for (`admissionReviewVersions: [v1]`) is answered in kind.
    if (
        request.types.kind.as_str(),
        request.types.api_version.as_str(),
    ) != (ADMISSION_REVIEW_KIND, ADMISSION_REVIEW_API_VERSION)
    {
        let shown = |text: &str| text.chars().take(64).collect::<String>();
        return Json(
            AdmissionResponse::invalid(format!(
                "not an {ADMISSION_REVIEW_API_VERSION} {ADMISSION_REVIEW_KIND}: kind {:?}, \
                 apiVersion {:?}",
                shown(&request.types.kind),
                shown(&request.types.api_version),
            ))
            .into_review(),
        );
    }
    let verdict = review_pod(&request, &context.settings, context.networks.as_ref()).await;
    let pod_name = request
        .object
        .as_ref()
        .and_then(|pod| {
            pod.metadata
                .name
                .clone()
                .or(pod.metadata.generate_name.clone())
        })
        .unwrap_or_default();
    let namespace = request.namespace.clone().unwrap_or_default();
    let response = AdmissionResponse::from(&request);
    let response = match &verdict {
        Verdict::Injected(patch, warnings) => {
            tracing::info!(pod = %pod_name, %namespace, ?warnings, "injecting the dig-sidecar");
            match response.clone().with_patch(patch.clone()) {
                Ok(mut response) => {
                    response.warnings = (!warnings.is_empty()).then(|| warnings.clone());
                    response
                }
                Err(error) => response.deny(format!("could not encode the sidecar patch: {error}")),
            }
        }
        Verdict::Skipped(reason) => {
            tracing::debug!(pod = %pod_name, %namespace, reason, "pod admitted unchanged");
            response
        }
        Verdict::Denied(denial) => {
            tracing::info!(pod = %pod_name, %namespace, reason = denial.reason(), %denial, "pod denied");
            response.deny(denial.to_string())
        }
    };
    context
        .metrics
        .admissions
        .get_or_create(&AdmissionLabels {
            result: verdict.metric_label(),
        })
        .inc();
    context
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    Json(response.into_review())
}

async fn healthz(State(context): State<Arc<AdmissionContext>>) -> (StatusCode, &'static str) {
    if context.serving.is_loaded() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no serving certificate loaded\n",
        )
    }
}

pub fn router(context: Arc<AdmissionContext>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(context)
}

/// Serves the webhook over TLS until `handle` is told to shut down. The certificate comes from
/// `serving` on every handshake, so a rotation takes effect for the next connection.
pub async fn serve(
    listen: SocketAddr,
    context: Arc<AdmissionContext>,
    handle: axum_server::Handle,
) -> Result<(), ServerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(context.serving.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
    let app = router(context);
    axum_server::bind_rustls(listen, tls)
        .handle(handle)
        .serve(app.into_make_service())
        .await
        .map_err(|source| ServerError::Serve { listen, source })
}

/// How long in-flight reviews get to finish at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::certs::{CertPolicy, SubjectNames, decide, rotate};
    use crate::webhook::patch::SIDECAR_CONTAINER_NAME;
    use serde_json::{Value, json};

    struct OneNetwork;

    impl NetworkSource for OneNetwork {
        fn network<'a>(
            &'a self,
            namespace: &'a str,
            name: &'a str,
        ) -> BoxFuture<'a, Result<Option<NetworkSidecarConfig>, NetworkProblem>> {
            Box::pin(async move {
                if namespace == "broken" {
                    return Err(NetworkProblem::LookupFailed(
                        "the API server did not answer".to_string(),
                    ));
                }
                if name == "no-psk" {
                    return Err(NetworkProblem::Unusable(
                        "its PSK Secret \"psk\" does not exist".to_string(),
                    ));
                }
                Ok((name == "prod").then(|| NetworkSidecarConfig {
                    name: "prod".to_string(),
                    network_id: "prod".to_string(),
                    bootstrap_urls: vec![format!("http://prod-bootstrap.{namespace}.svc:3000")],
                    image: "dig-sidecar:test".to_string(),
                    p2p_port: 4001,
                    api_port: 8080,
                    psk_secret: None,
                    propagate_deletes: false,
                    write_policy: crate::crd::WritePolicy::Owner,
                    writers: Vec::new(),
                    mdns: false,
                    dht: true,
                    target_peers: None,
                    resources: None,
                }))
            })
        }
    }

    fn review(namespace: &str, labels: Value, annotations: Value) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0f7c6a1e-5b8e-4c1a-9d55-3b2f7e1c2a10",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": namespace,
                "operation": "CREATE",
                "userInfo": {"username": "tester"},
                "object": {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "app", "labels": labels, "annotations": annotations},
                    "spec": {
                        "containers": [{"name": "app", "image": "busybox"}],
                        "volumes": [{"name": "stores", "emptyDir": {}}]
                    }
                }
            }
        })
    }

    fn context() -> (Arc<AdmissionContext>, Registry) {
        let mut registry = Registry::default();
        let metrics = WebhookMetrics::register(&mut registry);
        let context = Arc::new(AdmissionContext {
            settings: InjectorSettings::default(),
            networks: Arc::new(OneNetwork),
            metrics,
            serving: Arc::new(ServingCert::default()),
        });
        (context, registry)
    }

    async fn answer(context: &Arc<AdmissionContext>, review: &Value) -> Value {
        let Json(response) = mutate(
            State(context.clone()),
            Bytes::from(serde_json::to_vec(review).unwrap()),
        )
        .await;
        serde_json::to_value(response).unwrap()
    }

    #[tokio::test]
    async fn reviews_inject_skip_and_deny_and_count_each() {
        let (context, registry) = context();
        let labelled = review(
            "apps",
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "stores"}),
        );
        let injected = answer(&context, &labelled).await;
        let response = &injected["response"];
        assert_eq!(response["uid"], "0f7c6a1e-5b8e-4c1a-9d55-3b2f7e1c2a10");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        // kube-core writes the patch bytes as a JSON array, which the API server accepts.
        let patch_bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).unwrap();
        let mut pod = labelled["request"]["object"].clone();
        json_patch::patch(&mut pod, &patch).unwrap();
        assert_eq!(
            pod["spec"]["initContainers"][0]["name"],
            SIDECAR_CONTAINER_NAME
        );

        let unlabelled = answer(&context, &review("apps", json!({}), json!({}))).await;
        assert_eq!(unlabelled["response"]["allowed"], true);
        assert!(unlabelled["response"].get("patch").is_none());

        let unknown = review(
            "apps",
            json!({"dig.net/inject": "staging"}),
            json!({"dig.net/volume": "stores"}),
        );
        let denied = answer(&context, &unknown).await;
        assert_eq!(denied["response"]["allowed"], false);
        let message = denied["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("\"staging\""), "{message}");

        let broken = review(
            "broken",
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "stores"}),
        );
        let denied = answer(&context, &broken).await;
        let message = denied["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("did not answer"), "{message}");

        let unusable = review(
            "apps",
            json!({"dig.net/inject": "no-psk"}),
            json!({"dig.net/volume": "stores"}),
        );
        let denied = answer(&context, &unusable).await;
        let message = denied["response"]["status"]["message"].as_str().unwrap();
        assert_eq!(
            message,
            "DigNetwork \"no-psk\" in namespace \"apps\" cannot configure a sidecar: its PSK Secret \"psk\" does not exist"
        );

        let garbage = answer(&context, &json!({"hello": 1})).await;
        assert_eq!(garbage["response"]["allowed"], false);

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("webhook_admissions_total{result=\"allowed_injected\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("webhook_admissions_total{result=\"allowed_skipped\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("webhook_admissions_total{result=\"denied\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("webhook_admission_duration_seconds_count 5"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_review_of_another_kind_or_version_is_answered_as_invalid_in_v1() {
        let (context, _registry) = context();
        for (field, value) in [
            ("kind", "{AdmissionReview"),
            ("apiVersion", "admission.k8s.io/v1beta1"),
        ] {
            let mut odd = review(
                "apps",
                json!({"dig.net/inject": "prod"}),
                json!({"dig.net/volume": "stores"}),
            );
            odd[field] = json!(value);
            let answered = answer(&context, &odd).await;
            assert_eq!(answered["kind"], "AdmissionReview", "{answered}");
            assert_eq!(answered["apiVersion"], "admission.k8s.io/v1", "{answered}");
            assert_eq!(answered["response"]["allowed"], false);
            let message = answered["response"]["status"]["message"].as_str().unwrap();
            assert!(message.contains(&format!("{value:?}")), "{message}");
        }
    }

    #[test]
    fn every_admission_result_is_exported_from_the_start() {
        let (_context, registry) = context();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for result in ADMISSION_RESULTS {
            assert!(
                text.contains(&format!(
                    "webhook_admissions_total{{result=\"{result}\"}} 0"
                )),
                "{result} in:\n{text}"
            );
        }
    }

    #[tokio::test]
    async fn a_volume_the_sidecar_may_not_write_is_admitted_with_a_warning() {
        let (context, _registry) = context();
        let mut claim = review(
            "apps",
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "stores"}),
        );
        claim["request"]["object"]["spec"]["volumes"] =
            json!([{"name": "stores", "persistentVolumeClaim": {"claimName": "stores"}}]);
        let answered = answer(&context, &claim).await;
        assert_eq!(answered["response"]["allowed"], true);
        assert!(answered["response"]["patch"].is_array());
        let warnings = answered["response"]["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1);
        let warning = warnings[0].as_str().unwrap();
        assert!(warning.contains("fsGroup"), "{warning}");
        assert!(warning.contains("\"stores\""), "{warning}");

        // The emptyDir of the default review is writable by anyone: no warning.
        let plain = answer(
            &context,
            &review(
                "apps",
                json!({"dig.net/inject": "prod"}),
                json!({"dig.net/volume": "stores"}),
            ),
        )
        .await;
        assert!(plain["response"].get("warnings").is_none(), "{plain}");
    }

    #[tokio::test]
    async fn updates_are_never_mutated() {
        let (context, _registry) = context();
        let mut update = review(
            "apps",
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "stores"}),
        );
        update["request"]["operation"] = json!("UPDATE");
        let answered = answer(&context, &update).await;
        assert_eq!(answered["response"]["allowed"], true);
        assert!(answered["response"].get("patch").is_none());
    }

    fn https_client(ca_pem: &str) -> reqwest::Client {
        dig_core::crypto::install_crypto_provider();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn serves_tls_and_swaps_the_certificate_without_restart() {
        let names = SubjectNames::for_service("svc", "ns", &["127.0.0.1".to_string()]);
        let policy = CertPolicy::default();
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        let first = rotate(
            None,
            &decide(None, &names, now, &policy),
            &names,
            now,
            &policy,
        )
        .unwrap();
        let (context, _registry) = context();
        context
            .serving
            .load(&first.tls_cert_pem, &first.tls_key_pem)
            .unwrap();
        let handle = axum_server::Handle::new();
        let server = tokio::spawn(serve(
            "127.0.0.1:0".parse().unwrap(),
            context.clone(),
            handle.clone(),
        ));
        let address = handle.listening().await.expect("the server listens");
        let url = format!("https://127.0.0.1:{}/healthz", address.port());

        let trusts_first = https_client(&first.ca_bundle_pem);
        let answer = trusts_first.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200);

        // A new CA and certificate: new connections get it, with no restart.
        let second = rotate(
            Some(&first),
            &crate::webhook::certs::Rotation::NewCa("test".to_string()),
            &names,
            now,
            &policy,
        )
        .unwrap();
        assert!(
            context
                .serving
                .load(&second.tls_cert_pem, &second.tls_key_pem)
                .unwrap()
        );
        let trusts_second_only = https_client(&second.ca_cert_pem);
        assert_eq!(
            trusts_second_only.get(&url).send().await.unwrap().status(),
            200
        );
        let fresh_first_client = https_client(&first.ca_cert_pem);
        assert!(fresh_first_client.get(&url).send().await.is_err());
        // The bundle after a CA rotation trusts the new certificate too.
        let trusts_bundle = https_client(&second.ca_bundle_pem);
        assert_eq!(trusts_bundle.get(&url).send().await.unwrap().status(), 200);

        handle.graceful_shutdown(Some(Duration::from_secs(1)));
        server.await.unwrap().unwrap();
    }

    #[test]
    fn serving_cert_swaps_only_on_change() {
        let names = SubjectNames::for_service("svc", "ns", &[]);
        let policy = CertPolicy::default();
        let first = rotate(
            None,
            &decide(None, &names, 0, &policy),
            &names,
            1_800_000_000,
            &policy,
        )
        .unwrap();
        let serving = ServingCert::default();
        assert!(!serving.is_loaded());
        assert!(
            serving
                .load(&first.tls_cert_pem, &first.tls_key_pem)
                .unwrap()
        );
        assert!(
            !serving
                .load(&first.tls_cert_pem, &first.tls_key_pem)
                .unwrap()
        );
        let second = rotate(
            Some(&first),
            &crate::webhook::certs::Rotation::NewServing("test".to_string()),
            &names,
            1_800_000_000,
            &policy,
        )
        .unwrap();
        assert!(
            serving
                .load(&second.tls_cert_pem, &second.tls_key_pem)
                .unwrap()
        );
        assert!(serving.load("garbage", &second.tls_key_pem).is_err());
        assert!(serving.is_loaded());
    }
}
