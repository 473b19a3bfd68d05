//! Start-up check that the CRDs are installed, so a missing CRD is a plain message rather than a
//! stream of watch errors.

use kube::Client;

use crate::crd::GROUP;

/// Version of the CRDs this operator serves.
pub const VERSION: &str = "v1alpha1";
/// `(plural, CRD name)` of each CRD.
pub const CRDS: [(&str, &str); 2] = [
    ("dignetworks", "dignetworks.dig.net"),
    ("dignodes", "dignodes.dig.net"),
];

#[derive(Debug, thiserror::Error)]
pub enum CrdCheckError {
    #[error(
        "the CustomResourceDefinition(s) {} (version {VERSION}) are not installed in the cluster; install them with `kubectl apply -f crds/` (or `cargo run -p dig-operator --bin crdgen -- --stdout | kubectl apply -f -`, or the Helm chart)",
        .missing.join(", ")
    )]
    Missing { missing: Vec<String> },
    #[error("asking the API server which {GROUP}/{VERSION} resources it serves failed: {0}")]
    Discovery(#[source] kube::Error),
}

/// Fails, naming each missing CRD, unless both are served.
pub async fn ensure_crds(client: &Client) -> Result<(), CrdCheckError> {
    let served: Vec<String> = match client
        .list_api_group_resources(&format!("{GROUP}/{VERSION}"))
        .await
    {
        Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
        Err(kube::Error::Api(status)) if status.code == 404 => Vec::new(),
        Err(e) => return Err(CrdCheckError::Discovery(e)),
    };
    let missing: Vec<String> = CRDS
        .iter()
        .filter(|(plural, _)| !served.iter().any(|s| s == plural))
        .map(|(_, crd)| crd.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CrdCheckError::Missing { missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;

    async fn check_with(code: u16, body: serde_json::Value) -> Result<(), CrdCheckError> {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.uri().path(), "/apis/dig.net/v1alpha1");
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        });
        let result = ensure_crds(&Client::new(service, "default")).await;
        server.await.unwrap();
        result
    }

    #[tokio::test]
    async fn names_every_missing_crd_and_how_to_install() {
        let err = check_with(404, serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "404 page not found"}))
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("dignetworks.dig.net") && message.contains("dignodes.dig.net"),
            "{message}"
        );
        assert!(message.contains("kubectl apply -f crds/"), "{message}");
    }

    #[tokio::test]
    async fn names_only_the_missing_one() {
        let list = serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "dig.net/v1alpha1", "resources": [
            {"name": "dignetworks", "singularName": "dignetwork", "namespaced": true, "kind": "DigNetwork", "verbs": ["get"]}
        ]});
        let message = check_with(200, list).await.unwrap_err().to_string();
        assert!(
            message.contains("dignodes.dig.net") && !message.contains("dignetworks.dig.net"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn passes_when_both_are_served() {
        let list = serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "dig.net/v1alpha1", "resources": [
            {"name": "dignetworks", "singularName": "dignetwork", "namespaced": true, "kind": "DigNetwork", "verbs": ["get"]},
            {"name": "dignetworks/status", "singularName": "", "namespaced": true, "kind": "DigNetwork", "verbs": ["get"]},
            {"name": "dignodes", "singularName": "dignode", "namespaced": true, "kind": "DigNode", "verbs": ["get"]}
        ]});
        check_with(200, list).await.unwrap();
    }
}
