//! The node's own Prometheus metrics. They live in the process's one registry next to
//! libp2p-metrics (prefix `libp2p_`) and the replication engine's metrics.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `client` (a peer dialed one of our addresses back) or `server` (we dialed a peer back).
    pub role: String,
    /// `ok` or `error`.
    pub result: String,
}

#[derive(Clone, Debug, Default)]
pub struct NodeMetrics {
    /// Peers of our network with an open connection (identify confirmed).
    pub connected_peers: Gauge,
    /// `--target-peers`: the connections the node keeps by dialing.
    pub target_peers: Gauge,
    /// Peers each discovery source currently lists.
    pub discovered_peers: Family<SourceLabels, Gauge>,
    /// Registry registrations by result (`ok`, `error`).
    pub registry_registrations: Family<ResultLabels, Counter>,
    /// Registry `/peers` polls by result (`ok`, `error`).
    pub registry_polls: Family<ResultLabels, Counter>,
    /// Outgoing dials by result (`started`, `connected`, `failed`).
    pub dials: Family<ResultLabels, Counter>,
    /// Peers disconnected because identify showed another network.
    pub foreign_peers_rejected: Counter,
    /// Peers banned (for example for a bad chunk).
    pub peers_banned: Counter,
    /// AutoNAT dial-back probes by role and result.
    pub autonat_probes: Family<ProbeLabels, Counter>,
}

impl NodeMetrics {
    /// Creates the metrics and registers them under the `dig_node_` prefix.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let sub = registry.sub_registry_with_prefix("dig_node");
        sub.register(
            "connected_peers",
            "Peers of this network with an open connection",
            metrics.connected_peers.clone(),
        );
        sub.register(
            "target_peers",
            "Connections the node keeps by dialing (--target-peers); peers dialing it may add more",
            metrics.target_peers.clone(),
        );
        sub.register(
            "discovered_peers",
            "Peers each discovery source currently lists",
            metrics.discovered_peers.clone(),
        );
        sub.register(
            "registry_registrations",
            "Registrations with the bootstrap registry by result",
            metrics.registry_registrations.clone(),
        );
        sub.register(
            "registry_polls",
            "Polls of the bootstrap registry's /peers by result",
            metrics.registry_polls.clone(),
        );
        sub.register("dials", "Outgoing dials by result", metrics.dials.clone());
        sub.register(
            "foreign_peers_rejected",
            "Peers disconnected because they belong to another network",
            metrics.foreign_peers_rejected.clone(),
        );
        sub.register(
            "peers_banned",
            "Peers banned by the node (for example for a bad chunk)",
            metrics.peers_banned.clone(),
        );
        sub.register(
            "autonat_probes",
            "AutoNAT dial-back probes by role (client: our address tested; server: we dialed a peer back) and result",
            metrics.autonat_probes.clone(),
        );
        // Every result a counter can report exists from the start, at 0: a rate over it is then 0
        // (a dashboard shows 0) rather than no data until the first event of that result.
        for (family, results) in [
            (&metrics.dials, &["started", "connected", "failed"][..]),
            (&metrics.registry_registrations, &["ok", "error"][..]),
            (&metrics.registry_polls, &["ok", "error"][..]),
        ] {
            for result in results {
                family
                    .get_or_create(&ResultLabels {
                        result: (*result).to_string(),
                    })
                    .inc_by(0);
            }
        }
        metrics
    }

    pub fn count_autonat_probe(&self, role: &str, succeeded: bool) {
        self.autonat_probes
            .get_or_create(&ProbeLabels {
                role: role.to_string(),
                result: if succeeded { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    pub fn count_dial(&self, result: &str) {
        self.dials
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn set_discovered(&self, source: &str, peers: usize) {
        self.discovered_peers
            .get_or_create(&SourceLabels {
                source: source.to_string(),
            })
            .set(peers as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exported_with_their_prefix_and_labels() {
        let mut registry = Registry::default();
        let metrics = NodeMetrics::register(&mut registry);
        metrics.connected_peers.set(4);
        metrics.target_peers.set(24);
        metrics.set_discovered("registry", 4);
        metrics.count_dial("connected");
        metrics
            .registry_registrations
            .get_or_create(&ResultLabels {
                result: "ok".into(),
            })
            .inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("dig_node_connected_peers 4"), "{text}");
        assert!(text.contains("dig_node_target_peers 24"), "{text}");
        assert!(
            text.contains("dig_node_discovered_peers{source=\"registry\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("dig_node_dials_total{result=\"connected\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("dig_node_dials_total{result=\"failed\"} 0")
                && text.contains("dig_node_registry_polls_total{result=\"error\"} 0"),
            "every result is exported at 0 before its first event: {text}"
        );
        assert!(
            text.contains("dig_node_registry_registrations_total{result=\"ok\"} 1"),
            "{text}"
        );
    }
}
