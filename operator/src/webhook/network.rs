//! The DigNetwork a pod names, as the sidecar configuration the patch needs.

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use tokio::time::{Instant, timeout_at};

use super::patch::{NetworkSidecarConfig, SecretKeySelector};
use super::server::{NetworkProblem, NetworkSource};
use crate::crd::DigNetwork;
use crate::reconcile::build::bootstrap_url;

/// Maps a DigNetwork (in `namespace`) to what an injected node of that network runs with.
pub fn sidecar_config(
    network: &DigNetwork,
    namespace: &str,
    default_image: Option<&str>,
) -> Result<NetworkSidecarConfig, String> {
    let name = network.name_any();
    let spec = &network.spec;
    let port = |what: &str, value: i32| {
        u16::try_from(value)
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| format!("its spec.nodes.{what} {value} is not a port number"))
    };
    let image = spec
        .nodes
        .image
        .clone()
        .or_else(|| default_image.map(str::to_string))
        .ok_or_else(|| {
            "it sets no spec.nodes.image and the operator has no --default-sidecar-image"
                .to_string()
        })?;
    let mut bootstrap_urls = vec![bootstrap_url(&name, namespace, spec.bootstrap.port)];
    bootstrap_urls.extend(spec.nodes.discovery.bootstrap_urls.iter().cloned());
    Ok(NetworkSidecarConfig {
        network_id: spec.network_id.clone().unwrap_or_else(|| name.clone()),
        name,
        bootstrap_urls,
        image,
        p2p_port: port("p2pPort", spec.nodes.p2p_port)?,
        api_port: port("apiPort", spec.nodes.api_port)?,
        psk_secret: spec
            .private_network
            .as_ref()
            .map(|private| SecretKeySelector {
                name: private.psk_secret_ref.name.clone(),
                key: private.psk_secret_ref.key.clone(),
            }),
        propagate_deletes: spec.replication.propagate_deletes,
        write_policy: spec.replication.write_policy,
        writers: spec.replication.writers.clone(),
        mdns: spec.nodes.discovery.mdns,
        dht: spec.nodes.discovery.dht,
        target_peers: spec.nodes.discovery.target_peers,
        resources: spec.nodes.resources.clone(),
    })
}

/// How long an admission waits for the DigNetwork (and its PSK Secret) in all.
pub const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads DigNetworks from the API server at admission time (always the current spec).
pub struct KubeNetworks {
    pub client: Client,
    pub default_image: Option<String>,
}

impl NetworkSource for KubeNetworks {
    fn network<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<NetworkSidecarConfig>, NetworkProblem>> {
        Box::pin(async move {
            // Well inside the API server's webhook timeout, so the pod's creator sees our reason.
            let deadline = Instant::now() + LOOKUP_TIMEOUT;
            let no_answer = || {
                NetworkProblem::LookupFailed(format!(
                    "the API server did not answer within {LOOKUP_TIMEOUT:?}"
                ))
            };
            let api: Api<DigNetwork> = Api::namespaced(self.client.clone(), namespace);
            let network = timeout_at(deadline, api.get_opt(name))
                .await
                .map_err(|_| no_answer())?
                .map_err(|error| NetworkProblem::LookupFailed(error.to_string()))?;
            let Some(network) = network else {
                return Ok(None);
            };
            let config = sidecar_config(&network, namespace, self.default_image.as_deref())
                .map_err(NetworkProblem::Unusable)?;
            if let Some(psk) = &config.psk_secret {
                let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                match timeout_at(deadline, secrets.get_opt(&psk.name)).await {
                    Ok(Ok(secret)) => psk_problem(secret.as_ref(), psk)
                        .map_or(Ok(()), |why| Err(NetworkProblem::Unusable(why)))?,
                    // Not allowed to read it, or no answer: the kubelet reports a missing
                    // Secret on the pod later; that is no reason to refuse the pod now.
                    Ok(Err(error)) => {
                        tracing::debug!(%error, secret = %psk.name, "cannot check the PSK Secret")
                    }
                    Err(_) => tracing::debug!(secret = %psk.name, "PSK Secret check timed out"),
                }
            }
            Ok(Some(config))
        })
    }
}

/// Why the PSK Secret of a private network cannot give the sidecar its key, if it cannot: a pod
/// admitted with it would wait for the Secret forever instead of running.
fn psk_problem(secret: Option<&Secret>, psk: &SecretKeySelector) -> Option<String> {
    let Some(secret) = secret else {
        return Some(format!(
            "it is private and its PSK Secret {:?} (spec.privateNetwork.pskSecretRef) does not exist",
            psk.name
        ));
    };
    let has_key = secret
        .data
        .as_ref()
        .is_some_and(|data| data.contains_key(&psk.key))
        || secret
            .string_data
            .as_ref()
            .is_some_and(|data| data.contains_key(&psk.key));
    (!has_key).then(|| {
        format!(
            "it is private and its PSK Secret {:?} has no key {:?} (spec.privateNetwork.pskSecretRef)",
            psk.name, psk.key
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::mock_api::{MockApi, status};
    use http::Method;
    use serde_json::json;

    use crate::reconcile::fixtures::kubelet_expanded;

    const POD_IP: &str = "10.1.2.3";
    const NETWORK_PATH: &str = "/apis/dig.net/v1alpha1/namespaces/apps/dignetworks/prod";

    fn network(spec: serde_json::Value) -> DigNetwork {
        serde_json::from_value(json!({
            "apiVersion": "dig.net/v1alpha1",
            "kind": "DigNetwork",
            "metadata": {"name": "prod", "namespace": "apps"},
            "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn defaults_give_the_bootstrap_service_and_the_default_image() {
        let config = sidecar_config(&network(json!({})), "apps", Some("dig-sidecar:1")).unwrap();
        assert_eq!(config.name, "prod");
        assert_eq!(config.network_id, "prod");
        assert_eq!(
            config.bootstrap_urls,
            ["http://prod-bootstrap.apps.svc:3000"]
        );
        assert_eq!(config.image, "dig-sidecar:1");
        assert_eq!((config.p2p_port, config.api_port), (4001, 8080));
        assert!(config.psk_secret.is_none());
        assert!(!config.mdns && config.dht && !config.propagate_deletes);
    }

    #[test]
    fn the_spec_is_carried_over() {
        let spec = json!({
            "networkId": "prod-net",
            "bootstrap": {"port": 3100},
            "nodes": {"image": "own:2", "p2pPort": 4100, "apiPort": 8100,
                      "discovery": {"mdns": true, "dht": false, "bootstrapUrls": ["https://b.example.net"]},
                      "resources": {"requests": {"cpu": "1"}}},
            "privateNetwork": {"pskSecretRef": {"name": "psk", "key": "swarm.key"}},
            "replication": {"propagateDeletes": true}
        });
        let config = sidecar_config(&network(spec), "apps", None).unwrap();
        assert_eq!(config.network_id, "prod-net");
        assert_eq!(
            config.bootstrap_urls,
            [
                "http://prod-bootstrap.apps.svc:3100",
                "https://b.example.net"
            ]
        );
        assert_eq!(config.image, "own:2");
        assert_eq!((config.p2p_port, config.api_port), (4100, 8100));
        assert_eq!(
            config.psk_secret,
            Some(SecretKeySelector {
                name: "psk".to_string(),
                key: "swarm.key".to_string()
            })
        );
        assert!(config.mdns && !config.dht && config.propagate_deletes);
        assert!(config.resources.is_some());
    }

    #[tokio::test]
    async fn kube_networks_reads_the_named_network_and_reports_a_missing_one() {
        let (client, mut api) = MockApi::new();
        let networks = KubeNetworks {
            client,
            default_image: Some("dig-sidecar:1".to_string()),
        };
        let server = async {
            for (code, body) in [
                (404, status(404, "NotFound")),
                (200, serde_json::to_value(network(json!({}))).unwrap()),
            ] {
                api.step(Method::GET, NETWORK_PATH, code, body).await;
            }
        };
        let lookups = async {
            let missing = networks.network("apps", "prod").await.unwrap();
            let found = networks.network("apps", "prod").await.unwrap();
            (missing, found)
        };
        let ((missing, found), ()) = tokio::join!(lookups, server);
        assert_eq!(missing, None);
        assert_eq!(
            found.unwrap().bootstrap_urls,
            ["http://prod-bootstrap.apps.svc:3000"]
        );
    }

    #[tokio::test]
    async fn a_private_network_whose_psk_secret_cannot_serve_is_unusable() {
        let (client, mut api) = MockApi::new();
        let networks = KubeNetworks {
            client,
            default_image: Some("dig-sidecar:1".to_string()),
        };
        let private = serde_json::to_value(network(
            json!({"privateNetwork": {"pskSecretRef": {"name": "psk", "key": "swarm.key"}}}),
        ))
        .unwrap();
        let secret = |key: &str| {
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "psk"},
                   "data": {key: "L2tleS9zd2FybS9wc2svMS4wLjAv"}})
        };
        // Each lookup: the network, then its Secret.
        let answers = [
            (404, status(404, "NotFound")),
            (200, secret("other.key")),
            (200, secret("swarm.key")),
            (403, status(403, "Forbidden")),
        ];
        let server = async {
            for (code, body) in answers {
                api.step(Method::GET, NETWORK_PATH, 200, private.clone())
                    .await;
                api.step(
                    Method::GET,
                    "/api/v1/namespaces/apps/secrets/psk",
                    code,
                    body,
                )
                .await;
            }
        };
        let lookups = async {
            let mut results = Vec::new();
            for _ in 0..4 {
                results.push(networks.network("apps", "prod").await);
            }
            results
        };
        let (results, ()) = tokio::join!(lookups, server);
        let unusable = |result: &Result<Option<NetworkSidecarConfig>, NetworkProblem>| match result
        {
            Err(NetworkProblem::Unusable(why)) => why.clone(),
            other => panic!("expected an unusable network, got {other:?}"),
        };
        let missing = unusable(&results[0]);
        assert!(
            missing.contains("PSK Secret \"psk\"") && missing.contains("does not exist"),
            "{missing}"
        );
        let no_key = unusable(&results[1]);
        assert!(no_key.contains("has no key \"swarm.key\""), "{no_key}");
        let config = results[2].clone().unwrap().unwrap();
        assert_eq!(config.psk_secret.unwrap().key, "swarm.key");
        // Not allowed to read Secrets: injected all the same, the kubelet has the last word.
        assert!(results[3].clone().unwrap().is_some());
    }

    /// `dig-sidecar run` as the sidecar itself resolves it (flags, then the `--config` file).
    fn resolved(args: &[String]) -> dig_sidecar::config::RunArgs {
        let argv = std::iter::once("dig-sidecar".to_string())
            .chain(args.iter().cloned())
            .map(std::ffi::OsString::from)
            .collect();
        let cli = dig_sidecar::config::resolve(argv, &|_| None)
            .unwrap_or_else(|error| panic!("dig-sidecar rejects {args:?}: {error}"));
        match cli.command {
            dig_sidecar::config::Command::Run(run) => *run,
            other => panic!("expected the run command, got {other:?}"),
        }
    }

    fn strings(value: &serde_json::Value) -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item.as_str().unwrap().to_string())
            .collect()
    }

    /// A probe with its named port replaced by the number the container declares.
    fn probe_by_number(container: &serde_json::Value, probe: &str) -> serde_json::Value {
        let mut probe = container[probe].clone();
        let name = probe["httpGet"]["port"].clone();
        let number = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|port| port["name"] == name)
            .unwrap_or_else(|| panic!("no port named {name} in {container}"))["containerPort"]
            .clone();
        probe["httpGet"]["port"] = number;
        probe
    }

    /// The injected node and the network's own StatefulSet nodes come from the same DigNetwork:
    /// the node configuration they run with, their probes, security context, resources, image and
    /// folders must be the same (only the announce address and the user differ by design).
    #[test]
    fn an_injected_node_runs_like_the_networks_own_nodes() {
        use crate::reconcile::build::build_network;
        use crate::reconcile::validate::{
            DefaultImages, NetworkFacts, PskSecret, validate_network,
        };
        use crate::webhook::patch::{
            Injection, InjectorSettings, SIDECAR_CONTAINER_NAME, build_patch,
        };
        use k8s_openapi::api::core::v1::Pod;

        let specs = [
            json!({}),
            json!({
                "networkId": "prod-net",
                "bootstrap": {"port": 3100},
                "nodes": {"image": "own:2", "p2pPort": 4100, "apiPort": 8100,
                          "discovery": {"mdns": true, "dht": false, "bootstrapUrls": ["https://b.example.net"]},
                          "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}},
                "privateNetwork": {"pskSecretRef": {"name": "psk", "key": "swarm.key"}},
                "replication": {"propagateDeletes": true}
            }),
        ];
        for spec in specs {
            let mut dig_network = network(spec.clone());
            dig_network.metadata.uid = Some("1234".to_string());
            let facts = NetworkFacts {
                psk: dig_network
                    .spec
                    .private_network
                    .is_some()
                    .then(|| PskSecret::Present {
                        hash: "h".to_string(),
                    }),
                ..NetworkFacts::default()
            };
            let images = DefaultImages {
                sidecar: "dig-sidecar:1".to_string(),
                bootstrap: "dig-bootstrap:1".to_string(),
            };
            let valid = validate_network(&dig_network, &images, facts).expect("a valid network");
            let children = build_network(&valid);
            let template = &children.node_statefulset.spec.as_ref().unwrap().template;
            let own = serde_json::to_value(&template.spec.as_ref().unwrap().containers[0]).unwrap();

            let config = sidecar_config(&dig_network, "apps", Some("dig-sidecar:1")).unwrap();
            let pod_json = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "app", "labels": {"dig.net/inject": "prod"},
                             "annotations": {"dig.net/volume": "stores"}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}],
                         "volumes": [{"name": "stores", "emptyDir": {}}]}
            });
            let pod: Pod = serde_json::from_value(pod_json.clone()).unwrap();
            let Injection::Patched(patch) =
                build_patch(&pod, "apps", Some(&config), &InjectorSettings::default()).unwrap()
            else {
                panic!("expected a patch");
            };
            let mut injected_pod = pod_json;
            json_patch::patch(&mut injected_pod, &patch).unwrap();
            let injected = injected_pod["spec"]["initContainers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == SIDECAR_CONTAINER_NAME)
                .unwrap()
                .clone();

            // The StatefulSet's node reads the ConfigMap's file; point --config at a copy of it.
            let folder = tempfile::tempdir().unwrap();
            let config_file = folder.path().join("node.yaml");
            let yaml = &children.node_config.data.as_ref().unwrap()["node.yaml"];
            std::fs::write(&config_file, yaml).unwrap();
            let own_args: Vec<String> = kubelet_expanded(&strings(&own["args"]), "pod", POD_IP)
                .into_iter()
                .map(|arg| {
                    if arg.ends_with("/node.yaml") {
                        config_file.display().to_string()
                    } else {
                        arg
                    }
                })
                .collect();
            let own_run = resolved(&own_args);
            let injected_args = kubelet_expanded(&strings(&injected["args"]), "pod", POD_IP);
            let injected_run = resolved(&injected_args);
            let context = format!("spec {spec}");
            assert_eq!(injected_run.network, own_run.network, "{context}");
            assert_eq!(injected_run.bootstrap, own_run.bootstrap, "{context}");
            assert_eq!(injected_run.listen, own_run.listen, "{context}");
            assert_eq!(injected_run.api_listen, own_run.api_listen, "{context}");
            assert_eq!(injected_run.announce, own_run.announce, "{context}");
            assert_eq!(
                (injected_run.no_mdns, injected_run.no_dht),
                (own_run.no_mdns, own_run.no_dht),
                "{context}"
            );
            assert_eq!(injected_run.psk_file, own_run.psk_file, "{context}");
            assert_eq!(
                injected_run.propagate_deletes, own_run.propagate_deletes,
                "{context}"
            );
            assert_eq!(injected_run.log_format, own_run.log_format, "{context}");
            assert_eq!(injected_run.data_dir(), own_run.data_dir(), "{context}");
            assert_eq!(injected_run.state_dir(), own_run.state_dir(), "{context}");

            assert_eq!(injected["image"], own["image"], "{context}");
            if spec["nodes"]["resources"].is_null() {
                // The StatefulSet leaves a network without resources unbounded; a sidecar in
                // someone else's pod gets the injector's modest defaults instead.
                assert!(own["resources"].is_null(), "{context}");
                assert_eq!(
                    injected["resources"],
                    serde_json::to_value(InjectorSettings::default().default_resources).unwrap()
                );
            } else {
                assert_eq!(injected["resources"], own["resources"], "{context}");
            }
            for probe in ["livenessProbe", "readinessProbe"] {
                assert_eq!(
                    probe_by_number(&injected, probe),
                    probe_by_number(&own, probe),
                    "{probe} of {context}"
                );
            }
            let mut security = injected["securityContext"].clone();
            let security_fields = security.as_object_mut().unwrap();
            security_fields.remove("runAsUser");
            security_fields.remove("runAsGroup");
            assert_eq!(security, own["securityContext"], "{context}");
            let port_numbers = |container: &serde_json::Value| -> Vec<(i64, String)> {
                container["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p["containerPort"].as_i64().unwrap(),
                            p["protocol"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            };
            assert_eq!(port_numbers(&injected), port_numbers(&own), "{context}");
            let mount_paths = |container: &serde_json::Value| -> Vec<String> {
                let mut paths: Vec<String> = container["volumeMounts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["mountPath"].as_str().unwrap().to_string())
                    .filter(|path| path != "/etc/dig" && path != "/etc/podinfo")
                    .collect();
                paths.sort();
                paths
            };
            // The same folders, less the ConfigMap the injected node gets as flags instead, and
            // the annotations a scale-down's drain is read from (an injected node is in no
            // StatefulSet the operator scales).
            assert_eq!(mount_paths(&injected), mount_paths(&own), "{context}");
        }
    }

    #[test]
    fn no_image_anywhere_is_an_error_that_says_so() {
        let error = sidecar_config(&network(json!({})), "apps", None).unwrap_err();
        assert!(error.contains("--default-sidecar-image"), "{error}");
    }
}
