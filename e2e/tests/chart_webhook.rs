//! The chart's sidecar-injection webhook as the API server and cert-manager will use it: the
//! admission settings, the path from the MutatingWebhookConfiguration through the Service to the
//! operator's listening port, and in cert-manager mode the Certificate, the mounted Secret and
//! the CA injection pointing at each other.
//!
//! Skipped like the other `chart_*` tests when `helm` is not built, unless
//! DIG_E2E_REQUIRE_CLUSTER=1.

mod chart_support;

use chart_support::{Helm, NAMESPACE, Rendered, strings};
use serde_json::{Value, json};

const FULLNAME: &str = "dig-operator";

fn config_name() -> String {
    format!("{NAMESPACE}-{FULLNAME}-inject")
}

fn webhook(rendered: &Rendered) -> &Value {
    &rendered.get("MutatingWebhookConfiguration", &config_name())["webhooks"][0]
}

fn operator_pod(rendered: &Rendered) -> &Value {
    &rendered.get("Deployment", FULLNAME)["spec"]["template"]
}

fn operator_container(rendered: &Rendered) -> &Value {
    &operator_pod(rendered)["spec"]["containers"][0]
}

/// The value of `--name=value` in the operator's arguments.
fn flag(rendered: &Rendered, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    strings(&operator_container(rendered)["args"])
        .into_iter()
        .find_map(|arg| arg.strip_prefix(&prefix).map(str::to_string))
}

#[test]
fn admission_settings_are_the_ones_an_injector_needs() {
    let Some(helm) = Helm::or_skip("admission_settings_are_the_ones_an_injector_needs") else {
        return;
    };
    let defaults = helm.template(&[]);
    let hook = webhook(&defaults);
    assert_eq!(hook["name"], "inject.dig.net");
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(hook["sideEffects"], "None");
    // A pod the webhook cannot see must not start without its node.
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["timeoutSeconds"], 10);
    assert_eq!(hook["matchPolicy"], "Equivalent");
    // Injection is idempotent, so a re-invocation would change nothing; none is asked for.
    assert_eq!(hook["reinvocationPolicy"], "Never");
    assert_eq!(
        hook["rules"],
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"], "scope": "Namespaced"}])
    );

    let tuned = helm.template(&["--set", "webhook.timeoutSeconds=6"]);
    assert_eq!(webhook(&tuned)["timeoutSeconds"], 6);
    for out_of_range in ["webhook.timeoutSeconds=5", "webhook.timeoutSeconds=31"] {
        let refused = helm.template_text(&["--set", out_of_range]);
        assert!(
            refused.is_err(),
            "the schema must refuse {out_of_range} (the API server allows 1 to 30)"
        );
    }
    let refused = helm.template_text(&["--set", "webhook.failurePolicy=Sometimes"]);
    assert!(refused.is_err(), "failurePolicy is Fail or Ignore");
}

#[test]
fn the_operator_pods_can_never_be_injected() {
    let Some(helm) = Helm::or_skip("the_operator_pods_can_never_be_injected") else {
        return;
    };
    let rendered = helm.template(&["--set", "webhook.excludeNamespaces={batch}"]);
    let hook = webhook(&rendered);
    // The objectSelector keeps every pod without the label away from the webhook...
    let pod_labels = &operator_pod(&rendered)["metadata"]["labels"];
    assert!(
        pod_labels.get("dig.net/inject").is_none(),
        "operator pods carry no inject label: {pod_labels}"
    );
    assert_eq!(
        hook["objectSelector"]["matchExpressions"],
        json!([{"key": "dig.net/inject", "operator": "Exists"}])
    );
    // ...and the namespaces of the operator and the system are out, for the API server and for
    // the operator's own check.
    let excluded = strings(&hook["namespaceSelector"]["matchExpressions"][0]["values"]);
    for namespace in ["kube-system", NAMESPACE, "batch"] {
        assert!(
            excluded.contains(&namespace.to_string()),
            "{namespace} in {excluded:?}"
        );
    }
    let operator_excluded = flag(&rendered, "--webhook-excluded-namespace").unwrap_or_default();
    let operator_excluded: Vec<&str> = operator_excluded.split(',').collect();
    for namespace in [NAMESPACE, "batch"] {
        assert!(
            operator_excluded.contains(&namespace),
            "{namespace} in {operator_excluded:?}"
        );
    }
}

#[test]
fn the_api_server_reaches_the_operators_webhook_port_through_the_service() {
    let Some(helm) =
        Helm::or_skip("the_api_server_reaches_the_operators_webhook_port_through_the_service")
    else {
        return;
    };
    for (port, service_port) in [(9443, 443), (10250, 8443)] {
        let rendered = helm.template(&[
            "--set",
            &format!("webhook.port={port}"),
            "--set",
            &format!("webhook.service.port={service_port}"),
        ]);
        let client = &webhook(&rendered)["clientConfig"]["service"];
        assert_eq!(client["path"], "/mutate");
        assert_eq!(client["port"], service_port);
        assert_eq!(client["namespace"], NAMESPACE);
        let service_name = client["name"].as_str().expect("service name");
        let service = rendered.get("Service", service_name);
        let service_ports = service["spec"]["ports"].as_array().expect("ports");
        let by_port = service_ports
            .iter()
            .find(|p| p["port"] == service_port)
            .unwrap_or_else(|| panic!("no port {service_port} on {service}"));
        // The Service selects the operator pods and forwards to their webhook port.
        let pod_labels = &operator_pod(&rendered)["metadata"]["labels"];
        for (key, value) in service["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(&pod_labels[key], value, "selector {key}");
        }
        let target = by_port["targetPort"].clone();
        let container = operator_container(&rendered);
        let container_port = container["ports"]
            .as_array()
            .expect("container ports")
            .iter()
            .find(|p| p["name"] == target || p["containerPort"] == target)
            .unwrap_or_else(|| panic!("no container port {target}"));
        assert_eq!(container_port["containerPort"], port);
        assert_eq!(
            flag(&rendered, "--webhook-listen").as_deref(),
            Some(format!("0.0.0.0:{port}").as_str()),
            "the operator listens where the Service sends"
        );
        assert_eq!(
            flag(&rendered, "--webhook-service").as_deref(),
            Some(service_name),
            "the self-signed certificate names the Service the API server dials"
        );
        assert_eq!(
            flag(&rendered, "--webhook-config-name"),
            Some(config_name()),
            "the operator patches the caBundle of this configuration"
        );
    }
}

#[test]
fn cert_manager_mode_connects_certificate_secret_mount_and_ca_injection() {
    let Some(helm) =
        Helm::or_skip("cert_manager_mode_connects_certificate_secret_mount_and_ca_injection")
    else {
        return;
    };
    let rendered = helm.template(&["--set", "webhook.certManager.enabled=true"]);
    let certificates = rendered.of_kind("Certificate");
    assert_eq!(certificates.len(), 1);
    let certificate = certificates[0];
    assert_eq!(certificate["apiVersion"], "cert-manager.io/v1");
    let certificate_name = certificate["metadata"]["name"].as_str().unwrap();
    assert_eq!(certificate["metadata"]["namespace"], NAMESPACE);

    // cert-manager's CA injector reads `<namespace>/<Certificate name>`.
    let config = rendered.get("MutatingWebhookConfiguration", &config_name());
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NAMESPACE}/{certificate_name}")
    );
    // The certificate names the host the API server dials: <service>.<namespace>.svc.
    let client = &webhook(&rendered)["clientConfig"]["service"];
    let host = format!(
        "{}.{}.svc",
        client["name"].as_str().unwrap(),
        client["namespace"].as_str().unwrap()
    );
    assert!(
        strings(&certificate["spec"]["dnsNames"]).contains(&host),
        "{host} in {}",
        certificate["spec"]["dnsNames"]
    );
    assert!(certificate["spec"]["renewBefore"].is_string());

    // The Secret cert-manager writes is mounted where the operator reads tls.crt and tls.key.
    let secret_name = certificate["spec"]["secretName"].as_str().unwrap();
    let pod = &operator_pod(&rendered)["spec"];
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"]["secretName"] == secret_name)
        .unwrap_or_else(|| panic!("Secret {secret_name} is not mounted"));
    let mount = operator_container(&rendered)["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the Secret volume is mounted in the operator container");
    assert_eq!(mount["readOnly"], true);
    assert_eq!(
        flag(&rendered, "--webhook-cert-dir"),
        mount["mountPath"].as_str().map(str::to_string)
    );
    // The operator neither makes its own certificate nor touches the caBundle in this mode.
    assert!(flag(&rendered, "--webhook-secret-name").is_none());
    assert!(webhook(&rendered)["clientConfig"]["caBundle"].is_null());

    // An issuer of the user's: no self-signed Issuer is made.
    let own_issuer = helm.template(&[
        "--set",
        "webhook.certManager.enabled=true",
        "--set",
        "webhook.certManager.issuerRef.name=corp-ca",
        "--set",
        "webhook.certManager.issuerRef.kind=ClusterIssuer",
        "--set",
        "webhook.certManager.issuerRef.group=cert-manager.io",
    ]);
    assert!(own_issuer.of_kind("Issuer").is_empty());
    assert_eq!(
        own_issuer.of_kind("Certificate")[0]["spec"]["issuerRef"],
        json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
    );
}
