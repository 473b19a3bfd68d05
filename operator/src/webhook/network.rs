//! The DigNetwork a pod names, as the sidecar configuration the patch needs.

use futures::future::BoxFuture;
use kube::{Api, Client, ResourceExt};

use super::patch::{NetworkSidecarConfig, SecretKeySelector};
use super::server::NetworkSource;
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
        mdns: spec.nodes.discovery.mdns,
        dht: spec.nodes.discovery.dht,
        resources: spec.nodes.resources.clone(),
    })
}

/// How long an admission waits for the DigNetwork.
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
    ) -> BoxFuture<'a, Result<Option<NetworkSidecarConfig>, String>> {
        Box::pin(async move {
            let api: Api<DigNetwork> = Api::namespaced(self.client.clone(), namespace);
            // Well inside the API server's webhook timeout, so the pod's creator sees our reason.
            let network = tokio::time::timeout(LOOKUP_TIMEOUT, api.get_opt(name))
                .await
                .map_err(|_| format!("the API server did not answer within {LOOKUP_TIMEOUT:?}"))?
                .map_err(|error| error.to_string())?;
            network
                .map(|network| {
                    sidecar_config(&network, namespace, self.default_image.as_deref()).map_err(
                        |why| format!("DigNetwork {name:?} cannot configure a sidecar: {why}"),
                    )
                })
                .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let networks = KubeNetworks {
            client: Client::new(service, "default"),
            default_image: Some("dig-sidecar:1".to_string()),
        };
        let server = async {
            for (code, body) in [
                (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                ),
                (200, serde_json::to_value(network(json!({}))).unwrap()),
            ] {
                let (request, respond) = handle.next_request().await.expect("a request");
                assert_eq!(
                    request.uri().path(),
                    "/apis/dig.net/v1alpha1/namespaces/apps/dignetworks/prod"
                );
                respond.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap(),
                );
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

    #[test]
    fn no_image_anywhere_is_an_error_that_says_so() {
        let error = sidecar_config(&network(json!({})), "apps", None).unwrap_err();
        assert!(error.contains("--default-sidecar-image"), "{error}");
    }
}
