//! Properties of the sidecar-injection webhook as it decodes AdmissionReviews, through its real
//! router in process: whatever the bytes (mutations of a real review, hostile `dig.net/*`
//! annotation values, arbitrary bytes), it answers 200 with an AdmissionReview whose response
//! carries the request's uid, and a patch it allows applies to the pod and leaves a pod that
//! decodes, with the sidecar in it. The committed corpus (`tests/corpus/admission_review/`) is
//! replayed the same way; a file's name says the outcome (`injected-`, `skipped-`, `denied-`,
//! `invalid-`).
//!
//! proptest (bounded cases in the suite, stable Rust) rather than cargo-fuzz, as for the
//! registry's decoders; the JSON mutations are the registry's, included from its tests.

#[path = "../../bootstrap/tests/support/json_mutation.rs"]
mod json_mutation;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use axum::body::Body;
use base64::Engine as _;
use dig_operator::webhook::patch::{
    InjectorSettings, NetworkSidecarConfig, SIDECAR_CONTAINER_NAME, SecretKeySelector,
};
use dig_operator::webhook::server::{
    AdmissionContext, NetworkProblem, NetworkSource, ServingCert, WebhookMetrics, router,
};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use json_mutation::json_mutation;
use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

/// `prod` is a private network with resources; `open` a public one; `broken` namespaces cannot
/// be asked; any other network does not exist.
struct Networks;

impl NetworkSource for Networks {
    fn network<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkSidecarConfig>, NetworkProblem>> {
        Box::pin(async move {
            if namespace == "broken" {
                return Err(NetworkProblem::LookupFailed("no answer".to_string()));
            }
            if !["prod", "open"].contains(&name) {
                return Ok(None);
            }
            let private = name == "prod";
            Ok(Some(NetworkSidecarConfig {
                name: name.to_string(),
                network_id: name.to_string(),
                bootstrap_urls: vec![format!("http://{name}-bootstrap.{namespace}.svc:3000")],
                image: "dig-sidecar:test".to_string(),
                p2p_port: 4001,
                api_port: 8080,
                psk_secret: private.then(|| SecretKeySelector {
                    name: "psk".to_string(),
                    key: "swarm.key".to_string(),
                }),
                propagate_deletes: private,
                write_policy: Default::default(),
                writers: Vec::new(),
                mdns: !private,
                dht: true,
                target_peers: None,
                resources: None,
            }))
        })
    }
}

fn app() -> axum::Router {
    static CONTEXT: LazyLock<Arc<AdmissionContext>> = LazyLock::new(|| {
        let mut registry = prometheus_client::registry::Registry::default();
        Arc::new(AdmissionContext {
            settings: InjectorSettings::default(),
            networks: Arc::new(Networks),
            metrics: WebhookMetrics::register(&mut registry),
            serving: Arc::new(ServingCert::default()),
        })
    });
    router(CONTEXT.clone())
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    });
    &RUNTIME
}

const UID: &str = "0f7c6a1e-5b8e-4c1a-9d55-3b2f7e1c2a10";

/// A review of a pod to inject into network `prod`.
fn review(annotations: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "apps",
            "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": "app",
                    "labels": {"dig.net/inject": "prod"},
                    "annotations": annotations
                },
                "spec": {
                    "initContainers": [{"name": "setup", "image": "busybox"}],
                    "containers": [{
                        "name": "app", "image": "busybox",
                        "ports": [{"containerPort": 8080}],
                        "volumeMounts": [{"name": "stores", "mountPath": "/data"}]
                    }],
                    "volumes": [
                        {"name": "stores", "emptyDir": {}},
                        {"name": "config", "configMap": {"name": "c"}}
                    ]
                }
            }
        }
    })
}

fn base_review() -> Vec<u8> {
    serde_json::to_vec(&review(
        json!({"dig.net/volume": "stores", "dig.net/api-port": "8081"}),
    ))
    .expect("reviews encode")
}

/// What the webhook made of a review.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Allowed with the sidecar patch.
    Injected,
    /// Allowed unchanged.
    Skipped,
    /// Refused (a denial, or a body that is no pod review).
    Refused,
}

/// Posts `body` to `/mutate` and checks the answer (see the module comment).
fn answer(body: Vec<u8>) -> Result<Outcome, TestCaseError> {
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    runtime().block_on(async {
        let http = http::Request::post("/mutate")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("a request");
        let response = app().oneshot(http).await.expect("infallible");
        prop_assert_eq!(response.status(), 200);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("in-memory body")
            .to_bytes();
        let review: Value = serde_json::from_slice(&bytes)
            .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {bytes:?}")))?;
        prop_assert_eq!(&review["kind"], "AdmissionReview");
        let answered = &review["response"];
        prop_assert!(answered["allowed"].is_boolean(), "{review}");
        let asked_uid = request
            .as_ref()
            .and_then(|r| r["request"]["uid"].as_str().map(str::to_owned));
        if let (Some(asked), Some(true)) = (&asked_uid, answered["allowed"].as_bool()) {
            prop_assert_eq!(answered["uid"].as_str(), Some(asked.as_str()));
        }
        if !answered["allowed"].as_bool().unwrap_or(false) {
            let message = answered["status"]["message"].as_str().unwrap_or_default();
            prop_assert!(!message.is_empty(), "a denial says why: {review}");
            return Ok(Outcome::Refused);
        }
        // kube writes the patch bytes as a JSON array of numbers, which the API server reads as
        // it reads the base64 string of the Kubernetes docs; accept either.
        let patch = match &answered["patch"] {
            Value::Null => return Ok(Outcome::Skipped),
            Value::String(text) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| TestCaseError::fail(format!("patch is not base64: {e}")))?,
            other => serde_json::from_value::<Vec<u8>>(other.clone())
                .map_err(|e| TestCaseError::fail(format!("patch is not bytes: {e}")))?,
        };
        prop_assert_eq!(answered["patchType"].as_str(), Some("JSONPatch"));
        let patch: json_patch::Patch = serde_json::from_slice(&patch)
            .map_err(|e| TestCaseError::fail(format!("patch is not a JSON patch: {e}")))?;
        let mut pod = request.expect("a decoded review")["request"]["object"].clone();
        json_patch::patch(&mut pod, &patch)
            .map_err(|e| TestCaseError::fail(format!("the patch does not apply: {e}")))?;
        let pod: Pod = serde_json::from_value(pod)
            .map_err(|e| TestCaseError::fail(format!("the patched pod does not decode: {e}")))?;
        let spec = pod.spec.expect("a pod spec");
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .filter(|c| c.name == SIDECAR_CONTAINER_NAME)
            .count();
        prop_assert_eq!(sidecars, 1, "one sidecar in the patched pod");
        Ok(Outcome::Injected)
    })
}

/// Values of `dig.net/*` annotations at and past what they may hold.
fn annotation_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("stores".to_string()),
        Just("config".to_string()),
        Just("0".to_string()),
        Just("65536".to_string()),
        Just("-1".to_string()),
        Just("4001".to_string()),
        Just("8080".to_string()),
        Just("1e999".to_string()),
        Just("100m".to_string()),
        Just("1Ei".to_string()),
        Just("9999999999999999999999Gi".to_string()),
        Just("registry.example/evil:latest\n--privileged".to_string()),
        "[ -~]{0,40}",
        "\\PC{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn mutated_reviews_are_answered_well(mutation in json_mutation()) {
        answer(mutation.apply(&base_review()))?;
    }

    #[test]
    fn hostile_annotation_values_are_answered_well(
        values in proptest::collection::btree_map(
            proptest::sample::select(vec![
                "dig.net/volume",
                "dig.net/image",
                "dig.net/cpu-request",
                "dig.net/memory-request",
                "dig.net/cpu-limit",
                "dig.net/memory-limit",
                "dig.net/p2p-port",
                "dig.net/api-port",
                "dig.net/injected",
            ]),
            annotation_value(),
            0..6,
        ),
    ) {
        let annotations: serde_json::Map<String, Value> = values
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        answer(serde_json::to_vec(&review(Value::Object(annotations))).unwrap())?;
    }

    #[test]
    fn arbitrary_bytes_are_answered_well(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        prop_assert_eq!(answer(bytes)?, Outcome::Refused);
    }
}

#[test]
fn the_base_review_is_injected() {
    assert_eq!(answer(base_review()).unwrap(), Outcome::Injected);
}

#[test]
fn the_corpus_of_hostile_reviews_is_answered_as_named() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/admission_review");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .expect("the admission_review corpus")
        .map(|entry| entry.expect("an entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let body = std::fs::read(&path).expect("a corpus file");
        let outcome = answer(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = match name.split('-').next() {
            Some("injected") => Outcome::Injected,
            Some("skipped") => Outcome::Skipped,
            Some("denied" | "invalid") => Outcome::Refused,
            _ => panic!("{name} does not start with injected-, skipped-, denied- or invalid-"),
        };
        assert_eq!(outcome, expected, "{name}");
    }
}
