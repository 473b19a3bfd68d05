//! The sidecar-injection webhook against a real control plane: the `dig-operator` binary runs on
//! loopback with its webhook, makes its own CA and certificate, writes the CA into the chart's
//! MutatingWebhookConfiguration (rendered by `helm template`, calling the operator by URL); the API
//! server then injects the node into a labelled pod, leaves unlabelled pods, pods in excluded
//! namespaces and pods that already have the sidecar alone, and refuses bad pods with the
//! webhook's message.
//!
//! Skipped with a message when the control-plane tools are not built, unless
//! DIG_E2E_REQUIRE_CLUSTER=1 (as `e2e/test-all.sh` sets), which makes that a failure.

use std::net::SocketAddr;
use std::time::Duration;

use dig_e2e::cluster::{ClusterError, TestCluster};
use dig_e2e::process::{ProcessSpec, free_loopback_addr, workspace_root};
use dig_e2e::wait::{CLUSTER_WAIT, eventually};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client};
use serde_json::{Value, json};

const APPS: &str = "apps";
const OPERATOR_NAMESPACE: &str = "dig-system";
/// What the chart names its configuration when released as `dig-operator` in `dig-system`.
const CONFIG_NAME: &str = "dig-system-dig-operator-inject";
const SECRET_NAME: &str = "dig-e2e-webhook-tls";

/// The chart's MutatingWebhookConfiguration, rendered by `helm template` as the release
/// `dig-operator` in the operator's namespace.
fn chart_webhook_configuration(cluster: &TestCluster) -> Value {
    let chart = workspace_root().join("charts/dig-operator");
    let home = cluster.run_dir().join("helm-home");
    let output = std::process::Command::new(cluster.tool("helm"))
        .args(["template", "dig-operator"])
        .arg(&chart)
        .args([
            "--namespace",
            OPERATOR_NAMESPACE,
            "--show-only",
            "templates/webhook.yaml",
        ])
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run helm");
    assert!(
        output.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    yaml_serde::from_slice(&output.stdout).expect("the rendered webhook configuration is YAML")
}

fn apply(cluster: &TestCluster, manifest: &Value) -> Result<String, ClusterError> {
    cluster.kubectl_with_stdin(["apply", "-f", "-"], &manifest.to_string())
}

fn pod(name: &str, labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": APPS, "labels": labels, "annotations": annotations},
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.local/app:1",
                "volumeMounts": [{"name": "stores", "mountPath": "/stores"}]
            }],
            "volumes": [{"name": "stores", "emptyDir": {}}]
        }
    })
}

/// Creating `manifest` must fail with the webhook's denial containing every one of `expected`.
fn assert_denied(cluster: &TestCluster, manifest: &Value, expected: &[&str]) {
    match apply(cluster, manifest) {
        Ok(output) => panic!("pod {manifest} was admitted: {output}"),
        Err(ClusterError::Kubectl { stderr, .. }) => {
            assert!(
                stderr.contains("admission webhook \"inject.dig.net\" denied the request"),
                "{stderr}"
            );
            for text in expected {
                assert!(stderr.contains(text), "expected {text:?} in: {stderr}");
            }
        }
        Err(other) => panic!("kubectl could not run: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_injects_labelled_pods_and_denies_bad_ones() {
    let Some(cluster) = TestCluster::start_or_skip("webhook") else {
        return;
    };
    let client: Client = cluster.client().await.expect("client for the test cluster");
    let crds = workspace_root().join("crds");
    cluster
        .kubectl(["apply", "-f", crds.to_str().expect("UTF-8 path")])
        .expect("apply the CRDs");
    cluster
        .kubectl([
            "wait",
            "--for=condition=Established",
            "crd/dignetworks.dig.net",
            "--timeout=60s",
        ])
        .expect("DigNetwork CRD established");
    for namespace in [APPS, OPERATOR_NAMESPACE] {
        cluster
            .kubectl(["create", "namespace", namespace])
            .expect("create namespace");
    }
    apply(
        &cluster,
        &json!({
            "apiVersion": "dig.net/v1alpha1",
            "kind": "DigNetwork",
            "metadata": {"name": "prod", "namespace": APPS},
            "spec": {
                "networkId": "prod-net",
                "bootstrap": {"replicas": 1, "image": "registry.local/dig-bootstrap:e2e"},
                "nodes": {"replicas": 0, "image": "registry.local/dig-sidecar:e2e"},
                "replication": {"propagateDeletes": true}
            }
        }),
    )
    .expect("create the DigNetwork");
    apply(
        &cluster,
        &json!({
            "apiVersion": "dig.net/v1alpha1",
            "kind": "DigNetwork",
            "metadata": {"name": "sealed", "namespace": APPS},
            "spec": {
                "bootstrap": {"replicas": 1, "image": "registry.local/dig-bootstrap:e2e"},
                "nodes": {"replicas": 0, "image": "registry.local/dig-sidecar:e2e"},
                "privateNetwork": {"pskSecretRef": {"name": "sealed-psk", "key": "swarm.key"}}
            }
        }),
    )
    .expect("create the private DigNetwork (its Secret never made)");

    // Two replicas start at once with no Secret yet: they must settle on one certificate. The
    // second reconciles another namespace so that only the first one's controllers act on `apps`.
    let webhook_addr = free_loopback_addr().expect("a free port");
    let metrics_addr = free_loopback_addr().expect("a free port");
    let second_webhook_addr = free_loopback_addr().expect("a free port");
    let second_metrics_addr = free_loopback_addr().expect("a free port");
    let operator = |name: &str, watched: &str, metrics: SocketAddr, webhook: SocketAddr| {
        ProcessSpec::workspace_binary("dig-operator")
            .expect("dig-operator is built (cargo build --workspace --bins)")
            .name(name)
            .env("KUBECONFIG", cluster.kubeconfig_path().to_string_lossy())
            .args([
                format!("--namespace={watched}"),
                format!("--metrics-listen={metrics}"),
                format!("--webhook-listen={webhook}"),
                format!("--webhook-namespace={OPERATOR_NAMESPACE}"),
                format!("--webhook-secret-name={SECRET_NAME}"),
                format!("--webhook-config-name={CONFIG_NAME}"),
                "--webhook-extra-san=127.0.0.1".to_string(),
            ])
            .spawn()
            .expect("start dig-operator")
    };
    let _operator = operator("operator-1", APPS, metrics_addr, webhook_addr);
    let _second_operator = operator(
        "operator-2",
        OPERATOR_NAMESPACE,
        second_metrics_addr,
        second_webhook_addr,
    );

    // The chart's own configuration (selectors, policies), created without a caBundle (the
    // operator must fill it in) and pointed at the operator on loopback instead of the Service.
    let mut configuration = chart_webhook_configuration(&cluster);
    assert_eq!(configuration["metadata"]["name"], CONFIG_NAME);
    configuration["webhooks"][0]["clientConfig"] =
        json!({"url": format!("https://127.0.0.1:{}/mutate", webhook_addr.port())});
    // A second entry calling the same webhook after the first, as a re-invocation (or a second
    // injector installation) would: it sees the injected pod and must leave it as it is. The
    // operator must write the caBundle into both.
    let mut again = configuration["webhooks"][0].clone();
    again["name"] = json!("inject-again.dig.net");
    configuration["webhooks"]
        .as_array_mut()
        .expect("webhooks")
        .push(again);
    apply(&cluster, &configuration).expect("create the MutatingWebhookConfiguration");

    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let ca_bundle = eventually("the operator writes the caBundle", CLUSTER_WAIT, || {
        let configs = configs.clone();
        async move {
            let config = configs.get(CONFIG_NAME).await.map_err(|e| e.to_string())?;
            let bundles: Vec<_> = config
                .webhooks
                .unwrap_or_default()
                .into_iter()
                .map(|webhook| webhook.client_config.ca_bundle.map(|bundle| bundle.0))
                .collect();
            match bundles.as_slice() {
                [Some(first), Some(second)] if first == second => Ok(first.clone()),
                other => Err(format!("caBundles so far: {other:?}")),
            }
        }
    })
    .await;
    let secret = secrets.get(SECRET_NAME).await.expect("the webhook Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.expect("Secret data");
    assert_eq!(
        data["ca-bundle.crt"].0, ca_bundle,
        "caBundle is the Secret's bundle"
    );
    for key in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
        assert!(data.contains_key(key), "Secret has {key}");
    }

    // The webhook answers over TLS with a certificate the written CA vouches for.
    dig_core::crypto::install_crypto_provider();
    let https = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_bundle).expect("PEM CA bundle"))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTPS client");
    for addr in [webhook_addr, second_webhook_addr] {
        let healthz = format!("https://127.0.0.1:{}/healthz", addr.port());
        eventually(
            &format!("the webhook on {addr} serves /healthz over TLS"),
            CLUSTER_WAIT,
            || {
                let (https, healthz) = (https.clone(), healthz.clone());
                async move {
                    let status = https
                        .get(&healthz)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?
                        .status();
                    (status == 200)
                        .then_some(())
                        .ok_or(format!("status {status}"))
                }
            },
        )
        .await;
    }

    // Both replicas report ready now that their webhook has a certificate.
    for addr in [metrics_addr, second_metrics_addr] {
        let readyz = reqwest::get(format!("http://{addr}/readyz"))
            .await
            .expect("operator /readyz");
        assert_eq!(readyz.status(), 200, "replica on {addr}");
    }

    // Every admission result is exported before the first admission.
    let metrics_of = |addr: SocketAddr| async move {
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("operator /metrics")
            .text()
            .await
            .expect("metrics text")
    };
    let before = metrics_of(metrics_addr).await;
    for result in ["allowed_injected", "allowed_skipped", "denied"] {
        let zero = format!("dig_operator_webhook_admissions_total{{result=\"{result}\"}} 0");
        assert!(before.contains(&zero), "{zero} in:\n{before}");
    }

    // A labelled pod gets the node as a native sidecar, with the per-pod overrides applied.
    let pods: Api<Pod> = Api::namespaced(client.clone(), APPS);
    apply(
        &cluster,
        &pod(
            "injected",
            json!({"dig.net/inject": "prod"}),
            json!({
                "dig.net/volume": "stores",
                "dig.net/memory-limit": "256Mi",
                "dig.net/image": "registry.local/dig-sidecar:override",
                "dig.net/p2p-port": "4101"
            }),
        ),
    )
    .expect("the labelled pod is admitted");
    let injected = serde_json::to_value(pods.get("injected").await.expect("injected pod")).unwrap();
    let init = injected["spec"]["initContainers"]
        .as_array()
        .expect("initContainers were added");
    assert_eq!(init.len(), 1);
    let sidecar = &init[0];
    assert_eq!(sidecar["name"], "dig-sidecar");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["image"], "registry.local/dig-sidecar:override");
    assert_eq!(sidecar["resources"]["limits"]["memory"], "256Mi");
    assert!(
        sidecar["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|mount| mount["name"] == "stores" && mount["mountPath"] == "/data")
    );
    let args: Vec<&str> = sidecar["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "run", "{args:?}");
    assert!(args.contains(&"--propagate-deletes"), "{args:?}");
    for (flag, value) in [
        ("--data-dir", "/data"),
        ("--state-dir", "/data/.dig-node"),
        ("--network", "prod-net"),
        ("--bootstrap", "http://prod-bootstrap.apps.svc:3000"),
        ("--listen", "/ip4/0.0.0.0/tcp/4101"),
        ("--announce", "/ip4/$(POD_IP)/tcp/4101"),
    ] {
        assert!(
            args.windows(2).any(|pair| pair == [flag, value]),
            "{flag} {value} in {args:?}"
        );
    }
    assert!(
        sidecar["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|port| port["containerPort"] == 4101),
        "{sidecar}"
    );
    assert_eq!(sidecar["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        injected["metadata"]["annotations"]["dig.net/injected"],
        "prod"
    );
    // The app container is as written.
    assert_eq!(injected["spec"]["containers"].as_array().unwrap().len(), 1);

    // A volume the non-root sidecar may not be able to write: admitted and injected, with a
    // warning kubectl shows (made an error here so that its text can be checked).
    let mut on_claim = pod(
        "on-claim",
        json!({"dig.net/inject": "prod"}),
        json!({"dig.net/volume": "stores"}),
    );
    on_claim["spec"]["volumes"] =
        json!([{"name": "stores", "persistentVolumeClaim": {"claimName": "stores"}}]);
    match cluster.kubectl_with_stdin(
        ["apply", "--warnings-as-errors", "-f", "-"],
        &on_claim.to_string(),
    ) {
        Ok(output) => panic!("expected a warning about fsGroup, got: {output}"),
        Err(ClusterError::Kubectl { stderr, .. }) => {
            assert!(
                stderr.contains("Warning:") && stderr.contains("fsGroup"),
                "{stderr}"
            );
        }
        Err(other) => panic!("kubectl could not run: {other}"),
    }
    let on_claim = serde_json::to_value(pods.get("on-claim").await.expect("on-claim pod")).unwrap();
    assert_eq!(
        on_claim["spec"]["initContainers"][0]["name"], "dig-sidecar",
        "{on_claim}"
    );

    // An unlabelled pod is not touched.
    apply(&cluster, &pod("plain", json!({"app": "plain"}), json!({})))
        .expect("the unlabelled pod is admitted");
    let plain = serde_json::to_value(pods.get("plain").await.expect("plain pod")).unwrap();
    assert!(plain["spec"].get("initContainers").is_none(), "{plain}");
    assert!(
        plain["metadata"]["annotations"]
            .get("dig.net/injected")
            .is_none()
    );

    // Labelled pods in kube-system (and the operator's namespace) are never injected.
    let mut system_pod = pod(
        "system",
        json!({"dig.net/inject": "prod"}),
        json!({"dig.net/volume": "stores"}),
    );
    system_pod["metadata"]["namespace"] = json!("kube-system");
    apply(&cluster, &system_pod).expect("the kube-system pod is admitted");
    let system: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let system_pod = serde_json::to_value(system.get("system").await.expect("system pod")).unwrap();
    assert!(
        system_pod["spec"].get("initContainers").is_none(),
        "{system_pod}"
    );

    // A pod that already carries the sidecar (made by hand, or seen again on re-invocation) is
    // admitted as it is.
    let mut by_hand = pod(
        "by-hand",
        json!({"dig.net/inject": "prod"}),
        json!({"dig.net/volume": "stores"}),
    );
    by_hand["spec"]["initContainers"] = json!([{
        "name": "dig-sidecar", "image": "registry.local/own-sidecar:1", "restartPolicy": "Always"
    }]);
    apply(&cluster, &by_hand).expect("the pod with its own sidecar is admitted");
    let by_hand = serde_json::to_value(pods.get("by-hand").await.expect("by-hand pod")).unwrap();
    let init = by_hand["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 1, "{by_hand}");
    assert_eq!(init[0]["image"], "registry.local/own-sidecar:1");
    assert!(
        by_hand["metadata"]["annotations"]
            .get("dig.net/injected")
            .is_none(),
        "{by_hand}"
    );

    // Bad pods are refused with a message that says which and why.
    assert_denied(
        &cluster,
        &pod(
            "no-such-volume",
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "dig-data"}),
        ),
        &[
            "dig.net/volume=\"dig-data\"",
            // (the API server's service-account volume follows `stores` in the list)
            "names a volume the pod does not have (pod volumes: stores",
        ],
    );
    assert_denied(
        &cluster,
        &pod(
            "no-such-network",
            json!({"dig.net/inject": "staging"}),
            json!({"dig.net/volume": "stores"}),
        ),
        &["\"staging\"", "does not exist in namespace \"apps\""],
    );
    assert_denied(
        &cluster,
        &pod(
            "bad-port",
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "stores", "dig.net/p2p-port": "99999"}),
        ),
        &["dig.net/p2p-port=\"99999\"", "port number"],
    );
    let mut read_only = pod(
        "read-only-volume",
        json!({"dig.net/inject": "prod"}),
        json!({"dig.net/volume": "settings"}),
    );
    read_only["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "settings", "configMap": {"name": "settings"}}));
    assert_denied(
        &cluster,
        &read_only,
        &[
            "dig.net/volume=\"settings\"",
            "read-only volume (configMap)",
        ],
    );
    assert_denied(
        &cluster,
        &pod(
            "sealed-out",
            json!({"dig.net/inject": "sealed"}),
            json!({"dig.net/volume": "stores"}),
        ),
        &[
            "DigNetwork \"sealed\" in namespace \"apps\" cannot configure a sidecar",
            "PSK Secret \"sealed-psk\"",
            "does not exist",
        ],
    );
    for refused in [
        "no-such-volume",
        "no-such-network",
        "bad-port",
        "read-only-volume",
        "sealed-out",
    ] {
        assert!(pods.get_opt(refused).await.unwrap().is_none());
    }

    // The operator's /metrics counts the admissions by result (the unlabelled and kube-system pods
    // never reached the webhook; each admitted labelled pod was reviewed twice, by the second
    // entry after the first; a denied one only once); of the two replicas, exactly one wrote the
    // certificate.
    let metrics = metrics_of(metrics_addr).await;
    for expected in [
        "dig_operator_webhook_admissions_total{result=\"allowed_injected\"} 2",
        "dig_operator_webhook_admissions_total{result=\"allowed_skipped\"} 4",
        "dig_operator_webhook_admissions_total{result=\"denied\"} 5",
        "dig_operator_webhook_certificate_expiry_timestamp_seconds ",
    ] {
        assert!(metrics.contains(expected), "{expected} in:\n{metrics}");
    }
    let rotations = |text: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix("dig_operator_webhook_certificate_rotations_total "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no rotations counter in:\n{text}"))
    };
    let second_metrics = metrics_of(second_metrics_addr).await;
    assert_eq!(
        rotations(&metrics) + rotations(&second_metrics),
        1,
        "one certificate for both replicas"
    );

    // An operator whose webhook cannot listen stops with the reason instead of looking healthy.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port to occupy");
    let taken_addr = taken.local_addr().unwrap();
    let mut blocked = operator(
        "operator-port-taken",
        OPERATOR_NAMESPACE,
        free_loopback_addr().expect("a free port"),
        taken_addr,
    );
    let status = blocked
        .wait_timeout_async(Duration::from_secs(60))
        .await
        .expect("waiting for the operator")
        .expect("the operator exits when its webhook cannot listen");
    assert!(!status.success(), "{status}");
    let output = blocked.output();
    assert!(
        output.contains(&format!("webhook server on {taken_addr}")),
        "{output}"
    );
}
