//! `dig-sidecar status`: a node's state from its HTTP API, as a short human-readable summary.

use std::{fmt::Write, time::Duration};

use serde_json::Value;

use crate::config::StatusArgs;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("GET {url}: {source}")]
    Request {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: the answer is not JSON: {source}")]
    Body {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

pub struct NodeStatus {
    pub health: Value,
    pub ready: Value,
    pub is_ready: bool,
    pub connections: Value,
}

pub async fn fetch(args: &StatusArgs) -> Result<NodeStatus, StatusError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(StatusError::Client)?;
    let get = |path: &str| {
        let url = format!("{}{path}", args.api);
        let client = client.clone();
        async move {
            let response =
                client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|source| StatusError::Request {
                        url: url.clone(),
                        source,
                    })?;
            let ok = response.status().is_success();
            let body: Value = response
                .json()
                .await
                .map_err(|source| StatusError::Body { url, source })?;
            Ok::<_, StatusError>((ok, body))
        }
    };
    let (_, health) = get("/health").await?;
    let (is_ready, ready) = get("/ready").await?;
    let (_, connections) = get("/connections").await?;
    Ok(NodeStatus {
        health,
        ready,
        is_ready,
        connections,
    })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn render(status: &NodeStatus) -> String {
    let mut out = String::new();
    let c = &status.connections;
    let _ = writeln!(out, "peer id:     {}", text(&status.health["peerId"]));
    let _ = writeln!(out, "network:     {}", text(&c["networkId"]));
    let _ = writeln!(out, "version:     {}", text(&status.health["version"]));
    let _ = writeln!(
        out,
        "ready:       {}{}",
        if status.is_ready { "yes" } else { "no" },
        match status.ready["reasons"].as_array() {
            Some(reasons) if !reasons.is_empty() => format!(
                " ({})",
                reasons.iter().map(text).collect::<Vec<_>>().join("; ")
            ),
            _ => String::new(),
        }
    );
    let list = |key: &str| {
        c[key]
            .as_array()
            .map(|items| items.iter().map(text).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let _ = writeln!(out, "listening:   {}", list("listeningAddresses"));
    let _ = writeln!(out, "announced:   {}", list("announcedAddresses"));
    let _ = writeln!(
        out,
        "peers:       {} connected, {} discovered",
        text(&c["peerCount"]),
        text(&c["discoveredPeerCount"])
    );
    for source in ["registry", "dht", "mdns"] {
        let s = &c["discovery"][source];
        let _ = writeln!(
            out,
            "  {source:<9} enabled={} answered={} peers={} ok={} failed={}{}",
            text(&s["enabled"]),
            text(&s["answered"]),
            text(&s["peers"]),
            text(&s["successes"]),
            text(&s["failures"]),
            match &s["lastError"] {
                Value::String(error) => format!(" last error: {error}"),
                _ => String::new(),
            }
        );
    }
    let autonat = &c["discovery"]["autonat"];
    if autonat.is_object() {
        let _ = writeln!(
            out,
            "  autonat   enabled={} confirmed=[{}] probes ok={} failed={} dial-backs ok={} failed={}{}",
            text(&autonat["enabled"]),
            autonat["confirmedAddresses"]
                .as_array()
                .map(|items| items.iter().map(text).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            text(&autonat["probesSucceeded"]),
            text(&autonat["probesFailed"]),
            text(&autonat["dialBacksSucceeded"]),
            text(&autonat["dialBacksFailed"]),
            match &autonat["lastError"] {
                Value::String(error) => format!(" last error: {error}"),
                _ => String::new(),
            }
        );
    }
    if let Some(peers) = c["connectedPeers"].as_array() {
        if !peers.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<54} {:<9} {:>9}  ADDRESS",
                "PEER", "DIRECTION", "RTT"
            );
        }
        for peer in peers {
            let rtt = peer["latencyMs"]
                .as_f64()
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "{:<54} {:<9} {:>9}  {}",
                text(&peer["peerId"]),
                text(&peer["direction"]),
                rtt,
                peer["addresses"]
                    .as_array()
                    .and_then(|a| a.first())
                    .map(text)
                    .unwrap_or_default()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_summary_shows_autonat_figures_and_confirmed_addresses() {
        let status = NodeStatus {
            health: json!({"peerId": "12D3KooWtest", "version": "0.1.0"}),
            ready: json!({"ready": true, "reasons": []}),
            is_ready: true,
            connections: json!({
                "networkId": "mainnet",
                "discovery": {
                    "autonat": {
                        "enabled": true,
                        "confirmedAddresses": ["/ip4/203.0.113.7/tcp/4001"],
                        "probesSucceeded": 2,
                        "probesFailed": 1,
                        "dialBacksSucceeded": 5,
                        "dialBacksFailed": 0,
                        "lastError": "peer X could not dial /ip4/10.0.0.2/tcp/4001 back"
                    }
                }
            }),
        };
        let summary = render(&status);
        assert!(
            summary.contains(
                "autonat   enabled=true confirmed=[/ip4/203.0.113.7/tcp/4001] probes ok=2 failed=1 \
                 dial-backs ok=5 failed=0 last error: peer X could not dial"
            ),
            "{summary}"
        );
    }

    #[test]
    fn an_older_node_without_autonat_figures_gets_no_autonat_line() {
        let status = NodeStatus {
            health: json!({}),
            ready: json!({}),
            is_ready: false,
            connections: json!({"discovery": {}}),
        };
        assert!(!render(&status).contains("autonat"));
    }
}
