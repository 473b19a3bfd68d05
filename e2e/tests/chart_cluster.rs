//! The chart against real Kubernetes: kubeconform (offline schemas) for several value sets, then
//! on a real control plane `helm install`, the operator binary running with exactly the
//! Deployment's arguments and exactly the chart's RBAC (impersonating its ServiceAccount), a
//! DigNetwork reconciled, the operator's `/metrics` checked against the dashboards and alerts,
//! `helm upgrade`, and `helm uninstall` leaving the CRDs and users' networks in place.
//!
//! Skipped with a message when the control-plane tools are not built, unless
//! DIG_E2E_REQUIRE_CLUSTER=1 (set by e2e/test-all.sh).

mod chart_support;

use std::path::Path;
use std::time::{Duration, Instant};

use chart_support::{
    Helm, NAMESPACE, RELEASE, Rendered, SeriesCheck, alert_expressions, chart_dir, check_series,
    dashboard_expressions, exposed_series_names, strings, tools_or_skip,
};
use dig_e2e::cluster::{TestCluster, kubeconform, kubectl};
use dig_e2e::process::{ProcessSpec, TestProcess, free_loopback_addr};
use dig_e2e::wait::{CLUSTER_WAIT, eventually};
use serde_json::Value;

const FULLNAME: &str = "dig-operator";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:dig-system:dig-operator";
/// Every wait below is bounded by this (a loaded two-core machine).

#[test]
fn rendered_chart_passes_kubeconform() {
    let Some(tools) = tools_or_skip("rendered_chart_passes_kubeconform") else {
        return;
    };
    let helm = Helm::in_tools(&tools);
    let example = chart_support::workspace_root().join("examples/inject-pod.yaml");
    let example = std::fs::read_to_string(&example)
        .unwrap_or_else(|e| panic!("reading {}: {e}", example.display()));
    for extra in [
        vec![],
        vec!["--set", "watchNamespaces={team-a,team-b}"],
        vec!["--set", "webhook.certManager.enabled=true"],
        vec!["--api-versions", "monitoring.coreos.com/v1"],
        vec!["example"],
    ] {
        // "example": the inject-pod manifest users copy, checked the same way.
        let rendered = if extra == ["example"] {
            example.clone()
        } else {
            helm.template_text(&extra)
                .unwrap_or_else(|e| panic!("rendering with {extra:?}: {e}"))
        };
        // The cert-manager and Prometheus Operator kinds have no offline schema here; the
        // apiserver dry run below and the chart_render assertions cover them.
        let output = kubeconform(
            &tools,
            &[],
            &["-skip", "ServiceMonitor,PrometheusRule,Certificate,Issuer"],
            &rendered,
        )
        .expect("cluster.sh kubeconform runs");
        assert!(
            output.status.success(),
            "kubeconform rejects the chart rendered with {extra:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// kubectl against the test cluster; `Err` says which command failed and what kubectl wrote.
fn run_kubectl(
    kubeconfig: &Path,
    tools: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, String> {
    kubectl(tools, kubeconfig, args, stdin.unwrap_or_default()).map_err(|e| e.to_string())
}

/// Applies the DigNetwork `name` of namespace `chart-net` with `spec_yaml` (indented under
/// `spec:`), waits until the operator has created `objects` there, and checks that it hit no RBAC
/// denial running with `permissions`.
async fn assert_network_reconciled(
    kubeconfig: &Path,
    tools: &Path,
    operator: &TestProcess,
    permissions: &str,
    name: &str,
    spec_yaml: &str,
    objects: &[&str],
) {
    let manifest = format!(
        "apiVersion: dig.net/v1alpha1\nkind: DigNetwork\nmetadata:\n  name: {name}\n  namespace: chart-net\nspec:\n{spec_yaml}"
    );
    run_kubectl(kubeconfig, tools, &["apply", "-f", "-"], Some(&manifest))
        .unwrap_or_else(|e| panic!("applying DigNetwork {name}: {e}"));
    for object in objects {
        eventually(
            &format!("the operator with {permissions} creates {object}"),
            CLUSTER_WAIT,
            || async move {
                run_kubectl(
                    kubeconfig,
                    tools,
                    &["get", object, "-n", "chart-net", "-o", "name"],
                    None,
                )
            },
        )
        .await;
    }
    let output = operator.output();
    assert!(
        // The API server's denial reads "<resource> is forbidden: User ... cannot <verb>".
        !output.contains("is forbidden"),
        "the operator hit an RBAC denial with {permissions}:\n{output}"
    );
}

/// A copy of the admin kubeconfig whose user impersonates the chart's ServiceAccount, so the
/// operator runs with exactly the permissions the chart grants.
fn impersonating_kubeconfig(admin: &Path, out: &Path) {
    let text = std::fs::read_to_string(admin).expect("reading the kubeconfig");
    let mut config: Value = yaml_serde::from_str(&text).expect("kubeconfig is YAML");
    for user in config["users"].as_array_mut().expect("kubeconfig users") {
        user["user"]["as"] = Value::String(SERVICE_ACCOUNT.into());
    }
    std::fs::write(
        out,
        yaml_serde::to_string(&config).expect("kubeconfig YAML"),
    )
    .expect("writing the impersonating kubeconfig");
}

/// Starts the operator binary with the rendered Deployment's arguments (listening on loopback)
/// as the chart's ServiceAccount, and waits until `/readyz` answers; returns it and its base URL.
async fn start_operator(
    rendered: &Rendered,
    admin_kubeconfig: &Path,
    run_dir: &Path,
    identity: &str,
    cert_dir: Option<&Path>,
) -> (TestProcess, String) {
    let container =
        &rendered.get("Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0];
    let metrics = free_loopback_addr().expect("metrics port");
    let webhook = free_loopback_addr().expect("webhook port");
    let args: Vec<String> = strings(&container["args"])
        .into_iter()
        .map(|arg| {
            if arg.starts_with("--metrics-listen=") {
                format!("--metrics-listen={metrics}")
            } else if arg.starts_with("--webhook-listen=") {
                format!("--webhook-listen={webhook}")
            } else if let (true, Some(dir)) = (arg.starts_with("--webhook-cert-dir="), cert_dir) {
                format!("--webhook-cert-dir={}", dir.display())
            } else {
                arg
            }
        })
        .collect();
    let operator_kubeconfig = run_dir.join(format!("{identity}.kubeconfig"));
    impersonating_kubeconfig(admin_kubeconfig, &operator_kubeconfig);
    let mut operator = ProcessSpec::workspace_binary("dig-operator")
        .expect("dig-operator is built (cargo build --bins)")
        .name(identity)
        .args(args)
        .env("KUBECONFIG", operator_kubeconfig.display().to_string())
        .env("POD_NAME", identity)
        .env("POD_NAMESPACE", NAMESPACE)
        .env("RUST_LOG", "info")
        .spawn()
        .expect("starting dig-operator");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");
    let base = format!("http://{metrics}");
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return (operator, base);
        }
        assert!(
            operator.is_running(),
            "the operator exited:\n{}",
            operator.output()
        );
        assert!(
            Instant::now() < deadline,
            "/readyz never answered:\n{}",
            operator.output()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs the `helm test` pod's own script (kwok runs no containers) against the operator at
/// `base`: the chart's Service URL in the script becomes the operator's loopback address.
fn run_helm_test_script(rendered: &Rendered, base: &str) {
    let test_pod = rendered.get("Pod", &format!("{FULLNAME}-test"));
    let container = &test_pod["spec"]["containers"][0];
    let command = strings(&container["command"]);
    assert_eq!(command[..2], ["sh", "-c"], "{command:?}");
    let service = rendered
        .objects
        .iter()
        .find(|o| {
            o["kind"] == "Service"
                && o["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"
        })
        .expect("the chart's metrics Service");
    let service_url = format!(
        "http://{}.{NAMESPACE}.svc:{}",
        service["metadata"]["name"].as_str().expect("Service name"),
        service["spec"]["ports"][0]["port"]
    );
    let chart_base = format!("base=\"{service_url}\"");
    assert!(
        command[2].contains(&chart_base),
        "the test pod checks the metrics Service {service_url}:\n{}",
        command[2]
    );
    let script = command[2].replace(&chart_base, &format!("base=\"{base}\""));
    let mut check = ProcessSpec::new("sh")
        .name("helm-test-script")
        .args(["-c", &script])
        .spawn()
        .expect("running the helm test script with sh (needs wget)");
    let status = check
        .wait_timeout(Duration::from_secs(90))
        .expect("waiting for the helm test script")
        .unwrap_or_else(|| panic!("the helm test script hung:\n{}", check.output()));
    let output = check.output();
    assert!(status.success(), "the helm test script failed:\n{output}");
    assert!(
        output.contains("readyz: ok") && output.contains("metrics: ok"),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_installs_runs_the_operator_with_its_rbac_and_uninstalls_safely() {
    let Some(cluster) = TestCluster::start_or_skip("chart_cluster") else {
        return;
    };
    dig_core::crypto::install_crypto_provider();
    let tools = cluster.tools_dir().to_path_buf();
    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let kubeconfig_arg = kubeconfig.to_str().expect("UTF-8 path").to_string();
    let helm = Helm::in_tools(&tools);
    let chart = chart_dir();
    let chart_arg = chart.to_str().expect("UTF-8 path");
    let kubectl = |args: &[&str]| run_kubectl(&kubeconfig, &tools, args, None);
    // `helm <command> <release> <extra...>` for the release in NAMESPACE of this cluster.
    let release = |command: &str, extra: &[&str]| {
        let mut args = vec![command, RELEASE];
        args.extend_from_slice(extra);
        args.extend(["--namespace", NAMESPACE, "--kubeconfig", &kubeconfig_arg]);
        helm.run(&args)
    };

    // The watchNamespaces rendering against the real API server (server-side dry run).
    kubectl(&["create", "namespace", "team-a"]).expect("namespace team-a");
    let watched = helm
        .template_text(&["--set", "watchNamespaces={team-a}"])
        .expect("rendering with watchNamespaces");
    kubectl(&["create", "namespace", NAMESPACE]).expect("release namespace");
    run_kubectl(
        &kubeconfig,
        &tools,
        &["apply", "--dry-run=server", "-f", "-"],
        Some(&watched),
    )
    .expect("the API server accepts the chart rendered with watchNamespaces");

    let installed = release("install", &[chart_arg]).expect("helm install");
    // NOTES.txt tells the user what to do next.
    for next_step in [
        "kind: DigNetwork",
        "kubectl -n default wait --for=condition=Ready dignetwork/example",
        "helm test dig-operator -n dig-system",
        "Grafana dashboards",
        "monitoring.coreos.com/v1 API is not served",
    ] {
        assert!(
            installed.contains(next_step),
            "NOTES lack {next_step:?}:\n{installed}"
        );
    }
    for crd in ["dignetworks.dig.net", "dignodes.dig.net"] {
        kubectl(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{crd}"),
            "--timeout=60s",
        ])
        .expect("the chart's CRDs are served");
    }

    // Least privilege, as the API server's RBAC authorizer sees it.
    let can = |verb: &str, resource: &str, namespace: Option<&str>| -> bool {
        let mut args = vec!["auth", "can-i", verb, resource, "--as", SERVICE_ACCOUNT];
        if let Some(namespace) = namespace {
            args.extend(["-n", namespace]);
        }
        match kubectl(&args) {
            Ok(out) => out.trim() == "yes",
            Err(out) if out.contains("no") => false,
            Err(out) => panic!("{out}"),
        }
    };
    let lease = format!("leases/{FULLNAME}-leader");
    let own_webhook = format!("mutatingwebhookconfigurations/{NAMESPACE}-{FULLNAME}-inject");
    for (verb, resource, namespace, allowed) in [
        ("create", "statefulsets.apps", Some("team-a"), true),
        ("delete", "deployments.apps", Some("team-a"), true),
        ("patch", "configmaps", Some("team-a"), true),
        ("get", "secrets", Some("team-a"), true),
        ("list", "secrets", Some("team-a"), false),
        ("watch", "secrets", Some("team-a"), false),
        ("create", "secrets", Some("team-a"), false),
        ("delete", "persistentvolumeclaims", Some("team-a"), false),
        ("patch", "persistentvolumeclaims", Some("team-a"), true),
        ("get", "storageclasses.storage.k8s.io", None, true),
        ("patch", "storageclasses.storage.k8s.io", None, false),
        ("create", "pods", Some("team-a"), false),
        ("delete", "pods", Some("team-a"), false),
        ("patch", "pods", Some("team-a"), true),
        ("update", &lease, Some(NAMESPACE), true),
        ("update", &lease, Some("team-a"), false),
        ("patch", &own_webhook, None, true),
        (
            "patch",
            "mutatingwebhookconfigurations/someone-else",
            None,
            false,
        ),
        (
            "create",
            "clusterroles.rbac.authorization.k8s.io",
            None,
            false,
        ),
        (
            "get",
            "customresourcedefinitions.apiextensions.k8s.io",
            None,
            true,
        ),
        (
            "delete",
            "customresourcedefinitions.apiextensions.k8s.io",
            None,
            false,
        ),
    ] {
        assert_eq!(
            can(verb, resource, namespace),
            allowed,
            "can the operator {verb} {resource} in {namespace:?}?"
        );
    }

    // Secrets are read by name only: the operator cannot enumerate them in any namespace.
    for verb in ["list", "watch"] {
        let answer = kubectl(&[
            "auth",
            "can-i",
            verb,
            "secrets",
            "-A",
            "--as",
            SERVICE_ACCOUNT,
        ]);
        let denied = match &answer {
            Ok(out) => out.trim() == "no",
            Err(out) => out.trim_end().ends_with("no"),
        };
        assert!(
            denied,
            "kubectl auth can-i {verb} secrets -A as the operator: {answer:?}"
        );
    }

    // The operator binary with the rendered Deployment's arguments and environment, on loopback.
    let rendered = helm.template(&[]);
    let (mut operator, base) = start_operator(
        &rendered,
        &kubeconfig,
        cluster.run_dir(),
        "dig-operator-test-0",
        None,
    )
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");
    eventually(
        "the operator holds the chart's Lease",
        CLUSTER_WAIT,
        || async move {
            let holder = kubectl(&[
                "get",
                "lease",
                &format!("{FULLNAME}-leader"),
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ])?;
            (holder == "dig-operator-test-0")
                .then_some(())
                .ok_or(holder)
        },
    )
    .await;
    eventually(
        "the operator patches the caBundle of the chart's webhook",
        CLUSTER_WAIT,
        || async move {
            let bundle = kubectl(&[
                "get",
                "mutatingwebhookconfiguration",
                &format!("{NAMESPACE}-{FULLNAME}-inject"),
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ])?;
            (!bundle.is_empty()).then_some(()).ok_or(bundle)
        },
    )
    .await;

    // A network in a user namespace is reconciled with the chart's permissions.
    kubectl(&["create", "namespace", "chart-net"]).expect("namespace chart-net");
    assert_network_reconciled(
        &kubeconfig,
        &tools,
        &operator,
        "the chart's permissions",
        "example",
        "  nodes:\n    replicas: 2\n",
        &[
            "deployment/example-bootstrap",
            "statefulset/example-node",
            "service/example-node",
        ],
    )
    .await;

    // A private network: the operator reads its PSK Secret by name with that grant alone.
    run_kubectl(
        &kubeconfig,
        &tools,
        &["apply", "-f", "-"],
        Some(concat!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: chart-psk\n  namespace: chart-net\n",
            "stringData:\n  swarm.key: |\n    /key/swarm/psk/1.0.0/\n    /base16/\n",
            "    0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
        )),
    )
    .expect("the PSK Secret");
    assert_network_reconciled(
        &kubeconfig,
        &tools,
        &operator,
        "the chart's permissions (a named Secret read)",
        "private",
        "  privateNetwork:\n    pskSecretRef:\n      name: chart-psk\n      key: swarm.key\n",
        &["statefulset/private-node"],
    )
    .await;
    let psk_volume = kubectl(&[
        "get",
        "statefulset/private-node",
        "-n",
        "chart-net",
        "-o",
        "jsonpath={.spec.template.spec.volumes[*].secret.secretName}",
    ])
    .expect("the private network's StatefulSet");
    assert!(psk_volume.contains("chart-psk"), "{psk_volume}");

    // Every operator series the dashboards, the alerts and the helm test pod use is exported.
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("/metrics body");
    let exported = exposed_series_names(&text);
    let mut queries = dashboard_expressions();
    queries.extend(alert_expressions(&helm));
    let SeriesCheck {
        checked,
        unobserved,
        missing,
    } = check_series(&queries, &exported, |name| {
        name.starts_with("dig_operator_")
    });
    assert!(
        missing.is_empty(),
        "operator series the chart queries but the operator does not export:\n{}\n{text}",
        missing.join("\n")
    );
    assert!(checked.len() >= 4, "{checked:?}");
    eprintln!("operator series seen: {checked:?}; registered but not observed: {unobserved:?}");
    // The helm test pod greps for this family; it must exist on every replica, leader or not.
    assert!(
        text.contains("# TYPE dig_operator_leader gauge"),
        "the helm test pod greps for dig_operator_leader:\n{text}"
    );
    run_helm_test_script(&rendered, &base);
    operator.terminate().expect("stopping the operator");
    let _ = operator.wait_timeout(Duration::from_secs(15));

    // Upgrade, then uninstall: the CRDs and the user's network stay.
    release("upgrade", &[chart_arg, "--set", "replicaCount=1"]).expect("helm upgrade");
    assert!(
        kubectl(&["get", "pdb", FULLNAME, "-n", NAMESPACE]).is_err(),
        "one replica: the upgrade removed the PodDisruptionBudget"
    );
    release("uninstall", &[]).expect("helm uninstall");
    for crd in ["crd/dignetworks.dig.net", "crd/dignodes.dig.net"] {
        kubectl(&["get", crd]).expect("helm.sh/resource-policy: keep leaves the CRDs in place");
    }
    kubectl(&["get", "dignetwork/example", "-n", "chart-net"])
        .expect("users' networks survive helm uninstall");
    assert!(
        kubectl(&["get", "clusterrole", FULLNAME]).is_err(),
        "the rest of the release is gone"
    );

    // With watchNamespaces the operator works from Roles in the watched namespaces only.
    release(
        "install",
        &[chart_arg, "--set", "watchNamespaces={chart-net}"],
    )
    .expect("helm install with watchNamespaces");
    assert!(
        kubectl(&["get", "clusterrole", &format!("{FULLNAME}-workloads")]).is_err(),
        "no cluster-wide workload rules"
    );
    let rendered = helm.template(&["--set", "watchNamespaces={chart-net}"]);
    let (mut operator, _) = start_operator(
        &rendered,
        &kubeconfig,
        cluster.run_dir(),
        "dig-operator-test-1",
        None,
    )
    .await;
    assert_network_reconciled(
        &kubeconfig,
        &tools,
        &operator,
        "watchNamespaces",
        "second",
        "  {}\n",
        &["deployment/second-bootstrap", "statefulset/second-node"],
    )
    .await;
    operator.terminate().expect("stopping the operator");
    let _ = operator.wait_timeout(Duration::from_secs(15));

    // With cert-manager the operator serves the certificate from files and needs neither the
    // Secret nor the webhook configuration: run it with that (smaller) RBAC. cert-manager's own
    // kinds are left out, as this cluster has no cert-manager.
    release("uninstall", &[]).expect("helm uninstall");
    let rendered = helm.template(&["--set", "webhook.certManager.enabled=true"]);
    let items: Vec<Value> = rendered
        .objects
        .iter()
        .filter(|o| {
            !["Certificate", "Issuer", "Pod"].contains(&o["kind"].as_str().unwrap_or_default())
        })
        .cloned()
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    run_kubectl(
        &kubeconfig,
        &tools,
        &["apply", "-f", "-"],
        Some(&list.to_string()),
    )
    .expect("applying the cert-manager rendering");
    let cert_dir = cluster.run_dir().join("webhook-tls");
    std::fs::create_dir_all(&cert_dir).expect("cert dir");
    let certified =
        rcgen::generate_simple_self_signed(vec![format!("{FULLNAME}-webhook.{NAMESPACE}.svc")])
            .expect("test certificate");
    std::fs::write(cert_dir.join("tls.crt"), certified.cert.pem()).expect("tls.crt");
    std::fs::write(cert_dir.join("tls.key"), certified.key_pair.serialize_pem()).expect("tls.key");
    let (mut operator, _) = start_operator(
        &rendered,
        &kubeconfig,
        cluster.run_dir(),
        "dig-operator-test-2",
        Some(&cert_dir),
    )
    .await;
    run_kubectl(
        &kubeconfig,
        &tools,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: dig.net/v1alpha1\nkind: DigNetwork\nmetadata:\n  name: third\n  namespace: chart-net\nspec: {}\n",
        ),
    )
    .expect("applying a third DigNetwork");
    eventually(
        "the operator (cert-manager mode) creates statefulset/third-node",
        CLUSTER_WAIT,
        || async move {
            kubectl(&[
                "get",
                "statefulset/third-node",
                "-n",
                "chart-net",
                "-o",
                "name",
            ])
        },
    )
    .await;
    let output = operator.output();
    assert!(
        // The API server's denial reads "<resource> is forbidden: User ... cannot <verb>".
        !output.contains("is forbidden"),
        "the operator hit an RBAC denial in cert-manager mode:\n{output}"
    );
    operator.terminate().expect("stopping the operator");
    let _ = operator.wait_timeout(Duration::from_secs(15));
}
