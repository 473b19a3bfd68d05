//! The `_dnsaddr` TXT values libp2p nodes bootstrap from: one dialable multiaddr with a peer id
//! per exposed node, `dnsaddr=/dns4/<pod>.<announceDomain>/tcp/<port>/p2p/<peer id>` (and its
//! QUIC twin unless the network is private).
//!
//! Where the peer ids come from: each exposed node's own API. The operator lists the
//! StatefulSet's pods (the API server says which pod has which IP, so the answer comes from the
//! pod that is that node), asks `GET http://<pod IP>:<apiPort>/health` of every ready one and
//! takes its `peerId`. A node's identity key lives on its volume, so a pod's peer id is kept per
//! pod uid and asked again only for a new pod. The registry is not used: anyone may register
//! any address there, only a pod's own answer ties a peer id to its name.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::ListParams};

use super::{
    meta::{Component, selector_labels},
    pod_http,
    validate::announced_port,
};
use crate::crd::{DigNetwork, ExposureType};

/// Asks a node API base URL (`http://<ip>:<port>`) for its peer id; the error is a message.
pub type PeerIdFetcher =
    Arc<dyn Fn(String) -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// Largest `/health` answer read.
const MAX_HEALTH_BYTES: usize = 16 * 1024;
/// Nodes asked at once.
const CONCURRENT_ASKS: usize = 8;

/// A node reachable from outside the cluster under a DNS name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExposedNode {
    pub pod: String,
    pub host: String,
    pub port: i32,
}

/// The StatefulSet nodes a network exposes under `nodes.exposure.announceDomain`.
pub fn exposed_nodes(network: &DigNetwork, name: &str) -> Vec<ExposedNode> {
    let nodes = &network.spec.nodes;
    let exposure = &nodes.exposure;
    let Some(domain) = exposure.announce_domain.as_deref() else {
        return Vec::new();
    };
    if exposure.type_ == ExposureType::None {
        return Vec::new();
    }
    let port = announced_port(exposure, nodes.p2p_port);
    (0..nodes.replicas.max(0))
        .map(|i| {
            let pod = format!("{}-{i}", super::meta::names::node(name));
            ExposedNode {
                host: format!("{pod}.{domain}"),
                pod,
                port,
            }
        })
        .collect()
}

/// The `dnsaddr=` values of nodes whose peer ids are known, sorted.
pub fn dnsaddr_values(nodes: &[(ExposedNode, String)], quic: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (node, peer) in nodes {
        out.push(format!(
            "dnsaddr=/dns4/{}/tcp/{}/p2p/{peer}",
            node.host, node.port
        ));
        if quic {
            out.push(format!(
                "dnsaddr=/dns4/{}/udp/{}/quic-v1/p2p/{peer}",
                node.host, node.port
            ));
        }
    }
    out.sort();
    out
}

/// A libp2p peer id in its text form: base58btc, 46 (RSA `Qm...`) to 59 characters.
pub fn is_peer_id(text: &str) -> bool {
    (46..=59).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() && !matches!(b, b'0' | b'O' | b'I' | b'l'))
}

/// `GET <url>/health` and its `peerId`, bounded in time and size. The HTTP client is built at
/// the first use (after `main` installed the TLS crypto provider).
pub fn http_peer_id_fetcher(timeout: Duration) -> PeerIdFetcher {
    let client: Arc<std::sync::OnceLock<Result<reqwest::Client, String>>> = Arc::default();
    Arc::new(move |base: String| {
        let client = client.clone();
        Box::pin(async move {
            let client = client.get_or_init(|| pod_http::client(timeout)).clone()?;
            let url = format!("{base}/health");
            let body = pod_http::get_bounded(&client, &url, MAX_HEALTH_BYTES).await?;
            let value: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
            let peer = value["peerId"].as_str().unwrap_or_default();
            if is_peer_id(peer) {
                Ok(peer.to_string())
            } else {
                Err(format!("GET {url}: no valid peerId in the answer"))
            }
        })
    })
}

/// Whether the operator may ask a pod at `ip` for its peer id: within `allowed` when that is
/// set (`--peer-id-networks`), else any address a pod network uses, never loopback, link-local
/// (cloud metadata services live there), unspecified or multicast: a pod's status is written by
/// its node, and a compromised node must not point the operator anywhere it likes.
pub fn may_ask(ip: IpAddr, allowed: &[IpNet]) -> bool {
    if !allowed.is_empty() {
        return allowed.iter().any(|net| net.contains(&ip));
    }
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local())
        }
    }
}

/// Peer ids of pods, by pod uid.
pub struct PeerIds {
    fetch: PeerIdFetcher,
    known: Mutex<HashMap<String, String>>,
    allowed: Vec<IpNet>,
}

impl PeerIds {
    pub fn new(fetch: PeerIdFetcher) -> Self {
        Self {
            fetch,
            known: Mutex::new(HashMap::new()),
            allowed: Vec::new(),
        }
    }

    /// Asks only pods whose IP is in one of `networks` (empty: the default rule of [`may_ask`]).
    pub fn allowing(mut self, networks: Vec<IpNet>) -> Self {
        self.allowed = networks;
        self
    }

    /// The peer ids of the exposed nodes whose pods are ready and answered, and a message per
    /// node that did not.
    pub async fn of(
        &self,
        client: &kube::Client,
        namespace: &str,
        network_name: &str,
        nodes: &[ExposedNode],
        api_port: i32,
    ) -> (Vec<(ExposedNode, String)>, Vec<String>) {
        if nodes.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let selector = selector_labels(network_name, Component::Node)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let listed = match pods.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items,
            Err(error) => {
                return (
                    Vec::new(),
                    vec![format!("listing the node pods ({selector}): {error}")],
                );
            }
        };
        let mut asks = Vec::new();
        let mut found = Vec::new();
        let mut problems = Vec::new();
        for node in nodes {
            let Some(pod) = listed
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(node.pod.as_str()))
            else {
                continue;
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if let Some(peer) = self.known.lock().expect("peer id lock").get(&uid) {
                found.push((node.clone(), peer.clone()));
                continue;
            }
            let status = pod.status.as_ref();
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let ip = status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse::<IpAddr>().ok());
            match (ready, ip) {
                (true, Some(ip)) if may_ask(ip, &self.allowed) => {
                    let base = format!("http://{}", SocketAddr::new(ip, api_port as u16));
                    asks.push((node.clone(), uid, base));
                }
                (true, Some(ip)) => problems.push(format!(
                    "peer id of {}: pod IP {ip} is outside the networks the operator asks (--peer-id-networks)",
                    node.pod
                )),
                _ => {}
            }
        }
        let answers: Vec<_> = futures::stream::iter(asks)
            .map(|(node, uid, base)| {
                let fetch = self.fetch.clone();
                async move { (node, uid, fetch(base).await) }
            })
            .buffer_unordered(CONCURRENT_ASKS)
            .collect()
            .await;
        for (node, uid, answer) in answers {
            match answer {
                Ok(peer) => {
                    self.known
                        .lock()
                        .expect("peer id lock")
                        .insert(uid, peer.clone());
                    found.push((node, peer));
                }
                Err(message) => problems.push(format!("peer id of {}: {message}", node.pod)),
            }
        }
        found.sort_by(|a, b| a.0.pod.cmp(&b.0.pod));
        (found, problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::fixtures::network;

    #[test]
    fn exposed_nodes_are_the_pods_under_the_announce_domain() {
        let net = network(
            "nodes:\n  replicas: 2\n  exposure:\n    type: LoadBalancer\n    announceDomain: nodes.example.com",
        );
        let nodes = exposed_nodes(&net, "net");
        assert_eq!(
            nodes,
            [
                ExposedNode {
                    pod: "net-node-0".into(),
                    host: "net-node-0.nodes.example.com".into(),
                    port: 4001
                },
                ExposedNode {
                    pod: "net-node-1".into(),
                    host: "net-node-1.nodes.example.com".into(),
                    port: 4001
                },
            ]
        );
        assert!(exposed_nodes(&network("{}"), "net").is_empty());
    }

    #[test]
    fn dnsaddr_values_are_dialable_multiaddrs_with_peer_ids() {
        let peer = "12D3KooWGzBSTgZGMhRyDNkD1NFMXqcBMsZmzhzEjGi1bP8zjcqQ";
        assert!(is_peer_id(peer));
        let node = ExposedNode {
            pod: "net-node-0".into(),
            host: "net-node-0.nodes.example.com".into(),
            port: 4001,
        };
        assert_eq!(
            dnsaddr_values(&[(node.clone(), peer.into())], true),
            [
                format!("dnsaddr=/dns4/net-node-0.nodes.example.com/tcp/4001/p2p/{peer}"),
                format!("dnsaddr=/dns4/net-node-0.nodes.example.com/udp/4001/quic-v1/p2p/{peer}"),
            ]
        );
        assert_eq!(dnsaddr_values(&[(node, peer.into())], false).len(), 1);
    }

    #[test]
    fn pods_are_asked_only_on_pod_network_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(may_ask(ip("10.244.1.7"), &[]));
        assert!(may_ask(ip("fd00::7"), &[]));
        for never in [
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "224.0.0.1",
        ] {
            assert!(!may_ask(ip(never), &[]), "{never}");
        }
        let only: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(may_ask(ip("127.0.0.1"), &only));
        assert!(!may_ask(ip("10.244.1.7"), &only));
    }

    #[test]
    fn peer_ids_are_checked() {
        assert!(is_peer_id("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"));
        assert!(!is_peer_id(
            "12D3KooW/../../etc/passwd-0000000000000000000000000"
        ));
        assert!(!is_peer_id("short"));
        assert!(!is_peer_id(&"1".repeat(200)));
    }
}
