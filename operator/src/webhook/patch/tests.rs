//! The decision for every case, applied to the pod the way the API server applies a patch.

use super::security::DEFAULT_RUN_AS_USER;
use super::sidecar::{API_PORT_NAME, DATA_MOUNT_PATH, STATE_DIR};
use super::*;
use crate::crd::labels::{
    CPU_LIMIT_ANNOTATION, CPU_REQUEST_ANNOTATION, IMAGE_ANNOTATION, MANAGED_BY_LABEL,
    MEMORY_LIMIT_ANNOTATION, MEMORY_REQUEST_ANNOTATION, NAME_LABEL,
};

fn network() -> NetworkSidecarConfig {
    NetworkSidecarConfig {
        name: "prod".to_string(),
        network_id: "prod-net".to_string(),
        bootstrap_urls: vec!["http://prod-bootstrap.apps.svc:3000".to_string()],
        image: "ghcr.io/dig-network/dig-sidecar:0.1.0".to_string(),
        p2p_port: 4001,
        api_port: 8080,
        psk_secret: None,
        propagate_deletes: false,
        write_policy: crate::crd::WritePolicy::Owner,
        writers: Vec::new(),
        mdns: false,
        dht: true,
        target_peers: Some(12),
        resources: None,
    }
}

fn pod(labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "namespace": "apps", "labels": labels, "annotations": annotations},
        "spec": {
            "containers": [{"name": "app", "image": "busybox", "ports": [{"containerPort": 80}],
                "volumeMounts": [{"name": "stores", "mountPath": "/stores"}]}],
            "volumes": [
                {"name": "stores", "persistentVolumeClaim": {"claimName": "stores"}},
                {"name": "settings", "configMap": {"name": "settings"}}
            ]
        }
    })
}

fn labelled_pod() -> Value {
    pod(
        json!({"dig.net/inject": "prod"}),
        json!({"dig.net/volume": "stores"}),
    )
}

fn decide(pod_json: &Value, namespace: &str) -> Result<Injection, Denial> {
    let pod: Pod = serde_json::from_value(pod_json.clone()).unwrap();
    build_patch(
        &pod,
        namespace,
        Some(&network()),
        &InjectorSettings::default(),
    )
}

/// Applies the patch the way the API server would and returns the resulting pod.
fn patched(pod_json: &Value, namespace: &str) -> Value {
    let Injection::Patched(patch) = decide(pod_json, namespace).unwrap() else {
        panic!("expected a patch");
    };
    let mut document = pod_json.clone();
    json_patch::patch(&mut document, &patch).unwrap();
    // The result must still be a valid Pod.
    let _: Pod = serde_json::from_value(document.clone()).unwrap();
    document
}

fn sidecar(document: &Value) -> &Value {
    document["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == SIDECAR_CONTAINER_NAME)
        .expect("the sidecar is an init container")
}

fn args(document: &Value) -> Vec<String> {
    sidecar(document)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap().to_string())
        .collect()
}

/// The values given to `name` in a command line of `--flag value` pairs.
fn flag(args: &[String], name: &str) -> Vec<String> {
    args.windows(2)
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].clone())
        .collect()
}

#[test]
fn the_apps_mounts_of_the_data_volume_hide_the_sidecars_identity_and_index() {
    let document = patched(&labelled_pod(), "apps");
    let app = &document["spec"]["containers"][0];
    assert!(
        app["volumeMounts"].as_array().unwrap().contains(&json!({
            "name": STATE_MASK_VOLUME_NAME,
            "mountPath": "/stores/.dig-node",
            "readOnly": true
        })),
        "{app}"
    );
    let volumes = document["spec"]["volumes"].as_array().unwrap();
    assert!(volumes.iter().any(|v| v["name"] == STATE_MASK_VOLUME_NAME));
    // The sidecar sees its state folder; only the app's view is masked.
    let mounts = sidecar(&document)["volumeMounts"].as_array().unwrap();
    assert!(!mounts.iter().any(|m| m["name"] == STATE_MASK_VOLUME_NAME));
}

#[test]
fn plain_pod_gets_a_native_sidecar_on_the_named_volume() {
    let document = patched(&labelled_pod(), "apps");
    let container = sidecar(&document);
    assert_eq!(container["restartPolicy"], "Always");
    assert_eq!(container["image"], "ghcr.io/dig-network/dig-sidecar:0.1.0");
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(mounts.contains(&json!({"name": "stores", "mountPath": "/data"})));
    assert!(mounts.contains(&json!({"name": TMP_VOLUME_NAME, "mountPath": "/tmp"})));
    assert_eq!(
        args(&document),
        [
            "run",
            "--data-dir",
            "/data",
            "--state-dir",
            "/data/.dig-node",
            "--network",
            "prod-net",
            "--bootstrap",
            "http://prod-bootstrap.apps.svc:3000",
            "--listen",
            "/ip4/0.0.0.0/tcp/4001",
            "--listen",
            "/ip4/0.0.0.0/udp/4001/quic-v1",
            "--api-listen",
            "0.0.0.0:8080",
            "--no-mdns",
            "--target-peers",
            "12",
            "--log-format",
            "json",
            "--announce",
            "/ip4/$(POD_IP)/tcp/4001",
            "--announce",
            "/ip4/$(POD_IP)/udp/4001/quic-v1",
        ]
    );
    assert_eq!(container["env"][0]["name"], "POD_IP");
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(container["startupProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(
        container["readinessProbe"]["httpGet"]["port"],
        API_PORT_NAME
    );
    assert_eq!(container["startupProbe"]["failureThreshold"], 60);
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], DEFAULT_RUN_AS_USER);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["resources"]["requests"]["cpu"], "50m");
    let volumes = document["spec"]["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 4);
    assert_eq!(volumes[2]["name"], STATE_MASK_VOLUME_NAME);
    assert_eq!(volumes[3]["name"], TMP_VOLUME_NAME);
    assert_eq!(
        document["metadata"]["annotations"][INJECTED_ANNOTATION],
        "prod"
    );
    // The app container is untouched but for the mask over the node's state folder.
    let mut app = document["spec"]["containers"].clone();
    let mounts = app[0]["volumeMounts"].as_array_mut().unwrap();
    assert_eq!(mounts.pop().unwrap()["name"], STATE_MASK_VOLUME_NAME);
    assert_eq!(app, labelled_pod()["spec"]["containers"]);
}

/// The injected command line, after the kubelet expands `$(POD_IP)`, parsed by `dig-sidecar`'s
/// own clap parser: every flag exists and every value is accepted.
fn parsed_run_args(document: &Value) -> dig_sidecar::config::RunArgs {
    use clap::Parser;
    let expanded = crate::reconcile::fixtures::kubelet_expanded(&args(document), "pod", "10.1.2.3");
    let cli = dig_sidecar::config::Cli::try_parse_from(
        std::iter::once("dig-sidecar".to_string()).chain(expanded),
    )
    .unwrap_or_else(|error| panic!("dig-sidecar rejects the injected args: {error}"));
    match cli.command {
        dig_sidecar::config::Command::Run(run) => *run,
        other => panic!("expected the run command, got {other:?}"),
    }
}

#[test]
fn injected_args_are_accepted_by_the_sidecars_parser() {
    let run = parsed_run_args(&patched(&labelled_pod(), "apps"));
    assert_eq!(run.data_dir, std::path::PathBuf::from(DATA_MOUNT_PATH));
    assert_eq!(run.state_dir(), std::path::PathBuf::from(STATE_DIR));
    assert_eq!(run.network, "prod-net");
    assert_eq!(run.bootstrap, ["http://prod-bootstrap.apps.svc:3000"]);
    let listen: Vec<String> = run.listen.iter().map(ToString::to_string).collect();
    assert_eq!(
        listen,
        ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
    );
    let announce: Vec<String> = run.announce.iter().map(ToString::to_string).collect();
    assert_eq!(
        announce,
        ["/ip4/10.1.2.3/tcp/4001", "/ip4/10.1.2.3/udp/4001/quic-v1"]
    );
    assert_eq!(run.api_listen, "0.0.0.0:8080".parse().unwrap());
    assert!(run.no_mdns && !run.no_dht && !run.propagate_deletes && run.psk_file.is_none());
    assert_eq!(run.target_peers, 12);
    assert_eq!(run.log_format, dig_core::logging::LogFormat::Json);

    let mut private = network();
    private.psk_secret = Some(SecretKeySelector {
        name: "psk".to_string(),
        key: "psk".to_string(),
    });
    private.propagate_deletes = true;
    private.mdns = true;
    private.dht = false;
    let pod: Pod = serde_json::from_value(labelled_pod()).unwrap();
    let patch = build_patch(&pod, "apps", Some(&private), &InjectorSettings::default())
        .unwrap()
        .into_patch()
        .unwrap();
    let mut document = labelled_pod();
    json_patch::patch(&mut document, &patch).unwrap();
    let run = parsed_run_args(&document);
    assert_eq!(
        run.psk_file,
        Some(std::path::PathBuf::from("/etc/dig/psk/psk"))
    );
    assert!(run.propagate_deletes && !run.no_mdns && run.no_dht);
    assert_eq!(run.listen.len(), 1);
}

#[test]
fn existing_init_containers_run_before_the_sidecar() {
    let mut pod_json = labelled_pod();
    pod_json["spec"]["initContainers"] = json!([{"name": "prepare", "image": "busybox"}]);
    let document = patched(&pod_json, "apps");
    let init = document["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 2);
    assert_eq!(init[0]["name"], "prepare");
    assert_eq!(init[1]["name"], SIDECAR_CONTAINER_NAME);
}

#[test]
fn private_network_mounts_the_psk_and_uses_tcp_only() {
    let mut network = network();
    network.psk_secret = Some(SecretKeySelector {
        name: "prod-psk".to_string(),
        key: "swarm.key".to_string(),
    });
    network.propagate_deletes = true;
    let pod: Pod = serde_json::from_value(labelled_pod()).unwrap();
    let patch = build_patch(&pod, "apps", Some(&network), &InjectorSettings::default())
        .unwrap()
        .into_patch()
        .unwrap();
    let mut document = labelled_pod();
    json_patch::patch(&mut document, &patch).unwrap();
    let args = args(&document);
    assert_eq!(flag(&args, "--psk-file"), ["/etc/dig/psk/swarm.key"]);
    assert!(args.contains(&"--propagate-deletes".to_string()));
    assert!(!args.iter().any(|arg| arg.contains("quic")));
    let psk_volume = document["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == PSK_VOLUME_NAME)
        .unwrap();
    assert_eq!(psk_volume["secret"]["secretName"], "prod-psk");
    assert_eq!(psk_volume["secret"]["items"][0]["key"], "swarm.key");
    assert_eq!(psk_volume["secret"]["items"][0]["path"], "swarm.key");
    // No fsGroup: the file must be readable by the sidecar's non-root user.
    assert_eq!(psk_volume["secret"]["defaultMode"], 0o444);
    let mounts = sidecar(&document)["volumeMounts"].as_array().unwrap();
    assert!(mounts.contains(
        &json!({"name": PSK_VOLUME_NAME, "mountPath": "/etc/dig/psk", "readOnly": true})
    ));
}

#[test]
fn pod_that_already_has_the_sidecar_is_left_alone() {
    let mut in_init = labelled_pod();
    in_init["spec"]["initContainers"] = json!([{"name": SIDECAR_CONTAINER_NAME, "image": "x"}]);
    assert_eq!(
        decide(&in_init, "apps").unwrap(),
        Injection::Skipped(SkipReason::AlreadyInjected)
    );
    let mut in_containers = labelled_pod();
    in_containers["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": SIDECAR_CONTAINER_NAME, "image": "x"}));
    assert_eq!(
        decide(&in_containers, "apps").unwrap(),
        Injection::Skipped(SkipReason::AlreadyInjected)
    );
    // Injecting the patched pod again changes nothing.
    let once = patched(&labelled_pod(), "apps");
    assert_eq!(
        decide(&once, "apps").unwrap(),
        Injection::Skipped(SkipReason::AlreadyInjected)
    );
}

#[test]
fn pod_without_the_label_is_never_touched() {
    let unlabelled = pod(json!({"app": "web"}), json!({"dig.net/volume": "stores"}));
    assert_eq!(
        decide(&unlabelled, "apps").unwrap(),
        Injection::Skipped(SkipReason::NotLabelled)
    );
    let mut no_metadata = labelled_pod();
    no_metadata["metadata"] = json!({"name": "bare"});
    assert_eq!(
        decide(&no_metadata, "apps").unwrap(),
        Injection::Skipped(SkipReason::NotLabelled)
    );
}

#[test]
fn kube_system_excluded_namespaces_and_operator_pods_are_skipped() {
    assert_eq!(
        decide(&labelled_pod(), "kube-system").unwrap(),
        Injection::Skipped(SkipReason::ExcludedNamespace)
    );
    let settings = InjectorSettings {
        excluded_namespaces: vec!["dig-system".to_string()],
        ..Default::default()
    };
    let pod: Pod = serde_json::from_value(labelled_pod()).unwrap();
    assert_eq!(
        build_patch(&pod, "dig-system", Some(&network()), &settings).unwrap(),
        Injection::Skipped(SkipReason::ExcludedNamespace)
    );
    // kube-system stays excluded even when the list does not name it.
    assert_eq!(
        build_patch(&pod, "kube-system", Some(&network()), &settings).unwrap(),
        Injection::Skipped(SkipReason::ExcludedNamespace)
    );
    for label in [NAME_LABEL, MANAGED_BY_LABEL] {
        let operator_pod =
            pod_with_labels(json!({"dig.net/inject": "prod", label: "dig-operator"}));
        assert_eq!(
            decide(&operator_pod, "apps").unwrap(),
            Injection::Skipped(SkipReason::OperatorPod)
        );
    }
}

fn pod_with_labels(labels: Value) -> Value {
    pod(labels, json!({"dig.net/volume": "stores"}))
}

#[test]
fn unknown_network_is_denied_with_its_name_and_namespace() {
    let pod: Pod = serde_json::from_value(labelled_pod()).unwrap();
    let denial = build_patch(&pod, "apps", None, &InjectorSettings::default()).unwrap_err();
    assert_eq!(denial.reason(), "unknown_network");
    let message = denial.to_string();
    assert!(message.contains("\"prod\""), "{message}");
    assert!(
        message.contains("does not exist in namespace \"apps\""),
        "{message}"
    );
}

#[test]
fn invalid_network_label_is_denied() {
    let bad = pod_with_labels(json!({"dig.net/inject": "Prod_Net"}));
    let denial = decide(&bad, "apps").unwrap_err();
    assert_eq!(denial.reason(), "invalid_network_name");
    let message = denial.to_string();
    assert!(
        message.contains("Prod_Net") && message.contains("uppercase 'P'"),
        "{message}"
    );
}

#[test]
fn missing_volume_annotation_or_volume_is_denied_with_which_and_why() {
    let no_annotation = pod(json!({"dig.net/inject": "prod"}), json!({}));
    let denial = decide(&no_annotation, "apps").unwrap_err();
    assert_eq!(denial.reason(), "missing_volume_annotation");
    assert!(denial.to_string().contains("dig.net/volume"));

    let wrong_volume = pod(
        json!({"dig.net/inject": "prod"}),
        json!({"dig.net/volume": "dig-data"}),
    );
    let message = decide(&wrong_volume, "apps").unwrap_err().to_string();
    assert!(message.contains("dig.net/volume=\"dig-data\""), "{message}");
    assert!(
        message.contains("does not have (pod volumes: stores, settings)"),
        "{message}"
    );

    let mut no_volumes = labelled_pod();
    no_volumes["spec"]
        .as_object_mut()
        .unwrap()
        .remove("volumes");
    let message = decide(&no_volumes, "apps").unwrap_err().to_string();
    assert!(message.contains("pod volumes: none"), "{message}");
}

#[test]
fn read_only_volume_is_denied() {
    let config_volume = pod(
        json!({"dig.net/inject": "prod"}),
        json!({"dig.net/volume": "settings"}),
    );
    let denial = decide(&config_volume, "apps").unwrap_err();
    assert_eq!(denial.reason(), "read_only_volume");
    assert!(denial.to_string().contains("configMap"));
    let mut read_only_claim = labelled_pod();
    read_only_claim["spec"]["volumes"][0]["persistentVolumeClaim"]["readOnly"] = json!(true);
    assert_eq!(
        decide(&read_only_claim, "apps").unwrap_err().reason(),
        "read_only_volume"
    );
}

#[test]
fn good_overrides_are_applied() {
    let overridden = pod(
        json!({"dig.net/inject": "prod"}),
        json!({
            "dig.net/volume": "stores",
            "dig.net/image": "registry.local:5000/dig/sidecar@sha256:abc",
            "dig.net/cpu-request": "100m",
            "dig.net/memory-request": "128Mi",
            "dig.net/cpu-limit": "2",
            "dig.net/memory-limit": "1Gi",
            "dig.net/p2p-port": "4101",
            "dig.net/api-port": "8181"
        }),
    );
    let document = patched(&overridden, "apps");
    let container = sidecar(&document);
    assert_eq!(
        container["image"],
        "registry.local:5000/dig/sidecar@sha256:abc"
    );
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
    );
    let args = args(&document);
    assert_eq!(
        flag(&args, "--listen"),
        ["/ip4/0.0.0.0/tcp/4101", "/ip4/0.0.0.0/udp/4101/quic-v1"]
    );
    assert_eq!(
        flag(&args, "--announce"),
        ["/ip4/$(POD_IP)/tcp/4101", "/ip4/$(POD_IP)/udp/4101/quic-v1"]
    );
    assert_eq!(flag(&args, "--api-listen"), ["0.0.0.0:8181"]);
    // The probes follow the API port through its name.
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], API_PORT_NAME);
    let ports: Vec<i64> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [4101, 4101, 8181]);
}

#[test]
fn bad_overrides_are_denied_naming_annotation_and_value() {
    let cases = [
        (CPU_REQUEST_ANNOTATION, "lots"),
        (MEMORY_REQUEST_ANNOTATION, "-5Mi"),
        (CPU_LIMIT_ANNOTATION, "1.2.3"),
        (MEMORY_LIMIT_ANNOTATION, "64MB"),
        (P2P_PORT_ANNOTATION, "0"),
        (API_PORT_ANNOTATION, "70000"),
        (P2P_PORT_ANNOTATION, "http"),
        (IMAGE_ANNOTATION, "dig sidecar"),
        (IMAGE_ANNOTATION, ""),
    ];
    for (annotation, value) in cases {
        let bad = pod(
            json!({"dig.net/inject": "prod"}),
            json!({"dig.net/volume": "stores", annotation: value}),
        );
        let denial = decide(&bad, "apps").unwrap_err();
        assert_eq!(
            denial.reason(),
            "invalid_annotation",
            "{annotation}={value}"
        );
        let message = denial.to_string();
        assert!(
            message.contains(&format!("{annotation}={value:?}")),
            "{annotation}={value}: {message}"
        );
    }
}

#[test]
fn request_above_limit_and_port_clashes_are_denied() {
    let over = pod(
        json!({"dig.net/inject": "prod"}),
        json!({"dig.net/volume": "stores", "dig.net/memory-request": "1Gi"}),
    );
    let message = decide(&over, "apps").unwrap_err().to_string();
    assert!(
        message.contains("dig.net/memory-request=\"1Gi\""),
        "{message}"
    );
    assert!(
        message.contains("above the memory limit 512Mi"),
        "{message}"
    );

    let same_ports = pod(
        json!({"dig.net/inject": "prod"}),
        json!({"dig.net/volume": "stores", "dig.net/api-port": "4001"}),
    );
    assert!(
        decide(&same_ports, "apps")
            .unwrap_err()
            .to_string()
            .contains("must differ")
    );

    let clash = pod(
        json!({"dig.net/inject": "prod"}),
        json!({"dig.net/volume": "stores", "dig.net/api-port": "80"}),
    );
    let denial = decide(&clash, "apps").unwrap_err();
    assert_eq!(denial.reason(), "port_conflict");
    let message = denial.to_string();
    assert!(
        message.contains("port 80 is already used by container \"app\""),
        "{message}"
    );
    assert!(message.contains(API_PORT_ANNOTATION), "{message}");
}

#[test]
fn non_root_pod_user_is_inherited_and_root_is_replaced() {
    let mut as_app_user = labelled_pod();
    as_app_user["spec"]["securityContext"] = json!({"runAsUser": 1000, "fsGroup": 1000});
    let document = patched(&as_app_user, "apps");
    assert!(
        sidecar(&document)["securityContext"]
            .get("runAsUser")
            .is_none()
    );
    let mut as_root = labelled_pod();
    as_root["spec"]["securityContext"] = json!({"runAsUser": 0});
    let document = patched(&as_root, "apps");
    assert_eq!(
        sidecar(&document)["securityContext"]["runAsUser"],
        DEFAULT_RUN_AS_USER
    );
}

#[test]
fn a_volume_the_non_root_sidecar_may_not_write_gets_a_warning() {
    let warnings = |security: Value, volume: Value| {
        let mut pod_json = labelled_pod();
        pod_json["spec"]["securityContext"] = security;
        pod_json["spec"]["volumes"][0] = volume;
        let pod: Pod = serde_json::from_value(pod_json).unwrap();
        injection_warnings(&pod)
    };
    let claim = json!({"name": "stores", "persistentVolumeClaim": {"claimName": "stores"}});
    let found = warnings(json!({}), claim.clone());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("uid 65532"), "{}", found[0]);
    assert!(found[0].contains("volume \"stores\""), "{}", found[0]);
    // fsGroup makes the volume group-writable; a shared non-root user writes like the app.
    assert!(warnings(json!({"fsGroup": 2000}), claim.clone()).is_empty());
    assert!(warnings(json!({"runAsUser": 1000}), claim.clone()).is_empty());
    // Root app, no fsGroup: the sidecar is not root, so the warning stands.
    assert_eq!(warnings(json!({"runAsUser": 0}), claim).len(), 1);
    // emptyDir is writable by every user.
    assert!(warnings(json!({}), json!({"name": "stores", "emptyDir": {}})).is_empty());

    // A claim in a ReplicaSet's template is shared by all its pods.
    let mut replica = labelled_pod();
    replica["spec"]["securityContext"] = json!({"fsGroup": 2000});
    replica["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
        "kind": "ReplicaSet", "name": "web-6d4f", "uid": "1", "controller": true}]);
    let found = injection_warnings(&serde_json::from_value(replica.clone()).unwrap());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("ReplicaSet \"web-6d4f\""), "{}", found[0]);
    // A StatefulSet's pods each get their own claim.
    replica["metadata"]["ownerReferences"][0]["kind"] = json!("StatefulSet");
    assert!(injection_warnings(&serde_json::from_value(replica).unwrap()).is_empty());

    let mut on_host = labelled_pod();
    on_host["spec"]["hostNetwork"] = json!(true);
    on_host["spec"]["volumes"][0] = json!({"name": "stores", "emptyDir": {}});
    let found = injection_warnings(&serde_json::from_value(on_host).unwrap());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("host network"), "{}", found[0]);
    assert!(found[0].contains(P2P_PORT_ANNOTATION), "{}", found[0]);
}

#[test]
fn the_psk_file_is_group_readable_with_an_fs_group() {
    let mut private = network();
    private.psk_secret = Some(SecretKeySelector {
        name: "prod-psk".to_string(),
        key: "swarm.key".to_string(),
    });
    let mut pod_json = labelled_pod();
    pod_json["spec"]["securityContext"] = json!({"fsGroup": 2000});
    let pod: Pod = serde_json::from_value(pod_json.clone()).unwrap();
    let patch = build_patch(&pod, "apps", Some(&private), &InjectorSettings::default())
        .unwrap()
        .into_patch()
        .unwrap();
    json_patch::patch(&mut pod_json, &patch).unwrap();
    let psk_volume = pod_json["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == PSK_VOLUME_NAME)
        .unwrap();
    assert_eq!(psk_volume["secret"]["defaultMode"], 0o440);
}
