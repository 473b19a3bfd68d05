//! The bootstrap registry as a discovery source: registers this node's signed record (and again
//! before the TTL runs out, or when its addresses or stores change), polls `/peers` of its
//! network (often at start-up, then less), and backs off with jitter while no server answers.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dig_core::{
    api::PeersQuery,
    client::{ClientError, RegistryClient},
    clock::now_ms,
    record::{PeerRecord, StoreEntry},
};
use libp2p::{Multiaddr, PeerId, identity::Keypair};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::node::{DiscoverySource, NodeHandle, RegistryOutcome};

/// Supplies the stores this node holds, for the signed record.
pub type StoreEntries = Arc<dyn Fn() -> Vec<StoreEntry> + Send + Sync>;

/// How often `/peers` is polled: every 500 ms while the node has no peer during its first 5 s,
/// every 2 s up to 30 s after the start, then at the steady interval. A node with peers needs no
/// fast polling: every node polls right after it registers, so of any two nodes the later one
/// finds the earlier and dials it. Fast polls from many nodes behind one address (a local network)
/// would only run into the registry's per-IP rate limit.
fn poll_interval(since_start: Duration, has_peers: bool, steady: Duration) -> Duration {
    if since_start < Duration::from_secs(5) && !has_peers {
        Duration::from_millis(500)
    } else if since_start < Duration::from_secs(30) {
        Duration::from_secs(2)
    } else {
        steady
    }
}

pub struct RegistrySettings {
    pub servers: Vec<RegistryClient>,
    /// The node's identity key; records and removals are signed with it.
    pub keypair: Keypair,
    pub network_id: String,
    pub stores: StoreEntries,
    /// Steady poll interval once the node has settled.
    pub poll_interval: Duration,
    /// Re-registration interval; shortened to a third of the TTL the server answers with.
    pub register_interval: Duration,
    /// Most peers asked for per poll.
    pub peers_limit: usize,
}

impl RegistrySettings {
    pub fn new(
        servers: Vec<RegistryClient>,
        keypair: Keypair,
        network_id: String,
        stores: StoreEntries,
    ) -> Self {
        Self {
            servers,
            keypair,
            network_id,
            stores,
            poll_interval: Duration::from_secs(30),
            register_interval: Duration::from_secs(60),
            peers_limit: dig_core::api::MAX_PEERS_LIMIT,
        }
    }
}

/// Runs until `shutdown` turns true, then removes the record from every server.
pub async fn run(
    settings: RegistrySettings,
    node: NodeHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let local = node.local_peer_id();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let mut register_interval = settings.register_interval;
    let mut last_registered: Option<(Instant, Vec<String>, Vec<StoreEntry>)> = None;

    // Wait briefly for the listeners so the first record carries real ports.
    for _ in 0..20 {
        match node.snapshot().await {
            Ok(snapshot) if snapshot.is_listening() => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => return,
        }
    }

    loop {
        let Ok(snapshot) = node.snapshot().await else {
            return;
        };
        let has_peers = !snapshot.connected.is_empty();
        let addresses: Vec<String> = snapshot
            .dialable_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        let stores = (settings.stores)();
        let due = match &last_registered {
            None => true,
            Some((at, previous_addresses, previous_stores)) => {
                at.elapsed() >= register_interval
                    || previous_addresses != &addresses
                    || previous_stores != &stores
            }
        };
        let mut any_answer = false;
        let mut retry_after: Option<Duration> = None;

        if due {
            let record = PeerRecord {
                peer_id: local.to_string(),
                network_id: settings.network_id.clone(),
                addresses: addresses.clone(),
                stores: stores.clone(),
                agent_version: format!("dig-sidecar/{}", env!("CARGO_PKG_VERSION")),
                timestamp_ms: now_ms(),
            };
            match record.sign(&settings.keypair) {
                Ok(signed) => {
                    let mut registered = false;
                    for client in &settings.servers {
                        let server = client.base_url().to_string();
                        match client.register(&signed).await {
                            Ok(response) => {
                                registered = true;
                                any_answer = true;
                                if response.ttl_seconds > 0 {
                                    register_interval = settings
                                        .register_interval
                                        .min(Duration::from_secs(response.ttl_seconds.max(3) / 3));
                                }
                                let _ = node
                                    .report_registry(RegistryOutcome::Registered { server })
                                    .await;
                            }
                            Err(error) => {
                                retry_after = retry_after.or(rate_limit_delay(&error));
                                tracing::warn!(%server, %error, "registering with the bootstrap registry failed");
                                let _ = node
                                    .report_registry(RegistryOutcome::RegisterFailed {
                                        server,
                                        error: error.to_string(),
                                    })
                                    .await;
                            }
                        }
                    }
                    if registered {
                        last_registered = Some((Instant::now(), addresses, stores));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "signing the peer record failed");
                }
            }
        }

        let query = PeersQuery {
            limit: Some(settings.peers_limit),
            network: Some(settings.network_id.clone()),
            include_stores: false,
        };
        let mut merged: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        let mut polled = false;
        for client in &settings.servers {
            let server = client.base_url().to_string();
            match client.peers(&query).await {
                Ok(response) => {
                    polled = true;
                    any_answer = true;
                    let _ = node
                        .report_registry(RegistryOutcome::Polled {
                            server,
                            peers: response.peers.len(),
                        })
                        .await;
                    for peer in response.peers {
                        if peer.network_id != settings.network_id {
                            continue;
                        }
                        let Ok(peer_id) = peer.peer_id.parse::<PeerId>() else {
                            continue;
                        };
                        if peer_id == local {
                            continue;
                        }
                        let addrs: Vec<Multiaddr> = peer
                            .addresses
                            .iter()
                            .filter_map(|text| text.parse().ok())
                            .collect();
                        match merged.iter_mut().find(|(known, _)| *known == peer_id) {
                            Some((_, existing)) => existing.extend(addrs),
                            None => merged.push((peer_id, addrs)),
                        }
                    }
                }
                Err(error) => {
                    retry_after = retry_after.or(rate_limit_delay(&error));
                    tracing::debug!(%server, %error, "polling the bootstrap registry failed");
                    let _ = node
                        .report_registry(RegistryOutcome::PollFailed {
                            server,
                            error: error.to_string(),
                        })
                        .await;
                }
            }
        }
        // When no server answered, keep the last list: the registry being down says nothing
        // about the peers.
        if polled
            && node
                .report_discovered(DiscoverySource::Registry, merged)
                .await
                .is_err()
        {
            return;
        }

        let delay = if any_answer {
            backoff.reset();
            poll_interval(started.elapsed(), has_peers, settings.poll_interval)
        } else {
            backoff.next_delay()
        };
        let delay = retry_after.map_or(delay, |wait| wait.max(delay));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
    }

    for client in &settings.servers {
        let unregister = client.unregister(&settings.keypair, &settings.network_id);
        match tokio::time::timeout(Duration::from_secs(3), unregister).await {
            Ok(Ok(())) => tracing::info!(server = %client.base_url(), "unregistered"),
            Ok(Err(error)) => {
                tracing::warn!(server = %client.base_url(), %error, "unregistering failed")
            }
            Err(_) => tracing::warn!(server = %client.base_url(), "unregistering timed out"),
        }
    }
}

fn rate_limit_delay(error: &ClientError) -> Option<Duration> {
    match error {
        ClientError::RateLimited { retry_after, .. } => {
            Some(retry_after.unwrap_or(Duration::from_secs(5)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_is_frequent_at_start_up_and_then_settles() {
        let steady = Duration::from_secs(30);
        assert_eq!(
            poll_interval(Duration::ZERO, false, steady),
            Duration::from_millis(500)
        );
        assert_eq!(
            poll_interval(Duration::ZERO, true, steady),
            Duration::from_secs(2),
            "a node with peers does not poll fast"
        );
        assert_eq!(
            poll_interval(Duration::from_secs(10), false, steady),
            Duration::from_secs(2)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(300), false, steady),
            steady
        );
        assert_eq!(
            poll_interval(Duration::from_secs(300), true, steady),
            steady
        );
    }

    #[test]
    fn a_rate_limit_answer_sets_the_wait() {
        let limited = ClientError::RateLimited {
            url: "http://registry".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(rate_limit_delay(&limited), Some(Duration::from_secs(7)));
    }
}
