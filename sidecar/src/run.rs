//! `dig-sidecar run`: wires identity, the libp2p node, the registry client, the replication
//! engine and the HTTP API together, and shuts them down in order on SIGINT / SIGTERM.

use std::{sync::Arc, time::Instant};

use dig_core::client::{ClientError, RegistryClient};
use libp2p::pnet::PreSharedKey;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::{
    config::RunArgs,
    discovery::{
        dnsaddr,
        registry::{self as registry_discovery, RegistrySettings, StoreEntries},
    },
    http::{self, ApiError, ApiState, StoresSource},
    identity::{self, IdentityError},
    node::{self, NodeConfig, NodeError},
    sync::{ReplicationConfig, Replicator, SyncError},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("creating data folder {}: {source}", path.display())]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("reading --psk-file {}: {source}", path.display())]
    PskRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--psk-file {}: not a libp2p pre-shared key (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits): {detail}", path.display())]
    PskParse {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("--bootstrap {url}: {source}")]
    Bootstrap {
        url: String,
        #[source]
        source: Box<ClientError>,
    },
    #[error("--bootstrap /dnsaddr/...: {0}")]
    Dnsaddr(#[source] dnsaddr::DnsaddrError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("starting replication: {0}")]
    Replication(#[source] Box<SyncError>),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(
        "--write-policy open lets any member change any store, which only a private network can allow: give --psk-file too, or use --write-policy owner (the default)"
    )]
    OpenWithoutPsk,
    #[error("--write-policy writers needs at least one --writer PEER_ID (nobody could write)")]
    WritersWithoutWriter,
    #[error(
        "--target-peers {target} is above --max-connections {max}: the node could never reach its target; lower --target-peers or raise --max-connections"
    )]
    TargetAboveMaxConnections { target: u32, max: u32 },
}

/// Start-up check of the peer-set size: the target must fit under the hard connection cap.
pub fn check_target_peers(target: u32, max_connections: u32) -> Result<(), RunError> {
    if target > max_connections {
        return Err(RunError::TargetAboveMaxConnections {
            target,
            max: max_connections,
        });
    }
    Ok(())
}

/// Start-up checks of the write policy: open writing only in a private network, and a writer
/// list for the writers policy.
pub fn check_write_policy(
    policy: crate::sync::engine::WritePolicy,
    writers: usize,
    private: bool,
) -> Result<(), RunError> {
    use crate::sync::engine::WritePolicy;
    match policy {
        WritePolicy::Open if !private => Err(RunError::OpenWithoutPsk),
        WritePolicy::Writers if writers == 0 => Err(RunError::WritersWithoutWriter),
        _ => Ok(()),
    }
}

pub fn read_psk(path: &std::path::Path) -> Result<PreSharedKey, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::PskRead {
        path: path.to_path_buf(),
        source,
    })?;
    text.trim()
        .parse::<PreSharedKey>()
        .map_err(|error| RunError::PskParse {
            path: path.to_path_buf(),
            detail: error.to_string(),
        })
}

/// Makes the process non-dumpable: another process of the same user (an app container sharing
/// the pod's process namespace) can then not read the identity key and index through
/// `/proc/<pid>/root` or the process's memory; only root with CAP_SYS_PTRACE can.
fn protect_process() {
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(%error, "cannot make the process non-dumpable");
    }
}

pub async fn run(args: RunArgs) -> Result<(), RunError> {
    dig_core::crypto::install_crypto_provider();
    protect_process();
    let started = Instant::now();
    check_target_peers(args.target_peers, args.max_connections)?;
    let data_dir = args.data_dir();
    let state_dir = args.state_dir();
    for dir in [&data_dir, &state_dir] {
        std::fs::create_dir_all(dir).map_err(|source| RunError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let keypair = identity::load_or_create(&state_dir)?;
    let psk = args.psk_file.as_deref().map(read_psk).transpose()?;
    check_write_policy(args.write_policy, args.writer.len(), psk.is_some())?;
    if let Some(psk) = &psk {
        tracing::info!(fingerprint = %psk.fingerprint(), "private network (pnet): TCP only, QUIC disabled");
    }
    let dnsaddr_hosts = args.dnsaddr_hosts();
    let dns_resolver = if dnsaddr_hosts.is_empty() {
        None
    } else {
        Some(
            dnsaddr::resolver(args.nameserver, std::time::Duration::from_secs(5))
                .map_err(RunError::Dnsaddr)?,
        )
    };
    let servers = args
        .registry_urls()
        .iter()
        .map(|url| {
            RegistryClient::new(url).map_err(|source| RunError::Bootstrap {
                url: url.clone(),
                source: Box::new(source),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut registry = Registry::default();
    let node_config = NodeConfig {
        keypair: keypair.clone(),
        network_id: args.network.clone(),
        listen: args.listen_addresses(),
        announce: args.announce.clone(),
        registry_enabled: !servers.is_empty(),
        dns_enabled: dns_resolver.is_some(),
        enable_dht: !args.no_dht,
        enable_mdns: !args.no_mdns,
        allow_loopback: args.allow_loopback,
        enable_autonat: !args.no_autonat,
        psk,
        max_connections: args.max_connections,
        target_peers: args.target_peers,
    };
    let (node, node_task) = node::start(node_config, &mut registry)?;
    tracing::info!(
        peer_id = %node.local_peer_id(),
        network = %args.network,
        data_dir = %data_dir.display(),
        state_dir = %state_dir.display(),
        write_policy = args.write_policy.as_str(),
        writers = args.writer.len(),
        "node started"
    );

    let replicator = Replicator::start(
        replication_config(&args),
        keypair.clone(),
        node.clone(),
        &mut registry,
    )
    .await
    .map_err(|source| RunError::Replication(Box::new(source)))?;
    let stores_view: StoresSource = {
        let replicator = replicator.clone();
        Arc::new(move || {
            replicator
                .stores()
                .into_iter()
                .filter_map(|status| serde_json::to_value(status).ok())
                .collect()
        })
    };
    let store_entries: StoreEntries = {
        let replicator = replicator.clone();
        Arc::new(move || replicator.store_entries())
    };

    let (shutdown_sender, shutdown) = watch::channel(false);
    let registry_task = if servers.is_empty() {
        None
    } else {
        let settings = RegistrySettings::new(servers, keypair, args.network.clone(), store_entries);
        Some(tokio::spawn(registry_discovery::run(
            settings,
            node.clone(),
            shutdown.clone(),
        )))
    };

    let dnsaddr_task = dns_resolver.map(|resolver| {
        tracing::info!(hosts = ?dnsaddr_hosts, "bootstrapping from _dnsaddr TXT records");
        tokio::spawn(dnsaddr::run(
            resolver,
            dnsaddr_hosts,
            node.clone(),
            shutdown.clone(),
        ))
    });

    let listener = http::bind(args.api_listen).await?;
    tracing::info!(address = %args.api_listen, "HTTP API listening");
    let replication_running = {
        let replicator = replicator.clone();
        Arc::new(move || replicator.is_running())
    };
    let api_state = ApiState {
        node: node.clone(),
        registry: Arc::new(registry),
        stores: stores_view,
        drain: {
            let replicator = replicator.clone();
            Arc::new(move || serde_json::to_value(replicator.drain()).unwrap_or_default())
        },
        replication_running,
        started,
        identity_loaded: true,
        state_dir: state_dir.clone(),
        live: Arc::default(),
    };
    let mut api_shutdown = shutdown.clone();
    let api = tokio::spawn(http::serve(listener, api_state, async move {
        let _ = api_shutdown.changed().await;
    }));

    dig_core::shutdown::shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_sender.send(true);
    if let Some(task) = registry_task {
        let _ = task.await;
    }
    if let Some(task) = dnsaddr_task {
        let _ = task.await;
    }
    replicator.shutdown().await;
    node.shutdown().await;
    let _ = node_task.await;
    match api.await {
        Ok(result) => result?,
        Err(error) => tracing::warn!(%error, "the HTTP API task failed"),
    }
    Ok(())
}

/// The replication settings of `dig-sidecar run` (flags, `DIG_*` variables, YAML keys).
fn replication_config(args: &RunArgs) -> ReplicationConfig {
    ReplicationConfig {
        data_dir: args.data_dir(),
        state_dir: args.state_dir(),
        propagate_deletes: args.propagate_deletes,
        rules: crate::sync::engine::WriteRules {
            policy: args.write_policy,
            writers: args
                .writer
                .iter()
                .map(|peer| peer.to_base58())
                .collect::<std::collections::BTreeSet<_>>(),
        },
        max_store_bytes: args.max_store_size,
        min_free_bytes: args.min_free_disk,
        inventory_interval: args.inventory_interval,
        max_parallel_downloads: args.max_parallel_downloads as usize,
        max_stores: args.max_stores as usize,
        tombstone_ttl: args.tombstone_ttl,
        max_tombstones: args.max_tombstones as usize,
        conflict_ttl: args.conflict_ttl,
        max_conflicts: args.max_conflicts as usize,
        drain_annotations: args.drain_annotations.clone(),
        test_corrupt_chunks: args.test_corrupt_chunks,
        test_crash_after_install: args.test_crash_after_install,
        ..ReplicationConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::engine::WritePolicy;

    #[test]
    fn open_writing_needs_a_private_network_and_the_writers_policy_a_writer() {
        assert!(matches!(
            check_write_policy(WritePolicy::Open, 0, false),
            Err(RunError::OpenWithoutPsk)
        ));
        check_write_policy(WritePolicy::Open, 0, true).unwrap();
        assert!(matches!(
            check_write_policy(WritePolicy::Writers, 0, true),
            Err(RunError::WritersWithoutWriter)
        ));
        check_write_policy(WritePolicy::Writers, 1, false).unwrap();
        check_write_policy(WritePolicy::Owner, 0, false).unwrap();
    }

    #[test]
    fn the_target_peer_count_must_fit_under_the_connection_cap() {
        check_target_peers(24, 256).unwrap();
        check_target_peers(256, 256).unwrap();
        let error = check_target_peers(300, 256).unwrap_err();
        assert!(matches!(
            error,
            RunError::TargetAboveMaxConnections {
                target: 300,
                max: 256
            }
        ));
        let message = error.to_string();
        assert!(message.contains("--target-peers 300"), "{message}");
        assert!(message.contains("--max-connections 256"), "{message}");
    }
}
