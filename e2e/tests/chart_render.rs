//! The dig-operator chart rendered by the real `helm` with several value sets: lint, then
//! assertions on the rendered objects (RBAC scope, CRD keep policy, security context, webhook
//! selectors, monitoring behind the API capability, dashboards, the test pod), and the operator's
//! monitors giving every node the job the dashboards select.

mod chart_support;

use std::collections::BTreeSet;

use chart_support::{Helm, NAMESPACE, RELEASE, Rendered, chart_dir, strings, workspace_root};
use serde::Deserialize;
use serde_json::{Value, json};

const FULLNAME: &str = "dig-operator";
const MONITORING: [&str; 2] = ["--api-versions", "monitoring.coreos.com/v1"];

fn rules(role: &Value) -> Vec<&Value> {
    role["rules"]
        .as_array()
        .map(|r| r.iter().collect())
        .unwrap_or_default()
}

/// Every (apiGroup, resource, verb) a role grants, with `resourceNames` when it limits them.
fn grants(role: &Value) -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for rule in rules(role) {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert((
                        group.clone(),
                        resource.clone(),
                        verb,
                        strings(&rule["resourceNames"]),
                    ));
                }
            }
        }
    }
    out
}

fn grant(group: &str, resource: &str, verb: &str) -> (String, String, String, Vec<String>) {
    (group.into(), resource.into(), verb.into(), Vec::new())
}

fn verbs_on(role: &Value, group: &str, resource: &str) -> BTreeSet<String> {
    grants(role)
        .into_iter()
        .filter(|(g, r, _, _)| g == group && r == resource)
        .map(|(_, _, verb, _)| verb)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn operator_container(rendered: &Rendered) -> &Value {
    &rendered.get("Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0]
}

fn args(rendered: &Rendered) -> Vec<String> {
    strings(&operator_container(rendered)["args"])
}

#[test]
fn chart_lints_with_every_value_set() {
    let Some(helm) = Helm::or_skip("chart_lints_with_every_value_set") else {
        return;
    };
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8 path");
    for extra in [
        vec![],
        vec!["--set", "watchNamespaces={team-a,team-b}"],
        vec!["--set", "webhook.certManager.enabled=true"],
        vec![
            "--set",
            "webhook.enabled=false",
            "--set",
            "crds.install=false",
        ],
    ] {
        let mut args = vec!["lint", "--strict", chart, "--namespace", NAMESPACE];
        args.extend_from_slice(&extra);
        helm.run(&args)
            .unwrap_or_else(|e| panic!("helm lint with {extra:?}: {e}"));
    }
}

#[test]
fn crds_are_kept_on_uninstall_and_match_the_operator_types() {
    let Some(helm) = Helm::or_skip("crds_are_kept_on_uninstall_and_match_the_operator_types")
    else {
        return;
    };
    let rendered = helm.template(&[]);
    let crds = rendered.of_kind("CustomResourceDefinition");
    let names: BTreeSet<_> = crds
        .iter()
        .map(|c| {
            c["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(names, set(&["dignetworks.dig.net", "dignodes.dig.net"]));
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{name} must survive helm uninstall"
        );
        assert_eq!(
            crd["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "Helm"
        );
    }
    // The operator's crdgen writes crds/; the chart's copies come from the same types.
    let crd_dir = workspace_root().join("crds");
    let mut compared = BTreeSet::new();
    for entry in std::fs::read_dir(&crd_dir).expect("crds/ folder").flatten() {
        let text = std::fs::read_to_string(entry.path()).expect("CRD file");
        let from_crdgen = Value::deserialize(yaml_serde::Deserializer::from_str(&text))
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", entry.path().display()));
        let name = from_crdgen["metadata"]["name"].as_str().unwrap_or_default();
        let in_chart = rendered.get("CustomResourceDefinition", name);
        assert_eq!(
            in_chart["spec"],
            from_crdgen["spec"],
            "the chart's {name} differs from {}; run `cargo run -p dig-operator --bin crdgen` and `--bin chartgen`",
            entry.path().display()
        );
        compared.insert(name.to_string());
    }
    assert_eq!(compared, names, "crds/ and the chart hold the same CRDs");

    let without = helm.template(&["--set", "crds.install=false"]);
    assert!(without.of_kind("CustomResourceDefinition").is_empty());
}

#[test]
fn cluster_wide_rbac_is_only_what_must_be_cluster_wide() {
    let Some(helm) = Helm::or_skip("cluster_wide_rbac_is_only_what_must_be_cluster_wide") else {
        return;
    };
    let rendered = helm.template(&[]);
    let webhook_config = format!("{NAMESPACE}-{FULLNAME}-inject");

    let cluster = rendered.get("ClusterRole", FULLNAME);
    let expected: BTreeSet<_> = [
        grant("apiextensions.k8s.io", "customresourcedefinitions", "get"),
        grant("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        grant("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
        // Whether a claim's class lets the operator grow it (cluster-scoped objects).
        grant("storage.k8s.io", "storageclasses", "get"),
        grant("storage.k8s.io", "storageclasses", "list"),
        grant("storage.k8s.io", "storageclasses", "watch"),
    ]
    .into_iter()
    .chain(["get", "list", "watch", "patch"].map(|verb| {
        (
            "admissionregistration.k8s.io".to_string(),
            "mutatingwebhookconfigurations".to_string(),
            verb.to_string(),
            vec![webhook_config.clone()],
        )
    }))
    .collect();
    assert_eq!(grants(cluster), expected, "cluster-wide rules");

    // Without watchNamespaces the workload rules are cluster-wide too, but never more than needed.
    let workloads = rendered.get("ClusterRole", &format!("{FULLNAME}-workloads"));
    let all = grants(workloads);
    for (group, resource, verb, _) in &all {
        assert!(
            group != "*" && resource != "*" && verb != "*",
            "wildcard in {all:?}"
        );
        assert!(
            !["escalate", "bind", "impersonate"].contains(&verb.as_str()),
            "{verb} on {resource}"
        );
        assert!(
            ![
                "nodes",
                "namespaces",
                "roles",
                "clusterroles",
                "rolebindings"
            ]
            .contains(&resource.as_str()),
            "{resource} is not something the operator touches"
        );
    }
    let manage = set(&["get", "list", "watch", "create", "patch", "delete"]);
    // Pods are read (the exposed nodes' IPs, to ask them their peer ids for the _dnsaddr records)
    // and patched (the drain annotation of a node leaving in a scale-down), never created or
    // deleted.
    assert_eq!(
        verbs_on(workloads, "", "pods"),
        set(&["get", "list", "patch"])
    );
    // The code reads a network's PSK Secret by name and never lists or watches Secrets.
    assert_eq!(
        all.iter()
            .filter(|(g, r, _, _)| g.is_empty() && r == "secrets")
            .cloned()
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([grant("", "secrets", "get")]),
        "secrets are only read, by name"
    );
    // Claims are grown (patched) when storage.size grows, never created or deleted.
    assert_eq!(
        verbs_on(workloads, "", "persistentvolumeclaims"),
        set(&["get", "list", "watch", "patch"])
    );
    for (group, resource) in [
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("", "services"),
        ("", "configmaps"),
        ("policy", "poddisruptionbudgets"),
        ("monitoring.coreos.com", "servicemonitors"),
        ("monitoring.coreos.com", "podmonitors"),
        ("externaldns.k8s.io", "dnsendpoints"),
    ] {
        assert_eq!(
            verbs_on(workloads, group, resource),
            manage,
            "{group}/{resource}"
        );
    }
    assert_eq!(
        verbs_on(workloads, "dig.net", "dignetworks/status"),
        set(&["get", "patch"])
    );
    assert_eq!(verbs_on(workloads, "", "events"), set(&["create", "patch"]));
    let binding = rendered.get("ClusterRoleBinding", &format!("{FULLNAME}-workloads"));
    assert_eq!(binding["subjects"][0]["name"], FULLNAME);
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);

    // The Lease and the webhook Secret: release namespace only, by name where Kubernetes allows.
    let own = rendered.get("Role", FULLNAME);
    assert_eq!(own["metadata"]["namespace"], NAMESPACE);
    let own_grants = grants(own);
    let lease = format!("{FULLNAME}-leader");
    let secret = format!("{FULLNAME}-webhook-tls");
    for verb in ["get", "update", "patch"] {
        assert!(own_grants.contains(&(
            "coordination.k8s.io".into(),
            "leases".into(),
            verb.into(),
            vec![lease.clone()]
        )));
        assert!(own_grants.contains(&(
            "".into(),
            "secrets".into(),
            verb.into(),
            vec![secret.clone()]
        )));
    }
    for (_, resource, verb, names) in &own_grants {
        assert!(
            !names.is_empty() || verb == "create",
            "{verb} {resource} is not limited by name"
        );
    }
    assert!(
        rendered.of_kind("Role").len() == 1,
        "no per-namespace Roles by default"
    );
}

/// Whether any rule of `rendered` lets the operator list or watch Secrets not named in it.
fn can_enumerate_secrets(rendered: &Rendered) -> Vec<String> {
    rendered
        .of_kind("ClusterRole")
        .into_iter()
        .chain(rendered.of_kind("Role"))
        .flat_map(|role| {
            let name = role["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            grants(role)
                .into_iter()
                .filter(|(g, r, verb, names)| {
                    g.is_empty()
                        && r == "secrets"
                        && ["list", "watch", "*"].contains(&verb.as_str())
                        && names.is_empty()
                })
                .map(move |grant| format!("{name}: {grant:?}"))
        })
        .collect()
}

#[test]
fn secrets_are_read_by_name_only_and_optionally_only_the_named_ones() {
    let Some(helm) =
        Helm::or_skip("secrets_are_read_by_name_only_and_optionally_only_the_named_ones")
    else {
        return;
    };
    for extra in [
        vec![],
        vec!["--set", "watchNamespaces={team-a,team-b}"],
        vec!["--set", "webhook.certManager.enabled=true"],
    ] {
        let rendered = helm.template(&extra);
        assert_eq!(
            can_enumerate_secrets(&rendered),
            Vec::<String>::new(),
            "with {extra:?}"
        );
    }
    let rendered = helm.template(&["--set", "pskSecretNames={prod-psk,staging.psk}"]);
    let workloads = rendered.get("ClusterRole", &format!("{FULLNAME}-workloads"));
    let secrets: Vec<_> = grants(workloads)
        .into_iter()
        .filter(|(g, r, _, _)| g.is_empty() && r == "secrets")
        .collect();
    assert_eq!(
        secrets,
        vec![(
            String::new(),
            "secrets".to_string(),
            "get".to_string(),
            vec!["prod-psk".to_string(), "staging.psk".to_string()]
        )]
    );
    let per_namespace = helm.template(&[
        "--set",
        "watchNamespaces={team-a}",
        "--set",
        "pskSecretNames={prod-psk}",
    ]);
    let role = per_namespace
        .of_kind("Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "team-a")
        .expect("the Role in team-a");
    assert!(grants(role).contains(&(
        String::new(),
        "secrets".to_string(),
        "get".to_string(),
        vec!["prod-psk".to_string()]
    )));
}

#[test]
fn watch_namespaces_turns_workload_rules_into_roles() {
    let Some(helm) = Helm::or_skip("watch_namespaces_turns_workload_rules_into_roles") else {
        return;
    };
    let rendered = helm.template(&["--set", "watchNamespaces={team-a,team-b}"]);
    assert!(
        rendered
            .find("ClusterRole", &format!("{FULLNAME}-workloads"))
            .is_none(),
        "no cluster-wide workload rules when namespaces are listed"
    );
    assert!(
        rendered
            .find("ClusterRoleBinding", &format!("{FULLNAME}-workloads"))
            .is_none()
    );
    let cluster_grants = grants(rendered.get("ClusterRole", FULLNAME));
    assert!(
        cluster_grants
            .iter()
            .all(|(g, _, _, _)| g == "apiextensions.k8s.io"
                || g == "admissionregistration.k8s.io"
                || g == "storage.k8s.io"),
        "{cluster_grants:?}"
    );
    for namespace in ["team-a", "team-b"] {
        let role = rendered
            .of_kind("Role")
            .into_iter()
            .find(|r| r["metadata"]["namespace"] == namespace)
            .unwrap_or_else(|| panic!("no Role in {namespace}"));
        assert_eq!(
            verbs_on(role, "apps", "statefulsets"),
            set(&["get", "list", "watch", "create", "patch", "delete"])
        );
        let binding = rendered
            .of_kind("RoleBinding")
            .into_iter()
            .find(|r| r["metadata"]["namespace"] == namespace)
            .unwrap_or_else(|| panic!("no RoleBinding in {namespace}"));
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    }
    let args = args(&rendered);
    assert!(args.contains(&"--namespace=team-a".to_string()), "{args:?}");
    assert!(args.contains(&"--namespace=team-b".to_string()), "{args:?}");
    let webhook = &rendered.get(
        "MutatingWebhookConfiguration",
        &format!("{NAMESPACE}-{FULLNAME}-inject"),
    )["webhooks"][0];
    let expressions = webhook["namespaceSelector"]["matchExpressions"]
        .as_array()
        .expect("namespaceSelector expressions");
    assert!(
        expressions.contains(&json!({
            "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]
        })),
        "{expressions:?}"
    );
}

#[test]
fn operator_deployment_is_hardened_and_probed() {
    let Some(helm) = Helm::or_skip("operator_deployment_is_hardened_and_probed") else {
        return;
    };
    let rendered = helm.template(&[]);
    let deployment = rendered.get("Deployment", FULLNAME);
    assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        deployment["spec"]["replicas"], 2,
        "two replicas share the Lease"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = operator_container(&rendered);
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    let env: Vec<_> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| e["name"].as_str().unwrap_or_default())
        .collect();
    assert!(
        env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"),
        "{env:?}"
    );
    assert!(
        pod["affinity"]["podAntiAffinity"].is_object(),
        "replicas spread over nodes by default"
    );
    assert_eq!(pod["serviceAccountName"], FULLNAME);
    let pdb = rendered.get("PodDisruptionBudget", FULLNAME);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    let single = helm.template(&["--set", "replicaCount=1"]);
    assert!(
        single.of_kind("PodDisruptionBudget").is_empty(),
        "a PDB would block drains"
    );
}

#[test]
fn scheduling_and_service_account_values_reach_the_pod() {
    let Some(helm) = Helm::or_skip("scheduling_and_service_account_values_reach_the_pod") else {
        return;
    };
    let values = workspace_root().join("target/chart-test-scheduling-values.yaml");
    std::fs::create_dir_all(values.parent().expect("parent")).expect("target dir");
    std::fs::write(
        &values,
        r#"
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: dig, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [system]}]}]
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: dig-operator}}}
priorityClassName: system-cluster-critical
podAnnotations: {example.com/team: storage}
podLabels: {team: storage}
serviceAccount:
  create: false
  name: dig-irsa
  annotations: {eks.amazonaws.com/role-arn: "arn:aws:iam::123456789012:role/dig"}
image: {repository: registry.example.com/dig-operator, tag: "1.2.3", digest: "", pullPolicy: Always}
imagePullSecrets: [regcred]
"#,
    )
    .expect("writing values");
    let rendered = helm.template(&["-f", values.to_str().expect("UTF-8")]);
    let pod = &rendered.get("Deployment", FULLNAME)["spec"]["template"];
    assert_eq!(pod["spec"]["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["spec"]["tolerations"][0]["key"], "dedicated");
    assert!(pod["spec"]["affinity"]["nodeAffinity"].is_object());
    assert!(
        pod["spec"]["affinity"]["podAntiAffinity"].is_null(),
        "user affinity replaces the default"
    );
    assert_eq!(pod["spec"]["topologySpreadConstraints"][0]["maxSkew"], 1);
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/team"],
        "storage"
    );
    assert_eq!(pod["metadata"]["labels"]["team"], "storage");
    assert_eq!(pod["spec"]["serviceAccountName"], "dig-irsa");
    assert_eq!(pod["spec"]["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "registry.example.com/dig-operator:1.2.3"
    );
    assert!(
        rendered.of_kind("ServiceAccount").is_empty(),
        "serviceAccount.create=false"
    );
    for binding in rendered
        .of_kind("ClusterRoleBinding")
        .into_iter()
        .chain(rendered.of_kind("RoleBinding"))
    {
        assert_eq!(binding["subjects"][0]["name"], "dig-irsa");
    }

    let irsa = helm.template(&[
        "--set",
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/dig",
    ]);
    let account = irsa.get("ServiceAccount", FULLNAME);
    assert_eq!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::1:role/dig"
    );
}

#[test]
fn webhook_selects_only_labelled_pods_outside_system_namespaces() {
    let Some(helm) = Helm::or_skip("webhook_selects_only_labelled_pods_outside_system_namespaces")
    else {
        return;
    };
    let rendered = helm.template(&[
        "--set",
        "webhook.failurePolicy=Ignore",
        "--set",
        "webhook.excludeNamespaces={batch}",
    ]);
    let config = rendered.get(
        "MutatingWebhookConfiguration",
        &format!("{NAMESPACE}-{FULLNAME}-inject"),
    );
    let webhook = &config["webhooks"][0];
    assert_eq!(webhook["failurePolicy"], "Ignore");
    assert_eq!(webhook["sideEffects"], "None");
    assert_eq!(
        webhook["objectSelector"]["matchExpressions"],
        json!([{"key": "dig.net/inject", "operator": "Exists"}])
    );
    assert_eq!(
        webhook["namespaceSelector"]["matchExpressions"][0],
        json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn",
               "values": ["kube-system", NAMESPACE, "batch"]})
    );
    assert_eq!(webhook["rules"][0]["resources"], json!(["pods"]));
    assert_eq!(webhook["rules"][0]["operations"], json!(["CREATE"]));
    let service = &webhook["clientConfig"]["service"];
    assert_eq!(service["name"], format!("{FULLNAME}-webhook"));
    assert_eq!(service["namespace"], NAMESPACE);
    assert!(
        webhook["clientConfig"]["caBundle"].is_null(),
        "the operator patches the caBundle; Helm must not own it"
    );
    assert!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].is_null(),
        "cert-manager is off by default"
    );
    let args = args(&rendered);
    for expected in [
        format!("--webhook-service={FULLNAME}-webhook"),
        format!("--webhook-config-name={NAMESPACE}-{FULLNAME}-inject"),
        format!("--webhook-secret-name={FULLNAME}-webhook-tls"),
    ] {
        assert!(args.contains(&expected), "{expected} not in {args:?}");
    }
    assert!(rendered.of_kind("Certificate").is_empty());

    let off = helm.template(&["--set", "webhook.enabled=false"]);
    assert!(off.of_kind("MutatingWebhookConfiguration").is_empty());
    assert!(
        off.find("Service", &format!("{FULLNAME}-webhook"))
            .is_none()
    );
    let cluster = grants(off.get("ClusterRole", FULLNAME));
    assert!(
        cluster
            .iter()
            .all(|(g, _, _, _)| g != "admissionregistration.k8s.io"),
        "no webhook, no webhook permission"
    );
}

#[test]
fn cert_manager_issues_the_webhook_certificate_when_enabled() {
    let Some(helm) = Helm::or_skip("cert_manager_issues_the_webhook_certificate_when_enabled")
    else {
        return;
    };
    let rendered = helm.template(&["--set", "webhook.certManager.enabled=true"]);
    let secret = format!("{FULLNAME}-webhook-tls");
    let certificate = rendered.get("Certificate", &secret);
    assert_eq!(certificate["spec"]["secretName"], secret.as_str());
    assert_eq!(
        certificate["spec"]["dnsNames"][0],
        format!("{FULLNAME}-webhook.{NAMESPACE}.svc")
    );
    assert_eq!(certificate["spec"]["issuerRef"]["kind"], "Issuer");
    let issuer = rendered.get("Issuer", &format!("{FULLNAME}-selfsigned"));
    assert!(issuer["spec"]["selfSigned"].is_object());
    let config = rendered.get(
        "MutatingWebhookConfiguration",
        &format!("{NAMESPACE}-{FULLNAME}-inject"),
    );
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NAMESPACE}/{secret}")
    );
    // cert-manager owns the certificate: the operator neither patches the webhook nor writes Secrets.
    assert!(
        grants(rendered.get("ClusterRole", FULLNAME))
            .iter()
            .all(|(g, _, _, _)| g != "admissionregistration.k8s.io")
    );
    assert!(
        grants(rendered.get("Role", FULLNAME))
            .iter()
            .all(|(_, r, _, _)| r != "secrets")
    );
    let args = args(&rendered);
    assert!(
        args.iter().any(|a| a.starts_with("--webhook-cert-dir=")),
        "{args:?}"
    );
    let pod = &rendered.get("Deployment", FULLNAME)["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["secret"]["secretName"] == secret.as_str()),
        "the certificate's Secret is mounted"
    );
    // A user's own issuer: chart_webhook.rs `cert_manager_mode_connects_...`.
}

/// `## `/`### ` headings of a Markdown file as GitHub anchors.
fn markdown_anchors(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            line.strip_prefix("### ")
                .or_else(|| line.strip_prefix("## "))
        })
        .map(|heading| {
            heading
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn monitoring_objects_follow_the_capability_and_the_values() {
    let Some(helm) = Helm::or_skip("monitoring_objects_follow_the_capability_and_the_values")
    else {
        return;
    };
    let without_api = helm.template(&[]);
    assert!(
        without_api.of_kind("ServiceMonitor").is_empty(),
        "no API, no ServiceMonitor"
    );
    assert!(without_api.of_kind("PrometheusRule").is_empty());

    let rendered = helm.template(&MONITORING);
    let monitor = rendered.get("ServiceMonitor", FULLNAME);
    let service = rendered.get("Service", &format!("{FULLNAME}-metrics"));
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("selector")
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "the ServiceMonitor selects the metrics Service ({key})"
        );
    }
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );

    // Without jobLabel, Prometheus names the job after the Service: the operator alerts rely on it.
    assert!(monitor["spec"]["jobLabel"].is_null());
    let rule = rendered.get("PrometheusRule", &format!("{FULLNAME}-alerts"));
    let operator_down = rule["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .find(|r| r["alert"] == "DigOperatorDown")
        .expect("DigOperatorDown");
    let service_name = service["metadata"]["name"].as_str().expect("name");
    assert!(
        operator_down["expr"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("job=\"{service_name}\""))),
        "{operator_down}"
    );
    let readme = std::fs::read_to_string(chart_dir().join("README.md")).expect("chart README");
    let anchors = markdown_anchors(&readme);
    let mut alerts = BTreeSet::new();
    for group in rule["spec"]["groups"].as_array().expect("groups") {
        for alert in group["rules"].as_array().expect("rules") {
            let name = alert["alert"].as_str().expect("alert name");
            alerts.insert(name.to_string());
            assert!(
                alert["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{name}: expr"
            );
            assert!(alert["labels"]["severity"].is_string(), "{name}: severity");
            for key in ["summary", "description", "runbook_url"] {
                assert!(
                    alert["annotations"][key]
                        .as_str()
                        .is_some_and(|t| !t.is_empty()),
                    "{name}: {key}"
                );
            }
            let url = alert["annotations"]["runbook_url"].as_str().expect("url");
            let anchor = url.rsplit_once('#').map(|(_, a)| a).unwrap_or_default();
            assert!(
                anchors.contains(anchor),
                "{name}: runbook anchor #{anchor} has no section in charts/dig-operator/README.md"
            );
        }
    }
    for required in [
        "DigBootstrapDown",
        "DigRegistryEmpty",
        "DigNodeWithoutPeers",
        "DigReplicationLagging",
        "DigVerificationFailures",
        "DigStoresUnderReplicated",
        "DigDownloadsFailing",
        "DigPeerBanned",
        "DigOperatorReconcileErrors",
        "DigOperatorWebhookCertificateExpiring",
        "DigOperatorDown",
    ] {
        assert!(
            alerts.contains(required),
            "{required} missing from {alerts:?}"
        );
    }

    let disabled = helm.template(&[
        MONITORING[0],
        MONITORING[1],
        "--set",
        "serviceMonitor.enabled=false",
        "--set",
        "prometheusRule.enabled=false",
    ]);
    assert!(disabled.of_kind("ServiceMonitor").is_empty());
    assert!(disabled.of_kind("PrometheusRule").is_empty());

    let labelled = helm.template(&[
        MONITORING[0],
        MONITORING[1],
        "--set",
        "serviceMonitor.labels.release=kps",
        "--set",
        "prometheusRule.labels.release=kps",
    ]);
    assert_eq!(
        labelled.get("ServiceMonitor", FULLNAME)["metadata"]["labels"]["release"],
        "kps"
    );
    assert_eq!(
        labelled.get("PrometheusRule", &format!("{FULLNAME}-alerts"))["metadata"]["labels"]["release"],
        "kps"
    );
}

#[test]
fn dashboards_are_configmaps_for_the_grafana_sidecar() {
    let Some(helm) = Helm::or_skip("dashboards_are_configmaps_for_the_grafana_sidecar") else {
        return;
    };
    let rendered = helm.template(&[
        "--set",
        "dashboards.namespace=monitoring",
        "--set",
        "dashboards.annotations.grafana_folder=DIG",
    ]);
    let dashboards: Vec<_> = rendered
        .of_kind("ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    let mut titles = BTreeSet::new();
    for config_map in &dashboards {
        assert_eq!(config_map["metadata"]["namespace"], "monitoring");
        assert_eq!(
            config_map["metadata"]["annotations"]["grafana_folder"],
            "DIG"
        );
        let data = config_map["data"].as_object().expect("data");
        assert_eq!(data.len(), 1);
        let (file, text) = data.iter().next().expect("one dashboard");
        let dashboard: Value = serde_json::from_str(text.as_str().expect("text"))
            .unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
        titles.insert(dashboard["title"].as_str().unwrap_or_default().to_string());
        for panel in dashboard["panels"].as_array().expect("panels") {
            if panel["type"] == "row" {
                continue;
            }
            assert!(
                panel["description"].as_str().is_some_and(|d| d.len() > 20),
                "{file}: panel {} has no description",
                panel["title"]
            );
        }
    }
    assert_eq!(
        titles,
        set(&[
            "DIG / Network overview",
            "DIG / Node detail",
            "DIG / Operator"
        ])
    );

    let relabelled = helm.template(&[
        "--set",
        "dashboards.label=dashboards",
        "--set",
        "dashboards.labelValue=dig",
    ]);
    let count = relabelled
        .of_kind("ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["dashboards"] == "dig")
        .count();
    assert_eq!(count, 3);
    let off = helm.template(&["--set", "dashboards.enabled=false"]);
    assert!(off.of_kind("ConfigMap").is_empty());
}

#[test]
fn helm_test_pod_checks_readyz_and_metrics_through_the_service() {
    let Some(helm) = Helm::or_skip("helm_test_pod_checks_readyz_and_metrics_through_the_service")
    else {
        return;
    };
    let rendered = helm.template(&[]);
    let pod = rendered.get("Pod", &format!("{FULLNAME}-test"));
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let script = strings(&pod["spec"]["containers"][0]["command"]).join(" ");
    let base = format!("http://{FULLNAME}-metrics.{NAMESPACE}.svc:8080");
    assert!(script.contains(&base), "{script}");
    assert!(
        script.contains("$base/readyz") && script.contains("$base/metrics"),
        "{script}"
    );
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
}

#[test]
fn values_schema_rejects_unknown_and_invalid_values() {
    let Some(helm) = Helm::or_skip("values_schema_rejects_unknown_and_invalid_values") else {
        return;
    };
    for (set_value, expected) in [
        ("replicasCount=3", "replicasCount"),
        ("webhook.failurePolicy=Sometimes", "failurePolicy"),
        ("operator.logFormat=xml", "logFormat"),
        ("watchNamespaces={Not_A_Name}", "watchNamespaces"),
        ("serviceMonitor.interval=soon", "interval"),
    ] {
        let error = helm
            .template_text(&["--set", set_value])
            .expect_err(&format!("--set {set_value} must be rejected"));
        assert!(error.contains(expected), "--set {set_value}: {error}");
    }
}

#[test]
fn every_namespaced_object_lands_in_the_release_namespace() {
    let Some(helm) = Helm::or_skip("every_namespaced_object_lands_in_the_release_namespace") else {
        return;
    };
    let rendered = helm.template(&MONITORING);
    let cluster_scoped = [
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
    ];
    for object in &rendered.objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = &object["metadata"]["name"];
        if cluster_scoped.contains(&kind) {
            assert!(object["metadata"]["namespace"].is_null(), "{kind} {name}");
        } else {
            assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{kind} {name}");
        }
        assert_eq!(
            object["metadata"]["labels"]["app.kubernetes.io/instance"], RELEASE,
            "{kind} {name} carries the release labels"
        );
    }
}

/// The dashboards find a network's nodes by the job `<network>-node`; the operator's monitors must
/// give every node target that job: the ServiceMonitor through the name of the Service it selects,
/// the PodMonitors (injected sidecars, DigNodes) through their relabeling. Needs no helm: it
/// compares the dashboards on disk with what the operator builds.
#[test]
fn every_node_monitor_gives_its_targets_the_job_the_dashboards_select() {
    use dig_operator::reconcile::{
        fixtures::{build_with, network},
        validate::NetworkFacts,
    };
    let children = build_with(
        &network("monitoring:\n  serviceMonitor: true"),
        NetworkFacts {
            service_monitor_api: true,
            pod_monitor_api: true,
            ..NetworkFacts::default()
        },
    );
    let node_service = children.node_service.metadata.name.clone().unwrap();
    let node_service_labels = children.node_service.metadata.labels.clone().unwrap();
    let mut jobs = Vec::new();
    for monitor in &children.service_monitors {
        let selector = monitor.data["spec"]["selector"]["matchLabels"]
            .as_object()
            .unwrap();
        if selector
            .iter()
            .all(|(k, v)| node_service_labels.get(k).map(String::as_str) == v.as_str())
        {
            // A ServiceMonitor target's job is its Service's name.
            jobs.push(("ServiceMonitor", node_service.clone()));
        }
    }
    for monitor in &children.pod_monitors {
        let relabelings = &monitor.data["spec"]["podMetricsEndpoints"][0]["relabelings"];
        let job = relabelings
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["targetLabel"] == "job")
            .and_then(|r| r["replacement"].as_str())
            .unwrap_or_else(|| panic!("{:?} does not set job", monitor.metadata.name));
        jobs.push(("PodMonitor", job.to_string()));
    }
    assert_eq!(jobs.len(), 3, "{jobs:?}");
    for (kind, job) in &jobs {
        assert_eq!(job, "net-node", "a {kind} of network net");
    }

    // The dashboards: a `network` variable read from the node job, node panels by that job.
    let mut node_panels = 0;
    for file in ["network-overview.json", "node-detail.json"] {
        let path = chart_dir().join("dashboards").join(file);
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).unwrap();
        let variable = dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "network")
            .unwrap_or_else(|| panic!("{file} has no network variable"));
        assert_eq!(variable["regex"], "/^(.+)-node$/", "{file}");
        node_panels += dashboard["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["targets"].as_array().into_iter().flatten())
            .filter(|t| {
                t["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains(r#"job="$network-node""#))
            })
            .count();
    }
    assert!(node_panels > 10, "node panels select job=\"$network-node\"");
}
